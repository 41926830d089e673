//! SQLite persistence: objects, the event log, idempotency records, write-only secrets and Terraform state.
//!
//! One writer connection behind a mutex (every write is one transaction) and a few reader
//! connections for concurrent GETs; WAL mode lets readers proceed during a write. The schema
//! grows by numbered migrations (see [`MIGRATIONS`]); `PRAGMA user_version` records how many
//! a database has had.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Map, Value};

use crate::time::{now_millis, now_rfc3339};

/// A stored object as the API returns it.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// Object id.
    pub id: String,
    /// Object name.
    pub name: String,
    /// Version, carried by the ETag.
    pub version: i64,
    /// The public JSON body.
    pub body: String,
}

impl StoredObject {
    /// The body parsed as a JSON object.
    pub fn fields(&self) -> Map<String, Value> {
        match serde_json::from_str(&self.body) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
}

pub use novacron_schemas::wire::Event as EventRecord;

/// A remembered answer to a POST carrying an `Idempotency-Key`.
#[derive(Debug, Clone)]
pub struct IdempotentAnswer {
    /// Hash of the request (kind and body) the key was first used with.
    pub request_hash: String,
    /// HTTP status of the first answer.
    pub status: u16,
    /// Body of the first answer.
    pub body: String,
}

/// The database.
pub struct Store {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

/// Migration 1: the schema every database had before migrations were numbered. Its statements
/// are `IF NOT EXISTS`, so a database made then (user_version 0, tables present) takes it as a
/// no-op and keeps its rows.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (kind, id),
    UNIQUE (kind, name)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS idempotency (
    actor TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (actor, key)
);
-- Expired keys are swept on every keyed POST: the index keeps that a range scan of the
-- expired rows instead of a scan of every remembered key.
CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created_ms);
CREATE TABLE IF NOT EXISTS ip_allocations (
    network_id TEXT NOT NULL,
    host_index INTEGER NOT NULL,
    vm_id TEXT NOT NULL UNIQUE,
    PRIMARY KEY (network_id, host_index)
);
CREATE INDEX IF NOT EXISTS objects_network_ref ON objects (kind, json_extract(body, '$.network_id'));
CREATE INDEX IF NOT EXISTS objects_attached_ref ON objects (kind, json_extract(body, '$.attached_to'));
CREATE TABLE IF NOT EXISTS secrets (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    attribute TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, id, attribute)
);
";

/// Migration 2: Terraform state (`/v1/tfstate/{workspace}`). Every stored body is a version
/// row; the newest row of a workspace is its current state. A workspace has at most one lock.
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS tfstate_versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT NOT NULL,
    serial INTEGER,
    lineage TEXT,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS tfstate_versions_workspace ON tfstate_versions (workspace, seq);
CREATE TABLE IF NOT EXISTS tfstate_locks (
    workspace TEXT PRIMARY KEY,
    lock_id TEXT NOT NULL,
    info TEXT NOT NULL,
    actor TEXT NOT NULL,
    time TEXT NOT NULL
);
";

/// Migration 3: listing walks a kind in seq order. Without this index SQLite found a kind's
/// rows through another `(kind, ...)` index and sorted all that remained for every page.
/// Entries of an index on `kind` are in rowid (`seq`) order within a kind, so a page is a
/// range scan that stops at its limit.
const SCHEMA_V3: &str = "
CREATE INDEX IF NOT EXISTS objects_listing ON objects (kind, seq);
";

/// The migrations in order: step `n` (1-based) brings a database from user_version `n - 1` to
/// `n`. Append only; never edit a step that has shipped.
pub const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2, SCHEMA_V3];

/// Why a database could not be brought to the current schema.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The database records more migrations than this build knows: a newer server made it.
    #[error("{path} has schema version {found}, newer than the {known} this novacron-platform knows; run a newer novacron-platform or point --data elsewhere")]
    TooNew {
        /// The database file.
        path: String,
        /// Its user_version.
        found: i64,
        /// The number of migrations this build has.
        known: usize,
    },
    /// A migration step failed; its transaction was rolled back, so the database is as it was before that step.
    #[error("{path}: migration {step} failed (rolled back; the database is at schema version {at}): {source}")]
    Step {
        /// The database file.
        path: String,
        /// The step that failed (1-based).
        step: usize,
        /// The schema version the database stays at.
        at: usize,
        /// What SQLite said.
        source: rusqlite::Error,
    },
}

