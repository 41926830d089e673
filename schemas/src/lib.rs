//! The shape of every NovaCron kind, loaded from the JSON Schema files in `schemas/resources/`.
//!
//! This crate is the single source of truth that the platform's validation, the provider's
//! Terraform schema, the reconciler's canonicalisation and severity, and the docs all read.
//! It performs no I/O: the schema files are embedded at compile time.
//!
//! # Per-kind behaviour
//!
//! Besides shapes, the files declare what each kind *does*, so no consumer restates it with
//! a `match kind` (every annotation is in [`ANNOTATIONS`], and a test names who reads each):
//!
//! - On a property, `x-reference: {kind, if-missing, holds}`: the attribute holds the id of an
//!   object of `kind`. The platform refuses a write naming an absent one (422, with the
//!   `if-missing` advice); with `holds`, deleting the referenced object is refused (409 "in
//!   use", with the `holds` advice) while anything names it.
//! - `x-recomputed: {attribute: {when: [...]} | {follows: attr}}`: computed attributes the
//!   platform recomputes on a write and what triggers them (`"*"`: any settable attribute).
//!   The provider plans them unknown (or, for `follows`, as the followed value).
//! - `x-not-in-state: [...]`: attributes the platform serves that never go into Terraform
//!   state (they change on every write).
//! - `x-data-source: {lookup, exclusive, most-recent-by}`: the kind has a Terraform data source
//!   that finds its object by these attributes.
//! - `x-lifecycle: {wait-while: {attr: [values]}, detach-before-delete: attr}`: the provider
//!   polls after a write while the attribute has one of the values; a reference that must be
//!   cleared before a delete (the platform refuses the delete while it is set).
//! - `x-schema-version`: the version of the Terraform state layout the provider serves.
//! - On a property, `x-list-filter: true`: the list endpoint filters on it (`?network_id=...`),
//!   and the provider's list resource for `terraform query` offers it (with `name_prefix`,
//!   which every kind has).

mod canonical;
#[cfg(test)]
mod consumers;
pub mod duration;
mod model;
pub mod net;
mod severity;
mod validate;
pub mod wire;

use std::sync::OnceLock;

pub use canonical::{canonical_json, content_hash, sha256_hex};
pub use model::{AttrType, Attribute, Constraints, DataSource, Format, Lifecycle, Recompute, Reference, ResourceSchema, Trigger};
pub use severity::Severity;
pub use validate::{FieldError, Violation};

/// A kind of object served by the platform API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A virtual machine (`/v1/vms`, `novacron_vm`).
    Vm,
    /// A virtual network (`/v1/networks`, `novacron_network`).
    Network,
    /// A block storage volume (`/v1/volumes`, `novacron_storage`).
    Volume,
    /// An admission policy (`/v1/policies`, `novacron_policy`).
    Policy,
    /// A read-only catalogue image (`/v1/templates`, data source `novacron_template`).
    Template,
}

impl Kind {
    /// Every kind, in the order the API documents them.
    pub const ALL: [Kind; 5] = [Kind::Vm, Kind::Network, Kind::Volume, Kind::Policy, Kind::Template];
    /// The kinds a client can create, update and delete.
    pub const MANAGED: [Kind; 4] = [Kind::Vm, Kind::Network, Kind::Volume, Kind::Policy];

    /// The collection segment of the API path: `vms`, `networks`, `volumes`, `policies`, `templates`.
    pub fn collection(self) -> &'static str {
        match self {
            Kind::Vm => "vms",
            Kind::Network => "networks",
            Kind::Volume => "volumes",
            Kind::Policy => "policies",
            Kind::Template => "templates",
        }
    }

    /// The kind served at an API collection segment.
    pub fn from_collection(segment: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.collection() == segment)
    }

    /// The singular noun used in messages and in Rego input (`vm`, `network`, `volume`, ...).
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Vm => "vm",
            Kind::Network => "network",
            Kind::Volume => "volume",
            Kind::Policy => "policy",
            Kind::Template => "template",
        }
    }

    /// The Terraform type name (`novacron_vm`, ..., `novacron_storage` for volumes).
    pub fn terraform_type(self) -> &'static str {
        match self {
            Kind::Vm => "novacron_vm",
            Kind::Network => "novacron_network",
            Kind::Volume => "novacron_storage",
            Kind::Policy => "novacron_policy",
            Kind::Template => "novacron_template",
        }
    }

    /// The kind behind a Terraform type name.
    pub fn from_terraform_type(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.terraform_type() == name)
    }

    /// This kind's schema.
    pub fn schema(self) -> &'static ResourceSchema {
        catalog().get(self)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.singular())
    }
}

