//! `GET /api/events`, `/api/events/{id}` and `/api/events/{id}/raw`: the
//! stored callbacks, newest first.

use std::time::UNIX_EPOCH;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use serde_json::{Value, json};

use super::{
    NoParams, cursor, limit, next_cursor, parse_id, query, raw_fields, raw_response, rfc3339,
    store_failed,
};
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
#[serde(deny_unknown_fields)]
struct EventsParams {
    task_id: Option<String>,
    event: Option<String>,
    since: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn since_ms(text: &str) -> Result<i64, ApiError> {
    let now = now_ms();
    relaycb_core::parse_when(text, now).map_err(|e| ApiError::bad_request(format!("since: {e}")))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `GET /api/events?task_id=&event=&since=&limit=&cursor=`
pub(crate) async fn events(
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let params: EventsParams = query(&uri)?;
    let q = EventQuery {
        // As decoding takes a callback's `task_id`: white space around it
        // is no part of it.
        task_id: params
            .task_id
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
        event: params.event.filter(|s| !s.is_empty()),
        since_ms: params
            .since
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(since_ms)
            .transpose()?,
        before_id: cursor(params.cursor.as_deref())?,
        // One more than the page, to know whether another page follows.
        limit: limit(params.limit.as_deref())? + 1,
    };
    let page = q.limit - 1;
    let mut rows = state
        .store
        .read(move |r| r.events(&q))
        .await
        .map_err(|e| store_failed(&e))?;
    let next_cursor = next_cursor(&mut rows, page, |r| r.id);
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
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let _: NoParams = query(&uri)?;
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
    uri: Uri,
) -> Result<Response, ApiError> {
    let _: NoParams = query(&uri)?;
    let row = load_event(&state, &id).await?;
    Ok(raw_response(row.raw.unwrap_or_default()))
}
