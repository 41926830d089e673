//! The console's HTML pages, rendered on the server from plain view data (no I/O here, so tests and the benchmark call them directly); every value shown goes through [`escape`].

use std::collections::HashMap;
use std::fmt::Write;

use novacron_schemas::Severity;
use serde_json::Value;

use super::{assets, charts, escape};
use crate::report::{BySeverity, ResourceReport, Status};
use crate::state::{AuditRecord, RunRecord, VerifyOutcome};
use crate::sync::{SyncOutcome, SyncReport};

/// Entries per audit page.
pub const AUDIT_PAGE_SIZE: u64 = 50;

/// Who is looking: signed in or not, and whether approvals from the browser are possible at all.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    /// The signed-in person's name and their session's CSRF token.
    pub signed_in: Option<super::sessions::SignedIn>,
    /// False when no admin token is configured: nobody can sign in or approve.
    pub approvals_enabled: bool,
}

/// Where a repository stands, as its card and page badge say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The last run found nothing the platform changed out of band.
    InSync,
    /// The platform differs from Git (drift or a conflict is left after the run).
    Drifting,
    /// Git moved and the rollout waits (a held plan, or Terraform could not run).
    RolloutPending,
    /// The last run failed.
    Error,
    /// No run has finished yet.
    Unknown,
}

impl Health {
    /// The `data-health` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::InSync => "in_sync",
            Health::Drifting => "drifting",
            Health::RolloutPending => "rollout_pending",
            Health::Error => "error",
            Health::Unknown => "unknown",
        }
    }

    /// The words shown.
    pub fn label(self) -> &'static str {
        match self {
            Health::InSync => "in sync",
            Health::Drifting => "drifting",
            Health::RolloutPending => "rollout pending",
            Health::Error => "error",
            Health::Unknown => "no run yet",
        }
    }
}

/// One repository's card (and the head of its page).
#[derive(Debug, Clone)]
pub struct CardView {
    /// Its name in the config.
    pub name: String,
    /// Its URL, credentials removed.
    pub url: String,
    /// The ref it follows.
    pub reference: Option<String>,
    /// Where it stands.
    pub health: Health,
    /// The commit last reconciled.
    pub revision: Option<String>,
    /// The replica holding the repository's lease, and whether it is the one serving the page.
    pub holder: Option<(String, bool)>,
    /// The commit's page on the forge, when the forge is known.
    pub commit_url: Option<String>,
    /// When the last run ended.
    pub last_run: Option<String>,
    /// How long it took.
    pub duration_ms: Option<u64>,
    /// What started it.
    pub last_trigger: Option<String>,
    /// True while a run is in progress.
    pub running: bool,
    /// The last run's error.
    pub last_error: Option<String>,
    /// Findings by severity after the last run's reverts.
    pub by_severity: Option<BySeverity>,
    /// Approvals waiting.
    pub pending: usize,
    /// The newest runs, oldest first.
    pub history: Vec<RunRecord>,
}

/// A drift or a rollout plan awaiting approval.
#[derive(Debug, Clone)]
pub struct ApprovalView {
    /// The id `approve` takes (`plan-…` for plans).
    pub id: String,
    /// `drift` or `plan`.
    pub kind: &'static str,
    /// The resource address, or the plan's one-line summary.
    pub subject: String,
    /// Its severity.
    pub severity: Severity,
    /// Since when it waits.
    pub since: String,
    /// Who approved it already (it is carried out at the next run).
    pub approved_by: Option<String>,
}

/// The filters of the repository page (`?status=…&severity=…`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only resources with this status.
    pub status: Option<Status>,
    /// Only resources with this severity (`Some(None)`: those without one, i.e. in sync).
    pub severity: Option<Option<Severity>>,
}

/// A query parameter with a value the page does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParameter {
    /// The parameter.
    pub name: &'static str,
    /// The value given.
    pub value: String,
    /// What it accepts.
    pub accepted: &'static [&'static str],
}

impl std::fmt::Display for BadParameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "query parameter `{}` has an unknown value {:?}; accepted values: {}", self.name, self.value, self.accepted.join(", "))
    }
}

/// The `status` values the filter accepts.
pub const STATUSES: &[&str] = &["in_sync", "drifted", "missing", "unmanaged"];
/// The `severity` values the filter accepts (`none`: resources without a severity).
pub const SEVERITIES: &[&str] = &["critical", "high", "medium", "low", "info", "none"];

