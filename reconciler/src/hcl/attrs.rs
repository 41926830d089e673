//! Turns one evaluated resource instance into API attributes: schema lookup, type coercion, blocks to lists.

use hcl::Value as HclValue;
use novacron_schemas::{AttrType, Attribute, ResourceSchema};
use serde_json::{Map, Value};

use super::parse::ResourceBlock;
use super::resolve::{Instance, Refs};
use crate::write_only::{TwinArgument, twin_argument};

/// One evaluated instance: known attributes by API name, and the unknown ones with reasons.
#[derive(Debug, Default)]
pub struct Evaluated {
    /// Known values, by API name.
    pub attributes: Map<String, Value>,
    /// `(attribute, reason)` for values that could not be evaluated.
    pub unknown: Vec<(String, String)>,
    /// Arguments the schema does not know or that are computed-only.
    pub ignored: Vec<String>,
    /// Attributes whose value came from their write-only twin (`user_data` from `user_data_wo`):
    /// Terraform's references see null for them, as the value is never in the state.
    pub from_twin: Vec<String>,
}

/// An attribute and its write-only twin both set on one instance: Terraform refuses that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinConflict {
    /// The API attribute (`user_data`).
    pub attribute: String,
    /// Its twin (`user_data_wo`).
    pub twin: String,
}

/// Evaluates every argument and block of `block` for one instance. A write-only twin
/// (`user_data_wo`) gives its attribute's value; the twin's version is Terraform's alone.
pub fn evaluate_instance(block: &ResourceBlock, refs: &Refs<'_>, inst: &Instance) -> Result<Evaluated, TwinConflict> {
    let schema = block.kind.schema();
    let mut out = Evaluated::default();
    let mut twins = Vec::new();
    for (name, expr) in &block.attributes {
        let Some(attr) = schema.attribute(name).filter(|a| !a.read_only) else {
            match twin_argument(schema, name) {
                Some(TwinArgument::Value(attr)) => twins.push((attr, name, refs.eval(expr, inst))),
                Some(TwinArgument::Version(_)) => {}
                None => out.ignored.push(name.clone()),
            }
            continue;
        };
        match refs.eval(expr, inst) {
            Ok(HclValue::Null) => {}
            Ok(v) => {
                out.attributes.insert(name.clone(), coerce(attr, to_json(&v)));
            }
            // An evaluation error can quote the value; a sensitive attribute's must not be shown.
            Err(_) if attr.sensitive => out.unknown.push((name.clone(), "it could not be evaluated (details hidden: the attribute is sensitive)".into())),
            Err(reason) => out.unknown.push((name.clone(), reason)),
        }
    }
    let mut block_names: Vec<&str> = Vec::new();
    for b in &block.blocks {
        if !block_names.contains(&b.name.as_str()) {
            block_names.push(&b.name);
        }
    }
    for block_name in block_names {
        let Some((attr, fields)) = blocks_attribute(schema, block_name) else {
            out.ignored.push(block_name.to_string());
            continue;
        };
        let mut items = Vec::new();
        let mut failed = None;
        for nested in block.blocks.iter().filter(|b| b.name == block_name) {
            let Some(dynamic) = &nested.dynamic else {
                items.push(block_item(block_name, &nested.args, fields, refs, inst, &mut out.ignored, &mut failed));
                continue;
            };
            match dynamic_entries(refs, &dynamic.for_each, inst) {
                Ok(entries) => {
                    for entry in entries {
                        let mut inner = inst.clone();
                        inner.extra.push((dynamic.iterator.clone(), entry));
                        items.push(block_item(block_name, &nested.args, fields, refs, &inner, &mut out.ignored, &mut failed));
                    }
                }
                Err(reason) => failed = Some(format!("dynamic \"{block_name}\": {reason}")),
            }
        }
        match failed {
            Some(reason) => out.unknown.push((attr.name.clone(), reason)),
            None => {
                out.attributes.insert(attr.name.clone(), Value::Array(items));
            }
        }
    }
    for (attr, twin, value) in twins {
        take_twin(&mut out, attr, twin, value)?;
    }
    out.ignored.sort();
    out.ignored.dedup();
    Ok(out)
}

