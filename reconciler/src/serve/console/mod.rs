//! The web console of `serve`, on its own listener: an overview of every repository, a page per
//! repository (latest report with field diffs, filters, approvals, pull requests, drift history),
//! the audit log, sign-in for approvals, and live updates over Server-Sent Events.
//!
//! Pages are rendered on the server ([`pages`], [`charts`]) and work without JavaScript; the one
//! script ([`assets`]) only swaps `<main>` after each finished run. Every response carries a strict
//! Content-Security-Policy (no inline script or style), `nosniff` and `same-origin` referrers.
//!
//! # DOM contract (the browser tests rely on it: keep it stable)
//!
//! - `<body data-page="overview|repo|audit|signin">` (`error` on error pages); the repository page
//!   also has `data-repo="{name}"`. The script sets `data-live="on"` on `<body>` once the
//!   `/events` stream is open (`reconnecting` / `off` after an error) and counts swaps of
//!   `<main>` in `data-refreshes`.
//! - Overview card: `<article class="card" id="repo-{name}" data-health="in_sync|drifting|rollout_pending|error">`
//!   (`unknown` before the first run finished), counts `<span class="count" data-severity="{critical|high|medium|low|info}">{n}</span>`,
//!   sparkline `<svg class="sparkline">` (a `<title>` per point).
//! - Repository page: each resource `<tr class="resource" data-address="{address}" data-status="{status}" data-severity="{severity or none}">`,
//!   its diff lines `<tr class="change" data-address="{address}">` with `<td class="path">`, `<td class="desired">`,
//!   `<td class="live">`; who changed it `<span class="actor">{actor}</span>` and `<time class="changed-at">`;
//!   each pending approval (when signed in) `<form class="approve" method="post" action="/repos/{name}/approve">` with
//!   `<input type="hidden" name="id">`, `<input type="hidden" name="csrf">`, `<button type="submit">Approve</button>`;
//!   the flash message `<p class="flash">`; the chart `<svg class="history">`; before the first run `<p class="no-run">`.
//! - Sign-in page: `<form id="signin" method="post" action="/signin">` with inputs `name`, `token` (password), hidden `csrf`.
//! - Audit page: `<p class="verify" data-ok="true|false">`, rows `<tr class="entry">`, links `rel="prev"` / `rel="next"`.

pub mod assets;
pub mod charts;
pub mod pages;
pub mod sessions;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::Service;
use super::config::ConsoleConfig;
use super::repo::{RepoHandle, RepoStatus};
use super::webhook::constant_time_eq;
use crate::sync::{SyncOutcome, SyncReport};
use crate::threeway::ThreeWay;
use pages::{ApprovalView, AuditPageView, CardView, Filter, Health, RepoPageView, Viewer};
use sessions::{SESSION_COOKIE, SIGNIN_CSRF_COOKIE, Sessions, SignedIn, cookie, csrf_matches};

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How often `/events` sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The longest name accepted at sign-in.
const NAME_MAX: usize = 100;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
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

/// What a finished run tells the browsers following `/events` (event `run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunEvent {
    /// The repository's name.
    pub repo: String,
    /// The revision it stands at.
    pub revision: Option<String>,
    /// Drifted resources left after the run.
    pub drifted: u64,
    /// False when the run failed.
    pub ok: bool,
}

/// The console's part of the service: its settings and the browser sessions.
#[derive(Debug)]
pub struct Console {
    /// The `[console]` table.
    pub config: ConsoleConfig,
    /// Signed-in browsers.
    pub sessions: Sessions,
    /// Served over HTTPS: cookies are marked `Secure`, so a browser never sends them in clear.
    pub https: bool,
}

impl Console {
    /// A console with no sessions yet; `https` when `serve` serves TLS.
    pub fn new(config: ConsoleConfig, https: bool) -> Console {
        let sessions = Sessions::new(config.session_ttl);
        Console { config, sessions, https }
    }

