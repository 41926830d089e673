//! `/v1/tfstate/{workspace}`: Terraform's `backend "http"` protocol (GET, POST, DELETE, LOCK, UNLOCK), the lock holder and the stored versions.
//!
//! Axum's method router knows no LOCK or UNLOCK, so the workspace route takes every method and
//! dispatches here. Terraform accepts only 200 for LOCK, UNLOCK and DELETE, so every success is
//! 200. A refusal because of a lock is a problem that also carries the holder's lock info
//! members (`ID`, `Who`, ...), which is what Terraform reads to name the holder.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Actor;
use super::objects::{bounded_body, parse_query};
use crate::app::App;
use crate::problem::{ApiError, problem_with_members};
use crate::tfstate::{self, LockInfo, MAX_LOCK_BYTES, MAX_STATE_BYTES, StateError, Unlocked};

/// The methods the workspace route answers.
const METHODS: &str = "GET, POST, DELETE, LOCK, UNLOCK";

fn checked(workspace: &str) -> Result<(), ApiError> {
    tfstate::validate_workspace(workspace).map_err(|m| ApiError::bad_param("workspace", m))
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

impl IntoResponse for StateError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        match self {
            StateError::Locked { holder, .. } => {
                let fix = format!("; wait for that run to finish, or if it is gone, run terraform force-unlock {}", holder.id());
                problem_with_members(StatusCode::LOCKED, "locked", format!("{detail}{fix}"), holder.members())
            }
            StateError::NotHolder { holder, .. } => problem_with_members(StatusCode::CONFLICT, "conflict", detail, holder.members()),
            StateError::LockGone { .. } => ApiError::Conflict { detail, errors: vec![] }.into_response(),
            StateError::NotState(message) => ApiError::bad_param("body", message).into_response(),
            StateError::Database(e) => ApiError::from(e).into_response(),
        }
    }
}

/// The `ID` query parameter (the lock a write is made under); any other parameter is refused.
fn lock_id(raw: Option<String>) -> Result<Option<String>, ApiError> {
    let mut id = None;
    for (key, value) in parse_query(raw) {
        match key.as_str() {
            "ID" if !value.is_empty() => id = Some(value),
            "ID" => {}
            other => return Err(ApiError::bad_param(other, format!("unknown query parameter {other:?}; the state endpoint takes only ID (the lock id)"))),
        }
    }
    Ok(id)
}

/// Every method on `/v1/tfstate/{workspace}`.
pub(super) async fn dispatch(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    Path(workspace): Path<String>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Result<Response, Response> {
    checked(&workspace).map_err(IntoResponse::into_response)?;
    let method = req.method().clone();
    let headers = req.headers().clone();
    let body = req.into_body();
    let app = app.as_ref();
    match method.as_str() {
        "GET" => {
            let state = app.store.read(|c| tfstate::current(c, &workspace)).map_err(|e| ApiError::from(e).into_response())?;
            match state {
                Some(bytes) => {
                    let mut resp = (StatusCode::OK, bytes).into_response();
                    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    Ok(resp)
                }
                None => Err(ApiError::NotFound {
                    detail: format!("no Terraform state is stored for workspace {workspace:?} yet; terraform apply with this backend stores one"),
                }
                .into_response()),
            }
        }
        "POST" => {
            let id = lock_id(raw).map_err(IntoResponse::into_response)?;
            let bytes = bounded_body(&headers, body, MAX_STATE_BYTES).await.map_err(IntoResponse::into_response)?;
            let version =
                tfstate::write(&app.store, &workspace, &actor.0, id.as_deref(), &bytes, app.config.state_retention).map_err(IntoResponse::into_response)?;
            app.notify();
            Ok(json_response(StatusCode::OK, json!(version).to_string()))
        }
        "DELETE" => {
            let id = lock_id(raw).map_err(IntoResponse::into_response)?;
            let deleted = tfstate::delete(&app.store, &workspace, &actor.0, id.as_deref()).map_err(IntoResponse::into_response)?;
            if deleted {
                app.notify();
            }
            Ok(json_response(StatusCode::OK, json!({ "workspace": workspace, "deleted": deleted }).to_string()))
        }
        "LOCK" => {
            let bytes = bounded_body(&headers, body, MAX_LOCK_BYTES).await.map_err(IntoResponse::into_response)?;
            let info = LockInfo::parse(&bytes).map_err(|(field, message)| ApiError::bad_param(field, message).into_response())?;
            tfstate::lock(&app.store, &workspace, &actor.0, &info).map_err(IntoResponse::into_response)?;
            Ok(json_response(StatusCode::OK, serde_json::Value::Object(info.members().clone()).to_string()))
        }
        "UNLOCK" => {
            let bytes = bounded_body(&headers, body, MAX_LOCK_BYTES).await.map_err(IntoResponse::into_response)?;
            let info = if bytes.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                Some(LockInfo::parse(&bytes).map_err(|(field, message)| ApiError::bad_param(field, message).into_response())?)
            };
            let unlocked = tfstate::unlock(&app.store, &workspace, &actor.0, info.as_ref()).map_err(IntoResponse::into_response)?;
            let outcome = match &unlocked {
                Unlocked::Released => json!({ "workspace": workspace, "unlocked": true }),
                Unlocked::NotLocked => json!({ "workspace": workspace, "unlocked": false }),
                Unlocked::Forced(held) => {
                    tracing::warn!(workspace = %workspace, actor = %actor.0, lock = held.id(), "Terraform state lock force-unlocked");
                    app.notify();
                    json!({ "workspace": workspace, "unlocked": true, "forced": held.members() })
                }
            };
            Ok(json_response(StatusCode::OK, outcome.to_string()))
        }
        _ => {
            let mut resp = ApiError::MethodNotAllowed { detail: format!("{method} is not part of the state protocol; use {METHODS}") }.into_response();
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(METHODS));
            Err(resp)
        }
    }
}

/// `GET /v1/tfstate/{workspace}/lock`: the holder's lock info, or 404 when nobody holds it.
pub(super) async fn read_lock(State(app): State<Arc<App>>, Path(workspace): Path<String>) -> Result<Response, ApiError> {
    checked(&workspace)?;
    match app.store.read(|c| tfstate::holder(c, &workspace))? {
        Some(info) => Ok(json_response(StatusCode::OK, serde_json::Value::Object(info.members().clone()).to_string())),
        None => Err(ApiError::NotFound { detail: format!("workspace {workspace:?} is not locked") }),
    }
}

/// `GET /v1/tfstate/{workspace}/versions`: the stored versions, newest first, without bodies.
pub(super) async fn list_versions(State(app): State<Arc<App>>, Path(workspace): Path<String>) -> Result<Response, ApiError> {
    checked(&workspace)?;
    let items = app.store.read(|c| tfstate::versions(c, &workspace))?;
    Ok(json_response(StatusCode::OK, json!({ "workspace": workspace, "items": items }).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_lock_id_is_a_query_parameter() {
        assert_eq!(lock_id(Some("ID=abc-1".into())).expect("valid"), Some("abc-1".to_string()));
        assert_eq!(lock_id(None).expect("valid"), None);
        assert_eq!(lock_id(Some("ID=".into())).expect("valid"), None);
        assert!(lock_id(Some("id=x".into())).is_err(), "the name is case-sensitive, as Terraform sends it");
    }
}
