//! The reconciler's one state database (SQLite, WAL): one connection setup, one migration sequence, one error type; a module per table group.
//!
//! `sync`, `approve` and `audit` use the approvals, audit, journal and plans tables; `serve` adds its
//! repository positions, event-feed position, webhook deliveries, run history and review comments,
//! and holds the lock file beside the database.

mod approval;
mod audit;
mod feed;
mod journal;
mod leases;
mod lock;
mod plans;
mod postgres_url;
mod repos;
mod reviews;
mod runs;
pub mod sql;

use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::MutexGuard;
use std::sync::{Arc, Mutex};

pub use approval::{ApprovalError, DriftRecord, PendingDrift, approve, pending_approvals, record_drifts, record_findings, resolve_drift};
pub use audit::{AuditAction, AuditEntry, AuditRecord, VerifyOutcome, audit_append, audit_list, audit_page, audit_verify};
pub use feed::{DELIVERIES_KEPT, event_seq, remember_delivery, set_event_seq};
pub use journal::{JournalEntry, JournalOutcome, JournalState, journal_finish, journal_intent, journal_open_intents};
pub use leases::{
    LeaseRow, ReplicaRow, WAKE_CHANNEL, WakeListener, heartbeat, last_wakeup, leases, register_replica, release_lease, replicas, retire_replica, try_acquire,
    wake, wakeups_after, wakeups_since,
};
pub use lock::StateLock;
pub use plans::{
    PendingPlan, PlanRecord, RolloutIntent, approve_plan, hold_plan, host_id, open_rollouts, pending_plans, plan_file, resolve_plan, rolled_out_revision,
    rollout_finish, rollout_intent, rollout_started, set_rolled_out, supersede_plans,
};
pub use repos::{StoredRepo, save_repo, stored_repo, stored_repos};
pub use reviews::{forget_review_comment, record_review, review_comment};
pub use runs::{RunRecord, record_run, run_history};
use rusqlite::Connection;

use crate::clock::{Clock, SharedClock};

/// The default `--state` file, relative to the working directory.
pub const DEFAULT_STATE_PATH: &str = ".novacron-reconcile/state.db";

/// Where the state lives: a SQLite file (the embedded default) or a PostgreSQL database
/// (`postgres://` or `postgresql://` URL), shared by `serve` replicas.
#[derive(Clone)]
pub enum StateLocation {
    /// A SQLite file.
    File(PathBuf),
    /// A PostgreSQL database; the password (from the URL, `PGPASSWORD` or libpq's passfile)
    /// stays inside the config and is never printed.
    Postgres(Box<postgres::Config>),
}

impl std::fmt::Debug for StateLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl std::fmt::Display for StateLocation {
    /// The file, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateLocation::File(path) => write!(f, "{}", path.display()),
            StateLocation::Postgres(config) => f.write_str(&postgres_url::redacted(config)),
        }
    }
}

impl std::str::FromStr for StateLocation {
    type Err = String;

    /// A `postgres://` / `postgresql://` URL, else a file path.
    fn from_str(s: &str) -> Result<StateLocation, String> {
        if postgres_url::is_postgres(s) {
            postgres_url::parse(s).map(|c| StateLocation::Postgres(Box::new(c)))
        } else {
            Ok(StateLocation::File(PathBuf::from(s)))
        }
    }
}

/// True for a `postgres://` or `postgresql://` URL.
pub fn is_postgres_url(s: &str) -> bool {
    postgres_url::is_postgres(s)
}

impl StateLocation {
    /// The SQLite file, when the state is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            StateLocation::File(p) => Some(p),
            StateLocation::Postgres(_) => None,
        }
    }

    /// True for PostgreSQL, which several `serve` replicas may share.
    pub fn is_shared(&self) -> bool {
        matches!(self, StateLocation::Postgres(_))
    }
}

