//! The HTTP side of `serve`: `/hooks/github`, `/healthz`, `/readyz`, `/metrics`, `/api/status`, `POST /api/approvals/{id}`, and the web console's routes ([`super::console`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::Service;
use super::review::{IssueCommentPayload, PullRequestPayload, ReviewJob, approve_command};
use super::webhook::{PushPayload, constant_time_eq, verify_signature};

/// The largest webhook body accepted: GitHub caps payloads at 25 MB.
pub const WEBHOOK_BODY_LIMIT: usize = 25 * 1024 * 1024;

/// Serves `listener` (over TLS with `tls`) until `stop` turns true, then finishes the requests
/// in flight.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    tls: Option<Arc<novacron_tls::ReloadableCert>>,
    mut stop: watch::Receiver<bool>,
) {
    let app = router(service);
    let shutdown = async move {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                break;
            }
        }
    };
    let served = match tls {
        Some(cert) => novacron_tls::serve(listener, app, cert, shutdown).await,
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
    };
    if let Err(e) = served {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

/// The routes.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .merge(super::console::router())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/approvals/{id}", post(approve))
        .route("/hooks/github", post(github_hook).layer(axum::extract::DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT)))
        .with_state(service)
}

fn answer(code: StatusCode, body: Value) -> Response {
    (code, axum::Json(body)).into_response()
}

async fn readyz(State(svc): State<Arc<Service>>) -> Response {
    if let Err(e) = svc.db.ping() {
        let health = svc.leases.health();
        let leases = if svc.leases.healthy() {
            format!("leases: {} held, still renewed on the keeper's own connection", health.held)
        } else {
            format!("leases: cannot renew, this replica stops acting on its {} before they can expire", health.held)
        };
        return (StatusCode::SERVICE_UNAVAILABLE, format!("state database: {e}; {leases}\n")).into_response();
    }
    if !svc.leases.healthy() {
        let health = svc.leases.health();
        let why = health.error.unwrap_or_else(|| match health.renewed_ms_ago {
            Some(ms) => format!("last renewed {ms} ms ago"),
            None => "not renewed yet".to_string(),
        });
        return (StatusCode::SERVICE_UNAVAILABLE, format!("leases: cannot renew ({why}); this replica acts on none until it can\n")).into_response();
    }
    // The first reconcile of every repository this replica holds.
    let waiting: Vec<&str> = svc.repos.iter().filter(|r| svc.leases.holds(r.name()) && r.status().runs == 0).map(|r| r.name()).collect();
    if !svc.feed_following.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "the event feed is catching up\n").into_response()
    } else if waiting.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("first reconcile not started yet: {}\n", waiting.join(", "))).into_response()
    }
}

async fn metrics(State(svc): State<Arc<Service>>) -> Response {
    let mut text = svc.metrics.render();
    text.push_str(&lease_metrics(&svc));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// The lease gauges of this replica.
fn lease_metrics(svc: &Service) -> String {
    let health = svc.leases.health();
    let replica = svc.leases.replica.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "# HELP novacron_reconcile_leases_held Repositories this replica holds the lease of.\n# TYPE novacron_reconcile_leases_held gauge\nnovacron_reconcile_leases_held{{replica=\"{replica}\"}} {}\n\
         # HELP novacron_reconcile_lease_renewal_ok 1 while this replica renews its leases, 0 while it cannot.\n# TYPE novacron_reconcile_lease_renewal_ok gauge\nnovacron_reconcile_lease_renewal_ok{{replica=\"{replica}\"}} {}\n\
         # HELP novacron_reconcile_replicas_alive Replicas alive at the last renewal.\n# TYPE novacron_reconcile_replicas_alive gauge\nnovacron_reconcile_replicas_alive {}\n",
        health.held,
        u8::from(svc.leases.healthy()),
        health.replicas_alive
    )
}

