//! Logs and metrics: the tracing subscriber, one span per request, and the
//! Prometheus registry ([`metrics`]).
//!
//! Each request gets a span `request` with a `request_id` (the sender's
//! `x-request-id` when it sent a short one, else a counter), the method and
//! the matched route; handlers record `task_id`, `event` and `outcome` once
//! known. Query strings and headers are never logged: the callback token
//! travels in the query and the API token in a header.

pub(crate) mod metrics;

use std::io::{BufWriter, IsTerminal as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::{Instrument, Span, field};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Keeps the log writer's thread running; dropping it writes out every line
/// still queued. Hold it until the program ends.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// Sets up the global subscriber: `RUST_LOG` filters (default
/// [`DEFAULT_FILTER`]), lines in the chosen format on standard error,
/// coloured only when standard error is a terminal and `NO_COLOR` is not
/// set (a log file or a journal gets plain text).
///
/// Lines are formatted where they are logged and written by a thread of
/// its own, which writes whatever has queued up in one system call rather
/// than one per line. No line is dropped: a thread that logs waits for
/// standard error only when [`LOG_QUEUE`] lines are waiting already.
pub fn init(format: LogFormat) -> LogGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let filter = filter.add_directive(NO_SECRETS.parse().expect("a valid directive"));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE)
        .thread_name("relaycb-log")
        .finish(BufWriter::with_capacity(LOG_BUFFER, std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(writer);
    // `try_init`: a second call (tests) keeps the first subscriber.
    let installed = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    LogGuard {
        _writer: installed.is_ok().then_some(guard),
    }
}

/// The log filter when `RUST_LOG` is not set. The NATS client logs each
/// failed attempt to reach its server at info, several a second at first;
/// the publisher's own warning says when publishing fails, and why.
const DEFAULT_FILTER: &str = "info,async_nats=warn";

/// Added to every filter, `RUST_LOG` included: the NATS client's connector
/// logs the server's address with its token or password at debug.
const NO_SECRETS: &str = "async_nats::connector=info";

/// How many lines may wait for the log writer before a request that logs
/// waits for it: enough to ride out a slow terminal, bounded so that the
/// queue cannot hold megabytes of text when standard error falls behind.
const LOG_QUEUE: usize = 1024;
/// The most log text written to standard error in one system call.
const LOG_BUFFER: usize = 64 * 1024;

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

fn request_id(request: &Request) -> String {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:08x}", NEXT_REQUEST.fetch_add(1, Ordering::Relaxed)))
}

/// Middleware: runs the request inside its span and logs its end.
pub(crate) async fn request_span(request: Request, next: Next) -> Response {
    let id = request_id(&request);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        route = %route,
        task_id = field::Empty,
        event = field::Empty,
        outcome = field::Empty,
    );
    let started = Instant::now();
    async move {
        let mut response = next.run(request).await;
        let status = response.status().as_u16();
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        // Callbacks log their own line with what was done; this one is for
        // failures, and for everything at debug level.
        if response.status().is_server_error() {
            tracing::warn!(status, micros, "request failed");
        } else {
            tracing::debug!(status, micros, "request done");
        }
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert("x-request-id", value);
        }
        response
    }
    .instrument(span)
    .await
}

/// Records the domain fields of the current request span, in one call: the
/// formatting layer formats the span's fields again on every call.
pub(crate) fn record(task_id: Option<&str>, event: Option<&str>, outcome: &str) {
    let span = Span::current();
    let Some(fields) = span.metadata().map(|m| m.fields()) else {
        return;
    };
    let (Some(task_field), Some(event_field), Some(outcome_field)) = (
        fields.field("task_id"),
        fields.field("event"),
        fields.field("outcome"),
    ) else {
        return;
    };
    let values: [(&field::Field, Option<&dyn field::Value>); 3] = [
        (
            &task_field,
            task_id.as_ref().map(|v| v as &dyn field::Value),
        ),
        (&event_field, event.as_ref().map(|v| v as &dyn field::Value)),
        (&outcome_field, Some(&outcome as &dyn field::Value)),
    ];
    span.record_all(&fields.value_set(&values));
}
