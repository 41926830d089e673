//! Reviews of hand-written plans against a fake platform: grading, previews, base context, status and rendering.

use std::sync::Mutex;

use novacron_client::PolicyVerdict;
use serde_json::{Value, json};

use super::*;
use crate::drift::LiveObject;
use crate::live::LiveError;
use crate::review::render::comment_marker;

/// A platform that answers dry runs from a table and records them.
#[derive(Default)]
struct Platform {
    calls: Mutex<Vec<(Kind, Option<String>, Value)>>,
}

impl PlatformApi for Platform {
    async fn list_all(&self, _kind: Kind) -> Result<Vec<LiveObject>, LiveError> {
        Ok(Vec::new())
    }

    async fn dry_run(&self, kind: Kind, id: Option<&str>, body: &Value) -> Result<Preview, LiveError> {
        self.calls.lock().unwrap().push((kind, id.map(str::to_string), body.clone()));
        if body.get("cpu_cores").and_then(Value::as_i64).is_some_and(|c| c > 8) {
            return Ok(Preview::Judged {
                allowed: false,
                verdicts: vec![PolicyVerdict { policy: "cpu-limit".into(), mode: "block".into(), messages: vec!["at most 8 cores".into()] }],
            });
        }
        if body.get("name").and_then(Value::as_str) == Some("Bad Name") {
            return Ok(Preview::Refused { detail: "name: must be lowercase".into() });
        }
        Ok(Preview::Judged {
            allowed: true,
            verdicts: vec![PolicyVerdict { policy: "naming".into(), mode: "warn".into(), messages: vec!["add a team label".into()] }],
        })
    }
}

fn plan(changes: Value) -> PlanModel {
    PlanModel::from_json(json!({"terraform_version": "1.15.5", "resource_changes": changes}).to_string().as_bytes()).expect("plan")
}

fn update(ty: &str, name: &str, before: Value, after: Value) -> Value {
    json!({"address": format!("{ty}.{name}"), "mode": "managed", "type": ty,
           "change": {"actions": ["update"], "before": before, "after": after, "after_unknown": {}, "before_sensitive": {"user_data": true}, "after_sensitive": {"user_data": true}}})
}

fn empty_review() -> Review {
    Review {
        repo: "file:///r".into(),
        path: String::new(),
        revision: "0123456789abcdef0123".into(),
        pull_request: Some(7),
        base: BaseView { reference: Some("main".into()), revision: None },
        generated_at: "2026-12-01T12:00:00Z".into(),
        outcome: ReviewOutcome::Planned,
        summary: String::new(),
        severity: None,
        changes: Vec::new(),
        policy: PolicyTally::default(),
        warnings: Vec::new(),
        status: ReviewStatus { state: "success", description: String::new() },
    }
}

async fn reviewed(p: &PlanModel, api: &Platform) -> Review {
    let grade = grade_plan(p);
    let mut review = empty_review();
    review.summary = grade.to_string();
    review.severity = grade.severity;
    review.changes = reviewed_changes(p, &grade);
    preview_policies(api, p, &mut review).await;
    review.changes.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.address.cmp(&b.address)));
    review.status = status_of(&review);
    review
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

