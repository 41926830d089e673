//! Benchmark of `serve` replicas sharing PostgreSQL: 1,000 one-VM repositories against a
//! platform whose every API call takes 50 ms more. Reconciles per minute and webhook ->
//! reconcile latency with one replica and with three, the takeover after `kill -9` of a
//! replica, peak RSS, lease spread and where the CPU went. Prints figures; asserts nothing
//! about speed.
//!
//! Load: every repository gets a signed push webhook, round-robin over the replicas, and gets
//! the next one as soon as a run of it is recorded in `serve_runs` (a closed loop: each
//! repository always has a trigger waiting, so the replicas run at `max_concurrent_reconciles`).
//! Reconciles are counted from `serve_runs` over the window; the latency samples are commits
//! pushed at a steady rate to random repositories, announced to random replicas, each timed
//! until a `serve_runs` row of its repository at that revision appears (polled every 25 ms).
//!
//! Every repository ignores the other repositories' VMs and the shared network
//! (`ignore = ["novacron_vm.app-*", "novacron_network.*"]`): without it each of the 1,000
//! repositories reports the 999 others' VMs as unmanaged findings, and the first start alone
//! writes a million `detect` audit entries (BENCH_IGNORE_OTHERS=0 shows it).
//!
//! Run: `cargo bench -p novacron-reconcile --bench replicas`
//! Knobs: BENCH_REPOS (1000), BENCH_WINDOW_SECS (60), BENCH_SAMPLES (200), BENCH_IDLE_SAMPLES
//! (20), BENCH_MAX_CONCURRENT (unset: the default 16), BENCH_TTL6 (1: also a takeover with
//! `ttl = 6s`), BENCH_IGNORE_OTHERS (1), BENCH_PG_STATEMENTS (0; 1: load pg_stat_statements and
//! print the statements that took the most time).

#[path = "../tests/support/postgres.rs"]
mod pg_server;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use novacron_client::{Client, ClientConfig, Kind};
use novacron_platform::{PlatformConfig, TEST_API_KEY};
use novacron_reconcile::serve::webhook::signature_header;
use pg_server::PgServer;
use serde_json::json;

const SECRET: &str = "bench-webhook-secret";
/// Latency every platform API call gets (`--chaos-latency-ms`).
const API_LATENCY: Duration = Duration::from_millis(50);
/// Webhooks of the load in flight at once.
const WEBHOOKS_IN_FLIGHT: usize = 16;
/// How often `serve_runs` is read.
const POLL: Duration = Duration::from_millis(25);
/// Rows re-read behind the newest seen: sequence numbers are taken before commit, so a row can
/// become visible after one with a higher number.
const LOOKBACK: i64 = 200;
/// The load runs this long before the window opens (every repository's trigger queued).
const RAMP: Duration = Duration::from_secs(5);
/// How long the first runs may stop coming before the repositories still without one are explained.
const STALL: Duration = Duration::from_secs(60);
/// The longest any one wait of the benchmark may take.
const PATIENCE: Duration = Duration::from_secs(240);
/// `[leases]` ttl and renew_margin by default.
const DEFAULT_LEASES: (&str, &str) = ("15s", "5s");
/// Linux's USER_HZ: the unit of the CPU times in /proc.
const TICKS_PER_SEC: f64 = 100.0;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn repo_name(i: usize) -> String {
    format!("r{i:04}")
}

/// Commits `files` on `refs/heads/main` of the bare repository `repo` (on top of the tip, if
/// any); returns the commit id.
fn commit(repo: &git2::Repository, files: &[(&str, String)], message: &str) -> String {
    let parent = repo.find_reference("refs/heads/main").ok().and_then(|r| r.peel_to_commit().ok());
    let base = parent.as_ref().map(|p| p.tree().expect("parent tree"));
    let mut tree = repo.treebuilder(base.as_ref()).expect("treebuilder");
    for (name, text) in files {
        tree.insert(name, repo.blob(text.as_bytes()).expect("blob"), 0o100_644).expect("insert");
    }
    let tree = repo.find_tree(tree.write().expect("write tree")).expect("tree");
    let who = git2::Signature::now("Bench", "bench@example.com").expect("signature");
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some("refs/heads/main"), &who, &who, message, &tree, &parents).expect("commit").to_string()
}

/// A bare repository per index, each declaring one VM (`app-NNNN`) on `network`.
fn write_repos(dir: &Path, n: usize, network: &str) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let path = dir.join(format!("repo-{i:04}.git"));
            let repo = git2::Repository::init_bare(&path).expect("init");
            let tf = format!(
                "resource \"novacron_vm\" \"app\" {{\n  name        = \"app-{i:04}\"\n  cpu_cores   = 1\n  memory_gb   = 1\n  template_id = \"tpl-ubuntu-24-04\"\n  network_id  = \"{network}\"\n}}\n"
            );
            commit(&repo, &[("main.tf", tf)], "desired state");
            repo.set_head("refs/heads/main").expect("HEAD");
            path
        })
        .collect()
}

