//! Benchmark of `novacron-reconcile serve` (the release binary) against the local platform with
//! 1,000 managed objects (HCL `for_each`): out-of-band change -> drift visible in `/api/status`
//! (event feed), pushed commit -> reconciled after its webhook, and RSS over a soak. Prints
//! figures; asserts nothing about speed.
//!
//! Run: `cargo bench -p novacron-reconcile --bench serve`
//! Knobs: BENCH_OBJECTS (1000), BENCH_CHANGES (50), BENCH_PUSHES (20), BENCH_SOAK_SECS (600).

#[path = "../tests/support/git_cli.rs"]
mod git_cli;
use git_cli::git;
#[path = "support/serve_child.rs"]
mod serve_child;
use serve_child::{deliver_push, spawn_serve};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use novacron_client::{Client, ClientConfig, Kind};
use novacron_platform::{PlatformConfig, TEST_API_KEY};
use serde_json::{Value, json};

const SECRET: &str = "bench-webhook-secret";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn vm_name(i: u64) -> String {
    format!("vm-{i:04}")
}

/// Resident set (VmRSS) of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok())
}

/// A repository declaring one network and `vms` VMs with `for_each` over a tfvars map.
fn write_repo(dir: &Path, vms: u64) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let main = "variable \"vms\" {}\nresource \"novacron_network\" \"core\" {\n  name = \"core\"\n  cidr = \"10.0.0.0/16\"\n}\nresource \"novacron_vm\" \"fleet\" {\n  for_each    = var.vms\n  name        = each.key\n  cpu_cores   = 2\n  memory_gb   = each.value.memory\n  template_id = \"tpl-ubuntu-24-04\"\n  network_id  = novacron_network.core.id\n}\n";
    std::fs::write(dir.join("main.tf"), main).expect("write");
    let map: serde_json::Map<String, Value> = (0..vms).map(|i| (vm_name(i), json!({"memory": 4}))).collect();
    std::fs::write(dir.join("terraform.tfvars.json"), json!({"vms": map}).to_string()).expect("write");
    git(dir, &["init", "-q"]);
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "fleet"]);
}

/// Creates the network and `vms` VMs; returns the VM ids in index order.
async fn seed(client: &Client, vms: u64) -> Vec<String> {
    let net = client.create(Kind::Network, &json!({"name": "core", "cidr": "10.0.0.0/16"})).await.expect("network").value.id().to_string();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..16 {
        let (client, net) = (client.clone(), net.clone());
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for i in (w..vms).step_by(16) {
                let body = json!({"name": vm_name(i), "cpu_cores": 2, "memory_gb": 4, "template_id": "tpl-ubuntu-24-04", "network_id": net});
                ids.push((i, client.create(Kind::Vm, &body).await.expect("create vm").value.id().to_string()));
            }
            ids
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("seed task"));
    }
    all.sort();
    all.into_iter().map(|(_, id)| id).collect()
}

struct Probe {
    http: reqwest::Client,
    base: String,
}

impl Probe {
    async fn repo(&self) -> Value {
        let status: Value = self.http.get(format!("{}/api/status", self.base)).send().await.expect("status").json().await.expect("json");
        status["repos"][0].clone()
    }

    /// Polls every 5 ms until `check` holds; returns when it did.
    async fn until(&self, what: &str, check: impl Fn(&Value) -> bool) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if check(&self.repo().await) {
                return Instant::now();
            }
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn push(&self, repo: &Path, n: u64) -> String {
        std::fs::write(repo.join("push.tf"), format!("# push {n}\n")).expect("write");
        git(repo, &["add", "."]);
        git(repo, &["commit", "-q", "-m", &format!("push {n}")]);
        let sha = git(repo, &["rev-parse", "HEAD"]);
        deliver_push(&self.http, &self.base, SECRET, repo, &format!("bench-{n}-{sha}")).await;
        sha
    }
}

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1].as_secs_f64() * 1e3;
    println!("{label}: n={} p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms", samples.len(), at(0.5), at(0.99), at(1.0));
}

