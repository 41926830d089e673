//! `novacron-platform`: command line for the reference platform API server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use novacron_platform::{ApiKey, PlatformConfig, TlsFiles};

/// Reference server for the NovaCron platform API v1, with an embedded SQLite store.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory for the SQLite database (created if missing).
    #[arg(long, default_value = "./.novacron")]
    data: PathBuf,
    /// API key as NAME:SECRET[:SCOPES], SCOPES a comma list of read, write, state (default all
    /// three); repeatable. NAME is the actor recorded in events. Visible in the process list:
    /// prefer --api-keys-file.
    #[arg(long = "api-key", value_name = "NAME:SECRET[:SCOPES]")]
    api_keys: Vec<String>,
    /// File of hashed keys, one NAME:sha256:<64 hex>[:SCOPES] per line (`#` comments and blank
    /// lines allowed); build a digest with `novacron-platform hash-key`.
    #[arg(long = "api-keys-file", value_name = "FILE")]
    api_keys_file: Option<PathBuf>,
    /// Keys separated by `;` or whitespace, each NAME:SECRET[:SCOPES] (a plain comma list of
    /// NAME:SECRET works too); used when neither --api-key nor --api-keys-file is given.
    #[arg(long, env = "NOVACRON_PLATFORM_API_KEYS", hide_env_values = true, value_name = "KEYS")]
    api_keys_env: Option<String>,
    /// Milliseconds a VM stays `provisioning` (and `deleting`).
    #[arg(long, default_value_t = 500)]
    provision_delay_ms: u64,
    /// Global /v1 request rate limit per second; excess gets 429 with Retry-After.
    #[arg(long)]
    rate_limit_rps: Option<f64>,
    /// Share (0 to 1) of /v1 requests answered 503 before being handled.
    #[arg(long, default_value_t = 0.0)]
    chaos_error_rate: f64,
    /// Milliseconds added to every /v1 request.
    #[arg(long, default_value_t = 0)]
    chaos_latency_ms: u64,
    /// Seed of the chaos error sequence.
    #[arg(long, default_value_t = 0)]
    chaos_seed: u64,
    /// Terraform state versions kept per workspace under /v1/tfstate (older ones are dropped).
    #[arg(long, default_value_t = novacron_platform::DEFAULT_STATE_RETENTION, value_name = "N")]
    state_retention: usize,
    /// PEM certificate (then its chain) to serve HTTPS with; needs --tls-key. Reread on SIGHUP.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert. Reread on SIGHUP.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Milliseconds each admission policy may run per write; a `block` policy that takes
    /// longer refuses the write, a `warn` or `audit` one is skipped.
    #[arg(long, default_value_t = novacron_platform::DEFAULT_ADMISSION_TIMEOUT_MS, value_name = "MS")]
    admission_timeout_ms: u64,
    /// Address-space bound of each admission worker process, in MiB.
    #[arg(long, default_value_t = novacron_platform::DEFAULT_ADMISSION_MEMORY_MB, value_name = "MIB")]
    admission_memory_mb: u64,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// Subcommands beside serving.
