//! Remediation changes: a branch `novacron/drift/<id>` codifying the live values, pushed, and its pull request opened or updated.

mod forge;
mod push;
mod rewrite;

use std::fmt::Write;

use novacron_schemas::{Severity, sha256_hex};
use serde::Serialize;
use serde_json::json;

pub use forge::{CommitStatus, FORGE_TOKEN_ENV, Forge, ForgeError, ForgeFuture, GitHubForge, IssueComment, Permission, PullRequest, PullRequestSpec};
pub use push::{PushError, PushRequest, Pushed, commit_and_push};
pub use rewrite::{Codified, codify};

use crate::command::{Detection, DriftOptions};
use crate::git::{default_branch, redact};
use crate::render::render_markdown;
use crate::report::{BySeverity, DriftReport, ResourceReport, Status};
use crate::state::{AuditAction, AuditEntry, StateDb, StateError, audit_append};

/// The drifts a remediation change is for.
#[derive(Debug, Clone)]
pub struct RemediationRequest<'a> {
    /// Repository, ref and path.
    pub options: &'a DriftOptions,
    /// What was detected (report, snapshot).
    pub detection: &'a Detection,
    /// `(id, address)` of each drift not reverted, and of each missing or unmanaged object.
    pub drifts: Vec<(String, String)>,
    /// Addresses this sync reverted: shown in sync in the pull request's report.
    pub reverted: Vec<String>,
    /// Who acts.
    pub actor: &'a str,
}

/// The branch and pull request made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemediationOutcome {
    /// `novacron/drift/<id>`.
    pub branch: String,
    /// The commit on the branch.
    pub commit: String,
    /// False when the branch already held that commit (nothing pushed).
    pub pushed: bool,
    /// The pull request.
    pub pull_request: PullRequest,
    /// Values written into the HCL.
    pub rewritten: Vec<String>,
    /// Changes left for a person.
    pub manual: Vec<String>,
}

/// What happens to drift above the threshold: `--remediation` of `sync`, `remediation` of a
/// serve `[[repo]]`, both written `none` or `pr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Remediation {
    /// Report it and wait for approval.
    #[default]
    None,
    /// Push a branch and open a pull request.
    Pr,
}

// Written out rather than derived, so that `--help` keeps listing the values as
// `[possible values: none, pr]` (a derive would make the doc comments per-value help).
impl clap::ValueEnum for Remediation {
    fn value_variants<'a>() -> &'a [Self] {
        &[Remediation::None, Remediation::Pr]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(match self {
            Remediation::None => "none",
            Remediation::Pr => "pr",
        }))
    }
}

