//! Numeric functions: abs, ceil, floor, log, max, min, parseint, pow, signum.

use hcl::Value;

use super::{Failure, Outcome, fixed, num_arg};
use crate::hcl::value::{number, to_number};

/// Calls a numeric function, or `None` when `name` is not one.
pub fn call(name: &str, args: &[Value]) -> Outcome {
    Some(match name {
        "abs" => unary(args, f64::abs, i64::abs),
        "ceil" => unary(args, f64::ceil, |i| i),
        "floor" => unary(args, f64::floor, |i| i),
        "signum" => fixed::<1>(args).and_then(|[x]| {
            let i = crate::hcl::value::to_int(x).map_err(|_| "value must be a whole number, between -9223372036854775808 and 9223372036854775807")?;
            Ok(Value::from(i.signum()))
        }),
        "log" => fixed::<2>(args).and_then(|[x, base]| finite(num_arg(x, "num")?.ln() / num_arg(base, "base")?.ln())),
        "pow" => fixed::<2>(args).and_then(|[x, p]| finite(num_arg(x, "num")?.powf(num_arg(p, "power")?))),
        "max" | "min" => extreme(name, args),
        "parseint" => fixed::<2>(args).and_then(|[s, base]| parseint(s, base)),
        _ => return None,
    })
}

fn finite(f: f64) -> Result<Value, Failure> {
    number(f).map_err(Failure::Error)
}

fn unary(args: &[Value], f: fn(f64) -> f64, int: fn(i64) -> i64) -> Result<Value, Failure> {
    let [x] = fixed::<1>(args)?;
    let n = to_number(x).map_err(|e| format!("invalid value for \"num\" parameter: {e}"))?;
    match n.as_i64() {
        // Whole numbers stay exact: a large integer must not go through f64.
        Some(i) if !n.is_f64() => Ok(Value::from(int(i))),
        _ => finite(f(crate::hcl::value::f64_of(&n))),
    }
}

fn extreme(name: &str, args: &[Value]) -> Result<Value, Failure> {
    if args.is_empty() {
        return Err("must pass at least one number".into());
    }
    let mut best: Option<(f64, Value)> = None;
    for a in args {
        let f = num_arg(a, "numbers")?;
        let better = match &best {
            None => true,
            Some((b, _)) => (name == "max" && f > *b) || (name == "min" && f < *b),
        };
        if better {
            best = Some((f, finite(f)?));
        }
    }
    Ok(best.map(|(_, v)| v).unwrap_or(Value::Null))
}

fn parseint(s: &Value, base: &Value) -> Result<Value, Failure> {
    let text = match s {
        Value::String(t) => t.clone(),
        _ => return Err("invalid value for \"number\" parameter: string required".into()),
    };
    let base = super::int_arg(base, "base")?;
    if !(2..=62).contains(&base) {
        return Err(format!("invalid value for \"base\" parameter: the base must be between 2 and 62 inclusive, got {base}").into());
    }
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    let bad = || Failure::Error(format!("cannot parse {text:?} as a base {base} integer"));
    if digits.is_empty() {
        return Err(bad());
    }
    let mut acc: i128 = 0;
    for c in digits.chars() {
        let d = match c {
            '0'..='9' => c as i64 - '0' as i64,
            'a'..='z' => c as i64 - 'a' as i64 + 10,
            'A'..='Z' if base <= 36 => c as i64 - 'A' as i64 + 10,
            'A'..='Z' => c as i64 - 'A' as i64 + 36,
            _ => return Err(bad()),
        };
        if d >= base {
            return Err(bad());
        }
        acc = acc.checked_mul(i128::from(base)).and_then(|a| a.checked_add(i128::from(d))).ok_or_else(bad)?;
    }
    let v = if neg { -acc } else { acc };
    i64::try_from(v).map(Value::from).or_else(|_| finite(v as f64))
}
