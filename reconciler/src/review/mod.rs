//! Reviews of a proposed revision (a pull request's head): what merging it would change on the
//! platform, graded by severity, with a policy preview, drift context and what the base branch
//! already has pending. Never applies and never takes the state lock.
//!
//! [`run_review`] plans the head with real Terraform (`plan -refresh=false -lock=false`),
//! grades the plan like a rollout, sends every planned create and update to the platform as a
//! dry run ([`preview`]), and reads the base branch's three-way view for drift (live moved away
//! from last applied) and rollouts already pending there. [`render`] turns the [`Review`] into
//! the pull-request comment, text or JSON; [`Scrubber`] takes every known secret out of anything
//! posted.

pub mod cli;
pub mod preview;
pub mod render;
pub mod scrub;

use std::collections::HashMap;

use novacron_schemas::{Kind, Severity};
use serde::Serialize;
use serde_json::Value;

use crate::clock::Clock;
use crate::command::{Detection, DriftOptions, detect};
use crate::git::{Snapshot, fetch_snapshot};
use crate::live::{PlatformApi, Preview};
use crate::report::{ChangedBy, ResourceReport};
use crate::rollout::{Action, ChangeValue, PlanGrade, PlanModel, ResourceChange, RolloutError, grade_plan};
use crate::sync::BoxFuture;
use crate::tfstate::StateSource;
use crate::threeway::ThreeWay;

pub use preview::{PreviewRequest, preview_request};
pub use render::{COMMENT_LIMIT, COMMENT_MARKER, render_markdown, render_text};
pub use scrub::Scrubber;

/// The commit status context a review sets on the head commit.
pub const STATUS_CONTEXT: &str = "novacron/plan";

/// Plans a revision for review. The real one runs `terraform plan -lock=false` in a working copy
/// of its own; it never applies.
pub trait ReviewPlanner: Send + Sync {
    /// The plan of `snapshot`'s configuration at `path` against the state in `source`.
    fn plan<'a>(&'a self, snapshot: &'a Snapshot, path: &'a str, source: &'a StateSource) -> BoxFuture<'a, Result<PlanModel, RolloutError>>;
}

/// What to review.
#[derive(Debug, Clone)]
pub struct ReviewOptions {
    /// The repository, the head (`reference`: a branch, a SHA or `refs/pull/<n>/head`), the path,
    /// variables, ignore rules, the clone cache and where the state is, as for `drift`.
    pub head: DriftOptions,
    /// The branch the change would merge into (`None`: the remote's default branch): its
    /// three-way view gives the drift context and the rollouts already pending.
    pub base: Option<String>,
    /// The pull request, when there is one.
    pub pull_request: Option<u64>,
}

/// Why a review could not be made at all (a review that Terraform rejects is still a review).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The head could not be read.
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    /// A background task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How the review of a revision came out.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ReviewOutcome {
    /// Terraform planned it.
    Planned,
    /// Terraform rejected the configuration: where and why.
    Rejected {
        /// The file, relative to the configuration's directory.
        file: Option<String>,
        /// Its line.
        line: Option<u64>,
        /// Terraform's summary.
        summary: String,
        /// The first line of Terraform's detail.
        detail: String,
    },
    /// The plan could not be made (no state backend, platform unreachable, terraform missing).
    Failed {
        /// What went wrong, one line.
        message: String,
    },
}

/// One changed attribute, as a reviewer reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewedAttribute {
    /// The path as written in HCL: `memory_gb`, `metadata.team`, `firewall_rule[0].ports`.
    pub path: String,
    /// The value in the state: JSON text, `null`, or `(sensitive)`.
    pub before: String,
    /// The planned value: JSON text, `(known after apply)`, or `(sensitive)`.
    pub after: String,
    /// The attribute's severity from `schemas/`.
    pub severity: Severity,
    /// True when both values are hidden.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    /// True when this change forces the object's replacement.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub forces_replacement: bool,
}

/// What the platform's policies said about one planned create or update.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "preview")]
pub enum PolicyPreview {
    /// Deletes are not admitted by policies; policies themselves are not judged by policies.
    NotApplicable,
    /// The platform's dry run answered.
    Previewed {
        /// False when a `block` policy denies it.
        allowed: bool,
        /// Each policy that objected.
        verdicts: Vec<novacron_client::PolicyVerdict>,
    },
    /// The dry run could not judge it, and why (a value known only after apply, a refusal).
    NotPreviewed {
        /// One line.
        reason: String,
    },
}

/// Live moved away from last applied on an object the change touches: merging overwrites it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftContext {
    /// `drift` or `conflict` (the base branch also has a rollout pending on it).
    pub three_way: ThreeWay,
    /// The attributes that drifted.
    pub paths: Vec<String>,
    /// Who made the newest out-of-band change, and when.
    pub changed_by: Option<ChangedBy>,
}

