//! The reconciler's state database (SQLite, WAL): audit log, drifts awaiting approval, sync journal.

mod approval;
mod audit;
mod journal;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub use approval::{ApprovalError, DriftRecord, PendingDrift, approve, pending_approvals, record_drifts, record_findings, resolve_drift};
pub use audit::{AuditEntry, AuditRecord, VerifyOutcome, audit_append, audit_list, audit_verify};
pub use journal::{JournalEntry, JournalState, journal_finish, journal_intent, journal_open_intents};
use rusqlite::Connection;

/// The default `--state` file, relative to the working directory.
pub const DEFAULT_STATE_PATH: &str = ".novacron-reconcile/state.db";

/// Why the state database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be opened or created.
    #[error("state database {}: cannot open: {detail}; check --state", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What SQLite or the file system said.
        detail: String,
    },
    /// A query failed.
    #[error("state database {}: {operation}: {source}", path.display())]
    Query {
        /// The file.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// What SQLite said.
        source: rusqlite::Error,
    },
}

/// An open state database. One connection behind a mutex: every operation is a short transaction.
#[derive(Debug)]
pub struct StateDb {
    path: PathBuf,
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    repo TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS drifts (
    id TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    address TEXT NOT NULL,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    desired_hash TEXT NOT NULL,
    live_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    approved_by TEXT,
    approved_at TEXT,
    resolved_at TEXT,
    resolution TEXT
);
CREATE INDEX IF NOT EXISTS drifts_open ON drifts (repo, resolved_at);
CREATE TABLE IF NOT EXISTS findings (
    id TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    address TEXT NOT NULL,
    status TEXT NOT NULL,
    first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    drift_id TEXT NOT NULL,
    repo TEXT NOT NULL,
    address TEXT NOT NULL,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    etag TEXT NOT NULL,
    attributes TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT
);
";

impl StateDb {
    /// Opens (creating it and its directory when absent) the state database at `path`, in WAL mode.
    pub fn open(path: &Path) -> Result<StateDb, StateError> {
        let open_err = |detail: String| StateError::Open { path: path.to_path_buf(), detail };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| open_err(e.to_string()))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| open_err(e.to_string()))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(|e| open_err(e.to_string()))?;
        conn.execute_batch(SCHEMA).map_err(|e| open_err(e.to_string()))?;
        Ok(StateDb { path: path.to_path_buf(), conn: Mutex::new(conn) })
    }

    /// The file this database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection; a poisoned lock is taken over (every operation is its own transaction).
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A closure turning a SQLite error into a [`StateError::Query`] for `operation`.
    fn query_err(&self, operation: &'static str) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        move |source| StateError::Query { path: self.path.clone(), operation, source }
    }
}

/// The current time as RFC 3339 UTC.
fn now() -> String {
    crate::report::now_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_twice_and_creates_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/state.db");
        let db = StateDb::open(&path).expect("open");
        drop(db);
        let db = StateDb::open(&path).expect("reopen");
        assert_eq!(db.path(), path);
        let mode: String = db.conn().query_row("PRAGMA journal_mode", [], |r| r.get(0)).expect("pragma");
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        std::fs::write(&path, "not sqlite at all, just text that is long enough to look like a header").expect("write");
        let err = StateDb::open(&path).expect_err("refused");
        assert!(err.to_string().contains("check --state"), "{err}");
    }
}
