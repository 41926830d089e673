//! Tests of configuration evaluation against in-memory trees.

use serde_json::json;

use super::*;
use crate::source::MemoryTree;

fn live(kind: Kind, id: &str, name: &str) -> LiveObject {
    let fields = json!({"id": id, "name": name, "status": "active"});
    LiveObject { kind, fields: fields.as_object().expect("object").clone() }
}

fn find<'a>(ev: &'a Evaluation, address: &str) -> &'a DesiredResource {
    ev.resources
        .iter()
        .find(|r| r.address == address)
        .unwrap_or_else(|| panic!("no {address} in {:?}", ev.resources.iter().map(|r| &r.address).collect::<Vec<_>>()))
}

const MAIN: &str = r#"
variable "env" { default = "dev" }
variable "memory" {}
locals {
  prefix = "${var.env}-app"
  sizes  = { small = 2, large = 8 }
}
resource "novacron_network" "core" {
  name = "${local.prefix}-net"
  cidr = cidrsubnet("10.0.0.0/16", 8, 1)
  firewall_rule {
    direction = "ingress"
    ports     = 22
  }
  firewall_rule {
    direction = "egress"
  }
}
resource "novacron_vm" "web" {
  count       = 2
  name        = format("%s-web-%d", local.prefix, count.index)
  cpu_cores   = 2
  memory_gb   = var.memory
  template_id = data.novacron_template.ubuntu.id
  network_id  = novacron_network.core.id
  metadata    = { role = upper("web"), index = count.index }
  lifecycle { ignore_changes = [tags] }
}
resource "novacron_storage" "disk" {
  for_each = local.sizes
  name     = "${each.key}-disk"
  size_gb  = each.value * 10
}
module "db" {
  source = "./modules/vm"
  name   = "db"
  net    = novacron_network.core.id
}
resource "novacron_policy" "p" {
  name = "uses-${module.db.vm_name}"
  rule = "package p"
}
"#;

const MODULE: &str = r#"
variable "name" {}
variable "net" {}
variable "memory" { default = 16 }
resource "novacron_vm" "this" {
  count       = 1
  name        = var.name
  cpu_cores   = 4
  memory_gb   = var.memory
  template_id = "tpl-debian-12"
  network_id  = var.net
}
output "vm_name" { value = novacron_vm.this[0].name }
"#;

fn tree() -> MemoryTree {
    MemoryTree::new([
        ("infra/main.tf", MAIN),
        ("infra/terraform.tfvars", "memory = 4\nenv = \"staging\"\n"),
        ("infra/prod.auto.tfvars", "env = \"prod\"\n"),
        ("infra/modules/vm/main.tf", MODULE),
    ])
}

#[test]
fn evaluates_variables_locals_count_for_each_modules_and_references() {
    let live = [live(Kind::Network, "net-42", "prod-app-net")];
    let ev = evaluate(&tree(), "infra", &["memory=6".to_string()], &live, &DataSources::default()).expect("evaluates");
    let net = find(&ev, "novacron_network.core");
    assert_eq!(net.name, "prod-app-net");
    assert_eq!(net.attributes["cidr"], json!("10.0.1.0/24"));
    assert_eq!(net.attributes["firewall_rules"], json!([{"direction": "ingress", "ports": "22"}, {"direction": "egress"}]));
    let web1 = find(&ev, "novacron_vm.web[1]");
    assert_eq!(web1.name, "prod-app-web-1");
    assert_eq!(web1.attributes["memory_gb"], json!(6), "--var beats tfvars");
    assert_eq!(web1.attributes["network_id"], json!("net-42"), "reference resolved to the live id");
    assert_eq!(web1.attributes["metadata"], json!({"role": "WEB", "index": "1"}));
    assert_eq!(web1.unknown, ["template_id"]);
    assert!(
        ev.warnings.iter().any(|w| w.starts_with("infra/main.tf:24:17: novacron_vm.web[0]: template_id is unknown") && w.contains("data source")),
        "{:?}",
        ev.warnings
    );
    assert_eq!(find(&ev, "novacron_storage.disk[\"large\"]").attributes["size_gb"], json!(80));
    let db = find(&ev, "module.db.novacron_vm.this[0]");
    assert_eq!((db.name.as_str(), &db.attributes["memory_gb"], &db.attributes["network_id"]), ("db", &json!(16), &json!("net-42")));
    assert_eq!(find(&ev, "novacron_policy.p").name, "uses-db");
    assert_eq!(ev.resources.len(), 7);
}

#[test]
fn a_reference_to_a_resource_without_a_live_object_is_unknown() {
    let ev = evaluate(&tree(), "infra", &[], &[], &DataSources::default()).expect("evaluates");
    let web = find(&ev, "novacron_vm.web[0]");
    assert!(web.unknown.contains(&"network_id".to_string()));
    assert!(!web.attributes.contains_key("network_id"));
    assert!(ev.warnings.iter().any(|w| w.contains("network_id is unknown")), "{:?}", ev.warnings);
}

