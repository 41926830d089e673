//! The hash-chained audit log: each entry holds the SHA-256 of the one before, so an edit breaks the chain.

use novacron_schemas::{canonical_json, sha256_hex};
use serde::Serialize;
use serde_json::{Value, json};

use super::sql::{DbError, Row, Tx, args};
use super::{StateDb, StateError};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A drift or finding first seen.
    Detect,
    /// A revert: its intent, outcome or recovery (`detail.phase`).
    Sync,
    /// A revert not sent because the object changed again meanwhile.
    SyncConflict,
    /// An approval of a drift or a plan.
    Approve,
    /// A remediation branch pushed.
    Push,
    /// A remediation pull request opened or changed.
    PullRequest,
    /// A failure that did not stop the run (`detail.stage`).
    Error,
    /// A rollout planned by Terraform and held for approval.
    Plan,
    /// A saved plan applied by Terraform (its intent and outcome, `detail.phase`).
    Apply,
    /// Terraform's state refreshed (`apply -refresh-only`) because desired already equals live.
    Refresh,
    /// An object adopted into Terraform's state (`terraform import`) before re-planning.
    Adopt,
    /// A state lock the reconciler's own stopped run left behind, released.
    Unlock,
    /// A rollout that failed (configuration rejected, lock held, platform error).
    RolloutFailed,
    /// A pull request reviewed: its head planned, the comment and status posted.
    Review,
}

impl AuditAction {
    /// The name stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Detect => "detect",
            AuditAction::Sync => "sync",
            AuditAction::SyncConflict => "sync_conflict",
            AuditAction::Approve => "approve",
            AuditAction::Push => "push",
            AuditAction::PullRequest => "pull_request",
            AuditAction::Error => "error",
            AuditAction::Plan => "plan",
            AuditAction::Review => "review",
            AuditAction::Apply => "apply",
            AuditAction::Refresh => "refresh",
            AuditAction::Adopt => "adopt",
            AuditAction::Unlock => "unlock",
            AuditAction::RolloutFailed => "rollout_failed",
        }
    }
}

/// What to append. `detail` must never hold a sensitive value.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Who: a person (`--actor`) or the service.
    pub actor: String,
    /// What.
    pub action: AuditAction,
    /// The desired-state repository (credentials redacted).
    pub repo: String,
    /// What it is about: a resource address, a drift id, a branch.
    pub subject: String,
    /// Anything else, as JSON.
    pub detail: Value,
}

/// An entry as stored, with its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// Position, from 1.
    pub seq: u64,
    /// When (RFC 3339 UTC).
    pub time: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// The repository.
    pub repo: String,
    /// What it is about.
    pub subject: String,
    /// Anything else.
    pub detail: Value,
    /// The hash of the entry before (zeros for the first).
    pub prev_hash: String,
    /// SHA-256 of the canonical JSON of this entry, `prev_hash` included.
    pub hash: String,
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyOutcome {
    /// True when every entry's hash and link are right.
    pub ok: bool,
    /// Entries checked.
    pub entries: u64,
    /// The first entry whose content or link does not match.
    pub first_bad: Option<u64>,
}

impl AuditRecord {
    /// The hash this entry should have.
    fn expected_hash(&self) -> String {
        let body = json!({
            "seq": self.seq, "time": self.time, "actor": self.actor, "action": self.action,
            "repo": self.repo, "subject": self.subject, "detail": self.detail, "prev_hash": self.prev_hash,
        });
        sha256_hex(canonical_json(&body).as_bytes())
    }
}

/// The hash `record` should have (for tests that build a chain by hand).
#[cfg(test)]
pub(super) fn expected_hash_of(record: &AuditRecord) -> String {
    record.expected_hash()
}

/// Appends an entry at the end of the chain, in one transaction.
pub fn audit_append(db: &StateDb, entry: AuditEntry) -> Result<AuditRecord, StateError> {
    let now = db.now();
    db.write("append to the audit log", |tx| append_in(tx, entry, &now))
}

/// Appends an entry inside the caller's write transaction, so it commits with what it records.
/// The chain's head row is locked first: appends from several processes (replicas sharing
/// PostgreSQL, the CLI beside `serve`) take turns, and each links to the one before.
pub(super) fn append_in(tx: &mut Tx<'_>, entry: AuditEntry, time: &str) -> Result<AuditRecord, DbError> {
    let head = tx.query_opt("SELECT seq, hash FROM audit_head WHERE id = 1{for_update}", args![])?;
    let (seq, prev_hash) = match head {
        Some(r) => (r.get::<u64>(0)? + 1, r.get::<String>(1)?),
        None => (1, GENESIS_HASH.to_string()),
    };
    let mut record = AuditRecord {
        seq,
        time: time.to_string(),
        actor: entry.actor,
        action: entry.action.as_str().to_string(),
        repo: entry.repo,
        subject: entry.subject,
        detail: entry.detail,
        prev_hash,
        hash: String::new(),
    };
    record.hash = record.expected_hash();
    tx.execute(
        "INSERT INTO audit (seq, time, actor, action, repo, subject, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        args![
            record.seq,
            &record.time,
            &record.actor,
            &record.action,
            &record.repo,
            &record.subject,
            canonical_json(&record.detail),
            &record.prev_hash,
            &record.hash
        ],
    )?;
    tx.execute(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?1, ?2) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        args![record.seq, &record.hash],
    )?;
    Ok(record)
}

