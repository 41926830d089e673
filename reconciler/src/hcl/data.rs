//! Data sources (`data "novacron_template"`, `novacron_vm`, `novacron_network`): read from objects fetched before evaluation, chosen exactly as the provider chooses.

use std::collections::BTreeSet;

use hcl::{Map, Value};
use novacron_client::Object;
use novacron_client::lookup::{self, LookupArgs};
use novacron_schemas::Kind;

use super::attrs::to_hcl;
use super::parse::{DataBlock, read_module};
use super::resolve::{Instance, Refs};
use crate::drift::LiveObject;
use crate::source::{SourceTree, join_path};

/// What data sources read, fetched before evaluation (evaluation itself does no I/O).
/// `novacron_vm` and `novacron_network` read from the live objects given to `evaluate`.
#[derive(Debug, Default, Clone, Copy)]
pub struct DataSources<'a> {
    /// The template catalogue (`GET /v1/templates`, every page), when it was read.
    pub templates: Option<&'a [LiveObject]>,
}

/// The kinds the `data` blocks of the configuration at `root` (and its local modules) read,
/// so the caller fetches only those. A module that does not parse is skipped here: evaluation
/// reports it.
pub fn data_source_kinds(tree: &dyn SourceTree, root: &str) -> BTreeSet<Kind> {
    let mut kinds = BTreeSet::new();
    let mut dirs = vec![(root_dir(root).to_string(), 0usize)];
    let mut seen = BTreeSet::new();
    while let Some((dir, depth)) = dirs.pop() {
        if depth > 32 || !seen.insert(dir.clone()) {
            continue;
        }
        let Ok(Some(config)) = read_module(tree, &dir) else { continue };
        kinds.extend(config.data.iter().map(|d| d.kind));
        for call in &config.modules {
            if let Some(child) = call.source.as_deref().filter(|s| s.starts_with("./") || s.starts_with("../")).and_then(|s| join_path(&dir, s)) {
                dirs.push((child, depth + 1));
            }
        }
    }
    kinds
}

/// The root module's directory as `--path` gives it, in the tree's terms (`""` for the root).
pub fn root_dir(path: &str) -> &str {
    let dir = path.trim_matches('/').trim_start_matches("./");
    if dir == "." { "" } else { dir }
}

/// Reads one instance of a data block: the selected object's fields overlaid with its
/// arguments, or why it is unknown.
pub fn read_instance(block: &DataBlock, refs: &Refs<'_>, inst: &Instance, live: &[&LiveObject], sources: &DataSources<'_>) -> Result<Value, String> {
    let mut given = Map::new();
    for (name, expr) in &block.args {
        // The arguments that choose the object, as x-data-source declares them for the kind.
        if !lookup::arguments(block.kind).contains(&name.as_str()) {
            continue;
        }
        match refs.eval(expr, inst) {
            Ok(Value::Null) => {}
            Ok(v) => {
                given.insert(name.clone(), v);
            }
            Err(reason) => return Err(format!("its argument {name} is unknown ({reason})")),
        }
    }
    let text = |k: &str| match given.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    };
    let args = LookupArgs::from_arguments(block.kind, text);
    let candidates: Vec<Object> = match block.kind {
        Kind::Template => match sources.templates {
            Some(all) => all.iter().map(|o| Object(o.fields.clone())).collect(),
            None => return Err("the template catalogue was not read".into()),
        },
        kind => live.iter().filter(|o| o.kind == kind).map(|o| Object(o.fields.clone())).collect(),
    };
    let object = lookup::select(block.kind, &args, candidates).map_err(|e| format!("{}: {e}", e.summary()))?;
    let mut value: Map<String, Value> = object.into_map().iter().map(|(k, v)| (k.clone(), to_hcl(v))).collect();
    if let Some(v) = given.get("most_recent") {
        value.insert("most_recent".into(), v.clone());
    }
    Ok(Value::Object(value))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::drift::LiveObject;
    use crate::hcl::{DataSources, evaluate};
    use crate::source::MemoryTree;
    use novacron_schemas::Kind;

    fn object(kind: Kind, fields: serde_json::Value) -> LiveObject {
        LiveObject { kind, fields: fields.as_object().expect("object").clone() }
    }

    const MAIN: &str = r#"
