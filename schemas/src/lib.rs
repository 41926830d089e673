//! The shape of every NovaCron kind, loaded from the JSON Schema files in `schemas/resources/`.
//!
//! This crate is the single source of truth that the platform's validation, the provider's
//! Terraform schema, the reconciler's canonicalisation and severity, and the docs all read.
//! It performs no I/O: the schema files are embedded at compile time.

mod canonical;
pub mod duration;
mod model;
pub mod net;
mod severity;
mod validate;
pub mod wire;

use std::sync::OnceLock;

pub use canonical::{canonical_json, content_hash, sha256_hex};
pub use model::{AttrType, Attribute, Constraints, Format, ResourceSchema};
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
    fn kind_names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_collection(kind.collection()), Some(kind));
            assert_eq!(Kind::from_terraform_type(kind.terraform_type()), Some(kind));
        }
        assert_eq!(Kind::from_collection("widgets"), None);
    }
}
