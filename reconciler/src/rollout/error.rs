//! Rollout errors, and the reading of Terraform's diagnostics (JSON lines or `-no-color` text) into them.

use std::path::PathBuf;

use serde::Deserialize;

use super::plan::PlanJsonError;

/// The summary Terraform gives a saved plan whose state has moved on.
const STALE_PLAN_SUMMARY: &str = "Saved plan is stale";
/// The summary Terraform gives a state lock someone else holds.
const LOCK_SUMMARY: &str = "Error acquiring the state lock";

/// Why a rollout step failed. Each message is one line that says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// No Terraform binary at the configured path, or none on PATH.
    #[error("terraform not found ({looked_for}): install Terraform, or pass --terraform PATH or set NOVACRON_TERRAFORM")]
    TerraformNotFound {
        /// Where it was looked for.
        looked_for: String,
    },
    /// The configured provider binary does not exist.
    #[error("provider binary {} not found: build terraform-provider-novacron or fix the provider path", path.display())]
    ProviderNotFound {
        /// The configured path.
        path: PathBuf,
    },
    /// A rollout key, module path or state workspace that cannot name a directory or a URL segment.
    #[error("{what} {name:?} cannot be used: use letters, digits, `.`, `_` or `-` (and `/` in a module path, inside the repository)")]
    BadName {
        /// What the name is for.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The revision has no directory at the configured path.
    #[error("the revision has no directory {path:?}: fix the path of the Terraform root module")]
    NoSuchPath {
        /// The path inside the repository.
        path: String,
    },
    /// A file system operation on the working copy failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Terraform rejected the configuration.
    #[error("configuration rejected: {}{summary}{}", location(file, *line), detail_suffix(detail))]
    ConfigRejected {
        /// The file Terraform names, relative to the module directory.
        file: Option<String>,
        /// Its line.
        line: Option<u64>,
        /// Terraform's summary.
        summary: String,
        /// The first line of Terraform's detail.
        detail: String,
    },
    /// Someone else holds the state lock.
    #[error("state is locked by {who} ({operation} since {created}, lock ID {id}): wait for it to finish, or `terraform force-unlock {id}` if it died")]
    LockHeld {
        /// The lock ID (what `force-unlock` takes).
        id: String,
        /// `user@host` of the holder.
        who: String,
        /// What the holder is doing (`OperationTypeApply`, ...).
        operation: String,
        /// When the lock was taken, as Terraform prints it.
        created: String,
        /// The state path or address the lock covers.
        path: String,
    },
    /// The saved plan was made against a state that has changed since.
    #[error("the saved plan is stale: the state changed after it was made; plan again")]
    StalePlan,
    /// An apply (or import) failed in the provider or on the platform.
    #[error("terraform {command} failed: {}{summary}{}", address.as_deref().map(|a| format!("{a}: ")).unwrap_or_default(), detail_suffix(detail))]
    ApplyFailed {
        /// `apply`, `import`, ...
        command: String,
        /// The resource the first error is about.
        address: Option<String>,
        /// Terraform's summary of the first error.
        summary: String,
        /// The first line of its detail.
        detail: String,
    },
    /// Any other Terraform failure (init, an unreachable platform at plan time, ...).
    #[error("terraform {command} failed: {summary}{}", detail_suffix(detail))]
    CommandFailed {
        /// The subcommand.
        command: String,
        /// Terraform's summary of the first error, or its exit status when it printed none.
        summary: String,
        /// The first line of its detail.
        detail: String,
    },
    /// The terraform process was stopped by a signal (a stop request, or the machine shutting down).
    #[error("terraform {command} was stopped by signal {signal}: run it again")]
    Interrupted {
        /// The subcommand.
        command: String,
        /// The signal number.
        signal: i32,
    },
    /// `terraform show -json` printed something unreadable.
    #[error(transparent)]
    PlanJson(#[from] PlanJsonError),
}

impl RolloutError {
    /// Whether running the same step again may succeed without changing anything (a lock, a stale plan, a signal).
    pub fn is_retryable(&self) -> bool {
        matches!(self, RolloutError::LockHeld { .. } | RolloutError::StalePlan | RolloutError::Interrupted { .. })
    }

    /// A short stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            RolloutError::TerraformNotFound { .. } => "terraform_not_found",
            RolloutError::ProviderNotFound { .. } => "provider_not_found",
            RolloutError::BadName { .. } => "bad_name",
            RolloutError::NoSuchPath { .. } => "no_such_path",
            RolloutError::Io { .. } => "io",
            RolloutError::ConfigRejected { .. } => "config_rejected",
            RolloutError::LockHeld { .. } => "lock_held",
            RolloutError::StalePlan => "stale_plan",
            RolloutError::ApplyFailed { .. } => "apply_failed",
            RolloutError::CommandFailed { .. } => "command_failed",
            RolloutError::Interrupted { .. } => "interrupted",
            RolloutError::PlanJson(_) => "plan_json",
        }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RolloutError {
        let what = what.into();
        move |source| RolloutError::Io { what, source }
    }
}

