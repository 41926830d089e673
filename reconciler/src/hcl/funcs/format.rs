//! `format` and `formatlist`: Go's fmt verbs as Terraform offers them (%v %#v %t %s %q %d %b %o %x %X %e %E %f %g %G %%).

use hcl::Value;

use super::{Failure, str_arg};
use crate::hcl::value::{f64_of, to_bool, to_number, to_string, type_name};

/// One verb with its flags.
#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

/// `format(spec, values...)`.
pub fn format(args: &[Value]) -> Result<Value, Failure> {
    let (spec, values) = args.split_first().ok_or("not enough arguments: a format string is required")?;
    format_one(&str_arg(spec, "format")?, values).map(Value::from)
}

/// `formatlist(spec, values...)`: lists are iterated in step, other values repeat.
pub fn formatlist(args: &[Value]) -> Result<Value, Failure> {
    let (spec, values) = args.split_first().ok_or("not enough arguments: a format string is required")?;
    let spec = str_arg(spec, "format")?;
    let mut len: Option<usize> = None;
    for (i, v) in values.iter().enumerate() {
        if let Value::Array(items) = v {
            match len {
                Some(n) if n != items.len() => {
                    return Err(format!("argument {} has length {}, which is inconsistent with argument 1 of length {n}", i + 1, items.len()).into());
                }
                _ => len = Some(items.len()),
            }
        }
    }
    let n = len.unwrap_or(1);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let row: Vec<Value> = values.iter().map(|v| if let Value::Array(items) = v { items[i].clone() } else { v.clone() }).collect();
        out.push(Value::from(format_one(&spec, &row).map_err(|e| Failure::Error(format!("error on format iteration {i}: {e}")))?));
    }
    Ok(Value::Array(out))
}

fn format_one(spec: &str, values: &[Value]) -> Result<String, Failure> {
    let mut out = String::new();
    let chars: Vec<char> = spec.chars().collect();
    let mut i = 0;
    let mut next_arg = 0;
    let mut used = vec![false; values.len()];
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut s = Spec::default();
        while i < chars.len() {
            match chars[i] {
                '-' => s.minus = true,
                '+' => s.plus = true,
                ' ' => s.space = true,
                '0' => s.zero = true,
                '#' => s.sharp = true,
                _ => break,
            }
            i += 1;
        }
        if chars.get(i) == Some(&'[') {
            let close = chars[i..].iter().position(|&c| c == ']').ok_or("unterminated explicit argument index")?;
            let n: usize = chars[i + 1..i + close].iter().collect::<String>().parse().map_err(|_| "invalid explicit argument index")?;
            if n == 0 {
                return Err("invalid explicit argument index 0: indices start at 1".into());
            }
            next_arg = n - 1;
            i += close + 1;
        }
        let mut digits = String::new();
        while i < chars.len() && chars[i].is_ascii_digit() {
            digits.push(chars[i]);
            i += 1;
        }
        s.width = digits.parse().ok();
        if chars.get(i) == Some(&'.') {
            i += 1;
            let mut p = String::new();
            while i < chars.len() && chars[i].is_ascii_digit() {
                p.push(chars[i]);
                i += 1;
            }
            s.precision = Some(p.parse().unwrap_or(0));
        }
        let verb = *chars.get(i).ok_or("the format string ends in the middle of a verb")?;
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = values.get(next_arg).ok_or_else(|| Failure::Error(format!("not enough arguments for %{verb} at offset {}", i - 1)))?;
        used[next_arg] = true;
        next_arg += 1;
        let text = verb_text(verb, &s, arg)?;
        pad(&mut out, &text, &s, matches!(verb, 'd' | 'b' | 'o' | 'x' | 'X' | 'e' | 'E' | 'f' | 'F' | 'g' | 'G'));
    }
    if let Some(n) = used.iter().position(|u| !u) {
        return Err(format!("too many arguments; only {n} used by format string").into());
    }
    Ok(out)
}

fn pad(out: &mut String, text: &str, s: &Spec, numeric: bool) {
    let w = s.width.unwrap_or(0);
    let n = text.chars().count();
    if n >= w {
        out.push_str(text);
    } else if s.minus {
        out.push_str(text);
        out.extend(std::iter::repeat_n(' ', w - n));
    } else if s.zero && numeric {
        let (sign, rest) = match text.chars().next() {
            Some(c @ ('-' | '+' | ' ')) => (Some(c), &text[1..]),
            _ => (None, text),
        };
        out.extend(sign);
        out.extend(std::iter::repeat_n('0', w - n));
        out.push_str(rest);
    } else {
        out.extend(std::iter::repeat_n(' ', w - n));
        out.push_str(text);
    }
}

