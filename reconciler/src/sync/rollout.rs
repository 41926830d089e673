//! The rollout half of a sync: plan the revision with real Terraform, adopt objects a stopped run
//! created, then apply, hold or refresh as the planner decides, journalled and audited.

use std::future::Future;
use std::pin::Pin;

use novacron_schemas::{Severity, sha256_hex};
use serde::Serialize;
use serde_json::json;

use super::planner::{Decision, HoldReason, RolloutFinding};
use crate::command::Detection;
use crate::live::PlatformApi;
use crate::report::{ResourceReport, ThreeWay};
use crate::rollout::{Action, PlanGrade, PlanModel, RolloutError, grade_plan};
use crate::state::{
    AuditAction, AuditEntry, PlanRecord, StateDb, StateError, audit_append, hold_plan, open_rollouts, pending_plans, plan_file, resolve_plan, rollout_finish,
    rollout_intent, rollout_started, set_rolled_out, supersede_plans,
};

/// A boxed future, for the object-safe [`RolloutRunner`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub use crate::rollout::PidSink;

/// What a sync needs from Terraform, for one repository path at one revision. The real one runs
/// the `terraform` binary in a clean working copy.
pub trait RolloutRunner: Send + Sync {
    /// `plan -refresh=false -out`, then `show -json`: the saved plan and its model.
    fn plan<'a>(&'a self, detection: &'a Detection) -> BoxFuture<'a, Result<(Vec<u8>, PlanModel), RolloutError>>;
    /// `apply <saved plan>`.
    fn apply<'a>(&'a self, detection: &'a Detection, plan: &'a [u8], pid: PidSink<'a>) -> BoxFuture<'a, Result<(), RolloutError>>;
    /// `apply -refresh-only -auto-approve`.
    fn refresh<'a>(&'a self, detection: &'a Detection, pid: PidSink<'a>) -> BoxFuture<'a, Result<(), RolloutError>>;
    /// `import <address> <id>`.
    fn import<'a>(&'a self, detection: &'a Detection, address: &'a str, id: &'a str, pid: PidSink<'a>) -> BoxFuture<'a, Result<(), RolloutError>>;
    /// Stops the process group of a Terraform child an earlier (killed) run started, if it
    /// still runs (and is terraform); true when one was stopped.
    fn stop_leftover<'a>(&'a self, pid: u32) -> BoxFuture<'a, bool>;
}

/// How the rollout of one run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "reason")]
pub enum RolloutOutcome {
    /// Terraform applied the plan.
    Applied,
    /// The plan waits (for an approval, prune, or a person to settle a conflict).
    Pending(String),
    /// Terraform planned no change: the revision is rolled out.
    NothingToDo,
    /// Would apply (`--dry-run`).
    WouldApply,
    /// Terraform failed; the next run plans again.
    Failed(String),
}

/// One planned change, graded, for reports (sensitive values never kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedChange {
    /// The resource address.
    pub address: String,
    /// `create`, `update`, `replace`, `delete`.
    pub action: String,
    /// Its severity.
    pub severity: Severity,
    /// Changed attributes: `name: before → after`, `(sensitive)` for sensitive ones.
    pub attributes: Vec<String>,
}

/// What the rollout of one run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutReport {
    /// The plan's id.
    pub plan_id: String,
    /// The revision planned.
    pub revision: String,
    /// `1 to add, 1 to change: 1 medium, 1 low`.
    pub summary: String,
    /// The plan's severity; `None` for no changes.
    pub severity: Option<Severity>,
    /// Who approved it, if anyone.
    pub approved_by: Option<String>,
    /// Objects adopted into the state before planning (`address = id`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub adopted: Vec<String>,
    /// What happened.
    #[serde(flatten)]
    pub outcome: RolloutOutcome,
    /// The graded changes.
    pub changes: Vec<PlannedChange>,
}