fn location(file: &Option<String>, line: Option<u64>) -> String {
    match (file, line) {
        (Some(f), Some(l)) => format!("{f}:{l}: "),
        (Some(f), None) => format!("{f}: "),
        _ => String::new(),
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() { String::new() } else { format!(" ({detail})") }
}

/// One error or warning Terraform reported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostic {
    /// `error` or `warning`.
    pub severity: String,
    /// The one-line summary.
    pub summary: String,
    /// The full detail text.
    pub detail: String,
    /// The resource it is about, when Terraform says.
    pub address: Option<String>,
    /// The file it points at.
    pub file: Option<String>,
    /// The line it points at.
    pub line: Option<u64>,
}

#[derive(Deserialize)]
struct JsonLine {
    #[serde(rename = "type")]
    ty: Option<String>,
    diagnostic: Option<JsonDiagnostic>,
}

#[derive(Deserialize)]
struct JsonDiagnostic {
    #[serde(default)]
    severity: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    detail: String,
    address: Option<String>,
    range: Option<JsonRange>,
}

#[derive(Deserialize)]
struct JsonRange {
    filename: String,
    start: JsonPos,
}

#[derive(Deserialize)]
struct JsonPos {
    line: u64,
}

/// The diagnostics among the JSON lines a `-json` command printed (other lines are skipped).
pub fn json_diagnostics(stdout: &str) -> Vec<Diagnostic> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<JsonLine>(l).ok())
        .filter(|l| l.ty.as_deref() == Some("diagnostic"))
        .filter_map(|l| l.diagnostic)
        .map(|d| Diagnostic {
            severity: d.severity,
            summary: d.summary,
            detail: d.detail,
            address: d.address,
            file: d.range.as_ref().map(|r| r.filename.clone()),
            line: d.range.map(|r| r.start.line),
        })
        .collect()
}

/// The errors in `-no-color` text output: each `Error: <summary>` line, its detail the
/// paragraphs up to the next diagnostic; `on <file> line <n>` gives the location.
pub fn text_diagnostics(text: &str) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    let mut current: Option<Diagnostic> = None;
    for raw in text.lines() {
        let line = raw.trim_start_matches(['│', '╷', '╵']).trim_start();
        let (severity, rest) = match (line.strip_prefix("Error: "), line.strip_prefix("Warning: ")) {
            (Some(rest), _) => ("error", Some(rest)),
            (None, Some(rest)) => ("warning", Some(rest)),
            _ => ("", None),
        };
        if let Some(summary) = rest {
            out.extend(current.take());
            current = Some(Diagnostic { severity: severity.into(), summary: summary.trim().into(), ..Diagnostic::default() });
            continue;
        }
        let Some(d) = current.as_mut() else { continue };
        if d.file.is_none()
            && d.detail.is_empty()
            && let Some((file, line_no)) = line.strip_prefix("on ").and_then(|r| r.split_once(" line "))
        {
            d.file = Some(file.to_string());
            d.line = line_no.split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok());
            continue;
        }
        // The source snippet under `on <file> line <n>` (`  2:   name =`) and value notes are not the message.
        let snippet = line.split_once(':').is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if d.detail.is_empty() && (snippet || line.starts_with(['├', '│'])) {
            continue;
        }
        if !d.detail.is_empty() || !line.is_empty() {
            d.detail.push_str(line);
            d.detail.push('\n');
        }
    }
    out.extend(current);
    for d in &mut out {
        d.detail = d.detail.trim().to_string();
    }
    out
}

