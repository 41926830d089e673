//! Terraform's write-only twins of write-only attributes (`user_data_wo` with `user_data_wo_version`), as `x-terraform-write-only` in `schemas/` declares them.
//!
//! A twin is a Terraform argument, not an API attribute: it carries its attribute's value to the
//! platform without the value ever reaching a plan or the state, and its `<twin>_version` number
//! only tells Terraform when to send it again. The reconciler compares the twin's value as the
//! attribute itself and never compares the version.

use novacron_schemas::{Attribute, ResourceSchema};

/// What a Terraform argument that is no API attribute of its kind stands for.
#[derive(Debug, Clone, Copy)]
pub enum TwinArgument<'s> {
    /// The write-only twin: its value is this attribute's value (`user_data_wo` is `user_data`).
    Value(&'s Attribute),
    /// The twin's companion version (`user_data_wo_version`): Terraform-only, never sent to or
    /// compared with the platform.
    Version(&'s Attribute),
}

/// The same argument of the same schema attribute (the catalogue's attributes are compared by identity).
impl PartialEq for TwinArgument<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (TwinArgument::Value(a), TwinArgument::Value(b)) | (TwinArgument::Version(a), TwinArgument::Version(b)) => std::ptr::eq(*a, *b),
            _ => false,
        }
    }
}

impl<'s> TwinArgument<'s> {
    /// The API attribute the argument belongs to.
    pub fn attribute(self) -> &'s Attribute {
        match self {
            TwinArgument::Value(a) | TwinArgument::Version(a) => a,
        }
    }
}

/// The name of a twin's companion version argument: `user_data_wo` -> `user_data_wo_version`.
pub fn version_argument(twin: &str) -> String {
    format!("{twin}_version")
}

/// What the Terraform argument `name` of a resource of `schema` is, when it is a write-only
/// twin or a twin's version.
pub fn twin_argument<'s>(schema: &'s ResourceSchema, name: &str) -> Option<TwinArgument<'s>> {
    schema.attributes.iter().find_map(|a| {
        let twin = a.write_only_twin.as_deref()?;
        if name == twin {
            Some(TwinArgument::Value(a))
        } else if name == version_argument(twin) {
            Some(TwinArgument::Version(a))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use novacron_schemas::Kind;

    use super::*;

    #[test]
    fn twins_and_their_versions_come_from_the_schema() {
        for schema in novacron_schemas::catalog().all() {
            for attr in schema.attributes.iter().filter(|a| a.write_only_twin.is_some()) {
                let twin = attr.write_only_twin.as_deref().expect("filtered");
                assert!(schema.attribute(twin).is_none(), "{}: the twin {twin} is no API attribute", schema.terraform_type);
                assert_eq!(twin_argument(schema, twin), Some(TwinArgument::Value(attr)));
                assert_eq!(twin_argument(schema, &version_argument(twin)), Some(TwinArgument::Version(attr)));
                assert!(attr.write_only && attr.sensitive && attr.hash_attribute.is_some(), "compared by hash, never shown");
            }
        }
        let vm = Kind::Vm.schema();
        assert_eq!(twin_argument(vm, "user_data_wo").map(|t| t.attribute().name.as_str()), Some("user_data"));
        assert_eq!(twin_argument(vm, "user_data"), None, "the attribute itself is no twin");
        assert_eq!(twin_argument(vm, "user_data_wo_versions"), None);
        assert_eq!(twin_argument(Kind::Network.schema(), "user_data_wo"), None);
    }
}
