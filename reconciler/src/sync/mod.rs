//! The `sync` operation: detect drift, revert what the threshold or an approval allows, record the rest for a person.

mod revert;

use novacron_schemas::{Severity, sha256_hex};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use revert::{RevertError, RevertResult, TEST_PAUSE_ENV, drifted_attributes, not_revertible, revert_patch};

use crate::command::{Detection, DriftError, DriftOptions, detect};
use crate::git::redact;
use crate::live::PlatformApi;
use crate::remediation::{Forge, RemediationOutcome, RemediationRequest, remediate};
use crate::report::{DriftReport, ResourceReport, Status};
use crate::state::{
    AuditEntry, DriftRecord, StateDb, StateError, audit_append, journal_finish, journal_open_intents, pending_approvals, record_drifts, record_findings,
    resolve_drift,
};

/// The highest severity reverted without approval (`critical` never is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoSyncMax {
    /// Nothing is reverted without approval.
    None,
    /// Only `info`.
    Info,
    /// `info` and `low` (the default).
    Low,
    /// Up to `medium`.
    Medium,
    /// Up to `high`.
    High,
}

impl AutoSyncMax {
    /// Whether drift of `severity` is reverted without approval.
    pub fn allows(self, severity: Severity) -> bool {
        let max = match self {
            AutoSyncMax::None => return false,
            AutoSyncMax::Info => Severity::Info,
            AutoSyncMax::Low => Severity::Low,
            AutoSyncMax::Medium => Severity::Medium,
            AutoSyncMax::High => Severity::High,
        };
        severity != Severity::Critical && severity <= max
    }
}

/// What a `sync` run does.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The repository, ref, path, variables and ignore rules, as for `drift`.
    pub drift: DriftOptions,
    /// The auto-sync threshold.
    pub auto_sync_max: AutoSyncMax,
    /// Report what would be done; change nothing (no PATCH, no state, no push).
    pub dry_run: bool,
    /// Open a remediation pull request for drift that is not reverted.
    pub remediation_pr: bool,
    /// Who acts, for the audit log.
    pub actor: String,
}

/// What happened to one drifted resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "reason")]
pub enum SyncOutcome {
    /// Put back to the desired values.
    Reverted,
    /// Found as desired when re-read.
    AlreadyInSync,
    /// Would be reverted (`--dry-run`).
    WouldRevert,
    /// Changed again meanwhile; left alone.
    Conflict(String),
    /// Above the threshold (or critical) and not approved.
    AwaitingApproval,
    /// Cannot be put back with a PATCH.
    NotRevertible(String),
    /// The platform refused.
    Failed(String),
}

/// One drifted resource and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct SyncAction {
    /// The stable drift id.
    pub drift_id: String,
    /// The resource address.
    pub address: String,
    /// The live object's id.
    pub object_id: String,
    /// The drift's severity.
    pub severity: Severity,
    /// The top-level attributes that drifted.
    pub attributes: Vec<String>,
    /// Who approved its revert, if anyone.
    pub approved_by: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub outcome: SyncOutcome,
}

/// Everything one `sync` did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// The drift report the sync acted on (before any revert).
    pub report: DriftReport,
    /// One entry per drifted resource.
    pub actions: Vec<SyncAction>,
    /// The remediation branch and pull request, when one was made.
    pub remediation: Option<RemediationOutcome>,
    /// Failures that did not stop the run (a refused PATCH, a refused push), one line each.
    pub errors: Vec<String>,
    /// True for `--dry-run`.
    pub dry_run: bool,
}

impl SyncReport {
    /// Findings a (real) sync leaves: drifted resources not reverted, missing and unmanaged objects.
    pub fn remaining(&self) -> usize {
        let left = self.actions.iter().filter(|a| !matches!(a.outcome, SyncOutcome::Reverted | SyncOutcome::AlreadyInSync | SyncOutcome::WouldRevert)).count();
        left + self.report.summary.missing + self.report.summary.unmanaged
    }

    /// 1 on any error, 2 when drift remains, 0 otherwise.
    pub fn exit_code(&self) -> u8 {
        if !self.errors.is_empty() {
            1
        } else if self.remaining() > 0 {
            2
        } else {
            0
        }
    }
}

/// Why a sync could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Detection failed (repository, HCL, platform).
    #[error(transparent)]
    Drift(#[from] DriftError),
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// `--remediation pr` without a forge.
    #[error("--remediation pr needs a forge: give --forge-url and --forge-repo (token in NOVACRON_FORGE_TOKEN)")]
    NoForge,
}

/// The stable id of a drift: the first 12 hex digits of SHA-256 over repository, address,
/// desired and live hash. The same drift gets the same id on every run.
pub fn drift_id(repo: &str, address: &str, desired_hash: &str, live_hash: &str) -> String {
    sha256_hex(format!("{repo}\n{address}\n{desired_hash}\n{live_hash}").as_bytes())[..12].to_string()
}

