//! What `serve` has taken in from outside: the platform event-feed position (`serve_meta`) and the webhook deliveries seen (`serve_delivery`, for replay detection).

use super::sql::args;
use super::{StateDb, StateError};

/// How many webhook delivery ids are remembered for replay detection.
pub const DELIVERIES_KEPT: i64 = 10_000;

/// The last event-feed sequence number handled, if any.
pub fn event_seq(db: &StateDb) -> Result<Option<u64>, StateError> {
    db.read("read the event-feed position", |tx| {
        let text: Option<String> = tx.query_opt("SELECT value FROM serve_meta WHERE key = 'event_seq'", args![])?.map(|r| r.get(0)).transpose()?;
        Ok(text.and_then(|t| t.parse().ok()))
    })
}

/// Records the event-feed position.
pub fn set_event_seq(db: &StateDb, seq: u64) -> Result<(), StateError> {
    db.write("record the event-feed position", |tx| {
        tx.execute("INSERT INTO serve_meta (key, value) VALUES ('event_seq', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value WHERE CAST(serve_meta.value AS BIGINT) < CAST(excluded.value AS BIGINT)", args![seq.to_string()])
            .map(|_| ())
    })
}

/// Remembers a webhook delivery id; false when it was seen before (a replay). Keeps the
/// newest [`DELIVERIES_KEPT`].
pub fn remember_delivery(db: &StateDb, id: &str) -> Result<bool, StateError> {
    db.write("remember a webhook delivery", |tx| {
        let next: i64 = tx.query_one("SELECT COALESCE(MAX(seq), 0) + 1 FROM serve_delivery", args![])?.get(0)?;
        let added = tx.execute("INSERT INTO serve_delivery (id, seq) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING", args![id, next])? == 1;
        if added && next % 100 == 0 {
            tx.execute("DELETE FROM serve_delivery WHERE seq <= ?1", args![next - DELIVERIES_KEPT])?;
        }
        Ok(added)
    })
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
