//! Pending rollout plans (saved Terraform plans awaiting approval), the rollout journal, and which revision each repository path last rolled out.

use novacron_schemas::Severity;
use serde::Serialize;
use serde_json::json;

use super::audit::append_in;
use super::sql::{DbError, Row, args};
use super::{AuditEntry, StateDb, StateError};

/// A saved plan as a sync made it, to be recorded.
#[derive(Clone)]
pub struct PlanRecord {
    /// `plan-<12 hex>`: the same plan of the same revision gets the same id.
    pub id: String,
    /// The repository (as the state records it, without credentials).
    pub repo: String,
    /// The configuration's directory in the repository.
    pub path: String,
    /// The commit planned.
    pub revision: String,
    /// The plan's severity.
    pub severity: Severity,
    /// One line: `1 to add, 2 to change, 0 to destroy: 1 critical, 2 low`.
    pub summary: String,
    /// The graded changes as JSON (sensitive values already hidden).
    pub changes: serde_json::Value,
    /// The saved plan file, applied as is once approved.
    pub plan: Vec<u8>,
}

/// The plan file may hold sensitive planned values: never printed.
impl std::fmt::Debug for PlanRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanRecord")
            .field("id", &self.id)
            .field("repo", &self.repo)
            .field("revision", &self.revision)
            .field("severity", &self.severity)
            .finish_non_exhaustive()
    }
}

/// A plan that is neither applied nor superseded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingPlan {
    /// Its id (what `approve` takes).
    pub id: String,
    /// The repository.
    pub repo: String,
    /// The configuration's directory.
    pub path: String,
    /// The commit it plans.
    pub revision: String,
    /// Its severity.
    pub severity: Severity,
    /// Its one-line summary.
    pub summary: String,
    /// Why it waits.
    pub reason: String,
    /// When a sync first made it.
    pub created_at: String,
    /// Who approved it, when someone did.
    pub approved_by: Option<String>,
    /// When.
    pub approved_at: Option<String>,
}

const COLUMNS: &str = "id, repo, path, revision, severity, summary, reason, created_at, approved_by, approved_at";

fn row(r: &Row) -> Result<PendingPlan, DbError> {
    let severity: String = r.get(4)?;
    Ok(PendingPlan {
        id: r.get(0)?,
        repo: r.get(1)?,
        path: r.get(2)?,
        revision: r.get(3)?,
        severity: severity.parse().unwrap_or(Severity::Critical),
        summary: r.get(5)?,
        reason: r.get(6)?,
        created_at: r.get(7)?,
        approved_by: r.get(8)?,
        approved_at: r.get(9)?,
    })
}

/// Records `plan` as pending with `reason` and its audit entry, in one transaction; older pending
/// plans of the same repository path are superseded. Returns false when this plan was pending
/// already (nothing is written: a repeated run makes no audit noise).
pub fn hold_plan(db: &StateDb, plan: &PlanRecord, reason: &str, audit: AuditEntry) -> Result<bool, StateError> {
    let at = db.now();
    db.write("record a pending plan", |tx| {
        if tx.query_opt("SELECT id FROM plans WHERE id = ?1 AND resolved_at IS NULL", args![&plan.id])?.is_some() {
            tx.execute("UPDATE plans SET reason = ?2 WHERE id = ?1", args![&plan.id, reason])?;
            return Ok(false);
        }
        tx.execute(
            "UPDATE plans SET resolved_at = ?3, resolution = 'superseded' WHERE repo = ?1 AND path = ?2 AND resolved_at IS NULL",
            args![&plan.repo, &plan.path, &at],
        )?;
        tx.execute(
            "INSERT INTO plans (id, repo, path, revision, severity, summary, reason, changes, plan, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(id) DO UPDATE SET reason = excluded.reason, plan = excluded.plan, created_at = excluded.created_at, resolved_at = NULL, resolution = NULL, approved_by = NULL, approved_at = NULL",
            args![&plan.id, &plan.repo, &plan.path, &plan.revision, plan.severity.as_str(), &plan.summary, reason, plan.changes.to_string(), plan.plan.as_slice(), &at],
        )?;
        append_in(tx, audit, &at)?;
        Ok(true)
    })
}

/// Pending plans (of one repository, or all), oldest first.
pub fn pending_plans(db: &StateDb, repo: Option<&str>) -> Result<Vec<PendingPlan>, StateError> {
    let sql = format!("SELECT {COLUMNS} FROM plans WHERE resolved_at IS NULL AND repo = COALESCE(?1, repo) ORDER BY created_at, id");
    db.read("list pending plans", |tx| tx.query(&sql, args![repo])?.iter().map(row).collect())
}

/// The saved plan file of a pending plan.
pub fn plan_file(db: &StateDb, id: &str) -> Result<Option<Vec<u8>>, StateError> {
    db.read("read a saved plan", |tx| tx.query_opt("SELECT plan FROM plans WHERE id = ?1 AND resolved_at IS NULL", args![id])?.map(|r| r.get(0)).transpose())
}