impl Filter {
    /// Reads the filters from the query; an empty value (or `all`) is no filter, other parameters are ignored.
    pub fn parse(query: &HashMap<String, String>) -> Result<Filter, BadParameter> {
        let given = |name: &str| query.get(name).map(|v| v.trim()).filter(|v| !v.is_empty() && *v != "all");
        let status = match given("status") {
            None => None,
            Some(v) => Some(match v {
                "in_sync" => Status::InSync,
                "drifted" => Status::Drifted,
                "missing" => Status::Missing,
                "unmanaged" => Status::Unmanaged,
                other => return Err(BadParameter { name: "status", value: other.to_string(), accepted: STATUSES }),
            }),
        };
        let severity = match given("severity") {
            None => None,
            Some("none") => Some(None),
            Some(v) => Some(Some(v.parse::<Severity>().map_err(|_| BadParameter { name: "severity", value: v.to_string(), accepted: SEVERITIES })?)),
        };
        Ok(Filter { status, severity })
    }

    /// True when `r` passes.
    pub fn keeps(&self, r: &ResourceReport) -> bool {
        self.status.is_none_or(|s| r.status == s) && self.severity.is_none_or(|s| r.severity == s)
    }
}

/// Everything the repository page shows.
#[derive(Debug, Clone)]
pub struct RepoPageView<'a> {
    /// The head: health, revision, last run, counts, history.
    pub card: CardView,
    /// The latest sync of this process, if one finished.
    pub sync: Option<&'a SyncReport>,
    /// The filters applied to its resources.
    pub filter: Filter,
    /// Drifts and plans awaiting approval.
    pub approvals: Vec<ApprovalView>,
    /// The one-shot message after an action.
    pub flash: Option<String>,
}

/// One page of the audit log.
#[derive(Debug, Clone)]
pub struct AuditPageView {
    /// The chain's verification.
    pub verify: VerifyOutcome,
    /// The entries of this page, newest first.
    pub entries: Vec<AuditRecord>,
    /// The page number, from 1.
    pub page: u64,
    /// Entries in the whole log.
    pub total: u64,
}

/// The shell every page shares: head, top bar, `<main>`, footer.
fn layout(title: &str, page: &str, repo: Option<&str>, viewer: &Viewer, main: &str) -> String {
    let v = assets::version();
    let mut html = String::with_capacity(main.len() + 2048);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · novacron-reconcile</title><link rel=\"stylesheet\" href=\"/static/console.css?v={v}\">\
         <script src=\"/static/console.js?v={v}\" defer></script></head>\n<body data-page=\"{page}\"",
        escape(title)
    );
    if let Some(repo) = repo {
        let _ = write!(html, " data-repo=\"{}\"", escape(repo));
    }
    html.push_str(">\n<header class=\"top\"><a class=\"brand\" href=\"/\">novacron-reconcile</a><nav><a href=\"/\">Overview</a><a href=\"/audit\">Audit log</a></nav><div class=\"who\">");
    match &viewer.signed_in {
        Some(who) => {
            let _ = write!(
                html,
                "<span>signed in as <span class=\"signed-in\">{}</span></span><form class=\"signout\" method=\"post\" action=\"/signout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Sign out</button></form>",
                escape(&who.name),
                escape(&who.csrf)
            );
        }
        None if viewer.approvals_enabled => html.push_str("<a href=\"/signin\">Sign in</a>"),
        None => {}
    }
    html.push_str("</div></header>\n<main>\n");
    html.push_str(main);
    html.push_str(
        "</main>\n<footer>JSON: <a href=\"/api/status\">/api/status</a> · metrics: <a href=\"/metrics\">/metrics</a> · updates live while JavaScript runs; reload otherwise</footer>\n</body></html>\n",
    );
    html
}

fn short(revision: &str) -> &str {
    &revision[..revision.len().min(12)]
}

fn duration(ms: u64) -> String {
    if ms < 1000 { format!("{ms} ms") } else { format!("{:.1} s", ms as f64 / 1000.0) }
}

fn revision_html(card: &CardView) -> String {
    match (&card.revision, &card.commit_url) {
        (Some(rev), Some(url)) => format!("<a class=\"revision\" href=\"{}\"><code>{}</code></a>", escape(url), escape(short(rev))),
        (Some(rev), None) => format!("<code class=\"revision\">{}</code>", escape(short(rev))),
        (None, _) => "<span class=\"muted\">none yet</span>".to_string(),
    }
}

