//! Canonical JSON form of an object and its `sha256:` content hash.
//!
//! Two objects that mean the same thing (defaults given or not, sets in any order, CIDRs and
//! IPs spelt differently, keys in any order) have the same canonical form and hash.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::model::{AttrType, Attribute, Format, ResourceSchema};
use crate::net::{Cidr, parse_ip};

impl ResourceSchema {
    /// The canonical form of `object`: settable attributes only (computed-only ones dropped),
    /// defaults applied, set-like lists sorted, CIDRs and IPs normalised. A write-only
    /// attribute is replaced by its hash attribute (`user_data` -> `user_data_sha256`), and a
    /// live object's hash attribute is kept, so desired and live compare by hash.
    ///
    /// With `only`, just those top-level attributes (and the hash attributes of write-only
    /// ones among them) are kept: the reconciler compares what the HCL configures.
    pub fn canonical(&self, object: &Map<String, Value>, only: Option<&[&str]>) -> Value {
        let wanted = |name: &str| only.is_none_or(|names| names.contains(&name));
        let mut out = Map::new();
        for attr in &self.attributes {
            if attr.read_only || !wanted(&attr.name) {
                continue;
            }
            if let Some(hash_attr) = &attr.hash_attribute {
                let hash = match object.get(&attr.name) {
                    Some(Value::String(secret)) => Some(Value::String(sha256_hex(secret.as_bytes()))),
                    _ => object.get(hash_attr).filter(|v| !v.is_null()).cloned(),
                };
                if let Some(h) = hash {
                    out.insert(hash_attr.clone(), h);
                }
                continue;
            }
            if attr.name == "id" {
                continue;
            }
            let value = match object.get(&attr.name) {
                None | Some(Value::Null) => attr.default.clone(),
                Some(v) => Some(v.clone()),
            };
            if let Some(v) = value {
                out.insert(attr.name.clone(), canonical_value(attr, v));
            }
        }
        Value::Object(out)
    }

    /// `sha256:<hex>` of the canonical JSON of [`ResourceSchema::canonical`].
    pub fn hash(&self, object: &Map<String, Value>, only: Option<&[&str]>) -> String {
        content_hash(&self.canonical(object, only))
    }
}

fn canonical_value(attr: &Attribute, value: Value) -> Value {
    match (&attr.ty, value) {
        (AttrType::String, Value::String(s)) => Value::String(match attr.constraints.format {
            Some(Format::Cidr) => Cidr::parse(&s).map(|c| c.to_string()).unwrap_or(s),
            Some(Format::Ip) => parse_ip(&s).map(|ip| ip.to_string()).unwrap_or(s),
            _ => s,
        }),
        (AttrType::List(item), Value::Array(items)) => Value::Array(items.into_iter().map(|v| canonical_value(item, v)).collect()),
        (AttrType::Set(item), Value::Array(items)) => {
            let mut items: Vec<Value> = items.into_iter().map(|v| canonical_value(item, v)).collect();
            items.sort_by_cached_key(canonical_json);
            items.dedup();
            Value::Array(items)
        }
        (AttrType::Map(item), Value::Object(entries)) => Value::Object(entries.into_iter().map(|(k, v)| (k, canonical_value(item, v))).collect()),
        (AttrType::Blocks { attributes, .. }, Value::Array(items)) => Value::Array(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(fields) => {
                        let mut out = Map::new();
                        for a in attributes {
                            let v = match fields.get(&a.name) {
                                None | Some(Value::Null) => a.default.clone(),
                                Some(v) => Some(v.clone()),
                            };
                            if let Some(v) = v {
                                out.insert(a.name.clone(), canonical_value(a, v));
                            }
                        }
                        Value::Object(out)
                    }
                    other => other,
                })
                .collect(),
        ),
        (_, v) => v,
    }
}

/// Serialises a JSON value with object keys sorted at every level and no whitespace.
/// Independent of whether serde_json keeps insertion order.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(k.as_str(), out);
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => write_json(scalar, out),
    }
}

/// Writes a string or scalar exactly as `serde_json::to_string` would, straight into `out`
/// (hashing thousands of objects made the intermediate strings the bottleneck).
fn write_json<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, value).expect("writing a string or scalar to memory cannot fail");
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    hex
}

/// `sha256:<hex>` of the canonical JSON of `value`.
pub fn content_hash(value: &Value) -> String {
    format!("sha256:{}", sha256_hex(canonical_json(value).as_bytes()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Kind;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn same_meaning_same_hash() {
        let vm = Kind::Vm.schema();
        let a = obj(json!({"name": "web", "cpu_cores": 2, "memory_gb": 4, "template_id": "t", "network_id": "n", "tags": ["b", "a"]}));
        let b = obj(json!({"tags": ["a", "b"], "network_id": "n", "template_id": "t", "memory_gb": 4, "cpu_cores": 2, "name": "web",
            "disk_gb": 20, "power_state": "running", "id": "vm-1", "status": "running", "version": 7, "ip_address": "10.0.0.2"}));
        assert_eq!(vm.canonical(&a, None), vm.canonical(&b, None));
        assert_eq!(vm.hash(&a, None), vm.hash(&b, None));
        assert!(vm.hash(&a, None).starts_with("sha256:"));
        let c = obj(json!({"name": "web", "cpu_cores": 4, "memory_gb": 4, "template_id": "t", "network_id": "n"}));
        assert_ne!(vm.hash(&a, None), vm.hash(&c, None));
    }

    #[test]
    fn write_only_compares_by_hash() {
        let vm = Kind::Vm.schema();
        let desired = obj(json!({"user_data": "#cloud-config\n"}));
        let live = obj(json!({"user_data_sha256": sha256_hex(b"#cloud-config\n")}));
        let only = Some(&["user_data"][..]);
        assert_eq!(vm.canonical(&desired, only), vm.canonical(&live, only));
        assert!(!canonical_json(&vm.canonical(&desired, only)).contains("cloud-config"));
    }

    #[test]
    fn blocks_get_defaults_and_cidrs_normalise() {
        let net = Kind::Network.schema();
        let a = obj(json!({"name": "n", "cidr": "FD00:0::/64", "firewall_rules": [{"direction": "ingress"}]}));
        let b = obj(json!({"name": "n", "cidr": "fd00::/64", "mtu": 1500, "dhcp_enabled": true,
            "firewall_rules": [{"direction": "ingress", "protocol": "tcp", "ports": "any", "cidr": "0.0.0.0/0", "action": "allow"}]}));
        assert_eq!(net.hash(&a, None), net.hash(&b, None));
    }

    #[test]
    fn only_restricts_the_comparison() {
        let vm = Kind::Vm.schema();
        let full = obj(json!({"name": "web", "cpu_cores": 2, "memory_gb": 8}));
        let canon = vm.canonical(&full, Some(&["name", "cpu_cores"]));
        assert_eq!(canon, json!({"name": "web", "cpu_cores": 2}));
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = json!({"b": {"z": 1, "a": [ {"y": 2, "x": 1} ]}, "a": "s"});
        assert_eq!(canonical_json(&v), r#"{"a":"s","b":{"a":[{"x":1,"y":2}],"z":1}}"#);
    }
}
