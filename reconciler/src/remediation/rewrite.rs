//! Codifies live values into the HCL with hcl-edit: only literal attributes are rewritten, formatting and comments kept.

use std::collections::BTreeMap;

use hcl_edit::Decorate;
use hcl_edit::expr::{Expression, ObjectKey};
use hcl_edit::structure::Body;
use serde_json::Value;

use novacron_schemas::AttrType;

use crate::diff::top_level;
use crate::drift::LiveObject;
use crate::report::{ResourceReport, Status};
use crate::source::SourceTree;

/// What codifying produced: new file texts, and what a person has to do by hand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Codified {
    /// Changed files (repository path to new text).
    pub files: BTreeMap<String, String>,
    /// `address path` of each value written into the HCL.
    pub rewritten: Vec<String>,
    /// `address path: why` of each change left for a person.
    pub manual: Vec<String>,
}

/// The file in `--path` that adopted (unmanaged) objects are written to.
pub const ADOPTED_FILE: &str = "novacron_adopted.tf";

/// Writes the live state into the `.tf` files of `dir`: the live values of drifted resources'
/// changes, the removal of blocks whose object is missing, and `import` plus `resource` blocks
/// for unmanaged objects (`live` holds their fields).
pub fn codify(tree: &dyn SourceTree, dir: &str, findings: &[&ResourceReport], live: &[LiveObject]) -> Codified {
    let drifted: Vec<&ResourceReport> = findings.iter().copied().filter(|r| r.status == Status::Drifted).collect();
    let mut out = codify_drifted(tree, dir, &drifted);
    let path = |name: &str| if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") };
    for r in findings.iter().filter(|r| r.status == Status::Missing) {
        match remove_block(tree, dir, r, &out.files) {
            Some((file, text)) => {
                out.rewritten.push(format!("{} (missing live): block removed", r.address));
                out.files.insert(file, text);
            }
            None => out
                .manual
                .push(format!("{}: missing live; its block is not a plain root-module block, remove it or create the object with terraform apply", r.address)),
        }
    }
    let mut adopted = String::new();
    for r in findings.iter().filter(|r| r.status == Status::Unmanaged) {
        let object = live.iter().find(|o| Some(o.id()) == r.id.as_deref());
        match object.map(adopt) {
            Some(text) => {
                adopted.push_str(&text);
                out.rewritten.push(format!("{} (unmanaged): import and resource blocks added to {ADOPTED_FILE}", r.address));
            }
            None => out.manual.push(format!("{}: unmanaged; import it or delete it", r.address)),
        }
    }
    if !adopted.is_empty() {
        let file = path(ADOPTED_FILE);
        let mut text = out.files.get(&file).cloned().or_else(|| tree.read(&file)).unwrap_or_default();
        if !text.is_empty() && !text.ends_with("\n\n") {
            text.push('\n');
        }
        text.push_str(&adopted);
        out.files.insert(file, text);
    }
    out
}

/// The file and its text without the block of a missing resource (root module, no index).
fn remove_block(tree: &dyn SourceTree, dir: &str, r: &ResourceReport, changed: &BTreeMap<String, String>) -> Option<(String, String)> {
    let label = address_label(&r.address);
    if r.address != format!("{}.{label}", r.resource_type) {
        return None;
    }
    for name in tree.files(dir).unwrap_or_default().iter().filter(|n| n.ends_with(".tf")) {
        let file = if dir.is_empty() { name.clone() } else { format!("{dir}/{name}") };
        let text = changed.get(&file).cloned().or_else(|| tree.read(&file))?;
        let Ok(mut body) = hcl_edit::parser::parse_body(&text) else { continue };
        let index = body.iter().position(|s| s.as_block().is_some_and(|b| b.has_ident("resource") && b.has_exact_labels(&[r.resource_type.as_str(), label])));
        if let Some(index) = index {
            body.remove(index);
            return Some((file, body.to_string()));
        }
    }
    None
}

