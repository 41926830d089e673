//! Key scopes, the hashed keys file, `hash-key`, and the manners of 401: what a key may do,
//! how a refusal reads, and where it is recorded.

use super::*;

const READER: &str = "reader-secret-1";
const STATER: &str = "stater-secret-1";

async fn scoped_harness() -> Harness {
    harness_with(|c| {
        c.api_keys.push(novacron_platform::ApiKey::parse(&format!("reader:{READER}:read")).expect("key"));
        c.api_keys.push(novacron_platform::ApiKey::parse(&format!("stater:{STATER}:state")).expect("key"));
    })
    .await
}

fn client_with(h: &Harness, key: &str) -> Client {
    let mut config = ClientConfig::new(h.platform.endpoint(), key);
    config.max_retries = 0;
    Client::new(config).expect("client")
}

fn refusal(e: &Error) -> String {
    assert_eq!(status_of(e), 403, "{e}");
    let problem = e.problem().expect("a problem answer");
    assert_eq!(problem.problem_type, "https://novacron.dev/problems/missing-scope");
    problem.detail.clone()
}

#[tokio::test]
async fn a_read_key_lists_and_dry_runs_but_cannot_write_or_touch_state() {
    let h = scoped_harness().await;
    let net = network(&h.client, "core", "10.0.0.0/24").await;
    let reader = client_with(&h, READER);
    assert_eq!(reader.list_all(Kind::Network).await.expect("list").len(), 1);
    reader.get(Kind::Network, net.id()).await.expect("read");
    assert!(!reader.list_all(Kind::Template).await.expect("templates").is_empty());
    reader.events(0, Duration::ZERO).await.expect("events");
    let dry = reader.dry_run_create(Kind::Network, &json!({"name": "edge", "cidr": "10.1.0.0/24"})).await.expect("dry create");
    assert!(dry.allowed);
    reader.dry_run_update(Kind::Network, net.id(), &json!({"mtu": 9000})).await.expect("dry patch");

    let wanted = "API key \"reader\" lacks the scope \"write\" (it has read); use a key with write, or add the scope to this key";
    let created = reader.create(Kind::Network, &json!({"name": "edge", "cidr": "10.1.0.0/24"})).await.expect_err("create refused");
    assert_eq!(refusal(&created), wanted);
    let patched = reader.patch(Kind::Network, net.id(), &json!({"mtu": 9000}), None).await.expect_err("patch refused");
    assert_eq!(refusal(&patched), wanted);
    let deleted = reader.delete(Kind::Network, net.id()).await.expect_err("delete refused");
    assert_eq!(refusal(&deleted), wanted);
    let state = state_call(&h.platform.endpoint(), "GET", "/v1/tfstate/x", Auth::Basic(READER), "").await;
    assert_eq!(state.status, 403);
    let detail = state.json()["detail"].as_str().expect("detail").to_string();
    assert!(detail.contains("lacks the scope \"state\" (it has read)") && !detail.contains(READER), "{detail}");
    assert!(reader.find_by_name(Kind::Network, "edge").await.expect("find").is_none(), "nothing was written");
    assert_eq!(h.client.get(Kind::Network, net.id()).await.expect("still there").value.get("mtu"), Some(&json!(1500)));

    // Each refusal is in the feed as `denied` of kind `auth`, naming the call and the scope.
    let events = h.client.events(0, Duration::ZERO).await.expect("events").events;
    let denied: Vec<(&str, &str, &str, &str)> = events
        .iter()
        .filter(|e| e.action == "denied")
        .map(|e| (e.actor.as_str(), e.kind.as_str(), e.id.as_str(), e.detail.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(denied.len(), 4, "{denied:?}");
    assert!(denied.iter().all(|(actor, kind, id, _)| (*actor, *kind, *id) == ("reader", "auth", "reader")), "{denied:?}");
    assert_eq!(denied[0].3, "POST /v1/networks needs the scope write; the key has read");
    assert_eq!(denied[2].3, format!("DELETE /v1/networks/{} needs the scope write; the key has read", net.id()));
    assert_eq!(denied[3].3, "GET /v1/tfstate/x needs the scope state; the key has read");
    assert!(events.iter().all(|e| !e.detail.as_deref().unwrap_or_default().contains(READER)), "no secret in the feed");
    let metrics = reqwest::get(format!("{}/metrics", h.platform.endpoint())).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("novacron_auth_denied_total{key=\"reader\",scope=\"write\"} 3"), "{metrics}");
    assert!(metrics.contains("novacron_auth_denied_total{key=\"reader\",scope=\"state\"} 1"), "{metrics}");
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_state_key_uses_the_backend_but_cannot_list_vms() {
    let h = scoped_harness().await;
    let e = h.platform.endpoint();
    assert_eq!(state_call(&e, "LOCK", "/v1/tfstate/prod", Auth::Basic(STATER), lock_info("l1", "ci@host")).await.status, 200);
    assert_eq!(state_call(&e, "POST", "/v1/tfstate/prod?ID=l1", Auth::Basic(STATER), state_body(1, "m")).await.status, 200);
    assert_eq!(state_call(&e, "GET", "/v1/tfstate/prod", Auth::Basic(STATER), "").await.status, 200);
    assert_eq!(state_call(&e, "GET", "/v1/tfstate/prod/versions", Auth::Bearer(STATER), "").await.status, 200);
    assert_eq!(state_call(&e, "UNLOCK", "/v1/tfstate/prod", Auth::Basic(STATER), lock_info("l1", "ci@host")).await.status, 200);
    let listed = client_with(&h, STATER).list_all(Kind::Vm).await.expect_err("list refused");
    assert!(refusal(&listed).contains("API key \"stater\" lacks the scope \"read\" (it has state)"));
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_key_without_scopes_can_do_everything_and_any_scheme_case_works() {
    let h = scoped_harness().await;
    let net = network(&h.client, "core", "10.0.0.0/24").await;
    h.client.patch(Kind::Network, net.id(), &json!({"mtu": 9000}), None).await.expect("patch");
    assert_eq!(state_call(&h.platform.endpoint(), "POST", "/v1/tfstate/all", Auth::Basic(TEST_API_KEY.1), state_body(1, "m")).await.status, 200);
    h.client.delete(Kind::Network, net.id()).await.expect("delete");
    let http = reqwest::Client::new();
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let resp = http
            .get(format!("{}/v1/networks", h.platform.endpoint()))
            .header("authorization", format!("{scheme} {}", TEST_API_KEY.1))
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), 200, "{scheme}");
    }
    // base64("terraform:test-secret-key")
    let resp = http
        .get(format!("{}/v1/tfstate/all", h.platform.endpoint()))
        .header("authorization", "basic dGVycmFmb3JtOnRlc3Qtc2VjcmV0LWtleQ==")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200, "lowercase basic");
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn every_401_carries_www_authenticate() {
    let h = harness().await;
    let e = h.platform.endpoint();
    for (path, basic) in [("/v1/vms", false), ("/v1/events", false), ("/v1/tfstate/prod", true)] {
        for auth in [Auth::Anonymous, Auth::Bearer("wrong-key-123")] {
            let answer = state_call(&e, "GET", path, auth, "").await;
            assert_eq!(answer.status, 401, "{path}");
            let challenges: Vec<&str> = answer.headers.get_all("www-authenticate").iter().filter_map(|v| v.to_str().ok()).collect();
            assert!(challenges.contains(&"Bearer realm=\"novacron\""), "{path}: {challenges:?}");
            assert_eq!(challenges.iter().any(|c| c.starts_with("Basic realm=\"novacron\"")), basic, "{path}: {challenges:?}");
        }
    }
    h.platform.shutdown().await.expect("shutdown");
}

