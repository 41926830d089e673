//! Which object a data source (`novacron_vm`, `novacron_network`, `novacron_template`) selects: pure, shared by the provider and the reconciler.
//!
//! The provider reads the candidates through the API (one object by id, or a filtered
//! list) and the reconciler from lists it already holds; both hand them to [`select`], so
//! the two can never pick different objects or fail with different messages.

use novacron_schemas::Kind;
use serde_json::Value;

use crate::object::{ListQuery, Object};

/// The arguments of a data source block that choose the object. Unset ones are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupArgs {
    /// `id`: exactly this object.
    pub id: Option<String>,
    /// `name`: the object of this name.
    pub name: Option<String>,
    /// `os` (templates).
    pub os: Option<String>,
    /// `os_version` (templates).
    pub os_version: Option<String>,
    /// `arch` (templates).
    pub arch: Option<String>,
    /// `most_recent = true`: of several matches, the one released last (templates).
    pub most_recent: bool,
}

/// How to read the candidates from the API for a [`LookupArgs`].
#[derive(Debug, Clone, PartialEq)]
pub enum Candidates {
    /// `GET /v1/{kind}/{id}` (a 404 is no candidate).
    ById(String),
    /// `GET /v1/{kind}` with these filters, every page.
    List(ListQuery),
}

/// Why a data source selects no object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Nothing matches the arguments.
    #[error("nothing on the platform matches {filters}; check the values")]
    NoMatch {
        /// The data source type, e.g. `novacron_template`.
        type_name: String,
        /// The arguments, as `name = "x", os = "y"`.
        filters: String,
    },
    /// Several objects match and nothing picks one.
    #[error("{} all match {filters}; {hint}", names.join(", "))]
    Ambiguous {
        /// The data source type.
        type_name: String,
        /// The names of the matches.
        names: Vec<String>,
        /// The arguments.
        filters: String,
        /// How to narrow it down.
        hint: String,
    },
}

impl LookupError {
    /// A one-line title, as a Terraform diagnostic summary.
    pub fn summary(&self) -> String {
        match self {
            LookupError::NoMatch { type_name, .. } => format!("No {type_name} matches"),
            LookupError::Ambiguous { type_name, names, .. } => format!("{} {type_name} objects match", names.len()),
        }
    }
}

/// The lookup attributes of `kind`'s data source (`x-data-source` in `schemas/`), in message order.
fn lookup_keys(kind: Kind) -> &'static [String] {
    kind.schema().data_source.as_ref().map_or(&[], |d| d.lookup.as_slice())
}

/// Whether `kind`'s data source can pick the newest of several matches (`most_recent`).
fn picks_newest(kind: Kind) -> bool {
    kind.schema().data_source.as_ref().is_some_and(|d| d.most_recent_by.is_some())
}

/// The arguments of `kind`'s data source that choose its object: the lookup keys, then
/// `most_recent` where the data source has it.
pub fn arguments(kind: Kind) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = lookup_keys(kind).iter().map(String::as_str).collect();
    if picks_newest(kind) {
        names.push("most_recent");
    }
    names
}

impl LookupArgs {
    /// The arguments of `kind`'s data source as `x-data-source` in `schemas/` declares them
    /// (its lookup keys, and `most_recent` where it picks the newest), each read by `text`;
    /// `most_recent` is true when `text("most_recent")` says `true`.
    pub fn from_arguments(kind: Kind, text: impl Fn(&str) -> Option<String>) -> LookupArgs {
        let mut args = LookupArgs::default();
        for key in lookup_keys(kind) {
            let value = text(key);
            match key.as_str() {
                "id" => args.id = value,
                "name" => args.name = value,
                "os" => args.os = value,
                "os_version" => args.os_version = value,
                "arch" => args.arch = value,
                other => debug_assert!(false, "x-data-source lookup key {other} has no LookupArgs field"),
            }
        }
        args.most_recent = picks_newest(kind) && text("most_recent").as_deref() == Some("true");
        args
    }

    /// What to read from the API: by id when `id` is set, else a list filtered by `name` and `os`.
    pub fn candidates(&self) -> Candidates {
        match &self.id {
            Some(id) => Candidates::ById(id.clone()),
            None => Candidates::List(ListQuery { name: self.name.clone(), os: self.os.clone(), ..ListQuery::default() }),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "id" => self.id.as_deref(),
            "name" => self.name.as_deref(),
            "os" => self.os.as_deref(),
            "os_version" => self.os_version.as_deref(),
            "arch" => self.arch.as_deref(),
            _ => None,
        }
    }

    /// Whether `object` passes the filters that [`LookupArgs::candidates`] leaves to the
    /// client: with `id`, all but `name` and `os` (the API answered for the id); else
    /// every one, so a full unfiltered list gives the same answer as the API's filtered one.
    fn keeps(&self, kind: Kind, object: &Object) -> bool {
        let checked = lookup_keys(kind).iter().filter(|k| self.id.is_none() || !matches!(k.as_str(), "name" | "os"));
        checked.into_iter().all(|k| self.get(k).is_none_or(|want| object.get(k).and_then(Value::as_str) == Some(want)))
    }