/// The JSON of `/api/status`: every repository, with the replica that holds it. A repository
/// another replica holds shows where that replica left it (from the state database).
pub fn status_json(svc: &Service) -> Value {
    let mut stored: Option<std::collections::HashMap<String, crate::state::StoredRepo>> = None;
    let repos: Vec<Value> = svc
        .repos
        .iter()
        .map(|r| {
            let c = &r.config;
            let mut s = r.status();
            let here = svc.leases.holds(r.name());
            if !here {
                let positions = stored.get_or_insert_with(|| crate::state::stored_repos(&svc.db).unwrap_or_default());
                if let Some(p) = positions.get(r.name()) {
                    s.revision.clone_from(&p.revision);
                    s.last_run.clone_from(&p.last_run);
                    s.last_error.clone_from(&p.last_error);
                    s.summary = p.summary.as_deref().and_then(|x| serde_json::from_str(x).ok());
                    s.running = false;
                }
            }
            json!({
                "name": r.name(),
                "url": crate::git::redact(&c.url),
                "ref": c.reference,
                "path": c.path,
                "interval_secs": c.interval.as_secs_f64(),
                "auto_sync_max": format!("{:?}", c.auto_sync_max).to_ascii_lowercase(),
                "webhook": r.secret.is_some(),
                "holder": svc.leases.holder(r.name()),
                "held_here": here,
                "lease_token": svc.leases.token(r.name()),
                "revision": s.revision,
                "last_run": s.last_run,
                "last_error": s.last_error,
                "last_trigger": s.last_trigger,
                "last_duration_ms": s.last_duration_ms,
                "running": s.running,
                "runs": s.runs,
                "consecutive_errors": s.consecutive_errors,
                "summary": s.summary,
                "drift_by_severity": s.summary.as_ref().map(|x| &x.by_severity),
                "pending_approvals": s.pending_approvals,
            })
        })
        .collect();
    let replicas = crate::state::replicas(&svc.db).unwrap_or_default();
    let holders: Vec<Option<String>> = svc.repos.iter().map(|r| svc.leases.holder(r.name())).collect();
    let replicas: Vec<Value> = replicas
        .iter()
        .map(|p| {
            let held = holders.iter().filter(|h| h.as_deref() == Some(p.id.as_str())).count();
            json!({"id": p.id, "address": p.address, "started_at": p.started_at, "alive": p.alive, "leases": held})
        })
        .collect();
    json!({
        "repos": repos,
        "state": svc.state_location,
        "replica": svc.leases.replica,
        "leases": svc.leases.health(),
        "replicas": replicas,
        "event_feed": { "following": svc.feed_following.load(Ordering::Relaxed) },
    })
}

async fn status(State(svc): State<Arc<Service>>) -> Response {
    answer(StatusCode::OK, status_json(&svc))
}

async fn approve(State(svc): State<Arc<Service>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let Some(token) = svc.admin_token.as_deref() else {
        return answer(StatusCode::UNAUTHORIZED, json!({"error": format!("approvals over HTTP are disabled: set {} to enable them", super::ADMIN_TOKEN_ENV)}));
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    if !constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
        return answer(StatusCode::UNAUTHORIZED, json!({"error": "missing or wrong bearer token"}));
    }
    if id.starts_with("plan-") {
        return match crate::state::approve_plan(&svc.db, &id, super::scheduler::ACTOR_HTTP) {
            Ok(Some(plan)) => {
                tracing::info!(approval = %id, revision = %plan.revision, "plan approved over HTTP; applying it at the next sync, which starts now");
                for repo in svc.repos.iter().filter(|r| r.state_key() == plan.repo) {
                    super::scheduler::refresh_approvals(&svc, repo);
                    super::lease::wake(&svc, repo, "approval");
                }
                answer(StatusCode::OK, json!({"approved": plan}))
            }
            Ok(None) => answer(StatusCode::NOT_FOUND, json!({"error": format!("no pending plan has id {id:?}; see /api/status")})),
            Err(e) => {
                tracing::error!(approval = %id, error = %e, "approval failed");
                answer(StatusCode::SERVICE_UNAVAILABLE, json!({"error": e.to_string()}))
            }
        };
    }
    match crate::state::approve(&svc.db, &id, super::scheduler::ACTOR_HTTP) {
        Ok(drift) => {
            tracing::info!(approval = %id, address = %drift.address, "approved over HTTP; reverting at the next sync, which starts now");
            for repo in svc.repos.iter().filter(|r| r.state_key() == drift.repo) {
                super::scheduler::refresh_approvals(&svc, repo);
                super::lease::wake(&svc, repo, "approval");
            }
            answer(StatusCode::OK, json!({"approved": drift}))
        }
        Err(e @ crate::state::ApprovalError::UnknownId { .. }) => answer(StatusCode::NOT_FOUND, json!({"error": e.to_string()})),
        Err(e) => {
            tracing::error!(approval = %id, error = %e, "approval failed");
            answer(StatusCode::SERVICE_UNAVAILABLE, json!({"error": e.to_string()}))
        }
    }
}

