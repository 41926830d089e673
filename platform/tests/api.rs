//! End-to-end tests of novacron-platform: the real server on 127.0.0.1:0 with a temporary
//! SQLite database, driven through novacron-client (and raw HTTP for malformed requests).

#[path = "api/tls.rs"]
mod tls;

use std::time::{Duration, Instant};

use novacron_client::{Client, ClientConfig, Deleted, Error, Kind, ListQuery, Object, PolicyVerdict};
use novacron_platform::{PlatformConfig, RunningPlatform, TEST_API_KEY, start};
use serde_json::{Value, json};

#[path = "api/admission.rs"]
mod admission;
#[path = "api/list_filters.rs"]
mod list_filters;
#[path = "api/scopes.rs"]
mod scopes;

struct Harness {
    platform: RunningPlatform,
    client: Client,
    _dir: tempfile::TempDir,
}

async fn harness_with(tune: impl FnOnce(&mut PlatformConfig)) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = worker_config(dir.path());
    tune(&mut config);
    let platform = start(config).await.expect("platform starts");
    let client = client_for(&platform);
    Harness { platform, client, _dir: dir }
}

/// [`PlatformConfig::for_tests`] with admission in worker processes of the real binary.
fn worker_config(dir: &std::path::Path) -> PlatformConfig {
    let mut config = PlatformConfig::for_tests(dir);
    config.admission_worker = Some(env!("CARGO_BIN_EXE_novacron-platform").into());
    config
}

async fn harness() -> Harness {
    harness_with(|_| {}).await
}

fn client_for(platform: &RunningPlatform) -> Client {
    let mut config = ClientConfig::new(platform.endpoint(), TEST_API_KEY.1);
    config.max_retries = 0;
    Client::new(config).expect("client")
}

async fn network(client: &Client, name: &str, cidr: &str) -> Object {
    client.create(Kind::Network, &json!({"name": name, "cidr": cidr})).await.expect("network created").value
}

async fn vm(client: &Client, name: &str, network_id: &str) -> Object {
    let body = json!({"name": name, "cpu_cores": 2, "memory_gb": 4, "template_id": "tpl-ubuntu-24-04", "network_id": network_id});
    client.create(Kind::Vm, &body).await.expect("vm created").value
}

async fn wait_for_status(client: &Client, kind: Kind, id: &str, status: &str) -> Object {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let obj = client.get(kind, id).await.expect("get").value;
        if obj.status() == Some(status) {
            return obj;
        }
        assert!(Instant::now() < deadline, "{id} never became {status}; last {:?}", obj.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status_of(e: &Error) -> u16 {
    e.status().unwrap_or_else(|| panic!("expected an API error, got {e}"))
}

fn fields_of(e: &Error) -> Vec<String> {
    e.field_errors().iter().map(|f| f.field.clone()).collect()
}

/// Raw HTTP for requests the typed client would never send.
async fn raw(h: &Harness, method: &str, path: &str, key: Option<&str>, body: Vec<u8>) -> (u16, Value, reqwest::header::HeaderMap) {
    let http = reqwest::Client::new();
    let mut req = http.request(method.parse().expect("method"), format!("{}{path}", h.platform.endpoint())).body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), headers)
}

/// Raw HTTP with extra headers and a JSON body, for calls the typed client does not make
/// (a dry run with an `Idempotency-Key` or `If-Match`, malformed query parameters).
async fn raw_with<const N: usize>(
    h: &Harness,
    method: &str,
    path: &str,
    key: Option<&str>,
    headers: [(&str, &str); N],
    body: Value,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let http = reqwest::Client::new();
    let mut req = http
        .request(method.parse().expect("method"), format!("{}{path}", h.platform.endpoint()))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        req = req.header(name, value);
    }
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), headers)
}

