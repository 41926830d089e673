//! Terraform's built-in functions, one module per category of Terraform's function reference.

mod collection;
mod conversion;
mod datetime;
mod encoding;
mod filesystem;
mod format;
mod hash;
mod ip;
mod numeric;
mod string;
mod yaml;

use std::fmt;

use hcl::Value;

pub use filesystem::FileAccess;

use super::expr::EvalError;
pub use super::value::parse_number;

/// Functions whose result differs from run to run: an attribute using one is unknown.
pub const NONDETERMINISTIC: [&str; 4] = ["timestamp", "plantimestamp", "uuid", "bcrypt"];

/// Deterministic functions the reconciler leaves unknown, with the reason.
const NOT_EVALUATED: [(&str, &str); 4] = [
    ("base64gzip", "its compressed bytes depend on Terraform's own gzip implementation, so the reconciler cannot reproduce them exactly"),
    ("rsadecrypt", "the reconciler does not decrypt RSA ciphertext"),
    ("ephemeralasnull", "ephemeral values are not part of the desired state"),
    ("textencodebase64", "only the UTF-8 encoding is evaluated"),
];

/// Every built-in function of Terraform's function reference (plus `type`, which exists only
/// in `terraform console`). `list` and `map` were removed from the language and always fail.
pub const TERRAFORM_FUNCTIONS: [&str; 121] = [
    "abs",
    "ceil",
    "floor",
    "log",
    "max",
    "min",
    "parseint",
    "pow",
    "signum", // numeric
    "chomp",
    "endswith",
    "format",
    "formatlist",
    "indent",
    "join",
    "lower",
    "regex",
    "regexall",
    "replace",
    "split",
    "startswith",
    "strcontains",
    "strrev",
    "substr",
    "templatestring",
    "title",
    "trim",
    "trimprefix",
    "trimsuffix",
    "trimspace",
    "upper", // string
    "alltrue",
    "anytrue",
    "chunklist",
    "coalesce",
    "coalescelist",
    "compact",
    "concat",
    "contains",
    "distinct",
    "element",
    "flatten",
    "index",
    "keys",
    "length",
    "list",
    "lookup",
    "map",
    "matchkeys",
    "merge",
    "one",
    "range",
    "reverse",
    "setintersection",
    "setproduct",
    "setsubtract",
    "setunion",
    "slice",
    "sort",
    "sum",
    "transpose",
    "values",
    "zipmap", // collection
    "base64decode",
    "base64encode",
    "base64gzip",
    "csvdecode",
    "jsondecode",
    "jsonencode",
    "textdecodebase64",
    "textencodebase64",
    "urlencode",
    "yamldecode",
    "yamlencode", // encoding
    "abspath",
    "dirname",
    "pathexpand",
    "basename",
    "file",
    "fileexists",
    "fileset",
    "filebase64",
    "templatefile", // filesystem
    "formatdate",
    "plantimestamp",
    "timeadd",
    "timecmp",
    "timestamp", // date and time
    "base64sha256",
    "base64sha512",
    "bcrypt",
    "filebase64sha256",
    "filebase64sha512",
    "filemd5",
    "filesha1",
    "filesha256",
    "filesha512",
    "md5",
    "rsadecrypt",
    "sha1",
    "sha256",
    "sha512",
    "uuid",
    "uuidv5", // hash and crypto
    "cidrhost",
    "cidrnetmask",
    "cidrsubnet",
    "cidrsubnets", // IP network
    "can",
    "ephemeralasnull",
    "issensitive",
    "nonsensitive",
    "sensitive",
    "tobool",
    "tolist",
    "tomap",
    "tonumber",
    "toset",
    "tostring",
    "try",
    "type", // type conversion
];

/// Calls the built-in `name` with evaluated arguments.
pub fn call(name: &str, args: Vec<Value>, files: FileAccess<'_>) -> Result<Value, EvalError> {
    if NONDETERMINISTIC.contains(&name) {
        return Err(EvalError::Unknown(format!("{name}() is nondeterministic: its value is only known when Terraform applies")));
    }
    if let Some((_, why)) = NOT_EVALUATED.iter().find(|(n, _)| *n == name)
        && !(name == "textencodebase64" && args.get(1).and_then(Value::as_str).is_some_and(|e| e.eq_ignore_ascii_case("utf-8")))
    {
        return Err(EvalError::Unknown(format!("{name}() is not evaluated: {why}")));
    }
    let result = numeric::call(name, &args)
        .or_else(|| string::call(name, &args))
        .or_else(|| collection::call(name, &args))
        .or_else(|| encoding::call(name, &args))
        .or_else(|| filesystem::call(name, &args, files))
        .or_else(|| datetime::call(name, &args))
        .or_else(|| hash::call(name, &args, files))
        .or_else(|| ip::call(name, &args))
        .or_else(|| conversion::call(name, &args));
    match result {
        Some(Ok(v)) => Ok(v),
        Some(Err(Failure::Unknown(why))) => Err(EvalError::Unknown(format!("{name}(): {why}"))),
        Some(Err(Failure::Error(message))) => Err(EvalError::Call { function: name.to_string(), message }),
        None => Err(EvalError::Call { function: name.to_string(), message: "call to unknown function: there is no function with this name".into() }),
    }
}

