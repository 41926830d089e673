//! Test fixtures for the integration tests: the platform, a desired-state repo behind a bare remote, the binary, a recording forge, a headless Chromium, a PostgreSQL server.

pub mod browser;
pub mod forge;
pub mod postgres;
pub mod smart_http;
pub mod terraform;

mod git_cli;
// Not every test binary talks to a forge.
#[allow(unused_imports)]
pub use forge::MockForge;
pub use git_cli::git;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::Duration;

use novacron_client::{Client, ClientConfig, Kind};
use novacron_platform::{PlatformConfig, RunningPlatform, TEST_API_KEY};
use novacron_reconcile::command::DriftOptions;
use novacron_reconcile::live::ClientApi;
use novacron_reconcile::sync::{AutoApplyMax, AutoSyncMax, SyncOptions, Thresholds};
use novacron_tls::testing::Pki;
use serde_json::{Value, json};

/// The desired state: a VM (labels low), a network, a policy (critical), with comments.
pub const MAIN_TF: &str = r##"# production desired state
resource "novacron_network" "core" {
  name = "core"
  cidr = "10.20.0.0/24"
  firewall_rule {
    direction = "ingress"
    ports     = "22" # ssh only
  }
}

resource "novacron_vm" "web" {
  name        = "web"
  cpu_cores   = 2
  memory_gb   = 4
  template_id = "tpl-ubuntu-24-04"
  network_id  = novacron_network.core.id
  metadata    = { env = "prod", team = "web" }
  user_data   = "#cloud-config\npassword: hunter2-very-secret\n"
}

resource "novacron_policy" "guard" {
  name             = "guard"
  enforcement_mode = "block" # who may relax this?
  rule             = <<EOT
package guard

deny contains msg if {
  input.object.name == "forbidden"
  msg := "that name is forbidden"
}
EOT
}
"##;

/// The VM's write-only, sensitive user data as MAIN_TF declares it.
pub const USER_DATA: &str = "#cloud-config\npassword: hunter2-very-secret\n";

const RULE: &str = "package guard\n\ndeny contains msg if {\n  input.object.name == \"forbidden\"\n  msg := \"that name is forbidden\"\n}\n";

/// The platform, a client, the repositories and the state file of one test.
pub struct Env {
    platform: Option<RunningPlatform>,
    client: Client,
    /// The platform endpoint.
    pub endpoint: String,
    /// The bare remote (`--repo file://...`).
    pub remote: PathBuf,
    /// The commit on `main`.
    pub revision: String,
    /// The private CA of an HTTPS platform (None over plain HTTP).
    pub pki: Option<Pki>,
    dir: tempfile::TempDir,
}

impl Env {
    pub async fn start() -> Env {
        Env::start_with(MAIN_TF).await
    }

    /// The platform and a desired-state repo whose `main.tf` is `main_tf`.
    pub async fn start_with(main_tf: &str) -> Env {
        Env::start_custom(main_tf, Duration::from_millis(50)).await
    }

    /// [`Env::start_with`] on a platform whose VMs stay `provisioning` for `provision_delay`.
    pub async fn start_custom(main_tf: &str, provision_delay: Duration) -> Env {
        Env::start_full(main_tf, provision_delay, &[], None).await
    }

    /// [`Env::start_with`] on a platform serving HTTPS with a certificate from a fresh private
    /// CA, which the client, [`Env::api`] and the binary trust.
    pub async fn start_https(main_tf: &str) -> Env {
        Env::start_full(main_tf, Duration::from_millis(50), &[], Some(Pki::new())).await
    }