/// One planned resource change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewedChange {
    /// The resource address.
    pub address: String,
    /// `create`, `update`, `replace` or `delete`.
    pub action: String,
    /// Its severity, graded like a rollout.
    pub severity: Severity,
    /// The object's id, for changes to existing objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Changed attributes.
    pub attributes: Vec<ReviewedAttribute>,
    /// The policy preview.
    #[serde(flatten)]
    pub policy: PolicyPreview,
    /// Drift on the object, when live already differs from last applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftContext>,
    /// The base branch already has a rollout pending on this resource (not this change's doing).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pending_on_base: bool,
    /// The attribute paths whose change the base branch already has pending.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_on_base_paths: Vec<String>,
}

/// The policy preview in numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyTally {
    /// Changes sent as dry runs and answered.
    pub previewed: usize,
    /// Changes a `block` policy denies.
    pub blocked: usize,
    /// Changes with `warn` verdicts.
    pub warned: usize,
    /// Changes with `audit` verdicts.
    pub audited: usize,
    /// Changes the dry run could not judge.
    pub not_previewed: usize,
}

/// The commit status a review sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewStatus {
    /// `success` or `failure`.
    pub state: &'static str,
    /// One line: why.
    pub description: String,
}

/// The branch the change would merge into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseView {
    /// The branch as given (`None`: the default branch).
    pub reference: Option<String>,
    /// Its commit, when it could be read.
    pub revision: Option<String>,
}

/// The review of one revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Review {
    /// The repository (credentials removed).
    pub repo: String,
    /// The configuration's directory.
    pub path: String,
    /// The reviewed commit.
    pub revision: String,
    /// The pull request, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<u64>,
    /// The base branch.
    pub base: BaseView,
    /// When the review was made (RFC 3339).
    pub generated_at: String,
    /// Planned, rejected or failed.
    #[serde(flatten)]
    pub outcome: ReviewOutcome,
    /// `3 to change: 1 critical, 2 low`, `no changes`.
    pub summary: String,
    /// The highest change severity; `None` for no changes.
    pub severity: Option<Severity>,
    /// Every planned change, highest severity first.
    pub changes: Vec<ReviewedChange>,
    /// The policy preview in numbers.
    pub policy: PolicyTally,
    /// Things the reviewer should know that are not changes (drift context unavailable, ...).
    pub warnings: Vec<String>,
    /// The commit status.
    pub status: ReviewStatus,
}

impl Review {
    /// Whether the plan changes anything.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// A review that could not plan.
    fn without_plan(base: Review, outcome: ReviewOutcome) -> Review {
        let mut review = Review { outcome, ..base };
        review.status = status_of(&review);
        review
    }
}

/// Reviews `options.head`: plans it, previews its policies, adds the base branch's context.
pub async fn run_review(options: &ReviewOptions, api: &impl PlatformApi, planner: &dyn ReviewPlanner) -> Result<Review, ReviewError> {
    let spec = options.head.repo_spec();
    let head = tokio::task::spawn_blocking(move || fetch_snapshot(&spec)).await.map_err(|e| ReviewError::Internal(e.to_string()))??;
    let path = crate::source::join_path("", &options.head.path).unwrap_or_default();
    let mut base_options = options.head.clone();
    base_options.reference = options.base.clone();
    let (source, source_warning) = options.head.state_source(&head.files);
    let mut review = Review {
        repo: crate::git::redact(&options.head.repo),
        path: path.clone(),
        revision: head.revision.clone(),
        pull_request: options.pull_request,
        base: BaseView { reference: options.base.clone(), revision: None },
        generated_at: options.head.clock.rfc3339(),
        outcome: ReviewOutcome::Planned,
        summary: "no changes".into(),
        severity: None,
        changes: Vec::new(),
        policy: PolicyTally::default(),
        warnings: source_warning.into_iter().collect(),
        status: ReviewStatus { state: "success", description: String::new() },
    };
    let Some(source) = source else {
        let message = "no Terraform state backend is known for this configuration: give the workspace (--workspace, serve key `workspace`) or a state file, or declare backend \"http\" with the platform's address".to_string();
        return Ok(Review::without_plan(review, ReviewOutcome::Failed { message }));
    };
    let (base, planned) = tokio::join!(detect(&base_options, api), planner.plan(&head, &path, &source));
    let base = match base {
        Ok(b) => {
            review.base.revision = Some(b.report.revision.clone());
            Some(b)
        }
        Err(e) => {
            review.warnings.push(format!("the base branch could not be read, so drift and pending rollouts are not shown: {e}"));
            None
        }
    };
    let plan = match planned {
        Ok(plan) => plan,
        Err(RolloutError::ConfigRejected { file, line, summary, detail }) => {
            return Ok(Review::without_plan(review, ReviewOutcome::Rejected { file, line, summary, detail }));
        }
        Err(e) => return Ok(Review::without_plan(review, ReviewOutcome::Failed { message: e.to_string() })),
    };
    let grade = grade_plan(&plan);
    review.summary = grade.to_string();
    review.severity = grade.severity;
    review.changes = reviewed_changes(&plan, &grade);
    preview_policies(api, &plan, &mut review).await;
    if let Some(base) = &base {
        add_base_context(&mut review.changes, &plan, base);
    }
    review.changes.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.address.cmp(&b.address)));
    review.status = status_of(&review);
    Ok(review)
}

