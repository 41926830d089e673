//! Three `serve` replicas (the real binary) sharing a real PostgreSQL, thirty repositories:
//! every repository reconciled by exactly one replica, leases spread, a webhook to a replica
//! that does not hold the repository reaching the one that does, `kill -9` of a replica taken
//! over with nothing applied twice, a replica cut off from the database stepping back, the
//! database restarting, and one audit chain across all of them.

#[allow(dead_code)]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use novacron_client::{Client, ClientConfig, Kind};
use novacron_platform::{PlatformConfig, TEST_API_KEY};
use novacron_reconcile::serve::webhook::signature_header;
use serde_json::{Value, json};
use support::git;
use support::postgres::PgServer;

const REPOS: usize = 30;
const SECRET: &str = "replica-webhook-secret";
const PATIENCE: Duration = Duration::from_secs(90);

/// A replica process and what it was started with.
struct Replica {
    name: String,
    child: Child,
    addr: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback TCP proxy in front of PostgreSQL that can be cut (a network partition between one
/// replica and the database) and restored.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let open = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (o, g) = (open.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let (o, g) = (o.clone(), g.clone());
                let born = g.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                    let cut = async {
                        while o.load(Ordering::SeqCst) && g.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cut => {}
                    }
                });
            }
        });
        Proxy { port, open, generation }
    }

    /// Drops every connection and refuses new ones.
    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

fn write_repo(dir: &Path, i: usize, network: &str) -> PathBuf {
    let repo = dir.join(format!("repo-{i:02}"));
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    let tf = format!(
        "resource \"novacron_vm\" \"app\" {{\n  name        = \"app-{i:02}\"\n  cpu_cores   = 1\n  memory_gb   = 1\n  template_id = \"tpl-ubuntu-24-04\"\n  network_id  = \"{network}\"\n  metadata    = {{ team = \"t{i:02}\" }}\n}}\n"
    );
    std::fs::write(repo.join("main.tf"), tf).expect("write");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "desired state"]);
    repo
}

fn config(dir: &Path, endpoint: &str, replica: &str, repos: &[PathBuf]) -> PathBuf {
    let mut text = format!(
        "endpoint = \"{endpoint}\"\nlisten = \"127.0.0.1:0\"\nstate_env = \"NOVACRON_STATE_URL\"\nreplica_id = \"{replica}\"\napi_key_env = \"NOVACRON_TEST_SERVE_KEY\"\ncache_dir = \"{}\"\n\n[leases]\nttl = \"6s\"\nrenew_margin = \"2s\"\n",
        dir.join(format!("cache-{replica}")).display()
    );
    for (i, repo) in repos.iter().enumerate() {
        text.push_str(&format!(
            "\n[[repo]]\nname = \"r{i:02}\"\nurl = \"{}\"\nref = \"main\"\ninterval = \"1h\"\nwebhook_secret = \"{SECRET}\"\n",
            repo.display()
        ));
    }
    let file = dir.join(format!("{replica}.toml"));
    std::fs::write(&file, text).expect("write config");
    file
}

fn spawn(name: &str, config: &Path, url: &str) -> Replica {
    let (child, addr) =
        support::spawn_serve(config, &[("NOVACRON_STATE_URL", url.as_ref()), ("NOVACRON_TEST_SERVE_KEY", TEST_API_KEY.1.as_ref())], &[TEST_API_KEY.1, SECRET]);
    Replica { name: name.to_string(), child, addr }
}

async fn status(http: &reqwest::Client, r: &Replica) -> Option<Value> {
    http.get(format!("http://{}/api/status", r.addr)).send().await.ok()?.json().await.ok()
}

