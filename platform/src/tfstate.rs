//! Terraform state for the `backend "http"` protocol: workspace names, lock info, stored versions with retention, and locks.
//!
//! Every write is one transaction: a state write checks the lock, stores the body as a new
//! version, trims versions past the retention count and appends its event together. State
//! bodies go to SQLite and back to the caller, never into a log line, an event or an error.

use novacron_schemas::sha256_hex;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::store::{Store, q};
use crate::time::now_rfc3339;

/// Versions kept per workspace unless `--state-retention` says otherwise.
pub const DEFAULT_RETENTION: usize = 100;

/// Largest state body accepted (64 MiB); larger answers 413.
pub const MAX_STATE_BYTES: usize = 64 * 1024 * 1024;

/// Largest lock info body accepted.
pub const MAX_LOCK_BYTES: usize = 64 * 1024;

/// The `kind` of the events state changes append to the change feed.
pub const EVENT_KIND: &str = "tfstate";

/// The longest workspace name.
const MAX_WORKSPACE_LEN: usize = 64;

/// Checks a workspace name: a letter or digit, then up to 63 letters, digits, `.`, `_` or `-`.
/// The message says what is wrong and what is allowed.
pub fn validate_workspace(name: &str) -> Result<(), String> {
    let allowed = "a workspace name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. prod or team-a.staging)";
    let Some(first) = name.chars().next() else {
        return Err(format!("the workspace name is empty; {allowed}"));
    };
    if name.len() > MAX_WORKSPACE_LEN {
        return Err(format!("the workspace name is {} characters long; {allowed}", name.len()));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(format!("workspace {name:?} starts with {first:?}; {allowed}"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c))) {
        return Err(format!("workspace {name:?} contains {bad:?}; {allowed}"));
    }
    Ok(())
}

/// Terraform's lock info (`ID`, `Operation`, `Info`, `Who`, `Version`, `Created`, `Path`), kept
/// as the JSON object the client sent so that every member it knows comes back unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct LockInfo {
    members: Map<String, Value>,
}

impl LockInfo {
    /// Parses a LOCK or UNLOCK body. The message names the member at fault and the fix.
    pub fn parse(body: &[u8]) -> Result<LockInfo, (&'static str, String)> {
        let value: Value = serde_json::from_slice(body).map_err(|e| ("body", format!("the lock info is not JSON ({e}); send Terraform's lock info object")))?;
        let Value::Object(members) = value else {
            return Err(("body", "the lock info must be a JSON object with at least \"ID\"".to_string()));
        };
        match members.get("ID") {
            Some(Value::String(id)) if !id.trim().is_empty() => {}
            Some(Value::String(_)) | None => return Err(("ID", "the lock info has no \"ID\"; send the lock id Terraform generated".to_string())),
            Some(_) => return Err(("ID", "the lock info \"ID\" must be a string".to_string())),
        }
        for key in ["Operation", "Info", "Who", "Version", "Created", "Path"] {
            if members.get(key).is_some_and(|v| !v.is_string() && !v.is_null()) {
                return Err((key, format!("the lock info {key:?} must be a string")));
            }
        }
        Ok(LockInfo { members })
    }

    /// The lock id.
    pub fn id(&self) -> &str {
        self.text("ID")
    }

    /// One string member, `""` when absent.
    pub fn text(&self, key: &str) -> &str {
        self.members.get(key).and_then(Value::as_str).unwrap_or_default()
    }

    /// The members, as served back (`GET .../lock`, and merged into a 423 problem).
    pub fn members(&self) -> &Map<String, Value> {
        &self.members
    }

    fn to_json(&self) -> String {
        Value::Object(self.members.clone()).to_string()
    }

    fn from_json(text: &str) -> LockInfo {
        match serde_json::from_str(text) {
            Ok(Value::Object(members)) => LockInfo { members },
            _ => LockInfo { members: Map::new() },
        }
    }

    /// `lock <ID> held by <Who> for <Operation> since <Created>`, for details and audit records.
    pub fn describe(&self) -> String {
        let or_unknown = |s: &str| if s.is_empty() { "?".to_string() } else { s.to_string() };
        format!(
            "lock {} held by {} for {} since {}",
            self.id(),
            or_unknown(self.text("Who")),
            or_unknown(self.text("Operation")),
            or_unknown(self.text("Created"))
        )
    }
}

/// One stored version as `GET /v1/tfstate/{workspace}/versions` lists it: never the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateVersion {
    /// The state's `serial`, when the body had one.
    pub serial: Option<i64>,
    /// The state's `lineage`, when the body had one.
    pub lineage: Option<String>,
    /// When it was stored (RFC 3339, UTC).
    pub time: String,
    /// The name of the API key that stored it.
    pub actor: String,
    /// SHA-256 of the body, hex.
    pub sha256: String,
    /// Body size in bytes.
    pub size: i64,
}