/// Puts the evaluated value of a write-only twin in place of its attribute. Null leaves the
/// attribute as it is; a value beside a set attribute is a conflict, and where one side cannot
/// be evaluated, which one counts is not known, so the attribute is unknown.
fn take_twin(out: &mut Evaluated, attr: &Attribute, twin: &str, value: Result<HclValue, String>) -> Result<(), TwinConflict> {
    let name = &attr.name;
    let set = out.attributes.contains_key(name);
    let unknown = out.unknown.iter().any(|(a, _)| a == name);
    // An evaluation error can quote the value, and a twin's value is always sensitive.
    let hidden = format!("{twin} could not be evaluated (details hidden: the attribute is sensitive)");
    match value {
        Ok(HclValue::Null) => {}
        Ok(_) if set => return Err(TwinConflict { attribute: name.clone(), twin: twin.to_string() }),
        Ok(_) if unknown => {
            out.unknown.retain(|(a, _)| a != name);
            out.unknown.push((name.clone(), format!("{name} could not be evaluated and {twin} is set too; set only one of them")));
        }
        Ok(v) => {
            out.attributes.insert(name.clone(), coerce(attr, to_json(&v)));
            out.from_twin.push(name.clone());
        }
        Err(_) if set => {
            out.attributes.remove(name);
            out.unknown.push((name.clone(), format!("{hidden}, and {name} is set too; set only one of them")));
        }
        Err(_) if unknown => {}
        Err(_) => out.unknown.push((name.clone(), hidden)),
    }
    Ok(())
}

/// One block's arguments as an object; an argument that cannot be evaluated sets `failed`.
fn block_item(
    block_name: &str,
    args: &[(String, hcl::Expression)],
    fields: &[Attribute],
    refs: &Refs<'_>,
    inst: &Instance,
    ignored: &mut Vec<String>,
    failed: &mut Option<String>,
) -> Value {
    let mut item = Map::new();
    for (field, expr) in args {
        let Some(fattr) = fields.iter().find(|f| &f.name == field) else {
            ignored.push(format!("{block_name}.{field}"));
            continue;
        };
        match refs.eval(expr, inst) {
            Ok(HclValue::Null) => {}
            Ok(v) => {
                item.insert(field.clone(), coerce(fattr, to_json(&v)));
            }
            Err(reason) => *failed = Some(format!("{block_name}.{field}: {reason}")),
        }
    }
    Value::Object(item)
}

/// The `{key, value}` entries a `dynamic` block repeats over: a map's entries, or a list's
/// items with their index as key.
fn dynamic_entries(refs: &Refs<'_>, for_each: &hcl::Expression, inst: &Instance) -> Result<Vec<HclValue>, String> {
    let entry = |k: HclValue, v: HclValue| HclValue::Object(hcl::Map::from_iter([("key".to_string(), k), ("value".to_string(), v)]));
    match refs.eval(for_each, inst)? {
        HclValue::Object(m) => Ok(m.into_iter().map(|(k, v)| entry(HclValue::from(k), v)).collect()),
        HclValue::Array(items) => Ok(items.into_iter().enumerate().map(|(i, v)| entry(HclValue::from(i as u64), v)).collect()),
        other => Err(format!("for_each must be a map or a list, not {other}")),
    }
}

fn blocks_attribute<'s>(schema: &'s ResourceSchema, block_name: &str) -> Option<(&'s Attribute, &'s [Attribute])> {
    schema.attributes.iter().find_map(|a| match &a.ty {
        AttrType::Blocks { block_name: b, attributes } if b == block_name => Some((a, attributes.as_slice())),
        _ => None,
    })
}

/// An hcl value as JSON.
pub fn to_json(v: &HclValue) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A JSON value as an hcl value.
pub fn to_hcl(v: &Value) -> HclValue {
    hcl::to_value(v).unwrap_or(HclValue::Null)
}

/// Converts a value to the attribute's type the way Terraform does (`"4"` -> 4 for a number,
/// `4.0` -> 4 for an integer, `true` -> `"true"` for a string); a value that does not convert
/// is kept, so it shows up as a difference rather than vanishing.
pub fn coerce(attr: &Attribute, v: Value) -> Value {
    match (&attr.ty, v) {
        (AttrType::String, Value::Number(n)) => Value::String(n.to_string()),
        (AttrType::String, Value::Bool(b)) => Value::String(b.to_string()),
        (AttrType::Integer, Value::String(s)) => s.trim().parse::<i64>().map(Value::from).unwrap_or(Value::String(s)),
        (AttrType::Integer, Value::Number(n)) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        (AttrType::Number, Value::String(s)) => s.trim().parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or(Value::String(s), Value::Number),
        (AttrType::Bool, Value::String(s)) if s == "true" || s == "false" => Value::Bool(s == "true"),
        (AttrType::List(item) | AttrType::Set(item), Value::Array(items)) => Value::Array(items.into_iter().map(|v| coerce(item, v)).collect()),
        (AttrType::Map(item), Value::Object(m)) => Value::Object(m.into_iter().map(|(k, v)| (k, coerce(item, v))).collect()),
        (AttrType::Blocks { attributes, .. }, Value::Array(items)) => Value::Array(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(m) => Value::Object(
                        m.into_iter()
                            .map(|(k, v)| match attributes.iter().find(|a| a.name == k) {
                                Some(a) => (k, coerce(a, v)),
                                None => (k, v),
                            })
                            .collect(),
                    ),
                    other => other,
                })
                .collect(),
        ),
        (_, v) => v,
    }
}