data "novacron_template" "by_name" {
  name = "debian-12"
}
data "novacron_template" "newest" {
  os          = "ubuntu"
  most_recent = true
}
data "novacron_network" "core" {
  name = "core"
}
data "novacron_vm" "gone" {
  name = "nothing-called-this"
}
data "novacron_template" "later" {
  name = novacron_vm.web.name
}
module "m" {
  source = "./modules/m"
  tpl    = data.novacron_template.newest.id
}
resource "novacron_vm" "web" {
  name        = "web-${terraform.workspace}"
  template_id = data.novacron_template.by_name.id
  network_id  = data.novacron_network.core.id
  metadata    = { os = data.novacron_template.newest.os_version, root = path.root, here = path.module }
  tags        = [data.novacron_vm.gone.id]
}
resource "novacron_policy" "p" {
  name = "p"
  rule = "package p"
  description = try(data.novacron_template.later.id, "unknown")
}
"#;

    #[test]
    fn data_sources_read_from_the_catalogue_and_the_live_objects() {
        let tree = MemoryTree::new([
            ("infra/main.tf", MAIN),
            (
                "infra/modules/m/main.tf",
                "variable \"tpl\" {}\nresource \"novacron_vm\" \"x\" {\n  name = \"x\"\n  template_id = var.tpl\n  metadata = { here = path.module }\n}\n",
            ),
        ]);
        let templates = [
            object(
                Kind::Template,
                json!({"id": "tpl-ubuntu-22-04", "name": "ubuntu-22-04", "os": "ubuntu", "os_version": "22.04", "released_at": "2022-04-21T00:00:00Z"}),
            ),
            object(
                Kind::Template,
                json!({"id": "tpl-ubuntu-24-04", "name": "ubuntu-24-04", "os": "ubuntu", "os_version": "24.04", "released_at": "2024-04-25T00:00:00Z"}),
            ),
            object(
                Kind::Template,
                json!({"id": "tpl-debian-12", "name": "debian-12", "os": "debian", "os_version": "12", "released_at": "2023-06-10T00:00:00Z"}),
            ),
        ];
        let live = [object(Kind::Network, json!({"id": "net-7", "name": "core"}))];
        let ev = evaluate(&tree, "infra", &[], &live, &DataSources { templates: Some(&templates) }).expect("evaluates");
        let web = ev.resources.iter().find(|r| r.address == "novacron_vm.web").expect("web");
        assert_eq!(web.name, "web-default");
        assert_eq!(web.attributes["template_id"], json!("tpl-debian-12"));
        assert_eq!(web.attributes["network_id"], json!("net-7"));
        assert_eq!(web.attributes["metadata"], json!({"os": "24.04", "root": ".", "here": "."}));
        assert_eq!(web.unknown, ["tags"], "a data source that finds nothing is unknown");
        assert!(ev.warnings.iter().any(|w| w.contains("tags is unknown") && w.contains("No novacron_vm matches")), "{:?}", ev.warnings);
        let x = ev.resources.iter().find(|r| r.address == "module.m.novacron_vm.x").expect("x");
        assert_eq!((&x.attributes["template_id"], &x.attributes["metadata"]), (&json!("tpl-ubuntu-24-04"), &json!({"here": "modules/m"})));
        let p = ev.resources.iter().find(|r| r.address == "novacron_policy.p").expect("p");
        assert_eq!(p.attributes["description"], json!("unknown"), "an argument from a resource without a live id is unknown, so is the data source");

        let without = evaluate(&tree, "infra", &[], &live, &DataSources::default()).expect("evaluates");
        let web = without.resources.iter().find(|r| r.address == "novacron_vm.web").expect("web");
        assert!(web.unknown.contains(&"template_id".to_string()));
        assert!(without.warnings.iter().any(|w| w.contains("template catalogue was not read")), "{:?}", without.warnings);
    }
}