/// Creates the VMs the repositories declare (32 at once) and waits until they all run.
async fn create_vms(client: &Client, n: usize, network: &str) {
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..32 {
        let (client, network) = (client.clone(), network.to_string());
        tasks.spawn(async move {
            for i in (w..n).step_by(32) {
                let body = json!({"name": format!("app-{i:04}"), "cpu_cores": 1, "memory_gb": 1, "template_id": "tpl-ubuntu-24-04", "network_id": network});
                client.create(Kind::Vm, &body).await.expect("create vm");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("create task");
    }
    let deadline = Instant::now() + PATIENCE;
    while client.list_all(Kind::Vm).await.expect("list").iter().any(|vm| vm.status() != Some("running")) {
        assert!(Instant::now() < deadline, "the VMs never all ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A `serve` process; killed (SIGKILL) on drop.
struct Replica {
    id: String,
    addr: String,
    child: Child,
    /// WARN and ERROR lines by message.
    complaints: Arc<Mutex<BTreeMap<String, usize>>>,
    /// Every line it logged (to explain a repository that never ran).
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The message of a log line, without time, level, target and fields.
fn message_of(line: &str) -> String {
    let rest = line.split_once(" WARN ").or_else(|| line.split_once(" ERROR ")).map_or(line, |(_, r)| r);
    let rest = rest.split_once(": ").map_or(rest, |(_, m)| m);
    rest.split(' ').take_while(|w| !w.contains('=')).collect::<Vec<_>>().join(" ")
}

impl Replica {
    fn spawn(config: &Path, id: &str, url: &str) -> Replica {
        let child = Command::new(env!("CARGO_BIN_EXE_novacron-reconcile"))
            .args(["serve", "--config"])
            .arg(config)
            .env("NOVACRON_BENCH_KEY", TEST_API_KEY.1)
            .env("NOVACRON_STATE_URL", url)
            .env("NOVACRON_BENCH_SECRET", SECRET)
            .env("NOVACRON_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let mut replica = Replica { id: id.to_string(), addr: String::new(), child, complaints: Arc::default(), lines: Arc::default() };
        let stderr = replica.child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let (complaints, lines, id) = (replica.complaints.clone(), replica.lines.clone(), id.to_string());
        std::thread::Builder::new()
            .name("bench-log".into())
            .spawn(move || {
                for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                    lines.lock().expect("lines").push(line.clone());
                    if let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("addr=")) {
                        let _ = tx.send(addr.to_string());
                    } else if line.contains(" WARN ") || line.contains(" ERROR ") {
                        let mut seen = complaints.lock().expect("complaints");
                        let n = seen.entry(message_of(&line)).or_default();
                        *n += 1;
                        // The first two of each kind are shown; the rest are counted.
                        if *n <= 2 {
                            eprintln!("serve {id}: {line}");
                        }
                    }
                }
            })
            .expect("log thread");
        replica.addr = rx.recv_timeout(Duration::from_secs(60)).expect("serve logs its address");
        replica
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set (VmHWM), in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kib: f64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0.0);
        kib / 1024.0
    }

    /// The most leases this replica took in one burst (takes less than a second apart), and how
    /// long that burst took.
    fn longest_take(&self) -> (usize, f64) {
        // Seconds of the day from the log line's `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
        let at = |l: &str| -> Option<f64> {
            let t = l.get(11..26)?;
            Some(t[0..2].parse::<f64>().ok()? * 3600.0 + t[3..5].parse::<f64>().ok()? * 60.0 + t[6..].parse::<f64>().ok()?)
        };
        let lines = self.lines.lock().expect("lines");
        let taken: Vec<f64> = lines.iter().filter(|l| l.contains("lease taken")).filter_map(|l| at(l)).collect();
        let (mut best, mut start, mut n) = ((0, 0.0), 0, 0);
        for (i, t) in taken.iter().enumerate() {
            if i > 0 && t - taken[i - 1] > 1.0 {
                (start, n) = (i, 0);
            }
            n += 1;
            if n > best.0 {
                best = (n, t - taken[start]);
            }
        }
        best
    }

    fn complaints(&self) -> String {
        let seen = self.complaints.lock().expect("complaints");
        if seen.is_empty() {
            return "none".into();
        }
        seen.iter().map(|(m, n)| format!("{n}x \"{m}\"")).collect::<Vec<_>>().join(", ")
    }
}

/// One `serve_runs` row as the follower saw it.
#[derive(Debug, Clone)]
struct Run {
    repo: usize,
    trigger: String,
    revision: String,
    duration_ms: i64,
    seen: Instant,
}

/// The rows of `serve_runs` in the order they became visible, and the lease renewals of each
/// replica, read by a thread of its own.
struct RunLog {
    rows: Mutex<Vec<Run>>,
    /// Per replica, each heartbeat seen: when its transaction started and when it was first seen
    /// committed (milliseconds, the database's clock).
    renewals: Mutex<BTreeMap<String, Vec<(i64, i64)>>>,
    stop: AtomicBool,
    /// The PostgreSQL backend serving the follower (its CPU is the benchmark's, not serve's).
    backend: std::sync::atomic::AtomicU32,
}

impl RunLog {
    fn follow(url: String, ttl_ms: i64) -> (Arc<RunLog>, std::thread::JoinHandle<()>) {
        let log = Arc::new(RunLog { rows: Mutex::default(), renewals: Mutex::default(), stop: AtomicBool::new(false), backend: Default::default() });
        let follower = log.clone();
        let thread = std::thread::Builder::new().name("bench-runs".into()).spawn(move || follower.read_rows(&url, ttl_ms)).expect("follower thread");
        (log, thread)
    }

    fn read_rows(&self, url: &str, ttl_ms: i64) {
        let mut client = pg_server::connect(url, Duration::from_secs(30)).expect("the bench connects to PostgreSQL");
        let backend: i32 = client.query_one("SELECT pg_backend_pid()", &[]).expect("backend pid").get(0);
        self.backend.store(u32::try_from(backend).unwrap_or(0), Ordering::Relaxed);
        let (mut newest, mut seen) = (0i64, HashSet::new());
        while !self.stop.load(Ordering::Relaxed) {
            // Fails until the first replica has made the tables.
            let query = "SELECT seq, repo, trigger, COALESCE(revision, ''), duration_ms FROM serve_runs WHERE seq > $1 ORDER BY seq";
            if let Ok(rows) = client.query(query, &[&(newest - LOOKBACK)]) {
                let now = Instant::now();
                let mut fresh = Vec::new();
                for row in rows {
                    let seq: i64 = row.get(0);
                    if seen.insert(seq) {
                        newest = newest.max(seq);
                        let name: String = row.get(1);
                        let repo = name[1..].parse().expect("repository index");
                        fresh.push(Run { repo, trigger: row.get(2), revision: row.get(3), duration_ms: row.get(4), seen: now });
                    }
                }
                seen.retain(|s| *s > newest - LOOKBACK);
                self.rows.lock().expect("rows").extend(fresh);
            }
            // A heartbeat sets its replica's expiry to the database's time at its start plus the TTL.
            let now_ms = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";
            if let Ok(rows) = client.query(&format!("SELECT id, expires_ms, {now_ms} FROM replicas"), &[]) {
                let mut renewals = self.renewals.lock().expect("renewals");
                for row in rows {
                    let (id, started, now): (String, i64, i64) = (row.get(0), row.get::<_, i64>(1) - ttl_ms, row.get(2));
                    let seen = renewals.entry(id).or_default();
                    if seen.last().is_none_or(|(s, _)| *s != started) {
                        seen.push((started, now));
                    }
                }
            }
            std::thread::sleep(POLL);
        }
    }

    fn len(&self) -> usize {
        self.rows.lock().expect("rows").len()
    }

    fn since(&self, from: usize) -> Vec<Run> {
        self.rows.lock().expect("rows")[from..].to_vec()
    }
}

/// CPU time used so far (in ticks) by each group of processes sharing the machine.
#[derive(Debug, Clone, Default)]
struct Cpu {
    replicas: Vec<u64>,
    platform: u64,
    bench: u64,
    postgres: u64,
    follower: u64,
    machine_busy: u64,
    machine_all: u64,
}

/// utime + stime (+ the reaped children's when `children`) of a `/proc/.../stat` file.
fn ticks(stat: &str, children: bool) -> Option<(String, u32, u64)> {
    let text = std::fs::read_to_string(stat).ok()?;
    let (head, tail) = text.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let f: Vec<u64> = tail.split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
    // After the state: ppid is field 4, utime 14, stime 15, cutime 16, cstime 17.
    let own = f.get(10)? + f.get(11)?;
    Some((comm, u32::try_from(f[0]).unwrap_or(0), if children { own + f.get(12)? + f.get(13)? } else { own }))
}

fn cpu_now(replicas: &[&Replica], postmaster: u32, follower: u32) -> Cpu {
    let mut cpu = Cpu { replicas: replicas.iter().map(|r| ticks(&format!("/proc/{}/stat", r.pid()), false).map_or(0, |t| t.2)).collect(), ..Cpu::default() };
    cpu.bench = ticks("/proc/self/stat", false).map_or(0, |t| t.2);
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().map_while(Result::ok) {
        if let Some((_, _, t)) = ticks(&task.path().join("stat").to_string_lossy(), false).filter(|(comm, ..)| comm.starts_with("platform")) {
            cpu.platform += t;
        }
    }
    cpu.bench -= cpu.platform.min(cpu.bench);
    cpu.postgres = ticks(&format!("/proc/{postmaster}/stat"), true).map_or(0, |t| t.2);
    cpu.follower = ticks(&format!("/proc/{follower}/stat"), false).map_or(0, |t| t.2);
    for proc in std::fs::read_dir("/proc").into_iter().flatten().map_while(Result::ok) {
        if proc.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit())
            && let Some((_, ppid, t)) = ticks(&proc.path().join("stat").to_string_lossy(), false)
            && ppid == postmaster
        {
            cpu.postgres += t;
        }
    }
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let all: Vec<u64> = stat.lines().next().unwrap_or_default().split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
    cpu.machine_all = all.iter().take(8).sum();
    cpu.machine_busy = cpu.machine_all - all.get(3).copied().unwrap_or(0) - all.get(4).copied().unwrap_or(0);
    cpu
}

/// Cores each group used between `a` and `b`, `over` apart.
fn cpu_line(names: &[&str], a: &Cpu, b: &Cpu, over: Duration) -> String {
    let cores = |t: u64| t as f64 / TICKS_PER_SEC / over.as_secs_f64();
    let serve: Vec<String> = names.iter().zip(a.replicas.iter().zip(&b.replicas)).map(|(n, (x, y))| format!("{n} {:.2}", cores(y - x))).collect();
    let ours = b.replicas.iter().sum::<u64>() - a.replicas.iter().sum::<u64>() + (b.platform - a.platform) + (b.bench - a.bench) + (b.postgres - a.postgres);
    let busy = b.machine_busy - a.machine_busy;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "CPU over the window, in cores of {cpus}: serve {}; platform {:.2}; postgres {:.2} (of which {:.2} the bench's serve_runs follower); bench driver {:.2}; other processes {:.2}; machine busy {:.0}%",
        serve.join(", "),
        cores(b.platform - a.platform),
        cores(b.postgres - a.postgres),
        cores(b.follower.saturating_sub(a.follower)),
        cores(b.bench - a.bench),
        cores(busy.saturating_sub(ours)),
        busy as f64 / (b.machine_all - a.machine_all).max(1) as f64 * 100.0
    )
}

/// The `p` quantile (0 < p ≤ 1) of sorted samples, in seconds (nearest rank).
fn quantile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1].as_secs_f64()
}

/// Sends a signed push webhook for `repo` to the replica at `addr`; its status (0 when no answer).
async fn push_hook(http: &reqwest::Client, addr: &str, repo: &Path, delivery: &str) -> u16 {
    let body = json!({"ref": "refs/heads/main", "repository": {"clone_url": repo.display().to_string()}}).to_string();
    let sent = http
        .post(format!("http://{addr}/hooks/github"))
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", signature_header(SECRET.as_bytes(), body.as_bytes()))
        .body(body)
        .send()
        .await;
    sent.map_or(0, |r| r.status().as_u16())
}

/// What a load window measured.
#[derive(Debug, Default)]
struct LoadFigures {
    runs: usize,
    by_trigger: BTreeMap<String, usize>,
    durations: Vec<Duration>,
    latencies: Vec<Duration>,
    to_non_holder: usize,
    unresolved: usize,
    /// Repositories whose webhook got no run long after the others' (`name <- replica`).
    stuck: Vec<String>,
    webhooks: usize,
    refused: usize,
    cpu: String,
}

/// The harness: the platform, the repositories, PostgreSQL and the async runtime of the load.
struct Bench {
    dir: PathBuf,
    endpoint: String,
    repos: Vec<PathBuf>,
    max_concurrent: Option<u64>,
    /// Each repository ignores the other repositories' VMs and the shared network.
    ignore_others: bool,
    pg: PgServer,
    /// `BENCH_PG_STATEMENTS=1`: pg_stat_statements is loaded and its top statements printed.
    statements: bool,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    deliveries: AtomicU64,
}

/// Replicas on one fresh database, and the follower of its `serve_runs`.
struct Cluster {
    url: String,
    replicas: Vec<Replica>,
    log: Arc<RunLog>,
    follower: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.replicas.clear();
        self.log.stop.store(true, Ordering::Relaxed);
        if let Some(f) = self.follower.take() {
            let _ = f.join();
        }
    }
}

