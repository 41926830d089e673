//! Three-way GitOps end to end with the real Terraform, the real platform, a real git remote and
//! the recording forge: commits roll out through Terraform, out-of-band changes are healed as
//! drift, the two are never confused, and both sides moving is a conflict for a person.

#[allow(dead_code)]
mod support;

use novacron_client::Kind;
use novacron_platform::TEST_API_KEY;
use novacron_reconcile::report::ThreeWay;
use novacron_reconcile::state::{AuditAction, StateDb, audit_list, audit_verify, pending_plans};
use novacron_reconcile::sync::{AutoApplyMax, RolloutOutcome, RunnerSettings, SyncOptions, SyncOutcome, SyncReport, run_sync, terraform_runner};
use serde_json::json;
use support::{Env, MockForge};

const BASE: &str = r#"terraform {
  required_providers {
    novacron = { source = "novacron/novacron" }
  }
}

resource "novacron_network" "core" {
  name = "core"
  cidr = "10.30.0.0/24"
  firewall_rule {
    direction = "ingress"
    ports     = "22"
    cidr      = "10.0.0.0/8"
  }
}

resource "novacron_vm" "web" {
  name        = "web"
  cpu_cores   = 2
  memory_gb   = MEMORY
  template_id = "tpl-ubuntu-24-04"
  network_id  = novacron_network.core.id
  metadata    = { team = "TEAM" }
}
"#;

const EXTRA: &str = r#"
resource "novacron_vm" "extra" {
  name        = "extra"
  cpu_cores   = 1
  memory_gb   = 2
  template_id = "tpl-ubuntu-24-04"
  network_id  = novacron_network.core.id
}
"#;

fn config(memory: u32, team: &str, extra: bool, open_firewall: bool) -> String {
    let mut text = BASE.replace("MEMORY", &memory.to_string()).replace("TEAM", team);
    if open_firewall {
        text = text.replace("cidr      = \"10.0.0.0/8\"", "cidr      = \"0.0.0.0/0\"");
    }
    if extra {
        text.push_str(EXTRA);
    }
    text
}

struct Rollouts {
    env: Env,
    forge: MockForge,
    db: StateDb,
    settings: RunnerSettings,
    terraform: std::path::PathBuf,
}

impl Rollouts {
    fn tfstate(&self) -> std::path::PathBuf {
        self.env.dir().join("tf/terraform.tfstate")
    }

    fn options(&self, apply_max: AutoApplyMax, prune: bool) -> SyncOptions {
        let mut o = self.env.sync_options(true);
        o.drift.tfstate = Some(self.tfstate());
        o.thresholds.auto_apply_max = apply_max;
        o.thresholds.prune = prune;
        o
    }

    async fn sync(&self, apply_max: AutoApplyMax, prune: bool) -> SyncReport {
        let runner = terraform_runner(&self.settings).expect("runner");
        let forge = self.forge.forge();
        let report = run_sync(&self.options(apply_max, prune), &self.env.api(), &self.db, Some(&forge), Some(runner.as_ref())).await.expect("sync runs");
        assert!(report.errors.is_empty(), "sync errors: {:?}", report.errors);
        report
    }

    fn engineer_plan_is_clean(&self, main_tf: &str, step: &str) {
        let dir = self.env.dir().join(format!("engineer-{step}"));
        // The provider from the same filesystem mirror the reconciler laid out for its own runs.
        let rc = self.settings.cache_dir.join("rollout/cli.tfrc");
        let (code, text) = support::terraform::engineer_plan(&self.terraform, &rc, &dir, main_tf, &self.tfstate(), &self.env.endpoint, TEST_API_KEY.1);
        assert_eq!(code, 0, "{step}: the engineer's terraform plan must show no changes:\n{text}");
    }

    async fn vm(&self, name: &str) -> Option<serde_json::Value> {
        let found = self.env.client().find_by_name(Kind::Vm, name).await.expect("list");
        found.map(|o| serde_json::Value::Object(o.into_map()))
    }

