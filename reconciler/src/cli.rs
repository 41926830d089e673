//! The `sync`, `approve`, `approvals` and `audit` subcommands: flags, then the library calls, then output and exit code.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use novacron_client::DEFAULT_ENDPOINT;

use crate::command::DriftOptions;
use crate::live::ClientApi;
use crate::remediation::{FORGE_TOKEN_ENV, Forge, GitHubForge, Remediation};
use crate::state::{DEFAULT_STATE_PATH, StateDb, approve, approve_plan, audit_list, audit_verify, pending_approvals, pending_plans};
use crate::sync::{AutoApplyMax, AutoSyncMax, RolloutOutcome, SyncOptions, SyncOutcome, SyncReport, Thresholds, run_sync};

/// `--state FILE`.
#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    /// The reconciler's state: a SQLite file, or a `postgres://USER@HOST:PORT/DATABASE` URL shared
    /// with `serve` replicas (password from PGPASSWORD or the passfile): approvals, pending
    /// drifts, sync journal, audit log.
    #[arg(long, env = "NOVACRON_STATE", default_value = DEFAULT_STATE_PATH)]
    pub state: crate::state::StateLocation,
}

/// The flags `drift` and `sync` share: which configuration to read (repository, ref, path,
/// variables, ignore rules, clone cache) and which platform to compare it with. `drift` words
/// a few of them its own way (see its `mut_arg`s); names, env vars and defaults are these.
#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// Repository: a local path, file://, https:// or ssh:// URL.
    #[arg(long)]
    pub repo: String,
    /// Branch, tag or commit SHA (default: the repository's default branch).
    #[arg(long = "ref")]
    pub reference: Option<String>,
    /// Directory of the configuration inside the repository.
    #[arg(long, default_value = ".")]
    pub path: String,
    /// Platform API endpoint. The API key comes from NOVACRON_API_KEY.
    #[arg(long, env = "NOVACRON_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// PEM file of CA certificates to trust for an https:// endpoint (a private CA), besides the
    /// public roots; Terraform runs get it as SSL_CERT_FILE and NOVACRON_CA_FILE.
    #[arg(long, env = "NOVACRON_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Set a root variable: NAME=VALUE (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Ignore a resource or attribute (repeatable).
    #[arg(long = "ignore", value_name = "PATTERN")]
    pub ignore: Vec<String>,
    /// Where repository clones are cached.
    #[arg(long, env = "NOVACRON_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl SourceArgs {
    /// What `drift` and `sync` detect drift in: these flags, the last-applied view
    /// (`--tfstate` or `--workspace`) and `TF_HTTP_ADDRESS`.
    pub fn drift_options(&self, tfstate: Option<PathBuf>, workspace: Option<String>) -> DriftOptions {
        DriftOptions {
            repo: self.repo.clone(),
            reference: self.reference.clone(),
            path: self.path.clone(),
            vars: self.vars.clone(),
            ignore: self.ignore.clone(),
            cache_dir: self.cache_dir.clone().unwrap_or_else(default_cache_dir),
            tfstate,
            workspace,
            http_address: std::env::var("TF_HTTP_ADDRESS").ok(),
            // The CLI draws progress on the terminal; results take the system clock.
            progress: crate::progress::SharedProgress::new(crate::progress::Terminal),
            clock: crate::clock::SharedClock::default(),
        }
    }
}

