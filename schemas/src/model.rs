//! The typed model of a schema file: kinds, attributes, types and constraints.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::{Kind, Severity};

/// The full description of one kind.
#[derive(Debug, Clone)]
pub struct ResourceSchema {
    /// Which kind this describes.
    pub kind: Kind,
    /// Terraform type name, e.g. `novacron_vm`.
    pub terraform_type: String,
    /// One paragraph for docs.
    pub description: String,
    /// Version of the Terraform state layout; bumped with an upgrade path in the provider.
    pub schema_version: u64,
    /// Prefix of ids the platform assigns, e.g. `vm` for `vm-1f3a...`.
    pub id_prefix: String,
    /// True for catalogue kinds that clients can only read (templates).
    pub read_only_kind: bool,
    /// Every attribute, common ones included, sorted by name.
    pub attributes: Vec<Attribute>,
    /// Attributes the platform serves that never go into Terraform state (`x-not-in-state`).
    pub not_in_state: Vec<String>,
    /// Computed attributes the platform recomputes on a write, and what triggers each
    /// (`x-recomputed`), sorted by attribute name.
    pub recomputed: Vec<Recompute>,
    /// The data source of this kind, if it has one (`x-data-source`).
    pub data_source: Option<DataSource>,
    /// Steps around create, update and delete (`x-lifecycle`).
    pub lifecycle: Lifecycle,
}

impl ResourceSchema {
    /// The attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// Attributes a client may send (everything that is not computed-only).
    pub fn settable(&self) -> impl Iterator<Item = &Attribute> {
        self.attributes.iter().filter(|a| !a.read_only)
    }

    /// Attributes the list endpoint filters on (`x-list-filter`), besides `name` and
    /// `name_prefix` which every kind takes.
    pub fn list_filters(&self) -> impl Iterator<Item = &Attribute> {
        self.attributes.iter().filter(|a| a.list_filter)
    }

    /// Whether the attribute called `name` belongs in Terraform state (see `x-not-in-state`).
    pub fn in_state(&self, name: &str) -> bool {
        !self.not_in_state.iter().any(|n| n == name)
    }

    /// The attributes of this kind that reference another kind, with their reference.
    pub fn references(&self) -> impl Iterator<Item = (&Attribute, &Reference)> {
        self.attributes.iter().filter_map(|a| Some((a, a.reference.as_ref()?)))
    }
}

/// What an attribute holding another object's id says about it (`x-reference`).
#[derive(Debug, Clone)]
pub struct Reference {
    /// The kind whose id the attribute holds.
    pub kind: Kind,
    /// Advice when no object of that kind has the id, e.g. "create it first or use an existing id".
    pub if_missing: String,
    /// Present when the referencing object holds the referenced one in use: deleting the
    /// referenced object is refused (409) while any object names it. The text is the advice
    /// given then, e.g. "delete those vms or move them to another network first".
    pub holds: Option<String>,
}

/// One computed attribute the platform recomputes on a write (`x-recomputed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recompute {
    /// The recomputed attribute.
    pub attribute: String,
    /// What makes it change.
    pub trigger: Trigger,
}

/// What makes a recomputed attribute change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A change of any of these attributes (`"when": [...]`; `"*"` expands to every settable
    /// attribute at load time). The new value is unknown until the platform answers.
    When(Vec<String>),
    /// The attribute follows a settable enum attribute (`"follows": "power_state"`): when that
    /// changes, the new value is the followed one's new value if the prior value was one of
    /// the followed attribute's enum values (a steady state), else unknown.
    Follows(String),
}

/// How the data source of a kind finds its object (`x-data-source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSource {
    /// The attributes a data source block may set to find the object, in message order.
    pub lookup: Vec<String>,
    /// Exactly one lookup attribute must be set (`id` or `name`); otherwise any combination
    /// narrows the match, and at least one must be set.
    pub exclusive: bool,
    /// When set, the data source takes `most_recent = true` to pick, of several matches, the
    /// one whose attribute of this name (an RFC 3339 time) is the latest.
    pub most_recent_by: Option<String>,
}

/// Steps a client takes around writes of a kind (`x-lifecycle`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// After a create or an update, poll the object while this attribute has one of these
    /// values (`"wait-while": {"status": ["provisioning", "deleting"]}`); an accepted (202)
    /// delete, which passes through such a value, is waited for until the object is gone.
    pub wait_while: Option<(String, Vec<String>)>,
    /// A reference attribute that must be cleared before the object is deleted
    /// (`"detach-before-delete": "attached_to"`): the platform refuses the delete while it is
    /// set; the provider clears it first.
    pub detach_before_delete: Option<String>,
}

