//! Terraform schemas of the provider, its resources and data sources, derived from the
//! resource schemas in `schemas/` (nothing about an attribute is restated here).

use std::sync::OnceLock;

use novacron_schemas::{AttrType, Attribute, Kind};
use serde_json::{Value as Json, json};

use crate::proto::tfplugin5::{Schema, StringKind, schema};

/// A cty type.
#[derive(Debug, Clone, PartialEq)]
pub enum TfType {
    /// `string`
    String,
    /// `number`
    Number,
    /// `bool`
    Bool,
    /// `list(T)`
    List(Box<TfType>),
    /// `set(T)`
    Set(Box<TfType>),
    /// `map(T)`
    Map(Box<TfType>),
    /// `object({...})`
    Object(Vec<(String, TfType)>),
}

impl TfType {
    /// The JSON type expression Terraform expects in schemas.
    pub fn to_json(&self) -> Json {
        match self {
            TfType::String => json!("string"),
            TfType::Number => json!("number"),
            TfType::Bool => json!("bool"),
            TfType::List(t) => json!(["list", t.to_json()]),
            TfType::Set(t) => json!(["set", t.to_json()]),
            TfType::Map(t) => json!(["map", t.to_json()]),
            TfType::Object(fields) => json!(["object", fields.iter().map(|(k, t)| (k.clone(), t.to_json())).collect::<serde_json::Map<_, _>>()]),
        }
    }
}

/// One attribute of a Terraform block.
#[derive(Debug, Clone)]
pub struct TfAttr {
    /// Name in HCL.
    pub name: String,
    /// Its type.
    pub ty: TfType,
    /// Must be set.
    pub required: bool,
    /// May be set.
    pub optional: bool,
    /// The provider may set it.
    pub computed: bool,
    /// Hidden in plans and output.
    pub sensitive: bool,
    /// Write-only (Terraform >= 1.11): in the configuration only, never in a plan or the state.
    pub write_only: bool,
    /// Docs text.
    pub description: String,
    /// The attribute of `schemas/` it maps to (absent for provider-only attributes).
    pub source: Option<Attribute>,
}

/// How a nested block repeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Nesting {
    /// At most one (`timeouts`).
    Single,
    /// An ordered list (`firewall_rule`).
    List,
}

/// A nested block type.
#[derive(Debug, Clone)]
pub struct TfBlockType {
    /// Block name in HCL (`firewall_rule`).
    pub type_name: String,
    /// The API attribute holding the list (`firewall_rules`); empty for `timeouts`.
    pub api_name: String,
    /// Single or list.
    pub nesting: Nesting,
    /// Most blocks allowed (0: no limit).
    pub max_items: i64,
    /// The block's contents.
    pub block: TfBlock,
}

/// A block: attributes and nested block types.
#[derive(Debug, Clone, Default)]
pub struct TfBlock {
    /// Docs text.
    pub description: String,
    /// Attributes.
    pub attributes: Vec<TfAttr>,
    /// Nested block types.
    pub blocks: Vec<TfBlockType>,
}

impl TfBlock {
    /// The attribute called `name`.
    pub fn attr(&self, name: &str) -> Option<&TfAttr> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// Write-only attributes and the computed attribute carrying each one's SHA-256
    /// (`user_data` -> `user_data_sha256`), as `x-hash-attribute` in `schemas/` declares.
    pub fn hashed(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attributes.iter().filter_map(|a| Some((a.name.as_str(), a.source.as_ref()?.hash_attribute.as_deref()?)))
    }

    /// Write-only twins: (twin, the API attribute it feeds, the twin's version attribute),
    /// e.g. (`user_data_wo`, `user_data`, `user_data_wo_version`).
    pub fn write_only_twins(&self) -> impl Iterator<Item = (&str, &str, String)> {
        self.attributes.iter().filter_map(|a| {
            let src = a.source.as_ref()?;
            let twin = src.write_only_twin.as_deref()?;
            Some((twin, a.name.as_str(), format!("{twin}_version")))
        })
    }

    /// Names of the attributes a configuration can set.
    pub fn settable(&self) -> impl Iterator<Item = &str> {
        self.attributes.iter().filter(|a| a.source.as_ref().is_some_and(|s| !s.read_only)).map(|a| a.name.as_str())
    }
}