fn main() {
    let objects = env_or("BENCH_OBJECTS", 1000).max(2);
    let changes = env_or("BENCH_CHANGES", 50).min(objects - 1);
    let pushes = env_or("BENCH_PUSHES", 20);
    let soak = Duration::from_secs(env_or("BENCH_SOAK_SECS", 600));
    let vms = objects - 1;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let platform = runtime.block_on(novacron_platform::start(PlatformConfig::for_tests(dir.path().join("platform")))).expect("platform");
    let client = Client::new(ClientConfig::new(platform.endpoint(), TEST_API_KEY.1)).expect("client");
    let ids = runtime.block_on(seed(&client, vms));
    let repo = dir.path().join("repo");
    write_repo(&repo, vms);
    let config = dir.path().join("serve.toml");
    let text = format!(
        "endpoint = \"{}\"\nlisten = \"127.0.0.1:0\"\nstate = \"state.db\"\napi_key_env = \"NOVACRON_BENCH_KEY\"\n\n[[repo]]\nname = \"fleet\"\nurl = \"{}\"\nref = \"main\"\ninterval = \"30s\"\nwebhook_secret = \"{SECRET}\"\n",
        platform.endpoint(),
        repo.display()
    );
    std::fs::write(&config, text).expect("config");
    // Let provisioning settle so its events are not part of the measurements.
    std::thread::sleep(Duration::from_secs(2));
    let (mut child, addr) = spawn_serve(&config, TEST_API_KEY.1);
    let probe = Probe { http: reqwest::Client::new(), base: format!("http://{addr}") };
    runtime.block_on(async {
        let started = Instant::now();
        let in_sync = usize::try_from(objects).expect("fits");
        let ready = probe.until("the first reconcile", |r| r["summary"]["in_sync"].as_u64() == Some(in_sync as u64)).await;
        let first = probe.repo().await;
        println!(
            "setup: {objects} managed objects ({vms} for_each VMs + 1 network); first reconcile visible after {:.2} s; one run took {} ms",
            (ready - started).as_secs_f64(),
            first["last_duration_ms"]
        );

        let mut detect = Vec::new();
        for k in 0..changes {
            let id = &ids[usize::try_from(k).expect("fits")];
            let t0 = Instant::now();
            client.patch(Kind::Vm, id, &json!({"memory_gb": 8}), None).await.expect("out-of-band patch");
            let seen = probe.until("drift of the change", |r| r["summary"]["drifted"].as_u64() >= Some(k + 1)).await;
            detect.push(seen - t0);
        }
        percentiles("out-of-band change -> drift visible in /api/status (event feed)", detect);

        let mut reconciled = Vec::new();
        for n in 0..pushes {
            let t0 = Instant::now();
            let sha = probe.push(&repo, n).await;
            let seen = probe.until("the pushed revision", |r| r["revision"].as_str() == Some(sha.as_str()) && r["running"] == false).await;
            reconciled.push(seen - t0);
        }
        percentiles("webhook for a pushed commit -> revision reconciled", reconciled);

        let pid = child.id();
        let every = (soak / 60).max(Duration::from_secs(1));
        let mut samples = Vec::new();
        let end = Instant::now() + soak;
        let mut tick = 0u64;
        let mut next_sample = Instant::now();
        while Instant::now() < end {
            if Instant::now() >= next_sample {
                samples.push(rss_kib(pid).unwrap_or(0));
                next_sample += every;
            }
            // Keep it busy: an out-of-band change every second, a push every 5 s, polls every 30 s.
            let id = &ids[usize::try_from(tick % vms).expect("fits")];
            let _ = client.patch(Kind::Vm, id, &json!({"memory_gb": if tick.is_multiple_of(2) { 4 } else { 6 }}), None).await;
            if tick.is_multiple_of(5) {
                probe.push(&repo, pushes + tick).await;
            }
            tick += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        samples.push(rss_kib(pid).unwrap_or(0));
        let mib = |k: u64| k as f64 / 1024.0;
        let (first, last) = (samples[0], samples[samples.len() - 1]);
        let (lo, hi) = (samples.iter().copied().min().unwrap_or(0), samples.iter().copied().max().unwrap_or(0));
        let runs = probe.repo().await["runs"].clone();
        println!(
            "soak {} s ({} samples, {runs} runs in all): RSS first {:.1} MiB, last {:.1} MiB, min {:.1}, max {:.1}; last vs first {:+.1}%",
            soak.as_secs(),
            samples.len(),
            mib(first),
            mib(last),
            mib(lo),
            mib(hi),
            (last as f64 - first as f64) / first.max(1) as f64 * 100.0
        );
    });
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let exit = child.wait().expect("wait");
    println!("SIGTERM: serve exited with {exit}");
    runtime.block_on(platform.shutdown()).expect("platform stops");
}