    fn audits(&self, action: AuditAction) -> usize {
        audit_list(&self.db, None).expect("audit").iter().filter(|e| e.action == action.as_str()).count()
    }
}

fn outcome(report: &SyncReport) -> &RolloutOutcome {
    &report.rollout.as_ref().expect("a rollout this run").outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_roll_out_through_terraform_drift_is_healed_and_a_conflict_waits_for_a_person() {
    let Some((terraform, provider)) = support::terraform::tools("rollout scenario") else { return };
    let first = config(4, "web", false, false);
    let env = Env::start_with(&first).await;
    let forge = MockForge::start().await;
    let db = StateDb::open(&env.state_path()).expect("state db");
    let settings = RunnerSettings {
        terraform: Some(terraform.clone()),
        provider: Some(provider.clone()),
        cache_dir: env.dir().join("tfcache"),
        endpoint: env.endpoint.clone(),
        api_key: TEST_API_KEY.1.to_string(),
        ca_file: None,
    };
    let started = std::time::Instant::now();

    let mut t = Rollouts { env, forge, db, settings, terraform };

    // The first revision on an empty state: everything is a create (medium), applied at the defaults.
    let r = t.sync(AutoApplyMax::Medium, false).await;
    assert_eq!(outcome(&r), &RolloutOutcome::Applied, "{:?}", r.rollout);
    assert!(t.vm("web").await.is_some(), "web created by the rollout");
    t.engineer_plan_is_clean(&first, "initial");

    // A commit adds a VM while someone changes web's metadata out of band: the commit rolls out,
    // the out-of-band change goes the drift way (reverted, its actor named), no pull request.
    let second = config(4, "web", true, false);
    let rev = t.env.commit_main_tf(&second, "add extra");
    let web_id = t.vm("web").await.expect("web")["id"].as_str().expect("id").to_string();
    t.env.patch(Kind::Vm, &web_id, json!({"metadata": {"team": "ops"}})).await;
    let r = t.sync(AutoApplyMax::Medium, false).await;
    assert_eq!(outcome(&r), &RolloutOutcome::Applied, "{:?}", r.rollout);
    let rollout = r.rollout.as_ref().expect("rollout");
    assert_eq!(rollout.revision, rev);
    assert_eq!(rollout.changes.iter().map(|c| (c.address.as_str(), c.action.as_str())).collect::<Vec<_>>(), [("novacron_vm.extra", "create")]);
    let web = r.actions.iter().find(|a| a.address == "novacron_vm.web").expect("web drift acted on");
    assert_eq!(web.outcome, SyncOutcome::Reverted);
    assert_eq!(web.changed_by.as_ref().map(|c| c.actor.as_str()), Some(TEST_API_KEY.0), "the out-of-band actor is named");
    assert!(t.vm("extra").await.is_some(), "extra created");
    assert_eq!(t.vm("web").await.expect("web")["metadata"]["team"], "web", "the drift was reverted");
    let requests = t.forge.requests();
    assert!(!requests.iter().any(|q| q.method == "POST" && q.path.ends_with("/pulls")), "no pull request removes the new VM: {requests:?}");
    let status = requests.iter().find(|q| q.path.ends_with(&format!("/statuses/{rev}"))).expect("a commit status for the revision");
    assert_eq!((status.body["state"].as_str(), status.body["context"].as_str()), (Some("success"), Some("novacron/rollout")));
    t.engineer_plan_is_clean(&second, "extra");

    // More memory with --auto-apply-max low: a pending plan, the same on a repeated run, applied
    // once approved (through the CLI).
    let third = config(8, "web", true, false);
    t.env.commit_main_tf(&third, "more memory");
    let r = t.sync(AutoApplyMax::Low, false).await;
    let RolloutOutcome::Pending(why) = outcome(&r) else { panic!("pending: {:?}", r.rollout) };
    assert!(why.contains("awaiting approval"), "{why}");
    let plan_id = r.rollout.as_ref().expect("rollout").plan_id.clone();
    let plans_before = t.audits(AuditAction::Plan);
    let again = t.sync(AutoApplyMax::Low, false).await;
    assert_eq!(again.rollout.as_ref().expect("rollout").plan_id, plan_id, "the same plan");
    assert_eq!(t.audits(AuditAction::Plan), plans_before, "a repeated run records nothing new");
    assert_eq!(t.vm("web").await.expect("web")["memory_gb"], 4, "not applied before approval");
    let listed = t.env.bin(&["approvals", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&plan_id), "approvals list shows the plan");
    let approved = t.env.bin(&["approve", &plan_id, "--actor", "alice"]);
    assert!(approved.status.success(), "{}", String::from_utf8_lossy(&approved.stderr));
    let r = t.sync(AutoApplyMax::Low, false).await;
    assert_eq!(outcome(&r), &RolloutOutcome::Applied, "{:?}", r.rollout);
    assert_eq!(r.rollout.as_ref().expect("rollout").approved_by.as_deref(), Some("alice"));
    assert_eq!(t.vm("web").await.expect("web")["memory_gb"], 8);
    assert!(pending_plans(&t.db, None).expect("plans").is_empty());

    // Opening the firewall is critical: never applied by itself, even with --auto-apply-max high.
    let fourth = config(8, "web", true, true);
    let rev = t.env.commit_main_tf(&fourth, "open ssh to the world");
    let r = t.sync(AutoApplyMax::High, false).await;
    let rollout = r.rollout.as_ref().expect("rollout");
    assert!(matches!(rollout.outcome, RolloutOutcome::Pending(_)), "{rollout:?}");
    assert_eq!(rollout.severity, Some(novacron_schemas::Severity::Critical));
    let net = t.env.client().find_by_name(Kind::Network, "core").await.expect("list").expect("core");
    assert_eq!(net.get("firewall_rules").expect("rules")[0]["cidr"], "10.0.0.0/8", "not applied");
    let comment = t.forge.requests().into_iter().find(|q| q.path.ends_with(&format!("/commits/{rev}/comments"))).expect("the graded plan as a commit comment");
    assert!(comment.body["body"].as_str().expect("body").contains("critical"));
    let id = rollout.plan_id.clone();
    assert!(t.env.bin(&["approve", &id]).status.success());
    assert_eq!(outcome(&t.sync(AutoApplyMax::High, false).await), &RolloutOutcome::Applied);

    // Both sides change web: a conflict; nothing is applied or reverted.
    let fifth = config(16, "web", true, true);
    t.env.commit_main_tf(&fifth, "even more memory");
    t.env.patch(Kind::Vm, &web_id, json!({"metadata": {"team": "ops"}})).await;
    let r = t.sync(AutoApplyMax::High, false).await;
    let web = r.report.resources.iter().find(|e| e.address == "novacron_vm.web").expect("web");
    assert_eq!(web.three_way, ThreeWay::Conflict);
    assert!(matches!(outcome(&r), RolloutOutcome::Pending(why) if why.contains("conflict")), "{:?}", r.rollout);
    assert!(r.actions.iter().all(|a| a.address != "novacron_vm.web"), "no revert on a conflict");
    let live = t.vm("web").await.expect("web");
    assert_eq!((live["memory_gb"].clone(), live["metadata"]["team"].clone()), (json!(8), json!("ops")));

    // The engineer settles it by codifying the live values (as a merged codify pull request does):
    // desired equals live, the state is behind, `apply -refresh-only` brings it up to date.
    let sixth = config(8, "ops", true, true);
    t.env.commit_main_tf(&sixth, "codify the live metadata");
    let refreshes = t.audits(AuditAction::Refresh);
    let r = t.sync(AutoApplyMax::High, false).await;
    assert!(t.audits(AuditAction::Refresh) > refreshes, "the refresh is audited");
    assert!(r.report.resources.iter().all(|e| e.three_way == ThreeWay::InSync), "{:?}", r.report.summary.three_way);
    t.engineer_plan_is_clean(&sixth, "codified");

    // Removing a resource from Git deletes it only with prune.
    let seventh = config(8, "ops", false, true);
    t.env.commit_main_tf(&seventh, "remove extra");
    let r = t.sync(AutoApplyMax::High, false).await;
    assert!(matches!(outcome(&r), RolloutOutcome::Pending(why) if why.contains("prune")), "{:?}", r.rollout);
    assert!(t.vm("extra").await.is_some(), "not deleted without prune");
    let r = t.sync(AutoApplyMax::High, true).await;
    assert_eq!(outcome(&r), &RolloutOutcome::Applied, "{:?}", r.rollout);
    assert!(t.vm("extra").await.is_none(), "deleted with prune");
    t.engineer_plan_is_clean(&seventh, "pruned");

    assert_eq!(audit_verify(&t.db).expect("verify").first_bad, None, "the audit chain is intact");
    eprintln!("rollout scenario: {:.1} s", started.elapsed().as_secs_f64());
    t.env.stop().await;
}

/// Every hop over HTTPS with one private CA: the platform (API and Terraform state backend) and
/// `serve` (webhooks, API) each serve a certificate it signed. A signed push webhook over HTTPS
/// rolls a commit out through Terraform; plain HTTP gets no answer from serve's TLS port; SIGHUP
/// renews serve's certificate for new connections, and the pooled client goes on; after serve stops,
/// the `sync` command rolls the next commit out over HTTPS too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_a_signed_webhook_rolls_a_commit_out_and_sighup_renews_the_certificate() {
    use novacron_reconcile::serve::webhook::signature_header;
    use novacron_tls::testing::{cert_der, served_certificate};
    use std::ffi::OsStr;
    use std::time::{Duration, Instant};

    const WEBHOOK: &str = "https-webhook-secret";
    let patience = Duration::from_secs(120);
    let Some((terraform, provider)) = support::terraform::tools("HTTPS rollout scenario") else { return };
    let mut env = support::Env::start_https(&config(4, "web", false, false)).await;
    assert!(env.endpoint.starts_with("https://127.0.0.1:"), "{}", env.endpoint);
    let pki = env.pki.as_ref().expect("an HTTPS platform");
    let ca_file = pki.ca_file();
    let serve_files = pki.local("serve");
    let config_file = env.dir().join("serve.toml");
    std::fs::write(
        &config_file,
        format!(
            "endpoint = \"{}\"\nlisten = \"127.0.0.1:0\"\nstate = \"{}\"\napi_key_env = \"NOVACRON_TEST_KEY\"\nca_file = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\n[[repo]]\nname = \"infra\"\nurl = \"{}\"\nref = \"main\"\ninterval = \"1h\"\nworkspace = \"prod\"\nwebhook_secret_env = \"NOVACRON_TEST_WEBHOOK\"\n",
            env.endpoint,
            env.state_path().display(),
            ca_file.display(),
            serve_files.cert.display(),
            serve_files.key.display(),
            env.repo_url()
        ),
    )
    .expect("config");
    let envs = [
        ("NOVACRON_TEST_KEY", OsStr::new(TEST_API_KEY.1)),
        ("NOVACRON_TEST_WEBHOOK", OsStr::new(WEBHOOK)),
        ("NOVACRON_TERRAFORM", terraform.as_os_str()),
        ("NOVACRON_PROVIDER", provider.as_os_str()),
    ];
    let (mut serve, addr) = support::spawn_serve(&config_file, &envs, &[TEST_API_KEY.1, WEBHOOK]);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_file).expect("read CA")).expect("CA");
    let https = reqwest::Client::builder().add_root_certificate(ca).build().expect("client");
    let base = format!("https://{addr}");

    // The first reconcile rolls main out through Terraform into the platform's state, over HTTPS.
    let deadline = Instant::now() + patience;
    while env.client().terraform_state("prod").await.ok().flatten().is_none() || env.client().find_by_name(Kind::Vm, "web").await.expect("list").is_none() {
        assert!(Instant::now() < deadline, "main was never rolled out over HTTPS");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let health = https.get(format!("{base}/healthz")).send().await.expect("HTTPS answers");
    assert_eq!(health.status(), 200);
    let plain = reqwest::Client::new().get(format!("http://{addr}/healthz")).timeout(Duration::from_secs(10)).send().await;
    assert!(plain.is_err(), "plain HTTP must get no HTTP answer on the TLS port: {plain:?}");

    // SIGHUP renews the certificate for new connections; the pooled one goes on.
    assert_eq!(served_certificate(&addr, &ca_file).await, cert_der(&serve_files.cert));
    let renewed = pki.local("serve");
    assert_eq!(renewed, serve_files, "reissued into the same files");
    let renewed_der = cert_der(&renewed.cert);
    let hup = std::process::Command::new("kill").args(["-HUP", &serve.id().to_string()]).status().expect("`kill` runs");
    assert!(hup.success());
    let deadline = Instant::now() + patience;
    while served_certificate(&addr, &ca_file).await != renewed_der {
        assert!(Instant::now() < deadline, "SIGHUP did not renew the certificate");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A commit and its signed push webhook, over HTTPS (the pooled connection from before the
    // reload, or a new one with the renewed certificate: either must work).
    let revision = env.commit_main_tf(&config(8, "web", false, false), "more memory");
    let body = json!({"ref": "refs/heads/main", "repository": {"full_name": "acme/infra", "clone_url": env.repo_url(), "default_branch": "main"}}).to_string();
    let answer = https
        .post(format!("{base}/hooks/github"))
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "https-1")
        .header("X-Hub-Signature-256", signature_header(WEBHOOK.as_bytes(), body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("webhook over HTTPS");
    assert_eq!(answer.status(), 202, "{:?}", answer.text().await);
    let deadline = Instant::now() + patience;
    while live_memory(&env, "web").await != Some(8) {
        assert!(Instant::now() < deadline, "the commit {revision} never rolled out");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The run records its revision when it finishes, which may be after the VM changed.
    let deadline = Instant::now() + patience;
    loop {
        let status: serde_json::Value = https.get(format!("{base}/api/status")).send().await.expect("status").json().await.expect("json");
        if status["repos"][0]["revision"] == json!(revision) && status["repos"][0]["running"] == json!(false) {
            break;
        }
        assert!(Instant::now() < deadline, "the webhook's run never finished on {revision}: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let term = std::process::Command::new("kill").args(["-TERM", &serve.id().to_string()]).status().expect("`kill` runs");
    assert!(term.success());
    assert!(tokio::task::block_in_place(|| serve.wait()).expect("wait").success(), "serve exits cleanly");

    // The sync command over HTTPS: --ca-file (NOVACRON_CA_FILE) for the API, and for the state
    // backend of its Terraform run.
    env.commit_main_tf(&config(6, "web", false, false), "a little less memory");
    let out = env.bin_sync(
        &["--workspace", "prod"],
        &[("NOVACRON_TERRAFORM", terraform.to_str().expect("utf-8")), ("NOVACRON_PROVIDER", provider.to_str().expect("utf-8"))],
    );
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "sync over HTTPS: {text}");
    assert_eq!(live_memory(&env, "web").await, Some(6), "sync rolled the commit out: {text}");
    env.stop().await;
}

async fn live_memory(env: &support::Env, name: &str) -> Option<u64> {
    env.client().find_by_name(Kind::Vm, name).await.expect("list").and_then(|vm| vm.into_map().get("memory_gb").and_then(|m| m.as_u64()))
}