#[test]
fn bad_input_is_an_error() {
    let dup = MemoryTree::new([("main.tf", "resource \"novacron_vm\" \"a\" { name = \"x\" }\nresource \"novacron_vm\" \"b\" { name = \"x\" }\n")]);
    let err = evaluate(&dup, "", &[], &[], &DataSources::default()).expect_err("duplicate");
    assert_eq!(err.to_string(), "novacron_vm.a and novacron_vm.b are both novacron_vm named \"x\": names are unique per kind, so rename one");
    let cycle = MemoryTree::new([("main.tf", "locals {\n a = local.b\n b = local.a\n}\n")]);
    assert!(matches!(evaluate(&cycle, "", &[], &[], &DataSources::default()), Err(HclError::Cycle { .. })));
    assert!(matches!(evaluate(&tree(), "nope", &[], &[], &DataSources::default()), Err(HclError::NoSuchPath { .. })));
    assert!(matches!(evaluate(&tree(), "infra", &["novalue".into()], &[], &DataSources::default()), Err(HclError::BadVar)));
    let missing_module = MemoryTree::new([("main.tf", "module \"m\" { source = \"./nowhere\" }\n")]);
    assert!(evaluate(&missing_module, "", &[], &[], &DataSources::default()).expect_err("missing").to_string().contains("./nowhere"));
}

#[test]
fn registry_modules_and_unknown_functions_are_warnings() {
    let t = MemoryTree::new([(
        "main.tf",
        "module \"r\" { source = \"example/vm/novacron\" }\nresource \"novacron_vm\" \"a\" {\n name = \"a\"\n cpu_cores = mystery(1)\n memory_gb = try(module.r.memory, 4)\n}\n",
    )]);
    let ev = evaluate(&t, "", &[], &[], &DataSources::default()).expect("evaluates");
    let a = find(&ev, "novacron_vm.a");
    assert_eq!(a.unknown, ["cpu_cores"]);
    assert_eq!(a.attributes["memory_gb"], json!(4));
    assert!(ev.warnings.iter().any(|w| w.contains("not a local path")));
}

#[test]
fn indented_heredocs_strip_like_terraform() {
    let t = MemoryTree::new([(
        "main.tf",
        "resource \"novacron_policy\" \"p\" {\n  name = \"p\"\n  rule = <<-REGO\n    package x\n\n    deny contains msg if {\n      false\n    }\n  REGO\n}\n",
    )]);
    let ev = evaluate(&t, "", &[], &[], &DataSources::default()).expect("evaluates");
    assert_eq!(find(&ev, "novacron_policy.p").attributes["rule"], json!("package x\n\ndeny contains msg if {\n  false\n}\n"));
}

#[test]
fn dynamic_blocks_expand_in_place() {
    let t = MemoryTree::new([(
        "main.tf",
        r#"
variable "ports" { default = ["22", "443"] }
resource "novacron_network" "n" {
  name = "n"
  cidr = "10.0.0.0/24"
  firewall_rule {
    direction = "egress"
  }
  dynamic "firewall_rule" {
    for_each = var.ports
    iterator = rule
    content {
      direction = "ingress"
      ports     = rule.value
      cidr      = rule.key == 0 ? "10.0.0.0/8" : null
    }
  }
}
resource "novacron_network" "m" {
  name = "m"
  cidr = "10.1.0.0/24"
  dynamic "firewall_rule" {
    for_each = data.rules.all.items
    content {
      direction = firewall_rule.value
    }
  }
}
"#,
    )]);
    let ev = evaluate(&t, "", &[], &[], &DataSources::default()).expect("evaluates");
    assert_eq!(
        find(&ev, "novacron_network.n").attributes["firewall_rules"],
        json!([{"direction": "egress"}, {"direction": "ingress", "ports": "22", "cidr": "10.0.0.0/8"}, {"direction": "ingress", "ports": "443"}])
    );
    let m = find(&ev, "novacron_network.m");
    assert_eq!(m.unknown, ["firewall_rules"], "a dynamic block over another provider's data source is unknown");
}

#[test]
fn module_instances_with_for_each_and_outputs() {
    let t = MemoryTree::new([
        (
            "main.tf",
            r#"
module "web" {
  for_each = { eu = 2, us = 4 }
  source   = "./modules/vm"
  name     = "web-${each.key}"
  memory   = each.value
}
resource "novacron_policy" "p" {
  name        = "p"
  rule        = "package p"
  description = join(",", [module.web["eu"].vm_name, module.web["us"].vm_name])
}
"#,
        ),
        (
            "modules/vm/main.tf",
            "variable \"name\" {}\nvariable \"memory\" {}\nresource \"novacron_vm\" \"this\" {\n  name = var.name\n  memory_gb = var.memory\n}\noutput \"vm_name\" { value = novacron_vm.this.name }\n",
        ),
    ]);
    let ev = evaluate(&t, "", &[], &[], &DataSources::default()).expect("evaluates");
    assert_eq!(find(&ev, "module.web[\"us\"].novacron_vm.this").attributes["memory_gb"], json!(4));
    assert_eq!(find(&ev, "module.web[\"eu\"].novacron_vm.this").name, "web-eu");
    assert_eq!(find(&ev, "novacron_policy.p").attributes["description"], json!("web-eu,web-us"));
}

