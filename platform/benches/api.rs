//! Benchmark of novacron-platform: seeds 10,000 VMs into the release binary, then measures
//! `GET /v1/vms/{id}` throughput (saturated) and latency (paced at 5,000/s) at 32 concurrent connections, a full listing in
//! pages of 500 (unfiltered, through filters that match every VM, and through one matching 100), and the server's RSS; then restarts it on the same database serving HTTPS (a
//! certificate from a private CA made here) and measures the same GETs over TLS, keep-alive.
//! Prints figures; asserts nothing about speed.
//!
//! Run: `cargo bench -p novacron-platform --bench api`
//! Knobs: BENCH_OBJECTS (10000), BENCH_SECONDS (10), BENCH_CONCURRENCY (32), BENCH_RATE (5000).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use novacron_client::{Client, ClientConfig, Kind, ListQuery};
use novacron_tls::TlsFiles;
use novacron_tls::testing::Pki;
use serde_json::json;

const KEY: &str = "bench-secret-key";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

struct Server {
    child: Child,
    endpoint: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release server on `data`, over HTTPS when `tls` is given.
fn start_server(data: &Path, tls: Option<&TlsFiles>) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_novacron-platform"));
    command.args(["--listen", "127.0.0.1:0", "--provision-delay-ms", "0", "--api-key", &format!("bench:{KEY}"), "--data"]).arg(data);
    if let Some(files) = tls {
        command.arg("--tls-cert").arg(&files.cert).arg("--tls-key").arg(&files.key);
    }
    let mut child = command.env("NOVACRON_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start novacron-platform");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("listening line");
    let endpoint = line.trim().rsplit(' ').next().expect("endpoint").to_string();
    Server { child, endpoint }
}

struct LoadResult {
    latencies: Vec<Duration>,
    errors: u64,
    elapsed: f64,
}

async fn load(http: &reqwest::Client, base: &str, ids: &Arc<Vec<String>>, concurrency: usize, seconds: usize, rate: Option<usize>) -> LoadResult {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds as u64);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (http, ids, base) = (http.clone(), ids.clone(), base.to_string());
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(worker as u64);
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            // Each worker's share of the rate, offset so workers do not fire in lockstep.
            let interval = rate.map(|r| Duration::from_secs_f64(concurrency as f64 / r as f64));
            let mut next = start + interval.map_or(Duration::ZERO, |i| i.mul_f64(worker as f64 / concurrency as f64));
            while Instant::now() < deadline {
                if interval.is_some() {
                    tokio::time::sleep_until(next.into()).await;
                }
                let scheduled = if interval.is_some() { next } else { Instant::now() };
                let id = &ids[rng.usize(..ids.len())];
                match http.get(format!("{base}/v1/vms/{id}")).bearer_auth(KEY).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(scheduled.elapsed());
                    }
                    _ => errors += 1,
                }
                if let Some(i) = interval {
                    next += i;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("worker");
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    LoadResult { latencies, errors, elapsed: start.elapsed().as_secs_f64() }
}

fn report(label: &str, r: &LoadResult, concurrency: usize) {
    println!(
        "{label}: {:.0} req/s over {:.1} s at {concurrency} connections; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} errors",
        r.latencies.len() as f64 / r.elapsed,
        r.elapsed,
        percentile(&r.latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&r.latencies, 0.99).as_secs_f64() * 1000.0,
        r.latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        r.errors,
    );
}

