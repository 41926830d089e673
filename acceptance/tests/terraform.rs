//! Acceptance scenarios: the real terraform (1.15.5 and 1.0.3) drives terraform-provider-novacron against the real platform.
//!
//! Every scenario starts one platform on `127.0.0.1:0`, then runs once per installed Terraform
//! version in a fresh working directory, destroying what it made before the next version
//! runs (object names carry the version, so a failed run cannot collide with the next).
//! The suite runs wherever `acceptance/install-terraform.sh` has installed Terraform (a
//! missing version is skipped with a printed reason; `NOVACRON_ACCEPTANCE=0` skips all) and
//! needs the provider binary (`cargo test --workspace` builds it).

#[path = "terraform/examples.rs"]
mod examples;
#[path = "terraform/protocol.rs"]
mod protocol;
#[path = "terraform/reconcile.rs"]
mod reconcile;

use std::time::Duration;

use novacron_acceptance::platform::{client_for, closed_port};
use novacron_acceptance::{InstallMode, Output, Suite, TestPlatform, Tf, TfVersion, fill};
use novacron_client::Kind;
use novacron_schemas::sha256_hex;
use novacron_tls::testing::Pki;
use serde_json::{Value, json};

/// Provider requirement and an empty provider block: endpoint and key come from the
/// environment (`NOVACRON_ENDPOINT`, `NOVACRON_API_KEY`).
const HEADER: &str = r#"terraform {
  required_providers {
    novacron = {
      source = "novacron/novacron"
    }
  }
}

provider "novacron" {}
"#;

/// All four resources and the three data sources, with references between them:
/// template -> vm, network -> data network -> vm, vm -> data vm, vm -> storage.
const FULL: &str = r##"
data "novacron_template" "ubuntu" {
  name = "ubuntu-24-04"
}

data "novacron_template" "debian" {
  os          = "debian"
  most_recent = true
}

resource "novacron_policy" "limits" {
  name             = "limits-@S@"
  type             = "cost"
  enforcement_mode = "block"
  priority         = 200
  description      = "No VM above 64 cores."
  rule             = <<-EOT
    package novacron.limits_@S@

    deny contains msg if {
      input.kind == "vm"
      input.object.cpu_cores > 64
      msg := sprintf("vm %s asks for %d cores; the limit is 64", [input.object.name, input.object.cpu_cores])
    }
  EOT
}

resource "novacron_network" "main" {
  name         = "main-@S@"
  cidr         = "@CIDR@"
  dns_servers  = ["1.1.1.1", "9.9.9.9"]
  vlan_id      = 120
  mtu          = 1500
  dhcp_enabled = true
  tags         = ["env:test", "team:infra"]

  firewall_rule {
    direction = "ingress"
    protocol  = "tcp"
    ports     = "22,443"
    cidr      = "10.0.0.0/8"
    action    = "allow"
  }

  firewall_rule {
    direction = "egress"
  }

  timeouts {
    create = "2m"
    update = "2m"
    delete = "2m"
  }
}

data "novacron_network" "main" {
  id = novacron_network.main.id
}

resource "novacron_vm" "web" {
  name        = "web-@S@"
  cpu_cores   = 2
  memory_gb   = @MEMORY@
  disk_gb     = 20
  template_id = data.novacron_template.ubuntu.id
  network_id  = data.novacron_network.main.id
  power_state = "running"
  metadata = {
    role  = "web"
    owner = "infra"
  }
  tags      = ["web", "env:test"]
  user_data = "#cloud-config\nruncmd: [echo @USER_DATA@]"

  timeouts {
    create = "5m"
    update = "5m"
    delete = "5m"
  }

  depends_on = [novacron_policy.limits]
}

data "novacron_vm" "web" {
  name = novacron_vm.web.name
}

resource "novacron_vm" "batch" {
  name        = "batch-@S@"
  cpu_cores   = 1
  memory_gb   = 1
  template_id = data.novacron_template.@BATCH_OS@.id
  network_id  = novacron_network.main.id
}

resource "novacron_storage" "data" {
  name        = "data-@S@"
  size_gb     = 50
  type        = "nvme"
  encrypted   = true
  attached_to = novacron_vm.web.id
}

output "web_ip" {
  value = novacron_vm.web.ip_address
}

output "web_id_seen" {
  value = data.novacron_vm.web.id
}

output "web_status_seen" {
  value = data.novacron_vm.web.status
}

output "gateway_seen" {
  value = data.novacron_network.main.gateway
}

output "ubuntu_os" {
  value = data.novacron_template.ubuntu.os
}

output "debian_id" {
  value = data.novacron_template.debian.id
}

output "device_path" {
  value = novacron_storage.data.device_path
}

output "user_data_sha256" {
  value = novacron_vm.web.user_data_sha256
}
"##;

/// A network and a VM on it: the smallest configuration with a dependency.
const SMALL: &str = r#"
resource "novacron_network" "net" {
  name = "net-@S@"
  cidr = "@CIDR@"
  mtu  = 1500
}

resource "novacron_vm" "app" {
  name        = "app-@S@"
  cpu_cores   = @CORES@
  memory_gb   = 2
  template_id = "tpl-ubuntu-24-04"
  network_id  = novacron_network.net.id
}
"#;

/// One network, with or without `backend "http"`: the address, lock and unlock addresses and the
/// password come from `TF_HTTP_*` (see `Tf::use_http_backend`); only the username is written here.
const STATE: &str = r#"terraform {
@BACKEND@  required_providers {
    novacron = {
      source = "novacron/novacron"
    }
  }
}

provider "novacron" {}

resource "novacron_network" "net" {
  name = "state-@S@"
  cidr = "@CIDR@"
  mtu  = @MTU@
}
"#;

/// The backend block [`STATE`] gets when its state lives in the platform.
const HTTP_BACKEND: &str = "  backend \"http\" {\n    username = \"terraform\"\n  }\n\n";

fn state_config(slug: &str, cidr: &str, mtu: u32, backend: bool) -> String {
    fill(STATE, &[("BACKEND", if backend { HTTP_BACKEND } else { "" }), ("S", slug), ("CIDR", cidr), ("MTU", &mtu.to_string())])
}

