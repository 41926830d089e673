//! The shipped examples under `examples/`, loaded from their files and applied by real Terraform 1.15.5.
//!
//! The provider docs are generated from these files, so they are what engineers copy: every
//! `.tf` example is applied, planned clean and destroyed; the list-resource queries, which
//! filter by made-up ids, are run with `terraform query` (they list nothing). The examples
//! are found by walking the directories, so a new one is tested without touching this file.
//! Only on Terraform 1.15.5: the function example needs 1.8 and the list resources 1.14.
//!
//! The one change made to what is loaded: `examples/provider/provider.tf` names
//! `http://localhost:8080`, which becomes the test platform's address. That file is the
//! provider requirement and provider block of every directory but the GitOps one, which
//! brings its own (with `backend "http"`).

use std::path::{Path, PathBuf};

use novacron_acceptance::{InstallMode, Suite, TestPlatform, Tf, TfVersion, announce, workspace_root};
use novacron_client::Kind;
use serde_json::json;

/// The endpoint `examples/provider/provider.tf` names.
const EXAMPLE_ENDPOINT: &str = "http://localhost:8080";

/// `examples/<rel>`, read; panics naming the file when it is missing.
fn example(rel: &str) -> String {
    let path = workspace_root().join("examples").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The directories under `examples/<group>`, sorted; panics when there are none.
fn example_dirs(group: &str) -> Vec<PathBuf> {
    let root = workspace_root().join("examples").join(group);
    let entries = std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let mut dirs: Vec<PathBuf> = entries.map(|e| e.expect("directory entry").path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "{} holds no examples", root.display());
    dirs
}

/// The file name of `path`, as text.
fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or_else(|| panic!("{} has no file name", path.display()))
}

/// Every file of an example directory but `import.sh` (a shell snippet for the docs), as
/// (name, text); `rename` gives the name the main file takes in a shared working directory.
fn example_files(dir: &Path, main: &str, rename: &str) -> Vec<(String, String)> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<(String, String)> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file() && file_name(p) != "import.sh")
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let name = if file_name(&p) == main { rename.to_string() } else { file_name(&p).to_string() };
            (name, text)
        })
        .collect();
    assert!(files.iter().any(|(n, _)| n == rename), "{} has no {main}", dir.display());
    files.sort();
    files
}

/// A working directory holding `examples/provider/provider.tf` pointed at `endpoint`.
fn with_provider_example(suite: &Suite, endpoint: &str) -> Tf {
    let provider = example("provider/provider.tf");
    assert!(provider.contains(EXAMPLE_ENDPOINT), "examples/provider/provider.tf no longer names {EXAMPLE_ENDPOINT}; update this test");
    let tf = suite.terraform(VERSION, InstallMode::FilesystemMirror, endpoint);
    tf.write("provider.tf", &provider.replace(EXAMPLE_ENDPOINT, endpoint));
    tf
}

/// Writes `files` into the working directory, then `init`, `apply`, a clean plan.
async fn apply_clean(tf: &Tf, files: &[(String, String)]) {
    for (name, text) in files {
        tf.write(name, text);
    }
    tf.init().await;
    tf.apply().await;
    tf.plan_clean().await;
}

const VERSION: TfVersion = TfVersion::V1_15_5;

