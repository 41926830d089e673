//! Every annotation has a consumer: which code reads each `x-` key of the schema files.
//!
//! Adding an annotation to the loader without listing it here (and without code that reads
//! it) fails these tests, so the files never promise behaviour nobody carries out. The
//! consumers live in other crates of the workspace; the tests read their sources.

use std::collections::BTreeSet;
use std::path::Path;

use crate::ANNOTATIONS;

/// Each annotation, and the files (from the workspace root) that read it, with a piece of
/// code each file must contain: the field or helper through which the annotation arrives.
const CONSUMERS: &[(&str, &[(&str, &str)])] = &[
    ("x-kind", &[("schemas/src/lib.rs", "s.kind == kind")]),
    ("x-terraform-type", &[("provider/src/list.rs", "schema().terraform_type")]),
    ("x-schema-version", &[("provider/src/tfschema.rs", "schema.schema_version")]),
    ("x-id-prefix", &[("platform/src/app.rs", "schema().id_prefix"), ("provider/src/apply.rs", "schema().id_prefix")]),
    ("x-read-only-kind", &[("platform/src/app.rs", "schema().read_only_kind")]),
    ("x-not-in-state", &[("provider/src/tfschema.rs", "schema.in_state(")]),
    ("x-recomputed", &[("provider/src/plan.rs", "schema.recomputed")]),
    (
        "x-data-source",
        &[("provider/src/tfschema.rs", "schema.data_source"), ("provider/src/validate.rs", "schema().data_source"), ("client/src/lookup.rs", "most_recent_by")],
    ),
    (
        "x-lifecycle",
        &[
            ("provider/src/apply.rs", "lifecycle.wait_while"),
            ("provider/src/apply.rs", "lifecycle.detach_before_delete"),
            ("platform/src/app.rs", "lifecycle.detach_before_delete"),
        ],
    ),
    ("x-list-filter", &[("platform/src/listing.rs", "list_filters()"), ("provider/src/list.rs", "list_filters()"), ("client/src/object.rs", "list_filters()")]),
    ("x-computed", &[("provider/src/tfschema.rs", "a.computed")]),
    ("x-sensitive", &[("provider/src/tfschema.rs", "a.sensitive"), ("reconciler/src/diff.rs", "attr.sensitive")]),
    ("x-immutable", &[("schemas/src/validate.rs", "attr.immutable"), ("provider/src/plan.rs", "s.immutable")]),
    ("x-grow-only", &[("schemas/src/validate.rs", "attr.grow_only")]),
    ("x-set", &[("schemas/src/canonical.rs", "AttrType::Set")]),
    (
        "x-reference",
        &[("platform/src/kinds.rs", "schema.references()"), ("platform/src/app.rs", "holders_of("), ("platform/src/listing.rs", "attribute.reference")],
    ),
    ("x-hash-attribute", &[("platform/src/kinds.rs", "attr.hash_attribute"), ("provider/src/tfschema.rs", "hash_attribute")]),
    ("x-terraform-write-only", &[("provider/src/tfschema.rs", "write_only_twin")]),
    ("x-within", &[("schemas/src/validate.rs", "attr.within")]),
    ("x-terraform-block", &[("provider/src/tfschema.rs", "AttrType::Blocks { block_name")]),
    ("x-drift-severity", &[("reconciler/src/diff.rs", "attr.severity")]),
];

fn workspace_file(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("schemas/ sits in the workspace root");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `x-` keys the loader's serde structs accept, read from its source.
fn parsed_annotations() -> BTreeSet<String> {
    let source = workspace_file("schemas/src/model.rs");
    source.split("rename = \"").skip(1).filter_map(|rest| rest.split('"').next()).filter(|k| k.starts_with("x-")).map(str::to_string).collect()
}

#[test]
fn the_annotation_list_is_what_the_loader_parses() {
    let listed: BTreeSet<String> = ANNOTATIONS.iter().map(|a| a.to_string()).collect();
    assert_eq!(listed.len(), ANNOTATIONS.len(), "ANNOTATIONS repeats a name");
    assert_eq!(listed, parsed_annotations(), "ANNOTATIONS (lib.rs) must list exactly the x- keys model.rs parses");
}

#[test]
fn every_parsed_annotation_has_a_consumer_that_reads_it() {
    let with_consumers: BTreeSet<&str> = CONSUMERS.iter().map(|(a, _)| *a).collect();
    for annotation in ANNOTATIONS {
        assert!(with_consumers.contains(annotation), "{annotation} is parsed but no consumer is listed in consumers.rs: read it somewhere, or drop it");
    }
    for (annotation, consumers) in CONSUMERS {
        assert!(ANNOTATIONS.contains(annotation), "consumers.rs lists {annotation}, which the loader does not parse");
        assert!(!consumers.is_empty(), "{annotation} has no consumer");
        for (path, needle) in *consumers {
            assert!(workspace_file(path).contains(needle), "{annotation}: {path} no longer reads it (expected `{needle}` there)");
        }
    }
}

#[test]
fn every_annotation_the_loader_knows_is_used_by_some_schema_file() {
    let files: String = crate::SCHEMA_FILES.iter().map(|(_, text)| *text).collect();
    for annotation in ANNOTATIONS {
        assert!(files.contains(&format!("\"{annotation}\"")), "{annotation} is parsed but no schema file uses it");
    }
}
