//! Rollouts through the real Terraform 1.15.5 and the real provider against the real platform, with timings printed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use novacron_platform::{PlatformConfig, RunningPlatform, TEST_API_KEY};
use novacron_schemas::{Kind, Severity};
use serde_json::Value;

use super::*;
use crate::source::MemoryTree;

pub(super) const PROVIDER_BLOCK: &str = "terraform {\n  required_providers {\n    novacron = { source = \"novacron/novacron\" }\n  }\n}\n";

const USER_DATA: &str = "#cloud-config\npassword: live-test-very-secret\n";

pub(super) fn main_tf(memory_gb: u32, team: &str) -> String {
    format!(
        r#"resource "novacron_network" "core" {{
  name = "core"
  cidr = "10.40.0.0/24"
  firewall_rule {{
    direction = "ingress"
    ports     = "22"
  }}
}}

resource "novacron_vm" "web" {{
  name        = "web"
  cpu_cores   = 2
  memory_gb   = {memory_gb}
  template_id = "tpl-ubuntu-24-04"
  network_id  = novacron_network.core.id
  metadata    = {{ env = "prod", team = "{team}" }}
  user_data   = {user_data:?}
}}
"#,
        user_data = USER_DATA
    )
}

#[path = "../../../acceptance/src/install.rs"]
mod install;

/// Terraform 1.15.5 (installed on first use) and the provider binary; `None` (printing why) only
/// when `NOVACRON_ACCEPTANCE=0` switches the Terraform tests off. A failed install fails the test.
fn tools() -> Option<(PathBuf, PathBuf)> {
    if std::env::var("NOVACRON_ACCEPTANCE").as_deref() == Ok("0") {
        eprintln!("skipped: NOVACRON_ACCEPTANCE=0 switches the Terraform tests off");
        return None;
    }
    let terraform = match std::env::var_os(TERRAFORM_ENV) {
        Some(t) => PathBuf::from(t),
        None => install::installed_terraform("1.15.5").unwrap_or_else(|e| panic!("{e}")),
    };
    // Test binaries live in target/<profile>/deps; the provider binary one level up.
    let exe = std::env::current_exe().expect("current_exe");
    let provider = exe.parent().and_then(Path::parent).map(|d| d.join(PROVIDER_BINARY)).unwrap_or_default();
    assert!(terraform.is_file(), "{TERRAFORM_ENV}={} is not a file", terraform.display());
    assert!(provider.is_file(), "{} is missing: run `cargo build -p terraform-provider-novacron` (cargo test --workspace builds it)", provider.display());
    Some((terraform, provider))
}

pub(super) struct Live {
    pub(super) platform: RunningPlatform,
    pub(super) settings: TerraformSettings,
    pub(super) dir: tempfile::TempDir,
}

impl Live {
    pub(super) async fn start(provision_delay: Duration) -> Option<Live> {
        let (terraform, provider) = tools()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = PlatformConfig::for_tests(dir.path().join("platform"));
        config.provision_delay = provision_delay;
        let platform = novacron_platform::start(config).await.expect("platform starts");
        let mut settings = TerraformSettings::new(
            dir.path().join("cache"),
            platform.endpoint(),
            TEST_API_KEY.1.to_string(),
            Backend::LocalFile(dir.path().join("state/terraform.tfstate")),
        );
        settings.binary = Some(terraform);
        settings.provider = Some(provider);
        Some(Live { platform, settings, dir })
    }

    pub(super) fn tree(files: &[(&str, &str)]) -> MemoryTree {
        MemoryTree::new(files.iter().copied())
    }

    pub(super) async fn get(&self, path: &str) -> Value {
        let response =
            reqwest::Client::new().get(format!("{}{path}", self.platform.endpoint())).bearer_auth(TEST_API_KEY.1).send().await.expect("platform answers");
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.json().await.expect("json")
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.platform.endpoint()))
            .bearer_auth(TEST_API_KEY.1)
            .json(&body)
            .send()
            .await
            .expect("platform answers");
        assert!(response.status().is_success(), "POST {path}: {}", response.status());
        response.json().await.expect("json")
    }

    fn state_file(&self) -> PathBuf {
        self.dir.path().join("state/terraform.tfstate")
    }
}