/// Five runs of a listing in pages of 500 (filters repeated with each token), in ms, sorted;
/// checks each run saw `expected` objects.
async fn list_runs(client: &Client, query: &ListQuery, expected: usize) -> Vec<f64> {
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut token = None;
        let mut n = 0;
        loop {
            let page = client.list_page(Kind::Vm, &ListQuery { page_size: Some(500), page_token: token, ..query.clone() }).await.expect("page");
            n += page.items.len();
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        assert_eq!(n, expected, "the listing saw every matching VM");
        runs.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    runs.sort_by(f64::total_cmp);
    runs
}

fn main() {
    let objects = env_or("BENCH_OBJECTS", 10_000);
    let seconds = env_or("BENCH_SECONDS", 10);
    let concurrency = env_or("BENCH_CONCURRENCY", 32);
    let data = tempfile::tempdir().expect("temp dir");
    let server = start_server(data.path(), None);
    let pid = server.child.id();
    // One worker thread for the load generator, so the server keeps most of the second core.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut config = ClientConfig::new(server.endpoint.clone(), KEY);
        config.max_retries = 2;
        let client = Client::new(config).expect("client");
        let net = client.create(Kind::Network, &json!({"name": "bench", "cidr": "10.0.0.0/16"})).await.expect("network").value;

        // Seed.
        let start = Instant::now();
        let ids = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(objects)));
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, ids, next, net_id) = (client.clone(), ids.clone(), next.clone(), net.id().to_string());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= objects {
                        break;
                    }
                    let body = json!({"name": format!("vm-{i:05}"), "cpu_cores": 1 + i % 8, "memory_gb": 2, "template_id": "tpl-debian-12",
                        "network_id": net_id, "metadata": {"team": format!("t{}", i % 10), "index": i.to_string()}});
                    let vm = client.create(Kind::Vm, &body).await.expect("create vm").value;
                    ids.lock().await.push(vm.id().to_string());
                }
            }));
        }
        for t in tasks {
            t.await.expect("seeder");
        }
        let seed_secs = start.elapsed().as_secs_f64();
        let ids = Arc::new(ids.lock().await.clone());
        println!("seed: {objects} VMs created in {seed_secs:.2} s ({:.0} creates/s, {concurrency} concurrent)", objects as f64 / seed_secs);
        tokio::time::sleep(Duration::from_millis(500)).await;

        // GET /v1/vms/{id} at `concurrency` connections: first as fast as they go (the
        // throughput ceiling), then paced at BENCH_RATE requests/s (latency at a set load,
        // measured from each request's scheduled time so a stall is not hidden).
        let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().expect("http");
        let saturated = load(&http, &server.endpoint, &ids, concurrency, seconds, None).await;
        report("GET /v1/vms/{id} (saturated)", &saturated, concurrency);
        let rate = env_or("BENCH_RATE", 5_000);
        let paced = load(&http, &server.endpoint, &ids, concurrency, seconds, Some(rate)).await;
        report(&format!("GET /v1/vms/{{id}} (paced at {rate}/s)"), &paced, concurrency);

        // Full listing in pages of 500, five times; then the same VMs through three filters
        // that all of them match (the cost of filtering every row), and a name_prefix matching
        // 100 of them (`vm-099` of `vm-00000`..`vm-09999`: a scan that returns one page).
        let all = list_runs(&client, &ListQuery::default(), objects).await;
        println!("list {objects} VMs in pages of 500: median {:.0} ms, best {:.0} ms (5 runs)", all[2], all[0]);
        let everything =
            ListQuery { network_id: Some(net.id().to_string()), status: Some("running".into()), name_prefix: Some("vm-".into()), ..ListQuery::default() };
        let filtered = list_runs(&client, &everything, objects).await;
        println!("list {objects} VMs matching network_id, status and name_prefix: median {:.0} ms, best {:.0} ms (5 runs)", filtered[2], filtered[0]);
        let few = ListQuery { name_prefix: Some(format!("vm-{:03}", objects / 100 - 1)), ..ListQuery::default() };
        let selective = list_runs(&client, &few, objects.min(100)).await;
        println!("list the 100 of {objects} VMs matching a name_prefix: median {:.1} ms, best {:.1} ms (5 runs)", selective[2], selective[0]);
        println!(
            "server memory holding {objects} VMs: RSS {:.1} MiB, peak RSS {:.1} MiB",
            rss_kib(pid, "VmRSS:") as f64 / 1024.0,
            rss_kib(pid, "VmHWM:") as f64 / 1024.0
        );
        drop(server);

        // The same database served over HTTPS (TLS 1.3, ECDSA P-256), the same load.
        let pki = Pki::new();
        let tls = start_server(data.path(), Some(&pki.local("bench")));
        let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.ca_file()).expect("CA")).expect("CA PEM");
        let https = reqwest::Client::builder().pool_max_idle_per_host(concurrency).add_root_certificate(ca).build().expect("https");
        let saturated_tls = load(&https, &tls.endpoint, &ids, concurrency, seconds, None).await;
        report("GET /v1/vms/{id} over HTTPS (saturated)", &saturated_tls, concurrency);
        let paced_tls = load(&https, &tls.endpoint, &ids, concurrency, seconds, Some(rate)).await;
        report(&format!("GET /v1/vms/{{id}} over HTTPS (paced at {rate}/s)"), &paced_tls, concurrency);
        let throughput = |r: &LoadResult| r.latencies.len() as f64 / r.elapsed;
        println!(
            "HTTPS vs HTTP: {:.0}% of the saturated throughput; paced p99 {:.2} ms vs {:.2} ms",
            100.0 * throughput(&saturated_tls) / throughput(&saturated),
            percentile(&paced_tls.latencies, 0.99).as_secs_f64() * 1000.0,
            percentile(&paced.latencies, 0.99).as_secs_f64() * 1000.0
        );
    });
}