    /// A cookie as the console sets it.
    fn set_cookie(&self, name: &str, value: &str, max_age: u64) -> (header::HeaderName, String) {
        let secure = if self.https { "; Secure" } else { "" };
        (header::SET_COOKIE, format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"))
    }
}

/// The console's routes, every response with the security headers.
pub fn router() -> Router<Arc<Service>> {
    Router::new()
        .route("/", get(overview))
        .route("/repos/{name}", get(repo_page))
        .route("/repos/{name}/approve", post(approve))
        .route("/audit", get(audit))
        .route("/signin", get(signin_form).post(signin))
        .route("/signout", post(signout))
        .route("/events", get(events))
        .route("/static/console.css", get(assets::css))
        .route("/static/console.js", get(assets::js))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The web address of commit `sha` on the repository's forge, when the forge is known:
/// `forge_repo` set, and `forge_url` absent or api.github.com (GitHub) or ending in `/api/v3`
/// (GitHub Enterprise) or `/api/v1` (Gitea, Forgejo).
pub fn commit_url(forge_url: Option<&str>, forge_repo: Option<&str>, sha: &str) -> Option<String> {
    let repo = forge_repo?.trim().trim_matches('/');
    if repo.split('/').count() != 2 || !sha.chars().all(|c| c.is_ascii_hexdigit()) || sha.is_empty() {
        return None;
    }
    let api = forge_url.unwrap_or("https://api.github.com").trim().trim_end_matches('/');
    let web = if api == "https://api.github.com" || api == "http://api.github.com" {
        "https://github.com".to_string()
    } else {
        let base = api.strip_suffix("/api/v3").or_else(|| api.strip_suffix("/api/v1"))?;
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return None;
        }
        base.to_string()
    };
    Some(format!("{web}/{repo}/commit/{sha}"))
}

/// Resources of the last run the platform still differs on (drift or conflict, not reverted).
fn drifting(status: &RepoStatus, sync: Option<&SyncReport>) -> usize {
    match sync {
        Some(sync) => {
            let settled: std::collections::HashSet<&str> =
                sync.actions.iter().filter(|a| matches!(a.outcome, SyncOutcome::Reverted | SyncOutcome::AlreadyInSync)).map(|a| a.address.as_str()).collect();
            sync.report
                .resources
                .iter()
                .filter(|r| matches!(r.three_way, ThreeWay::Drift | ThreeWay::Conflict) && !settled.contains(r.address.as_str()))
                .count()
        }
        None => status.summary.as_ref().map_or(0, |s| s.three_way.drift + s.three_way.conflict),
    }
}

/// Where a repository stands: a failed last run, a held rollout, drift left, or in sync.
pub fn health(status: &RepoStatus, sync: Option<&SyncReport>) -> Health {
    if status.last_error.is_some() {
        return Health::Error;
    }
    if status.summary.is_none() && sync.is_none() {
        return Health::Unknown;
    }
    let plan_held = status.pending_approvals.iter().any(|p| p.get("kind").and_then(|k| k.as_str()) == Some("plan"));
    let rollout_waits = sync.and_then(|s| s.rollout.as_ref()).is_some_and(|r| matches!(r.outcome, crate::sync::RolloutOutcome::Pending(_)));
    if plan_held || rollout_waits {
        return Health::RolloutPending;
    }
    if drifting(status, sync) > 0 { Health::Drifting } else { Health::InSync }
}

fn card(svc: &Service, repo: &RepoHandle, history_runs: usize) -> CardView {
    let mut status = repo.status();
    let here = svc.leases.holds(repo.name());
    if !here {
        // Another replica reconciles it: show where that one left it.
        if let Ok(p) = crate::state::stored_repo(&svc.db, repo.name()) {
            status.revision = p.revision.or(status.revision);
            status.last_run = p.last_run.or(status.last_run);
            status.last_error = p.last_error;
            status.summary = p.summary.as_deref().and_then(|x| serde_json::from_str(x).ok()).or(status.summary);
            status.running = false;
        }
    }
    let sync = repo.last_sync();
    let c = &repo.config;
    let history = crate::state::run_history(&svc.db, repo.name(), history_runs).unwrap_or_else(|e| {
        tracing::warn!(repo = repo.name(), error = %e, "cannot read the run history");
        Vec::new()
    });
    CardView {
        name: repo.name().to_string(),
        url: crate::git::redact(&c.url),
        reference: c.reference.clone(),
        health: health(&status, sync.as_deref()),
        commit_url: status.revision.as_deref().and_then(|sha| commit_url(c.forge_url.as_deref(), c.forge_repo.as_deref(), sha)),
        revision: status.revision.clone(),
        holder: svc.leases.holder(repo.name()).map(|id| (id, here)),
        last_run: status.last_run.clone(),
        duration_ms: status.last_duration_ms,
        last_trigger: status.last_trigger.map(str::to_string),
        running: status.running,
        last_error: status.last_error.clone(),
        by_severity: status.summary.as_ref().map(|s| s.by_severity.clone()),
        pending: status.pending_approvals.len(),
        history,
    }
}

/// The drifts and plans of `repo` awaiting approval, read from the state database exactly as
/// [`super::scheduler::refresh_approvals`] reads them.
fn pending(svc: &Service, repo: &RepoHandle) -> Result<Vec<ApprovalView>, crate::state::StateError> {
    let key = repo.state_key();
    let path = crate::source::join_path("", &repo.config.path).unwrap_or_default();
    let mut out: Vec<ApprovalView> = crate::state::pending_approvals(&svc.db, Some(&key))?
        .into_iter()
        .map(|d| ApprovalView { id: d.id, kind: "drift", subject: d.address, severity: d.severity, since: d.created_at, approved_by: d.approved_by })
        .collect();
    for p in crate::state::pending_plans(&svc.db, Some(&key))?.into_iter().filter(|p| p.path == path) {
        out.push(ApprovalView {
            subject: format!("rollout of {}: {} ({})", &p.revision[..p.revision.len().min(12)], p.summary, p.reason),
            id: p.id,
            kind: "plan",
            severity: p.severity,
            since: p.created_at,
            approved_by: p.approved_by,
        });
    }
    Ok(out)
}

/// The session of the request, if it has a live one: its id and person.
fn session(svc: &Service, headers: &HeaderMap) -> Option<(String, SignedIn)> {
    let id = cookie(headers, SESSION_COOKIE)?;
    svc.console.sessions.get(id, Instant::now()).map(|who| (id.to_string(), who))
}

fn viewer(svc: &Service, who: Option<SignedIn>) -> Viewer {
    Viewer { signed_in: who, approvals_enabled: svc.admin_token.is_some() }
}

/// The session id and viewer of a console page; `None` when viewing needs a session and the
/// request has none (answer [`to_signin`]).
fn gate(svc: &Service, headers: &HeaderMap) -> Option<(Option<String>, Viewer)> {
    let s = session(svc, headers);
    if svc.console.config.require_signin && s.is_none() {
        return None;
    }
    let (id, who) = s.map_or((None, None), |(id, who)| (Some(id), Some(who)));
    Some((id, viewer(svc, who)))
}

fn to_signin() -> Response {
    Redirect::to("/signin").into_response()
}

fn error(code: StatusCode, title: &str, message: &str, viewer: &Viewer) -> Response {
    (code, Html(pages::error_page(title, message, viewer))).into_response()
}

async fn overview(State(svc): State<Arc<Service>>, headers: HeaderMap) -> Response {
    let Some((_, viewer)) = gate(&svc, &headers) else {
        return to_signin();
    };
    let cards: Vec<CardView> = svc.repos.iter().map(|r| card(&svc, r, charts::SPARKLINE_RUNS)).collect();
    Html(pages::overview(&cards, &viewer)).into_response()
}

async fn repo_page(State(svc): State<Arc<Service>>, Path(name): Path<String>, Query(query): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    let Some((sid, viewer)) = gate(&svc, &headers) else {
        return to_signin();
    };
    let Some(repo) = svc.repo(&name) else {
        return error(StatusCode::NOT_FOUND, "No such repository", &format!("no repository is named {name:?} in the serve config"), &viewer);
    };
    let filter = match Filter::parse(&query) {
        Ok(f) => f,
        Err(bad) => return error(StatusCode::BAD_REQUEST, "Bad filter", &bad.to_string(), &viewer),
    };
    let approvals = match pending(&svc, repo) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "State database failed", &e.to_string(), &viewer),
    };
    let sync = repo.last_sync();
    let view = RepoPageView {
        card: card(&svc, repo, charts::HISTORY_RUNS),
        sync: sync.as_deref(),
        filter,
        approvals,
        flash: sid.and_then(|id| svc.console.sessions.take_flash(&id)),
    };
    Html(pages::repo_page(&view, &viewer)).into_response()
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    page: Option<String>,
}