/// Brings `conn` to the newest schema: each pending step runs in its own transaction that also
/// sets `user_version`, so a crash leaves the database at a step boundary. Returns the version
/// the database started at.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<usize, MigrationError> {
    let shown = path.display().to_string();
    let step_error = |step: usize, source: rusqlite::Error| MigrationError::Step { path: shown.clone(), step, at: step - 1, source };
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| step_error(1, e))?;
    let start = usize::try_from(found).unwrap_or(usize::MAX);
    if start > MIGRATIONS.len() {
        return Err(MigrationError::TooNew { path: shown, found, known: MIGRATIONS.len() });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        let step = index + 1;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| step_error(step, e))?;
        tx.execute_batch(sql).map_err(|e| step_error(step, e))?;
        tx.pragma_update(None, "user_version", i64::try_from(step).unwrap_or(i64::MAX)).map_err(|e| step_error(step, e))?;
        tx.commit().map_err(|e| step_error(step, e))?;
    }
    Ok(start)
}

/// How long idempotency keys are remembered.
const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Listing prepares one statement per combination of filters; keep them beside the rest.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the database `platform.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Store> {
        std::fs::create_dir_all(data_dir).map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", data_dir.display()))?;
        let path = data_dir.join("platform.db");
        let mut writer = open(&path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        let from = migrate(&mut writer, &path)?;
        if from < MIGRATIONS.len() {
            tracing::info!(path = %path.display(), from, to = MIGRATIONS.len(), "database schema migrated");
        }
        let readers = (0..4).map(|_| open(&path).map(Mutex::new)).collect::<Result<Vec<_>, _>>()?;
        Ok(Store { writer: Mutex::new(writer), readers, next_reader: AtomicUsize::new(0) })
    }

    /// Runs `f` on a reader connection.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.readers.len() {
            if let Ok(conn) = self.readers[(start + i) % self.readers.len()].try_lock() {
                return f(&conn);
            }
        }
        let conn = self.readers[start % self.readers.len()].lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }

    /// Runs `f` in one write transaction; it commits only if `f` returns `Ok`.
    pub fn write<T, E: From<rusqlite::Error>>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, E>) -> Result<T, E> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in a write transaction that is always rolled back. Dry runs use it: they do
    /// the work of a write on the data a write would see — including reservations made in the
    /// transaction, such as a VM's address — and leave nothing behind.
    pub fn rehearse<T, E: From<rusqlite::Error>>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, E>) -> Result<T, E> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx);
        tx.rollback()?;
        out
    }
}

/// Queries usable on a reader connection or inside a write transaction.
pub mod q {
    use super::*;

    /// One object by kind and id.
    pub fn get(conn: &Connection, kind: &str, id: &str) -> rusqlite::Result<Option<StoredObject>> {
        conn.prepare_cached("SELECT id, name, version, body FROM objects WHERE kind = ?1 AND id = ?2")?.query_row(params![kind, id], row_object).optional()
    }

    /// One object by kind and name.
    pub fn get_by_name(conn: &Connection, kind: &str, name: &str) -> rusqlite::Result<Option<StoredObject>> {
        conn.prepare_cached("SELECT id, name, version, body FROM objects WHERE kind = ?1 AND name = ?2")?.query_row(params![kind, name], row_object).optional()
    }

    fn row_object(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredObject> {
        Ok(StoredObject { id: row.get(0)?, name: row.get(1)?, version: row.get(2)?, body: row.get(3)? })
    }

    /// A page of objects in creation order after `after_seq` that match `filter`; returns the
    /// page and the seq of its last row when more may follow. The statement holds only the
    /// filters given, so SQLite can use the index that fits: `objects_listing` to walk a kind in
    /// order, the reference indexes for `network_id` and `attached_to`, the name index for `name`.
    pub fn list(conn: &Connection, kind: &str, after_seq: i64, limit: usize, filter: &ListFilter) -> rusqlite::Result<(Vec<String>, Option<i64>)> {
        let limit_plus = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let sql = list_sql(filter);
        let args = list_args(&kind, &after_seq, filter, &limit_plus);
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(args.as_slice(), |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut items = Vec::with_capacity(limit);
        let mut last = None;
        let mut more = false;
        for row in rows {
            let (seq, body) = row?;
            if items.len() == limit {
                more = true;
                break;
            }
            last = Some(seq);
            items.push(body);
        }
        Ok((items, if more { last } else { None }))
    }

    /// The listing statement for the filters given, its parameters numbered in the order of
    /// [`list_args`]: kind, after-seq, name, name prefix, attribute values, limit.
    pub(super) fn list_sql(filter: &ListFilter) -> String {
        let mut sql = String::from("SELECT seq, body FROM objects WHERE kind = ?1 AND seq > ?2");
        let mut n = 2;
        let mut next = || {
            n += 1;
            n
        };
        if filter.name.is_some() {
            sql.push_str(&format!(" AND name = ?{}", next()));
        }
        if filter.name_prefix.is_some() {
            sql.push_str(&format!(" AND substr(name, 1, length(?{n})) = ?{n}", n = next()));
        }
        for m in &filter.attributes {
            // The attribute is a plain name from the listing's table (never request text),
            // and the expression is spelt exactly as the reference indexes spell theirs.
            debug_assert!(m.attribute.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{}", m.attribute);
            sql.push_str(&format!(" AND json_extract(body, '$.{}') = ?{}", m.attribute, next()));
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT ?{}", next()));
        sql
    }

    /// The parameters of [`list_sql`], in its order.
    pub(super) fn list_args<'a>(kind: &'a &str, after_seq: &'a i64, filter: &'a ListFilter, limit: &'a i64) -> Vec<&'a dyn rusqlite::ToSql> {
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![kind, after_seq];
        args.extend(filter.name.iter().map(|v| v as &dyn rusqlite::ToSql));
        args.extend(filter.name_prefix.iter().map(|v| v as &dyn rusqlite::ToSql));
        args.extend(filter.attributes.iter().map(|m| &m.value as &dyn rusqlite::ToSql));
        args.push(limit);
        args
    }

    /// Objects of `kind` whose reference attribute `attribute` (an `x-reference` of the
    /// kind's schema) equals `value`, oldest first.
    pub fn referencing(conn: &Connection, kind: &str, attribute: &str, value: &str) -> rusqlite::Result<Vec<StoredObject>> {
        let mut stmt = conn.prepare_cached(&referencing_sql(attribute))?;
        let rows = stmt.query_map(params![kind, value], row_object)?;
        rows.collect()
    }

    /// The statement of [`referencing`]. The attribute is a property name from `schemas/`
    /// (never request text), and the expression is spelt exactly as the reference indexes
    /// spell theirs, so SQLite answers from the index (a test checks every held reference).
    pub(super) fn referencing_sql(attribute: &str) -> String {
        debug_assert!(attribute.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{attribute}");
        format!("SELECT id, name, version, body FROM objects WHERE kind = ?1 AND json_extract(body, '$.{attribute}') = ?2 ORDER BY seq")
    }

    /// Reserves the lowest free host index in a network for a VM, skipping `reserved`
    /// (the gateway). Tries one past the highest first, so filling a network is O(log n)
    /// per VM; scans for gaps only when that runs past the end.
    pub fn allocate_host(tx: &Transaction<'_>, network_id: &str, vm_id: &str, capacity: u128, reserved: Option<u128>) -> rusqlite::Result<Option<u128>> {
        let capacity = i64::try_from(capacity).unwrap_or(i64::MAX);
        let reserved = reserved.and_then(|r| i64::try_from(r).ok());
        let max: Option<i64> =
            tx.prepare_cached("SELECT MAX(host_index) FROM ip_allocations WHERE network_id = ?1")?.query_row(params![network_id], |r| r.get(0))?;
        let mut candidate = max.map_or(0, |m| m + 1);
        if Some(candidate) == reserved {
            candidate += 1;
        }
        if candidate >= capacity {
            let mut stmt = tx.prepare_cached("SELECT host_index FROM ip_allocations WHERE network_id = ?1 ORDER BY host_index")?;
            let used: Vec<i64> = stmt.query_map(params![network_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
            let mut next = 0i64;
            let mut found = None;
            for u in used.into_iter().chain(std::iter::once(capacity)) {
                while next < u {
                    if Some(next) != reserved {
                        found = Some(next);
                        break;
                    }
                    next += 1;
                }
                if found.is_some() {
                    break;
                }
                next = u + 1;
            }
            match found {
                Some(f) if f < capacity => candidate = f,
                _ => return Ok(None),
            }
        }
        tx.prepare_cached("INSERT INTO ip_allocations (network_id, host_index, vm_id) VALUES (?1, ?2, ?3)")?.execute(params![network_id, candidate, vm_id])?;
        Ok(u128::try_from(candidate).ok())
    }

    /// Frees a VM's address.
    pub fn release_host(tx: &Transaction<'_>, vm_id: &str) -> rusqlite::Result<()> {
        tx.prepare_cached("DELETE FROM ip_allocations WHERE vm_id = ?1")?.execute(params![vm_id])?;
        Ok(())
    }

    /// Every object of a kind, in creation order.
    pub fn all(conn: &Connection, kind: &str) -> rusqlite::Result<Vec<StoredObject>> {
        let mut stmt = conn.prepare_cached("SELECT id, name, version, body FROM objects WHERE kind = ?1 ORDER BY seq")?;
        let rows = stmt.query_map(params![kind], row_object)?;
        rows.collect()
    }

    /// Number of objects per kind.
    pub fn counts(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
        let mut stmt = conn.prepare_cached("SELECT kind, COUNT(*) FROM objects GROUP BY kind ORDER BY kind")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// Inserts a new object.
    pub fn insert(tx: &Transaction<'_>, kind: &str, obj: &StoredObject) -> rusqlite::Result<()> {
        tx.prepare_cached("INSERT INTO objects (kind, id, name, version, body) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(params![
            kind,
            obj.id,
            obj.name,
            obj.version,
            obj.body
        ])?;
        Ok(())
    }

    /// Replaces an object's name, version and body.
    pub fn update(tx: &Transaction<'_>, kind: &str, obj: &StoredObject) -> rusqlite::Result<()> {
        tx.prepare_cached("UPDATE objects SET name = ?3, version = ?4, body = ?5 WHERE kind = ?1 AND id = ?2")?.execute(params![
            kind,
            obj.id,
            obj.name,
            obj.version,
            obj.body
        ])?;
        Ok(())
    }

    /// Deletes an object and its secrets.
    pub fn delete(tx: &Transaction<'_>, kind: &str, id: &str) -> rusqlite::Result<()> {
        tx.prepare_cached("DELETE FROM objects WHERE kind = ?1 AND id = ?2")?.execute(params![kind, id])?;
        tx.prepare_cached("DELETE FROM secrets WHERE kind = ?1 AND id = ?2")?.execute(params![kind, id])?;
        Ok(())
    }

    /// Stores a write-only value (never returned by the API).
    pub fn put_secret(tx: &Transaction<'_>, kind: &str, id: &str, attribute: &str, value: &str) -> rusqlite::Result<()> {
        tx.prepare_cached("INSERT OR REPLACE INTO secrets (kind, id, attribute, value) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![kind, id, attribute, value])?;
        Ok(())
    }

    /// Removes a write-only value.
    pub fn clear_secret(tx: &Transaction<'_>, kind: &str, id: &str, attribute: &str) -> rusqlite::Result<()> {
        tx.prepare_cached("DELETE FROM secrets WHERE kind = ?1 AND id = ?2 AND attribute = ?3")?.execute(params![kind, id, attribute])?;
        Ok(())
    }

    /// Appends an event and returns its seq.
    pub fn append_event(tx: &Transaction<'_>, actor: &str, action: &str, kind: &str, id: &str, name: &str, detail: Option<&str>) -> rusqlite::Result<i64> {
        tx.prepare_cached("INSERT INTO events (time, actor, action, kind, id, name, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?.execute(params![
            now_rfc3339(),
            actor,
            action,
            kind,
            id,
            name,
            detail
        ])?;
        Ok(tx.last_insert_rowid())
    }

    /// Events after `after`, oldest first.
    pub fn events_after(conn: &Connection, after: i64, limit: usize) -> rusqlite::Result<Vec<EventRecord>> {
        let mut stmt = conn.prepare_cached("SELECT seq, time, actor, action, kind, id, name, detail FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
        let rows = stmt.query_map(params![after, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok(EventRecord {
                seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                time: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                kind: r.get(4)?,
                id: r.get(5)?,
                name: r.get(6)?,
                detail: r.get(7)?,
            })
        })?;
        rows.collect()
    }

    /// The newest event seq (0 when the feed is empty).
    pub fn last_event_seq(conn: &Connection) -> rusqlite::Result<i64> {
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
    }

    /// The remembered answer for an idempotency key, if still fresh.
    pub fn idempotent_answer(tx: &Transaction<'_>, actor: &str, key: &str) -> rusqlite::Result<Option<IdempotentAnswer>> {
        tx.prepare_cached("DELETE FROM idempotency WHERE created_ms < ?1")?.execute(params![now_millis() - IDEMPOTENCY_TTL_MS])?;
        tx.prepare_cached("SELECT request_hash, status, body FROM idempotency WHERE actor = ?1 AND key = ?2")?
            .query_row(params![actor, key], |r| Ok(IdempotentAnswer { request_hash: r.get(0)?, status: r.get(1)?, body: r.get(2)? }))
            .optional()
    }

    /// Remembers the answer given for an idempotency key.
    pub fn remember_answer(tx: &Transaction<'_>, actor: &str, key: &str, answer: &IdempotentAnswer) -> rusqlite::Result<()> {
        tx.prepare_cached("INSERT OR REPLACE INTO idempotency (actor, key, request_hash, status, body, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
            .execute(params![actor, key, answer.request_hash, answer.status, answer.body, now_millis()])?;
        Ok(())
    }
}

/// What listed objects must match; every filter given applies.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// Exact name.
    pub name: Option<String>,
    /// The start of the name.
    pub name_prefix: Option<String>,
    /// Exact values of attributes of the body, in attribute order.
    pub attributes: Vec<AttributeMatch>,
}

/// One attribute of the body that must hold a value, e.g. a VM's `status` is `running`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeMatch {
    /// The attribute; written into the SQL, so never taken from a request.
    pub attribute: &'static str,
    /// The value it must have.
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema exactly as novacron-platform created it before migrations were numbered
    /// (user_version 0). Frozen here on purpose: it must not follow later edits.
    const PRE_MIGRATION_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (kind, id),
    UNIQUE (kind, name)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS idempotency (
    actor TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (actor, key)
);
-- Expired keys are swept on every keyed POST: the index keeps that a range scan of the
-- expired rows instead of a scan of every remembered key.
CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created_ms);
CREATE TABLE IF NOT EXISTS ip_allocations (
    network_id TEXT NOT NULL,
    host_index INTEGER NOT NULL,
    vm_id TEXT NOT NULL UNIQUE,
    PRIMARY KEY (network_id, host_index)
);
CREATE INDEX IF NOT EXISTS objects_network_ref ON objects (kind, json_extract(body, '$.network_id'));
CREATE INDEX IF NOT EXISTS objects_attached_ref ON objects (kind, json_extract(body, '$.attached_to'));
CREATE TABLE IF NOT EXISTS secrets (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    attribute TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, id, attribute)
);
";

    fn user_version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("user_version")
    }

    #[test]
    fn a_database_from_before_migrations_upgrades_with_its_data() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("platform.db");
        {
            let old = Connection::open(&path).expect("create");
            old.execute_batch(PRE_MIGRATION_SCHEMA).expect("old schema");
            old.execute(
                "INSERT INTO objects (kind, id, name, version, body) VALUES ('networks', 'net-1', 'core', 3, '{\"id\":\"net-1\",\"name\":\"core\",\"cidr\":\"10.0.0.0/24\"}')",
                [],
            )
            .expect("object");
            old.execute("INSERT INTO events (time, actor, action, kind, id, name) VALUES ('t', 'alice', 'create', 'networks', 'net-1', 'core')", [])
                .expect("event");
            old.execute("INSERT INTO secrets (kind, id, attribute, value) VALUES ('vms', 'vm-1', 'user_data', 'x')", []).expect("secret");
            assert_eq!(user_version(&old), 0);
        }
        let store = Store::open(dir.path()).expect("the old database opens and migrates");
        let net = store.read(|c| q::get(c, "networks", "net-1")).expect("read").expect("the object survived");
        assert_eq!((net.name.as_str(), net.version), ("core", 3));
        assert_eq!(net.fields().get("cidr"), Some(&Value::from("10.0.0.0/24")));
        let events = store.read(|c| q::events_after(c, 0, 10)).expect("events");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].actor, "alice");
        assert_eq!(store.read(|c| Ok(user_version(c))).expect("version"), i64::try_from(MIGRATIONS.len()).expect("small"));
        let secrets: i64 = store.read(|c| c.query_row("SELECT COUNT(*) FROM secrets", [], |r| r.get(0))).expect("count");
        assert_eq!(secrets, 1);
        let state_tables: i64 = store
            .read(|c| {
                c.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('tfstate_versions', 'tfstate_locks')", [], |r| r.get(0))
            })
            .expect("tables");
        assert_eq!(state_tables, 2);
        drop(store);

        // Opening again runs nothing and changes nothing.
        let mut conn = Connection::open(&path).expect("reopen");
        assert_eq!(migrate(&mut conn, &path).expect("no-op"), MIGRATIONS.len());
        assert_eq!(user_version(&conn), i64::try_from(MIGRATIONS.len()).expect("small"));
    }

    #[test]
    fn a_rehearsal_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let obj = StoredObject { id: "net-1".into(), name: "core".into(), version: 1, body: "{}".into() };
        let seen = store
            .rehearse(|tx| -> rusqlite::Result<Option<u128>> {
                q::insert(tx, "networks", &obj)?;
                q::append_event(tx, "alice", "create", "networks", "net-1", "core", None)?;
                q::allocate_host(tx, "net-1", "vm-1", 10, None)
            })
            .expect("rehearsal");
        assert_eq!(seen, Some(0), "the work inside sees its own writes");
        assert!(store.read(|c| q::get(c, "networks", "net-1")).expect("read").is_none());
        assert_eq!(store.read(q::last_event_seq).expect("seq"), 0);
        let again = store.write(|tx| q::allocate_host(tx, "net-1", "vm-2", 10, None)).expect("write");
        assert_eq!(again, Some(0), "the rehearsed address was not kept");
    }

    fn vm_body(i: usize, network: &str, status: &str) -> StoredObject {
        let (id, name) = (format!("vm-{i:016x}"), format!("vm-{i:03}"));
        let body = serde_json::json!({"id": id, "name": name, "network_id": network, "status": status}).to_string();
        StoredObject { id, name, version: 1, body }
    }

    fn filter(name_prefix: Option<&str>, attributes: &[(&'static str, &str)]) -> ListFilter {
        ListFilter {
            name: None,
            name_prefix: name_prefix.map(str::to_string),
            attributes: attributes.iter().map(|(a, v)| AttributeMatch { attribute: a, value: v.to_string() }).collect(),
        }
    }

    #[test]
    fn filtered_pages_walk_in_creation_order_without_sorting() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        store
            .write(|tx| -> rusqlite::Result<()> {
                for i in 0..30 {
                    q::insert(tx, "vms", &vm_body(i, if i % 2 == 0 { "net-a" } else { "net-b" }, if i % 3 == 0 { "stopped" } else { "running" }))?;
                }
                q::insert(tx, "networks", &StoredObject { id: "net-a".into(), name: "vm-net".into(), version: 1, body: "{}".into() })
            })
            .expect("seed");
        let walk = |f: &ListFilter| {
            let (mut names, mut after) = (Vec::new(), 0);
            loop {
                let (items, last) = store.read(|c| q::list(c, "vms", after, 4, f)).expect("page");
                names.extend(items.iter().map(|b| serde_json::from_str::<Value>(b).expect("json")["name"].as_str().expect("name").to_string()));
                match last {
                    Some(seq) => after = seq,
                    None => return names,
                }
            }
        };
        let expected = |pred: fn(usize) -> bool| (0..30).filter(|i| pred(*i)).map(|i| format!("vm-{i:03}")).collect::<Vec<_>>();
        assert_eq!(walk(&filter(None, &[])), expected(|_| true), "the network named vm-net is another kind");
        assert_eq!(walk(&filter(None, &[("network_id", "net-a"), ("status", "stopped")])), expected(|i| i % 6 == 0));
        assert_eq!(walk(&filter(Some("vm-01"), &[("network_id", "net-b")])), expected(|i| (10..20).contains(&i) && i % 2 == 1));
        assert_eq!(walk(&filter(Some("vm-00"), &[("status", "running")])), expected(|i| i < 10 && i % 3 != 0));

        // How SQLite answers: in seq order straight from an index, never sorting what remains.
        let plan = |f: &ListFilter| -> String {
            let (kind, after, limit) = ("vms", 0i64, 501i64);
            let sql = format!("EXPLAIN QUERY PLAN {}", q::list_sql(f));
            let args = q::list_args(&kind, &after, f, &limit);
            store.read(|c| c.prepare(&sql)?.query_map(args.as_slice(), |r| r.get::<_, String>(3))?.collect::<Result<Vec<_>, _>>()).expect("plan").join("; ")
        };
        assert_eq!(plan(&filter(None, &[])), "SEARCH objects USING INDEX objects_listing (kind=? AND seq>?)");
        assert_eq!(plan(&filter(Some("vm-"), &[("status", "running")])), "SEARCH objects USING INDEX objects_listing (kind=? AND seq>?)");
        assert_eq!(plan(&filter(None, &[("network_id", "net-a")])), "SEARCH objects USING INDEX objects_network_ref (kind=? AND <expr>=? AND rowid>?)");
    }

    #[test]
    fn every_reference_the_schemas_declare_is_found_through_an_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let mut checked = Vec::new();
        for kind in novacron_schemas::Kind::ALL {
            for (holder, attribute, _) in novacron_schemas::catalog().holders_of(kind) {
                let sql = format!("EXPLAIN QUERY PLAN {}", q::referencing_sql(&attribute.name));
                let plan = store
                    .read(|c| c.prepare(&sql)?.query_map(params![holder.collection(), "x"], |r| r.get::<_, String>(3))?.collect::<Result<Vec<_>, _>>())
                    .expect("plan")
                    .join("; ");
                assert!(plan.starts_with("SEARCH objects USING INDEX") && plan.contains("(kind=? AND <expr>=?)"), "{holder}.{}: {plan}", attribute.name);
                checked.push(format!("{holder}.{}", attribute.name));
            }
        }
        assert_eq!(checked, ["volume.attached_to", "vm.network_id"]);
    }

    #[test]
    fn a_database_from_a_newer_server_is_refused_untouched() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("platform.db");
        let mut conn = Connection::open(&path).expect("create");
        let newer = i64::try_from(MIGRATIONS.len() + 1).expect("small");
        conn.pragma_update(None, "user_version", newer).expect("set");
        let err = migrate(&mut conn, &path).expect_err("too new");
        assert!(matches!(err, MigrationError::TooNew { .. }), "{err}");
        assert!(err.to_string().contains("run a newer novacron-platform"), "{err}");
        assert_eq!(user_version(&conn), newer);
    }

    #[test]
    fn a_failing_step_rolls_back_and_keeps_the_version() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("platform.db");
        let mut conn = Connection::open(&path).expect("create");
        conn.execute_batch(MIGRATIONS[0]).expect("step 1");
        conn.pragma_update(None, "user_version", 1).expect("at 1");
        // A view named like step 2's table makes its index fail half way through the step.
        conn.execute_batch("CREATE VIEW tfstate_versions AS SELECT 1 AS seq").expect("obstacle");
        let err = migrate(&mut conn, &path).expect_err("step 2 fails");
        assert!(matches!(err, MigrationError::Step { step: 2, at: 1, .. }), "{err}");
        assert_eq!(user_version(&conn), 1);
        let locks: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'tfstate_locks'", [], |r| r.get(0)).expect("count");
        assert_eq!(locks, 0, "nothing of the failed step stays");
    }
}