#[derive(Subcommand)]
enum Command {
    /// Reads a secret on stdin (one trailing newline is dropped) and prints `sha256:<hex>`, the
    /// digest a line of --api-keys-file holds: `NAME:$(novacron-platform hash-key < secret):read`.
    HashKey,
    /// Internal: evaluates admission policies for a serving platform (JSON lines on stdin).
    #[command(hide = true)]
    AdmissionWorker {
        /// Address-space bound of this process, in MiB.
        #[arg(long, default_value_t = novacron_platform::DEFAULT_ADMISSION_MEMORY_MB)]
        memory_mb: u64,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::AdmissionWorker { memory_mb }) = args.command {
        return match novacron_platform::run_admission_worker(memory_mb) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("novacron-platform admission-worker: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::HashKey) = args.command {
        return match hash_key() {
            Ok(digest) => {
                println!("{digest}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("novacron-platform hash-key: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    init_logging(&args.log_format);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("novacron-platform: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NOVACRON_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The digest of the secret on stdin, refused when the secret would be refused as a key.
fn hash_key() -> anyhow::Result<String> {
    let mut input = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut input).context("cannot read the secret from stdin")?;
    let secret = input.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&input);
    if secret.len() < 8 {
        anyhow::bail!("the secret on stdin is shorter than 8 characters; use a longer one (e.g. printf %s \"$SECRET\" | novacron-platform hash-key)");
    }
    Ok(novacron_platform::auth::hash_secret(secret))
}

fn config(args: &Args) -> anyhow::Result<PlatformConfig> {
    let mut api_keys = Vec::new();
    if let Some(path) = &args.api_keys_file {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).with_context(|| format!("--api-keys-file: cannot read {origin}"))?;
        api_keys = ApiKey::parse_file(&origin, &text).map_err(|e| anyhow::anyhow!("--api-keys-file: {e}"))?;
        if api_keys.is_empty() {
            anyhow::bail!("--api-keys-file: {origin} holds no keys; add NAME:sha256:<hex>[:SCOPES] lines (novacron-platform hash-key prints the digest)");
        }
    }
    for spec in &args.api_keys {
        let key = ApiKey::parse(spec).map_err(|e| anyhow::anyhow!("--api-key: {e}"))?;
        tracing::warn!(key = %key.name, "--api-key puts the secret in the process list; prefer --api-keys-file with a hashed key");
        api_keys.push(key);
    }
    if api_keys.is_empty()
        && let Some(list) = &args.api_keys_env
    {
        api_keys = ApiKey::parse_list(list).map_err(|e| anyhow::anyhow!("NOVACRON_PLATFORM_API_KEYS: {e}"))?;
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
        (None, None) => None,
        (Some(_), None) => anyhow::bail!("--tls-cert needs --tls-key: pass the certificate's private key too (or neither for plain HTTP)"),
        (None, Some(_)) => anyhow::bail!("--tls-key needs --tls-cert: pass the certificate too (or neither for plain HTTP)"),
    };
    Ok(PlatformConfig {
        listen: args.listen,
        data_dir: args.data.clone(),
        api_keys,
        provision_delay: Duration::from_millis(args.provision_delay_ms),
        rate_limit_rps: args.rate_limit_rps,
        chaos_error_rate: args.chaos_error_rate,
        chaos_latency: Duration::from_millis(args.chaos_latency_ms),
        chaos_seed: args.chaos_seed,
        state_retention: args.state_retention,
        tls,
        admission_timeout: Duration::from_millis(args.admission_timeout_ms),
        admission_memory_mb: args.admission_memory_mb,
        admission_worker: Some(std::env::current_exe().context("cannot find this executable to run admission workers")?),
    })
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = config(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let data = config.data_dir.display().to_string();
        let mut platform = novacron_platform::start(config).await?;
        // The first stdout line is a contract for scripts and tests that start us on port 0.
        println!("novacron-platform listening on {}", platform.endpoint());
        tracing::info!(endpoint = %platform.endpoint(), data = %data, "serving");
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                result = platform.wait() => return result,
                _ = hangup.recv() => reload_certificate(&platform),
                signal = &mut shutdown => {
                    tracing::info!(signal, "shutting down: finishing in-flight requests");
                    platform.shutdown().await?;
                    tracing::info!("stopped");
                    return Ok(());
                }
            }
        }
    })
}

/// SIGHUP: rereads the certificate files; a failed reload keeps serving the old certificate.
fn reload_certificate(platform: &novacron_platform::RunningPlatform) {
    if !platform.serves_tls() {
        tracing::info!("SIGHUP: serving plain HTTP, no certificate to reload");
        return;
    }
    match platform.reload_tls() {
        Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate; new connections use it"),
        Err(e) => tracing::error!(error = %e, "SIGHUP: certificate reload failed, still serving the previous certificate"),
    }
}

async fn shutdown_signal() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
