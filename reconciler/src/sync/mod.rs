//! The `sync` operation: detect drift, revert what the threshold or an approval allows, record the rest for a person.

mod planner;
mod revert;
mod rollout;
mod terraform;
mod threshold;

use novacron_schemas::{Severity, sha256_hex};
use serde::Serialize;
use serde_json::json;

pub use planner::{Approvals, Decision, DriftFinding, Findings, HoldReason, RolloutFinding, Thresholds, plan_sync};
pub use revert::{RevertError, RevertResult, TEST_PAUSE_ENV, drifted_attributes, not_revertible, revert_patch};
pub use rollout::{BoxFuture, PidSink, PlannedChange, RolloutOutcome, RolloutReport, RolloutRunner, plan_id};
pub use terraform::{LOCK_WAIT, RunnerSettings, TerraformReviewer, review_key, terraform_runner};
pub use threshold::{AutoApplyMax, AutoSyncMax, Threshold};

use self::rollout::{RolloutContext, approved_plans, rollout_needed};
use crate::command::{Detection, DriftError, DriftOptions, detect};
use crate::drift::{DesiredResource, LiveObject};
use crate::git::redact;
use crate::live::PlatformApi;
use crate::remediation::{CommitStatus, Forge, RemediationOutcome, RemediationRequest, remediate};
use crate::report::{ChangedBy, DriftReport, ResourceReport, Status, ThreeWay};
use crate::state::{
    AuditAction, AuditEntry, DriftRecord, JournalOutcome, StateDb, StateError, audit_append, journal_finish, journal_open_intents, pending_approvals,
    record_drifts, record_findings, resolve_drift, rolled_out_revision,
};
use crate::threeway::applied_target;

/// What a `sync` run does.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The repository, ref, path, variables and ignore rules, as for `drift`.
    pub drift: DriftOptions,
    /// The drift threshold, the rollout threshold and prune.
    pub thresholds: Thresholds,
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
    /// Who made the out-of-band change, and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<ChangedBy>,
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
    /// The rollout of this run, when Git moved.
    pub rollout: Option<RolloutReport>,
    /// Resources changed both in Git and on the platform: nothing is applied or reverted on them.
    pub conflicts: Vec<String>,
    /// Work a stopped run left unfinished, closed by this run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recovered: Vec<Recovered>,
}

/// One unfinished piece of work of a stopped run, and what this run found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovered {
    /// `revert`, or the Terraform operation (`apply`, `refresh`, `import`).
    pub operation: String,
    /// The drifted address, or the plan id (or revision) of the Terraform run.
    pub subject: String,
    /// `found_applied`, `not_applied`, `object_gone` for a revert; `interrupted` for a Terraform
    /// run, with what was cleaned up (`stopped a leftover terraform`, `released its state lock`).
    pub outcome: String,
}

impl SyncReport {
    /// A sync of `report` that has done nothing (yet): no actions, rollout, errors or conflicts.
    pub fn acting_on(report: DriftReport) -> SyncReport {
        SyncReport {
            report,
            actions: Vec::new(),
            remediation: None,
            errors: Vec::new(),
            dry_run: false,
            rollout: None,
            conflicts: Vec::new(),
            recovered: Vec::new(),
        }
    }

