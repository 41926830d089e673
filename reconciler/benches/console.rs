//! Benchmark of the web console's server-side rendering: the overview of 20 repositories (each
//! with a 50-run sparkline) and a repository page whose latest report has 1,000 resources (100
//! drifted with 3 field diffs each) and 500 runs of history. Synthetic data, the rendering
//! functions called directly, no server. Prints p50/p99 per page; asserts nothing about speed.
//!
//! Run: `cargo bench -p novacron-reconcile --bench console`
//! Knobs: BENCH_RENDERS (200), BENCH_RESOURCES (1000).

use std::time::{Duration, Instant};

use novacron_reconcile::report::{BySeverity, Change, ChangedBy, DriftReport, ResourceReport, Status, Summary, ThreeWay};
use novacron_reconcile::serve::console::pages::{self, ApprovalView, CardView, Filter, Health, RepoPageView, Viewer};
use novacron_reconcile::serve::console::sessions::SignedIn;
use novacron_reconcile::state::RunRecord;
use novacron_reconcile::sync::SyncReport;
use novacron_schemas::Severity;
use serde_json::json;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn history(repo: &str, runs: usize) -> Vec<RunRecord> {
    (0..runs as u64)
        .map(|i| RunRecord {
            repo: repo.to_string(),
            seq: i + 1,
            finished_at: format!("2026-01-01T{:02}:{:02}:00Z", (i / 60) % 24, i % 60),
            duration_ms: 800 + i % 300,
            trigger: "poll".into(),
            revision: Some("0123456789abcdef0123456789abcdef01234567".into()),
            ok: i % 97 != 0,
            drifted: i % 7,
            critical: i % 2,
            high: i % 3,
            medium: i % 5,
            low: i % 4,
            info: 1,
            error: (i % 97 == 0).then(|| "clone failed: connection reset".to_string()),
        })
        .collect()
}

fn card(name: &str, runs: usize) -> CardView {
    CardView {
        name: name.to_string(),
        url: format!("https://git.example.com/acme/{name}.git"),
        reference: Some("main".into()),
        health: Health::Drifting,
        revision: Some("0123456789abcdef0123456789abcdef01234567".into()),
        holder: Some(("replica-a".into(), true)),
        commit_url: Some(format!("https://github.com/acme/{name}/commit/0123456789abcdef0123456789abcdef01234567")),
        last_run: Some("2026-01-01T12:00:00Z".into()),
        duration_ms: Some(1234),
        last_trigger: Some("poll".into()),
        running: false,
        last_error: None,
        by_severity: Some(BySeverity { critical: 1, high: 4, medium: 20, low: 60, info: 15 }),
        pending: 5,
        history: history(name, runs),
    }
}

fn report(n: usize) -> SyncReport {
    let resources = (0..n)
        .map(|i| {
            let mut r = ResourceReport::new(format!("novacron_vm.vm_{i:04}"), "novacron_vm".into(), format!("vm-{i:04}"));
            r.id = Some(format!("vm-{i:08x}"));
            r.status = Status::InSync;
            if i % 10 == 0 {
                r.status = Status::Drifted;
                r.three_way = ThreeWay::Drift;
                r.severity = Some(Severity::DESCENDING[i / 10 % 5]);
                r.changed_by = Some(ChangedBy { actor: "ops-<console>".into(), time: "2026-01-01T11:59:00Z".into(), action: "update".into() });
                r.changes = vec![
                    Change { path: "memory_gb".into(), desired: json!(4), live: json!(8), severity: Severity::Medium, sensitive: false },
                    Change {
                        path: "metadata.owner".into(),
                        desired: json!("web & <team>"),
                        live: json!("someone \"else\""),
                        severity: Severity::Low,
                        sensitive: false,
                    },
                    Change { path: "user_data".into(), desired: json!("(sensitive)"), live: json!("(sensitive)"), severity: Severity::Medium, sensitive: true },
                ];
            }
            r
        })
        .collect::<Vec<_>>();
    SyncReport::acting_on(DriftReport {
        revision: "0123456789abcdef0123456789abcdef01234567".into(),
        generated_at: "2026-01-01T12:00:00Z".into(),
        summary: Summary { resources: n, in_sync: n - n / 10, drifted: n / 10, ..Summary::default() },
        resources,
        ignored: Vec::new(),
        warnings: Vec::new(),
        last_applied: None,
    })
}

fn measure(label: &str, renders: usize, mut render: impl FnMut() -> String) {
    let mut bytes = render().len();
    let mut samples: Vec<Duration> = (0..renders)
        .map(|_| {
            let t = Instant::now();
            let html = render();
            let took = t.elapsed();
            bytes = html.len();
            took
        })
        .collect();
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    println!("{label}: n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} KiB of HTML)", samples.len(), at(0.5), at(0.99), at(1.0), bytes / 1024);
}

fn main() {
    let renders = env_or("BENCH_RENDERS", 200);
    let n = env_or("BENCH_RESOURCES", 1000);
    let viewer = Viewer { signed_in: Some(SignedIn { name: "Ada".into(), csrf: "0".repeat(64) }), approvals_enabled: true };

    let cards: Vec<CardView> = (0..20).map(|i| card(&format!("repo-{i:02}"), 50)).collect();
    measure("overview, 20 repositories with 50-run sparklines", renders, || pages::overview(&cards, &viewer));

    let sync = report(n);
    let approvals: Vec<ApprovalView> = (0..5)
        .map(|i| ApprovalView {
            id: format!("d{i:011x}"),
            kind: "drift",
            subject: format!("novacron_vm.vm_{:04}", i * 10),
            severity: Severity::Medium,
            since: "2026-01-01T11:00:00Z".into(),
            approved_by: None,
        })
        .collect();
    let page = |filter| RepoPageView { card: card("infra", 500), sync: Some(&sync), filter, approvals: approvals.clone(), flash: None };
    let all = page(Filter::default());
    measure(&format!("repository page, {n} resources, 500-run history"), renders, || pages::repo_page(&all, &viewer));
    let drifted = page(Filter { status: Some(Status::Drifted), severity: None });
    measure(&format!("repository page, {n} resources filtered to drifted"), renders, || pages::repo_page(&drifted, &viewer));
}