/// What a webhook delivery led to, as counted in metrics and answered.
fn hook_answer(svc: &Service, outcome: &'static str, code: StatusCode, body: Value) -> Response {
    svc.metrics.record_webhook(outcome);
    tracing::info!(outcome, status = code.as_u16(), "webhook delivery");
    answer(code, body)
}

async fn github_hook(State(svc): State<Arc<Service>>, headers: HeaderMap, body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the webhook body is larger than {} MiB, the most GitHub sends; nothing was triggered", WEBHOOK_BODY_LIMIT / (1024 * 1024))
            } else {
                format!("the webhook body could not be read: {}", rejection.body_text())
            };
            tracing::warn!(status = status.as_u16(), "webhook refused: {error}");
            return hook_answer(&svc, if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "bad_body" }, status, json!({"error": error}));
        }
    };
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let Some(signature) = text("x-hub-signature-256") else {
        return hook_answer(&svc, "bad_signature", StatusCode::UNAUTHORIZED, json!({"error": "missing X-Hub-Signature-256"}));
    };
    // The payload is read before it is verified only to pick whose secret to check it with;
    // nothing acts on it until a secret verifies it.
    let payload: PushPayload = serde_json::from_slice(&body).unwrap_or_default();
    let candidates: Vec<_> = svc.repos.iter().filter(|r| payload.names_repo(&r.config.url)).collect();
    let verifies = |r: &&&Arc<super::repo::RepoHandle>| r.secret.as_deref().is_some_and(|s| verify_signature(s, &body, signature));
    if candidates.is_empty() {
        let signed = svc.repos.iter().collect::<Vec<_>>();
        if !signed.iter().any(|r| verifies(&r)) {
            return hook_answer(&svc, "bad_signature", StatusCode::UNAUTHORIZED, json!({"error": "the signature matches no configured webhook secret"}));
        }
        return hook_answer(&svc, "unmatched", StatusCode::ACCEPTED, json!({"triggered": [], "message": "no configured repository matches this payload"}));
    }
    if candidates.iter().all(|r| r.secret.is_none()) {
        let names: Vec<&str> = candidates.iter().map(|r| r.name()).collect();
        return hook_answer(
            &svc,
            "no_secret",
            StatusCode::UNAUTHORIZED,
            json!({"error": format!("no webhook secret is configured for {}: webhooks cannot trigger it (set webhook_secret_env)", names.join(", "))}),
        );
    }
    let verified: Vec<_> = candidates.iter().filter(verifies).collect();
    if verified.is_empty() {
        return hook_answer(&svc, "bad_signature", StatusCode::UNAUTHORIZED, json!({"error": "bad X-Hub-Signature-256"}));
    }
    let Some(delivery) = text("x-github-delivery") else {
        return hook_answer(&svc, "no_delivery_id", StatusCode::BAD_REQUEST, json!({"error": "missing X-GitHub-Delivery"}));
    };
    match crate::state::remember_delivery(&svc.db, delivery) {
        Ok(true) => {}
        Ok(false) => {
            return hook_answer(
                &svc,
                "replayed",
                StatusCode::CONFLICT,
                json!({"error": format!("delivery {delivery} was already received; nothing triggered")}),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record a webhook delivery");
            return hook_answer(&svc, "error", StatusCode::SERVICE_UNAVAILABLE, json!({"error": "the state database failed; retry the delivery"}));
        }
    }
    match text("x-github-event") {
        Some("ping") => return hook_answer(&svc, "ping", StatusCode::OK, json!({"message": "pong"})),
        Some("pull_request") => return pull_request_hook(&svc, &verified, &body),
        Some("issue_comment") => return issue_comment_hook(&svc, &verified, &body),
        None | Some("push") => {}
        Some(other) => {
            return hook_answer(
                &svc,
                "ignored",
                StatusCode::ACCEPTED,
                json!({"triggered": [], "message": format!("{other} events are acknowledged and ignored")}),
            );
        }
    }
    let targets: Vec<&str> = verified.iter().filter(|r| payload.updates_ref(r.config.reference.as_deref())).map(|r| r.name()).collect();
    if targets.is_empty() {
        return hook_answer(
            &svc,
            "other_ref",
            StatusCode::ACCEPTED,
            json!({"triggered": [], "message": "the push is to a ref no configured repository follows"}),
        );
    }
    for name in &targets {
        if let Some(repo) = svc.repo(name) {
            super::lease::wake(&svc, repo, "webhook");
        }
    }
    hook_answer(&svc, "triggered", StatusCode::ACCEPTED, json!({"triggered": targets}))
}