impl Cluster {
    fn addrs(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.addr.clone()).collect()
    }

    fn names(&self) -> Vec<&str> {
        self.replicas.iter().map(|r| r.id.as_str()).collect()
    }

    /// Repository index -> owner of its live lease.
    fn leases(&self) -> HashMap<usize, String> {
        let mut client = pg_server::connect(&self.url, Duration::from_secs(10)).expect("connect");
        let rows = client
            .query("SELECT repo, owner FROM leases WHERE expires_ms > CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)", &[])
            .expect("leases");
        rows.iter().map(|r| (r.get::<_, String>(0)[1..].parse().expect("index"), r.get(1))).collect()
    }

    fn spread(&self) -> String {
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        for owner in self.leases().into_values() {
            *per.entry(owner).or_default() += 1;
        }
        per.iter().map(|(o, n)| format!("{o} {n}")).collect::<Vec<_>>().join(", ")
    }

    /// Waits until `quiet` passes without a new run (the backlog drained).
    fn settle(&self, quiet: Duration) -> Duration {
        let start = Instant::now();
        let (mut count, mut changed) = (self.log.len(), Instant::now());
        while changed.elapsed() < quiet {
            assert!(start.elapsed() < PATIENCE, "runs never stopped");
            std::thread::sleep(Duration::from_millis(100));
            if self.log.len() != count {
                (count, changed) = (self.log.len(), Instant::now());
            }
        }
        start.elapsed() - quiet
    }
}

