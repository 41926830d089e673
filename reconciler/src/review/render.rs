//! The review as a pull-request comment (markdown) or text. Every value the pull request
//! controls (addresses, attribute values, Terraform's messages) is HTML-escaped inside `<code>`,
//! so a value cannot break out of its table cell or inject markup.

use std::fmt::Write as _;

use novacron_schemas::Severity;

use super::{PolicyPreview, Review, ReviewOutcome, ReviewedChange};
use crate::report::ChangedBy;

/// The start of the hidden line that identifies the reconciler's comment on a pull request.
pub const COMMENT_MARKER: &str = "<!-- novacron-reconcile:plan";
/// Comments stay under this many characters (GitHub refuses more than 65,536).
pub const COMMENT_LIMIT: usize = 60_000;

/// The hidden first line of the comment for configured repository `name`.
pub fn comment_marker(name: &str) -> String {
    format!("{COMMENT_MARKER} {} -->", escape(name))
}

/// HTML-escapes text for a markdown table cell or a `<code>` span.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '|' => out.push_str("&#124;"),
            '`' => out.push_str("&#96;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn code(text: &str) -> String {
    format!("<code>{}</code>", escape(text))
}

fn short(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}

fn icon(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "🔴",
        Severity::High => "🟠",
        Severity::Medium => "🟡",
        Severity::Low => "🔵",
        Severity::Info => "⚪",
    }
}

fn who(by: &ChangedBy) -> String {
    format!("{} by {} at {}", by.action, code(&by.actor), escape(&by.time))
}

fn policy_cell(change: &ReviewedChange) -> String {
    match &change.policy {
        PolicyPreview::NotApplicable => "—".into(),
        PolicyPreview::NotPreviewed { .. } => "not previewed".into(),
        PolicyPreview::Previewed { allowed: false, verdicts } => {
            let names: Vec<String> = verdicts.iter().filter(|v| v.mode == "block").map(|v| code(&v.policy)).collect();
            format!("⛔ blocked by {}", names.join(", "))
        }
        PolicyPreview::Previewed { verdicts, .. } if verdicts.is_empty() => "✅ admitted".into(),
        PolicyPreview::Previewed { verdicts, .. } => {
            let parts: Vec<String> = verdicts.iter().map(|v| format!("{} {}", v.mode, code(&v.policy))).collect();
            format!("✅ admitted ({})", parts.join(", "))
        }
    }
}

/// The table rows of one change: one per changed attribute of an update, one for a create or delete.
fn rows(change: &ReviewedChange) -> Vec<String> {
    let head = format!("| {} {} | {} | {} ", icon(change.severity), change.severity, code(&change.address), change.action);
    let policy = policy_cell(change);
    let base = |path: &str| if change.pending_on_base_paths.iter().any(|p| p == path) { " ⏳" } else { "" };
    match change.action.as_str() {
        "create" => vec![format!("{head}| {} attributes | (new object) | {policy} |", change.attributes.len())],
        "delete" => vec![format!("{head}| — | (destroyed) | {policy} |")],
        _ if change.attributes.is_empty() => vec![format!("{head}| — | — | {policy} |")],
        _ => change
            .attributes
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let forces = if a.forces_replacement { " (forces replacement)" } else { "" };
                let policy = if i == 0 { policy.as_str() } else { "〃" };
                format!("{head}| {}{} | {} → {}{forces} | {policy} |", code(&a.path), base(&a.path), code(&a.before), code(&a.after))
            })
            .collect(),
    }
}

