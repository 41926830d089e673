//! What `serve` has taken in from outside: the platform event-feed position (`serve_meta`) and the webhook deliveries seen (`serve_delivery`, for replay detection).

use rusqlite::{OptionalExtension, params};

use super::{StateDb, StateError};

/// How many webhook delivery ids are remembered for replay detection.
pub const DELIVERIES_KEPT: i64 = 10_000;

/// The last event-feed sequence number handled, if any.
pub fn event_seq(db: &StateDb) -> Result<Option<u64>, StateError> {
    let err = db.query_err("read the event-feed position");
    let conn = db.conn();
    let text: Option<String> = conn.query_row("SELECT value FROM serve_meta WHERE key = 'event_seq'", [], |r| r.get(0)).optional().map_err(err)?;
    Ok(text.and_then(|t| t.parse().ok()))
}

/// Records the event-feed position.
pub fn set_event_seq(db: &StateDb, seq: u64) -> Result<(), StateError> {
    let err = db.query_err("record the event-feed position");
    let conn = db.conn();
    conn.execute("INSERT INTO serve_meta (key, value) VALUES ('event_seq', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value", [seq.to_string()])
        .map_err(err)?;
    Ok(())
}

/// Remembers a webhook delivery id; false when it was seen before (a replay). Keeps the
/// newest [`DELIVERIES_KEPT`].
pub fn remember_delivery(db: &StateDb, id: &str) -> Result<bool, StateError> {
    let err = db.query_err("remember a webhook delivery");
    let conn = db.conn();
    let next: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM serve_delivery", [], |r| r.get(0)).map_err(&err)?;
    let added = conn.execute("INSERT OR IGNORE INTO serve_delivery (id, seq) VALUES (?1, ?2)", params![id, next]).map_err(&err)? == 1;
    if added && next % 100 == 0 {
        conn.execute("DELETE FROM serve_delivery WHERE seq <= ?1", [next - DELIVERIES_KEPT]).map_err(&err)?;
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_position_and_deliveries_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let db = StateDb::open(&path).expect("open");
        assert_eq!(event_seq(&db).expect("read"), None);
        set_event_seq(&db, 42).expect("set");
        assert!(remember_delivery(&db, "d1").expect("first"));
        assert!(!remember_delivery(&db, "d1").expect("replay"));
        drop(db);
        let db = StateDb::open(&path).expect("reopen");
        assert_eq!(event_seq(&db).expect("read"), Some(42));
        assert!(!remember_delivery(&db, "d1").expect("replay after reopening"));
        assert!(remember_delivery(&db, "d2").expect("new"));
    }
}