/// Why a function gave no value.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Terraform would fail too: the arguments are wrong.
    Error(String),
    /// Terraform would succeed, but the value cannot be known here.
    Unknown(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Error(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Failure {
        Failure::Error(s.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error(s) | Failure::Unknown(s) => f.write_str(s),
        }
    }
}

/// What one function returns.
pub type Outcome = Option<Result<Value, Failure>>;

/// The arguments as exactly `N` values, or Terraform's complaint about their number.
pub fn fixed<const N: usize>(args: &[Value]) -> Result<&[Value; N], Failure> {
    args.try_into().map_err(|_| {
        let what = if args.len() < N { "not enough arguments" } else { "too many arguments" };
        Failure::Error(format!("{what}: the function takes {N} argument{}, got {}", if N == 1 { "" } else { "s" }, args.len()))
    })
}

/// A string argument (numbers and bools convert, as in Terraform).
pub fn str_arg(v: &Value, what: &str) -> Result<String, Failure> {
    match v {
        Value::Null => Err(Failure::Error(format!("invalid value for \"{what}\" parameter: argument must not be null"))),
        other => super::value::to_string(other).map_err(|e| Failure::Error(format!("invalid value for \"{what}\" parameter: {e}"))),
    }
}

/// A list (tuple or set) argument.
pub fn list_arg<'v>(v: &'v Value, what: &str) -> Result<&'v Vec<Value>, Failure> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Null => Err(Failure::Error(format!("invalid value for \"{what}\" parameter: argument must not be null"))),
        other => {
            Err(Failure::Error(format!("invalid value for \"{what}\" parameter: list of any single type required, not {}", super::value::type_name(other))))
        }
    }
}

/// A map (object) argument.
pub fn map_arg<'v>(v: &'v Value, what: &str) -> Result<&'v hcl::Map<String, Value>, Failure> {
    match v {
        Value::Object(m) => Ok(m),
        Value::Null => Err(Failure::Error(format!("invalid value for \"{what}\" parameter: argument must not be null"))),
        other => {
            Err(Failure::Error(format!("invalid value for \"{what}\" parameter: map of any single type required, not {}", super::value::type_name(other))))
        }
    }
}

/// A number argument as f64.
pub fn num_arg(v: &Value, what: &str) -> Result<f64, Failure> {
    super::value::to_number(v).map(|n| super::value::f64_of(&n)).map_err(|e| Failure::Error(format!("invalid value for \"{what}\" parameter: {e}")))
}

/// A whole-number argument.
pub fn int_arg(v: &Value, what: &str) -> Result<i64, Failure> {
    super::value::to_int(v).map_err(|e| Failure::Error(format!("invalid value for \"{what}\" parameter: {e}")))
}

/// Kept for the configuration level: an empty hcl-rs context (functions are evaluated by `expr.rs`).
pub fn function_context() -> hcl::eval::Context<'static> {
    hcl::eval::Context::new()
}

#[cfg(test)]
mod tests {
    use hcl::Value;

    use crate::hcl::{EvalError, evaluate_expression};
    use crate::source::MemoryTree;

    fn tree() -> MemoryTree {
        MemoryTree::new([("infra/user-data.sh", "#!/bin/sh\necho ${name}\n"), ("outside.txt", "x")])
    }

    fn eval(src: &str) -> Result<Value, EvalError> {
        evaluate_expression(src, &tree()).map(|e| e.value)
    }

    #[test]
    fn functions_of_each_category() {
        assert_eq!(eval(r#"format("%s-%03d", "web", 7)"#), Ok(Value::from("web-007")));
        assert_eq!(eval(r#"cidrsubnet("fd00::/48", 16, 1)"#), Ok(Value::from("fd00:0:0:1::/64")));
        assert_eq!(eval(r#"jsonencode({b = "<&>", a = 1})"#), Ok(Value::from(r#"{"a":1,"b":"\u003c\u0026\u003e"}"#)));
        assert_eq!(eval(r#"formatdate("YYYY-MM-DD", timeadd("2024-02-28T23:00:00Z", "25h"))"#), Ok(Value::from("2024-03-01")));
        assert_eq!(eval(r#"sha1("hello world")"#), Ok(Value::from("2aae6c35c94fcfb415dbe95f408b9ce91ee846ed")));
        assert_eq!(eval(r#"templatefile("infra/user-data.sh", {name = "web"})"#), Ok(Value::from("#!/bin/sh\necho web\n")));
        assert_eq!(eval("7.5 * 2"), Ok(Value::from(15)));
    }

    #[test]
    fn paths_escaping_the_repository_are_refused() {
        for path in ["../outside.txt", "infra/../../outside.txt", "/etc/passwd"] {
            let err = eval(&format!("file({path:?})")).expect_err("refused");
            assert!(matches!(&err, EvalError::Call { function, .. } if function == "file"), "{err:?}");
            assert!(err.to_string().contains("outside the repository") || err.to_string().contains("escapes the repository"), "{err}");
        }
    }

    #[test]
    fn nondeterministic_and_wrong_calls() {
        let err = eval("upper(timestamp())").expect_err("unknown");
        assert!(err.is_unknown() && err.to_string().contains("timestamp() is nondeterministic"), "{err}");
        let err = eval(r#"cidrhost("10.0.0.0/30", 9)"#).expect_err("bad host");
        assert_eq!(err.to_string(), "cidrhost(): prefix of 30 does not accommodate a host numbered 9");
        let err = eval(r#"upper("a", "b")"#).expect_err("two arguments");
        assert_eq!(err.to_string(), "upper(): too many arguments: the function takes 1 argument, got 2");
    }
}
