//! The protocol features of current Terraform, driven by the real binaries: write-only
//! `user_data_wo` (never in a plan, the state or any output; Terraform 1.0.3 refuses it with
//! the version it needs), import by resource identity, `terraform query` over list resources,
//! and the `policy_eval` function in `terraform test`. The features 1.0.3 lacks are skipped
//! there with a printed reason.

use novacron_acceptance::{InstallMode, Suite, TestPlatform, TfVersion, announce, fill};
use novacron_client::Kind;
use novacron_schemas::sha256_hex;
use serde_json::json;

use super::HEADER;

/// A VM whose user data is write-only, from a sensitive variable (`TF_VAR_user_data`), as
/// secrets are given: Terraform prints configuration lines in its diagnostics.
const WRITE_ONLY: &str = r##"
variable "user_data" {
  type      = string
  sensitive = true
}

resource "novacron_network" "net" {
  name = "wo-@S@"
  cidr = "@CIDR@"
}

resource "novacron_vm" "app" {
  name                 = "wo-@S@"
  cpu_cores            = 1
  memory_gb            = 2
  template_id          = "tpl-ubuntu-24-04"
  network_id           = novacron_network.net.id
  user_data_wo         = var.user_data
  user_data_wo_version = @VERSION@
}

output "hash" {
  value = novacron_vm.app.user_data_sha256
}
"##;

/// Writes the configuration with user data version `version`, and its secret into the environment.
fn write_only_config(tf: &mut novacron_acceptance::Tf, slug: &str, cidr: &str, secret: &str, version: u32) -> String {
    tf.set_env("TF_VAR_user_data", &user_data(secret));
    fill(&format!("{HEADER}{WRITE_ONLY}"), &[("S", slug), ("CIDR", cidr), ("VERSION", &version.to_string())])
}

fn user_data(secret: &str) -> String {
    format!("#cloud-config\npassword: {secret}\n")
}

/// A scenario of a feature Terraform 1.0.3 lacks: says that it is skipped there, and why.
fn only_on_1_15_5(feature: &str, since: &str) -> TfVersion {
    announce(&format!("SKIP {feature} on Terraform {}: it needs Terraform {since} or later", TfVersion::V1_0_3.as_str()));
    TfVersion::V1_15_5
}

