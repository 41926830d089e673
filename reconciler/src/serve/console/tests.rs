//! Tests of the console's pure parts: rendering (escaping, the DOM contract), filters, health, forge links.

use std::collections::HashMap;

use novacron_schemas::Severity;
use serde_json::json;

use super::pages::*;
use super::*;
use crate::report::{BySeverity, Change, ChangedBy, DriftReport, ResourceReport, Status, Summary};
use crate::state::{AuditRecord, RunRecord, VerifyOutcome};

fn drifted_vm(value: &str) -> ResourceReport {
    let mut r = ResourceReport::new("novacron_vm.web".into(), "novacron_vm".into(), "web".into());
    r.status = Status::Drifted;
    r.severity = Some(Severity::Low);
    r.three_way = ThreeWay::Drift;
    r.changes = vec![
        Change { path: "metadata.note".into(), desired: json!("fine"), live: json!(value), severity: Severity::Low, sensitive: false },
        Change { path: "user_data".into(), desired: json!("(sensitive)"), live: json!("(sensitive)"), severity: Severity::Medium, sensitive: true },
    ];
    r.changed_by = Some(ChangedBy { actor: "<mallory>".into(), time: "2026-01-01T00:00:00Z".into(), action: "update".into() });
    r
}

fn sync_of(resources: Vec<ResourceReport>) -> SyncReport {
    SyncReport::acting_on(DriftReport {
        revision: "0123456789abcdef0123".into(),
        generated_at: "2026-01-01T00:00:01Z".into(),
        summary: Summary { resources: resources.len(), drifted: 1, ..Summary::default() },
        resources,
        ignored: Vec::new(),
        warnings: Vec::new(),
        last_applied: None,
    })
}

fn card(name: &str) -> CardView {
    CardView {
        name: name.into(),
        url: "https://example.com/infra.git?a=1&b=2".into(),
        reference: Some("main".into()),
        health: Health::Drifting,
        revision: Some("0123456789abcdef0123".into()),
        holder: Some(("replica-a".into(), true)),
        commit_url: commit_url(None, Some("acme/infra"), "0123456789abcdef0123"),
        last_run: Some("2026-01-01T00:00:02Z".into()),
        duration_ms: Some(1234),
        last_trigger: Some("poll".into()),
        running: false,
        last_error: None,
        by_severity: Some(BySeverity { low: 1, ..BySeverity::default() }),
        pending: 1,
        history: vec![RunRecord { repo: name.into(), finished_at: "t".into(), ok: true, drifted: 1, low: 1, ..RunRecord::default() }],
    }
}

fn signed_in() -> Viewer {
    Viewer { signed_in: Some(sessions::SignedIn { name: "Ada".into(), csrf: "c5rf".into() }), approvals_enabled: true }
}

#[test]
fn a_hostile_drifted_value_is_only_ever_shown_escaped() {
    let sync = sync_of(vec![drifted_vm("<script>alert(1)</script>")]);
    let view = RepoPageView { card: card("infra"), sync: Some(&sync), filter: Filter::default(), approvals: Vec::new(), flash: Some("<b>hi</b>".into()) };
    let html = pages::repo_page(&view, &signed_in());
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("<td class=\"live\">&lt;script&gt;alert(1)&lt;/script&gt;</td>"), "{html}");
    assert!(html.contains("<span class=\"actor\">&lt;mallory&gt;</span>"));
    assert!(html.contains("<p class=\"flash\">&lt;b&gt;hi&lt;/b&gt;</p>"));
    assert!(html.contains("infra.git?a=1&amp;b=2"));
    // The only scripts are the external asset; no inline script or style anywhere.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains("<script src=\"/static/console.js?v="));
    assert!(!html.contains("<style") && !html.contains(" style=") && !html.contains(" onclick="));
}

