//! HTTPS: a private CA made with rcgen, the platform serving a certificate it signed, clients
//! that trust the CA, do not, or check nothing; certificate reload on SIGHUP in the real binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use novacron_client::{Client, ClientConfig, Error, Kind};
use novacron_platform::{PlatformConfig, RunningPlatform, TEST_API_KEY, TlsFiles, start};
use novacron_tls::testing::{LOCAL_NAMES, Pki, cert_der, served_certificate};
use serde_json::json;

async fn tls_platform(files: TlsFiles, tune: impl FnOnce(&mut PlatformConfig)) -> (RunningPlatform, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = PlatformConfig::for_tests(data.path());
    config.tls = Some(files);
    tune(&mut config);
    (start(config).await.expect("platform starts with TLS"), data)
}

fn client(endpoint: &str, tune: impl FnOnce(&mut ClientConfig)) -> Client {
    let mut config = ClientConfig::new(endpoint, TEST_API_KEY.1);
    tune(&mut config);
    Client::new(config).expect("client")
}

#[tokio::test]
async fn https_with_the_ca_file_serves_the_api() {
    let pki = Pki::new();
    let (platform, _data) = tls_platform(pki.issue("server", &LOCAL_NAMES, false), |_| {}).await;
    let endpoint = platform.endpoint();
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
    let c = client(&endpoint, |c| c.ca_file = Some(pki.ca_file()));
    let created = c.create(Kind::Network, &json!({"name": "tls-net", "cidr": "10.9.0.0/24"})).await.expect("create over HTTPS").value;
    let fetched = c.get(Kind::Network, created.id()).await.expect("get over HTTPS").value;
    assert_eq!(fetched.id(), created.id());
    // localhost is in the certificate too.
    let by_name = client(&endpoint.replace("127.0.0.1", "localhost"), |c| c.ca_file = Some(pki.ca_file()));
    by_name.get(Kind::Network, created.id()).await.expect("get via localhost");
    platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_unknown_ca_is_one_error_naming_the_endpoint_and_not_retried() {
    let pki = Pki::new();
    let (platform, _data) = tls_platform(pki.issue("server", &LOCAL_NAMES, false), |_| {}).await;
    let endpoint = platform.endpoint();
    let err = client(&endpoint, |_| {}).get(Kind::Network, "net-x").await.expect_err("untrusted CA");
    assert_eq!(
        err.to_string(),
        format!("GET /v1/networks/net-x: the certificate of {endpoint} is not signed by a trusted CA: pass ca_file / --ca-file with your CA")
    );
    assert!(matches!(err, Error::Certificate { .. }), "not wrapped in a retry: {err:?}");
    assert!(!err.is_retryable());
    assert_eq!(err.metric_label(), "certificate");
    platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_certificate_for_another_name_or_expired_says_so() {
    let pki = Pki::new();
    let (other, _d1) = tls_platform(pki.issue("other", &["other.example"], false), |_| {}).await;
    let err = client(&other.endpoint(), |c| c.ca_file = Some(pki.ca_file())).get(Kind::Network, "n").await.expect_err("name mismatch");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("GET /v1/networks/n: the certificate of {} is not valid for 127.0.0.1 (it is for ", other.endpoint())), "{msg}");
    assert!(msg.ends_with("(it is for other.example): use an endpoint with one of those names, or reissue it for 127.0.0.1"), "{msg}");

    let (expired, _d2) = tls_platform(pki.issue("expired", &LOCAL_NAMES, true), |_| {}).await;
    let err = client(&expired.endpoint(), |c| c.ca_file = Some(pki.ca_file())).get(Kind::Network, "n").await.expect_err("expired");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("GET /v1/networks/n: the certificate of {} expired ", expired.endpoint())), "{msg}");
    assert!(msg.ends_with("days ago: renew the server's certificate"), "{msg}");
    other.shutdown().await.expect("shutdown");
    expired.shutdown().await.expect("shutdown");
}