/// Runs `sync`: detects drift, closes intents an earlier run left open, reverts what may be
/// reverted, records the rest awaiting approval and, with `remediation_pr`, pushes a branch
/// codifying the live values and opens or updates its pull request.
pub async fn run_sync(options: &SyncOptions, api: &impl PlatformApi, db: &StateDb, forge: Option<&dyn Forge>) -> Result<SyncReport, SyncError> {
    if options.remediation_pr && forge.is_none() && !options.dry_run {
        return Err(SyncError::NoForge);
    }
    let repo = redact(&options.drift.repo);
    let detection = detect(&options.drift, api).await?;
    let drifted: Vec<&ResourceReport> = detection.report.resources.iter().filter(|r| r.status == Status::Drifted && r.id.is_some()).collect();
    let ids: Vec<String> =
        drifted.iter().map(|r| drift_id(&repo, &r.address, r.desired_hash.as_deref().unwrap_or(""), r.live_hash.as_deref().unwrap_or(""))).collect();
    let audit = |action: &str, subject: &str, detail: serde_json::Value| {
        audit_append(db, AuditEntry { actor: options.actor.clone(), action: action.into(), repo: repo.clone(), subject: subject.into(), detail }).map(|_| ())
    };
    if !options.dry_run {
        recover_open_intents(db, &repo, &options.actor, &detection)?;
        let records: Vec<DriftRecord> = drifted
            .iter()
            .zip(&ids)
            .map(|(r, id)| DriftRecord {
                id: id.clone(),
                address: r.address.clone(),
                kind: r.resource_type.clone(),
                object_id: r.id.clone().unwrap_or_default(),
                severity: r.severity.unwrap_or(Severity::Info),
                desired_hash: r.desired_hash.clone().unwrap_or_default(),
                live_hash: r.live_hash.clone().unwrap_or_default(),
            })
            .collect();
        let findings: Vec<(String, String, String)> = detection
            .report
            .resources
            .iter()
            .filter(|r| matches!(r.status, Status::Missing | Status::Unmanaged))
            .map(|r| {
                (
                    drift_id(&repo, &r.address, r.desired_hash.as_deref().unwrap_or(""), r.live_hash.as_deref().unwrap_or("")),
                    r.address.clone(),
                    r.status.as_str().to_string(),
                )
            })
            .collect();
        for (id, address, status) in record_findings(db, &repo, &findings)? {
            audit("detect", &address, json!({"finding_id": id, "status": status, "revision": detection.report.revision}))?;
        }
        for new in record_drifts(db, &repo, &records)? {
            let paths: Vec<&str> =
                drifted.iter().find(|r| r.address == new.address).map(|r| r.changes.iter().map(|c| c.path.as_str()).collect()).unwrap_or_default();
            audit(
                "detect",
                &new.address,
                json!({"drift_id": new.id, "severity": new.severity, "object_id": new.object_id, "paths": paths, "revision": detection.report.revision}),
            )?;
        }
    }
    let approvals = pending_approvals(db, Some(&repo))?;
    let mut actions = Vec::new();
    let mut errors = Vec::new();
    for (entry, id) in drifted.iter().zip(&ids) {
        let approved_by = approvals.iter().find(|p| &p.id == id).and_then(|p| p.approved_by.clone());
        let action = act_on(options, api, db, &detection, &repo, entry, id, approved_by).await?;
        if let SyncOutcome::Failed(why) = &action.outcome {
            errors.push(format!("{}: {why}", action.address));
        }
        if matches!(action.outcome, SyncOutcome::Reverted | SyncOutcome::AlreadyInSync) {
            resolve_drift(db, id, "reverted")?;
        }
        actions.push(action);
    }
    let mut remediation = None;
    let mut for_pr: Vec<(String, String)> = actions
        .iter()
        .filter(|a| matches!(a.outcome, SyncOutcome::AwaitingApproval | SyncOutcome::NotRevertible(_) | SyncOutcome::Conflict(_)))
        .map(|a| (a.drift_id.clone(), a.address.clone()))
        .collect();
    // Missing and unmanaged objects are never created or deleted here: they go to the pull request.
    for r in detection.report.resources.iter().filter(|r| matches!(r.status, Status::Missing | Status::Unmanaged)) {
        for_pr.push((drift_id(&repo, &r.address, r.desired_hash.as_deref().unwrap_or(""), r.live_hash.as_deref().unwrap_or("")), r.address.clone()));
    }
    if let (true, false, false, Some(forge)) = (options.remediation_pr, options.dry_run, for_pr.is_empty(), forge) {
        let request = RemediationRequest {
            options: &options.drift,
            detection: &detection,
            drifts: for_pr,
            reverted: actions.iter().filter(|a| matches!(a.outcome, SyncOutcome::Reverted | SyncOutcome::AlreadyInSync)).map(|a| a.address.clone()).collect(),
            actor: &options.actor,
        };
        match remediate(&request, forge, db).await {
            Ok(outcome) => remediation = Some(outcome),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Ok(SyncReport { report: detection.report, actions, remediation, errors, dry_run: options.dry_run })
}

/// Decides and carries out what happens to one drifted resource.
#[allow(clippy::too_many_arguments)]
async fn act_on(
    options: &SyncOptions,
    api: &impl PlatformApi,
    db: &StateDb,
    detection: &Detection,
    repo: &str,
    entry: &ResourceReport,
    id: &str,
    approved_by: Option<String>,
) -> Result<SyncAction, SyncError> {
    let severity = entry.severity.unwrap_or(Severity::Info);
    let object_id = entry.id.clone().unwrap_or_default();
    let desired = detection.desired.iter().find(|d| d.address == entry.address);
    let live = detection.live.iter().find(|l| l.id() == object_id);
    let mut action = SyncAction {
        drift_id: id.to_string(),
        address: entry.address.clone(),
        object_id: object_id.clone(),
        severity,
        attributes: Vec::new(),
        approved_by: approved_by.clone(),
        outcome: SyncOutcome::AwaitingApproval,
    };
    let (Some(desired), Some(live)) = (desired, live) else {
        action.outcome = SyncOutcome::NotRevertible("the desired resource or live object was not found again".into());
        return Ok(action);
    };
    let schema = desired.kind.schema();
    action.attributes = drifted_attributes(schema, entry);
    if approved_by.is_none() && !options.auto_sync_max.allows(severity) {
        return Ok(action);
    }
    if let Some(why) = not_revertible(schema, desired, live, &action.attributes) {
        action.outcome = SyncOutcome::NotRevertible(why);
        return Ok(action);
    }
    if options.dry_run {
        action.outcome = SyncOutcome::WouldRevert;
        return Ok(action);
    }
    let job = revert::RevertJob { drift_id: id, repo, actor: &options.actor, entry, desired, live, attributes: &action.attributes, rules: &detection.rules };
    action.outcome = match revert::revert(&job, api, db).await {
        Ok(RevertResult::Applied) => SyncOutcome::Reverted,
        Ok(RevertResult::AlreadyInSync) => SyncOutcome::AlreadyInSync,
        Ok(RevertResult::Conflict(why)) => SyncOutcome::Conflict(why),
        Err(RevertError::Platform { detail, .. }) => SyncOutcome::Failed(detail),
        Err(RevertError::State(e)) => return Err(SyncError::State(e)),
    };
    Ok(action)
}

/// Closes intents a stopped run left open. The PATCH may or may not have been applied: the
/// fresh comparison tells. In sync: it was (recorded as `found_applied`); still drifted: it was
/// not, and this run reverts it afresh under a new intent. Either way it is applied once.
fn recover_open_intents(db: &StateDb, repo: &str, actor: &str, detection: &Detection) -> Result<(), StateError> {
    for open in journal_open_intents(db, repo)? {
        let now = detection.report.resources.iter().find(|r| r.address == open.address);
        let outcome = match now.map(|r| r.status) {
            Some(Status::InSync) => "found_applied",
            Some(Status::Drifted) => "not_applied",
            _ => "object_gone",
        };
        let entry = AuditEntry {
            actor: actor.to_string(),
            action: "sync".into(),
            repo: repo.to_string(),
            subject: open.address.clone(),
            detail: json!({"phase": "recovered", "outcome": outcome, "drift_id": open.drift_id, "object_id": open.object_id}),
        };
        journal_finish(db, open.seq, outcome, Some(entry))?;
        if outcome == "found_applied" {
            resolve_drift(db, &open.drift_id, "reverted")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_never_allow_critical() {
        assert!(AutoSyncMax::Low.allows(Severity::Low));
        assert!(AutoSyncMax::Low.allows(Severity::Info));
        assert!(!AutoSyncMax::Low.allows(Severity::Medium));
        assert!(AutoSyncMax::High.allows(Severity::High));
        assert!(!AutoSyncMax::High.allows(Severity::Critical));
        assert!(!AutoSyncMax::None.allows(Severity::Info));
    }

    #[test]
    fn drift_ids_are_stable_and_short() {
        let a = drift_id("file:///r", "novacron_vm.web", "sha256:a", "sha256:b");
        assert_eq!(a, drift_id("file:///r", "novacron_vm.web", "sha256:a", "sha256:b"));
        assert_ne!(a, drift_id("file:///r", "novacron_vm.web", "sha256:a", "sha256:c"));
        assert_eq!(a.len(), 12);
    }
}
