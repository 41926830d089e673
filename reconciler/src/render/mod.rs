//! Report renderers: `text` for terminals, `markdown` for pull requests, `json` as the contract gives it.

mod markdown;
mod text;

pub use markdown::{MARKDOWN_LIMIT, render_markdown};
pub use text::render_text;

use novacron_schemas::Severity;
use similar::TextDiff;

use crate::report::{Change, DriftReport, ResourceReport, Status};

/// The report as pretty JSON, ending with a newline.
pub fn render_json(report: &DriftReport) -> String {
    let mut out = serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
    out.push('\n');
    out
}

/// Entries that are not in sync, most severe first, then by address.
fn findings(report: &DriftReport) -> Vec<&ResourceReport> {
    let mut out: Vec<&ResourceReport> = report.resources.iter().filter(|r| r.status != Status::InSync).collect();
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.address.cmp(&b.address)));
    out
}

/// `path = value` lines of one side of the changes.
fn side(changes: &[Change], desired: bool) -> String {
    let mut out = String::new();
    for c in changes {
        if c.sensitive {
            // Both values are hidden; the lines still differ so the diff shows the change.
            let note = if desired { "(sensitive)" } else { "(sensitive, differs)" };
            out.push_str(&format!("{} = {note}\n", c.path));
            continue;
        }
        let v = if desired { &c.desired } else { &c.live };
        if !v.is_null() {
            out.push_str(&format!("{} = {}\n", c.path, v));
        }
    }
    out
}

/// A unified diff of the changes, desired as `-`, live as `+` (what changed out of band).
fn unified(r: &ResourceReport) -> String {
    let (desired, live) = (side(&r.changes, true), side(&r.changes, false));
    let live_name = format!("live {}", r.id.as_deref().unwrap_or("-"));
    TextDiff::from_lines(&desired, &live).unified_diff().context_radius(0).header("desired", &live_name).to_string()
}

fn summary_line(report: &DriftReport) -> String {
    let s = &report.summary;
    let sev: Vec<String> = Severity::DESCENDING.iter().map(|v| format!("{v} {}", s.by_severity.get(*v))).collect();
    format!(
        "{} resources: {} in sync, {} drifted, {} missing, {} unmanaged, {} ignored; coverage {:.1}%; {}",
        s.resources,
        s.in_sync,
        s.drifted,
        s.missing,
        s.unmanaged,
        s.ignored,
        s.coverage * 100.0,
        sev.join(", ")
    )
}

#[cfg(test)]
pub(crate) mod sample;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_report() {
        // The sample has a fixed `generated_at`; the rest is what the drift core computed.
        insta::assert_snapshot!(render_json(&sample::sample_report()));
    }
}
