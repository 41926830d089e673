//! End to end: real git repositories (git2 and the `git` CLI), the real platform on 127.0.0.1:0,
//! live objects made through the client and changed out of band, and the drift report.

#[path = "support/git_cli.rs"]
mod git_cli;
use git_cli::git;

use std::path::{Path, PathBuf};
use std::process::Command;

use novacron_client::{Client, ClientConfig, Kind};
use novacron_platform::{PlatformConfig, RunningPlatform, TEST_API_KEY};
use novacron_reconcile::clock::{FixedClock, SharedClock};
use novacron_reconcile::command::{DriftError, DriftOptions, run_drift};
use novacron_reconcile::live::ClientApi;
use novacron_reconcile::render::{render_json, render_markdown, render_text};
use novacron_reconcile::report::{DriftReport, ResourceReport, Status};
use novacron_schemas::Severity;
use novacron_tls::testing::Pki;
use serde_json::{Value, json};

/// The Rego module of the test policy, as the HCL heredoc gives it.
const RULE: &str = "package guard\n\ndeny contains msg if {\n  input.object.name == \"forbidden\"\n  msg := \"that name is forbidden\"\n}\n";
const SECRET: &str = "hunter2-very-secret";

struct Env {
    platform: Option<RunningPlatform>,
    client: Client,
    endpoint: String,
    dir: tempfile::TempDir,
    /// The CA of an HTTPS platform, kept while the test reads its files.
    _pki: Option<Pki>,
}

impl Env {
    async fn start() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let platform = novacron_platform::start(PlatformConfig::for_tests(dir.path().join("platform"))).await.expect("platform starts");
        let endpoint = platform.endpoint();
        let client = Client::new(ClientConfig::new(endpoint.clone(), TEST_API_KEY.1)).expect("client");
        Env { platform: Some(platform), client, endpoint, dir, _pki: None }
    }

    /// The platform over HTTPS with a certificate for 127.0.0.1 from a fresh CA; returns the CA file.
    async fn start_https() -> (Env, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new();
        let ca_file = pki.ca_file();
        let mut config = PlatformConfig::for_tests(dir.path().join("platform"));
        config.tls = Some(pki.local("server"));
        let platform = novacron_platform::start(config).await.expect("platform starts");
        let endpoint = platform.endpoint();
        let mut client_config = ClientConfig::new(endpoint.clone(), TEST_API_KEY.1);
        client_config.ca_file = Some(ca_file.clone());
        let client = Client::new(client_config).expect("client");
        (Env { platform: Some(platform), client, endpoint, dir, _pki: Some(pki) }, ca_file)
    }

    fn options(&self, repo: &Path) -> DriftOptions {
        DriftOptions {
            repo: repo.display().to_string(),
            reference: None,
            path: ".".into(),
            vars: vec![],
            ignore: vec![],
            cache_dir: self.dir.path().join("cache"),
            tfstate: None,
            workspace: None,
            http_address: None,
            progress: Default::default(),
            // A fixed clock: the report's time is the one handed in.
            clock: SharedClock::new(FixedClock(1_795_320_584)),
        }
    }

    async fn drift(&self, options: &DriftOptions) -> Result<DriftReport, DriftError> {
        run_drift(options, &ClientApi::new(&self.endpoint, TEST_API_KEY.1).expect("api")).await
    }

    async fn create(&self, kind: Kind, body: Value) -> String {
        let created = self.client.create(kind, &body).await.unwrap_or_else(|e| panic!("create {body}: {e}"));
        created.value.id().to_string()
    }

    async fn patch(&self, kind: Kind, id: &str, patch: Value) {
        self.client.patch(kind, id, &patch, None).await.unwrap_or_else(|e| panic!("patch {id}: {e}"));
    }

    async fn stop(mut self) {
        self.stop_platform().await;
    }

    /// Stops the platform but keeps the temporary directory (its repositories) alive.
    async fn stop_platform(&mut self) {
        if let Some(p) = self.platform.take() {
            p.shutdown().await.expect("platform stops");
        }
    }
}

