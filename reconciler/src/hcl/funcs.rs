//! The Terraform functions the evaluator knows (`lower`, `format`, `cidrsubnet`, ...); `try` lives in the resolver.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::{Map, Number, Value};

/// A context declaring every supported function and no variables: the resolver substitutes
/// values for references before evaluation, so one context serves every expression.
pub fn function_context() -> Context<'static> {
    let mut ctx = Context::new();
    let fixed = |n: usize, f: hcl::eval::Func| FuncDef::new(f, vec![ParamType::Any; n]);
    let variadic = |f: hcl::eval::Func| FuncDef::builder().variadic_param(ParamType::Any).build(f);
    ctx.declare_func("lower", fixed(1, |a| Ok(Value::from(string(&a[0])?.to_lowercase()))));
    ctx.declare_func("upper", fixed(1, |a| Ok(Value::from(string(&a[0])?.to_uppercase()))));
    ctx.declare_func("trimspace", fixed(1, |a| Ok(Value::from(string(&a[0])?.trim().to_string()))));
    ctx.declare_func("replace", fixed(3, |a| Ok(Value::from(string(&a[0])?.replace(&string(&a[1])?, &string(&a[2])?)))));
    ctx.declare_func("format", variadic(format));
    ctx.declare_func("join", fixed(2, join));
    ctx.declare_func(
        "split",
        fixed(2, |a| {
            let (sep, text) = (string(&a[0])?, string(&a[1])?);
            Ok(Value::Array(text.split(sep.as_str()).map(Value::from).collect()))
        }),
    );
    ctx.declare_func(
        "concat",
        variadic(|a| {
            let mut out = Vec::new();
            for list in a.iter() {
                out.extend(array(list)?.iter().cloned());
            }
            Ok(Value::Array(out))
        }),
    );
    ctx.declare_func(
        "merge",
        variadic(|a| {
            let mut out = Map::new();
            for obj in a.iter().filter(|v| !v.is_null()) {
                out.extend(object(obj)?.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            Ok(Value::Object(out))
        }),
    );
    ctx.declare_func(
        "lookup",
        FuncDef::builder().params([ParamType::Any, ParamType::Any]).variadic_param(ParamType::Any).build(|a| {
            let key = string(&a[1])?;
            match object(&a[0])?.get(&key) {
                Some(v) => Ok(v.clone()),
                None => a.get(2).cloned().ok_or_else(|| format!("lookup: no key {key:?} and no default")),
            }
        }),
    );
    ctx.declare_func(
        "length",
        fixed(1, |a| {
            let n = match &a[0] {
                Value::Array(v) => v.len(),
                Value::Object(m) => m.len(),
                Value::String(s) => s.chars().count(),
                other => return Err(format!("length: cannot take the length of {other}")),
            };
            Ok(Value::from(n as u64))
        }),
    );
    ctx.declare_func("keys", fixed(1, |a| Ok(Value::Array(object(&a[0])?.keys().map(|k| Value::from(k.clone())).collect()))));
    ctx.declare_func("values", fixed(1, |a| Ok(Value::Array(object(&a[0])?.values().cloned().collect()))));
    ctx.declare_func(
        "element",
        fixed(2, |a| {
            let list = array(&a[0])?;
            let i = int(&a[1])?;
            if list.is_empty() {
                return Err("element: the list is empty".into());
            }
            let idx = usize::try_from(i.rem_euclid(list.len() as i64)).map_err(|e| e.to_string())?;
            Ok(list[idx].clone())
        }),
    );
    ctx.declare_func("contains", fixed(2, |a| Ok(Value::Bool(array(&a[0])?.contains(&a[1])))));
    ctx.declare_func("range", variadic(range));
    ctx.declare_func(
        "tostring",
        fixed(1, |a| match &a[0] {
            Value::Null => Ok(Value::Null),
            Value::Array(_) | Value::Object(_) => Err("tostring: only primitive values convert to a string".into()),
            v => Ok(Value::from(string(v)?)),
        }),
    );
    ctx.declare_func(
        "tonumber",
        fixed(1, |a| match &a[0] {
            Value::Null => Ok(Value::Null),
            Value::Number(n) => Ok(Value::Number(*n)),
            Value::String(s) => parse_number(s).ok_or_else(|| format!("tonumber: {s:?} is not a number")),
            other => Err(format!("tonumber: cannot convert {other}")),
        }),
    );
    ctx.declare_func("tolist", fixed(1, |a| Ok(Value::Array(array(&a[0])?.clone()))));
    ctx.declare_func(
        "toset",
        fixed(1, |a| {
            let mut out: Vec<Value> = Vec::new();
            for v in array(&a[0])? {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(Value::Array(out))
        }),
    );
    ctx.declare_func("tomap", fixed(1, |a| Ok(Value::Object(object(&a[0])?.clone()))));
    ctx.declare_func("jsonencode", fixed(1, |a| serde_json::to_string(&a[0]).map(Value::from).map_err(|e| e.to_string())));
    ctx.declare_func(
        "coalesce",
        variadic(|a| a.iter().find(|v| !v.is_null() && v.as_str() != Some("")).cloned().ok_or_else(|| "coalesce: every argument is null or empty".to_string())),
    );
    ctx.declare_func(
        "cidrhost",
        fixed(2, |a| {
            let (net, bits) = parse_prefix(&string(&a[0])?)?;
            let host = int(&a[1])?;
            let size = host_space(net, bits);
            let n = if host < 0 { size.checked_sub(host.unsigned_abs().into()) } else { Some(u128::from(host.unsigned_abs())) };
            match n.filter(|n| *n < size) {
                Some(n) => Ok(Value::from(offset(net, n).to_string())),
                None => Err(format!("cidrhost: host number {host} is outside the prefix")),
            }
        }),
    );
    ctx.declare_func(
        "cidrsubnet",
        fixed(3, |a| {
            let (net, bits) = parse_prefix(&string(&a[0])?)?;
            let newbits = u32::try_from(int(&a[1])?).map_err(|_| "cidrsubnet: newbits must not be negative".to_string())?;
            let netnum = u128::try_from(int(&a[2])?).map_err(|_| "cidrsubnet: netnum must not be negative".to_string())?;
            let width = if net.is_ipv4() { 32 } else { 128 };
            let new_prefix = bits + newbits;
            if new_prefix > width || (newbits < 128 && netnum >= 1u128 << newbits) {
                return Err(format!("cidrsubnet: cannot make subnet {netnum} with {newbits} more bits"));
            }
            let shift = width - new_prefix;
            let step = if shift >= 128 { 0 } else { netnum << shift };
            Ok(Value::from(format!("{}/{new_prefix}", offset(net, step))))
        }),
    );
    ctx
}

fn string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("expected a string, got {other}")),
    }
}

