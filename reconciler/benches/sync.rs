//! Benchmark of `sync` through the library: N managed VMs on the local platform, 10 % with a
//! drifted label (low severity), reverted with If-Match PATCHes, journal and audit entries;
//! then a second sync with nothing left to do. Prints figures; asserts nothing about speed.
//!
//! Run: `cargo bench -p novacron-reconcile --bench sync`
//! Knobs: BENCH_RESOURCES (1000), BENCH_ROUNDS (3).

use std::path::Path;
use std::time::{Duration, Instant};

use novacron_client::{Client, ClientConfig, Kind};
use novacron_platform::{PlatformConfig, TEST_API_KEY};
use novacron_reconcile::command::DriftOptions;
use novacron_reconcile::live::ClientApi;
use novacron_reconcile::state::{StateDb, audit_verify};
use novacron_reconcile::sync::{AutoSyncMax, SyncOptions, SyncOutcome, run_sync};
use serde_json::json;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// HCL declaring the network and `n` VMs, one block each.
fn desired_state(n: usize) -> String {
    let mut tf = String::from("resource \"novacron_network\" \"core\" {\n  name = \"core\"\n  cidr = \"10.0.0.0/16\"\n}\n");
    for i in 0..n {
        tf.push_str(&format!(
            "\nresource \"novacron_vm\" \"vm{i}\" {{\n  name        = \"vm-{i:05}\"\n  cpu_cores   = 1\n  memory_gb   = 1\n  template_id = \"tpl-debian-12\"\n  network_id  = novacron_network.core.id\n  metadata    = {{ env = \"prod\" }}\n}}\n"
        ));
    }
    tf
}

fn commit(repo: &Path, text: &str) {
    std::fs::create_dir_all(repo).expect("repo dir");
    std::fs::write(repo.join("main.tf"), text).expect("main.tf");
    for args in [&["init", "-q", "-b", "main"][..], &["add", "main.tf"], &["commit", "-q", "-m", "desired state"]] {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=Bench", "-c", "user.email=bench@example.com"])
            .args(args)
            .current_dir(repo)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

async fn round(n: usize, round: usize) -> (Duration, usize, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let platform = novacron_platform::start(PlatformConfig::for_tests(dir.path().join("platform"))).await.expect("platform starts");
    let endpoint = platform.endpoint();
    let client = Client::new(ClientConfig::new(endpoint.clone(), TEST_API_KEY.1)).expect("client");
    let net = client.create(Kind::Network, &json!({"name": "core", "cidr": "10.0.0.0/16"})).await.expect("network").value.id().to_string();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let body = json!({"name": format!("vm-{i:05}"), "cpu_cores": 1, "memory_gb": 1, "template_id": "tpl-debian-12", "network_id": net, "metadata": {"env": "prod"}});
        ids.push(client.create(Kind::Vm, &body).await.expect("vm").value.id().to_string());
    }
    let repo = dir.path().join("repo");
    commit(&repo, &desired_state(n));
    for id in ids.iter().step_by(10) {
        client.patch(Kind::Vm, id, &json!({"metadata": {"env": format!("dev{round}")}}), None).await.expect("drift");
    }
    let db = StateDb::open(&dir.path().join("state.db")).expect("state");
    let api = ClientApi::new(&endpoint, TEST_API_KEY.1).expect("api");
    let drift = DriftOptions {
        repo: repo.display().to_string(),
        reference: None,
        path: ".".into(),
        vars: vec![],
        ignore: vec![],
        cache_dir: dir.path().join("cache"),
        tfstate: None,
        workspace: None,
        http_address: None,
        progress: Default::default(),
        clock: Default::default(),
    };
    let options = SyncOptions {
        drift,
        thresholds: novacron_reconcile::sync::Thresholds {
            auto_sync_max: AutoSyncMax::Low,
            auto_apply_max: novacron_reconcile::sync::AutoApplyMax::Medium,
            prune: false,
        },
        dry_run: false,
        remediation_pr: false,
        actor: "bench".into(),
    };
    let started = Instant::now();
    let first = run_sync(&options, &api, &db, None, None).await.expect("sync");
    let reverting = started.elapsed();
    let reverted = first.actions.iter().filter(|a| a.outcome == SyncOutcome::Reverted).count();
    let started = Instant::now();
    let second = run_sync(&options, &api, &db, None, None).await.expect("sync");
    let idle = started.elapsed();
    assert_eq!((first.exit_code(), second.exit_code()), (0, 0), "every drift reverted");
    assert!(audit_verify(&db).expect("verify").ok);
    platform.shutdown().await.expect("platform stops");
    (reverting, reverted, idle)
}

fn main() {
    let n = env_or("BENCH_RESOURCES", 1000);
    let rounds = env_or("BENCH_ROUNDS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    println!("sync benchmark: {n} managed VMs, every 10th with a drifted label (low), {rounds} rounds");
    for r in 0..rounds {
        let (reverting, reverted, idle) = runtime.block_on(round(n, r));
        println!(
            "round {}: sync reverting {reverted} objects {:.2} s ({:.1} ms per revert incl. detection); a second sync with nothing to do {:.2} s",
            r + 1,
            reverting.as_secs_f64(),
            reverting.as_secs_f64() * 1000.0 / reverted.max(1) as f64,
            idle.as_secs_f64()
        );
    }
}