#[cfg(test)]
mod tests {
    use novacron_schemas::Kind;
    use serde_json::json;

    use super::*;

    /// Evaluates the arguments of one `novacron_vm` block written as `body` (no nested blocks).
    fn vm_instance(body: &str) -> Result<Evaluated, TwinConflict> {
        let body = hcl::parse(&format!("resource \"novacron_vm\" \"a\" {{\n{body}}}\n")).expect("parses");
        let block = body.blocks().next().expect("block");
        let rb = super::super::parse::ResourceBlock {
            kind: Kind::Vm,
            label: "a".into(),
            file: "main.tf".into(),
            count: None,
            for_each: None,
            attributes: block.body.attributes().map(|a| (a.key.to_string(), a.expr.clone())).collect(),
            blocks: vec![],
        };
        let ctx = crate::hcl::funcs::function_context();
        let refs = Refs { ctx: Some(&ctx), ..Refs::default() };
        evaluate_instance(&rb, &refs, &Instance::default())
    }

    #[test]
    fn errors_on_sensitive_attributes_do_not_quote_the_value() {
        let ev = vm_instance("  name = \"a\"\n  user_data = \"hunter2\" + 1\n").expect("no conflict");
        assert_eq!(ev.unknown.len(), 1);
        assert!(!ev.unknown[0].1.contains("hunter2"), "{}", ev.unknown[0].1);
    }

    #[test]
    fn the_write_only_twin_gives_the_attribute_and_its_version_is_terraforms_alone() {
        let ev = vm_instance("  name = \"a\"\n  user_data_wo = \"#cloud-config hunter2\"\n  user_data_wo_version = 3\n").expect("no conflict");
        assert_eq!(ev.attributes, json!({"name": "a", "user_data": "#cloud-config hunter2"}).as_object().expect("object").clone());
        assert_eq!(ev.from_twin, ["user_data"]);
        assert!(ev.unknown.is_empty() && ev.ignored.is_empty(), "the version is neither unknown nor ignored: {:?} {:?}", ev.unknown, ev.ignored);

        // A null twin leaves the attribute alone (a module choosing one of the two).
        let ev = vm_instance("  name = \"a\"\n  user_data = \"plain\"\n  user_data_wo = null\n  user_data_wo_version = 1\n").expect("no conflict");
        assert_eq!((ev.attributes.get("user_data"), ev.from_twin.len()), (Some(&json!("plain")), 0));
        let ev = vm_instance("  name = \"a\"\n  user_data = null\n  user_data_wo = \"wo\"\n").expect("no conflict");
        assert_eq!(ev.attributes.get("user_data"), Some(&json!("wo")));
    }

    #[test]
    fn the_attribute_and_its_twin_together_are_a_conflict_or_unknown() {
        let conflict = vm_instance("  name = \"a\"\n  user_data = \"x\"\n  user_data_wo = \"y\"\n").expect_err("both set");
        assert_eq!(conflict, TwinConflict { attribute: "user_data".into(), twin: "user_data_wo".into() });
        // One side cannot be evaluated: which one counts is not known, and no value is quoted.
        for body in ["  user_data = \"hunter2\"\n  user_data_wo = \"hunter2\" + 1\n", "  user_data = \"hunter2\" + 1\n  user_data_wo = \"hunter2\"\n"] {
            let ev = vm_instance(&format!("  name = \"a\"\n{body}")).expect("not known to conflict");
            assert!(!ev.attributes.contains_key("user_data"), "{body}");
            assert_eq!(ev.unknown.len(), 1, "{body}: {:?}", ev.unknown);
            let (attr, reason) = &ev.unknown[0];
            assert_eq!(attr, "user_data");
            assert!(reason.contains("set only one of them") && !reason.contains("hunter2"), "{reason}");
        }
        let ev = vm_instance("  name = \"a\"\n  user_data_wo = \"hunter2\" + 1\n").expect("no conflict");
        assert_eq!(ev.unknown, [("user_data".to_string(), "user_data_wo could not be evaluated (details hidden: the attribute is sensitive)".to_string())]);
    }

    #[test]
    fn coerces_like_terraform() {
        let vm = Kind::Vm.schema();
        let attr = |n: &str| vm.attribute(n).expect("attribute");
        assert_eq!(coerce(attr("memory_gb"), json!("4")), json!(4));
        assert_eq!(coerce(attr("memory_gb"), json!(4.0)), json!(4));
        assert_eq!(coerce(attr("metadata"), json!({"n": 1})), json!({"n": "1"}));
        assert_eq!(coerce(attr("memory_gb"), json!("lots")), json!("lots"));
    }
}