fn last_run_html(card: &CardView) -> String {
    let mut out = match &card.last_run {
        Some(t) => format!("<time datetime=\"{0}\">{0}</time>", escape(t)),
        None => "<span class=\"muted\">never</span>".to_string(),
    };
    if let Some(ms) = card.duration_ms {
        let _ = write!(out, " · took {}", duration(ms));
    }
    if let Some(t) = &card.last_trigger {
        let _ = write!(out, " · {}", escape(t));
    }
    if card.running {
        out.push_str(" · <span class=\"running\">running now</span>");
    }
    out
}

fn counts_html(by: Option<&BySeverity>) -> String {
    let mut out = String::from("<ul class=\"counts\">");
    for s in Severity::DESCENDING {
        let n = by.map_or_else(|| "-".to_string(), |b| b.get(s).to_string());
        let _ = write!(out, "<li><span class=\"count\" data-severity=\"{s}\">{n}</span> {s}</li>");
    }
    out.push_str("</ul>");
    out
}

fn health_badge(h: Health) -> String {
    format!("<span class=\"health health-{}\">{}</span>", h.as_str(), h.label())
}

/// Which replica reconciles the repository.
fn holder_html(card: &CardView) -> String {
    match &card.holder {
        Some((id, true)) => format!("<span class=\"holder\">{} (this one)</span>", escape(id)),
        Some((id, false)) => format!("<span class=\"holder\">{}</span>", escape(id)),
        None => "<span class=\"holder\">none yet</span>".to_string(),
    }
}

fn card_html(out: &mut String, card: &CardView) {
    let name = escape(&card.name);
    let _ = write!(
        out,
        "<article class=\"card\" id=\"repo-{name}\" data-health=\"{}\">\n<h2><a href=\"/repos/{name}\">{name}</a>{}</h2>\n<p class=\"source\"><code>{}</code>{}</p>\n",
        card.health.as_str(),
        health_badge(card.health),
        escape(&card.url),
        card.reference.as_deref().map(|r| format!(" @ <code>{}</code>", escape(r))).unwrap_or_default()
    );
    let _ = write!(
        out,
        "<dl class=\"facts\"><dt>Revision</dt><dd>{}</dd><dt>Last run</dt><dd>{}</dd><dt>Replica</dt><dd>{}</dd><dt>Approvals</dt><dd>{} pending</dd></dl>\n{}\n{}\n",
        revision_html(card),
        last_run_html(card),
        holder_html(card),
        card.pending,
        counts_html(card.by_severity.as_ref()),
        charts::sparkline(&card.history)
    );
    if let Some(e) = &card.last_error {
        let _ = writeln!(out, "<p class=\"run-error\">Last run failed: {}</p>", escape(e));
    }
    out.push_str("</article>\n");
}

/// `/`: one card per repository.
pub fn overview(cards: &[CardView], viewer: &Viewer) -> String {
    let mut main = String::from("<h1>Repositories</h1>\n");
    if cards.is_empty() {
        main.push_str("<p>No repositories are configured: add a [[repo]] table to the serve config.</p>\n");
    } else {
        main.push_str("<div class=\"cards\">\n");
        for card in cards {
            card_html(&mut main, card);
        }
        main.push_str("</div>\n");
    }
    layout("Overview", "overview", None, viewer, &main)
}

/// A JSON value of a diff as shown: strings bare, everything else as compact JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "(absent)".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn outcome_text(o: &SyncOutcome) -> String {
    match o {
        SyncOutcome::Reverted => "reverted".into(),
        SyncOutcome::AlreadyInSync => "already in sync".into(),
        SyncOutcome::WouldRevert => "would revert".into(),
        SyncOutcome::Conflict(why) => format!("conflict: {why}"),
        SyncOutcome::AwaitingApproval => "awaiting approval".into(),
        SyncOutcome::NotRevertible(why) => format!("not revertible: {why}"),
        SyncOutcome::Failed(why) => format!("failed: {why}"),
    }
}

fn filter_form(out: &mut String, name: &str, filter: &Filter) {
    let selected = |on: bool| if on { " selected" } else { "" };
    let _ = write!(
        out,
        "<form class=\"filters\" method=\"get\" action=\"/repos/{}\"><label>Status<select name=\"status\"><option value=\"\">all</option>",
        escape(name)
    );
    for (value, status) in [("in_sync", Status::InSync), ("drifted", Status::Drifted), ("missing", Status::Missing), ("unmanaged", Status::Unmanaged)] {
        let _ = write!(out, "<option value=\"{value}\"{}>{value}</option>", selected(filter.status == Some(status)));
    }
    out.push_str("</select></label><label>Severity<select name=\"severity\"><option value=\"\">all</option>");
    for s in Severity::DESCENDING {
        let _ = write!(out, "<option value=\"{s}\"{}>{s}</option>", selected(filter.severity == Some(Some(s))));
    }
    let _ = writeln!(
        out,
        "<option value=\"none\"{}>none (in sync)</option></select></label><button type=\"submit\">Filter</button> <a href=\"/repos/{}\">clear</a></form>",
        selected(filter.severity == Some(None)),
        escape(name)
    );
}