/// A resource or data source type.
#[derive(Debug, Clone)]
pub struct TypeSchema {
    /// The NovaCron kind behind it.
    pub kind: Kind,
    /// Terraform type name.
    pub type_name: String,
    /// State schema version.
    pub version: i64,
    /// The top-level block.
    pub block: TfBlock,
}

fn tf_type(ty: &AttrType) -> TfType {
    match ty {
        AttrType::String => TfType::String,
        AttrType::Integer | AttrType::Number => TfType::Number,
        AttrType::Bool => TfType::Bool,
        AttrType::List(item) => TfType::List(Box::new(tf_type(&item.ty))),
        AttrType::Set(item) => TfType::Set(Box::new(tf_type(&item.ty))),
        AttrType::Map(item) => TfType::Map(Box::new(tf_type(&item.ty))),
        AttrType::Blocks { attributes, .. } => TfType::List(Box::new(TfType::Object(attributes.iter().map(|a| (a.name.clone(), tf_type(&a.ty))).collect()))),
    }
}

fn describe(a: &Attribute) -> String {
    let mut d = a.description.clone();
    if let Some(default) = &a.default {
        d.push_str(&format!(" Defaults to `{default}`."));
    }
    if let Some(values) = &a.constraints.enum_values {
        d.push_str(&format!(" One of: {}.", values.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")));
    }
    if let (Some(lo), Some(hi)) = (a.constraints.minimum, a.constraints.maximum) {
        d.push_str(&format!(" Between {lo} and {hi}."));
    }
    if a.immutable {
        d.push_str(" Changing it forces a new resource.");
    }
    d
}

fn managed_attr(a: &Attribute) -> TfAttr {
    let settable = !a.read_only;
    TfAttr {
        name: a.name.clone(),
        ty: tf_type(&a.ty),
        required: settable && a.required,
        optional: settable && !a.required,
        computed: a.read_only || (!a.required && (a.default.is_some() || a.computed)),
        sensitive: a.sensitive,
        write_only: false,
        description: describe(a),
        source: Some(a.clone()),
    }
}

/// The write-only twin of a write-only API attribute (`user_data_wo` for `user_data`) and its
/// `<twin>_version` companion, as `x-terraform-write-only` in `schemas/` declares.
fn write_only_twin(a: &Attribute, twin: &str) -> [TfAttr; 2] {
    [
        TfAttr {
            name: twin.to_string(),
            ty: tf_type(&a.ty),
            required: false,
            optional: true,
            computed: false,
            sensitive: true,
            write_only: true,
            description: format!(
                "{} Write-only (Terraform 1.11 or later): the value is sent to the platform but never stored in the plan or the state; \
                 `{}` follows it. Conflicts with `{}`. Sent on create, and on update only when `{twin}_version` changes.",
                a.description,
                a.hash_attribute.as_deref().unwrap_or("the hash"),
                a.name
            ),
            source: None,
        },
        TfAttr {
            name: format!("{twin}_version"),
            ty: TfType::Number,
            required: false,
            optional: true,
            computed: false,
            sensitive: false,
            write_only: false,
            description: format!("Change it (e.g. increment it) to send a new `{twin}`: a changed `{twin}` with the same version plans nothing."),
            source: None,
        },
    ]
}

fn timeouts_block() -> TfBlockType {
    let attr = |name: &str, what: &str| TfAttr {
        name: name.to_string(),
        ty: TfType::String,
        required: false,
        optional: true,
        computed: false,
        sensitive: false,
        write_only: false,
        description: format!("How long to wait for {what}, as a duration such as `30s`, `10m` or `1h`. Defaults to 10m."),
        source: None,
    };
    TfBlockType {
        type_name: "timeouts".into(),
        api_name: String::new(),
        nesting: Nesting::Single,
        max_items: 0,
        block: TfBlock {
            description: "Time limits for the platform to finish an operation.".into(),
            attributes: vec![attr("create", "a create"), attr("update", "an update"), attr("delete", "a delete")],
            blocks: vec![],
        },
    }
}

fn build_resource(kind: Kind) -> TypeSchema {
    let schema = kind.schema();
    let mut block = TfBlock { description: schema.description.clone(), ..Default::default() };
    // `x-not-in-state`: what changes on every write would show as noise in every plan.
    for a in &schema.attributes {
        if !schema.in_state(&a.name) {
            continue;
        }
        if let AttrType::Blocks { block_name, attributes } = &a.ty {
            let nested = TfBlock { description: a.description.clone(), attributes: attributes.iter().map(managed_attr).collect(), blocks: vec![] };
            block.blocks.push(TfBlockType {
                type_name: block_name.clone(),
                api_name: a.name.clone(),
                nesting: Nesting::List,
                max_items: a.constraints.max_items.map_or(0, |m| m as i64),
                block: nested,
            });
            continue;
        }
        block.attributes.push(managed_attr(a));
        if let Some(twin) = &a.write_only_twin {
            block.attributes.extend(write_only_twin(a, twin));
        }
    }
    block.attributes.sort_by(|a, b| a.name.cmp(&b.name));
    block.blocks.push(timeouts_block());
    // `x-schema-version`; `upgrade.rs` holds the steps from older versions.
    let version = i64::try_from(schema.schema_version).expect("schema versions are small");
    TypeSchema { kind, type_name: kind.terraform_type().to_string(), version, block }
}

fn build_data_source(kind: Kind) -> TypeSchema {
    let schema = kind.schema();
    let data_source = schema.data_source.as_ref().expect("data sources are built for kinds with x-data-source");
    let mut block = TfBlock { description: format!("Looks up one existing object. {}", schema.description), ..Default::default() };
    for a in &schema.attributes {
        if !schema.in_state(&a.name) || a.write_only {
            continue;
        }
        let is_lookup = data_source.lookup.contains(&a.name);
        block.attributes.push(TfAttr {
            name: a.name.clone(),
            ty: tf_type(&a.ty),
            required: false,
            optional: is_lookup,
            computed: true,
            sensitive: a.sensitive,
            write_only: false,
            description: if is_lookup { format!("{} Used to find the object.", a.description) } else { a.description.clone() },
            source: Some(a.clone()),
        });
    }
    if data_source.most_recent_by.is_some() {
        block.attributes.push(TfAttr {
            name: "most_recent".into(),
            ty: TfType::Bool,
            required: false,
            optional: true,
            computed: false,
            sensitive: false,
            write_only: false,
            description: "When several templates match, pick the one released last instead of failing.".into(),
            source: None,
        });
    }
    TypeSchema { kind, type_name: kind.terraform_type().to_string(), version: 0, block }
}

/// The managed resource types.
pub fn resources() -> &'static [TypeSchema] {
    static R: OnceLock<Vec<TypeSchema>> = OnceLock::new();
    R.get_or_init(|| Kind::MANAGED.into_iter().map(build_resource).collect())
}

/// The data source types.
pub fn data_sources() -> &'static [TypeSchema] {
    static D: OnceLock<Vec<TypeSchema>> = OnceLock::new();
    D.get_or_init(|| Kind::ALL.into_iter().filter(|k| k.schema().data_source.is_some()).map(build_data_source).collect())
}