pub(super) async fn timed<T>(label: &str, f: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = f.await;
    eprintln!("timing: {label:<28} {:>7.0} ms", started.elapsed().as_secs_f64() * 1000.0);
    out
}

/// No error, however it came about, carries the API key.
pub(super) fn no_key(e: &RolloutError) -> String {
    let text = e.to_string();
    assert!(!text.contains(TEST_API_KEY.1) && !format!("{e:?}").contains(TEST_API_KEY.1), "{text}");
    assert!(!text.contains('\n'), "one line: {text:?}");
    text
}

#[tokio::test]
async fn plan_apply_stale_plan_import_and_rejected_config_through_real_terraform() {
    let Some(live) = Live::start(Duration::from_millis(50)).await else { return };
    let s = &live.settings;
    let rev1 = main_tf(4, "web");
    let tree = Live::tree(&[("infra/providers.tf", PROVIDER_BLOCK), ("infra/main.tf", &rev1)]);

    // Revision 1: create a network and a VM.
    let wc = prepare(s, "prod", &tree, "infra").expect("prepare");
    assert_eq!(timed("init (cold)", wc.init()).await.expect("init"), InitOutcome::Ran);
    let saved = timed("plan + show (2 creates)", wc.plan()).await.expect("plan");
    let file = live.dir.path().join("show.tfplan");
    std::fs::write(&file, &saved.bytes).expect("write plan");
    timed("show -json alone", wc.show(&file)).await.expect("show");
    let got: Vec<(&str, Action, Option<&str>)> = saved.plan.changes.iter().map(|c| (c.address.as_str(), c.action, c.name.as_deref())).collect();
    assert_eq!(got, [("novacron_network.core", Action::Create, Some("core")), ("novacron_vm.web", Action::Create, Some("web"))]);
    let ud = saved.plan.changes[1].attributes.iter().find(|a| a.name == "user_data").expect("user_data planned");
    assert!(ud.sensitive && ud.after == ChangeValue::Sensitive, "{ud:?}");
    assert!(!format!("{:?}{}", saved.plan, saved.plan.render()).contains("live-test-very-secret"));
    assert!(!saved.bytes.windows(TEST_API_KEY.1.len()).any(|w| w == TEST_API_KEY.1.as_bytes()), "the saved plan holds no API key");
    let grade = grade_plan(&saved.plan);
    assert_eq!((grade.severity, grade.to_string()), (Some(CREATE_SEVERITY), "2 to add: 2 medium".to_string()));

    let pids = Mutex::new(Vec::new());
    let record = |pid: u32| pids.lock().expect("pids").push(pid);
    timed("apply saved plan (2 creates)", wc.apply_saved(&saved.bytes, &record)).await.expect("apply");
    assert_eq!(pids.lock().expect("pids").len(), 1, "the apply's pid was handed out");
    let vms = live.get("/v1/vms?name=web").await;
    let vm_id = vms["items"][0]["id"].as_str().expect("the VM exists on the platform").to_string();
    let state = std::fs::read_to_string(live.state_file()).expect("local state written");
    assert!(state.contains(&vm_id), "the state records the VM");

    // The same revision again (the next step of a rollout): init has nothing to do.
    let wc = prepare(s, "prod", &tree, "infra").expect("prepare rev1 again");
    assert_eq!(timed("init (same inputs: skipped)", wc.init()).await.expect("init"), InitOutcome::Skipped);
    let again = wc.plan().await.expect("plan after a skipped init");
    assert!(!again.plan.has_changes(), "{}", again.plan.render());

    // Revision 2: a sizing and a label change, graded by the schema.
    let rev2 = main_tf(8, "platform");
    let tree2 = Live::tree(&[("infra/providers.tf", PROVIDER_BLOCK), ("infra/main.tf", &rev2)]);
    let wc = prepare(s, "prod", &tree2, "infra").expect("prepare rev2");
    assert_eq!(timed("init (warm)", wc.init()).await.expect("init warm"), InitOutcome::Ran);
    let first = timed("plan + show (1 update)", wc.plan()).await.expect("plan rev2");
    let vm = first.plan.changes.iter().find(|c| c.address == "novacron_vm.web").expect("vm");
    assert_eq!((vm.action, vm.id.as_deref()), (Action::Update, Some(vm_id.as_str())));
    let names: Vec<&str> = vm.attributes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["memory_gb", "metadata"]);
    let g = grade_plan(&first.plan);
    let expected = [Kind::Vm.schema().attribute("memory_gb"), Kind::Vm.schema().attribute("metadata")]
        .into_iter()
        .map(|a| a.expect("schema attribute").severity)
        .max()
        .unwrap_or(Severity::Info);
    assert_eq!((g.updates, g.severity), (1, Some(expected)));
    eprintln!("grade of revision 2: {g}");

    // A second plan of the same revision, applied first, makes the first one stale.
    let second = wc.plan().await.expect("plan rev2 again");
    timed("apply saved plan (1 update)", wc.apply_saved(&second.bytes, &|_| {})).await.expect("apply second");
    let stale = wc.apply_saved(&first.bytes, &|_| {}).await.expect_err("the first plan is stale");
    assert!(matches!(stale, RolloutError::StalePlan), "{stale:?}");
    no_key(&stale);
    assert_eq!(live.get(&format!("/v1/vms/{vm_id}")).await["memory_gb"], 8);
    timed("apply -refresh-only", wc.refresh_only(&|_| {})).await.expect("refresh-only");

    // Revision 3 adds a network that already exists on the platform: import it.
    let extra = live.post("/v1/networks", serde_json::json!({"name": "extra", "cidr": "10.41.0.0/24"})).await;
    let extra_id = extra["id"].as_str().expect("id").to_string();
    let extra_tf = "resource \"novacron_network\" \"extra\" {\n  name = \"extra\"\n  cidr = \"10.41.0.0/24\"\n}\n";
    let tree3 = Live::tree(&[("infra/providers.tf", PROVIDER_BLOCK), ("infra/main.tf", &rev2), ("infra/extra.tf", extra_tf)]);
    let wc = prepare(s, "prod", &tree3, "infra").expect("prepare rev3");
    wc.init().await.expect("init rev3");
    let missing = wc.import("novacron_network.extra", "net-doesnotexist", &|_| {}).await.expect_err("no such network");
    let text = no_key(&missing);
    assert!(matches!(missing, RolloutError::ApplyFailed { .. }) && text.contains("Cannot import novacron_network"), "{text}");
    timed("import", wc.import("novacron_network.extra", &extra_id, &|_| {})).await.expect("import");
    let after_import = wc.plan().await.expect("plan after import");
    let extra_change = after_import.plan.changes.iter().find(|c| c.address == "novacron_network.extra").expect("extra in plan");
    assert_eq!((extra_change.action, extra_change.id.as_deref()), (Action::NoOp, Some(extra_id.as_str())));
    assert!(!after_import.plan.has_changes(), "{}", after_import.plan.render());

    // Revision 4: a configuration Terraform rejects is one line naming file and line.
    let bad = "resource \"novacron_vm\" \"bad\" {\n  name = \"bad\"\n  cpu_cores = 1\n  bogus = 1\n}\n";
    let tree4 = Live::tree(&[("infra/providers.tf", PROVIDER_BLOCK), ("infra/main.tf", &rev2), ("infra/extra.tf", extra_tf), ("infra/bad.tf", bad)]);
    let wc = prepare(s, "prod", &tree4, "infra").expect("prepare rev4");
    wc.init().await.expect("init rev4: the schema is checked by plan");
    let rejected = wc.plan().await.expect_err("terraform rejects bad.tf");
    let text = no_key(&rejected);
    assert!(matches!(&rejected, RolloutError::ConfigRejected { file: Some(f), line: Some(_), .. } if f == "bad.tf"), "{rejected:?}");
    assert!(text.starts_with("configuration rejected: bad.tf:"), "{text}");
    eprintln!("rejected: {text}");
}