/// The `<details>` section of one change.
fn details(change: &ReviewedChange) -> String {
    let mut out = format!("<details><summary>{} {} — {}, {}</summary>\n\n", icon(change.severity), code(&change.address), change.action, change.severity);
    if let Some(id) = &change.id {
        let _ = writeln!(out, "Object {}.\n", code(id));
    }
    for a in &change.attributes {
        let forces = if a.forces_replacement { ", forces replacement" } else { "" };
        let _ = writeln!(out, "- {}: {} → {} ({}{forces})", code(&a.path), code(&a.before), code(&a.after), a.severity);
    }
    match &change.policy {
        PolicyPreview::NotApplicable => {}
        PolicyPreview::NotPreviewed { reason } => {
            let _ = writeln!(out, "\nPolicy preview: {}", escape(reason));
        }
        PolicyPreview::Previewed { verdicts, .. } if verdicts.is_empty() => {
            let _ = writeln!(out, "\nPolicy preview: every enabled policy admits it.");
        }
        PolicyPreview::Previewed { verdicts, .. } => {
            let _ = writeln!(out, "\nPolicy preview:");
            for v in verdicts {
                let _ = writeln!(out, "- **{}** {}: {}", v.mode, code(&v.policy), escape(&v.messages.join("; ")));
            }
        }
    }
    if let Some(drift) = &change.drift {
        let by = drift.changed_by.as_ref().map(|b| format!(" ({})", who(b))).unwrap_or_default();
        let paths: Vec<String> = drift.paths.iter().map(|p| code(p)).collect();
        let _ = writeln!(out, "\n⚠️ Live already differs from last applied{by}: {}. Merging overwrites that change.", paths.join(", "));
    }
    if change.pending_on_base {
        let what = if change.pending_on_base_paths.is_empty() {
            "a change to this resource".to_string()
        } else {
            change.pending_on_base_paths.iter().map(|p| code(p)).collect::<Vec<_>>().join(", ")
        };
        let _ = writeln!(out, "\n⏳ The base branch already has {what} pending: not this pull request's doing.");
    }
    out.push_str("\n</details>\n");
    out
}

/// The comment: summary line, drift and policy warnings, the table, one section per resource,
/// the revision it describes; under [`COMMENT_LIMIT`] characters by summarising what does not fit.
pub fn render_markdown(review: &Review, name: &str) -> String {
    let mut top = comment_marker(name);
    top.push('\n');
    let title = match &review.outcome {
        ReviewOutcome::Planned if review.changes.is_empty() => "✅ novacron plan: no changes".to_string(),
        ReviewOutcome::Planned => format!("{} novacron plan: {}", if review.status.state == "success" { "📋" } else { "❌" }, escape(&review.summary)),
        ReviewOutcome::Rejected { .. } => "❌ novacron plan: Terraform rejects the configuration".to_string(),
        ReviewOutcome::Failed { .. } => "❌ novacron plan: not planned".to_string(),
    };
    let _ = writeln!(top, "### {title}\n");
    let base = review.base.reference.as_deref().unwrap_or("the default branch");
    let base_rev = review.base.revision.as_deref().map(|r| format!(" at {}", code(short(r)))).unwrap_or_default();
    let path = if review.path.is_empty() { "." } else { review.path.as_str() };
    let _ = writeln!(
        top,
        "Revision {} of {}, directory {}, planned against the last-applied state; merging into {}{base_rev}.\n",
        code(short(&review.revision)),
        code(&review.repo),
        code(path),
        escape(base)
    );
    match &review.outcome {
        ReviewOutcome::Rejected { file, line, summary, detail } => {
            let at = match (file, line) {
                (Some(f), Some(l)) => format!("{}: ", code(&format!("{f}:{l}"))),
                (Some(f), None) => format!("{}: ", code(f)),
                _ => String::new(),
            };
            let _ = writeln!(top, "**Error:** {at}{}\n", escape(summary));
            if !detail.is_empty() {
                let _ = writeln!(top, "> {}\n", escape(detail));
            }
        }
        ReviewOutcome::Failed { message } => {
            let _ = writeln!(top, "**Error:** {}\n", escape(message));
        }
        ReviewOutcome::Planned => {}
    }
    for w in &review.warnings {
        let _ = writeln!(top, "> ⚠️ {}\n", escape(w));
    }
    let blocked: Vec<&ReviewedChange> = review.changes.iter().filter(|c| matches!(c.policy, PolicyPreview::Previewed { allowed: false, .. })).collect();
    for c in &blocked {
        if let PolicyPreview::Previewed { verdicts, .. } = &c.policy {
            for v in verdicts.iter().filter(|v| v.mode == "block") {
                let _ = writeln!(
                    top,
                    "> ⛔ {} will be refused at apply: policy {} blocks it: {}\n",
                    code(&c.address),
                    code(&v.policy),
                    escape(&v.messages.join("; "))
                );
            }
        }
    }
    for c in review.changes.iter().filter(|c| c.drift.is_some()) {
        if let Some(d) = &c.drift {
            let by = d.changed_by.as_ref().map(|b| format!(" ({})", who(b))).unwrap_or_default();
            let _ =
                writeln!(top, "> ⚠️ {} already differs on the platform from what was last applied{by}; merging overwrites that change.\n", code(&c.address));
        }
    }
    if review.outcome == ReviewOutcome::Planned && !review.changes.is_empty() {
        let p = &review.policy;
        let _ = writeln!(
            top,
            "Policy preview: {} previewed, {} blocked, {} with warnings, {} audited, {} not previewed.\n",
            p.previewed, p.blocked, p.warned, p.audited, p.not_previewed
        );
    }
    let legend = if review.changes.iter().any(|c| c.pending_on_base) { " · ⏳ also pending on the base branch" } else { "" };
    let footer = format!(
        "\n<sub>novacron-reconcile · <code>terraform plan -refresh=false -lock=false</code> · {}{legend} · this comment is updated on every push</sub>\n",
        escape(&review.generated_at)
    );
    let mut table = String::new();
    let mut sections = String::new();
    let mut shown = 0;
    if !review.changes.is_empty() {
        table.push_str("| Severity | Resource | Action | Attribute | Before → After | Policy |\n|---|---|---|---|---|---|\n");
    }
    let budget = COMMENT_LIMIT - top.len() - footer.len() - 400;
    for change in &review.changes {
        let rows = rows(change).join("\n") + "\n";
        let section = details(change);
        if table.len() + sections.len() + rows.len() + section.len() > budget {
            break;
        }
        table.push_str(&rows);
        sections.push_str(&section);
        shown += 1;
    }
    let mut out = top;
    out.push_str(&table);
    if shown < review.changes.len() {
        let rest = &review.changes[shown..];
        let mut counts: Vec<String> = Vec::new();
        for s in Severity::DESCENDING {
            let n = rest.iter().filter(|c| c.severity == s).count();
            if n > 0 {
                counts.push(format!("{n} {s}"));
            }
        }
        let _ = writeln!(
            out,
            "\n…and {} more changes ({}) not shown to keep this comment readable; run `novacron-reconcile plan --ref {}` for all of them.",
            rest.len(),
            counts.join(", "),
            escape(short(&review.revision))
        );
    }
    if !sections.is_empty() {
        out.push('\n');
        out.push_str(&sections);
    }
    out.push_str(&footer);
    out
}

