//! Admission under a budget: a policy that runs too long or allocates too much cannot be
//! written, and one already stored refuses (block) or is skipped (warn, audit) within the
//! budget while other requests keep being answered and the platform's memory stays put.

use super::*;

/// Iterates a hundred million numbers: gigabytes and tens of seconds unbounded.
const EXPENSIVE: &str = r#"package novacron.expensive

deny contains "never" if {
    some n in numbers.range(1, 100000000)
    n < 0
}
"#;

/// Small in memory but seconds of work: it meets the time budget, not the memory bound.
const SLOW: &str = r#"package novacron.slow

deny contains "never" if {
    some a in numbers.range(1, 1000)
    some b in numbers.range(1, 1000)
    a * b < 0
}
"#;

const NO_NEW_VMS: &str = "package novacron.freeze\n\ndeny contains \"no new vms\" if input.kind == \"vm\"\n";

const NOTHING: &str = "package novacron.expensive\n\ndeny contains \"never\" if false\n";

/// VmRSS of this process, which is the platform's: it serves in-process.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS in kB")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_over_the_budget_cannot_be_written() {
    let h = harness().await;
    let c = &h.client;
    for (name, rule) in [("expensive", EXPENSIVE), ("slow", SLOW)] {
        let started = Instant::now();
        let err = c.create(Kind::Policy, &json!({"name": name, "rule": rule})).await.unwrap_err();
        println!("policy {name} refused in {:?}", started.elapsed());
        assert_eq!(status_of(&err), 422, "{err}");
        assert_eq!(fields_of(&err), vec!["rule"]);
        assert!(
            err.to_string().contains("exceeds the admission budget: it did not finish within the admission budget of 250 ms (or exceeded 512 MiB)"),
            "{err}"
        );
    }
    let cheap = c.create(Kind::Policy, &json!({"name": "cheap", "rule": NOTHING})).await.expect("a cheap policy is accepted").value;
    let err = c.patch(Kind::Policy, cheap.id(), &json!({"rule": EXPENSIVE}), None).await.unwrap_err();
    assert_eq!((status_of(&err), fields_of(&err)), (422, vec!["rule".to_string()]), "a patch is tried too: {err}");
    let (status, _, _) = raw_with(&h, "POST", "/v1/policies?dry_run=true", Some(TEST_API_KEY.1), [], json!({"name": "dry", "rule": SLOW})).await;
    assert_eq!(status, 422, "a dry run refuses what a write refuses");
    h.platform.shutdown().await.expect("shutdown");
}

