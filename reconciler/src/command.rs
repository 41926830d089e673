//! The `drift` operation end to end: repository snapshot, live state, evaluation, comparison, report.

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::drift::{DesiredResource, LiveObject, compute_drift};
use crate::git::{GitError, IGNORE_FILE, RepoSpec, Snapshot, fetch_snapshot};
use crate::hcl::{DataSources, HclError, data_source_kinds, evaluate};
use crate::ignore::IgnoreRules;
use crate::live::{LiveError, PlatformApi, read_live};
use crate::report::{DriftReport, now_rfc3339};
use crate::source::SourceTree;
use novacron_schemas::Kind;

/// What a `drift` run compares.
#[derive(Debug, Clone)]
pub struct DriftOptions {
    /// The repository: a local path or a URL.
    pub repo: String,
    /// A branch, tag or commit; the default branch when absent.
    pub reference: Option<String>,
    /// Directory of the configuration inside the repository (`""` for the root).
    pub path: String,
    /// `--var NAME=VALUE` flags.
    pub vars: Vec<String>,
    /// `--ignore` patterns, added to `.novacronignore`.
    pub ignore: Vec<String>,
    /// Where clones are cached.
    pub cache_dir: PathBuf,
}

/// Why a `drift` run failed; each is one line saying what to fix.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    /// The repository or ref could not be read.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The configuration could not be evaluated.
    #[error("{repo} at {}: {problem}", short(revision))]
    Hcl {
        /// The repository as given.
        repo: String,
        /// The commit.
        revision: String,
        /// What is wrong (kept out of `source()` so the message is not repeated).
        problem: Box<HclError>,
    },
    /// The live state could not be read.
    #[error(transparent)]
    Live(#[from] LiveError),
    /// A background task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

fn short(revision: &str) -> &str {
    &revision[..revision.len().min(12)]
}

/// Runs `drift`: reads the repository (cached clone, fetched), the live objects, evaluates the
/// configuration and compares. The report's `generated_at` is the current time.
pub async fn run_drift(options: &DriftOptions, api: &impl PlatformApi) -> Result<DriftReport, DriftError> {
    let spec = RepoSpec { repo: options.repo.clone(), reference: options.reference.clone(), cache_dir: options.cache_dir.clone() };
    let snapshot = tokio::task::spawn_blocking(move || fetch_snapshot(&spec)).await.map_err(|e| DriftError::Internal(e.to_string()))??;
    let progress = Progress::start("reading live objects");
    let live = read_live(api).await?;
    let templates = read_templates(options, &snapshot, api).await?;
    progress.done();
    let progress = Progress::start("evaluating and comparing");
    let data = DataSources { templates: templates.as_deref() };
    let report = drift_of_snapshot(options, &snapshot, &live, &data);
    progress.done();
    report
}

/// The template catalogue, read once per run when a `data "novacron_template"` block needs it
/// (`novacron_vm` and `novacron_network` data sources read from the live objects).
async fn read_templates(options: &DriftOptions, snapshot: &Snapshot, api: &impl PlatformApi) -> Result<Option<Vec<LiveObject>>, LiveError> {
    // The text test spares parsing the configuration twice when no file names templates at all.
    if !snapshot.files.mentions("novacron_template") || !data_source_kinds(&snapshot.files, &options.path).contains(&Kind::Template) {
        return Ok(None);
    }
    api.list_all(Kind::Template).await.map(Some)
}

/// A status line on stderr while a slow step runs, only when stderr is a terminal.
struct Progress {
    shown: bool,
}

impl Progress {
    fn start(step: &str) -> Progress {
        let shown = std::io::stderr().is_terminal();
        if shown {
            eprint!("\rnovacron-reconcile: {step}...\x1b[K");
        }
        Progress { shown }
    }

    fn done(self) {
        if self.shown {
            eprint!("\r\x1b[K");
        }
    }
}

/// The comparison part of [`run_drift`], for a snapshot, live objects and data source reads already in hand.
pub fn drift_of_snapshot(options: &DriftOptions, snapshot: &Snapshot, live: &[LiveObject], data: &DataSources<'_>) -> Result<DriftReport, DriftError> {
    detect_in_snapshot(options, snapshot, live, data).map(|(report, _, _)| report)
}

/// Everything one detection produced: what `sync` acts on.
#[derive(Debug, Clone)]
pub struct Detection {
    /// The report.
    pub report: DriftReport,
    /// The evaluated desired resources (values may be sensitive: never log them).
    pub desired: Vec<DesiredResource>,
    /// The live objects as read (with their versions, hence ETags).
    pub live: Vec<LiveObject>,
    /// The ignore rules in force.
    pub rules: IgnoreRules,
    /// The snapshot read.
    pub snapshot: Snapshot,
}

/// [`run_drift`] keeping the desired resources, live objects and snapshot for acting on them.
pub async fn detect(options: &DriftOptions, api: &impl PlatformApi) -> Result<Detection, DriftError> {
    let spec = RepoSpec { repo: options.repo.clone(), reference: options.reference.clone(), cache_dir: options.cache_dir.clone() };
    let snapshot = tokio::task::spawn_blocking(move || fetch_snapshot(&spec)).await.map_err(|e| DriftError::Internal(e.to_string()))??;
    let live = read_live(api).await?;
    let templates = read_templates(options, &snapshot, api).await?;
    let (report, desired, rules) = detect_in_snapshot(options, &snapshot, &live, &DataSources { templates: templates.as_deref() })?;
    Ok(Detection { report, desired, live, rules, snapshot })
}

fn detect_in_snapshot(
    options: &DriftOptions,
    snapshot: &Snapshot,
    live: &[LiveObject],
    data: &DataSources<'_>,
) -> Result<(DriftReport, Vec<DesiredResource>, IgnoreRules), DriftError> {
    let hcl_err = |problem| DriftError::Hcl { repo: crate::git::redact(&options.repo), revision: snapshot.revision.clone(), problem: Box::new(problem) };
    let evaluation = evaluate(&snapshot.files, &options.path, &options.vars, live, data).map_err(hcl_err)?;
    let ignore_text = snapshot.files.read(IGNORE_FILE).unwrap_or_default();
    let rules = IgnoreRules::parse(&ignore_text, options.ignore.iter().map(String::as_str));
    let result = compute_drift(&evaluation.resources, live, &rules);
    let report = DriftReport {
        revision: snapshot.revision.clone(),
        generated_at: now_rfc3339(),
        summary: result.summary,
        resources: result.resources,
        ignored: result.ignored,
        warnings: evaluation.warnings,
    };
    Ok((report, evaluation.resources, rules))
}
