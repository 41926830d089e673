//! The client against the real platform on 127.0.0.1:0: retry logic with chaos injection and a
//! rate limit switched on, against an address where nothing listens, dry runs, and the Terraform
//! state reads.

use std::time::Duration;

use novacron_client::{Client, ClientConfig, Error, Kind, PolicyVerdict};
use novacron_platform::{PlatformConfig, RunningPlatform, TEST_API_KEY, start};
use serde_json::json;

async fn platform(tune: impl FnOnce(&mut PlatformConfig)) -> (RunningPlatform, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = PlatformConfig::for_tests(dir.path());
    tune(&mut config);
    (start(config).await.expect("platform starts"), dir)
}

fn client(endpoint: String, max_retries: u32) -> Client {
    let mut config = ClientConfig::new(endpoint, TEST_API_KEY.1);
    config.max_retries = max_retries;
    config.timeout = Duration::from_secs(5);
    Client::new(config).expect("client")
}

async fn metric(endpoint: &str, needle: &str) -> u64 {
    let text = reqwest::get(format!("{endpoint}/metrics")).await.expect("metrics").text().await.expect("text");
    text.lines().filter(|l| l.starts_with("novacron_http_requests_total") && l.contains(needle)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
}

#[tokio::test]
async fn chaos_errors_are_retried_and_creates_are_not_duplicated() {
    let (p, _dir) = platform(|c| {
        c.chaos_error_rate = 0.3;
        c.chaos_seed = 42;
    })
    .await;
    let c = client(p.endpoint(), 8);
    for i in 0..30 {
        c.create(Kind::Network, &json!({"name": format!("n{i}"), "cidr": format!("10.{i}.0.0/24")})).await.expect("create survives injected 503s");
    }
    let all = c.list_all(Kind::Network).await.expect("list survives injected 503s");
    assert_eq!(all.len(), 30, "every create landed exactly once");
    for n in &all {
        c.get(Kind::Network, n.id()).await.expect("get");
        c.patch(Kind::Network, n.id(), &json!({"mtu": 9000}), Some(&format!("\"{}\"", n.version()))).await.expect("guarded patch is retried");
    }
    let injected = metric(&p.endpoint(), "status=\"503\"").await;
    assert!(injected > 0, "the chaos knob really injected failures");
    p.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn rate_limited_calls_wait_and_succeed() {
    let (p, _dir) = platform(|c| c.rate_limit_rps = Some(4.0)).await;
    let c = client(p.endpoint(), 6);
    for _ in 0..12 {
        c.list_page(Kind::Template, &Default::default()).await.expect("429s are retried after Retry-After");
    }
    let limited = metric(&p.endpoint(), "status=\"429\"").await;
    assert!(limited > 0, "the limit was hit and honoured");
    p.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn persistent_failure_gives_up_with_a_clear_error() {
    let (p, _dir) = platform(|c| c.chaos_error_rate = 1.0).await;
    let c = client(p.endpoint(), 3);
    let err = c.get(Kind::Vm, "vm-1").await.expect_err("always 503");
    assert!(matches!(err, Error::RetriesExhausted { attempts: 4, .. }), "{err:?}");
    assert_eq!(err.status(), Some(503));
    let text = err.to_string();
    assert!(text.contains("gave up after 4 attempts") && text.contains("/v1/vms/vm-1"), "{text}");

    // The shared budget stops a retry storm: once spent, calls fail fast.
    let mut exhausted = false;
    for _ in 0..20 {
        if let Err(Error::RetryBudgetExhausted { .. }) = c.get(Kind::Vm, "vm-1").await {
            exhausted = true;
            break;
        }
    }
    assert!(exhausted, "the retry budget ran out");
    p.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn unreachable_platform_is_reported_with_its_path() {
    // Bind then drop a listener so the port is (very likely) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let c = client(format!("http://127.0.0.1:{port}"), 2);
    let err = c.list_all(Kind::Vm).await.expect_err("nothing listens");
    assert!(err.is_retryable(), "connect errors are transient: {err:?}");
    let text = err.to_string();
    assert!(text.contains("/v1/vms") && !text.contains(TEST_API_KEY.1), "{text}");
}

#[tokio::test]
async fn non_retryable_errors_are_not_retried() {
    let (p, _dir) = platform(|_| {}).await;
    let c = client(p.endpoint(), 5);
    let err = c.create(Kind::Network, &json!({"name": "x", "cidr": "10.0.0.0/33"})).await.expect_err("422");
    assert!(matches!(err, Error::Api { .. }), "a 422 comes back at once: {err:?}");
    assert_eq!(metric(&p.endpoint(), "status=\"422\"").await, 1, "sent exactly once");
    p.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn dry_runs_are_retried_through_chaos_and_write_nothing() {
    let (p, _dir) = platform(|c| {
        c.chaos_error_rate = 0.4;
        c.chaos_seed = 7;
    })
    .await;
    let c = client(p.endpoint(), 10);
    let net = c.create(Kind::Network, &json!({"name": "core", "cidr": "10.40.0.0/24"})).await.expect("network").value;
    let rule = "package novacron.sizing\n\ndeny contains msg if {\n    input.object.cpu_cores > 8\n    msg := \"at most 8 cores\"\n}\n";
    c.create(Kind::Policy, &json!({"name": "max-cores", "rule": rule})).await.expect("policy");
    let vm = json!({"name": "big", "cpu_cores": 16, "memory_gb": 4, "template_id": "tpl-debian-12", "network_id": net.id()});
    for _ in 0..10 {
        let dry = c.dry_run_create(Kind::Vm, &vm).await.expect("a dry-run POST survives injected 503s");
        assert!(!dry.allowed);
        assert_eq!(dry.verdicts, vec![PolicyVerdict { policy: "max-cores".into(), mode: "block".into(), messages: vec!["at most 8 cores".into()] }]);
        // Without If-Match an ordinary PATCH is not retried on 503; a dry run is.
        let dry = c.dry_run_update(Kind::Network, net.id(), &json!({"mtu": 9000})).await.expect("a dry-run PATCH survives injected 503s");
        assert_eq!((dry.allowed, dry.object["mtu"].as_i64()), (true, Some(9000)));
    }
    assert!(metric(&p.endpoint(), "status=\"503\"").await > 0, "the chaos knob really injected failures");
    assert!(c.list_all(Kind::Vm).await.expect("vms").is_empty(), "no dry run created a vm");
    assert_eq!(c.get(Kind::Network, net.id()).await.expect("network").value, net, "no dry run changed the network");
    p.shutdown().await.expect("shutdown");
}

/// Sends one state-protocol request the way Terraform's http backend does (basic auth).
async fn terraform_sends(endpoint: &str, method: &str, path: &str, body: String) -> u16 {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let resp = reqwest::Client::new().request(method, format!("{endpoint}{path}")).basic_auth("terraform", Some(TEST_API_KEY.1)).body(body).send().await;
    resp.expect("sent").status().as_u16()
}

#[tokio::test]
async fn terraform_state_reads_see_what_the_backend_stored_and_who_holds_the_lock() {
    let (p, _dir) = platform(|_| {}).await;
    let c = client(p.endpoint(), 2);
    assert!(c.terraform_state("prod").await.expect("no state yet").is_none());
    assert!(c.terraform_state_lock("prod").await.expect("no lock yet").is_none());
    assert!(c.terraform_state_versions("prod").await.expect("no versions yet").is_empty());

    let lock = json!({"ID": "9f1c", "Operation": "OperationTypeApply", "Info": "", "Who": "dev@laptop", "Version": "1.0.3", "Created": "2026-12-01T10:00:00Z", "Path": ""});
    assert_eq!(terraform_sends(&p.endpoint(), "LOCK", "/v1/tfstate/prod", lock.to_string()).await, 200);
    let state = json!({"version": 4, "serial": 12, "lineage": "5d2e", "outputs": {"db_password": {"value": "s3cr3t-out", "sensitive": true}}, "resources": []});
    assert_eq!(terraform_sends(&p.endpoint(), "POST", "/v1/tfstate/prod?ID=9f1c", state.to_string()).await, 200);

    let held = c.terraform_state_lock("prod").await.expect("lock").expect("held");
    assert_eq!(
        (held.id.as_str(), held.who.as_str(), held.operation.as_str(), held.created.as_str()),
        ("9f1c", "dev@laptop", "OperationTypeApply", "2026-12-01T10:00:00Z")
    );
    let read = c.terraform_state("prod").await.expect("state").expect("stored");
    assert_eq!((read.serial(), read.lineage()), (Some(12), Some("5d2e")));
    assert_eq!(read.raw, state.to_string().into_bytes());
    assert_eq!(read.json, state);
    assert!(!format!("{read:?}").contains("s3cr3t-out"), "Debug never shows state contents");
    let versions = c.terraform_state_versions("prod").await.expect("versions");
    assert_eq!(versions.len(), 1);
    assert_eq!((versions[0].serial, versions[0].lineage.as_deref(), versions[0].actor.as_str()), (Some(12), Some("5d2e"), "tester"));
    assert_eq!(versions[0].size, u64::try_from(state.to_string().len()).expect("small"));

    // A wrong key is an error, never "no state"; a bad workspace name says what to fix.
    let stranger = Client::new(ClientConfig::new(p.endpoint(), "not-the-key-at-all")).expect("client");
    assert_eq!(stranger.terraform_state("prod").await.expect_err("401").status(), Some(401));
    let err = c.terraform_state("-prod").await.expect_err("400");
    assert_eq!(err.field_errors()[0].field, "workspace", "{err}");
    p.shutdown().await.expect("shutdown");
}
