//! Differential test of the expression evaluator against real Terraform: every case of `hcl_corpus/` evaluated by both and compared exactly.
//!
//! One root module holds one `output` per expression, so a single `terraform apply` evaluates
//! the whole corpus; expected errors run as a few tiny modules of their own. Without Terraform
//! the test skips with a reason, unless `NOVACRON_ACCEPTANCE=1` (CI), where it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use novacron_reconcile::hcl::funcs::TERRAFORM_FUNCTIONS;
use novacron_reconcile::hcl::{EvalError, evaluate_expression};
use novacron_reconcile::source::MemoryTree;

/// One corpus line: a name, an optional message fragment, an expression.
struct Case {
    name: String,
    fragment: String,
    expr: String,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hcl_corpus")
}

fn load(file: &str, with_fragment: bool) -> Vec<Case> {
    let text = std::fs::read_to_string(corpus_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut cases: Vec<Case> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix('>') {
            let last = cases.last_mut().unwrap_or_else(|| panic!("{file}:{}: a continuation line before any case", n + 1));
            last.expr.push('\n');
            last.expr.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = line.split_once(" | ").unwrap_or_else(|| panic!("{file}:{}: expected `name | expression`", n + 1));
        let (fragment, expr) = if with_fragment {
            rest.split_once(" | ").unwrap_or_else(|| panic!("{file}:{}: expected `name | fragment | expression`", n + 1))
        } else {
            ("", rest)
        };
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{file}:{}: bad case name {name:?}", n + 1);
        assert!(!cases.iter().any(|c| c.name == name), "{file}:{}: duplicate case name {name}", n + 1);
        cases.push(Case { name: name.to_string(), fragment: fragment.to_string(), expr: expr.to_string() });
    }
    cases
}

/// The fixture files as `(files/<path>, text)`.
fn fixtures() -> Vec<(String, String)> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).expect("fixture directory").map(|e| e.expect("entry").path()).collect();
        entries.sort();
        for path in entries {
            let name = format!("{prefix}/{}", path.file_name().expect("name").to_string_lossy());
            if path.is_dir() {
                walk(&path, &name, out);
            } else {
                out.push((name, std::fs::read_to_string(&path).expect("fixture is text")));
            }
        }
    }
    let mut out = Vec::new();
    walk(&corpus_dir().join("files"), "files", &mut out);
    out
}

fn write_fixtures(dir: &Path, files: &[(String, String)]) {
    for (path, text) in files {
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::write(target, text).expect("write fixture");
    }
}

#[path = "../../acceptance/src/install.rs"]
mod install;

/// Terraform 1.15.5: `NOVACRON_TERRAFORM`, else the acceptance suite's, installed on first use.
fn terraform() -> Result<PathBuf, String> {
    match std::env::var_os("NOVACRON_TERRAFORM") {
        Some(p) if Path::new(&p).is_file() => Ok(PathBuf::from(p)),
        Some(p) => Err(format!("NOVACRON_TERRAFORM={} is not a file", Path::new(&p).display())),
        None => install::installed_terraform("1.15.5"),
    }
}

fn run(tf: &Path, dir: &Path, args: &[&str]) -> Output {
    let rc = dir.join(".terraformrc");
    if !rc.exists() {
        std::fs::write(&rc, "").expect("write cli config");
    }
    Command::new(tf)
        .args(args)
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", &rc)
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_INPUT", "0")
        .output()
        .expect("terraform starts")
}

fn output_block(name: &str, expr: &str, sensitive: bool) -> String {
    format!("output \"{name}\" {{\n  value = {expr}\n{}}}\n", if sensitive { "  sensitive = true\n" } else { "" })
}

fn compact(v: &serde_json::Value) -> String {
    serde_json::to_string(v).expect("json")
}

