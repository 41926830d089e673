//! Liveness, readiness and Prometheus metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::metrics::Gauge;
use crate::store::q;

pub(super) async fn healthz() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], r#"{"status":"ok"}"#).into_response()
}

pub(super) async fn readyz(State(app): State<Arc<App>>) -> Response {
    let db_ok = app.store.read(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))).is_ok();
    if db_ok && !*app.shutting_down.borrow() {
        ([(header::CONTENT_TYPE, "application/json")], r#"{"status":"ready"}"#).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, "application/json")], r#"{"status":"not ready"}"#).into_response()
    }
}

pub(super) async fn metrics(State(app): State<Arc<App>>) -> Response {
    let counts = app.store.read(q::counts).unwrap_or_default();
    let mut gauges: Vec<Gauge> = counts
        .into_iter()
        .map(|(k, n)| Gauge { name: "novacron_objects", help: "Objects stored, by kind.", labels: vec![("kind", k)], value: n as f64 })
        .collect();
    gauges.push(Gauge { name: "novacron_events_last_seq", help: "Sequence number of the newest event.", labels: vec![], value: *app.events.borrow() as f64 });
    let text = app.metrics.render(&gauges);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