/// Why the state database could not be used (or locked).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another `serve` holds the lock file beside the database.
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
    /// The database could not be opened, created or migrated.
    #[error("state database {location}: cannot open: {detail}; check --state")]
    Open {
        /// The file, or the URL without its password.
        location: String,
        /// What the engine or the file system said.
        detail: String,
    },
    /// The database does not answer (PostgreSQL down, starting or out of reach).
    #[error("state database {location}: does not answer: {detail}; check that PostgreSQL runs and is reachable, and --state")]
    Unavailable {
        /// The URL without its password.
        location: String,
        /// What the driver said.
        detail: String,
    },
    /// A query failed.
    #[error("state database {location}: {operation}: {source}")]
    Query {
        /// The file, or the URL without its password.
        location: String,
        /// What was being done.
        operation: &'static str,
        /// What the engine said.
        source: sql::DbError,
    },
    /// A write of a reconcile whose repository lease has moved to another replica (or was
    /// given up): refused, so a replica that lost its lease cannot overwrite its successor.
    #[error(
        "state database {location}: {operation}: refused, the lease on repository {repo} moved on (this replica held token {token}, the lease is now {now}); another replica reconciles it"
    )]
    Fenced {
        /// The file, or the URL without its password.
        location: String,
        /// What was being done.
        operation: &'static str,
        /// The repository.
        repo: String,
        /// The fencing token the write carried.
        token: u64,
        /// Who holds it now (`owner` and token), or `released`.
        now: String,
    },
}

impl StateError {
    /// True when the database could not be reached (as opposed to a query it refused).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StateError::Query { source, .. } if source.unreachable) || matches!(self, StateError::Unavailable { .. })
    }
}

/// The lease a reconcile's writes carry: refused once the lease on `repo` is held by anyone
/// else or with another token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The repository (as `serve` names it).
    pub repo: String,
    /// This replica.
    pub owner: String,
    /// The fencing token of the lease when it was taken.
    pub token: u64,
    /// Until when the holder may act on it by its own clock (renewals move it on); a write after
    /// that is refused without asking the database.
    pub clock: Option<LeaseClock>,
}

/// The local deadline of a lease, shared between the replica's lease keeper (which moves it on
/// at every renewal, or revokes it) and the reconcile acting on the lease.
#[derive(Debug, Clone)]
pub struct LeaseClock(Arc<Mutex<Option<std::time::Instant>>>);

impl LeaseClock {
    /// Valid until `at`.
    pub fn until(at: std::time::Instant) -> LeaseClock {
        LeaseClock(Arc::new(Mutex::new(Some(at))))
    }