    /// Findings a (real) sync leaves: drifted resources not reverted, missing and unmanaged objects.
    pub fn remaining(&self) -> usize {
        let left = self.actions.iter().filter(|a| !matches!(a.outcome, SyncOutcome::Reverted | SyncOutcome::AlreadyInSync | SyncOutcome::WouldRevert)).count();
        let codify = self.report.resources.iter().filter(|r| matches!(r.status, Status::Missing | Status::Unmanaged) && r.three_way == ThreeWay::Drift).count();
        let waiting = usize::from(self.rollout.as_ref().is_some_and(|r| matches!(r.outcome, RolloutOutcome::Pending(_))));
        left + codify + self.conflicts.len() + waiting
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

/// Runs `sync`: detects (three-way when Terraform's state is there), closes what an earlier run
/// left open, rolls out what Git says through Terraform (`runner`), reverts drift the
/// thresholds or an approval allow, records the rest awaiting approval and, with
/// `remediation_pr`, codifies the remaining drift in a pull request. The decisions come from
/// the pure [`plan_sync`]; this function only carries them out and records them.
pub async fn run_sync(
    options: &SyncOptions,
    api: &impl PlatformApi,
    db: &StateDb,
    forge: Option<&dyn Forge>,
    runner: Option<&dyn RolloutRunner>,
) -> Result<SyncReport, SyncError> {
    if options.remediation_pr && forge.is_none() && !options.dry_run {
        return Err(SyncError::NoForge);
    }
    let repo = redact(&options.drift.repo);
    let path = crate::source::join_path("", &options.drift.path).unwrap_or_default();
    let mut detection = detect(&options.drift, api).await?;
    let mut errors = Vec::new();
    let mut rollout = None;
    let context = runner.map(|runner| RolloutContext { api, db, runner, repo: &repo, path: &path, actor: &options.actor });
    let mut recovered = Vec::new();
    if let (Some(ctx), false) = (&context, options.dry_run) {
        recovered = ctx.recover(&detection).await?;
    }
    let thresholds = options.thresholds;
    // The state catches up first when desired already equals live (a merged codify pull request).
    if let (Some(ctx), false, true) = (&context, options.dry_run, detection.report.resources.iter().any(|r| r.state_behind)) {
        match ctx.refresh(&detection).await? {
            Ok(()) => detection = detect(&options.drift, api).await?,
            Err(e) => errors.push(format!("refresh of Terraform's state: {e}")),
        }
    }
    if let Some(ctx) = &context {
        let approved = approved_plans(db, &repo, &path)?;
        if rollout_needed(&detection, rolled_out_revision(db, &repo, &path)?.as_deref(), !approved.is_empty()) {
            rollout = roll_out(ctx, &detection, &approved, options, &thresholds, &mut errors).await?;
            if rollout.as_ref().is_some_and(|r| r.outcome == RolloutOutcome::Applied) {
                // What Terraform just applied is in the state now: the drift view is taken afresh.
                detection = detect(&options.drift, api).await?;
            }
        }
    } else if detection.applied.is_some() && detection.report.resources.iter().any(|r| r.three_way == ThreeWay::RolloutPending) {
        errors.push("a rollout is pending but no Terraform is configured: pass --terraform PATH or set NOVACRON_TERRAFORM".into());
    }
    let mut report = act_on_drift(options, api, db, &detection, &repo, &thresholds, forge).await?;
    report.errors.splice(0..0, errors);
    if let (Some(forge), Some(r), false) = (forge, &rollout, options.dry_run)
        && let Err(e) = publish_rollout(forge, r).await
    {
        report.errors.push(format!("rollout status on the forge: {e}"));
    }
    report.rollout = rollout;
    report.recovered.splice(0..0, recovered);
    Ok(report)
}

/// Plans (or applies an approved saved plan), then carries out the planner's decision.
async fn roll_out<A: PlatformApi>(
    ctx: &RolloutContext<'_, A>,
    detection: &Detection,
    approved: &[(String, String, String)],
    options: &SyncOptions,
    thresholds: &Thresholds,
    errors: &mut Vec<String>,
) -> Result<Option<RolloutReport>, SyncError> {
    if !options.dry_run
        && let Some((id, _, by)) = approved.iter().find(|(_, revision, _)| revision == &detection.report.revision)
        && let Some(done) = ctx.apply_approved(detection, id, by).await?
    {
        if let RolloutOutcome::Failed(why) = &done.outcome {
            errors.push(format!("rollout {id}: {why}"));
        }
        return Ok(Some(done));
    }
    let planned = match ctx.plan(detection).await? {
        Ok(p) => p,
        Err(e) => {
            errors.push(format!("rollout of {}: {e}", short(&detection.report.revision)));
            return Ok(None);
        }
    };
    let findings = Findings { rollout: Some(planned.finding(&detection.report.resources)), ..Findings::default() };
    let approvals = Approvals { plans: approved.iter().map(|(id, _, by)| (id.clone(), by.clone())).collect(), ..Approvals::default() };
    let decisions = plan_sync(&findings, &approvals, thresholds);
    let decision = decisions.iter().find(|d| matches!(d, Decision::ApplyPlan { .. } | Decision::HoldPlan { .. }));
    let report = ctx.execute(detection, &planned, decision, options.dry_run).await?;
    if let RolloutOutcome::Failed(why) = &report.outcome {
        errors.push(format!("rollout {}: {why}", report.plan_id));
    }
    Ok(Some(report))
}

fn short(revision: &str) -> &str {
    &revision[..revision.len().min(12)]
}

/// The rollout's commit status and, for a plan that waits, the graded plan as a commit comment.
async fn publish_rollout(forge: &dyn Forge, r: &RolloutReport) -> Result<(), crate::remediation::ForgeError> {
    let (state, description) = match &r.outcome {
        RolloutOutcome::Applied => ("success", format!("applied: {}", r.summary)),
        RolloutOutcome::NothingToDo => ("success", "rolled out: no changes".to_string()),
        RolloutOutcome::Pending(why) => ("pending", why.clone()),
        RolloutOutcome::WouldApply => return Ok(()),
        RolloutOutcome::Failed(why) => ("failure", why.clone()),
    };
    let status = CommitStatus { state, context: ROLLOUT_STATUS_CONTEXT.into(), description };
    forge.set_commit_status(&r.revision, &status).await?;
    if matches!(r.outcome, RolloutOutcome::Pending(_) | RolloutOutcome::Applied) && !r.changes.is_empty() {
        forge.comment_on_commit(&r.revision, &render_rollout_markdown(r)).await?;
    }
    Ok(())
}

/// The commit status context of rollouts.
pub const ROLLOUT_STATUS_CONTEXT: &str = "novacron/rollout";

/// The severity-graded plan as markdown (a commit comment, the remediation report).
pub fn render_rollout_markdown(r: &RolloutReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let what = match &r.outcome {
        RolloutOutcome::Applied => "applied".to_string(),
        RolloutOutcome::Pending(why) => format!("waiting: {why} — `novacron-reconcile approve {}`", r.plan_id),
        RolloutOutcome::NothingToDo => "nothing to do".to_string(),
        RolloutOutcome::WouldApply => "would apply".to_string(),
        RolloutOutcome::Failed(why) => format!("failed: {why}"),
    };
    let _ = writeln!(
        out,
        "### novacron rollout `{}` of `{}`

**{}** — {what}
",
        r.plan_id,
        short(&r.revision),
        r.summary
    );
    out.push_str("| severity | action | resource | changes |\n|---|---|---|---|\n");
    for c in &r.changes {
        let _ = writeln!(out, "| {} | {} | `{}` | {} |", c.severity, c.action, c.address, c.attributes.join("<br>").replace('|', "\\|"));
    }
    out
}

/// The drift half of a sync: record, decide with [`plan_sync`], revert, codify.
async fn act_on_drift(
    options: &SyncOptions,
    api: &impl PlatformApi,
    db: &StateDb,
    detection: &Detection,
    repo: &str,
    thresholds: &Thresholds,
    forge: Option<&dyn Forge>,
) -> Result<SyncReport, SyncError> {
    // Only the platform moving is drift: pending rollouts and conflicts are not reverted or codified.
    let drifted: Vec<&ResourceReport> =
        detection.report.resources.iter().filter(|r| r.status == Status::Drifted && r.id.is_some() && r.three_way == ThreeWay::Drift).collect();
    let ids: Vec<String> =
        drifted.iter().map(|r| drift_id(repo, &r.address, r.desired_hash.as_deref().unwrap_or(""), r.live_hash.as_deref().unwrap_or(""))).collect();
    let codifiable = |r: &&ResourceReport| matches!(r.status, Status::Missing | Status::Unmanaged) && r.three_way == ThreeWay::Drift;
    let audit = |action: AuditAction, subject: &str, detail: serde_json::Value| {
        audit_append(db, AuditEntry { actor: options.actor.clone(), action, repo: repo.to_string(), subject: subject.into(), detail }).map(|_| ())
    };
    let mut recovered = Vec::new();
    if !options.dry_run {
        recovered = recover_open_intents(db, repo, &options.actor, detection)?;
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
            .filter(codifiable)
            .map(|r| {
                (
                    drift_id(repo, &r.address, r.desired_hash.as_deref().unwrap_or(""), r.live_hash.as_deref().unwrap_or("")),
                    r.address.clone(),
                    r.status.as_str().to_string(),
                )
            })
            .collect();
        for (id, address, status) in record_findings(db, repo, &findings)? {
            audit(AuditAction::Detect, &address, json!({"finding_id": id, "status": status, "revision": detection.report.revision}))?;
        }
        for new in record_drifts(db, repo, &records)? {
            let entry = drifted.iter().find(|r| r.address == new.address);
            let paths: Vec<&str> = entry.map(|r| r.changes.iter().map(|c| c.path.as_str()).collect()).unwrap_or_default();
            let changed_by = entry.and_then(|r| r.changed_by.clone());
            audit(
                AuditAction::Detect,
                &new.address,
                json!({"drift_id": new.id, "severity": new.severity, "object_id": new.object_id, "paths": paths, "revision": detection.report.revision, "changed_by": changed_by}),
            )?;
        }
    }
    let pending = pending_approvals(db, Some(repo))?;
    let mut findings = Findings::default();
    let mut jobs = Vec::new();
    for (entry, id) in drifted.iter().zip(&ids) {
        let job = DriftJob::new(detection, entry, id);
        findings.drifts.push(DriftFinding {
            drift_id: id.clone(),
            address: entry.address.clone(),
            severity: entry.severity.unwrap_or(Severity::Info),
            not_revertible: job.not_revertible(),
        });
        jobs.push(job);
    }
    findings.conflicts = detection.report.resources.iter().filter(|r| r.three_way == ThreeWay::Conflict).map(|r| r.address.clone()).collect();
    let approvals = Approvals { drifts: pending.iter().filter_map(|p| p.approved_by.clone().map(|by| (p.id.clone(), by))).collect(), ..Approvals::default() };
    let decisions = plan_sync(&findings, &approvals, thresholds);
    let mut actions = Vec::new();
    let mut errors = Vec::new();
    for decision in &decisions {
        let (drift_id, outcome, approved_by) = match decision {
            Decision::Revert { drift_id, approved_by } => (drift_id, None, approved_by.clone()),
            Decision::AwaitDrift { drift_id } => (drift_id, Some(SyncOutcome::AwaitingApproval), None),
            Decision::CannotRevert { drift_id, reason } => (drift_id, Some(SyncOutcome::NotRevertible(reason.clone())), None),
            _ => continue,
        };
        let Some(job) = jobs.iter().find(|j| &j.id == drift_id) else { continue };
        let mut action = job.action(approved_by.clone());
        action.outcome = match outcome {
            Some(o) => o,
            None if options.dry_run => SyncOutcome::WouldRevert,
            None => job.revert(options, api, db, repo, &detection.rules).await?,
        };
        if let SyncOutcome::Failed(why) = &action.outcome {
            errors.push(format!("{}: {why}", action.address));
        }
        if matches!(action.outcome, SyncOutcome::Reverted | SyncOutcome::AlreadyInSync) {
            resolve_drift(db, drift_id, "reverted")?;
        }
        actions.push(action);
    }
    let mut remediation = None;
    let mut for_pr: Vec<(String, String)> = actions
        .iter()
        .filter(|a| matches!(a.outcome, SyncOutcome::AwaitingApproval | SyncOutcome::NotRevertible(_) | SyncOutcome::Conflict(_)))
        .map(|a| (a.drift_id.clone(), a.address.clone()))
        .collect();
    // Missing and unmanaged objects the platform moved go to the pull request; a pending rollout
    // (an object Git adds or removes) never does: the rollout carries it out.
    for r in detection.report.resources.iter().filter(codifiable) {
        for_pr.push((drift_id(repo, &r.address, r.desired_hash.as_deref().unwrap_or(""), r.live_hash.as_deref().unwrap_or("")), r.address.clone()));
    }
    if let (true, false, false, Some(forge)) = (options.remediation_pr, options.dry_run, for_pr.is_empty(), forge) {
        let request = RemediationRequest {
            options: &options.drift,
            detection,
            drifts: for_pr,
            reverted: actions.iter().filter(|a| matches!(a.outcome, SyncOutcome::Reverted | SyncOutcome::AlreadyInSync)).map(|a| a.address.clone()).collect(),
            actor: &options.actor,
        };
        match remediate(&request, forge, db).await {
            Ok(outcome) => remediation = Some(outcome),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Ok(SyncReport {
        report: detection.report.clone(),
        actions,
        remediation,
        errors,
        dry_run: options.dry_run,
        rollout: None,
        conflicts: findings.conflicts,
        recovered,
    })
}

/// One drifted resource with what reverting it needs: the target values (the last-applied ones
/// when Terraform's state is there, else the desired ones) and the live object.
struct DriftJob<'a> {
    id: String,
    entry: &'a ResourceReport,
    target: Option<DesiredResource>,
    live: Option<&'a LiveObject>,
}

impl<'a> DriftJob<'a> {
    fn new(detection: &'a Detection, entry: &'a ResourceReport, id: &str) -> DriftJob<'a> {
        let object_id = entry.id.as_deref().unwrap_or_default();
        let desired = detection.desired.iter().find(|d| d.address == entry.address);
        let applied = detection.applied.as_ref().and_then(|a| a.resources.iter().find(|r| r.address == entry.address));
        let target = match (desired, applied) {
            (Some(d), Some(s)) => Some(applied_target(d, s)),
            (Some(d), None) => Some(d.clone()),
            (None, _) => None,
        };
        DriftJob { id: id.to_string(), entry, target, live: detection.live.iter().find(|l| l.id() == object_id) }
    }

    fn action(&self, approved_by: Option<String>) -> SyncAction {
        let attributes = self.target.as_ref().map(|t| drifted_attributes(t.kind.schema(), self.entry)).unwrap_or_default();
        SyncAction {
            drift_id: self.id.clone(),
            address: self.entry.address.clone(),
            object_id: self.entry.id.clone().unwrap_or_default(),
            severity: self.entry.severity.unwrap_or(Severity::Info),
            attributes,
            approved_by,
            changed_by: self.entry.changed_by.clone(),
            outcome: SyncOutcome::AwaitingApproval,
        }
    }

    fn not_revertible(&self) -> Option<String> {
        let (Some(target), Some(live)) = (&self.target, self.live) else {
            return Some("the desired resource or live object was not found again".into());
        };
        let schema = target.kind.schema();
        not_revertible(schema, target, live, &drifted_attributes(schema, self.entry))
    }

    async fn revert(
        &self,
        options: &SyncOptions,
        api: &impl PlatformApi,
        db: &StateDb,
        repo: &str,
        rules: &crate::ignore::IgnoreRules,
    ) -> Result<SyncOutcome, SyncError> {
        let (Some(target), Some(live)) = (&self.target, self.live) else {
            return Ok(SyncOutcome::NotRevertible("the desired resource or live object was not found again".into()));
        };
        let attributes = drifted_attributes(target.kind.schema(), self.entry);
        let job =
            revert::RevertJob { drift_id: &self.id, repo, actor: &options.actor, entry: self.entry, desired: target, live, attributes: &attributes, rules };
        Ok(match revert::revert(&job, api, db).await {
            Ok(RevertResult::Applied) => SyncOutcome::Reverted,
            Ok(RevertResult::AlreadyInSync) => SyncOutcome::AlreadyInSync,
            Ok(RevertResult::Conflict(why)) => SyncOutcome::Conflict(why),
            Err(RevertError::Platform { detail, .. }) => SyncOutcome::Failed(detail),
            Err(RevertError::State(e)) => return Err(SyncError::State(e)),
        })
    }
}

/// Closes intents a stopped run left open. The PATCH may or may not have been applied: the
/// fresh comparison tells. In sync: it was (recorded as `found_applied`); still drifted: it was
/// not, and this run reverts it afresh under a new intent. Either way it is applied once.
fn recover_open_intents(db: &StateDb, repo: &str, actor: &str, detection: &Detection) -> Result<Vec<Recovered>, StateError> {
    let mut recovered = Vec::new();
    for open in journal_open_intents(db, repo)? {
        let now = detection.report.resources.iter().find(|r| r.address == open.address);
        let outcome = match now.map(|r| r.status) {
            Some(Status::InSync) => JournalOutcome::FoundApplied,
            Some(Status::Drifted) => JournalOutcome::NotApplied,
            _ => JournalOutcome::ObjectGone,
        };
        let entry = AuditEntry {
            actor: actor.to_string(),
            action: AuditAction::Sync,
            repo: repo.to_string(),
            subject: open.address.clone(),
            detail: json!({"phase": "recovered", "outcome": outcome.as_str(), "drift_id": open.drift_id, "object_id": open.object_id}),
        };
        journal_finish(db, open.seq, outcome, Some(entry))?;
        if outcome == JournalOutcome::FoundApplied {
            resolve_drift(db, &open.drift_id, "reverted")?;
        }
        recovered.push(Recovered { operation: "revert".into(), subject: open.address.clone(), outcome: outcome.as_str().to_string() });
    }
    Ok(recovered)
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