/// One test per scenario and Terraform version, so a failure on one version does not hide
/// the other's result: `<scenario>::terraform_1_15_5` and `<scenario>::terraform_1_0_3`.
macro_rules! per_version {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::TfVersion;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn terraform_1_15_5() {
                super::$scenario(TfVersion::V1_15_5).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn terraform_1_0_3() {
                super::$scenario(TfVersion::V1_0_3).await;
            }
        }
    )*};
}

per_version!(
    provider_installs_through_dev_overrides_and_a_filesystem_mirror,
    full_lifecycle_apply_update_replace_destroy,
    drift_from_an_out_of_band_change_is_planned_and_repaired,
    import_by_command_and_by_import_block,
    policy_denial_names_the_policy_and_its_message,
    validate_names_the_attribute_for_bad_input,
    unreachable_platform_is_retried_then_reported_or_recovered,
    flaky_platform_answers_503_and_429_and_the_provider_retries,
    vm_create_waits_within_the_timeouts_block,
    state_moves_into_the_platform_backend_and_is_locked_there,
    https_with_a_private_ca_for_the_provider_and_the_state_backend,
);

/// Starts the platform for a scenario on one version, or `None` when it is skipped.
async fn scenario(test: &str, version: TfVersion) -> Option<(Suite, TestPlatform)> {
    let suite = Suite::for_version(test, version)?;
    Some((suite, TestPlatform::start().await))
}

/// `10.<n>.0.0/24` with a second octet distinct per version and scenario.
fn cidr(version: TfVersion, scenario: u8) -> String {
    format!("10.{}.0.0/24", 20 + scenario * 2 + version.index())
}

fn full_config(version: TfVersion, memory: u32, user_data_secret: &str, batch_os: &str, cidr: &str) -> String {
    let memory = memory.to_string();
    format!("{HEADER}{}", fill(FULL, &[("S", version.slug()), ("CIDR", cidr), ("MEMORY", &memory), ("USER_DATA", user_data_secret), ("BATCH_OS", batch_os)]))
}

fn small_config(version: TfVersion, cidr: &str, cores: u32) -> String {
    format!("{HEADER}{}", fill(SMALL, &[("S", version.slug()), ("CIDR", cidr), ("CORES", &cores.to_string())]))
}

fn field<'a>(object: &'a novacron_client::Object, key: &str) -> &'a Value {
    object.get(key).unwrap_or(&Value::Null)
}

/// Panics when an update plan turns a stable computed attribute of a managed resource
/// unknown: Terraform's rule is that such values keep their prior state, with no "known after
/// apply" noise. Data sources read during apply (all unknown) and outputs are not looked at.
fn assert_stable_computed(out: &Output) {
    let mut managed = false;
    for line in out.stdout.lines() {
        let trimmed = line.trim_start();
        if let Some(address) = trimmed.strip_prefix("# ") {
            managed = address.starts_with("novacron_");
            continue;
        }
        if line.starts_with("Plan:") || line.starts_with("Changes to Outputs") {
            managed = false;
        }
        if !managed {
            continue;
        }
        for attr in ["id", "ip_address", "status", "created_at", "gateway", "device_path"] {
            assert!(!trimmed.starts_with(&format!("~ {attr} ")), "`{attr}` changes in an update plan although nothing touching it changed:\n{out}");
        }
    }
}

/// Whether a text points at a line: `line 4`, `:4:` or `4:7`.
fn mentions_a_line(text: &str) -> bool {
    if text.contains("line ") {
        return true;
    }
    let bytes = text.as_bytes();
    bytes.windows(3).any(|w| w[0] == b':' && w[1].is_ascii_digit() && (w[2] == b':' || w[2].is_ascii_digit()))
}