/// Flags of `sync`: those of `drift`, plus what to act on.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub source: SourceArgs,
    /// Highest drift severity reverted without approval; critical never is.
    #[arg(long, value_enum, default_value_t = AutoSyncMax::Low)]
    pub auto_sync_max: AutoSyncMax,
    /// Highest rollout (plan) severity applied without approval; critical never is.
    #[arg(long, value_enum, default_value_t = AutoApplyMax::Medium)]
    pub auto_apply_max: AutoApplyMax,
    /// Let rollouts delete objects removed from Git (without it, a plan that deletes waits).
    #[arg(long)]
    pub prune: bool,
    /// A local Terraform state file as the last-applied view (rollouts then use it as their backend).
    #[arg(long, value_name = "FILE", conflicts_with = "workspace")]
    pub tfstate: Option<PathBuf>,
    /// The platform's Terraform state workspace (default: from the configuration's backend "http" address).
    #[arg(long, value_name = "NAME")]
    pub workspace: Option<String>,
    /// The terraform binary rollouts run (default: terraform on PATH).
    #[arg(long, env = "NOVACRON_TERRAFORM", value_name = "PATH")]
    pub terraform: Option<PathBuf>,
    /// The provider binary for Terraform (default: terraform-provider-novacron beside this program).
    #[arg(long, env = "NOVACRON_PROVIDER", value_name = "PATH")]
    pub provider: Option<PathBuf>,
    /// Show what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// `pr`: push a branch codifying the live values of drift that is not reverted and open a pull request.
    #[arg(long, value_enum, default_value_t = Remediation::None)]
    pub remediation: Remediation,
    /// GitHub-compatible REST API base (https://api.github.com, a Gitea .../api/v1). Token from NOVACRON_FORGE_TOKEN.
    #[arg(long)]
    pub forge_url: Option<String>,
    /// The repository on the forge: owner/name.
    #[arg(long)]
    pub forge_repo: Option<String>,
    /// Who acts, for the audit log (default: $USER).
    #[arg(long)]
    pub actor: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub state: StateArgs,
}

/// `--format` of `sync`, `approvals list` and `audit list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[allow(missing_docs)]
pub enum OutputFormat {
    Text,
    Json,
}

/// `approve <id>`.
#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The drift id or plan id (`plan-...`), from `novacron-reconcile approvals list`.
    pub id: String,
    /// Who approves (default: $USER).
    #[arg(long)]
    pub actor: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub state: StateArgs,
}

/// `approvals list`.
#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List the plans and drifts awaiting a decision (JSON: one array).
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        #[command(flatten)]
        #[allow(missing_docs)]
        state: StateArgs,
    },
}

/// `audit list|verify`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List entries, oldest first (JSON: one array).
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// Only the newest N entries.
        #[arg(long)]
        limit: Option<u64>,
        #[command(flatten)]
        #[allow(missing_docs)]
        state: StateArgs,
    },
    /// Recompute the audit chain; exit 1 naming the first tampered entry.
    Verify {
        #[command(flatten)]
        #[allow(missing_docs)]
        state: StateArgs,
    },
}

fn actor(given: Option<&String>) -> String {
    given.cloned().or_else(|| std::env::var("USER").ok()).filter(|a| !a.trim().is_empty()).unwrap_or_else(|| "novacron-reconcile".into())
}

/// `$XDG_CACHE_HOME/novacron/repos`, else `~/.cache/novacron/repos`, else a temp directory.
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("novacron").join("repos")
}

/// Runs `sync`; the exit code is 0 (nothing left drifted), 2 (drift remains) or 1 (error).
pub fn run_sync_cli(args: &SyncArgs) -> anyhow::Result<ExitCode> {
    let api_key =
        std::env::var("NOVACRON_API_KEY").ok().filter(|k| !k.trim().is_empty()).context("NOVACRON_API_KEY is not set: export the platform API key")?;
    let forge = match (args.remediation, &args.forge_url, &args.forge_repo) {
        (Remediation::Pr, Some(url), Some(repo)) => {
            let token = std::env::var(FORGE_TOKEN_ENV).unwrap_or_default();
            Some(GitHubForge::new(url, repo, &token).map_err(anyhow::Error::msg)?)
        }
        (Remediation::Pr, _, _) if !args.dry_run => anyhow::bail!("--remediation pr needs --forge-url and --forge-repo (token in {FORGE_TOKEN_ENV})"),
        _ => None,
    };
    let options = SyncOptions {
        drift: args.source.drift_options(args.tfstate.clone(), args.workspace.clone()),
        thresholds: Thresholds { auto_sync_max: args.auto_sync_max, auto_apply_max: args.auto_apply_max, prune: args.prune },
        dry_run: args.dry_run,
        remediation_pr: args.remediation == Remediation::Pr,
        actor: actor(args.actor.as_ref()),
    };
    let db = StateDb::connect(&args.state.state)?;
    let api = ClientApi::with_ca_file(&args.source.endpoint, &api_key, args.source.ca_file.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    let runner = crate::sync::terraform_runner(&crate::sync::RunnerSettings {
        terraform: args.terraform.clone(),
        provider: args.provider.clone(),
        cache_dir: options.drift.cache_dir.join("terraform"),
        endpoint: args.source.endpoint.clone(),
        api_key: api_key.clone(),
        ca_file: args.source.ca_file.clone(),
    });
    let report = runtime.block_on(run_sync(&options, &api, &db, forge.as_ref().map(|f| f as &dyn Forge), runner.as_deref()))?;
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report).context("cannot encode the sync report")?),
        OutputFormat::Text => print!("{}", sync_text(&report)),
    }
    for e in &report.errors {
        eprintln!("novacron-reconcile: error: {e}");
    }
    Ok(ExitCode::from(report.exit_code()))
}

