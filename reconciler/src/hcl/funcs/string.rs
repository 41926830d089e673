//! String functions: chomp, endswith, indent, join, lower, regex, regexall, replace, split, startswith, strcontains, strrev, substr, title, trim*, upper.

use std::cell::RefCell;
use std::collections::HashMap;

use hcl::{Map, Value};
use regex::Regex;

use super::{Failure, Outcome, fixed, int_arg, list_arg, str_arg};

/// Compiled patterns by source text: a configuration reuses a handful of patterns many times.
const REGEX_CACHE_LIMIT: usize = 256;

thread_local! {
    static REGEXES: RefCell<HashMap<String, Regex>> = RefCell::new(HashMap::new());
}

/// A compiled pattern from the per-thread cache.
pub fn regex(pattern: &str) -> Result<Regex, Failure> {
    REGEXES.with(|cache| {
        if let Some(r) = cache.borrow().get(pattern) {
            return Ok(r.clone());
        }
        let r = Regex::new(pattern)
            .map_err(|e| Failure::Error(format!("invalid regular expression pattern: {}", crate::hcl::resolve::one_line(&e.to_string()))))?;
        let mut cache = cache.borrow_mut();
        if cache.len() >= REGEX_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(pattern.to_string(), r.clone());
        Ok(r)
    })
}

fn s1(args: &[Value], f: impl Fn(&str) -> String) -> Result<Value, Failure> {
    let [a] = fixed::<1>(args)?;
    Ok(Value::from(f(&str_arg(a, "str")?)))
}

fn s2(args: &[Value], names: [&str; 2], f: impl Fn(&str, &str) -> Value) -> Result<Value, Failure> {
    let [a, b] = fixed::<2>(args)?;
    Ok(f(&str_arg(a, names[0])?, &str_arg(b, names[1])?))
}

/// Calls a string function, or `None` when `name` is not one.
pub fn call(name: &str, args: &[Value]) -> Outcome {
    Some(match name {
        "lower" => s1(args, |s| s.chars().map(lower_char).collect()),
        "upper" => s1(args, |s| s.chars().map(upper_char).collect()),
        "trimspace" => s1(args, |s| s.trim().to_string()),
        "strrev" => s1(args, |s| s.chars().rev().collect()),
        "title" => s1(args, title),
        "chomp" => s1(args, |s| s.trim_end_matches(['\n', '\r']).to_string()),
        "startswith" => s2(args, ["str", "prefix"], |s, p| Value::Bool(s.starts_with(p))),
        "endswith" => s2(args, ["str", "suffix"], |s, p| Value::Bool(s.ends_with(p))),
        "strcontains" => s2(args, ["str", "substr"], |s, p| Value::Bool(s.contains(p))),
        "trimprefix" => s2(args, ["str", "prefix"], |s, p| Value::from(s.strip_prefix(p).unwrap_or(s))),
        "trimsuffix" => s2(args, ["str", "suffix"], |s, p| Value::from(s.strip_suffix(p).unwrap_or(s))),
        "trim" => s2(args, ["str", "cutset"], |s, cut| Value::from(s.trim_matches(|c| cut.contains(c)))),
        "split" => s2(args, ["separator", "str"], |sep, s| {
            if sep.is_empty() {
                return Value::Array(s.chars().map(|c| Value::from(c.to_string())).collect());
            }
            Value::Array(s.split(sep).map(Value::from).collect())
        }),
        "indent" => fixed::<2>(args).and_then(|[n, s]| {
            let pad = " ".repeat(usize::try_from(int_arg(n, "spaces")?).map_err(|_| "invalid value for \"spaces\" parameter: must not be negative")?);
            Ok(Value::from(str_arg(s, "str")?.replace('\n', &format!("\n{pad}"))))
        }),
        "join" => join(args),
        "substr" => substr(args),
        "replace" => replace(args),
        "regex" => fixed::<2>(args).and_then(|[p, s]| {
            let re = regex(&str_arg(p, "pattern")?)?;
            let text = str_arg(s, "string")?;
            let caps = re.captures(&text).ok_or("pattern did not match any part of the given string")?;
            captures(&re, &caps)
        }),
        "regexall" => fixed::<2>(args).and_then(|[p, s]| {
            let re = regex(&str_arg(p, "pattern")?)?;
            let text = str_arg(s, "string")?;
            re.captures_iter(&text).map(|c| captures(&re, &c)).collect::<Result<Vec<_>, _>>().map(Value::Array)
        }),
        "format" => super::format::format(args),
        "formatlist" => super::format::formatlist(args),
        _ => return None,
    })
}

