//! Tests of variable binding: tfvars order, `--var` parsing, type conversion, optional defaults, nullable, validation.

use serde_json::json;

use crate::hcl::{DataSources, Evaluation, HclError, evaluate};
use crate::source::MemoryTree;

const VARS: &str = r#"
variable "env" {
  type = string
  validation {
    condition     = contains(["dev", "prod"], var.env)
    error_message = "env must be dev or prod."
  }
}
variable "sizes" {
  type = map(object({
    size = number
    disk = optional(object({ type = optional(string, "ssd"), gb = optional(number, 10) }), {})
  }))
  default = {}
}
variable "ports" {
  type    = set(string)
  default = [443, 22, 22]
}
variable "token" {
  type      = string
  sensitive = true
  default   = "s3cr3t-token"
}
variable "replicas" {
  type     = number
  nullable = false
  default  = 1
}
resource "novacron_storage" "disk" {
  for_each = var.sizes
  name     = "${var.env}-${each.key}"
  size_gb  = each.value.size * each.value.disk.gb
  type     = each.value.disk.type
}
resource "novacron_policy" "p" {
  name        = "p-${var.env}"
  rule        = "package p"
  description = "${join(",", var.ports)} x${var.replicas}"
  enabled     = var.token + 1
}
"#;

fn run(files: &[(&str, &str)], flags: &[&str]) -> Result<Evaluation, HclError> {
    let tree = MemoryTree::new(files.iter().copied());
    let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    evaluate(&tree, "", &flags, &[], &DataSources::default())
}

fn attrs<'a>(ev: &'a Evaluation, address: &str) -> &'a serde_json::Map<String, serde_json::Value> {
    &ev.resources.iter().find(|r| r.address == address).unwrap_or_else(|| panic!("no {address}")).attributes
}

