//! `novacron-reconcile serve`: a long-running service that keeps many repositories reconciled (polling, webhooks, the platform event feed) and shows where they stand over HTTP.
//!
//! One task per repository runs reconciles one at a time ([`scheduler`]); triggers that
//! arrive meanwhile coalesce into one follow-up run. A task follows the platform change feed
//! ([`feed`]); the HTTP server ([`http`]) takes webhooks and serves status, metrics and the
//! web console ([`console`]). What must survive a restart lives in the state database ([`state`]), locked against
//! a second instance.

pub mod config;
pub mod console;
pub mod feed;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod repo;
pub mod review;
pub mod scheduler;
pub mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use novacron_client::{Client, ClientConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::SharedClock;
use crate::live::{ClientApi, LiveError};
use crate::state::{StateDb, StateError, StateLock};
use config::{ConfigError, ServeConfig};
use metrics::Metrics;
use repo::RepoHandle;

/// The environment variable holding the bearer token of `POST /api/approvals/{id}`.
pub const ADMIN_TOKEN_ENV: &str = "NOVACRON_RECONCILE_ADMIN_TOKEN";

/// Flags of `novacron-reconcile serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The config file (TOML): global settings and one [[repo]] table per repository.
    #[arg(long)]
    pub config: PathBuf,
    /// Address to listen on (beats `listen` in the config).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The state: a SQLite file or a `postgres://` URL (beats `state` and `state_env` in the config).
    #[arg(long)]
    pub state: Option<crate::state::StateLocation>,
}

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The config file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A secret named in the config is not in the environment.
    #[error("{0}")]
    Secret(String),
    /// The state database is locked or broken.
    #[error(transparent)]
    State(#[from] StateError),
    /// The platform client could not be built.
    #[error(transparent)]
    Platform(#[from] LiveError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another replica runs under this replica's id.
    #[error("{0}")]
    Replica(String),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// `tls_cert` / `tls_key` cannot be served.
    #[error("config: {0}")]
    Tls(#[from] novacron_tls::TlsError),
}

/// Everything `serve` needs, secrets resolved: the config plus what came from the environment.
#[derive(Clone)]
pub struct ServeSettings {
    /// The parsed config (with `--listen`/`--state` applied).
    pub config: ServeConfig,
    /// The platform API key.
    pub api_key: String,
    /// The bearer token for approvals; approvals over HTTP are refused without one.
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for ServeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The API key and admin token are never printed.
        f.debug_struct("ServeSettings")
            .field("config", &self.config)
            .field("api_key", &"***")
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl ServeSettings {
    /// Reads the secrets the config names from the environment.
    pub fn from_env(config: ServeConfig) -> Result<ServeSettings, ServeError> {
        let api_key = std::env::var(&config.api_key_env)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| ServeError::Secret(format!("{} is not set: export the platform API key (api_key_env in the config)", config.api_key_env)))?;
        let admin_token = std::env::var(ADMIN_TOKEN_ENV).ok().filter(|t| !t.trim().is_empty());
        Ok(ServeSettings { config, api_key, admin_token })
    }
}

/// The shared state of a running service.
pub struct Service {
    /// The repositories, in config order.
    pub repos: Vec<Arc<RepoHandle>>,
    /// The clock of reports, run times and everything the state database records.
    pub clock: SharedClock,
    /// The state database: approvals, audit log and journal as `sync` keeps them, and the
    /// `serve` tables (repository positions, event feed, webhook deliveries, run history).
    pub db: StateDb,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Live state reads.
    pub api: ClientApi,
    /// The event feed.
    pub client: Client,
    /// Where clones are cached.
    pub cache_dir: PathBuf,
    /// The approvals bearer token.
    pub admin_token: Option<String>,
    /// Where the state lives (a file, or a PostgreSQL URL without its password), for status.
    pub state_location: String,
    /// The repositories this replica holds the lease of.
    pub leases: lease::Leases,
    /// Turns for reconciles (`max_concurrent_reconciles`).
    pub turns: tokio::sync::Semaphore,
    /// True once the event feed follows new events (after skipping old ones at the first start).
    pub feed_following: AtomicBool,
    /// One lock per repository URL: repos sharing a URL (other paths or refs) share a cached
    /// clone, and two fetches into one clone at once would collide on git's lock files.
    pub clone_locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// How rollouts run Terraform (the API key inside is never printed).
    pub runner_settings: crate::sync::RunnerSettings,
    /// Pull-request reviews running and waiting.
    pub reviews: review::ReviewQueue,
    /// The web console: its settings and browser sessions.
    pub console: console::Console,
    /// Finished runs, for the console's live updates (`GET /events`).
    pub events: tokio::sync::broadcast::Sender<console::RunEvent>,
    /// Turns true when the service stops (ends the `/events` streams, so shutdown is not held up).
    pub stopping: watch::Receiver<bool>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The admin token is never printed; the repos print without their secrets.
        f.debug_struct("Service")
            .field("repos", &self.repos)
            .field("cache_dir", &self.cache_dir)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl Service {
    /// The lock of the cached clone of `url`.
    pub fn clone_lock(&self, url: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.clone_locks.get(&webhook::normalize_url(url)).cloned().unwrap_or_default()
    }

    /// The Terraform runner of repository `name` (its own working copy); `None` when Terraform
    /// cannot be used here (rollouts are then reported as pending, with the reason).
    pub fn runner(&self, name: &str) -> Option<Box<dyn crate::sync::RolloutRunner>> {
        let mut settings = self.runner_settings.clone();
        settings.cache_dir = settings.cache_dir.join(name);
        crate::sync::terraform_runner(&settings)
    }

    /// The repository named `name`.
    pub fn repo(&self, name: &str) -> Option<&Arc<RepoHandle>> {
        self.repos.iter().find(|r| r.config.name.get_ref() == name)
    }
}

/// A started service: its address and what stops it.
#[derive(Debug)]
pub struct RunningServe {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<()>,
    service: Arc<Service>,
    tls: Option<Arc<novacron_tls::ReloadableCert>>,
    keeper: JoinHandle<()>,
    keeper_stop: watch::Sender<bool>,
    _lock: Option<StateLock>,
}

/// Locks the state, opens it, binds the listener and starts every task. Each repository is
/// reconciled once at start.
pub async fn start(settings: ServeSettings) -> Result<RunningServe, ServeError> {
    let ServeSettings { config, api_key, admin_token } = settings;
    if config.console.require_signin && admin_token.is_none() {
        return Err(ServeError::Secret(format!(
            "[console] require_signin = true but {ADMIN_TOKEN_ENV} is not set: nobody could sign in to see the console; set it or turn require_signin off"
        )));
    }
    let location = config.resolve_state(|name| std::env::var(name).ok()).map_err(ServeError::Secret)?;
    // A SQLite file is one replica's: the lock file keeps a second one off it. PostgreSQL is
    // shared, and leases say which replica reconciles what.
    let lock = location.file().map(StateLock::acquire).transpose()?;
    let clock = SharedClock::default();
    let db = connect_state(&location, crate::state::sql::PG_POOL_SIZE).await?.with_clock(clock.clone());
    let mut repos = Vec::new();
    for repo in &config.repo {
        let stored = crate::state::stored_repo(&db, repo.name.get_ref())?;
        repos.push(Arc::new(RepoHandle::new(repo.clone(), stored, |name| std::env::var(name).ok()).map_err(ServeError::Secret)?));
    }
    let clone_locks = config.repo.iter().map(|r| (webhook::normalize_url(&r.url), Arc::default())).collect();
    let api = ClientApi::with_ca_file(&config.endpoint, &api_key, config.ca_file.as_deref())?;
    let mut client_config = ClientConfig::new(config.endpoint.clone(), api_key.clone());
    client_config.ca_file = config.ca_file.clone();
    let client = Client::new(client_config).map_err(|e| LiveError::Config(e.to_string()))?;
    let cache_dir = config.cache_dir.clone().unwrap_or_else(|| {
        let mut name = location.file().unwrap_or(Path::new(crate::state::DEFAULT_STATE_PATH)).as_os_str().to_owned();
        name.push(".cache");
        PathBuf::from(name)
    });
    let runner_settings = crate::sync::RunnerSettings {
        terraform: config.terraform.clone().or_else(|| std::env::var_os("NOVACRON_TERRAFORM").map(PathBuf::from)),
        provider: config.provider.clone().or_else(|| std::env::var_os("NOVACRON_PROVIDER").map(PathBuf::from)),
        cache_dir: cache_dir.join("terraform"),
        endpoint: config.endpoint.clone(),
        api_key,
        ca_file: config.ca_file.clone(),
    };
    // Before binding, so that bad certificate files stop the start with nothing half-open.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            Some(novacron_tls::ReloadableCert::open(novacron_tls::TlsFiles { cert: cert.clone(), key: key.clone() }, novacron_tls::Setting::CONFIG_KEYS)?)
        }
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|source| ServeError::Listen { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen { addr: config.listen, source })?;
    let (stop, stopped) = watch::channel(false);
    let replica = config.replica_id.clone().unwrap_or_else(lease::default_replica_id);
    let settings = lease::LeaseSettings { ttl: config.leases.ttl, margin: config.leases.renew_margin };
    let ttl_ms = u64::try_from(settings.ttl.as_millis()).unwrap_or(u64::MAX);
    if !crate::state::register_replica(&db, &replica, &addr.to_string(), ttl_ms)? {
        return Err(ServeError::Replica(format!(
            "replica_id {replica:?} is in use by a running replica sharing {location}: give each replica its own replica_id (or leave it unset)"
        )));
    }
    let names: Vec<String> = config.repo.iter().map(|r| r.name.get_ref().clone()).collect();
    // On PostgreSQL the lease keeper has connections of its own.
    let keeper_db = if location.is_shared() { connect_state(&location, 1).await?.with_clock(clock.clone()) } else { db.clone() };
    let leases = lease::Leases::new(replica, addr.to_string(), settings, &names, keeper_db);
    let service = Arc::new(Service {
        repos,
        clock,
        db,
        metrics: Metrics::default(),
        api,
        client,
        cache_dir,
        admin_token,
        state_location: location.to_string(),
        leases,
        turns: tokio::sync::Semaphore::new(config.max_concurrent_reconciles),
        feed_following: AtomicBool::new(false),
        clone_locks,
        runner_settings,
        reviews: review::ReviewQueue::new(),
        console: console::Console::new(config.console.clone(), tls.is_some()),
        events: tokio::sync::broadcast::channel(64).0,
        stopping: stopped.clone(),
    });
    for r in service.repos.iter().filter(|r| r.config.review_pull_requests && r.review_key.is_none()) {
        tracing::warn!(repo = %r.name(), "pull-request plans use the service's own API key: set review_api_key_env to a key that can only read (and read state), since a pull request's HCL can read the environment Terraform runs in");
    }
    // On a file the one replica takes every lease before the first reconciles; on PostgreSQL
    // the keeper first waits a renewal interval, so replicas started together spread at once.
    if !service.db.is_postgres() {
        lease::renew_and_balance(&service, true, false);
    }
    let mut tasks: Vec<JoinHandle<()>> =
        service.repos.iter().map(|r| tokio::spawn(scheduler::repo_worker(service.clone(), r.clone(), stopped.clone()))).collect();
    tasks.push(tokio::spawn(feed::event_feed(service.clone(), stopped.clone())));
    tasks.push(tokio::spawn(scheduler::approvals_watcher(service.clone(), stopped.clone())));
    tasks.push(tokio::spawn(lease::wake_follower(service.clone(), stopped.clone())));
    // Stopped on its own, after every repository task: it renews the leases while running
    // reconciles finish, and releases them only then.
    let (keeper_stop, keeper_stopped) = watch::channel(false);
    let keeper = lease::spawn_keeper(service.clone(), stopped.clone(), keeper_stopped);
    let server = tokio::spawn(http::serve_http(listener, service.clone(), tls.clone(), stopped));
    let endpoint = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
    tracing::info!(%addr, %endpoint, repos = service.repos.len(), state = %location, replica = %service.leases.replica, lock = ?lock.as_ref().map(|l| l.path().display().to_string()), "novacron-reconcile serve started");
    Ok(RunningServe { addr, stop, tasks, server, service, tls, keeper, keeper_stop, _lock: lock })
}

/// How long a starting replica waits for PostgreSQL to answer before giving up.
pub const STATE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Opens the state; a PostgreSQL database that does not answer yet (starting with the replicas,
/// restarting) is waited for up to [`STATE_WAIT`], retrying with backoff.
async fn connect_state(location: &crate::state::StateLocation, pool: usize) -> Result<StateDb, StateError> {
    let deadline = tokio::time::Instant::now() + STATE_WAIT;
    let mut delay = std::time::Duration::from_millis(250);
    loop {
        match StateDb::connect_with(location, pool) {
            Ok(db) => return Ok(db),
            Err(e) if e.is_unreachable() && tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(state = %location, error = %e, retry_in_ms = delay.as_millis() as u64, "the state database does not answer yet; waiting for it");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

impl RunningServe {
    /// The address the HTTP server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, or `https://<addr>` when serving TLS.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", if self.tls.is_some() { "https" } else { "http" }, self.addr)
    }

    /// Reads `tls_cert` and `tls_key` again (SIGHUP): new connections get the new certificate,
    /// open ones keep theirs; on error the certificate in use stays. Without TLS, nothing to do.
    pub fn reload_tls(&self) -> Result<(), novacron_tls::TlsError> {
        self.tls.as_ref().map_or(Ok(()), |cert| cert.reload())
    }

    /// The shared state (for tests and benchmarks).
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Stops taking work, lets running reconciles finish, stops the server, releases the lock.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let _ = self.server.await;
        self.keeper_stop.send_replace(true);
        let _ = self.keeper.await;
        tracing::info!("novacron-reconcile serve stopped");
    }
}

/// `novacron-reconcile serve`: runs until SIGTERM or SIGINT, then shuts down gracefully.
pub fn run_cli(args: &ServeArgs) -> Result<ExitCode, ServeError> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NOVACRON_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
    let mut config = ServeConfig::load(&args.config)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(state) = &args.state {
        config.state_location = Some(state.clone());
    }
    let settings = ServeSettings::from_env(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(ServeError::Runtime)?;
    runtime.block_on(async {
        // Registered before anything starts, so a signal that arrives early is not fatal.
        let mut signals = Signals::register().map_err(ServeError::Runtime)?;
        let running = start(settings).await?;
        while signals.recv().await == Signal::Hangup {
            match (&running.tls, running.reload_tls()) {
                (None, _) => tracing::info!("SIGHUP: serving plain HTTP, no certificate to reload"),
                (Some(_), Ok(())) => tracing::info!("SIGHUP: reloaded tls_cert and tls_key; new connections use them"),
                (Some(_), Err(e)) => tracing::error!(error = %e, "SIGHUP: certificate reload failed, still serving the previous certificate"),
            }
        }
        tracing::info!("signal received: finishing running reconciles, then exiting");
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// What a signal asks of `serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// SIGTERM or SIGINT: finish running reconciles, then exit.
    Shutdown,
    /// SIGHUP: reread the certificate files.
    Hangup,
}

/// SIGTERM, SIGINT and SIGHUP, listened for from the moment they are registered.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())?, hup: signal(SignalKind::hangup())? })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn recv(&mut self) -> Signal {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => Signal::Shutdown,
            _ = self.int.recv() => Signal::Shutdown,
            _ = self.hup.recv() => Signal::Hangup,
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Shutdown
        }
    }
}
