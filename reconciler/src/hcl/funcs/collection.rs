//! Collection functions: alltrue … zipmap, with Terraform's set order and null handling.

use hcl::{Map, Value};

use super::{Failure, Outcome, fixed, int_arg, list_arg, map_arg, num_arg, str_arg};
use crate::hcl::value::{equal, set_order, sorted, to_bool, to_set, to_string, type_name, unify};

/// Calls a collection function, or `None` when `name` is not one.
pub fn call(name: &str, args: &[Value]) -> Outcome {
    Some(match name {
        "alltrue" | "anytrue" => fixed::<1>(args).and_then(|[l]| {
            let mut all = true;
            let mut any = false;
            for v in list_arg(l, "list")? {
                let b = if v.is_null() { false } else { to_bool(v).map_err(|e| format!("invalid value for \"list\" parameter: {e}"))? };
                all &= b;
                any |= b;
            }
            Ok(Value::Bool(if name == "alltrue" { all } else { any }))
        }),
        "chunklist" => fixed::<2>(args).and_then(|[l, n]| {
            let items = list_arg(l, "list")?;
            let n = usize::try_from(int_arg(n, "size")?).map_err(|_| "the size argument must be positive")?;
            if n == 0 {
                return Ok(Value::Array(vec![Value::Array(items.clone())]));
            }
            Ok(Value::Array(items.chunks(n).map(|c| Value::Array(c.to_vec())).collect()))
        }),
        "coalesce" => {
            if args.is_empty() {
                return Some(Err("not enough arguments: at least one argument is required".into()));
            }
            let unified = match unify(args.to_vec()) {
                Ok(u) => u,
                Err(_) => return Some(Err("all arguments must have the same type".into())),
            };
            unified.into_iter().find(|v| !v.is_null() && v.as_str() != Some("")).ok_or_else(|| "no non-null, non-empty-string arguments".into())
        }
        "coalescelist" => {
            if args.is_empty() {
                return Some(Err("not enough arguments: at least one argument is required".into()));
            }
            args.iter().find(|v| v.as_array().is_some_and(|a| !a.is_empty())).cloned().ok_or_else(|| "no non-null arguments".into())
        }
        "compact" => {
            fixed::<1>(args).and_then(|[l]| Ok(Value::Array(list_arg(l, "list")?.iter().filter(|v| !v.is_null() && v.as_str() != Some("")).cloned().collect())))
        }
        "concat" => args.iter().map(|a| list_arg(a, "seqs").cloned()).collect::<Result<Vec<_>, _>>().map(|l| Value::Array(l.concat())),
        "contains" => fixed::<2>(args).and_then(|[l, v]| Ok(Value::Bool(list_arg(l, "list")?.iter().any(|x| equal(x, v))))),
        "distinct" => fixed::<1>(args).and_then(|[l]| {
            let mut out: Vec<Value> = Vec::new();
            for v in &unify(list_arg(l, "list")?.clone()).map_err(|e| format!("invalid value for \"list\" parameter: {e}"))? {
                if !out.iter().any(|o| equal(o, v)) {
                    out.push(v.clone());
                }
            }
            Ok(Value::Array(out))
        }),
        "element" => fixed::<2>(args).and_then(|[l, i]| {
            let items = list_arg(l, "list")?;
            let i = int_arg(i, "index")?;
            if items.is_empty() {
                return Err("cannot use element function with an empty list".into());
            }
            if i < 0 {
                return Err("cannot use element function with a negative index".into());
            }
            Ok(items[usize::try_from(i).unwrap_or(0) % items.len()].clone())
        }),
        "flatten" => fixed::<1>(args).and_then(|[l]| {
            let mut out = Vec::new();
            flatten(list_arg(l, "list")?, &mut out);
            Ok(Value::Array(out))
        }),
        "index" => fixed::<2>(args)
            .and_then(|[l, v]| list_arg(l, "list")?.iter().position(|x| equal(x, v)).map(|p| Value::from(p as u64)).ok_or_else(|| "item not found".into())),
        "keys" => fixed::<1>(args).and_then(|[m]| Ok(Value::Array(sorted_entries(map_arg(m, "inputMap")?).into_iter().map(|(k, _)| Value::from(k)).collect()))),
        "values" => fixed::<1>(args).and_then(|[m]| Ok(Value::Array(sorted_entries(map_arg(m, "mapping")?).into_iter().map(|(_, v)| v).collect()))),
        "length" => fixed::<1>(args).and_then(|[v]| match v {
            Value::Array(a) => Ok(Value::from(a.len() as u64)),
            Value::Object(m) => Ok(Value::from(m.len() as u64)),
            Value::String(s) => Ok(Value::from(s.chars().count() as u64)),
            Value::Null => Err("invalid value for \"value\" parameter: argument must not be null".into()),
            other => Err(format!("invalid value for \"value\" parameter: collection or structural type is required, not {}", type_name(other)).into()),
        }),
        "list" => {
            Err("the \"list\" function was deprecated in Terraform v0.12 and is no longer available; use tolist([ ... ]) syntax to write a literal list".into())
        }
        "map" => {
            Err("the \"map\" function was deprecated in Terraform v0.12 and is no longer available; use tomap({ ... }) syntax to write a literal map".into())
        }
        "lookup" => lookup(args),
        "matchkeys" => fixed::<3>(args).and_then(|[values, keys, search]| {
            let (values, keys, search) = (list_arg(values, "values")?, list_arg(keys, "keys")?, list_arg(search, "searchset")?);
            if values.len() != keys.len() {
                return Err("length of keys and values should be equal".into());
            }
            Ok(Value::Array(values.iter().zip(keys).filter(|(_, k)| search.iter().any(|s| equal(s, k))).map(|(v, _)| v.clone()).collect()))
        }),
        "merge" => merge(args),
        "one" => fixed::<1>(args).and_then(|[l]| match l {
            Value::Null => Err("argument must not be null".into()),
            _ => match list_arg(l, "list")?.as_slice() {
                [] => Ok(Value::Null),
                [one] => Ok(one.clone()),
                _ => Err("must be a list, set, or tuple value with either zero or one elements".into()),
            },
        }),
        "range" => range(args),
        "reverse" => fixed::<1>(args).and_then(|[l]| Ok(Value::Array(list_arg(l, "list")?.iter().rev().cloned().collect()))),
        "setintersection" | "setunion" | "setsubtract" => sets(name, args),
        "setproduct" => setproduct(args),
        "slice" => fixed::<3>(args).and_then(|[l, a, b]| {
            let items = list_arg(l, "list")?;
            let (a, b) = (int_arg(a, "start_index")?, int_arg(b, "end_index")?);
            if a < 0 {
                return Err("invalid value for \"start_index\" parameter: must be greater than or equal to 0".into());
            }
            if b > items.len() as i64 {
                return Err("invalid value for \"end_index\" parameter: end index must not be greater than the length of the list".into());
            }
            if a > b {
                return Err("invalid value for \"start_index\" parameter: the start index must be less than or equal to the end index".into());
            }
            Ok(Value::Array(items[a as usize..b as usize].to_vec()))
        }),
        "sort" => fixed::<1>(args).and_then(|[l]| {
            let mut items = list_arg(l, "list")?.iter().map(|v| str_arg(v, "list")).collect::<Result<Vec<_>, _>>()?;
            items.sort();
            Ok(Value::Array(items.into_iter().map(Value::from).collect()))
        }),
        "sum" => fixed::<1>(args).and_then(|[l]| {
            let items = list_arg(l, "list")?;
            if items.is_empty() {
                return Err("cannot sum an empty list".into());
            }
            let mut total = Value::from(0);
            for v in items {
                if v.is_null() {
                    return Err("argument must be list, set, or tuple of number values; null values are not allowed".into());
                }
                total = crate::hcl::expr::binary(hcl::expr::BinaryOperator::Plus, &total, v).map_err(|e| Failure::Error(e.to_string()))?;
            }
            let _ = num_arg;
            Ok(total)
        }),
        "transpose" => fixed::<1>(args).and_then(|[m]| {
            let mut out: Map<String, Value> = Map::new();
            for (k, list) in sorted_entries(map_arg(m, "values")?) {
                for v in list_arg(&list, "values")? {
                    let key = str_arg(v, "values")?;
                    match out.get_mut(&key) {
                        Some(Value::Array(a)) => a.push(Value::from(k.clone())),
                        _ => {
                            out.insert(key, Value::Array(vec![Value::from(k.clone())]));
                        }
                    }
                }
            }
            Ok(sorted(out))
        }),
        "zipmap" => fixed::<2>(args).and_then(|[k, v]| {
            let (keys, values) = (list_arg(k, "keys")?, list_arg(v, "values")?);
            if keys.len() != values.len() {
                return Err(format!("number of keys ({}) does not match number of values ({})", keys.len(), values.len()).into());
            }
            let mut out = Map::new();
            for (k, v) in keys.iter().zip(values) {
                out.insert(str_arg(k, "keys")?, v.clone());
            }
            Ok(sorted(out))
        }),
        _ => return None,
    })
}