/// Go's simple (one-to-one) case mapping: a letter whose full mapping is several letters
/// (`ß` to `SS`) stays as it is.
fn upper_char(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

fn lower_char(c: char) -> char {
    let mut low = c.to_lowercase();
    match (low.next(), low.next()) {
        (Some(l), None) => l,
        (Some(l), Some(_)) if l.is_ascii() => l,
        _ => c,
    }
}

/// Go's `strings.Title`: a letter after a separator becomes upper case.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase())
        } else {
            out.push(c)
        }
        prev_sep = if c.is_ascii() { !(c.is_ascii_alphanumeric() || c == '_') } else { !c.is_alphanumeric() && c.is_whitespace() };
    }
    out
}

fn join(args: &[Value]) -> Result<Value, Failure> {
    let (sep, lists) = args.split_first().ok_or("not enough arguments: the function takes a separator and at least one list")?;
    if lists.is_empty() {
        return Err("not enough arguments: at least one list is required".into());
    }
    let sep = str_arg(sep, "separator")?;
    let mut parts = Vec::new();
    for list in lists {
        for item in list_arg(list, "lists")? {
            if item.is_null() {
                return Err("invalid value for \"lists\" parameter: element is null; cannot concatenate null values".into());
            }
            parts.push(str_arg(item, "lists")?);
        }
    }
    Ok(Value::from(parts.join(&sep)))
}

fn substr(args: &[Value]) -> Result<Value, Failure> {
    let [s, offset, length] = fixed::<3>(args)?;
    let chars: Vec<char> = str_arg(s, "str")?.chars().collect();
    let len = chars.len() as i64;
    let mut offset = int_arg(offset, "offset")?;
    let length = int_arg(length, "length")?;
    if offset < 0 {
        offset += len;
        if offset < 0 {
            return Err("invalid value for \"offset\" parameter: offset is out of range".into());
        }
    }
    if offset > len {
        return Err("invalid value for \"offset\" parameter: offset is out of range".into());
    }
    let end = if length < 0 { len } else { (offset + length).min(len) };
    let (from, to) = (usize::try_from(offset).unwrap_or(0), usize::try_from(end.max(offset)).unwrap_or(0));
    Ok(Value::from(chars[from..to].iter().collect::<String>()))
}

fn replace(args: &[Value]) -> Result<Value, Failure> {
    let [s, search, with] = fixed::<3>(args)?;
    let (s, search, with) = (str_arg(s, "str")?, str_arg(search, "substr")?, str_arg(with, "replace")?);
    if search.len() > 1 && search.starts_with('/') && search.ends_with('/') {
        let re = regex(&search[1..search.len() - 1])?;
        return Ok(Value::from(re.replace_all(&s, with.as_str()).into_owned()));
    }
    Ok(Value::from(s.replace(&search, &with)))
}

fn captures(re: &Regex, caps: &regex::Captures<'_>) -> Result<Value, Failure> {
    let names: Vec<Option<&str>> = re.capture_names().skip(1).collect();
    let text = |i: usize| caps.get(i).map_or(Value::Null, |m| Value::from(m.as_str()));
    if names.is_empty() {
        return Ok(text(0));
    }
    if names.iter().all(Option::is_some) {
        let mut out = Map::new();
        for (i, n) in names.iter().enumerate() {
            out.insert(n.unwrap_or_default().to_string(), text(i + 1));
        }
        return Ok(crate::hcl::value::sorted(out));
    }
    if names.iter().any(Option::is_some) {
        return Err("invalid regular expression pattern: a pattern cannot mix named and unnamed capture groups".into());
    }
    Ok(Value::Array((1..=names.len()).map(text).collect()))
}
