//! novacron-platform: the reference server for the NovaCron platform API v1.
//!
//! Objects live in SQLite (WAL); every write is one transaction carrying its event. Terraform
//! state lives beside them under `/v1/tfstate/{workspace}` (versions kept up to [`PlatformConfig::state_retention`]). Tests and
//! benchmarks start it in-process with [`start`] on `127.0.0.1:0`.

mod admission;
mod admission_worker;
mod api;
mod app;
pub mod auth;
mod kinds;
mod limits;
mod listing;
mod metrics;
mod problem;
mod store;
mod templates;
mod tfstate;
mod time;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use auth::{ApiKey, Scope, Scopes};
pub use novacron_tls::{TlsError, TlsFiles};
pub use tfstate::{DEFAULT_RETENTION as DEFAULT_STATE_RETENTION, MAX_STATE_BYTES};

/// Everything a platform needs to start.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Directory holding `platform.db`.
    pub data_dir: PathBuf,
    /// Accepted API keys.
    pub api_keys: Vec<ApiKey>,
    /// How long VM provisioning (and deletion) takes.
    pub provision_delay: Duration,
    /// Global request rate limit for `/v1`, requests per second.
    pub rate_limit_rps: Option<f64>,
    /// Share of `/v1` requests answered 503 before being handled, 0..=1.
    pub chaos_error_rate: f64,
    /// Latency added to every `/v1` request.
    pub chaos_latency: Duration,
    /// Seed for the chaos error sequence.
    pub chaos_seed: u64,
    /// Terraform state versions kept per workspace (`--state-retention`), at least 1.
    pub state_retention: usize,
    /// Serve HTTPS with these files (`--tls-cert`, `--tls-key`); plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// Time each policy may take per evaluation (`--admission-timeout-ms`).
    pub admission_timeout: Duration,
    /// Address-space bound of each admission worker in MiB (`--admission-memory-mb`).
    pub admission_memory_mb: u64,
    /// The binary run as `admission-worker` to evaluate policies: the platform's own
    /// executable for the server. `None` evaluates in-process on a helper thread, where the
    /// time budget bounds the wait but nothing bounds memory (tests without the binary).
    pub admission_worker: Option<PathBuf>,
}

/// Default of [`PlatformConfig::admission_timeout`], in milliseconds.
pub const DEFAULT_ADMISSION_TIMEOUT_MS: u64 = 250;
/// Default of [`PlatformConfig::admission_memory_mb`].
pub const DEFAULT_ADMISSION_MEMORY_MB: u64 = 512;

/// Runs this process as an admission worker (`novacron-platform admission-worker`): limits
/// its address space to `memory_mb` MiB and answers evaluation requests on stdin.
pub fn run_admission_worker(memory_mb: u64) -> anyhow::Result<()> {
    admission_worker::run(memory_mb)
}

/// The API key [`PlatformConfig::for_tests`] accepts, as `NAME:SECRET`.
pub const TEST_API_KEY: (&str, &str) = ("tester", "test-secret-key");

impl PlatformConfig {
    /// A config for tests: `127.0.0.1:0`, the given data directory, the key
    /// [`TEST_API_KEY`], a 50 ms provisioning delay, no limits and no chaos, and in-process
    /// admission; integration tests set [`PlatformConfig::admission_worker`] to
    /// `env!("CARGO_BIN_EXE_novacron-platform")` to use worker processes.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> PlatformConfig {
        PlatformConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            api_keys: vec![ApiKey::parse(&format!("{}:{}", TEST_API_KEY.0, TEST_API_KEY.1)).expect("the test key is well-formed")],
            provision_delay: Duration::from_millis(50),
            rate_limit_rps: None,
            chaos_error_rate: 0.0,
            chaos_latency: Duration::ZERO,
            chaos_seed: 0,
            state_retention: tfstate::DEFAULT_RETENTION,
            tls: None,
            admission_timeout: Duration::from_millis(DEFAULT_ADMISSION_TIMEOUT_MS),
            admission_memory_mb: DEFAULT_ADMISSION_MEMORY_MB,
            admission_worker: None,
        }
    }
}

/// A platform serving in the background of the current tokio runtime.
pub struct RunningPlatform {
    addr: SocketAddr,
    app: Arc<app::App>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
    tls: Option<Arc<novacron_tls::ReloadableCert>>,
}

/// Opens the store, binds the listener and starts serving.
pub async fn start(config: PlatformConfig) -> anyhow::Result<RunningPlatform> {
    if config.api_keys.is_empty() {
        anyhow::bail!(
            "no API keys: pass --api-keys-file FILE (lines NAME:sha256:<hex>[:SCOPES]), --api-key NAME:SECRET[:SCOPES], or set NOVACRON_PLATFORM_API_KEYS=NAME:SECRET[:SCOPES][;NAME:SECRET[:SCOPES]]"
        );
    }
    if !(0.0..=1.0).contains(&config.chaos_error_rate) {
        anyhow::bail!("--chaos-error-rate must be between 0 and 1, not {}", config.chaos_error_rate);
    }
    if config.rate_limit_rps.is_some_and(|r| r.is_nan() || r <= 0.0) {
        anyhow::bail!("--rate-limit-rps must be a positive number");
    }
    if config.state_retention == 0 {
        anyhow::bail!("--state-retention must be at least 1 (the current state is a stored version), not 0");
    }
    // Before binding, so that bad certificate files stop the start with nothing half-open.
    let tls = config.tls.clone().map(|files| novacron_tls::ReloadableCert::open(files, novacron_tls::Setting::FLAGS)).transpose()?;
    if config.admission_timeout.is_zero() || config.admission_memory_mb == 0 {
        anyhow::bail!("--admission-timeout-ms and --admission-memory-mb must be at least 1");
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let store = store::Store::open(&config.data_dir)?;
    let app = Arc::new(app::App::new(config, store)?);
    app.resume()?;
    let router = api::router(app.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = match &tls {
        Some(cert) => tokio::spawn(novacron_tls::serve(listener, router, cert.clone(), async move {
            let _ = stopped.await;
        })),
        None => tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        }),
    };
    Ok(RunningPlatform { addr, app, stop: Some(stop), server, tls })
}

impl RunningPlatform {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, or `https://<addr>` when serving TLS.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Whether the platform serves HTTPS.
    pub fn serves_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Reads the certificate files again (SIGHUP): new connections get the new certificate,
    /// open ones keep theirs. On error the certificate in use stays. Without TLS, nothing to do.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        match &self.tls {
            Some(cert) => cert.reload(),
            None => Ok(()),
        }
    }

    /// Stops accepting connections, lets in-flight requests finish, and stops background work
    /// (pending provisioning resumes from the database at the next start).
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.app.shutting_down.send_replace(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = (&mut self.server).await;
        self.app.stop_background();
        served.context("server task panicked")?.context("server failed")?;
        Ok(())
    }

    /// Serves until the server stops by itself (it only does on error).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.server).await.context("server task panicked")?.context("server failed")?;
        Ok(())
    }
}