/// The stable id of a plan: the same changes of the same revision get the same id.
pub fn plan_id(repo: &str, path: &str, revision: &str, plan: &PlanModel) -> String {
    let mut text = format!("{repo}\n{path}\n{revision}\n");
    for c in plan.changes.iter().filter(|c| c.action.is_change()) {
        text.push_str(&format!("{} {}", c.address, c.action));
        for a in &c.attributes {
            text.push_str(&format!(" {}={}>{}", a.name, a.before, a.after));
        }
        text.push('\n');
    }
    format!("plan-{}", &sha256_hex(text.as_bytes())[..12])
}

/// The graded changes of a plan for reports.
pub fn planned_changes(plan: &PlanModel, grade: &PlanGrade) -> Vec<PlannedChange> {
    grade
        .changes
        .iter()
        .map(|g| {
            let attributes = plan
                .changes
                .iter()
                .find(|c| c.address == g.address)
                .map(|c| {
                    c.attributes
                        .iter()
                        .map(|a| if a.sensitive { format!("{}: (sensitive)", a.name) } else { format!("{}: {} → {}", a.name, a.before, a.after) })
                        .collect()
                })
                .unwrap_or_default();
            PlannedChange { address: g.address.clone(), action: g.action.as_str().to_string(), severity: g.severity, attributes }
        })
        .collect()
}

/// Whether this run must plan: the state exists (rollouts need it) and Git moved since the last
/// complete rollout, or the fast view sees desired ≠ last applied, or an approved plan waits.
pub fn rollout_needed(detection: &Detection, rolled_out: Option<&str>, approved_waiting: bool) -> bool {
    if detection.applied.is_none() {
        return false;
    }
    let moved = rolled_out != Some(detection.report.revision.as_str());
    let pending = detection.report.resources.iter().any(|r| matches!(r.three_way, ThreeWay::RolloutPending | ThreeWay::Conflict));
    moved || pending || approved_waiting
}

/// Planned creates whose object already exists on the platform under that name but not in the
/// state (a run killed after the create, before the state was written): `(address, id)`.
pub fn adoptable(plan: &PlanModel, detection: &Detection) -> Vec<(String, String)> {
    let in_state: std::collections::HashSet<&str> = detection.applied.iter().flat_map(|a| a.resources.iter().map(|r| r.id.as_str())).collect();
    plan.changes
        .iter()
        .filter(|c| c.action == Action::Create)
        .filter_map(|c| {
            let name = c.name.as_deref()?;
            let live = detection.live.iter().find(|l| l.kind == c.kind && l.name() == name && !in_state.contains(l.id()))?;
            Some((c.address.clone(), live.id().to_string()))
        })
        .collect()
}

/// The addresses of entries in conflict that the plan touches.
pub fn conflicts_touched(plan: &PlanModel, resources: &[ResourceReport]) -> Vec<String> {
    plan.changes
        .iter()
        .filter(|c| c.action.is_change())
        .filter(|c| resources.iter().any(|r| r.address == c.address && r.three_way == ThreeWay::Conflict))
        .map(|c| c.address.clone())
        .collect()
}

/// Everything the rollout executor needs from the sync.
pub struct RolloutContext<'a, A: PlatformApi> {
    /// The platform.
    pub api: &'a A,
    /// The state database.
    pub db: &'a StateDb,
    /// Terraform.
    pub runner: &'a dyn RolloutRunner,
    /// The repository as recorded.
    pub repo: &'a str,
    /// The configuration's directory.
    pub path: &'a str,
    /// Who acts.
    pub actor: &'a str,
}

