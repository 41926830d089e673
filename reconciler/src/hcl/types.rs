//! Terraform type constraints (`string`, `list(number)`, `object({a = optional(string, "x")})`, ...) and conversion of values to them.
//!
//! Note for the function helpers: `tolist`, `toset` and `tomap` can call [`convert`] with
//! [`TypeConstraint::List`] / `Set` / `Map` of [`TypeConstraint::Any`] to share the rules.
//! Messages never quote a value (a variable may be sensitive): they name paths and types.

use std::fmt;

use hcl::expr::FuncCall;
use hcl::{Expression, Map, ObjectKey, Value};

use super::resolve::{Instance, Refs};
use super::value;

/// A type constraint as a `variable` block's `type` gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeConstraint {
    /// `any`: the value as given.
    Any,
    /// `string`.
    String,
    /// `number`.
    Number,
    /// `bool`.
    Bool,
    /// `list(T)`.
    List(Box<TypeConstraint>),
    /// `set(T)`.
    Set(Box<TypeConstraint>),
    /// `map(T)`.
    Map(Box<TypeConstraint>),
    /// `object({...})`, attributes in declaration order.
    Object(Vec<ObjectAttribute>),
    /// `tuple([...])`.
    Tuple(Vec<TypeConstraint>),
}

/// One attribute of an `object({...})` type.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectAttribute {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: TypeConstraint,
    /// Declared with `optional(...)`: may be left out.
    pub optional: bool,
    /// The `optional(T, default)` default, used when the attribute is absent or null.
    pub default: Option<Value>,
}

impl fmt::Display for TypeConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeConstraint::Any => f.write_str("any"),
            TypeConstraint::String => f.write_str("string"),
            TypeConstraint::Number => f.write_str("number"),
            TypeConstraint::Bool => f.write_str("bool"),
            TypeConstraint::List(t) => write!(f, "list({t})"),
            TypeConstraint::Set(t) => write!(f, "set({t})"),
            TypeConstraint::Map(t) => write!(f, "map({t})"),
            TypeConstraint::Object(attrs) => {
                let inner: Vec<String> =
                    attrs.iter().map(|a| if a.optional { format!("{} = optional({})", a.name, a.ty) } else { format!("{} = {}", a.name, a.ty) }).collect();
                write!(f, "object({{{}}})", inner.join(", "))
            }
            TypeConstraint::Tuple(items) => write!(f, "tuple([{}])", items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
        }
    }
}

/// Reads a type constraint expression; the error says what is not a type.
pub fn parse_type(expr: &Expression) -> Result<TypeConstraint, String> {
    match expr {
        Expression::Variable(v) => primitive(v.as_str()),
        // Terraform 0.11 quoted types are still accepted.
        Expression::String(s) => match s.as_str() {
            "list" => Ok(TypeConstraint::List(Box::new(TypeConstraint::Any))),
            "map" => Ok(TypeConstraint::Map(Box::new(TypeConstraint::Any))),
            // The JSON syntax writes a type as a string holding its expression.
            other => match hcl::parse(&format!("t = {other}")).ok().and_then(|b| b.attributes().next().map(|a| a.expr.clone())) {
                Some(e @ (Expression::Variable(_) | Expression::FuncCall(_))) => parse_type(&e),
                _ => primitive(other),
            },
        },
        Expression::FuncCall(call) if call.name.namespace.is_empty() => constructor(call),
        _ => Err("a type is string, number, bool, any, list(T), set(T), map(T), object({...}) or tuple([...])".into()),
    }
}

fn primitive(name: &str) -> Result<TypeConstraint, String> {
    match name {
        "any" => Ok(TypeConstraint::Any),
        "string" => Ok(TypeConstraint::String),
        "number" => Ok(TypeConstraint::Number),
        "bool" => Ok(TypeConstraint::Bool),
        "list" | "set" | "map" => Err(format!("{name} needs an element type, e.g. {name}(string)")),
        other => Err(format!("{other:?} is not a type; use string, number, bool, any or a collection of them")),
    }
}