#[test]
fn expressions_evaluate_as_terraform_evaluates_them() {
    if std::env::var("NOVACRON_ACCEPTANCE").as_deref() == Ok("0") {
        eprintln!("SKIPPED the differential HCL corpus: NOVACRON_ACCEPTANCE=0 switches the Terraform tests off");
        return;
    }
    let tf = terraform().unwrap_or_else(|why| panic!("the differential HCL corpus needs Terraform: {why}"));
    let started = Instant::now();
    let cases = load("expressions.txt", false);
    let errors = load("errors.txt", true);
    let unknowns = load("unknown.txt", true);
    let files = fixtures();
    let tree = MemoryTree::new(files.iter().map(|(p, t)| (p.as_str(), t.as_str())));

    // The reconciler first: its sensitivity decides `sensitive = true`, so Terraform refuses an
    // output the reconciler failed to mark.
    let ours: Vec<Result<novacron_reconcile::hcl::Evaluated, EvalError>> = cases.iter().map(|c| evaluate_expression(&c.expr, &tree)).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    write_fixtures(dir.path(), &files);
    let module: String = cases.iter().zip(&ours).map(|(c, r)| output_block(&c.name, &c.expr, r.as_ref().is_ok_and(|e| e.sensitive))).collect();
    std::fs::write(dir.path().join("main.tf"), module).expect("write main.tf");
    let apply = run(&tf, dir.path(), &["apply", "-auto-approve", "-input=false", "-no-color"]);
    assert!(
        apply.status.success(),
        "terraform apply of the corpus failed:\n{}{}",
        String::from_utf8_lossy(&apply.stdout),
        String::from_utf8_lossy(&apply.stderr)
    );
    let out = run(&tf, dir.path(), &["output", "-json"]);
    assert!(out.status.success(), "terraform output failed: {}", String::from_utf8_lossy(&out.stderr));
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("terraform output -json is JSON");

    let mut mismatches = Vec::new();
    for (case, ours) in cases.iter().zip(&ours) {
        let expected = &theirs[&case.name]["value"];
        match ours {
            Ok(e) => {
                let got = serde_json::to_value(&e.value).expect("value as JSON");
                if &got != expected {
                    mismatches.push(format!("{}: {}\n    terraform:  {}\n    reconciler: {}", case.name, case.expr, compact(expected), compact(&got)));
                }
            }
            Err(e) => mismatches.push(format!("{}: {}\n    terraform:  {}\n    reconciler: error: {e}", case.name, case.expr, compact(expected))),
        }
    }

    // Expected errors: each its own module (an error stops a whole apply), a few at a time.
    let error_dirs: Vec<tempfile::TempDir> = errors.iter().map(|_| tempfile::tempdir().expect("tempdir")).collect();
    for chunk in errors.iter().zip(&error_dirs).collect::<Vec<_>>().chunks(4) {
        let children: Vec<_> = chunk
            .iter()
            .map(|(case, d)| {
                write_fixtures(d.path(), &files);
                std::fs::write(d.path().join("main.tf"), output_block("x", &case.expr, false)).expect("write main.tf");
                std::fs::write(d.path().join(".terraformrc"), "").expect("write cli config");
                Command::new(&tf)
                    .args(["apply", "-auto-approve", "-input=false", "-no-color"])
                    .current_dir(d.path())
                    .env("TF_CLI_CONFIG_FILE", d.path().join(".terraformrc"))
                    .env("TF_IN_AUTOMATION", "1")
                    .env("CHECKPOINT_DISABLE", "1")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("terraform starts")
            })
            .collect();
        for ((case, _), mut child) in chunk.iter().zip(children) {
            let status = child.wait().expect("terraform exits");
            if status.success() {
                mismatches.push(format!("{}: {}\n    terraform accepted it, but the corpus expects an error", case.name, case.expr));
            }
            match evaluate_expression(&case.expr, &tree) {
                Err(e) if !e.is_unknown() && e.to_string().contains(&case.fragment) => {}
                other => mismatches.push(format!("{}: {}\n    reconciler: {other:?}, expected an error mentioning {:?}", case.name, case.expr, case.fragment)),
            }
        }
    }

    for case in &unknowns {
        match evaluate_expression(&case.expr, &tree) {
            Err(e) if e.is_unknown() && e.to_string().contains(&case.fragment) => {}
            other => mismatches.push(format!("{}: {}\n    reconciler: {other:?}, expected unknown mentioning {:?}", case.name, case.expr, case.fragment)),
        }
    }

    let all_text: String = [&cases, &errors, &unknowns].iter().flat_map(|l| l.iter().map(|c| c.expr.as_str())).collect::<Vec<_>>().join("\n");
    let uncovered: Vec<&str> = TERRAFORM_FUNCTIONS.iter().copied().filter(|f| !all_text.contains(&format!("{f}("))).collect();
    eprintln!(
        "hcl corpus: {} expressions, {} expected errors, {} unknowns; {} of {} Terraform functions covered; {} mismatches; {:.1} s",
        cases.len(),
        errors.len(),
        unknowns.len(),
        TERRAFORM_FUNCTIONS.len() - uncovered.len(),
        TERRAFORM_FUNCTIONS.len(),
        mismatches.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(uncovered.is_empty(), "functions with no corpus case: {uncovered:?}");
    assert!(mismatches.is_empty(), "{} mismatches between Terraform and the reconciler:\n{}", mismatches.len(), mismatches.join("\n"));
}
