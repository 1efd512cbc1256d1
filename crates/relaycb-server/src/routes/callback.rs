//! `POST /callback`: the URL Tencent posts relay callbacks to.
//!
//! In order: read the raw bytes (at most `--max-body`, within
//! `--body-timeout`), check the URL token, decode with relaycb-core, check
//! `t`/`sign`, store, and only after the commit answer `200 {"code":0}`.
//! Whatever is refused is stored too, in the rejected store, with the
//! reason and the bytes that were read (what arrived, when the body was
//! late or cut off).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use relaycb_core::{
    Category, DecodeOptions, Decoded, DedupKey, Event, SignatureError, decode_keyed,
};
use serde_json::json;

use super::AppState;
use crate::Shared;
use crate::error::ApiError;
use crate::store::writer::now_ms;
use crate::store::{NewEvent, NewRejected};
use crate::telemetry::{self, metrics::CallbackOutcome};

/// Headers kept with each callback: enough to tell senders and proxies
/// apart, nothing that carries a credential. In name order, the order they
/// are stored in.
const HEADERS_KEPT: [&str; 7] = [
    "content-length",
    "content-type",
    "host",
    "user-agent",
    "x-forwarded-for",
    "x-real-ip",
    "x-request-id",
];

/// Every broad `category` a refusal is stored with.
pub(crate) const CATEGORIES: &[&str] = &[
    "syntax",
    "not_relay",
    "missing",
    "wrong_type",
    "deviation",
    "signature",
    "token",
    "too_large",
    "unreadable",
    "timeout",
];

/// Every `kind` a refusal is stored with: the `reason` labels of the
/// rejections metric.
pub(crate) const KINDS: &[&str] = &[
    "not_json",
    "not_object",
    "not_relay",
    "missing_field",
    "wrong_type",
    "invalid",
    "signature",
    "signature_missing",
    "signature_malformed",
    "signature_expired",
    "signature_future",
    "signature_mismatch",
    "token_missing",
    "token_mismatch",
    "too_large",
    "unreadable",
    "timeout",
];

/// Why a callback was refused.
struct Refusal {
    status: StatusCode,
    /// Broad kind, stored in `rejected.category`.
    category: &'static str,
    /// Short fixed name: the `reason` label of the metric, stored in
    /// `rejected.kind`.
    label: &'static str,
    /// What was wrong, in words: the answer's `error` and `rejected.reason`.
    message: String,
}

impl Refusal {
    fn new(
        status: StatusCode,
        category: &'static str,
        label: &'static str,
        message: String,
    ) -> Self {
        debug_assert!(
            CATEGORIES.contains(&category),
            "unlisted category {category}"
        );
        debug_assert!(KINDS.contains(&label), "unlisted kind {label}");
        Refusal {
            status,
            category,
            label,
            message,
        }
    }
}

/// The body as read: at most `limit` bytes, whether there was more, and
/// why reading stopped early if it did.
struct ReadBody {
    bytes: Vec<u8>,
    truncated: bool,
    cut: Option<Cut>,
}

/// Why a body was not read to its end.
enum Cut {
    /// It did not arrive within `--body-timeout`.
    Timeout,
    /// The sender went away or broke the framing.
    Broken(String),
}

pub(crate) async fn receive(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let received_at_ms = now_ms();
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.to_string());
    let headers = kept_headers(&parts.headers);

    let body = read_body(body, state.config.max_body, state.config.body_timeout).await;
    let response = match check(&state, &parts.uri, &body) {
        Ok((decoded, key)) => {
            accept(
                &state,
                body.bytes,
                decoded,
                key,
                received_at_ms,
                headers,
                peer,
            )
            .await
        }
        Err(refusal) => refuse(&state, refusal, body, received_at_ms, headers, peer).await,
    };
    state.metrics.ack_latency(started.elapsed().as_secs_f64());
    response
}