/// Writes `files` into the work tree at `dir` and commits them with git2 (initialising the
/// repository on branch `main` the first time). Returns the commit SHA.
fn git2_commit(dir: &Path, files: &[(&str, &str)], message: &str) -> String {
    let repo = git2::Repository::open(dir).unwrap_or_else(|_| {
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        git2::Repository::init_opts(dir, &opts).expect("git init")
    });
    for (path, text) in files {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }
    let mut index = repo.index().expect("index");
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).expect("add");
    index.write().expect("index write");
    let tree = repo.find_tree(index.write_tree().expect("tree")).expect("find tree");
    let sig = git2::Signature::now("Test", "test@example.com").expect("signature");
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents).expect("commit").to_string()
}

fn entry<'a>(report: &'a DriftReport, address: &str) -> &'a ResourceReport {
    report
        .resources
        .iter()
        .find(|r| r.address == address)
        .unwrap_or_else(|| panic!("no {address} in {:?}", report.resources.iter().map(|r| &r.address).collect::<Vec<_>>()))
}

fn paths(r: &ResourceReport) -> Vec<(&str, Severity)> {
    r.changes.iter().map(|c| (c.path.as_str(), c.severity)).collect()
}

const MAIN_TF: &str = r#"
variable "env" { default = "prod" }

locals {
  labels = { env = var.env, team = "web" }
}

resource "novacron_network" "core" {
  name = "core"
  cidr = "10.20.0.0/24"
  firewall_rule {
    direction = "ingress"
    ports     = "22"
  }
  firewall_rule {
    direction = "ingress"
    ports     = "443"
  }
}

resource "novacron_vm" "web" {
  name        = "web"
  cpu_cores   = 2
  memory_gb   = 4
  template_id = "tpl-ubuntu-24-04"
  network_id  = novacron_network.core.id
  metadata    = local.labels
}

resource "novacron_policy" "guard" {
  name             = "guard"
  enforcement_mode = "block"
  rule             = <<EOT
package guard

deny contains msg if {
  input.object.name == "forbidden"
  msg := "that name is forbidden"
}
EOT
}

resource "novacron_storage" "data" {
  name    = "data"
  size_gb = 50
}
"#;