async fn audit(State(svc): State<Arc<Service>>, Query(query): Query<AuditQuery>, headers: HeaderMap) -> Response {
    let Some((_, viewer)) = gate(&svc, &headers) else {
        return to_signin();
    };
    let page = match query.page.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        None => 1,
        Some(p) => match p.parse::<u64>() {
            Ok(n) if n >= 1 => n,
            _ => {
                let message = format!("query parameter `page` has an unknown value {p:?}; accepted values: a whole number from 1");
                return error(StatusCode::BAD_REQUEST, "Bad page", &message, &viewer);
            }
        },
    };
    let read = crate::state::audit_verify(&svc.db)
        .and_then(|verify| crate::state::audit_page(&svc.db, (page - 1).saturating_mul(pages::AUDIT_PAGE_SIZE), pages::AUDIT_PAGE_SIZE).map(|p| (verify, p)));
    match read {
        Ok((verify, (entries, total))) => Html(pages::audit_page(&AuditPageView { verify, entries, page, total }, &viewer)).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "State database failed", &e.to_string(), &viewer),
    }
}

/// The sign-in form with a fresh pre-session CSRF token (also set as a cookie).
fn signin_response(svc: &Service, code: StatusCode, who: Option<SignedIn>, message: Option<&str>) -> Response {
    let viewer = viewer(svc, who);
    let token = match sessions::random_token() {
        Ok(t) => t,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "No randomness", &format!("the operating system gave no random bytes: {e}"), &viewer),
    };
    (code, [svc.console.set_cookie(SIGNIN_CSRF_COOKIE, &token, 3600)], Html(pages::signin_page(&token, message, &viewer))).into_response()
}

