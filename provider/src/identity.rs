//! Resource identity (Terraform >= 1.12): every managed resource is identified by its platform
//! id, `{ id = "vm-..." }`, version 0. Terraform stores it beside the state, imports by it
//! (`import { to = ..., identity = { id = ... } }`) and `terraform query` lists by it.

use std::collections::{BTreeMap, HashMap};

use crate::proto::tfplugin5::{RawState, ResourceIdentityData, ResourceIdentitySchema, resource_identity_schema};
use crate::tfschema::{self, TfType};
use crate::value::Val;

/// The identity schema version of every resource type.
pub const VERSION: i64 = 0;

/// The identity schemas of the managed resource types.
pub fn schemas() -> HashMap<String, ResourceIdentitySchema> {
    tfschema::resources()
        .iter()
        .map(|t| {
            let schema = ResourceIdentitySchema {
                version: VERSION,
                identity_attributes: vec![resource_identity_schema::IdentityAttribute {
                    name: "id".into(),
                    r#type: TfType::String.to_json().to_string().into_bytes(),
                    required_for_import: true,
                    optional_for_import: false,
                    description: format!("The platform's id of the {} (`{}-…`).", t.kind, t.kind.schema().id_prefix),
                }],
            };
            (t.type_name.clone(), schema)
        })
        .collect()
}

/// The identity of the object a state describes; `None` while its id is not known (a create
/// being planned, a destroy).
pub fn of(state: &Val) -> Option<ResourceIdentityData> {
    let id = state.get("id").as_str()?;
    Some(data(id))
}

/// The identity data `{ id }`.
pub fn data(id: &str) -> ResourceIdentityData {
    let value = Val::Obj(BTreeMap::from([("id".to_string(), Val::Str(id.to_string()))]));
    ResourceIdentityData { identity_data: Some(value.to_dynamic()) }
}

/// The id an identity names, or why it names none.
pub fn id_of(identity: &ResourceIdentityData) -> Result<String, String> {
    let value = Val::from_dynamic(identity.identity_data.as_ref())?;
    match value.get("id") {
        Val::Str(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        Val::Unknown => Err("the identity's id is not known yet; import by an id that is known at plan time".into()),
        _ => Err("the identity has no id; write identity = { id = \"<platform id>\" }".into()),
    }
}

/// UpgradeResourceIdentity: version 0 is the only one, stored as JSON `{"id": "..."}`.
pub fn upgrade(version: i64, raw: Option<&RawState>) -> Result<ResourceIdentityData, String> {
    if version != VERSION {
        return Err(format!(
            "identity version {version} is newer than this provider's ({VERSION}); use the provider version that wrote the state, or a newer one"
        ));
    }
    let json = raw.map(|r| r.json.as_slice()).unwrap_or_default();
    let parsed: serde_json::Value = serde_json::from_slice(json).map_err(|e| format!("the stored identity is not JSON: {e}"))?;
    match parsed.get("id").and_then(serde_json::Value::as_str) {
        Some(id) => Ok(data(id)),
        None => Err("the stored identity has no id".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_identified_by_its_id() {
        let schemas = schemas();
        for t in tfschema::resources() {
            let s = &schemas[&t.type_name];
            assert_eq!(s.version, 0);
            assert_eq!(s.identity_attributes.len(), 1);
            assert!(s.identity_attributes[0].required_for_import);
        }
        let state = Val::Obj(BTreeMap::from([("id".to_string(), Val::Str("vm-1".into()))]));
        assert_eq!(id_of(&of(&state).expect("an identity")), Ok("vm-1".into()));
        assert!(of(&Val::Obj(BTreeMap::from([("id".to_string(), Val::Unknown)]))).is_none());
    }

    #[test]
    fn upgrade_reads_the_stored_json_and_refuses_unknown_versions() {
        let raw = RawState { json: br#"{"id":"net-7"}"#.to_vec(), flatmap: Default::default() };
        assert_eq!(id_of(&upgrade(0, Some(&raw)).expect("upgraded")), Ok("net-7".into()));
        assert!(upgrade(3, Some(&raw)).expect_err("newer").contains("newer than this provider's"));
        let empty = ResourceIdentityData { identity_data: Some(Val::Obj(BTreeMap::new()).to_dynamic()) };
        assert!(id_of(&empty).expect_err("no id").contains("identity = { id"));
    }
}
