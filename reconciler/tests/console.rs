//! The web console of `serve` in a real headless Chromium: live drift without a reload, the
//! repository's diff and actor, sign-in and approval with CSRF, hostile values shown as text,
//! and screenshots of each page (kept by CI; `UPDATE_SCREENSHOTS=1` refreshes docs/images).

#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use novacron_client::{Client, ClientConfig, Kind};
use novacron_platform::{PlatformConfig, RunningPlatform, TEST_API_KEY};
use novacron_reconcile::serve::config::ServeConfig;
use novacron_reconcile::serve::{RunningServe, ServeSettings, start};
use serde_json::{Value, json};
use support::browser::{Browser, Page, screenshot_dir};
use support::git;

const ADMIN: &str = "console-admin-token-for-tests";
/// The requirement: a critical drift made out of band shows on an open overview within 2 s.
const LIVE_DRIFT_DEADLINE: Duration = Duration::from_secs(2);
/// How long anything else may take (generous: CI machines are slow).
const PATIENCE: Duration = Duration::from_secs(60);
/// Pages load and settle within this.
const PAGE_PATIENCE: Duration = Duration::from_secs(10);
const HOSTILE: &str = "<script>alert(1)</script>";
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

const MAIN_TF: &str = r#"
resource "novacron_network" "core" {
  name = "core"
  cidr = "10.60.0.0/24"
  firewall_rule {
    direction = "ingress"
    ports     = "22"
    cidr      = "10.0.0.0/8"
  }
}

resource "novacron_vm" "web" {
  name        = "web"
  cpu_cores   = 2
  memory_gb   = 4
  template_id = "tpl-ubuntu-24-04"
  network_id  = novacron_network.core.id
  metadata    = { team = "web" }
}
"#;

/// The platform with MAIN_TF's objects in sync, the repository, and `serve` with its console.
struct Console {
    platform: RunningPlatform,
    client: Client,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    net: String,
    vm: String,
    serve: Option<RunningServe>,
    base: String,
}

