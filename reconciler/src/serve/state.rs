//! What `serve` keeps across restarts (per-repo revision and last run, the event-feed position, webhook deliveries) and the lock that keeps a second instance off the same state.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

/// How many webhook delivery ids are remembered for replay detection.
pub const DELIVERIES_KEPT: i64 = 10_000;

/// Why the state could not be opened, locked, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process holds the lock.
    #[error("state {state} is in use by another novacron-reconcile serve ({holder}, lock file {lock}); stop it or point --state elsewhere")]
    Locked {
        /// The state database.
        state: String,
        /// `pid N` as written in the lock file, or `pid unknown`.
        holder: String,
        /// The lock file.
        lock: String,
    },
    /// The lock file could not be created or locked.
    #[error("state lock {lock}: {source}")]
    LockIo {
        /// The lock file.
        lock: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database failed.
    #[error("state {state}: {source}")]
    Db {
        /// The state database.
        state: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
}

/// An exclusive lock on `<state>.lock`, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock beside `state`, writing this process's id into it; fails at once when held.
    pub fn acquire(state: &Path) -> Result<StateLock, StateError> {
        let mut name = state.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let lock_err = |source| StateError::LockIo { lock: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(lock_err)?;
        }
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = text.trim().parse::<u32>().map_or_else(|_| "pid unknown".to_string(), |pid| format!("pid {pid}"));
                return Err(StateError::Locked { state: state.display().to_string(), holder, lock: path.display().to_string() });
            }
            Err(TryLockError::Error(e)) => return Err(lock_err(e)),
        }
        file.set_len(0).and_then(|()| file.rewind()).and_then(|()| writeln!(file, "{}", std::process::id())).map_err(lock_err)?;
        Ok(StateLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A repository's last known position.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredRepo {
    /// The commit last reconciled.
    pub revision: Option<String>,
    /// When the last run ended (RFC 3339).
    pub last_run: Option<String>,
    /// The last run's error, if it failed.
    pub last_error: Option<String>,
    /// JSON of the last report's summary (counts by severity).
    pub summary: Option<String>,
}

/// The `serve` tables inside the state database.
#[derive(Debug)]
pub struct ServeState {
    conn: Mutex<Connection>,
    path: String,
}

impl ServeState {
    /// Opens (creating) the database at `path` and its `serve_*` tables.
    pub fn open(path: &Path) -> Result<ServeState, StateError> {
        let shown = path.display().to_string();
        let db = |source| StateError::Db { state: shown.clone(), source };
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS serve_repo (name TEXT PRIMARY KEY, revision TEXT, last_run TEXT, last_error TEXT, summary TEXT);
             CREATE TABLE IF NOT EXISTS serve_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS serve_delivery (id TEXT PRIMARY KEY, seq INTEGER NOT NULL);",
        )
        .map_err(db)?;
        Ok(ServeState { conn: Mutex::new(conn), path: shown })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StateError> {
        let conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&conn).map_err(|source| StateError::Db { state: self.path.clone(), source })
    }

    /// Checks that the database answers.
    pub fn ping(&self) -> Result<(), StateError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    /// The stored position of `name`, default when never run.
    pub fn repo(&self, name: &str) -> Result<StoredRepo, StateError> {
        self.with(|c| {
            c.query_row("SELECT revision, last_run, last_error, summary FROM serve_repo WHERE name = ?1", [name], |r| {
                Ok(StoredRepo { revision: r.get(0)?, last_run: r.get(1)?, last_error: r.get(2)?, summary: r.get(3)? })
            })
            .optional()
            .map(Option::unwrap_or_default)
        })
    }

    /// Records `name`'s position after a run.
    pub fn save_repo(&self, name: &str, repo: &StoredRepo) -> Result<(), StateError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO serve_repo (name, revision, last_run, last_error, summary) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(name) DO UPDATE SET revision = excluded.revision, last_run = excluded.last_run, last_error = excluded.last_error, summary = excluded.summary",
                params![name, repo.revision, repo.last_run, repo.last_error, repo.summary],
            )
            .map(|_| ())
        })
    }

    /// The last event-feed sequence number handled, if any.
    pub fn event_seq(&self) -> Result<Option<u64>, StateError> {
        let text: Option<String> = self.with(|c| c.query_row("SELECT value FROM serve_meta WHERE key = 'event_seq'", [], |r| r.get(0)).optional())?;
        Ok(text.and_then(|t| t.parse().ok()))
    }

    /// Records the event-feed position.
    pub fn set_event_seq(&self, seq: u64) -> Result<(), StateError> {
        self.with(|c| {
            c.execute("INSERT INTO serve_meta (key, value) VALUES ('event_seq', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value", [seq.to_string()])
                .map(|_| ())
        })
    }

    /// Remembers a webhook delivery id; false when it was seen before (a replay). Keeps the
    /// newest [`DELIVERIES_KEPT`].
    pub fn remember_delivery(&self, id: &str) -> Result<bool, StateError> {
        self.with(|c| {
            let next: i64 = c.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM serve_delivery", [], |r| r.get(0))?;
            let added = c.execute("INSERT OR IGNORE INTO serve_delivery (id, seq) VALUES (?1, ?2)", params![id, next])? == 1;
            if added && next % 100 == 0 {
                c.execute("DELETE FROM serve_delivery WHERE seq <= ?1", [next - DELIVERIES_KEPT])?;
            }
            Ok(added)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_naming_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s.db");
        let first = StateLock::acquire(&state).unwrap();
        let e = StateLock::acquire(&state).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains("s.db.lock"), "{e}");
        drop(first);
        StateLock::acquire(&state).unwrap();
    }

    #[test]
    fn positions_and_deliveries_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let s = ServeState::open(&path).unwrap();
        assert_eq!(s.repo("a").unwrap(), StoredRepo::default());
        let stored = StoredRepo { revision: Some("abc".into()), last_run: Some("2026-01-01T00:00:00Z".into()), last_error: None, summary: Some("{}".into()) };
        s.save_repo("a", &stored).unwrap();
        s.set_event_seq(42).unwrap();
        assert!(s.remember_delivery("d1").unwrap());
        assert!(!s.remember_delivery("d1").unwrap());
        drop(s);
        let s = ServeState::open(&path).unwrap();
        assert_eq!(s.repo("a").unwrap(), stored);
        assert_eq!(s.event_seq().unwrap(), Some(42));
        assert!(!s.remember_delivery("d1").unwrap());
        assert!(s.remember_delivery("d2").unwrap());
    }
}