    /// The CA file clients are told to trust (HTTPS only).
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.pki.as_ref().map(Pki::ca_file)
    }

    /// [`Env::start_with`] on a platform that also accepts the `(name, secret)` API keys `extra`.
    pub async fn start_with_keys(main_tf: &str, extra: &[(&str, &str)]) -> Env {
        Env::start_full(main_tf, Duration::from_millis(50), extra, None).await
    }

    async fn start_full(main_tf: &str, provision_delay: Duration, extra: &[(&str, &str)], pki: Option<Pki>) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = PlatformConfig::for_tests(dir.path().join("platform"));
        config.provision_delay = provision_delay;
        for (name, secret) in extra {
            config.api_keys.push(novacron_platform::ApiKey::parse(&format!("{name}:{secret}")).expect("a well-formed key"));
        }
        config.tls = pki.as_ref().map(|p| p.local("platform"));
        let platform = novacron_platform::start(config).await.expect("platform starts");
        let endpoint = platform.endpoint();
        let mut client_config = ClientConfig::new(endpoint.clone(), TEST_API_KEY.1);
        client_config.ca_file = pki.as_ref().map(Pki::ca_file);
        let client = Client::new(client_config).expect("client");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("mkdir");
        git(&work, &["init", "-q", "-b", "main"]);
        std::fs::write(work.join("main.tf"), main_tf).expect("write");
        git(&work, &["add", "main.tf"]);
        git(&work, &["commit", "-q", "-m", "desired state"]);
        let remote = dir.path().join("remote.git");
        git(dir.path(), &["clone", "-q", "--bare", work.to_str().expect("utf-8"), remote.to_str().expect("utf-8")]);
        let revision = git(&remote, &["rev-parse", "main"]);
        Env { platform: Some(platform), client, endpoint, remote, revision, pki, dir }
    }

    pub fn repo_url(&self) -> String {
        format!("file://{}", self.remote.display())
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("state/state.db")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    pub fn api(&self) -> ClientApi {
        ClientApi::with_ca_file(&self.endpoint, TEST_API_KEY.1, self.ca_file().as_deref()).expect("api")
    }

    pub fn sync_options(&self, remediation_pr: bool) -> SyncOptions {
        SyncOptions {
            drift: DriftOptions {
                repo: self.repo_url(),
                reference: None,
                path: ".".into(),
                vars: vec![],
                ignore: vec![],
                cache_dir: self.cache_dir(),
                tfstate: None,
                workspace: None,
                http_address: None,
                progress: Default::default(),
                clock: Default::default(),
            },
            thresholds: Thresholds { auto_sync_max: AutoSyncMax::Low, auto_apply_max: AutoApplyMax::Medium, prune: false },
            dry_run: false,
            remediation_pr,
            actor: "tester".into(),
        }
    }

    /// The live objects MAIN_TF describes, all in sync: (network, vm, policy) ids.
    pub async fn create_all(&self) -> (String, String, String) {
        let net =
            self.create(Kind::Network, json!({"name": "core", "cidr": "10.20.0.0/24", "firewall_rules": [{"direction": "ingress", "ports": "22"}]})).await;
        let vm = self
            .create(Kind::Vm, json!({"name": "web", "cpu_cores": 2, "memory_gb": 4, "template_id": "tpl-ubuntu-24-04", "network_id": net, "metadata": {"env": "prod", "team": "web"}, "user_data": USER_DATA}))
            .await;
        let pol = self.create(Kind::Policy, json!({"name": "guard", "rule": RULE, "enforcement_mode": "block"})).await;
        (net, vm, pol)
    }

    /// A VM no desired resource declares.
    pub async fn create_stray_vm(&self, net: &str) -> String {
        self.create(Kind::Vm, json!({"name": "stray", "cpu_cores": 1, "memory_gb": 2, "template_id": "tpl-debian-12", "network_id": net, "metadata": {"owner": "eve"}, "tags": ["x"]})).await
    }

    async fn create(&self, kind: Kind, body: Value) -> String {
        self.client.create(kind, &body).await.unwrap_or_else(|e| panic!("create {body}: {e}")).value.id().to_string()
    }

    pub async fn patch(&self, kind: Kind, id: &str, patch: Value) {
        self.client.patch(kind, id, &patch, None).await.unwrap_or_else(|e| panic!("patch {id}: {e}"));
    }

    pub async fn get(&self, kind: Kind, id: &str) -> Value {
        Value::Object(self.client.get(kind, id).await.expect("get").value.into_map())
    }

    async fn events(&self) -> Vec<novacron_client::Event> {
        let (mut all, mut after) = (Vec::new(), 0);
        loop {
            let batch = self.client.events(after, Duration::ZERO).await.expect("events");
            if batch.events.is_empty() {
                return all;
            }
            after = batch.next;
            all.extend(batch.events);
        }
    }

    pub async fn last_event(&self) -> u64 {
        self.events().await.iter().map(|e| e.seq).max().unwrap_or(0)
    }

    pub async fn update_events_since(&self, after: u64, id: &str) -> usize {
        self.events().await.iter().filter(|e| e.seq > after && e.id == id && e.action == "update").count()
    }

    /// The binary with the API key, endpoint, cache and state set; `args` first.
    pub fn bin_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_novacron-reconcile"));
        command
            .args(args)
            .arg("--state")
            .arg(self.state_path())
            .env("NOVACRON_API_KEY", TEST_API_KEY.1)
            .env("NOVACRON_ENDPOINT", &self.endpoint)
            .env("NOVACRON_CACHE_DIR", self.cache_dir())
            .env("NOVACRON_FORGE_TOKEN", "forge-t0ken")
            .env_remove("NOVACRON_RECONCILE_TEST_PAUSE");
        match self.ca_file() {
            Some(ca) => command.env("NOVACRON_CA_FILE", ca),
            None => command.env_remove("NOVACRON_CA_FILE"),
        };
        command
    }

    /// Runs the binary to completion (the in-process platform keeps serving meanwhile).
    pub fn bin(&self, args: &[&str]) -> Output {
        let mut command = self.bin_command(args);
        tokio::task::block_in_place(|| command.output().expect("binary runs"))
    }

    /// `sync --repo <remote>` plus `extra`.
    pub fn bin_sync(&self, extra: &[&str], envs: &[(&str, &str)]) -> Output {
        let url = self.repo_url();
        let mut args = vec!["sync", "--repo", url.as_str()];
        args.extend_from_slice(extra);
        let mut command = self.bin_command(&args);
        command.envs(envs.iter().copied());
        tokio::task::block_in_place(|| command.output().expect("binary runs"))
    }

    /// Commits a new `main.tf` to `main` of the remote (an engineer's change); returns the revision.
    pub fn commit_main_tf(&mut self, text: &str, message: &str) -> String {
        let work = self.dir.path().join("work");
        std::fs::write(work.join("main.tf"), text).expect("write");
        git(&work, &["commit", "-q", "-am", message]);
        git(&work, &["push", "-q", self.remote.to_str().expect("utf-8"), "main"]);
        self.revision = git(&self.remote, &["rev-parse", "main"]);
        self.revision.clone()
    }

    /// The temporary directory of this test.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The platform client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Commits an unrelated file to `main` of the remote: a new revision, the same drift.
    pub fn commit_unrelated(&mut self) {
        let work = self.dir.path().join("work");
        std::fs::write(work.join("README.md"), "desired state of production\n").expect("write");
        git(&work, &["add", "README.md"]);
        git(&work, &["commit", "-q", "-m", "readme"]);
        git(&work, &["push", "-q", self.remote.to_str().expect("utf-8"), "main"]);
        self.revision = git(&self.remote, &["rev-parse", "main"]);
    }

    pub async fn stop(mut self) {
        if let Some(p) = self.platform.take() {
            p.shutdown().await.expect("platform stops");
        }
    }
}