impl Console {
    async fn start() -> Console {
        let dir = tempfile::tempdir().expect("tempdir");
        let platform = novacron_platform::start(PlatformConfig::for_tests(dir.path().join("platform"))).await.expect("platform starts");
        let client = Client::new(ClientConfig::new(platform.endpoint(), TEST_API_KEY.1)).expect("client");
        let network = json!({"name": "core", "cidr": "10.60.0.0/24", "firewall_rules": [{"direction": "ingress", "ports": "22", "cidr": "10.0.0.0/8"}]});
        let net = client.create(Kind::Network, &network).await.expect("network").value.id().to_string();
        let vm = json!({"name": "web", "cpu_cores": 2, "memory_gb": 4, "template_id": "tpl-ubuntu-24-04", "network_id": net, "metadata": {"team": "web"}});
        let vm = client.create(Kind::Vm, &vm).await.expect("vm").value.id().to_string();
        let deadline = Instant::now() + PATIENCE;
        while client.get(Kind::Vm, &vm).await.expect("get vm").value.status() != Some("running") {
            assert!(Instant::now() < deadline, "the VM never got running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).expect("mkdir");
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("main.tf"), MAIN_TF).expect("write");
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "-q", "-m", "desired state"]);
        // Nothing is reverted without approval, so the low (metadata) drift stays on the page too.
        let config = format!(
            "endpoint = \"{}\"\nlisten = \"127.0.0.1:0\"\nstate = \"{}\"\n\n[console]\nrequire_signin = false\nsession_ttl = \"8h\"\nhistory_runs = 20\n\n[[repo]]\nname = \"infra\"\nurl = \"{}\"\nref = \"main\"\ninterval = \"1h\"\nauto_sync_max = \"none\"\n",
            platform.endpoint(),
            dir.path().join("state.db").display(),
            repo.display()
        );
        let config = ServeConfig::parse(&config, "console.toml").expect("the console config parses");
        let serve = start(ServeSettings { config, api_key: TEST_API_KEY.1.to_string(), admin_token: Some(ADMIN.to_string()) }).await.expect("serve starts");
        let base = format!("http://{}", serve.addr());
        Console { platform, client, http: reqwest::Client::new(), dir, net, vm, serve: Some(serve), base }
    }

    async fn status(&self) -> Value {
        let status: Value = self.http.get(format!("{}/api/status", self.base)).send().await.expect("status answers").json().await.expect("JSON");
        assert_eq!(status["event_feed"]["following"], true, "the event feed is followed: {status}");
        status["repos"][0].clone()
    }

    /// Polls `/api/status` until `check` holds for the repository; returns its entry.
    async fn wait_status(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status: Value = self.http.get(format!("{}/api/status", self.base)).send().await.expect("status").json().await.expect("JSON");
            let repo = &status["repos"][0];
            if status["event_feed"]["following"] == true && repo["running"] == false && check(repo) {
                return repo.clone();
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The id of the pending drift of `address`.
    async fn pending_id(&self, address: &str) -> String {
        let repo = self.status().await;
        let pending = repo["pending_approvals"].as_array().cloned().unwrap_or_default();
        let drift = pending.iter().find(|d| d["address"] == address).unwrap_or_else(|| panic!("no pending drift of {address}: {repo}"));
        drift["id"].as_str().expect("an id").to_string()
    }

    async fn firewall_cidr(&self) -> Value {
        let net = self.client.get(Kind::Network, &self.net).await.expect("get network");
        net.value.get("firewall_rules").map_or(Value::Null, |rules| rules[0]["cidr"].clone())
    }

    async fn stop(mut self) {
        if let Some(serve) = self.serve.take() {
            serve.shutdown().await;
        }
        self.platform.shutdown().await.expect("platform stops");
        drop(self.dir);
    }
}

/// Loads `path` of the console and checks which page it is.
async fn open(page: &Page, console: &Console, path: &str, kind: &str) {
    page.goto(&format!("{}{path}", console.base)).await.unwrap_or_else(|e| panic!("{path} loads: {e}"));
    let shown = page.eval("document.body.dataset.page").await.expect("eval");
    assert_eq!(shown, json!(kind), "{path} is the {kind} page");
}

/// A screenshot of the page (up to 2,400 px tall) as `<target>/screenshots/console-<name>.png`.
async fn shoot(page: &Page, name: &str) -> PathBuf {
    let path = screenshot_dir().join(format!("console-{name}.png"));
    page.screenshot_full(&path, 2400.0).await.expect("screenshot");
    path
}

/// With UPDATE_SCREENSHOTS=1, copies the desktop screenshots to docs/images/console-<name>.png.
fn update_docs_images(shots: &[(&str, PathBuf)]) {
    if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/images");
        std::fs::create_dir_all(&images).expect("mkdir docs/images");
        for (name, shot) in shots {
            std::fs::copy(shot, images.join(format!("console-{name}.png"))).expect("copy the screenshot");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_live_drift_diff_and_actor_approves_with_csrf_and_renders_hostile_values_as_text() {
    let console = Console::start().await;
    console.wait_status("the startup reconcile", |r| r["summary"]["in_sync"] == 2).await;
    let browser = Browser::launch().await;
    let page = browser.new_page().await.expect("a tab");
    page.set_viewport(DESKTOP.0, DESKTOP.1).await.expect("viewport");

    // Overview: a critical drift made out of band appears within 2 s, without a reload.
    open(&page, &console, "/", "overview").await;
    page.eval("window.__marker = 1").await.expect("eval");
    page.wait_for("document.body.dataset.live === 'on'", PAGE_PATIENCE).await.expect("the page's event stream opens");
    let critical = "document.querySelector('#repo-infra [data-severity=critical]').textContent.trim()";
    assert_eq!(page.eval(critical).await.expect("the infra card counts critical drift"), json!("0"));
    let opened = json!({"firewall_rules": [{"direction": "ingress", "ports": "22", "cidr": "0.0.0.0/0"}]});
    let changed = Instant::now();
    console.client.patch(Kind::Network, &console.net, &opened, None).await.expect("open the firewall out of band");
    page.wait_for(&format!("{critical} === '1'"), LIVE_DRIFT_DEADLINE).await.expect("the critical drift shows within 2 s");
    eprintln!("the critical drift showed on the open overview after {:.0?}", changed.elapsed());
    assert_eq!(page.eval("window.__marker").await.expect("eval"), json!(1), "the overview was not reloaded");
    assert_eq!(page.eval("document.querySelector('#repo-infra').dataset.health").await.expect("eval"), json!("drifting"));
    assert_eq!(page.eval("document.querySelectorAll('#repo-infra svg.sparkline').length").await.expect("eval"), json!(1));

    // A hostile metadata value (names may not hold `<`, metadata values may).
    console.client.patch(Kind::Vm, &console.vm, &json!({"metadata": {"team": HOSTILE}}), None).await.expect("hostile metadata");
    console.wait_status("both drifts recorded", |r| r["pending_approvals"].as_array().is_some_and(|p| p.len() == 2)).await;
    let overview = shoot(&page, "overview").await;
    page.set_viewport(PHONE.0, PHONE.1).await.expect("phone viewport");
    shoot(&page, "overview-phone").await;
    page.set_viewport(DESKTOP.0, DESKTOP.1).await.expect("viewport");

    // The repository page: the diff of the firewall, who changed it, the hostile value as text.
    open(&page, &console, "/repos/infra", "repo").await;
    let row = "document.querySelector('tr.change[data-address=\"novacron_network.core\"]')";
    let cell = |class: &str| format!("{row}.querySelector('td.{class}').textContent");
    let path = page.eval(&cell("path")).await.expect("a diff row for the network");
    assert!(path.as_str().is_some_and(|p| p.contains("firewall")), "{path}");
    let desired = page.eval(&cell("desired")).await.expect("eval");
    let live = page.eval(&cell("live")).await.expect("eval");
    assert!(
        desired.as_str().is_some_and(|d| d.contains("10.0.0.0/8")) && live.as_str().is_some_and(|l| l.contains("0.0.0.0/0")),
        "desired {desired}, live {live}"
    );
    assert_eq!(
        page.eval("document.querySelector('tr.resource[data-address=\"novacron_network.core\"]').dataset.severity")
            .await
            .expect("a resource row for the network"),
        json!("critical")
    );
    let actors = page.eval("[...document.querySelectorAll('span.actor')].map(e => e.textContent.trim())").await.expect("eval");
    assert!(actors.as_array().is_some_and(|a| a.contains(&json!(TEST_API_KEY.0))), "the out-of-band actor is named: {actors}");
    assert!(page.eval("document.querySelectorAll('time.changed-at').length > 0").await.expect("eval") == json!(true));
    let text = page.eval("document.body.textContent").await.expect("eval");
    assert!(text.as_str().is_some_and(|t| t.contains(HOSTILE)), "the hostile value is shown as text");
    let inline = page.eval("[...document.scripts].filter(s => !s.src || s.textContent.trim() !== '').length").await.expect("eval");
    assert_eq!(inline, json!(0), "only the console's own external script is on the page");
    let scripts = page.eval("[...document.scripts].map(s => new URL(s.src).origin)").await.expect("eval");
    assert_eq!(scripts, json!([console.base]), "one script, the console's own");
    assert!(page.dialogs_opened().is_empty(), "no alert ran");
    let repo_shot = shoot(&page, "repo").await;

    // Sign in, then approve the critical drift from its form.
    open(&page, &console, "/signin", "signin").await;
    let signin = shoot(&page, "signin").await;
    page.fill("#signin input[name=name]", "alice").await.expect("fill name");
    page.fill("#signin input[name=token]", ADMIN).await.expect("fill token");
    page.click_and_wait("#signin [type=submit]").await.expect("sign in");
    let critical_id = console.pending_id("novacron_network.core").await;
    let metadata_id = console.pending_id("novacron_vm.web").await;
    open(&page, &console, "/repos/infra", "repo").await;
    let form = format!("form.approve[action='/repos/infra/approve']:has(input[name=id][value='{critical_id}'])");
    assert_eq!(
        page.eval(&format!("document.querySelector(\"{form} input[name=csrf]\").value.length > 0")).await.expect("the form has a csrf input"),
        json!(true)
    );
    page.click_and_wait(&format!("{form} button[type=submit]")).await.expect("approve");
    let flash = page.eval("document.querySelector('p.flash').textContent").await.expect("a flash after approving");
    assert!(flash.as_str().is_some_and(|f| !f.trim().is_empty()), "{flash}");
    let deadline = Instant::now() + PATIENCE;
    while console.firewall_cidr().await != json!("10.0.0.0/8") {
        assert!(Instant::now() < deadline, "the approved revert never closed the firewall");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A forged approval: the session cookie (HttpOnly, so read over CDP) without the CSRF token.
    let cookie = page.cookie_header().await.expect("cookies");
    assert!(!cookie.is_empty(), "signed in means a session cookie");
    let forged = console
        .http
        .post(format!("{}/repos/infra/approve", console.base))
        .header(reqwest::header::COOKIE, cookie)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("id={metadata_id}"))
        .send()
        .await
        .expect("the forged post is answered");
    assert_eq!(forged.status(), 403, "a post without the CSRF token is refused");
    let repo = console.status().await;
    let metadata = repo["pending_approvals"].as_array().and_then(|p| p.iter().find(|d| d["id"] == metadata_id.as_str()).cloned());
    assert!(metadata.is_some_and(|d| d["approved_by"].is_null()), "the forged post approved nothing: {repo}");

    // The audit log names alice and verifies.
    open(&page, &console, "/audit", "audit").await;
    page.wait_for("document.querySelector('p.verify').dataset.ok === 'true'", PAGE_PATIENCE).await.expect("the audit chain verifies");
    let approvals = "[...document.querySelectorAll('tr.entry')].filter(r => r.textContent.includes('alice') && r.textContent.includes('approve')).length";
    assert!(page.eval(approvals).await.expect("eval").as_u64().is_some_and(|n| n >= 1), "the audit log names alice as the approver");
    let audit = shoot(&page, "audit").await;

    update_docs_images(&[("overview", overview), ("repo", repo_shot), ("audit", audit), ("signin", signin)]);
    drop(browser);
    console.stop().await;
}