/// One line per drifted resource, the remediation, and a summary.
pub fn sync_text(report: &SyncReport) -> String {
    let mut out = String::new();
    let verb = if report.dry_run { "dry run of sync" } else { "sync" };
    let _ = writeln!(out, "{verb} of revision {}", report.report.revision);
    if let Some(r) = &report.rollout {
        let what = match &r.outcome {
            RolloutOutcome::Applied => format!("applied{}", r.approved_by.as_deref().map(|by| format!(" (approved by {by})")).unwrap_or_default()),
            RolloutOutcome::Pending(why) => format!("pending: {why}: novacron-reconcile approve {}", r.plan_id),
            RolloutOutcome::NothingToDo => "nothing to change".to_string(),
            RolloutOutcome::WouldApply => "would apply".to_string(),
            RolloutOutcome::Failed(why) => format!("failed: {why}"),
        };
        let severity = r.severity.map(|s| format!(" [{s}]")).unwrap_or_default();
        let _ = writeln!(out, "  rollout {}{severity} {}: {what}", r.plan_id, r.summary);
        for c in &r.changes {
            let _ = writeln!(out, "    {} {} [{}] {}", c.action, c.address, c.severity, c.attributes.join("; "));
        }
        for a in &r.adopted {
            let _ = writeln!(out, "    adopted {a}");
        }
    }
    for r in &report.recovered {
        let _ = writeln!(out, "  recovered {} of {}, left unfinished by a stopped run: {}", r.operation, r.subject, r.outcome);
    }
    for c in &report.conflicts {
        let _ = writeln!(
            out,
            "  {c}: conflict: changed in Git and on the platform since the last apply; nothing applied or reverted (settle it in Git or with terraform)"
        );
    }
    for a in &report.actions {
        let what = match &a.outcome {
            SyncOutcome::Reverted => "reverted".to_string(),
            SyncOutcome::AlreadyInSync => "already in sync".to_string(),
            SyncOutcome::WouldRevert => "would revert".to_string(),
            SyncOutcome::Conflict(why) => format!("conflict: {why}"),
            SyncOutcome::AwaitingApproval => format!("awaiting approval: novacron-reconcile approve {}", a.drift_id),
            SyncOutcome::NotRevertible(why) => format!("not revertible: {why}"),
            SyncOutcome::Failed(why) => format!("failed: {why}"),
        };
        let who = a.changed_by.as_ref().map(|c| format!(", changed by {} at {}", c.actor, c.time)).unwrap_or_default();
        let _ = writeln!(out, "  {} ({}) [{}] {}: {what} (drift {}{who})", a.address, a.object_id, a.severity, a.attributes.join(", "), a.drift_id);
    }
    let (missing, unmanaged) =
        report.report.resources.iter().filter(|r| r.three_way == crate::report::ThreeWay::Drift).fold((0, 0), |(m, u), r| {
            (m + usize::from(r.status == crate::report::Status::Missing), u + usize::from(r.status == crate::report::Status::Unmanaged))
        });
    if missing + unmanaged > 0 {
        let _ = writeln!(out, "  {missing} missing and {unmanaged} unmanaged objects are reported only: Terraform owns their lifecycle");
    }
    if let Some(r) = &report.remediation {
        let how = match (r.pull_request.created, r.pull_request.changed) {
            (true, _) => "opened",
            (false, true) => "updated",
            (false, false) => "unchanged",
        };
        let _ = writeln!(
            out,
            "  remediation: branch {} ({}), pull request #{} {how}{}",
            r.branch,
            &r.commit[..r.commit.len().min(12)],
            r.pull_request.number,
            r.pull_request.url.as_deref().map(|u| format!(" {u}")).unwrap_or_default()
        );
    }
    match report.remaining() {
        0 => out.push_str("nothing left drifted\n"),
        1 => out.push_str("1 finding remains\n"),
        n => {
            let _ = writeln!(out, "{n} findings remain");
        }
    }
    out
}