#[tokio::test]
async fn crud_for_every_kind() {
    let h = harness().await;
    let c = &h.client;
    let net = network(c, "core", "10.10.0.0/24").await;
    assert_eq!(net.get("gateway"), Some(&json!("10.10.0.1")));
    assert_eq!(net.status(), Some("active"));

    let created = c
        .create(
            Kind::Vm,
            &json!({"name": "web", "cpu_cores": 2, "memory_gb": 4, "template_id": "tpl-debian-12", "network_id": net.id(), "metadata": {"team": "web"}}),
        )
        .await
        .expect("vm");
    assert_eq!(created.status, 202);
    assert_eq!(created.value.status(), Some("provisioning"));
    assert_eq!(created.etag.as_deref(), Some("\"1\""));
    assert_eq!(created.value.get("ip_address"), Some(&json!("10.10.0.2")));
    let vm_id = created.value.id().to_string();
    let running = wait_for_status(c, Kind::Vm, &vm_id, "running").await;
    assert_eq!(running.version(), 2);

    let vol = c.create(Kind::Volume, &json!({"name": "data", "size_gb": 50, "attached_to": vm_id})).await.expect("volume");
    assert_eq!(vol.status, 201);
    assert_eq!(vol.value.status(), Some("attached"));
    assert_eq!(vol.value.get("device_path"), Some(&json!("/dev/vdb")));
    assert_eq!(vol.value.get("encrypted"), Some(&json!(true)));

    let pol = c.create(Kind::Policy, &json!({"name": "noop", "rule": "package noop\ndeny contains m if { false; m := \"x\" }"})).await.expect("policy");
    assert_eq!(pol.value.get("enforcement_mode"), Some(&json!("block")));

    // Read and list.
    for (kind, id) in [(Kind::Network, net.id()), (Kind::Vm, vm_id.as_str()), (Kind::Volume, vol.value.id()), (Kind::Policy, pol.value.id())] {
        let got = c.get(kind, id).await.expect("get");
        assert_eq!(got.value.id(), id);
        assert_eq!(got.etag, Some(format!("\"{}\"", got.value.version())));
        assert_eq!(c.list_all(kind).await.expect("list").len(), 1);
    }
    let found = c.find_by_name(Kind::Vm, "web").await.expect("find").expect("present");
    assert_eq!(found.id(), vm_id);
    assert!(c.find_by_name(Kind::Vm, "nope").await.expect("find").is_none());

    // Update: merge patch, version bump, power state, grow.
    let patched = c.patch(Kind::Vm, &vm_id, &json!({"memory_gb": 8, "metadata": {"env": "prod"}, "power_state": "stopped"}), None).await.expect("patch");
    assert_eq!(patched.value.get("memory_gb"), Some(&json!(8)));
    assert_eq!(patched.value.get("metadata"), Some(&json!({"team": "web", "env": "prod"})));
    assert_eq!(patched.value.status(), Some("stopped"));
    assert_eq!(patched.value.version(), 3);
    let same = c.patch(Kind::Vm, &vm_id, &json!({"memory_gb": 8}), None).await.expect("no-op patch");
    assert_eq!(same.value.version(), 3, "a patch that changes nothing keeps the version");
    let grown = c.patch(Kind::Volume, vol.value.id(), &json!({"size_gb": 80}), None).await.expect("grow");
    assert_eq!(grown.value.get("size_gb"), Some(&json!(80)));
    let renamed = c.patch(Kind::Network, net.id(), &json!({"name": "core-net", "dns_servers": ["1.1.1.1"]}), None).await.expect("rename");
    assert_eq!(renamed.value.name(), "core-net");

    // Delete in dependency order.
    let detached = c.patch(Kind::Volume, vol.value.id(), &json!({"attached_to": null}), None).await.expect("detach");
    assert_eq!(detached.value.status(), Some("available"));
    assert!(detached.value.get("device_path").is_none());
    assert!(matches!(c.delete(Kind::Volume, vol.value.id()).await.expect("delete volume"), Deleted::Gone));
    assert!(matches!(c.delete(Kind::Policy, pol.value.id()).await.expect("delete policy"), Deleted::Gone));
    match c.delete(Kind::Vm, &vm_id).await.expect("delete vm") {
        Deleted::Accepted(obj) => assert_eq!(obj.status(), Some("deleting")),
        Deleted::Gone => panic!("vm deletion is asynchronous"),
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.get(Kind::Vm, &vm_id).await {
            Err(e) if e.is_not_found() => break,
            Ok(_) => assert!(Instant::now() < deadline, "vm never went away"),
            Err(e) => panic!("unexpected {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(c.delete(Kind::Network, net.id()).await.expect("delete network"), Deleted::Gone));
    let err = c.get(Kind::Network, net.id()).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    for kind in Kind::MANAGED {
        assert!(c.list_all(kind).await.expect("list").is_empty(), "{kind} left behind");
    }
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn templates_are_a_read_only_catalogue() {
    let h = harness().await;
    let all = h.client.list_all(Kind::Template).await.expect("templates");
    assert!(all.len() >= 8, "seeded catalogue has several images");
    let ubuntu = h.client.list_page(Kind::Template, &ListQuery { os: Some("ubuntu".into()), ..Default::default() }).await.expect("filter");
    assert!(!ubuntu.items.is_empty() && ubuntu.items.iter().all(|t| t.get("os") == Some(&json!("ubuntu"))));
    let err = h.client.create(Kind::Template, &json!({"name": "mine"})).await.unwrap_err();
    assert_eq!(status_of(&err), 405);
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn pagination_walks_every_page_once() {
    let h = harness().await;
    for i in 0..25 {
        h.client
            .create(Kind::Policy, &json!({"name": format!("p{i:02}"), "rule": "package p\ndeny contains m if { false; m := \"\" }", "enabled": false}))
            .await
            .expect("policy");
    }
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = h.client.list_page(Kind::Policy, &ListQuery { page_size: Some(10), page_token: token.clone(), ..Default::default() }).await.expect("page");
        pages += 1;
        seen.extend(page.items.iter().map(|o| o.name().to_string()));
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("p{i:02}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(h.client.list_all(Kind::Policy).await.expect("all").len(), 25);
    let (status, body, _) = raw(&h, "GET", "/v1/policies?page_token=garbage", Some(TEST_API_KEY.1), vec![]).await;
    assert_eq!(status, 400, "{body}");
    let (status, body, _) = raw(&h, "GET", "/v1/policies?page_size=5000", Some(TEST_API_KEY.1), vec![]).await;
    assert_eq!((status, body["errors"][0]["field"].as_str()), (400, Some("page_size")));
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn stale_etag_gets_412_and_changes_nothing() {
    let h = harness().await;
    let net = h.client.create(Kind::Network, &json!({"name": "n", "cidr": "10.1.0.0/16"})).await.expect("net");
    let etag = net.etag.clone().expect("etag");
    h.client.patch(Kind::Network, net.value.id(), &json!({"mtu": 9000}), Some(&etag)).await.expect("first writer wins");
    let err = h.client.patch(Kind::Network, net.value.id(), &json!({"mtu": 1400}), Some(&etag)).await.unwrap_err();
    assert!(err.is_precondition_failed(), "{err}");
    let now = h.client.get(Kind::Network, net.value.id()).await.expect("get");
    assert_eq!(now.value.get("mtu"), Some(&json!(9000)));
    assert_eq!(now.etag.as_deref(), Some("\"2\""));
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn addresses_come_from_the_network_and_are_reused() {
    let h = harness().await;
    let net = network(&h.client, "tiny", "192.168.5.0/29").await; // hosts .1-.6, gateway .1
    let mut ips = Vec::new();
    for i in 0..5 {
        ips.push(vm(&h.client, &format!("vm{i}"), net.id()).await);
    }
    let got: Vec<&str> = ips.iter().map(|v| v.get("ip_address").and_then(Value::as_str).expect("ip")).collect();
    assert_eq!(got, ["192.168.5.2", "192.168.5.3", "192.168.5.4", "192.168.5.5", "192.168.5.6"]);
    let body = json!({"name": "overflow", "cpu_cores": 1, "memory_gb": 1, "template_id": "tpl-debian-12", "network_id": net.id()});
    let err = h.client.create(Kind::Vm, &body).await.unwrap_err();
    assert_eq!(status_of(&err), 409, "{err}");
    assert!(err.to_string().contains("no free addresses"), "{err}");
    h.client.delete(Kind::Vm, ips[1].id()).await.expect("delete");
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.client.get(Kind::Vm, ips[1].id()).await.is_ok() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = h.client.create(Kind::Vm, &body).await.expect("address freed");
    assert_eq!(again.value.get("ip_address"), Some(&json!("192.168.5.3")));
    h.platform.shutdown().await.expect("shutdown");
}

const MAX_CORES: &str = r#"package novacron.sizing

deny contains msg if {
    input.kind == "vm"
    input.object.cpu_cores > 8
    msg := sprintf("vm %s asks for %d cores; at most 8 are allowed", [input.object.name, input.object.cpu_cores])
}
"#;

#[tokio::test]
async fn policy_block_warn_and_audit() {
    let h = harness().await;
    let c = &h.client;
    let net = network(c, "core", "10.2.0.0/24").await;
    let pol = c.create(Kind::Policy, &json!({"name": "max-cores", "rule": MAX_CORES, "enforcement_mode": "block"})).await.expect("policy").value;
    let big = json!({"name": "big", "cpu_cores": 16, "memory_gb": 4, "template_id": "tpl-debian-12", "network_id": net.id()});

    let err = c.create(Kind::Vm, &big).await.unwrap_err();
    assert_eq!(status_of(&err), 403);
    assert_eq!(fields_of(&err), vec!["policy/max-cores"]);
    assert!(err.to_string().contains("vm big asks for 16 cores"), "{err}");
    assert!(c.find_by_name(Kind::Vm, "big").await.expect("find").is_none(), "a denied create writes nothing");
    let small = vm(c, "small", net.id()).await;
    let err = c.patch(Kind::Vm, small.id(), &json!({"cpu_cores": 12}), None).await.unwrap_err();
    assert_eq!(status_of(&err), 403, "updates are judged too");

    c.patch(Kind::Policy, pol.id(), &json!({"enforcement_mode": "warn"}), None).await.expect("to warn");
    let warned = c.create(Kind::Vm, &big).await.expect("warn accepts");
    assert_eq!(warned.warnings, vec!["policy max-cores: vm big asks for 16 cores; at most 8 are allowed".to_string()]);

    c.patch(Kind::Policy, pol.id(), &json!({"enforcement_mode": "audit"}), None).await.expect("to audit");
    let audited = c
        .create(Kind::Vm, &json!({"name": "big2", "cpu_cores": 32, "memory_gb": 4, "template_id": "tpl-debian-12", "network_id": net.id()}))
        .await
        .expect("audit accepts");
    assert!(audited.warnings.is_empty());
    let feed = c.events(0, Duration::ZERO).await.expect("events");
    let audit = feed.events.iter().find(|e| e.action == "audit").expect("an audit event");
    assert_eq!((audit.kind.as_str(), audit.name.as_str()), ("vms", "big2"));
    assert!(audit.detail.as_deref().unwrap_or_default().contains("32 cores"));

    c.patch(Kind::Policy, pol.id(), &json!({"enforcement_mode": "block", "enabled": false}), None).await.expect("disable");
    c.create(Kind::Vm, &json!({"name": "big3", "cpu_cores": 64, "memory_gb": 4, "template_id": "tpl-debian-12", "network_id": net.id()}))
        .await
        .expect("disabled policies are not evaluated");
    h.platform.shutdown().await.expect("shutdown");
}

const OWNER_LABEL: &str = r#"package novacron.labels

deny contains msg if {
    input.kind == "vm"
    not input.object.metadata.owner
    msg := sprintf("vm %s has no owner label", [input.object.name])
}
"#;

const BIG_MEMORY: &str = r#"package novacron.memory

deny contains msg if {
    input.kind == "vm"
    input.object.memory_gb > 16
    msg := sprintf("vm %s asks for %d GB", [input.object.name, input.object.memory_gb])
}
"#;

/// Policies in all three modes, highest priority first: block on cores, warn on a missing
/// owner label, audit on memory.
async fn three_policies(c: &Client) {
    for (name, rule, mode, priority) in
        [("max-cores", MAX_CORES, "block", 300), ("owner-label", OWNER_LABEL, "warn", 200), ("big-memory", BIG_MEMORY, "audit", 100)]
    {
        c.create(Kind::Policy, &json!({"name": name, "rule": rule, "enforcement_mode": mode, "priority": priority})).await.expect("policy");
    }
}

fn verdict(policy: &str, mode: &str, message: &str) -> PolicyVerdict {
    PolicyVerdict { policy: policy.into(), mode: mode.into(), messages: vec![message.into()] }
}

async fn last_seq(c: &Client) -> u64 {
    c.events(0, Duration::ZERO).await.expect("events").next
}

#[tokio::test]
async fn dry_run_create_reports_every_verdict_and_writes_nothing() {
    let h = harness().await;
    let c = &h.client;
    let net = network(c, "core", "10.20.0.0/24").await;
    three_policies(c).await;
    let before = last_seq(c).await;
    let secret = "#cloud-config\npassword: hunter2\n";
    let big = json!({"name": "big", "cpu_cores": 16, "memory_gb": 32, "template_id": "tpl-debian-12", "network_id": net.id(), "user_data": secret});

    let dry = c.dry_run_create(Kind::Vm, &big).await.expect("a denied dry run still answers 200");
    assert!(!dry.allowed);
    assert_eq!(
        dry.verdicts,
        vec![
            verdict("max-cores", "block", "vm big asks for 16 cores; at most 8 are allowed"),
            verdict("owner-label", "warn", "vm big has no owner label"),
            verdict("big-memory", "audit", "vm big asks for 32 GB"),
        ]
    );
    let object = dry.object.as_object().expect("an object");
    assert!(object.get("id").is_none(), "a dry-run create assigns no id");
    assert_eq!((object["name"].as_str(), object["version"].as_i64(), object["status"].as_str()), (Some("big"), Some(1), Some("provisioning")));
    assert_eq!(object["ip_address"], json!("10.20.0.2"), "the address a create would get now");
    assert_eq!(object["user_data_sha256"], json!(novacron_schemas::sha256_hex(secret.as_bytes())));
    assert!(!dry.object.to_string().contains("hunter2"), "write-only values are never answered");

    // The real write is still refused, and an admitted dry run says so.
    let err = c.create(Kind::Vm, &big).await.unwrap_err();
    assert_eq!((status_of(&err), fields_of(&err)), (403, vec!["policy/max-cores".to_string()]));
    let fine = json!({"name": "fine", "cpu_cores": 2, "memory_gb": 4, "template_id": "tpl-debian-12", "network_id": net.id(), "metadata": {"owner": "web"}});
    let admitted = c.dry_run_create(Kind::Vm, &fine).await.expect("dry run");
    assert!(admitted.allowed && admitted.verdicts.is_empty(), "{admitted:?}");

    // An Idempotency-Key on a dry run is neither consulted nor recorded.
    let (status, body, headers) =
        raw_with(&h, "POST", "/v1/networks?dry_run=1", Some(TEST_API_KEY.1), [("idempotency-key", "k-dry")], json!({"name": "n2", "cidr": "10.21.0.0/24"}))
            .await;
    assert_eq!(status, 200, "{body}");
    assert!(headers.get("etag").is_none() && headers.get("location").is_none(), "nothing stored, nothing to point at");
    assert_eq!((body["allowed"].clone(), body["verdicts"].clone(), body["object"]["gateway"].clone()), (json!(true), json!([]), json!("10.21.0.1")));

    // Nothing was written: no object, no event (not even the audit), no address, no key.
    assert!(c.list_all(Kind::Vm).await.expect("list").is_empty());
    assert_eq!(c.list_all(Kind::Network).await.expect("list").len(), 1);
    assert!(c.events(before, Duration::ZERO).await.expect("events").events.is_empty(), "dry runs append no event");
    let other = c.create_with_key(Kind::Network, &json!({"name": "n3", "cidr": "10.22.0.0/24"}), "k-dry").await.expect("the key was not recorded");
    assert!(!other.replayed);
    let real = c.create(Kind::Vm, &fine).await.expect("real create");
    assert_eq!(real.value.get("ip_address"), Some(&json!("10.20.0.2")), "the dry runs consumed no address");
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn dry_runs_refuse_what_a_write_refuses() {
    let h = harness().await;
    let c = &h.client;
    let key = Some(TEST_API_KEY.1);
    let net = network(c, "core", "10.23.0.0/24").await;
    let before = last_seq(c).await;

    let err = c.dry_run_create(Kind::Network, &json!({"name": "x", "cidr": "10.24.0.0/24", "colour": "blue"})).await.unwrap_err();
    assert_eq!((status_of(&err), fields_of(&err)), (400, vec!["colour".to_string()]));
    let err = c
        .dry_run_create(Kind::Vm, &json!({"name": "v", "cpu_cores": 0, "memory_gb": 1, "template_id": "tpl-debian-12", "network_id": net.id()}))
        .await
        .unwrap_err();
    assert_eq!((status_of(&err), fields_of(&err)), (422, vec!["cpu_cores".to_string()]));
    let err = c
        .dry_run_create(Kind::Vm, &json!({"name": "v", "cpu_cores": 1, "memory_gb": 1, "template_id": "tpl-debian-12", "network_id": "net-nope"}))
        .await
        .unwrap_err();
    assert_eq!((status_of(&err), fields_of(&err)), (422, vec!["network_id".to_string()]));
    let err = c.dry_run_create(Kind::Network, &json!({"name": "core", "cidr": "10.25.0.0/24"})).await.unwrap_err();
    assert_eq!(status_of(&err), 409, "a taken name: {err}");
    let err = c.dry_run_update(Kind::Network, net.id(), &json!({"cidr": "10.99.0.0/24"})).await.unwrap_err();
    assert_eq!((status_of(&err), fields_of(&err)), (409, vec!["cidr".to_string()]));
    let err = c.dry_run_update(Kind::Network, "net-nope", &json!({"mtu": 1400})).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = c.dry_run_create(Kind::Template, &json!({"name": "mine"})).await.unwrap_err();
    assert_eq!(status_of(&err), 405);

    // Policies: Rego is compiled, policies are not judged by policies.
    let broken =
        c.dry_run_create(Kind::Policy, &json!({"name": "broken", "rule": "package b\n\ndeny contains m if {\n  input.kind ==\n}\n"})).await.unwrap_err();
    assert_eq!((status_of(&broken), fields_of(&broken)), (422, vec!["rule".to_string()]));
    let policy = c.dry_run_create(Kind::Policy, &json!({"name": "max-cores", "rule": MAX_CORES})).await.expect("compiles");
    assert!(policy.allowed && policy.verdicts.is_empty());
    assert_eq!(policy.object["enforcement_mode"], json!("block"));

    // The flag itself: four spellings, nothing else, and no stray parameters on writes.
    for query in ["dry_run=yes", "dry_run=", "dry_run=true&dry_run=false", "dryrun=true"] {
        let (status, body, _) = raw_with(&h, "POST", &format!("/v1/networks?{query}"), key, [], json!({"name": "x", "cidr": "10.26.0.0/24"})).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(matches!(body["errors"][0]["field"].as_str(), Some("dry_run" | "dryrun")), "{query}: {body}");
    }
    let (status, body, _) = raw_with(&h, "PATCH", &format!("/v1/networks/{}?dry_run=maybe", net.id()), key, [], json!({"mtu": 1400})).await;
    assert_eq!((status, body["errors"][0]["field"].as_str()), (400, Some("dry_run")), "{body}");
    assert!(body["detail"].as_str().unwrap_or_default().contains("true, false, 1 or 0"), "{body}");

    assert!(c.events(before, Duration::ZERO).await.expect("events").events.is_empty(), "nothing above was written");
    assert_eq!(c.list_all(Kind::Network).await.expect("list").len(), 1);
    assert!(c.list_all(Kind::Policy).await.expect("list").is_empty());
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn dry_run_patch_merges_reports_and_changes_nothing() {
    let h = harness().await;
    let c = &h.client;
    let net = network(c, "core", "10.27.0.0/24").await;
    let other = network(c, "edge", "10.28.0.0/24").await;
    let v = vm(c, "web", net.id()).await;
    let v = wait_for_status(c, Kind::Vm, v.id(), "running").await;
    three_policies(c).await;
    let before = last_seq(c).await;

    let dry = c.dry_run_update(Kind::Vm, v.id(), &json!({"cpu_cores": 12, "metadata": {"owner": "web"}, "network_id": other.id()})).await.expect("dry run");
    assert!(!dry.allowed);
    assert_eq!(dry.verdicts, vec![verdict("max-cores", "block", "vm web asks for 12 cores; at most 8 are allowed")]);
    assert_eq!(dry.object["id"], json!(v.id()));
    assert_eq!(dry.object["cpu_cores"], json!(12));
    assert_eq!(dry.object["memory_gb"], json!(4), "unpatched attributes are kept");
    assert_eq!(dry.object["metadata"], json!({"owner": "web"}));
    assert_eq!(dry.object["ip_address"], json!("10.28.0.2"), "moving networks would re-allocate");
    assert_eq!(dry.object["version"], json!(v.version() + 1));

    // A patch that changes nothing is still judged, on the object as it is.
    let same = c.dry_run_update(Kind::Vm, v.id(), &json!({"cpu_cores": 2})).await.expect("no-op dry run");
    assert!(same.allowed);
    assert_eq!(same.verdicts, vec![verdict("owner-label", "warn", "vm web has no owner label")]);
    assert_eq!(same.object["version"], json!(v.version()));

    // If-Match is checked as a real patch checks it.
    let (status, body, _) =
        raw_with(&h, "PATCH", &format!("/v1/vms/{}?dry_run=true", v.id()), Some(TEST_API_KEY.1), [("if-match", "\"99\"")], json!({"memory_gb": 8})).await;
    assert_eq!(status, 412, "{body}");

    let now = c.get(Kind::Vm, v.id()).await.expect("get").value;
    assert_eq!(now, v, "the vm is as it was");
    assert!(c.events(before, Duration::ZERO).await.expect("events").events.is_empty(), "dry runs append no event");
    let moved = vm(c, "api", other.id()).await;
    assert_eq!(moved.get("ip_address"), Some(&json!("10.28.0.2")), "the dry run kept no address on the other network");
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn broken_rego_is_refused_with_its_line() {
    let h = harness().await;
    let rule = "package broken\n\ndeny contains msg if {\n    input.kind ==\n}\n";
    let err = h.client.create(Kind::Policy, &json!({"name": "broken", "rule": rule})).await.unwrap_err();
    assert_eq!(status_of(&err), 422);
    assert_eq!(fields_of(&err), vec!["rule"]);
    let message = &err.field_errors()[0].message;
    assert!(message.contains(":4:") || message.contains(":5:"), "the message names the line: {message}");
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn event_feed_is_ordered_long_polls_and_survives_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let platform = start(PlatformConfig::for_tests(dir.path())).await.expect("start");
    let c = client_for(&platform);
    let net = network(&c, "a", "10.3.0.0/24").await;
    let v = vm(&c, "v", net.id()).await;
    wait_for_status(&c, Kind::Vm, v.id(), "running").await;
    let feed = c.events(0, Duration::ZERO).await.expect("events");
    let actions: Vec<(&str, &str, &str)> = feed.events.iter().map(|e| (e.action.as_str(), e.kind.as_str(), e.actor.as_str())).collect();
    assert_eq!(actions, [("create", "networks", "tester"), ("create", "vms", "tester"), ("provisioned", "vms", "platform")]);
    assert!(feed.events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(feed.next, feed.events.last().expect("events").seq);

    // A long poll returns as soon as something happens.
    let poller = {
        let c = c.clone();
        let after = feed.next;
        tokio::spawn(async move {
            let start = Instant::now();
            let batch = c.events(after, Duration::from_secs(20)).await.expect("poll");
            (batch, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.patch(Kind::Network, net.id(), &json!({"mtu": 1400}), None).await.expect("patch");
    let (batch, waited) = poller.await.expect("poller");
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.events[0].action, "update");
    assert!(waited < Duration::from_secs(20), "the long poll was woken by the change");
    let empty = c.events(batch.next, Duration::from_millis(100)).await.expect("empty poll");
    assert!(empty.events.is_empty());
    assert_eq!(empty.next, batch.next);

    // Restart on the same data directory: the feed and the objects are still there, and
    // seqs keep growing.
    let before = c.events(0, Duration::ZERO).await.expect("events").events;
    platform.shutdown().await.expect("shutdown");
    let platform = start(PlatformConfig::for_tests(dir.path())).await.expect("restart");
    let c = client_for(&platform);
    let after = c.events(0, Duration::ZERO).await.expect("events").events;
    assert_eq!(before, after);
    network(&c, "b", "10.4.0.0/24").await;
    let newest = c.events(before.last().expect("events").seq, Duration::ZERO).await.expect("events");
    assert_eq!(newest.events.len(), 1);
    assert!(newest.events[0].seq > before.last().expect("events").seq);
    assert_eq!(c.list_all(Kind::Vm).await.expect("vms").len(), 1);
    platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn provisioning_interrupted_by_a_restart_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = PlatformConfig::for_tests(dir.path());
    config.provision_delay = Duration::from_secs(30);
    let platform = start(config).await.expect("start");
    let c = client_for(&platform);
    let net = network(&c, "a", "10.5.0.0/24").await;
    let v = vm(&c, "v", net.id()).await;
    platform.shutdown().await.expect("shutdown");
    let platform = start(PlatformConfig::for_tests(dir.path())).await.expect("restart");
    let c = client_for(&platform);
    wait_for_status(&c, Kind::Vm, v.id(), "running").await;
    platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn idempotency_key_replays_the_first_answer() {
    let h = harness().await;
    let body = json!({"name": "once", "cidr": "10.6.0.0/24"});
    let first = h.client.create_with_key(Kind::Network, &body, "key-123").await.expect("first");
    let second = h.client.create_with_key(Kind::Network, &body, "key-123").await.expect("replay");
    assert!(second.replayed && !first.replayed);
    assert_eq!(first.value.id(), second.value.id());
    assert_eq!(h.client.list_all(Kind::Network).await.expect("list").len(), 1);
    let err = h.client.create_with_key(Kind::Network, &json!({"name": "other", "cidr": "10.7.0.0/24"}), "key-123").await.unwrap_err();
    assert_eq!(status_of(&err), 422);
    assert_eq!(fields_of(&err), vec!["Idempotency-Key"]);
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn user_data_is_write_only() {
    let h = harness().await;
    let net = network(&h.client, "n", "10.8.0.0/24").await;
    let secret = "#cloud-config\npassword: hunter2-very-secret\n";
    let created = h
        .client
        .create(Kind::Vm, &json!({"name": "v", "cpu_cores": 1, "memory_gb": 1, "template_id": "tpl-debian-12", "network_id": net.id(), "user_data": secret}))
        .await
        .expect("vm");
    let text = serde_json::to_string(&created.value).expect("json");
    assert!(!text.contains("hunter2"), "user_data is never returned");
    assert_eq!(created.value.get("user_data_sha256"), Some(&json!(novacron_schemas::sha256_hex(secret.as_bytes()))));
    let (_, listed, _) = raw(&h, "GET", "/v1/vms", Some(TEST_API_KEY.1), vec![]).await;
    assert!(!listed.to_string().contains("hunter2"));
    let changed = h.client.patch(Kind::Vm, created.value.id(), &json!({"user_data": "#cloud-config\n"}), None).await.expect("update");
    assert_eq!(changed.value.get("user_data_sha256"), Some(&json!(novacron_schemas::sha256_hex(b"#cloud-config\n"))));
    let cleared = h.client.patch(Kind::Vm, created.value.id(), &json!({"user_data": null}), None).await.expect("clear");
    assert!(cleared.value.get("user_data_sha256").is_none());
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn referential_integrity() {
    let h = harness().await;
    let c = &h.client;
    let err = c.create(Kind::Vm, &json!({"name": "v", "cpu_cores": 1, "memory_gb": 1, "template_id": "tpl-nope", "network_id": "net-nope"})).await.unwrap_err();
    assert_eq!((status_of(&err), fields_of(&err)), (422, vec!["template_id".to_string()]));
    let err =
        c.create(Kind::Vm, &json!({"name": "v", "cpu_cores": 1, "memory_gb": 1, "template_id": "tpl-debian-12", "network_id": "net-nope"})).await.unwrap_err();
    assert_eq!((status_of(&err), fields_of(&err)), (422, vec!["network_id".to_string()]));
    let err = c.create(Kind::Volume, &json!({"name": "d", "size_gb": 10, "attached_to": "vm-nope"})).await.unwrap_err();
    assert_eq!((status_of(&err), fields_of(&err)), (422, vec!["attached_to".to_string()]));

    let net = network(c, "core", "10.9.0.0/24").await;
    let v = vm(c, "web", net.id()).await;
    let vol = c.create(Kind::Volume, &json!({"name": "d", "size_gb": 10, "attached_to": v.id()})).await.expect("volume").value;
    let err = c.delete(Kind::Network, net.id()).await.unwrap_err();
    assert_eq!(status_of(&err), 409);
    assert!(err.to_string().contains("vm web"), "says what holds it: {err}");
    let err = c.delete(Kind::Vm, v.id()).await.unwrap_err();
    assert_eq!(status_of(&err), 409);
    assert!(err.to_string().contains("volume d"), "says what holds it: {err}");
    let err = c.delete(Kind::Volume, vol.id()).await.unwrap_err();
    assert_eq!(status_of(&err), 409, "an attached volume must be detached first");
    h.platform.shutdown().await.expect("shutdown");
}

/// The answers behind referential integrity carry what `x-reference` in `schemas/` declares:
/// the `if-missing` advice on a write naming an absent object, the `holds` advice on a delete
/// refused while something holds the object.
#[tokio::test]
async fn reference_answers_follow_the_schema() {
    let h = harness().await;
    let c = &h.client;
    let reference = |kind: Kind, attr: &str| kind.schema().attribute(attr).and_then(|a| a.reference.clone()).expect("a reference");
    let err = c.create(Kind::Volume, &json!({"name": "d", "size_gb": 10, "attached_to": "vm-nope"})).await.unwrap_err();
    assert!(err.to_string().contains(&format!("no vm with id \"vm-nope\"; {}", reference(Kind::Volume, "attached_to").if_missing)), "{err}");

    let net = network(c, "core", "10.19.0.0/24").await;
    let v = vm(c, "web", net.id()).await;
    c.create(Kind::Volume, &json!({"name": "d", "size_gb": 10, "attached_to": v.id()})).await.expect("volume");
    let mut held = Vec::new();
    for (kind, id) in [(Kind::Network, net.id()), (Kind::Vm, v.id())] {
        for (holder, attr, advice) in novacron_schemas::catalog().holders_of(kind) {
            let err = c.delete(kind, id).await.unwrap_err();
            assert_eq!(status_of(&err), 409);
            assert!(err.to_string().contains(&format!("is in use by {holder} ")) && err.to_string().contains(advice), "{err}");
            held.push(format!("{kind} by {holder}.{}", attr.name));
        }
    }
    assert_eq!(held, ["network by vm.network_id", "vm by volume.attached_to"]);
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bad_input_gets_a_clear_answer_and_writes_nothing() {
    let h = harness().await;
    let key = Some(TEST_API_KEY.1);
    let net = network(&h.client, "core", "10.11.0.0/24").await;
    let before = h.client.events(0, Duration::ZERO).await.expect("events").events.len();

    let (status, body, headers) = raw(&h, "POST", "/v1/networks", key, b"{\"name\": \"x\",".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(body["detail"].as_str().unwrap_or_default().contains("malformed JSON"), "{body}");

    let err = h.client.create(Kind::Network, &json!({"name": "x", "cidr": "10.12.0.0/24", "colour": "blue"})).await.unwrap_err();
    assert_eq!((status_of(&err), fields_of(&err)), (400, vec!["colour".to_string()]));

    let err = h.client.create(Kind::Network, &json!({"name": "x", "cidr": "10.0.0.0/33"})).await.unwrap_err();
    assert_eq!((status_of(&err), fields_of(&err)), (422, vec!["cidr".to_string()]));

    let err = h
        .client
        .create(Kind::Vm, &json!({"name": "v", "cpu_cores": 0, "memory_gb": 5000, "template_id": "tpl-debian-12", "network_id": net.id()}))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 422);
    let msgs: Vec<String> = err.field_errors().iter().map(|f| format!("{}: {}", f.field, f.message)).collect();
    assert!(msgs.iter().any(|m| m.starts_with("cpu_cores") && m.contains("between 1 and 128")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.starts_with("memory_gb") && m.contains("between 1 and 1024")), "{msgs:?}");

    let err = h.client.create(Kind::Network, &json!({"name": "Bad_Name", "cidr": "10.13.0.0/24"})).await.unwrap_err();
    assert_eq!((status_of(&err), fields_of(&err)), (422, vec!["name".to_string()]));
    let err = h.client.create(Kind::Network, &json!({"name": "core", "cidr": "10.14.0.0/24"})).await.unwrap_err();
    assert_eq!(status_of(&err), 409, "name taken: {err}");

    let err = h.client.patch(Kind::Network, net.id(), &json!({"cidr": "10.99.0.0/24"}), None).await.unwrap_err();
    assert_eq!((status_of(&err), fields_of(&err)), (409, vec!["cidr".to_string()]));
    let vol = h.client.create(Kind::Volume, &json!({"name": "d", "size_gb": 100})).await.expect("volume").value;
    let err = h.client.patch(Kind::Volume, vol.id(), &json!({"size_gb": 10}), None).await.unwrap_err();
    assert_eq!(status_of(&err), 409);
    assert!(err.to_string().contains("size can only grow"), "{err}");
    let err = h.client.patch(Kind::Volume, vol.id(), &json!({"status": "attached"}), None).await.unwrap_err();
    assert_eq!((status_of(&err), fields_of(&err)), (400, vec!["status".to_string()]));

    let big = format!("{{\"name\":\"x\",\"cidr\":\"10.15.0.0/24\",\"pad\":\"{}\"}}", "a".repeat(1024 * 1024 + 10));
    let (status, body, _) = raw(&h, "POST", "/v1/networks", key, big.into_bytes()).await;
    assert_eq!(status, 413, "{body}");

    let (missing, missing_body, _) = raw(&h, "GET", "/v1/vms", None, vec![]).await;
    let (wrong, wrong_body, _) = raw(&h, "GET", "/v1/vms", Some("not-the-key"), vec![]).await;
    assert_eq!((missing, wrong), (401, 401));
    assert_eq!(missing_body, wrong_body, "missing and wrong keys get the same answer");

    let (status, _, _) = raw(&h, "GET", "/v1/widgets", key, vec![]).await;
    assert_eq!(status, 404);

    // Nothing above was written: only the volume create shows up in the feed.
    let after = h.client.events(0, Duration::ZERO).await.expect("events").events;
    assert_eq!(after.len(), before + 1);
    assert_eq!(h.client.list_all(Kind::Network).await.expect("list").len(), 1);
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let h = harness().await;
    let http = reqwest::Client::new();
    let base = h.platform.endpoint();
    assert_eq!(http.get(format!("{base}/healthz")).send().await.expect("healthz").status(), 200);
    assert_eq!(http.get(format!("{base}/readyz")).send().await.expect("readyz").status(), 200);
    network(&h.client, "n", "10.16.0.0/24").await;
    let text = http.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(text.contains("novacron_http_requests_total{method=\"POST\",route=\"/v1/networks\",status=\"201\"} 1"), "{text}");
    assert!(text.contains("novacron_http_request_duration_seconds_bucket"));
    assert!(text.contains("novacron_objects{kind=\"networks\"} 1"));
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let h = harness_with(|c| c.rate_limit_rps = Some(2.0)).await;
    let mut limited = None;
    for _ in 0..10 {
        let (status, _, headers) = raw(&h, "GET", "/v1/networks", Some(TEST_API_KEY.1), vec![]).await;
        if status == 429 {
            limited = Some(headers);
            break;
        }
    }
    let headers = limited.expect("a burst over the limit is refused");
    assert_eq!(headers["retry-after"], "1");
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_binary_refuses_to_start_without_keys_and_shuts_down_gracefully() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let bin = env!("CARGO_BIN_EXE_novacron-platform");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(bin).args(["--listen", "127.0.0.1:0", "--data"]).arg(dir.path()).env_remove("NOVACRON_PLATFORM_API_KEYS").output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--api-key NAME:SECRET"));

    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--chaos-latency-ms", "700", "--data"])
        .arg(dir.path())
        .env("NOVACRON_PLATFORM_API_KEYS", "ops:graceful-secret")
        .env("NOVACRON_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
    let endpoint = line.trim().rsplit(' ').next().expect("endpoint").to_string();
    // A Terraform state write and lock, logged at debug level, leave no trace of the state.
    let stored = state_call(&endpoint, "POST", "/v1/tfstate/logged", Auth::Basic("graceful-secret"), state_body(1, "state-marker-s3cr3t")).await;
    assert_eq!(stored.status, 200);
    assert_eq!(state_call(&endpoint, "LOCK", "/v1/tfstate/logged", Auth::Basic("graceful-secret"), lock_info("log-lock", "w@h")).await.status, 200);
    let client = Client::new(ClientConfig::new(endpoint, "graceful-secret")).expect("client");
    // A request in flight when SIGTERM arrives still completes and is kept.
    let inflight = tokio::spawn(async move { client.create(Kind::Network, &json!({"name": "kept", "cidr": "10.20.0.0/24"})).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let created = inflight.await.expect("task").expect("the in-flight create completes");
    let status = child.wait().expect("wait");
    assert!(status.success(), "exit status {status:?}");
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut logs).expect("logs");
    assert!(!logs.contains("graceful-secret"), "keys never reach the logs");
    assert!(!logs.contains("state-marker-s3cr3t") && !logs.contains("lin-1"), "state bodies never reach the logs");
    assert!(logs.contains("/v1/tfstate/{workspace}"), "the state calls were logged (by route): {logs}");

    let platform = start(PlatformConfig::for_tests(dir.path())).await.expect("restart");
    let c = client_for(&platform);
    assert_eq!(c.find_by_name(Kind::Network, "kept").await.expect("find").map(|o| o.id().to_string()), Some(created.value.id().to_string()));
    platform.shutdown().await.expect("shutdown");
}

/// How a state call authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    /// As Terraform's http backend: basic auth, username `terraform`, the key as password.
    Basic(&'a str),
    Bearer(&'a str),
    Anonymous,
}

struct StateAnswer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    bytes: Vec<u8>,
}

impl StateAnswer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("status {}: the body is not JSON ({e}): {}", self.status, String::from_utf8_lossy(&self.bytes)))
    }
}

/// One request to the state backend with any method (LOCK and UNLOCK included).
async fn state_call(endpoint: &str, method: &str, path: &str, auth: Auth<'_>, body: impl Into<Vec<u8>>) -> StateAnswer {
    let http = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = http.request(method, format!("{endpoint}{path}")).body(body.into());
    req = match auth {
        Auth::Basic(key) => req.basic_auth("terraform", Some(key)),
        Auth::Bearer(key) => req.bearer_auth(key),
        Auth::Anonymous => req,
    };
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body").to_vec();
    StateAnswer { status, headers, bytes }
}

fn lock_info(id: &str, who: &str) -> Vec<u8> {
    json!({"ID": id, "Operation": "OperationTypeApply", "Info": "", "Who": who, "Version": "1.15.5", "Created": "2026-12-01T10:00:00Z", "Path": ""})
        .to_string()
        .into_bytes()
}

fn state_body(serial: u64, marker: &str) -> Vec<u8> {
    // Deliberately not canonical JSON (two spaces, a trailing newline): the platform stores bytes, not a re-encoding.
    format!("{{\n  \"version\": 4,\n  \"terraform_version\": \"1.15.5\",\n  \"serial\": {serial},\n  \"lineage\": \"lin-1\",\n  \"outputs\": {{\"marker\": {{\"value\": \"{marker}\", \"type\": \"string\"}}}},\n  \"resources\": []\n}}\n").into_bytes()
}

#[tokio::test]
async fn terraform_state_lock_write_unlock_follow_the_http_backend_protocol() {
    let h = harness().await;
    let e = h.platform.endpoint();
    let key = Auth::Basic(TEST_API_KEY.1);
    let ws = "/v1/tfstate/prod";

    let none = state_call(&e, "GET", ws, key, "").await;
    assert_eq!(none.status, 404);
    assert!(none.json()["detail"].as_str().expect("detail").contains("no Terraform state"), "{}", none.json());
    assert_eq!(state_call(&e, "GET", "/v1/tfstate/prod/lock", key, "").await.status, 404);

    // LOCK: 200; a second holder gets 423 with the first one's lock info; the same id again is fine.
    assert_eq!(state_call(&e, "LOCK", ws, key, lock_info("lock-a", "alice@laptop")).await.status, 200);
    let holder = state_call(&e, "GET", "/v1/tfstate/prod/lock", key, "").await;
    assert_eq!(holder.status, 200);
    assert_eq!((holder.json()["ID"].as_str(), holder.json()["Who"].as_str()), (Some("lock-a"), Some("alice@laptop")));
    let refused = state_call(&e, "LOCK", ws, key, lock_info("lock-b", "bob@ci")).await;
    assert_eq!(refused.status, 423);
    assert_eq!(refused.headers["content-type"], "application/problem+json");
    let body = refused.json();
    assert_eq!((body["ID"].as_str(), body["Who"].as_str(), body["Operation"].as_str()), (Some("lock-a"), Some("alice@laptop"), Some("OperationTypeApply")));
    assert!(body["detail"].as_str().expect("detail").contains("terraform force-unlock lock-a"), "{body}");
    assert_eq!(state_call(&e, "LOCK", ws, key, lock_info("lock-a", "alice@laptop")).await.status, 200);

    // POST while locked: only under the holder's id.
    assert_eq!(state_call(&e, "POST", ws, key, state_body(1, "x")).await.status, 423, "no ID while locked");
    let wrong = state_call(&e, "POST", "/v1/tfstate/prod?ID=lock-b", key, state_body(1, "x")).await;
    assert_eq!((wrong.status, wrong.json()["ID"].as_str()), (423, Some("lock-a")));
    assert_eq!(state_call(&e, "GET", ws, key, "").await.status, 404, "refused writes store nothing");
    let stored = state_call(&e, "POST", "/v1/tfstate/prod?ID=lock-a", key, state_body(1, "first")).await;
    assert_eq!(stored.status, 200);
    assert_eq!((stored.json()["serial"].as_u64(), stored.json()["actor"].as_str()), (Some(1), Some("tester")));
    let read = state_call(&e, "GET", ws, key, "").await;
    assert_eq!((read.status, read.bytes.as_slice()), (200, state_body(1, "first").as_slice()), "the body comes back byte for byte");
    assert_eq!(read.headers["content-type"], "application/json");

    // UNLOCK with another id: 409 naming the holder; with the holder's: 200.
    let not_mine = state_call(&e, "UNLOCK", ws, key, lock_info("lock-b", "bob@ci")).await;
    assert_eq!((not_mine.status, not_mine.json()["ID"].as_str()), (409, Some("lock-a")));
    assert_eq!(state_call(&e, "UNLOCK", ws, key, lock_info("lock-a", "alice@laptop")).await.status, 200);
    assert_eq!(state_call(&e, "GET", "/v1/tfstate/prod/lock", key, "").await.status, 404);
    assert_eq!(state_call(&e, "UNLOCK", ws, key, lock_info("lock-a", "alice@laptop")).await.status, 200, "unlocking a free workspace is a no-op");

    // A write under a lock that is gone is refused; without a lock it is accepted.
    let gone = state_call(&e, "POST", "/v1/tfstate/prod?ID=lock-a", key, state_body(2, "late")).await;
    assert_eq!(gone.status, 409);
    assert!(gone.json()["detail"].as_str().expect("detail").contains("not held"), "{}", gone.json());
    assert_eq!(state_call(&e, "POST", ws, key, state_body(2, "unlocked")).await.status, 200);
    assert_eq!(state_call(&e, "GET", ws, key, "").await.bytes, state_body(2, "unlocked"));

    // Workspaces are independent; DELETE is 200 and refused while someone else holds the lock.
    assert_eq!(state_call(&e, "GET", "/v1/tfstate/staging", key, "").await.status, 404);
    assert_eq!(state_call(&e, "LOCK", ws, key, lock_info("lock-c", "carol@host")).await.status, 200);
    assert_eq!(state_call(&e, "DELETE", ws, key, "").await.status, 423);
    assert_eq!(state_call(&e, "DELETE", "/v1/tfstate/prod?ID=lock-c", key, "").await.status, 200);
    assert_eq!(state_call(&e, "GET", ws, key, "").await.status, 404);
    assert_eq!(state_call(&e, "UNLOCK", ws, key, lock_info("lock-c", "carol@host")).await.status, 200);
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn terraform_force_unlock_is_allowed_and_audited_in_the_event_feed() {
    let h = harness_with(|c| c.api_keys.push(novacron_platform::ApiKey::parse("ops:ops-secret-key").expect("key"))).await;
    let e = h.platform.endpoint();
    assert_eq!(state_call(&e, "LOCK", "/v1/tfstate/prod", Auth::Basic(TEST_API_KEY.1), lock_info("stuck-1", "ci@runner-7")).await.status, 200);
    let held = h.client.terraform_state_lock("prod").await.expect("lock").expect("held");
    assert_eq!((held.id.as_str(), held.who.as_str(), held.operation.as_str()), ("stuck-1", "ci@runner-7", "OperationTypeApply"));

    // `terraform force-unlock` sends UNLOCK with an empty body.
    let forced = state_call(&e, "UNLOCK", "/v1/tfstate/prod", Auth::Basic("ops-secret-key"), "").await;
    assert_eq!(forced.status, 200);
    assert_eq!(forced.json()["forced"]["ID"], "stuck-1");
    assert!(h.client.terraform_state_lock("prod").await.expect("lock").is_none());
    // The feed records who did it, and the typed client reads an event of a kind that is no object kind.
    let feed = h.client.events(0, Duration::ZERO).await.expect("the feed parses with a tfstate event in it");
    let audit: Vec<_> = feed.events.iter().filter(|ev| ev.action == "force-unlock").collect();
    assert_eq!(audit.len(), 1, "{:?}", feed.events);
    assert_eq!((audit[0].kind.as_str(), audit[0].id.as_str(), audit[0].actor.as_str()), ("tfstate", "prod", "ops"));
    let detail = audit[0].detail.as_deref().expect("detail");
    assert!(detail.contains("stuck-1") && detail.contains("ci@runner-7"), "{detail}");
    // Forcing a free workspace changes nothing and records nothing.
    assert_eq!(state_call(&e, "UNLOCK", "/v1/tfstate/prod", Auth::Basic("ops-secret-key"), "").await.status, 200);
    assert_eq!(h.client.events(0, Duration::ZERO).await.expect("feed").events.len(), feed.events.len());
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn terraform_state_versions_keep_the_retention_count_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let retained = |c: &mut PlatformConfig| c.state_retention = 3;
    let mut config = PlatformConfig::for_tests(dir.path());
    retained(&mut config);
    let platform = start(config).await.expect("start");
    let e = platform.endpoint();
    let key = Auth::Bearer(TEST_API_KEY.1);
    for serial in 1..=5 {
        assert_eq!(state_call(&e, "POST", "/v1/tfstate/team-a.prod", key, state_body(serial, "m")).await.status, 200);
    }
    assert_eq!(state_call(&e, "LOCK", "/v1/tfstate/team-a.prod", key, lock_info("held-over", "x@y")).await.status, 200);
    let listed = state_call(&e, "GET", "/v1/tfstate/team-a.prod/versions", key, "").await;
    assert_eq!(listed.status, 200);
    let items = listed.json()["items"].as_array().expect("items").clone();
    assert_eq!(items.iter().map(|v| v["serial"].as_u64().expect("serial")).collect::<Vec<_>>(), [5, 4, 3], "newest first, three kept");
    let newest = state_body(5, "m");
    assert_eq!(items[0]["sha256"], novacron_schemas::sha256_hex(&newest));
    assert_eq!(items[0]["size"], newest.len());
    assert_eq!((items[0]["actor"].as_str(), items[0]["lineage"].as_str()), (Some("tester"), Some("lin-1")));
    assert!(items[0]["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(items.iter().all(|v| v.as_object().is_some_and(|o| !o.contains_key("body"))), "bodies are never listed");
    assert!(!String::from_utf8_lossy(&listed.bytes).contains("terraform_version"));
    platform.shutdown().await.expect("shutdown");

    let mut config = PlatformConfig::for_tests(dir.path());
    retained(&mut config);
    let platform = start(config).await.expect("restart");
    let c = client_for(&platform);
    let state = c.terraform_state("team-a.prod").await.expect("state").expect("kept across the restart");
    assert_eq!((state.serial(), state.lineage(), state.raw.as_slice()), (Some(5), Some("lin-1"), newest.as_slice()));
    let versions = c.terraform_state_versions("team-a.prod").await.expect("versions");
    assert_eq!(versions.iter().map(|v| v.serial).collect::<Vec<_>>(), [Some(5), Some(4), Some(3)]);
    assert_eq!(c.terraform_state_lock("team-a.prod").await.expect("lock").map(|l| l.id), Some("held-over".to_string()), "locks survive a restart");
    assert!(c.terraform_state("elsewhere").await.expect("state").is_none());
    assert!(c.terraform_state_versions("elsewhere").await.expect("versions").is_empty());
    platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn terraform_state_takes_basic_or_bearer_and_answers_401_terraform_can_explain() {
    let h = harness().await;
    let e = h.platform.endpoint();
    assert_eq!(state_call(&e, "GET", "/v1/tfstate/prod", Auth::Basic(TEST_API_KEY.1), "").await.status, 404, "basic auth gets in");
    assert_eq!(state_call(&e, "GET", "/v1/tfstate/prod", Auth::Bearer(TEST_API_KEY.1), "").await.status, 404, "bearer gets in");
    for (auth, what) in [(Auth::Anonymous, "no credentials"), (Auth::Basic("wrong-password-1"), "a wrong password")] {
        for method in ["GET", "POST", "LOCK", "UNLOCK", "DELETE"] {
            let refused = state_call(&e, method, "/v1/tfstate/prod", auth, lock_info("l", "w")).await;
            assert_eq!(refused.status, 401, "{method} with {what}");
            let challenges: Vec<&str> = refused.headers.get_all("www-authenticate").iter().filter_map(|v| v.to_str().ok()).collect();
            assert!(challenges.iter().any(|c| c.starts_with("Basic realm=")), "{challenges:?}");
            let detail = refused.json()["detail"].as_str().expect("detail").to_string();
            assert!(detail.contains("TF_HTTP_PASSWORD") && detail.contains("username"), "{detail}");
            assert!(!detail.contains("wrong-password-1"));
        }
    }
    assert_eq!(state_call(&e, "LOCK", "/v1/tfstate/prod/lock", Auth::Anonymous, "").await.status, 401);
    // Basic auth is for the state backend only; the object API stays bearer.
    assert_eq!(state_call(&e, "GET", "/v1/vms", Auth::Basic(TEST_API_KEY.1), "").await.status, 401);
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bad_terraform_state_requests_name_the_field_and_store_nothing() {
    let h = harness().await;
    let e = h.platform.endpoint();
    let key = Auth::Basic(TEST_API_KEY.1);
    for bad in ["-prod", ".hidden", "a%20b", &"w".repeat(65)] {
        let refused = state_call(&e, "GET", &format!("/v1/tfstate/{bad}"), key, "").await;
        assert_eq!(refused.status, 400, "{bad}");
        assert_eq!(refused.json()["errors"][0]["field"], "workspace", "{bad}");
        assert!(refused.json()["errors"][0]["message"].as_str().expect("message").contains("letters, digits"), "{bad}");
    }
    assert_eq!(state_call(&e, "POST", "/v1/tfstate/-prod", key, state_body(1, "m")).await.status, 400);
    let not_state = state_call(&e, "POST", "/v1/tfstate/prod", key, "secret-token=hunter2").await;
    assert_eq!((not_state.status, not_state.json()["errors"][0]["field"].as_str()), (400, Some("body")));
    assert!(!String::from_utf8_lossy(&not_state.bytes).contains("hunter2"), "errors never quote the state");
    let no_id = state_call(&e, "LOCK", "/v1/tfstate/prod", key, r#"{"Who":"me"}"#).await;
    assert_eq!((no_id.status, no_id.json()["errors"][0]["field"].as_str()), (400, Some("ID")));
    let unknown = state_call(&e, "POST", "/v1/tfstate/prod?lock=1", key, state_body(1, "m")).await;
    assert_eq!((unknown.status, unknown.json()["errors"][0]["field"].as_str()), (400, Some("lock")));
    let put = state_call(&e, "PUT", "/v1/tfstate/prod", key, state_body(1, "m")).await;
    assert_eq!(put.status, 405);
    assert_eq!(put.headers["allow"], "GET, POST, DELETE, LOCK, UNLOCK");
    let huge = vec![b' '; novacron_platform::MAX_STATE_BYTES + 1];
    let too_large = state_call(&e, "POST", "/v1/tfstate/prod", key, huge).await;
    assert_eq!(too_large.status, 413);
    assert!(too_large.json()["detail"].as_str().expect("detail").contains(&novacron_platform::MAX_STATE_BYTES.to_string()));
    assert_eq!(state_call(&e, "GET", "/v1/tfstate/prod", key, "").await.status, 404, "nothing was stored");
    assert!(h.client.terraform_state_versions("prod").await.expect("versions").is_empty());
    h.platform.shutdown().await.expect("shutdown");
}
