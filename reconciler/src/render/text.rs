//! The terminal report: one line per finding, a unified diff per drifted resource, a summary line.

use std::fmt::Write;

use novacron_schemas::Severity;

use super::{findings, summary_line, three_way_note, unified};
use crate::report::{DriftReport, Status};

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Renders the report for a terminal; `color` adds ANSI colours.
pub fn render_text(report: &DriftReport, color: bool) -> String {
    let paint = |code: &str, text: &str| if color { format!("{code}{text}{RESET}") } else { text.to_string() };
    let mut out = String::new();
    let _ = writeln!(out, "drift of revision {}", report.revision);
    if let Some(l) = &report.last_applied {
        let _ = writeln!(out, "last applied: {} (serial {})", l.source, l.serial);
    }
    for r in findings(report) {
        let severity = r.severity.unwrap_or(Severity::Info);
        let sev_text = match severity {
            Severity::Critical | Severity::High => paint(RED, severity.as_str()),
            Severity::Medium => paint(YELLOW, severity.as_str()),
            _ => severity.to_string(),
        };
        let (mark, detail) = match r.status {
            Status::Drifted => ("~", format!("drifted, {:.0}% of configured attributes", r.drift_percentage * 100.0)),
            Status::Missing => ("-", "missing: no live object has this name".to_string()),
            Status::Unmanaged => ("+", "unmanaged: no desired resource names it".to_string()),
            Status::InSync => ("=", "in sync".to_string()),
        };
        let id = r.id.as_deref().map(|i| format!(" ({i})")).unwrap_or_default();
        let _ = writeln!(out, "\n{mark} {}{id} [{sev_text}] {detail}", paint(BOLD, &r.address));
        if let Some(note) = three_way_note(report, r) {
            let _ = writeln!(out, "    {note}");
        }
        if r.status == Status::Drifted {
            for line in unified(r).lines() {
                let line = if line.starts_with('-') && !line.starts_with("---") {
                    paint(RED, line)
                } else if line.starts_with('+') && !line.starts_with("+++") {
                    paint(GREEN, line)
                } else {
                    line.to_string()
                };
                let _ = writeln!(out, "    {line}");
            }
            let severities: Vec<String> = r.changes.iter().map(|c| format!("{} {}", c.path, c.severity)).collect();
            let _ = writeln!(out, "    severity by path: {}", severities.join(", "));
        }
        if !r.ignored_changes.is_empty() {
            let paths: Vec<&str> = r.ignored_changes.iter().map(|c| c.path.as_str()).collect();
            let _ = writeln!(out, "    ignored: {}", paths.join(", "));
        }
    }
    if !report.ignored.is_empty() {
        let _ = writeln!(out, "\nignored resources:");
        for i in &report.ignored {
            let _ = writeln!(out, "  {} (rule {})", i.address, i.rule);
        }
    }
    if !report.warnings.is_empty() {
        let _ = writeln!(out, "\nwarnings (not counted as drift):");
        for w in &report.warnings {
            let _ = writeln!(out, "  {w}");
        }
    }
    let verdict = if report.has_drift() { paint(RED, "drift found") } else { paint(GREEN, "no drift") };
    let _ = writeln!(out, "\n{verdict}: {}", summary_line(report));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::sample::sample_report;

    #[test]
    fn text_report() {
        insta::assert_snapshot!(render_text(&sample_report(), false));
    }

    #[test]
    fn text_three_way_report() {
        insta::assert_snapshot!(render_text(&crate::render::sample::sample_three_way_report(), false));
    }

    #[test]
    fn colour_only_when_asked() {
        assert!(!render_text(&sample_report(), false).contains('\x1b'));
        assert!(render_text(&sample_report(), true).contains(RED));
    }
}