fn constructor(call: &FuncCall) -> Result<TypeConstraint, String> {
    let name = call.name.name.as_str();
    let one = || match call.args.as_slice() {
        [arg] => parse_type(arg).map(Box::new),
        _ => Err(format!("{name}(...) takes one element type")),
    };
    match name {
        "list" => Ok(TypeConstraint::List(one()?)),
        "set" => Ok(TypeConstraint::Set(one()?)),
        "map" => Ok(TypeConstraint::Map(one()?)),
        "tuple" => match call.args.as_slice() {
            [Expression::Array(items)] => Ok(TypeConstraint::Tuple(items.iter().map(parse_type).collect::<Result<_, _>>()?)),
            _ => Err("tuple(...) takes a list of types, e.g. tuple([string, number])".into()),
        },
        "object" => match call.args.as_slice() {
            [Expression::Object(attrs)] => attrs.iter().map(|(k, v)| object_attribute(k, v)).collect::<Result<_, _>>().map(TypeConstraint::Object),
            _ => Err("object(...) takes an object of attribute types, e.g. object({ name = string })".into()),
        },
        "optional" => Err("optional(...) is only allowed for an attribute of object({...})".into()),
        other => Err(format!("{other}(...) is not a type constructor")),
    }
}

fn object_attribute(key: &ObjectKey, value: &Expression) -> Result<ObjectAttribute, String> {
    let name = match key {
        ObjectKey::Identifier(i) => i.as_str().to_string(),
        ObjectKey::Expression(Expression::String(s)) => s.clone(),
        ObjectKey::Expression(Expression::Variable(v)) => v.as_str().to_string(),
        _ => return Err("object attribute names must be plain names".into()),
    };
    match value {
        Expression::FuncCall(call) if call.name.namespace.is_empty() && call.name.name.as_str() == "optional" => {
            let (ty, default) = match call.args.as_slice() {
                [ty] => (parse_type(ty)?, None),
                [ty, default] => {
                    let ty = parse_type(ty)?;
                    let value = Refs::default()
                        .eval(default, &Instance::default())
                        .map_err(|_| format!("the default of optional attribute {name:?} must be a constant"))?;
                    let value = convert(&value, &ty).map_err(|e| format!("the default of optional attribute {name:?}: {e}"))?;
                    (ty, Some(value))
                }
                _ => return Err(format!("optional(...) of attribute {name:?} takes a type and at most one default")),
            };
            Ok(ObjectAttribute { name, ty, optional: true, default })
        }
        other => Ok(ObjectAttribute { name, ty: parse_type(other)?, optional: false, default: None }),
    }
}

/// Why a value does not convert to a type: where in the value, and what was wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionError {
    /// Where: `""` for the whole value, else e.g. `["web"].size` or `[1]`.
    pub path: String,
    /// What is wrong, e.g. `a number is required, not a string`.
    pub message: String,
}

impl fmt::Display for ConversionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "at {}: {}", self.path, self.message) }
    }
}

fn fail<T>(path: &str, message: impl Into<String>) -> Result<T, ConversionError> {
    Err(ConversionError { path: path.to_string(), message: message.into() })
}

/// What kind of value this is, for messages (never the value itself).
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Converts `value` to `ty` the way Terraform converts a variable's value: strings to
/// numbers and bools where they parse, numbers and bools to strings, tuples to lists and
/// sets (sets deduplicated and ordered), objects to maps and objects (absent optional
/// attributes take their default or null, undeclared ones are dropped). Null stays null.
pub fn convert(value: &Value, ty: &TypeConstraint) -> Result<Value, ConversionError> {
    convert_at(value, ty, "")
}

