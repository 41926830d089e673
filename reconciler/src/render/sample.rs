//! A fixed report for snapshot tests: computed by the real drift core from fixed inputs.

use serde_json::{Value, json};

use novacron_schemas::Kind;

use crate::drift::{DesiredResource, LiveObject, compute_drift};
use crate::ignore::IgnoreRules;
use crate::report::DriftReport;

fn desired(kind: Kind, address: &str, name: &str, attrs: Value) -> DesiredResource {
    let mut attributes = attrs.as_object().expect("object").clone();
    attributes.insert("name".into(), json!(name));
    DesiredResource { address: address.into(), kind, name: name.into(), attributes, unknown: vec![] }
}

fn live(kind: Kind, id: &str, name: &str, attrs: Value) -> LiveObject {
    let mut fields = attrs.as_object().expect("object").clone();
    fields.insert("id".into(), json!(id));
    fields.insert("name".into(), json!(name));
    LiveObject { kind, fields }
}

/// A report with one of everything: in sync, drifted (with a block path and a sensitive
/// attribute), missing, unmanaged, ignored, and a warning.
pub fn sample_report() -> DriftReport {
    let rule = json!({"direction": "ingress", "ports": "22"});
    let d = [
        desired(
            Kind::Network,
            "novacron_network.core",
            "core",
            json!({"cidr": "10.0.0.0/24", "firewall_rules": [rule, {"direction": "ingress", "ports": "443"}]}),
        ),
        desired(Kind::Vm, "novacron_vm.web[0]", "web-0", json!({"cpu_cores": 2, "memory_gb": 4, "metadata": {"env": "prod"}, "user_data": "#cloud-config\n"})),
        desired(Kind::Vm, "novacron_vm.web[1]", "web-1", json!({"cpu_cores": 2, "memory_gb": 4})),
        desired(Kind::Policy, "module.guard.novacron_policy.this", "guard", json!({"rule": "package guard", "enforcement_mode": "block"})),
        desired(Kind::Volume, "novacron_storage.data", "data", json!({"size_gb": 100})),
    ];
    let l = [
        live(Kind::Network, "net-1", "core", json!({"cidr": "10.0.0.0/24", "firewall_rules": [rule, {"direction": "ingress", "ports": "8443"}]})),
        live(Kind::Vm, "vm-1", "web-0", json!({"cpu_cores": 2, "memory_gb": 8, "metadata": {"env": "dev"}, "user_data_sha256": "0000"})),
        live(Kind::Vm, "vm-2", "web-1", json!({"cpu_cores": 2, "memory_gb": 4})),
        live(Kind::Policy, "pol-1", "guard", json!({"rule": "package guard", "enforcement_mode": "audit"})),
        live(Kind::Vm, "vm-9", "stray", json!({"cpu_cores": 1, "memory_gb": 1})),
    ];
    let rules = IgnoreRules::parse("novacron_vm.*.metadata\n", []);
    let result = compute_drift(&d, &l, &rules);
    DriftReport {
        revision: "0123456789abcdef0123456789abcdef01234567".into(),
        generated_at: "2026-01-01T00:00:00Z".into(),
        summary: result.summary,
        resources: result.resources,
        ignored: result.ignored,
        warnings: vec![
            "novacron_vm.web[1]: template_id is unknown (data.novacron_template.ubuntu is a data source, which is not read); left out of the comparison".into(),
        ],
        last_applied: None,
    }
}

/// A three-way report: a pending rollout (an update and a create), drift with the actor named,
/// a conflict, and a resource in sync, with Terraform's state as the last-applied view.
pub fn sample_three_way_report() -> DriftReport {
    use crate::report::{ChangedBy, LastApplied};
    use crate::tfstate::{AppliedResource, AppliedState};
    use crate::threeway::{annotate, classify, match_ids};
    let vm = |memory: i64, team: &str| json!({"cpu_cores": 2, "memory_gb": memory, "metadata": {"team": team}});
    let applied = |address: &str, id: &str, name: &str, attrs: Value| {
        let mut attributes = attrs.as_object().expect("object").clone();
        attributes.insert("name".into(), json!(name));
        AppliedResource { address: address.into(), kind: Kind::Vm, id: id.into(), name: name.into(), attributes }
    };
    let d = [
        desired(Kind::Vm, "novacron_vm.web", "web", vm(8, "web")),
        desired(Kind::Vm, "novacron_vm.extra", "extra", vm(2, "web")),
        desired(Kind::Vm, "novacron_vm.db", "db", vm(16, "db")),
        desired(Kind::Vm, "novacron_vm.both", "both", vm(8, "web")),
        desired(Kind::Vm, "novacron_vm.calm", "calm", vm(4, "web")),
    ];
    let state = AppliedState {
        serial: 12,
        lineage: "3f1c".into(),
        terraform_version: "1.15.5".into(),
        resources: vec![
            applied("novacron_vm.web", "vm-1", "web", vm(4, "web")),
            applied("novacron_vm.db", "vm-2", "db", vm(16, "db")),
            applied("novacron_vm.both", "vm-3", "both", vm(4, "web")),
            applied("novacron_vm.calm", "vm-4", "calm", vm(4, "web")),
        ],
    };
    let l = [
        live(Kind::Vm, "vm-1", "web", vm(4, "web")),
        live(Kind::Vm, "vm-2", "db", vm(16, "ops")),
        live(Kind::Vm, "vm-3", "both", vm(4, "ops")),
        live(Kind::Vm, "vm-4", "calm", vm(4, "web")),
    ];
    let rules = IgnoreRules::default();
    let mut result = crate::drift::compute_drift_matched(&d, &l, &rules, &match_ids(&state));
    let facts = classify(&d, &state, &l, &rules);
    annotate(&mut result, Some(&facts), Some(&state));
    for r in result.resources.iter_mut().filter(|r| r.name == "db" || r.name == "both") {
        r.changed_by = Some(ChangedBy { actor: "alice".into(), time: "2026-01-01T00:00:00.000Z".into(), action: "update".into() });
    }
    DriftReport {
        revision: "89abcdef0123456789abcdef0123456789abcdef".into(),
        generated_at: "2026-01-01T00:00:00Z".into(),
        summary: result.summary,
        resources: result.resources,
        ignored: result.ignored,
        warnings: vec![],
        last_applied: Some(LastApplied { source: "the platform's state workspace \"prod\"".into(), serial: 12, lineage: "3f1c".into() }),
    }
}
