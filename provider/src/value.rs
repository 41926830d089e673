//! Terraform values as the plugin protocol carries them: msgpack (with unknowns as
//! extension values, refined unknowns tolerated) and the JSON fallback.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::proto::tfplugin5::DynamicValue;

/// A Terraform value. Objects, maps and blocks are `Obj`; lists, sets and tuples are `List`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Val {
    /// `null`.
    #[default]
    Null,
    /// Not known until apply.
    Unknown,
    /// A boolean.
    Bool(bool),
    /// A number (cty numbers are arbitrary precision; ours fit an f64).
    Num(f64),
    /// A string.
    Str(String),
    /// A list, set or tuple.
    List(Vec<Val>),
    /// An object or map.
    Obj(BTreeMap<String, Val>),
}

const NULL: Val = Val::Null;

impl Val {
    /// Decodes a DynamicValue: msgpack when present, else JSON, else null.
    pub fn from_dynamic(dv: Option<&DynamicValue>) -> Result<Val, String> {
        let Some(dv) = dv else { return Ok(Val::Null) };
        if !dv.msgpack.is_empty() {
            let value = rmpv::decode::read_value(&mut dv.msgpack.as_slice()).map_err(|e| format!("invalid msgpack value: {e}"))?;
            return Ok(Val::from_msgpack(value));
        }
        if !dv.json.is_empty() {
            let json: Json = serde_json::from_slice(&dv.json).map_err(|e| format!("invalid JSON value: {e}"))?;
            return Ok(Val::from_json(&json));
        }
        Ok(Val::Null)
    }

    /// Encodes as a msgpack DynamicValue.
    pub fn to_dynamic(&self) -> DynamicValue {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &self.to_msgpack()).expect("writing msgpack to a Vec cannot fail");
        DynamicValue { msgpack: buf, json: Vec::new() }
    }

    fn from_msgpack(v: rmpv::Value) -> Val {
        use rmpv::Value as M;
        match v {
            M::Nil => Val::Null,
            M::Boolean(b) => Val::Bool(b),
            M::Integer(i) => Val::Num(i.as_i64().map(|i| i as f64).or_else(|| i.as_u64().map(|u| u as f64)).unwrap_or(0.0)),
            M::F32(f) => Val::Num(f64::from(f)),
            M::F64(f) => Val::Num(f),
            M::String(s) => Val::Str(s.into_str().unwrap_or_default()),
            M::Binary(b) => Val::Str(String::from_utf8_lossy(&b).into_owned()),
            M::Array(items) => Val::List(items.into_iter().map(Val::from_msgpack).collect()),
            M::Map(entries) => {
                Val::Obj(entries.into_iter().map(|(k, v)| (k.as_str().map(str::to_string).unwrap_or_else(|| k.to_string()), Val::from_msgpack(v))).collect())
            }
            // Type 0 is an unknown; type 12 an unknown with refinements (which we do not use).
            M::Ext(_, _) => Val::Unknown,
        }
    }

    fn to_msgpack(&self) -> rmpv::Value {
        use rmpv::Value as M;
        match self {
            Val::Null => M::Nil,
            Val::Unknown => M::Ext(0, vec![0]),
            Val::Bool(b) => M::Boolean(*b),
            Val::Num(n) => {
                if n.fract() == 0.0 && n.abs() < 9.0e15 {
                    M::from(*n as i64)
                } else {
                    M::F64(*n)
                }
            }
            Val::Str(s) => M::from(s.as_str()),
            Val::List(items) => M::Array(items.iter().map(Val::to_msgpack).collect()),
            Val::Obj(entries) => M::Map(entries.iter().map(|(k, v)| (M::from(k.as_str()), v.to_msgpack())).collect()),
        }
    }

    /// Converts JSON (no unknowns can be expressed in it).
    pub fn from_json(v: &Json) -> Val {
        match v {
            Json::Null => Val::Null,
            Json::Bool(b) => Val::Bool(*b),
            Json::Number(n) => Val::Num(n.as_f64().unwrap_or(0.0)),
            Json::String(s) => Val::Str(s.clone()),
            Json::Array(items) => Val::List(items.iter().map(Val::from_json).collect()),
            Json::Object(m) => Val::Obj(m.iter().map(|(k, v)| (k.clone(), Val::from_json(v))).collect()),
        }
    }

    /// Converts to JSON; `None` when any part is unknown.
    pub fn to_json(&self) -> Option<Json> {
        Some(match self {
            Val::Null => Json::Null,
            Val::Unknown => return None,
            Val::Bool(b) => Json::Bool(*b),
            Val::Num(n) => {
                if n.fract() == 0.0 && n.abs() < 9.0e15 {
                    Json::from(*n as i64)
                } else {
                    serde_json::Number::from_f64(*n).map(Json::Number).unwrap_or(Json::Null)
                }
            }
            Val::Str(s) => Json::String(s.clone()),
            Val::List(items) => Json::Array(items.iter().map(Val::to_json).collect::<Option<_>>()?),
            Val::Obj(m) => Json::Object(m.iter().map(|(k, v)| Some((k.clone(), v.to_json()?))).collect::<Option<_>>()?),
        })
    }

    /// The attribute `key` of an object (null when absent or not an object).
    pub fn get(&self, key: &str) -> &Val {
        match self {
            Val::Obj(m) => m.get(key).unwrap_or(&NULL),
            _ => &NULL,
        }
    }

    /// Whether this is null.
    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    /// Whether this value and everything inside it is known.
    pub fn is_known(&self) -> bool {
        match self {
            Val::Unknown => false,
            Val::List(items) => items.iter().all(Val::is_known),
            Val::Obj(m) => m.values().all(Val::is_known),
            _ => true,
        }
    }

    /// The string inside, if this is a known string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number inside, if this is a known number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Num(n) => Some(*n),
            _ => None,
        }
    }

    /// The map inside, if this is an object.
    pub fn as_obj(&self) -> Option<&BTreeMap<String, Val>> {
        match self {
            Val::Obj(m) => Some(m),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msgpack_round_trip_keeps_unknowns() {
        let v = Val::Obj(BTreeMap::from([
            ("id".to_string(), Val::Unknown),
            ("n".to_string(), Val::Num(4.0)),
            ("f".to_string(), Val::Num(1.5)),
            ("tags".to_string(), Val::List(vec![Val::Str("a".into())])),
            ("gone".to_string(), Val::Null),
        ]));
        let dv = v.to_dynamic();
        assert_eq!(Val::from_dynamic(Some(&dv)).expect("decodes"), v);
        assert!(!v.is_known());
        assert_eq!(v.to_json(), None);
    }

    #[test]
    fn unknown_is_fixext1_type_zero_and_refinements_are_tolerated() {
        let dv = Val::Unknown.to_dynamic();
        assert_eq!(dv.msgpack, vec![0xd4, 0, 0]);
        // A refined unknown string (ext type 12 with a map payload).
        let refined = DynamicValue { msgpack: vec![0xc7, 3, 12, 0x81, 0x01, 0xc3], json: vec![] };
        assert_eq!(Val::from_dynamic(Some(&refined)).expect("decodes"), Val::Unknown);
    }

    #[test]
    fn json_fallback() {
        let dv = DynamicValue { msgpack: vec![], json: br#"{"a": 1, "b": [true, null]}"#.to_vec() };
        let v = Val::from_dynamic(Some(&dv)).expect("decodes");
        assert_eq!(v.get("a"), &Val::Num(1.0));
        assert_eq!(v.to_json(), Some(serde_json::json!({"a": 1, "b": [true, null]})));
    }
}
