//! Conversions between platform objects (JSON, API names) and Terraform values (HCL names,
//! every attribute present as the schema requires).

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use crate::tfschema::{Nesting, TfBlock, TfType};
use crate::value::Val;

/// Converts an API JSON value to a Terraform value of type `ty`.
pub fn json_to_val(v: Option<&Json>, ty: &TfType) -> Val {
    let Some(v) = v else { return Val::Null };
    match (ty, v) {
        (_, Json::Null) => Val::Null,
        (TfType::List(item) | TfType::Set(item), Json::Array(items)) => Val::List(items.iter().map(|i| json_to_val(Some(i), item)).collect()),
        (TfType::Map(item), Json::Object(m)) => Val::Obj(m.iter().map(|(k, v)| (k.clone(), json_to_val(Some(v), item))).collect()),
        (TfType::Object(fields), Json::Object(m)) => Val::Obj(fields.iter().map(|(k, t)| (k.clone(), json_to_val(m.get(k), t))).collect()),
        (TfType::String, Json::Number(n)) => Val::Str(n.to_string()),
        (TfType::String, Json::Bool(b)) => Val::Str(b.to_string()),
        (_, other) => Val::from_json(other),
    }
}

/// Builds the Terraform value of a block from an API object. `keep` supplies what the API
/// never returns: write-only attributes and the `timeouts` block.
pub fn block_from_object(block: &TfBlock, obj: &Map<String, Json>, keep: &Val) -> Val {
    let mut out = BTreeMap::new();
    for a in &block.attributes {
        let v = match &a.source {
            Some(src) if src.write_only => keep.get(&a.name).clone(),
            Some(src) => json_to_val(obj.get(&src.name), &a.ty),
            None => keep.get(&a.name).clone(),
        };
        out.insert(a.name.clone(), v);
    }
    for nb in &block.blocks {
        let v = match nb.nesting {
            Nesting::Single => keep.get(&nb.type_name).clone(),
            Nesting::List => Val::List(
                obj.get(&nb.api_name)
                    .and_then(Json::as_array)
                    .map(|items| items.iter().map(|item| block_from_object(&nb.block, item.as_object().unwrap_or(&Map::new()), &Val::Null)).collect())
                    .unwrap_or_default(),
            ),
        };
        out.insert(nb.type_name.clone(), v);
    }
    Val::Obj(out)
}

/// The API body of the settable attributes of a Terraform value (HCL names mapped to API
/// names). Null attributes are left out unless `keep_nulls` (merge patches need them).
pub fn body_from_block(block: &TfBlock, v: &Val, keep_nulls: bool) -> Map<String, Json> {
    let mut out = Map::new();
    for a in &block.attributes {
        let Some(src) = &a.source else { continue };
        if src.read_only {
            continue;
        }
        match v.get(&a.name).to_json() {
            Some(Json::Null) if !keep_nulls => {}
            Some(j) => {
                out.insert(src.name.clone(), j);
            }
            None => {}
        }
    }
    for nb in &block.blocks {
        if nb.nesting != Nesting::List {
            continue;
        }
        let items = match v.get(&nb.type_name) {
            Val::List(items) => items.iter().map(|i| Json::Object(body_from_block(&nb.block, i, false))).collect(),
            _ => vec![],
        };
        out.insert(nb.api_name.clone(), Json::Array(items));
    }
    out
}

/// Gives `v` every attribute and block of `block` (null or empty where missing), so a value
/// built from partial data conforms to the schema Terraform decodes it with.
pub fn conform(block: &TfBlock, v: &Val) -> Val {
    if v.is_null() {
        return Val::Null;
    }
    let mut out = BTreeMap::new();
    for a in &block.attributes {
        out.insert(a.name.clone(), v.get(&a.name).clone());
    }
    for nb in &block.blocks {
        let inner = v.get(&nb.type_name);
        let value = match (nb.nesting, inner) {
            (Nesting::List, Val::List(items)) => Val::List(items.iter().map(|i| conform(&nb.block, i)).collect()),
            (Nesting::List, Val::Unknown) => Val::Unknown,
            (Nesting::List, _) => Val::List(vec![]),
            (Nesting::Single, Val::Null) => Val::Null,
            (Nesting::Single, other) => conform(&nb.block, other),
        };
        out.insert(nb.type_name.clone(), value);
    }
    Val::Obj(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::tfschema::resource;

    #[test]
    fn network_round_trips_through_the_api_shape() {
        let block = &resource("novacron_network").expect("network").block;
        let obj = json!({"id": "net-1", "name": "core", "cidr": "10.0.0.0/24", "gateway": "10.0.0.1", "mtu": 1500, "dhcp_enabled": true,
            "status": "active", "created_at": "t", "updated_at": "u",
            "firewall_rules": [{"direction": "ingress", "protocol": "tcp", "ports": "22", "cidr": "0.0.0.0/0", "action": "allow"}]});
        let v = block_from_object(block, obj.as_object().expect("object"), &Val::Null);
        assert_eq!(v.get("id"), &Val::Str("net-1".into()));
        assert_eq!(
            v.get("firewall_rule"),
            &Val::List(vec![Val::Obj(BTreeMap::from([
                ("action".to_string(), Val::Str("allow".into())),
                ("cidr".to_string(), Val::Str("0.0.0.0/0".into())),
                ("direction".to_string(), Val::Str("ingress".into())),
                ("ports".to_string(), Val::Str("22".into())),
                ("protocol".to_string(), Val::Str("tcp".into())),
            ]))])
        );
        assert_eq!(v.get("dns_servers"), &Val::Null);
        assert_eq!(v.get("timeouts"), &Val::Null);
        let body = body_from_block(block, &v, false);
        assert_eq!(body["firewall_rules"][0]["ports"], "22");
        assert!(!body.contains_key("status") && !body.contains_key("id") && !body.contains_key("dns_servers"));
    }

    #[test]
    fn write_only_values_come_from_keep() {
        let block = &resource("novacron_vm").expect("vm").block;
        let keep = Val::Obj(BTreeMap::from([("user_data".to_string(), Val::Str("secret".into()))]));
        let v = block_from_object(block, json!({"id": "vm-1", "user_data_sha256": "abc"}).as_object().expect("object"), &keep);
        assert_eq!(v.get("user_data"), &Val::Str("secret".into()));
        assert_eq!(v.get("user_data_sha256"), &Val::Str("abc".into()));
    }
}