fn record_row(r: &Row) -> Result<AuditRecord, DbError> {
    let detail: String = r.get(6)?;
    Ok(AuditRecord {
        seq: r.get(0)?,
        time: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        repo: r.get(4)?,
        subject: r.get(5)?,
        // A detail that is not JSON any more (tampered) is kept as text so verify flags it.
        detail: serde_json::from_str(&detail).unwrap_or(Value::String(detail)),
        prev_hash: r.get(7)?,
        hash: r.get(8)?,
    })
}

/// Up to `limit` entries, newest first, skipping the `offset` newest (`limit` `None`: all).
fn read_newest(db: &StateDb, offset: u64, limit: Option<u64>) -> Result<Vec<AuditRecord>, StateError> {
    db.read("read the audit log", |tx| {
        let sql = "SELECT seq, time, actor, action, repo, subject, detail, prev_hash, hash FROM audit ORDER BY seq DESC LIMIT ?1 OFFSET ?2";
        tx.query(sql, args![limit.unwrap_or(u64::MAX), offset])?.iter().map(record_row).collect()
    })
}

fn read_all(db: &StateDb, limit: Option<u64>) -> Result<Vec<AuditRecord>, StateError> {
    // With a limit: the newest `limit` entries, returned oldest first.
    let mut out = read_newest(db, 0, limit)?;
    out.reverse();
    Ok(out)
}

/// One page of the log, newest first: `limit` entries after skipping the `offset` newest, and
/// how many entries the log holds.
pub fn audit_page(db: &StateDb, offset: u64, limit: u64) -> Result<(Vec<AuditRecord>, u64), StateError> {
    let total: u64 = db.read("count the audit log", |tx| tx.query_one("SELECT COUNT(*) FROM audit", args![])?.get(0))?;
    Ok((read_newest(db, offset, Some(limit))?, total))
}

/// The newest `limit` entries (all when `None`), oldest first.
pub fn audit_list(db: &StateDb, limit: Option<u64>) -> Result<Vec<AuditRecord>, StateError> {
    read_all(db, limit)
}

/// Recomputes every hash and link; names the first entry that does not match.
pub fn audit_verify(db: &StateDb) -> Result<VerifyOutcome, StateError> {
    let all = read_all(db, None)?;
    let mut prev = GENESIS_HASH.to_string();
    for (expected_seq, record) in (1u64..).zip(all.iter()) {
        if record.seq != expected_seq || record.prev_hash != prev || record.hash != record.expected_hash() {
            return Ok(VerifyOutcome { ok: false, entries: all.len() as u64, first_bad: Some(expected_seq.min(record.seq)) });
        }
        prev = record.hash.clone();
    }
    Ok(VerifyOutcome { ok: true, entries: all.len() as u64, first_bad: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: AuditAction, n: u32) -> AuditEntry {
        AuditEntry { actor: "alice".into(), action, repo: "file:///r".into(), subject: format!("novacron_vm.web{n}"), detail: json!({"n": n}) }
    }

    #[test]
    fn chain_links_and_verifies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = StateDb::open(&dir.path().join("s.db")).expect("open");
        assert_eq!(audit_verify(&db).expect("verify"), VerifyOutcome { ok: true, entries: 0, first_bad: None });
        let a = audit_append(&db, entry(AuditAction::Detect, 1)).expect("append");
        let b = audit_append(&db, entry(AuditAction::Sync, 2)).expect("append");
        assert_eq!(a.prev_hash, GENESIS_HASH);
        assert_eq!(b.prev_hash, a.hash);
        assert_eq!(audit_list(&db, Some(1)).expect("list"), vec![b.clone()]);
        assert_eq!(audit_list(&db, None).expect("list").len(), 2);
        assert!(audit_verify(&db).expect("verify").ok);
        let (page, total) = audit_page(&db, 1, 5).expect("page");
        assert_eq!((page, total), (vec![a], 2), "the second newest first, then nothing more");
    }

    #[test]
    fn an_edited_or_deleted_entry_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = StateDb::open(&dir.path().join("s.db")).expect("open");
        for n in 1..=4 {
            audit_append(&db, entry(AuditAction::Sync, n)).expect("append");
        }
        db.conn().execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3", []).expect("tamper");
        assert_eq!(audit_verify(&db).expect("verify"), VerifyOutcome { ok: false, entries: 4, first_bad: Some(3) });
        db.conn().execute("UPDATE audit SET actor = 'alice' WHERE seq = 3", []).expect("restore");
        assert!(audit_verify(&db).expect("verify").ok);
        db.conn().execute("DELETE FROM audit WHERE seq = 2", []).expect("delete");
        assert_eq!(audit_verify(&db).expect("verify").first_bad, Some(2));
    }
}
