//! The HTTP surface: routes, and the middleware that authenticates, rate-limits, injects
//! chaos and measures every request.

mod events;
mod objects;
mod ops;
mod tfstate;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use crate::app::App;
use crate::auth::{ApiKey, Scope, authenticate, presented_key, required_scope};
use crate::problem::ApiError;

/// The authenticated caller: the NAME of the API key used.
#[derive(Clone, Debug)]
pub struct Actor(pub String);

/// Builds the router for a platform.
pub fn router(app: Arc<App>) -> Router {
    let v1 = Router::new()
        .route("/v1/events", get(events::poll))
        .route("/v1/tfstate/{workspace}", any(tfstate::dispatch))
        .route("/v1/tfstate/{workspace}/lock", get(tfstate::read_lock))
        .route("/v1/tfstate/{workspace}/versions", get(tfstate::list_versions))
        .route("/v1/{kind}", get(objects::list).post(objects::create))
        .route("/v1/{kind}/{id}", get(objects::read).patch(objects::update).delete(objects::remove))
        .route_layer(middleware::from_fn_with_state(app.clone(), guard));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(v1)
        .fallback(|| async { ApiError::NotFound { detail: "no such route; the API lives under /v1".into() } })
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// Authentication, then the rate limit, then the key's scopes, then chaos: for every `/v1`
/// call. The Terraform state routes also take the key as the basic-auth password, which is all
/// Terraform's http backend sends. The scope check comes after the rate limit, so refused calls
/// are limited like any other (each one is recorded).
async fn guard(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let basic = req.uri().path().starts_with("/v1/tfstate/");
    let token = presented_key(req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()), basic).unwrap_or_default();
    let Some(key) = authenticate(&app.config.api_keys, &token) else {
        return ApiError::Unauthorized { basic }.into_response();
    };
    req.extensions_mut().insert(Actor(key.name.clone()));
    if let Some(limiter) = &app.limiter
        && let Err(retry_after_secs) = limiter.try_acquire()
    {
        return ApiError::RateLimited { retry_after_secs }.into_response();
    }
    let method = req.method().as_str().to_string();
    let dry_run = matches!(objects::dry_run_flag(req.uri().query()), Ok(true));
    let needed = required_scope(&method, req.uri().path(), dry_run);
    if !key.scopes.contains(needed) {
        record_denial(&app, key, needed, &method, req.uri().path());
        return ApiError::MissingScope { key: key.name.clone(), missing: needed, has: key.scopes }.into_response();
    }
    if !app.chaos.latency.is_zero() {
        tokio::time::sleep(app.chaos.latency).await;
    }
    if app.chaos.should_fail() {
        return ApiError::Unavailable { detail: "injected failure (--chaos-error-rate); the request was not applied, retry it".into() }.into_response();
    }
    next.run(req).await
}

/// Longest request path kept in a denial's event detail.
const MAX_DENIED_PATH: usize = 200;

/// Records a call refused for a missing scope: a warning in the log, the
/// `novacron_auth_denied_total` counter, and a `denied` event of kind `auth` in the change
/// feed. Terraform's http backend shows only "invalid auth" for a 403, so this record is where
/// the detail is found. The kind `auth` names no object: feed consumers skip it, and the
/// reconciler's `changed_by` (which looks only at create/update/delete) never picks it up.
fn record_denial(app: &App, key: &ApiKey, needed: Scope, method: &str, path: &str) {
    let mut shown: String = path.chars().take(MAX_DENIED_PATH).collect();
    if shown.len() < path.len() {
        shown.push_str("...");
    }
    tracing::warn!(key = %key.name, method, path = %shown, missing = needed.as_str(), has = %key.scopes, "refused: the API key lacks the scope");
    app.metrics.record_denied(&key.name, needed.as_str());
    let detail = format!("{method} {shown} needs the scope {needed}; the key has {}", key.scopes);
    let recorded = app.store.write(|tx| crate::store::q::append_event(tx, &key.name, "denied", "auth", &key.name, &key.name, Some(&detail)));
    match recorded {
        Ok(_) => app.notify(),
        Err(e) => tracing::error!(error = %e, key = %key.name, "cannot record a refused call in the event feed"),
    }
}

/// Route label for metrics: the matched pattern with the collection filled in, so
/// `/v1/vms/{id}` and `/v1/networks/{id}` are told apart without one series per id.
fn route_label(req: &Request) -> String {
    let Some(pattern) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()) else {
        return "unmatched".to_string();
    };
    if pattern.contains("{kind}") {
        let kind = req.uri().path().split('/').nth(2).unwrap_or_default();
        if novacron_schemas::Kind::from_collection(kind).is_some() {
            return pattern.replace("{kind}", kind);
        }
    }
    pattern
}

async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = route_label(&req);
    // Logged so a dry run is never mistaken for a write; the body is never logged.
    let dry_run = matches!(method, axum::http::Method::POST | axum::http::Method::PATCH)
        && route.starts_with("/v1/")
        && !route.starts_with("/v1/tfstate")
        && matches!(objects::dry_run_flag(req.uri().query()), Ok(true));
    let response = next.run(req).await;
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    app.metrics.observe(method.as_str(), &route, status, elapsed.as_secs_f64());
    let ms = elapsed.as_secs_f64() * 1000.0;
    if method == axum::http::Method::GET {
        tracing::debug!(%method, %route, status, ms, "request");
    } else {
        tracing::info!(%method, %route, status, ms, dry_run, "request");
    }
    response
}