#[test]
fn files_resolve_against_the_root_module_and_path_module_is_relative_to_it() {
    let t = MemoryTree::new([
        (
            "infra/main.tf",
            "resource \"novacron_policy\" \"p\" {\n  name = \"p\"\n  rule = file(\"rules/p.rego\")\n  description = path.module\n}\nmodule \"m\" {\n  source = \"../shared/m\"\n}\n",
        ),
        ("infra/rules/p.rego", "package p\n"),
        (
            "shared/m/main.tf",
            "resource \"novacron_policy\" \"q\" {\n  name = \"q\"\n  rule = file(\"${path.module}/q.rego\")\n  description = path.module\n}\n",
        ),
        ("shared/m/q.rego", "package q\n"),
    ]);
    let ev = evaluate(&t, "./infra/", &[], &[], &DataSources::default()).expect("evaluates");
    assert!(ev.warnings.is_empty(), "{:?}", ev.warnings);
    let p = find(&ev, "novacron_policy.p");
    assert_eq!((&p.attributes["rule"], &p.attributes["description"]), (&json!("package p\n"), &json!(".")));
    let q = find(&ev, "module.m.novacron_policy.q");
    assert_eq!((&q.attributes["rule"], &q.attributes["description"]), (&json!("package q\n"), &json!("../shared/m")));
}

#[test]
fn other_providers_data_sources_are_unknown_saying_so() {
    let t = MemoryTree::new([(
        "main.tf",
        "data \"http\" \"ip\" {\n  url = \"https://example.com\"\n}\nresource \"novacron_policy\" \"p\" {\n  name = \"p\"\n  rule = data.http.ip.response_body\n}\n",
    )]);
    let ev = evaluate(&t, "", &[], &[], &DataSources::default()).expect("evaluates");
    assert_eq!(find(&ev, "novacron_policy.p").unknown, ["rule"]);
    assert!(
        ev.warnings.iter().any(|w| w.starts_with("main.tf:6:10: novacron_policy.p: rule is unknown (data.http.ip is not a novacron data source")),
        "{:?}",
        ev.warnings
    );
}

#[test]
fn user_data_wo_is_user_data_without_warnings_and_conflicts_with_it() {
    let module = "variable \"ud\" {}\nvariable \"wo\" { default = true }\nresource \"novacron_vm\" \"this\" {\n  name = \"m\"\n  user_data    = var.wo ? null : var.ud\n  user_data_wo = var.wo ? var.ud : null\n  user_data_wo_version = 2\n}\n";
    let main = "resource \"novacron_vm\" \"web\" {\n  name = \"web\"\n  user_data_wo         = \"#cloud-config hunter2\"\n  user_data_wo_version = 1\n}\nresource \"novacron_policy\" \"p\" {\n  name        = \"p\"\n  rule        = \"package p\"\n  description = coalesce(novacron_vm.web.user_data, \"none\")\n}\nmodule \"m\" {\n  source = \"./m\"\n  ud     = \"from-module\"\n}\nresource \"novacron_vm\" \"broken\" {\n  name         = \"broken\"\n  user_data_wo = file(\"nowhere\")\n}\n";
    let t = MemoryTree::new([("main.tf", main), ("m/main.tf", module)]);
    let ev = evaluate(&t, "", &[], &[], &DataSources::default()).expect("evaluates");
    let web = find(&ev, "novacron_vm.web");
    assert_eq!(web.attributes.get("user_data"), Some(&json!("#cloud-config hunter2")));
    assert!(web.unknown.is_empty() && !web.attributes.contains_key("user_data_wo_version"));
    assert_eq!(find(&ev, "module.m.novacron_vm.this").attributes.get("user_data"), Some(&json!("from-module")));
    // Terraform's references see null for a value given write-only: it is in no state.
    assert_eq!(find(&ev, "novacron_policy.p").attributes["description"], json!("none"));
    // Only the broken twin warns, at the twin's position, without its value; nothing warns about the versions.
    assert_eq!(find(&ev, "novacron_vm.broken").unknown, ["user_data"]);
    assert_eq!(
        ev.warnings,
        [
            "main.tf:17:18: novacron_vm.broken: user_data is unknown (user_data_wo could not be evaluated (details hidden: the attribute is sensitive)); left out of the comparison"
        ]
    );

    let both = MemoryTree::new([(
        "infra/vm.tf",
        "resource \"novacron_vm\" \"web\" {\n  count        = 1\n  name         = \"web\"\n  user_data    = \"a\"\n  user_data_wo = \"hunter2\"\n}\n",
    )]);
    let err = evaluate(&both, "infra", &[], &[], &DataSources::default()).expect_err("conflict");
    assert!(matches!(&err, HclError::ConflictingTwin { address, .. } if address == "novacron_vm.web[0]"), "{err:?}");
    assert_eq!(
        err.to_string(),
        "infra/vm.tf: novacron_vm.web[0] sets both user_data and user_data_wo, which conflict: user_data_wo is the write-only form of user_data (kept out of Terraform's plan and state); set only one of them"
    );
}