async fn write_only_user_data_never_reaches_plan_state_or_output(version: TfVersion) {
    let Some(suite) = Suite::for_version("write_only_user_data_never_reaches_plan_state_or_output", version) else { return };
    let platform = TestPlatform::start().await;
    let mut tf = suite.terraform(version, InstallMode::DevOverrides, &platform.endpoint());
    let slug = version.slug();
    let cidr = format!("10.{}.0.0/24", 60 + version.index());
    let (first, second) = ("s3cret-first-token", "s3cret-second-token");
    tf.add_secret(first);
    tf.add_secret(second);

    if version == TfVersion::V1_0_3 {
        // No write-only support: the value would land in the state, so the provider refuses.
        let text = write_only_config(&mut tf, slug, &cidr, first, 1);
        tf.write("main.tf", &text);
        let refused = tf.expect_code(&["plan", "-input=false", "-no-color"], 1).await;
        refused.assert_contains(&["user_data_wo needs Terraform 1.11 or later", "use user_data"]);
        platform.assert_empty("nothing made after the refusal").await;
        platform.shutdown().await;
        return;
    }

    let text = write_only_config(&mut tf, slug, &cidr, first, 1);
    tf.write("main.tf", &text);
    tf.apply().await.assert_contains(&["Apply complete! Resources: 2 added, 0 changed, 0 destroyed."]);
    let vm = platform.object_named(Kind::Vm, &format!("wo-{slug}")).await;
    assert_eq!(vm.get("user_data_sha256"), Some(&json!(sha256_hex(user_data(first).as_bytes()))), "the platform got the write-only value");
    let state = tf.read("terraform.tfstate").expect("a local state");
    assert!(!state.contains(first), "the write-only value is in the state file");
    assert!(state.contains(&sha256_hex(user_data(first).as_bytes())), "the state keeps the hash");
    let shown = tf.ok(&["show", "-json"]).await;
    assert!(shown.contains("user_data_sha256"), "{shown}");
    tf.plan_clean().await;

    // A new value with the same version plans nothing; a new version sends it.
    let text = write_only_config(&mut tf, slug, &cidr, second, 1);
    tf.write("main.tf", &text);
    tf.plan_clean().await;
    let text = write_only_config(&mut tf, slug, &cidr, second, 2);
    tf.write("main.tf", &text);
    let bumped = tf.expect_code(&["plan", "-detailed-exitcode", "-input=false", "-no-color"], 2).await;
    bumped.assert_contains(&["user_data_wo_version", "user_data_sha256", "Plan: 0 to add, 1 to change, 0 to destroy."]);
    tf.apply().await.assert_contains(&["0 added, 1 changed, 0 destroyed."]);
    let vm = platform.object_named(Kind::Vm, &format!("wo-{slug}")).await;
    assert_eq!(vm.get("user_data_sha256"), Some(&json!(sha256_hex(user_data(second).as_bytes()))), "the new version sent the new value");
    assert!(!tf.read("terraform.tfstate").expect("state").contains(second));
    tf.plan_clean().await;

    // Changed behind Terraform's back: the refresh reports the hash it finds.
    if let Err(e) = platform.client().patch(Kind::Vm, vm.id(), &json!({"user_data": "#cloud-config\nchanged: out-of-band\n"}), None).await {
        panic!("out-of-band user data change: {e}");
    }
    let refresh = tf.ok(&["plan", "-refresh-only", "-input=false", "-no-color"]).await;
    refresh.assert_contains(&["changed outside of Terraform", "user_data_sha256"]);

    // user_data and user_data_wo together: one error on the attribute, nothing applied.
    let both = write_only_config(&mut tf, slug, &cidr, second, 2).replace("  user_data_wo ", "  user_data            = \"x\"\n  user_data_wo ");
    tf.write("main.tf", &both);
    tf.expect_code(&["plan", "-input=false", "-no-color"], 1).await.assert_contains(&["Conflicting user_data and user_data_wo"]);

    let text = write_only_config(&mut tf, slug, &cidr, second, 2);
    tf.write("main.tf", &text);
    tf.destroy().await;
    platform.assert_empty(&format!("after destroy on {version}")).await;
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_only_user_data_terraform_1_15_5() {
    write_only_user_data_never_reaches_plan_state_or_output(TfVersion::V1_15_5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_only_user_data_terraform_1_0_3() {
    write_only_user_data_never_reaches_plan_state_or_output(TfVersion::V1_0_3).await;
}

/// Objects made through the API, adopted with `import { identity = { id = ... } }`: the plan
/// names the import, the apply imports, the next plan is clean and the identity is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_by_identity_plans_clean() {
    let version = only_on_1_15_5("import by identity", "1.12");
    let Some(suite) = Suite::for_version("import_by_identity_plans_clean", version) else { return };
    let platform = TestPlatform::start().await;
    let client = platform.client();
    let net = client.create(Kind::Network, &json!({"name": "ident-net", "cidr": "10.70.0.0/24", "mtu": 1500})).await.expect("network").value;
    let vm = client
        .create(Kind::Vm, &json!({"name": "ident-vm", "cpu_cores": 1, "memory_gb": 2, "template_id": "tpl-ubuntu-24-04", "network_id": net.id()}))
        .await
        .expect("vm")
        .value;
    let tf = suite.terraform(version, InstallMode::DevOverrides, &platform.endpoint());
    let config = format!(
        r#"{HEADER}
import {{
  to       = novacron_network.net
  identity = {{ id = "{net}" }}
}}

import {{
  to       = novacron_vm.vm
  identity = {{ id = "{vm}" }}
}}

resource "novacron_network" "net" {{
  name = "ident-net"
  cidr = "10.70.0.0/24"
  mtu  = 1500
}}

resource "novacron_vm" "vm" {{
  name        = "ident-vm"
  cpu_cores   = 1
  memory_gb   = 2
  template_id = "tpl-ubuntu-24-04"
  network_id  = novacron_network.net.id
}}
"#,
        net = net.id(),
        vm = vm.id()
    );
    tf.write("main.tf", &config);
    let plan = tf.ok(&["plan", "-input=false", "-no-color"]).await;
    plan.assert_contains(&["Plan: 2 to import, 0 to add, 0 to change, 0 to destroy."]);
    tf.apply().await.assert_contains(&["Apply complete! Resources: 2 imported, 0 added, 0 changed, 0 destroyed."]);
    tf.plan_clean().await;
    let state: serde_json::Value = serde_json::from_str(&tf.read("terraform.tfstate").expect("state")).expect("state JSON");
    let identities: Vec<&serde_json::Value> = state["resources"].as_array().expect("resources").iter().map(|r| &r["instances"][0]["identity"]).collect();
    assert!(identities.contains(&&json!({"id": vm.id()})) && identities.contains(&&json!({"id": net.id()})), "identities in the state: {identities:?}");
    tf.destroy().await;
    platform.assert_empty("after destroy").await;
    platform.shutdown().await;
}

/// `terraform query` over the list resources: filters applied by the platform, `limit`
/// honoured, a display name per result, a bad filter named; `-generate-config-out` writes
/// configuration that, with its import blocks, plans no change but the imports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_query_lists_filters_and_generates_config_that_plans_clean() {
    let version = only_on_1_15_5("terraform query", "1.14");
    let Some(suite) = Suite::for_version("terraform_query_lists_filters_and_generates_config_that_plans_clean", version) else { return };
    let platform = TestPlatform::start().await;
    let client = platform.client();
    let net = client.create(Kind::Network, &json!({"name": "q-net", "cidr": "10.71.0.0/24"})).await.expect("network").value;
    let other = client.create(Kind::Network, &json!({"name": "q-other", "cidr": "10.72.0.0/24"})).await.expect("network").value;
    let mut web = Vec::new();
    for (name, network) in [("web-1", net.id()), ("web-2", net.id()), ("web-3", other.id()), ("db-1", net.id())] {
        let vm = client
            .create(Kind::Vm, &json!({"name": name, "cpu_cores": 1, "memory_gb": 2, "template_id": "tpl-ubuntu-24-04", "network_id": network}))
            .await
            .expect("vm")
            .value;
        web.push(vm);
    }
    for vm in &web {
        platform.wait_running(vm.id()).await;
    }
    let tf = suite.terraform(version, InstallMode::DevOverrides, &platform.endpoint());
    tf.write("main.tf", HEADER);

    // Listing: VMs named web-* on q-net, running.
    tf.write(
        "search.tfquery.hcl",
        &format!(
            r#"list "novacron_vm" "web" {{
  provider = novacron
  config {{
    name_prefix = "web-"
    network_id  = "{net}"
    status      = "running"
  }}
}}

list "novacron_network" "all" {{
  provider = novacron
  limit    = 1
}}
"#,
            net = net.id()
        ),
    );
    let listed = tf.ok(&["query", "-no-color"]).await;
    listed.assert_contains(&["list.novacron_vm.web", web[0].id(), web[1].id(), "web-1 (", "running, 1 vCPU, 2 GiB)"]);
    assert!(!listed.contains(web[2].id()) && !listed.contains(web[3].id()), "other network and other name filtered out:\n{listed}");
    let networks = listed.stdout.lines().filter(|l| l.contains("list.novacron_network.all")).count();
    assert_eq!(networks, 1, "limit = 1 gives one network:\n{listed}");

    // A bad filter value: named, with the fix.
    tf.write("search.tfquery.hcl", "list \"novacron_vm\" \"bad\" {\n  provider = novacron\n  config {\n    status = \"up\"\n  }\n}\n");
    tf.expect_code(&["query", "-no-color"], 1).await.assert_contains(&["\"up\" is not a vm status", "use one of"]);

    // Generated configuration plans clean but for the imports.
    tf.write(
        "search.tfquery.hcl",
        "list \"novacron_vm\" \"web\" {\n  provider         = novacron\n  include_resource = true\n  config {\n    name_prefix = \"web-\"\n  }\n}\n",
    );
    tf.ok(&["query", "-no-color", "-generate-config-out=generated.tf"]).await;
    let generated = tf.read("generated.tf").expect("generated.tf");
    assert!(generated.contains("import {") && generated.contains(web[0].id()), "{generated}");
    tf.remove("search.tfquery.hcl");
    let plan = tf.ok(&["plan", "-input=false", "-no-color"]).await;
    plan.assert_contains(&["Plan: 3 to import, 0 to add, 0 to change, 0 to destroy."]);
    tf.apply().await.assert_contains(&["3 imported, 0 added, 0 changed, 0 destroyed."]);
    tf.plan_clean().await;
    platform.shutdown().await;
}