/// Why a state operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another lock holds the workspace (423, with the holder's lock info).
    #[error("workspace {workspace} is locked: {}", .holder.describe())]
    Locked {
        /// The workspace.
        workspace: String,
        /// Who holds it.
        holder: LockInfo,
    },
    /// UNLOCK named a lock other than the one held (409, with the holder's lock info).
    #[error("workspace {workspace}: UNLOCK names lock {given}, but {}", .holder.describe())]
    NotHolder {
        /// The workspace.
        workspace: String,
        /// The id the caller sent.
        given: String,
        /// Who holds it.
        holder: LockInfo,
    },
    /// A write named a lock that is no longer held, e.g. after a force-unlock (409).
    #[error("workspace {workspace}: the write names lock {given}, which is not held (released or force-unlocked); lock again and retry")]
    LockGone {
        /// The workspace.
        workspace: String,
        /// The id the caller sent.
        given: String,
    },
    /// The state body is not a JSON object (400). The message never quotes the body.
    #[error("the state body is not a Terraform state: {0}")]
    NotState(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
}

/// What a successful UNLOCK did.
#[derive(Debug, Clone, PartialEq)]
pub enum Unlocked {
    /// The caller's own lock was released.
    Released,
    /// An UNLOCK without lock info (`terraform force-unlock`) removed this lock; audited.
    Forced(LockInfo),
    /// No lock was held; nothing changed.
    NotLocked,
}

/// The current state body of a workspace.
pub fn current(conn: &Connection, workspace: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT body FROM tfstate_versions WHERE workspace = ?1 ORDER BY seq DESC LIMIT 1")?
        .query_row(params![workspace], |r| r.get(0))
        .optional()
}

/// The lock holding a workspace.
pub fn holder(conn: &Connection, workspace: &str) -> rusqlite::Result<Option<LockInfo>> {
    let info: Option<String> =
        conn.prepare_cached("SELECT info FROM tfstate_locks WHERE workspace = ?1")?.query_row(params![workspace], |r| r.get(0)).optional()?;
    Ok(info.as_deref().map(LockInfo::from_json))
}

/// The stored versions of a workspace, newest first.
pub fn versions(conn: &Connection, workspace: &str) -> rusqlite::Result<Vec<StateVersion>> {
    let mut stmt = conn.prepare_cached("SELECT serial, lineage, time, actor, sha256, size FROM tfstate_versions WHERE workspace = ?1 ORDER BY seq DESC")?;
    let rows = stmt.query_map(params![workspace], |r| {
        Ok(StateVersion { serial: r.get(0)?, lineage: r.get(1)?, time: r.get(2)?, actor: r.get(3)?, sha256: r.get(4)?, size: r.get(5)? })
    })?;
    rows.collect()
}

/// Stores `body` as the new state of `workspace` (POST). With a lock held, `lock_id` must be
/// its id; with none held, a `lock_id` means the caller's lock was lost. Keeps the newest
/// `retention` versions.
pub fn write(store: &Store, workspace: &str, actor: &str, lock_id: Option<&str>, body: &[u8], retention: usize) -> Result<StateVersion, StateError> {
    let (serial, lineage) = state_identity(body)?;
    let sha256 = sha256_hex(body);
    let size = i64::try_from(body.len()).unwrap_or(i64::MAX);
    store.write(|tx| -> Result<StateVersion, StateError> {
        check_lock(tx, workspace, lock_id)?;
        let time = now_rfc3339();
        tx.prepare_cached(
            "INSERT INTO tfstate_versions (workspace, serial, lineage, time, actor, sha256, size, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![workspace, serial, lineage, time, actor, sha256, size, body])?;
        let keep = i64::try_from(retention.max(1)).unwrap_or(i64::MAX);
        tx.prepare_cached(
            "DELETE FROM tfstate_versions WHERE workspace = ?1 AND seq NOT IN
               (SELECT seq FROM tfstate_versions WHERE workspace = ?1 ORDER BY seq DESC LIMIT ?2)",
        )?
        .execute(params![workspace, keep])?;
        let detail = match serial {
            Some(s) => format!("state serial {s}, {size} bytes"),
            None => format!("state, {size} bytes"),
        };
        q::append_event(tx, actor, "update", EVENT_KIND, workspace, workspace, Some(&detail))?;
        Ok(StateVersion { serial, lineage: lineage.clone(), time, actor: actor.to_string(), sha256: sha256.clone(), size })
    })
}

/// Removes a workspace's state and its stored versions (DELETE); refused while another lock is held.
pub fn delete(store: &Store, workspace: &str, actor: &str, lock_id: Option<&str>) -> Result<bool, StateError> {
    store.write(|tx| -> Result<bool, StateError> {
        check_lock(tx, workspace, lock_id)?;
        let removed = tx.prepare_cached("DELETE FROM tfstate_versions WHERE workspace = ?1")?.execute(params![workspace])?;
        if removed > 0 {
            q::append_event(tx, actor, "delete", EVENT_KIND, workspace, workspace, None)?;
        }
        Ok(removed > 0)
    })
}

/// Takes the lock (LOCK). Taking a lock already held under the same id succeeds again.
pub fn lock(store: &Store, workspace: &str, actor: &str, info: &LockInfo) -> Result<(), StateError> {
    store.write(|tx| -> Result<(), StateError> {
        if let Some(held) = holder(tx, workspace)? {
            if held.id() == info.id() {
                return Ok(());
            }
            return Err(StateError::Locked { workspace: workspace.to_string(), holder: held });
        }
        tx.prepare_cached("INSERT INTO tfstate_locks (workspace, lock_id, info, actor, time) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(params![
            workspace,
            info.id(),
            info.to_json(),
            actor,
            now_rfc3339()
        ])?;
        Ok(())
    })
}