#[test]
fn the_repository_page_follows_the_dom_contract() {
    let sync = sync_of(vec![drifted_vm("changed"), ResourceReport::new("novacron_network.core".into(), "novacron_network".into(), "core".into())]);
    let approvals = vec![ApprovalView {
        id: "d-1".into(),
        kind: "drift",
        subject: "novacron_vm.web".into(),
        severity: Severity::Medium,
        since: "t".into(),
        approved_by: None,
    }];
    let view = RepoPageView { card: card("infra"), sync: Some(&sync), filter: Filter::default(), approvals, flash: None };
    let html = pages::repo_page(&view, &signed_in());
    assert!(html.contains("<body data-page=\"repo\" data-repo=\"infra\">"));
    assert!(html.contains("<tr class=\"resource\" data-address=\"novacron_vm.web\" data-status=\"drifted\" data-severity=\"low\">"), "{html}");
    assert!(html.contains("<tr class=\"resource\" data-address=\"novacron_network.core\" data-status=\"missing\" data-severity=\"none\">"));
    assert_eq!(html.matches("<tr class=\"change\" data-address=\"novacron_vm.web\"").count(), 2);
    assert!(html.contains("<td class=\"path\" colspan=\"2\">metadata.note</td><td class=\"desired\">fine</td><td class=\"live\">changed</td>"));
    assert!(html.contains("<td class=\"desired\">(sensitive)</td><td class=\"live\">(sensitive)</td>"));
    assert!(html.contains("<time class=\"changed-at\" datetime=\"2026-01-01T00:00:00Z\">"));
    assert!(html.contains(
        "<form class=\"approve\" method=\"post\" action=\"/repos/infra/approve\"><input type=\"hidden\" name=\"id\" value=\"d-1\"><input type=\"hidden\" name=\"csrf\" value=\"c5rf\"><button type=\"submit\">Approve</button></form>"
    ));
    assert!(html.contains("<svg class=\"history\""));
    assert!(html.contains("<a class=\"revision\" href=\"https://github.com/acme/infra/commit/0123456789abcdef0123\"><code>0123456789ab</code></a>"));

    // Not signed in: no approve form, a way to sign in instead.
    let anonymous = Viewer { signed_in: None, approvals_enabled: true };
    let html = pages::repo_page(&view, &anonymous);
    assert!(!html.contains("class=\"approve\"") && html.contains("<a href=\"/signin\">Sign in</a> to approve"));

    // Before the first run.
    let empty = RepoPageView { card: card("infra"), sync: None, filter: Filter::default(), approvals: Vec::new(), flash: None };
    assert!(pages::repo_page(&empty, &anonymous).contains("<p class=\"no-run\">No run yet"));
}

#[test]
fn filters_parse_from_the_query_and_name_a_bad_parameter() {
    let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>();
    assert_eq!(Filter::parse(&q(&[])).expect("none"), Filter::default());
    let f = Filter::parse(&q(&[("status", "drifted"), ("severity", "critical"), ("other", "x")])).expect("both");
    assert_eq!(f, Filter { status: Some(Status::Drifted), severity: Some(Some(Severity::Critical)) });
    assert_eq!(Filter::parse(&q(&[("severity", "none"), ("status", "")])).expect("none").severity, Some(None));
    let bad = Filter::parse(&q(&[("status", "drifting")])).expect_err("bad status");
    assert_eq!(bad.to_string(), "query parameter `status` has an unknown value \"drifting\"; accepted values: in_sync, drifted, missing, unmanaged");
    let bad = Filter::parse(&q(&[("severity", "urgent")])).expect_err("bad severity");
    assert!(bad.to_string().starts_with("query parameter `severity`") && bad.to_string().contains("critical, high, medium, low, info, none"));

    let sync = sync_of(vec![drifted_vm("x"), ResourceReport::new("novacron_network.core".into(), "novacron_network".into(), "core".into())]);
    let view = |filter| RepoPageView { card: card("infra"), sync: Some(&sync), filter, approvals: Vec::new(), flash: None };
    let html = pages::repo_page(&view(Filter { status: Some(Status::Missing), severity: None }), &signed_in());
    assert_eq!(html.matches("<tr class=\"resource\"").count(), 1);
    assert!(html.contains("<option value=\"missing\" selected>"));
    let html = pages::repo_page(&view(Filter { status: None, severity: Some(Some(Severity::Critical)) }), &signed_in());
    assert!(html.contains("No resource matches the filters."));
}

#[test]
fn the_overview_has_one_card_per_repository() {
    let mut edge = card("edge");
    edge.holder = Some(("replica-<b>".into(), false));
    let html = pages::overview(&[card("infra"), edge], &Viewer::default());
    assert!(html.contains("<body data-page=\"overview\">"));
    assert!(html.contains("<dt>Replica</dt><dd><span class=\"holder\">replica-a (this one)</span></dd>"), "{html}");
    assert!(html.contains("<span class=\"holder\">replica-&lt;b&gt;</span>"), "the holder is escaped: {html}");
    assert!(html.contains("<article class=\"card\" id=\"repo-infra\" data-health=\"drifting\">"));
    assert!(html.contains("<article class=\"card\" id=\"repo-edge\" data-health=\"drifting\">"));
    assert_eq!(html.matches("<span class=\"count\" data-severity=\"low\">1</span>").count(), 2);
    assert_eq!(html.matches("<svg class=\"sparkline\"").count(), 2);
    assert!(html.contains("took 1.2 s"));
    assert!(!html.contains("Sign in"), "no sign-in link when approvals are disabled");
}

