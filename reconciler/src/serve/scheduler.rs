//! The per-repository loop of `serve`: one reconcile at a time, polling with ±10% jitter, triggers in between, exponential backoff after errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Service;
use super::repo::RepoHandle;
use super::state::StoredRepo;
use crate::command::{DriftError, DriftOptions, run_drift};
use crate::report::{DriftReport, now_rfc3339};

/// The first retry delay after a failed run; it doubles per failure.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// The longest retry delay (never longer than the repo's interval).
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// `base` moved by a random amount within ±10%.
pub fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.9 + fastrand::f64() * 0.2)
}

/// The wait before retrying after `failures` failed runs in a row (at least 1).
pub fn backoff(failures: u32, interval: Duration) -> Duration {
    let doubled = BACKOFF_START.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    doubled.min(BACKOFF_CAP).min(interval)
}

/// Runs `repo` at start, then at every jittered interval or trigger, until `stop` turns true.
/// A stop request never interrupts a running reconcile: the loop checks it between runs.
pub async fn repo_worker(service: Arc<Service>, repo: Arc<RepoHandle>, mut stop: watch::Receiver<bool>) {
    let interval = repo.config.interval;
    let mut source = "startup";
    loop {
        if *stop.borrow() {
            break;
        }
        let ok = run_once(&service, &repo, source).await;
        let failures = repo.status().consecutive_errors;
        let delay = if ok { jittered(interval) } else { jittered(backoff(failures, interval)) };
        source = tokio::select! {
            s = repo.triggered() => s,
            () = tokio::time::sleep(delay) => if ok { "poll" } else { "retry" },
            _ = stop.changed() => break,
        };
    }
}

/// One reconcile of `repo`, recorded in its status, the state database and the metrics.
/// Returns whether it succeeded.
pub async fn run_once(service: &Service, repo: &RepoHandle, source: &'static str) -> bool {
    let name = repo.name().to_string();
    service.metrics.record_trigger(&name, source);
    repo.update_status(|s| {
        s.running = true;
        s.runs += 1;
        s.last_trigger = Some(source);
    });
    let started = Instant::now();
    let result = reconcile(service, repo).await;
    let took = started.elapsed();
    let finished = now_rfc3339();
    let stored = match &result {
        Ok(report) => {
            repo.set_managed(report);
            service.metrics.record_run(&name, took, Ok((&report.summary.by_severity, 0)));
            let s = &report.summary;
            tracing::info!(repo = %name, trigger = source, revision = %report.revision, drifted = s.drifted, missing = s.missing, unmanaged = s.unmanaged, ms = took.as_millis() as u64, "reconciled");
            repo.update_status(|st| {
                st.revision = Some(report.revision.clone());
                st.last_error = None;
                st.consecutive_errors = 0;
                st.summary = Some(report.summary.clone());
            });
            StoredRepo {
                revision: Some(report.revision.clone()),
                last_run: Some(finished.clone()),
                last_error: None,
                summary: serde_json::to_string(&report.summary).ok(),
            }
        }
        Err(e) => {
            service.metrics.record_run(&name, took, Err(()));
            let message = e.to_string();
            let failures = repo.update_status(|st| {
                st.last_error = Some(message.clone());
                st.consecutive_errors += 1;
                st.consecutive_errors
            });
            tracing::warn!(repo = %name, trigger = source, failures, retry_in_s = backoff(failures, repo.config.interval).as_secs(), error = %message, "reconcile failed");
            let previous = repo.status();
            StoredRepo {
                revision: previous.revision,
                last_run: Some(finished.clone()),
                last_error: Some(message),
                summary: previous.summary.and_then(|s| serde_json::to_string(&s).ok()),
            }
        }
    };
    repo.update_status(|st| {
        st.running = false;
        st.last_run = Some(finished);
        st.last_duration_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
    });
    if let Err(e) = service.state.save_repo(&name, &stored) {
        tracing::error!(repo = %name, error = %e, "cannot record the run in the state database");
    }
    result.is_ok()
}

/// The reconcile itself: the drift of the repository against the live platform.
async fn reconcile(service: &Service, repo: &RepoHandle) -> Result<DriftReport, DriftError> {
    let c = &repo.config;
    let options = DriftOptions {
        repo: c.url.clone(),
        reference: c.reference.clone(),
        path: c.path.clone(),
        vars: c.vars.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        ignore: c.ignore.clone(),
        cache_dir: service.cache_dir.clone(),
    };
    run_drift(&options, &service.api).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let hour = Duration::from_secs(3600);
        assert_eq!(backoff(1, hour), Duration::from_secs(1));
        assert_eq!(backoff(2, hour), Duration::from_secs(2));
        assert_eq!(backoff(5, hour), Duration::from_secs(16));
        assert_eq!(backoff(30, hour), BACKOFF_CAP);
        assert_eq!(backoff(30, Duration::from_secs(10)), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(100));
            assert!((Duration::from_secs(90)..=Duration::from_secs(110)).contains(&d), "{d:?}");
        }
    }
}
