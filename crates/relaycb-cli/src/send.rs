//! Sending callbacks to a receiver as Tencent's sender does: one POST of
//! JSON per callback, answered 200 or tried again after an interval (every
//! minute, up to 12 times, by default), each attempt freshly signed when a
//! key is given; a body that does not decode is sent once, since no retry
//! can make a receiver take it. Shared by `replay` and `simulate --to`.
//!
//! Callbacks are sent in the order given, several at once; those of one
//! task one at a time, each once the one before has had its first answer,
//! so that none overtakes an earlier one of its task on the way.
//!
//! A receiver that fails (a wrong path, a closed port) could otherwise keep
//! the sender silent for the 13 minutes of Tencent's retries: the first
//! failure of each kind is told on standard error at once, naming the
//! callback and how it will be retried, and every failure is counted by
//! kind at the end.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::sync::{Semaphore, oneshot};

use crate::time;

/// How to send.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The receiver's URL.
    pub(crate) url: String,
    /// At most this many requests a second, if set.
    pub(crate) rate: Option<f64>,
    /// At most this many requests in flight.
    pub(crate) concurrency: usize,
    /// How long to wait for an answer before counting the attempt failed.
    pub(crate) timeout: Duration,
    /// How many times to try again after the first attempt.
    pub(crate) retries: u32,
    /// How long to wait before trying again.
    pub(crate) retry_interval: Duration,
    /// Sign each attempt with a fresh `t` (now + 600 s) and this key.
    pub(crate) key: Option<String>,
}

/// One callback to send.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// When to send it, from the start of sending; `None`: as soon as the
    /// rate and concurrency allow.
    pub(crate) after: Option<Duration>,
    /// The body.
    pub(crate) body: Vec<u8>,
    /// The task it is about, as any number that tells tasks apart (`None`:
    /// none known). Callbacks of one task are sent one at a time.
    pub(crate) task: Option<u64>,
    /// How messages name it.
    pub(crate) name: Name,
    /// Sent once and never again: a body that does not decode, which no
    /// receiver will take however often it is sent.
    pub(crate) once: bool,
}

/// How a callback is named in messages: by where it is in its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Name {
    /// Its line in a log of JSON Lines.
    Line(u64),
    /// Its row id in the server's store.
    Row(u64),
    /// Its place among the callbacks sent (1-based), having no log.
    Nth(u64),
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Name::Line(n) => write!(f, "line {n}"),
            Name::Row(n) => write!(f, "id {n}"),
            Name::Nth(n) => write!(f, "callback {n}"),
        }
    }
}

/// The callback named and what it is about: `line 3 (TaskStart of task
/// 200001)`. Decodes the body: for messages only, never for every callback.
fn described(name: Name, body: &[u8]) -> String {
    let Ok(decoded) = relaycb_core::decode(body) else {
        return format!("{name} (a body that does not decode)");
    };
    let callback = &decoded.callback;
    let event = callback.event.name();
    match callback.task_id.as_deref().filter(|id| !id.is_empty()) {
        Some(task) => format!("{name} ({event} of task {task})"),
        None => format!("{name} ({event} without task id)"),
    }
}

/// The task of a body, as [`Outgoing::task`] takes it: its `task_id`
/// hashed, if it names one; the error when the body does not decode.
pub(crate) fn task_of(body: &[u8]) -> Result<Option<u64>, relaycb_core::Error> {
    use std::hash::BuildHasher;
    let decoded = relaycb_core::decode(body)?;
    let Some(task_id) = decoded.callback.task_id.filter(|id| !id.is_empty()) else {
        return Ok(None);
    };
    // Fixed keys: two tasks that collide are only sent one at a time.
    Ok(Some(
        std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(task_id),
    ))
}

/// What happened to everything sent.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Callbacks handed to the sender.
    pub(crate) callbacks: u64,
    /// Callbacks answered 200 in the end.
    pub(crate) delivered: u64,
    /// Callbacks never answered 200.
    pub(crate) given_up: u64,
    /// Attempts after the first.
    pub(crate) retried: u64,
    /// Attempts by answer: the status code, `timeout` or `error`.
    pub(crate) answers: BTreeMap<String, u64>,
    /// Latencies of answered attempts, in microseconds.
    latencies_us: Vec<u64>,
    /// The first few failures, in words.
    pub(crate) failures: Vec<String>,
    /// Failed attempts by kind of failure, in words.
    pub(crate) failed: BTreeMap<String, Failed>,
    /// How long sending took.
    pub(crate) elapsed: Duration,
    /// Whether each attempt was signed with a callback key.
    pub(crate) signed: bool,
}

