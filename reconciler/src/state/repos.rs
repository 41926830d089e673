//! Where `serve` left each repository (`serve_repo`): the revision last reconciled, the last run and its error.

use super::sql::args;
use super::{StateDb, StateError};

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

/// The stored position of repository `name`, default when it never ran.
pub fn stored_repo(db: &StateDb, name: &str) -> Result<StoredRepo, StateError> {
    db.read("read a repository's position", |tx| {
        let row = tx.query_opt("SELECT revision, last_run, last_error, summary FROM serve_repo WHERE name = ?1", args![name])?;
        row.map_or(Ok(StoredRepo::default()), |r| Ok(StoredRepo { revision: r.get(0)?, last_run: r.get(1)?, last_error: r.get(2)?, summary: r.get(3)? }))
    })
}

/// The stored position of every repository that ran, by name (what a replica shows for the
/// repositories other replicas hold).
pub fn stored_repos(db: &StateDb) -> Result<std::collections::HashMap<String, StoredRepo>, StateError> {
    db.read("read the repositories' positions", |tx| {
        tx.query("SELECT name, revision, last_run, last_error, summary FROM serve_repo", args![])?
            .iter()
            .map(|r| Ok((r.get(0)?, StoredRepo { revision: r.get(1)?, last_run: r.get(2)?, last_error: r.get(3)?, summary: r.get(4)? })))
            .collect()
    })
}

/// Records repository `name`'s position after a run.
pub fn save_repo(db: &StateDb, name: &str, repo: &StoredRepo) -> Result<(), StateError> {
    db.write("record a repository's position", |tx| {
        tx.execute(
            "INSERT INTO serve_repo (name, revision, last_run, last_error, summary) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(name) DO UPDATE SET revision = excluded.revision, last_run = excluded.last_run, last_error = excluded.last_error, summary = excluded.summary",
            args![name, &repo.revision, &repo.last_run, &repo.last_error, &repo.summary],
        )
        .map(|_| ())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let db = StateDb::open(&path).expect("open");
        assert_eq!(stored_repo(&db, "a").expect("read"), StoredRepo::default());
        let stored = StoredRepo { revision: Some("abc".into()), last_run: Some("2026-01-01T00:00:00Z".into()), last_error: None, summary: Some("{}".into()) };
        save_repo(&db, "a", &stored).expect("save");
        drop(db);
        let db = StateDb::open(&path).expect("reopen");
        assert_eq!(stored_repo(&db, "a").expect("read"), stored);
    }
}