#[tokio::test]
async fn a_held_lock_names_its_holder_and_a_recorded_run_is_stopped() {
    // VMs stay `provisioning` for a while, so an apply holds the state lock long enough to meet it.
    let Some(live) = Live::start(Duration::from_secs(20)).await else { return };
    let rev = main_tf(4, "web");
    let tree = Live::tree(&[("providers.tf", PROVIDER_BLOCK), ("main.tf", &rev)]);
    let wc = prepare(&live.settings, "slow", &tree, "").expect("prepare");
    wc.init().await.expect("init");
    let saved = wc.plan().await.expect("plan");

    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let sink = move |pid: u32| {
        let _ = pid_tx.send(pid);
    };
    let apply = tokio::spawn(async move {
        let result = wc.apply_saved(&saved.bytes, &sink).await;
        (wc, result)
    });
    let pid = tokio::task::spawn_blocking(move || pid_rx.recv_timeout(Duration::from_secs(30))).await.expect("join").expect("the apply reports its pid");
    let lock_info = live.dir.path().join("state/.terraform.tfstate.lock.info");
    let started = Instant::now();
    while !lock_info.exists() {
        assert!(started.elapsed() < Duration::from_secs(15), "the apply never took the lock");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let other = prepare(&live.settings, "other", &tree, "").expect("prepare other");
    other.init().await.expect("init other");
    let held = timed("plan against a held lock", other.plan()).await.expect_err("the lock is held");
    match &held {
        RolloutError::LockHeld { id, who, operation, created, .. } => {
            assert!(!id.is_empty() && id != "unknown", "{held:?}");
            assert!(who.contains('@'), "Terraform records user@host: {who}");
            assert_eq!(operation, "OperationTypeApply");
            assert!(created.contains("UTC"), "{created}");
        }
        other => panic!("expected LockHeld, got {other:?}"),
    }
    no_key(&held);

    let outcome = timed("stop the recorded apply", stop_recorded(pid, Duration::from_secs(10))).await.expect("stop");
    assert!(matches!(outcome, StopOutcome::Stopped { .. }), "{outcome:?}");
    let (_wc, result) = apply.await.expect("join");
    assert!(result.is_err(), "a stopped apply does not succeed");
    assert!(!group_alive(pid), "terraform and its provider are gone");
    assert_eq!(stop_recorded(pid, Duration::ZERO).await.expect("stop again"), StopOutcome::NotRunning);
    other.refresh_only(&|_| {}).await.expect("the lock was released");

    // A run whose future is dropped (a cancelled task, a timeout) takes its process group with it.
    let tf = main_tf(4, "web")
        .replace("\"core\"", "\"dropped\"")
        .replace("\"web\"", "\"dropped\"")
        .replace("10.40.0.0/24", "10.42.0.0/24")
        .replace("novacron_network.core.id", "novacron_network.dropped.id");
    let dropped_tree = Live::tree(&[("providers.tf", PROVIDER_BLOCK), ("dropped.tf", &tf)]);
    let mut own_state = live.settings.clone();
    own_state.backend = Backend::LocalFile(live.dir.path().join("dropped/terraform.tfstate"));
    let dropped = prepare(&own_state, "dropped", &dropped_tree, "").expect("prepare");
    dropped.init().await.expect("init");
    let saved = dropped.plan().await.expect("plan");
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let sink = move |pid: u32| {
        let _ = pid_tx.send(pid);
    };
    let task = tokio::spawn(async move { dropped.apply_saved(&saved.bytes, &sink).await });
    let pid = tokio::task::spawn_blocking(move || pid_rx.recv_timeout(Duration::from_secs(30))).await.expect("join").expect("pid");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(group_alive(pid), "the apply is still running (VMs take 20 s)");
    task.abort();
    assert!(task.await.expect_err("aborted").is_cancelled());
    let started = Instant::now();
    while group_alive(pid) {
        assert!(started.elapsed() < Duration::from_secs(5), "the dropped run's process group is still there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether any live (not zombie) process is in process group `pgid`, read from `/proc`.
fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.filter_map(Result::ok).any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let mut fields = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default().split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|p| p.parse::<u32>().ok());
        pgrp == Some(pgid) && state.is_some_and(|s| s != "Z")
    })
}