/// The resource type called `name`.
pub fn resource(name: &str) -> Option<&'static TypeSchema> {
    resources().iter().find(|r| r.type_name == name)
}

/// The data source type called `name`.
pub fn data_source(name: &str) -> Option<&'static TypeSchema> {
    data_sources().iter().find(|r| r.type_name == name)
}

/// The provider block.
pub fn provider_block() -> TfBlock {
    let attr = |name: &str, ty: TfType, sensitive: bool, description: &str| TfAttr {
        name: name.into(),
        ty,
        required: false,
        optional: true,
        computed: false,
        sensitive,
        write_only: false,
        description: description.into(),
        source: None,
    };
    TfBlock {
        description: "The NovaCron provider manages VMs, networks, storage volumes and policies on the NovaCron platform.".into(),
        attributes: vec![
            attr(
                "endpoint",
                TfType::String,
                false,
                &format!("Base URL of the platform API. Defaults to the NOVACRON_ENDPOINT environment variable, then `{}`.", novacron_client::DEFAULT_ENDPOINT),
            ),
            attr("api_key", TfType::String, true, "API key. Defaults to the NOVACRON_API_KEY environment variable. Sensitive: never shown."),
            attr("timeout", TfType::Number, false, "Seconds to wait for each API request. Defaults to 30."),
            attr("max_retries", TfType::Number, false, "Retries of a failed idempotent request (with backoff). Defaults to 4."),
            attr(
                "ca_file",
                TfType::String,
                false,
                "PEM file of CA certificates to trust for an `https://` endpoint, besides the public roots (a private CA). Defaults to the NOVACRON_CA_FILE environment variable.",
            ),
            attr(
                "insecure",
                TfType::Bool,
                false,
                "Skip checking the platform's TLS certificate. Only for trying things out: every run warns. Defaults to the NOVACRON_INSECURE environment variable, then false.",
            ),
        ],
        blocks: vec![],
    }
}

