//! The `drift` operation end to end: repository snapshot, live state, evaluation, comparison, report.

use std::path::PathBuf;

use crate::clock::{Clock, SharedClock};
use crate::drift::{DesiredResource, LiveObject, compute_drift_matched};
use crate::git::{GitError, IGNORE_FILE, RepoSpec, Snapshot, fetch_snapshot};
use crate::hcl::{DataSources, HclError, data_source_kinds, evaluate};
use crate::ignore::IgnoreRules;
use crate::live::{LiveError, PlatformApi, read_live};
use crate::progress::{Progress, SharedProgress};
use crate::report::{DriftReport, LastApplied};
use crate::source::SourceTree;
use crate::tfstate::{AppliedState, StateReadError, StateSource, declared_backend, parse_state, read_state_file, workspace_of_address};
use crate::threeway::{annotate, classify, match_ids};
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
    /// `--tfstate FILE`: a local Terraform state file as the last-applied view.
    pub tfstate: Option<PathBuf>,
    /// `--workspace NAME`: the platform's state workspace (default: from the configuration's
    /// `backend "http"` address).
    pub workspace: Option<String>,
    /// The backend address Terraform would take from `TF_HTTP_ADDRESS` when the backend block
    /// names none (the CLI passes the variable in; the library reads no environment).
    pub http_address: Option<String>,
    /// Where progress goes (silent by default; the CLI draws it on a terminal, `serve` logs it).
    pub progress: SharedProgress,
    /// The clock the report's `generated_at` is read from.
    pub clock: SharedClock,
}

impl DriftOptions {
    /// Options for `repo` with everything else at its default.
    pub fn new(repo: &str, cache_dir: PathBuf) -> DriftOptions {
        DriftOptions {
            repo: repo.to_string(),
            reference: None,
            path: String::new(),
            vars: Vec::new(),
            ignore: Vec::new(),
            cache_dir,
            tfstate: None,
            workspace: None,
            http_address: None,
            progress: SharedProgress::default(),
            clock: SharedClock::default(),
        }
    }

    /// Where this run's repository is read from, and where its fetch progress goes.
    pub fn repo_spec(&self) -> RepoSpec {
        RepoSpec { repo: self.repo.clone(), reference: self.reference.clone(), cache_dir: self.cache_dir.clone(), progress: self.progress.clone() }
    }

