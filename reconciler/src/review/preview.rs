//! The policy preview of one planned change: the dry-run request the platform judges it by.
//!
//! A create is sent as the object it would create; an update (and a replacement, as an update
//! of the current object without the attributes that force it) as a merge patch of what
//! changes. Values Terraform knows only after apply, or holds as sensitive, cannot be sent: the
//! change is then reported as not previewed, with the attribute named, rather than judged on a
//! partial object. Write-only attributes (`user_data`) never reach policies and are left out.

use novacron_schemas::Kind;
use serde_json::{Map, Value};

use crate::rollout::{Action, ChangeValue, ResourceChange, schema_attribute};
use crate::tfstate::api_attributes;

/// What to send for one change.
#[derive(Debug, Clone, PartialEq)]
pub enum PreviewRequest {
    /// Nothing: deletes, reads, and policies (which policies do not judge).
    Skip,
    /// It cannot be judged before apply: why.
    Unpreviewable(String),
    /// `POST /v1/{kind}?dry_run=true` with `body`.
    Create {
        /// The kind.
        kind: Kind,
        /// The object to create (API names).
        body: Value,
    },
    /// `PATCH /v1/{kind}/{id}?dry_run=true` with `patch`.
    Update {
        /// The kind.
        kind: Kind,
        /// The object's id.
        id: String,
        /// The merge patch (API names).
        patch: Value,
    },
}

/// Attributes that cannot be sent: required ones whose planned value is unknown, and settable
/// ones held as sensitive. An unknown optional one is left out, as the platform then computes it.
fn unsendable(change: &ResourceChange) -> Vec<String> {
    let schema = change.kind.schema();
    change
        .attributes
        .iter()
        .filter(|a| !(change.action == Action::Replace && a.forces_replacement))
        .filter(|a| match (schema_attribute(schema, &a.name), &a.after) {
            (Some(s), _) if s.read_only || s.write_only => false,
            // An optional attribute the platform computes (a network's gateway) is left to it.
            (Some(s), ChangeValue::Unknown) => s.required,
            (Some(_), ChangeValue::Sensitive) => true,
            _ => false,
        })
        .map(|a| {
            let why = if a.after == ChangeValue::Unknown { "is known only after apply" } else { "is sensitive in this configuration" };
            format!("{} {why}", a.name)
        })
        .collect()
}

