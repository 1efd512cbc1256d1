//! The read-only JSON API: tasks, stored events and refused callbacks.
//!
//! Times are given twice: `*_at` in RFC 3339 for people, `*_at_ms` in
//! milliseconds since the epoch for programs. Lists of events and refusals
//! are newest first and paginated with an opaque `cursor` taken from the
//! previous page's `next_cursor` (`null` on the last page). A query
//! parameter the route does not know is refused, so that a misspelt filter
//! is not silently ignored.

mod events;
mod rejected;
mod tasks;

use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub(crate) use events::{event, event_raw, events};
pub(crate) use rejected::{rejected, rejected_one, rejected_raw};
pub(crate) use tasks::{task, tasks};

use super::AppState;
use crate::error::ApiError;
use crate::store::StoreError;

/// Page size when none is asked for.
const DEFAULT_LIMIT: usize = 100;
/// Largest page served.
const MAX_LIMIT: usize = 1000;

/// Middleware: when `--api-token` is set, every API route needs
/// `Authorization: Bearer <token>`.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = &state.config.api_token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = given.is_some_and(|g| crate::routes::same_secret(g, expected));
        if !ok {
            let message = if given.is_none() {
                "API token missing: send Authorization: Bearer <token>"
            } else {
                "API token mismatch"
            };
            return ApiError::unauthorized(message).into_response();
        }
    }
    next.run(request).await
}

pub(super) fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    serde_urlencoded::from_str(uri.query().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(query_error(&e.to_string())))
}

/// The parameters of a route that takes none but the path.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoParams {}

/// What the query-string decoder said, in the words of a query string:
/// parameters, not fields.
fn query_error(said: &str) -> String {
    let said = said.replacen("there are no fields", "this route takes none", 1);
    if let Some(rest) = said.strip_prefix("unknown field ") {
        format!("unknown parameter {rest}")
    } else if let Some(name) = said.strip_prefix("duplicate field ") {
        format!("parameter {name} given more than once")
    } else {
        format!("query string: {said}")
    }
}

pub(super) fn store_failed(error: &StoreError) -> ApiError {
    tracing::error!(%error, "store read failed");
    ApiError::internal()
}

/// RFC 3339 with milliseconds, UTC.
pub(super) fn rfc3339(ms: i64) -> Option<String> {
    let ms = u64::try_from(ms).ok()?;
    let time = UNIX_EPOCH.checked_add(Duration::from_millis(ms))?;
    Some(humantime::format_rfc3339_millis(time).to_string())
}

pub(super) fn limit(asked: Option<&str>) -> Result<usize, ApiError> {
    match asked.filter(|t| !t.is_empty()) {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}, found {text:?}"
                ))
            }),
    }
}

/// Cuts a list read one longer than `page` back to the page; the cursor of
/// the next page when there was more, else `None`, so that the last page
/// says it is the last even when it is full.
pub(super) fn next_cursor<T>(
    rows: &mut Vec<T>,
    page: usize,
    id: impl Fn(&T) -> i64,
) -> Option<String> {
    if rows.len() <= page {
        return None;
    }
    rows.truncate(page);
    rows.last().map(|r| id(r).to_string())
}

pub(super) fn cursor(text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid cursor {t:?}")))
        })
        .transpose()
}

/// The raw body in JSON: as text when it is UTF-8, else as hex.
pub(super) fn raw_fields(view: &mut Value, raw: &[u8]) {
    match std::str::from_utf8(raw) {
        Ok(text) => {
            view["raw"] = json!(text);
            view["raw_hex"] = Value::Null;
        }
        Err(_) => {
            view["raw"] = Value::Null;
            view["raw_hex"] = json!(hex::encode(raw));
        }
    }
}

pub(super) fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("expected a numeric id, found {text:?}")))
}

pub(super) fn raw_response(raw: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        raw,
    )
        .into_response()
}
