//! `GET /api/tasks` and `GET /api/tasks/{task_id}`: the task state folded
//! by relaycb-core, shown with readable times.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::Uri;
use relaycb_core::lifecycle::{Anomaly, CurrentFile, LastExit, Phase};
use relaycb_core::{Explanation, TaskState};
use serde::Serialize;
use serde_json::{Value, json};

use super::events::event_view;
use super::{limit, query, rfc3339, store_failed};
use crate::error::ApiError;
use crate::routes::AppState;
use crate::store::writer::now_ms;

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
#[serde(deny_unknown_fields)]
struct TasksParams {
    phase: Option<String>,
    has_anomalies: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /api/tasks?phase=&has_anomalies=&limit=&cursor=`: the tasks,
/// ordered by task id, and the latest events that could not be attributed
/// to any task. Every task without `limit`; with it, a page of that many,
/// `next_cursor` being the last task id shown when more follow, to be
/// passed as `cursor` for the tasks after it.
pub(crate) async fn tasks(
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let params: TasksParams = query(&uri)?;
    state.refresh_tasks().await.map_err(|e| store_failed(&e))?;
    let phase = params
        .phase
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<Phase>()
                .map_err(|e| ApiError::bad_request(format!("phase: {e}")))
        })
        .transpose()?;
    let has_anomalies = params
        .has_anomalies
        .as_deref()
        .filter(|h| !h.is_empty())
        .map(|h| match h {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(ApiError::bad_request(format!(
                "has_anomalies must be true or false, found {other:?}"
            ))),
        })
        .transpose()?;
    let page = params
        .limit
        .as_deref()
        .filter(|l| !l.is_empty())
        .map(|asked| limit(Some(asked)))
        .transpose()?;
    // As decoding takes a callback's `task_id`.
    let after = params
        .cursor
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let mut tasks =
        state
            .board
            .tasks_after(after, now_ms(), page.map_or(usize::MAX, |n| n + 1), |t| {
                phase.is_none_or(|p| t.phase == p)
                    && has_anomalies.is_none_or(|want| want != t.anomalies.is_empty())
            });
    let next_cursor = match page {
        Some(n) if tasks.len() > n => {
            tasks.truncate(n);
            tasks.last().map(|t| t.task_id.clone())
        }
        _ => None,
    };
    let tasks: Vec<TaskView> = tasks.into_iter().map(TaskView::from).collect();
    let (unattributed, unattributed_total) = state.board.unattributed();
    Ok(Json(json!({
        "tasks": tasks,
        "next_cursor": next_cursor,
        "unattributed": unattributed,
        "unattributed_total": unattributed_total,
    })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskParams {
    limit: Option<String>,
}

/// `GET /api/tasks/{task_id}?limit=`: the task at the top level, and the
/// latest `limit` of its events in event order; `events_total` says how
/// many it has, and `/api/events?task_id=` pages through all of them.
pub(crate) async fn task(
    State(state): State<AppState>,
    Path(task_id): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let params: TaskParams = query(&uri)?;
    let shown = limit(params.limit.as_deref())?;
    // As decoding takes a callback's `task_id`.
    let task_id = task_id.trim().to_owned();
    state.refresh_tasks().await.map_err(|e| store_failed(&e))?;
    let Some(task) = state.board.task(&task_id, now_ms()) else {
        return Err(ApiError::not_found(format!("no task {task_id:?}")));
    };
    let id = task_id.clone();
    let (rows, total) = state
        .store
        .read(move |r| r.latest_of_task(&id, shown))
        .await
        .map_err(|e| store_failed(&e))?;
    let mut view = serde_json::to_value(TaskView::from(task)).expect("views serialise");
    view["events"] = Value::Array(rows.iter().map(event_view).collect());
    view["events_total"] = json!(total);
    Ok(Json(view))
}