/// Approves pending plan `id` (the first approval stands); audited in the same transaction.
/// `None` when no pending plan has that id.
pub fn approve_plan(db: &StateDb, id: &str, actor: &str) -> Result<Option<PendingPlan>, StateError> {
    let now = db.now();
    db.write("approve a plan", |tx| {
        tx.execute(
            "UPDATE plans SET approved_by = ?2, approved_at = ?3 WHERE id = ?1 AND resolved_at IS NULL AND approved_by IS NULL",
            args![id, actor, &now],
        )?;
        let sql = format!("SELECT {COLUMNS} FROM plans WHERE id = ?1 AND resolved_at IS NULL");
        let Some(plan) = tx.query_opt(&sql, args![id])?.as_ref().map(row).transpose()? else { return Ok(None) };
        let entry = AuditEntry {
            actor: actor.to_string(),
            action: super::AuditAction::Approve,
            repo: plan.repo.clone(),
            subject: plan.path.clone(),
            detail: json!({"plan_id": plan.id, "severity": plan.severity, "revision": plan.revision, "approved_by": plan.approved_by}),
        };
        append_in(tx, entry, &now)?;
        Ok(Some(plan))
    })
}

/// Resolves plan `id` (`applied`, `stale`, `failed`, `superseded`) with its audit entry.
pub fn resolve_plan(db: &StateDb, id: &str, resolution: &str, audit: Option<AuditEntry>) -> Result<(), StateError> {
    let now = db.now();
    db.write("resolve a plan", |tx| {
        tx.execute("UPDATE plans SET resolved_at = ?2, resolution = ?3 WHERE id = ?1 AND resolved_at IS NULL", args![id, &now, resolution])?;
        if let Some(audit) = audit {
            append_in(tx, audit, &now)?;
        }
        Ok(())
    })
}

/// Resolves every pending plan of a repository path (a newer revision planned nothing).
pub fn supersede_plans(db: &StateDb, repo: &str, path: &str) -> Result<(), StateError> {
    let now = db.now();
    db.write("supersede plans", |tx| {
        tx.execute(
            "UPDATE plans SET resolved_at = ?3, resolution = 'superseded' WHERE repo = ?1 AND path = ?2 AND resolved_at IS NULL",
            args![repo, path, &now],
        )
        .map(|_| ())
    })
}

/// The revision a repository path last rolled out completely (its plan applied, or nothing to do).
pub fn rolled_out_revision(db: &StateDb, repo: &str, path: &str) -> Result<Option<String>, StateError> {
    db.read("read the rolled-out revision", |tx| {
        tx.query_opt("SELECT revision FROM rolled_out WHERE repo = ?1 AND path = ?2", args![repo, path])?.map(|r| r.get(0)).transpose()
    })
}

/// Records that `revision` is rolled out for a repository path.
pub fn set_rolled_out(db: &StateDb, repo: &str, path: &str, revision: &str) -> Result<(), StateError> {
    let now = db.now();
    db.write("record the rolled-out revision", |tx| {
        tx.execute(
            "INSERT INTO rolled_out (repo, path, revision, at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(repo, path) DO UPDATE SET revision = excluded.revision, at = excluded.at",
            args![repo, path, revision, &now],
        )
        .map(|_| ())
    })
}

/// A Terraform run that writes (apply, refresh, import) as journalled before it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutIntent {
    /// Position.
    pub seq: u64,
    /// The repository.
    pub repo: String,
    /// The configuration's directory.
    pub path: String,
    /// `apply`, `refresh` or `import`.
    pub operation: String,
    /// The plan applied, if any.
    pub plan_id: Option<String>,
    /// The Terraform process (its own process group), once started.
    pub pid: Option<u32>,
    /// The host it runs on ([`host_id`]); `None` for runs journalled before hosts were recorded.
    pub host: Option<String>,
    /// When it was written.
    pub started_at: String,
}

/// Journals a Terraform run before it starts, with its audit entry, in one transaction.
pub fn rollout_intent(db: &StateDb, repo: &str, path: &str, operation: &str, plan_id: Option<&str>, audit: AuditEntry) -> Result<u64, StateError> {
    let now = db.now();
    db.write("journal a Terraform run", |tx| {
        let seq: u64 = tx
            .query_one(
                "INSERT INTO rollouts (repo, path, operation, plan_id, started_at) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING seq",
                args![repo, path, operation, plan_id, &now],
            )?
            .get(0)?;
        append_in(tx, audit, &now)?;
        Ok(seq)
    })
}

/// Records the pid of the Terraform process of intent `seq`, and this host.
pub fn rollout_started(db: &StateDb, seq: u64, pid: u32) -> Result<(), StateError> {
    let host = host_id();
    db.write("journal a Terraform pid", |tx| tx.execute("UPDATE rollouts SET pid = ?2, host = ?3 WHERE seq = ?1", args![seq, pid, host]).map(|_| ()))
}

