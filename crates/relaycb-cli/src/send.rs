//! Sending callbacks to a receiver as Tencent's sender does: one POST of
//! JSON per callback, answered 200 or tried again after an interval (every
//! minute, up to 12 times, by default), each attempt freshly signed when a
//! key is given. Shared by `replay` and `simulate --to`.
//!
//! Callbacks are sent in the order given, several at once; those of one
//! task one at a time, each once the one before has had its first answer,
//! so that none overtakes an earlier one of its task on the way.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
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
}

/// The task of a body, as [`Outgoing::task`] takes it: its `task_id`
/// hashed, if it decodes and names one.
pub(crate) fn task_of(body: &[u8]) -> Option<u64> {
    use std::hash::BuildHasher;
    let decoded = relaycb_core::decode(body).ok()?;
    let task_id = decoded.callback.task_id.filter(|id| !id.is_empty())?;
    // Fixed keys: two tasks that collide are only sent one at a time.
    Some(std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(task_id))
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
    /// How long sending took.
    pub(crate) elapsed: Duration,
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

/// How many failures a report keeps in words.
const FAILURES_KEPT: usize = 10;

/// Sends every callback and reports the answers. Runs its own runtime.
pub(crate) fn send_all(
    options: &Options,
    outgoing: impl Iterator<Item = Outgoing>,
) -> anyhow::Result<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(send(options.clone(), outgoing))
}

async fn send(
    options: Options,
    outgoing: impl Iterator<Item = Outgoing>,
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
        let (client, options, report, permits) = (
            client.clone(),
            Arc::clone(&options),
            Arc::clone(&report),
            Arc::clone(&permits),
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
            deliver(
                &client, &options, &report, &permits, permit, item.body, done,
            )
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
    Ok(report)
}

async fn deliver(
    client: &reqwest::Client,
    options: &Options,
    report: &Mutex<Report>,
    permits: &Arc<Semaphore>,
    permit: tokio::sync::OwnedSemaphorePermit,
    body: Vec<u8>,
    mut first_answered: Option<oneshot::Sender<()>>,
) {
    let mut first = Some(permit);
    for attempt in 0..=options.retries {
        // A permit is held while the attempt is in flight, not while it waits.
        let _in_flight = match first.take() {
            Some(permit) => permit,
            None => {
                tokio::time::sleep(options.retry_interval).await;
                report.lock().expect("report lock").retried += 1;
                match Arc::clone(permits).acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => break,
                }
            }
        };
        let body = match &options.key {
            Some(key) => signed(&body, key, time::now_seconds() + 600),
            None => body.clone(),
        };
        let begun = Instant::now();
        let answer = client
            .post(&options.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let took = begun.elapsed();
        let (label, ok, failure) = match answer {
            Ok(response) => {
                let status = response.status();
                // Read the answer, so that the connection can be reused.
                let _ = response.bytes().await;
                (
                    status.as_u16().to_string(),
                    status == reqwest::StatusCode::OK,
                    None,
                )
            }
            Err(e) if e.is_timeout() => ("timeout".to_owned(), false, Some(format!("{e:#}"))),
            Err(e) => ("error".to_owned(), false, Some(error_chain(&e))),
        };
        // The task's next callback may go now; should this one be tried
        // again, the next may overtake it, as with Tencent's retries.
        first_answered.take();
        {
            let mut r = report.lock().expect("report lock");
            *r.answers.entry(label.clone()).or_default() += 1;
            if label != "timeout" && label != "error" {
                r.latencies_us
                    .push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
            }
            if ok {
                r.delivered += 1;
                return;
            }
            if r.failures.len() < FAILURES_KEPT {
                let why = failure.unwrap_or_else(|| format!("answered {label}"));
                r.failures.push(format!("attempt {}: {why}", attempt + 1));
            }
        }
    }
    report.lock().expect("report lock").given_up += 1;
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
    use super::signed;

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