/// The lock holder named in a lock error's detail (`Lock Info:` lines `ID:`, `Path:`, ...).
pub fn lock_holder(detail: &str) -> RolloutError {
    let field = |key: &str| {
        detail
            .lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .filter_map(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().to_string())
            .next()
            .unwrap_or_else(|| "unknown".to_string())
    };
    RolloutError::LockHeld { id: field("ID"), who: field("Who"), operation: field("Operation"), created: field("Created"), path: field("Path") }
}

/// How a failed command's diagnostics are classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// `plan` or `validate`: an error pointing into a file is the configuration's fault.
    Planning,
    /// `apply`, `import`: errors are the provider's or the platform's.
    Applying,
    /// Anything else.
    Other,
}

/// The one error a failed command amounts to: a held lock or a stale plan wherever they
/// appear, otherwise the first error diagnostic classified by `kind`.
pub fn classify(command: &str, kind: FailureKind, diagnostics: &[Diagnostic], status: &str) -> RolloutError {
    let errors: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.severity == "error").collect();
    if let Some(lock) = errors.iter().find(|d| d.summary == LOCK_SUMMARY) {
        return lock_holder(&lock.detail);
    }
    if errors.iter().any(|d| d.summary == STALE_PLAN_SUMMARY) {
        return RolloutError::StalePlan;
    }
    let first_line = |d: &Diagnostic| d.detail.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default().to_string();
    // `init` opens with a general error before the located ones: the located one says what to fix.
    if kind == FailureKind::Planning
        && let Some(located) = errors.iter().find(|d| d.file.is_some())
    {
        return RolloutError::ConfigRejected { file: located.file.clone(), line: located.line, summary: located.summary.clone(), detail: first_line(located) };
    }
    let Some(first) = errors.first() else {
        return RolloutError::CommandFailed {
            command: command.into(),
            summary: format!("it exited with {status} and printed no error"),
            detail: String::new(),
        };
    };
    if kind == FailureKind::Applying || first.address.is_some() {
        return RolloutError::ApplyFailed {
            command: command.into(),
            address: first.address.clone(),
            summary: first.summary.clone(),
            detail: first_line(first),
        };
    }
    RolloutError::CommandFailed { command: command.into(), summary: first.summary.clone(), detail: first_line(first) }
}