/// A `pull_request` delivery: `opened`, `synchronize` and `reopened` queue a review of the head
/// for every verified repository that reviews pull requests into the branch it follows.
fn pull_request_hook(svc: &Arc<Service>, verified: &[&&Arc<super::repo::RepoHandle>], body: &[u8]) -> Response {
    let payload: PullRequestPayload = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return hook_answer(svc, "bad_payload", StatusCode::BAD_REQUEST, json!({"error": format!("the pull_request payload does not parse: {e}")})),
    };
    let reviewing: Vec<&&Arc<super::repo::RepoHandle>> =
        verified.iter().copied().filter(|r| r.config.review_pull_requests && payload.targets(r.config.reference.as_deref())).collect();
    if reviewing.is_empty() {
        return hook_answer(
            svc,
            "other_ref",
            StatusCode::ACCEPTED,
            json!({"reviewing": [], "message": "no configured repository reviews pull requests into this branch (review_pull_requests, ref)"}),
        );
    }
    if payload.action == "closed" {
        for r in &reviewing {
            let key = crate::sync::review_key(&r.config.url, &r.config.path, Some(payload.number));
            let dir = svc.runner_settings.cache_dir.join(r.name()).join("rollout").join("work").join(key);
            let _ = std::fs::remove_dir_all(dir);
        }
        return hook_answer(svc, "ignored", StatusCode::ACCEPTED, json!({"reviewing": [], "message": "closed: its working copy is removed"}));
    }
    if !matches!(payload.action.as_str(), "opened" | "synchronize" | "reopened") {
        return hook_answer(
            svc,
            "ignored",
            StatusCode::ACCEPTED,
            json!({"reviewing": [], "message": format!("pull_request action {:?} is acknowledged and ignored", payload.action)}),
        );
    }
    let head = &payload.pull_request.head;
    if payload.number == 0 || head.sha.len() < 7 || !head.sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return hook_answer(svc, "bad_payload", StatusCode::BAD_REQUEST, json!({"error": "the pull_request payload has no number or head sha"}));
    }
    let job = ReviewJob {
        number: payload.number,
        head_sha: head.sha.clone(),
        base: payload.pull_request.base.reference.clone(),
        fork: payload.from_fork(),
        head_repo: head.repo.as_ref().and_then(|r| r.full_name.clone()),
    };
    let names: Vec<&str> = reviewing.iter().map(|r| r.name()).collect();
    for r in &reviewing {
        super::lease::review(svc, r, job.clone());
    }
    hook_answer(svc, "review", StatusCode::ACCEPTED, json!({"reviewing": names, "pull_request": payload.number, "head": head.sha}))
}

/// An `issue_comment` delivery: a new `/novacron approve <id>` on a pull request.
fn issue_comment_hook(svc: &Arc<Service>, verified: &[&&Arc<super::repo::RepoHandle>], body: &[u8]) -> Response {
    let payload: IssueCommentPayload = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return hook_answer(svc, "bad_payload", StatusCode::BAD_REQUEST, json!({"error": format!("the issue_comment payload does not parse: {e}")})),
    };
    let command = approve_command(&payload.comment.body);
    let (Some(id), true, true) = (command, payload.action == "created", payload.issue.pull_request.is_some()) else {
        return hook_answer(svc, "ignored", StatusCode::ACCEPTED, json!({"approving": [], "message": "not a new /novacron approve comment on a pull request"}));
    };
    let login = payload.comment.user.login.clone();
    if login.is_empty() {
        return hook_answer(svc, "bad_payload", StatusCode::BAD_REQUEST, json!({"error": "the comment has no author login"}));
    }
    let targets: Vec<&&Arc<super::repo::RepoHandle>> = verified.iter().copied().filter(|r| r.config.review_pull_requests && r.forge.is_some()).collect();
    let names: Vec<&str> = targets.iter().map(|r| r.name()).collect();
    for r in targets {
        tokio::spawn(super::review::approve_from_comment(svc.clone(), (*r).clone(), payload.issue.number, login.clone(), id.to_string()));
    }
    hook_answer(svc, "approval", StatusCode::ACCEPTED, json!({"approving": names, "id": id}))
}
