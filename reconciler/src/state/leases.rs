//! What `serve` replicas sharing one database agree on: which replicas are alive
//! (`replicas`, a heartbeat each), which replica owns each repository (`leases`, with a fencing
//! token that grows at every change of owner), and the wake-ups any replica records for the
//! owner (`wakeups`; on PostgreSQL a `NOTIFY` on [`WAKE_CHANNEL`] says there is one).
//!
//! Times are the database's own clock (`{now_ms}`), so replicas on machines whose clocks differ
//! still agree on when a lease expires.

use serde::Serialize;

use super::sql::{DbError, args};
use super::{StateDb, StateError};

/// The PostgreSQL channel a wake-up is announced on (its payload: the wake-up's sequence number).
pub const WAKE_CHANNEL: &str = "novacron_wake";

/// How many leases one renewal statement carries.
const RENEW_CHUNK: usize = 200;

/// How many wake-ups are kept (older ones are trimmed; an owner reads them within seconds).
pub const WAKEUPS_KEPT: i64 = 10_000;

/// A repository's lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseRow {
    /// The repository.
    pub repo: String,
    /// The replica holding it (empty once released).
    pub owner: String,
    /// The fencing token: grows by one at every change of owner.
    pub token: u64,
    /// True while it has not expired (by the database's clock).
    pub live: bool,
    /// Milliseconds until it expires (negative once expired).
    pub expires_in_ms: i64,
    /// When the current owner took it.
    pub acquired_at: String,
}

/// A replica as it last announced itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaRow {
    /// Its id.
    pub id: String,
    /// Where its HTTP server listens (as it announced it).
    pub address: String,
    /// When it started.
    pub started_at: String,
    /// True while its heartbeat has not expired.
    pub alive: bool,
}

/// How long a replica that stopped renewing stays listed (then its row is deleted).
pub const REPLICA_KEPT_MS: i64 = 3_600_000;

/// Announces replica `id` for `ttl_ms`; refused when a live replica already uses that id. Leases
/// a previous process with the same id still owned are released (it is gone, and this one never
/// held them), and replicas silent for an hour are forgotten.
pub fn register_replica(db: &StateDb, id: &str, address: &str, ttl_ms: u64) -> Result<bool, StateError> {
    let now = db.now();
    db.write("register this replica", |tx| {
        tx.execute("DELETE FROM replicas WHERE expires_ms < {now_ms} - ?1", args![REPLICA_KEPT_MS])?;
        let row = tx.query_opt(
            "INSERT INTO replicas (id, address, started_at, expires_ms) VALUES (?1, ?2, ?3, {now_ms} + ?4)
             ON CONFLICT (id) DO UPDATE SET address = excluded.address, started_at = excluded.started_at, expires_ms = excluded.expires_ms
             WHERE replicas.expires_ms <= {now_ms} RETURNING id",
            args![id, address, &now, ttl_ms],
        )?;
        if row.is_some() {
            tx.execute("UPDATE leases SET owner = '', expires_ms = 0 WHERE owner = ?1", args![id])?;
        }
        Ok(row.is_some())
    })
}