/// Every shipped example, in the order their references need: the GitOps repository first
/// (it makes the network `core` and the VM `web-1` the data-source examples look up), the data
/// sources and functions while it stands, then the resource examples together (the VM example
/// references the network example's `novacron_network.core`, the volume example the VM
/// example's `novacron_vm.web`), then the list-resource queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_example_applies_plans_clean_and_destroys() {
    announce(&format!("SKIP the shipped examples on Terraform {}: the function and list-resource examples need 1.8 and 1.14", TfVersion::V1_0_3.as_str()));
    let Some(suite) = Suite::for_version("every_shipped_example_applies_plans_clean_and_destroys", VERSION) else { return };
    let platform = TestPlatform::start().await;
    let endpoint = platform.endpoint();

    // examples/gitops: its own provider block and the platform state backend, as its comment says.
    let mut gitops = suite.terraform(VERSION, InstallMode::FilesystemMirror, &endpoint);
    gitops.use_http_backend(&platform.state_address("gitops-example"));
    gitops.write("main.tf", &example("gitops/main.tf"));
    gitops.write(".novacronignore", &example("gitops/.novacronignore"));
    gitops.init().await;
    gitops.apply().await.assert_contains(&["Apply complete! Resources: 5 added, 0 changed, 0 destroyed."]);
    gitops.plan_clean().await;
    let outputs = gitops.outputs().await;
    assert_eq!(outputs["web_ips"].as_array().map(Vec::len), Some(2), "{outputs:?}");
    let core = platform.object_named(Kind::Network, "core").await;
    let web = platform.object_named(Kind::Vm, "web-1").await;
    assert!(platform.client().terraform_state("gitops-example").await.expect("state").is_some(), "the state lives in the platform");

    // examples/data-sources/*, each in its own directory, reading what the GitOps example made.
    for dir in example_dirs("data-sources") {
        let tf = with_provider_example(&suite, &endpoint);
        apply_clean(&tf, &example_files(&dir, "data-source.tf", "data-source.tf")).await;
        let outputs = tf.outputs().await;
        match file_name(&dir) {
            "novacron_network" => assert_eq!(outputs.get("core_cidr"), core.get("cidr"), "{outputs:?}"),
            "novacron_vm" => assert_eq!(outputs.get("web_ip"), web.get("ip_address"), "{outputs:?}"),
            _ => {}
        }
        tf.destroy().await;
    }

    // examples/functions/*, each in its own directory.
    for dir in example_dirs("functions") {
        let tf = with_provider_example(&suite, &endpoint);
        apply_clean(&tf, &example_files(&dir, "function.tf", "function.tf")).await;
        if file_name(&dir) == "policy_eval" {
            assert_eq!(tf.outputs().await.get("denied"), Some(&json!(["big asks for 16 cores; at most 8"])));
        }
        tf.destroy().await;
    }

    gitops.destroy().await.assert_contains(&["Destroy complete! Resources: 5 destroyed."]);
    platform.assert_empty("after destroying examples/gitops").await;

    // examples/resources/*/resource.tf together (they reference each other), each as <type>.tf.
    let resources = with_provider_example(&suite, &endpoint);
    let mut files = Vec::new();
    let mut types = Vec::new();
    for dir in example_dirs("resources") {
        let kind = file_name(&dir).to_string();
        files.extend(example_files(&dir, "resource.tf", &format!("{kind}.tf")));
        types.push(kind);
    }
    apply_clean(&resources, &files).await;
    let state = resources.ok(&["state", "list"]).await;
    for kind in &types {
        assert!(state.stdout.lines().any(|l| l.starts_with(&format!("{kind}."))), "examples/resources/{kind} made no {kind}:\n{state}");
    }
    // examples/resources/*/import.sh: its `terraform import <address> <made-up id>` names an
    // address the resource example declares; run with the real id, it imports what the state
    // forgot, and the plan is clean again (for the VM, after one in-place update, see below).
    for kind in &types {
        let script = example(&format!("resources/{kind}/import.sh"));
        let line = script
            .lines()
            .find(|l| l.starts_with("terraform import "))
            .unwrap_or_else(|| panic!("examples/resources/{kind}/import.sh runs no terraform import"));
        let address = line.split_whitespace().nth(2).unwrap_or_else(|| panic!("no address in {line:?}"));
        let shown = resources.ok(&["state", "show", "-no-color", address]).await;
        let id = shown
            .stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("id").map(str::trim).and_then(|r| r.strip_prefix('=')).map(|v| v.trim().trim_matches('"').to_string()))
            .unwrap_or_else(|| panic!("no id in the state of {address}:\n{shown}"));
        resources.ok(&["state", "rm", address]).await;
        resources.ok(&["import", "-input=false", "-no-color", address, &id]).await.assert_contains(&["Import successful!"]);
        let plan = resources.plan().await;
        if plan.code == 2 && kind == "novacron_vm" {
            // What the API never returns (the write-only `user_data`, the `timeouts` block) is
            // not in an imported state: an in-place update, never a replacement, puts it back.
            plan.assert_contains(&["Plan: 0 to add, 1 to change, 0 to destroy.", "user_data"]);
            resources.apply().await.assert_contains(&["0 added, 1 changed, 0 destroyed."]);
            resources.plan_clean().await;
        } else {
            assert_eq!(plan.code, 0, "the plan after importing {address} is not empty:\n{plan}");
        }
    }
    resources.destroy().await;
    platform.assert_empty("after destroying examples/resources").await;

    // examples/list-resources/*: Terraform parses them and the provider accepts every filter.
    // The VM and volume examples filter by made-up ids and list nothing; the network and
    // policy examples filter by name prefix and mode, so objects made here show up.
    let client = platform.client();
    let prod = client.create(Kind::Network, &json!({"name": "prod-edge", "cidr": "10.90.0.0/24"})).await.expect("network").value;
    let other = client.create(Kind::Network, &json!({"name": "staging-edge", "cidr": "10.91.0.0/24"})).await.expect("network").value;
    let rule = "package warn_only\n\ndeny contains msg if {\n  input.object.cpu_cores > 64\n  msg := \"huge\"\n}\n";
    let warning =
        client.create(Kind::Policy, &json!({"name": "warn-only", "type": "cost", "enforcement_mode": "warn", "rule": rule})).await.expect("policy").value;
    let lists = with_provider_example(&suite, &endpoint);
    let mut files = Vec::new();
    for dir in example_dirs("list-resources") {
        let kind = file_name(&dir).to_string();
        files.extend(example_files(&dir, "list.tfquery.hcl", &format!("{kind}.tfquery.hcl")));
    }
    for (name, text) in &files {
        lists.write(name, text);
    }
    lists.init().await;
    lists.ok(&["validate", "-query", "-no-color"]).await;
    let listed = lists.ok(&["query", "-no-color"]).await;
    listed.assert_contains(&["list.novacron_network.prod", prod.id(), "list.novacron_policy.warning", warning.id()]);
    assert!(!listed.contains(other.id()), "the name prefix filters staging-edge out:\n{listed}");
    for (kind, id) in [(Kind::Network, prod.id()), (Kind::Network, other.id()), (Kind::Policy, warning.id())] {
        client.delete(kind, id).await.unwrap_or_else(|e| panic!("delete {id}: {e}"));
    }
    platform.assert_empty("after the list-resource queries").await;
    platform.shutdown().await;
}