/// The dry run that previews `change`.
pub fn preview_request(change: &ResourceChange) -> PreviewRequest {
    if change.kind == Kind::Policy || !matches!(change.action, Action::Create | Action::Update | Action::Replace) {
        return PreviewRequest::Skip;
    }
    let missing = unsendable(change);
    if !missing.is_empty() {
        return PreviewRequest::Unpreviewable(format!("not previewed: {}", missing.join(", ")));
    }
    let schema = change.kind.schema();
    let writable = |name: &str| schema.attribute(name).is_some_and(|a| !a.write_only);
    let planned: Map<String, Value> = api_attributes(change.kind, &change.planned).into_iter().filter(|(k, _)| writable(k)).collect();
    match (change.action, change.id.as_deref()) {
        (Action::Create, _) => PreviewRequest::Create { kind: change.kind, body: Value::Object(planned) },
        (_, Some(id)) if !id.is_empty() => {
            let prior: Map<String, Value> = api_attributes(change.kind, &change.prior).into_iter().filter(|(k, _)| writable(k)).collect();
            let forced: Vec<String> =
                change.attributes.iter().filter(|a| a.forces_replacement).filter_map(|a| schema_attribute(schema, &a.name).map(|s| s.name.clone())).collect();
            let unknown_now: Vec<String> = change
                .attributes
                .iter()
                .filter(|a| a.after == ChangeValue::Unknown)
                .filter_map(|a| schema_attribute(schema, &a.name).map(|s| s.name.clone()))
                .collect();
            let mut patch = Map::new();
            for (k, v) in &planned {
                if prior.get(k) != Some(v) && !forced.contains(k) {
                    patch.insert(k.clone(), v.clone());
                }
            }
            for k in prior.keys() {
                if !planned.contains_key(k) && !forced.contains(k) && !unknown_now.contains(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            PreviewRequest::Update { kind: change.kind, id: id.to_string(), patch: Value::Object(patch) }
        }
        _ => PreviewRequest::Unpreviewable("not previewed: the state records no id for it".into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::rollout::PlanModel;

    fn change(ty: &str, actions: Value, before: Value, after: Value, unknown: Value, replace_paths: Value) -> ResourceChange {
        let plan = json!({"resource_changes": [{"address": format!("{ty}.x"), "mode": "managed", "type": ty,
            "change": {"actions": actions, "before": before, "after": after, "after_unknown": unknown,
                       "before_sensitive": {"user_data": true}, "after_sensitive": {"user_data": true}, "replace_paths": replace_paths}}]});
        PlanModel::from_json(plan.to_string().as_bytes()).expect("plan").changes.remove(0)
    }

    #[test]
    fn a_create_sends_the_object_with_api_names_and_without_write_only_values() {
        let c = change(
            "novacron_network",
            json!(["create"]),
            Value::Null,
            json!({"name": "core", "cidr": "10.0.0.0/24", "firewall_rule": [{"ports": "22", "cidr": null}], "timeouts": null}),
            json!({"id": true, "status": true, "gateway": true}),
            json!([]),
        );
        assert_eq!(
            preview_request(&c),
            PreviewRequest::Create { kind: Kind::Network, body: json!({"name": "core", "cidr": "10.0.0.0/24", "firewall_rules": [{"ports": "22"}]}) }
        );
        let vm = change(
            "novacron_vm",
            json!(["create"]),
            Value::Null,
            json!({"name": "web", "cpu_cores": 2, "user_data": "#cloud-config secret"}),
            json!({"id": true}),
            json!([]),
        );
        let PreviewRequest::Create { body, .. } = preview_request(&vm) else { panic!("a create") };
        assert_eq!(body, json!({"name": "web", "cpu_cores": 2}), "user_data is write-only: never sent to policies");
    }

    #[test]
    fn an_unknown_reference_makes_a_create_unpreviewable_naming_it() {
        let c =
            change("novacron_vm", json!(["create"]), Value::Null, json!({"name": "web", "cpu_cores": 2}), json!({"id": true, "network_id": true}), json!([]));
        assert_eq!(preview_request(&c), PreviewRequest::Unpreviewable("not previewed: network_id is known only after apply".into()));
    }

    #[test]
    fn an_update_sends_what_changes_and_a_replace_leaves_out_what_forces_it() {
        let before = json!({"id": "vm-1", "name": "web", "cpu_cores": 2, "memory_gb": 4, "metadata": {"a": "1"}, "template_id": "t1", "user_data": "s"});
        let after = json!({"id": "vm-1", "name": "web", "cpu_cores": 16, "memory_gb": 4, "template_id": "t1", "user_data": "s2"});
        let c = change("novacron_vm", json!(["update"]), before.clone(), after, json!({"status": true}), json!([]));
        assert_eq!(preview_request(&c), PreviewRequest::Update { kind: Kind::Vm, id: "vm-1".into(), patch: json!({"cpu_cores": 16, "metadata": null}) });
        let after = json!({"name": "web", "cpu_cores": 16, "memory_gb": 4, "metadata": {"a": "1"}, "template_id": "t2"});
        let r = change("novacron_vm", json!(["delete", "create"]), before, after, json!({"id": true}), json!([["template_id"]]));
        assert_eq!(preview_request(&r), PreviewRequest::Update { kind: Kind::Vm, id: "vm-1".into(), patch: json!({"cpu_cores": 16}) });
    }

    #[test]
    fn deletes_and_policies_are_skipped() {
        let d = change("novacron_vm", json!(["delete"]), json!({"id": "vm-1", "name": "web"}), Value::Null, json!({}), json!([]));
        assert_eq!(preview_request(&d), PreviewRequest::Skip);
        let p = change("novacron_policy", json!(["create"]), Value::Null, json!({"name": "p"}), json!({"id": true}), json!([]));
        assert_eq!(preview_request(&p), PreviewRequest::Skip);
    }
}
