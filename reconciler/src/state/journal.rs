//! The sync journal: an intent before each PATCH and its outcome after, so an interrupted sync is finished, not repeated.

use serde::Serialize;

use super::audit::append_in;
use super::sql::args;
use super::{AuditEntry, StateDb, StateError};

/// Where one revert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalState {
    /// Written before the PATCH; still open means the process stopped before recording the outcome.
    Intent,
    /// The outcome is recorded.
    Done,
}

/// How a journalled revert ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalOutcome {
    /// The PATCH was applied.
    Applied,
    /// The PATCH got 412: the object changed since it was read.
    Stale,
    /// The platform refused or failed.
    Failed,
    /// Recovered after a stop: the object was found as desired (the PATCH had been applied).
    FoundApplied,
    /// Recovered after a stop: still drifted (the PATCH had not been applied).
    NotApplied,
    /// Recovered after a stop: the object is gone.
    ObjectGone,
}

impl JournalOutcome {
    /// The name stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            JournalOutcome::Applied => "applied",
            JournalOutcome::Stale => "stale",
            JournalOutcome::Failed => "failed",
            JournalOutcome::FoundApplied => "found_applied",
            JournalOutcome::NotApplied => "not_applied",
            JournalOutcome::ObjectGone => "object_gone",
        }
    }
}

/// One revert as journalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalEntry {
    /// Position.
    pub seq: u64,
    /// The drift being reverted.
    pub drift_id: String,
    /// The repository.
    pub repo: String,
    /// The resource address.
    pub address: String,
    /// The Terraform type.
    pub kind: String,
    /// The live object's id.
    pub object_id: String,
    /// The ETag the PATCH is conditioned on.
    pub etag: String,
    /// The top-level attributes being reverted.
    pub attributes: Vec<String>,
    /// Open or done.
    pub state: JournalState,
    /// `applied`, `conflict`, `failed`, `found_applied`, ... once done.
    pub outcome: Option<String>,
}

/// Writes an intent and its audit entry in one transaction (the entry's object `detail` gets
/// `"journal": seq`); returns the sequence number for [`journal_finish`].
pub fn journal_intent(db: &StateDb, entry: &JournalEntry, audit: AuditEntry) -> Result<u64, StateError> {
    let now = db.now();
    let attributes = serde_json::to_string(&entry.attributes).unwrap_or_else(|_| "[]".into());
    db.write("write a sync intent", |tx| {
        let seq: u64 = tx
            .query_one(
                "INSERT INTO journal (drift_id, repo, address, kind, object_id, etag, attributes, state, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'intent', ?8) RETURNING seq",
                args![&entry.drift_id, &entry.repo, &entry.address, &entry.kind, &entry.object_id, &entry.etag, attributes, &now],
            )?
            .get(0)?;
        append_in(tx, with_journal(audit, seq), &now)?;
        Ok(seq)
    })
}

/// Records the outcome of intent `seq`, with its audit entry when given, in one transaction.
pub fn journal_finish(db: &StateDb, seq: u64, outcome: JournalOutcome, audit: Option<AuditEntry>) -> Result<(), StateError> {
    let now = db.now();
    db.write("record a sync outcome", |tx| {
        tx.execute("UPDATE journal SET state = 'done', outcome = ?2, finished_at = ?3 WHERE seq = ?1", args![seq, outcome.as_str(), &now])?;
        if let Some(audit) = audit {
            append_in(tx, with_journal(audit, seq), &now)?;
        }
        Ok(())
    })
}

fn with_journal(mut audit: AuditEntry, seq: u64) -> AuditEntry {
    if let Some(detail) = audit.detail.as_object_mut() {
        detail.insert("journal".into(), seq.into());
    }
    audit
}

/// Intents of `repo` that were never finished (a sync stopped between intent and outcome).
pub fn journal_open_intents(db: &StateDb, repo: &str) -> Result<Vec<JournalEntry>, StateError> {
    db.read("read open sync intents", |tx| {
        let rows = tx.query(
            "SELECT seq, drift_id, repo, address, kind, object_id, etag, attributes FROM journal WHERE repo = ?1 AND state = 'intent' ORDER BY seq",
            args![repo],
        )?;
        rows.iter()
            .map(|r| {
                let attributes: String = r.get(7)?;
                Ok(JournalEntry {
                    seq: r.get(0)?,
                    drift_id: r.get(1)?,
                    repo: r.get(2)?,
                    address: r.get(3)?,
                    kind: r.get(4)?,
                    object_id: r.get(5)?,
                    etag: r.get(6)?,
                    attributes: serde_json::from_str(&attributes).unwrap_or_default(),
                    state: JournalState::Intent,
                    outcome: None,
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_intents_until_finished() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = StateDb::open(&dir.path().join("s.db")).expect("open");
        let entry = JournalEntry {
            seq: 0,
            drift_id: "abc".into(),
            repo: "r".into(),
            address: "novacron_vm.web".into(),
            kind: "novacron_vm".into(),
            object_id: "vm-1".into(),
            etag: "\"3\"".into(),
            attributes: vec!["metadata".into()],
            state: JournalState::Intent,
            outcome: None,
        };
        let audit = |phase: &str| AuditEntry {
            actor: "a".into(),
            action: crate::state::AuditAction::Sync,
            repo: "r".into(),
            subject: "novacron_vm.web".into(),
            detail: serde_json::json!({"phase": phase}),
        };
        let seq = journal_intent(&db, &entry, audit("intent")).expect("intent");
        let open = journal_open_intents(&db, "r").expect("open");
        assert_eq!(open, vec![JournalEntry { seq, ..entry.clone() }]);
        assert!(journal_open_intents(&db, "other").expect("open").is_empty());
        journal_finish(&db, seq, JournalOutcome::Applied, Some(audit("done"))).expect("finish");
        assert!(journal_open_intents(&db, "r").expect("open").is_empty());
        let entries = crate::state::audit_list(&db, None).expect("audit");
        assert_eq!(
            entries.iter().map(|e| (e.detail["phase"].as_str(), e.detail["journal"].as_u64())).collect::<Vec<_>>(),
            [(Some("intent"), Some(seq)), (Some("done"), Some(seq))]
        );
    }
}