/// Everything that decides between accepting and refusing, in order. The
/// body's dedup key comes along, computed while decoding; whether there is
/// one is for `accept` to judge.
fn check(state: &Shared, uri: &Uri, body: &ReadBody) -> Result<Keyed, Refusal> {
    match &body.cut {
        // A sender that trickles its body would otherwise hold its
        // connection for ever.
        Some(Cut::Timeout) => {
            return Err(Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "timeout",
                format!(
                    "the body did not arrive within {}",
                    humantime::format_duration(state.config.body_timeout)
                ),
            ));
        }
        Some(Cut::Broken(error)) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "unreadable",
                "unreadable",
                format!("the body could not be read: {error}"),
            ));
        }
        None => {}
    }
    if body.truncated {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "too_large",
            format!(
                "body is larger than the limit of {} bytes",
                state.config.max_body
            ),
        ));
    }
    if let Some(expected) = &state.config.callback_token {
        check_token(uri, expected)?;
    }
    let (decoded, key) = decode_keyed(&body.bytes, DecodeOptions::default()).map_err(|error| {
        let (status, label) = match error.category() {
            Category::Syntax => (StatusCode::BAD_REQUEST, "not_json"),
            Category::NotRelay if error.path().is_none() => (StatusCode::BAD_REQUEST, "not_object"),
            Category::NotRelay => (StatusCode::UNPROCESSABLE_ENTITY, "not_relay"),
            Category::Missing => (StatusCode::UNPROCESSABLE_ENTITY, "missing_field"),
            Category::WrongType => (StatusCode::UNPROCESSABLE_ENTITY, "wrong_type"),
            Category::Signature => (StatusCode::UNAUTHORIZED, "signature"),
            _ => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        };
        Refusal::new(status, error.category().as_str(), label, error.to_string())
    })?;
    let callback = &decoded.callback;
    let signed = callback.t.is_some() || callback.sign.is_some();
    if state.config.require_signature || (signed && !state.keys.is_empty()) {
        let now = now_ms() / 1000;
        state
            .keys
            .verify(callback.t, callback.sign.as_deref(), now)
            .map_err(|error| {
                let label = match error {
                    SignatureError::Missing(_) => "signature_missing",
                    SignatureError::MalformedTime => "signature_malformed",
                    SignatureError::Expired { .. } => "signature_expired",
                    SignatureError::FromTheFuture { .. } => "signature_future",
                    SignatureError::Mismatch => "signature_mismatch",
                    _ => "signature",
                };
                Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    "signature",
                    label,
                    error.to_string(),
                )
            })?;
    }
    Ok((decoded, key))
}

/// A decoded body and its dedup key, if it has one.
type Keyed = (Decoded, Result<DedupKey, relaycb_core::Error>);

fn check_token(uri: &Uri, expected: &str) -> Result<(), Refusal> {
    #[derive(serde::Deserialize)]
    struct TokenQuery {
        token: Option<String>,
    }
    let given = Query::<TokenQuery>::try_from_uri(uri)
        .ok()
        .and_then(|Query(q)| q.token)
        .filter(|t| !t.is_empty());
    let Some(given) = given else {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "token",
            "token_missing",
            "callback token missing: the callback URL must carry ?token=".to_owned(),
        ));
    };
    if super::same_secret(&given, expected) {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "token",
            "token_mismatch",
            "callback token mismatch".to_owned(),
        ))
    }
}

// FIXME: durable ingest at 64 clients serves 0.28 to 0.36 of the no-op
// floor from machine to machine (target 0.5), see BENCHMARKS.md. Profiled
// with wrk, the server spends about 52 us of CPU a callback where the
// floor spends 16: the runtime's threads 34 us (decode and key, the
// decoded form and headers as JSON, the request span and its log line,
// the hand-over to the writer; the kernel's TCP work is about 9 us in
// both), the writer 13 us (SQLite inserting a 1.2 KB row with two index
// entries and writing its pages to the WAL; without the fsync only a tenth
// faster), the checkpoint thread 3 us. These threads and the load
// generator contend for two cores, while about a fifth of the CPU is idle
// when every client waits on a commit.
async fn accept(
    state: &Shared,
    raw: Vec<u8>,
    decoded: Decoded,
    key: Result<DedupKey, relaycb_core::Error>,
    received_at_ms: i64,
    headers: String,
    peer: Option<String>,
) -> Response {
    let Decoded {
        callback,
        deviations,
    } = decoded;
    let event_name = callback.event.name().to_owned();
    let key = match key {
        Ok(key) => key,
        Err(error) => {
            // decode accepted the body, so this cannot happen; refuse rather
            // than store an event that cannot be deduplicated.
            tracing::error!(%error, "decoded body has no dedup key");
            return ApiError::internal().into_response();
        }
    };
    let decoded = decoded_json(&callback, raw.len());
    let event = NewEvent {
        dedup_key: key.to_string(),
        task_id: callback.task_id.clone().filter(|id| !id.is_empty()),
        callback_event: event_name.clone(),
        event_time: callback.event_time,
        occurred_at_ms: callback.occurred_at_ms(),
        received_at_ms,
        raw,
        decoded,
        deviations: serde_json::to_string(&deviations).expect("deviations always serialise"),
        headers,
        peer,
        callback,
        key,
    };
    let metric_event: Event = event.callback.event.clone();
    match state.store.accept(event).await {
        Ok(stored) => {
            let outcome = if stored.duplicate {
                CallbackOutcome::Duplicate
            } else {
                for deviation in &deviations {
                    state.metrics.deviation(deviation.kind.name());
                }
                CallbackOutcome::Stored
            };
            state.metrics.callback(Some(&metric_event), outcome);
            telemetry::record(stored.task.as_deref(), Some(&event_name), outcome.as_str());
            // Every callback is in the store and counted in the metrics; a
            // line each would be noise at any volume. A retry or a body that
            // deviated is worth a line.
            if stored.duplicate || !deviations.is_empty() {
                tracing::info!(
                    event_id = stored.id,
                    deliveries = stored.deliveries,
                    deviations = deviations.len(),
                    "callback {}",
                    outcome.as_str()
                );
            } else {
                tracing::debug!(event_id = stored.id, "callback {}", outcome.as_str());
            }
            (StatusCode::OK, Json(json!({ "code": 0 }))).into_response()
        }
        Err(error) => {
            state
                .metrics
                .callback(Some(&metric_event), CallbackOutcome::Failed);
            telemetry::record(None, Some(&event_name), CallbackOutcome::Failed.as_str());
            tracing::error!(%error, "callback not stored; answered 503 so that Tencent retries");
            ApiError::unavailable("the callback could not be stored; retry later").into_response()
        }
    }
}

