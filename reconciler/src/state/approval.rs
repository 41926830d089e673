//! Drifts awaiting a decision: recorded by each sync under a stable id, approved by a person, resolved when gone.

use novacron_schemas::Severity;
use serde::Serialize;
use serde_json::json;

use super::sql::{DbError, Row, args};
use super::{AuditEntry, StateDb, StateError};

/// A drift as a sync saw it, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftRecord {
    /// Stable id: short hex of SHA-256 over repo, address, desired and live hash.
    pub id: String,
    /// The resource address.
    pub address: String,
    /// The Terraform type.
    pub kind: String,
    /// The live object's id.
    pub object_id: String,
    /// Its severity.
    pub severity: Severity,
    /// `sha256:` of the desired canonical form.
    pub desired_hash: String,
    /// `sha256:` of the live canonical form.
    pub live_hash: String,
}

/// A drift that is not resolved yet, approved or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingDrift {
    /// Its stable id (what `approve` takes).
    pub id: String,
    /// The repository.
    pub repo: String,
    /// The resource address.
    pub address: String,
    /// The live object's id.
    pub object_id: String,
    /// Its severity.
    pub severity: Severity,
    /// When a sync first saw it.
    pub created_at: String,
    /// Who approved its revert, when someone did.
    pub approved_by: Option<String>,
    /// When.
    pub approved_at: Option<String>,
}

/// Why an approval was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// No unresolved drift has that id.
    #[error("no drift awaiting approval has id {id:?}; list them with `novacron-reconcile approvals list`")]
    UnknownId {
        /// The id given.
        id: String,
    },
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
}

const PENDING_COLUMNS: &str = "id, repo, address, object_id, severity, created_at, approved_by, approved_at";

fn pending_row(r: &Row) -> Result<PendingDrift, DbError> {
    let severity: String = r.get(4)?;
    Ok(PendingDrift {
        id: r.get(0)?,
        repo: r.get(1)?,
        address: r.get(2)?,
        object_id: r.get(3)?,
        severity: severity.parse().unwrap_or(Severity::Critical),
        created_at: r.get(5)?,
        approved_by: r.get(6)?,
        approved_at: r.get(7)?,
    })
}

/// Unresolved drifts (of one repository, or all), oldest first.
pub fn pending_approvals(db: &StateDb, repo: Option<&str>) -> Result<Vec<PendingDrift>, StateError> {
    let sql = format!("SELECT {PENDING_COLUMNS} FROM drifts WHERE resolved_at IS NULL AND repo = COALESCE(?1, repo) ORDER BY created_at, id");
    db.read("list drifts awaiting approval", |tx| tx.query(&sql, args![repo])?.iter().map(pending_row).collect())
}

/// Approves the revert of drift `id`; the next sync carries it out. Recorded with who and
/// when, and in the audit log. Approving twice keeps the first approval.
pub fn approve(db: &StateDb, id: &str, actor: &str) -> Result<PendingDrift, ApprovalError> {
    let now = db.now();
    // The approval and its audit entry commit together: no approval without its record.
    let drift = db.write("approve a drift", |tx| {
        tx.execute(
            "UPDATE drifts SET approved_by = ?2, approved_at = ?3 WHERE id = ?1 AND resolved_at IS NULL AND approved_by IS NULL",
            args![id, actor, &now],
        )?;
        let sql = format!("SELECT {PENDING_COLUMNS} FROM drifts WHERE id = ?1 AND resolved_at IS NULL");
        let Some(drift) = tx.query_opt(&sql, args![id])?.as_ref().map(pending_row).transpose()? else { return Ok(None) };
        // Every approval call is recorded, a repeated one too (who asked, and that the first stands).
        let entry = AuditEntry {
            actor: actor.to_string(),
            action: super::AuditAction::Approve,
            repo: drift.repo.clone(),
            subject: drift.address.clone(),
            detail: json!({"drift_id": drift.id, "severity": drift.severity, "object_id": drift.object_id, "approved_by": drift.approved_by}),
        };
        super::audit::append_in(tx, entry, &now)?;
        Ok(Some(drift))
    })?;
    drift.ok_or_else(|| ApprovalError::UnknownId { id: id.to_string() })
}

