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
            // A number under %v is formatted as %g (1234567 is 1.234567e+06).
            Value::Number(n) => {
                let f = f64_of(n);
                signed(f < 0.0, general(f.abs(), s.precision), s)
            }
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
                'f' | 'F' => fixed_point(f.abs(), s.precision.unwrap_or(6)),
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

/// The decimal digits of `f` as Terraform holds the number (its shortest decimal form, since
/// Terraform keeps decimals exactly) and the position of the decimal point.
fn decimal_digits(f: f64) -> (Vec<u8>, i32) {
    let text = format!("{f:e}");
    let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect();
    (digits, exp.parse::<i32>().unwrap_or(0) + 1)
}

/// Rounds `digits` to `keep` digits, half to even (Go's decimal rounding); may carry into a new digit.
fn round_digits(mut digits: Vec<u8>, point: i32, keep: i32) -> (Vec<u8>, i32) {
    if keep < 0 {
        return (vec![0], point);
    }
    let keep = keep as usize;
    if digits.len() <= keep {
        digits.resize(keep, 0);
        return (digits, point);
    }
    let whole = digits.clone();
    let rest = digits.split_off(keep);
    let up = match rest[0] {
        d if d > 5 => true,
        5 if rest[1..].iter().any(|&d| d != 0) => true,
        // A decimal tie: Terraform holds the number as the nearest 512-bit binary float, which
        // lies above or below the tie unless the decimal is exact in binary (then half to even).
        5 => binary_above(&whole, point).unwrap_or_else(|| digits.last().is_some_and(|d| d % 2 == 1)),
        _ => false,
    };
    let mut point = point;
    if up {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, 1);
                if digits.len() > keep.max(1) {
                    digits.pop();
                }
                point += 1;
                break;
            }
            i -= 1;
            if digits[i] == 9 {
                digits[i] = 0;
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    (digits, point)
}

/// Whether the nearest 512-bit binary float (round half to even, as Terraform parses numbers)
/// to the decimal `0.digits × 10^point` is above it; `None` when the decimal is exact in binary.
fn binary_above(digits: &[u8], point: i32) -> Option<bool> {
    use num_bigint::BigUint;
    const PRECISION: u64 = 512;
    let scale = i32::try_from(digits.len()).ok()? - point;
    if scale <= 0 {
        return None;
    }
    let n = digits.iter().fold(BigUint::from(0u32), |acc, &d| acc * 10u32 + u32::from(d));
    let d = BigUint::from(10u32).pow(u32::try_from(scale).ok()?);
    let mut shift = (PRECISION + d.bits()).saturating_sub(n.bits());
    let (q, r) = loop {
        let shifted = &n << shift;
        let q = &shifted / &d;
        match q.bits() {
            b if b > PRECISION => shift = shift.checked_sub(1)?,
            b if b < PRECISION => shift += 1,
            _ => break (q, shifted % &d),
        }
    };
    if r == BigUint::from(0u32) {
        return None;
    }
    let twice = &r << 1u32;
    Some(twice > d || (twice == d && q.bit(0)))
}

/// `%f` with `precision` decimals, rounded from the decimal form.
fn fixed_point(f: f64, precision: usize) -> String {
    if f == 0.0 {
        return format!("{:.precision$}", 0.0);
    }
    let (digits, point) = decimal_digits(f);
    let (digits, point) = round_digits(digits, point, point + precision as i32);
    let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    let (int, frac) = if point <= 0 {
        ("0".to_string(), format!("{}{text}", "0".repeat((-point) as usize)))
    } else {
        let p = (point as usize).min(text.len());
        (text[..p].to_string(), text[p..].to_string())
    };
    let frac: String = frac.chars().chain(std::iter::repeat('0')).take(precision).collect();
    if precision == 0 { int } else { format!("{int}.{frac}") }
}

/// Go's `%e`: `d.dddddde±dd`, rounded from the decimal form.
fn exp(f: f64, precision: usize) -> String {
    if f == 0.0 {
        return go_exponent(&format!("{:.precision$e}", 0.0));
    }
    let (digits, point) = decimal_digits(f);
    let (digits, point) = round_digits(digits, point, precision as i32 + 1);
    let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    let mantissa = if precision == 0 { text[..1].to_string() } else { format!("{}.{}", &text[..1], &text[1..]) };
    go_exponent(&format!("{mantissa}e{}", point - 1))
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