/// Starts the real `serve` binary on `config` with `envs`; returns it and the address it logged.
/// Every log line is checked for `secrets`; warnings, errors and finished reviews are echoed.
pub fn spawn_serve(config: &std::path::Path, envs: &[(&str, &std::ffi::OsStr)], secrets: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_novacron-reconcile"))
        .args(["serve", "--config"])
        .arg(config)
        .envs(envs.iter().copied())
        .env("NOVACRON_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
    // NOVACRON_TEST_ECHO_SERVE=1 echoes every line (to follow a failing scenario).
    let echo_all = std::env::var("NOVACRON_TEST_ECHO_SERVE").is_ok_and(|v| v == "1");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            for secret in &secrets {
                assert!(!line.contains(secret.as_str()), "a secret in serve's log: {line}");
            }
            if let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("addr=")) {
                let _ = tx.send(addr.to_string());
            } else if line.contains("WARN") || line.contains("ERROR") || line.contains("reviewed") || line.contains("SIGHUP") || echo_all {
                eprintln!("serve: {line}");
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("serve logs its address");
    (child, addr)
}

/// Reads the child's stderr until a line contains `needle` (at most 60 s).
pub fn wait_for_line(child: &mut Child, needle: &str) {
    let stderr = child.stderr.take().expect("stderr piped");
    let needle = needle.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(&needle) {
                let _ = tx.send(Ok(()));
                return;
            }
        }
        let _ = tx.send(Err(seen));
    });
    match tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_secs(60))) {
        Ok(Ok(())) => {}
        Ok(Err(seen)) => panic!("the child ended without the test hook line: {seen}"),
        Err(_) => panic!("no test hook line within 60 s"),
    }
}

/// Branches left in the cached clones (the remediation branch must not stay behind).
pub fn local_branches(env: &Env) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(env.cache_dir()).expect("cache dir").map_while(Result::ok) {
        out.extend(git(&entry.path(), &["for-each-ref", "--format=%(refname)", "refs/heads"]).lines().map(str::to_string).filter(|l| !l.is_empty()));
    }
    out
}
