//! What the Terraform benchmarks need from the machine: knobs from the environment, Terraform and the provider binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The number in environment variable `name`, else `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Terraform 1.15.5 and the provider binary (release, else debug), or why not.
pub fn tools() -> Result<(PathBuf, PathBuf), String> {
    let root = workspace_root();
    let terraform = std::env::var_os("NOVACRON_TERRAFORM").map(PathBuf::from).unwrap_or_else(|| root.join("acceptance/.tools/bin/terraform-1.15.5"));
    let target = std::env::var_os("CARGO_TARGET_DIR").map(|t| root.join(t)).unwrap_or_else(|| root.join("target"));
    let provider = ["release", "debug"].iter().map(|p| target.join(p).join("terraform-provider-novacron")).find(|p| p.is_file());
    match (terraform.is_file(), provider) {
        (true, Some(provider)) => Ok((terraform, provider)),
        (false, _) => Err(format!("{} is missing: run `bash acceptance/install-terraform.sh` or set NOVACRON_TERRAFORM", terraform.display())),
        (_, None) => Err("the provider is not built: run `cargo build --release -p terraform-provider-novacron`".into()),
    }
}

/// The `p` quantile (0 < p ≤ 1) of `sorted` samples, in seconds (nearest rank).
pub fn quantile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1].as_secs_f64()
}
