//! `GET /v1/events`: the long-poll change feed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use serde_json::json;
use tokio::time::Instant;

use crate::app::App;
use crate::problem::ApiError;
use crate::store::q;

pub(super) async fn poll(State(app): State<Arc<App>>, Query(params): Query<HashMap<String, String>>) -> Result<Json<serde_json::Value>, ApiError> {
    for key in params.keys() {
        if !["after", "wait", "limit"].contains(&key.as_str()) {
            return Err(ApiError::bad_param(key, format!("unknown query parameter {key:?}; use after, wait or limit")));
        }
    }
    let after: i64 = match params.get("after") {
        None => 0,
        Some(s) => {
            s.parse().ok().filter(|n| *n >= 0).ok_or_else(|| ApiError::bad_param("after", format!("after must be a sequence number >= 0, not {s:?}")))?
        }
    };
    let wait = match params.get("wait") {
        None => Duration::ZERO,
        Some(s) => s
            .parse::<f64>()
            .ok()
            .filter(|w| (0.0..=App::MAX_WAIT.as_secs_f64()).contains(w))
            .map(Duration::from_secs_f64)
            .ok_or_else(|| ApiError::bad_param("wait", format!("wait must be seconds between 0 and {}, not {s:?}", App::MAX_WAIT.as_secs())))?,
    };
    let limit: usize = match params.get("limit") {
        None => 500,
        Some(s) => {
            s.parse().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| ApiError::bad_param("limit", format!("limit must be 1 to 1000, not {s:?}")))?
        }
    };
    let deadline = Instant::now() + wait;
    let mut changes = app.events.subscribe();
    let mut stopping = app.shutting_down.subscribe();
    loop {
        changes.mark_unchanged();
        let events = app.store.read(|c| q::events_after(c, after, limit))?;
        if !events.is_empty() || Instant::now() >= deadline || *stopping.borrow() {
            let next = events.last().map_or(after, |e| i64::try_from(e.seq).unwrap_or(after));
            return Ok(Json(json!({ "events": events, "next": next })));
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = stopping.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}