    /// Where the last-applied state comes from for this configuration, if anywhere; a warning
    /// when the configuration has a backend the reconciler cannot locate.
    pub fn state_source(&self, files: &dyn SourceTree) -> (Option<StateSource>, Option<String>) {
        if let Some(path) = &self.tfstate {
            return (Some(StateSource::File(path.clone())), None);
        }
        if let Some(ws) = &self.workspace {
            return (Some(StateSource::Platform { workspace: ws.clone() }), None);
        }
        let root = self.path.trim_matches('/').trim_start_matches("./");
        match declared_backend(files, if root == "." { "" } else { root }) {
            Some((kind, Some(ws))) if kind == "http" => (Some(StateSource::Platform { workspace: ws }), None),
            Some((kind, None)) if kind == "http" && self.http_address.as_deref().and_then(workspace_of_address).is_some() => {
                (self.http_address.as_deref().and_then(workspace_of_address).map(|workspace| StateSource::Platform { workspace }), None)
            }
            Some((kind, None)) if kind == "http" => (
                None,
                Some("the configuration's backend \"http\" names no literal address: give --workspace NAME (the platform's state workspace) or set TF_HTTP_ADDRESS as for Terraform to compare with Terraform's state; comparing desired with live only".into()),
            ),
            Some((kind, _)) => (None, Some(format!("the configuration's backend {kind:?} is not read: give --tfstate FILE or --workspace NAME to compare with Terraform's state; comparing desired with live only"))),
            None => (None, None),
        }
    }
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
    /// Terraform's state could not be read.
    #[error(transparent)]
    TfState(#[from] StateReadError),
    /// A background task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

fn short(revision: &str) -> &str {
    &revision[..revision.len().min(12)]
}

/// Runs `drift`: reads the repository (cached clone, fetched), the live objects, evaluates the
/// configuration and compares. The report's `generated_at` is the time by `options.clock`;
/// the slow steps are reported to `options.progress`.
pub async fn run_drift(options: &DriftOptions, api: &impl PlatformApi) -> Result<DriftReport, DriftError> {
    let spec = options.repo_spec();
    let progress = &options.progress;
    let snapshot = tokio::task::spawn_blocking(move || fetch_snapshot(&spec)).await.map_err(|e| DriftError::Internal(e.to_string()))??;
    progress.step("reading live objects and Terraform state");
    let (source, warning) = options.state_source(&snapshot.files);
    let (live, applied) = tokio::join!(read_live(api), read_applied(api, source.as_ref()));
    let (live, applied) = (live?, applied?);
    let templates = read_templates(options, &snapshot, api).await?;
    progress.step_done();
    progress.step("evaluating and comparing");
    let data = DataSources { templates: templates.as_deref() };
    let mut report = detect_in_snapshot(options, &snapshot, &live, &data, applied.as_ref(), source.as_ref()).map(|(report, _, _)| report)?;
    report.warnings.extend(warning);
    progress.step_done();
    attribute_changes(api, &mut report).await;
    Ok(report)
}

/// Reads the last-applied state from `source`. A source with no state yet is an empty state:
/// nothing has been applied, so everything desired is a pending rollout.
pub async fn read_applied(api: &impl PlatformApi, source: Option<&StateSource>) -> Result<Option<AppliedState>, DriftError> {
    match source {
        None => Ok(None),
        Some(StateSource::File(path)) => Ok(Some(read_state_file(path)?.unwrap_or_default())),
        Some(s @ StateSource::Platform { workspace }) => match api.read_tfstate(workspace).await? {
            Some(bytes) => Ok(Some(parse_state(&bytes, &s.to_string())?)),
            None => Ok(Some(AppliedState::default())),
        },
    }
}

/// Most change-feed pages read to name who changed drifted objects.
const MAX_EVENT_PAGES: usize = 200;

/// Names who made the newest out-of-band change of every drifted object: the actor and time
/// of the newest `create`/`update`/`delete` event for it (the platform's own transitions and
/// policy audit records aside). Terraform's applies and the reconciler's reverts leave live
/// equal to the state, so the newest change on an object that drifted is the out-of-band one.
/// The feed is best effort: when it cannot be read the report simply names no one.
pub async fn attribute_changes(api: &impl PlatformApi, report: &mut DriftReport) {
    let wanted: std::collections::HashSet<String> = report
        .resources
        .iter()
        .filter(|r| matches!(r.three_way, crate::report::ThreeWay::Drift | crate::report::ThreeWay::Conflict))
        .filter_map(|r| r.id.clone())
        .collect();
    if wanted.is_empty() {
        return;
    }
    let mut newest: std::collections::HashMap<String, crate::report::ChangedBy> = std::collections::HashMap::new();
    let mut after = 0;
    for _ in 0..MAX_EVENT_PAGES {
        let Ok(events) = api.events_after(after, 1000).await else { break };
        let Some(last) = events.last() else { break };
        after = last.seq;
        for e in events {
            let own = e.actor == "platform" || e.actor.starts_with("policy:");
            if !own && matches!(e.action.as_str(), "create" | "update" | "delete") && wanted.contains(&e.id) {
                newest.insert(e.id.clone(), crate::report::ChangedBy { actor: e.actor, time: e.time, action: e.action });
            }
        }
    }
    for r in report.resources.iter_mut() {
        if let Some(id) = &r.id
            && matches!(r.three_way, crate::report::ThreeWay::Drift | crate::report::ThreeWay::Conflict)
        {
            r.changed_by = newest.get(id).cloned();
        }
    }
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

/// The comparison part of [`run_drift`], for a snapshot, live objects and data source reads
/// already in hand (two-way: no Terraform state).
pub fn drift_of_snapshot(options: &DriftOptions, snapshot: &Snapshot, live: &[LiveObject], data: &DataSources<'_>) -> Result<DriftReport, DriftError> {
    detect_in_snapshot(options, snapshot, live, data, None, None).map(|(report, _, _)| report)
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
    /// Terraform's state, when there is one: the last-applied view.
    pub applied: Option<AppliedState>,
    /// Where the state was read.
    pub state_source: Option<StateSource>,
    /// The repository as given (may hold credentials: never print it unredacted).
    pub repo: String,
    /// The configuration's directory in the repository (`""` for the root).
    pub path: String,
}

/// [`run_drift`] keeping the desired resources, live objects and snapshot for acting on them.
pub async fn detect(options: &DriftOptions, api: &impl PlatformApi) -> Result<Detection, DriftError> {
    let spec = options.repo_spec();
    let snapshot = tokio::task::spawn_blocking(move || fetch_snapshot(&spec)).await.map_err(|e| DriftError::Internal(e.to_string()))??;
    let (state_source, warning) = options.state_source(&snapshot.files);
    let (live, applied) = tokio::join!(read_live(api), read_applied(api, state_source.as_ref()));
    let (live, applied) = (live?, applied?);
    let templates = read_templates(options, &snapshot, api).await?;
    let data = DataSources { templates: templates.as_deref() };
    let (mut report, desired, rules) = detect_in_snapshot(options, &snapshot, &live, &data, applied.as_ref(), state_source.as_ref())?;
    report.warnings.extend(warning);
    attribute_changes(api, &mut report).await;
    let path = crate::source::join_path("", &options.path).unwrap_or_default();
    Ok(Detection { report, desired, live, rules, snapshot, applied, state_source, repo: options.repo.clone(), path })
}

fn detect_in_snapshot(
    options: &DriftOptions,
    snapshot: &Snapshot,
    live: &[LiveObject],
    data: &DataSources<'_>,
    applied: Option<&AppliedState>,
    source: Option<&StateSource>,
) -> Result<(DriftReport, Vec<DesiredResource>, IgnoreRules), DriftError> {
    let hcl_err = |problem| DriftError::Hcl { repo: crate::git::redact(&options.repo), revision: snapshot.revision.clone(), problem: Box::new(problem) };
    let evaluation = evaluate(&snapshot.files, &options.path, &options.vars, live, data).map_err(hcl_err)?;
    let ignore_text = snapshot.files.read(IGNORE_FILE).unwrap_or_default();
    let rules = IgnoreRules::parse(&ignore_text, options.ignore.iter().map(String::as_str));
    let ids = applied.map(match_ids).unwrap_or_default();
    let mut result = compute_drift_matched(&evaluation.resources, live, &rules, &ids);
    let facts = applied.map(|a| classify(&evaluation.resources, a, live, &rules));
    annotate(&mut result, facts.as_ref(), applied);
    let report = DriftReport {
        revision: snapshot.revision.clone(),
        generated_at: options.clock.rfc3339(),
        summary: result.summary,
        resources: result.resources,
        ignored: result.ignored,
        warnings: evaluation.warnings,
        last_applied: applied.zip(source).map(|(a, s)| LastApplied { source: s.to_string(), serial: a.serial, lineage: a.lineage.clone() }),
    };
    Ok((report, evaluation.resources, rules))
}