    /// True before the deadline.
    pub fn valid(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|at| std::time::Instant::now() < at)
    }

    /// Moves the deadline to `at` (a renewal), unless revoked.
    pub fn extend(&self, at: std::time::Instant) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            *slot = Some(at);
        }
    }

    /// Ends it for good (the lease was lost or given up).
    pub fn revoke(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl PartialEq for LeaseClock {
    fn eq(&self, other: &LeaseClock) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LeaseClock {}

struct Inner {
    location: StateLocation,
    engine: sql::Engine,
}

/// An open state database: SQLite (one connection behind a mutex) or PostgreSQL (a small
/// pool); every operation is a short transaction. Clones share the connection.
#[derive(Clone)]
pub struct StateDb {
    inner: Arc<Inner>,
    /// Stamps every row and audit entry written (approvals, resolutions, journal, plans).
    clock: SharedClock,
    /// The lease every write carries, for a reconcile run by `serve`.
    fence: Option<Fence>,
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb").field("location", &self.inner.location).field("fence", &self.fence).finish_non_exhaustive()
    }
}

/// The schema as the first release wrote it (every statement idempotent, so databases made
/// before versioning existed are taken as version 1).
const SCHEMA_V1: &str = "
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

/// Version 2: pending rollout plans, the Terraform run journal, rolled-out revisions.
const SCHEMA_V2: &str = "
CREATE TABLE plans (
    id TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    path TEXT NOT NULL,
    revision TEXT NOT NULL,
    severity TEXT NOT NULL,
    summary TEXT NOT NULL,
    reason TEXT NOT NULL,
    changes TEXT NOT NULL,
    plan BLOB NOT NULL,
    created_at TEXT NOT NULL,
    approved_by TEXT,
    approved_at TEXT,
    resolved_at TEXT,
    resolution TEXT
);
CREATE INDEX plans_open ON plans (repo, path, resolved_at);
CREATE TABLE rollouts (
    seq INTEGER PRIMARY KEY,
    repo TEXT NOT NULL,
    path TEXT NOT NULL,
    operation TEXT NOT NULL,
    plan_id TEXT,
    pid INTEGER,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT
);
CREATE TABLE rolled_out (
    repo TEXT NOT NULL,
    path TEXT NOT NULL,
    revision TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (repo, path)
);
";

/// Version 3: the review comment of each pull request (created once, then updated in place).
const SCHEMA_V3: &str = "
CREATE TABLE pr_reviews (
    repo TEXT NOT NULL,
    path TEXT NOT NULL,
    number INTEGER NOT NULL,
    comment_id INTEGER,
    head TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (repo, path, number)
);
";

/// Version 4: the run history of `serve` (what the console's charts draw), trimmed per repository.
const SCHEMA_V4: &str = "
CREATE TABLE serve_runs (
    seq INTEGER PRIMARY KEY,
    repo TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    revision TEXT,
    ok INTEGER NOT NULL,
    drifted INTEGER NOT NULL,
    critical INTEGER NOT NULL,
    high INTEGER NOT NULL,
    medium INTEGER NOT NULL,
    low INTEGER NOT NULL,
    info INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX serve_runs_repo ON serve_runs (repo, seq);
";

/// Version 5: the tables `serve` used to create itself on its own connection (repository
/// positions, the event-feed position, webhook deliveries). `IF NOT EXISTS`: a database `serve`
/// ran on already has them, with rows that must survive.
const SCHEMA_V5: &str = "
CREATE TABLE IF NOT EXISTS serve_repo (name TEXT PRIMARY KEY, revision TEXT, last_run TEXT, last_error TEXT, summary TEXT);
CREATE TABLE IF NOT EXISTS serve_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS serve_delivery (id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
";

/// Version 6: what replicas share — repository leases with fencing tokens, the replicas
/// alive, wake-ups for the lease holder, and the audit chain's head row (locked by each append,
/// so appends from several processes serialise). The head is seeded from the log as it stands.
/// A Terraform run records the host it runs on (a leftover process is only stopped there).
const SCHEMA_V6: &str = "
CREATE TABLE leases (repo TEXT PRIMARY KEY, owner TEXT NOT NULL, token BIGINT NOT NULL, expires_ms BIGINT NOT NULL, acquired_at TEXT NOT NULL);
CREATE TABLE replicas (id TEXT PRIMARY KEY, address TEXT NOT NULL, started_at TEXT NOT NULL, expires_ms BIGINT NOT NULL);
CREATE TABLE wakeups (seq INTEGER PRIMARY KEY, repo TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL, hash TEXT NOT NULL);
ALTER TABLE rollouts ADD COLUMN host TEXT;
INSERT INTO audit_head (id, seq, hash)
    SELECT 1, COALESCE(MAX(seq), 0), COALESCE((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), '0000000000000000000000000000000000000000000000000000000000000000') FROM audit;
";

/// The migrations, in order: entry `i` brings a database from version `i` to `i + 1`.
const MIGRATIONS: [&str; 6] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6];

/// The schema version this build writes (SQLite: `PRAGMA user_version`).
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The PostgreSQL schema, version 1: the same tables as SQLite's version 6, in PostgreSQL's types.
const PG_SCHEMA_V1: &str = "
CREATE TABLE audit (seq BIGINT PRIMARY KEY, time TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, repo TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL, hash TEXT NOT NULL);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
CREATE TABLE drifts (id TEXT PRIMARY KEY, repo TEXT NOT NULL, address TEXT NOT NULL, kind TEXT NOT NULL, object_id TEXT NOT NULL, severity TEXT NOT NULL, desired_hash TEXT NOT NULL, live_hash TEXT NOT NULL, created_at TEXT NOT NULL, last_seen TEXT NOT NULL, approved_by TEXT, approved_at TEXT, resolved_at TEXT, resolution TEXT);
CREATE INDEX drifts_open ON drifts (repo, resolved_at);
CREATE TABLE findings (id TEXT PRIMARY KEY, repo TEXT NOT NULL, address TEXT NOT NULL, status TEXT NOT NULL, first_seen TEXT NOT NULL);
CREATE TABLE journal (seq BIGSERIAL PRIMARY KEY, drift_id TEXT NOT NULL, repo TEXT NOT NULL, address TEXT NOT NULL, kind TEXT NOT NULL, object_id TEXT NOT NULL, etag TEXT NOT NULL, attributes TEXT NOT NULL, state TEXT NOT NULL, created_at TEXT NOT NULL, finished_at TEXT, outcome TEXT);
CREATE TABLE plans (id TEXT PRIMARY KEY, repo TEXT NOT NULL, path TEXT NOT NULL, revision TEXT NOT NULL, severity TEXT NOT NULL, summary TEXT NOT NULL, reason TEXT NOT NULL, changes TEXT NOT NULL, plan BYTEA NOT NULL, created_at TEXT NOT NULL, approved_by TEXT, approved_at TEXT, resolved_at TEXT, resolution TEXT);
CREATE INDEX plans_open ON plans (repo, path, resolved_at);
CREATE TABLE rollouts (seq BIGSERIAL PRIMARY KEY, repo TEXT NOT NULL, path TEXT NOT NULL, operation TEXT NOT NULL, plan_id TEXT, pid BIGINT, host TEXT, started_at TEXT NOT NULL, finished_at TEXT, outcome TEXT);
CREATE TABLE rolled_out (repo TEXT NOT NULL, path TEXT NOT NULL, revision TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (repo, path));
CREATE TABLE pr_reviews (repo TEXT NOT NULL, path TEXT NOT NULL, number BIGINT NOT NULL, comment_id BIGINT, head TEXT NOT NULL, state TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (repo, path, number));
CREATE TABLE serve_runs (seq BIGSERIAL PRIMARY KEY, repo TEXT NOT NULL, finished_at TEXT NOT NULL, duration_ms BIGINT NOT NULL, trigger TEXT NOT NULL, revision TEXT, ok BIGINT NOT NULL, drifted BIGINT NOT NULL, critical BIGINT NOT NULL, high BIGINT NOT NULL, medium BIGINT NOT NULL, low BIGINT NOT NULL, info BIGINT NOT NULL, error TEXT);
CREATE INDEX serve_runs_repo ON serve_runs (repo, seq);
CREATE TABLE serve_repo (name TEXT PRIMARY KEY, revision TEXT, last_run TEXT, last_error TEXT, summary TEXT);
CREATE TABLE serve_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE serve_delivery (id TEXT PRIMARY KEY, seq BIGINT NOT NULL);
CREATE TABLE leases (repo TEXT PRIMARY KEY, owner TEXT NOT NULL, token BIGINT NOT NULL, expires_ms BIGINT NOT NULL, acquired_at TEXT NOT NULL);
CREATE TABLE replicas (id TEXT PRIMARY KEY, address TEXT NOT NULL, started_at TEXT NOT NULL, expires_ms BIGINT NOT NULL);
CREATE TABLE wakeups (seq BIGSERIAL PRIMARY KEY, repo TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL);
";

/// The PostgreSQL migrations, in order (entry `i` brings version `i` to `i + 1`).
const PG_MIGRATIONS: [&str; 1] = [PG_SCHEMA_V1];

/// The PostgreSQL schema version this build writes (table `novacron_schema`).
pub const PG_SCHEMA_VERSION: usize = PG_MIGRATIONS.len();

/// The advisory lock that serialises migrations when several replicas start at once.
const PG_MIGRATION_LOCK: i64 = 0x6e6f_7661_6372_6f6e;

/// Brings a SQLite database up to [`SCHEMA_VERSION`], one transaction per step; refuses a
/// database written by a newer build.
fn migrate(conn: &mut Connection) -> Result<(), String> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    let current = usize::try_from(current).unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(format!(
            "it was written by a newer novacron-reconcile (schema version {current}, this build knows {SCHEMA_VERSION}); upgrade the reconciler"
        ));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(step).map_err(|e| format!("migration to schema version {}: {e}", i + 1))?;
        tx.pragma_update(None, "user_version", i64::try_from(i + 1).unwrap_or(i64::MAX)).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Brings a PostgreSQL database up to [`PG_SCHEMA_VERSION`], every step in one transaction
/// under an advisory lock (replicas starting together migrate once); idempotent.
fn migrate_postgres(tx: &mut sql::Tx<'_>) -> Result<(), sql::DbError> {
    tx.execute("SELECT pg_advisory_xact_lock(?1)", sql::args![PG_MIGRATION_LOCK])?;
    tx.batch("CREATE TABLE IF NOT EXISTS novacron_schema (version BIGINT NOT NULL)")?;
    let current: Option<i64> = tx.query_opt("SELECT MAX(version) FROM novacron_schema", sql::args![])?.map(|r| r.get(0)).transpose()?.flatten();
    let current = usize::try_from(current.unwrap_or(0)).unwrap_or(0);
    if current > PG_SCHEMA_VERSION {
        return Err(sql::DbError::other(format!(
            "it was written by a newer novacron-reconcile (PostgreSQL schema version {current}, this build knows {PG_SCHEMA_VERSION}); upgrade the reconciler"
        )));
    }
    for (i, step) in PG_MIGRATIONS.iter().enumerate().skip(current) {
        tx.batch(step).map_err(|e| sql::DbError { message: format!("migration to schema version {}: {e}", i + 1), ..e })?;
        tx.execute("INSERT INTO novacron_schema (version) VALUES (?1)", sql::args![i + 1])?;
    }
    Ok(())
}

impl StateDb {
    /// Opens (creating it and its directory when absent) the SQLite state database at `path`,
    /// in WAL mode.
    pub fn open(path: &Path) -> Result<StateDb, StateError> {
        let location = StateLocation::File(path.to_path_buf());
        let open_err = |detail: String| StateError::Open { location: path.display().to_string(), detail };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        // Pending plans hold Terraform's planned values, sensitive ones included: owner only.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| open_err(format!("cannot restrict its permissions: {e}")))?;
        }
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| open_err(e.to_string()))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| open_err(e.to_string()))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(|e| open_err(e.to_string()))?;
        migrate(&mut conn).map_err(open_err)?;
        Ok(StateDb { inner: Arc::new(Inner { location, engine: sql::Engine::Sqlite(Mutex::new(conn)) }), clock: SharedClock::default(), fence: None })
    }

    /// Opens the state wherever it lives: a SQLite file, or a PostgreSQL database (connected
    /// and migrated now).
    pub fn connect(location: &StateLocation) -> Result<StateDb, StateError> {
        StateDb::connect_with(location, sql::PG_POOL_SIZE)
    }

    /// [`StateDb::connect`] keeping at most `pool` connections to PostgreSQL (one for a caller
    /// that makes one call at a time).
    pub fn connect_with(location: &StateLocation, pool: usize) -> Result<StateDb, StateError> {
        let config = match location {
            StateLocation::File(path) => return StateDb::open(path),
            StateLocation::Postgres(config) => config,
        };
        let engine = sql::Engine::Postgres(Box::new(sql::PgPool::new((**config).clone(), pool)));
        engine.transaction(true, migrate_postgres).map_err(|e| {
            if e.unreachable {
                StateError::Unavailable { location: location.to_string(), detail: e.message }
            } else {
                StateError::Open { location: location.to_string(), detail: e.message }
            }
        })?;
        Ok(StateDb { inner: Arc::new(Inner { location: location.clone(), engine }), clock: SharedClock::default(), fence: None })
    }

    /// The same database stamping what it writes with `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: SharedClock) -> StateDb {
        self.clock = clock;
        self
    }

    /// The same database, every write refused unless `fence` still holds the lease.
    pub fn fenced(&self, fence: Fence) -> StateDb {
        StateDb { inner: self.inner.clone(), clock: self.clock.clone(), fence: Some(fence) }
    }

    /// The lease this handle's writes carry.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// The current time by this database's clock, RFC 3339 UTC.
    fn now(&self) -> String {
        self.clock.rfc3339()
    }

    /// Where this database lives.
    pub fn location(&self) -> &StateLocation {
        &self.inner.location
    }

    /// True on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.inner.engine, sql::Engine::Postgres(_))
    }

    /// Checks that the database answers (`serve`'s readiness).
    pub fn ping(&self) -> Result<(), StateError> {
        self.read("answer a ping", |tx| tx.query_one("SELECT 1", sql::args![]).map(|_| ()))
    }

    /// Runs `f` in a read transaction.
    fn read<T: Send>(&self, operation: &'static str, f: impl FnOnce(&mut sql::Tx<'_>) -> Result<T, sql::DbError> + Send) -> Result<T, StateError> {
        self.inner.engine.transaction(false, f).map_err(|source| StateError::Query { location: self.inner.location.to_string(), operation, source })
    }

    /// Runs `f` in a write transaction; with a fence, first checks (and locks against a
    /// takeover until the commit) that the lease is still this one.
    fn write<T: Send>(&self, operation: &'static str, f: impl FnOnce(&mut sql::Tx<'_>) -> Result<T, sql::DbError> + Send) -> Result<T, StateError> {
        let fence = self.fence.clone();
        if let Some(f) = fence.as_ref().filter(|f| f.clock.as_ref().is_some_and(|c| !c.valid())) {
            return Err(StateError::Fenced {
                location: self.inner.location.to_string(),
                operation,
                repo: f.repo.clone(),
                token: f.token,
                now: "not renewed in time or given up: this replica stopped acting on it before it could expire".to_string(),
            });
        }
        let outcome = self.inner.engine.transaction(true, |tx| {
            if let Some(fence) = &fence {
                let row = tx.query_opt("SELECT owner, token FROM leases WHERE repo = ?1{for_share}", sql::args![&fence.repo])?;
                let (owner, token): (String, u64) = match row {
                    Some(r) => (r.get(0)?, r.get(1)?),
                    None => (String::new(), 0),
                };
                if owner != fence.owner || token != fence.token {
                    let now = if owner.is_empty() { "released".to_string() } else { format!("{owner}, token {token}") };
                    return Ok(Err(now));
                }
            }
            f(tx).map(Ok)
        });
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(now)) => {
                let fence = self.fence.clone().unwrap_or(Fence { repo: String::new(), owner: String::new(), token: 0, clock: None });
                Err(StateError::Fenced { location: self.inner.location.to_string(), operation, repo: fence.repo, token: fence.token, now })
            }
            Err(source) => Err(StateError::Query { location: self.inner.location.to_string(), operation, source }),
        }
    }

    /// Runs `f` on the SQLite connection itself (tests that tamper with a file).
    #[cfg(test)]
    fn conn(&self) -> MutexGuard<'_, Connection> {
        match &self.inner.engine {
            sql::Engine::Sqlite(conn) => conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
            sql::Engine::Postgres(_) => panic!("not a SQLite database"),
        }
    }
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
        assert_eq!(db.location().file(), Some(path.as_path()));
        let mode: String = db.conn().query_row("PRAGMA journal_mode", [], |r| r.get(0)).expect("pragma");
        assert_eq!(mode, "wal");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).expect("metadata").permissions().mode() & 0o777, 0o600, "readable by its owner only");
    }

    #[test]
    fn a_database_of_the_first_release_is_upgraded_with_its_audit_chain_intact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            // Exactly what the first release did: its schema, no user_version, one audit entry.
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(SCHEMA_V1).expect("v1 schema");
            conn.execute(
                "INSERT INTO drifts (id, repo, address, kind, object_id, severity, desired_hash, live_hash, created_at, last_seen) VALUES ('d1', 'r', 'novacron_vm.web', 'novacron_vm', 'vm-1', 'low', 'a', 'b', 't', 't')",
                [],
            )
            .expect("drift");
        }
        let db = StateDb::open(&path).expect("upgrade");
        audit_append(&db, AuditEntry { actor: "a".into(), action: AuditAction::Detect, repo: "r".into(), subject: "s".into(), detail: serde_json::json!({}) })
            .expect("append");
        let version: i64 = db.conn().query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, SCHEMA_VERSION as i64);
        assert_eq!(pending_approvals(&db, None).expect("drifts").len(), 1, "the old drift is still there");
        assert!(pending_plans(&db, None).expect("plans table").is_empty());
        drop(db);
        let db = StateDb::open(&path).expect("reopen is a no-op");
        assert_eq!(audit_verify(&db).expect("verify").first_bad, None);
    }

    #[test]
    fn a_database_of_the_previous_release_is_upgraded_keeping_its_plans() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            // What the previous release wrote: schema version 2 with a pending plan.
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(SCHEMA_V1).expect("v1");
            conn.execute_batch(SCHEMA_V2).expect("v2");
            conn.pragma_update(None, "user_version", 2).expect("version");
            conn.execute(
                "INSERT INTO plans (id, repo, path, revision, severity, summary, reason, changes, plan, created_at) VALUES ('plan-1', 'r', '', 'abc', 'critical', '1 to change: 1 critical', 'critical', '[]', x'00', 't')",
                [],
            )
            .expect("plan");
        }
        let db = StateDb::open(&path).expect("upgrade");
        let version: i64 = db.conn().query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, SCHEMA_VERSION as i64);
        assert_eq!(pending_plans(&db, None).expect("plans").len(), 1, "the pending plan survives");
        assert_eq!(review_comment(&db, "r", "", 7).expect("reviews table"), None);
        record_review(&db, "r", "", 7, Some(42), "abc", "success").expect("record");
        assert_eq!(review_comment(&db, "r", "", 7).expect("read"), Some(42));
    }

    #[test]
    fn a_schema_3_database_is_upgraded_to_4_keeping_its_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            // What the release before the run history wrote: schema version 3, with a drift
            // awaiting approval, a pending plan, a review comment and an audit entry.
            let conn = Connection::open(&path).expect("open");
            for step in [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3] {
                conn.execute_batch(step).expect("old schema");
            }
            conn.pragma_update(None, "user_version", 3).expect("version");
            conn.execute(
                "INSERT INTO drifts (id, repo, address, kind, object_id, severity, desired_hash, live_hash, created_at, last_seen) VALUES ('d1', 'r', 'novacron_vm.web', 'novacron_vm', 'vm-1', 'medium', 'a', 'b', 't', 't')",
                [],
            )
            .expect("drift");
            conn.execute(
                "INSERT INTO plans (id, repo, path, revision, severity, summary, reason, changes, plan, created_at) VALUES ('plan-1', 'r', '', 'abc', 'critical', '1 to change', 'critical', '[]', x'00', 't')",
                [],
            )
            .expect("plan");
            conn.execute("INSERT INTO pr_reviews (repo, path, number, comment_id, head, state, updated_at) VALUES ('r', '', 7, 42, 'abc', 'success', 't')", [])
                .expect("review");
        }
        {
            let db = StateDb::open(&path).expect("old database");
            audit_append(
                &db,
                AuditEntry { actor: "a".into(), action: AuditAction::Detect, repo: "r".into(), subject: "s".into(), detail: serde_json::json!({}) },
            )
            .expect("append");
        }
        let db = StateDb::open(&path).expect("upgrade");
        let version: i64 = db.conn().query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, SCHEMA_VERSION as i64);
        assert_eq!(pending_approvals(&db, Some("r")).expect("drifts").len(), 1, "the drift awaiting approval survives");
        assert_eq!(pending_plans(&db, Some("r")).expect("plans").len(), 1, "the pending plan survives");
        assert_eq!(review_comment(&db, "r", "", 7).expect("reviews"), Some(42), "the review comment survives");
        assert!(audit_verify(&db).expect("verify").ok);
        assert!(run_history(&db, "infra", 10).expect("the new table").is_empty());
        record_run(&db, &RunRecord { repo: "infra".into(), finished_at: "t".into(), trigger: "poll".into(), ok: true, ..RunRecord::default() }, 500)
            .expect("record");
        assert_eq!(run_history(&db, "infra", 10).expect("read").len(), 1);
    }

    /// A database as schema version 4 (the release with two stores) left it.
    fn schema_4_database(path: &std::path::Path) -> Connection {
        let conn = Connection::open(path).expect("open");
        for step in [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4] {
            conn.execute_batch(step).expect("old schema");
        }
        conn.pragma_update(None, "user_version", 4).expect("version");
        conn
    }

    #[test]
    fn a_database_serve_ran_on_before_the_merge_keeps_its_serve_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            // What the release with two stores wrote: schema version 4 from the sync store, and
            // the serve tables its second connection created unversioned, with their rows.
            let conn = schema_4_database(&path);
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS serve_repo (name TEXT PRIMARY KEY, revision TEXT, last_run TEXT, last_error TEXT, summary TEXT);
                 CREATE TABLE IF NOT EXISTS serve_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS serve_delivery (id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
                 INSERT INTO serve_repo VALUES ('prod', 'abc', '2026-01-01T00:00:00Z', NULL, '{}');
                 INSERT INTO serve_meta VALUES ('event_seq', '42');
                 INSERT INTO serve_delivery VALUES ('d1', 1);",
            )
            .expect("serve tables");
        }
        let db = StateDb::open(&path).expect("upgrade");
        let version: i64 = db.conn().query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, SCHEMA_VERSION as i64);
        assert_eq!(stored_repo(&db, "prod").expect("repo").revision.as_deref(), Some("abc"), "the repository position survives");
        assert_eq!(event_seq(&db).expect("feed"), Some(42), "the event-feed position survives");
        assert!(!remember_delivery(&db, "d1").expect("delivery"), "a delivery seen before the upgrade is still a replay");
        db.ping().expect("ping");
    }

    #[test]
    fn a_schema_4_database_without_serve_tables_gets_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            // Only `sync` and `approve` ever used it: no serve tables.
            schema_4_database(&path);
        }
        let db = StateDb::open(&path).expect("upgrade");
        assert_eq!(stored_repo(&db, "prod").expect("the new table"), StoredRepo::default());
        set_event_seq(&db, 7).expect("serve_meta");
        assert!(remember_delivery(&db, "d1").expect("serve_delivery"));
    }

    #[test]
    fn a_schema_5_database_gets_leases_and_its_audit_chain_continues() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            // What the release before replicas wrote: schema version 5 with two chained entries.
            let conn = Connection::open(&path).expect("open");
            for step in &MIGRATIONS[..5] {
                conn.execute_batch(step).expect("old schema");
            }
            conn.pragma_update(None, "user_version", 5).expect("version");
            let mut prev = audit::GENESIS_HASH.to_string();
            for seq in 1..=2u64 {
                let mut record = AuditRecord {
                    seq,
                    time: "t".into(),
                    actor: "a".into(),
                    action: "detect".into(),
                    repo: "r".into(),
                    subject: "s".into(),
                    detail: serde_json::json!({}),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                record.hash = audit::expected_hash_of(&record);
                conn.execute(
                    "INSERT INTO audit (seq, time, actor, action, repo, subject, detail, prev_hash, hash) VALUES (?1, 't', 'a', 'detect', 'r', 's', '{}', ?2, ?3)",
                    rusqlite::params![seq, record.prev_hash, record.hash],
                )
                .expect("entry");
                prev = record.hash;
            }
        }
        let db = StateDb::open(&path).expect("upgrade");
        let version: i64 = db.conn().query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, SCHEMA_VERSION as i64);
        let third = audit_append(
            &db,
            AuditEntry { actor: "a".into(), action: AuditAction::Detect, repo: "r".into(), subject: "s".into(), detail: serde_json::json!({}) },
        )
        .expect("append");
        assert_eq!(third.seq, 3, "the head was seeded from the existing log");
        assert_eq!(audit_verify(&db).expect("verify"), VerifyOutcome { ok: true, entries: 3, first_bad: None });
        assert_eq!(try_acquire(&db, "prod", "replica-a", 15_000).expect("the new leases table"), Some(1));
    }

    #[test]
    fn what_is_written_carries_the_time_of_the_clock_handed_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = StateDb::open(&dir.path().join("state.db")).expect("open").with_clock(SharedClock::new(crate::clock::FixedClock(1_795_320_584)));
        let entry = AuditEntry { actor: "a".into(), action: AuditAction::Detect, repo: "r".into(), subject: "s".into(), detail: serde_json::json!({}) };
        assert_eq!(audit_append(&db, entry).expect("append").time, "2026-11-22T04:09:44Z");
    }

    #[test]
    fn a_database_of_a_newer_release_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        Connection::open(&path).expect("open").pragma_update(None, "user_version", 99).expect("version");
        let err = StateDb::open(&path).expect_err("refused");
        assert!(err.to_string().contains("newer novacron-reconcile"), "{err}");
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
