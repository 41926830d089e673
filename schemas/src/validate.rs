//! Validation of client writes against a schema: creates, and JSON merge patches.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{AttrType, Attribute, Format, ResourceSchema};
use crate::net::{Cidr, parse_ip};

/// Why a field was refused. The platform maps these onto HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Violation {
    /// The field does not exist for this kind (400).
    Unknown,
    /// The field is computed by the platform and cannot be written (400).
    ReadOnly,
    /// Wrong JSON type (422).
    Type,
    /// A required field is missing (422).
    Required,
    /// A number, length or count out of range (422).
    Range,
    /// A string outside its allowed values (422).
    Enum,
    /// A string that does not match its pattern or format (422).
    Format,
    /// A change to a field that is fixed after create (409).
    Immutable,
    /// A decrease of a field that may only grow (409).
    GrowOnly,
}

/// One refused field, named by its path (`firewall_rules[1].ports`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Path of the field in the request body.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Classification of the problem.
    pub violation: Violation,
}

impl FieldError {
    fn new(field: &str, violation: Violation, message: impl Into<String>) -> Self {
        FieldError { field: field.to_string(), message: message.into(), violation }
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl ResourceSchema {
    /// Validates the body of a create: returns the settable attributes with defaults applied.
    pub fn validate_create(&self, body: &Value) -> Result<Map<String, Value>, Vec<FieldError>> {
        let Value::Object(input) = body else {
            return Err(vec![FieldError::new("", Violation::Type, format!("the body must be a JSON object, not {}", type_name(body)))]);
        };
        let mut errors = Vec::new();
        self.check_writable_keys(input, &mut errors);
        let object = self.complete(input);
        self.validate_object(&object, &mut errors);
        if errors.is_empty() { Ok(object) } else { Err(errors) }
    }

    /// Applies a JSON merge patch (RFC 7396) to `current` (the stored settable attributes)
    /// and validates the result, including immutable and grow-only rules.
    pub fn validate_patch(&self, current: &Map<String, Value>, patch: &Value) -> Result<Map<String, Value>, Vec<FieldError>> {
        let Value::Object(patch) = patch else {
            return Err(vec![FieldError::new("", Violation::Type, format!("a merge patch must be a JSON object, not {}", type_name(patch)))]);
        };
        let mut errors = Vec::new();
        self.check_writable_keys(patch, &mut errors);
        let mut merged = current.clone();
        for (key, value) in patch {
            if self.attribute(key).is_none_or(|a| a.read_only) {
                continue;
            }
            merge_patch(&mut merged, key, value);
        }
        let object = self.complete(&merged);
        let mut lifecycle = Vec::new();
        for attr in self.settable() {
            let (old, new) = (current.get(&attr.name), object.get(&attr.name));
            if attr.immutable && old != new && !(attr.write_only) {
                lifecycle.push(FieldError::new(
                    &attr.name,
                    Violation::Immutable,
                    format!("{} cannot change after create; create a new {} instead", attr.name, self.kind),
                ));
            }
            if attr.grow_only
                && let (Some(o), Some(n)) = (old.and_then(Value::as_i64), new.and_then(Value::as_i64))
                && n < o
            {
                lifecycle.push(FieldError::new(&attr.name, Violation::GrowOnly, format!("size can only grow: {} is {o}, cannot become {n}", attr.name)));
            }
        }
        // A change that can never be applied in place is the one thing to fix; checks that
        // depend on the new value (a gateway inside a new CIDR) would only add noise.
        if !lifecycle.is_empty() {
            errors.retain(|e| matches!(e.violation, Violation::Unknown | Violation::ReadOnly));
            errors.extend(lifecycle);
            return Err(errors);
        }
        self.validate_object(&object, &mut errors);
        if errors.is_empty() { Ok(object) } else { Err(errors) }
    }

    fn check_writable_keys(&self, input: &Map<String, Value>, errors: &mut Vec<FieldError>) {
        for key in input.keys() {
            match self.attribute(key) {
                None => errors.push(FieldError::new(key, Violation::Unknown, format!("unknown field {key:?} for a {}; remove it", self.kind))),
                Some(a) if a.read_only => {
                    errors.push(FieldError::new(key, Violation::ReadOnly, format!("{key} is set by the platform and cannot be written; remove it")))
                }
                Some(_) => {}
            }
        }
    }

    /// Keeps the known settable keys, drops nulls and fills defaults.
    fn complete(&self, input: &Map<String, Value>) -> Map<String, Value> {
        let mut out = Map::new();
        for attr in self.settable() {
            match input.get(&attr.name) {
                Some(Value::Null) | None => {
                    if let Some(d) = &attr.default {
                        out.insert(attr.name.clone(), d.clone());
                    }
                }
                Some(v) => {
                    out.insert(attr.name.clone(), complete_blocks(attr, v));
                }
            }
        }
        out
    }

    fn validate_object(&self, object: &Map<String, Value>, errors: &mut Vec<FieldError>) {
        validate_fields(self.settable(), object, "", errors);
        for attr in self.settable() {
            let (Some(within), Some(Value::String(ip))) = (&attr.within, object.get(&attr.name)) else { continue };
            let (Ok(ip), Some(Ok(cidr))) = (parse_ip(ip), object.get(within).and_then(Value::as_str).map(Cidr::parse)) else { continue };
            if !cidr.contains(&ip) {
                errors.push(FieldError::new(
                    &attr.name,
                    Violation::Format,
                    format!("{} {ip} is outside {within} {cidr}; pick an address inside it", attr.name),
                ));
            }
        }
    }
}

/// Applies defaults inside nested blocks so stored objects are complete.
fn complete_blocks(attr: &Attribute, value: &Value) -> Value {
    let (AttrType::Blocks { attributes, .. }, Value::Array(items)) = (&attr.ty, value) else { return value.clone() };
    Value::Array(
        items
            .iter()
            .map(|item| match item {
                Value::Object(fields) => {
                    let mut out = fields.clone();
                    out.retain(|_, v| !v.is_null());
                    for a in attributes {
                        if let (false, Some(d)) = (out.contains_key(&a.name), &a.default) {
                            out.insert(a.name.clone(), d.clone());
                        }
                    }
                    Value::Object(out)
                }
                other => other.clone(),
            })
            .collect(),
    )
}

fn merge_patch(target: &mut Map<String, Value>, key: &str, patch: &Value) {
    match patch {
        Value::Null => {
            target.remove(key);
        }
        Value::Object(fields) => {
            let mut base = match target.remove(key) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            for (k, v) in fields {
                merge_patch(&mut base, k, v);
            }
            target.insert(key.to_string(), Value::Object(base));
        }
        other => {
            target.insert(key.to_string(), other.clone());
        }
    }
}

fn validate_fields<'a>(attrs: impl Iterator<Item = &'a Attribute>, object: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    for attr in attrs {
        let field = join(path, &attr.name);
        match object.get(&attr.name) {
            None | Some(Value::Null) => {
                if attr.required {
                    errors.push(FieldError::new(&field, Violation::Required, format!("{field} is required: {}", attr.description)));
                }
            }
            Some(v) => validate_value(attr, v, &field, errors),
        }
    }
}

/// Validates one value against an attribute, pushing an error per problem found.
pub(crate) fn validate_value(attr: &Attribute, value: &Value, field: &str, errors: &mut Vec<FieldError>) {
    let c = &attr.constraints;
    let type_error = |want: &str| FieldError::new(field, Violation::Type, format!("{field} must be {want}, not {}", type_name(value)));
    match (&attr.ty, value) {
        (AttrType::String, Value::String(s)) => {
            if let Some(max) = c.max_length
                && s.chars().count() > max
            {
                errors.push(FieldError::new(field, Violation::Range, format!("{field} is longer than {max} characters")));
            }
            if let Some(allowed) = &c.enum_values
                && !allowed.iter().any(|a| a == s)
            {
                errors.push(FieldError::new(field, Violation::Enum, format!("{field} must be one of {}, not {s:?}", allowed.join(", "))));
            }
            if let Some(p) = &c.pattern
                && !p.regex.is_match(s)
            {
                errors.push(FieldError::new(field, Violation::Format, format!("{field} {s:?} must match {}", p.source)));
            }
            if let Some(f) = c.format
                && let Err(msg) = check_format(f, s)
            {
                errors.push(FieldError::new(field, Violation::Format, format!("{field}: {msg}")));
            }
        }
        (AttrType::Integer, Value::Number(n)) => match n.as_i64() {
            None => errors.push(type_error("a whole number")),
            Some(i) => {
                let (lo, hi) = (c.minimum, c.maximum);
                if lo.is_some_and(|lo| i < lo) || hi.is_some_and(|hi| i > hi) {
                    let range = match (lo, hi) {
                        (Some(lo), Some(hi)) => format!("between {lo} and {hi}"),
                        (Some(lo), None) => format!("at least {lo}"),
                        (None, Some(hi)) => format!("at most {hi}"),
                        (None, None) => unreachable!("a bound was crossed"),
                    };
                    errors.push(FieldError::new(field, Violation::Range, format!("{field} must be {range}, not {i}")));
                }
            }
        },
        (AttrType::Number, Value::Number(_)) | (AttrType::Bool, Value::Bool(_)) => {}
        (AttrType::List(item) | AttrType::Set(item), Value::Array(items)) => {
            check_count(field, items.len(), c.max_items, "items", errors);
            for (i, v) in items.iter().enumerate() {
                validate_value(item, v, &format!("{field}[{i}]"), errors);
            }
            if matches!(attr.ty, AttrType::Set(_)) {
                for (i, v) in items.iter().enumerate() {
                    if items[..i].contains(v) {
                        errors.push(FieldError::new(&format!("{field}[{i}]"), Violation::Format, format!("{field} holds {v} twice; list each value once")));
                    }
                }
            }
        }
        (AttrType::Map(item), Value::Object(entries)) => {
            check_count(field, entries.len(), c.max_properties, "entries", errors);
            for (k, v) in entries {
                validate_value(item, v, &format!("{field}.{k}"), errors);
            }
        }
        (AttrType::Blocks { attributes, .. }, Value::Array(items)) => {
            check_count(field, items.len(), c.max_items, "blocks", errors);
            for (i, item) in items.iter().enumerate() {
                let path = format!("{field}[{i}]");
                let Value::Object(fields) = item else {
                    errors.push(FieldError::new(&path, Violation::Type, format!("{path} must be an object, not {}", type_name(item))));
                    continue;
                };
                for key in fields.keys() {
                    if !attributes.iter().any(|a| &a.name == key) {
                        errors.push(FieldError::new(&join(&path, key), Violation::Unknown, format!("unknown field {key:?} in {field}; remove it")));
                    }
                }
                validate_fields(attributes.iter(), fields, &path, errors);
            }
        }
        (AttrType::String, _) => errors.push(type_error("a string")),
        (AttrType::Integer, _) => errors.push(type_error("a whole number")),
        (AttrType::Number, _) => errors.push(type_error("a number")),
        (AttrType::Bool, _) => errors.push(type_error("true or false")),
        (AttrType::List(_) | AttrType::Set(_) | AttrType::Blocks { .. }, _) => errors.push(type_error("a list")),
        (AttrType::Map(_), _) => errors.push(type_error("an object of strings")),
    }
}

fn check_count(field: &str, n: usize, max: Option<usize>, what: &str, errors: &mut Vec<FieldError>) {
    if let Some(max) = max
        && n > max
    {
        errors.push(FieldError::new(field, Violation::Range, format!("{field} has {n} {what}; at most {max} are allowed")));
    }
}

/// Checks a string against a semantic format, returning a message that says how to fix it.
pub fn check_format(format: Format, s: &str) -> Result<(), String> {
    match format {
        Format::Cidr => Cidr::parse(s).map(|_| ()),
        Format::Ip => parse_ip(s).map(|_| ()),
        Format::DateTime => {
            let ok = s.len() >= 20 && s.as_bytes().get(10) == Some(&b'T') && (s.ends_with('Z') || s.contains('+'));
            if ok { Ok(()) } else { Err(format!("{s:?} is not an RFC 3339 timestamp (e.g. 2026-01-31T12:00:00Z)")) }
        }
        Format::Rego => {
            if s.trim().is_empty() {
                Err("the Rego module is empty; write a module with a `deny` set".into())
            } else {
                Ok(())
            }
        }
        Format::Ports => check_ports(s),
    }
}

fn check_ports(s: &str) -> Result<(), String> {
    if s == "any" {
        return Ok(());
    }
    let bad = || format!("{s:?} is not a port list: use any, 22, 8000-8080 or 80,443 (ports 1-65535)");
    for part in s.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let parse = |p: &str| p.parse::<u32>().ok().filter(|n| (1..=65535).contains(n) && !p.starts_with('+'));
        match (parse(lo), parse(hi)) {
            (Some(lo), Some(hi)) if lo <= hi => {}
            _ => return Err(bad()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Kind;

    fn fields(errors: &[FieldError]) -> Vec<(&str, Violation)> {
        errors.iter().map(|e| (e.field.as_str(), e.violation)).collect()
    }

    #[test]
    fn policy_types_are_the_admission_categories_engineers_use() {
        let policy = Kind::Policy.schema();
        for ty in ["security", "compliance", "cost", "placement", "access", "resource", "network", "data"] {
            let body = json!({"name": "p", "type": ty, "rule": "package p\n"});
            assert!(policy.validate_create(&body).is_ok(), "{ty} is a policy type");
        }
        let errors = policy.validate_create(&json!({"name": "p", "type": "quota", "rule": "package p\n"})).expect_err("not a type");
        assert!(errors[0].message.contains("security, compliance, cost, placement, access, resource, network, data"), "{}", errors[0].message);
    }

    #[test]
    fn create_applies_defaults() {
        let vm = Kind::Vm.schema();
        let body = json!({"name": "web", "cpu_cores": 2, "memory_gb": 4, "template_id": "tpl-a", "network_id": "net-a"});
        let out = vm.validate_create(&body).expect("valid");
        assert_eq!(out["disk_gb"], 20);
        assert_eq!(out["power_state"], "running");
        assert!(!out.contains_key("metadata"));
    }

    #[test]
    fn create_names_every_bad_field() {
        let vm = Kind::Vm.schema();
        let body = json!({"name": "Web!", "cpu_cores": 0, "memory_gb": "4", "template_id": "t", "network_id": "n", "colour": "red", "status": "running"});
        let errors = vm.validate_create(&body).unwrap_err();
        let got = fields(&errors);
        assert!(got.contains(&("name", Violation::Format)));
        assert!(got.contains(&("cpu_cores", Violation::Range)));
        assert!(got.contains(&("memory_gb", Violation::Type)));
        assert!(got.contains(&("colour", Violation::Unknown)));
        assert!(got.contains(&("status", Violation::ReadOnly)));
        let cpu = errors.iter().find(|e| e.field == "cpu_cores").expect("cpu error");
        assert!(cpu.message.contains("between 1 and 128"), "{}", cpu.message);
    }

    #[test]
    fn network_cidr_gateway_and_rules() {
        let net = Kind::Network.schema();
        let errors = net.validate_create(&json!({"name": "n", "cidr": "10.0.0.0/33"})).unwrap_err();
        assert_eq!(fields(&errors), vec![("cidr", Violation::Format)]);
        let errors = net
            .validate_create(&json!({"name": "n", "cidr": "10.0.0.0/24", "gateway": "10.0.1.1",
                "firewall_rules": [{"direction": "ingress", "ports": "22"}, {"direction": "sideways", "ports": "70000", "bogus": 1}]}))
            .unwrap_err();
        let got = fields(&errors);
        assert!(got.contains(&("gateway", Violation::Format)));
        assert!(got.contains(&("firewall_rules[1].direction", Violation::Enum)));
        assert!(got.contains(&("firewall_rules[1].ports", Violation::Format)));
        assert!(got.contains(&("firewall_rules[1].bogus", Violation::Unknown)));
        let ok = net.validate_create(&json!({"name": "n", "cidr": "10.0.0.0/24", "firewall_rules": [{"direction": "egress"}]})).expect("valid");
        assert_eq!(ok["firewall_rules"][0], json!({"direction": "egress", "protocol": "tcp", "ports": "any", "cidr": "0.0.0.0/0", "action": "allow"}));
    }

    #[test]
    fn patch_merges_and_guards_immutables_and_growth() {
        let vol = Kind::Volume.schema();
        let current = vol.validate_create(&json!({"name": "data", "size_gb": 100})).expect("valid");
        let grown = vol.validate_patch(&current, &json!({"size_gb": 200})).expect("grow");
        assert_eq!(grown["size_gb"], 200);
        assert_eq!(grown["type"], "ssd");
        let errors = vol.validate_patch(&current, &json!({"size_gb": 50, "type": "hdd"})).unwrap_err();
        let got = fields(&errors);
        assert!(got.contains(&("size_gb", Violation::GrowOnly)));
        assert!(got.contains(&("type", Violation::Immutable)));
        assert!(errors.iter().any(|e| e.message.contains("size can only grow")));
    }

    #[test]
    fn patch_merges_maps_and_null_resets_to_default() {
        let vm = Kind::Vm.schema();
        let current = vm
            .validate_create(&json!({"name": "web", "cpu_cores": 2, "memory_gb": 4, "template_id": "t", "network_id": "n", "metadata": {"a": "1", "b": "2"}, "power_state": "stopped"}))
            .expect("valid");
        let out = vm.validate_patch(&current, &json!({"metadata": {"a": null, "c": "3"}, "power_state": null})).expect("valid");
        assert_eq!(out["metadata"], json!({"b": "2", "c": "3"}));
        assert_eq!(out["power_state"], "running");
        let errors = vm.validate_patch(&current, &json!({"cpu_cores": null})).unwrap_err();
        assert_eq!(fields(&errors), vec![("cpu_cores", Violation::Required)]);
    }

    #[test]
    fn ports_format() {
        assert!(check_ports("any").is_ok());
        assert!(check_ports("22").is_ok());
        assert!(check_ports("80,443,8000-8080").is_ok());
        for bad in ["", "0", "65536", "10-5", "a", "22,", "-5"] {
            assert!(check_ports(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