/// Runs `approve <id>`.
pub fn run_approve_cli(args: &ApproveArgs) -> anyhow::Result<ExitCode> {
    let db = StateDb::connect(&args.state.state)?;
    if args.id.starts_with("plan-") {
        let plan = approve_plan(&db, &args.id, &actor(args.actor.as_ref()))?
            .with_context(|| format!("no pending plan has id {:?}; list them with `novacron-reconcile approvals list`", args.id))?;
        println!(
            "approved plan {} ({} of {} at {} [{}]) by {}; the next sync applies exactly this plan",
            plan.id,
            plan.summary,
            plan.repo,
            &plan.revision[..plan.revision.len().min(12)],
            plan.severity,
            plan.approved_by.as_deref().unwrap_or("?")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let drift = approve(&db, &args.id, &actor(args.actor.as_ref()))?;
    println!(
        "approved drift {} ({} [{}]) by {}; the next sync reverts it",
        drift.id,
        drift.address,
        drift.severity,
        drift.approved_by.as_deref().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `approvals list`.
pub fn run_approvals_cli(command: &ApprovalsCommand) -> anyhow::Result<ExitCode> {
    let ApprovalsCommand::List { format, state } = command;
    let db = StateDb::connect(&state.state)?;
    let pending = pending_approvals(&db, None)?;
    let plans = pending_plans(&db, None)?;
    if *format == OutputFormat::Json {
        // One list: drifts as before, then plans marked with "kind": "plan".
        let mut all = serde_json::to_value(&pending).context("cannot encode")?;
        if let Some(list) = all.as_array_mut() {
            for p in &plans {
                let mut v = serde_json::to_value(p).context("cannot encode")?;
                v["kind"] = serde_json::json!("plan");
                list.push(v);
            }
        }
        println!("{}", serde_json::to_string_pretty(&all).context("cannot encode")?);
        return Ok(ExitCode::SUCCESS);
    }
    for p in &plans {
        let approved =
            p.approved_by.as_deref().map(|by| format!("approved by {by} at {}", p.approved_at.as_deref().unwrap_or("?"))).unwrap_or_else(|| p.reason.clone());
        println!("{}  {:<8}  {}  {} at {}  since {}  {approved}", p.id, p.severity, p.summary, p.repo, &p.revision[..p.revision.len().min(12)], p.created_at);
    }
    for p in &pending {
        let approved = p
            .approved_by
            .as_deref()
            .map(|by| format!("approved by {by} at {}", p.approved_at.as_deref().unwrap_or("?")))
            .unwrap_or_else(|| "awaiting approval".into());
        println!("{}  {:<8}  {}  {}  {}  since {}  {approved}", p.id, p.severity, p.address, p.object_id, p.repo, p.created_at);
    }
    if pending.is_empty() && plans.is_empty() {
        println!("no drift or plan awaiting approval");
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `audit list` or `audit verify` (exit 1 naming the first bad entry).
pub fn run_audit_cli(command: &AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::List { format, limit, state } => {
            let db = StateDb::connect(&state.state)?;
            let entries = audit_list(&db, *limit)?;
            if *format == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&entries).context("cannot encode")?);
                return Ok(ExitCode::SUCCESS);
            }
            for e in &entries {
                println!("{:>6}  {}  {:<14} {:<12} {}  {}  {}", e.seq, e.time, e.action, e.actor, e.subject, e.detail, &e.hash[..12]);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { state } => {
            let db = StateDb::connect(&state.state)?;
            let outcome = audit_verify(&db)?;
            match outcome.first_bad {
                None => {
                    println!("audit log intact: {} entries verified", outcome.entries);
                    Ok(ExitCode::SUCCESS)
                }
                Some(seq) => {
                    eprintln!("novacron-reconcile: error: audit log tampered: entry {seq} does not match its hash chain ({} entries)", outcome.entries);
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
