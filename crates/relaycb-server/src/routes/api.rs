//! The read-only JSON API: tasks, stored events and refused callbacks.
//!
//! Times are given twice: `*_at` in RFC 3339 for people, `*_at_ms` in
//! milliseconds since the epoch for programs. Lists of events and refusals
//! are newest first and paginated with an opaque `cursor` taken from the
//! previous page's `next_cursor` (`null` on the last page).

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use relaycb_core::lifecycle::Phase;
use relaycb_core::lifecycle::{Anomaly, CurrentFile, LastExit};
use relaycb_core::{Explanation, TaskState};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::error::ApiError;
use crate::store::writer::now_ms;
use crate::store::{EventQuery, EventRow, RejectedRow, StoreError};

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
        let ok = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(expected.as_bytes())));
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

fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))
}

fn store_failed(error: &StoreError) -> ApiError {
    tracing::error!(%error, "store read failed");
    ApiError::internal()
}

/// RFC 3339 with milliseconds, UTC.
fn rfc3339(ms: i64) -> Option<String> {
    let ms = u64::try_from(ms).ok()?;
    let time = UNIX_EPOCH.checked_add(Duration::from_millis(ms))?;
    Some(humantime::format_rfc3339_millis(time).to_string())
}

fn limit(asked: Option<usize>) -> Result<usize, ApiError> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}, found {n}"
        ))),
    }
}

fn cursor(text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid cursor {t:?}")))
        })
        .transpose()
}

// ---- tasks -----------------------------------------------------------------

#[derive(Serialize)]
struct TaskView {
    task_id: String,
    stream_id: Option<String>,
    to_url: Option<String>,
    source_urls: Vec<String>,
    phase: Phase,
    current_file: Option<CurrentFileView>,
    starts: u64,
    restarts: u64,
    files_started: u64,
    files_finished: u64,
    loops: u64,
    alarms: BTreeMap<String, u64>,
    exits: BTreeMap<String, u64>,
    last_exit: Option<LastExitView>,
    config_resets: u64,
    unknown_events: u64,
    anomalies: Vec<AnomalyView>,
    /// Distinct events folded (`events` in the detail view is the timeline).
    event_count: u64,
    duplicates: u64,
    first_event_at: Option<String>,
    first_event_at_ms: Option<i64>,
    last_event_at: Option<String>,
    last_event_at_ms: Option<i64>,
}

#[derive(Serialize)]
struct CurrentFileView {
    index: Option<u32>,
    url: Option<String>,
    duration: Option<u64>,
    started_at: Option<String>,
    started_at_ms: i64,
    expected_end_at: Option<String>,
    expected_end_ms: Option<i64>,
    event: u64,
}

#[derive(Serialize)]
struct LastExitView {
    code: Option<i64>,
    message: Option<String>,
    explanation: Option<Explanation>,
    at: Option<String>,
    at_ms: i64,
    event: u64,
}

#[derive(Serialize)]
struct AnomalyView {
    kind: &'static str,
    count: u64,
    detail: String,
    at: Option<String>,
    at_ms: i64,
    events: Vec<u64>,
}

impl From<TaskState> for TaskView {
    fn from(t: TaskState) -> Self {
        TaskView {
            current_file: t.current_file.map(|f: CurrentFile| CurrentFileView {
                index: f.index,
                url: f.url,
                duration: f.duration,
                started_at: rfc3339(f.started_at_ms),
                started_at_ms: f.started_at_ms,
                expected_end_at: f.expected_end_ms.and_then(rfc3339),
                expected_end_ms: f.expected_end_ms,
                event: f.event,
            }),
            last_exit: t.last_exit.map(|e: LastExit| LastExitView {
                code: e.code,
                message: e.message,
                explanation: e.explanation,
                at: rfc3339(e.at_ms),
                at_ms: e.at_ms,
                event: e.event,
            }),
            anomalies: t
                .anomalies
                .into_iter()
                .map(|a: Anomaly| AnomalyView {
                    kind: a.kind.as_str(),
                    count: a.count,
                    detail: a.detail,
                    at: rfc3339(a.at_ms),
                    at_ms: a.at_ms,
                    events: a.events,
                })
                .collect(),
            first_event_at: t.first_event_at_ms.and_then(rfc3339),
            last_event_at: t.last_event_at_ms.and_then(rfc3339),
            task_id: t.task_id,
            stream_id: t.stream_id,
            to_url: t.to_url,
            source_urls: t.source_urls,
            phase: t.phase,
            starts: t.starts,
            restarts: t.restarts,
            files_started: t.files_started,
            files_finished: t.files_finished,
            loops: t.loops,
            alarms: t.alarms,
            exits: t.exits,
            config_resets: t.config_resets,
            unknown_events: t.unknown_events,
            event_count: t.events,
            duplicates: t.duplicates,
            first_event_at_ms: t.first_event_at_ms,
            last_event_at_ms: t.last_event_at_ms,
        }
    }
}

