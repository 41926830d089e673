//! The review comment of each pull request: created once, then updated in place.

use rusqlite::{OptionalExtension, params};

use super::{StateDb, StateError};

/// The forge's id of the review comment on pull request `number` of a repository path, when one was posted.
pub fn review_comment(db: &StateDb, repo: &str, path: &str, number: u64) -> Result<Option<u64>, StateError> {
    let err = db.query_err("read a review comment id");
    let conn = db.conn();
    let id: Option<Option<i64>> = conn
        .query_row("SELECT comment_id FROM pr_reviews WHERE repo = ?1 AND path = ?2 AND number = ?3", params![repo, path, number as i64], |r| r.get(0))
        .optional()
        .map_err(err)?;
    Ok(id.flatten().and_then(|i| u64::try_from(i).ok()))
}

/// Records the review of pull request `number` at `head`: its comment (`None` when it could not
/// be posted) and its status state.
pub fn record_review(db: &StateDb, repo: &str, path: &str, number: u64, comment_id: Option<u64>, head: &str, state: &str) -> Result<(), StateError> {
    let err = db.query_err("record a review");
    let conn = db.conn();
    conn.execute(
        "INSERT INTO pr_reviews (repo, path, number, comment_id, head, state, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (repo, path, number) DO UPDATE SET comment_id = COALESCE(excluded.comment_id, comment_id), head = excluded.head, state = excluded.state, updated_at = excluded.updated_at",
        params![repo, path, number as i64, comment_id.and_then(|c| i64::try_from(c).ok()), head, state, db.now()],
    )
    .map_err(err)?;
    Ok(())
}

/// Forgets the comment of pull request `number` (it was deleted on the forge: the next review posts a new one).
pub fn forget_review_comment(db: &StateDb, repo: &str, path: &str, number: u64) -> Result<(), StateError> {
    let err = db.query_err("forget a review comment");
    let conn = db.conn();
    conn.execute("UPDATE pr_reviews SET comment_id = NULL WHERE repo = ?1 AND path = ?2 AND number = ?3", params![repo, path, number as i64]).map_err(err)?;
    Ok(())
}