/// Why no remediation change was made; each is audited as an `error` entry.
#[derive(Debug, thiserror::Error)]
pub enum RemediationError {
    /// The branch could not be made or pushed.
    #[error("remediation: {0}")]
    Push(#[from] PushError),
    /// The pull request could not be opened or updated (the branch is pushed).
    #[error("remediation: branch {branch} pushed, but {source}")]
    Forge {
        /// The branch.
        branch: String,
        /// What the forge said.
        source: ForgeError,
    },
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A background task failed.
    #[error("remediation: internal error: {0}")]
    Internal(String),
}

/// The id of a set of drifts: the id itself for one, else 12 hex digits of SHA-256 over the sorted ids.
pub fn set_id(ids: &[String]) -> String {
    let mut sorted: Vec<&str> = ids.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    match sorted.as_slice() {
        [one] => (*one).to_string(),
        many => sha256_hex(many.join("\n").as_bytes())[..12].to_string(),
    }
}

/// Codifies the live values, force-pushes `novacron/drift/<id>` and opens (or updates) its pull request.
pub async fn remediate(request: &RemediationRequest<'_>, forge: &dyn Forge, db: &StateDb) -> Result<RemediationOutcome, RemediationError> {
    let repo = redact(&request.options.repo);
    let ids: Vec<String> = request.drifts.iter().map(|(id, _)| id.clone()).collect();
    let branch = format!("novacron/drift/{}", set_id(&ids));
    let audit = |action: AuditAction, detail: serde_json::Value| {
        audit_append(db, AuditEntry { actor: request.actor.to_string(), action, repo: repo.clone(), subject: branch.clone(), detail }).map(|_| ())
    };
    let report = &request.detection.report;
    let drifted: Vec<&ResourceReport> = report.resources.iter().filter(|r| request.drifts.iter().any(|(_, a)| a == &r.address)).collect();
    let dir = crate::source::join_path("", &request.options.path).unwrap_or_default();
    let codified = codify(&request.detection.snapshot.files, &dir, &drifted, &request.detection.live);
    let message = commit_message(&branch, &request.drifts, &codified);
    let spec = request.options.repo_spec();
    let base_branch = base_branch(request.options, default_branch(&spec), |name| crate::git::is_remote_branch(&spec, name));
    let (base, files, branch_name) = (report.revision.clone(), codified.files.clone(), branch.clone());
    let pushed =
        tokio::task::spawn_blocking(move || commit_and_push(&PushRequest { spec: &spec, base: &base, files: &files, branch: &branch_name, message: &message }))
            .await
            .map_err(|e| RemediationError::Internal(e.to_string()))?;
    let Pushed { commit, updated } = match pushed {
        Ok(pushed) => pushed,
        Err(e) => {
            audit(AuditAction::Error, json!({"stage": "push", "branch": branch, "drift_ids": ids, "error": e.to_string()}))?;
            return Err(e.into());
        }
    };
    // A sync repeated while the drift waits changes nothing and appends nothing.
    if updated {
        audit(
            AuditAction::Push,
            json!({"branch": branch, "commit": commit, "base": report.revision, "drift_ids": ids, "rewritten": codified.rewritten.len(), "manual": codified.manual.len()}),
        )?;
    }
    let pr = PullRequestSpec { head: branch.clone(), base: base_branch, title: title(&drifted), body: pull_request_body(request, &codified) };
    match forge.ensure_pull_request(&pr).await {
        Ok(pull_request) => {
            if pull_request.changed {
                audit(
                    AuditAction::PullRequest,
                    json!({"branch": branch, "number": pull_request.number, "url": pull_request.url, "created": pull_request.created, "drift_ids": ids}),
                )?;
            }
            Ok(RemediationOutcome { branch, commit, pushed: updated, pull_request, rewritten: codified.rewritten, manual: codified.manual })
        }
        Err(source) => {
            audit(AuditAction::Error, json!({"stage": "pull_request", "branch": branch, "drift_ids": ids, "error": source.to_string()}))?;
            Err(RemediationError::Forge { branch, source })
        }
    }
}

/// The branch a pull request targets: `--ref` when it names a branch of the remote, else (a tag,
/// a commit SHA, nothing) the remote's default branch as last fetched, else `main`.
fn base_branch(options: &DriftOptions, remote_default: Option<String>, is_branch: impl Fn(&str) -> bool) -> String {
    match options.reference.as_deref().map(|r| r.strip_prefix("refs/heads/").unwrap_or(r)) {
        Some(r) if is_branch(r) => r.to_string(),
        _ => remote_default.unwrap_or_else(|| "main".to_string()),
    }
}

fn title(drifted: &[&ResourceReport]) -> String {
    match drifted {
        [one] => format!("NovaCron drift: accept the live values of {}", one.address),
        many => format!("NovaCron drift: accept the live values of {} resources", many.len()),
    }
}

fn commit_message(branch: &str, drifts: &[(String, String)], codified: &Codified) -> String {
    let mut out = format!("novacron: codify live values ({branch})\n\n");
    for (id, address) in drifts {
        let _ = writeln!(out, "drift {id}: {address}");
    }
    if !codified.manual.is_empty() {
        let _ = writeln!(out, "\n{} change(s) need a person; see the pull request.", codified.manual.len());
    }
    out
}

/// The pull request body: what merging means, what was rewritten, what needs a person, then the markdown report.
pub fn pull_request_body(request: &RemediationRequest<'_>, codified: &Codified) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Merging this pull request accepts the live values into the desired state. The other way out is to approve the revert: `novacron-reconcile approve <id>` puts the desired values back on the next sync.\n"
    );
    let _ = writeln!(out, "| drift id | resource |\n|---|---|");
    for (id, address) in &request.drifts {
        let _ = writeln!(out, "| `{id}` | `{address}` |");
    }
    if !codified.rewritten.is_empty() {
        let _ = writeln!(out, "\n**Rewritten in the HCL** (literal values):\n");
        for r in &codified.rewritten {
            let _ = writeln!(out, "- `{r}`");
        }
    }
    let report = &request.detection.report;
    if !codified.manual.is_empty() {
        let _ = writeln!(out, "\n**For a person** (not rewritten automatically):\n");
        for m in &codified.manual {
            let _ = writeln!(out, "- `{}`", m.replace('`', "'"));
        }
    }
    let _ = writeln!(out, "\n---\n");
    out.push_str(&render_markdown(&after_sync(report, &request.reverted)));
    out
}