/// GETs one object in a loop until told to stop; returns each answer's latency.
fn keep_reading(client: Client, network_id: String, stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let mut latencies = Vec::new();
        while !*stop.borrow() {
            let started = Instant::now();
            client.get(Kind::Network, &network_id).await.expect("GET answered");
            latencies.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_policy_over_the_budget_blocks_or_is_skipped_while_reads_go_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let platform = start(worker_config(dir.path())).await.expect("start");
    let c = client_for(&platform);
    let net = network(&c, "core", "10.9.0.0/24").await;
    let expensive = c.create(Kind::Policy, &json!({"name": "expensive", "rule": NOTHING, "priority": 200})).await.expect("policy").value;
    let slow = c.create(Kind::Policy, &json!({"name": "slow", "rule": NOTHING, "enabled": false})).await.expect("policy").value;
    platform.shutdown().await.expect("shutdown");
    // A policy stored before the budget applied (or by hand): nothing at write time vetted it.
    let db = rusqlite::Connection::open(dir.path().join("platform.db")).expect("open the store");
    for (name, rule) in [("expensive", EXPENSIVE), ("slow", SLOW)] {
        let changed =
            db.execute("UPDATE objects SET body = json_set(body, '$.rule', ?1) WHERE kind = 'policies' AND name = ?2", [rule, name]).expect("rewrite the rule");
        assert_eq!(changed, 1);
    }
    drop(db);

    let platform = start(worker_config(dir.path())).await.expect("restart");
    let c = client_for(&platform);
    let rss_before = rss_kib();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let reader = keep_reading(client_for(&platform), net.id().to_string(), stopped);
    let small = json!({"name": "web", "cpu_cores": 2, "memory_gb": 4, "template_id": "tpl-ubuntu-24-04", "network_id": net.id()});

    let started = Instant::now();
    let err = c.create(Kind::Vm, &small).await.unwrap_err();
    let to_403 = started.elapsed();
    assert_eq!(status_of(&err), 403, "{err}");
    assert_eq!(fields_of(&err), vec!["policy/expensive"]);
    let message = err.to_string();
    assert!(
        message.contains(
            "policy \"expensive\" did not finish within the admission budget of 250 ms (or exceeded 512 MiB); the write is refused because the policy blocks"
        ),
        "{message}"
    );
    assert!(to_403 < Duration::from_secs(5), "refused in {to_403:?}");
    assert!(c.find_by_name(Kind::Vm, "web").await.expect("find").is_none(), "a refused create writes nothing");

    // The slow policy runs out of time (the expensive one out of memory): killed, 403 too.
    c.patch(Kind::Policy, expensive.id(), &json!({"enabled": false}), None).await.expect("disable expensive");
    c.patch(Kind::Policy, slow.id(), &json!({"enabled": true}), None).await.expect("enable slow");
    let started = Instant::now();
    let err = c.create(Kind::Vm, &small).await.unwrap_err();
    let slow_403 = started.elapsed();
    assert_eq!((status_of(&err), fields_of(&err)), (403, vec!["policy/slow".to_string()]), "{err}");

    c.patch(Kind::Policy, slow.id(), &json!({"enforcement_mode": "warn"}), None).await.expect("slow to warn");
    c.patch(Kind::Policy, expensive.id(), &json!({"enabled": true, "enforcement_mode": "audit"}), None).await.expect("expensive to audit");
    let admitted = c.create(Kind::Vm, &small).await.expect("warn and audit policies over budget let the write through");
    assert_eq!(admitted.warnings, vec!["policy slow: skipped: it did not finish within the admission budget of 250 ms (or exceeded 512 MiB)".to_string()]);
    let feed = c.events(0, Duration::ZERO).await.expect("events");
    let audit = feed.events.iter().find(|e| e.action == "audit").expect("an audit event");
    assert_eq!((audit.actor.as_str(), audit.name.as_str()), ("policy:expensive", "web"));
    assert!(audit.detail.as_deref().unwrap_or_default().contains("policy expensive: skipped: it did not finish within the admission budget"), "{audit:?}");

    // The pool recovers: a cheap policy is evaluated, and admits and refuses as it should.
    for policy in [&expensive, &slow] {
        c.patch(Kind::Policy, policy.id(), &json!({"enabled": false}), None).await.expect("disable");
    }
    c.create(Kind::Policy, &json!({"name": "max-cores", "rule": MAX_CORES})).await.expect("a cheap policy");
    let err = c
        .create(Kind::Vm, &json!({"name": "big", "cpu_cores": 16, "memory_gb": 4, "template_id": "tpl-ubuntu-24-04", "network_id": net.id()}))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), vec!["policy/max-cores"], "{err}");
    vm(&c, "web2", net.id()).await;

    // A block policy enabled while a write is being judged (the slow warn policy holds the
    // evaluation for the budget) is not bypassed: the write is judged again at commit.
    c.patch(Kind::Policy, slow.id(), &json!({"enabled": true}), None).await.expect("enable slow (warn)");
    let deny_all = c.create(Kind::Policy, &json!({"name": "no-new-vms", "rule": NO_NEW_VMS, "enabled": false})).await.expect("a cheap policy").value;
    let racing = {
        let c = client_for(&platform);
        let body = json!({"name": "raced", "cpu_cores": 2, "memory_gb": 4, "template_id": "tpl-ubuntu-24-04", "network_id": net.id()});
        tokio::spawn(async move { c.create(Kind::Vm, &body).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.patch(Kind::Policy, deny_all.id(), &json!({"enabled": true}), None).await.expect("enable no-new-vms meanwhile");
    let err = racing.await.expect("create task").expect_err("the policy enabled meanwhile judges the write");
    assert_eq!(fields_of(&err), vec!["policy/no-new-vms"], "{err}");

    stop.send_replace(true);
    let mut latencies = reader.await.expect("reader");
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    let max = *latencies.last().expect("some GETs");
    let rss_after = rss_kib();
    println!(
        "403 (memory) after {to_403:?}, 403 (time) after {slow_403:?}; {} GETs meanwhile, p99 {p99:?}, max {max:?}; platform RSS {rss_before} kB before, {rss_after} kB after",
        latencies.len()
    );
    assert!(max < Duration::from_secs(5), "every GET answered within 5 s: max {max:?}");
    assert!(rss_after < rss_before + 256 * 1024, "the platform's memory stays bounded: {rss_before} kB -> {rss_after} kB");
    platform.shutdown().await.expect("shutdown");
}
