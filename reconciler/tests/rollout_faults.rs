//! Rollout faults with Terraform's state in the platform: a lock someone else holds is reported
//! and never broken; a reconciler killed with `kill -9` in the middle of an apply leaves nothing
//! created twice, its own lock released, and an intact audit chain.

#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use novacron_client::Kind;
use novacron_platform::TEST_API_KEY;
use novacron_reconcile::state::{AuditAction, StateDb, audit_list, audit_verify, open_rollouts};
use novacron_reconcile::sync::{RolloutOutcome, RunnerSettings, SyncOptions, run_sync, terraform_runner};
use serde_json::json;
use support::Env;

const WORKSPACE: &str = "faults";

fn config(with_vm: bool) -> String {
    let mut text = String::from(
        "terraform {\n  required_providers {\n    novacron = { source = \"novacron/novacron\" }\n  }\n}\n\n\
         resource \"novacron_network\" \"core\" {\n  name = \"core\"\n  cidr = \"10.40.0.0/24\"\n}\n",
    );
    if with_vm {
        text.push_str(
            "\nresource \"novacron_vm\" \"extra\" {\n  name        = \"extra\"\n  cpu_cores   = 1\n  memory_gb   = 2\n  template_id = \"tpl-ubuntu-24-04\"\n  network_id  = novacron_network.core.id\n}\n",
        );
    }
    text
}

fn options(env: &Env) -> SyncOptions {
    let mut o = env.sync_options(false);
    o.drift.workspace = Some(WORKSPACE.into());
    o
}

fn settings(env: &Env, terraform: &std::path::Path, provider: &std::path::Path) -> RunnerSettings {
    RunnerSettings {
        terraform: Some(terraform.to_path_buf()),
        provider: Some(provider.to_path_buf()),
        cache_dir: env.cache_dir().join("terraform"),
        endpoint: env.endpoint.clone(),
        api_key: TEST_API_KEY.1.to_string(),
        ca_file: None,
    }
}

async fn lock(env: &Env, method: &str, body: &serde_json::Value) -> u16 {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let answer = reqwest::Client::new()
        .request(method, format!("{}/v1/tfstate/{WORKSPACE}", env.endpoint))
        .bearer_auth(TEST_API_KEY.1)
        .json(body)
        .send()
        .await
        .expect("state backend answers");
    answer.status().as_u16()
}

