//! The HTTP surface: the callback endpoint, the read-only JSON API, and the
//! operational routes (health, readiness, metrics).

mod api;
mod callback;
mod health;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Shared;
use crate::error::ApiError;

/// The state every handler receives.
pub(crate) type AppState = Arc<Shared>;

pub(crate) fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/tasks", get(api::tasks))
        .route("/api/tasks/{task_id}", get(api::task))
        .route("/api/events", get(api::events))
        .route("/api/events/{id}", get(api::event))
        .route("/api/events/{id}/raw", get(api::event_raw))
        .route("/api/rejected", get(api::rejected))
        .route("/api/rejected/{id}", get(api::rejected_one))
        .route("/api/rejected/{id}/raw", get(api::rejected_raw))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::require_token,
        ));
    Router::new()
        .route(&state.config.callback_path, post(callback::receive))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Outermost, so that every answer, refusals included, is in a span.
        .layer(axum::middleware::from_fn(crate::telemetry::request_span))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

/// Whether `given` is the secret `expected`, in time that depends on
/// neither: both are hashed first, so the comparison always runs over 32
/// bytes whatever their lengths, then compared in constant time.
pub(crate) fn same_secret(given: &str, expected: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    bool::from(given.as_slice().ct_eq(expected.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_match_only_when_equal_whatever_their_length() {
        assert!(same_secret("s3cret", "s3cret"));
        for other in [
            "",
            "s",
            "s3cre",
            "s3cret ",
            "s3cret-and-more",
            "S3CRET",
            "t3cret",
        ] {
            assert!(!same_secret(other, "s3cret"), "{other:?}");
        }
    }
}
