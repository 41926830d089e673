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
    assert!(page.contains("<article class=\"card\" id=\"repo-infra\" data-health=\"drifting\">"), "{page}");
    assert!(page.contains("<span class=\"count\" data-severity=\"medium\">1</span>"), "{page}");
    let repo_page = env.http.get(format!("{base}/repos/infra")).send().await.expect("repo page").text().await.expect("html");
    assert!(
        repo_page.contains("<tr class=\"resource\" data-address=\"novacron_vm.web\" data-status=\"drifted\" data-severity=\"medium\">"),
        "the kept report shows the drift: {repo_page}"
    );
    assert!(repo_page.contains("<td class=\"path\" colspan=\"2\">memory_gb</td><td class=\"desired\">4</td><td class=\"live\">16</td>"), "{repo_page}");
    assert!(repo_page.contains("<span class=\"actor\">"), "who changed it, from the change feed: {repo_page}");
    assert!(!repo_page.contains(SECRET));
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
    // Nothing else triggers a run here (1 h interval, no webhook): the revert is the watcher's doing.
    // (`last_trigger` may already say `event`: the revert's own event causes one more, no-op run.)
    env.wait_for(&serve, "the revert approved by the CLI", |r| r["summary"]["drifted"] == 0 && pending(r) == 0).await;
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