/// This machine (or container): its host name and the kernel's boot id. A pid means something
/// only where it was recorded.
pub fn host_id() -> String {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
    format!("{}/{}", read("/proc/sys/kernel/hostname"), read("/proc/sys/kernel/random/boot_id"))
}

/// Closes intent `seq` with `outcome` and its audit entry.
pub fn rollout_finish(db: &StateDb, seq: u64, outcome: &str, audit: Option<AuditEntry>) -> Result<(), StateError> {
    let now = db.now();
    db.write("close a Terraform run", |tx| {
        tx.execute("UPDATE rollouts SET finished_at = ?2, outcome = ?3 WHERE seq = ?1", args![seq, &now, outcome])?;
        if let Some(audit) = audit {
            append_in(tx, audit, &now)?;
        }
        Ok(())
    })
}

/// Terraform runs of a repository that never closed: the process stopped mid-run.
pub fn open_rollouts(db: &StateDb, repo: &str) -> Result<Vec<RolloutIntent>, StateError> {
    db.read("list open Terraform runs", |tx| {
        let rows = tx.query(
            "SELECT seq, repo, path, operation, plan_id, pid, started_at, host FROM rollouts WHERE repo = ?1 AND finished_at IS NULL ORDER BY seq",
            args![repo],
        )?;
        rows.iter()
            .map(|r| {
                Ok(RolloutIntent {
                    seq: r.get(0)?,
                    repo: r.get(1)?,
                    path: r.get(2)?,
                    operation: r.get(3)?,
                    plan_id: r.get(4)?,
                    pid: r.get(5)?,
                    started_at: r.get(6)?,
                    host: r.get(7)?,
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::audit_verify;

    fn record(id: &str) -> PlanRecord {
        PlanRecord {
            id: id.into(),
            repo: "file:///r".into(),
            path: "".into(),
            revision: "abc".into(),
            severity: Severity::Critical,
            summary: "1 to change: 1 critical".into(),
            changes: json!([]),
            plan: vec![1, 2, 3],
        }
    }

    fn audit(action: crate::state::AuditAction) -> AuditEntry {
        AuditEntry { actor: "t".into(), action, repo: "file:///r".into(), subject: "".into(), detail: json!({}) }
    }

    #[test]
    fn a_plan_waits_once_is_approved_once_and_a_newer_one_supersedes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = StateDb::open(&dir.path().join("s.db")).expect("open");
        assert!(hold_plan(&db, &record("plan-a"), "awaiting approval", audit(crate::state::AuditAction::Plan)).expect("hold"));
        assert!(!hold_plan(&db, &record("plan-a"), "awaiting approval", audit(crate::state::AuditAction::Plan)).expect("again"), "no second record");
        assert_eq!(plan_file(&db, "plan-a").expect("file"), Some(vec![1, 2, 3]));
        let approved = approve_plan(&db, "plan-a", "alice").expect("approve").expect("known");
        assert_eq!(approved.approved_by.as_deref(), Some("alice"));
        assert_eq!(approve_plan(&db, "plan-a", "bob").expect("approve").expect("known").approved_by.as_deref(), Some("alice"), "the first stands");
        assert!(approve_plan(&db, "plan-zzz", "bob").expect("approve").is_none());
        assert!(hold_plan(&db, &record("plan-b"), "awaiting approval", audit(crate::state::AuditAction::Plan)).expect("hold"));
        let pending = pending_plans(&db, None).expect("list");
        assert_eq!(pending.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["plan-b"]);
        resolve_plan(&db, "plan-b", "applied", Some(audit(crate::state::AuditAction::Apply))).expect("resolve");
        assert!(pending_plans(&db, None).expect("list").is_empty());
        assert_eq!(audit_verify(&db).expect("verify").first_bad, None);
    }

    #[test]
    fn rollouts_are_journalled_and_revisions_remembered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = StateDb::open(&dir.path().join("s.db")).expect("open");
        let seq = rollout_intent(&db, "r", "", "apply", Some("plan-a"), audit(crate::state::AuditAction::Apply)).expect("intent");
        rollout_started(&db, seq, 4242).expect("pid");
        let open = open_rollouts(&db, "r").expect("open");
        assert_eq!((open.len(), open[0].pid, open[0].plan_id.as_deref()), (1, Some(4242), Some("plan-a")));
        rollout_finish(&db, seq, "applied", None).expect("finish");
        assert!(open_rollouts(&db, "r").expect("open").is_empty());
        assert_eq!(rolled_out_revision(&db, "r", "").expect("read"), None);
        set_rolled_out(&db, "r", "", "abc").expect("set");
        set_rolled_out(&db, "r", "", "def").expect("set");
        assert_eq!(rolled_out_revision(&db, "r", "").expect("read").as_deref(), Some("def"));
    }
}