/// Renews replica `id`'s heartbeat and the leases it acts on (`held`: repository and token) for
/// `ttl_ms`, in one transaction; returns those renewed (a lease taken over meanwhile is not).
/// A lease the database lists under `id` but that is not in `held` (its release failed, or
/// the answer to taking it was lost) is left to expire, so that someone acts on it.
pub fn heartbeat(db: &StateDb, id: &str, address: &str, ttl_ms: u64, held: &[(String, u64)]) -> Result<Vec<(String, u64)>, StateError> {
    let now = db.now();
    db.write("renew this replica's leases", |tx| {
        let updated = tx.execute("UPDATE replicas SET expires_ms = {now_ms} + ?2, address = ?3 WHERE id = ?1", args![id, ttl_ms, address])?;
        if updated == 0 {
            tx.execute("INSERT INTO replicas (id, address, started_at, expires_ms) VALUES (?1, ?2, ?3, {now_ms} + ?4)", args![id, address, &now, ttl_ms])?;
        }
        // A few statements for hundreds of leases: a renewal must stay short.
        let mut renewed = Vec::with_capacity(held.len());
        for chunk in held.chunks(RENEW_CHUNK) {
            let pairs: Vec<String> = (0..chunk.len()).map(|i| format!("(CAST(?{} AS TEXT), CAST(?{} AS BIGINT))", 3 + 2 * i, 4 + 2 * i)).collect();
            let sql = format!(
                "UPDATE leases SET expires_ms = {{now_ms}} + ?2 WHERE owner = ?1 AND (repo, token) IN (VALUES {}) RETURNING repo, token",
                pairs.join(", ")
            );
            let mut values: Vec<super::sql::Value> = vec![id.into(), ttl_ms.into()];
            for (repo, token) in chunk {
                values.push(repo.as_str().into());
                values.push((*token).into());
            }
            for r in tx.query(&sql, &values)? {
                renewed.push((r.get(0)?, r.get(1)?));
            }
        }
        Ok::<_, DbError>(renewed)
    })
}

/// Takes the lease on `repo` for `owner` when nobody holds it (never taken, released, or
/// expired); the new fencing token, or `None` when someone else still holds it.
pub fn try_acquire(db: &StateDb, repo: &str, owner: &str, ttl_ms: u64) -> Result<Option<u64>, StateError> {
    let now = db.now();
    db.write("take a repository lease", |tx| {
        let row = tx.query_opt(
            "INSERT INTO leases (repo, owner, token, expires_ms, acquired_at) VALUES (?1, ?2, 1, {now_ms} + ?3, ?4)
             ON CONFLICT (repo) DO UPDATE SET owner = excluded.owner, token = leases.token + 1, expires_ms = excluded.expires_ms, acquired_at = excluded.acquired_at
             WHERE leases.owner = '' OR leases.expires_ms <= {now_ms} RETURNING token",
            args![repo, owner, ttl_ms, &now],
        )?;
        row.map(|r| r.get(0)).transpose()
    })
}

/// Gives up the lease on `repo` (another replica may take it at once); false when it was not
/// `owner`'s with `token` any more.
pub fn release_lease(db: &StateDb, repo: &str, owner: &str, token: u64) -> Result<bool, StateError> {
    db.write("release a repository lease", |tx| {
        Ok(tx.execute("UPDATE leases SET owner = '', expires_ms = 0 WHERE repo = ?1 AND owner = ?2 AND token = ?3", args![repo, owner, token])? == 1)
    })
}

/// Stops replica `id`: releases every lease it holds and removes its heartbeat (a clean
/// shutdown hands its repositories over at once instead of after the TTL).
pub fn retire_replica(db: &StateDb, id: &str) -> Result<u64, StateError> {
    db.write("retire this replica", |tx| {
        let released = tx.execute("UPDATE leases SET owner = '', expires_ms = 0 WHERE owner = ?1", args![id])?;
        tx.execute("DELETE FROM replicas WHERE id = ?1", args![id])?;
        Ok(released)
    })
}

/// Every lease, by repository.
pub fn leases(db: &StateDb) -> Result<Vec<LeaseRow>, StateError> {
    db.read("read the repository leases", |tx| {
        let rows = tx.query("SELECT repo, owner, token, expires_ms - {now_ms}, acquired_at FROM leases ORDER BY repo", args![])?;
        rows.iter()
            .map(|r| {
                let owner: String = r.get(1)?;
                let expires_in_ms: i64 = r.get(3)?;
                Ok(LeaseRow { repo: r.get(0)?, live: !owner.is_empty() && expires_in_ms > 0, owner, token: r.get(2)?, expires_in_ms, acquired_at: r.get(4)? })
            })
            .collect()
    })
}