impl Report {
    /// The report in a few lines.
    pub(crate) fn render(&mut self, url: &str) -> String {
        let seconds = self.elapsed.as_secs_f64();
        let per_second = if seconds > 0.0 {
            self.callbacks as f64 / seconds
        } else {
            0.0
        };
        let answers: Vec<String> = self
            .answers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let mut out = format!(
            "sent {} callbacks to {url} in {seconds:.1} s ({per_second:.1}/s): {} answered 200, {} given up, {} retries\nattempts by answer: {}\n",
            self.callbacks,
            self.delivered,
            self.given_up,
            self.retried,
            if answers.is_empty() {
                "none".to_owned()
            } else {
                answers.join(", ")
            }
        );
        if self.signed {
            // The key may come from RELAYCB_KEY, set for `relaycb sign`.
            out.push_str("each attempt signed with the callback key (--key or RELAYCB_KEY)\n");
        }
        if !self.latencies_us.is_empty() {
            self.latencies_us.sort_unstable();
            let at = |q: f64| {
                let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
                self.latencies_us[i] as f64 / 1000.0
            };
            out.push_str(&format!(
                "latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n",
                at(0.5),
                at(0.9),
                at(0.99),
                at(1.0)
            ));
        }
        for failure in &self.failures {
            out.push_str(&format!("failure: {failure}\n"));
        }
        out
    }
}

/// The failed attempts of one kind.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Failed {
    /// Attempts that failed so.
    pub(crate) attempts: u64,
    /// Callbacks any of whose attempts failed so.
    pub(crate) callbacks: u64,
}

/// How many failures a report keeps in words.
const FAILURES_KEPT: usize = 10;

/// How much of a failed answer's body a message shows.
const ANSWER_SHOWN: usize = 120;

/// One failed attempt: its kind, which groups failures in messages and
/// counts, and what more there is to say about this one.
struct Failure {
    kind: String,
    detail: String,
}

impl Failure {
    /// An answer other than 200: the kind is the status, the detail the
    /// start of the body answered.
    fn status(status: reqwest::StatusCode, body: &[u8]) -> Failure {
        let reason = status.canonical_reason().unwrap_or("");
        let text = String::from_utf8_lossy(body);
        let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let detail = match text.char_indices().nth(ANSWER_SHOWN) {
            _ if text.is_empty() => String::new(),
            None => format!(", body {text}"),
            Some((end, _)) => format!(", body {}...", &text[..end]),
        };
        Failure {
            kind: format!("answered {} {reason}", status.as_u16())
                .trim_end()
                .to_owned(),
            detail,
        }
    }

    /// A request that had no answer. A timeout or a refused connection
    /// says it all; other errors are told whole.
    fn error(error: &reqwest::Error, timeout: Duration) -> Failure {
        let (kind, detail) = if error.is_timeout() {
            (
                format!("no answer within {} (--timeout)", seconds(timeout)),
                String::new(),
            )
        } else if refused(error) {
            ("connection refused".to_owned(), String::new())
        } else if error.is_connect() {
            (
                "cannot connect".to_owned(),
                format!(": {}", error_chain(error)),
            )
        } else {
            (
                "request failed".to_owned(),
                format!(": {}", error_chain(error)),
            )
        };
        Failure { kind, detail }
    }
}

