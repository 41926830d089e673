//! The protocol features of current Terraform, driven by the real binaries: write-only
//! `user_data_wo` (never in a plan, the state or any output; Terraform 1.0.3 refuses it with
//! the version it needs), import by resource identity, `terraform query` over list resources,
//! and the `policy_eval` function in `terraform test`. The features 1.0.3 lacks are skipped
//! there with a printed reason.

use novacron_acceptance::{InstallMode, Suite, TestPlatform, TfVersion, announce, fill};
use novacron_client::Kind;
use novacron_schemas::sha256_hex;
use serde_json::json;

const HEADER: &str = r#"terraform {
  required_providers {
    novacron = {
      source = "novacron/novacron"
    }
  }
}

provider "novacron" {}
"#;

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