/// All resource schemas, parsed once from the embedded files.
#[derive(Debug)]
pub struct Catalog {
    schemas: Vec<ResourceSchema>,
}

impl Catalog {
    /// The schema of one kind.
    pub fn get(&self, kind: Kind) -> &ResourceSchema {
        self.schemas.iter().find(|s| s.kind == kind).expect("the catalogue holds one schema per Kind, checked when it is loaded")
    }

    /// Every schema, in `Kind::ALL` order.
    pub fn all(&self) -> &[ResourceSchema] {
        &self.schemas
    }
}

/// Every `x-` annotation the loader understands, file-level and property-level. A test checks
/// it against the loader's source, and `consumers.rs` names the code that reads each one.
pub const ANNOTATIONS: &[&str] = &[
    "x-kind",
    "x-terraform-type",
    "x-schema-version",
    "x-id-prefix",
    "x-read-only-kind",
    "x-not-in-state",
    "x-recomputed",
    "x-data-source",
    "x-lifecycle",
    "x-list-filter",
    "x-computed",
    "x-sensitive",
    "x-immutable",
    "x-grow-only",
    "x-set",
    "x-reference",
    "x-hash-attribute",
    "x-terraform-write-only",
    "x-within",
    "x-terraform-block",
    "x-drift-severity",
];

impl Catalog {
    /// The attributes, of any kind, whose reference holds an object of `kind` in use:
    /// (the referencing kind, its attribute, the advice when a delete is refused).
    pub fn holders_of(&self, kind: Kind) -> impl Iterator<Item = (Kind, &Attribute, &str)> {
        self.schemas
            .iter()
            .flat_map(move |s| s.references().filter(move |(_, r)| r.kind == kind).filter_map(move |(a, r)| Some((s.kind, a, r.holds.as_deref()?))))
    }
}

/// The embedded schema files: (file name, contents).
pub const SCHEMA_FILES: [(&str, &str); 6] = [
    ("common.json", include_str!("../resources/common.json")),
    ("vm.json", include_str!("../resources/vm.json")),
    ("network.json", include_str!("../resources/network.json")),
    ("volume.json", include_str!("../resources/volume.json")),
    ("policy.json", include_str!("../resources/policy.json")),
    ("template.json", include_str!("../resources/template.json")),
];

/// The catalogue of all kinds. The embedded files are checked by this crate's tests, so a
/// malformed file fails `cargo test` long before it can reach this `expect`.
pub fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| load_catalog().expect("embedded schema files are valid (see schemas tests)"))
}

