//! The `novacron-reconcile` command: parses flags, runs `drift`, prints or writes the report, sets the exit code.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use novacron_reconcile::command::{DriftOptions, run_drift};
use novacron_reconcile::live::ClientApi;
use novacron_reconcile::render::{render_json, render_markdown, render_text};

/// Exit code when drift was found (as `terraform plan -detailed-exitcode`).
const EXIT_DRIFT: u8 = 2;
/// Exit code on any error.
const EXIT_ERROR: u8 = 1;

/// GitOps drift reconciler for NovaCron.
#[derive(Debug, Parser)]
#[command(name = "novacron-reconcile", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compare the HCL in a Git repository with Terraform's state and the live platform. Exit 0: no drift (pending rollouts are not drift), 2: drift, 1: error.
    Drift(DriftArgs),
    /// Revert drift at or below --auto-sync-max (never critical) or approved; the rest awaits approval or a pull request. Exit 0: nothing left, 2: drift remains, 1: error.
    Sync(novacron_reconcile::cli::SyncArgs),
    /// Approve the revert of a drift awaiting a decision; the next sync carries it out.
    Approve(novacron_reconcile::cli::ApproveArgs),
    /// Drifts awaiting a decision: `approvals list`.
    #[command(subcommand)]
    Approvals(novacron_reconcile::cli::ApprovalsCommand),
    /// The hash-chained audit log: `audit list`, `audit verify`.
    #[command(subcommand)]
    Audit(novacron_reconcile::cli::AuditCommand),
    /// Plan a branch with Terraform for review: changes graded by severity, a policy preview, drift and what the base has pending. Never applies. Exit 0: no changes, 2: changes, 1: error.
    Plan(novacron_reconcile::review::cli::PlanArgs),
    /// Keep many repositories reconciled: polling, webhooks, the platform event feed, status over HTTP.
    Serve(novacron_reconcile::serve::ServeArgs),
}

#[derive(Debug, clap::Args)]
struct DriftArgs {
    /// Repository: a local path, file://, https:// or ssh:// URL.
    #[arg(long)]
    repo: String,
    /// Branch, tag or commit SHA (default: the repository's default branch).
    #[arg(long = "ref")]
    reference: Option<String>,
    /// Directory of the configuration inside the repository.
    #[arg(long, default_value = ".")]
    path: String,
    /// Platform API endpoint. The API key comes from NOVACRON_API_KEY.
    #[arg(long, env = "NOVACRON_ENDPOINT", default_value = novacron_client::DEFAULT_ENDPOINT)]
    endpoint: String,
    /// PEM file of CA certificates to trust for an https:// endpoint (a private CA), besides the
    /// public roots.
    #[arg(long, env = "NOVACRON_CA_FILE", value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Write the report to FILE (atomically, only when the run succeeds) instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Set a root variable: NAME=VALUE (repeatable; beats tfvars files).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// Ignore a resource or attribute: `address` or `address.path`, globs allowed (repeatable).
    #[arg(long = "ignore", value_name = "PATTERN")]
    ignore: Vec<String>,
    /// Where repository clones are cached.
    #[arg(long, env = "NOVACRON_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Colour in the text report.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    color: Color,
    /// A local Terraform state file to compare as the last-applied view.
    #[arg(long, value_name = "FILE", conflicts_with = "workspace")]
    tfstate: Option<PathBuf>,
    /// The platform's Terraform state workspace (default: from the configuration's backend "http" address).
    #[arg(long, value_name = "NAME")]
    workspace: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Markdown,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            let message = format!("{e:#}").split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("novacron-reconcile: error: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            print!("{e}");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => {
            eprint!("{e}");
            return Ok(ExitCode::from(EXIT_ERROR));
        }
    };
    let args = match cli.command {
        Command::Drift(args) => args,
        Command::Sync(args) => return novacron_reconcile::cli::run_sync_cli(&args),
        Command::Approve(args) => return novacron_reconcile::cli::run_approve_cli(&args),
        Command::Approvals(command) => return novacron_reconcile::cli::run_approvals_cli(&command),
        Command::Audit(command) => return novacron_reconcile::cli::run_audit_cli(&command),
        Command::Plan(args) => return novacron_reconcile::review::cli::run_plan_cli(&args),
        Command::Serve(args) => return Ok(novacron_reconcile::serve::run_cli(&args)?),
    };
    let api_key =
        std::env::var("NOVACRON_API_KEY").ok().filter(|k| !k.trim().is_empty()).context("NOVACRON_API_KEY is not set: export the platform API key")?;
    let options = DriftOptions {
        repo: args.repo.clone(),
        reference: args.reference.clone(),
        path: args.path.clone(),
        vars: args.vars.clone(),
        ignore: args.ignore.clone(),
        cache_dir: args.cache_dir.clone().unwrap_or_else(novacron_reconcile::cli::default_cache_dir),
        tfstate: args.tfstate.clone(),
        workspace: args.workspace.clone(),
        http_address: std::env::var("TF_HTTP_ADDRESS").ok(),
    };
    let api = ClientApi::with_ca_file(&args.endpoint, &api_key, args.ca_file.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    let report = runtime.block_on(run_drift(&options, &api))?;
    let rendered = match args.format {
        Format::Json => render_json(&report),
        Format::Markdown => render_markdown(&report),
        Format::Text => {
            let color = match args.color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => args.output.is_none() && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            };
            render_text(&report, color)
        }
    };
    match &args.output {
        Some(path) => {
            write_atomically(path, rendered.as_bytes())?;
            let s = &report.summary;
            eprintln!(
                "novacron-reconcile: {} drifted, {} missing, {} unmanaged of {} resources; report written to {}",
                s.drifted,
                s.missing,
                s.unmanaged,
                s.resources,
                path.display()
            );
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(rendered.as_bytes()).context("cannot write the report to stdout")?;
            stdout.flush().context("cannot write the report to stdout")?;
        }
    }
    Ok(if report.has_drift() { ExitCode::from(EXIT_DRIFT) } else { ExitCode::SUCCESS })
}

/// Writes through a temporary file in the same directory and renames it into place, so a
/// reader never sees a partial report.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("--output {}: cannot create a file in {}", path.display(), dir.display()))?;
    tmp.write_all(bytes).with_context(|| format!("--output {}: write failed", path.display()))?;
    tmp.as_file().sync_all().with_context(|| format!("--output {}: sync failed", path.display()))?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("--output {}: cannot rename into place", path.display()))?;
    Ok(())
}
