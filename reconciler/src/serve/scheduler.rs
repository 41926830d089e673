//! The per-repository loop of `serve`: one reconcile at a time, polling with ±10% jitter, triggers in between, exponential backoff after errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Service;
use super::console::RunEvent;
use super::repo::RepoHandle;
use crate::clock::Clock;
use crate::command::DriftOptions;
use crate::remediation::Forge;
use crate::report::Summary;
use crate::state::StoredRepo;
use crate::state::{RunRecord, pending_approvals};
use crate::sync::{SyncError, SyncOptions, SyncOutcome, SyncReport, Thresholds, run_sync};
use novacron_schemas::Severity;

/// Who `serve` acts as in the audit log.
pub const ACTOR: &str = "novacron-reconcile-serve";
/// Who approvals through `POST /api/approvals/{id}` are recorded as.
pub const ACTOR_HTTP: &str = "novacron-reconcile-serve-admin";

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
        // Only the replica holding the repository's lease reconciles it, and only while the
        // lease is valid; a lease is given up only between runs (`acting`).
        // Repositories held elsewhere take no turn; a stop while waiting for one ends the task.
        let turn = if service.leases.has(repo.name()) {
            tokio::select! {
                t = service.turns.acquire() => match t { Ok(t) => Some(t), Err(_) => break },
                _ = stop.changed() => break,
            }
        } else {
            None
        };
        if *stop.borrow() {
            break;
        }
        let acting = service.leases.acting(repo.name());
        let guard = acting.lock().await;
        let fence = service.leases.fence(repo.name());
        // Held but not valid right now (a renewal is overdue): try again soon, same trigger.
        let ran = fence.is_some();
        let ok = match fence {
            Some(fence) => run_once(&service, &repo, source, fence).await,
            None => true,
        };
        // Still held but not valid now: before the run (a renewal is overdue), or it lapsed
        // during the run so that recording it was refused. Either way: again soon, same trigger.
        let overdue = service.leases.has(repo.name()) && service.leases.fence(repo.name()).is_none();
        let overdue = overdue || (!ran && service.leases.has(repo.name()));
        drop(guard);
        drop(turn);
        let failures = repo.status().consecutive_errors;
        let delay = if overdue {
            service.leases.settings.renew_every()
        } else if ok {
            jittered(interval)
        } else {
            jittered(backoff(failures, interval))
        };
        let retry_source = source;
        source = tokio::select! {
            s = repo.triggered() => s,
            () = tokio::time::sleep(delay) => if overdue { retry_source } else if ok { "poll" } else { "retry" },
            _ = stop.changed() => break,
        };
    }
}

/// How often `serve` looks in the state database for approvals recorded elsewhere (by
/// `novacron-reconcile approve` on the same database).
pub const APPROVAL_POLL: Duration = Duration::from_secs(2);

/// Triggers a repository as soon as an approval for it appears in the state database, however it
/// got there (the CLI, another process): each approved id triggers once. Approvals made through
/// `serve` itself trigger at once anyway; seeing them here again at most adds one no-op run.
pub async fn approvals_watcher(service: Arc<Service>, mut stop: watch::Receiver<bool>) {
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut first = true;
    loop {
        // Two queries a round whatever the number of repositories.
        let mut approved: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
        for d in pending_approvals(&service.db, None).unwrap_or_default().into_iter().filter(|d| d.approved_by.is_some()) {
            approved.entry(d.repo).or_default().push(d.id);
        }
        for p in crate::state::pending_plans(&service.db, None).unwrap_or_default().into_iter().filter(|p| p.approved_by.is_some()) {
            approved.entry(p.repo).or_default().push(p.id);
        }
        for repo in service.repos.iter().filter(|r| service.leases.holds(r.name())) {
            let ids = approved.get(&repo.state_key()).cloned().unwrap_or_default();
            let fresh: Vec<String> = ids.into_iter().filter(|id| seen.insert(id.clone())).collect();
            // Approvals already there at start are acted on by the startup reconcile.
            if !fresh.is_empty() && !first {
                tracing::info!(repo = %repo.name(), approvals = ?fresh, "approval recorded in the state database; reconciling now");
                refresh_approvals(&service, repo);
                repo.trigger("approval");
            }
        }
        first = false;
        tokio::select! {
            () = tokio::time::sleep(APPROVAL_POLL) => {}
            _ = stop.changed() => break,
        }
    }
}