/// Creates the live objects MAIN_TF describes (except the volume), all in sync. Returns (network id, vm id, policy id).
async fn create_main(env: &Env) -> (String, String, String) {
    let net = env
        .create(Kind::Network, json!({"name": "core", "cidr": "10.20.0.0/24", "firewall_rules": [{"direction": "ingress", "ports": "22"}, {"direction": "ingress", "ports": "443"}]}))
        .await;
    let vm = env
        .create(Kind::Vm, json!({"name": "web", "cpu_cores": 2, "memory_gb": 4, "template_id": "tpl-ubuntu-24-04", "network_id": net, "metadata": {"env": "prod", "team": "web"}}))
        .await;
    let pol = env.create(Kind::Policy, json!({"name": "guard", "rule": RULE, "enforcement_mode": "block"})).await;
    (net, vm, pol)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_finds_in_sync_drifted_missing_and_unmanaged_with_paths_and_severities() {
    let env = Env::start().await;
    let repo = env.dir.path().join("repo");
    let sha = git2_commit(&repo, &[("main.tf", MAIN_TF)], "desired state");
    let (net, vm, pol) = create_main(&env).await;

    let report = env.drift(&env.options(&repo)).await.expect("drift runs");
    assert_eq!(report.revision, sha);
    for address in ["novacron_network.core", "novacron_vm.web", "novacron_policy.guard"] {
        let e = entry(&report, address);
        assert_eq!(e.status, Status::InSync, "{address}: {:?}", e.changes);
        assert_eq!(e.desired_hash, e.live_hash);
    }
    assert_eq!(entry(&report, "novacron_storage.data").status, Status::Missing);
    assert_eq!(entry(&report, "novacron_storage.data").severity, Some(Severity::High));

    // Out of band: a policy relaxed, a label changed, a firewall rule opened, a stray VM.
    env.patch(Kind::Policy, &pol, json!({"enforcement_mode": "audit"})).await;
    env.patch(Kind::Vm, &vm, json!({"metadata": {"env": "dev", "team": "web"}})).await;
    env.patch(Kind::Network, &net, json!({"firewall_rules": [{"direction": "ingress", "ports": "22"}, {"direction": "ingress", "ports": "1-65535"}]})).await;
    env.create(Kind::Vm, json!({"name": "stray", "cpu_cores": 1, "memory_gb": 1, "template_id": "tpl-debian-12", "network_id": net})).await;

    let report = env.drift(&env.options(&repo)).await.expect("drift runs");
    let policy = entry(&report, "novacron_policy.guard");
    assert_eq!(policy.status, Status::Drifted);
    assert_eq!(paths(policy), [("enforcement_mode", Severity::Critical)]);
    assert_eq!(policy.severity, Some(Severity::Critical));
    assert_eq!(policy.changes[0].desired, json!("block"));
    assert_eq!(policy.changes[0].live, json!("audit"));
    let web = entry(&report, "novacron_vm.web");
    assert_eq!(paths(web), [("metadata.env", Severity::Low)]);
    assert_eq!(web.severity, Some(Severity::Low));
    assert_eq!(web.drift_percentage, 0.2);
    let core = entry(&report, "novacron_network.core");
    assert_eq!(paths(core), [("firewall_rule[1].ports", Severity::Critical)]);
    assert_eq!(core.id.as_deref(), Some(net.as_str()));
    let stray = entry(&report, "novacron_vm.stray");
    assert_eq!((stray.status, stray.severity), (Status::Unmanaged, Some(Severity::Info)));
    let s = &report.summary;
    assert_eq!((s.resources, s.in_sync, s.drifted, s.missing, s.unmanaged), (5, 0, 3, 1, 1));
    assert_eq!((s.by_severity.critical, s.by_severity.high, s.by_severity.low, s.by_severity.info), (2, 1, 1, 1));
    assert_eq!(s.coverage, 0.75);
    assert_eq!(report.generated_at, "2026-11-22T04:09:44Z", "stamped by the clock in the options");

    // The JSON keeps the contract's shape.
    let json: Value = serde_json::from_str(&render_json(&report)).expect("json");
    for key in ["revision", "generated_at", "summary", "resources"] {
        assert!(json.get(key).is_some(), "{key}");
    }
    let first = &json["resources"][0];
    for key in ["address", "type", "name", "id", "status", "severity", "desired_hash", "live_hash", "drift_percentage", "changes"] {
        assert!(first.get(key).is_some(), "{key} in {first}");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_values_are_warnings_and_sensitive_values_never_appear() {
    let env = Env::start().await;
    let repo = env.dir.path().join("repo");
    let tf = format!(
        r##"
variable "image" {{}}
data "novacron_template" "ubuntu" {{ name = var.image }}
resource "novacron_network" "core" {{
  name = "core"
  cidr = "10.30.0.0/24"
}}
resource "novacron_vm" "app" {{
  name        = "app"
  cpu_cores   = 2
  memory_gb   = 4
  template_id = data.novacron_template.ubuntu.id
  network_id  = novacron_network.core.id
  user_data   = "#cloud-config\npassword: {SECRET}\n"
}}
"##
    );
    git2_commit(&repo, &[("main.tf", &tf)], "with a data source and user data");
    let net = env.create(Kind::Network, json!({"name": "core", "cidr": "10.30.0.0/24"})).await;
    env.create(
        Kind::Vm,
        json!({"name": "app", "cpu_cores": 2, "memory_gb": 4, "template_id": "tpl-debian-12", "network_id": net, "user_data": "#cloud-config\nother\n"}),
    )
    .await;

    let report = env.drift(&env.options(&repo)).await.expect("drift runs");
    let app = entry(&report, "novacron_vm.app");
    assert_eq!(app.unknown, ["template_id"], "a data source with an unknown argument is unknown, not drift");
    assert!(app.changes.iter().all(|c| c.path != "template_id"));
    assert!(
        report.warnings.iter().any(|w| w.starts_with("main.tf:12:17: novacron_vm.app: template_id is unknown")
            && w.contains("data.novacron_template.ubuntu is unknown: its argument name is unknown (var.image has no value")),
        "{:?}",
        report.warnings
    );
    assert_eq!(paths(app), [("user_data", Severity::Medium)]);
    assert!(app.changes[0].sensitive);
    for text in [render_json(&report), render_text(&report, true), render_markdown(&report), format!("{report:?}")] {
        assert!(!text.contains(SECRET) && !text.contains("cloud-config"), "a sensitive value leaked:\n{text}");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_for_each_and_module_addresses_and_ignore_rules() {
    let env = Env::start().await;
    let repo = env.dir.path().join("repo");
    let main = r#"
variable "sizes" {
  default = { logs = 10, data = 20 }
}
resource "novacron_network" "core" {
  name = "core"
  cidr = "10.40.0.0/24"
}
resource "novacron_vm" "web" {
  count       = 2
  name        = format("web-%d", count.index)
  cpu_cores   = 1
  memory_gb   = 2
  template_id = "tpl-debian-12"
  network_id  = novacron_network.core.id
  metadata    = { slot = tostring(count.index) }
}
resource "novacron_storage" "disk" {
  for_each = var.sizes
  name     = "${each.key}-disk"
  size_gb  = each.value
}
module "db" {
  source  = "./modules/db"
  name    = "db"
  network = novacron_network.core.id
}
"#;
    let module = r#"
variable "name" {}
variable "network" {}
resource "novacron_vm" "this" {
  name        = var.name
  cpu_cores   = 4
  memory_gb   = 16
  template_id = "tpl-debian-12"
  network_id  = var.network
}
"#;
    git2_commit(
        &repo,
        &[("infra/main.tf", main), ("infra/modules/db/main.tf", module), (".novacronignore", "# labels are managed by hand\nnovacron_vm.*.metadata\n")],
        "modules",
    );
    let net = env.create(Kind::Network, json!({"name": "core", "cidr": "10.40.0.0/24"})).await;
    for i in 0..2 {
        env.create(Kind::Vm, json!({"name": format!("web-{i}"), "cpu_cores": 1, "memory_gb": 2, "template_id": "tpl-debian-12", "network_id": net, "metadata": {"slot": "changed"}})).await;
    }
    env.create(Kind::Volume, json!({"name": "logs-disk", "size_gb": 10})).await;
    env.create(Kind::Volume, json!({"name": "data-disk", "size_gb": 25})).await;
    env.create(Kind::Vm, json!({"name": "db", "cpu_cores": 4, "memory_gb": 32, "template_id": "tpl-debian-12", "network_id": net})).await;

    let mut options = env.options(&repo);
    options.path = "infra".into();
    options.ignore = vec!["novacron_storage.disk[\"data\"].size_gb".into()];
    let report = env.drift(&options).await.expect("drift runs");
    let web1 = entry(&report, "novacron_vm.web[1]");
    assert_eq!(web1.status, Status::InSync, "metadata is ignored by .novacronignore");
    assert_eq!(web1.ignored_changes[0].path, "metadata.slot");
    assert_eq!(entry(&report, "novacron_storage.disk[\"logs\"]").status, Status::InSync);
    let data = entry(&report, "novacron_storage.disk[\"data\"]");
    assert_eq!((data.status, data.ignored_changes.len()), (Status::InSync, 1), "--ignore");
    let db = entry(&report, "module.db.novacron_vm.this");
    assert_eq!(paths(db), [("memory_gb", Severity::Medium)]);
    assert_eq!(report.summary.ignored, 3);
    assert_eq!(report.summary.drifted, 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_fetches_the_new_commit_and_refs_select_revisions() {
    let env = Env::start().await;
    let repo = env.dir.path().join("cli-repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("main.tf"), "resource \"novacron_network\" \"core\" {\n  name = \"core\"\n  cidr = \"10.50.0.0/24\"\n  mtu = 1500\n}\n")
        .expect("write");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    git(&repo, &["tag", "v1"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    env.create(Kind::Network, json!({"name": "core", "cidr": "10.50.0.0/24", "mtu": 9000})).await;

    let url = format!("file://{}", repo.display());
    let mut options = env.options(&repo);
    options.repo = url;
    let report = env.drift(&options).await.expect("first run");
    assert_eq!(report.revision, first);
    assert_eq!(paths(entry(&report, "novacron_network.core")), [("mtu", Severity::Medium)]);

    std::fs::write(repo.join("main.tf"), "resource \"novacron_network\" \"core\" {\n  name = \"core\"\n  cidr = \"10.50.0.0/24\"\n  mtu = 9000\n}\n")
        .expect("write");
    git(&repo, &["commit", "-q", "-am", "jumbo frames"]);
    let second = git(&repo, &["rev-parse", "HEAD"]);
    let report = env.drift(&options).await.expect("second run");
    assert_eq!(report.revision, second, "the cached clone fetched the new commit");
    assert_eq!(entry(&report, "novacron_network.core").status, Status::InSync);
    let clones = std::fs::read_dir(env.dir.path().join("cache")).expect("cache").count();
    assert_eq!(clones, 1, "one cached clone, reused");

    options.reference = Some("v1".into());
    assert_eq!(env.drift(&options).await.expect("tag").revision, first);
    options.reference = Some(first[..10].to_string());
    assert_eq!(env.drift(&options).await.expect("sha").revision, first);
    options.reference = Some("no-such-branch".into());
    let err = env.drift(&options).await.expect_err("bad ref");
    assert!(err.to_string().contains("ref \"no-such-branch\" not found"), "{err}");
    env.stop().await;
}

/// Runs the real binary; returns (exit code, stdout, stderr).
async fn binary(env: &Env, args: Vec<String>, api_key: &str) -> (i32, String, String) {
    let endpoint = env.endpoint.clone();
    let cache = env.dir.path().join("bin-cache");
    let key = api_key.to_string();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_novacron-reconcile"))
            .arg("drift")
            .args(&args)
            .args(["--endpoint", &endpoint, "--cache-dir"])
            .arg(&cache)
            .env("NOVACRON_API_KEY", key)
            .env_remove("NOVACRON_ENDPOINT")
            .env_remove("NOVACRON_CA_FILE")
            .output()
            .expect("binary runs");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_0_2_1_and_writes_output_only_on_success() {
    let env = Env::start().await;
    let repo = env.dir.path().join("repo");
    git2_commit(&repo, &[("main.tf", MAIN_TF)], "desired state");
    let (_, vm, _) = create_main(&env).await;
    env.create(Kind::Volume, json!({"name": "data", "size_gb": 50})).await;
    let repo_arg = repo.display().to_string();
    let out_file: PathBuf = env.dir.path().join("reports").join("drift.json");
    std::fs::create_dir_all(out_file.parent().expect("parent")).expect("mkdir");
    let with_output = |extra: &[&str]| {
        let mut args = vec!["--repo".to_string(), repo_arg.clone(), "--format".into(), "json".into(), "--output".into(), out_file.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    let (code, stdout, stderr) = binary(&env, with_output(&[]), TEST_API_KEY.1).await;
    assert_eq!(code, 0, "in sync: {stderr}");
    assert!(stdout.is_empty());
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&out_file).expect("report written")).expect("json");
    assert_eq!(written["summary"]["in_sync"], json!(4));

    env.patch(Kind::Vm, &vm, json!({"memory_gb": 8})).await;
    let (code, stdout, _) = binary(&env, vec!["--repo".into(), repo_arg.clone(), "--format".into(), "text".into()], TEST_API_KEY.1).await;
    assert_eq!(code, 2, "drift: {stdout}");
    assert!(stdout.contains("-memory_gb = 4") && stdout.contains("+memory_gb = 8"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "no colour when stdout is not a terminal");

    std::fs::remove_file(&out_file).expect("rm");
    let bad: [(Vec<String>, &str, &str); 3] = [
        (with_output(&["--ref", "nope"]), TEST_API_KEY.1, "ref \"nope\" not found"),
        (with_output(&[]), "wrong-key-0000", "API key was refused (HTTP 401)"),
        (with_output(&["--path", "missing"]), TEST_API_KEY.1, "--path \"missing\""),
    ];
    for (args, key, expected) in bad {
        let (code, _, stderr) = binary(&env, args, key).await;
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(!out_file.exists(), "nothing written on error");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_are_one_line_errors() {
    let mut env = Env::start().await;
    let syntax = env.dir.path().join("syntax");
    git2_commit(&syntax, &[("main.tf", "resource \"novacron_vm\" \"web\" {\n  name = \"web\"\n  cpu_cores = = 2\n}\n")], "broken");
    let (code, _, stderr) = binary(&env, vec!["--repo".into(), syntax.display().to_string()], TEST_API_KEY.1).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("main.tf:3:"), "file:line:col: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");

    let dup = env.dir.path().join("dup");
    git2_commit(
        &dup,
        &[(
            "main.tf",
            "resource \"novacron_network\" \"a\" {\n  name = \"core\"\n  cidr = \"10.0.0.0/24\"\n}\nresource \"novacron_network\" \"b\" {\n  name = \"core\"\n  cidr = \"10.0.1.0/24\"\n}\n",
        )],
        "dup",
    );
    let (code, _, stderr) = binary(&env, vec!["--repo".into(), dup.display().to_string()], TEST_API_KEY.1).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("novacron_network.a and novacron_network.b are both novacron_network named \"core\""), "{stderr}");

    let (code, _, stderr) = binary(&env, vec!["--repo".into(), env.dir.path().join("nowhere").display().to_string()], TEST_API_KEY.1).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("not found"), "{stderr}");
    let endpoint_down = env.endpoint.clone();
    env.stop_platform().await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_novacron-reconcile"))
            .args(["drift", "--repo"])
            .arg(&dup)
            .args(["--endpoint", &endpoint_down])
            .env("NOVACRON_API_KEY", TEST_API_KEY.1)
            .env("NOVACRON_CACHE_DIR", dup.join(".cache-outside"))
            .output()
            .expect("binary runs")
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is it running there?"), "{stderr}");
    drop(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycles_failing_validations_and_wrong_types_are_one_line_errors_that_write_no_report() {
    let env = Env::start().await;
    let variables = "variable \"env\" {\n  type = string\n  validation {\n    condition     = contains([\"dev\", \"prod\"], var.env)\n    error_message = \"env must be dev or prod.\"\n  }\n}\nvariable \"size\" {\n  type    = number\n  default = 2\n}\nresource \"novacron_storage\" \"data\" {\n  name    = \"data-${var.env}\"\n  size_gb = var.size\n}\n";
    let cases = [
        (
            "cycle",
            vec![("main.tf", "locals {\n  a = local.b\n  b = \"${local.c}-x\"\n  c = upper(local.a)\n}\n")],
            "root module: dependency cycle through local.a -> local.b -> local.c -> local.a",
        ),
        ("validation", vec![("main.tf", variables), ("terraform.tfvars", "env = \"qa\"\n")], "main.tf: invalid value for var.env: env must be dev or prod."),
        (
            "type",
            vec![("main.tf", variables), ("terraform.tfvars", "env = \"dev\"\nsize = \"hunter2-sized\"\n")],
            "main.tf: invalid value for var.size (from terraform.tfvars): a number is required, and this string is not one; give a value of type number",
        ),
    ];
    let out_file = env.dir.path().join("bad-input.json");
    for (name, files, expected) in cases {
        let repo = env.dir.path().join(name);
        git2_commit(&repo, &files, name);
        let args = vec!["--repo".to_string(), repo.display().to_string(), "--output".into(), out_file.display().to_string()];
        let (code, stdout, stderr) = binary(&env, args, TEST_API_KEY.1).await;
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: one line: {stderr}");
        assert!(!stderr.contains("hunter2") && !stderr.contains("panicked"), "{name}: {stderr}");
        assert!(stdout.is_empty() && !out_file.exists(), "{name}: no report, not even a partial one");
    }
    env.stop().await;
}

/// A git "remote" over HTTP that refuses every request with 401, as a host does for bad credentials.
async fn refusing_remote() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = socket.read(&mut buf).await;
                let answer = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (format!("http://127.0.0.1:{}", addr.port()), server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_git_credentials_are_a_one_line_error_without_the_token() {
    let env = Env::start().await;
    let (base, server) = refusing_remote().await;
    for (url, token) in
        [(format!("{base}/org/infra.git"), Some("tok-from-env-123")), (format!("http://bot:tok-in-url-456@{}/org/infra.git", &base["http://".len()..]), None)]
    {
        let endpoint = env.endpoint.clone();
        let cache = env.dir.path().join("auth-cache");
        let out = tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_novacron-reconcile"));
            cmd.args(["drift", "--repo", &url, "--endpoint", &endpoint, "--cache-dir"]).arg(&cache).env("NOVACRON_API_KEY", TEST_API_KEY.1);
            cmd.env("GIT_TERMINAL_PROMPT", "0").env("GIT_CONFIG_NOSYSTEM", "1").env("HOME", &cache);
            match token {
                Some(t) => cmd.env("NOVACRON_GIT_TOKEN", t),
                None => cmd.env_remove("NOVACRON_GIT_TOKEN"),
            };
            cmd.output().expect("binary runs")
        })
        .await
        .expect("join");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("authentication failed"), "{stderr}");
        assert!(!stderr.contains("tok-"), "the token leaked: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
    server.abort();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_over_https_trusts_the_ca_file_and_names_the_endpoint_without_it() {
    let (env, ca_file) = Env::start_https().await;
    assert!(env.endpoint.starts_with("https://"), "{}", env.endpoint);
    let repo = env.dir.path().join("repo");
    git2_commit(&repo, &[("main.tf", MAIN_TF)], "desired state");
    create_main(&env).await;
    let args = vec!["--repo".to_string(), repo.display().to_string(), "--format".into(), "json".into()];

    let mut with_ca = args.clone();
    with_ca.extend(["--ca-file".to_string(), ca_file.display().to_string()]);
    let (code, stdout, stderr) = binary(&env, with_ca, TEST_API_KEY.1).await;
    // 2: the report names the drift create_main leaves; either way the report was made.
    assert!(matches!(code, 0 | 2), "a report over HTTPS, exit {code}: {stderr}");
    assert!(stdout.contains("\"summary\""), "{stdout}");
    // The library path takes the same file.
    let api = ClientApi::with_ca_file(&env.endpoint, TEST_API_KEY.1, Some(&ca_file)).expect("api");
    run_drift(&env.options(&repo), &api).await.expect("drift through ClientApi with the CA");

    let (code, _, stderr) = binary(&env, args, TEST_API_KEY.1).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("the certificate of {} is not signed by a trusted CA: pass ca_file / --ca-file with your CA", env.endpoint)), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    env.stop().await;
}

/// A root module with one network and a VM whose user data is given write-only.
fn write_only_tf(user_data: &str, version: u32) -> String {
    format!(
        r#"
resource "novacron_network" "core" {{
  name = "core"
  cidr = "10.60.0.0/24"
}}
resource "novacron_vm" "app" {{
  name                 = "app"
  cpu_cores            = 2
  memory_gb            = 4
  template_id          = "tpl-debian-12"
  network_id           = novacron_network.core.id
  user_data_wo         = {user_data:?}
  user_data_wo_version = {version}
}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_data_wo_compares_as_user_data_by_hash_and_never_shows() {
    use novacron_reconcile::report::ThreeWay;
    let env = Env::start().await;
    let repo = env.dir.path().join("repo");
    let applied = format!("#cloud-config\npassword: {SECRET}\n");
    let rotated = format!("#cloud-config\npassword: {SECRET}-rotated\n");
    let first = git2_commit(&repo, &[("main.tf", &write_only_tf(&applied, 1))], "user data, write-only");
    let bumped = git2_commit(&repo, &[("main.tf", &write_only_tf(&applied, 7))], "only the version moves");
    let changed = git2_commit(&repo, &[("main.tf", &write_only_tf(&rotated, 8))], "a new password");
    let net = env.create(Kind::Network, json!({"name": "core", "cidr": "10.60.0.0/24"})).await;
    let vm = env
        .create(Kind::Vm, json!({"name": "app", "cpu_cores": 2, "memory_gb": 4, "template_id": "tpl-debian-12", "network_id": net, "user_data": applied}))
        .await;
    // As Terraform >= 1.11 records it: no user data value at all, only its hash.
    let state = json!({"version": 4, "terraform_version": "1.15.5", "serial": 3, "lineage": "wo", "resources": [
        {"mode": "managed", "type": "novacron_network", "name": "core", "provider": "provider[\"registry.terraform.io/novacron/novacron\"]",
         "instances": [{"schema_version": 0, "attributes": {"id": net, "name": "core", "cidr": "10.60.0.0/24", "status": "active"}}]},
        {"mode": "managed", "type": "novacron_vm", "name": "app", "provider": "provider[\"registry.terraform.io/novacron/novacron\"]",
         "instances": [{"schema_version": 0, "sensitive_attributes": [], "attributes": {
            "id": vm, "name": "app", "cpu_cores": 2, "memory_gb": 4, "template_id": "tpl-debian-12", "network_id": net,
            "user_data": null, "user_data_wo": null, "user_data_wo_version": 1,
            "user_data_sha256": novacron_schemas::sha256_hex(applied.as_bytes()), "status": "running"}}]}]});
    let state_file = env.dir.path().join("terraform.tfstate");
    std::fs::write(&state_file, state.to_string()).expect("write state");
    let at = |revision: &str, with_state: bool| {
        let mut options = env.options(&repo);
        options.reference = Some(revision.to_string());
        options.tfstate = with_state.then(|| state_file.clone());
        options
    };

    // Live user data matches: in sync, nothing unknown, no warning about user_data_wo or its version.
    for options in [at(&first, false), at(&first, true), at(&bumped, true)] {
        let report = env.drift(&options).await.expect("drift runs");
        let app = entry(&report, "novacron_vm.app");
        assert_eq!((app.status, app.three_way), (Status::InSync, ThreeWay::InSync), "{:?}: {:?} {:?}", options.reference, app.changes, app.rollout_changes);
        assert_eq!(app.desired_hash, app.live_hash);
        assert!(app.unknown.is_empty() && report.warnings.is_empty(), "{:?} {:?}", app.unknown, report.warnings);
    }

    // A new value in Git is a change by hash, against live and against last applied; the version is not.
    let report = env.drift(&at(&changed, true)).await.expect("drift runs");
    let app = entry(&report, "novacron_vm.app");
    assert_eq!((app.status, app.three_way), (Status::Drifted, ThreeWay::RolloutPending));
    assert_eq!(paths(app), [("user_data", Severity::Medium)]);
    let rollout: Vec<(&str, bool)> = app.rollout_changes.iter().map(|c| (c.path.as_str(), c.sensitive)).collect();
    assert_eq!(rollout, [("user_data", true)]);

    // Changed out of band: drift of user_data, shown as (sensitive), never the value.
    env.patch(Kind::Vm, &vm, json!({"user_data": "#cloud-config\nchanged out of band\n"})).await;
    for options in [at(&first, false), at(&first, true)] {
        let report = env.drift(&options).await.expect("drift runs");
        let app = entry(&report, "novacron_vm.app");
        assert_eq!(app.status, Status::Drifted);
        assert_eq!(app.three_way, ThreeWay::Drift, "the platform moved (with state: live differs from last applied)");
        assert_eq!(paths(app), [("user_data", Severity::Medium)], "one drifted attribute, never user_data_wo_version");
        let c = &app.changes[0];
        assert_eq!((&c.desired, &c.live, c.sensitive), (&json!("(sensitive)"), &json!("(sensitive)"), true));
        let texts = [render_json(&report), render_text(&report, false), render_markdown(&report), format!("{report:?}")];
        for text in &texts {
            assert!(!text.contains(SECRET) && !text.contains("cloud-config"), "a sensitive value leaked:\n{text}");
            assert!(!text.contains("user_data_wo"), "the twin and its version are not compared:\n{text}");
        }
        assert!(texts[1].contains("-user_data = (sensitive)\n") && texts[1].contains("+user_data = (sensitive, differs)\n"), "{}", texts[1]);
    }

    // Both forms on one resource: a one-line error naming the resource, the attributes and the fix.
    let both = env.dir.path().join("both");
    let tf = write_only_tf(&applied, 1).replace("  user_data_wo ", &format!("  user_data            = {:?}\n  user_data_wo ", applied));
    git2_commit(&both, &[("main.tf", &tf)], "both");
    let (code, stdout, stderr) = binary(&env, vec!["--repo".into(), both.display().to_string()], TEST_API_KEY.1).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("main.tf: novacron_vm.app sets both user_data and user_data_wo, which conflict") && stderr.contains("set only one of them"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains(SECRET) && stdout.is_empty(), "{stderr}");
    env.stop().await;
}
