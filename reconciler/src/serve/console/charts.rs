//! Inline SVG charts rendered on the server: the overview's sparkline of drifted resources and the repository page's stacked drift by severity over time, each point with a `<title>` for hover.

use std::fmt::Write;

use super::escape;
use crate::state::RunRecord;

/// Runs the overview's sparkline draws (the newest).
pub const SPARKLINE_RUNS: usize = 50;
/// Runs the repository page's history chart draws (the newest).
pub const HISTORY_RUNS: usize = 120;

const SPARK_W: f64 = 160.0;
const SPARK_H: f64 = 32.0;
const PAD: f64 = 3.0;

fn point_title(run: &RunRecord) -> String {
    match (&run.error, run.ok) {
        (Some(e), false) => format!("{}: run failed: {}", run.finished_at, e),
        _ => format!("{}: {} drifted", run.finished_at, run.drifted),
    }
}

/// The drifted-resource count of the newest [`SPARKLINE_RUNS`] of `runs` (oldest first) as a
/// small line chart; failed runs are drawn as hollow points.
pub fn sparkline(runs: &[RunRecord]) -> String {
    let runs = &runs[runs.len().saturating_sub(SPARKLINE_RUNS)..];
    let mut svg = format!(
        "<svg class=\"sparkline\" viewBox=\"0 0 {SPARK_W} {SPARK_H}\" width=\"{SPARK_W}\" height=\"{SPARK_H}\" role=\"img\" aria-label=\"drifted resources over the last {} runs\">",
        runs.len()
    );
    if runs.is_empty() {
        svg.push_str("<title>no runs yet</title></svg>");
        return svg;
    }
    let max = runs.iter().map(|r| r.drifted).max().unwrap_or(0).max(1) as f64;
    let step = if runs.len() > 1 { (SPARK_W - 2.0 * PAD) / (runs.len() - 1) as f64 } else { 0.0 };
    let at = |i: usize, n: u64| (PAD + step * i as f64, SPARK_H - PAD - (SPARK_H - 2.0 * PAD) * n as f64 / max);
    svg.push_str("<polyline class=\"line\" points=\"");
    for (i, r) in runs.iter().enumerate() {
        let (x, y) = at(i, r.drifted);
        let _ = write!(svg, "{x:.1},{y:.1} ");
    }
    svg.push_str("\"/>");
    for (i, r) in runs.iter().enumerate() {
        let (x, y) = at(i, r.drifted);
        let class = if r.ok { "point" } else { "point failed" };
        let _ = write!(svg, "<circle class=\"{class}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\"><title>{}</title></circle>", escape(&point_title(r)));
    }
    svg.push_str("</svg>");
    svg
}

const HIST_W: f64 = 720.0;
const HIST_H: f64 = 160.0;

/// Findings by severity over the newest [`HISTORY_RUNS`] of `runs` (oldest first): one column
/// per run, stacked critical on top; every column has a `<title>` with its counts.
pub fn history(runs: &[RunRecord]) -> String {
    let runs = &runs[runs.len().saturating_sub(HISTORY_RUNS)..];
    let mut svg = format!(
        "<svg class=\"history\" viewBox=\"0 0 {HIST_W} {HIST_H}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"drift by severity over the last {} runs\">",
        runs.len()
    );
    if runs.is_empty() {
        svg.push_str("<title>no runs yet</title></svg>");
        return svg;
    }
    let total = |r: &RunRecord| r.critical + r.high + r.medium + r.low + r.info;
    let max = runs.iter().map(total).max().unwrap_or(0).max(1) as f64;
    let width = HIST_W / runs.len() as f64;
    let gap = if width > 4.0 { 1.0 } else { 0.0 };
    for (i, r) in runs.iter().enumerate() {
        let x = width * i as f64;
        let title = match (&r.error, r.ok) {
            (Some(e), false) => format!("{}: run failed: {e}", r.finished_at),
            _ => format!("{}: {} critical, {} high, {} medium, {} low, {} info", r.finished_at, r.critical, r.high, r.medium, r.low, r.info),
        };
        let _ = write!(svg, "<g class=\"run{}\"><title>{}</title>", if r.ok { "" } else { " failed" }, escape(&title));
        // A full-height backdrop, so that a run without findings still shows its title on hover.
        let _ = write!(svg, "<rect class=\"backdrop\" x=\"{x:.2}\" y=\"0\" width=\"{:.2}\" height=\"{HIST_H}\"/>", (width - gap).max(0.5));
        let mut y = HIST_H;
        for (name, n) in [("info", r.info), ("low", r.low), ("medium", r.medium), ("high", r.high), ("critical", r.critical)] {
            if n == 0 {
                continue;
            }
            let h = HIST_H * n as f64 / max;
            y -= h;
            let _ = write!(svg, "<rect class=\"sev-{name}\" x=\"{x:.2}\" y=\"{y:.2}\" width=\"{:.2}\" height=\"{h:.2}\"/>", (width - gap).max(0.5));
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: u64, drifted: u64, ok: bool) -> RunRecord {
        RunRecord {
            repo: "r".into(),
            seq: n,
            finished_at: format!("2026-01-01T00:00:{n:02}Z"),
            ok,
            drifted,
            medium: drifted,
            error: (!ok).then(|| "<boom>".to_string()),
            ..RunRecord::default()
        }
    }

    #[test]
    fn a_sparkline_has_one_titled_point_per_run_up_to_fifty() {
        let runs: Vec<RunRecord> = (0..60).map(|n| run(n, n % 3, n != 59)).collect();
        let svg = sparkline(&runs);
        assert!(svg.starts_with("<svg class=\"sparkline\""));
        assert_eq!(svg.matches("<circle").count(), 50);
        assert!(svg.contains("<title>2026-01-01T00:00:10Z: 1 drifted</title>"), "the oldest of the fifty: {svg}");
        assert!(svg.contains("run failed: &lt;boom&gt;"), "titles are escaped: {svg}");
        assert!(sparkline(&[]).contains("<title>no runs yet</title>"));
    }

    #[test]
    fn the_history_chart_stacks_severities_and_titles_every_run() {
        let mut r = run(1, 3, true);
        r.critical = 1;
        let svg = history(&[r, run(2, 0, true)]);
        assert!(svg.starts_with("<svg class=\"history\""));
        assert_eq!(svg.matches("<g class=\"run\">").count(), 2);
        assert_eq!(svg.matches("class=\"sev-critical\"").count(), 1);
        assert_eq!(svg.matches("class=\"sev-medium\"").count(), 1);
        assert!(svg.contains("<title>2026-01-01T00:00:02Z: 0 critical, 0 high, 0 medium, 0 low, 0 info</title>"), "{svg}");
    }
}
