//! End to end for `novacron-reconcile serve`: the real platform on 127.0.0.1:0, real git repositories, the service in process and as the real binary, driven over HTTP.

#[path = "support/git_cli.rs"]
mod git_cli;
use git_cli::git;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use novacron_client::{Client, ClientConfig, Kind};
use novacron_platform::{PlatformConfig, RunningPlatform, TEST_API_KEY};
use novacron_reconcile::serve::config::ServeConfig;
use novacron_reconcile::serve::webhook::signature_header;
use novacron_reconcile::serve::{RunningServe, ServeSettings, start};
use serde_json::{Value, json};

const SECRET: &str = "webhook-secret-for-tests";
const ADMIN: &str = "admin-token-for-tests";
/// How long any awaited condition may take before the test fails (generous: CI machines are slow).
const PATIENCE: Duration = Duration::from_secs(90);

const MAIN_TF: &str = r#"
resource "novacron_network" "core" {
  name = "core"
  cidr = "10.40.0.0/24"
  mtu  = 1500
}

resource "novacron_vm" "web" {
  name        = "web"
  cpu_cores   = 2
  memory_gb   = 4
  template_id = "tpl-ubuntu-24-04"
  network_id  = novacron_network.core.id
}
"#;

struct Env {
    platform: RunningPlatform,
    client: Client,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    repo: PathBuf,
    vm: String,
}

impl Env {
    /// The platform with the objects of MAIN_TF, in sync, and the repository holding it.
    async fn start() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let platform = novacron_platform::start(PlatformConfig::for_tests(dir.path().join("platform"))).await.expect("platform starts");
        let client = Client::new(ClientConfig::new(platform.endpoint(), TEST_API_KEY.1)).expect("client");
        let net = client.create(Kind::Network, &json!({"name": "core", "cidr": "10.40.0.0/24", "mtu": 1500})).await.expect("network").value.id().to_string();
        let vm = client
            .create(Kind::Vm, &json!({"name": "web", "cpu_cores": 2, "memory_gb": 4, "template_id": "tpl-ubuntu-24-04", "network_id": net}))
            .await
            .expect("vm")
            .value
            .id()
            .to_string();
        // Let provisioning finish first, so that its events come before the service starts.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while client.get(Kind::Vm, &vm).await.expect("get vm").value.status() != Some("running") {
            assert!(tokio::time::Instant::now() < deadline, "the VM never got running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).expect("mkdir");
        git(&repo, &["init", "-q"]);
        commit(&repo, MAIN_TF, "desired state");
        Env { platform, client, http: reqwest::Client::new(), dir, repo, vm }
    }

    /// A config file for this environment; `extra` goes into the repo table.
    fn config_text(&self, interval: &str, extra: &str) -> String {
        format!(
            "endpoint = \"{}\"\nlisten = \"127.0.0.1:0\"\nstate = \"{}\"\napi_key_env = \"NOVACRON_TEST_SERVE_KEY\"\n\n[[repo]]\nname = \"infra\"\nurl = \"{}\"\nref = \"main\"\ninterval = \"{interval}\"\n{extra}",
            self.platform.endpoint(),
            self.state().display(),
            self.repo.display()
        )
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    async fn serve(&self, interval: &str) -> RunningServe {
        let config = ServeConfig::parse(&self.config_text(interval, &format!("webhook_secret = \"{SECRET}\"\n")), "test.toml").expect("config parses");
        start(ServeSettings { config, api_key: TEST_API_KEY.1.to_string(), admin_token: Some(ADMIN.to_string()) }).await.expect("serve starts")
    }

    /// [`Env::serve`] after a shutdown in this process. A child process that another test
    /// forks at that moment holds a copy of the lock file's descriptor until it execs, so a
    /// refusal naming this very process is retried for a while.
    async fn serve_again(&self, interval: &str) -> RunningServe {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let config = ServeConfig::parse(&self.config_text(interval, &format!("webhook_secret = \"{SECRET}\"\n")), "test.toml").expect("config parses");
            match start(ServeSettings { config, api_key: TEST_API_KEY.1.to_string(), admin_token: Some(ADMIN.to_string()) }).await {
                Ok(serve) => return serve,
                Err(e) if tokio::time::Instant::now() < deadline && e.to_string().contains(&format!("(pid {}", std::process::id())) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("serve restarts: {e}"),
            }
        }
    }

