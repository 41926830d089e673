//! The reference platform started in-process for a scenario, with a client for out-of-band changes.

use std::net::SocketAddr;
use std::time::Duration;

use novacron_client::{Client, ClientConfig, Kind, Object};
use novacron_platform::{PlatformConfig, RunningPlatform, TEST_API_KEY};
use novacron_tls::testing::Pki;
use tempfile::TempDir;

/// The API key the test platform accepts (the secret half of [`TEST_API_KEY`]).
pub const API_KEY: &str = TEST_API_KEY.1;

/// A platform serving from a temporary directory until shut down.
pub struct TestPlatform {
    running: RunningPlatform,
    client: Client,
    _dir: TempDir,
}

impl TestPlatform {
    /// Starts a platform with [`PlatformConfig::for_tests`] (a 50 ms provisioning delay) on
    /// `127.0.0.1:0`.
    pub async fn start() -> TestPlatform {
        TestPlatform::start_with(|_| {}).await
    }

    /// Starts a platform after `tune` adjusted its configuration (chaos, rate limit, address).
    pub async fn start_with(tune: impl FnOnce(&mut PlatformConfig)) -> TestPlatform {
        let dir = match tempfile::Builder::new().prefix("novacron-platform-").tempdir() {
            Ok(d) => d,
            Err(e) => panic!("cannot create the platform's temporary directory: {e}"),
        };
        let mut config = PlatformConfig::for_tests(dir.path());
        tune(&mut config);
        let running = match novacron_platform::start(config).await {
            Ok(r) => r,
            Err(e) => panic!("the platform does not start: {e:#}"),
        };
        let client = client_for(&running.endpoint(), 10);
        TestPlatform { running, client, _dir: dir }
    }

    /// Starts a platform serving HTTPS with a certificate for this machine from `pki`; its
    /// client trusts the CA.
    pub async fn start_https(pki: &Pki) -> TestPlatform {
        let files = pki.local("platform");
        let mut platform = TestPlatform::start_with(|c| c.tls = Some(files)).await;
        let mut config = client_config(&platform.endpoint(), 10);
        config.ca_file = Some(pki.ca_file());
        platform.client = match Client::new(config) {
            Ok(c) => c,
            Err(e) => panic!("cannot build a platform client: {e}"),
        };
        platform
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        self.running.endpoint()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.running.addr()
    }

    /// A client with generous retries, so assertions survive the chaos a scenario switched on.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Every object of the managed kinds (vms, networks, volumes, policies), by kind.
    pub async fn managed_objects(&self) -> Vec<(Kind, Object)> {
        let mut all = Vec::new();
        for kind in Kind::MANAGED {
            match self.client.list_all(kind).await {
                Ok(items) => all.extend(items.into_iter().map(|o| (kind, o))),
                Err(e) => panic!("cannot list {}: {e}", kind.collection()),
            }
        }
        all
    }

    /// Panics, listing what is left, unless the platform holds no vm, network, volume or policy.
    pub async fn assert_empty(&self, context: &str) {
        let left = self.managed_objects().await;
        if !left.is_empty() {
            let listed: Vec<String> =
                left.iter().map(|(kind, o)| format!("{} {} ({}, status {})", kind.singular(), o.name(), o.id(), o.status().unwrap_or("-"))).collect();
            panic!("{context}: the platform still holds {} object(s): {}", left.len(), listed.join("; "));
        }
    }

    /// The object of `kind` named `name`; panics when absent.
    pub async fn object_named(&self, kind: Kind, name: &str) -> Object {
        match self.client.find_by_name(kind, name).await {
            Ok(Some(o)) => o,
            Ok(None) => panic!("the platform has no {} named {name}", kind.singular()),
            Err(e) => panic!("cannot look up {} {name}: {e}", kind.singular()),
        }
    }

    /// Waits (up to 30 s) until the object is gone: a deleted VM stays `deleting` for the
    /// provisioning delay.
    pub async fn wait_gone(&self, kind: Kind, id: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.client.get(kind, id).await {
                Err(e) if e.is_not_found() => return,
                Err(e) => panic!("cannot read {} {id}: {e}", kind.singular()),
                Ok(_) if tokio::time::Instant::now() > deadline => panic!("{} {id} is still there after 30 s", kind.singular()),
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Waits (up to 30 s) until the VM is `running`.
    pub async fn wait_running(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.client.get(Kind::Vm, id).await {
                Ok(r) if r.value.status() == Some("running") => return,
                Ok(_) if tokio::time::Instant::now() > deadline => panic!("vm {id} is not running after 30 s"),
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("cannot read vm {id}: {e}"),
            }
        }
    }

    /// `<endpoint>/v1/tfstate/<workspace>`: what Terraform's `backend "http"` takes as its
    /// address, lock address and unlock address.
    pub fn state_address(&self, workspace: &str) -> String {
        format!("{}/v1/tfstate/{workspace}", self.endpoint())
    }

    /// Takes the lock on `workspace` the way another Terraform run would (LOCK with Terraform's
    /// lock info), so a scenario can meet a lock someone else holds.
    pub async fn lock_state(&self, workspace: &str, id: &str, who: &str) {
        let info = serde_json::json!({
            "ID": id, "Operation": "OperationTypeApply", "Info": "", "Who": who, "Version": "1.15.5", "Created": "2026-12-01T10:00:00Z", "Path": ""
        });
        let method = reqwest::Method::from_bytes(b"LOCK").expect("LOCK is a valid method token");
        let sent =
            reqwest::Client::new().request(method, self.state_address(workspace)).basic_auth("terraform", Some(API_KEY)).body(info.to_string()).send().await;
        match sent {
            Ok(resp) if resp.status().as_u16() == 200 => {}
            Ok(resp) => panic!("LOCK {workspace} answered {}: {}", resp.status(), resp.text().await.unwrap_or_default()),
            Err(e) => panic!("cannot LOCK {workspace}: {e}"),
        }
    }

    /// Sum of the `novacron_http_requests_total` samples whose labels contain `needle`
    /// (e.g. `status="503"`): how many answers of that kind the platform gave.
    pub async fn requests_with(&self, needle: &str) -> u64 {
        let url = format!("{}/metrics", self.endpoint());
        let text = match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => panic!("cannot read {url}: {e}"),
        };
        text.lines()
            .filter(|l| l.starts_with("novacron_http_requests_total") && l.contains(needle))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }

    /// Stops the server.
    pub async fn shutdown(self) {
        if let Err(e) = self.running.shutdown().await {
            panic!("the platform did not shut down cleanly: {e:#}");
        }
    }
}

fn client_config(endpoint: &str, max_retries: u32) -> ClientConfig {
    let mut config = ClientConfig::new(endpoint, API_KEY);
    config.max_retries = max_retries;
    config.timeout = Duration::from_secs(10);
    config
}

/// A client for `endpoint` with the test key and `max_retries` retries.
pub fn client_for(endpoint: &str, max_retries: u32) -> Client {
    match Client::new(client_config(endpoint, max_retries)) {
        Ok(c) => c,
        Err(e) => panic!("cannot build a platform client: {e}"),
    }
}

/// A `127.0.0.1` port nothing listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr,
        Err(e) => panic!("cannot reserve a local port: {e}"),
    }
}