async fn signin_form(State(svc): State<Arc<Service>>, headers: HeaderMap) -> Response {
    let who = session(&svc, &headers).map(|(_, who)| who);
    signin_response(&svc, StatusCode::OK, who, None)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SigninForm {
    name: String,
    token: String,
    csrf: String,
}

async fn signin(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    form: Result<axum::Form<SigninForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(axum::Form(form)) = form else {
        return signin_response(&svc, StatusCode::BAD_REQUEST, None, Some("The sign-in form could not be read; try again."));
    };
    let Some(admin) = svc.admin_token.as_deref() else {
        return signin_response(&svc, StatusCode::FORBIDDEN, None, None);
    };
    if !csrf_matches(cookie(&headers, SIGNIN_CSRF_COOKIE).unwrap_or(""), &form.csrf) {
        return signin_response(&svc, StatusCode::FORBIDDEN, None, Some("The sign-in form expired or did not come from this page; try again."));
    }
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
        return signin_response(&svc, StatusCode::BAD_REQUEST, None, Some("Give your name (1 to 100 characters): it is recorded with each approval."));
    }
    if !constant_time_eq(form.token.trim().as_bytes(), admin.as_bytes()) {
        tracing::warn!(name, "console sign-in refused: wrong admin token");
        // Slows down guessing; the token is compared in constant time anyway.
        tokio::time::sleep(Duration::from_millis(250)).await;
        return signin_response(&svc, StatusCode::UNAUTHORIZED, None, Some("Wrong admin token."));
    }
    let id = match svc.console.sessions.create(name, Instant::now()) {
        Ok(id) => id,
        Err(e) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "No randomness", &format!("the operating system gave no random bytes: {e}"), &viewer(&svc, None));
        }
    };
    tracing::info!(name, "console sign-in");
    let ttl = svc.console.sessions.ttl().as_secs();
    let mut response = Redirect::to("/").into_response();
    let h = response.headers_mut();
    for (k, v) in [svc.console.set_cookie(SESSION_COOKIE, &id, ttl), svc.console.set_cookie(SIGNIN_CSRF_COOKIE, "", 0)] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.append(k, v);
        }
    }
    response
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SignoutForm {
    csrf: String,
}

async fn signout(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    form: Result<axum::Form<SignoutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.map(|f| f.0.csrf).unwrap_or_default();
    match session(&svc, &headers) {
        Some((id, who)) if csrf_matches(&who.csrf, &csrf) => {
            svc.console.sessions.remove(&id);
            tracing::info!(name = %who.name, "console sign-out");
            ([svc.console.set_cookie(SESSION_COOKIE, "", 0)], Redirect::to("/")).into_response()
        }
        Some((_, who)) => forbidden_csrf(&viewer(&svc, Some(who))),
        None => Redirect::to("/").into_response(),
    }
}

