//! The pull-request report: a summary table by severity and one `<details>` section per finding, under 60,000 characters.

use std::fmt::Write;

use novacron_schemas::Severity;

use super::{findings, summary_line, three_way_note, unified};
use crate::report::{BySeverity, DriftReport, Status};

/// Most characters a markdown report may have (GitHub comments stop at 65,536).
pub const MARKDOWN_LIMIT: usize = 60_000;
/// Room kept for the closing summary of what was left out.
const TAIL_ROOM: usize = 2_000;

/// Renders the report as GitHub-flavoured markdown, summarising what does not fit.
pub fn render_markdown(report: &DriftReport) -> String {
    let mut out = String::new();
    let s = &report.summary;
    let verdict = if report.has_drift() { "Drift found" } else { "No drift" };
    let _ = writeln!(out, "## NovaCron drift report: {verdict}\n");
    let _ = writeln!(out, "Revision `{}`: {}\n", report.revision, summary_line(report));
    if let Some(l) = &report.last_applied {
        let _ = writeln!(out, "Last applied: {} (serial {}).\n", l.source, l.serial);
    }
    let _ = writeln!(out, "| severity | resources |\n|---|---:|");
    for v in Severity::DESCENDING {
        let _ = writeln!(out, "| {v} | {} |", s.by_severity.get(v));
    }
    let _ = writeln!(out, "\n| status | resources |\n|---|---:|");
    for (name, n) in [("in sync", s.in_sync), ("drifted", s.drifted), ("missing", s.missing), ("unmanaged", s.unmanaged), ("ignored", s.ignored)] {
        let _ = writeln!(out, "| {name} | {n} |");
    }
    let all = findings(report);
    if !all.is_empty() {
        let _ = writeln!(out, "\n### Findings\n");
    }
    let mut left_out = BySeverity::default();
    let mut left_count = 0;
    for r in &all {
        let mut section = section(r);
        if let Some(note) = three_way_note(report, r) {
            section = section.replacen("</summary>\n", &format!("</summary>\n\n{}\n", note.replace('<', "&lt;")), 1);
        }
        if out.len() + section.len() + TAIL_ROOM > MARKDOWN_LIMIT {
            left_out.add(r.severity.unwrap_or(Severity::Info));
            left_count += 1;
            continue;
        }
        out.push_str(&section);
    }
    if left_count > 0 {
        let parts: Vec<String> = Severity::DESCENDING.iter().filter(|v| left_out.get(**v) > 0).map(|v| format!("{} {v}", left_out.get(*v))).collect();
        let _ = writeln!(
            out,
            "\n…and {left_count} more findings ({}) not shown to keep this under {MARKDOWN_LIMIT} characters; the JSON report has them all.",
            parts.join(", ")
        );
    }
    if !report.warnings.is_empty() {
        let _ = writeln!(out, "\n<details><summary>{} warnings (not counted as drift)</summary>\n", report.warnings.len());
        for w in &report.warnings {
            let line = format!("- {}\n", w.replace('<', "&lt;"));
            if out.len() + line.len() + 200 > MARKDOWN_LIMIT {
                let _ = writeln!(out, "- …more in the JSON report");
                break;
            }
            out.push_str(&line);
        }
        let _ = writeln!(out, "\n</details>");
    }
    out
}

fn section(r: &crate::report::ResourceReport) -> String {
    let mut out = String::new();
    let severity = r.severity.unwrap_or(Severity::Info);
    let id = r.id.as_deref().map(|i| format!(" ({i})")).unwrap_or_default();
    let _ = writeln!(out, "<details><summary><b>{severity}</b> · <code>{}</code>{id} · {}</summary>\n", r.address, r.status.as_str());
    match r.status {
        Status::Drifted => {
            let _ = writeln!(out, "{:.0}% of configured attributes drifted.\n", r.drift_percentage * 100.0);
            let _ = writeln!(out, "| path | severity |\n|---|---|");
            for c in &r.changes {
                let _ = writeln!(out, "| `{}` | {} |", c.path, c.severity);
            }
            let _ = writeln!(out, "\n```diff\n{}```\n", unified(r));
        }
        Status::Missing => {
            let _ = writeln!(out, "No live {} is named `{}`.\n", r.resource_type, r.name);
        }
        Status::Unmanaged => {
            let _ = writeln!(out, "No desired resource names this live {}.\n", r.resource_type);
        }
        Status::InSync => {}
    }
    let _ = writeln!(out, "</details>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::sample::sample_report;

    #[test]
    fn markdown_report() {
        insta::assert_snapshot!(render_markdown(&sample_report()));
    }

    #[test]
    fn markdown_three_way_report() {
        insta::assert_snapshot!(render_markdown(&crate::render::sample::sample_three_way_report()));
    }

    #[test]
    fn large_reports_stay_under_the_limit() {
        let mut report = sample_report();
        let template = report.resources.iter().find(|r| r.status == Status::Drifted).cloned().expect("a drifted entry");
        for i in 0..5_000 {
            let mut r = template.clone();
            r.address = format!("novacron_vm.bulk[{i}]");
            report.resources.push(r);
        }
        report.warnings.extend((0..5_000).map(|i| format!("novacron_vm.bulk[{i}]: template_id is unknown")));
        let text = render_markdown(&report);
        assert!(text.len() <= MARKDOWN_LIMIT, "{}", text.len());
        assert!(text.contains("more findings"));
    }
}