/// Collects what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn insecure_accepts_any_certificate_and_warns_for_every_client() {
    let pki = Pki::new();
    let (platform, _data) = tls_platform(pki.issue("other", &["other.example"], false), |_| {}).await;
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let (first, second) = tracing::subscriber::with_default(subscriber, || {
        (client(&platform.endpoint(), |c| c.insecure = true), client(&platform.endpoint(), |c| c.insecure = true))
    });
    first.list_page(Kind::Network, &Default::default()).await.expect("insecure ignores the unknown CA and the name");
    second.list_page(Kind::Network, &Default::default()).await.expect("second client");
    let text = String::from_utf8(logs.0.lock().expect("not poisoned").clone()).expect("utf-8 logs");
    assert_eq!(text.matches("WARN").count(), 2, "{text}");
    assert!(text.contains("insecure: the server's TLS certificate is not checked"), "{text}");
    platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_no_http_answer() {
    let pki = Pki::new();
    let (platform, _data) = tls_platform(pki.issue("server", &LOCAL_NAMES, false), |_| {}).await;
    let addr = platform.addr();
    let answer = tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").expect("send");
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer);
        answer
    })
    .await
    .expect("raw request");
    assert!(!answer.starts_with(b"HTTP/"), "plain HTTP got an HTTP answer: {:?}", String::from_utf8_lossy(&answer));
    platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_https_request_finish() {
    let pki = Pki::new();
    let (platform, _data) = tls_platform(pki.issue("server", &LOCAL_NAMES, false), |c| c.chaos_latency = Duration::from_millis(300)).await;
    let c = client(&platform.endpoint(), |c| c.ca_file = Some(pki.ca_file()));
    let in_flight = tokio::spawn(async move { c.list_page(Kind::Network, &Default::default()).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    platform.shutdown().await.expect("shutdown");
    in_flight.await.expect("task").expect("the in-flight request finished");
}

/// The real binary, with its endpoint read from the first stdout line.
struct Binary {
    child: Child,
    endpoint: String,
    _data: tempfile::TempDir,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn platform_command(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_novacron-platform"));
    cmd.args(["--listen", "127.0.0.1:0", "--provision-delay-ms", "50", "--api-key", &format!("{}:{}", TEST_API_KEY.0, TEST_API_KEY.1)]);
    cmd.arg("--data").arg(data).env_remove("NOVACRON_PLATFORM_API_KEYS");
    cmd
}

fn spawn_binary(files: &TlsFiles) -> Binary {
    let data = tempfile::tempdir().expect("temp dir");
    let mut child = platform_command(data.path())
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn novacron-platform");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
    let endpoint = line.trim().strip_prefix("novacron-platform listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_string();
    Binary { child, endpoint, _data: data }
}

#[tokio::test]
async fn sighup_reloads_the_certificate_without_dropping_connections() {
    let pki = Pki::new();
    let files = pki.issue("server", &LOCAL_NAMES, false);
    let binary = spawn_binary(&files);
    let addr = binary.endpoint.strip_prefix("https://").expect("an https endpoint").to_string();
    assert_eq!(served_certificate(&addr, &pki.ca_file()).await, cert_der(&files.cert));

    let c = client(&binary.endpoint, |c| {
        c.ca_file = Some(pki.ca_file());
        c.max_retries = 0;
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU32::new(0)), Arc::new(Mutex::new(Vec::new())));
    let looping = tokio::spawn({
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                match c.list_page(Kind::Network, &Default::default()).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        failed.lock().expect("not poisoned").push(e.to_string());
                        0
                    }
                };
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A broken file first: the reload fails and the old certificate stays.
    std::fs::write(&files.key, "not a key").expect("break the key");
    hangup(&binary);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(served_certificate(&addr, &pki.ca_file()).await, cert_der(&files.cert), "a failed reload keeps the old certificate");

    // Then a new certificate of the same CA, written over the files.
    let renewed = pki.issue("renewed", &LOCAL_NAMES, false);
    std::fs::copy(&renewed.cert, &files.cert).expect("replace cert");
    std::fs::copy(&renewed.key, &files.key).expect("replace key");
    hangup(&binary);
    let deadline = Instant::now() + Duration::from_secs(5);
    while served_certificate(&addr, &pki.ca_file()).await != cert_der(&renewed.cert) {
        assert!(Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    looping.await.expect("request loop");
    assert_eq!(*failed.lock().expect("not poisoned"), Vec::<String>::new());
    assert!(ok.load(Ordering::Relaxed) > 10, "the loop made only {} requests", ok.load(Ordering::Relaxed));
}

fn hangup(binary: &Binary) {
    let status = Command::new("kill").arg("-HUP").arg(binary.child.id().to_string()).status().expect("run kill");
    assert!(status.success());
}

fn start_failure(tune: impl FnOnce(&mut Command)) -> (Option<i32>, String) {
    let data = tempfile::tempdir().expect("temp dir");
    let mut cmd = platform_command(data.path());
    tune(&mut cmd);
    let out = cmd.output().expect("run novacron-platform");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).trim().to_string())
}

#[test]
fn bad_certificate_files_stop_the_start_naming_the_flag() {
    let pki = Pki::new();
    let a = pki.issue("a", &LOCAL_NAMES, false);
    let b = pki.issue("b", &LOCAL_NAMES, false);
    let (code, stderr) = start_failure(|c| {
        c.arg("--tls-cert").arg(&a.cert).arg("--tls-key").arg(&b.key);
    });
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.lines().last(),
        Some(
            format!(
                "novacron-platform: --tls-key {} does not match the certificate in --tls-cert {}; pass the key the certificate was issued for",
                b.key.display(),
                a.cert.display()
            )
            .as_str()
        )
    );

    let missing = pki.dir().join("missing.crt");
    let (code, stderr) = start_failure(|c| {
        c.arg("--tls-cert").arg(&missing).arg("--tls-key").arg(&a.key);
    });
    assert_eq!(code, Some(1));
    assert!(stderr.contains(&format!("novacron-platform: --tls-cert {}: cannot read it (", missing.display())), "{stderr}");

    let (code, stderr) = start_failure(|c| {
        c.arg("--tls-cert").arg(&a.key).arg("--tls-key").arg(&a.key);
    });
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--tls-cert") && stderr.contains("no PEM certificate in it"), "{stderr}");

    let (code, stderr) = start_failure(|c| {
        c.arg("--tls-cert").arg(&a.cert);
    });
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--tls-cert needs --tls-key"), "{stderr}");
}