fn forbidden_csrf(viewer: &Viewer) -> Response {
    error(StatusCode::FORBIDDEN, "Refused", "The form carried no valid CSRF token (reload the page and try again); nothing was done.", viewer)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ApproveForm {
    id: String,
    csrf: String,
}

/// `POST /repos/{name}/approve`: approves a drift or plan of that repository as the signed-in
/// person, exactly as `POST /api/approvals/{id}` does, then reconciles it.
async fn approve(
    State(svc): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: Result<axum::Form<ApproveForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let s = session(&svc, &headers);
    let viewer = viewer(&svc, s.as_ref().map(|(_, who)| who.clone()));
    if svc.admin_token.is_none() {
        let message = format!("Approvals from the browser are disabled: set {} in the environment of serve; nothing was done.", super::ADMIN_TOKEN_ENV);
        return error(StatusCode::FORBIDDEN, "Refused", &message, &viewer);
    }
    let Some((sid, who)) = s else {
        return error(StatusCode::FORBIDDEN, "Refused", "Sign in to approve (your session may have expired); nothing was done.", &viewer);
    };
    let form = form.map(|f| f.0).unwrap_or_default();
    if !csrf_matches(&who.csrf, &form.csrf) {
        tracing::warn!(repo = %name, name = %who.name, "console approval refused: missing or wrong CSRF token");
        return forbidden_csrf(&viewer);
    }
    let Some(repo) = svc.repo(&name) else {
        return error(StatusCode::NOT_FOUND, "No such repository", &format!("no repository is named {name:?} in the serve config"), &viewer);
    };
    let waiting = match pending(&svc, repo) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "State database failed", &e.to_string(), &viewer),
    };
    let Some(item) = waiting.into_iter().find(|a| a.id == form.id) else {
        let message = format!("nothing of {name} awaits approval under id {:?}; it may be resolved already", form.id);
        return error(StatusCode::NOT_FOUND, "No such approval", &message, &viewer);
    };
    let approved = if item.kind == "plan" {
        crate::state::approve_plan(&svc.db, &item.id, &who.name).map(|p| p.is_some()).map_err(|e| e.to_string())
    } else {
        crate::state::approve(&svc.db, &item.id, &who.name).map(|_| true).map_err(|e| e.to_string())
    };
    match approved {
        Ok(true) => {
            tracing::info!(repo = %name, approval = %item.id, actor = %who.name, "approved in the console; reconciling now");
            super::scheduler::refresh_approvals(&svc, repo);
            super::lease::wake(&svc, repo, "approval");
            svc.console.sessions.set_flash(&sid, format!("Approved {} ({}) as {}; {name} is reconciling now.", item.id, item.subject, who.name));
        }
        Ok(false) => svc.console.sessions.set_flash(&sid, format!("{} was resolved meanwhile; nothing to approve.", item.id)),
        Err(e) => {
            tracing::error!(repo = %name, approval = %item.id, error = %e, "console approval failed");
            return error(StatusCode::SERVICE_UNAVAILABLE, "Approval failed", &e, &viewer);
        }
    }
    Redirect::to(&format!("/repos/{name}")).into_response()
}

/// `GET /events`: an event `run` after every finished run, a keep-alive comment every 15 s;
/// the stream ends when the service stops.
async fn events(State(svc): State<Arc<Service>>, headers: HeaderMap) -> Response {
    if gate(&svc, &headers).is_none() {
        return to_signin();
    }
    let stream = futures_util::stream::unfold((svc.events.subscribe(), svc.stopping.clone()), |(mut runs, mut stop)| async move {
        loop {
            if *stop.borrow() {
                return None;
            }
            tokio::select! {
                run = runs.recv() => match run {
                    Ok(run) => {
                        let event = Event::default().event("run").json_data(&run).unwrap_or_else(|_| Event::default().comment("unencodable run"));
                        return Some((Ok::<Event, Infallible>(event), (runs, stop)));
                    }
                    // A slow browser missed some: the next one refreshes the page anyway.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
                changed = stop.changed() => if changed.is_err() { return None },
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")).into_response()
}

#[cfg(test)]
mod tests;
