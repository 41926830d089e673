//! The review comment of each pull request: created once, then updated in place.

use super::sql::args;
use super::{StateDb, StateError};

/// The forge's id of the review comment on pull request `number` of a repository path, when one was posted.
pub fn review_comment(db: &StateDb, repo: &str, path: &str, number: u64) -> Result<Option<u64>, StateError> {
    db.read("read a review comment id", |tx| {
        let row = tx.query_opt("SELECT comment_id FROM pr_reviews WHERE repo = ?1 AND path = ?2 AND number = ?3", args![repo, path, number])?;
        Ok(row.map(|r| r.get::<Option<u64>>(0)).transpose()?.flatten())
    })
}

/// Records the review of pull request `number` at `head`: its comment (`None` when it could not
/// be posted) and its status state.
pub fn record_review(db: &StateDb, repo: &str, path: &str, number: u64, comment_id: Option<u64>, head: &str, state: &str) -> Result<(), StateError> {
    let now = db.now();
    db.write("record a review", |tx| {
        tx.execute(
            "INSERT INTO pr_reviews (repo, path, number, comment_id, head, state, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (repo, path, number) DO UPDATE SET comment_id = COALESCE(excluded.comment_id, pr_reviews.comment_id), head = excluded.head, state = excluded.state, updated_at = excluded.updated_at",
            args![repo, path, number, comment_id, head, state, now],
        )
        .map(|_| ())
    })
}

/// Forgets the comment of pull request `number` (it was deleted on the forge: the next review posts a new one).
pub fn forget_review_comment(db: &StateDb, repo: &str, path: &str, number: u64) -> Result<(), StateError> {
    db.write("forget a review comment", |tx| {
        tx.execute("UPDATE pr_reviews SET comment_id = NULL WHERE repo = ?1 AND path = ?2 AND number = ?3", args![repo, path, number]).map(|_| ())
    })
}