fn hash_key(secret: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_novacron-platform"))
        .arg("hash-key")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().expect("stdin").write_all(secret).expect("write");
    child.wait_with_output().expect("output")
}

/// Starts the binary; `Ok(endpoint)` with the child, or `Err(stderr)` when it refuses to start.
fn start_binary(args: &[&str], dir: &std::path::Path) -> Result<(String, std::process::Child), String> {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_novacron-platform"))
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir)
        .args(args)
        .env_remove("NOVACRON_PLATFORM_API_KEYS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
    if line.is_empty() {
        let out = child.wait_with_output().expect("exit");
        assert_eq!(out.status.code(), Some(1));
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok((line.trim().rsplit(' ').next().expect("endpoint").to_string(), child))
}

#[tokio::test]
async fn hashed_keys_from_a_file_authenticate_and_bad_lines_name_the_line() {
    let out = hash_key(b"file-secret-key\n");
    assert!(out.status.success());
    let digest = String::from_utf8(out.stdout).expect("utf-8").trim().to_string();
    assert_eq!(digest, novacron_platform::auth::hash_secret("file-secret-key"), "the trailing newline is not part of the secret");
    assert_eq!(String::from_utf8(hash_key(b"file-secret-key").stdout).expect("utf-8").trim(), digest, "with or without a newline");
    let short = hash_key(b"short\n");
    assert!(!short.status.success() && String::from_utf8_lossy(&short.stderr).contains("shorter than 8"));

    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("# dashboards\n\ndashboard:{digest}:read\n")).expect("write keys");
    let keys_arg = keys.to_str().expect("utf-8 path");
    let (endpoint, mut child) = start_binary(&["--api-keys-file", keys_arg], &dir.path().join("data")).expect("starts");
    let client = Client::new(ClientConfig::new(endpoint.clone(), "file-secret-key")).expect("client");
    client.list_all(Kind::Vm).await.expect("the hashed key authenticates");
    let err = client.create(Kind::Network, &json!({"name": "n", "cidr": "10.0.0.0/24"})).await.expect_err("read only");
    assert!(refusal(&err).contains("API key \"dashboard\" lacks the scope \"write\""));
    let wrong = Client::new(ClientConfig::new(endpoint, digest.clone())).expect("client");
    assert_eq!(status_of(&wrong.list_all(Kind::Vm).await.expect_err("the digest is no key")), 401);
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    child.wait().expect("wait");

    std::fs::write(&keys, format!("ok:{digest}\nci:plain-secret-key:read\n")).expect("write keys");
    let stderr = start_binary(&["--api-keys-file", keys_arg], &dir.path().join("data")).expect_err("refused");
    assert!(stderr.contains(&format!("--api-keys-file: {keys_arg}:2: key \"ci\" must be NAME:sha256:")), "{stderr}");
    assert!(!stderr.contains("plain-secret-key"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn a_bad_scope_or_key_on_the_command_line_stops_the_start_naming_the_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stderr = start_binary(&["--api-key", "ci:ci-secret-key:read,wirte"], dir.path()).expect_err("refused");
    assert!(stderr.starts_with("novacron-platform: --api-key: API key \"ci\": unknown scope \"wirte\""), "{stderr}");
    assert!(stderr.contains("read, write and state") && !stderr.contains("ci-secret-key"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let stderr = start_binary(&["--api-key", "nocolon"], dir.path()).expect_err("refused");
    assert!(stderr.starts_with("novacron-platform: --api-key: an API key must be NAME:SECRET[:SCOPES]"), "{stderr}");

    let (endpoint, mut child) = start_binary(&["--api-key", "ci:ci-secret-key:read,write"], dir.path()).expect("starts");
    let client = Client::new(ClientConfig::new(endpoint, "ci-secret-key")).expect("client");
    client.create(Kind::Network, &json!({"name": "n", "cidr": "10.0.0.0/24"})).await.expect("read,write key writes");
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    child.wait().expect("wait");
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut logs).expect("logs");
    assert!(logs.contains("process list") && !logs.contains("ci-secret-key"), "{logs}");
}