fn merge(args: &[Value]) -> Result<Value, Failure> {
    let mut out = Map::new();
    for a in args.iter().filter(|a| !a.is_null()) {
        for (k, v) in map_arg(a, "maps")? {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(sorted(out))
}

fn sorted_entries(m: &Map<String, Value>) -> Vec<(String, Value)> {
    let mut e: Vec<(String, Value)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    e.sort_by(|a, b| a.0.cmp(&b.0));
    e
}

fn flatten(items: &[Value], out: &mut Vec<Value>) {
    for v in items {
        match v {
            Value::Array(inner) => flatten(inner, out),
            other => out.push(other.clone()),
        }
    }
}

fn lookup(args: &[Value]) -> Result<Value, Failure> {
    if !(2..=3).contains(&args.len()) {
        return Err(format!("lookup takes 2 or 3 arguments, got {}", args.len()).into());
    }
    let key = str_arg(&args[1], "key")?;
    match map_arg(&args[0], "inputMap")?.get(&key) {
        Some(v) => Ok(v.clone()),
        None => args.get(2).cloned().ok_or_else(|| format!("lookup failed to find key {key:?}").into()),
    }
}

fn range(args: &[Value]) -> Result<Value, Failure> {
    let nums = args.iter().map(|a| num_arg(a, "params")).collect::<Result<Vec<f64>, _>>()?;
    let (start, end, step) = match nums.as_slice() {
        [end] => (0.0, *end, 1.0),
        [start, end] => (*start, *end, if start <= end { 1.0 } else { -1.0 }),
        [start, end, step] => (*start, *end, *step),
        _ => return Err("must have one, two, or three arguments".into()),
    };
    if step == 0.0 {
        return Err("step must not be zero".into());
    }
    if (step < 0.0 && start < end) || (step > 0.0 && start > end) {
        return Err(format!("step must be {} for a range from {start} to {end}", if start < end { "positive" } else { "negative" }).into());
    }
    let mut out = Vec::new();
    let mut i = 0.0;
    loop {
        let v = start + step * i;
        if (step > 0.0 && v >= end) || (step < 0.0 && v <= end) {
            break;
        }
        if out.len() >= 1024 {
            return Err("more than 1024 values were generated; either decrease the difference between start and end or use a smaller step".into());
        }
        out.push(crate::hcl::value::decimal(v).map_err(Failure::Error)?);
        i += 1.0;
    }
    Ok(Value::Array(out))
}

fn set_of(v: &Value, what: &str) -> Result<Vec<Value>, Failure> {
    to_set(list_arg(v, what)?.clone()).map_err(Failure::Error)
}

fn sets(name: &str, args: &[Value]) -> Result<Value, Failure> {
    if name == "setsubtract" {
        let [a, b] = fixed::<2>(args)?;
        let (a, b) = (set_of(a, "a")?, set_of(b, "b")?);
        return Ok(Value::Array(a.into_iter().filter(|x| !b.iter().any(|y| equal(x, y))).collect()));
    }
    let (first, rest) = args.split_first().ok_or("at least one argument is required")?;
    let mut acc = set_of(first, "first_set")?;
    for s in rest {
        let s = set_of(s, "other_sets")?;
        if name == "setunion" {
            acc.extend(s);
        } else {
            acc.retain(|x| s.iter().any(|y| equal(x, y)));
        }
    }
    to_set(acc).map(Value::Array).map_err(Failure::Error)
}

fn setproduct(args: &[Value]) -> Result<Value, Failure> {
    if args.len() < 2 {
        return Err("at least two arguments are required".into());
    }
    let mut rows: Vec<Vec<Value>> = vec![Vec::new()];
    for a in args {
        let items = list_arg(a, "sets")?;
        rows = rows.into_iter().flat_map(|row| items.iter().map(move |v| [row.clone(), vec![v.clone()]].concat())).collect();
    }
    let mut out: Vec<Value> = rows.into_iter().map(Value::Array).collect();
    let _ = (set_order, to_string);
    out.dedup();
    Ok(Value::Array(out))
}