fn approvals_html(out: &mut String, repo: &str, approvals: &[ApprovalView], viewer: &Viewer) {
    out.push_str("<section class=\"approvals\"><h2>Pending approvals</h2>\n");
    if approvals.is_empty() {
        out.push_str("<p class=\"muted\">Nothing awaits approval.</p></section>\n");
        return;
    }
    if !viewer.approvals_enabled {
        let _ = writeln!(
            out,
            "<p class=\"notice\">Approvals from the browser are disabled: set {} in the environment of serve. Approve with <code>novacron-reconcile approve &lt;id&gt; --actor &lt;name&gt;</code> meanwhile.</p>",
            crate::serve::ADMIN_TOKEN_ENV
        );
    } else if viewer.signed_in.is_none() {
        out.push_str("<p class=\"notice\"><a href=\"/signin\">Sign in</a> to approve from here.</p>\n");
    }
    out.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>Id</th><th>Kind</th><th>What</th><th>Severity</th><th>Waiting since</th><th></th></tr></thead><tbody>\n",
    );
    for a in approvals {
        let _ = write!(
            out,
            "<tr class=\"approval\" data-id=\"{id}\"><td><code>{id}</code></td><td>{}</td><td>{}</td><td class=\"severity-{sev}\">{sev}</td><td><time datetime=\"{since}\">{since}</time></td><td>",
            a.kind,
            escape(&a.subject),
            id = escape(&a.id),
            sev = a.severity,
            since = escape(&a.since)
        );
        match (&a.approved_by, &viewer.signed_in) {
            (Some(by), _) => {
                let _ = write!(out, "approved by <span class=\"actor\">{}</span>; applied at the next run", escape(by));
            }
            (None, Some(who)) if viewer.approvals_enabled => {
                let _ = write!(
                    out,
                    "<form class=\"approve\" method=\"post\" action=\"/repos/{}/approve\"><input type=\"hidden\" name=\"id\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Approve</button></form>",
                    escape(repo),
                    escape(&a.id),
                    escape(&who.csrf)
                );
            }
            (None, _) => out.push_str("<span class=\"muted\">awaiting approval</span>"),
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody></table></div></section>\n");
}

fn resource_rows(out: &mut String, r: &ResourceReport, outcome: Option<&SyncOutcome>) {
    let address = escape(&r.address);
    let severity = r.severity.map_or("none", Severity::as_str);
    let _ = write!(
        out,
        "<tr class=\"resource\" data-address=\"{address}\" data-status=\"{status}\" data-severity=\"{severity}\"><td><code>{address}</code></td><td>{status}</td><td class=\"severity-{severity}\">{severity}</td><td>",
        status = r.status.as_str(),
    );
    if let Some(by) = &r.changed_by {
        let _ = write!(
            out,
            "<span class=\"actor\">{}</span> <time class=\"changed-at\" datetime=\"{time}\">{time}</time> ({})",
            escape(&by.actor),
            escape(&by.action),
            time = escape(&by.time)
        );
    }
    out.push_str("</td><td>");
    if let Some(o) = outcome {
        out.push_str(&escape(&outcome_text(o)));
    } else if r.three_way != crate::report::ThreeWay::InSync {
        out.push_str(r.three_way.as_str());
    }
    out.push_str("</td></tr>\n");
    for c in &r.changes {
        let (desired, live) = if c.sensitive { ("(sensitive)".to_string(), "(sensitive)".to_string()) } else { (value_text(&c.desired), value_text(&c.live)) };
        let _ = writeln!(
            out,
            "<tr class=\"change\" data-address=\"{address}\" data-severity=\"{sev}\"><td class=\"path\" colspan=\"2\">{}</td><td class=\"desired\">{}</td><td class=\"live\">{}</td><td class=\"severity-{sev}\">{sev}</td></tr>",
            escape(&c.path),
            escape(&desired),
            escape(&live),
            sev = c.severity
        );
    }
}

/// `/repos/{name}`: the latest report with its diffs, approvals, pull requests and history.
pub fn repo_page(view: &RepoPageView<'_>, viewer: &Viewer) -> String {
    let card = &view.card;
    let name = &card.name;
    let mut main = String::with_capacity(4096 + view.sync.map_or(0, |s| s.report.resources.len() * 400));
    let _ = writeln!(main, "<h1>{} {}</h1>", escape(name), health_badge(card.health));
    if let Some(flash) = &view.flash {
        let _ = writeln!(main, "<p class=\"flash\">{}</p>", escape(flash));
    }
    let _ = write!(
        main,
        "<section class=\"head\"><p class=\"source\"><code>{}</code>{}</p><dl class=\"facts\"><dt>Revision</dt><dd>{}</dd><dt>Last run</dt><dd>{}</dd><dt>Replica</dt><dd>{}</dd></dl>\n{}\n",
        escape(&card.url),
        card.reference.as_deref().map(|r| format!(" @ <code>{}</code>", escape(r))).unwrap_or_default(),
        revision_html(card),
        last_run_html(card),
        holder_html(card),
        counts_html(card.by_severity.as_ref())
    );
    if let Some(e) = &card.last_error {
        let _ = writeln!(main, "<p class=\"run-error\">Last run failed: {}</p>", escape(e));
    }
    main.push_str("</section>\n<section class=\"chart\"><h2>Drift by severity over time</h2>\n");
    main.push_str(&charts::history(&card.history));
    main.push_str("\n<p class=\"legend\">");
    for s in Severity::DESCENDING {
        let _ = write!(main, "<span><span class=\"swatch {s}\"></span>{s}</span>");
    }
    let _ =
        writeln!(main, "<span>{} runs, oldest on the left; hover a column for its counts</span></p></section>", card.history.len().min(charts::HISTORY_RUNS));
    approvals_html(&mut main, name, &view.approvals, viewer);

    let pulls: Vec<&str> = view.sync.and_then(|s| s.remediation.as_ref()).and_then(|r| r.pull_request.url.as_deref()).into_iter().collect();
    main.push_str("<section class=\"pulls\"><h2>Remediation pull requests</h2>\n");
    if pulls.is_empty() {
        main.push_str("<p class=\"muted\">The last run opened or updated none.</p>\n");
    } else {
        main.push_str("<ul>");
        for url in pulls {
            if url.starts_with("https://") || url.starts_with("http://") {
                let _ = write!(main, "<li><a class=\"pull-request\" href=\"{0}\">{0}</a></li>", escape(url));
            } else {
                let _ = write!(main, "<li><code>{}</code></li>", escape(url));
            }
        }
        main.push_str("</ul>\n");
    }
    main.push_str("</section>\n<section class=\"report\"><h2>Latest report</h2>\n");
    match view.sync {
        None => main.push_str("<p class=\"no-run\">No run yet: the first reconcile of this process has not finished.</p>\n"),
        Some(sync) => {
            let report = &sync.report;
            let s = &report.summary;
            let _ = writeln!(
                main,
                "<p>Revision <code>{}</code>, generated <time datetime=\"{at}\">{at}</time>: {} resources, {} in sync, {} drifted, {} missing, {} unmanaged.</p>",
                escape(short(&report.revision)),
                s.resources,
                s.in_sync,
                s.drifted,
                s.missing,
                s.unmanaged,
                at = escape(&report.generated_at)
            );
            filter_form(&mut main, name, &view.filter);
            let outcomes: HashMap<&str, &SyncOutcome> = sync.actions.iter().map(|a| (a.address.as_str(), &a.outcome)).collect();
            let shown: Vec<&ResourceReport> = report.resources.iter().filter(|r| view.filter.keeps(r)).collect();
            if shown.is_empty() {
                main.push_str("<p class=\"muted\">No resource matches the filters.</p>\n");
            } else {
                main.push_str(
                    "<div class=\"scroll\"><table class=\"resources\"><thead><tr><th>Resource / path</th><th>Status</th><th>Severity · desired</th><th>Changed by · live</th><th>Outcome</th></tr></thead><tbody>\n",
                );
                for r in shown {
                    resource_rows(&mut main, r, outcomes.get(r.address.as_str()).copied());
                }
                main.push_str("</tbody></table></div>\n");
            }
            for w in &report.warnings {
                let _ = writeln!(main, "<p class=\"notice\">{}</p>", escape(w));
            }
            for e in &sync.errors {
                let _ = writeln!(main, "<p class=\"run-error\">{}</p>", escape(e));
            }
        }
    }
    main.push_str("</section>\n");
    layout(name, "repo", Some(name), viewer, &main)
}

/// `/audit?page=N`: the chain's verification, then `AUDIT_PAGE_SIZE` entries, newest first.
pub fn audit_page(view: &AuditPageView, viewer: &Viewer) -> String {
    let mut main = String::from("<h1>Audit log</h1>\n");
    let v = &view.verify;
    if v.ok {
        let _ = writeln!(main, "<p class=\"verify\" data-ok=\"true\">Chain verified: all {} entries hash and link correctly.</p>", v.entries);
    } else {
        let _ = writeln!(
            main,
            "<p class=\"verify\" data-ok=\"false\">Chain broken: entry {} does not match its hash or link ({} entries checked). Run <code>novacron-reconcile audit verify</code>.</p>",
            v.first_bad.map_or_else(|| "?".to_string(), |n| n.to_string()),
            v.entries
        );
    }
    let pages = view.total.div_ceil(AUDIT_PAGE_SIZE).max(1);
    let mut pager = "<nav class=\"pager\">".to_string();
    if view.page > 1 {
        let _ = write!(pager, "<a rel=\"prev\" href=\"/audit?page={}\">← newer</a>", view.page - 1);
    }
    let _ = write!(pager, "<span>page {} of {pages} · {} entries</span>", view.page, view.total);
    if view.page < pages {
        let _ = write!(pager, "<a rel=\"next\" href=\"/audit?page={}\">older →</a>", view.page + 1);
    }
    pager.push_str("</nav>\n");
    main.push_str(&pager);
    if view.entries.is_empty() {
        main.push_str("<p class=\"muted\">No entries on this page.</p>\n");
    } else {
        main.push_str("<div class=\"scroll\"><table class=\"audit\"><thead><tr><th>#</th><th>Time</th><th>Actor</th><th>Action</th><th>Repository</th><th>Subject</th><th>Detail</th></tr></thead><tbody>\n");
        for e in &view.entries {
            let _ = writeln!(
                main,
                "<tr class=\"entry\" data-seq=\"{}\"><td>{}</td><td><time datetime=\"{time}\">{time}</time></td><td><span class=\"actor\">{}</span></td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                e.seq,
                e.seq,
                escape(&e.actor),
                escape(&e.action),
                escape(&e.repo),
                escape(&e.subject),
                escape(&e.detail.to_string()),
                time = escape(&e.time)
            );
        }
        main.push_str("</tbody></table></div>\n");
        main.push_str(&pager);
    }
    layout("Audit log", "audit", None, viewer, &main)
}

/// `/signin`: the form (name, token, the pre-session CSRF token), or why it is not offered.
pub fn signin_page(csrf: &str, error: Option<&str>, viewer: &Viewer) -> String {
    let mut main = String::from("<h1>Sign in</h1>\n");
    if !viewer.approvals_enabled {
        let _ = writeln!(
            main,
            "<p class=\"notice\">Approvals from the browser are disabled: no admin token is configured. To enable them, set {} in the environment of <code>novacron-reconcile serve</code> and restart it; sign in here with that token.</p>",
            crate::serve::ADMIN_TOKEN_ENV
        );
        return layout("Sign in", "signin", None, viewer, &main);
    }
    if let Some(who) = &viewer.signed_in {
        let _ = writeln!(
            main,
            "<p class=\"notice\">You are signed in as <span class=\"signed-in\">{}</span>; signing in again replaces that session.</p>",
            escape(&who.name)
        );
    }
    if let Some(e) = error {
        let _ = writeln!(main, "<p class=\"error\">{}</p>", escape(e));
    }
    let _ = write!(
        main,
        "<p>Approving needs the admin token of this service. Your name is recorded as the actor of each approval in the audit log.</p>\n\
         <form id=\"signin\" method=\"post\" action=\"/signin\"><label>Your name<input type=\"text\" name=\"name\" autocomplete=\"username\" maxlength=\"100\" required></label>\
         <label>Admin token<input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Sign in</button></form>\n",
        escape(csrf)
    );
    layout("Sign in", "signin", None, viewer, &main)
}

/// An error page: what went wrong and what to do.
pub fn error_page(title: &str, message: &str, viewer: &Viewer) -> String {
    let main = format!("<h1>{}</h1>\n<p class=\"error\">{}</p>\n<p><a href=\"/\">Back to the overview</a></p>\n", escape(title), escape(message));
    layout(title, "error", None, viewer, &main)
}
