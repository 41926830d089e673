//! Terraform's value semantics over hcl-rs values: integral numbers, primitive conversions, type unification and set order.
//!
//! Note for the configuration level (hcl-config): the conversions behind `tostring`, `tonumber`,
//! `tobool`, `tolist`, `toset` and `tomap` live here (no `types.rs` existed when this was written);
//! type constraints can build on `convert_primitive`, `unify` and `to_set`.

use std::cmp::Ordering;

use hcl::{Map, Number, Value};

/// Above this magnitude an integral float is kept as a float (i64 cannot hold it exactly).
const INT_LIMIT: f64 = 9.0e15;

/// A number as Terraform shows it: integral values are integers.
pub fn number(f: f64) -> Result<Value, String> {
    if !f.is_finite() {
        return Err("the result is not a finite number".into());
    }
    if f.fract() == 0.0 && f.abs() < INT_LIMIT {
        return Ok(Value::from(f as i64));
    }
    Number::from_f64(f).map(Value::Number).ok_or_else(|| "the result is not a finite number".to_string())
}

/// The result of an arithmetic operator. Terraform computes with arbitrary-precision decimals;
/// rounding to 15 significant digits undoes binary noise (`0.1 + 0.2` is `0.3`). Functions
/// such as `log` and `pow` compute in binary floating point in Terraform too, so they use `number`.
pub fn decimal(f: f64) -> Result<Value, String> {
    if !f.is_finite() {
        return Err("the result is not a finite number".into());
    }
    if f.fract() == 0.0 && f.abs() < INT_LIMIT {
        return Ok(Value::from(f as i64));
    }
    let rounded: f64 = format!("{f:.14e}").parse().unwrap_or(f);
    if rounded.fract() == 0.0 && rounded.abs() < INT_LIMIT {
        return Ok(Value::from(rounded as i64));
    }
    Number::from_f64(rounded).map(Value::Number).ok_or_else(|| "the result is not a finite number".to_string())
}

/// Normalises a number (a literal `1.0` is the integer `1`).
pub fn normalize(n: &Number) -> Value {
    match n.as_i64() {
        Some(_) if !n.is_f64() => Value::Number(*n),
        _ => n.as_f64().map_or_else(|| Value::Number(*n), |f| number(f).unwrap_or_else(|_| Value::Number(*n))),
    }
}

/// The f64 of a number value.
pub fn f64_of(n: &Number) -> f64 {
    n.as_f64().unwrap_or(0.0)
}

/// Terraform's name for a value's type, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "tuple",
        Value::Object(_) => "object",
    }
}

/// The decimal text of a number, as `tostring` gives it.
pub fn number_text(n: &Number) -> String {
    if n.is_f64() {
        let f = f64_of(n);
        if f.fract() == 0.0 && f.abs() < INT_LIMIT {
            return format!("{}", f as i64);
        }
        return format!("{f}");
    }
    n.to_string()
}

/// A primitive value as a string (`tostring`, template interpolation, string arguments).
pub fn to_string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(number_text(n)),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err("a null value cannot be used as a string".into()),
        other => Err(format!("a string is required, not a {}", type_name(other))),
    }
}

/// Parses a number the way Terraform converts a string to a number.
pub fn parse_number(s: &str) -> Option<Value> {
    if s.is_empty() || s.trim() != s || s.starts_with('+') || s.contains(['_', 'x', 'X']) {
        return None;
    }
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::from(i));
    }
    let f: f64 = s.parse().ok()?;
    number(f).ok()
}

/// A value as a number (`tonumber`, arithmetic operands).
pub fn to_number(v: &Value) -> Result<Number, String> {
    match v {
        Value::Number(n) => Ok(*n),
        Value::String(s) => match parse_number(s) {
            Some(Value::Number(n)) => Ok(n),
            _ => Err(format!("cannot convert {s:?} to number: only strings containing a number are allowed")),
        },
        Value::Null => Err("a null value cannot be used as a number".into()),
        other => Err(format!("a number is required, not a {}", type_name(other))),
    }
}

/// A value as a whole number.
pub fn to_int(v: &Value) -> Result<i64, String> {
    let n = to_number(v)?;
    match n.as_i64() {
        Some(i) if !n.is_f64() => Ok(i),
        _ => {
            let f = f64_of(&n);
            if f.fract() == 0.0 && f.abs() < INT_LIMIT { Ok(f as i64) } else { Err(format!("{} is not a whole number", number_text(&n))) }
        }
    }
}

/// A value as a bool (`tobool`, conditions, logic operands).
pub fn to_bool(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        Value::String(s) => Err(format!("cannot convert {s:?} to bool; only the strings \"true\" or \"false\" are allowed")),
        Value::Null => Err("a null value cannot be used as a bool".into()),
        other => Err(format!("a bool is required, not a {}", type_name(other))),
    }
}

fn is_primitive(v: &Value) -> bool {
    matches!(v, Value::Bool(_) | Value::Number(_) | Value::String(_))
}

/// Converts values to one type the way Terraform unifies the results of a conditional or the
/// elements of a list: mixed primitives become strings (number and bool alone do not mix).
pub fn unify(values: Vec<Value>) -> Result<Vec<Value>, String> {
    let kinds: Vec<&'static str> = values.iter().filter(|v| !v.is_null()).map(type_name).collect();
    let mixed = kinds.windows(2).any(|w| w[0] != w[1]);
    if !mixed {
        return Ok(values);
    }
    if values.iter().all(|v| v.is_null() || is_primitive(v)) {
        if !kinds.contains(&"string") {
            return Err("the values have inconsistent types (number and bool)".into());
        }
        return values.into_iter().map(|v| if v.is_null() { Ok(v) } else { to_string(&v).map(Value::from) }).collect();
    }
    Ok(values)
}

/// The order Terraform gives the elements of a set: numbers numerically, strings lexically,
/// then everything else by its JSON text.
pub fn set_order(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => f64_of(x).partial_cmp(&f64_of(y)).unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => json_text(a).cmp(&json_text(b)),
    }
}

fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A set of `items`: unified, without duplicates and in Terraform's order.
pub fn to_set(items: Vec<Value>) -> Result<Vec<Value>, String> {
    let mut items = unify(items)?;
    items.sort_by(set_order);
    items.dedup();
    Ok(items)
}

/// Terraform's `==`: equal types and values, numbers by value.
pub fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => f64_of(x) == f64_of(y),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w))),
        _ => a == b,
    }
}

/// An object with its keys in Terraform's (lexical) order.
pub fn sorted(map: Map<String, Value>) -> Value {
    let mut entries: Vec<(String, Value)> = map.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Object(entries.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_results_are_integers_and_binary_noise_is_rounded() {
        assert_eq!(number(15.0), Ok(Value::from(15)));
        assert_eq!(decimal(0.1 + 0.2).map(|v| v.to_string()), Ok("0.3".to_string()));
        assert_eq!(parse_number("5"), Some(Value::from(5)));
        assert_eq!(parse_number(" 5"), None);
    }

    #[test]
    fn mixed_primitives_unify_to_strings() {
        assert_eq!(unify(vec![Value::from(1), Value::from("a")]), Ok(vec![Value::from("1"), Value::from("a")]));
        assert!(unify(vec![Value::from(1), Value::from(true)]).is_err());
        assert_eq!(to_set(vec![Value::from("b"), Value::from("a"), Value::from("b")]).map(|s| s.len()), Ok(2));
    }
}