    async fn status(&self, serve: &RunningServe) -> Value {
        let url = format!("http://{}/api/status", serve.addr());
        self.http.get(url).send().await.expect("status answers").json().await.expect("status is JSON")
    }

    /// Polls `/api/status` until `check` holds for the repo's entry; returns that entry.
    async fn wait_for(&self, serve: &RunningServe, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let status = self.status(serve).await;
            let repo = status["repos"][0].clone();
            if status["event_feed"]["following"] == true && check(&repo) {
                return repo;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; status: {repo}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn hook(&self, serve: &RunningServe, body: &str, signature: Option<String>, delivery: &str) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("http://{}/hooks/github", serve.addr()))
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", delivery)
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(sig) = signature {
            req = req.header("X-Hub-Signature-256", sig);
        }
        let resp = req.send().await.expect("hook answers");
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }
}

/// Runs that webhooks started so far, from `/metrics`.
async fn webhook_triggers(env: &Env, serve: &RunningServe) -> u64 {
    let metrics = env.http.get(format!("http://{}/metrics", serve.addr())).send().await.expect("metrics").text().await.expect("text");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("novacron_reconcile_triggers_total{repo=\"infra\",source=\"webhook\"} "))
        .map_or(0, |n| n.parse().expect("a count"))
}

fn commit(repo: &Path, main_tf: &str, message: &str) -> String {
    std::fs::write(repo.join("main.tf"), main_tf).expect("write");
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}