fn json(v: &Value) -> Result<String, Failure> {
    super::encoding::json_encode(v).map_err(Failure::Error)
}

fn verb_text(verb: char, s: &Spec, arg: &Value) -> Result<String, Failure> {
    let bad = |what: &str| Failure::Error(format!("unsupported value for \"%{verb}\": {what}"));
    Ok(match verb {
        'v' if s.sharp => json(arg)?,
        'v' => match arg {
            Value::Array(_) | Value::Object(_) | Value::Null => json(arg)?,
            other => to_string(other).map_err(|e| bad(&e))?,
        },
        't' => to_bool(arg).map_err(|e| bad(&e))?.to_string(),
        's' => {
            let text = match arg {
                Value::Null => return Err(bad("null value cannot be formatted")),
                other => to_string(other).map_err(|_| bad(&format!("string required, not {}", type_name(other))))?,
            };
            match s.precision {
                Some(p) => text.chars().take(p).collect(),
                None => text,
            }
        }
        'q' => serde_json::to_string(&to_string(arg).map_err(|e| bad(&e))?).map_err(|e| bad(&e.to_string()))?,
        'd' | 'b' | 'o' | 'x' | 'X' => {
            let n = to_number(arg).map_err(|e| bad(&e))?;
            let f = f64_of(&n);
            if f.fract() != 0.0 {
                return Err(bad("an integer is required"));
            }
            let i = n.as_i64().unwrap_or(f as i64);
            let mag = i.unsigned_abs();
            let mut body = match verb {
                'd' => mag.to_string(),
                'b' => format!("{mag:b}"),
                'o' => format!("{mag:o}"),
                'x' => format!("{mag:x}"),
                _ => format!("{mag:X}"),
            };
            if let Some(p) = s.precision {
                while body.len() < p {
                    body.insert(0, '0');
                }
            }
            if s.sharp {
                body = match verb {
                    'o' => format!("0{body}"),
                    'x' => format!("0x{body}"),
                    'X' => format!("0X{body}"),
                    'b' => format!("0b{body}"),
                    _ => body,
                };
            }
            signed(i < 0, body, s)
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
            let f = f64_of(&to_number(arg).map_err(|e| bad(&e))?);
            let body = match verb {
                'e' | 'E' => exp(f.abs(), s.precision.unwrap_or(6)),
                'f' | 'F' => format!("{:.*}", s.precision.unwrap_or(6), f.abs()),
                _ => general(f.abs(), s.precision),
            };
            let body = if verb.is_ascii_uppercase() { body.to_uppercase() } else { body };
            signed(f < 0.0, body, s)
        }
        other => return Err(Failure::Error(format!("unrecognized format verb {other:?}"))),
    })
}

fn signed(negative: bool, body: String, s: &Spec) -> String {
    if negative {
        format!("-{body}")
    } else if s.plus {
        format!("+{body}")
    } else if s.space {
        format!(" {body}")
    } else {
        body
    }
}

/// Go's `%e`: `d.dddddde±dd`.
fn exp(f: f64, precision: usize) -> String {
    go_exponent(&format!("{f:.precision$e}"))
}

fn go_exponent(rust: &str) -> String {
    match rust.split_once('e') {
        Some((mantissa, e)) => {
            let e: i32 = e.parse().unwrap_or(0);
            format!("{mantissa}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
        }
        None => rust.to_string(),
    }
}

/// Go's `%g`: the shortest representation, in exponent form for large and small exponents.
fn general(f: f64, precision: Option<usize>) -> String {
    let shortest = match precision {
        Some(p) => format!("{:.*e}", p.max(1) - 1, f),
        None => format!("{f:e}"),
    };
    let (mantissa, e) = shortest.split_once('e').unwrap_or((&shortest, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    let digits = mantissa.replace('.', "");
    let digits = digits.trim_end_matches('0');
    let eprec = match precision {
        None => 6,
        Some(p) => {
            let p = p.max(1) as i32;
            if p > digits.len() as i32 && digits.len() as i32 > e { digits.len() as i32 } else { p }
        }
    };
    if e < -4 || e >= eprec {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else if digits.is_empty() {
            "0".to_string()
        } else {
            digits.to_string()
        };
        return go_exponent(&format!("{m}e{e}"));
    }
    match precision {
        Some(_) => trim_to_digits(f, digits.len(), e),
        None => format!("{f}"),
    }
}

fn trim_to_digits(f: f64, digits: usize, e: i32) -> String {
    let decimals = (digits as i32 - 1 - e).max(0) as usize;
    format!("{f:.decimals$}")
}