fn convert_at(value: &Value, ty: &TypeConstraint, path: &str) -> Result<Value, ConversionError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    match (ty, value) {
        (TypeConstraint::Any, v) => Ok(v.clone()),
        (TypeConstraint::String, Value::String(_) | Value::Number(_) | Value::Bool(_)) => {
            value::to_string(value).map(Value::from).or_else(|_| fail(path, "a string is required"))
        }
        (TypeConstraint::Number, Value::Number(_)) => Ok(value.clone()),
        (TypeConstraint::Number, Value::String(s)) => match value::parse_number(s) {
            Some(n) => Ok(n),
            None => fail(path, "a number is required, and this string is not one"),
        },
        (TypeConstraint::Bool, Value::Bool(_)) => Ok(value.clone()),
        (TypeConstraint::Bool, Value::String(s)) if s == "true" || s == "false" => Ok(Value::Bool(s == "true")),
        (TypeConstraint::Bool, Value::String(_)) => fail(path, "a bool is required; a string converts only when it is \"true\" or \"false\""),
        (TypeConstraint::String | TypeConstraint::Number | TypeConstraint::Bool, v) => fail(path, format!("{} is required, not {}", article(ty), kind_of(v))),
        (TypeConstraint::List(item), Value::Array(items)) => {
            let out = items.iter().enumerate().map(|(i, v)| convert_at(v, item, &format!("{path}[{i}]"))).collect::<Result<Vec<_>, _>>()?;
            same_type(out, path).map(Value::Array)
        }
        // Sets are deduplicated and ordered as Terraform orders them (numbers numerically, strings lexically).
        (TypeConstraint::Set(item), Value::Array(items)) => {
            let out = items.iter().enumerate().map(|(i, v)| convert_at(v, item, &format!("{path}[{i}]"))).collect::<Result<Vec<_>, _>>()?;
            value::to_set(out).map(Value::Array).or_else(|e| fail(path, e))
        }
        (TypeConstraint::Map(item), Value::Object(m)) => {
            let out = m.iter().map(|(k, v)| Ok((k.clone(), convert_at(v, item, &format!("{path}[{}]", quote(k)))?))).collect::<Result<Vec<_>, _>>()?;
            let (keys, values): (Vec<String>, Vec<Value>) = out.into_iter().unzip();
            Ok(Value::Object(keys.into_iter().zip(same_type(values, path)?).collect()))
        }
        (TypeConstraint::Object(attrs), Value::Object(m)) => {
            let mut out = Map::new();
            for attr in attrs {
                let at = format!("{path}.{}", attr.name);
                match m.get(&attr.name).filter(|v| !v.is_null()) {
                    Some(v) => {
                        out.insert(attr.name.clone(), convert_at(v, &attr.ty, &at)?);
                    }
                    None if attr.optional => {
                        out.insert(attr.name.clone(), attr.default.clone().unwrap_or(Value::Null));
                    }
                    None if m.contains_key(&attr.name) => {
                        out.insert(attr.name.clone(), Value::Null);
                    }
                    None => return fail(path, format!("attribute {:?} is required", attr.name)),
                }
            }
            Ok(Value::Object(out))
        }
        (TypeConstraint::Tuple(types), Value::Array(items)) if types.len() == items.len() => {
            items.iter().zip(types).enumerate().map(|(i, (v, t))| convert_at(v, t, &format!("{path}[{i}]"))).collect::<Result<_, _>>().map(Value::Array)
        }
        (TypeConstraint::Tuple(types), Value::Array(items)) => fail(path, format!("a tuple of {} elements is required, not {}", types.len(), items.len())),
        (ty, v) => fail(path, format!("{} is required, not {}", article(ty), kind_of(v))),
    }
}

/// The elements of a list or map, of one type as Terraform requires (`list(any)` of a number
/// and a string is a list of strings).
fn same_type(values: Vec<Value>, path: &str) -> Result<Vec<Value>, ConversionError> {
    value::unify(values).or_else(|e| fail(path, format!("all elements must have the same type: {e}")))
}

