//! Field-level diff of two canonical forms, with HCL paths (`firewall_rule[1].ports`) and severities.

use novacron_schemas::{AttrType, Attribute, ResourceSchema, Severity};
use serde_json::{Map, Value};

use crate::report::Change;

/// What reports show instead of a sensitive value.
pub const SENSITIVE: &str = "(sensitive)";

/// Differences between the canonical `desired` and `live` objects of one kind, one top-level
/// attribute at a time, sorted by path. Sensitive attributes yield one change with hidden values.
pub fn diff_objects(schema: &ResourceSchema, desired: &Map<String, Value>, live: &Map<String, Value>) -> Vec<Change> {
    let mut keys: Vec<&String> = desired.keys().chain(live.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut changes = Vec::new();
    for key in keys {
        let (d, l) = (desired.get(key).unwrap_or(&Value::Null), live.get(key).unwrap_or(&Value::Null));
        if d == l {
            continue;
        }
        // A write-only attribute is compared through its hash attribute (user_data -> user_data_sha256).
        let attr = schema.attributes.iter().find(|a| a.hash_attribute.as_deref() == Some(key.as_str())).or_else(|| schema.attribute(key));
        let Some(attr) = attr else {
            changes.push(Change { path: key.clone(), desired: d.clone(), live: l.clone(), severity: Severity::Medium, sensitive: false });
            continue;
        };
        if attr.sensitive {
            changes.push(Change {
                path: attr.name.clone(),
                desired: Value::String(SENSITIVE.into()),
                live: Value::String(SENSITIVE.into()),
                severity: attr.severity,
                sensitive: true,
            });
            continue;
        }
        let path = match &attr.ty {
            AttrType::Blocks { block_name, .. } => block_name.clone(),
            _ => attr.name.clone(),
        };
        diff_value(attr, attr.severity, &path, d, l, &mut changes);
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    changes
}

/// The top-level attribute a change path belongs to (`firewall_rule[1].ports` -> `firewall_rule`).
pub fn top_level(path: &str) -> &str {
    let end = path.find(['.', '[']).unwrap_or(path.len());
    &path[..end]
}

fn diff_value(attr: &Attribute, severity: Severity, path: &str, d: &Value, l: &Value, out: &mut Vec<Change>) {
    if d == l {
        return;
    }
    if attr.sensitive {
        let hidden = Value::String(SENSITIVE.into());
        out.push(Change { path: path.to_string(), desired: hidden.clone(), live: hidden, severity, sensitive: true });
        return;
    }
    let whole = |out: &mut Vec<Change>| {
        out.push(Change { path: path.to_string(), desired: d.clone(), live: l.clone(), severity, sensitive: false });
    };
    match (&attr.ty, d, l) {
        (AttrType::Map(item), Value::Object(dm), Value::Object(lm)) => {
            let mut keys: Vec<&String> = dm.keys().chain(lm.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let sub = format!("{path}{}", key_segment(k));
                diff_value(item, severity, &sub, dm.get(k).unwrap_or(&Value::Null), lm.get(k).unwrap_or(&Value::Null), out);
            }
        }
        (AttrType::List(item), Value::Array(da), Value::Array(la)) => {
            for i in 0..da.len().max(la.len()) {
                let sub = format!("{path}[{i}]");
                diff_value(item, severity, &sub, da.get(i).unwrap_or(&Value::Null), la.get(i).unwrap_or(&Value::Null), out);
            }
        }
        (AttrType::Blocks { attributes, .. }, Value::Array(da), Value::Array(la)) => {
            for i in 0..da.len().max(la.len()) {
                let sub = format!("{path}[{i}]");
                match (da.get(i), la.get(i)) {
                    (Some(Value::Object(dobj)), Some(Value::Object(lobj))) => {
                        let mut keys: Vec<&String> = dobj.keys().chain(lobj.keys()).collect();
                        keys.sort();
                        keys.dedup();
                        for k in keys {
                            let (dv, lv) = (dobj.get(k).unwrap_or(&Value::Null), lobj.get(k).unwrap_or(&Value::Null));
                            match attributes.iter().find(|a| &a.name == k) {
                                Some(field) => diff_value(field, field.severity, &format!("{sub}.{k}"), dv, lv, out),
                                None if dv != lv => {
                                    out.push(Change { path: format!("{sub}.{k}"), desired: dv.clone(), live: lv.clone(), severity, sensitive: false })
                                }
                                None => {}
                            }
                        }
                    }
                    (dv, lv) => out.push(Change {
                        path: sub,
                        desired: dv.cloned().unwrap_or(Value::Null),
                        live: lv.cloned().unwrap_or(Value::Null),
                        severity,
                        sensitive: false,
                    }),
                }
            }
        }
        // Scalars, sets (sorted, so an index would mislead) and type mismatches: the whole value.
        _ => whole(out),
    }
}

fn key_segment(key: &str) -> String {
    let plain =
        key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain { format!(".{key}") } else { format!("[{}]", Value::String(key.to_string())) }
}

#[cfg(test)]
mod tests {
    use novacron_schemas::Kind;
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn block_paths_use_the_hcl_block_name() {
        let net = Kind::Network.schema();
        let d = map(json!({"firewall_rules": [{"direction": "ingress", "ports": "22"}, {"direction": "ingress", "ports": "443"}]}));
        let l = map(json!({"firewall_rules": [{"direction": "ingress", "ports": "22"}, {"direction": "ingress", "ports": "8443"}]}));
        let changes = diff_objects(net, &d, &l);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path, "firewall_rule[1].ports");
        assert_eq!(changes[0].severity, Severity::Critical);
        assert_eq!(top_level(&changes[0].path), "firewall_rule");
    }

    #[test]
    fn maps_lists_and_sets() {
        let vm = Kind::Vm.schema();
        let d = map(json!({"metadata": {"env": "prod", "team": "a"}, "tags": ["a", "b"], "memory_gb": 4}));
        let l = map(json!({"metadata": {"env": "dev", "team": "a", "x y": "1"}, "tags": ["a"], "memory_gb": 4}));
        let paths: Vec<String> = diff_objects(vm, &d, &l).into_iter().map(|c| c.path).collect();
        assert_eq!(paths, ["metadata.env", "metadata[\"x y\"]", "tags"]);
        let net = Kind::Network.schema();
        let changes = diff_objects(net, &map(json!({"dns_servers": ["1.1.1.1"]})), &map(json!({"dns_servers": ["1.1.1.1", "8.8.8.8"]})));
        assert_eq!(changes[0].path, "dns_servers[1]");
        assert_eq!(changes[0].desired, Value::Null);
    }

    #[test]
    fn sensitive_values_never_appear() {
        let vm = Kind::Vm.schema();
        let d = map(json!({"user_data_sha256": "aaaa"}));
        let l = map(json!({"user_data_sha256": "bbbb"}));
        let changes = diff_objects(vm, &d, &l);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path, "user_data");
        assert!(changes[0].sensitive);
        let text = serde_json::to_string(&changes).expect("json");
        assert!(!text.contains("aaaa") && !text.contains("bbbb"));
    }
}