#[test]
fn the_audit_page_verifies_and_pages() {
    let entry = |seq: u64| AuditRecord {
        seq,
        time: "t".into(),
        actor: "<ada>".into(),
        action: "approve".into(),
        repo: "r".into(),
        subject: "s".into(),
        detail: json!({"x": "<y>"}),
        prev_hash: String::new(),
        hash: String::new(),
    };
    let view =
        AuditPageView { verify: VerifyOutcome { ok: true, entries: 120, first_bad: None }, entries: (21..=70).rev().map(entry).collect(), page: 2, total: 120 };
    let html = audit_page(&view, &Viewer::default());
    assert!(html.contains("<p class=\"verify\" data-ok=\"true\">"));
    assert_eq!(html.matches("<tr class=\"entry\"").count(), 50);
    assert!(html.contains("<a rel=\"prev\" href=\"/audit?page=1\">") && html.contains("<a rel=\"next\" href=\"/audit?page=3\">"));
    assert!(html.contains("page 2 of 3"));
    assert!(html.contains("&lt;ada&gt;") && html.contains("&quot;&lt;y&gt;&quot;"));
    let broken = AuditPageView { verify: VerifyOutcome { ok: false, entries: 3, first_bad: Some(2) }, entries: vec![entry(1)], page: 1, total: 1 };
    let html = audit_page(&broken, &Viewer::default());
    assert!(html.contains("<p class=\"verify\" data-ok=\"false\">Chain broken: entry 2"));
    assert!(!html.contains("rel=\"prev\"") && !html.contains("rel=\"next\""));
}

#[test]
fn the_signin_page_has_the_form_or_says_how_to_enable_it() {
    let html = signin_page("t0k\"", None, &Viewer { signed_in: None, approvals_enabled: true });
    assert!(html.contains("<body data-page=\"signin\">"));
    assert!(html.contains("<form id=\"signin\" method=\"post\" action=\"/signin\">"));
    assert!(html.contains("name=\"name\"") && html.contains("<input type=\"password\" name=\"token\""));
    assert!(html.contains("<input type=\"hidden\" name=\"csrf\" value=\"t0k&quot;\">"));
    let html = signin_page("t", None, &Viewer::default());
    assert!(!html.contains("<form id=\"signin\""));
    assert!(html.contains("Approvals from the browser are disabled") && html.contains(crate::serve::ADMIN_TOKEN_ENV));
}

#[test]
fn forge_commit_links() {
    let sha = "0123abcd";
    assert_eq!(commit_url(Some("https://api.github.com"), Some("acme/infra"), sha).as_deref(), Some("https://github.com/acme/infra/commit/0123abcd"));
    assert_eq!(commit_url(None, Some("acme/infra"), sha).as_deref(), Some("https://github.com/acme/infra/commit/0123abcd"));
    assert_eq!(
        commit_url(Some("https://ghe.example.com/api/v3/"), Some("acme/infra"), sha).as_deref(),
        Some("https://ghe.example.com/acme/infra/commit/0123abcd")
    );
    assert_eq!(
        commit_url(Some("https://git.example.com/api/v1"), Some("acme/infra"), sha).as_deref(),
        Some("https://git.example.com/acme/infra/commit/0123abcd")
    );
    assert_eq!(commit_url(Some("http://127.0.0.1:9/forge"), Some("acme/infra"), sha), None, "an unknown API layout gets no link");
    assert_eq!(commit_url(None, None, sha), None, "no forge_repo, no link");
    assert_eq!(commit_url(None, Some("acme/infra"), "\"><x"), None, "only a hex sha is linked");
}

#[test]
fn health_says_error_then_held_rollout_then_drift() {
    let mut status = RepoStatus::default();
    assert_eq!(health(&status, None), Health::Unknown);
    let sync = sync_of(vec![drifted_vm("x")]);
    assert_eq!(health(&status, Some(&sync)), Health::Drifting);
    assert_eq!(health(&status, Some(&sync_of(Vec::new()))), Health::InSync);
    status.pending_approvals.push(json!({"id": "plan-1", "kind": "plan"}));
    assert_eq!(health(&status, Some(&sync)), Health::RolloutPending);
    status.last_error = Some("clone failed".into());
    assert_eq!(health(&status, Some(&sync)), Health::Error);
}

#[test]
fn cookies_are_secure_when_serve_speaks_https() {
    let plain = Console::new(ConsoleConfig::default(), false);
    let (_, cookie) = plain.set_cookie("novacron_session", "abc", 60);
    assert_eq!(cookie, "novacron_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60");
    let https = Console::new(ConsoleConfig::default(), true);
    let (_, cookie) = https.set_cookie("novacron_session", "abc", 60);
    assert_eq!(cookie, "novacron_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60; Secure");
}
