//! The HTML status page of `serve`: one table of repositories (revision, last run, drift by severity, pending approvals), rendered on the server from the `/api/status` JSON, every value escaped.

use std::fmt::Write;

use serde_json::Value;

const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f4f4f4}\
.ok{color:#176f2c}.err{color:#b00020}.n0{color:#999}code{font-size:13px}";

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    }
}

/// The page for `status` (the `/api/status` JSON, which holds no secrets).
pub fn render(status: &Value) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\">\
         <title>novacron-reconcile</title><style>{STYLE}</style></head><body>\n<h1>novacron-reconcile</h1>\n"
    );
    let repos = status.get("repos").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if repos.is_empty() {
        html.push_str("<p>No repositories are configured.</p>\n");
    } else {
        html.push_str("<table>\n<tr><th>repository</th><th>revision</th><th>last run</th>");
        for s in SEVERITIES {
            let _ = write!(html, "<th>{s}</th>");
        }
        html.push_str("<th>pending approvals</th></tr>\n");
        for repo in repos {
            row(&mut html, repo);
        }
        html.push_str("</table>\n");
    }
    html.push_str("<p>JSON: <a href=\"/api/status\">/api/status</a> · metrics: <a href=\"/metrics\">/metrics</a></p>\n</body></html>\n");
    html
}

fn row(html: &mut String, repo: &Value) {
    let field = |k: &str| repo.get(k).unwrap_or(&Value::Null);
    let revision = field("revision").as_str().map(|r| &r[..r.len().min(12)]).unwrap_or("-");
    let _ = write!(
        html,
        "<tr><td><b>{}</b><br><code>{}</code>{}</td><td><code>{}</code></td>",
        text(field("name")),
        text(field("url")),
        field("ref").as_str().map(|r| format!(" @ <code>{}</code>", escape(r))).unwrap_or_default(),
        escape(revision)
    );
    let run = match (field("running").as_bool(), field("last_error").as_str()) {
        (Some(true), _) => "<span class=\"ok\">running</span>".to_string(),
        (_, Some(e)) => format!("<span class=\"err\">failed: {}</span>", escape(e)),
        _ => "<span class=\"ok\">ok</span>".to_string(),
    };
    let _ = write!(html, "<td>{}<br>{run}</td>", text(field("last_run")));
    for s in SEVERITIES {
        let n = field("drift_by_severity").get(s).and_then(Value::as_u64);
        match n {
            Some(0) => html.push_str("<td class=\"n0\">0</td>"),
            Some(n) => {
                let _ = write!(html, "<td><b>{n}</b></td>");
            }
            None => html.push_str("<td class=\"n0\">-</td>"),
        }
    }
    let pending = field("pending_approvals").as_array().map(Vec::as_slice).unwrap_or_default();
    if pending.is_empty() {
        html.push_str("<td class=\"n0\">none</td></tr>\n");
    } else {
        html.push_str("<td><ul>");
        for p in pending {
            let _ = write!(
                html,
                "<li><code>{}</code> {} ({})</li>",
                text(p.get("id").unwrap_or(&Value::Null)),
                text(p.get("address").unwrap_or(&Value::Null)),
                text(p.get("severity").unwrap_or(&Value::Null))
            );
        }
        html.push_str("</ul></td></tr>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_everything_it_shows() {
        let status = json!({"repos": [{
            "name": "<script>alert(1)</script>", "url": "https://example.com/a?b=1&c=\"2\"", "ref": "main'",
            "revision": "0123456789abcdef", "last_run": "2026-01-01T00:00:00Z", "last_error": "<b>boom</b>", "running": false,
            "drift_by_severity": {"critical": 1, "high": 0, "medium": 0, "low": 2, "info": 0},
            "pending_approvals": [{"id": "d-<1>", "address": "novacron_vm.web", "severity": "critical"}]
        }]});
        let html = render(&status);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("a?b=1&amp;c=&quot;2&quot;"));
        assert!(html.contains("main&#39;"));
        assert!(html.contains("failed: &lt;b&gt;boom&lt;/b&gt;"));
        assert!(html.contains("<code>0123456789ab</code>"));
        assert!(html.contains("<code>d-&lt;1&gt;</code>"));
        assert!(html.contains("<td><b>2</b></td>"));
    }

    #[test]
    fn empty_config_says_so() {
        assert!(render(&json!({"repos": []})).contains("No repositories are configured."));
    }
}
