//! One SQL dialect over the two engines the state lives in: SQLite (a file, the embedded default)
//! and PostgreSQL (shared by `serve` replicas).
//!
//! Statements are written once, SQLite-style, and rewritten for PostgreSQL: `?N` placeholders
//! become `$N`, and three tokens stand for what the engines spell differently — `{now_ms}` (the
//! database's clock in Unix milliseconds), `{for_update}` and `{for_share}` (row locks;
//! SQLite's write transactions are serialised anyway, so they vanish there). Values cross as
//! [`Value`] and come back as [`Row`]s, so a table module never sees which engine it runs on.

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A value passed to or read from a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer (`INTEGER`/`BIGINT`).
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes (`BLOB`/`BYTEA`).
    Blob(Vec<u8>),
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(i64::from(v))
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(i64::from(v))
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Blob(v.to_vec())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Blob(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}
impl<T: Clone + Into<Value>> From<&Option<T>> for Value {
    fn from(v: &Option<T>) -> Value {
        v.clone().map_or(Value::Null, Into::into)
    }
}

/// The arguments of a statement: `args![a, b]` is `&[Value::from(a), Value::from(b)]`.
macro_rules! args {
    () => { &[] as &[$crate::state::sql::Value] };
    ($($v:expr),+ $(,)?) => { &[$($crate::state::sql::Value::from($v)),+] as &[$crate::state::sql::Value] };
}
pub(crate) use args;