fn int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("expected a whole number, got {v}"))
}

fn array(v: &Value) -> Result<&Vec<Value>, String> {
    v.as_array().ok_or_else(|| format!("expected a list, got {v}"))
}

fn object(v: &Value) -> Result<&Map<String, Value>, String> {
    v.as_object().ok_or_else(|| format!("expected an object, got {v}"))
}

/// A number from text: an integer when it has no fraction.
pub fn parse_number(s: &str) -> Option<Value> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::from(i));
    }
    s.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number)
}

fn join(a: FuncArgs) -> Result<Value, String> {
    let sep = string(&a[0])?;
    let parts: Result<Vec<String>, String> = array(&a[1])?.iter().map(string).collect();
    Ok(Value::from(parts?.join(&sep)))
}

fn range(a: FuncArgs) -> Result<Value, String> {
    let nums: Result<Vec<i64>, String> = a.iter().map(int).collect();
    let (start, end, step) = match nums?.as_slice() {
        [end] => (0, *end, 1),
        [start, end] => (*start, *end, if start <= end { 1 } else { -1 }),
        [start, end, step] if *step != 0 => (*start, *end, *step),
        _ => return Err("range: takes 1 to 3 numbers, with a non-zero step".into()),
    };
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < end) || (step < 0 && i > end) {
        out.push(Value::from(i));
        i += step;
        if out.len() > 1_000_000 {
            return Err("range: more than 1,000,000 elements".into());
        }
    }
    Ok(Value::Array(out))
}