/// One attribute of a kind, or of a nested block, or the item of a collection.
#[derive(Debug, Clone)]
pub struct Attribute {
    /// Attribute name (empty for collection items).
    pub name: String,
    /// One line for docs.
    pub description: String,
    /// Value type.
    pub ty: AttrType,
    /// Must be given on create.
    pub required: bool,
    /// Computed-only: set by the platform, never by a client (`readOnly`).
    pub read_only: bool,
    /// The platform fills it in when the client leaves it out (optional + computed).
    pub computed: bool,
    /// Accepted on writes but never returned (`writeOnly`).
    pub write_only: bool,
    /// Must never appear in logs, plans or reports.
    pub sensitive: bool,
    /// Cannot change after create (Terraform plans a replacement).
    pub immutable: bool,
    /// A number that may only increase.
    pub grow_only: bool,
    /// Value used when the client leaves it out.
    pub default: Option<Value>,
    /// Drift severity when this attribute differs.
    pub severity: Severity,
    /// Kind whose id this attribute holds, and whether it holds that object in use.
    pub reference: Option<Reference>,
    /// For a write-only attribute: the computed attribute holding its SHA-256.
    pub hash_attribute: Option<String>,
    /// For a write-only attribute: the name of its Terraform write-only twin (`user_data_wo`),
    /// which carries the same value without it ever reaching a plan or the state. The twin's
    /// companion `<twin>_version` number says when to send it again.
    pub write_only_twin: Option<String>,
    /// For an IP: the sibling CIDR attribute it must lie inside.
    pub within: Option<String>,
    /// The kind's list endpoint filters on it (`?<name>=<value>`), and the provider's list
    /// resource offers it as a filter of `terraform query`.
    pub list_filter: bool,
    /// Value constraints.
    pub constraints: Constraints,
}

/// The type of an attribute.
#[derive(Debug, Clone)]
pub enum AttrType {
    /// UTF-8 string.
    String,
    /// 64-bit integer.
    Integer,
    /// Floating point number.
    Number,
    /// true or false.
    Bool,
    /// Ordered list of items.
    List(Box<Attribute>),
    /// Unordered set of unique items, kept sorted in canonical form.
    Set(Box<Attribute>),
    /// Map from string keys to items.
    Map(Box<Attribute>),
    /// Ordered list of nested objects, shown in Terraform as repeated `block_name { }` blocks.
    Blocks {
        /// Singular block name in HCL, e.g. `firewall_rule`.
        block_name: String,
        /// The nested object's attributes, sorted by name.
        attributes: Vec<Attribute>,
    },
}

/// Constraints on a value, as JSON Schema states them.
#[derive(Debug, Clone, Default)]
pub struct Constraints {
    /// Smallest allowed integer.
    pub minimum: Option<i64>,
    /// Largest allowed integer.
    pub maximum: Option<i64>,
    /// Longest allowed string, in characters.
    pub max_length: Option<usize>,
    /// Most items in a list, set or block list.
    pub max_items: Option<usize>,
    /// Most entries in a map.
    pub max_properties: Option<usize>,
    /// Allowed string values.
    pub enum_values: Option<Vec<String>>,
    /// Regular expression a string must match (anchored in the file).
    pub pattern: Option<Pattern>,
    /// Semantic string format.
    pub format: Option<Format>,
}

/// A compiled pattern with its source text for messages and docs.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The pattern as written in the schema file.
    pub source: String,
    /// The compiled form.
    pub regex: regex::Regex,
}

