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
    }
}