/// Releases the lock (UNLOCK). `info` is the caller's lock info; `None` (an empty body, as
/// `terraform force-unlock` sends) removes whatever lock is held and records who did it.
pub fn unlock(store: &Store, workspace: &str, actor: &str, info: Option<&LockInfo>) -> Result<Unlocked, StateError> {
    store.write(|tx| -> Result<Unlocked, StateError> {
        let Some(held) = holder(tx, workspace)? else { return Ok(Unlocked::NotLocked) };
        if let Some(info) = info
            && info.id() != held.id()
        {
            return Err(StateError::NotHolder { workspace: workspace.to_string(), given: info.id().to_string(), holder: held });
        }
        tx.prepare_cached("DELETE FROM tfstate_locks WHERE workspace = ?1")?.execute(params![workspace])?;
        if info.is_some() {
            return Ok(Unlocked::Released);
        }
        q::append_event(tx, actor, "force-unlock", EVENT_KIND, workspace, workspace, Some(&format!("removed {}", held.describe())))?;
        Ok(Unlocked::Forced(held))
    })
}

fn check_lock(tx: &Transaction<'_>, workspace: &str, lock_id: Option<&str>) -> Result<(), StateError> {
    match (holder(tx, workspace)?, lock_id) {
        (Some(held), Some(id)) if held.id() == id => Ok(()),
        (Some(held), _) => Err(StateError::Locked { workspace: workspace.to_string(), holder: held }),
        (None, Some(id)) => Err(StateError::LockGone { workspace: workspace.to_string(), given: id.to_string() }),
        (None, None) => Ok(()),
    }
}

/// `serial` and `lineage` of a state body, which must be a JSON object.
fn state_identity(body: &[u8]) -> Result<(Option<i64>, Option<String>), StateError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| StateError::NotState(format!("not JSON at line {} column {}; send the state file Terraform wrote", e.line(), e.column())))?;
    let Value::Object(state) = value else {
        return Err(StateError::NotState("the body must be a JSON object with \"version\", \"serial\" and \"lineage\"".into()));
    };
    Ok((state.get("serial").and_then(Value::as_i64), state.get("lineage").and_then(Value::as_str).map(str::to_string)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_names() {
        for ok in ["prod", "a", "team-a.staging_2", &"x".repeat(64)] {
            assert_eq!(validate_workspace(ok), Ok(()), "{ok}");
        }
        assert!(validate_workspace("").unwrap_err().contains("empty"));
        assert!(validate_workspace(&"x".repeat(65)).unwrap_err().contains("65 characters"));
        assert!(validate_workspace("-prod").unwrap_err().contains("starts with '-'"));
        assert!(validate_workspace(".hidden").unwrap_err().contains("starts with '.'"));
        assert!(validate_workspace("a b").unwrap_err().contains("contains ' '"));
        assert!(validate_workspace("a/b").unwrap_err().contains("letters, digits"));
    }

    #[test]
    fn lock_info_needs_an_id_and_keeps_every_member() {
        let info =
            LockInfo::parse(br#"{"ID":"abc","Operation":"OperationTypePlan","Who":"me@host","Version":"1.15.5","Created":"t","Path":"","Info":"","Extra":1}"#)
                .expect("valid");
        assert_eq!(info.id(), "abc");
        assert_eq!(info.members().get("Extra"), Some(&Value::from(1)));
        assert_eq!(info.describe(), "lock abc held by me@host for OperationTypePlan since t");
        assert_eq!(LockInfo::from_json(&info.to_json()), info);
        assert_eq!(LockInfo::parse(b"{}").unwrap_err().0, "ID");
        assert_eq!(LockInfo::parse(br#"{"ID":""}"#).unwrap_err().0, "ID");
        assert_eq!(LockInfo::parse(br#"{"ID":7}"#).unwrap_err().0, "ID");
        assert_eq!(LockInfo::parse(br#"{"ID":"a","Who":[]}"#).unwrap_err().0, "Who");
        assert_eq!(LockInfo::parse(b"[1]").unwrap_err().0, "body");
        assert_eq!(LockInfo::parse(b"nope").unwrap_err().0, "body");
    }

    #[test]
    fn state_identity_reads_serial_and_lineage_and_never_quotes_the_body() {
        assert_eq!(state_identity(br#"{"version":4,"serial":7,"lineage":"l-1"}"#).expect("state"), (Some(7), Some("l-1".to_string())));
        assert_eq!(state_identity(b"{}").expect("an object"), (None, None));
        let err = state_identity(b"password=hunter2").unwrap_err().to_string();
        assert!(err.contains("not JSON") && !err.contains("hunter2"), "{err}");
        assert!(state_identity(b"[]").is_err());
    }
}