/// Every replica that announced itself and has not retired, alive or not.
pub fn replicas(db: &StateDb) -> Result<Vec<ReplicaRow>, StateError> {
    db.read("read the replicas", |tx| {
        let rows = tx.query("SELECT id, address, started_at, expires_ms > {now_ms} FROM replicas ORDER BY id", args![])?;
        rows.iter().map(|r| Ok(ReplicaRow { id: r.get(0)?, address: r.get(1)?, started_at: r.get(2)?, alive: r.get(3)? })).collect()
    })
}

/// Records that `repo` should reconcile now (`reason`: `webhook`, `approval`, ...), for
/// whichever replica holds it; on PostgreSQL also announced on [`WAKE_CHANNEL`] at commit.
pub fn wake(db: &StateDb, repo: &str, reason: &str) -> Result<u64, StateError> {
    let now = db.now();
    db.write("record a wake-up", |tx| {
        let seq: i64 = tx.query_one("INSERT INTO wakeups (repo, reason, at) VALUES (?1, ?2, ?3) RETURNING seq", args![repo, reason, &now])?.get(0)?;
        if seq % 100 == 0 {
            tx.execute("DELETE FROM wakeups WHERE seq <= ?1", args![seq - WAKEUPS_KEPT])?;
        }
        if tx.is_postgres() {
            tx.execute("SELECT pg_notify(?1, ?2)", args![WAKE_CHANNEL, seq.to_string()])?;
        }
        Ok(u64::try_from(seq).unwrap_or(0))
    })
}

/// Wake-ups after `seq` (repository, reason), oldest first, with the newest sequence number
/// seen (`seq` when there are none).
pub fn wakeups_since(db: &StateDb, seq: u64) -> Result<(Vec<(String, String)>, u64), StateError> {
    db.read("read wake-ups", |tx| {
        let rows = tx.query("SELECT seq, repo, reason FROM wakeups WHERE seq > ?1 ORDER BY seq", args![seq])?;
        let mut last = seq;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            last = last.max(r.get(0)?);
            out.push((r.get(1)?, r.get(2)?));
        }
        Ok((out, last))
    })
}

/// Wake-ups after `seq` with their sequence numbers (`(seq, repo, reason)`), oldest first.
pub fn wakeups_after(db: &StateDb, seq: u64) -> Result<Vec<(u64, String, String)>, StateError> {
    db.read("read wake-ups", |tx| {
        let rows = tx.query("SELECT seq, repo, reason FROM wakeups WHERE seq > ?1 ORDER BY seq", args![seq])?;
        rows.iter().map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).collect()
    })
}

/// The newest wake-up's sequence number (0 when none): where a starting replica begins.
pub fn last_wakeup(db: &StateDb) -> Result<u64, StateError> {
    db.read("read wake-ups", |tx| tx.query_one("SELECT COALESCE(MAX(seq), 0) FROM wakeups", args![])?.get(0))
}

/// A connection of its own that waits for [`WAKE_CHANNEL`] notifications (PostgreSQL only).
pub struct WakeListener {
    client: postgres::Client,
}

impl std::fmt::Debug for WakeListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeListener").finish_non_exhaustive()
    }
}

impl WakeListener {
    /// Connects and listens; `None` for SQLite (one process: nobody else to wake it).
    /// Blocking: call it off the async runtime.
    pub fn connect(db: &StateDb) -> Option<Result<WakeListener, StateError>> {
        let super::StateLocation::Postgres(config) = db.location() else { return None };
        let err = |source: DbError| StateError::Query { location: db.location().to_string(), operation: "listen for wake-ups", source };
        let connect = || -> Result<WakeListener, DbError> {
            let mut client = super::sql::tuned((**config).clone()).connect(postgres::NoTls)?;
            client.batch_execute(&format!("LISTEN {WAKE_CHANNEL}"))?;
            Ok(WakeListener { client })
        };
        Some(connect().map_err(err))
    }