#[test]
fn tfvars_in_order_then_flags_with_types_and_optional_defaults() {
    let ev = run(
        &[
            ("main.tf", VARS),
            ("terraform.tfvars", "env = \"dev\"\nsizes = { a = { size = \"2\" } }\nreplicas = null\n"),
            ("b.auto.tfvars.json", r#"{"sizes": {"a": {"size": 3}, "b": {"size": 1, "disk": {"gb": 40, "type": "nvme"}}}}"#),
            ("a.auto.tfvars", "env = \"staging\"\n"),
        ],
        &["env=prod"],
    )
    .expect("evaluates");
    assert_eq!(attrs(&ev, "novacron_storage.disk[\"a\"]")["size_gb"], json!(30), "the later auto file wins; optional defaults fill the rest");
    assert_eq!(attrs(&ev, "novacron_storage.disk[\"a\"]")["type"], json!("ssd"));
    assert_eq!(attrs(&ev, "novacron_storage.disk[\"b\"]")["size_gb"], json!(40));
    assert_eq!(attrs(&ev, "novacron_storage.disk[\"b\"]")["type"], json!("nvme"));
    assert_eq!(attrs(&ev, "novacron_policy.p")["name"], json!("p-prod"), "a --var flag beats every file");
    assert_eq!(attrs(&ev, "novacron_policy.p")["description"], json!("22,443 x1"), "a set is ordered and deduplicated; nullable = false takes the default");
    assert!(ev.warnings.iter().any(|w| w.contains("enabled is unknown") && w.contains("details hidden")), "{:?}", ev.warnings);
    assert!(!ev.warnings.iter().any(|w| w.contains("s3cr3t")), "{:?}", ev.warnings);
}

#[test]
fn a_failing_validation_names_the_variable_and_its_message() {
    let err = run(&[("main.tf", VARS), ("terraform.tfvars", "env = \"qa\"\n")], &[]).expect_err("invalid");
    assert_eq!(err.to_string(), "main.tf: invalid value for var.env: env must be dev or prod.");
}

#[test]
fn a_wrong_type_names_the_variable_the_type_and_the_fix_without_the_value() {
    let err = run(&[("main.tf", VARS), ("terraform.tfvars", "env = \"dev\"\nsizes = { a = { size = \"huge-secret\" } }\n")], &[]).expect_err("wrong type");
    let text = err.to_string();
    assert!(matches!(err, HclError::VariableType { .. }), "{text}");
    assert!(text.starts_with("main.tf: invalid value for var.sizes (from terraform.tfvars): at [\"a\"].size: a number is required, and this string is not one; give a value of type map(object("), "{text}");
    assert!(
        text.ends_with("; give a value of type map(object({size = number, disk = optional(object({type = optional(string), gb = optional(number)}))}))"),
        "{text}"
    );
    assert!(!text.contains("huge-secret"), "{text}");
    let err = run(&[("main.tf", VARS)], &["env=dev", "replicas=many"]).expect_err("not a number");
    assert_eq!(
        err.to_string(),
        "main.tf: invalid value for var.replicas (from a --var flag): a number is required, and this string is not one; give a value of type number"
    );
}

#[test]
fn null_for_a_non_nullable_variable_without_default_is_an_error() {
    let main = "variable \"x\" {\n  type = string\n  nullable = false\n}\n";
    let err = run(&[("main.tf", main), ("terraform.tfvars", "x = null\n")], &[]).expect_err("null");
    assert_eq!(err.to_string(), "main.tf: var.x must not be null (nullable = false, from terraform.tfvars); give it a value or a default");
}

#[test]
fn module_inputs_are_converted_and_validated_in_the_module() {
    let module = "variable \"size\" {\n  type = number\n  validation {\n    condition = var.size <= 100\n    error_message = \"size must be at most 100.\"\n  }\n}\nresource \"novacron_storage\" \"this\" {\n  name = \"v${var.size}\"\n  size_gb = var.size\n}\n";
    let main = "module \"v\" {\n  for_each = { a = \"20\", b = 200 }\n  source = \"./m\"\n  size = each.value\n}\n";
    let err = run(&[("main.tf", main), ("m/main.tf", module)], &[]).expect_err("b is too big");
    assert_eq!(err.to_string(), "m/main.tf: invalid value for module.v[\"b\"].var.size: size must be at most 100.");
    let ok = run(&[("main.tf", &main.replace("200", "30")), ("m/main.tf", module)], &[]).expect("evaluates");
    assert_eq!(attrs(&ok, "module.v[\"a\"].novacron_storage.this")["size_gb"], json!(20));
}

#[test]
fn an_error_message_built_from_a_sensitive_value_is_not_shown() {
    let main = "variable \"token\" {\n  type = string\n  sensitive = true\n  validation {\n    condition = length(var.token) > 10\n    error_message = \"token ${var.token} is too short.\"\n  }\n}\n";
    let err = run(&[("main.tf", main), ("terraform.tfvars", "token = \"hunter2\"\n")], &[]).expect_err("too short");
    assert_eq!(
        err.to_string(),
        "main.tf: invalid value for var.token: its validation rule failed (the error_message is not shown: it uses the sensitive value)"
    );
}

#[test]
fn json_syntax_variables_have_types_and_validations() {
    let main = r#"{"variable": {"size": {"type": "list(number)", "validation": [{"condition": "${alltrue([for s in var.size : s > 0])}", "error_message": "sizes must be positive."}]}}}"#;
    let err = run(&[("main.tf.json", main), ("terraform.tfvars", "size = [\"1\", -2]\n")], &[]).expect_err("negative");
    assert_eq!(err.to_string(), "main.tf.json: invalid value for var.size: sizes must be positive.");
    let err = run(&[("main.tf.json", main), ("terraform.tfvars", "size = { a = 1 }\n")], &[]).expect_err("not a list");
    assert_eq!(
        err.to_string(),
        "main.tf.json: invalid value for var.size (from terraform.tfvars): a list is required, not an object; give a value of type list(number)"
    );
}