/// Records the drifts one sync of `repo` saw: new ones are inserted (and returned), known ones
/// touched; unresolved drifts of `repo` not in `seen` are resolved as `gone`.
pub fn record_drifts(db: &StateDb, repo: &str, seen: &[DriftRecord]) -> Result<Vec<DriftRecord>, StateError> {
    let at = db.now();
    db.write("record drifts", |tx| {
        let mut new = Vec::new();
        for d in seen {
            let changed = tx.execute(
                "INSERT INTO drifts (id, repo, address, kind, object_id, severity, desired_hash, live_hash, created_at, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9) ON CONFLICT(id) DO NOTHING",
                args![&d.id, repo, &d.address, &d.kind, &d.object_id, d.severity.as_str(), &d.desired_hash, &d.live_hash, &at],
            )?;
            if changed == 1 {
                new.push(d.clone());
            } else {
                // Seen again after being resolved (e.g. reverted, then changed back the same way): open it again.
                tx.execute("UPDATE drifts SET last_seen = ?2, resolved_at = NULL, resolution = NULL WHERE id = ?1", args![&d.id, &at])?;
            }
        }
        let ids: Vec<&str> = seen.iter().map(|d| d.id.as_str()).collect();
        let open: Vec<String> =
            tx.query("SELECT id FROM drifts WHERE repo = ?1 AND resolved_at IS NULL", args![repo])?.iter().map(|r| r.get(0)).collect::<Result<_, _>>()?;
        for id in open.iter().filter(|id| !ids.contains(&id.as_str())) {
            tx.execute("UPDATE drifts SET resolved_at = ?2, resolution = 'gone' WHERE id = ?1", args![id, &at])?;
        }
        Ok(new)
    })
}

/// Records missing and unmanaged objects (`(id, address, status)`) a sync of `repo` saw; returns
/// those never seen before, which get a `detect` audit entry. They await no approval: the
/// reconciler never creates or deletes objects.
pub fn record_findings(db: &StateDb, repo: &str, seen: &[(String, String, String)]) -> Result<Vec<(String, String, String)>, StateError> {
    let at = db.now();
    db.write("record findings", |tx| {
        let mut new = Vec::new();
        for (id, address, status) in seen {
            let inserted = tx.execute(
                "INSERT INTO findings (id, repo, address, status, first_seen) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(id) DO NOTHING",
                args![id, repo, address, status, &at],
            )?;
            if inserted == 1 {
                new.push((id.clone(), address.clone(), status.clone()));
            }
        }
        Ok(new)
    })
}

/// Marks drift `id` resolved (`reverted`, ...).
pub fn resolve_drift(db: &StateDb, id: &str, resolution: &str) -> Result<(), StateError> {
    let now = db.now();
    db.write("resolve a drift", |tx| tx.execute("UPDATE drifts SET resolved_at = ?2, resolution = ?3 WHERE id = ?1", args![id, &now, resolution]).map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::audit_list;

    fn drift(id: &str, severity: Severity) -> DriftRecord {
        DriftRecord {
            id: id.into(),
            address: format!("novacron_policy.{id}"),
            kind: "novacron_policy".into(),
            object_id: format!("pol-{id}"),
            severity,
            desired_hash: "sha256:a".into(),
            live_hash: "sha256:b".into(),
        }
    }

    #[test]
    fn record_approve_and_resolve() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = StateDb::open(&dir.path().join("s.db")).expect("open");
        let new = record_drifts(&db, "r", &[drift("a1", Severity::Critical), drift("b2", Severity::High)]).expect("record");
        assert_eq!(new.len(), 2);
        assert!(record_drifts(&db, "r", &[drift("a1", Severity::Critical), drift("b2", Severity::High)]).expect("again").is_empty());
        let approved = approve(&db, "a1", "alice").expect("approve");
        assert_eq!(approved.approved_by.as_deref(), Some("alice"));
        assert_eq!(approve(&db, "a1", "bob").expect("twice").approved_by.as_deref(), Some("alice"));
        let err = approve(&db, "nope", "alice").expect_err("unknown");
        assert!(err.to_string().contains("\"nope\"") && err.to_string().contains("novacron-reconcile approvals list"), "{err}");
        record_drifts(&db, "r", &[drift("a1", Severity::Critical)]).expect("b2 gone");
        let pending = pending_approvals(&db, Some("r")).expect("pending");
        assert_eq!(pending.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["a1"]);
        resolve_drift(&db, "a1", "reverted").expect("resolve");
        assert!(pending_approvals(&db, None).expect("pending").is_empty());
        assert!(matches!(approve(&db, "a1", "alice"), Err(ApprovalError::UnknownId { .. })));
        assert_eq!(audit_list(&db, None).expect("audit").iter().filter(|e| e.action == "approve").count(), 2);
        let stray = ("c3".to_string(), "novacron_vm.stray".to_string(), "unmanaged".to_string());
        assert_eq!(record_findings(&db, "r", std::slice::from_ref(&stray)).expect("findings"), vec![stray.clone()]);
        assert!(record_findings(&db, "r", &[stray]).expect("again").is_empty());
        assert!(pending_approvals(&db, None).expect("pending").is_empty(), "findings await no approval");
    }
}