/// The text without Terraform's own pointers into main.tf (`on main.tf line 9, in ...` and
/// the numbered source snippet), so what is left is what the provider said.
fn without_terraform_locations(text: &str) -> String {
    text.lines()
        .filter(|l| !l.contains("main.tf line"))
        .filter(|l| {
            let t = l.trim_start_matches([' ', '│']).trim_start();
            let digits = t.bytes().take_while(u8::is_ascii_digit).count();
            !(digits > 0 && t[digits..].starts_with(':'))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Both install paths on both versions: dev overrides (no init, Terraform warns) and a
/// filesystem mirror (init, lock file). A data-only configuration reads a template, and
/// `providers schema -json` lists every resource and data source.
async fn provider_installs_through_dev_overrides_and_a_filesystem_mirror(version: TfVersion) {
    let Some((suite, platform)) = scenario("provider_installs_through_dev_overrides_and_a_filesystem_mirror", version).await else { return };
    let config = format!(
        "{HEADER}{}",
        r#"
data "novacron_template" "ubuntu" {
  name = "ubuntu-24-04"
}

output "template" {
  value = {
    id         = data.novacron_template.ubuntu.id
    os         = data.novacron_template.ubuntu.os
    os_version = data.novacron_template.ubuntu.os_version
    arch       = data.novacron_template.ubuntu.arch
  }
}
"#
    );
    for mode in [InstallMode::DevOverrides, InstallMode::FilesystemMirror] {
        let tf = suite.terraform(version, mode, &platform.endpoint());
        tf.write("main.tf", &config);
        tf.init().await;
        let applied = tf.apply().await;
        if mode == InstallMode::DevOverrides {
            applied.assert_contains(&["Provider development overrides are in effect"]);
        }
        let outputs = tf.outputs().await;
        assert_eq!(
            outputs.get("template"),
            Some(&json!({"id": "tpl-ubuntu-24-04", "os": "ubuntu", "os_version": "24.04", "arch": "x86_64"})),
            "{version} ({mode}): the template data source read {outputs:?}"
        );
        let schema = tf.ok(&["providers", "schema", "-json"]).await;
        let schema: Value = serde_json::from_str(&schema.stdout).unwrap_or_else(|e| panic!("providers schema -json: {e}"));
        let provider = &schema["provider_schemas"]["registry.terraform.io/novacron/novacron"];
        for resource in ["novacron_vm", "novacron_network", "novacron_storage", "novacron_policy"] {
            assert!(provider["resource_schemas"][resource].is_object(), "{version} ({mode}): no resource schema for {resource}");
        }
        for data in ["novacron_vm", "novacron_network", "novacron_template"] {
            assert!(provider["data_source_schemas"][data].is_object(), "{version} ({mode}): no data source schema for {data}");
        }
    }
    platform.assert_empty("a data-only configuration").await;
    platform.shutdown().await;
}

/// The whole life of a configuration using every resource and data source: apply, an empty
/// second plan, an in-place update (memory and user data, through a saved plan), a
/// replacement (template), a planned replacement (cidr), destroy leaving nothing behind.
/// The API key and both user_data values never show in any output, plan or saved-plan view.
async fn full_lifecycle_apply_update_replace_destroy(version: TfVersion) {
    let Some((suite, platform)) = scenario("full_lifecycle_apply_update_replace_destroy", version).await else { return };
    let mut tf = suite.terraform(version, InstallMode::FilesystemMirror, &platform.endpoint());
    let net = cidr(version, 0);
    let prefix = net.trim_end_matches("0/24").to_string();
    let first_secret = format!("first-user-data-secret-{}", version.slug());
    let second_secret = format!("second-user-data-secret-{}", version.slug());
    tf.add_secret(&first_secret);
    tf.add_secret(&second_secret);
    let first_user_data = format!("#cloud-config\nruncmd: [echo {first_secret}]");
    let second_user_data = format!("#cloud-config\nruncmd: [echo {second_secret}]");

    // Create everything.
    tf.write("main.tf", &full_config(version, 4, &first_secret, "ubuntu", &net));
    tf.init().await;
    tf.ok(&["validate", "-no-color"]).await;
    let applied = tf.apply().await;
    applied.assert_contains(&["Apply complete! Resources: 5 added, 0 changed, 0 destroyed."]);

    let web = platform.object_named(Kind::Vm, &format!("web-{}", version.slug())).await;
    let net_obj = platform.object_named(Kind::Network, &format!("main-{}", version.slug())).await;
    let volume = platform.object_named(Kind::Volume, &format!("data-{}", version.slug())).await;
    let policy = platform.object_named(Kind::Policy, &format!("limits-{}", version.slug())).await;
    assert_eq!(field(&web, "memory_gb"), &json!(4));
    assert_eq!(field(&web, "cpu_cores"), &json!(2));
    assert_eq!(field(&web, "template_id"), &json!("tpl-ubuntu-24-04"));
    assert_eq!(field(&web, "network_id"), &json!(net_obj.id()));
    assert_eq!(field(&web, "status"), &json!("running"), "apply waited for provisioning");
    assert_eq!(field(&web, "user_data_sha256"), &json!(sha256_hex(first_user_data.as_bytes())));
    assert_eq!(field(&web, "metadata"), &json!({"role": "web", "owner": "infra"}));
    assert_eq!(field(&volume, "attached_to"), &json!(web.id()));
    assert_eq!(field(&net_obj, "vlan_id"), &json!(120));
    let rules = field(&net_obj, "firewall_rules").as_array().cloned().unwrap_or_default();
    assert_eq!(rules.len(), 2, "two firewall rules: {rules:?}");
    assert_eq!(rules[1]["direction"], json!("egress"));
    assert_eq!(rules[1]["action"], json!("allow"), "defaults inside a block are applied: {rules:?}");
    assert_eq!(field(&policy, "enforcement_mode"), &json!("block"));

    let outputs = tf.outputs().await;
    assert_eq!(outputs["ubuntu_os"], json!("ubuntu"));
    assert_eq!(outputs["debian_id"], json!("tpl-debian-12"), "most_recent debian is debian-12");
    assert_eq!(outputs["web_id_seen"], json!(web.id()), "the vm data source found the vm by name");
    assert_eq!(outputs["web_status_seen"], json!("running"));
    assert_eq!(outputs["user_data_sha256"], json!(sha256_hex(first_user_data.as_bytes())));
    let ip = outputs["web_ip"].as_str().unwrap_or_default().to_string();
    assert!(ip.starts_with(&prefix), "the vm's address {ip:?} is in {net}");
    let gateway = outputs["gateway_seen"].as_str().unwrap_or_default().to_string();
    assert!(gateway.starts_with(&prefix), "the gateway {gateway:?} is in {net}");
    assert!(outputs["device_path"].as_str().is_some_and(|p| p.starts_with("/dev/")), "device path: {:?}", outputs["device_path"]);

    // Right after apply, nothing to do.
    tf.plan_clean().await;

    // In place: memory and user data, through a saved plan.
    tf.write("main.tf", &full_config(version, 8, &second_secret, "ubuntu", &net));
    let planned = tf.expect_code(&["plan", "-detailed-exitcode", "-input=false", "-no-color", "-out=update.tfplan"], 2).await;
    planned.assert_contains(&["novacron_vm.web will be updated in-place", "~ update in-place", "memory_gb", "(sensitive value)"]);
    planned.assert_contains(&["Plan: 0 to add, 1 to change, 0 to destroy."]);
    assert!(!planned.contains("must be replaced"), "a memory change replaces nothing:\n{planned}");
    assert_stable_computed(&planned);
    let shown = tf.ok(&["show", "-no-color", "update.tfplan"]).await;
    shown.assert_contains(&["memory_gb"]);
    let applied = tf.ok(&["apply", "-input=false", "-no-color", "update.tfplan"]).await;
    applied.assert_contains(&["Apply complete! Resources: 0 added, 1 changed, 0 destroyed."]);
    let web_after = platform.object_named(Kind::Vm, &format!("web-{}", version.slug())).await;
    assert_eq!(web_after.id(), web.id(), "updated in place, same vm");
    assert_eq!(field(&web_after, "memory_gb"), &json!(8));
    assert_eq!(field(&web_after, "user_data_sha256"), &json!(sha256_hex(second_user_data.as_bytes())));
    tf.plan_clean().await;

    // Force-new: another template replaces the batch vm.
    let batch = platform.object_named(Kind::Vm, &format!("batch-{}", version.slug())).await;
    tf.write("main.tf", &full_config(version, 8, &second_secret, "debian", &net));
    let planned = tf.expect_code(&["plan", "-detailed-exitcode", "-input=false", "-no-color"], 2).await;
    planned.assert_contains(&["novacron_vm.batch must be replaced", "template_id", "forces replacement"]);
    planned.assert_contains(&["Plan: 1 to add, 0 to change, 1 to destroy."]);
    tf.apply().await.assert_contains(&["Apply complete! Resources: 1 added, 0 changed, 1 destroyed."]);
    let new_batch = platform.object_named(Kind::Vm, &format!("batch-{}", version.slug())).await;
    assert_ne!(new_batch.id(), batch.id(), "the batch vm was replaced");
    assert_eq!(field(&new_batch, "template_id"), &json!("tpl-debian-12"));
    tf.plan_clean().await;

    // Force-new on a network: planned only (its vms would have to move first).
    let other = cidr(version, 0).replace(".0.0/24", ".1.0/24");
    tf.write("main.tf", &full_config(version, 8, &second_secret, "debian", &other));
    let planned = tf.expect_code(&["plan", "-detailed-exitcode", "-input=false", "-no-color"], 2).await;
    planned.assert_contains(&["novacron_network.main must be replaced", "cidr", "forces replacement"]);
    tf.write("main.tf", &full_config(version, 8, &second_secret, "debian", &net));

    // Destroy leaves nothing.
    tf.destroy().await.assert_contains(&["Destroy complete! Resources: 5 destroyed."]);
    platform.assert_empty(&format!("after destroy on {version}")).await;
    platform.shutdown().await;
}

/// Out-of-band changes: a refresh-only plan reports them, a normal plan shows the drift as an
/// update, apply puts the configuration back, and an object deleted behind Terraform's back
/// is planned for creation again (a 404 on read removes it from state).
async fn drift_from_an_out_of_band_change_is_planned_and_repaired(version: TfVersion) {
    let Some((suite, platform)) = scenario("drift_from_an_out_of_band_change_is_planned_and_repaired", version).await else { return };
    let client = platform.client();
    let tf = suite.terraform(version, InstallMode::DevOverrides, &platform.endpoint());
    tf.write("main.tf", &small_config(version, &cidr(version, 1), 1));
    tf.apply().await;
    tf.plan_clean().await;

    let vm = platform.object_named(Kind::Vm, &format!("app-{}", version.slug())).await;
    let net = platform.object_named(Kind::Network, &format!("net-{}", version.slug())).await;
    if let Err(e) = client.patch(Kind::Vm, vm.id(), &json!({"memory_gb": 6}), None).await {
        panic!("out-of-band vm change: {e}");
    }
    if let Err(e) = client.patch(Kind::Network, net.id(), &json!({"mtu": 9000}), None).await {
        panic!("out-of-band network change: {e}");
    }

    let refresh = tf.ok(&["plan", "-refresh-only", "-input=false", "-no-color"]).await;
    refresh.assert_contains(&["changed outside of Terraform", "memory_gb", "mtu"]);

    let drift = tf.expect_code(&["plan", "-detailed-exitcode", "-input=false", "-no-color"], 2).await;
    drift.assert_contains(&["~ update in-place", "memory_gb", "mtu"]);
    drift.assert_contains(&["Plan: 0 to add, 2 to change, 0 to destroy."]);
    assert_stable_computed(&drift);

    tf.apply().await.assert_contains(&["0 added, 2 changed, 0 destroyed."]);
    let vm = platform.object_named(Kind::Vm, &format!("app-{}", version.slug())).await;
    let net = platform.object_named(Kind::Network, &format!("net-{}", version.slug())).await;
    assert_eq!(field(&vm, "memory_gb"), &json!(2), "apply repaired the vm");
    assert_eq!(field(&net, "mtu"), &json!(1500), "apply repaired the network");
    tf.plan_clean().await;

    // Deleted behind Terraform's back: planned for creation again.
    if let Err(e) = client.delete(Kind::Vm, vm.id()).await {
        panic!("out-of-band delete: {e}");
    }
    platform.wait_gone(Kind::Vm, vm.id()).await;
    let gone = tf.expect_code(&["plan", "-detailed-exitcode", "-input=false", "-no-color"], 2).await;
    gone.assert_contains(&["novacron_vm.app will be created"]);
    gone.assert_contains(&["Plan: 1 to add, 0 to change, 0 to destroy."]);
    tf.apply().await;
    tf.plan_clean().await;

    tf.destroy().await;
    platform.assert_empty(&format!("after destroy on {version}")).await;
    platform.shutdown().await;
}

/// Objects made through the API are adopted by `terraform import` (then plan clean) and, on
/// Terraform >= 1.5 only (1.0.3 has neither), by an `import {}` block with
/// `-generate-config-out`, whose generated configuration plans clean too.
async fn import_by_command_and_by_import_block(version: TfVersion) {
    let Some((suite, platform)) = scenario("import_by_command_and_by_import_block", version).await else { return };
    let client = platform.client();
    let tf = suite.terraform(version, InstallMode::DevOverrides, &platform.endpoint());
    let s = version.slug();
    let net_cidr = cidr(version, 2);
    let net = match client.create(Kind::Network, &json!({"name": format!("imp-net-{s}"), "cidr": net_cidr, "mtu": 1400, "tags": ["imported"]})).await {
        Ok(r) => r.value,
        Err(e) => panic!("creating the network to import: {e}"),
    };
    let config = format!(
        "{HEADER}{}",
        fill(
            r#"
resource "novacron_network" "imported" {
  name = "imp-net-@S@"
  cidr = "@CIDR@"
  mtu  = 1400
  tags = ["imported"]
}
"#,
            &[("S", s), ("CIDR", &net_cidr)]
        )
    );
    tf.write("main.tf", &config);
    let imported = tf.ok(&["import", "-input=false", "-no-color", "novacron_network.imported", net.id()]).await;
    imported.assert_contains(&["Import successful"]);
    tf.plan_clean().await;

    if version.has_import_blocks() {
        let vm = match client
            .create(
                Kind::Vm,
                &json!({"name": format!("imp-vm-{s}"), "cpu_cores": 1, "memory_gb": 2, "template_id": "tpl-debian-12", "network_id": net.id(),
                        "metadata": {"team": "infra"}}),
            )
            .await
        {
            Ok(r) => r.value,
            Err(e) => panic!("creating the vm to import: {e}"),
        };
        tf.write("imports.tf", &format!("import {{\n  to = novacron_vm.imported\n  id = \"{}\"\n}}\n", vm.id()));
        let generated = tf.ok(&["plan", "-input=false", "-no-color", "-generate-config-out=generated.tf"]).await;
        generated.assert_contains(&["1 to import, 0 to add, 0 to change, 0 to destroy."]);
        let text = tf.read("generated.tf").unwrap_or_else(|| panic!("no generated.tf:\n{generated}"));
        assert!(text.contains("resource \"novacron_vm\" \"imported\""), "generated.tf:\n{text}");
        assert!(text.contains(net.id()), "generated.tf names the network:\n{text}");
        tf.apply().await.assert_contains(&["1 imported, 0 added, 0 changed, 0 destroyed."]);
        tf.plan_clean().await;
        // Generated configuration holds the network id as a literal, so Terraform knows no
        // dependency and would destroy network and vm at once (409: network in use). Wire the
        // reference as a person would; the plan stays clean.
        tf.write("generated.tf", &text.replace(&format!("\"{}\"", net.id()), "novacron_network.imported.id"));
        tf.plan_clean().await;
    } else {
        eprintln!("{version}: no import blocks or -generate-config-out before 1.5; import by command only");
    }

    tf.destroy().await;
    platform.assert_empty(&format!("after destroy on {version}")).await;
    platform.shutdown().await;
}

/// A `block` policy whose Rego denies more than 8 cores: a 16-core VM fails to apply, and
/// the error names the policy and its message; nothing is created.
async fn policy_denial_names_the_policy_and_its_message(version: TfVersion) {
    let Some((suite, platform)) = scenario("policy_denial_names_the_policy_and_its_message", version).await else { return };
    let tf = suite.terraform(version, InstallMode::DevOverrides, &platform.endpoint());
    let s = version.slug();
    let policy = fill(
        r#"
resource "novacron_policy" "max_cores" {
  name             = "max-cores-@S@"
  type             = "cost"
  enforcement_mode = "block"
  rule             = <<-EOT
    package novacron.max_cores

    deny contains msg if {
      input.kind == "vm"
      input.object.cpu_cores > 8
      msg := sprintf("vm %s asks for %d cores; the limit is 8", [input.object.name, input.object.cpu_cores])
    }
  EOT
}
"#,
        &[("S", s)],
    );
    let net = cidr(version, 3);
    let without_vm = format!("{HEADER}{policy}\nresource \"novacron_network\" \"net\" {{\n  name = \"net-{s}\"\n  cidr = \"{net}\"\n  mtu  = 1500\n}}\n");
    tf.write("main.tf", &without_vm);
    tf.apply().await;

    tf.write("main.tf", &format!("{}{policy}", small_config(version, &net, 16)));
    let denied = tf.expect_code(&["apply", "-auto-approve", "-input=false", "-no-color"], 1).await;
    denied.assert_contains(&[&format!("max-cores-{s}"), &format!("vm app-{s} asks for 16 cores; the limit is 8"), "novacron_vm.app"]);
    let found = platform.client().find_by_name(Kind::Vm, &format!("app-{s}")).await;
    assert!(matches!(found, Ok(None)), "the denied vm does not exist: {found:?}");
    tf.expect_code(&["plan", "-detailed-exitcode", "-input=false", "-no-color"], 2).await.assert_contains(&["novacron_vm.app will be created"]);

    tf.write("main.tf", &without_vm);
    tf.destroy().await;
    platform.assert_empty(&format!("after destroy on {version}")).await;
    platform.shutdown().await;
}

/// `terraform validate` refuses bad input and names the attribute: an out-of-range number, a
/// bad CIDR, Rego that does not compile (with its line) and an unknown enum value.
async fn validate_names_the_attribute_for_bad_input(version: TfVersion) {
    let Some((suite, platform)) = scenario("validate_names_the_attribute_for_bad_input", version).await else { return };
    let vm = |cores: &str, power: &str| {
        format!(
            "resource \"novacron_vm\" \"bad\" {{\n  name        = \"bad\"\n  cpu_cores   = {cores}\n  memory_gb   = 2\n  template_id = \"tpl-ubuntu-24-04\"\n  network_id  = \"net-1\"\n  power_state = \"{power}\"\n}}\n"
        )
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("cpu_cores = 0", vm("0", "running"), vec!["cpu_cores"]),
        ("power_state = \"paused\"", vm("2", "paused"), vec!["power_state", "paused"]),
        (
            "cidr = \"10.0.0.0/33\"",
            "resource \"novacron_network\" \"bad\" {\n  name = \"bad\"\n  cidr = \"10.0.0.0/33\"\n}\n".to_string(),
            vec!["cidr", "10.0.0.0/33"],
        ),
        (
            "broken Rego",
            "resource \"novacron_policy\" \"bad\" {\n  name = \"bad\"\n  rule = <<-EOT\n    package novacron.broken\n\n    deny contains msg if {\n      input.object.cpu_cores >\n    }\n  EOT\n}\n"
                .to_string(),
            vec!["rule"],
        ),
    ];
    let tf = suite.terraform(version, InstallMode::DevOverrides, &platform.endpoint());
    tf.write("main.tf", &format!("{HEADER}{}", vm("2", "running")));
    tf.ok(&["validate", "-no-color"]).await.assert_contains(&["The configuration is valid"]);
    for (what, body, needles) in &cases {
        tf.write("main.tf", &format!("{HEADER}{body}"));
        let out = tf.expect_code(&["validate", "-no-color"], 1).await;
        let mut all = vec!["Error"];
        all.extend(needles.iter().copied());
        assert!(all.iter().all(|n| out.contains(n)), "{version}: validate of {what} should name {needles:?}:\n{out}");
        if *what == "broken Rego" {
            assert!(mentions_a_line(&without_terraform_locations(&out.text())), "{version}: the Rego error names its line:\n{out}");
        }
    }
    platform.shutdown().await;
}

/// A platform that does not answer: a closed port is retried and then reported clearly
/// (no crash, no key in the output); one that comes up after a couple of seconds is
/// retried until the apply succeeds.
async fn unreachable_platform_is_retried_then_reported_or_recovered(version: TfVersion) {
    let Some(suite) = Suite::for_version("unreachable_platform_is_retried_then_reported_or_recovered", version) else { return };
    let s = version.slug();
    let body = format!("resource \"novacron_network\" \"net\" {{\n  name = \"net-{s}\"\n  cidr = \"{}\"\n}}\n", cidr(version, 4));
    let provider_block = "provider \"novacron\" {}";

    // Nothing ever listens: a clear error after a few retries.
    let closed = closed_port();
    let mut tf = suite.terraform(version, InstallMode::DevOverrides, &format!("http://{closed}"));
    tf.set_timeout(Duration::from_secs(180));
    tf.write("main.tf", &format!("{}{body}", HEADER.replace(provider_block, "provider \"novacron\" {\n  max_retries = 2\n  timeout     = 5\n}")));
    let failed = tf.expect_code(&["apply", "-auto-approve", "-input=false", "-no-color"], 1).await;
    let text = failed.text();
    assert!(
        ["onnection refused", "could not connect", &closed.to_string()].iter().any(|n| text.contains(n)),
        "{version}: the error says the platform cannot be reached:\n{failed}"
    );

    // Down for about two seconds, then up on the same port: retried until it answers.
    let addr = closed_port();
    let tf = suite.terraform(version, InstallMode::DevOverrides, &format!("http://{addr}"));
    tf.write("main.tf", &format!("{}{body}", HEADER.replace(provider_block, "provider \"novacron\" {\n  max_retries = 10\n  timeout     = 5\n}")));
    let late = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        TestPlatform::start_with(|c| c.listen = addr).await
    };
    let (applied, platform) = tokio::join!(tf.run(&["apply", "-auto-approve", "-input=false", "-no-color"]), late);
    assert_eq!(applied.code, 0, "{version}: the apply outlasts a two-second outage:\n{applied}");
    platform.object_named(Kind::Network, &format!("net-{s}")).await;
    tf.destroy().await;
    platform.assert_empty(&format!("after destroy on {version}")).await;
    platform.shutdown().await;
}

/// A platform answering 503 (chaos) and 429 (rate limit) to part of the calls: the provider
/// retries; each command either succeeds or fails with an error that says why (no crash, no
/// key), and running it again converges. Both kinds of answer were really given.
async fn flaky_platform_answers_503_and_429_and_the_provider_retries(version: TfVersion) {
    let Some(suite) = Suite::for_version("flaky_platform_answers_503_and_429_and_the_provider_retries", version) else { return };
    let platform = TestPlatform::start_with(|c| {
        c.chaos_error_rate = 0.2;
        c.chaos_seed = 7;
        c.rate_limit_rps = Some(2.0);
    })
    .await;
    let tf = suite.terraform(version, InstallMode::DevOverrides, &platform.endpoint());
    let s = version.slug();
    tf.write(
        "main.tf",
        &format!(
            "{}\nresource \"novacron_storage\" \"disk\" {{\n  name        = \"disk-{s}\"\n  size_gb     = 10\n  attached_to = novacron_vm.app.id\n}}\n",
            small_config(version, &cidr(version, 5), 1)
        ),
    );
    converge(&tf, &["apply", "-auto-approve", "-input=false", "-no-color"]).await;
    let plan = converge(&tf, &["plan", "-detailed-exitcode", "-input=false", "-no-color"]).await;
    assert_eq!(plan.code, 0, "{version}: no changes after apply, chaos or not:\n{plan}");
    converge(&tf, &["destroy", "-auto-approve", "-input=false", "-no-color"]).await;
    platform.assert_empty(&format!("after destroy on {version}")).await;
    let unavailable = platform.requests_with("status=\"503\"").await;
    let limited = platform.requests_with("status=\"429\"").await;
    eprintln!("the platform answered 503 {unavailable} times and 429 {limited} times");
    assert!(unavailable > 0, "chaos injected 503s");
    assert!(limited > 0, "the rate limit answered 429s");
    let quiet = client_for(&platform.endpoint(), 10);
    assert!(quiet.list_all(Kind::Vm).await.is_ok_and(|v| v.is_empty()));
    platform.shutdown().await;
}

/// VM creation waits for provisioning within `timeouts.create`: slower than its timeout, the
/// apply fails saying so and keeps the VM in state (tainted, so nothing is orphaned on the
/// platform); with a generous timeout the next apply converges.
async fn vm_create_waits_within_the_timeouts_block(version: TfVersion) {
    let Some(suite) = Suite::for_version("vm_create_waits_within_the_timeouts_block", version) else { return };
    let platform = TestPlatform::start_with(|c| c.provision_delay = Duration::from_secs(4)).await;
    let tf = suite.terraform(version, InstallMode::DevOverrides, &platform.endpoint());
    let s = version.slug();
    let config = |timeout: &str| {
        format!(
            "{HEADER}{}",
            fill(
                r#"
resource "novacron_network" "net" {
  name = "net-@S@"
  cidr = "10.40.0.0/24"
}

resource "novacron_vm" "slow" {
  name        = "slow-@S@"
  cpu_cores   = 1
  memory_gb   = 1
  template_id = "tpl-ubuntu-24-04"
  network_id  = novacron_network.net.id

  timeouts {
    create = "@TIMEOUT@"
  }
}
"#,
                &[("S", s), ("TIMEOUT", timeout)],
            )
        )
    };
    tf.write("main.tf", &config("1s"));
    let late = tf.expect_code(&["apply", "-auto-approve", "-input=false", "-no-color"], 1).await;
    let text = late.text().to_lowercase();
    assert!(text.contains("timeout") || text.contains("timed out"), "{version}: the error says the create timed out:\n{late}");
    let state = tf.ok(&["state", "list"]).await;
    assert!(state.stdout.contains("novacron_vm.slow"), "{version}: the vm the platform is still provisioning stays in state:\n{state}");

    tf.write("main.tf", &config("60s"));
    tf.apply().await;
    let vm = platform.object_named(Kind::Vm, &format!("slow-{s}")).await;
    assert_eq!(field(&vm, "status"), &json!("running"), "{version}: apply waited for provisioning");
    tf.plan_clean().await;
    tf.destroy().await;
    platform.assert_empty(&format!("after destroy on {version}")).await;
    platform.shutdown().await;
}

/// Runs a command up to three times: a failure must explain itself as the platform being
/// unavailable or rate limiting (the provider gave up retrying), and then is tried again.
async fn converge(tf: &Tf, args: &[&str]) -> Output {
    let mut last = None;
    for _ in 0..3 {
        let out = tf.run(args).await;
        if out.code != 1 {
            return out;
        }
        let text = out.text();
        assert!(
            ["503", "429", "Service Unavailable", "Too Many Requests", "unavailable", "rate limit", "gave up", "retry"].iter().any(|n| text.contains(n)),
            "`terraform {}` failed without saying the platform was unavailable:\n{out}",
            args.join(" ")
        );
        last = Some(out);
    }
    match last {
        Some(out) => panic!("`terraform {}` failed three times in a row:\n{out}", args.join(" ")),
        None => unreachable!("the loop runs at least once"),
    }
}

/// The `id` of the one `novacron_network` instance a Terraform state records.
fn network_id_in_state(state: &Value) -> Option<&str> {
    let resources = state["resources"].as_array()?;
    let network = resources.iter().find(|r| r["type"] == "novacron_network")?;
    network["instances"][0]["attributes"]["id"].as_str()
}

/// The guide's path on both versions: a local state moves into the platform with
/// `init -migrate-state -force-copy`; an apply through the backend locks, writes a new version
/// under its lock id and unlocks; a lock someone else holds makes `plan -lock-timeout=1s` fail
/// naming the holder's id; `force-unlock -force` clears it, audited in the change feed.
async fn state_moves_into_the_platform_backend_and_is_locked_there(version: TfVersion) {
    let Some((suite, platform)) = scenario("state_moves_into_the_platform_backend_and_is_locked_there", version).await else { return };
    let mut tf = suite.terraform(version, InstallMode::FilesystemMirror, &platform.endpoint());
    let workspace = format!("accept-{}", version.slug());
    let net = cidr(version, 8);
    let client = platform.client();

    tf.write("main.tf", &state_config(version.slug(), &net, 1500, false));
    tf.init().await;
    tf.apply().await.assert_contains(&["Apply complete! Resources: 1 added, 0 changed, 0 destroyed."]);
    let network = platform.object_named(Kind::Network, &format!("state-{}", version.slug())).await;
    assert!(client.terraform_state(&workspace).await.expect("state").is_none(), "nothing in the platform before the move");

    tf.use_http_backend(&platform.state_address(&workspace));
    tf.write("main.tf", &state_config(version.slug(), &net, 1500, true));
    tf.ok(&["init", "-migrate-state", "-force-copy", "-input=false", "-no-color"]).await.assert_contains(&["Successfully configured the backend \"http\""]);
    let moved = client.terraform_state(&workspace).await.expect("state").expect("the local state moved into the platform");
    assert_eq!(network_id_in_state(&moved.json), Some(network.id()), "the moved state records the network");
    tf.plan_clean().await;

    // An apply through the backend: a new version, the lock released afterwards.
    tf.write("main.tf", &state_config(version.slug(), &net, 1400, true));
    tf.apply().await.assert_contains(&["Apply complete! Resources: 0 added, 1 changed, 0 destroyed."]);
    let applied = client.terraform_state(&workspace).await.expect("state").expect("state");
    assert!(applied.serial() > moved.serial(), "the apply stored a newer serial: {:?} after {:?}", applied.serial(), moved.serial());
    assert_eq!(applied.lineage(), moved.lineage(), "same lineage: the state moved, it was not recreated");
    let versions = client.terraform_state_versions(&workspace).await.expect("versions");
    assert_eq!(versions.first().map(|v| v.serial), Some(applied.serial()), "the newest version is the current state");
    assert!(versions.iter().all(|v| v.actor == novacron_platform::TEST_API_KEY.0), "the key's name is the actor: {versions:?}");
    assert!(client.terraform_state_lock(&workspace).await.expect("lock").is_none(), "the apply released its lock");
    tf.plan_clean().await;

    // Someone else's lock.
    let holder = format!("held-elsewhere-{}", version.slug());
    platform.lock_state(&workspace, &holder, "ci@runner-3").await;
    let blocked = tf.expect_code(&["plan", "-lock-timeout=1s", "-input=false", "-no-color"], 1).await;
    blocked.assert_contains(&["Error acquiring the state lock", &holder]);
    tf.ok(&["force-unlock", "-force", &holder]).await.assert_contains(&["successfully unlocked"]);
    assert!(client.terraform_state_lock(&workspace).await.expect("lock").is_none(), "force-unlock removed the lock");
    let feed = client.events(0, Duration::ZERO).await.expect("events");
    let audit = feed.events.iter().find(|e| e.action == "force-unlock").expect("the force-unlock is in the change feed");
    assert_eq!((audit.kind.as_str(), audit.id.as_str(), audit.actor.as_str()), ("tfstate", workspace.as_str(), novacron_platform::TEST_API_KEY.0));
    assert!(audit.detail.as_deref().is_some_and(|d| d.contains(&holder)), "{audit:?}");

    tf.destroy().await.assert_contains(&["Destroy complete! Resources: 1 destroyed."]);
    let emptied = client.terraform_state(&workspace).await.expect("state").expect("state");
    assert_eq!(network_id_in_state(&emptied.json), None, "destroy stored a state without the network");
    platform.assert_empty(&format!("after destroy on {version}")).await;
    platform.shutdown().await;
}

/// The platform over HTTPS with a private CA, as the quickstart sets it up: without the CA the
/// provider's error names the endpoint and the reason; with it (the provider block's `ca_file` on
/// one version, `NOVACRON_CA_FILE` on the other) apply and plan work; Terraform's own http
/// backend trusts the CA only through `SSL_CERT_FILE`, and with it the state moves in and is
/// written under its lock over HTTPS.
async fn https_with_a_private_ca_for_the_provider_and_the_state_backend(version: TfVersion) {
    let Some(suite) = Suite::for_version("https_with_a_private_ca_for_the_provider_and_the_state_backend", version) else { return };
    let pki = Pki::new();
    let platform = TestPlatform::start_https(&pki).await;
    let endpoint = platform.endpoint();
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
    let mut tf = suite.terraform(version, InstallMode::FilesystemMirror, &endpoint);
    let slug = format!("tls-{}", version.slug());
    let net = cidr(version, 9);
    let ca_file = pki.ca_file().display().to_string();
    let plain = state_config(&slug, &net, 1500, false);

    tf.write("main.tf", &plain);
    tf.init().await;
    let refused = tf.expect_code(&["apply", "-auto-approve", "-input=false", "-no-color"], 1).await;
    // Terraform wraps diagnostics at 80 columns, so the sentence is matched in pieces.
    refused.assert_contains(&[&format!("the certificate of {endpoint} is not signed"), "by a trusted CA", "ca_file"]);

    let trusting = match version {
        TfVersion::V1_15_5 => plain.replace("provider \"novacron\" {}", &format!("provider \"novacron\" {{\n  ca_file = \"{ca_file}\"\n}}")),
        TfVersion::V1_0_3 => {
            tf.set_env("NOVACRON_CA_FILE", &ca_file);
            plain.clone()
        }
    };
    assert_ne!(version == TfVersion::V1_15_5, trusting == plain, "1.15.5 names the CA in the provider block");
    tf.write("main.tf", &trusting);
    tf.apply().await.assert_contains(&["Apply complete! Resources: 1 added, 0 changed, 0 destroyed."]);
    tf.plan_clean().await;

    let workspace = format!("tls-{}", version.slug());
    tf.use_http_backend(&platform.state_address(&workspace));
    let backend = trusting.replace("terraform {\n", &format!("terraform {{\n{}", "  backend \"http\" {\n    username = \"terraform\"\n  }\n\n"));
    tf.write("main.tf", &backend);
    let migrate = ["init", "-migrate-state", "-force-copy", "-input=false", "-no-color"];
    tf.expect_code(&migrate, 1).await.assert_contains(&["certificate signed by unknown authority"]);
    tf.set_env("SSL_CERT_FILE", &ca_file);
    tf.ok(&migrate).await.assert_contains(&["Successfully configured the backend \"http\""]);
    let moved = platform.client().terraform_state(&workspace).await.expect("state").expect("the state moved into the platform over HTTPS");
    tf.write("main.tf", &backend.replace("mtu  = 1500", "mtu  = 1400"));
    tf.apply().await.assert_contains(&["Apply complete! Resources: 0 added, 1 changed, 0 destroyed."]);
    let applied = platform.client().terraform_state(&workspace).await.expect("state").expect("state");
    assert!(applied.serial() > moved.serial(), "the apply over HTTPS stored a newer serial");
    assert!(platform.client().terraform_state_lock(&workspace).await.expect("lock").is_none(), "the apply released its lock");
    tf.plan_clean().await;

    tf.destroy().await.assert_contains(&["Destroy complete! Resources: 1 destroyed."]);
    platform.assert_empty(&format!("after destroy on {version}")).await;
    platform.shutdown().await;
}

/// Terraform 1.0.3 plans (and destroys) from a state Terraform 1.15.5 wrote to the platform:
/// both write state format 4, and the older one reads past the members it does not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_written_by_terraform_1_15_5_is_planned_by_1_0_3() {
    let name = "a_state_written_by_terraform_1_15_5_is_planned_by_1_0_3";
    let Some(suite) = Suite::for_version(name, TfVersion::V1_15_5) else { return };
    if Suite::for_version(name, TfVersion::V1_0_3).is_none() {
        return;
    }
    let platform = TestPlatform::start().await;
    let address = platform.state_address("cross-version");
    let config = state_config("cross", "10.60.0.0/24", 1500, true);

    let mut newer = suite.terraform(TfVersion::V1_15_5, InstallMode::FilesystemMirror, &platform.endpoint());
    newer.use_http_backend(&address);
    newer.write("main.tf", &config);
    newer.init().await;
    newer.apply().await.assert_contains(&["Apply complete! Resources: 1 added, 0 changed, 0 destroyed."]);
    let written = platform.client().terraform_state("cross-version").await.expect("state").expect("state");
    assert_eq!(written.json["terraform_version"], "1.15.5");
    let instance = &written.json["resources"][0]["instances"][0];
    assert!(instance.get("identity_schema_version").is_some(), "1.15.5 records a member 1.0.3 does not know: {instance}");

    let mut older = suite.terraform(TfVersion::V1_0_3, InstallMode::FilesystemMirror, &platform.endpoint());
    older.use_http_backend(&address);
    older.write("main.tf", &config);
    older.init().await;
    older.plan_clean().await;
    older.destroy().await.assert_contains(&["Destroy complete! Resources: 1 destroyed."]);
    let rewritten = platform.client().terraform_state("cross-version").await.expect("state").expect("state");
    assert_eq!(rewritten.json["terraform_version"], "1.0.3");
    assert!(rewritten.json["resources"].as_array().is_some_and(Vec::is_empty), "1.0.3 destroyed the network and stored that");
    assert!(rewritten.serial() > written.serial());
    platform.assert_empty("after destroy by Terraform 1.0.3").await;
    platform.shutdown().await;
}
