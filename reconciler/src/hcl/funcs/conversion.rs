//! Type conversion functions: tobool, tonumber, tostring, tolist, toset, tomap, sensitive, type (can, try, nonsensitive and issensitive are evaluated lazily in `expr.rs`).

use hcl::Value;

use super::{Failure, Outcome, fixed};
use crate::hcl::value::{number_text, sorted, to_bool, to_number, to_set, type_name, unify};

/// Calls a conversion function, or `None` when `name` is not one.
pub fn call(name: &str, args: &[Value]) -> Outcome {
    Some(match name {
        "sensitive" => fixed::<1>(args).map(|[v]| v.clone()),
        "tobool" => fixed::<1>(args).and_then(|[v]| match v {
            Value::Null => Ok(Value::Null),
            other => to_bool(other).map(Value::Bool).map_err(|e| Failure::Error(format!("invalid value for \"v\" parameter: {e}"))),
        }),
        "tonumber" => fixed::<1>(args).and_then(|[v]| match v {
            Value::Null => Ok(Value::Null),
            Value::Bool(_) | Value::Array(_) | Value::Object(_) => {
                Err(format!("invalid value for \"v\" parameter: cannot convert {} to number", type_name(v)).into())
            }
            other => to_number(other).map(|n| crate::hcl::value::normalize(&n)).map_err(|e| Failure::Error(format!("invalid value for \"v\" parameter: {e}"))),
        }),
        "tostring" => fixed::<1>(args).and_then(|[v]| match v {
            Value::Null => Ok(Value::Null),
            Value::String(_) => Ok(v.clone()),
            Value::Number(n) => Ok(Value::from(number_text(n))),
            Value::Bool(b) => Ok(Value::from(b.to_string())),
            other => Err(format!("invalid value for \"v\" parameter: cannot convert {} to string", type_name(other)).into()),
        }),
        "tolist" => fixed::<1>(args).and_then(|[v]| match v {
            Value::Null => Ok(Value::Null),
            Value::Array(items) => unify(items.clone())
                .map(Value::Array)
                .map_err(|e| Failure::Error(format!("invalid value for \"v\" parameter: cannot convert tuple to list of any single type: {e}"))),
            other => Err(format!("invalid value for \"v\" parameter: cannot convert {} to list of any single type", type_name(other)).into()),
        }),
        "toset" => fixed::<1>(args).and_then(|[v]| match v {
            Value::Null => Ok(Value::Null),
            Value::Array(items) => to_set(items.clone())
                .map(Value::Array)
                .map_err(|e| Failure::Error(format!("invalid value for \"v\" parameter: cannot convert tuple to set of any single type: {e}"))),
            other => Err(format!("invalid value for \"v\" parameter: cannot convert {} to set of any single type", type_name(other)).into()),
        }),
        "tomap" => fixed::<1>(args).and_then(|[v]| match v {
            Value::Null => Ok(Value::Null),
            Value::Object(m) => {
                let (keys, values): (Vec<String>, Vec<Value>) = m.iter().map(|(k, v)| (k.clone(), v.clone())).unzip();
                let values = unify(values)
                    .map_err(|e| Failure::Error(format!("invalid value for \"v\" parameter: cannot convert object to map of any single type: {e}")))?;
                Ok(sorted(keys.into_iter().zip(values).collect()))
            }
            other => Err(format!("invalid value for \"v\" parameter: cannot convert {} to map of any single type", type_name(other)).into()),
        }),
        "type" => Err("the type() function is only available in terraform console".into()),
        _ => return None,
    })
}