/// SIGKILL to the process group of the journalled terraform run, after checking that `pid` is a
/// terraform process leading its own group (never this test's group, never anything else).
fn kill_terraform_group(pid: u32) {
    assert!(pid > 1, "the journal holds a real pid, not {pid}");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the terraform run is alive");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat").1.split_whitespace().collect();
    let pgrp: u32 = fields[2].parse().expect("pgrp");
    let own: u32 = std::fs::read_to_string("/proc/self/stat")
        .expect("own stat")
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .nth(2)
        .expect("pgrp")
        .parse()
        .expect("pgrp");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(pgrp == pid && pgrp != own, "pid {pid} leads group {pgrp} (ours is {own})");
    assert!(String::from_utf8_lossy(&cmdline).contains("terraform"), "pid {pid} is not terraform");
    let status = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status().expect("kill runs");
    assert!(status.success(), "kill of group {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_someone_else_holds_is_reported_with_its_holder_and_never_broken() {
    let Some((terraform, provider)) = support::terraform::tools("lock contention") else { return };
    let env = Env::start_with(&config(false)).await;
    let db = StateDb::open(&env.state_path()).expect("state db");
    let runner = terraform_runner(&settings(&env, &terraform, &provider)).expect("runner");
    let held = json!({"ID": "0f5e1c2a-alice", "Operation": "OperationTypeApply", "Info": "", "Who": "alice@laptop", "Version": "1.15.5",
        "Created": "2026-12-01T09:00:00.000000000Z", "Path": ""});
    assert_eq!(lock(&env, "LOCK", &held).await, 200);
    let report = run_sync(&options(&env), &env.api(), &db, None, Some(runner.as_ref())).await.expect("sync runs");
    let error = report.errors.join("\n");
    assert!(error.contains("alice@laptop") && error.contains("0f5e1c2a-alice"), "the holder and its lock ID are named: {error}");
    assert!(env.client().find_by_name(Kind::Network, "core").await.expect("list").is_none(), "nothing applied under someone else's lock");
    assert!(audit_list(&db, None).expect("audit").iter().any(|e| e.action == AuditAction::RolloutFailed.as_str()), "the failure is audited");
    assert!(!audit_list(&db, None).expect("audit").iter().any(|e| e.action == AuditAction::Unlock.as_str()), "never force-unlocked");
    // Alice finishes; the next run rolls out.
    assert_eq!(lock(&env, "UNLOCK", &held).await, 200);
    let report = run_sync(&options(&env), &env.api(), &db, None, Some(runner.as_ref())).await.expect("sync runs");
    assert_eq!(report.rollout.as_ref().map(|r| &r.outcome), Some(&RolloutOutcome::Applied), "{:?} {:?}", report.rollout, report.errors);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_sigkill_mid_apply_then_rerun_adopts_what_was_created_and_releases_its_own_lock() {
    let Some((terraform, provider)) = support::terraform::tools("kill -9 during an apply") else { return };
    // VMs stay `provisioning` for 4 s, and the provider waits for them: the apply takes that long.
    let mut env = Env::start_custom(&config(false), Duration::from_secs(4)).await;
    let db = StateDb::open(&env.state_path()).expect("state db");
    let runner = terraform_runner(&settings(&env, &terraform, &provider)).expect("runner");
    let first = run_sync(&options(&env), &env.api(), &db, None, Some(runner.as_ref())).await.expect("sync runs");
    assert_eq!(first.rollout.as_ref().map(|r| &r.outcome), Some(&RolloutOutcome::Applied), "{:?}", first.errors);
    drop(db);
    env.commit_main_tf(&config(true), "add a VM");

    let url = env.repo_url();
    let mut command = env.bin_command(&["sync", "--repo", &url, "--workspace", WORKSPACE]);
    command.env("NOVACRON_TERRAFORM", &terraform).env("NOVACRON_PROVIDER", &provider).env("NOVACRON_CACHE_DIR", env.cache_dir());
    let mut child = command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().expect("sync starts");
    // Wait until Terraform has created the VM (it is provisioning, the apply still runs).
    let deadline = Instant::now() + Duration::from_secs(120);
    while env.client().find_by_name(Kind::Vm, "extra").await.expect("list").is_none() {
        assert!(Instant::now() < deadline, "the apply never created the VM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A machine crash: the reconciler and its Terraform (its own process group) die at once.
    let db = StateDb::open(&env.state_path()).expect("state db");
    let open = open_rollouts(&db, &novacron_reconcile::git::redact(&url)).expect("journal");
    let pid = open.iter().find_map(|r| r.pid).expect("the journal holds the terraform pid");
    let _ = std::process::Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
    kill_terraform_group(pid);
    let _ = child.wait();
    let holder =
        reqwest::Client::new().get(format!("{}/v1/tfstate/{WORKSPACE}/lock", env.endpoint)).bearer_auth(TEST_API_KEY.1).send().await.expect("lock holder");
    assert_eq!(holder.status(), 200, "the killed apply left its lock");

    let report = run_sync(&options(&env), &env.api(), &db, None, Some(runner.as_ref())).await.expect("sync runs");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let rollout = report.rollout.as_ref().expect("rollout");
    assert!(rollout.adopted.iter().any(|a| a.starts_with("novacron_vm.extra = ")), "the VM was adopted, not created again: {rollout:?}");
    let vms = env.client().list_all(Kind::Vm).await.expect("list");
    assert_eq!(vms.iter().filter(|v| v.name() == "extra").count(), 1, "nothing created twice");
    let actions: Vec<String> = audit_list(&db, None).expect("audit").into_iter().map(|e| e.action).collect();
    for wanted in [AuditAction::Unlock, AuditAction::Adopt] {
        assert!(actions.iter().any(|a| a == wanted.as_str()), "{} audited: {actions:?}", wanted.as_str());
    }
    assert!(open_rollouts(&db, &novacron_reconcile::git::redact(&url)).expect("journal").is_empty(), "the journal is closed");
    assert_eq!(audit_verify(&db).expect("verify").first_bad, None);
    env.stop().await;
}
