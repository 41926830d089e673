//! Prometheus metrics of `serve`: runs, errors, durations, triggers, webhook deliveries, and drift by repo and severity.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use novacron_schemas::Severity;

use crate::report::BySeverity;

/// Upper bounds (seconds) of the reconcile-duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Severities in the order metrics list them.

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct RepoMetrics {
    runs_ok: u64,
    runs_error: u64,
    syncs: u64,
    triggers: BTreeMap<&'static str, u64>,
    duration: Histogram,
    drift: BySeverity,
}

#[derive(Debug, Default)]
struct Inner {
    repos: BTreeMap<String, RepoMetrics>,
    webhooks: BTreeMap<&'static str, u64>,
    reviews: BTreeMap<String, u64>,
    feed_errors: u64,
    event_seq: u64,
}

/// The counters, behind one lock (updates are rare: once per run or request).
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Records a finished reconcile of `repo`: its duration, whether it failed, and on success
    /// the drift it found and the reverts it made.
    pub fn record_run(&self, repo: &str, took: Duration, outcome: Result<(&BySeverity, u64), ()>) {
        self.with(|m| {
            let r = m.repos.entry(repo.to_string()).or_default();
            let secs = took.as_secs_f64();
            for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    r.duration.counts[i] += 1;
                }
            }
            r.duration.count += 1;
            r.duration.sum += secs;
            match outcome {
                Ok((drift, syncs)) => {
                    r.runs_ok += 1;
                    r.syncs += syncs;
                    r.drift = drift.clone();
                }
                Err(()) => r.runs_error += 1,
            }
        });
    }

    /// Counts a trigger of `repo` from `source` (`startup`, `poll`, `webhook`, `event`, `retry`).
    pub fn record_trigger(&self, repo: &str, source: &'static str) {
        self.with(|m| *m.repos.entry(repo.to_string()).or_default().triggers.entry(source).or_default() += 1);
    }

    /// Counts a webhook delivery by outcome (`triggered`, `unmatched`, `bad_signature`, `replayed`, ...).
    pub fn record_webhook(&self, outcome: &'static str) {
        self.with(|m| *m.webhooks.entry(outcome).or_default() += 1);
    }

    /// Counts a pull-request review by the status it set (`success`, `failure`, `not_planned`).
    pub fn record_review(&self, state: &str) {
        self.with(|m| *m.reviews.entry(state.to_string()).or_default() += 1);
    }

    /// Counts a failed event-feed poll.
    pub fn record_feed_error(&self) {
        self.with(|m| m.feed_errors += 1);
    }

    /// Records the event-feed position.
    pub fn set_event_seq(&self, seq: u64) {
        self.with(|m| m.event_seq = seq);
    }

    /// Renders the Prometheus text format.
    pub fn render(&self) -> String {
        self.with(|m| {
            let mut out = String::new();
            let mut section = |name: &str, kind: &str, help: &str, lines: String| {
                let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{lines}");
            };
            let per_repo = |f: &dyn Fn(&str, &RepoMetrics) -> String| m.repos.iter().map(|(n, r)| f(&label(n), r)).collect::<String>();
            section(
                "novacron_reconcile_drift",
                "gauge",
                "Resources not in sync at the last successful reconcile, by repo and severity.",
                per_repo(&|n, r| {
                    Severity::DESCENDING
                        .iter()
                        .map(|s| format!("novacron_reconcile_drift{{repo=\"{n}\",severity=\"{}\"}} {}\n", s.as_str(), r.drift.get(*s)))
                        .collect()
                }),
            );
            section(
                "novacron_reconcile_runs_total",
                "counter",
                "Reconcile runs by repo and outcome.",
                per_repo(&|n, r| {
                    format!(
                        "novacron_reconcile_runs_total{{repo=\"{n}\",outcome=\"ok\"}} {}\nnovacron_reconcile_runs_total{{repo=\"{n}\",outcome=\"error\"}} {}\n",
                        r.runs_ok, r.runs_error
                    )
                }),
            );
            section(
                "novacron_reconcile_errors_total",
                "counter",
                "Failed reconcile runs by repo.",
                per_repo(&|n, r| format!("novacron_reconcile_errors_total{{repo=\"{n}\"}} {}\n", r.runs_error)),
            );
            section(
                "novacron_reconcile_syncs_total",
                "counter",
                "Attributes reverted to the desired state, by repo.",
                per_repo(&|n, r| format!("novacron_reconcile_syncs_total{{repo=\"{n}\"}} {}\n", r.syncs)),
            );
            section(
                "novacron_reconcile_triggers_total",
                "counter",
                "Reconcile triggers by repo and source.",
                per_repo(&|n, r| r.triggers.iter().map(|(s, c)| format!("novacron_reconcile_triggers_total{{repo=\"{n}\",source=\"{s}\"}} {c}\n")).collect()),
            );
            section(
                "novacron_reconcile_duration_seconds",
                "histogram",
                "Reconcile run durations by repo.",
                per_repo(&|n, r| {
                    let mut s = String::new();
                    for (bound, c) in DURATION_BUCKETS.iter().zip(r.duration.counts) {
                        let _ = writeln!(s, "novacron_reconcile_duration_seconds_bucket{{repo=\"{n}\",le=\"{bound}\"}} {c}");
                    }
                    let _ = writeln!(s, "novacron_reconcile_duration_seconds_bucket{{repo=\"{n}\",le=\"+Inf\"}} {}", r.duration.count);
                    let _ = writeln!(s, "novacron_reconcile_duration_seconds_sum{{repo=\"{n}\"}} {}", r.duration.sum);
                    let _ = writeln!(s, "novacron_reconcile_duration_seconds_count{{repo=\"{n}\"}} {}", r.duration.count);
                    s
                }),
            );
            section(
                "novacron_reconcile_webhook_deliveries_total",
                "counter",
                "Webhook deliveries by outcome.",
                m.webhooks.iter().map(|(o, c)| format!("novacron_reconcile_webhook_deliveries_total{{outcome=\"{o}\"}} {c}\n")).collect(),
            );
            section(
                "novacron_reconcile_reviews_total",
                "counter",
                "Pull-request reviews by the status they set.",
                m.reviews.iter().map(|(o, c)| format!("novacron_reconcile_reviews_total{{state=\"{o}\"}} {c}\n")).collect(),
            );
            section(
                "novacron_reconcile_event_feed_errors_total",
                "counter",
                "Failed polls of the platform event feed.",
                format!("novacron_reconcile_event_feed_errors_total {}\n", m.feed_errors),
            );
            section(
                "novacron_reconcile_event_seq",
                "gauge",
                "The last platform event sequence number handled.",
                format!("novacron_reconcile_event_seq {}\n", m.event_seq),
            );
            out
        })
    }
}

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_and_histogram() {
        let m = Metrics::default();
        let mut drift = BySeverity::default();
        drift.add(Severity::Critical);
        drift.add(Severity::Low);
        drift.add(Severity::Low);
        m.record_run("prod", Duration::from_millis(300), Ok((&drift, 1)));
        m.record_run("prod", Duration::from_secs(20), Err(()));
        m.record_trigger("prod", "webhook");
        m.record_webhook("bad_signature");
        let text = m.render();
        for line in [
            "novacron_reconcile_drift{repo=\"prod\",severity=\"critical\"} 1",
            "novacron_reconcile_drift{repo=\"prod\",severity=\"low\"} 2",
            "novacron_reconcile_runs_total{repo=\"prod\",outcome=\"error\"} 1",
            "novacron_reconcile_syncs_total{repo=\"prod\"} 1",
            "novacron_reconcile_duration_seconds_bucket{repo=\"prod\",le=\"0.25\"} 0",
            "novacron_reconcile_duration_seconds_bucket{repo=\"prod\",le=\"0.5\"} 1",
            "novacron_reconcile_duration_seconds_bucket{repo=\"prod\",le=\"+Inf\"} 2",
            "novacron_reconcile_triggers_total{repo=\"prod\",source=\"webhook\"} 1",
            "novacron_reconcile_webhook_deliveries_total{outcome=\"bad_signature\"} 1",
            "# TYPE novacron_reconcile_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
