//! `GET /api/events`, `/api/events/{id}` and `/api/events/{id}/raw`: the
//! stored callbacks, newest first.

use std::time::UNIX_EPOCH;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use serde_json::{Value, json};

use super::{cursor, limit, parse_id, query, raw_fields, raw_response, rfc3339, store_failed};
use crate::error::ApiError;
use crate::routes::AppState;
use crate::store::{EventQuery, EventRow};

pub(super) fn event_view(row: &EventRow) -> Value {
    let mut view = serde_json::to_value(row).expect("rows serialise");
    view["received_at"] = json!(rfc3339(row.received_at_ms));
    view["last_received_at"] = json!(rfc3339(row.last_received_at_ms));
    view["occurred_at"] = json!(row.occurred_at_ms.and_then(rfc3339));
    view
}

#[derive(serde::Deserialize)]
struct EventsParams {
    task_id: Option<String>,
    event: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn since_ms(text: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "since must be milliseconds since the epoch or an RFC 3339 time, found {text:?}"
            ))
        })
}

/// `GET /api/events?task_id=&event=&since=&limit=&cursor=`
pub(crate) async fn events(
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let params: EventsParams = query(&uri)?;
    let q = EventQuery {
        task_id: params.task_id.filter(|s| !s.is_empty()),
        event: params.event.filter(|s| !s.is_empty()),
        since_ms: params
            .since
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(since_ms)
            .transpose()?,
        before_id: cursor(params.cursor.as_deref())?,
        limit: limit(params.limit)?,
    };
    let page = q.limit;
    let rows = state
        .store
        .read(move |r| r.events(&q))
        .await
        .map_err(|e| store_failed(&e))?;
    let next_cursor = (rows.len() == page)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let events: Vec<Value> = rows.into_iter().map(|r| event_view(&r)).collect();
    Ok(Json(
        json!({ "events": events, "next_cursor": next_cursor }),
    ))
}

async fn load_event(state: &AppState, id: &str) -> Result<EventRow, ApiError> {
    let id = parse_id(id)?;
    state
        .store
        .read(move |r| r.event(id))
        .await
        .map_err(|e| store_failed(&e))?
        .ok_or_else(|| ApiError::not_found(format!("no event {id}")))
}

/// `GET /api/events/{id}`: the event with its raw body.
pub(crate) async fn event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut row = load_event(&state, &id).await?;
    let raw = row.raw.take().unwrap_or_default();
    let mut view = event_view(&row);
    raw_fields(&mut view, &raw);
    Ok(Json(view))
}

/// `GET /api/events/{id}/raw`: the body byte for byte.
pub(crate) async fn event_raw(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = load_event(&state, &id).await?;
    Ok(raw_response(row.raw.unwrap_or_default()))
}
