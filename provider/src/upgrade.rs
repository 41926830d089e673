//! State upgrades between schema versions, and moves from renamed resource types.

use serde_json::{Map, Value as Json};

use crate::diag::Diagnostics;
use crate::proto::tfplugin5::RawState;
use crate::state::{conform, json_to_val};
use crate::tfschema::{Nesting, TfBlock, TypeSchema};
use crate::value::Val;

/// Resource type names an earlier release used, and the type they are now.
pub const RENAMED_TYPES: &[(&str, &str)] = &[("novacron_volume", "novacron_storage")];

/// One upgrade step of a type's stored state from `version` to `version + 1`.
fn step(type_name: &str, version: i64, state: &mut Map<String, Json>) {
    // novacron_vm v0 (0.0.x previews) stored the platform's `updated_at` and `version`,
    // which change on every write and made every plan noisy; v1 drops them.
    if let ("novacron_vm", 0) = (type_name, version) {
        state.remove("updated_at");
        state.remove("version");
    }
}

fn from_state_json(block: &TfBlock, json: &Map<String, Json>) -> Val {
    let mut out = std::collections::BTreeMap::new();
    for a in &block.attributes {
        out.insert(a.name.clone(), json_to_val(json.get(&a.name), &a.ty));
    }
    for nb in &block.blocks {
        let v = match (nb.nesting, json.get(&nb.type_name)) {
            (Nesting::List, Some(Json::Array(items))) => Val::List(items.iter().filter_map(Json::as_object).map(|m| from_state_json(&nb.block, m)).collect()),
            (Nesting::List, _) => Val::List(vec![]),
            (Nesting::Single, Some(Json::Object(m))) => from_state_json(&nb.block, m),
            (Nesting::Single, _) => Val::Null,
        };
        out.insert(nb.type_name.clone(), v);
    }
    conform(block, &Val::Obj(out))
}

fn parse_raw(raw: Option<&RawState>, diags: &mut Diagnostics) -> Option<Map<String, Json>> {
    let raw = raw?;
    if raw.json.is_empty() {
        if !raw.flatmap.is_empty() {
            diags.error(
                "Unsupported state format",
                "this state is in the flatmap format of Terraform 0.11 and older; refresh it with Terraform 0.12 to 1.x first",
            );
        }
        return None;
    }
    match serde_json::from_slice::<Json>(&raw.json) {
        Ok(Json::Object(m)) => Some(m),
        Ok(_) => {
            diags.error("Invalid state", "the stored state is not a JSON object");
            None
        }
        Err(e) => {
            diags.error("Invalid state", format!("the stored state is not valid JSON: {e}"));
            None
        }
    }
}

/// UpgradeResourceState: brings stored state of schema `version` to the current version.
pub fn upgrade(t: &TypeSchema, version: i64, raw: Option<&RawState>, diags: &mut Diagnostics) -> Val {
    if version > t.version {
        diags.error(
            "State from a newer provider",
            format!(
                "{} state has schema version {version}, newer than this provider's {}; use the provider version that wrote it or a newer one",
                t.type_name, t.version
            ),
        );
        return Val::Null;
    }
    let Some(mut state) = parse_raw(raw, diags) else { return Val::Null };
    for v in version..t.version {
        step(&t.type_name, v, &mut state);
    }
    from_state_json(&t.block, &state)
}

/// MoveResourceState: state of a renamed type (or the same type) becomes `t`'s state.
pub fn move_state(t: &TypeSchema, source_provider: &str, source_type: &str, source_version: i64, raw: Option<&RawState>, diags: &mut Diagnostics) -> Val {
    let ours = source_provider.ends_with("novacron/novacron");
    let renamed = RENAMED_TYPES.iter().any(|(old, new)| *old == source_type && *new == t.type_name);
    if !ours || !(renamed || source_type == t.type_name) {
        diags.error(
            "Unsupported move",
            format!(
                "{source_provider} {source_type} cannot be moved to {}; only renamed novacron types ({}) can",
                t.type_name,
                RENAMED_TYPES.iter().map(|(o, n)| format!("{o} -> {n}")).collect::<Vec<_>>().join(", ")
            ),
        );
        return Val::Null;
    }
    let version = if source_type == t.type_name { source_version } else { t.version };
    upgrade(t, version, raw, diags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tfschema::resource;

    fn raw(json: &str) -> RawState {
        RawState { json: json.as_bytes().to_vec(), flatmap: Default::default() }
    }

    #[test]
    fn vm_v0_state_upgrades_to_v1() {
        let vm = resource("novacron_vm").expect("vm");
        let mut d = Diagnostics::default();
        let v = upgrade(vm, 0, Some(&raw(r#"{"id":"vm-1","name":"web","cpu_cores":2,"updated_at":"x","version":7,"timeouts":null}"#)), &mut d);
        assert!(!d.has_errors());
        assert_eq!(v.get("id"), &Val::Str("vm-1".into()));
        assert_eq!(v.get("cpu_cores"), &Val::Num(2.0));
        assert!(v.as_obj().is_some_and(|m| !m.contains_key("updated_at") && m.contains_key("memory_gb")));
    }

    #[test]
    fn newer_state_and_flatmap_are_refused() {
        let vm = resource("novacron_vm").expect("vm");
        let mut d = Diagnostics::default();
        upgrade(vm, 9, Some(&raw("{}")), &mut d);
        assert!(d.has_errors());
        let mut d = Diagnostics::default();
        upgrade(vm, 0, Some(&RawState { json: vec![], flatmap: [("id".to_string(), "x".to_string())].into() }), &mut d);
        assert!(d.0[0].summary.contains("Unsupported"));
    }

    #[test]
    fn moves_from_the_old_volume_type() {
        let storage = resource("novacron_storage").expect("storage");
        let mut d = Diagnostics::default();
        let v = move_state(storage, "registry.terraform.io/novacron/novacron", "novacron_volume", 0, Some(&raw(r#"{"id":"vol-1","size_gb":10}"#)), &mut d);
        assert!(!d.has_errors());
        assert_eq!(v.get("size_gb"), &Val::Num(10.0));
        let mut d = Diagnostics::default();
        move_state(storage, "registry.terraform.io/hashicorp/aws", "aws_ebs_volume", 0, Some(&raw("{}")), &mut d);
        assert!(d.has_errors());
    }
}