/// `import` and `resource` blocks declaring a live object as it is (settable attributes only).
fn adopt(object: &LiveObject) -> String {
    let schema = object.kind.schema();
    let label: String = object.name().chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    let label = if label.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') { label } else { format!("r_{label}") };
    let ty = object.kind.terraform_type();
    let mut out = format!("# Adopted by novacron-reconcile: {ty}.{label} ({}) existed live without a declaration.\n", object.id());
    out.push_str(&format!(
        "import {{\n  to = {ty}.{label}\n  id = {}\n}}\n\nresource \"{ty}\" \"{label}\" {{\n",
        hcl_literal(&Value::String(object.id().to_string()))
    ));
    for attr in schema.settable().filter(|a| !a.write_only) {
        let Some(value) = object.fields.get(&attr.name).filter(|v| !v.is_null()) else { continue };
        match (&attr.ty, value) {
            (AttrType::Blocks { block_name, .. }, Value::Array(items)) => {
                for item in items {
                    out.push_str(&format!("\n  {block_name} {{\n"));
                    for (k, v) in item.as_object().into_iter().flatten().filter(|(_, v)| !v.is_null()) {
                        out.push_str(&format!("    {k} = {}\n", hcl_literal(v)));
                    }
                    out.push_str("  }\n");
                }
            }
            _ => out.push_str(&format!("  {} = {}\n", attr.name, hcl_literal(value))),
        }
    }
    out.push_str("}\n\n");
    out
}