/// Whether a request failed because nothing listens where it was sent.
fn refused(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A duration in seconds as a person would write it: `60 s`, `0.5 s`.
fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

/// What standard error is told, at once, the first time a kind of failure
/// happens.
fn first_notice(options: &Options, who: &str, failure: &Failure, once: bool) -> String {
    let retried = match options.retries {
        _ if once => "it is not tried again (it does not decode)".to_owned(),
        0 => "it is not tried again (--retries 0)".to_owned(),
        n => format!(
            "it is tried again every {} up to {n} time{} (--retry-interval, --retries)",
            seconds(options.retry_interval),
            if n == 1 { "" } else { "s" }
        ),
    };
    format!(
        "warning: {who}: {}{}; {retried}; further failures of this kind are counted at the end, not shown",
        failure.kind, failure.detail
    )
}

/// What standard error is told at the end: every failed attempt by kind.
fn count_notice(failed: &BTreeMap<String, Failed>) -> Option<String> {
    if failed.is_empty() {
        return None;
    }
    let kinds: Vec<String> = failed
        .iter()
        .map(|(kind, n)| {
            let plural = |n: u64, what: &str| {
                if n == 1 {
                    format!("1 {what}")
                } else {
                    format!("{n} {what}s")
                }
            };
            format!(
                "{kind}: {} of {}",
                plural(n.attempts, "attempt"),
                plural(n.callbacks, "callback")
            )
        })
        .collect();
    Some(format!(
        "warning: failed attempts by kind: {}",
        kinds.join("; ")
    ))
}

/// Sends every callback and reports the answers; tells `err` of the first
/// failure of each kind as it happens, and of all of them at the end. Runs
/// its own runtime.
pub(crate) fn send_all(
    options: &Options,
    outgoing: impl Iterator<Item = Outgoing>,
    err: &mut dyn std::io::Write,
) -> anyhow::Result<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        // Sending tasks run on the runtime's threads; standard error is
        // this thread's, so they hand it their notices.
        let (notices, mut heard) = unbounded_channel::<String>();
        let telling = async {
            while let Some(notice) = heard.recv().await {
                let _ = writeln!(err, "{notice}");
            }
        };
        let (report, ()) = tokio::join!(send(options.clone(), outgoing, notices), telling);
        report
    })?;
    if let Some(count) = count_notice(&report.failed) {
        let _ = writeln!(err, "{count}");
    }
    Ok(report)
}