    fn filters(&self, kind: Kind) -> String {
        lookup_keys(kind).iter().filter_map(|k| self.get(k).map(|v| format!("{k} = {v:?}"))).collect::<Vec<_>>().join(", ")
    }
}

/// The one object of `kind` the data source `args` selects from `candidates` (what the API
/// answered for [`LookupArgs::candidates`], or every object of the kind).
pub fn select(kind: Kind, args: &LookupArgs, candidates: impl IntoIterator<Item = Object>) -> Result<Object, LookupError> {
    let type_name = kind.terraform_type().to_string();
    let newest_by = kind.schema().data_source.as_ref().and_then(|d| d.most_recent_by.as_deref());
    let mut matches: Vec<Object> = candidates.into_iter().filter(|o| args.keeps(kind, o)).collect();
    if matches.is_empty() {
        return Err(LookupError::NoMatch { type_name, filters: args.filters(kind) });
    }
    if matches.len() > 1 {
        let Some(newest_by) = newest_by.filter(|_| args.most_recent) else {
            let hint = if newest_by.is_some() { "add filters or set most_recent = true" } else { "look it up by id" };
            let names = matches.iter().map(|o| o.name().to_string()).collect();
            return Err(LookupError::Ambiguous { type_name, names, filters: args.filters(kind), hint: hint.into() });
        };
        // Stable: of equal release times the first listed wins, as the API lists them.
        let released = |o: &Object| o.get(newest_by).and_then(Value::as_str).unwrap_or_default().to_string();
        matches.sort_by_key(|o| std::cmp::Reverse(released(o)));
    }
    Ok(matches.swap_remove(0))
}

#[cfg(test)]
mod arguments_tests {
    use super::*;

    #[test]
    fn arguments_come_from_the_schema_and_fill_lookup_args() {
        assert_eq!(arguments(Kind::Vm), ["id", "name"]);
        assert_eq!(arguments(Kind::Template), ["id", "name", "os", "os_version", "arch", "most_recent"]);
        let given = |k: &str| match k {
            "name" => Some("web".to_string()),
            "os" => Some("ubuntu".to_string()),
            "most_recent" => Some("true".to_string()),
            _ => None,
        };
        let vm = LookupArgs::from_arguments(Kind::Vm, given);
        assert_eq!((vm.name.as_deref(), vm.os, vm.most_recent), (Some("web"), None, false), "a VM data source has no os or most_recent");
        let tpl = LookupArgs::from_arguments(Kind::Template, given);
        assert_eq!((tpl.name.as_deref(), tpl.os.as_deref(), tpl.most_recent), (Some("web"), Some("ubuntu"), true));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn template(id: &str, name: &str, os: &str, released: &str) -> Object {
        Object(json!({"id": id, "name": name, "os": os, "arch": "x86_64", "released_at": released}).as_object().expect("object").clone())
    }

    fn catalogue() -> Vec<Object> {
        vec![
            template("tpl-1", "ubuntu-22.04", "ubuntu", "2022-04-21T00:00:00Z"),
            template("tpl-2", "ubuntu-24.04", "ubuntu", "2024-04-25T00:00:00Z"),
            template("tpl-3", "debian-12", "debian", "2023-06-10T00:00:00Z"),
        ]
    }

    #[test]
    fn by_name_by_id_and_most_recent() {
        let by_name = LookupArgs { name: Some("debian-12".into()), ..LookupArgs::default() };
        assert_eq!(select(Kind::Template, &by_name, catalogue()).expect("found").id(), "tpl-3");
        let by_id = LookupArgs { id: Some("tpl-1".into()), ..LookupArgs::default() };
        assert_eq!(by_id.candidates(), Candidates::ById("tpl-1".into()));
        assert_eq!(select(Kind::Template, &by_id, catalogue()).expect("found").name(), "ubuntu-22.04");
        let newest = LookupArgs { os: Some("ubuntu".into()), most_recent: true, ..LookupArgs::default() };
        assert_eq!(select(Kind::Template, &newest, catalogue()).expect("found").id(), "tpl-2");
    }

    #[test]
    fn errors_say_what_matched_and_how_to_narrow() {
        let ubuntu = LookupArgs { os: Some("ubuntu".into()), ..LookupArgs::default() };
        let err = select(Kind::Template, &ubuntu, catalogue()).expect_err("two match");
        assert_eq!(err.summary(), "2 novacron_template objects match");
        assert_eq!(err.to_string(), "ubuntu-22.04, ubuntu-24.04 all match os = \"ubuntu\"; add filters or set most_recent = true");
        let none = LookupArgs { name: Some("rocky-9".into()), arch: Some("aarch64".into()), ..LookupArgs::default() };
        let err = select(Kind::Template, &none, catalogue()).expect_err("none match");
        assert_eq!(err.summary(), "No novacron_template matches");
        assert_eq!(err.to_string(), "nothing on the platform matches name = \"rocky-9\", arch = \"aarch64\"; check the values");
        let wrong_arch = LookupArgs { id: Some("tpl-1".into()), arch: Some("aarch64".into()), ..LookupArgs::default() };
        assert!(matches!(select(Kind::Template, &wrong_arch, catalogue()), Err(LookupError::NoMatch { .. })));
    }
}