/// Converts a block to its protocol form.
pub fn to_proto_block(b: &TfBlock) -> schema::Block {
    schema::Block {
        version: 0,
        attributes: b
            .attributes
            .iter()
            .map(|a| schema::Attribute {
                name: a.name.clone(),
                r#type: a.ty.to_json().to_string().into_bytes(),
                description: a.description.clone(),
                required: a.required,
                optional: a.optional,
                computed: a.computed,
                sensitive: a.sensitive,
                description_kind: StringKind::Markdown as i32,
                deprecated: false,
                write_only: a.write_only,
            })
            .collect(),
        block_types: b
            .blocks
            .iter()
            .map(|n| schema::NestedBlock {
                type_name: n.type_name.clone(),
                block: Some(to_proto_block(&n.block)),
                nesting: match n.nesting {
                    Nesting::Single => schema::nested_block::NestingMode::Single as i32,
                    Nesting::List => schema::nested_block::NestingMode::List as i32,
                },
                min_items: 0,
                max_items: n.max_items,
            })
            .collect(),
        description: b.description.clone(),
        description_kind: StringKind::Markdown as i32,
        deprecated: false,
    }
}

/// A full protocol schema for a type.
pub fn to_proto(t: &TypeSchema) -> Schema {
    Schema { version: t.version, block: Some(to_proto_block(&t.block)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_schema_has_the_planning_flags() {
        let vm = resource("novacron_vm").expect("vm");
        let a = |n: &str| vm.block.attr(n).unwrap_or_else(|| panic!("{n}"));
        assert!(a("cpu_cores").required);
        assert!(a("disk_gb").optional && a("disk_gb").computed, "defaults need optional+computed");
        assert!(a("user_data").sensitive && a("user_data").optional);
        assert!(a("status").computed && !a("status").optional);
        assert!(vm.block.attr("updated_at").is_none());
        assert!(vm.block.blocks.iter().any(|b| b.type_name == "timeouts"));
        let net = resource("novacron_network").expect("network");
        let rules = net.block.blocks.iter().find(|b| b.type_name == "firewall_rule").expect("firewall_rule block");
        assert_eq!(rules.api_name, "firewall_rules");
        assert!(rules.block.attr("direction").expect("direction").required);
        assert_eq!(resource("novacron_storage").expect("storage").kind, Kind::Volume);
    }

    #[test]
    fn data_sources_look_up_by_id_or_name() {
        let ds = data_source("novacron_network").expect("network ds");
        assert!(ds.block.attr("name").expect("name").optional);
        assert_eq!(ds.block.attr("firewall_rules").expect("rules").ty.to_json()[0], "list");
        assert!(data_source("novacron_template").expect("template").block.attr("most_recent").is_some());
        assert!(ds.block.attr("most_recent").is_none());
        let names: Vec<&str> = data_sources().iter().map(|d| d.type_name.as_str()).collect();
        assert_eq!(names, ["novacron_vm", "novacron_network", "novacron_template"]);
        let lookup = |t: &str| -> Vec<String> {
            let ds = data_source(t).expect("data source");
            ds.block.attributes.iter().filter(|a| a.optional && a.source.is_some()).map(|a| a.name.clone()).collect()
        };
        assert_eq!(lookup("novacron_vm"), ["id", "name"]);
        assert_eq!(lookup("novacron_template"), ["arch", "id", "name", "os", "os_version"]);
    }

    #[test]
    fn state_versions_and_state_fields_come_from_the_schemas() {
        let version = |t: &str| resource(t).expect("resource").version;
        assert_eq!(version("novacron_vm"), 1, "v1 dropped updated_at and version from vm state (upgrade.rs)");
        assert_eq!(version("novacron_network"), 0);
        let policy = resource("novacron_policy").expect("policy");
        assert!(policy.block.attr("version").is_some() && policy.block.attr("updated_at").is_none());
        assert!(resource("novacron_storage").expect("storage").block.attr("version").is_none());
        assert!(data_source("novacron_template").expect("template").block.attr("updated_at").is_none());
    }
}