#[test]
fn certificate_files_that_cannot_be_served_stop_the_start_naming_the_config_key() {
    let pki = novacron_tls::testing::Pki::new();
    let (a, b) = (pki.local("a"), pki.local("b"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("serve.toml");
    let run = |cert: &Path, key: &Path| {
        std::fs::write(&config, format!("listen = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n", cert.display(), key.display())).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_novacron-reconcile"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("NOVACRON_API_KEY", "k")
            .output()
            .expect("binary runs");
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let mismatch = run(&a.cert, &b.key);
    let expected = format!(
        "config: tls_key {} does not match the certificate in tls_cert {}; pass the key the certificate was issued for",
        b.key.display(),
        a.cert.display()
    );
    assert!(mismatch.contains(&expected), "{mismatch}");
    let missing = run(&dir.path().join("missing.crt"), &a.key);
    assert!(missing.contains("config: tls_cert ") && missing.contains("missing.crt: cannot read it"), "{missing}");
    let swapped = run(&a.key, &a.cert);
    assert!(swapped.contains("no PEM certificate in it"), "{swapped}");
}

/// A `serve` config whose repository cannot be cloned and whose platform is unreachable: every
/// run fails fast, which is all the console tests below need (the approvals are seeded).
fn offline_config(dir: &Path, console: &str) -> (ServeConfig, PathBuf) {
    let repo = dir.join("no-such-repo");
    let text = format!(
        "endpoint = \"http://127.0.0.1:1\"\nlisten = \"127.0.0.1:0\"\nstate = \"{}\"\napi_key_env = \"NOVACRON_TEST_SERVE_KEY\"\n\n[console]\n{console}\n\n[[repo]]\nname = \"infra\"\nurl = \"{}\"\ninterval = \"1h\"\n",
        dir.join("state.db").display(),
        repo.display()
    );
    (ServeConfig::parse(&text, "test.toml").expect("config parses"), repo)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// The value of the cookie `name` a response sets, and the whole `Set-Cookie` line.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<(String, String)> {
    resp.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|line| {
        let value = line.strip_prefix(&format!("{name}="))?.split(';').next()?.to_string();
        Some((value, line.to_string()))
    })
}

/// The `value` of the hidden input `name` right after `after` in `html`.
fn hidden(html: &str, after: &str, name: &str) -> String {
    let from = html.find(after).unwrap_or_else(|| panic!("{after:?} not in {html}"));
    let marker = format!("name=\"{name}\" value=\"");
    let start = html[from..].find(&marker).map(|i| from + i + marker.len()).expect("the hidden input");
    html[start..start + html[start..].find('"').expect("closing quote")].to_string()
}

/// Signs in as `name` with `token`; returns the response of the POST.
async fn sign_in(http: &reqwest::Client, base: &str, name: &str, token: &str) -> reqwest::Response {
    let form = http.get(format!("{base}/signin")).send().await.expect("signin form");
    let (csrf, _) = set_cookie(&form, "novacron_csrf").expect("a pre-session CSRF cookie");
    let html = form.text().await.expect("html");
    assert_eq!(hidden(&html, "<form id=\"signin\"", "csrf"), csrf, "the form carries the cookie's token");
    http.post(format!("{base}/signin"))
        .header("Cookie", format!("novacron_csrf={csrf}"))
        .form(&[("name", name), ("token", token), ("csrf", csrf.as_str())])
        .send()
        .await
        .expect("signin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_signs_in_refuses_forged_posts_approves_as_the_person_pages_the_audit_log_and_streams_runs() {
    use novacron_reconcile::state::{AuditAction, AuditEntry, DriftRecord, StateDb, audit_append, audit_list, pending_approvals, record_drifts};
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, repo) = offline_config(dir.path(), "");
    let key = novacron_reconcile::git::redact(&repo.display().to_string());
    {
        let db = StateDb::open(&dir.path().join("state.db")).expect("state");
        let drift = DriftRecord {
            id: "d0123456789a".into(),
            address: "novacron_vm.web".into(),
            kind: "novacron_vm".into(),
            object_id: "vm-1".into(),
            severity: novacron_schemas::Severity::Critical,
            desired_hash: "sha256:a".into(),
            live_hash: "sha256:b".into(),
        };
        record_drifts(&db, &key, &[drift]).expect("seed a drift");
        for n in 0..120 {
            let entry = AuditEntry { actor: "seed".into(), action: AuditAction::Detect, repo: key.clone(), subject: format!("s{n}"), detail: json!({}) };
            audit_append(&db, entry).expect("seed the audit log");
        }
    }
    let serve = start(ServeSettings { config, api_key: "k".into(), admin_token: Some(ADMIN.to_string()) }).await.expect("serve starts");
    let base = format!("http://{}", serve.addr());
    let http = no_redirects();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while serve.service().repos[0].status().last_error.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the startup run never failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every console response carries the strict policy; the overview shows the failed repository.
    let page = http.get(&base).send().await.expect("overview");
    for (name, value) in
        [("content-security-policy", novacron_reconcile::serve::console::CSP), ("x-content-type-options", "nosniff"), ("referrer-policy", "same-origin")]
    {
        assert_eq!(page.headers().get(name).and_then(|v| v.to_str().ok()), Some(value), "{name}");
    }
    let html = page.text().await.expect("html");
    assert!(html.contains("<body data-page=\"overview\">") && html.contains("<article class=\"card\" id=\"repo-infra\" data-health=\"error\">"), "{html}");
    let css = http.get(format!("{base}/static/console.css")).send().await.expect("css");
    assert_eq!(css.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/css; charset=utf-8"));
    assert!(css.headers().get("cache-control").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("max-age=31536000")));
    assert!(css.headers().contains_key("content-security-policy"));
    let js = http.get(format!("{base}/static/console.js")).send().await.expect("js");
    assert_eq!(js.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/javascript; charset=utf-8"));

    // Filters: a bad value is a 400 naming the parameter and what it accepts.
    let bad = http.get(format!("{base}/repos/infra?status=drifted&severity=urgent")).send().await.expect("bad filter");
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.expect("html").contains("query parameter `severity` has an unknown value &quot;urgent&quot;; accepted values: critical"));
    assert_eq!(http.get(format!("{base}/repos/infra?status=drifted&severity=critical")).send().await.expect("filtered").status(), 200);
    assert_eq!(http.get(format!("{base}/repos/other")).send().await.expect("unknown repo").status(), 404);

    // The audit log: verified, 50 per page, newest first.
    let audit = http.get(format!("{base}/audit")).send().await.expect("audit").text().await.expect("html");
    assert!(audit.contains("<p class=\"verify\" data-ok=\"true\">"), "{audit}");
    assert_eq!(audit.matches("<tr class=\"entry\"").count(), 50);
    assert!(audit.contains("<tr class=\"entry\" data-seq=\"120\">") && audit.contains("<a rel=\"next\" href=\"/audit?page=2\">"));
    assert!(!audit.contains("rel=\"prev\""));
    let third = http.get(format!("{base}/audit?page=3")).send().await.expect("page 3").text().await.expect("html");
    assert_eq!(third.matches("<tr class=\"entry\"").count(), 20);
    assert!(third.contains("<tr class=\"entry\" data-seq=\"1\">") && third.contains("<a rel=\"prev\" href=\"/audit?page=2\">"));
    let bad = http.get(format!("{base}/audit?page=zero")).send().await.expect("bad page");
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.expect("html").contains("query parameter `page`"));

    // Sign-in: a forged form (no matching CSRF cookie) and a wrong token are refused.
    let forged = http.post(format!("{base}/signin")).form(&[("name", "Eve"), ("token", ADMIN), ("csrf", "guess")]).send().await.expect("forged");
    assert_eq!(forged.status(), 403);
    assert!(set_cookie(&forged, "novacron_session").is_none());
    let wrong = sign_in(&http, &base, "Eve", "not-the-token").await;
    assert_eq!(wrong.status(), 401);
    assert!(set_cookie(&wrong, "novacron_session").is_none());
    assert!(wrong.text().await.expect("html").contains("Wrong admin token."));
    let ok = sign_in(&http, &base, "Ada Lovelace", ADMIN).await;
    assert_eq!(ok.status(), 303);
    let (session, line) = set_cookie(&ok, "novacron_session").expect("a session cookie");
    assert!(session.len() >= 32 && session.chars().all(|c| c.is_ascii_hexdigit()), "{session}");
    assert_eq!(line, format!("novacron_session={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age=28800"));
    let cookie = format!("novacron_session={session}");

    let page = http.get(format!("{base}/repos/infra")).header("Cookie", &cookie).send().await.expect("repo page").text().await.expect("html");
    assert!(page.contains("<form class=\"approve\" method=\"post\" action=\"/repos/infra/approve\">"), "{page}");
    let csrf = hidden(&page, "<form class=\"approve\"", "csrf");
    assert_eq!(hidden(&page, "<form class=\"approve\"", "id"), "d0123456789a");

    // Forged approvals: no token, a wrong one, the right one without the session. Nothing approved.
    let db = StateDb::open(&dir.path().join("state.db")).expect("state");
    let approve = |cookie: Option<&str>, fields: Vec<(&'static str, String)>| {
        let mut req = http.post(format!("{base}/repos/infra/approve")).form(&fields);
        if let Some(c) = cookie {
            req = req.header("Cookie", c.to_string());
        }
        req.send()
    };
    for (who, fields) in [
        (Some(cookie.as_str()), vec![("id", "d0123456789a".to_string())]),
        (Some(cookie.as_str()), vec![("id", "d0123456789a".to_string()), ("csrf", "0".repeat(64))]),
        (None, vec![("id", "d0123456789a".to_string()), ("csrf", csrf.clone())]),
    ] {
        let refused = approve(who, fields).await.expect("approve");
        assert_eq!(refused.status(), 403);
        assert!(refused.text().await.expect("html").contains("nothing was done"));
    }
    assert_eq!(pending_approvals(&db, Some(&key)).expect("pending")[0].approved_by, None, "a refused POST approved nothing");

    // A real approval, followed live: the run it triggers is announced on /events.
    let mut events = http.get(format!("{base}/events")).send().await.expect("events");
    assert_eq!(events.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/event-stream"));
    let approved = approve(Some(&cookie), vec![("id", "d0123456789a".to_string()), ("csrf", csrf.clone())]).await.expect("approve");
    assert_eq!(approved.status(), 303);
    assert_eq!(approved.headers().get("location").and_then(|v| v.to_str().ok()), Some("/repos/infra"));
    assert_eq!(pending_approvals(&db, Some(&key)).expect("pending")[0].approved_by.as_deref(), Some("Ada Lovelace"));
    let last = audit_list(&db, Some(1)).expect("audit");
    assert_eq!((last[0].actor.as_str(), last[0].action.as_str()), ("Ada Lovelace", "approve"), "audited as the signed-in person");
    let page = http.get(format!("{base}/repos/infra")).header("Cookie", &cookie).send().await.expect("repo page").text().await.expect("html");
    assert!(page.contains("<p class=\"flash\">Approved d0123456789a (novacron_vm.web) as Ada Lovelace"), "{page}");
    let mut stream = String::new();
    let read = tokio::time::timeout(PATIENCE, async {
        while !stream.contains("event: run") {
            let chunk = events.chunk().await.expect("stream").expect("open");
            stream.push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    read.await.expect("a run event after the approval");
    assert!(stream.contains("event: run\ndata: {\"repo\":\"infra\",\"revision\":null,\"drifted\":0,\"ok\":false}"), "{stream}");

    // Sign-out needs the session's token too, then the session is gone.
    let refused = http.post(format!("{base}/signout")).header("Cookie", &cookie).form(&[("csrf", "x")]).send().await.expect("signout");
    assert_eq!(refused.status(), 403);
    let out = http.post(format!("{base}/signout")).header("Cookie", &cookie).form(&[("csrf", csrf.as_str())]).send().await.expect("signout");
    assert_eq!(out.status(), 303);
    let page = http.get(format!("{base}/repos/infra")).header("Cookie", &cookie).send().await.expect("repo page").text().await.expect("html");
    assert!(!page.contains("class=\"approve\"") && !page.contains("signed in as"));
    // The open event stream does not hold up the shutdown.
    tokio::time::timeout(PATIENCE, serve.shutdown()).await.expect("shutdown with an open /events stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_require_signin_every_console_page_needs_a_session_which_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, _) = offline_config(dir.path(), "require_signin = true\nsession_ttl = \"1s\"");
    let refused = start(ServeSettings { config: config.clone(), api_key: "k".into(), admin_token: None }).await.expect_err("needs an admin token");
    assert!(refused.to_string().contains("require_signin = true but NOVACRON_RECONCILE_ADMIN_TOKEN is not set"), "{refused}");

    let serve = start(ServeSettings { config, api_key: "k".into(), admin_token: Some(ADMIN.to_string()) }).await.expect("serve starts");
    let base = format!("http://{}", serve.addr());
    let http = no_redirects();
    for path in ["/", "/repos/infra", "/audit", "/events"] {
        let r = http.get(format!("{base}{path}")).send().await.expect("page");
        assert_eq!((r.status().as_u16(), r.headers().get("location").and_then(|v| v.to_str().ok())), (303, Some("/signin")), "{path}");
    }
    for path in ["/signin", "/static/console.css", "/static/console.js", "/healthz", "/api/status", "/metrics"] {
        assert_eq!(http.get(format!("{base}{path}")).send().await.expect("open").status(), 200, "{path}");
    }
    let ok = sign_in(&http, &base, "Ada", ADMIN).await;
    let (session, line) = set_cookie(&ok, "novacron_session").expect("session");
    assert!(line.ends_with("Max-Age=1"), "{line}");
    let cookie = format!("novacron_session={session}");
    let page = http.get(&base).header("Cookie", &cookie).send().await.expect("overview");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("signed in as <span class=\"signed-in\">Ada</span>"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = http.get(&base).header("Cookie", &cookie).send().await.expect("overview");
    assert_eq!(expired.status(), 303, "the session expired after its ttl");
    serve.shutdown().await;

    // Without an admin token, sign-in explains how to enable it and approvals are refused.
    let other = tempfile::tempdir().expect("tempdir");
    let (config, _) = offline_config(other.path(), "");
    let serve = start(ServeSettings { config, api_key: "k".into(), admin_token: None }).await.expect("serve starts");
    let base = format!("http://{}", serve.addr());
    let html = http.get(format!("{base}/signin")).send().await.expect("signin").text().await.expect("html");
    assert!(
        html.contains("Approvals from the browser are disabled") && html.contains("NOVACRON_RECONCILE_ADMIN_TOKEN") && !html.contains("<form id=\"signin\"")
    );
    let refused = http.post(format!("{base}/repos/infra/approve")).form(&[("id", "x"), ("csrf", "y")]).send().await.expect("approve");
    assert_eq!(refused.status(), 403);
    serve.shutdown().await;
}