#[derive(serde::Deserialize)]
struct TasksParams {
    phase: Option<String>,
    has_anomalies: Option<bool>,
}

/// `GET /api/tasks?phase=&has_anomalies=`: every task, ordered by task id,
/// and the latest events that could not be attributed to any task.
pub(crate) async fn tasks(
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let params: TasksParams = query(&uri)?;
    let phase = params
        .phase
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<Phase>()
                .map_err(|e| ApiError::bad_request(format!("phase: {e}")))
        })
        .transpose()?;
    let tasks: Vec<TaskView> = state
        .board
        .tasks(now_ms())
        .into_iter()
        .filter(|t| phase.is_none_or(|p| t.phase == p))
        .filter(|t| {
            params
                .has_anomalies
                .is_none_or(|want| want != t.anomalies.is_empty())
        })
        .map(TaskView::from)
        .collect();
    let (unattributed, unattributed_total) = state.board.unattributed();
    Ok(Json(json!({
        "tasks": tasks,
        "unattributed": unattributed,
        "unattributed_total": unattributed_total,
    })))
}

/// `GET /api/tasks/{task_id}`: the task at the top level, and its events
/// in event order.
pub(crate) async fn task(
    State(state): State<AppState>,
    Path(task_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Some(task) = state.board.task(&task_id, now_ms()) else {
        return Err(ApiError::not_found(format!("no task {task_id:?}")));
    };
    let id = task_id.clone();
    let rows = state
        .store
        .read(move |r| r.timeline(&id))
        .await
        .map_err(|e| store_failed(&e))?;
    let mut view = serde_json::to_value(TaskView::from(task)).expect("views serialise");
    view["events"] = Value::Array(rows.into_iter().map(|r| event_view(&r)).collect());
    Ok(Json(view))
}

// ---- events ----------------------------------------------------------------

fn event_view(row: &EventRow) -> Value {
    let mut view = serde_json::to_value(row).expect("rows serialise");
    view["received_at"] = json!(rfc3339(row.received_at_ms));
    view["last_received_at"] = json!(rfc3339(row.last_received_at_ms));
    view["occurred_at"] = json!(row.occurred_at_ms.and_then(rfc3339));
    view
}

/// The raw body in JSON: as text when it is UTF-8, else as hex.
fn raw_fields(view: &mut Value, raw: &[u8]) {
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

fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("expected a numeric id, found {text:?}")))
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

fn raw_response(raw: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        raw,
    )
        .into_response()
}

// ---- rejected --------------------------------------------------------------

fn rejected_view(row: &RejectedRow) -> Value {
    let mut view = serde_json::to_value(row).expect("rows serialise");
    view["received_at"] = json!(rfc3339(row.received_at_ms));
    view
}

#[derive(serde::Deserialize)]
struct PageParams {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/rejected?limit=&cursor=`
pub(crate) async fn rejected(
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let params: PageParams = query(&uri)?;
    let before = cursor(params.cursor.as_deref())?;
    let page = limit(params.limit)?;
    let (rows, dropped) = state
        .store
        .read(move |r| Ok((r.rejected(before, page)?, r.rejected_dropped()?)))
        .await
        .map_err(|e| store_failed(&e))?;
    let next_cursor = (rows.len() == page)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let rejected: Vec<Value> = rows.into_iter().map(|r| rejected_view(&r)).collect();
    Ok(Json(json!({
        "rejected": rejected,
        "next_cursor": next_cursor,
        "dropped": dropped,
    })))
}

async fn load_rejected(state: &AppState, id: &str) -> Result<RejectedRow, ApiError> {
    let id = parse_id(id)?;
    state
        .store
        .read(move |r| r.rejected_one(id))
        .await
        .map_err(|e| store_failed(&e))?
        .ok_or_else(|| ApiError::not_found(format!("no rejected callback {id}")))
}

/// `GET /api/rejected/{id}`: what was refused, why, and the bytes read.
pub(crate) async fn rejected_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut row = load_rejected(&state, &id).await?;
    let raw = row.raw.take().unwrap_or_default();
    let mut view = rejected_view(&row);
    raw_fields(&mut view, &raw);
    Ok(Json(view))
}

/// `GET /api/rejected/{id}/raw`: the bytes read, exactly.
pub(crate) async fn rejected_raw(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = load_rejected(&state, &id).await?;
    Ok(raw_response(row.raw.unwrap_or_default()))
}
