//! The `git` CLI, the second reference next to git2, for tests and benchmarks.

use std::path::Path;
use std::process::Command;

/// Runs `git` in `dir` with a fixed identity and `main` as the default branch; panics with
/// git's stderr when it fails. Returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
