//! Encoding functions: base64, CSV, JSON (Terraform's key order and escapes), text in base64, URL query encoding.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hcl::{Map, Value};

use super::{Failure, Outcome, fixed, str_arg};
use crate::hcl::value::{normalize, number_text, sorted};

/// Calls an encoding function, or `None` when `name` is not one.
pub fn call(name: &str, args: &[Value]) -> Outcome {
    Some(match name {
        "base64encode" => fixed::<1>(args).and_then(|[s]| Ok(Value::from(STANDARD.encode(str_arg(s, "str")?)))),
        "base64decode" => fixed::<1>(args).and_then(|[s]| decode_base64(&str_arg(s, "str")?)),
        "textencodebase64" => fixed::<2>(args).and_then(|[s, _]| Ok(Value::from(STANDARD.encode(str_arg(s, "string")?)))),
        "textdecodebase64" => fixed::<2>(args).and_then(|[s, enc]| {
            let enc = str_arg(enc, "encoding")?;
            if !enc.eq_ignore_ascii_case("utf-8") {
                return Err(Failure::Unknown(format!("only the UTF-8 encoding is evaluated, not {enc:?}")));
            }
            decode_base64(&str_arg(s, "source")?)
        }),
        "jsonencode" => fixed::<1>(args).and_then(|[v]| json_encode(v).map(Value::from).map_err(Failure::Error)),
        "jsondecode" => fixed::<1>(args).and_then(|[s]| {
            let text = str_arg(s, "str")?;
            let parsed: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("invalid JSON: {e}"))?;
            Ok(from_json(&parsed))
        }),
        "urlencode" => fixed::<1>(args).and_then(|[s]| Ok(Value::from(urlencode(&str_arg(s, "str")?)))),
        "csvdecode" => fixed::<1>(args).and_then(|[s]| csvdecode(&str_arg(s, "str")?)),
        "yamlencode" => fixed::<1>(args).map(|[v]| Value::from(super::yaml::encode(v))),
        "yamldecode" => fixed::<1>(args).and_then(|[s]| super::yaml::decode(&str_arg(s, "src")?).map_err(Failure::Error)),
        _ => return None,
    })
}

fn decode_base64(s: &str) -> Result<Value, Failure> {
    let bytes = STANDARD.decode(s).map_err(|_| "failed to decode base64 data: the string is not valid base64")?;
    String::from_utf8(bytes).map(Value::from).map_err(|_| "the result of decoding the provided string is not valid UTF-8".into())
}

/// A JSON value as a Terraform value (numbers normalised, object keys in order).
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => hcl::Number::from_f64(n.as_f64().unwrap_or(0.0)).map_or(Value::Null, |n| normalize(&n)),
        },
        serde_json::Value::String(s) => Value::from(s.clone()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        serde_json::Value::Object(m) => sorted(m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect::<Map<_, _>>()),
    }
}

/// `jsonencode`: keys sorted, `<`, `>`, `&`, U+2028 and U+2029 escaped as Go's encoder does.
pub fn json_encode(v: &Value) -> Result<String, String> {
    let mut out = String::new();
    write_json(v, &mut out);
    Ok(out)
}

fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_text(n)),
        Value::String(s) => json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_string(k, out);
                out.push(':');
                write_json(&m[k], out);
            }
            out.push('}');
        }
    }
}

fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `url.QueryEscape`.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// RFC 4180 records: the first is the header; every record becomes an object of strings.
fn csvdecode(s: &str) -> Result<Value, Failure> {
    let records = csv_records(s)?;
    let Some((header, rows)) = records.split_first() else { return Ok(Value::Array(Vec::new())) };
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        if row.len() != header.len() {
            return Err(format!("record on line {} has wrong number of fields", i + 2).into());
        }
        let obj: Map<String, Value> = header.iter().cloned().zip(row.iter().map(|f| Value::from(f.clone()))).collect();
        out.push(sorted(obj));
    }
    Ok(Value::Array(out))
}

fn csv_records(s: &str) -> Result<Vec<Vec<String>>, Failure> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    let mut started = false;
    while let Some(c) = chars.next() {
        started = true;
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                started = false;
            }
            c => field.push(c),
        }
    }
    if quoted {
        return Err("extraneous or missing \" in quoted-field".into());
    }
    if started {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}
