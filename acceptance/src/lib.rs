//! Test support for the Terraform acceptance suite: where the tools are, the platform, and a `terraform` runner.
//!
//! The suite drives the real `terraform` binary (1.15.5 and 1.0.3, installed on first use by
//! `acceptance/install-terraform.sh` under `acceptance/.tools/bin/`) against the provider
//! binary `cargo build -p terraform-provider-novacron` produced and the reference platform
//! started in-process on `127.0.0.1:0`. Nothing here builds anything.

pub mod install;
pub mod platform;
pub mod terraform;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use platform::TestPlatform;
pub use terraform::{InstallMode, Output, Tf, TfVersion};

/// Environment variable that switches the suite off (`0`); unset or `1` (as CI sets it), the
/// suite runs, installing Terraform first when it is missing.
pub const ENABLE_VAR: &str = "NOVACRON_ACCEPTANCE";

/// Environment variable naming a provider binary to use instead of the one under `target/`.
pub const PROVIDER_BIN_VAR: &str = "NOVACRON_PROVIDER_BIN";

/// File name of the provider binary.
pub const PROVIDER_BINARY: &str = "terraform-provider-novacron";

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or_else(|| manifest.to_path_buf())
}

/// `acceptance/.tools/bin`, where `install-terraform.sh` puts the Terraform binaries.
pub fn tools_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools").join("bin")
}

/// The cargo target directory: `CARGO_TARGET_DIR` (relative to the workspace root when
/// relative) or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() { dir } else { workspace_root().join(dir) }
        }
        _ => workspace_root().join("target"),
    }
}

/// Finds the provider binary: `NOVACRON_PROVIDER_BIN`, else the first of `profiles` under the
/// target directory that holds one. The error says how to build it.
pub fn find_provider(profiles: &[&str]) -> anyhow::Result<PathBuf> {
    if let Some(explicit) = std::env::var_os(PROVIDER_BIN_VAR).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(explicit);
        if path.is_file() {
            return Ok(path);
        }
        anyhow::bail!("{PROVIDER_BIN_VAR}={} does not name a file", path.display());
    }
    let target = target_dir();
    let candidates: Vec<PathBuf> = profiles.iter().map(|p| target.join(p).join(PROVIDER_BINARY)).collect();
    if let Some(found) = candidates.iter().find(|c| c.is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    anyhow::bail!(
        "the provider binary is not built (looked at {}); build it first with `cargo build -p terraform-provider-novacron` \
         (or point {PROVIDER_BIN_VAR} at one)",
        looked.join(", ")
    )
}

/// Writes a line straight to the process's stderr, past the test harness's output capture,
/// so a skipped test is visible in a plain `cargo test` run rather than passing silently.
pub fn announce(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// What a scenario needs to run: the provider binary (the Terraform version is the test's).
#[derive(Debug, Clone)]
pub struct Suite {
    provider: PathBuf,
}

impl Suite {
    /// Decides whether the scenario `test` runs on `version`: `None` (after announcing
    /// `SKIP: ...`) only when the suite is switched off with `NOVACRON_ACCEPTANCE=0`. A missing
    /// Terraform is installed first ([`install::installed_terraform`]); a failed install, like a
    /// missing provider binary, fails the test: a suite that is meant to run never passes
    /// without testing anything.
    pub fn for_version(test: &str, version: TfVersion) -> Option<Suite> {
        let name = format!("{test} on Terraform {}", version.as_str());
        let switch = std::env::var(ENABLE_VAR);
        if switch.as_deref() == Ok("0") {
            announce(&format!("SKIP {name}: {ENABLE_VAR}=0 switches the Terraform acceptance suite off"));
            return None;
        }
        // Installed on first use; a failed install fails the test.
        if let Err(why) = install::installed_terraform(version.as_str()) {
            panic!("{name}: {why}");
        }
        let provider = match find_provider(&["debug", "release"]) {
            Ok(p) => p,
            Err(e) => panic!("{name}: {e:#}"),
        };
        Some(Suite { provider })
    }

    /// The provider binary under test.
    pub fn provider(&self) -> &Path {
        &self.provider
    }

    /// A fresh Terraform working directory for `version`, installing the provider by `mode`
    /// and pointing it at `endpoint` with the test API key.
    pub fn terraform(&self, version: TfVersion, mode: InstallMode, endpoint: &str) -> Tf {
        match Tf::new(version, mode, &self.provider, endpoint, platform::API_KEY) {
            Ok(tf) => tf,
            Err(e) => panic!("cannot prepare a Terraform {} working directory: {e:#}", version.as_str()),
        }
    }
}

/// Replaces every `@KEY@` in `template` by its value: HCL is full of braces, so `format!`
/// would make the configurations unreadable.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (key, value) in values {
        out = out.replace(&format!("@{key}@"), value);
    }
    let mut from = 0;
    while let Some(offset) = out[from..].find('@') {
        let start = from + offset + 1;
        let len = out[start..].bytes().take_while(|b| b.is_ascii_uppercase() || *b == b'_').count();
        assert!(!(len > 0 && out[start + len..].starts_with('@')), "template placeholder @{}@ has no value", &out[start..start + len]);
        from = start;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_replaces_every_placeholder() {
        assert_eq!(fill("a @X@ b @X@ @Y_Z@", &[("X", "1"), ("Y_Z", "2")]), "a 1 b 1 2");
    }

    #[test]
    #[should_panic(expected = "@MISSING@ has no value")]
    fn fill_refuses_a_missing_value() {
        fill("name = \"@MISSING@\"", &[]);
    }

    #[test]
    fn an_at_sign_in_text_is_left_alone() {
        assert_eq!(fill("user@example.com", &[]), "user@example.com");
    }
}