impl<A: PlatformApi> RolloutContext<'_, A> {
    fn entry(&self, action: AuditAction, detail: serde_json::Value) -> AuditEntry {
        AuditEntry { actor: self.actor.to_string(), action, repo: self.repo.to_string(), subject: self.path_subject(), detail }
    }

    fn path_subject(&self) -> String {
        if self.path.is_empty() { ".".to_string() } else { self.path.to_string() }
    }

    fn audit(&self, action: AuditAction, detail: serde_json::Value) -> Result<(), StateError> {
        audit_append(self.db, self.entry(action, detail)).map(|_| ())
    }

    /// Closes Terraform runs a stopped reconciler left open: stops a leftover process group,
    /// records the interruption. Returns what was found (adoption then applies).
    pub async fn recover(&self, detection: &Detection) -> Result<Vec<super::Recovered>, StateError> {
        let open = open_rollouts(self.db, self.repo)?;
        let mut recovered = Vec::new();
        for intent in &open {
            // A pid recorded on another host (a replica that died there) is not this host's.
            let here = intent.host.as_deref().is_none_or(|h| h == crate::state::host_id());
            let stopped = match intent.pid {
                Some(pid) if here => self.runner.stop_leftover(pid).await,
                _ => false,
            };
            let released = self.release_own_lock(detection, intent).await?;
            let detail = json!({"phase": "recovered", "operation": intent.operation, "plan_id": intent.plan_id, "pid": intent.pid,
                "stopped_leftover": stopped, "released_lock": released});
            rollout_finish(self.db, intent.seq, "interrupted", Some(self.entry(AuditAction::Apply, detail)))?;
            let mut outcome = "interrupted".to_string();
            if stopped {
                outcome.push_str(", stopped a leftover terraform");
            }
            if let Some(id) = &released {
                outcome.push_str(&format!(", released its state lock {id}"));
            }
            let subject = intent.plan_id.clone().unwrap_or_else(|| detection.report.revision.clone());
            recovered.push(super::Recovered { operation: intent.operation.clone(), subject, outcome });
        }
        Ok(recovered)
    }

    /// Releases a state lock the interrupted run left behind — only when it is provably that
    /// run's: taken on this host at or after the journalled start of the run. Any other holder is
    /// left alone (and reported by the next plan with who and since when).
    async fn release_own_lock(&self, detection: &Detection, intent: &crate::state::RolloutIntent) -> Result<Option<String>, StateError> {
        let Some(crate::tfstate::StateSource::Platform { workspace }) = &detection.state_source else { return Ok(None) };
        let Ok(Some(lock)) = self.api.tfstate_lock(workspace).await else { return Ok(None) };
        let who = lock.get("Who").and_then(serde_json::Value::as_str).unwrap_or("");
        let created = lock.get("Created").and_then(serde_json::Value::as_str).unwrap_or("");
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        let ours = !host.is_empty() && who.ends_with(&format!("@{host}")) && created.get(..19) >= intent.started_at.get(..19);
        if !ours {
            return Ok(None);
        }
        let id = lock.get("ID").and_then(serde_json::Value::as_str).unwrap_or("").to_string();
        if self.api.tfstate_unlock(workspace, &lock).await.is_err() {
            return Ok(None);
        }
        self.audit(AuditAction::Unlock, json!({"workspace": workspace, "lock_id": id, "who": who, "created": created, "rollout": intent.seq}))?;
        Ok(Some(id))
    }

    /// Journals a Terraform write (`operation`: apply, refresh, import) before it starts.
    fn begin(&self, operation: &str, plan_id: Option<&str>, detail: &serde_json::Value, action: AuditAction) -> Result<u64, StateError> {
        let mut intent = detail.clone();
        intent["phase"] = json!("intent");
        rollout_intent(self.db, self.repo, self.path, operation, plan_id, self.entry(action, intent))
    }

    /// Records each terraform child's pid under intent `seq`.
    fn pid_recorder(&self, seq: u64) -> impl Fn(u32) + Send + Sync + '_ {
        let db = self.db;
        move |pid: u32| {
            let _ = rollout_started(db, seq, pid);
        }
    }

    /// Closes intent `seq` with the run's result, audited as `action` (or `rollout_failed`).
    fn finish(&self, seq: u64, mut detail: serde_json::Value, action: AuditAction, result: &Result<(), RolloutError>) -> Result<(), StateError> {
        match result {
            Ok(()) => {
                detail["phase"] = json!("done");
                rollout_finish(self.db, seq, "done", Some(self.entry(action, detail)))
            }
            Err(e) => {
                detail["phase"] = json!("failed");
                detail["error"] = json!(e.to_string());
                rollout_finish(self.db, seq, "failed", Some(self.entry(AuditAction::RolloutFailed, detail)))
            }
        }
    }

    /// `apply -refresh-only`: desired equals live, the state catches up.
    pub async fn refresh(&self, detection: &Detection) -> Result<Result<(), RolloutError>, StateError> {
        let behind: Vec<&str> = detection.report.resources.iter().filter(|r| r.state_behind).map(|r| r.address.as_str()).collect();
        let detail = json!({"revision": detection.report.revision, "addresses": behind});
        let seq = self.begin("refresh", None, &detail, AuditAction::Refresh)?;
        let result = self.runner.refresh(detection, &self.pid_recorder(seq)).await;
        self.finish(seq, detail, AuditAction::Refresh, &result)?;
        Ok(result)
    }

    /// Plans the revision, adopting objects a stopped run created first (then planning again).
    pub async fn plan(&self, detection: &Detection) -> Result<Result<Planned, RolloutError>, StateError> {
        let (mut bytes, mut plan) = match self.runner.plan(detection).await {
            Ok(p) => p,
            Err(e) => {
                self.audit(AuditAction::RolloutFailed, json!({"stage": "plan", "revision": detection.report.revision, "error": e.to_string()}))?;
                return Ok(Err(e));
            }
        };
        let mut adopted = Vec::new();
        let candidates = adoptable(&plan, detection);
        if !candidates.is_empty() {
            for (address, id) in &candidates {
                let detail = json!({"address": address, "object_id": id, "revision": detection.report.revision});
                let seq = self.begin("import", None, &detail, AuditAction::Adopt)?;
                let result = self.runner.import(detection, address, id, &self.pid_recorder(seq)).await;
                self.finish(seq, detail, AuditAction::Adopt, &result)?;
                if let Err(e) = result {
                    return Ok(Err(e));
                }
                adopted.push(format!("{address} = {id}"));
            }
            match self.runner.plan(detection).await {
                Ok((b, p)) => (bytes, plan) = (b, p),
                Err(e) => return Ok(Err(e)),
            }
        }
        let grade = grade_plan(&plan);
        let id = plan_id(self.repo, self.path, &detection.report.revision, &plan);
        Ok(Ok(Planned { id, bytes, plan, grade, adopted }))
    }

    /// Applies an approved pending plan exactly as saved. A stale one (the state moved since) is
    /// resolved as stale: the caller plans again and asks again.
    pub async fn apply_approved(&self, detection: &Detection, id: &str, approved_by: &str) -> Result<Option<RolloutReport>, StateError> {
        let Some(bytes) = plan_file(self.db, id)? else { return Ok(None) };
        let pending = pending_plans(self.db, Some(self.repo))?.into_iter().find(|p| p.id == id);
        let (summary, severity) = pending.map(|p| (p.summary, Some(p.severity))).unwrap_or_default();
        let revision = detection.report.revision.as_str();
        let detail = json!({"plan_id": id, "revision": revision, "severity": severity, "summary": summary, "approved_by": approved_by});
        let seq = self.begin("apply", Some(id), &detail, AuditAction::Apply)?;
        let result = self.runner.apply(detection, &bytes, &self.pid_recorder(seq)).await;
        self.finish(seq, detail, AuditAction::Apply, &result)?;
        let outcome = match result {
            Ok(()) => {
                resolve_plan(self.db, id, "applied", None)?;
                set_rolled_out(self.db, self.repo, self.path, revision)?;
                RolloutOutcome::Applied
            }
            Err(RolloutError::StalePlan) => {
                resolve_plan(self.db, id, "stale", None)?;
                return Ok(None);
            }
            Err(e) => RolloutOutcome::Failed(e.to_string()),
        };
        Ok(Some(RolloutReport {
            plan_id: id.to_string(),
            revision: revision.to_string(),
            summary,
            severity,
            approved_by: Some(approved_by.to_string()),
            adopted: Vec::new(),
            outcome,
            changes: Vec::new(),
        }))
    }

    /// Carries out the planner's decision on a planned rollout.
    pub async fn execute(&self, detection: &Detection, planned: &Planned, decision: Option<&Decision>, dry_run: bool) -> Result<RolloutReport, StateError> {
        let revision = detection.report.revision.as_str();
        let mut report = RolloutReport {
            plan_id: planned.id.clone(),
            revision: revision.to_string(),
            summary: planned.grade.to_string(),
            severity: planned.grade.severity,
            approved_by: None,
            adopted: planned.adopted.clone(),
            outcome: RolloutOutcome::NothingToDo,
            changes: planned_changes(&planned.plan, &planned.grade),
        };
        match decision {
            None => {
                if !dry_run {
                    supersede_plans(self.db, self.repo, self.path)?;
                    set_rolled_out(self.db, self.repo, self.path, revision)?;
                }
            }
            Some(Decision::ApplyPlan { approved_by, .. }) if dry_run => {
                report.approved_by = approved_by.clone();
                report.outcome = RolloutOutcome::WouldApply;
            }
            Some(Decision::ApplyPlan { approved_by, .. }) => {
                report.approved_by = approved_by.clone();
                let detail = json!({"plan_id": planned.id, "revision": revision, "severity": planned.grade.severity, "summary": report.summary, "approved_by": approved_by});
                let seq = self.begin("apply", Some(&planned.id), &detail, AuditAction::Apply)?;
                let result = self.runner.apply(detection, &planned.bytes, &self.pid_recorder(seq)).await;
                self.finish(seq, detail, AuditAction::Apply, &result)?;
                match result {
                    Ok(()) => {
                        resolve_plan(self.db, &planned.id, "applied", None)?;
                        supersede_plans(self.db, self.repo, self.path)?;
                        set_rolled_out(self.db, self.repo, self.path, revision)?;
                        report.outcome = RolloutOutcome::Applied;
                    }
                    Err(e) => {
                        if matches!(e, RolloutError::StalePlan) {
                            resolve_plan(self.db, &planned.id, "stale", None)?;
                        }
                        report.outcome = RolloutOutcome::Failed(e.to_string());
                    }
                }
            }
            Some(Decision::HoldPlan { reason, .. }) => {
                report.outcome = RolloutOutcome::Pending(reason.to_string());
                if !dry_run {
                    self.hold(detection, planned, reason, &report)?;
                }
            }
            Some(_) => {}
        }
        Ok(report)
    }

    fn hold(&self, detection: &Detection, planned: &Planned, reason: &HoldReason, report: &RolloutReport) -> Result<(), StateError> {
        let record = PlanRecord {
            id: planned.id.clone(),
            repo: self.repo.to_string(),
            path: self.path.to_string(),
            revision: detection.report.revision.clone(),
            severity: planned.grade.severity.unwrap_or(Severity::Info),
            summary: report.summary.clone(),
            changes: serde_json::to_value(&report.changes).unwrap_or_default(),
            plan: planned.bytes.clone(),
        };
        let detail =
            json!({"plan_id": planned.id, "revision": record.revision, "severity": record.severity, "summary": record.summary, "reason": reason.to_string()});
        hold_plan(self.db, &record, &reason.to_string(), self.entry(AuditAction::Plan, detail)).map(|_| ())
    }
}

/// A plan made this run.
pub struct Planned {
    /// Its id.
    pub id: String,
    /// The saved plan file.
    pub bytes: Vec<u8>,
    /// Its model.
    pub plan: PlanModel,
    /// Its grade.
    pub grade: PlanGrade,
    /// Objects adopted before it.
    pub adopted: Vec<String>,
}

impl Planned {
    /// What the planner needs to know of it.
    pub fn finding(&self, resources: &[ResourceReport]) -> RolloutFinding {
        RolloutFinding {
            plan_id: self.id.clone(),
            severity: self.grade.severity,
            deletes: self.grade.deletes,
            conflicts: conflicts_touched(&self.plan, resources),
        }
    }
}

/// Approved plans waiting for this repository path: `(id, revision, approved_by)`.
pub fn approved_plans(db: &StateDb, repo: &str, path: &str) -> Result<Vec<(String, String, String)>, StateError> {
    Ok(pending_plans(db, Some(repo))?.into_iter().filter(|p| p.path == path).filter_map(|p| p.approved_by.map(|by| (p.id, p.revision, by))).collect())
}