/// One reconcile of `repo`, recorded in its status, the state database and the metrics.
/// Returns whether it succeeded.
pub async fn run_once(service: &Service, repo: &RepoHandle, source: &'static str, fence: crate::state::Fence) -> bool {
    let name = repo.name().to_string();
    // Every write of this run carries the lease.
    let db = service.db.fenced(fence);
    service.metrics.record_trigger(&name, source);
    repo.update_status(|s| {
        s.running = true;
        s.runs += 1;
        s.last_trigger = Some(source);
    });
    let started = Instant::now();
    let result = reconcile(service, repo, &db).await;
    let took = started.elapsed();
    let finished = service.clock.rfc3339();
    let stored = match &result {
        Ok(sync) => {
            let report = &sync.report;
            let reverted = sync.actions.iter().filter(|a| a.outcome == SyncOutcome::Reverted).count() as u64;
            repo.set_managed(report);
            service.metrics.record_run(&name, took, Ok((&summary_after(sync).by_severity, reverted)));
            for e in &sync.errors {
                tracing::warn!(repo = %name, error = %e, "sync step failed");
            }
            if let Some(r) = &sync.remediation {
                tracing::info!(repo = %name, remediation = ?r, "remediation change pushed");
            }
            let summary = summary_after(sync);
            let s = &summary;
            tracing::info!(repo = %name, trigger = source, revision = %report.revision, drifted = s.drifted, reverted, missing = s.missing, unmanaged = s.unmanaged, ms = took.as_millis() as u64, "reconciled");
            repo.update_status(|st| {
                st.revision = Some(report.revision.clone());
                st.last_error = None;
                st.consecutive_errors = 0;
                st.summary = Some(summary.clone());
            });
            StoredRepo {
                revision: Some(report.revision.clone()),
                last_run: Some(finished.clone()),
                last_error: None,
                summary: serde_json::to_string(&summary).ok(),
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
    if let Err(e) = crate::state::save_repo(&db, &name, &stored) {
        tracing::error!(repo = %name, error = %e, "cannot record the run in the state database");
    }
    refresh_approvals(service, repo);
    let ok = result.is_ok();
    if let Ok(sync) = result {
        repo.set_last_sync(Arc::new(sync));
    }
    record_history(service, &db, repo, source, ok);
    ok
}

/// Appends the run that just ended to the repository's history (a failed run keeps the last
/// known counts) and tells the browsers following `/events`.
fn record_history(service: &Service, db: &crate::state::StateDb, repo: &RepoHandle, source: &'static str, ok: bool) {
    let status = repo.status();
    let counts = status.summary.clone().unwrap_or_default();
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    let b = &counts.by_severity;
    let run = RunRecord {
        repo: repo.name().to_string(),
        seq: 0,
        finished_at: status.last_run.clone().unwrap_or_default(),
        duration_ms: status.last_duration_ms.unwrap_or(0),
        trigger: source.to_string(),
        revision: status.revision.clone(),
        ok,
        drifted: n(counts.drifted),
        critical: n(b.critical),
        high: n(b.high),
        medium: n(b.medium),
        low: n(b.low),
        info: n(b.info),
        error: if ok { None } else { status.last_error.clone() },
    };
    if let Err(e) = crate::state::record_run(db, &run, service.console.config.history_runs) {
        tracing::error!(repo = %repo.name(), error = %e, "cannot record the run in the history");
    }
    // Nobody listening is fine: the send only fails without subscribers.
    let _ = service.events.send(RunEvent { repo: run.repo, revision: run.revision, drifted: run.drifted, ok });
}

/// The report's counts once the sync's reverts are taken into account: a reverted (or
/// already restored) resource counts as in sync, not as drift.
pub fn summary_after(sync: &SyncReport) -> Summary {
    let mut summary = sync.report.summary.clone();
    for action in sync.actions.iter().filter(|a| matches!(a.outcome, SyncOutcome::Reverted | SyncOutcome::AlreadyInSync)) {
        summary.drifted = summary.drifted.saturating_sub(1);
        summary.in_sync += 1;
        let b = &mut summary.by_severity;
        let slot = match action.severity {
            Severity::Critical => &mut b.critical,
            Severity::High => &mut b.high,
            Severity::Medium => &mut b.medium,
            Severity::Low => &mut b.low,
            Severity::Info => &mut b.info,
        };
        *slot = slot.saturating_sub(1);
    }
    summary
}

/// Reloads the drift and the rollout plans awaiting approval of `repo` into its status (plans
/// marked `"kind": "plan"`, their one-line summary as `address`).
pub fn refresh_approvals(service: &Service, repo: &RepoHandle) {
    let key = repo.state_key();
    match (pending_approvals(&service.db, Some(&key)), crate::state::pending_plans(&service.db, Some(&key))) {
        (Ok(pending), Ok(plans)) => repo.update_status(|s| {
            s.pending_approvals = pending.iter().filter_map(|p| serde_json::to_value(p).ok()).collect();
            for p in plans.iter().filter(|p| p.path == crate::source::join_path("", &repo.config.path).unwrap_or_default()) {
                if let Ok(mut v) = serde_json::to_value(p) {
                    v["kind"] = serde_json::json!("plan");
                    v["address"] = serde_json::json!(format!("rollout of {}: {} ({})", &p.revision[..p.revision.len().min(12)], p.summary, p.reason));
                    s.pending_approvals.push(v);
                }
            }
        }),
        (Err(e), _) | (_, Err(e)) => tracing::error!(repo = repo.name(), error = %e, "cannot read pending approvals"),
    }
}

/// The reconcile itself: `sync` of the repository against the live platform, with its
/// threshold and remediation settings.
async fn reconcile(service: &Service, repo: &RepoHandle, db: &crate::state::StateDb) -> Result<SyncReport, SyncError> {
    let c = &repo.config;
    let drift = DriftOptions {
        repo: c.url.clone(),
        reference: c.reference.clone(),
        path: c.path.clone(),
        vars: c.vars.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        ignore: c.ignore.clone(),
        cache_dir: service.cache_dir.clone(),
        tfstate: c.tfstate.clone(),
        workspace: c.workspace.clone(),
        http_address: std::env::var("TF_HTTP_ADDRESS").ok(),
        progress: crate::progress::SharedProgress::new(crate::progress::Traced),
        clock: service.clock.clone(),
    };
    let clone_lock = service.clone_lock(&c.url);
    let _clone = clone_lock.lock().await;
    let thresholds = Thresholds { auto_sync_max: c.auto_sync_max, auto_apply_max: c.auto_apply_max, prune: c.prune };
    let options = SyncOptions { drift, thresholds, dry_run: false, remediation_pr: repo.forge.is_some(), actor: ACTOR.to_string() };
    let runner = service.runner(&c.name.get_ref().to_string());
    run_sync(&options, &service.api, db, repo.forge.as_ref().map(|f| f as &dyn Forge), runner.as_deref()).await
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
