//! The `novacron-reconcile` command: parses flags, runs `drift`, prints or writes the report, sets the exit code.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use novacron_reconcile::cli::SourceArgs;
use novacron_reconcile::command::run_drift;
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
// `drift` words three of the shared flags its own way: it runs no Terraform, so --ca-file
// has no SSL_CERT_FILE note, and it says more about --var and --ignore.
#[command(mut_arg("ca_file", |a| a.help("PEM file of CA certificates to trust for an https:// endpoint (a private CA), besides the public roots")))]
#[command(mut_arg("vars", |a| a.help("Set a root variable: NAME=VALUE (repeatable; beats tfvars files)")))]
#[command(mut_arg("ignore", |a| a.help("Ignore a resource or attribute: `address` or `address.path`, globs allowed (repeatable)")))]
struct DriftArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Write the report to FILE (atomically, only when the run succeeds) instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
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
    let options = args.source.drift_options(args.tfstate.clone(), args.workspace.clone());
    let api = ClientApi::with_ca_file(&args.source.endpoint, &api_key, args.source.ca_file.as_deref())?;
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn arg_of(cli: &clap::Command, subcommand: &str, id: &str) -> clap::Arg {
        let sub = cli.find_subcommand(subcommand).expect("the subcommand exists");
        sub.get_arguments().find(|a| a.get_id() == id).expect("the flag exists").clone()
    }

    #[test]
    fn drift_and_sync_share_their_source_flags_and_keep_their_own_wording() {
        let cli = Cli::command();
        Cli::command().debug_assert();
        let help = |sub: &str, id: &str| arg_of(&cli, sub, id).get_help().map(ToString::to_string).unwrap_or_default();
        assert_eq!(help("drift", "ca_file"), "PEM file of CA certificates to trust for an https:// endpoint (a private CA), besides the public roots");
        assert_eq!(
            help("sync", "ca_file"),
            "PEM file of CA certificates to trust for an https:// endpoint (a private CA), besides the public roots; Terraform runs get it as SSL_CERT_FILE and NOVACRON_CA_FILE"
        );
        assert_eq!(help("drift", "vars"), "Set a root variable: NAME=VALUE (repeatable; beats tfvars files)");
        assert_eq!(help("sync", "vars"), "Set a root variable: NAME=VALUE (repeatable)");
        assert_eq!(help("drift", "ignore"), "Ignore a resource or attribute: `address` or `address.path`, globs allowed (repeatable)");
        assert_eq!(help("sync", "ignore"), "Ignore a resource or attribute (repeatable)");
        for sub in ["drift", "sync"] {
            for (id, long) in [("repo", "repo"), ("reference", "ref"), ("path", "path"), ("endpoint", "endpoint"), ("vars", "var"), ("cache_dir", "cache-dir")]
            {
                assert_eq!(arg_of(&cli, sub, id).get_long(), Some(long), "{sub} {id}");
            }
        }
    }

    #[test]
    fn every_endpoint_flag_defaults_to_the_clients_default_endpoint() {
        let cli = Cli::command();
        for sub in ["drift", "sync", "plan"] {
            let endpoint = arg_of(&cli, sub, "endpoint");
            assert_eq!(endpoint.get_default_values(), [novacron_client::DEFAULT_ENDPOINT], "{sub}");
            assert_eq!(endpoint.get_env().and_then(|e| e.to_str()), Some("NOVACRON_ENDPOINT"), "{sub}");
        }
    }

    #[test]
    fn thresholds_and_remediation_keep_their_defaults_and_values() {
        let cli = Cli::command();
        let values = |id: &str| arg_of(&cli, "sync", id).get_possible_values().iter().map(|v| v.get_name().to_string()).collect::<Vec<_>>();
        assert_eq!(values("auto_sync_max"), ["none", "info", "low", "medium", "high"]);
        assert_eq!(values("auto_apply_max"), ["none", "info", "low", "medium", "high"]);
        assert_eq!(values("remediation"), ["none", "pr"]);
        assert_eq!(arg_of(&cli, "sync", "auto_sync_max").get_default_values(), ["low"]);
        assert_eq!(arg_of(&cli, "sync", "auto_apply_max").get_default_values(), ["medium"]);
        assert_eq!(arg_of(&cli, "sync", "remediation").get_default_values(), ["none"]);
    }
}
