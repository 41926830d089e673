//! Finding the real Terraform and the built provider for rollout tests, and an engineer's own `terraform plan`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

#[path = "../../../acceptance/src/install.rs"]
mod install;

/// Terraform 1.15.5 (`NOVACRON_TERRAFORM`, else the acceptance suite's install, made on first
/// use) and the provider binary. A failed install or a missing provider fails the test;
/// `NOVACRON_ACCEPTANCE=0` skips it, saying so.
pub fn tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    if std::env::var("NOVACRON_ACCEPTANCE").is_ok_and(|v| v == "0") {
        eprintln!("SKIPPED {test}: NOVACRON_ACCEPTANCE=0 switches the Terraform tests off");
        return None;
    }
    let terraform = match std::env::var_os("NOVACRON_TERRAFORM") {
        Some(t) => PathBuf::from(t),
        None => install::installed_terraform("1.15.5").unwrap_or_else(|e| panic!("{test}: {e}")),
    };
    let target = std::env::var_os("CARGO_TARGET_DIR").map(|t| workspace().join(t)).unwrap_or_else(|| workspace().join("target"));
    let provider = target.join("debug/terraform-provider-novacron");
    assert!(terraform.is_file(), "{test}: NOVACRON_TERRAFORM={} is not a file", terraform.display());
    assert!(
        provider.is_file(),
        "{test}: {} is missing: run `cargo build -p terraform-provider-novacron` (cargo test --workspace builds it)",
        provider.display()
    );
    Some((terraform, provider))
}

/// An engineer's `terraform init` + `plan -detailed-exitcode` of `main_tf` against the state
/// file, installing the provider from the filesystem mirror of the CLI config `rc`: 0 no
/// changes, 2 changes. Returns the code and output.
pub fn engineer_plan(terraform: &Path, rc: &Path, dir: &Path, main_tf: &str, state: &Path, endpoint: &str, api_key: &str) -> (i32, String) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("main.tf"), main_tf).expect("write main.tf");
    let backend = format!("terraform {{\n  backend \"local\" {{\n    path = \"{}\"\n  }}\n}}\n", state.display());
    std::fs::write(dir.join("backend_override.tf"), backend).expect("write override");
    let run = |args: &[&str]| {
        let out = Command::new(terraform)
            .args(args)
            .current_dir(dir)
            .env("TF_CLI_CONFIG_FILE", rc)
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .env("NOVACRON_ENDPOINT", endpoint)
            .env("NOVACRON_API_KEY", api_key)
            .output()
            .expect("terraform runs");
        (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (code, text) = run(&["init", "-input=false", "-no-color"]);
    assert_eq!(code, 0, "terraform init: {text}");
    run(&["plan", "-detailed-exitcode", "-input=false", "-no-color", "-lock=false"])
}