    /// Waits up to `timeout` for a notification; true when one (or more) arrived. An error
    /// means the connection is gone: connect again.
    pub fn wait(&mut self, timeout: std::time::Duration) -> Result<bool, DbError> {
        use postgres::fallible_iterator::FallibleIterator;
        let got = {
            let mut notifications = self.client.notifications();
            let got = notifications.timeout_iter(timeout).next()?.is_some();
            // Drain what else is queued, without waiting.
            while notifications.iter().next()?.is_some() {}
            got
        };
        if self.client.is_closed() {
            return Err(DbError { message: "the listening connection closed".into(), unreachable: true });
        }
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_taken_once_renewed_released_and_its_token_grows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = StateDb::open(&dir.path().join("s.db")).expect("open");
        assert!(register_replica(&db, "a", "127.0.0.1:1", 15_000).expect("register"));
        assert!(!register_replica(&db, "a", "127.0.0.1:2", 15_000).expect("register again"), "a live replica's id is refused");
        assert_eq!(try_acquire(&db, "prod", "a", 15_000).expect("acquire"), Some(1));
        assert_eq!(try_acquire(&db, "prod", "b", 15_000).expect("held"), None, "held by a");
        assert_eq!(heartbeat(&db, "a", "127.0.0.1:1", 15_000, &[("prod".into(), 1), ("stage".into(), 3)]).expect("renew"), vec![("prod".to_string(), 1)]);
        assert!(!release_lease(&db, "prod", "a", 7).expect("wrong token"));
        assert!(release_lease(&db, "prod", "a", 1).expect("release"));
        assert_eq!(try_acquire(&db, "prod", "b", 15_000).expect("free"), Some(2), "the next owner gets a larger token");
        // An expired lease is taken over.
        assert_eq!(try_acquire(&db, "stage", "a", 0).expect("expiring at once"), Some(1));
        assert_eq!(try_acquire(&db, "stage", "b", 15_000).expect("taken over"), Some(2));
        let all = leases(&db).expect("leases");
        assert_eq!(
            all.iter().map(|l| (l.repo.as_str(), l.owner.as_str(), l.token, l.live)).collect::<Vec<_>>(),
            [("prod", "b", 2, true), ("stage", "b", 2, true)]
        );
        assert_eq!(retire_replica(&db, "b").expect("retire"), 2);
        assert!(leases(&db).expect("leases").iter().all(|l| !l.live));
    }

    #[test]
    fn a_fenced_write_is_refused_once_the_lease_moved_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = StateDb::open(&dir.path().join("s.db")).expect("open");
        let token = try_acquire(&db, "prod", "a", 0).expect("acquire").expect("free");
        let fenced = db.fenced(crate::state::Fence { repo: "prod".into(), owner: "a".into(), token, clock: None });
        crate::state::set_rolled_out(&fenced, "r", "", "abc").expect("still the holder");
        try_acquire(&db, "prod", "b", 15_000).expect("take over").expect("expired");
        let err = crate::state::set_rolled_out(&fenced, "r", "", "def").expect_err("refused");
        assert!(matches!(err, StateError::Fenced { .. }), "{err}");
        assert!(err.to_string().contains("moved on") && err.to_string().contains("b, token 2"), "{err}");
        assert_eq!(crate::state::rolled_out_revision(&db, "r", "").expect("read").as_deref(), Some("abc"), "the refused write left nothing");
    }

    #[test]
    fn wakeups_are_read_in_order_from_where_a_replica_left_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = StateDb::open(&dir.path().join("s.db")).expect("open");
        let start = last_wakeup(&db).expect("last");
        wake(&db, "a", "webhook").expect("wake");
        wake(&db, "b", "approval").expect("wake");
        let (got, last) = wakeups_since(&db, start).expect("since");
        assert_eq!(got, [("a".to_string(), "webhook".to_string()), ("b".to_string(), "approval".to_string())]);
        assert_eq!(wakeups_since(&db, last).expect("nothing new").0, []);
    }
}