async fn refuse(
    state: &Shared,
    refusal: Refusal,
    body: ReadBody,
    received_at_ms: i64,
    headers: String,
    peer: Option<String>,
) -> Response {
    let body_left_unread = body.truncated;
    state.metrics.rejection(refusal.label);
    state.metrics.callback(None, CallbackOutcome::Rejected);
    telemetry::record(None, None, CallbackOutcome::Rejected.as_str());
    let rejected = NewRejected {
        received_at_ms,
        status: refusal.status.as_u16(),
        category: refusal.category.to_owned(),
        kind: refusal.label.to_owned(),
        reason: refusal.message.clone(),
        raw: body.bytes,
        truncated: body.truncated,
        headers,
        peer,
    };
    match state.store.reject(rejected).await {
        Ok(id) => tracing::warn!(
            rejected_id = id,
            status = refusal.status.as_u16(),
            reason = refusal.label,
            error = %refusal.message,
            "callback refused"
        ),
        Err(error) => {
            tracing::error!(%error, reason = refusal.label, "refused callback could not be kept");
        }
    }
    let mut response = ApiError::new(refusal.status, refusal.message).into_response();
    if body_left_unread {
        // What is left of the body would be read as the next request.
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Reads at most `limit` bytes within `timeout`. When the body is longer,
/// keeps the first `limit` bytes and says so; when it is late or broken,
/// keeps what arrived and says why.
async fn read_body(mut body: Body, limit: usize, timeout: Duration) -> ReadBody {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut bytes = Vec::new();
    let cut = |bytes, cut| ReadBody {
        bytes,
        truncated: true,
        cut: Some(cut),
    };
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return cut(bytes, Cut::Timeout),
            Ok(None) => break,
            Ok(Some(Err(error))) => return cut(bytes, Cut::Broken(error.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let room = limit - bytes.len();
        if data.len() > room {
            bytes.extend_from_slice(&data[..room]);
            return ReadBody {
                bytes,
                truncated: true,
                cut: None,
            };
        }
        bytes.extend_from_slice(&data);
    }
    ReadBody {
        bytes,
        truncated: false,
        cut: None,
    }
}

/// The callback's normalised form as stored: about as long as its body, so
/// the text is given that room at once instead of growing to it.
fn decoded_json(callback: &relaycb_core::Callback, body_len: usize) -> String {
    let mut text = Vec::with_capacity(body_len + body_len / 4 + 64);
    serde_json::to_writer(&mut text, callback).expect("a callback always serialises");
    String::from_utf8(text).expect("serde_json writes UTF-8")
}

fn kept_headers(headers: &HeaderMap) -> String {
    /// The kept headers as a JSON object, written without an intermediate map.
    struct Kept<'a>(&'a HeaderMap);
    impl serde::Serialize for Kept<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_map(HEADERS_KEPT.iter().filter_map(|name| {
                let value = self.0.get(*name)?;
                Some((*name, String::from_utf8_lossy(value.as_bytes())))
            }))
        }
    }
    serde_json::to_string(&Kept(headers)).expect("strings always serialise")
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::{HEADERS_KEPT, kept_headers};

    #[test]
    fn kept_headers_are_stored_in_name_order_and_nothing_else_is_kept() {
        assert!(HEADERS_KEPT.is_sorted(), "{HEADERS_KEPT:?}");
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", HeaderValue::from_static("tencent"));
        headers.insert("authorization", HeaderValue::from_static("Bearer secret"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"10.0.0.1, \xff").unwrap(),
        );
        assert_eq!(
            kept_headers(&headers),
            r#"{"content-type":"application/json","user-agent":"tencent","x-forwarded-for":"10.0.0.1, �"}"#
        );
        assert_eq!(kept_headers(&HeaderMap::new()), "{}");
    }
}