/// The report as it stands after the sync: resources it reverted are in sync.
fn after_sync(report: &DriftReport, reverted: &[String]) -> DriftReport {
    let mut out = report.clone();
    for r in out.resources.iter_mut().filter(|r| reverted.contains(&r.address)) {
        r.status = Status::InSync;
        r.severity = None;
        r.changes.clear();
        r.drift_percentage = 0.0;
        r.live_hash = r.desired_hash.clone();
    }
    let s = &mut out.summary;
    let count = |status: Status| out.resources.iter().filter(|r| r.status == status).count();
    s.in_sync = count(Status::InSync);
    s.drifted = count(Status::Drifted);
    s.by_severity = BySeverity::default();
    for r in out.resources.iter().filter(|r| r.status != Status::InSync) {
        s.by_severity.add(r.severity.unwrap_or(Severity::Info));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remediation_is_spelt_alike_on_the_command_line_and_in_the_config() {
        use clap::ValueEnum;
        for r in Remediation::value_variants() {
            let name = r.to_possible_value().expect("named").get_name().to_string();
            assert_eq!(serde_json::from_value::<Remediation>(json!(name)).expect("the config takes the flag's spelling"), *r);
            assert_eq!(Remediation::from_str(&name, false), Ok(*r));
        }
        assert_eq!(Remediation::default(), Remediation::None);
    }

    #[test]
    fn set_ids_are_order_free() {
        assert_eq!(set_id(&["abc".into()]), "abc");
        let a = set_id(&["b".into(), "a".into()]);
        assert_eq!(a, set_id(&["a".into(), "b".into(), "a".into()]));
        assert_eq!(a.len(), 12);
    }

    #[test]
    fn base_branch_from_ref() {
        let mut o = DriftOptions {
            repo: "r".into(),
            reference: None,
            path: ".".into(),
            vars: vec![],
            ignore: vec![],
            cache_dir: "c".into(),
            tfstate: None,
            workspace: None,
            http_address: None,
            progress: Default::default(),
            clock: Default::default(),
        };
        let branches = |name: &str| ["main", "prod", "trunk"].contains(&name);
        assert_eq!(base_branch(&o, None, branches), "main");
        assert_eq!(base_branch(&o, Some("trunk".into()), branches), "trunk");
        o.reference = Some("refs/heads/prod".into());
        assert_eq!(base_branch(&o, Some("trunk".into()), branches), "prod");
        o.reference = Some("prod".into());
        assert_eq!(base_branch(&o, Some("trunk".into()), branches), "prod");
        o.reference = Some("0123456789abcdef".into());
        assert_eq!(base_branch(&o, Some("trunk".into()), branches), "trunk", "a commit SHA is not a base");
        o.reference = Some("v1".into());
        assert_eq!(base_branch(&o, Some("trunk".into()), branches), "trunk", "a tag is not a base");
        o.reference = Some("refs/tags/v1".into());
        assert_eq!(base_branch(&o, None, branches), "main");
    }
}