async fn readyz(http: &reqwest::Client, r: &Replica) -> (u16, String) {
    match http.get(format!("http://{}/readyz", r.addr)).send().await {
        Ok(resp) => (resp.status().as_u16(), resp.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// Holder of each repository, as the replicas report it (each must agree that it holds it).
async fn holders(http: &reqwest::Client, replicas: &[&Replica]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in replicas {
        let Some(s) = status(http, r).await else { continue };
        for repo in s["repos"].as_array().into_iter().flatten() {
            let entry = out.entry(repo["name"].as_str().unwrap_or_default().to_string()).or_default();
            if repo["held_here"] == true {
                entry.push(r.name.clone());
            }
        }
    }
    out
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

async fn update_events(client: &Client, after: u64, id: &str) -> usize {
    let (mut n, mut cursor) = (0, after);
    loop {
        let batch = client.events(cursor, Duration::ZERO).await.expect("events");
        if batch.events.is_empty() {
            return n;
        }
        cursor = batch.next;
        n += batch.events.iter().filter(|e| e.id == id && e.action == "update").count();
    }
}

async fn last_event(client: &Client) -> u64 {
    let mut cursor = 0;
    loop {
        let batch = client.events(cursor, Duration::ZERO).await.expect("events");
        if batch.events.is_empty() {
            return cursor;
        }
        cursor = batch.next;
    }
}

async fn team(client: &Client, id: &str) -> String {
    let vm = client.get(Kind::Vm, id).await.expect("get vm").value.into_map();
    vm["metadata"]["team"].as_str().unwrap_or_default().to_string()
}

async fn push_hook(http: &reqwest::Client, r: &Replica, repo: &Path, delivery: &str) -> u16 {
    let body = json!({"ref": "refs/heads/main", "repository": {"full_name": "local/repo", "clone_url": repo.display().to_string(), "default_branch": "main"}})
        .to_string();
    http.post(format!("http://{}/hooks/github", r.addr))
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", delivery)
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", signature_header(SECRET.as_bytes(), body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("hook answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_thirty_repositories_survive_kill_partition_and_a_database_restart() {
    let Some(pg) = PgServer::start_or_skip("three_replicas_share_thirty_repositories_survive_kill_partition_and_a_database_restart") else { return };
    let url = pg.create_database("replicas");
    let dir = tempfile::tempdir().expect("tempdir");
    let platform = novacron_platform::start(PlatformConfig::for_tests(dir.path().join("platform"))).await.expect("platform");
    let client = Client::new(ClientConfig::new(platform.endpoint(), TEST_API_KEY.1)).expect("client");
    let network = client.create(Kind::Network, &json!({"name": "core", "cidr": "10.60.0.0/24"})).await.expect("network").value.id().to_string();
    let mut vms = Vec::new();
    let mut repos = Vec::new();
    for i in 0..REPOS {
        repos.push(write_repo(dir.path(), i, &network));
        let vm = client
            .create(
                Kind::Vm,
                &json!({"name": format!("app-{i:02}"), "cpu_cores": 1, "memory_gb": 1, "template_id": "tpl-ubuntu-24-04", "network_id": network, "metadata": {"team": format!("t{i:02}")}}),
            )
            .await
            .expect("vm");
        vms.push(vm.value.id().to_string());
    }
    for vm in &vms {
        wait_until("the VMs running", || async { client.get(Kind::Vm, vm).await.expect("get").value.status() == Some("running") }).await;
    }
    let http = reqwest::Client::new();

    // Three replicas; c reaches the database through a proxy that can be cut.
    let proxy = Proxy::start(pg.port()).await;
    let via_proxy = url.replace(&format!(":{}/", pg.port()), &format!(":{}/", proxy.port));
    let a = spawn("a", &config(dir.path(), &platform.endpoint(), "a", &repos), &url);
    let b = spawn("b", &config(dir.path(), &platform.endpoint(), "b", &repos), &url);
    let mut c = spawn("c", &config(dir.path(), &platform.endpoint(), "c", &repos), &via_proxy);

    // All thirty reconciled, each held by exactly one replica, at most a fair share (10) plus one each.
    let spread = wait_until("every repository held by exactly one replica and reconciled", || async {
        let h = holders(&http, &[&a, &b, &c]).await;
        let Some(s) = status(&http, &a).await else { return false };
        h.len() == REPOS
            && h.values().all(|who| who.len() == 1)
            && s["repos"].as_array().is_some_and(|all| all.iter().all(|r| r["last_run"].is_string() && r["last_error"].is_null()))
    })
    .await;
    let h = holders(&http, &[&a, &b, &c]).await;
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for who in h.values() {
        *per.entry(who[0].clone()).or_default() += 1;
    }
    eprintln!("spread after {spread:?}: {per:?}");
    assert!(per.values().all(|n| *n <= REPOS / 3 + 1), "leases spread evenly: {per:?}");
    assert_eq!(per.len(), 3, "every replica holds some: {per:?}");
    let s = status(&http, &b).await.expect("status");
    assert_eq!(s["replicas"].as_array().map(|r| r.iter().filter(|x| x["alive"] == true).count()), Some(3), "{}", s["replicas"]);
    assert!(s["repos"].as_array().expect("repos").iter().all(|r| r["holder"].is_string()), "any replica shows every repository's holder");
    let metrics = http.get(format!("http://{}/metrics", a.addr)).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains(&format!("novacron_reconcile_leases_held{{replica=\"a\"}} {}\n", per["a"])), "{metrics}");
    assert!(
        metrics.contains("novacron_reconcile_lease_renewal_ok{replica=\"a\"} 1\n") && metrics.contains("novacron_reconcile_replicas_alive 3\n"),
        "{metrics}"
    );
    let page = http.get(format!("http://{}/", a.addr)).send().await.expect("console").text().await.expect("html");
    assert_eq!(page.matches("<span class=\"holder\">a (this one)</span>").count(), per["a"], "the console names the holder of every card");
    assert_eq!(page.matches("<span class=\"holder\">b</span>").count(), per["b"]);
    assert_eq!(page.matches("<span class=\"holder\">c</span>").count(), per["c"]);

    // A webhook to a replica that does not hold the repository reaches the one that does.
    let (name, owner) = h.iter().find(|(_, who)| who[0] != "a").map(|(n, who)| (n.clone(), who[0].clone())).expect("a repository a does not hold");
    let i: usize = name[1..].parse().expect("index");
    let before = last_event(&client).await;
    client.patch(Kind::Vm, &vms[i], &json!({"metadata": {"team": "intruder"}}), None).await.expect("drift");
    // The owner might see the change feed first; the webhook must work on its own, so the feed
    // event is not waited for: the revert is what counts.
    assert_eq!(push_hook(&http, &a, &repos[i], "delivery-1").await, 202, "the non-owner accepts the webhook");
    wait_until("the owner to revert the drift", || async { team(&client, &vms[i]).await == format!("t{i:02}") }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(update_events(&client, before, &vms[i]).await, 2, "the drift and exactly one revert (by {owner})");
    assert_eq!(push_hook(&http, &b, &repos[i], "delivery-1").await, 409, "a replay to another replica is still a replay");

    // kill -9 of b in the middle of its reconciles: drift every VM b holds, trigger them, kill.
    let held_by_b: Vec<usize> = h.iter().filter(|(_, who)| who[0] == "b").map(|(n, _)| n[1..].parse().expect("index")).collect();
    let before = last_event(&client).await;
    for &k in &held_by_b {
        client.patch(Kind::Vm, &vms[k], &json!({"metadata": {"team": "oncall"}}), None).await.expect("drift");
    }
    for &k in &held_by_b {
        push_hook(&http, &b, &repos[k], &format!("kill-{k}")).await;
    }
    let mut b = b;
    b.child.kill().expect("kill -9");
    let killed = Instant::now();
    let _ = b.child.wait();
    let takeover = wait_until("b's repositories taken over and reverted", || async {
        let mut all = true;
        for &k in &held_by_b {
            all &= team(&client, &vms[k]).await == format!("t{k:02}");
        }
        all
    })
    .await;
    eprintln!("takeover after kill -9 of b: {:?} ({} repositories)", killed.elapsed(), held_by_b.len());
    let _ = takeover;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for &k in &held_by_b {
        assert_eq!(update_events(&client, before, &vms[k]).await, 2, "app-{k:02}: the drift and one revert, never two");
    }
    let h = holders(&http, &[&a, &c]).await;
    assert!(h.values().all(|who| who.len() == 1), "a and c hold everything, each repository once: {h:?}");

    // c is cut off from the database: it stops acting, its repositories move to a.
    let held_by_c: BTreeSet<String> = h.iter().filter(|(_, who)| who[0] == "c").map(|(n, _)| n.clone()).collect();
    assert!(!held_by_c.is_empty(), "c holds some repositories: {h:?}");
    proxy.cut();
    wait_until("c to report that it cannot renew its leases", || async {
        let (code, why) = readyz(&http, &c).await;
        eprintln!("c /readyz: {code} {}", why.trim());
        code == 503 && why.contains("leases")
    })
    .await;
    wait_until("a to take over c's repositories", || async {
        let Some(s) = status(&http, &a).await else { return false };
        s["repos"].as_array().is_some_and(|all| all.iter().filter(|r| held_by_c.contains(r["name"].as_str().unwrap_or(""))).all(|r| r["held_here"] == true))
    })
    .await;
    let k: usize = held_by_c.iter().next().expect("one")[1..].parse().expect("index");
    let before = last_event(&client).await;
    client.patch(Kind::Vm, &vms[k], &json!({"metadata": {"team": "partition"}}), None).await.expect("drift");
    push_hook(&http, &a, &repos[k], "partition-1").await;
    wait_until("a to revert the drift of a repository c held", || async { team(&client, &vms[k]).await == format!("t{k:02}") }).await;
    proxy.restore();
    wait_until("c ready again", || async { readyz(&http, &c).await.0 == 200 }).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(update_events(&client, before, &vms[k]).await, 2, "one revert: c did not act while cut off");

    // The database restarts: replicas report not ready meanwhile, and carry on afterwards.
    pg.stop();
    wait_until("a to report not ready while PostgreSQL is down", || async { readyz(&http, &a).await.0 == 503 }).await;
    // A replica starting meanwhile waits for the database instead of exiting.
    let d_config = config(dir.path(), &platform.endpoint(), "d", &repos);
    let d_url = url.clone();
    let d = std::thread::spawn(move || spawn("d", &d_config, &d_url));
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.start_again();
    let d = tokio::task::spawn_blocking(move || d.join().expect("d starts")).await.expect("join");
    wait_until("a, c and the new d ready", || async {
        readyz(&http, &a).await.0 == 200 && readyz(&http, &c).await.0 == 200 && readyz(&http, &d).await.0 == 200
    })
    .await;
    assert!(c.child.try_wait().expect("wait").is_none(), "c is still running");

    // One audit chain across the replicas.
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_novacron-reconcile")).args(["audit", "verify", "--state", &url]).output().expect("audit verify runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "audit verify: {text}");
    eprintln!("{}", text.trim());
    drop(a);
    drop(c);
    drop(d);
}
