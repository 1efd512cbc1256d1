//! `GET /api/rejected`, `/api/rejected/{id}` and `/api/rejected/{id}/raw`:
//! what was refused, why, and the bytes that were read.

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
use crate::routes::callback::{CATEGORIES, KINDS};
use crate::store::{RejectedQuery, RejectedRow};

fn rejected_view(row: &RejectedRow) -> Value {
    let mut view = serde_json::to_value(row).expect("rows serialise");
    view["received_at"] = json!(rfc3339(row.received_at_ms));
    view
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectedParams {
    kind: Option<String>,
    category: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A filter's value, checked against the values it can have, so that a
/// misspelt one is refused rather than answered with an empty list; an
/// empty one is no filter.
fn one_of(name: &str, given: Option<String>, known: &[&str]) -> Result<Option<String>, ApiError> {
    match given.filter(|v| !v.is_empty()) {
        Some(value) if !known.contains(&value.as_str()) => Err(ApiError::bad_request(format!(
            "{name}: {value:?} is none of {}",
            known.join(", ")
        ))),
        given => Ok(given),
    }
}

/// `GET /api/rejected?kind=&category=&limit=&cursor=`: `kind` is the
/// `reason` label of `relaycb_rejections_total`.
pub(crate) async fn rejected(
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let params: RejectedParams = query(&uri)?;
    let page = limit(params.limit.as_deref())?;
    // One more than the page, to know whether another page follows.
    let q = RejectedQuery {
        kind: one_of("kind", params.kind, KINDS)?,
        category: one_of("category", params.category, CATEGORIES)?,
        before_id: cursor(params.cursor.as_deref())?,
        limit: page + 1,
    };
    let (mut rows, dropped) = state
        .store
        .read(move |r| Ok((r.rejected(&q)?, r.rejected_dropped()?)))
        .await
        .map_err(|e| store_failed(&e))?;
    let next_cursor = next_cursor(&mut rows, page, |r| r.id);
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
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let _: NoParams = query(&uri)?;
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
    uri: Uri,
) -> Result<Response, ApiError> {
    let _: NoParams = query(&uri)?;
    let row = load_rejected(&state, &id).await?;
    Ok(raw_response(row.raw.unwrap_or_default()))
}
