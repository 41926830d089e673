//! The run history `serve` keeps per repository (`serve_runs`): one row per finished run, the newest `keep` kept, for the console's charts.

use serde::Serialize;

use super::sql::args;
use super::{StateDb, StateError};

/// One finished run as the history records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// The repository's name in the serve config.
    pub repo: String,
    /// Position in the history (assigned on insert; ignored by [`record_run`]).
    pub seq: u64,
    /// When the run ended (RFC 3339).
    pub finished_at: String,
    /// How long it took.
    pub duration_ms: u64,
    /// What started it (`startup`, `poll`, `webhook`, ...).
    pub trigger: String,
    /// The revision reconciled (the previous one when the run failed before knowing it).
    pub revision: Option<String>,
    /// True when the run succeeded.
    pub ok: bool,
    /// Drifted resources left after the run's reverts.
    pub drifted: u64,
    /// Findings by severity after the run's reverts.
    pub critical: u64,
    /// High findings.
    pub high: u64,
    /// Medium findings.
    pub medium: u64,
    /// Low findings.
    pub low: u64,
    /// Info findings.
    pub info: u64,
    /// The error of a failed run.
    pub error: Option<String>,
}

/// Appends `run` to its repository's history and deletes that repository's rows beyond the
/// newest `keep` (at least one is always kept).
pub fn record_run(db: &StateDb, run: &RunRecord, keep: usize) -> Result<u64, StateError> {
    db.write("record a run in the history", |tx| {
        let seq: u64 = tx
            .query_one(
                "INSERT INTO serve_runs (repo, finished_at, duration_ms, trigger, revision, ok, drifted, critical, high, medium, low, info, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) RETURNING seq",
                args![
                    &run.repo,
                    &run.finished_at,
                    run.duration_ms,
                    &run.trigger,
                    &run.revision,
                    run.ok,
                    run.drifted,
                    run.critical,
                    run.high,
                    run.medium,
                    run.low,
                    run.info,
                    &run.error
                ],
            )?
            .get(0)?;
        tx.execute(
            "DELETE FROM serve_runs WHERE repo = ?1 AND seq NOT IN (SELECT seq FROM serve_runs WHERE repo = ?1 ORDER BY seq DESC LIMIT ?2)",
            args![&run.repo, keep.max(1)],
        )?;
        Ok(seq)
    })
}

/// The newest `limit` runs of `repo`, oldest first (as charts draw them, left to right).
pub fn run_history(db: &StateDb, repo: &str, limit: usize) -> Result<Vec<RunRecord>, StateError> {
    db.read("read the run history", |tx| {
        let rows = tx.query(
            "SELECT repo, seq, finished_at, duration_ms, trigger, revision, ok, drifted, critical, high, medium, low, info, error
             FROM serve_runs WHERE repo = ?1 ORDER BY seq DESC LIMIT ?2",
            args![repo, limit],
        )?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(RunRecord {
                    repo: r.get(0)?,
                    seq: r.get(1)?,
                    finished_at: r.get(2)?,
                    duration_ms: r.get(3)?,
                    trigger: r.get(4)?,
                    revision: r.get(5)?,
                    ok: r.get(6)?,
                    drifted: r.get(7)?,
                    critical: r.get(8)?,
                    high: r.get(9)?,
                    medium: r.get(10)?,
                    low: r.get(11)?,
                    info: r.get(12)?,
                    error: r.get(13)?,
                })
            })
            .collect::<Result<Vec<_>, super::sql::DbError>>()?;
        out.reverse();
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(repo: &str, drifted: u64) -> RunRecord {
        RunRecord { repo: repo.into(), finished_at: format!("t{drifted}"), trigger: "poll".into(), ok: true, drifted, ..RunRecord::default() }
    }

    #[test]
    fn history_is_bounded_per_repository_and_read_oldest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = StateDb::open(&dir.path().join("s.db")).expect("open");
        for n in 0..7 {
            record_run(&db, &run("a", n), 5).expect("record a");
        }
        record_run(&db, &run("b", 9), 5).expect("record b");
        let a = run_history(&db, "a", 100).expect("history a");
        assert_eq!(a.iter().map(|r| r.drifted).collect::<Vec<_>>(), [2, 3, 4, 5, 6], "the newest five, oldest first");
        assert_eq!(run_history(&db, "a", 2).expect("last two").iter().map(|r| r.drifted).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(run_history(&db, "b", 100).expect("history b").len(), 1, "another repository's rows are not trimmed");
        let mut failed = run("a", 0);
        failed.ok = false;
        failed.error = Some("clone failed".into());
        record_run(&db, &failed, 5).expect("record failure");
        assert_eq!(run_history(&db, "a", 1).expect("last")[0].error.as_deref(), Some("clone failed"));
    }
}