impl Bench {
    fn postmaster(&self) -> u32 {
        let pid_file = self.pg.log_path().with_file_name("data").join("postmaster.pid");
        std::fs::read_to_string(&pid_file).ok().and_then(|t| t.lines().next()?.trim().parse().ok()).expect("postmaster.pid")
    }

    /// Loads pg_stat_statements (a restart of the server).
    fn load_statements(&self) {
        let mut client = pg_server::connect(&self.pg.url(), Duration::from_secs(10)).expect("connect");
        client.batch_execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'").expect("alter system");
        drop(client);
        self.pg.stop();
        self.pg.start_again();
    }

    /// The statements that took the most time since the last call (with BENCH_PG_STATEMENTS=1).
    fn top_statements(&self, cluster: &Cluster, phase: &str) {
        if !self.statements {
            return;
        }
        let mut client = pg_server::connect(&cluster.url, Duration::from_secs(10)).expect("connect");
        let rows = client
            .query("SELECT calls, total_exec_time, rows, query FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12", &[])
            .expect("pg_stat_statements");
        println!("  top statements by execution time during {phase} (pg_stat_statements):");
        for r in rows {
            let (calls, total, n, query): (i64, f64, i64, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
            let query: String = query.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(140).collect();
            println!("    {calls:>7} calls {total:>9.0} ms {:>7.3} ms/call {n:>8} rows  {query}", total / calls.max(1) as f64);
        }
        client.batch_execute("SELECT pg_stat_statements_reset()").expect("reset");
    }

    fn config(&self, run: &str, id: &str, ttl: &str, margin: &str) -> PathBuf {
        let limit = self.max_concurrent.map(|n| format!("max_concurrent_reconciles = {n}\n")).unwrap_or_default();
        let mut text = format!(
            "endpoint = \"{}\"\nlisten = \"127.0.0.1:0\"\nstate_env = \"NOVACRON_STATE_URL\"\nreplica_id = \"{id}\"\napi_key_env = \"NOVACRON_BENCH_KEY\"\ncache_dir = \"{}\"\n{limit}\n[leases]\nttl = \"{ttl}\"\nrenew_margin = \"{margin}\"\n",
            self.endpoint,
            self.dir.join(format!("cache-{run}-{id}")).display()
        );
        // Without it every repository reports the 1,000 objects of the others as unmanaged.
        let ignore = if self.ignore_others { "ignore = [\"novacron_vm.app-*\", \"novacron_network.*\"]\n" } else { "" };
        for (i, repo) in self.repos.iter().enumerate() {
            text.push_str(&format!(
                "\n[[repo]]\nname = \"{}\"\nurl = \"{}\"\nref = \"main\"\ninterval = \"1h\"\nwebhook_secret_env = \"NOVACRON_BENCH_SECRET\"\n{ignore}",
                repo_name(i),
                repo.display()
            ));
        }
        let file = self.dir.join(format!("{run}-{id}.toml"));
        std::fs::write(&file, text).expect("write config");
        file
    }

    /// Starts replicas `ids` together on a fresh database `run` and waits until every
    /// repository has had its first reconcile (the lease taken, the clone made); returns the
    /// cluster and that time.
    fn start(&self, run: &str, ids: &[&str], (ttl, margin): (&str, &str)) -> (Cluster, Duration) {
        let url = self.pg.create_database(run);
        if self.statements {
            pg_server::connect(&url, Duration::from_secs(10)).expect("connect").batch_execute("CREATE EXTENSION pg_stat_statements").expect("extension");
        }
        let configs: Vec<PathBuf> = ids.iter().map(|id| self.config(run, id, ttl, margin)).collect();
        let ttl_ms = i64::try_from(novacron_reconcile::serve::config::parse_duration(ttl).expect("ttl").as_millis()).expect("fits");
        let (log, follower) = RunLog::follow(url.clone(), ttl_ms);
        let started = Instant::now();
        // Spawned at once, so that the replicas announce themselves within one renewal interval.
        let replicas = std::thread::scope(|s| {
            let spawned: Vec<_> = ids.iter().zip(&configs).map(|(id, config)| s.spawn(|| Replica::spawn(config, id, &url))).collect();
            spawned.into_iter().map(|h| h.join().expect("spawn")).collect()
        });
        let cluster = Cluster { url, replicas, log, follower: Some(follower) };
        let mut first = vec![false; self.repos.len()];
        let (mut cursor, mut left, mut progress, mut moved) = (0, self.repos.len(), started + Duration::from_secs(30), Instant::now());
        while left > 0 {
            // A repository that still has no run when the others stopped coming is explained, not waited for.
            if started.elapsed() > PATIENCE || moved.elapsed() > STALL {
                let missing: Vec<usize> = (0..first.len()).filter(|i| !first[*i]).collect();
                println!("\n{run}: {left} repositories had no run {:.0} s after the start:", started.elapsed().as_secs_f64());
                self.explain(&cluster, &missing);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            if Instant::now() >= progress {
                progress += Duration::from_secs(30);
                eprintln!(
                    "  ({run}: {} of {} repositories reconciled after {:.0} s)",
                    self.repos.len() - left,
                    self.repos.len(),
                    started.elapsed().as_secs_f64()
                );
            }
            for r in cluster.log.since(cursor) {
                cursor += 1;
                if !std::mem::replace(&mut first[r.repo], true) {
                    (left, moved) = (left - 1, Instant::now());
                }
            }
        }
        (cluster, started.elapsed())
    }

    /// What the database and each replica say about repositories `missing`, and what the
    /// replicas logged about them.
    fn explain(&self, cluster: &Cluster, missing: &[usize]) {
        let mut client = pg_server::connect(&cluster.url, Duration::from_secs(10)).expect("connect");
        let statuses: Vec<serde_json::Value> = cluster
            .replicas
            .iter()
            .map(|r| {
                self.rt.block_on(async { self.http.get(format!("http://{}/api/status", r.addr)).send().await.ok()?.json().await.ok() }).unwrap_or_default()
            })
            .collect();
        for &i in missing.iter().take(5) {
            let name = repo_name(i);
            let lease = client
                .query_opt(
                    "SELECT owner, token, expires_ms - CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT), acquired_at FROM leases WHERE repo = $1",
                    &[&name],
                )
                .expect("lease");
            let lease = lease.map(|l| {
                format!("{} token {} expires in {} ms, taken {}", l.get::<_, String>(0), l.get::<_, i64>(1), l.get::<_, i64>(2), l.get::<_, String>(3))
            });
            println!("  {name}: lease {}", lease.unwrap_or_else(|| "none".into()));
            for (r, status) in cluster.replicas.iter().zip(&statuses) {
                let entry = status["repos"].as_array().and_then(|all| all.iter().find(|e| e["name"] == name.as_str()));
                let e = entry.cloned().unwrap_or_default();
                println!(
                    "    {}: held_here {} holder {} token {} runs {} running {} last_trigger {} last_error {}",
                    r.id, e["held_here"], e["holder"], e["lease_token"], e["runs"], e["running"], e["last_trigger"], e["last_error"]
                );
                let needle = format!("repo={name} ");
                let lines = r.lines.lock().expect("lines");
                for line in lines.iter().filter(|l| l.contains(&needle) || l.ends_with(&format!("repo={name}"))).take(12) {
                    println!("      {line}");
                }
            }
        }
    }

    /// Commits a new revision to repository `i`; returns it.
    fn push_commit(&self, i: usize) -> String {
        let n = self.deliveries.fetch_add(1, Ordering::Relaxed);
        let repo = git2::Repository::open_bare(&self.repos[i]).expect("open");
        commit(&repo, &[("push.tf", format!("# push {n}\n"))], &format!("push {n}"))
    }

    fn delivery(&self) -> String {
        format!("bench-{}", self.deliveries.fetch_add(1, Ordering::Relaxed))
    }

    /// The closed-loop load for `window` after a ramp, with `samples` timed pushes spread over it.
    fn load(&self, cluster: &Cluster, window: Duration, samples: usize) -> LoadFigures {
        let owners = cluster.leases();
        let holder_addr: HashMap<&str, &str> = cluster.replicas.iter().map(|r| (r.id.as_str(), r.addr.as_str())).collect();
        let addrs = cluster.addrs();
        let replicas: Vec<&Replica> = cluster.replicas.iter().collect();
        let n = self.repos.len();
        self.rt.block_on(async {
            let mut figures = LoadFigures::default();
            let mut order: Vec<usize> = (0..n).collect();
            fastrand::shuffle(&mut order);
            let mut queue: VecDeque<usize> = order.into();
            // When each repository's webhook went out, and to which replica.
            let mut outstanding: Vec<Option<(Instant, usize)>> = vec![None; n];
            let mut tasks = tokio::task::JoinSet::new();
            let mut pending: HashMap<String, (usize, Instant)> = HashMap::new();
            let (mut cursor, mut next_addr, mut sent_samples) = (cluster.log.len(), 0usize, 0usize);
            let opens = Instant::now() + RAMP;
            let closes = opens + window;
            let every = window / u32::try_from(samples.max(1)).unwrap_or(u32::MAX);
            let (mut next_sample, mut cpu_start) = (opens, None);
            loop {
                let now = Instant::now();
                if cpu_start.is_none() && now >= opens {
                    cpu_start = Some((cpu_now(&replicas, self.postmaster(), cluster.log.backend.load(Ordering::Relaxed)), now));
                }
                if now >= closes && figures.cpu.is_empty() {
                    let (a, at) = cpu_start.clone().expect("the window opened");
                    figures.cpu = cpu_line(&cluster.names(), &a, &cpu_now(&replicas, self.postmaster(), cluster.log.backend.load(Ordering::Relaxed)), now - at);
                }
                for run in cluster.log.since(cursor) {
                    cursor += 1;
                    if outstanding[run.repo].take().is_some() {
                        queue.push_back(run.repo);
                    }
                    if (opens..closes).contains(&run.seen) {
                        figures.runs += 1;
                        *figures.by_trigger.entry(run.trigger.clone()).or_default() += 1;
                        figures.durations.push(Duration::from_millis(u64::try_from(run.duration_ms).unwrap_or(0)));
                    }
                    if pending.get(&run.revision).is_some_and(|(repo, _)| *repo == run.repo) {
                        let (_, sent) = pending.remove(&run.revision).expect("pending");
                        figures.latencies.push(run.seen.saturating_duration_since(sent));
                    }
                }
                while let Some(status) = tasks.try_join_next() {
                    figures.webhooks += 1;
                    figures.refused += usize::from(status.expect("webhook task") != 202);
                }
                // The load goes on until the last sample is reconciled, so that it is timed under
                // load, but not for ever: a sample left for long after the slowest is lost.
                let slowest = figures.latencies.iter().max().copied().unwrap_or_default();
                let patience = (slowest * 4).clamp(Duration::from_secs(60), PATIENCE);
                if now >= closes && (pending.is_empty() || now > closes + patience) {
                    figures.unresolved = pending.len();
                    for (i, (sent, to)) in outstanding.iter().enumerate().filter_map(|(i, o)| Some((i, (*o)?))) {
                        if now - sent > patience {
                            let holder = owners.get(&i).map_or("nobody", String::as_str);
                            figures.stuck.push(format!("{} (held by {holder}) <- {}", repo_name(i), cluster.replicas[to].id));
                        }
                    }
                    break;
                }
                while tasks.len() < WEBHOOKS_IN_FLIGHT
                    && let Some(i) = queue.pop_front()
                {
                    outstanding[i] = Some((now, next_addr % addrs.len()));
                    let (http, addr, repo, delivery) = (self.http.clone(), addrs[next_addr % addrs.len()].clone(), self.repos[i].clone(), self.delivery());
                    next_addr += 1;
                    tasks.spawn(async move { push_hook(&http, &addr, &repo, &delivery).await });
                }
                if now >= next_sample && now < closes && sent_samples < samples {
                    next_sample += every;
                    sent_samples += 1;
                    let busy: HashSet<usize> = pending.values().map(|(r, _)| *r).collect();
                    let i = std::iter::repeat_with(|| fastrand::usize(..n)).find(|i| !busy.contains(i)).expect("a repository");
                    let sha = self.push_commit(i);
                    let addr = addrs[fastrand::usize(..addrs.len())].clone();
                    figures.to_non_holder += usize::from(owners.get(&i).and_then(|o| holder_addr.get(o.as_str())) != Some(&addr.as_str()));
                    pending.insert(sha, (i, Instant::now()));
                    let (http, repo, delivery) = (self.http.clone(), self.repos[i].clone(), self.delivery());
                    tasks.spawn(async move { push_hook(&http, &addr, &repo, &delivery).await });
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            while let Some(status) = tasks.join_next().await {
                figures.webhooks += 1;
                figures.refused += usize::from(status.expect("webhook task") != 202);
            }
            figures
        })
    }

    /// Pushes `n` commits one at a time to random repositories through random replicas, each
    /// timed until reconciled, on otherwise idle replicas.
    fn idle_latency(&self, cluster: &Cluster, n: usize) -> Vec<Duration> {
        let addrs = cluster.addrs();
        let mut samples: Vec<Duration> = (0..n)
            .map(|_| {
                let i = fastrand::usize(..self.repos.len());
                let cursor = cluster.log.len();
                let sha = self.push_commit(i);
                let sent = Instant::now();
                let status = self.rt.block_on(push_hook(&self.http, &addrs[fastrand::usize(..addrs.len())], &self.repos[i], &self.delivery()));
                assert_eq!(status, 202, "webhook refused");
                loop {
                    assert!(sent.elapsed() < PATIENCE, "push to {} never reconciled", repo_name(i));
                    if let Some(run) = cluster.log.since(cursor).iter().find(|r| r.repo == i && r.revision == sha) {
                        break run.seen - sent;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
            .collect();
        samples.sort();
        samples
    }

    /// Starts replicas `ids` with the default leases, runs the load and (with `idle` samples)
    /// the idle latency; returns the cluster (drained when `drain` or `idle`) with
    /// reconciles/min and p99 latency.
    fn measure(&self, label: &str, ids: &[&str], window: Duration, samples: usize, idle: usize, drain: bool) -> (Cluster, f64, f64) {
        let (cluster, warm) = self.start(&format!("replicas{}", ids.len()), ids, DEFAULT_LEASES);
        self.top_statements(&cluster, "the start");
        let mut figures = self.load(&cluster, window, samples);
        let (rate, p99) = print_load(label, &cluster, warm, &mut figures, window);
        self.top_statements(&cluster, "the load");
        if drain || idle > 0 {
            println!("  backlog drained {:.1} s after the load stopped", cluster.settle(Duration::from_secs(3)).as_secs_f64());
        }
        if idle > 0 {
            print_idle(&self.idle_latency(&cluster, idle));
        }
        print_replicas(&cluster);
        (cluster, rate, p99)
    }

    /// `kill -9` of replica `victim`; returns how many repositories it held, when the first of
    /// them and when the last had a `takeover` run elsewhere.
    fn takeover(&self, cluster: &mut Cluster, victim: usize) -> (usize, Duration, Duration) {
        let owners = cluster.leases();
        let id = cluster.replicas[victim].id.clone();
        let held: HashSet<usize> = owners.iter().filter(|(_, o)| **o == id).map(|(r, _)| *r).collect();
        let mut cursor = cluster.log.len();
        let mut killed = cluster.replicas.remove(victim);
        killed.child.kill().expect("kill -9");
        let at = Instant::now();
        let _ = killed.child.wait();
        let (mut left, mut first) = (held.clone(), None);
        while !left.is_empty() {
            assert!(at.elapsed() < PATIENCE, "{} of {id}'s repositories never taken over", left.len());
            std::thread::sleep(Duration::from_millis(50));
            for run in cluster.log.since(cursor) {
                cursor += 1;
                if run.trigger == "takeover" && left.remove(&run.repo) {
                    first.get_or_insert(run.seen - at);
                }
            }
        }
        let last = at.elapsed();
        (held.len(), first.unwrap_or(last), last)
    }
}

fn print_load(label: &str, cluster: &Cluster, warm: Duration, f: &mut LoadFigures, window: Duration) -> (f64, f64) {
    let per_min = f.runs as f64 / window.as_secs_f64() * 60.0;
    f.durations.sort();
    f.latencies.sort();
    let busy = f.durations.iter().sum::<Duration>().as_secs_f64() / window.as_secs_f64();
    println!("\n{label}: every repository reconciled once {:.1} s after the start; leases {}", warm.as_secs_f64(), cluster.spread());
    println!(
        "  {} reconciles in {} s = {per_min:.0}/min ({:.1}/s); by trigger {:?}",
        f.runs,
        window.as_secs(),
        f.runs as f64 / window.as_secs_f64(),
        f.by_trigger
    );
    println!(
        "  one reconcile (serve_runs duration_ms): p50 {:.0} ms, p99 {:.0} ms; {busy:.1} running on average (Little's law)",
        quantile(&f.durations, 0.5) * 1e3,
        quantile(&f.durations, 0.99) * 1e3
    );
    println!(
        "  webhook -> reconciled at the pushed revision, under that load: n={} ({} to a non-holder), p50 {:.1} s, p99 {:.1} s, max {:.1} s{}",
        f.latencies.len(),
        f.to_non_holder,
        quantile(&f.latencies, 0.5),
        quantile(&f.latencies, 0.99),
        quantile(&f.latencies, 1.0),
        if f.unresolved > 0 { format!(" ({} never reconciled)", f.unresolved) } else { String::new() }
    );
    println!("  webhooks sent {} ({} not answered 202)", f.webhooks, f.refused);
    if !f.stuck.is_empty() {
        println!("  {} repositories never ran again after their webhook (repository <- replica it went to): {}", f.stuck.len(), f.stuck.join(", "));
    }
    println!("  {}", f.cpu);
    (per_min, quantile(&f.latencies, 0.99))
}

fn print_idle(samples: &[Duration]) {
    println!(
        "  idle webhook -> reconciled (one at a time, random replica): n={} p50 {:.0} ms, p99 {:.0} ms",
        samples.len(),
        quantile(samples, 0.5) * 1e3,
        quantile(samples, 0.99) * 1e3
    );
}

fn print_replicas(cluster: &Cluster) {
    for (id, seen) in cluster.log.renewals.lock().expect("renewals").iter() {
        // The first is the registration, the last may be a clean stop's.
        let gaps: Vec<i64> = seen.windows(2).map(|w| w[1].0 - w[0].0).collect();
        let took: Vec<i64> = seen.iter().skip(1).map(|(start, seen)| seen - start).collect();
        let (gap, slowest) = (gaps.iter().max().copied().unwrap_or(0), took.iter().max().copied().unwrap_or(0));
        println!(
            "  replica {id}: {} lease renewals, at most {:.1} s apart; the slowest committed {:.1} s after it began",
            took.len(),
            gap as f64 / 1e3,
            slowest as f64 / 1e3
        );
    }
    for r in &cluster.replicas {
        let (took, secs) = r.longest_take();
        println!(
            "  replica {}: peak RSS (VmHWM) {:.1} MiB; most leases taken in one go {took} in {secs:.1} s; warnings/errors logged: {}",
            r.id,
            r.peak_rss_mib(),
            r.complaints()
        );
    }
}

fn main() {
    let began = Instant::now();
    let n = usize::try_from(env_or("BENCH_REPOS", 1000)).expect("fits");
    let window = Duration::from_secs(env_or("BENCH_WINDOW_SECS", 60));
    let samples = usize::try_from(env_or("BENCH_SAMPLES", 200)).expect("fits");
    let idle = usize::try_from(env_or("BENCH_IDLE_SAMPLES", 20)).expect("fits");
    let max_concurrent = std::env::var("BENCH_MAX_CONCURRENT").ok().and_then(|v| v.parse().ok());
    let dir = tempfile::tempdir().expect("tempdir");
    let pg = PgServer::start();
    // The platform has a runtime (and threads, named for the CPU accounting) of its own.
    let platform_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("platform").enable_all().build().expect("runtime");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("bench").enable_all().build().expect("runtime");
    let mut config = PlatformConfig::for_tests(dir.path().join("platform"));
    config.chaos_latency = API_LATENCY;
    let platform = platform_rt.block_on(novacron_platform::start(config)).expect("platform");
    let client = Client::new(ClientConfig::new(platform.endpoint(), TEST_API_KEY.1)).expect("client");
    let network = rt.block_on(async {
        let network = client.create(Kind::Network, &json!({"name": "core", "cidr": "10.60.0.0/16"})).await.expect("network").value.id().to_string();
        create_vms(&client, n, &network).await;
        network
    });
    let repos = write_repos(dir.path(), n, &network);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client");
    let statements = env_or("BENCH_PG_STATEMENTS", 0) == 1;
    let ignore_others = env_or("BENCH_IGNORE_OTHERS", 1) == 1;
    let bench = Bench {
        dir: dir.path().to_path_buf(),
        endpoint: platform.endpoint(),
        repos,
        max_concurrent,
        ignore_others,
        pg,
        statements,
        rt,
        http,
        deliveries: AtomicU64::new(0),
    };
    if statements {
        bench.load_statements();
    }
    let limit = max_concurrent.map_or("16 (the default)".to_string(), |n| n.to_string());
    println!(
        "setup: {n} repositories (one VM each) and {n} VMs on a platform with {} ms added to every API call, after {:.1} s; max_concurrent_reconciles {limit}; {}; load window {} s, {samples} timed pushes",
        API_LATENCY.as_millis(),
        began.elapsed().as_secs_f64(),
        if ignore_others { "each repository ignores the others' VMs (ignore = [\"novacron_vm.app-*\", \"novacron_network.*\"])" } else { "no ignore rules" },
        window.as_secs()
    );

    let (one, one_rate, one_p99) = bench.measure("1 replica", &["a"], window, samples, idle, false);
    drop(one);
    let (mut three, three_rate, three_p99) = bench.measure("3 replicas", &["a", "b", "c"], window, samples, idle, true);
    println!("\nthroughput 3 replicas / 1 replica: {:.2}x", three_rate / one_rate);

    let takeover = |cluster: &mut Cluster, ttl: &str| {
        let (held, first, all) = bench.takeover(cluster, 1);
        println!(
            "\ntakeover, ttl {ttl}: kill -9 of b holding {held} repositories; first reconciled elsewhere after {:.1} s, all {held} after {:.1} s; leases now {}",
            first.as_secs_f64(),
            all.as_secs_f64(),
            cluster.spread()
        );
        print_replicas(cluster);
        all
    };
    let takeover_15 = takeover(&mut three, "15 s (margin 5 s)");
    drop(three);
    let takeover_6 = (env_or("BENCH_TTL6", 1) == 1).then(|| {
        let (mut six, warm) = bench.start("six", &["a", "b", "c"], ("6s", "2s"));
        println!("\n3 replicas with ttl 6 s: every repository reconciled once {:.1} s after the start; leases {}", warm.as_secs_f64(), six.spread());
        takeover(&mut six, "6 s (margin 2 s)")
    });

    println!("\n| replicas | repositories | reconciles/min | p99 webhook→reconcile | takeover after kill -9 |");
    println!("|---|---|---|---|---|");
    println!("| 1 | {n} | {one_rate:.0} | {one_p99:.1} s | — |");
    let six = takeover_6.map(|t| format!(" ({:.1} s with `ttl = \"6s\"`)", t.as_secs_f64())).unwrap_or_default();
    println!("| 3 | {n} | {three_rate:.0} | {three_p99:.1} s | {:.1} s{six} |", takeover_15.as_secs_f64());
    println!("\nbench took {:.0} s", began.elapsed().as_secs_f64());
    platform_rt.block_on(platform.shutdown()).expect("platform stops");
}
