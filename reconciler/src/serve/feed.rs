//! Follows the platform change feed (`GET /v1/events`, long-polled) and re-checks at once every repository that manages an object an event touched.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use novacron_client::Event;
use tokio::sync::watch;

use super::Service;
use super::repo::RepoHandle;
use super::scheduler::{backoff, jittered};

/// How long one long-poll waits for an event.
pub const LONG_POLL: Duration = Duration::from_secs(25);

/// Polls the feed until `stop` turns true. Starts after the position stored in the state
/// database; on the very first start, after the newest event (every repository is reconciled
/// at start anyway, so older events need no re-check).
pub async fn event_feed(service: Arc<Service>, mut stop: watch::Receiver<bool>) {
    let stored = crate::state::event_seq(&service.db).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot read the event-feed position; starting from the newest event");
        None
    });
    let mut after = stored.unwrap_or(0);
    let mut fast_forward = stored.is_none();
    let mut failures = 0u32;
    loop {
        if !fast_forward {
            service.feed_following.store(true, Ordering::Relaxed);
        }
        let wait = if fast_forward { Duration::ZERO } else { LONG_POLL };
        let batch = tokio::select! {
            b = service.client.events(after, wait) => b,
            _ = stop.changed() => break,
        };
        match batch {
            Ok(batch) => {
                failures = 0;
                if fast_forward {
                    fast_forward = !batch.events.is_empty();
                } else {
                    for repo in repos_touched(&service.repos, &batch.events) {
                        tracing::info!(repo = repo.name(), "platform change to a managed object: re-checking now");
                        repo.trigger("event");
                    }
                }
                if batch.next != after {
                    after = batch.next;
                    service.metrics.set_event_seq(after);
                    if let Err(e) = crate::state::set_event_seq(&service.db, after) {
                        tracing::error!(error = %e, "cannot record the event-feed position");
                    }
                }
            }
            Err(e) => {
                failures += 1;
                service.metrics.record_feed_error();
                let delay = jittered(backoff(failures, Duration::from_secs(30)));
                tracing::warn!(error = %e, failures, retry_in_ms = delay.as_millis() as u64, "event feed poll failed");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => break,
                }
            }
        }
        if *stop.borrow() {
            break;
        }
    }
}

/// The repositories managing an object that one of `events` touched, each once.
pub fn repos_touched<'a>(repos: &'a [Arc<RepoHandle>], events: &[Event]) -> Vec<&'a Arc<RepoHandle>> {
    repos.iter().filter(|r| events.iter().any(|e| r.manages(e))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::DriftReport;
    use crate::serve::config::ServeConfig;
    use crate::state::StoredRepo;

    fn event(kind: &str, id: &str, name: &str) -> Event {
        Event { seq: 1, time: String::new(), actor: "a".into(), action: "update".into(), kind: kind.into(), id: id.into(), name: name.into(), detail: None }
    }

    #[test]
    fn events_select_the_repos_that_manage_the_object() {
        let config = ServeConfig::parse("[[repo]]\nname = \"a\"\nurl = \"/a\"\n[[repo]]\nname = \"b\"\nurl = \"/b\"\n", "t").unwrap();
        let repos: Vec<Arc<RepoHandle>> = config.repo.iter().map(|c| Arc::new(RepoHandle::new(c.clone(), StoredRepo::default(), |_| None).unwrap())).collect();
        let report = sample_report();
        repos[0].set_managed(&report);
        let touched = |e: Event| repos_touched(&repos, &[e]).iter().map(|r| r.name().to_string()).collect::<Vec<_>>();
        assert_eq!(touched(event("vms", "vm-1", "renamed")), ["a"]);
        assert_eq!(touched(event("vms", "vm-new", "missing-one")), ["a"]);
        assert!(touched(event("networks", "vm-1", "x")).is_empty());
        assert!(touched(event("vms", "vm-9", "stray")).is_empty(), "unmanaged objects trigger nothing");
        assert!(touched(event("templates", "t", "web")).is_empty());
        assert!(touched(event("tfstate", "web", "web")).is_empty(), "Terraform state events (kind tfstate) name no object");
    }

    fn sample_report() -> DriftReport {
        use crate::report::{BySeverity, ResourceReport, Status, Summary};
        let entry = |name: &str, id: Option<&str>, status| {
            let mut e = ResourceReport::new(format!("novacron_vm.{name}"), "novacron_vm".into(), name.into());
            e.id = id.map(str::to_string);
            e.status = status;
            e
        };
        DriftReport {
            revision: "r".into(),
            generated_at: String::new(),
            summary: Summary {
                resources: 3,
                in_sync: 1,
                drifted: 0,
                missing: 1,
                unmanaged: 1,
                ignored: 0,
                coverage: 0.5,
                by_severity: BySeverity::default(),
                three_way: Default::default(),
            },
            resources: vec![
                entry("web", Some("vm-1"), Status::InSync),
                entry("missing-one", None, Status::Missing),
                entry("stray", Some("vm-9"), Status::Unmanaged),
            ],
            ignored: vec![],
            warnings: vec![],
            last_applied: None,
        }
    }
}