#[test]
fn a_block_verdict_fails_the_status_naming_the_policy_and_leaves_show_paths() {
    let api = Platform::default();
    let p = plan(json!([update(
        "novacron_vm",
        "web",
        json!({"id": "vm-1", "name": "web", "cpu_cores": 2, "metadata": {"env": "a"}, "user_data": "s1"}),
        json!({"id": "vm-1", "name": "web", "cpu_cores": 16, "metadata": {"env": "b", "team": "x"}, "user_data": "s2"})
    ),]));
    let review = block_on(reviewed(&p, &api));
    assert_eq!(review.status.state, "failure");
    assert!(review.status.description.contains("novacron_vm.web (policy cpu-limit)"), "{}", review.status.description);
    let paths: Vec<&str> = review.changes[0].attributes.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["cpu_cores", "metadata.env", "metadata.team", "user_data"]);
    let ud = review.changes[0].attributes.iter().find(|a| a.path == "user_data").unwrap();
    assert_eq!((ud.before.as_str(), ud.after.as_str(), ud.sensitive), ("(sensitive)", "(sensitive)", true));
    let calls = api.calls.lock().unwrap();
    assert_eq!(calls[0], (Kind::Vm, Some("vm-1".into()), json!({"cpu_cores": 16, "metadata": {"env": "b", "team": "x"}})));
    let md = render_markdown(&review, "infra");
    assert!(md.starts_with(&comment_marker("infra")), "{md}");
    assert!(md.contains("policy <code>cpu-limit</code> blocks it: at most 8 cores"), "{md}");
    assert!(!md.contains("s1") && !md.contains("s2"), "no sensitive value: {md}");
}

#[test]
fn a_low_change_succeeds_with_warnings_listed_and_a_critical_one_fails() {
    let api = Platform::default();
    let low = plan(json!([update(
        "novacron_vm",
        "web",
        json!({"id": "vm-1", "name": "web", "metadata": {"env": "a"}}),
        json!({"id": "vm-1", "name": "web", "metadata": {"env": "b"}})
    )]));
    let review = block_on(reviewed(&low, &api));
    assert_eq!(review.status.state, "success", "{:?}", review.status);
    assert_eq!((review.policy.previewed, review.policy.warned, review.policy.blocked), (1, 1, 0));
    assert!(render_markdown(&review, "r").contains("warn <code>naming</code>"));
    let critical = plan(json!([update(
        "novacron_network",
        "core",
        json!({"id": "net-1", "name": "core", "firewall_rule": [{"cidr": "10.0.0.0/8", "ports": "22"}]}),
        json!({"id": "net-1", "name": "core", "firewall_rule": [{"cidr": "0.0.0.0/0", "ports": "22"}]})
    )]));
    let review = block_on(reviewed(&critical, &api));
    assert_eq!(review.status.state, "failure");
    assert_eq!(review.status.description, "1 critical: novacron_network.core");
    assert_eq!(review.changes[0].attributes[0].path, "firewall_rule[0].cidr");
}

#[test]
fn values_are_escaped_and_long_reviews_are_summarised_under_the_limit() {
    let api = Platform::default();
    let changes: Vec<Value> = (0..400)
        .map(|i| {
            let before = json!({"id": format!("vm-{i}"), "name": format!("web-{i}"), "metadata": {"note": "x".repeat(200)}});
            let after = json!({"id": format!("vm-{i}"), "name": format!("web-{i}"), "metadata": {"note": format!("<script>|`{}", "y".repeat(200))}});
            update("novacron_vm", &format!("web{i}"), before, after)
        })
        .collect();
    let review = block_on(reviewed(&plan(Value::Array(changes)), &api));
    let md = render_markdown(&review, "r");
    assert!(md.len() < COMMENT_LIMIT, "{}", md.len());
    assert!(md.contains("more changes (") && md.contains("novacron-reconcile plan"), "the rest is summarised");
    assert!(!md.contains("<script>") && md.contains("&lt;script&gt;&#124;&#96;"), "values are escaped");
}

#[test]
fn a_rejected_configuration_fails_with_file_and_line() {
    let review = Review::without_plan(
        empty_review(),
        ReviewOutcome::Rejected {
            file: Some("main.tf".into()),
            line: Some(12),
            summary: "Unclosed configuration block".into(),
            detail: "There is no closing brace".into(),
        },
    );
    assert_eq!(review.status.state, "failure");
    assert_eq!(review.status.description, "Terraform rejects the configuration: main.tf:12: Unclosed configuration block");
    let md = render_markdown(&review, "r");
    assert!(md.contains("<code>main.tf:12</code>: Unclosed configuration block"), "{md}");
    assert!(render_text(&review).contains("main.tf:12: Unclosed configuration block"));
}
