//! Operational routes: `/healthz` (the process answers), `/readyz` (the
//! store takes writes) and `/metrics` (Prometheus).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::AppState;
use crate::error::ApiError;
use crate::store::writer::now_ms;
use crate::telemetry::metrics::CONTENT_TYPE;

/// How long readiness waits for the writer's probe commit.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when a small write commits through the writer in time: the store
/// is writable and the writer is not stuck.
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, state.store.probe()).await {
        Ok(Ok(())) => Ok(Json(json!({ "status": "ready" }))),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness probe failed");
            Err(ApiError::unavailable("the store cannot be written"))
        }
        Err(_) => {
            tracing::warn!("readiness probe timed out");
            Err(ApiError::unavailable("the store did not answer in time"))
        }
    }
}

pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(error) = state.refresh_tasks().await {
        // The figures are still worth serving; they are only behind.
        tracing::warn!(%error, "task state could not catch up with the store");
    }
    if state.config.db.is_shared() {
        // Any server sharing the store takes published events out of its
        // outbox, so what this one queued and removed says nothing of
        // what is left: ask the store.
        match state.store.read(|reader| reader.outbox_len()).await {
            Ok(pending) => state.metrics.outbox_pending(pending),
            Err(error) => tracing::warn!(%error, "cannot count the outbox for the metrics"),
        }
    }
    let tasks = state.board.tasks(now_ms());
    let text = state
        .metrics
        .render(&tasks, state.board.unattributed_total());
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}