/// A value as the reviewer reads it.
fn shown(v: &ChangeValue) -> String {
    match v {
        ChangeValue::Null => "null".into(),
        ChangeValue::Known(v) => v.to_string(),
        ChangeValue::Unknown => "(known after apply)".into(),
        ChangeValue::Sensitive => "(sensitive)".into(),
    }
}

/// The leaf differences below one attribute: maps and same-length lists are followed down, so a
/// reviewer reads `metadata.team` or `firewall_rule[1].ports` rather than two whole values.
fn leaf_diffs(path: &str, before: &Value, after: &Value, out: &mut Vec<(String, Value, Value)>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (bv, av) = (b.get(k).unwrap_or(&Value::Null), a.get(k).unwrap_or(&Value::Null));
                if bv != av {
                    let seg =
                        if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') { format!("{path}.{k}") } else { format!("{path}[{k:?}]") };
                    leaf_diffs(&seg, bv, av, out);
                }
            }
        }
        (Value::Array(b), Value::Array(a)) if a.len() == b.len() => {
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                if bv != av {
                    leaf_diffs(&format!("{path}[{i}]"), bv, av, out);
                }
            }
        }
        _ => out.push((path.to_string(), before.clone(), after.clone())),
    }
}

fn reviewed_attributes(change: &ResourceChange, graded: &[(String, Severity)]) -> Vec<ReviewedAttribute> {
    let mut out = Vec::new();
    for a in &change.attributes {
        // Computed-only attributes (status, ip_address) follow from the others: not reviewed.
        let Some(severity) = graded.iter().find(|(n, _)| *n == a.name).map(|(_, s)| *s) else { continue };
        let updating = change.action != Action::Create;
        match (&a.before, &a.after) {
            (ChangeValue::Known(b), ChangeValue::Known(after)) if updating && !a.sensitive => {
                let mut leaves = Vec::new();
                leaf_diffs(&a.name, b, after, &mut leaves);
                for (path, b, after) in leaves {
                    out.push(ReviewedAttribute {
                        path,
                        before: b.to_string(),
                        after: after.to_string(),
                        severity,
                        sensitive: false,
                        forces_replacement: a.forces_replacement,
                    });
                }
            }
            (before, after) => out.push(ReviewedAttribute {
                path: a.name.clone(),
                before: shown(before),
                after: shown(after),
                severity,
                sensitive: a.sensitive,
                forces_replacement: a.forces_replacement,
            }),
        }
    }
    out
}

fn reviewed_changes(plan: &PlanModel, grade: &PlanGrade) -> Vec<ReviewedChange> {
    grade
        .changes
        .iter()
        .filter_map(|g| {
            let change = plan.changes.iter().find(|c| c.address == g.address)?;
            // `id` changes with every create and replace; it says nothing a reviewer can judge.
            let attributes = reviewed_attributes(change, &g.attributes).into_iter().filter(|a| a.path != "id").collect();
            Some(ReviewedChange {
                address: g.address.clone(),
                action: g.action.as_str().to_string(),
                severity: g.severity,
                id: change.id.clone(),
                attributes,
                policy: PolicyPreview::NotApplicable,
                drift: None,
                pending_on_base: false,
                pending_on_base_paths: Vec::new(),
            })
        })
        .collect()
}

/// Sends every planned create, update and replace as a dry run (one after another: the platform
/// answers a dry run in milliseconds, and a review must not load it more than a plan does).
async fn preview_policies(api: &impl PlatformApi, plan: &PlanModel, review: &mut Review) {
    for change in review.changes.iter_mut() {
        let Some(planned) = plan.changes.iter().find(|p| p.address == change.address) else { continue };
        let preview = match preview_request(planned) {
            PreviewRequest::Skip => PolicyPreview::NotApplicable,
            PreviewRequest::Unpreviewable(reason) => PolicyPreview::NotPreviewed { reason },
            PreviewRequest::Create { kind, body } => answer(api.dry_run(kind, None, &body).await),
            PreviewRequest::Update { kind, id, patch } => answer(api.dry_run(kind, Some(&id), &patch).await),
        };
        let tally = &mut review.policy;
        match &preview {
            PolicyPreview::Previewed { allowed, verdicts } => {
                tally.previewed += 1;
                tally.blocked += usize::from(!allowed);
                tally.warned += usize::from(verdicts.iter().any(|v| v.mode == "warn"));
                tally.audited += usize::from(verdicts.iter().any(|v| v.mode == "audit"));
            }
            PolicyPreview::NotPreviewed { .. } => tally.not_previewed += 1,
            PolicyPreview::NotApplicable => {}
        }
        change.policy = preview;
    }
}