async fn send(
    options: Options,
    outgoing: impl Iterator<Item = Outgoing>,
    notices: UnboundedSender<String>,
) -> anyhow::Result<Report> {
    let client = reqwest::Client::builder()
        .timeout(options.timeout)
        .user_agent(concat!("relaycb/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")?;
    let report = Arc::new(Mutex::new(Report::default()));
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let options = Arc::new(options);
    let started = tokio::time::Instant::now();
    let gap = options
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let mut next_slot = started;
    let mut tasks = tokio::task::JoinSet::new();
    // For each task, what tells that its latest callback sent has had its
    // first answer.
    let mut answered: HashMap<u64, oneshot::Receiver<()>> = HashMap::new();
    for item in outgoing {
        if let Some(after) = item.after {
            tokio::time::sleep_until(started + after).await;
        }
        if let Some(gap) = gap {
            next_slot = next_slot.max(tokio::time::Instant::now());
            tokio::time::sleep_until(next_slot).await;
            next_slot += gap;
        }
        let permit = Arc::clone(&permits).acquire_owned().await?;
        report.lock().expect("report lock").callbacks += 1;
        let (client, options, report, permits, notices) = (
            client.clone(),
            Arc::clone(&options),
            Arc::clone(&report),
            Arc::clone(&permits),
            notices.clone(),
        );
        let (done, previous) = match item.task {
            Some(task) => {
                let (done, next) = oneshot::channel();
                (Some(done), answered.insert(task, next))
            }
            None => (None, None),
        };
        tasks.spawn(async move {
            // Sent or dropped, the previous callback of the task has had
            // its first answer (or given up) either way.
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            let sender = Sender {
                client: &client,
                options: &options,
                report: &report,
                permits: &permits,
                notices: &notices,
            };
            sender
                .deliver(permit, item.name, item.body, item.once, done)
                .await;
        });
        // Reap finished tasks as we go, so that memory follows what is in flight.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let mut report = Arc::try_unwrap(report)
        .map_err(|_| anyhow::anyhow!("a sending task outlived the sender"))?
        .into_inner()
        .expect("report lock");
    report.elapsed = started.elapsed();
    report.signed = options.key.is_some();
    Ok(report)
}

/// What each sending task shares.
struct Sender<'a> {
    client: &'a reqwest::Client,
    options: &'a Options,
    report: &'a Mutex<Report>,
    permits: &'a Arc<Semaphore>,
    notices: &'a UnboundedSender<String>,
}

impl Sender<'_> {
    async fn deliver(
        &self,
        permit: tokio::sync::OwnedSemaphorePermit,
        name: Name,
        body: Vec<u8>,
        once: bool,
        mut first_answered: Option<oneshot::Sender<()>>,
    ) {
        let options = self.options;
        let retries = if once { 0 } else { options.retries };
        let mut first = Some(permit);
        // The kinds of failure this callback met, each counted once.
        let mut met: Vec<String> = Vec::new();
        for attempt in 0..=retries {
            // A permit is held while the attempt is in flight, not while it waits.
            let _in_flight = match first.take() {
                Some(permit) => permit,
                None => {
                    tokio::time::sleep(options.retry_interval).await;
                    self.report.lock().expect("report lock").retried += 1;
                    match Arc::clone(self.permits).acquire_owned().await {
                        Ok(permit) => permit,
                        Err(_) => break,
                    }
                }
            };
            let signed_body = match &options.key {
                Some(key) => signed(&body, key, time::now_seconds() + 600),
                None => body.clone(),
            };
            let begun = Instant::now();
            let answer = self
                .client
                .post(&options.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(signed_body)
                .send()
                .await;
            let took = begun.elapsed();
            let (label, failure) = match answer {
                Ok(response) => {
                    let status = response.status();
                    // Read the answer, so that the connection can be reused.
                    let answered = response.bytes().await.unwrap_or_default();
                    let failure = (status != reqwest::StatusCode::OK)
                        .then(|| Failure::status(status, &answered));
                    (status.as_u16().to_string(), failure)
                }
                Err(e) if e.is_timeout() => (
                    "timeout".to_owned(),
                    Some(Failure::error(&e, options.timeout)),
                ),
                Err(e) => (
                    "error".to_owned(),
                    Some(Failure::error(&e, options.timeout)),
                ),
            };
            // The task's next callback may go now; should this one be tried
            // again, the next may overtake it, as with Tencent's retries.
            first_answered.take();
            let mut r = self.report.lock().expect("report lock");
            *r.answers.entry(label.clone()).or_default() += 1;
            if label != "timeout" && label != "error" {
                r.latencies_us
                    .push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
            }
            let Some(failure) = failure else {
                r.delivered += 1;
                return;
            };
            let first_of_kind = !r.failed.contains_key(&failure.kind);
            let failed = r.failed.entry(failure.kind.clone()).or_default();
            failed.attempts += 1;
            if !met.contains(&failure.kind) {
                failed.callbacks += 1;
                met.push(failure.kind.clone());
            }
            let keep = r.failures.len() < FAILURES_KEPT;
            if first_of_kind || keep {
                let who = described(name, &body);
                if first_of_kind {
                    let _ = self
                        .notices
                        .send(first_notice(options, &who, &failure, once));
                }
                if keep {
                    r.failures.push(format!(
                        "{who}, attempt {}: {}{}",
                        attempt + 1,
                        failure.kind,
                        failure.detail
                    ));
                }
            }
        }
        self.report.lock().expect("report lock").given_up += 1;
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The body with `t` and `sign` set for the key; a body that is not a JSON
/// object is sent as it is. The keys of a re-signed body come out in the
/// order serde_json keeps them.
pub(crate) fn signed(body: &[u8], key: &str, t: i64) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut object)) => {
            object.insert("t".into(), t.into());
            object.insert("sign".into(), relaycb_core::sign(key, t).into());
            serde_json::to_vec(&object).unwrap_or_else(|_| body.to_vec())
        }
        _ => body.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::{ANSWER_SHOWN, Failure, signed};

    #[test]
    fn a_failed_answer_is_told_by_its_status_with_the_start_of_its_body_on_one_line() {
        let empty = Failure::status(reqwest::StatusCode::NOT_FOUND, b"");
        assert_eq!(
            (empty.kind.as_str(), empty.detail.as_str()),
            ("answered 404 Not Found", "")
        );
        let short = Failure::status(
            reqwest::StatusCode::UNAUTHORIZED,
            b"{\"error\":\n \"bad token\"}\n",
        );
        assert_eq!(short.detail, ", body {\"error\": \"bad token\"}");
        let long = Failure::status(reqwest::StatusCode::BAD_GATEWAY, "é".repeat(500).as_bytes());
        assert_eq!(
            long.detail,
            format!(", body {}...", "é".repeat(ANSWER_SHOWN))
        );
    }

    #[test]
    fn signing_sets_t_and_sign_and_keeps_the_rest() {
        let body = br#"{"callback_event":"TaskStart","t":1,"sign":"old"}"#;
        let value: serde_json::Value =
            serde_json::from_slice(&signed(body, "key", 1_700_000_600)).unwrap();
        assert_eq!(value["t"], 1_700_000_600);
        assert_eq!(value["sign"], "bae57a7a26dc8fe289f922d0ba53dde8");
        assert_eq!(value["callback_event"], "TaskStart");
        assert_eq!(signed(b"not json", "key", 1), b"not json");
    }
}
