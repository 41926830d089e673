//! Report renderers: `text` for terminals, `markdown` for pull requests, `json` as the contract gives it.

mod markdown;
mod text;

pub use markdown::{MARKDOWN_LIMIT, render_markdown};
pub use text::render_text;

use novacron_schemas::Severity;
use similar::TextDiff;

use crate::report::{Change, DriftReport, ResourceReport, RolloutKind, Status, ThreeWay};

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
    let mut line = format!(
        "{} resources: {} in sync, {} drifted, {} missing, {} unmanaged, {} ignored; coverage {:.1}%; {}",
        s.resources,
        s.in_sync,
        s.drifted,
        s.missing,
        s.unmanaged,
        s.ignored,
        s.coverage * 100.0,
        sev.join(", ")
    );
    if report.last_applied.is_some() {
        let t = &s.three_way;
        line.push_str(&format!("; three-way: {} in sync, {} rollout pending, {} drift, {} conflict", t.in_sync, t.rollout_pending, t.drift, t.conflict));
    }
    line
}

/// One line saying which side moved, when Terraform's state was compared: the pending
/// rollout's changes, or who changed the object out of band and when.
fn three_way_note(report: &DriftReport, r: &ResourceReport) -> Option<String> {
    report.last_applied.as_ref()?;
    let who = r.changed_by.as_ref().map(|c| format!("; changed by {} at {} ({})", c.actor, c.time, c.action)).unwrap_or_default();
    let rollout = |kind: &str| {
        let paths: Vec<&str> = r.rollout_changes.iter().map(|c| c.path.as_str()).collect();
        let what = if paths.is_empty() { String::new() } else { format!(": {}", paths.join(", ")) };
        format!("rollout pending ({kind}{what}): Git moved; Terraform applies it, it is not drift")
    };
    Some(match (r.three_way, r.rollout) {
        (ThreeWay::RolloutPending, Some(RolloutKind::Create)) => rollout("create"),
        (ThreeWay::RolloutPending, Some(RolloutKind::Delete)) => rollout("delete"),
        (ThreeWay::RolloutPending, _) => rollout("update"),
        (ThreeWay::Drift, _) => format!("drift: changed on the platform since the last apply{who}"),
        (ThreeWay::Conflict, _) => format!("conflict: changed in Git and on the platform since the last apply{who}"),
        (ThreeWay::InSync, _) if r.state_behind => "in sync; Terraform's state is behind and is refreshed".to_string(),
        (ThreeWay::InSync, _) => return None,
    })
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

    #[test]
    fn json_three_way_report() {
        insta::assert_snapshot!(render_json(&sample::sample_three_way_report()));
    }
}