/// The review as plain text, for a terminal or a CI log.
pub fn render_text(review: &Review) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan of {} at {} ({}): {}",
        review.repo,
        short(&review.revision),
        if review.path.is_empty() { "." } else { &review.path },
        review.summary
    );
    match &review.outcome {
        ReviewOutcome::Rejected { file, line, summary, detail } => {
            let at = match (file, line) {
                (Some(f), Some(l)) => format!("{f}:{l}: "),
                (Some(f), None) => format!("{f}: "),
                _ => String::new(),
            };
            let _ = writeln!(out, "error: Terraform rejects the configuration: {at}{summary}");
            if !detail.is_empty() {
                let _ = writeln!(out, "  {detail}");
            }
        }
        ReviewOutcome::Failed { message } => {
            let _ = writeln!(out, "error: not planned: {message}");
        }
        ReviewOutcome::Planned => {}
    }
    for w in &review.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    for c in &review.changes {
        let _ = writeln!(out, "\n{} {} ({})", c.severity, c.address, c.action);
        for a in &c.attributes {
            let base = if c.pending_on_base_paths.contains(&a.path) { "  [also pending on base]" } else { "" };
            let forces = if a.forces_replacement { "  # forces replacement" } else { "" };
            let _ = writeln!(out, "    {}: {} -> {}{forces}{base}", a.path, a.before, a.after);
        }
        match &c.policy {
            PolicyPreview::NotApplicable => {}
            PolicyPreview::NotPreviewed { reason } => {
                let _ = writeln!(out, "    policy: {reason}");
            }
            PolicyPreview::Previewed { verdicts, .. } if verdicts.is_empty() => {
                let _ = writeln!(out, "    policy: admitted");
            }
            PolicyPreview::Previewed { verdicts, .. } => {
                for v in verdicts {
                    let _ = writeln!(out, "    policy {} ({}): {}", v.policy, v.mode, v.messages.join("; "));
                }
            }
        }
        if let Some(d) = &c.drift {
            let by = d.changed_by.as_ref().map(|b| format!(" ({} by {} at {})", b.action, b.actor, b.time)).unwrap_or_default();
            let _ = writeln!(out, "    drift: live differs from last applied{by}: {}; merging overwrites it", d.paths.join(", "));
        }
        if c.pending_on_base && c.pending_on_base_paths.is_empty() {
            let _ = writeln!(out, "    the base branch already has a change to it pending");
        }
    }
    let _ = writeln!(out, "\nstatus: {} — {}", review.status.state, review.status.description);
    out
}