/// A value read back, converted to a Rust type.
pub trait FromValue: Sized {
    /// `v` as `Self`, or why not.
    fn from_value(v: &Value) -> Result<Self, String>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<i64, String> {
        match v {
            Value::Int(i) => Ok(*i),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}
impl FromValue for u64 {
    fn from_value(v: &Value) -> Result<u64, String> {
        u64::try_from(i64::from_value(v)?).map_err(|e| e.to_string())
    }
}
impl FromValue for u32 {
    fn from_value(v: &Value) -> Result<u32, String> {
        u32::try_from(i64::from_value(v)?).map_err(|e| e.to_string())
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Result<bool, String> {
        Ok(i64::from_value(v)? != 0)
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Result<String, String> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            Value::Int(i) => Ok(i.to_string()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Result<Vec<u8>, String> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            Value::Text(s) => Ok(s.clone().into_bytes()),
            other => Err(format!("expected bytes, found {other:?}")),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Option<T>, String> {
        match v {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(Vec<Value>);

impl Row {
    /// Column `i` as `T`.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, DbError> {
        let v = self.0.get(i).ok_or_else(|| DbError::other(format!("no column {i}")))?;
        T::from_value(v).map_err(|e| DbError::other(format!("column {i}: {e}")))
    }
}

/// What an engine said when a statement or the connection failed.
#[derive(Debug, Clone)]
pub struct DbError {
    /// The engine's message.
    pub message: String,
    /// True when the database could not be reached (PostgreSQL down, connection lost).
    pub unreachable: bool,
}

impl DbError {
    /// An error that is not about reaching the database.
    pub fn other(message: impl Into<String>) -> DbError {
        DbError { message: message.into(), unreachable: false }
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> DbError {
        DbError::other(e.to_string())
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> DbError {
        // A server shutting down or starting up answers with an error of its own (57P01
        // `admin_shutdown` to the sessions it ends, 57P03 while it starts, class 08 for a lost
        // connection): the database is unreachable then, like when nothing answers at all.
        let server_gone = e.code().is_some_and(|c| c.code().starts_with("57P") || c.code().starts_with("08"));
        let unreachable = e.is_closed() || server_gone || e.as_db_error().is_none() && e.code().is_none();
        // The server's own message (with its detail) reads better than the driver's wrapper.
        let message = match e.as_db_error() {
            Some(db) => match db.detail() {
                Some(detail) => format!("{}: {detail}", db.message()),
                None => db.message().to_string(),
            },
            // The driver's message leaves out the cause ("error connecting to server"), which is
            // what says what to fix ("Connection refused").
            None => match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            },
        };
        DbError { message, unreachable }
    }
}

/// Rewrites a statement for PostgreSQL (`pg`) or SQLite.
pub fn dialect(sql: &str, pg: bool) -> Cow<'_, str> {
    if !sql.contains('?') && !sql.contains('{') {
        return Cow::Borrowed(sql);
    }
    let (now, update, share) = if pg {
        ("CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)", " FOR UPDATE", " FOR SHARE")
    } else {
        ("CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)", "", "")
    };
    let sql = sql.replace("{now_ms}", now).replace("{for_update}", update).replace("{for_share}", share);
    if !pg {
        return Cow::Owned(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut in_string = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                in_string = !in_string;
                out.push(c);
            }
            '?' if !in_string => out.push('$'),
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// An open transaction on either engine.
pub enum Tx<'a> {
    /// SQLite.
    Sqlite(rusqlite::Transaction<'a>),
    /// PostgreSQL.
    Postgres(postgres::Transaction<'a>),
}

impl Tx<'_> {
    /// True on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Tx::Postgres(_))
    }

    /// Runs a statement; the number of rows it changed.
    pub fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64, DbError> {
        match self {
            Tx::Sqlite(tx) => {
                let sql = dialect(sql, false);
                let n = tx.execute(&sql, rusqlite::params_from_iter(args.iter().map(sqlite_value)))?;
                Ok(n as u64)
            }
            Tx::Postgres(tx) => {
                let sql = dialect(sql, true);
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args.iter().map(|v| v as &(dyn postgres::types::ToSql + Sync)).collect();
                Ok(tx.execute(sql.as_ref(), &params)?)
            }
        }
    }

    /// Runs several statements without arguments (a schema step).
    pub fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        match self {
            Tx::Sqlite(tx) => Ok(tx.execute_batch(sql)?),
            Tx::Postgres(tx) => Ok(tx.batch_execute(sql)?),
        }
    }

    /// Every row of a query.
    pub fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, DbError> {
        match self {
            Tx::Sqlite(tx) => {
                let sql = dialect(sql, false);
                let mut stmt = tx.prepare(&sql)?;
                let width = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(args.iter().map(sqlite_value)))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut values = Vec::with_capacity(width);
                    for i in 0..width {
                        values.push(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => Value::Null,
                            rusqlite::types::ValueRef::Integer(i) => Value::Int(i),
                            rusqlite::types::ValueRef::Real(f) => Value::Int(f as i64),
                            rusqlite::types::ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                            rusqlite::types::ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                        });
                    }
                    out.push(Row(values));
                }
                Ok(out)
            }
            Tx::Postgres(tx) => {
                let sql = dialect(sql, true);
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args.iter().map(|v| v as &(dyn postgres::types::ToSql + Sync)).collect();
                let rows = tx.query(sql.as_ref(), &params)?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt(&mut self, sql: &str, args: &[Value]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// The first row of a query, which must exist.
    pub fn query_one(&mut self, sql: &str, args: &[Value]) -> Result<Row, DbError> {
        self.query_opt(sql, args)?.ok_or_else(|| DbError::other("the query returned no row"))
    }

    fn commit(self) -> Result<(), DbError> {
        match self {
            Tx::Sqlite(tx) => Ok(tx.commit()?),
            Tx::Postgres(tx) => Ok(tx.commit()?),
        }
    }
}

fn sqlite_value(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
        Value::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
    }
}

fn pg_row(row: &postgres::Row) -> Result<Row, DbError> {
    use postgres::types::Type;
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let v = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?.map_or(Value::Null, Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?.map_or(Value::Null, |v| Value::Int(i64::from(v)))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)?.map_or(Value::Null, |v| Value::Int(i64::from(v)))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?.map_or(Value::Null, |v| Value::Int(i64::from(v)))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i)?.map_or(Value::Null, Value::Blob)
        } else if *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::NAME || *ty == Type::BPCHAR {
            row.try_get::<_, Option<String>>(i)?.map_or(Value::Null, Value::Text)
        } else {
            return Err(DbError::other(format!("column {} has type {ty}, which the state store does not read", column.name())));
        };
        values.push(v);
    }
    Ok(Row(values))
}

impl postgres::types::ToSql for Value {
    fn to_sql(&self, ty: &postgres::types::Type, out: &mut bytes::BytesMut) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        match self {
            Value::Null => Ok(postgres::types::IsNull::Yes),
            Value::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::BOOL => (*i != 0).to_sql(ty, out),
            Value::Int(i) if *ty == Type::TEXT || *ty == Type::VARCHAR => i.to_string().to_sql(ty, out),
            Value::Int(i) => i.to_sql(ty, out),
            Value::Text(s) if *ty == Type::INT8 => s.parse::<i64>()?.to_sql(ty, out),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// Runs `f` where a blocking database client may run: on the calling thread outside an async
/// runtime, otherwise on a scoped thread of its own (the PostgreSQL driver runs a runtime of its
/// own and must not be entered from inside one), handing the worker's other tasks to other
/// threads meanwhile when the runtime allows it.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let Ok(handle) = tokio::runtime::Handle::try_current() else { return f() };
    let run = || std::thread::scope(|s| s.spawn(f).join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
    if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread { tokio::task::block_in_place(run) } else { run() }
}

/// How many connections one process keeps to PostgreSQL.
pub const PG_POOL_SIZE: usize = 4;
/// How long one connection attempt may take.
pub const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long sent data may stay unacknowledged before the connection counts as dead.
pub const PG_TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait after a failed connection attempt before the next; it doubles up to
/// [`PG_RETRY_CAP`]. Meanwhile operations fail at once (so nothing queues behind a dead server).
pub const PG_RETRY_START: Duration = Duration::from_millis(250);
/// The longest wait between connection attempts.
pub const PG_RETRY_CAP: Duration = Duration::from_secs(5);

/// `config` with the timeouts every connection of the reconciler uses: a database that stops
/// answering (a partition that drops packets rather than refusing) fails calls within seconds
/// instead of holding them forever.
pub fn tuned(mut config: postgres::Config) -> postgres::Config {
    config.connect_timeout(PG_CONNECT_TIMEOUT);
    config.application_name("novacron-reconcile");
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(PG_TCP_USER_TIMEOUT);
    }
    config.keepalives(true);
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(Duration::from_secs(5));
    }
    config
}

/// A few connections to PostgreSQL, reconnected with backoff when the server goes away.
pub struct PgPool {
    config: postgres::Config,
    slots: Vec<Mutex<Option<postgres::Client>>>,
    next: std::sync::atomic::AtomicUsize,
    retry: Mutex<Retry>,
}

#[derive(Debug, Default)]
struct Retry {
    not_before: Option<Instant>,
    delay: Duration,
    last_error: String,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds the password: never printed.
        f.debug_struct("PgPool").field("slots", &self.slots.len()).finish_non_exhaustive()
    }
}

impl PgPool {
    /// A pool for `config` (not connected yet).
    pub fn new(config: postgres::Config, size: usize) -> PgPool {
        let config = tuned(config);
        PgPool { config, slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(), next: Default::default(), retry: Mutex::default() }
    }

    /// A connection, made now when the slot has none (or lost its own); fails at once while
    /// the backoff after a failed attempt runs.
    fn connect(&self) -> Result<postgres::Client, DbError> {
        {
            let retry = self.retry.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = retry.not_before.filter(|at| Instant::now() < *at) {
                let wait = at.saturating_duration_since(Instant::now());
                return Err(DbError {
                    message: format!("PostgreSQL is unreachable ({}); next attempt in {} ms", retry.last_error, wait.as_millis()),
                    unreachable: true,
                });
            }
        }
        match self.config.connect(postgres::NoTls) {
            Ok(client) => {
                *self.retry.lock().unwrap_or_else(|p| p.into_inner()) = Retry::default();
                Ok(client)
            }
            Err(e) => {
                // Refused, timed out, reset: unreachable. A server that answers and refuses (a
                // wrong password, an unknown database) is not: waiting will not help.
                let e = DbError::from(e);
                let mut retry = self.retry.lock().unwrap_or_else(|p| p.into_inner());
                retry.delay = if retry.delay.is_zero() { PG_RETRY_START } else { (retry.delay * 2).min(PG_RETRY_CAP) };
                retry.not_before = Some(Instant::now() + retry.delay);
                retry.last_error.clone_from(&e.message);
                Err(DbError { message: format!("cannot connect to PostgreSQL: {}", e.message), unreachable: e.unreachable })
            }
        }
    }

    /// Runs `f` on one of the pool's connections.
    pub fn with_client<T: Send>(&self, f: impl FnOnce(&mut postgres::Client) -> Result<T, DbError> + Send) -> Result<T, DbError> {
        off_runtime(|| {
            let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // A free slot if there is one, else wait for the one in turn.
            let n = self.slots.len();
            let mut guard = (0..n)
                .find_map(|i| self.slots[(start + i) % n].try_lock().ok())
                .unwrap_or_else(|| self.slots[start % n].lock().unwrap_or_else(|p| p.into_inner()));
            if guard.as_ref().is_some_and(postgres::Client::is_closed) {
                *guard = None;
            }
            if guard.is_none() {
                *guard = Some(self.connect()?);
            }
            let Some(client) = guard.as_mut() else { return Err(DbError::other("no connection")) };
            let result = f(client);
            if client.is_closed() || result.as_ref().is_err_and(|e| e.unreachable) {
                *guard = None;
            }
            result
        })
    }
}

/// The engine behind a [`super::StateDb`].
#[derive(Debug)]
pub enum Engine {
    /// One SQLite connection behind a mutex.
    Sqlite(Mutex<rusqlite::Connection>),
    /// A PostgreSQL pool (boxed: it is much larger than the SQLite connection).
    Postgres(Box<PgPool>),
}

impl Engine {
    /// Runs `f` in one transaction (SQLite: `BEGIN IMMEDIATE` when `write`), committed when it
    /// returns `Ok`, rolled back otherwise.
    pub fn transaction<T: Send>(&self, write: bool, f: impl FnOnce(&mut Tx<'_>) -> Result<T, DbError> + Send) -> Result<T, DbError> {
        match self {
            Engine::Sqlite(conn) => {
                let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                let behavior = if write { rusqlite::TransactionBehavior::Immediate } else { rusqlite::TransactionBehavior::Deferred };
                let mut tx = Tx::Sqlite(conn.transaction_with_behavior(behavior)?);
                let out = f(&mut tx)?;
                tx.commit()?;
                Ok(out)
            }
            Engine::Postgres(pool) => pool.with_client(|client| {
                let mut tx = Tx::Postgres(client.transaction()?);
                let out = f(&mut tx)?;
                tx.commit()?;
                Ok(out)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_tokens_are_rewritten_for_postgres_only() {
        let sql = "SELECT owner FROM leases WHERE repo = ?1 AND note = 'why?' AND expires_ms > {now_ms}{for_share}";
        let pg = dialect(sql, true);
        assert!(pg.contains("repo = $1 AND note = 'why?'"), "{pg}");
        assert!(pg.contains("clock_timestamp()") && pg.ends_with(" FOR SHARE"), "{pg}");
        let lite = dialect(sql, false);
        assert!(lite.contains("repo = ?1") && lite.contains("julianday") && !lite.contains("FOR SHARE"), "{lite}");
        assert!(matches!(dialect("SELECT 1", true), Cow::Borrowed(_)));
    }

    #[test]
    fn values_convert_both_ways() {
        assert_eq!(Value::from(Some("a")), Value::Text("a".into()));
        assert_eq!(Value::from(None::<String>), Value::Null);
        assert_eq!(Value::from(u64::MAX), Value::Int(i64::MAX));
        assert!(bool::from_value(&Value::Int(1)).expect("bool"));
        assert_eq!(Option::<u64>::from_value(&Value::Null).expect("null"), None);
        assert!(u64::from_value(&Value::Int(-1)).is_err(), "a negative count is an error, not a wrap");
        assert!(String::from_value(&Value::Blob(vec![1])).is_err());
    }
}
