//! `yamlencode` in the exact layout Terraform prints (every string double-quoted, block style) and `yamldecode`.

use hcl::{Map, Value};
use yaml_rust2::parser::Event;
use yaml_rust2::scanner::TScalarStyle;

use crate::hcl::value::{number, number_text, parse_number, sorted};

/// Encodes a value as Terraform's `yamlencode` does.
pub fn encode(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Array(items) if !items.is_empty() => block_list(items, 0, &mut out),
        Value::Object(m) if !m.is_empty() => block_map(m, 0, &mut out),
        Value::Array(_) | Value::Object(_) => out.push_str(if v.is_array() { "[]\n" } else { "{}\n" }),
        Value::String(s) if literal_block(s) => block_string(s, 0, &mut out),
        Value::String(s) => {
            out.push_str(&quoted(s));
            out.push('\n');
        }
        other => {
            // A plain top-level scalar gets the document end marker, as Terraform's encoder writes it.
            out.push_str(&scalar(other));
            out.push_str("\n...\n");
        }
    }
    out
}

/// Whether a string is written as a `|` literal block: it has a line break and nothing that
/// the block style cannot carry.
fn literal_block(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\t', '\n'])
        && !s.chars().any(|c| (c.is_control() && c != '\n') || c == '\u{feff}')
        && !s.lines().any(|l| l.ends_with([' ', '\t']))
}

/// `|-`, `|` or `|+` by the trailing line breaks, then the lines indented by `indent + 2`.
fn block_string(s: &str, indent: usize, out: &mut String) {
    let body = s.trim_end_matches('\n');
    let trailing = s.len() - body.len();
    out.push_str(match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    });
    out.push('\n');
    let pad = " ".repeat(indent + 2);
    for line in body.split('\n') {
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
        out.push('\n');
    }
    for _ in 1..trailing {
        out.push('\n');
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        _ => false,
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_text(n),
        Value::String(s) => quoted(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn block_list(items: &[Value], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for item in items {
        out.push_str(&pad);
        out.push_str("- ");
        match item {
            Value::Array(inner) if !inner.is_empty() => {
                let mut nested = String::new();
                block_list(inner, indent + 2, &mut nested);
                out.push_str(nested.trim_start());
            }
            Value::Object(m) if !m.is_empty() => {
                let mut nested = String::new();
                block_map(m, indent + 2, &mut nested);
                out.push_str(nested.trim_start());
            }
            Value::String(text) if literal_block(text) => block_string(text, indent, out),
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn block_map(m: &Map<String, Value>, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    for k in keys {
        let v = &m[k];
        out.push_str(&pad);
        out.push_str(&quoted(k));
        out.push(':');
        if is_block(v) {
            out.push('\n');
            match v {
                Value::Array(items) => block_list(items, indent, out),
                Value::Object(inner) => block_map(inner, indent + 2, out),
                _ => {}
            }
        } else if let Value::String(text) = v
            && literal_block(text)
        {
            out.push(' ');
            block_string(text, indent, out);
        } else {
            out.push(' ');
            out.push_str(&scalar(v));
            out.push('\n');
        }
    }
}

/// Builds values from parser events, resolving plain scalars by YAML 1.1 rules as Terraform
/// does (`y`, `yes`, `on` are true; `~` is null).
#[derive(Default)]
struct Builder {
    /// Open collections: a sequence, or a mapping with its pending key.
    stack: Vec<Open>,
    anchors: Vec<(usize, Value)>,
    documents: Vec<Value>,
    error: Option<String>,
}

enum Open {
    Seq(usize, Vec<Value>),
    Map(usize, Map<String, Value>, Option<String>),
}

impl Builder {
    fn push(&mut self, v: Value) {
        match self.stack.last_mut() {
            None => self.documents.push(v),
            Some(Open::Seq(_, items)) => items.push(v),
            Some(Open::Map(_, m, key)) => match key.take() {
                Some(k) => {
                    m.insert(k, v);
                }
                None => match &v {
                    Value::String(k) => *key = Some(k.clone()),
                    Value::Number(n) => *key = Some(number_text(n)),
                    Value::Bool(b) => *key = Some(b.to_string()),
                    Value::Null => *key = Some("null".into()),
                    _ => self.error = Some("a YAML mapping key must be a scalar".into()),
                },
            },
        }
    }

    fn anchor(&mut self, id: usize, v: &Value) {
        if id > 0 {
            self.anchors.push((id, v.clone()));
        }
    }
}

impl yaml_rust2::parser::MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, _mark: yaml_rust2::scanner::Marker) {
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let v = resolve(text, style, tag.as_ref());
                self.anchor(anchor, &v);
                self.push(v);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(anchor, Vec::new())),
            Event::MappingStart(anchor, _) => self.stack.push(Open::Map(anchor, Map::new(), None)),
            Event::SequenceEnd | Event::MappingEnd => {
                let (anchor, v) = match self.stack.pop() {
                    Some(Open::Seq(a, items)) => (a, Value::Array(items)),
                    Some(Open::Map(a, m, _)) => (a, sorted(m)),
                    None => return,
                };
                self.anchor(anchor, &v);
                self.push(v);
            }
            Event::Alias(id) => match self.anchors.iter().rev().find(|(a, _)| *a == id) {
                Some((_, v)) => {
                    let v = v.clone();
                    self.push(v);
                }
                None => self.error = Some("an alias refers to an unknown anchor".into()),
            },
            _ => {}
        }
    }
}

fn resolve(text: String, style: TScalarStyle, tag: Option<&yaml_rust2::parser::Tag>) -> Value {
    if let Some(tag) = tag {
        return match tag.suffix.as_str() {
            "str" => Value::String(text),
            "int" | "float" => parse_number(&text).unwrap_or(Value::String(text)),
            "bool" => Value::Bool(matches!(text.as_str(), "true" | "True" | "TRUE" | "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON")),
            "null" => Value::Null,
            _ => Value::String(text),
        };
    }
    if style != TScalarStyle::Plain {
        return Value::String(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => return Value::Bool(true),
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => return Value::Bool(false),
        _ => {}
    }
    let plain = text.clone();
    let (neg, digits) = match plain.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, plain.strip_prefix('+').unwrap_or(&plain)),
    };
    let radix = [("0x", 16), ("0o", 8), ("0b", 2)].iter().find_map(|(p, r)| digits.strip_prefix(p).map(|d| (d, *r)));
    if let Some((d, r)) = radix
        && let Ok(i) = i64::from_str_radix(d, r)
    {
        return Value::from(if neg { -i } else { i });
    }
    let numeric = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if numeric && let Ok(f) = plain.parse::<f64>() {
        return plain.parse::<i64>().map(Value::from).unwrap_or_else(|_| number(f).unwrap_or(Value::String(text.clone())));
    }
    Value::String(text)
}

/// Decodes one YAML document; an empty document is null.
pub fn decode(text: &str) -> Result<Value, String> {
    let mut builder = Builder::default();
    let mut parser = yaml_rust2::parser::Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| format!("on line {}, column {}: {}", e.marker().line(), e.marker().col() + 1, e.info()))?;
    if let Some(e) = builder.error {
        return Err(e);
    }
    match builder.documents.len() {
        0 => Err("the YAML source is empty: it holds no document".into()),
        1 => Ok(builder.documents.pop().unwrap_or(Value::Null)),
        _ => Err("the string contains more than one YAML document".into()),
    }
}
