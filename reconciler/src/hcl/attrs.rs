//! Turns one evaluated resource instance into API attributes: schema lookup, type coercion, blocks to lists.

use hcl::Value as HclValue;
use novacron_schemas::{AttrType, Attribute, ResourceSchema};
use serde_json::{Map, Value};

use super::parse::ResourceBlock;
use super::resolve::{Instance, Refs};

/// One evaluated instance: known attributes by API name, and the unknown ones with reasons.
#[derive(Debug, Default)]
pub struct Evaluated {
    /// Known values, by API name.
    pub attributes: Map<String, Value>,
    /// `(attribute, reason)` for values that could not be evaluated.
    pub unknown: Vec<(String, String)>,
    /// Arguments the schema does not know or that are computed-only.
    pub ignored: Vec<String>,
}

/// Evaluates every argument and block of `block` for one instance.
pub fn evaluate_instance(block: &ResourceBlock, refs: &Refs<'_>, inst: &Instance) -> Evaluated {
    let schema = block.kind.schema();
    let mut out = Evaluated::default();
    for (name, expr) in &block.attributes {
        let Some(attr) = schema.attribute(name).filter(|a| !a.read_only) else {
            out.ignored.push(name.clone());
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
    out.ignored.sort();
    out.ignored.dedup();
    out
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

    #[test]
    fn errors_on_sensitive_attributes_do_not_quote_the_value() {
        let body = hcl::parse("resource \"novacron_vm\" \"a\" {\n  name = \"a\"\n  user_data = \"hunter2\" + 1\n}\n").expect("parses");
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
        let ev = evaluate_instance(&rb, &refs, &Instance::default());
        assert_eq!(ev.unknown.len(), 1);
        assert!(!ev.unknown[0].1.contains("hunter2"), "{}", ev.unknown[0].1);
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