/// A JSON value as an HCL literal (strings escaped, `${` and `%{` not read as templates).
fn hcl_literal(value: &Value) -> String {
    match value {
        Value::String(_) => serde_json::to_string(value).unwrap_or_default().replace("${", "$${").replace("%{", "%%{"),
        Value::Array(items) => format!("[{}]", items.iter().map(hcl_literal).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter().map(|(k, v)| format!("{} = {}", hcl_literal(&Value::String(k.clone())), hcl_literal(v))).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn codify_drifted(tree: &dyn SourceTree, dir: &str, drifted: &[&ResourceReport]) -> Codified {
    let mut out = Codified::default();
    let mut bodies: BTreeMap<String, Body> = BTreeMap::new();
    let names = tree.files(dir).unwrap_or_default();
    let tf_files: Vec<String> = names.iter().filter(|n| n.ends_with(".tf")).map(|n| if dir.is_empty() { n.clone() } else { format!("{dir}/{n}") }).collect();
    for path in &tf_files {
        if let Some(body) = tree.read(path).and_then(|t| hcl_edit::parser::parse_body(&t).ok()) {
            bodies.insert(path.clone(), body);
        }
    }
    let mut touched = Vec::new();
    for r in drifted {
        let manual_all = |out: &mut Codified, why: &str| {
            for c in &r.changes {
                out.manual.push(format!("{} {}: {why}", r.address, c.path));
            }
        };
        if r.address != format!("{}.{}", r.resource_type, address_label(&r.address)) {
            manual_all(&mut out, "declared in a module or with count/for_each; change the inputs by hand");
            continue;
        }
        let label = address_label(&r.address);
        let found = bodies.iter_mut().find_map(|(path, body)| {
            let block = body.get_blocks_mut("resource").find(|b| b.has_exact_labels(&[r.resource_type.as_str(), label]))?;
            Some((path.clone(), block))
        });
        let Some((path, block)) = found else {
            manual_all(&mut out, "resource block not found in a .tf file of --path");
            continue;
        };
        for change in &r.changes {
            let at = format!("{} {}", r.address, change.path);
            if change.sensitive {
                out.manual.push(format!("{at}: sensitive; the live value is not known here"));
                continue;
            }
            match write_change(&mut block.body, &change.path, &change.live) {
                Ok(()) => {
                    out.rewritten.push(at);
                    touched.push(path.clone());
                }
                Err(why) => out.manual.push(format!("{at}: {why}")),
            }
        }
    }
    touched.dedup();
    for path in touched {
        if let Some(body) = bodies.get(&path) {
            out.files.insert(path, body.to_string());
        }
    }
    out
}

fn address_label(address: &str) -> &str {
    address.split_once('.').map_or(address, |(_, rest)| rest)
}

/// Writes `live` at `path` (`memory_gb`, `metadata.env`, `firewall_rule[1].ports`) of a resource body.
fn write_change(body: &mut Body, path: &str, live: &Value) -> Result<(), String> {
    let top = top_level(path);
    let rest = &path[top.len()..];
    if let Some(index_rest) = rest.strip_prefix('[').filter(|_| !body.has_attribute(top)) {
        // A nested block: `firewall_rule[1].ports`.
        if body.get_blocks("dynamic").any(|b| b.has_exact_labels(&[top])) {
            return Err(format!("{top} blocks are generated by a dynamic block"));
        }
        let (index, field) = index_rest.split_once(']').ok_or("unexpected path")?;
        let index: usize = index.parse().map_err(|_| "unexpected path".to_string())?;
        let field = field.strip_prefix('.').ok_or("a whole block was added or removed")?;
        let block = body.get_blocks_mut(top).nth(index).ok_or("a whole block was added or removed")?;
        let mut attr = block.body.get_attribute_mut(field).ok_or_else(|| format!("{field} is not written in the block (a default)"))?;
        return replace_literal(attr.value_mut(), live);
    }
    let mut attr = body.get_attribute_mut(top).ok_or_else(|| format!("{top} is not written in the resource block"))?;
    let expr = attr.value_mut();
    if rest.is_empty() {
        return replace_literal(expr, live);
    }
    // A map entry: `metadata.env` or `metadata["x y"]`.
    let key = rest
        .strip_prefix('.')
        .map(str::to_string)
        .or_else(|| rest.strip_prefix('[').and_then(|k| k.strip_suffix(']')).and_then(|k| serde_json::from_str::<String>(k).ok()));
    let Some(key) = key.filter(|k| !k.contains(['.', '['])) else { return Err("a nested path that is not rewritten automatically".into()) };
    let Expression::Object(object) = expr else { return Err(format!("{top} is not a literal map (a variable, local or function)")) };
    for (k, value) in object.iter_mut() {
        let name = match k.get() {
            ObjectKey::Ident(i) => i.as_str().to_string(),
            ObjectKey::Expression(Expression::String(s)) => s.value().clone(),
            ObjectKey::Expression(_) => continue,
        };
        if name == key {
            if live.is_null() {
                return Err(format!("the key {key:?} was removed live; delete it by hand"));
            }
            return replace_literal(value.expr_mut(), live);
        }
    }
    Err(format!("the key {key:?} was added live; add it by hand"))
}

/// Replaces a literal expression by `value`, keeping its surrounding whitespace and comments.
fn replace_literal(expr: &mut Expression, value: &Value) -> Result<(), String> {
    if !is_literal(expr) {
        return Err("not a literal (a variable, reference, function or template)".into());
    }
    let mut text = serde_json::to_string(value).map_err(|e| e.to_string())?;
    // JSON strings are HCL strings, except that `${` and `%{` start templates there.
    text = text.replace("${", "$${").replace("%{", "%%{");
    let mut new: Expression = text.parse().map_err(|e| format!("cannot write the live value as HCL: {e}"))?;
    *new.decor_mut() = expr.decor().clone();
    *expr = new;
    Ok(())
}

fn is_literal(expr: &Expression) -> bool {
    match expr {
        Expression::Null(_) | Expression::Bool(_) | Expression::Number(_) | Expression::String(_) => true,
        Expression::Array(a) => a.iter().all(is_literal),
        Expression::Object(o) => o.iter().all(|(k, v)| matches!(k, ObjectKey::Ident(_) | ObjectKey::Expression(Expression::String(_))) && is_literal(v.expr())),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use novacron_schemas::Severity;
    use serde_json::json;

    use super::*;
    use crate::report::{Change, Status};
    use crate::source::MemoryTree;

    const TF: &str = r#"# the web tier
resource "novacron_vm" "web" {
  name      = "web"
  memory_gb = 4 # sized for prod
  metadata  = { env = "prod", "team" = "web" }
  tags      = var.tags
}

resource "novacron_network" "core" {
  name = "core"
  firewall_rule {
    ports = "22" # ssh
  }
}
"#;

    fn drifted(address: &str, changes: &[(&str, Value)]) -> ResourceReport {
        let (ty, name) = address.split_once('.').expect("address");
        ResourceReport {
            address: address.into(),
            resource_type: ty.into(),
            name: name.into(),
            id: Some("x".into()),
            status: Status::Drifted,
            severity: Some(Severity::Critical),
            desired_hash: None,
            live_hash: None,
            drift_percentage: 0.5,
            changes: changes
                .iter()
                .map(|(p, v)| Change { path: (*p).into(), desired: Value::Null, live: v.clone(), severity: Severity::Low, sensitive: false })
                .collect(),
            ignored_changes: vec![],
            unknown: vec![],
            three_way: crate::report::ThreeWay::Drift,
            rollout: None,
            rollout_changes: vec![],
            state_behind: false,
            changed_by: None,
        }
    }

    #[test]
    fn literals_are_rewritten_in_place_and_the_rest_listed() {
        let tree = MemoryTree::new([("infra/main.tf", TF)]);
        let vm = drifted("novacron_vm.web", &[("memory_gb", json!(8)), ("metadata.team", json!("ops")), ("tags", json!(["a"]))]);
        let net = drifted("novacron_network.core", &[("firewall_rule[0].ports", json!("2222")), ("firewall_rule[1]", json!({"ports": "1"}))]);
        let out = codify(&tree, "infra", &[&vm, &net], &[]);
        let text = &out.files["infra/main.tf"];
        let expected = TF
            .replace("memory_gb = 4 #", "memory_gb = 8 #")
            .replace("\"team\" = \"web\"", "\"team\" = \"ops\"")
            .replace("ports = \"22\" #", "ports = \"2222\" #");
        assert_eq!(text, &expected);
        assert_eq!(out.rewritten.len(), 3);
        assert_eq!(out.manual.len(), 2, "{:?}", out.manual);
        assert!(out.manual[0].starts_with("novacron_vm.web tags: not a literal"), "{:?}", out.manual);
    }

    #[test]
    fn missing_blocks_are_removed_and_unmanaged_objects_adopted() {
        let tree = MemoryTree::new([("main.tf", TF)]);
        let mut gone = drifted("novacron_network.core", &[]);
        gone.status = Status::Missing;
        let mut stray = drifted("novacron_vm.stray box", &[]);
        stray.status = Status::Unmanaged;
        stray.id = Some("vm-1".into());
        let fields = json!({"id": "vm-1", "name": "stray box", "cpu_cores": 1, "metadata": {"a b": "${x}"}, "status": "running", "version": 3});
        let live = [LiveObject { kind: novacron_schemas::Kind::Vm, fields: fields.as_object().expect("object").clone() }];
        let out = codify(&tree, "", &[&gone, &stray], &live);
        assert!(!out.files["main.tf"].contains("novacron_network"), "{}", out.files["main.tf"]);
        assert!(out.files["main.tf"].starts_with("# the web tier\nresource \"novacron_vm\" \"web\""));
        let adopted = &out.files[ADOPTED_FILE];
        assert!(adopted.contains("import {\n  to = novacron_vm.stray_box\n  id = \"vm-1\"\n}"), "{adopted}");
        assert!(adopted.contains("  cpu_cores = 1\n") && adopted.contains("metadata = { \"a b\" = \"$${x}\" }") && !adopted.contains("status"), "{adopted}");
        assert!(hcl_edit::parser::parse_body(adopted).is_ok());
        assert_eq!(out.rewritten.len(), 2);
    }

    #[test]
    fn user_data_is_never_written_whichever_way_it_is_given() {
        let tf = "resource \"novacron_vm\" \"web\" {\n  name         = \"web\"\n  memory_gb    = 4\n  user_data_wo = \"#cloud-config hunter2\"\n  user_data_wo_version = 1\n}\nresource \"novacron_vm\" \"db\" {\n  name      = \"db\"\n  user_data = \"#cloud-config hunter2\"\n}\n";
        let tree = MemoryTree::new([("main.tf", tf)]);
        let hidden = |address: &str, plain: &[(&str, Value)]| {
            let mut r = drifted(address, plain);
            r.changes.push(Change {
                path: "user_data".into(),
                desired: json!("(sensitive)"),
                live: json!("(sensitive)"),
                severity: Severity::Medium,
                sensitive: true,
            });
            r
        };
        let (web, db) = (hidden("novacron_vm.web", &[("memory_gb", json!(8))]), hidden("novacron_vm.db", &[]));
        let out = codify(&tree, "", &[&web, &db], &[]);
        assert_eq!(out.files["main.tf"], tf.replace("memory_gb    = 4", "memory_gb    = 8"), "only the plain value is codified");
        assert_eq!(
            out.manual,
            ["novacron_vm.web user_data: sensitive; the live value is not known here", "novacron_vm.db user_data: sensitive; the live value is not known here"]
        );
        // An adopted VM never gets user data either (the API does not return it, only its hash).
        let fields = json!({"id": "vm-9", "name": "stray", "cpu_cores": 1, "user_data_sha256": "abc"});
        let mut stray = drifted("novacron_vm.stray", &[]);
        (stray.status, stray.id) = (Status::Unmanaged, Some("vm-9".into()));
        let out = codify(&tree, "", &[&stray], &[LiveObject { kind: novacron_schemas::Kind::Vm, fields: fields.as_object().expect("object").clone() }]);
        assert!(!out.files[ADOPTED_FILE].contains("user_data"), "{}", out.files[ADOPTED_FILE]);
    }

    #[test]
    fn module_instances_are_left_for_a_person() {
        let tree = MemoryTree::new([("main.tf", TF)]);
        let r = drifted("module.a.novacron_vm.web", &[("memory_gb", json!(8))]);
        let out = codify(&tree, "", &[&r], &[]);
        assert!(out.files.is_empty());
        assert_eq!(out.manual.len(), 1);
    }
}
