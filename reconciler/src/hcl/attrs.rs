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
            Err(reason) => out.unknown.push((name.clone(), reason)),
        }
    }
    let mut block_names: Vec<&str> = block.blocks.iter().map(|(n, _)| n.as_str()).collect();
    block_names.dedup();
    for block_name in block_names {
        let Some((attr, fields)) = blocks_attribute(schema, block_name) else {
            out.ignored.push(block_name.to_string());
            continue;
        };
        let mut items = Vec::new();
        let mut failed = None;
        for (_, args) in block.blocks.iter().filter(|(n, _)| n == block_name) {
            let mut item = Map::new();
            for (field, expr) in args {
                let Some(fattr) = fields.iter().find(|f| &f.name == field) else {
                    out.ignored.push(format!("{block_name}.{field}"));
                    continue;
                };
                match refs.eval(expr, inst) {
                    Ok(HclValue::Null) => {}
                    Ok(v) => {
                        item.insert(field.clone(), coerce(fattr, to_json(&v)));
                    }
                    Err(reason) => failed = Some(format!("{block_name}.{field}: {reason}")),
                }
            }
            items.push(Value::Object(item));
        }
        match failed {
            Some(reason) => out.unknown.push((attr.name.clone(), reason)),
            None => {
                out.attributes.insert(attr.name.clone(), Value::Array(items));
            }
        }
    }
    for name in &block.dynamic {
        let attr = blocks_attribute(schema, name).map_or(name.clone(), |(a, _)| a.name.clone());
        out.unknown.push((attr, format!("dynamic \"{name}\" blocks are not evaluated")));
    }
    out
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
    fn coerces_like_terraform() {
        let vm = Kind::Vm.schema();
        let attr = |n: &str| vm.attribute(n).expect("attribute");
        assert_eq!(coerce(attr("memory_gb"), json!("4")), json!(4));
        assert_eq!(coerce(attr("memory_gb"), json!(4.0)), json!(4));
        assert_eq!(coerce(attr("metadata"), json!({"n": 1})), json!({"n": "1"}));
        assert_eq!(coerce(attr("memory_gb"), json!("lots")), json!("lots"));
    }
}
