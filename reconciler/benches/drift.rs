//! Benchmark of `novacron-reconcile drift`: 10,000 desired VMs (HCL `for_each`) against 10,000
//! live VMs on the local platform, end to end through the release binary (wall time, peak RSS;
//! a cold clone and a warm re-run), and the pure canonicalise + hash + diff core in resources/s.
//! Prints figures; asserts nothing about speed.
//!
//! Run: `cargo bench -p novacron-reconcile --bench drift`
//! Knobs: BENCH_RESOURCES (10000), BENCH_CORE_ROUNDS (5), BENCH_CORE_ONLY (set: skip the end-to-end part).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use novacron_client::{Client, ClientConfig, Kind};
use novacron_platform::{PlatformConfig, TEST_API_KEY};
use novacron_reconcile::drift::{DesiredResource, LiveObject, compute_drift_on};
use novacron_reconcile::ignore::IgnoreRules;
use serde_json::{Value, json};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Peak resident set (VmHWM) of a running process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok())
}

fn vm_name(i: usize) -> String {
    format!("vm-{i:05}")
}

/// Desired and live VMs for the core benchmark: every 100th differs in memory and a label.
fn core_inputs(n: usize) -> (Vec<DesiredResource>, Vec<LiveObject>) {
    let mut desired = Vec::with_capacity(n);
    let mut live = Vec::with_capacity(n + 1);
    for i in 0..n {
        let name = vm_name(i);
        let attrs = json!({"name": name, "cpu_cores": 2, "memory_gb": 4, "template_id": "tpl-ubuntu-24-04", "network_id": "net-1",
            "metadata": {"index": name, "team": "web"}, "tags": ["web", "prod"]});
        desired.push(DesiredResource {
            address: format!("novacron_vm.fleet[\"{name}\"]"),
            kind: Kind::Vm,
            name: name.clone(),
            attributes: attrs.as_object().expect("object").clone(),
            unknown: vec![],
        });
        let drifted = i % 100 == 0;
        let live_attrs = json!({"id": format!("vm-{i:016x}"), "name": name, "cpu_cores": 2, "memory_gb": if drifted { 8 } else { 4 },
            "template_id": "tpl-ubuntu-24-04", "network_id": "net-1", "metadata": {"index": name, "team": if drifted { "ops" } else { "web" }},
            "tags": ["prod", "web"], "disk_gb": 20, "power_state": "running", "status": "running", "ip_address": "10.0.0.2",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "version": 3});
        live.push(LiveObject { kind: Kind::Vm, fields: live_attrs.as_object().expect("object").clone() });
    }
    (desired, live)
}

fn bench_core(n: usize, rounds: usize) {
    let (desired, live) = core_inputs(n);
    let rules = IgnoreRules::default();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    for threads in [1, cores] {
        let mut best = Duration::MAX;
        let mut drifted = 0;
        for _ in 0..rounds {
            let start = Instant::now();
            let result = compute_drift_on(&desired, &live, &rules, &Default::default(), threads);
            best = best.min(start.elapsed());
            drifted = result.summary.drifted;
        }
        println!(
            "core, {threads} thread(s): canonicalise + hash + diff of {n} desired vs {n} live VMs ({drifted} drifted): best of {rounds} {:.1} ms = {:.0} resources/s",
            best.as_secs_f64() * 1e3,
            n as f64 / best.as_secs_f64()
        );
    }
}

/// A repository whose HCL declares `n` VMs with `for_each` over a tfvars map.
fn write_repo(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let main = r#"
variable "vms" {}
resource "novacron_network" "core" {
  name = "core"
  cidr = "10.0.0.0/16"
}
resource "novacron_vm" "fleet" {
  for_each    = var.vms
  name        = each.key
  cpu_cores   = each.value.cpu
  memory_gb   = each.value.memory
  template_id = "tpl-ubuntu-24-04"
  network_id  = novacron_network.core.id
  metadata    = { index = each.key, team = "web" }
}
"#;
    std::fs::write(dir.join("main.tf"), main).expect("write");
    let vms: serde_json::Map<String, Value> = (0..n).map(|i| (vm_name(i), json!({"cpu": 2, "memory": 4}))).collect();
    std::fs::write(dir.join("terraform.tfvars.json"), serde_json::to_string(&json!({"vms": vms})).expect("json")).expect("write");
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args(["-c", "user.name=Bench", "-c", "user.email=bench@example.com", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .status()
            .expect("git runs")
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "fleet"]);
}

async fn seed(endpoint: &str, n: usize) -> Duration {
    let start = Instant::now();
    let client = Client::new(ClientConfig::new(endpoint, TEST_API_KEY.1)).expect("client");
    let net = client.create(Kind::Network, &json!({"name": "core", "cidr": "10.0.0.0/16"})).await.expect("network").value.id().to_string();
    let mut tasks = tokio::task::JoinSet::new();
    let workers = 16;
    for w in 0..workers {
        let client = client.clone();
        let net = net.clone();
        tasks.spawn(async move {
            for i in (w..n).step_by(workers) {
                // Every 100th VM has drifted: more memory than the HCL says.
                let memory = if i % 100 == 0 { 8 } else { 4 };
                let body = json!({"name": vm_name(i), "cpu_cores": 2, "memory_gb": memory, "template_id": "tpl-ubuntu-24-04", "network_id": net,
                    "metadata": {"index": vm_name(i), "team": "web"}});
                client.create(Kind::Vm, &body).await.expect("create vm");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("seed task");
    }
    start.elapsed()
}

/// Runs the release binary once; returns (wall time, peak RSS in KiB, exit code).
fn run_drift(repo: &Path, endpoint: &str, cache: &Path) -> (Duration, u64, i32) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_novacron-reconcile"))
        .args(["drift", "--format", "json", "--repo"])
        .arg(repo)
        .args(["--endpoint", endpoint, "--cache-dir"])
        .arg(cache)
        .env("NOVACRON_API_KEY", TEST_API_KEY.1)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start novacron-reconcile");
    let pid = child.id();
    let mut peak = 0;
    loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            return (start.elapsed(), peak, status.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn main() {
    let n = env_or("BENCH_RESOURCES", 10_000);
    let rounds = env_or("BENCH_CORE_ROUNDS", 5);
    bench_core(n, rounds);
    if std::env::var_os("BENCH_CORE_ONLY").is_some() {
        return;
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let platform = runtime.block_on(novacron_platform::start(PlatformConfig::for_tests(dir.path().join("platform")))).expect("platform");
    let endpoint = platform.endpoint();
    let seeded = runtime.block_on(seed(&endpoint, n));
    println!("setup: seeded {n} live VMs in {:.1} s", seeded.as_secs_f64());
    let repo = dir.path().join("repo");
    write_repo(&repo, n);
    let cache = dir.path().join("cache");
    for label in ["cold (clone)", "warm (fetch)"] {
        let (wall, peak_kib, code) = run_drift(&repo, &endpoint, &cache);
        println!(
            "end to end, {label}: {n} desired vs {n} live VMs: {:.2} s wall, peak RSS {:.1} MiB, exit {code}",
            wall.as_secs_f64(),
            peak_kib as f64 / 1024.0
        );
    }
    runtime.block_on(platform.shutdown()).expect("platform stops");
}