/// Semantic string formats checked beyond JSON types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `address/prefix` with zero host bits.
    Cidr,
    /// An IPv4 or IPv6 address.
    Ip,
    /// RFC 3339 timestamp.
    DateTime,
    /// A Rego module; compiled by the consumers that embed a Rego engine.
    Rego,
    /// `any`, a port, a range `a-b`, or a comma-separated list of those (1-65535).
    Ports,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    #[serde(rename = "$id")]
    _id: Option<String>,
    title: String,
    description: String,
    #[serde(rename = "type")]
    _ty: String,
    #[serde(rename = "additionalProperties")]
    _additional: Option<bool>,
    #[serde(rename = "x-kind")]
    kind: Option<String>,
    #[serde(rename = "x-terraform-type")]
    terraform_type: Option<String>,
    #[serde(rename = "x-schema-version")]
    schema_version: Option<u64>,
    #[serde(rename = "x-id-prefix")]
    id_prefix: Option<String>,
    #[serde(rename = "x-read-only-kind", default)]
    read_only_kind: bool,
    #[serde(rename = "x-not-in-state", default)]
    not_in_state: Vec<String>,
    #[serde(rename = "x-recomputed", default)]
    recomputed: BTreeMap<String, RawRecompute>,
    #[serde(rename = "x-data-source")]
    data_source: Option<RawDataSource>,
    #[serde(rename = "x-lifecycle", default)]
    lifecycle: RawLifecycle,
    properties: BTreeMap<String, RawProperty>,
    #[serde(default)]
    required: Vec<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawProperty {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    description: String,
    default: Option<Value>,
    minimum: Option<i64>,
    maximum: Option<i64>,
    #[serde(rename = "maxLength")]
    max_length: Option<usize>,
    #[serde(rename = "maxItems")]
    max_items: Option<usize>,
    #[serde(rename = "maxProperties")]
    max_properties: Option<usize>,
    #[serde(rename = "uniqueItems", default)]
    unique_items: bool,
    #[serde(rename = "enum")]
    enum_values: Option<Vec<String>>,
    pattern: Option<String>,
    format: Option<String>,
    #[serde(rename = "readOnly", default)]
    read_only: bool,
    #[serde(rename = "writeOnly", default)]
    write_only: bool,
    items: Option<Box<RawProperty>>,
    #[serde(rename = "additionalProperties")]
    additional: Option<Value>,
    properties: Option<BTreeMap<String, RawProperty>>,
    required: Option<Vec<String>>,
    #[serde(rename = "x-computed", default)]
    computed: bool,
    #[serde(rename = "x-sensitive", default)]
    sensitive: bool,
    #[serde(rename = "x-immutable", default)]
    immutable: bool,
    #[serde(rename = "x-grow-only", default)]
    grow_only: bool,
    #[serde(rename = "x-set", default)]
    set: bool,
    #[serde(rename = "x-reference")]
    reference: Option<RawReference>,
    #[serde(rename = "x-hash-attribute")]
    hash_attribute: Option<String>,
    #[serde(rename = "x-terraform-write-only")]
    write_only_twin: Option<String>,
    #[serde(rename = "x-list-filter", default)]
    list_filter: bool,
    #[serde(rename = "x-within")]
    within: Option<String>,
    #[serde(rename = "x-terraform-block")]
    block_name: Option<String>,
    #[serde(rename = "x-drift-severity")]
    severity: Option<Severity>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawReference {
    kind: String,
    #[serde(rename = "if-missing")]
    if_missing: String,
    holds: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecompute {
    when: Option<Vec<String>>,
    follows: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataSource {
    lookup: Vec<String>,
    #[serde(default)]
    exclusive: bool,
    #[serde(rename = "most-recent-by")]
    most_recent_by: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLifecycle {
    #[serde(rename = "wait-while")]
    wait_while: Option<BTreeMap<String, Vec<String>>>,
    #[serde(rename = "detach-before-delete")]
    detach_before_delete: Option<String>,
}

/// A parsed file before it becomes a [`ResourceSchema`].
pub(crate) struct ParsedFile {
    raw: RawFile,
    attributes: Vec<Attribute>,
}

pub(crate) fn parse_file(file: &str, text: &str, common: Option<&ParsedFile>) -> Result<ParsedFile, String> {
    let raw: RawFile = serde_json::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    let mut attributes = common.map(|c| c.attributes.clone()).unwrap_or_default();
    let mut required = raw.required.clone();
    if let Some(c) = common {
        required.extend(c.raw.required.iter().cloned());
    }
    for (name, prop) in &raw.properties {
        if attributes.iter().any(|a| &a.name == name) {
            return Err(format!("{file}: property {name} repeats a common attribute"));
        }
        attributes.push(convert(file, name, prop, false)?);
    }
    for attr in &mut attributes {
        attr.required = required.contains(&attr.name);
    }
    for name in &required {
        if !attributes.iter().any(|a| &a.name == name) {
            return Err(format!("{file}: required names unknown property {name}"));
        }
    }
    attributes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ParsedFile { raw, attributes })
}

impl ParsedFile {
    pub(crate) fn into_resource(self, file: &str) -> Result<ResourceSchema, String> {
        let missing = |what: &str| format!("{file}: missing {what}");
        let collection = self.raw.kind.ok_or_else(|| missing("x-kind"))?;
        let kind = Kind::from_collection(&collection).ok_or_else(|| format!("{file}: unknown x-kind {collection}"))?;
        let terraform_type = self.raw.terraform_type.ok_or_else(|| missing("x-terraform-type"))?;
        if terraform_type != self.raw.title {
            return Err(format!("{file}: title must equal x-terraform-type"));
        }
        for attr in &self.attributes {
            if let Some(hash) = &attr.hash_attribute
                && !self.attributes.iter().any(|a| &a.name == hash && a.read_only)
            {
                return Err(format!("{file}: {}: x-hash-attribute {hash} must be a readOnly property", attr.name));
            }
            if let Some(within) = &attr.within
                && !self.attributes.iter().any(|a| &a.name == within && a.constraints.format == Some(Format::Cidr))
            {
                return Err(format!("{file}: {}: x-within {within} must name a cidr property", attr.name));
            }
        }
        let known = |what: &str, name: &str| -> Result<&Attribute, String> {
            self.attributes.iter().find(|a| a.name == name).ok_or_else(|| format!("{file}: {what} names unknown property {name}"))
        };
        for name in &self.raw.not_in_state {
            known("x-not-in-state", name)?;
        }
        let mut recomputed = Vec::new();
        for (name, rule) in &self.raw.recomputed {
            if !known("x-recomputed", name)?.computed {
                return Err(format!("{file}: x-recomputed: {name} must be readOnly or x-computed"));
            }
            let trigger = match (&rule.when, &rule.follows) {
                (Some(when), None) if when.as_slice() == ["*"] => {
                    Trigger::When(self.attributes.iter().filter(|a| !a.read_only).map(|a| a.name.clone()).collect())
                }
                (Some(when), None) => {
                    for t in when {
                        if known("x-recomputed", t)?.read_only {
                            return Err(format!("{file}: x-recomputed: {name} is triggered by {t}, which no client sets"));
                        }
                    }
                    Trigger::When(when.clone())
                }
                (None, Some(followed)) => {
                    if known("x-recomputed", followed)?.constraints.enum_values.is_none() {
                        return Err(format!("{file}: x-recomputed: {name} follows {followed}, which needs an enum"));
                    }
                    Trigger::Follows(followed.clone())
                }
                _ => return Err(format!("{file}: x-recomputed: {name} needs exactly one of when, follows")),
            };
            recomputed.push(Recompute { attribute: name.clone(), trigger });
        }
        let data_source = match self.raw.data_source {
            None => None,
            Some(ds) => {
                for name in ds.lookup.iter().chain(&ds.most_recent_by) {
                    known("x-data-source", name)?;
                }
                Some(DataSource { lookup: ds.lookup, exclusive: ds.exclusive, most_recent_by: ds.most_recent_by })
            }
        };
        let wait_while = match self.raw.lifecycle.wait_while {
            None => None,
            Some(map) => {
                let mut entries = map.into_iter();
                let (name, values) = entries.next().ok_or_else(|| format!("{file}: x-lifecycle: wait-while names no attribute"))?;
                if entries.next().is_some() {
                    return Err(format!("{file}: x-lifecycle: wait-while names one attribute"));
                }
                let allowed = known("x-lifecycle", &name)?.constraints.enum_values.clone().unwrap_or_default();
                if let Some(v) = values.iter().find(|v| !allowed.contains(v)) {
                    return Err(format!("{file}: x-lifecycle: {v} is not a value of {name}"));
                }
                Some((name, values))
            }
        };
        if let Some(name) = &self.raw.lifecycle.detach_before_delete
            && known("x-lifecycle", name)?.reference.is_none()
        {
            return Err(format!("{file}: x-lifecycle: detach-before-delete {name} must be an x-reference"));
        }
        Ok(ResourceSchema {
            kind,
            terraform_type,
            description: self.raw.description,
            schema_version: self.raw.schema_version.ok_or_else(|| missing("x-schema-version"))?,
            id_prefix: self.raw.id_prefix.ok_or_else(|| missing("x-id-prefix"))?,
            read_only_kind: self.raw.read_only_kind,
            not_in_state: self.raw.not_in_state,
            recomputed,
            data_source,
            lifecycle: Lifecycle { wait_while, detach_before_delete: self.raw.lifecycle.detach_before_delete },
            attributes: self.attributes,
        })
    }
}

fn convert(file: &str, name: &str, p: &RawProperty, is_item: bool) -> Result<Attribute, String> {
    let at = |msg: String| format!("{file}: {name}: {msg}");
    let item = |p: &RawProperty| convert(file, name, p, true).map(Box::new);
    let ty = match p.ty.as_str() {
        "string" => AttrType::String,
        "integer" => AttrType::Integer,
        "number" => AttrType::Number,
        "boolean" => AttrType::Bool,
        "array" => {
            let items = p.items.as_deref().ok_or_else(|| at("array needs items".into()))?;
            if items.ty == "object" {
                let block_name = p.block_name.clone().ok_or_else(|| at("object items need x-terraform-block".into()))?;
                let props = items.properties.as_ref().ok_or_else(|| at("object items need properties".into()))?;
                let required = items.required.clone().unwrap_or_default();
                let mut attributes = Vec::new();
                for (n, child) in props {
                    let mut a = convert(file, &format!("{name}.{n}"), child, false)?;
                    a.name = n.clone();
                    a.required = required.contains(n);
                    attributes.push(a);
                }
                attributes.sort_by(|a, b| a.name.cmp(&b.name));
                AttrType::Blocks { block_name, attributes }
            } else if p.set {
                if !p.unique_items {
                    return Err(at("x-set needs uniqueItems".into()));
                }
                AttrType::Set(item(items)?)
            } else {
                AttrType::List(item(items)?)
            }
        }
        "object" => {
            let value = p.additional.clone().ok_or_else(|| at("maps need additionalProperties".into()))?;
            let value: RawProperty = serde_json::from_value(value).map_err(|e| at(e.to_string()))?;
            AttrType::Map(item(&value)?)
        }
        other => return Err(at(format!("unknown type {other}"))),
    };
    let format = match p.format.as_deref() {
        None => None,
        Some("cidr") => Some(Format::Cidr),
        Some("ip") => Some(Format::Ip),
        Some("date-time") => Some(Format::DateTime),
        Some("rego") => Some(Format::Rego),
        Some("ports") => Some(Format::Ports),
        Some(other) => return Err(at(format!("unknown format {other}"))),
    };
    let pattern = match &p.pattern {
        None => None,
        Some(source) => Some(Pattern { source: source.clone(), regex: regex::Regex::new(source).map_err(|e| at(e.to_string()))? }),
    };
    let reference = match &p.reference {
        None => None,
        Some(r) => Some(Reference {
            kind: Kind::from_collection(&r.kind).ok_or_else(|| at(format!("unknown x-reference kind {}", r.kind)))?,
            if_missing: r.if_missing.clone(),
            holds: r.holds.clone(),
        }),
    };
    if !is_item && p.description.is_empty() {
        return Err(at("needs a description".into()));
    }
    if !is_item && p.severity.is_none() {
        return Err(at("needs x-drift-severity".into()));
    }
    if p.write_only_twin.is_some() && (!p.write_only || p.hash_attribute.is_none()) {
        return Err(at("x-terraform-write-only needs writeOnly and x-hash-attribute (drift of the value is found through its hash)".into()));
    }
    Ok(Attribute {
        name: if is_item { String::new() } else { name.to_string() },
        description: p.description.clone(),
        ty,
        required: false,
        read_only: p.read_only,
        computed: p.read_only || p.computed,
        write_only: p.write_only,
        sensitive: p.sensitive || p.write_only,
        immutable: p.immutable,
        grow_only: p.grow_only,
        default: p.default.clone(),
        severity: p.severity.unwrap_or_default(),
        reference,
        hash_attribute: p.hash_attribute.clone(),
        write_only_twin: p.write_only_twin.clone(),
        list_filter: p.list_filter,
        within: p.within.clone(),
        constraints: Constraints {
            minimum: p.minimum,
            maximum: p.maximum,
            max_length: p.max_length,
            max_items: p.max_items,
            max_properties: p.max_properties,
            enum_values: p.enum_values.clone(),
            pattern,
            format,
        },
    })
}