/// Parses the embedded schema files, naming the file and problem on failure.
pub fn load_catalog() -> Result<Catalog, String> {
    let common = model::parse_file(SCHEMA_FILES[0].0, SCHEMA_FILES[0].1, None)?;
    let mut schemas = Vec::new();
    for (file, text) in &SCHEMA_FILES[1..] {
        schemas.push(model::parse_file(file, text, Some(&common))?.into_resource(file)?);
    }
    for kind in Kind::ALL {
        let n = schemas.iter().filter(|s| s.kind == kind).count();
        if n != 1 {
            return Err(format!("expected one schema for kind {kind}, found {n}"));
        }
    }
    schemas.sort_by_key(|s| s.kind);
    Ok(Catalog { schemas })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_loads_and_every_kind_has_a_schema() {
        let catalog = load_catalog().expect("schemas load");
        for kind in Kind::ALL {
            let schema = catalog.get(kind);
            assert_eq!(schema.terraform_type, kind.terraform_type());
            assert!(schema.attribute("id").is_some_and(|a| a.read_only));
            assert!(schema.attribute("name").is_some());
            for attr in &schema.attributes {
                assert!(!attr.description.is_empty(), "{kind}.{} needs a description", attr.name);
            }
        }
    }

    #[test]
    fn per_kind_behaviour_is_read_from_the_files() {
        let vm = Kind::Vm.schema();
        assert_eq!(vm.schema_version, 1, "the provider serves novacron_vm state version 1");
        assert!(!vm.in_state("updated_at") && !vm.in_state("version") && vm.in_state("ip_address"));
        assert!(Kind::Policy.schema().in_state("version") && !Kind::Policy.schema().in_state("updated_at"));
        assert_eq!(
            vm.recomputed,
            [
                Recompute { attribute: "ip_address".into(), trigger: Trigger::When(vec!["network_id".into()]) },
                Recompute { attribute: "status".into(), trigger: Trigger::Follows("power_state".into()) },
            ]
        );
        let policy_version = &Kind::Policy.schema().recomputed[0];
        let Trigger::When(triggers) = &policy_version.trigger else { panic!("{policy_version:?}") };
        assert!(triggers.contains(&"rule".to_string()) && !triggers.contains(&"version".to_string()), "`*` is every settable attribute: {triggers:?}");
        assert_eq!(vm.lifecycle.wait_while, Some(("status".into(), vec!["provisioning".into(), "deleting".into()])));
        assert_eq!(Kind::Volume.schema().lifecycle.detach_before_delete.as_deref(), Some("attached_to"));
        let with_data_sources: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.schema().data_source.is_some()).collect();
        assert_eq!(with_data_sources, [Kind::Vm, Kind::Network, Kind::Template]);
        let templates = Kind::Template.schema().data_source.as_ref().expect("template data source");
        assert_eq!(templates.lookup, ["id", "name", "os", "os_version", "arch"]);
        assert_eq!((templates.exclusive, templates.most_recent_by.as_deref()), (false, Some("released_at")));
    }

    #[test]
    fn references_say_what_holds_what() {
        let holders = |kind: Kind| catalog().holders_of(kind).map(|(k, a, _)| (k, a.name.clone())).collect::<Vec<_>>();
        assert_eq!(holders(Kind::Network), [(Kind::Vm, "network_id".to_string())]);
        assert_eq!(holders(Kind::Vm), [(Kind::Volume, "attached_to".to_string())]);
        assert!(holders(Kind::Template).is_empty(), "a template is referenced but never held in use");
        let template_id = Kind::Vm.schema().attribute("template_id").and_then(|a| a.reference.as_ref()).expect("reference");
        assert_eq!(template_id.kind, Kind::Template);
    }

    #[test]
    fn behaviour_naming_an_unknown_attribute_is_refused() {
        let common = model::parse_file(SCHEMA_FILES[0].0, SCHEMA_FILES[0].1, None).expect("common");
        let load = |text: &str| model::parse_file("x.json", text, Some(&common)).and_then(|p| p.into_resource("x.json")).map(|_| ());
        let vm = SCHEMA_FILES[1].1;
        let broken = vm.replace(r#""ip_address": { "when": ["network_id"] }"#, r#""ip_address": { "when": ["network"] }"#);
        assert_eq!(load(&broken), Err("x.json: x-recomputed names unknown property network".into()));
        let broken = vm.replace(r#""follows": "power_state""#, r#""follows": "cpu_cores""#);
        assert_eq!(load(&broken), Err("x.json: x-recomputed: status follows cpu_cores, which needs an enum".into()));
        let broken = vm.replace(r#""status": ["provisioning", "deleting"]"#, r#""status": ["booting"]"#);
        assert_eq!(load(&broken), Err("x.json: x-lifecycle: booting is not a value of status".into()));
        let broken = vm.replace(r#""lookup": ["id", "name"]"#, r#""lookup": ["id", "label"]"#);
        assert_eq!(load(&broken), Err("x.json: x-data-source names unknown property label".into()));
        assert!(load(vm).is_ok());
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_collection(kind.collection()), Some(kind));
            assert_eq!(Kind::from_terraform_type(kind.terraform_type()), Some(kind));
        }
        assert_eq!(Kind::from_collection("widgets"), None);
    }
}