fn article(ty: &TypeConstraint) -> String {
    match ty {
        TypeConstraint::Any => "any value".into(),
        TypeConstraint::String => "a string".into(),
        TypeConstraint::Number => "a number".into(),
        TypeConstraint::Bool => "a bool".into(),
        TypeConstraint::List(_) => "a list".into(),
        TypeConstraint::Set(_) => "a set".into(),
        TypeConstraint::Map(_) => "a map".into(),
        TypeConstraint::Object(_) => "an object".into(),
        TypeConstraint::Tuple(_) => "a tuple".into(),
    }
}

fn quote(key: &str) -> String {
    serde_json::Value::String(key.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(src: &str) -> TypeConstraint {
        let body = hcl::parse(&format!("t = {src}")).expect("parses");
        parse_type(&body.attributes().next().expect("attr").expr).expect("a type")
    }

    #[test]
    fn parses_and_prints_types() {
        assert_eq!(ty("string"), TypeConstraint::String);
        assert_eq!(ty("list(map(number))").to_string(), "list(map(number))");
        assert_eq!(ty("object({ name = string, size = optional(number, 10) })").to_string(), "object({name = string, size = optional(number)})");
        assert_eq!(ty("tuple([string, bool])").to_string(), "tuple([string, bool])");
        assert_eq!(ty("\"list\""), TypeConstraint::List(Box::new(TypeConstraint::Any)));
        let bad = hcl::parse("t = lisst(string)").expect("parses");
        assert!(parse_type(&bad.attributes().next().expect("attr").expr).expect_err("not a type").contains("lisst"));
    }

    #[test]
    fn converts_like_terraform() {
        assert_eq!(convert(&Value::from("4"), &ty("number")), Ok(Value::from(4)));
        assert_eq!(convert(&Value::from(4), &ty("string")), Ok(Value::from("4")));
        assert_eq!(convert(&Value::from("true"), &ty("bool")), Ok(Value::Bool(true)));
        assert_eq!(convert(&hcl::value!(["b", "a", "b"]), &ty("set(string)")), Ok(hcl::value!(["a", "b"])));
        assert_eq!(convert(&hcl::value!({ a = 1 }), &ty("map(string)")), Ok(hcl::value!({ a = "1" })));
        assert_eq!(convert(&hcl::value!([1, "a", true]), &ty("list(any)")), Ok(hcl::value!(["1", "a", "true"])));
        assert_eq!(convert(&hcl::value!([10, 9, 10]), &ty("set(number)")), Ok(hcl::value!([9, 10])));
        assert_eq!(convert(&Value::from(2.5), &ty("string")), Ok(Value::from("2.5")));
        let nested = ty("map(object({ size = number, disk = optional(object({ type = optional(string, \"ssd\"), gb = optional(number, 10) }), {}) }))");
        assert_eq!(
            convert(&hcl::value!({ a = { size = 1, extra = true }, b = { size = "2", disk = { gb = 40 } } }), &nested),
            Ok(hcl::value!({ a = { size = 1, disk = { type = "ssd", gb = 10 } }, b = { size = 2, disk = { type = "ssd", gb = 40 } } }))
        );
    }

    #[test]
    fn errors_name_the_path_and_never_the_value() {
        let err = convert(&hcl::value!({ web = { size = "hunter2" } }), &ty("map(object({ size = number }))")).expect_err("not a number");
        assert_eq!(err.to_string(), "at [\"web\"].size: a number is required, and this string is not one");
        let err = convert(&hcl::value!({ web = {} }), &ty("map(object({ size = number }))")).expect_err("missing");
        assert_eq!(err.to_string(), "at [\"web\"]: attribute \"size\" is required");
        assert_eq!(convert(&hcl::value!([1]), &ty("string")).expect_err("list").to_string(), "a string is required, not a list");
    }
}