fn answer(result: Result<Preview, crate::live::LiveError>) -> PolicyPreview {
    match result {
        Ok(Preview::Judged { allowed, verdicts }) => PolicyPreview::Previewed { allowed, verdicts },
        Ok(Preview::Refused { detail }) => PolicyPreview::NotPreviewed { reason: format!("the platform refused the dry run: {detail}") },
        Err(e) => PolicyPreview::NotPreviewed { reason: format!("the dry run failed: {e}") },
    }
}

/// The Terraform name of a report path's first segment (`firewall_rules[0].ports` → `firewall_rule`).
fn terraform_root(kind: Kind, path: &str) -> String {
    let root = path.split(['.', '[']).next().unwrap_or(path);
    match kind.schema().attribute(root).map(|a| &a.ty) {
        Some(novacron_schemas::AttrType::Blocks { block_name, .. }) => block_name.clone(),
        _ => root.to_string(),
    }
}

/// Marks drift on the objects the change touches, and what the base branch already has pending.
fn add_base_context(changes: &mut [ReviewedChange], plan: &PlanModel, base: &Detection) {
    let by_address: HashMap<&str, &ResourceReport> = base.report.resources.iter().map(|r| (r.address.as_str(), r)).collect();
    for change in changes.iter_mut() {
        let Some(planned) = plan.changes.iter().find(|p| p.address == change.address) else { continue };
        let entry = by_address.get(change.address.as_str()).copied().or_else(|| {
            let id = planned.id.as_deref()?;
            base.report.resources.iter().find(|r| r.id.as_deref() == Some(id) && r.resource_type == planned.resource_type)
        });
        let Some(entry) = entry else { continue };
        if matches!(entry.three_way, ThreeWay::Drift | ThreeWay::Conflict) {
            change.drift = Some(DriftContext {
                three_way: entry.three_way,
                paths: entry.changes.iter().map(|c| c.path.clone()).collect(),
                changed_by: entry.changed_by.clone(),
            });
        }
        if matches!(entry.three_way, ThreeWay::RolloutPending | ThreeWay::Conflict) {
            change.pending_on_base = true;
            let roots: Vec<String> = entry.rollout_changes.iter().map(|c| terraform_root(planned.kind, &c.path)).collect();
            change.pending_on_base_paths = change.attributes.iter().filter(|a| roots.iter().any(|r| attr_root(&a.path) == r)).map(|a| a.path.clone()).collect();
        }
    }
}

fn attr_root(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or(path)
}

/// Success when nothing is critical and every policy admits; failure otherwise, saying why.
fn status_of(review: &Review) -> ReviewStatus {
    let failure = |description: String| ReviewStatus { state: "failure", description };
    match &review.outcome {
        ReviewOutcome::Rejected { file, line, summary, .. } => {
            let at = match (file, line) {
                (Some(f), Some(l)) => format!("{f}:{l}: "),
                (Some(f), None) => format!("{f}: "),
                _ => String::new(),
            };
            return failure(format!("Terraform rejects the configuration: {at}{summary}"));
        }
        ReviewOutcome::Failed { message } => return failure(format!("not planned: {message}")),
        ReviewOutcome::Planned => {}
    }
    let blocked: Vec<String> = review
        .changes
        .iter()
        .filter_map(|c| match &c.policy {
            PolicyPreview::Previewed { allowed: false, verdicts } => {
                let names: Vec<&str> = verdicts.iter().filter(|v| v.mode == "block").map(|v| v.policy.as_str()).collect();
                Some(format!("{} (policy {})", c.address, names.join(", ")))
            }
            _ => None,
        })
        .collect();
    if !blocked.is_empty() {
        return failure(format!("blocked by policy: {}", blocked.join("; ")));
    }
    let critical: Vec<&str> = review.changes.iter().filter(|c| c.severity == Severity::Critical).map(|c| c.address.as_str()).collect();
    if !critical.is_empty() {
        return failure(format!("{} critical: {}", critical.len(), critical.join(", ")));
    }
    let unjudged = if review.policy.not_previewed > 0 { format!(" ({} not previewed)", review.policy.not_previewed) } else { String::new() };
    let description = if review.changes.is_empty() { "no changes".to_string() } else { format!("{}; every policy admits{unjudged}", review.summary) };
    ReviewStatus { state: "success", description }
}

#[cfg(test)]
mod tests;