/// `format` with the verbs Terraform configurations use: `%s %d %v %q %f %%`, width, `0` and precision.
fn format(a: FuncArgs) -> Result<Value, String> {
    let spec = string(a.first().ok_or("format: needs a format string")?)?;
    let mut args = a.iter().skip(1);
    let mut out = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = chars.peek() {
            if f.is_ascii_digit() || f == '.' || f == '-' {
                flags.push(f);
                chars.next();
            } else {
                break;
            }
        }
        let verb = chars.next().ok_or("format: the string ends inside a verb")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args.next().ok_or_else(|| format!("format: not enough arguments for %{verb}"))?;
        let (width, precision) = match flags.split_once('.') {
            Some((w, p)) => (w.to_string(), p.parse::<usize>().ok()),
            None => (flags.clone(), None),
        };
        let text = match verb {
            's' | 'v' => string(arg).or_else(|_| serde_json::to_string(arg).map_err(|e| e.to_string()))?,
            'd' => int(arg)?.to_string(),
            'q' => serde_json::to_string(&string(arg)?).map_err(|e| e.to_string())?,
            'f' => {
                let f = match arg {
                    Value::Number(n) => n.as_f64().unwrap_or(0.0),
                    other => string(other)?.parse::<f64>().map_err(|e| e.to_string())?,
                };
                format!("{f:.*}", precision.unwrap_or(6))
            }
            other => return Err(format!("format: unsupported verb %{other}")),
        };
        let left = width.starts_with('-');
        let zero = width.trim_start_matches('-').starts_with('0');
        let w: usize = width.trim_start_matches('-').parse().unwrap_or(0);
        let pad = w.saturating_sub(text.chars().count());
        if left {
            out.push_str(&text);
            out.push_str(&" ".repeat(pad));
        } else {
            out.push_str(&(if zero { "0" } else { " " }).repeat(pad));
            out.push_str(&text);
        }
    }
    Ok(Value::from(out))
}

fn parse_prefix(text: &str) -> Result<(IpAddr, u32), String> {
    let (ip, bits) = text.split_once('/').ok_or_else(|| format!("{text:?} is not a CIDR prefix"))?;
    let ip: IpAddr = ip.parse().map_err(|_| format!("{text:?} is not a CIDR prefix"))?;
    let bits: u32 = bits.parse().map_err(|_| format!("{text:?} is not a CIDR prefix"))?;
    let width = if ip.is_ipv4() { 32 } else { 128 };
    if bits > width {
        return Err(format!("{text:?}: prefix length above {width}"));
    }
    let host_bits = width - bits;
    let raw = to_u128(ip);
    let mask = if host_bits >= 128 { 0 } else { !((1u128 << host_bits) - 1) };
    Ok((from_u128(raw & mask, ip.is_ipv4()), bits))
}

fn host_space(net: IpAddr, bits: u32) -> u128 {
    let host_bits = if net.is_ipv4() { 32 } else { 128 } - bits;
    if host_bits >= 128 { u128::MAX } else { 1u128 << host_bits }
}

fn offset(net: IpAddr, n: u128) -> IpAddr {
    from_u128(to_u128(net).wrapping_add(n), net.is_ipv4())
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 { IpAddr::V4(Ipv4Addr::from((n & 0xffff_ffff) as u32)) } else { IpAddr::V6(Ipv6Addr::from(n)) }
}

#[cfg(test)]
mod tests {
    use hcl::eval::Evaluate;

    use super::*;

    fn eval(src: &str) -> Value {
        let body = hcl::parse(&format!("x = {src}")).expect("parses");
        let attr = body.attributes().next().expect("attribute");
        attr.expr.evaluate(&function_context()).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    #[test]
    fn string_functions() {
        assert_eq!(eval(r#"upper("web")"#), Value::from("WEB"));
        assert_eq!(eval(r#"format("%s-%03d", "web", 7)"#), Value::from("web-007"));
        assert_eq!(eval(r#"join(",", split("-", "a-b-c"))"#), Value::from("a,b,c"));
        assert_eq!(eval(r#"jsonencode({a = 1})"#), Value::from(r#"{"a":1}"#));
        assert_eq!(eval(r#"tostring(5)"#), Value::from("5"));
        assert_eq!(eval(r#"tonumber("5")"#), Value::from(5));
        assert_eq!(eval(r#"coalesce("", "x")"#), Value::from("x"));
    }

    #[test]
    fn collection_functions() {
        assert_eq!(eval(r#"length(concat([1], [2, 3]))"#), Value::from(3u64));
        assert_eq!(eval(r#"lookup(merge({a = 1}, {b = 2}), "b", 0)"#), Value::from(2));
        assert_eq!(eval(r#"lookup({a = 1}, "z", 9)"#), Value::from(9));
        assert_eq!(eval(r#"range(3)"#), Value::Array(vec![Value::from(0), Value::from(1), Value::from(2)]));
    }

    #[test]
    fn cidr_functions() {
        assert_eq!(eval(r#"cidrhost("10.0.0.0/24", 5)"#), Value::from("10.0.0.5"));
        assert_eq!(eval(r#"cidrhost("10.0.0.0/24", -2)"#), Value::from("10.0.0.254"));
        assert_eq!(eval(r#"cidrsubnet("10.0.0.0/16", 8, 3)"#), Value::from("10.0.3.0/24"));
        assert_eq!(eval(r#"cidrsubnet("fd00::/48", 16, 1)"#), Value::from("fd00:0:0:1::/64"));
    }
}