fn push_payload(repo: &Path) -> String {
    json!({"ref": "refs/heads/main", "repository": {"full_name": "local/repo", "clone_url": repo.display().to_string(), "default_branch": "main"}}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_with_a_valid_signature_reconciles_the_new_commit_and_bad_or_replayed_ones_trigger_nothing() {
    let env = Env::start().await;
    let first = git(&env.repo, &["rev-parse", "HEAD"]);
    let serve = env.serve("1h").await;
    let repo = env.wait_for(&serve, "the startup reconcile", |r| r["revision"] == first && r["running"] == false).await;
    assert_eq!(repo["drift_by_severity"]["critical"], 0, "{repo}");

    let second = commit(&env.repo, &MAIN_TF.replace("memory_gb   = 4", "memory_gb   = 8"), "more memory");
    let body = push_payload(&env.repo);
    let (code, answer) = env.hook(&serve, &body, None, "d-missing").await;
    assert_eq!(code, 401, "{answer}");
    let (code, answer) = env.hook(&serve, &body, Some(signature_header(b"wrong secret", body.as_bytes())), "d-wrong").await;
    assert_eq!(code, 401, "{answer}");
    let (code, _) = env.hook(&serve, &body, Some(signature_header(SECRET.as_bytes(), b"another body")), "d-other-body").await;
    assert_eq!(code, 401);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(webhook_triggers(&env, &serve).await, 0, "a rejected webhook triggered a run");

    let signature = signature_header(SECRET.as_bytes(), body.as_bytes());
    let (code, answer) = env.hook(&serve, &body, Some(signature.clone()), "d-1").await;
    assert_eq!((code, &answer["triggered"]), (202, &json!(["infra"])));
    let repo = env.wait_for(&serve, "the webhook's reconcile", |r| r["revision"] == second && r["last_trigger"] == "webhook" && r["running"] == false).await;
    assert_eq!(repo["summary"]["drifted"], 1, "memory 8 desired, 4 live: {repo}");

    let (code, answer) = env.hook(&serve, &body, Some(signature), "d-1").await;
    assert_eq!(code, 409, "a replayed delivery is refused: {answer}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(webhook_triggers(&env, &serve).await, 1, "a replayed delivery triggered a run");

    let metrics = env.http.get(format!("http://{}/metrics", serve.addr())).send().await.expect("metrics").text().await.expect("text");
    for line in [
        "novacron_reconcile_webhook_deliveries_total{outcome=\"bad_signature\"} 3",
        "novacron_reconcile_webhook_deliveries_total{outcome=\"triggered\"} 1",
        "novacron_reconcile_webhook_deliveries_total{outcome=\"replayed\"} 1",
        "novacron_reconcile_drift{repo=\"infra\",severity=\"medium\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    // Bodies up to GitHub's 25 MB are read (a 3 MiB one is verified, here refused as unsigned);
    // a larger one gets the same JSON shape as every other refusal.
    let padded = format!("{{\"ref\":\"refs/heads/main\",\"pad\":\"{}\"}}", "x".repeat(3 << 20));
    let (code, answer) = env.hook(&serve, &padded, Some("sha256=00".into()), "d-big").await;
    assert_eq!(code, 401, "a 3 MiB body is read and its signature checked: {answer}");
    let huge = "x".repeat(26 << 20);
    let (code, answer) = env.hook(&serve, &huge, Some("sha256=00".into()), "d-huge").await;
    assert_eq!(code, 413, "{answer}");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("25 MiB")), "a JSON refusal naming the limit: {answer}");
    serve.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_out_of_band_change_is_rechecked_through_the_event_feed_before_the_next_poll() {
    let env = Env::start().await;
    let serve = env.serve("1h").await;
    let repo = env.wait_for(&serve, "the startup reconcile", |r| r["summary"]["in_sync"] == 2 && r["running"] == false).await;
    assert_eq!(repo["summary"]["drifted"], 0, "{repo}");

    env.client.patch(Kind::Vm, &env.vm, &json!({"memory_gb": 16}), None).await.expect("out-of-band patch");
    let pending = |r: &Value| r["pending_approvals"].as_array().map_or(0, Vec::len);
    let repo = env.wait_for(&serve, "the event-triggered re-check", |r| r["summary"]["drifted"] == 1 && pending(r) == 1).await;
    assert_eq!(repo["last_trigger"], "event", "{repo}");
    assert_eq!(repo["drift_by_severity"]["medium"], 1, "{repo}");

    // The status page, health and approvals endpoints.
    let base = format!("http://{}", serve.addr());
    let page = env.http.get(&base).send().await.expect("page").text().await.expect("html");
    assert!(page.contains("<b>infra</b>") && page.contains("<th>critical</th>"), "{page}");
    assert!(!page.contains(SECRET) && !env.status(&serve).await.to_string().contains(SECRET));
    assert_eq!(env.http.get(format!("{base}/healthz")).send().await.expect("healthz").status(), 200);
    assert_eq!(env.http.get(format!("{base}/readyz")).send().await.expect("readyz").status(), 200);

    // Medium drift is above the default threshold (low): it waits for approval, given over HTTP.
    let id = repo["pending_approvals"][0]["id"].as_str().expect("a drift id").to_string();
    assert_eq!(repo["pending_approvals"][0]["severity"], "medium", "{repo}");
    let approve = |id: &str, token: &str| env.http.post(format!("{base}/api/approvals/{id}")).bearer_auth(token).send();
    assert_eq!(approve(&id, "wrong").await.expect("approve").status(), 401);
    assert_eq!(env.http.post(format!("{base}/api/approvals/{id}")).send().await.expect("approve").status(), 401);
    assert_eq!(approve("no-such-drift", ADMIN).await.expect("approve").status(), 404);
    let approved = approve(&id, ADMIN).await.expect("approve");
    assert_eq!(approved.status(), 200);
    let repo = env.wait_for(&serve, "the approved revert", |r| r["summary"]["drifted"] == 0 && pending(r) == 0).await;
    let vm = env.client.get(Kind::Vm, &env.vm).await.expect("get vm");
    assert_eq!(vm.value.get("memory_gb"), Some(&json!(4)), "the approved revert put the desired value back");
    let metrics = env.http.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.lines().any(|l| l == "novacron_reconcile_syncs_total{repo=\"infra\"} 1"), "{metrics}");

    // An approval recorded by the CLI on the same state database is picked up within seconds.
    env.client.patch(Kind::Vm, &env.vm, &json!({"memory_gb": 6}), None).await.expect("out-of-band change");
    let second = env.wait_for(&serve, "the second drift", |r| pending(r) == 1).await;
    let id = second["pending_approvals"][0]["id"].as_str().expect("a drift id").to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_novacron-reconcile"))
        .args(["approve", &id, "--actor", "alice", "--state"])
        .arg(env.state())
        .output()
        .expect("approve runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    env.wait_for(&serve, "the revert approved by the CLI", |r| r["summary"]["drifted"] == 0 && pending(r) == 0 && r["last_trigger"] == "approval").await;
    let vm = env.client.get(Kind::Vm, &env.vm).await.expect("get vm");
    assert_eq!(vm.value.get("memory_gb"), Some(&json!(4)));
    serve.shutdown().await;

    // A restart resumes from the state database: the revision is known before the first run.
    let serve = env.serve_again("1h").await;
    let status = env.status(&serve).await;
    assert_eq!(status["repos"][0]["revision"], repo["revision"], "{status}");
    serve.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repo_without_a_webhook_secret_cannot_be_triggered_by_webhook() {
    let env = Env::start().await;
    let config = ServeConfig::parse(&env.config_text("1h", ""), "test.toml").expect("config parses");
    let serve = start(ServeSettings { config, api_key: TEST_API_KEY.1.to_string(), admin_token: None }).await.expect("serve starts");
    let body = push_payload(&env.repo);
    let (code, answer) = env.hook(&serve, &body, Some(signature_header(SECRET.as_bytes(), body.as_bytes())), "d-1").await;
    assert_eq!(code, 401, "{answer}");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("no webhook secret is configured for infra")), "{answer}");
    assert_eq!(webhook_triggers(&env, &serve).await, 0);
    serve.shutdown().await;
}

/// Starts the real binary on `config`; returns it and the address it logged.
fn spawn_binary(config: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_novacron-reconcile"))
        .args(["serve", "--config"])
        .arg(config)
        .env("NOVACRON_TEST_SERVE_KEY", TEST_API_KEY.1)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("addr=")) {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let addr = rx.recv_timeout(PATIENCE).expect("the binary logs its address");
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_instance_on_the_same_state_refuses_to_start_and_sigterm_stops_the_first() {
    let env = Env::start().await;
    let config = env.dir.path().join("serve.toml");
    std::fs::write(&config, env.config_text("1h", "")).expect("write config");
    let (mut child, addr) = spawn_binary(&config);
    let ready = async {
        loop {
            if env.http.get(format!("http://{addr}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(PATIENCE, ready).await.expect("the binary becomes ready");

    let parsed = ServeConfig::parse(&env.config_text("1h", ""), "test.toml").expect("config");
    let second = start(ServeSettings { config: parsed, api_key: TEST_API_KEY.1.to_string(), admin_token: None }).await;
    let message = second.expect_err("a second instance must not start").to_string();
    assert!(message.contains(&format!("in use by another novacron-reconcile serve (pid {}", child.id())), "{message}");
    assert!(message.contains("state.db.lock"), "{message}");

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("`kill` runs (Debian package procps)");
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait");
    assert!(status.success(), "SIGTERM is a clean exit: {status}");

    // The lock went with the process.
    let parsed = ServeConfig::parse(&env.config_text("1h", ""), "test.toml").expect("config");
    let again = start(ServeSettings { config: parsed, api_key: TEST_API_KEY.1.to_string(), admin_token: None }).await.expect("starts once the first is gone");
    again.shutdown().await;
}

#[test]
fn a_config_with_an_unknown_key_is_refused_naming_the_key_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, "endpoint = \"http://127.0.0.1:1\"\n\n[[repo]]\nname = \"infra\"\nurl = \"/nowhere\"\nintervall = \"30s\"\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_novacron-reconcile")).args(["serve", "--config"]).arg(&config).output().expect("binary runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("config {}:6: key `intervall`: unknown field `intervall`", config.display())), "{stderr}");
}