/// `text` with every secret replaced by `<redacted>`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(text.to_string(), |t, s| t.replace(s.as_str(), "<redacted>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK_JSON: &str = r#"{"@level":"info","@message":"Terraform 1.15.5","type":"version","ui":"1.3"}
{"@level":"error","@message":"Error: Error acquiring the state lock","diagnostic":{"severity":"error","summary":"Error acquiring the state lock","detail":"Error message: resource temporarily unavailable\nLock Info:\n  ID:        1111-2222\n  Path:      /tmp/rx/state/terraform.tfstate\n  Operation: OperationTypeApply\n  Who:       alice@laptop\n  Version:   1.15.5\n  Created:   2026-12-01 10:00:00 +0000 UTC\n  Info:      \n\n\nTerraform acquires a state lock to protect the state."},"type":"diagnostic"}"#;

    const CONFIG_JSON: &str = r#"{"@level":"error","@message":"Error: Unsupported argument","diagnostic":{"severity":"error","summary":"Unsupported argument","detail":"An argument named \"bogus\" is not expected here.","range":{"filename":"bad.tf","start":{"line":4,"column":3,"byte":67},"end":{"line":4,"column":8,"byte":72}}},"type":"diagnostic"}
{"@level":"error","@message":"Error: Incorrect attribute value type","diagnostic":{"severity":"error","summary":"Incorrect attribute value type","detail":"x","range":{"filename":"bad.tf","start":{"line":3,"column":15,"byte":58},"end":{"line":3,"column":21,"byte":64}}},"type":"diagnostic"}"#;

    #[test]
    fn a_lock_error_names_its_holder() {
        let d = json_diagnostics(LOCK_JSON);
        let e = classify("plan", FailureKind::Planning, &d, "exit status 1");
        match &e {
            RolloutError::LockHeld { id, who, operation, created, path } => {
                assert_eq!(
                    (id.as_str(), who.as_str(), operation.as_str(), created.as_str(), path.as_str()),
                    ("1111-2222", "alice@laptop", "OperationTypeApply", "2026-12-01 10:00:00 +0000 UTC", "/tmp/rx/state/terraform.tfstate")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(e.is_retryable());
        assert!(e.to_string().contains("force-unlock 1111-2222"), "{e}");
    }

    #[test]
    fn a_config_error_is_one_line_with_file_and_line() {
        let e = classify("plan", FailureKind::Planning, &json_diagnostics(CONFIG_JSON), "exit status 1");
        assert_eq!(e.to_string(), "configuration rejected: bad.tf:4: Unsupported argument (An argument named \"bogus\" is not expected here.)");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn provider_errors_during_apply_keep_the_first_summary_and_address() {
        let line = r#"{"type":"diagnostic","diagnostic":{"severity":"error","summary":"Creating novacron_vm failed: invalid template_id","detail":"no template with id \"tpl-nope\"\nmore","address":"novacron_vm.bad","range":{"filename":"bad.tf","start":{"line":5}}}}"#;
        let e = classify("apply", FailureKind::Applying, &json_diagnostics(line), "exit status 1");
        assert_eq!(
            e.to_string(),
            "terraform apply failed: novacron_vm.bad: Creating novacron_vm failed: invalid template_id (no template with id \"tpl-nope\")"
        );
        let stale = r#"{"type":"diagnostic","diagnostic":{"severity":"error","summary":"Saved plan is stale","detail":"The given plan file can no longer be applied."}}"#;
        assert!(matches!(classify("apply", FailureKind::Applying, &json_diagnostics(stale), "exit status 1"), RolloutError::StalePlan));
    }

    #[test]
    fn text_diagnostics_read_no_color_output() {
        let text = "novacron_network.extra: Importing from ID \"net-x\"...\n\nError: Cannot import novacron_network\n\nno network with id \"net-x\" exists on the platform; check the id\n(ids look like net-…)\n\nWarning: Something else\n\n  on main.tf line 12, in resource \"novacron_vm\" \"web\":\n  12:   bogus = 1\n";
        let d = text_diagnostics(text);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!((d[0].severity.as_str(), d[0].summary.as_str()), ("error", "Cannot import novacron_network"));
        assert!(d[0].detail.starts_with("no network with id"), "{d:?}");
        assert_eq!((d[1].file.as_deref(), d[1].line), (Some("main.tf"), Some(12)));
        let e = classify("import", FailureKind::Applying, &d, "exit status 1");
        assert_eq!(
            e.to_string(),
            "terraform import failed: Cannot import novacron_network (no network with id \"net-x\" exists on the platform; check the id)"
        );
    }

    #[test]
    fn init_reports_the_located_error_not_its_preamble() {
        let text = "\nError: Terraform encountered problems during initialisation, including problems\nwith the configuration, described below.\n\nThe Terraform configuration must be valid.\n\n\nError: Invalid expression\n\n  on bad.tf line 2, in resource \"novacron_vm\" \"bad\":\n   2:   name = \n   3: }\n\nExpected the start of an expression, but found an invalid expression token.\n";
        let e = classify("init", FailureKind::Planning, &text_diagnostics(text), "exit status 1");
        assert_eq!(
            e.to_string(),
            "configuration rejected: bad.tf:2: Invalid expression (Expected the start of an expression, but found an invalid expression token.)"
        );
    }

    #[test]
    fn no_diagnostics_says_so_and_secrets_are_scrubbed() {
        let e = classify("init", FailureKind::Other, &[], "exit status 3");
        assert_eq!(e.to_string(), "terraform init failed: it exited with exit status 3 and printed no error");
        assert_eq!(scrub("key=s3cr3t and s3cr3t", &["s3cr3t".into(), String::new()]), "key=<redacted> and <redacted>");
    }
}