const CPU_RULE: &str = "package cpu\n\ndeny contains msg if {\n  input.kind == \"vm\"\n  input.object.cpu_cores > 8\n  msg := sprintf(\"%s asks for %d cores; at most 8\", [input.object.name, input.object.cpu_cores])\n}\n\ndeny contains msg if {\n  input.kind == \"vm\"\n  not input.object.metadata.owner\n  msg := sprintf(\"%s has no owner label\", [input.object.name])\n}\n";

/// `provider::novacron::policy_eval` in `terraform test`: passing runs pass, a failing
/// assertion fails naming it, a module that does not compile is a function error with its line,
/// and an input that is not an object names the argument.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_eval_tests_a_policy_in_terraform_test() {
    let version = only_on_1_15_5("provider functions in terraform test", "1.8");
    let Some(suite) = Suite::for_version("policy_eval_tests_a_policy_in_terraform_test", version) else { return };
    let platform = TestPlatform::start().await;
    let tf = suite.terraform(version, InstallMode::DevOverrides, &platform.endpoint());
    // The module under test: a policy and an admission input in, the deny messages out.
    tf.write(
        "main.tf",
        &format!(
            "{HEADER}\nvariable \"rule\" {{\n  type = string\n}}\n\nvariable \"input\" {{\n  type = any\n}}\n\noutput \"denied\" {{\n  value = provider::novacron::policy_eval(var.rule, var.input)\n}}\n"
        ),
    );
    tf.write("cpu.rego", CPU_RULE);
    std::fs::create_dir_all(tf.dir().join("tests")).expect("tests dir");
    let vm = |cores: u32, owner: bool| {
        let metadata = if owner { "{ owner = \"infra\" }" } else { "{}" };
        format!("{{ kind = \"vm\", action = \"create\", object = {{ name = \"web\", cpu_cores = {cores}, metadata = {metadata} }} }}")
    };
    let run = |name: &str, input: &str, condition: &str, message: &str| {
        format!(
            "run \"{name}\" {{\n  command = plan\n  variables {{\n    input = {input}\n  }}\n  assert {{\n    condition     = {condition}\n    error_message = \"{message}\"\n  }}\n}}\n\n"
        )
    };
    let header = "variables {\n  rule = file(\"cpu.rego\")\n}\n\n";
    tf.write(
        "tests/policy.tftest.hcl",
        &format!(
            "{header}{}{}",
            run("a_small_owned_vm_is_admitted", &vm(4, true), "length(output.denied) == 0", "a 4-core VM with an owner must be admitted"),
            run(
                "a_big_vm_without_owner_gets_both_messages_sorted",
                &vm(16, false),
                "output.denied == tolist([\"web asks for 16 cores; at most 8\", \"web has no owner label\"])",
                "both deny messages, sorted"
            )
        ),
    );
    let passed = tf.ok(&["test", "-no-color"]).await;
    passed.assert_contains(&[
        "run \"a_small_owned_vm_is_admitted\"... pass",
        "run \"a_big_vm_without_owner_gets_both_messages_sorted\"... pass",
        "2 passed, 0 failed",
    ]);

    // A wrong expectation fails the run, naming it.
    tf.write(
        "tests/wrong.tftest.hcl",
        &format!("{header}{}", run("expects_admission_wrongly", &vm(16, true), "length(output.denied) == 0", "the big VM was expected to pass")),
    );
    let failed = tf.expect_code(&["test", "-no-color"], 1).await;
    failed.assert_contains(&["run \"expects_admission_wrongly\"... fail", "the big VM was expected to pass", "2 passed, 1 failed"]);
    tf.remove("tests/wrong.tftest.hcl");

    // Broken Rego: a function error naming the line; an input that is not an object: named.
    tf.write("broken.rego", "package broken\n\ndeny contains msg if {\n  input.object.cpu_cores >\n}\n");
    tf.write(
        "tests/broken.tftest.hcl",
        &format!("run \"broken_rego\" {{\n  command = plan\n  variables {{\n    rule  = file(\"broken.rego\")\n    input = {}\n  }}\n}}\n", vm(1, true)),
    );
    tf.write("tests/not_object.tftest.hcl", &format!("{header}{}", run("not_an_object", "\"vm\"", "length(output.denied) == 0", "unreachable")));
    let errors = tf.expect_code(&["test", "-no-color"], 1).await;
    errors.assert_contains(&[
        "Invalid value for \"rule\" parameter: the Rego module does not compile:",
        "rule.rego:5:1",
        "Invalid value for \"input\" parameter: input must be an object",
        "2 passed, 2 failed",
    ]);
    platform.shutdown().await;
}
