//! Publishing stored events to NATS JetStream, at least once and in order.
//!
//! The store's outbox is the source of truth: every new event gets an
//! outbox row in the transaction that stores it, so nothing is lost while
//! NATS is down or the server restarts. One task reads the outbox in event
//! id order, publishes each event ([`message`]) and waits for JetStream's
//! acknowledgement before the next one, so the stream holds each task's
//! events in the order they were stored and never one after a later one.
//! Acknowledged events leave the outbox through the store writer.
//!
//! A failure (NATS unreachable, no acknowledgement in time, the stream
//! missing) is retried with a wait that doubles from 100 ms up to
//! `--nats-retry-max`, on the same event. An event published whose
//! acknowledgement was lost is published again under the same
//! `Nats-Msg-Id`; JetStream drops it if it arrives within the stream's
//! duplicate window (two minutes by default), so a consumer should still
//! deduplicate on the CloudEvents `id` to be safe across longer gaps.

pub(crate) mod message;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use crate::Shared;
use message::Message;

/// Outbox rows read at once.
const BATCH: usize = 256;
/// How often the outbox is read when nothing woke the publisher: a
/// backstop in case a wake-up is missed.
const POLL: Duration = Duration::from_secs(5);
/// First wait after a failure.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// While publishing keeps failing, how often the failure is logged again
/// as a warning (the first failure always is).
const WARN_AGAIN: Duration = Duration::from_secs(60);
/// How long JetStream has to acknowledge one publish.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the publisher has to stop on shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The running publisher.
pub(crate) struct Publisher {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Connects (in the background: an unreachable NATS is retried, not an
/// error) and starts publishing. Fails only on a `--nats-url` that is not
/// a NATS address.
pub(crate) async fn start(shared: Arc<Shared>, wake: Arc<Notify>) -> anyhow::Result<Publisher> {
    let url = shared
        .config
        .nats_url
        .clone()
        .context("publishing needs --nats-url")?;
    let addr: async_nats::ServerAddr = url.parse().context("--nats-url is not a NATS address")?;
    let shown: Arc<str> = without_credentials(&url).into();
    let nats = shown.clone();
    let client = async_nats::ConnectOptions::new()
        .name("relaycb-server")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .event_callback(move |event| {
            let nats = shown.clone();
            async move {
                match event {
                    async_nats::Event::Connected => tracing::info!(%nats, "connected to nats"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!(
                            %nats,
                            "disconnected from nats; events stay in the outbox until it is back"
                        );
                    }
                    // Each failed attempt to reach the server: the
                    // publisher's own warning says that publishing fails,
                    // and why, once a minute.
                    async_nats::Event::ClientError(error) => {
                        tracing::debug!(%nats, %error, "nats client error");
                    }
                    other => tracing::info!(%nats, event = %other, "nats client event"),
                }
            }
        })
        .connect(addr)
        .await
        .context("cannot set up the nats client")?;
    let mut jetstream = jetstream::new(client);
    jetstream.set_timeout(ACK_TIMEOUT);
    tracing::info!(
        %nats,
        stream = %shared.config.nats_stream,
        subject_prefix = %shared.config.nats_subject_prefix,
        "publishing stored events to nats; if it is unreachable, callbacks are still accepted and published once it is back"
    );
    let (stop, stopped) = oneshot::channel();
    let worker = Worker {
        nats,
        backoff: Backoff::new(FIRST_RETRY, shared.config.nats_retry_max),
        shared,
        jetstream,
        wake,
        stream_subjects: None,
        failures_in_a_row: None,
        warned_at: None,
    };
    let task = tokio::spawn(async move {
        tokio::select! {
            _ = stopped => {}
            () = worker.run() => {}
        }
    });
    Ok(Publisher { stop, task })
}

impl Publisher {
    /// Stops publishing. What is not yet acknowledged stays in the outbox
    /// for the next start.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        match tokio::time::timeout(STOP_TIMEOUT, self.task).await {
            Ok(Ok(())) => tracing::info!("nats publisher stopped"),
            Ok(Err(error)) => tracing::error!(%error, "nats publisher task failed"),
            Err(_) => {
                tracing::warn!(timeout = ?STOP_TIMEOUT, "nats publisher did not stop in time");
            }
        }
    }
}

struct Worker {
    shared: Arc<Shared>,
    /// The server's URL as logged, without credentials.
    nats: Arc<str>,
    jetstream: jetstream::Context,
    wake: Arc<Notify>,
    /// The subjects of the stream, once it is known to exist on this
    /// connection.
    stream_subjects: Option<Vec<String>>,
    backoff: Backoff,
    /// Failed attempts in a row, for the log line when they stop.
    failures_in_a_row: Option<u64>,
    /// When a failure was last logged as a warning.
    warned_at: Option<Instant>,
}

impl Worker {
    async fn run(mut self) {
        // Events below the cursor were published in this run; their removal
        // from the outbox may still be on its way.
        let mut cursor = 0;
        loop {
            let rows = self
                .shared
                .store
                .read(move |r| r.outbox_pending(cursor, BATCH))
                .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::error!(%error, "cannot read the outbox; retrying");
                    tokio::time::sleep(self.backoff.next()).await;
                    continue;
                }
            };
            if rows.is_empty() {
                // A wake-up that came while publishing is kept as a permit,
                // so none is lost between the read and this wait.
                let _ = tokio::time::timeout(POLL, self.wake.notified()).await;
                continue;
            }
            let mut published = Vec::with_capacity(rows.len());
            for row in rows {
                cursor = row.event_id;
                let message = match message::build(&self.shared.config.nats_subject_prefix, &row) {
                    Ok(message) => message,
                    Err(error) => {
                        // Cannot happen for what the server stored itself;
                        // the row stays in the outbox and is tried again on
                        // the next start rather than holding every later one.
                        tracing::error!(event_id = row.event_id, %error, "stored callback is not valid JSON; not published");
                        continue;
                    }
                };
                self.publish_until_acknowledged(&message, row.event_id, &mut published)
                    .await;
                published.push(row.event_id);
                self.shared.metrics.nats_published();
            }
            self.mark(&mut published).await;
        }
    }

    /// Publishes `message` until JetStream acknowledges it. Before waiting
    /// after a failure, takes what is already published out of the outbox.
    ///
    /// FIXME: one publish in flight bounds throughput by the round trip to
    /// NATS; pipelining the events of different tasks would keep each
    /// task's order with more in flight.
    /// FIXME: a failure that cannot pass without someone acting (a message
    /// above the server's max_payload, a stream whose subjects do not take
    /// the prefix) holds back every later event; it is retried, counted,
    /// and logged as a warning every [`WARN_AGAIN`], nothing more.
    async fn publish_until_acknowledged(
        &mut self,
        message: &Message,
        event_id: i64,
        published: &mut Vec<i64>,
    ) {
        loop {
            match self.publish(message).await {
                Ok(ack) => {
                    if let Some(failures) = self.failures_in_a_row.take() {
                        tracing::info!(failures, "publishing to nats again");
                    }
                    self.backoff.reset();
                    tracing::debug!(
                        event_id,
                        subject = %message.subject,
                        sequence = ack.sequence,
                        duplicate = ack.duplicate,
                        "event published"
                    );
                    return;
                }
                Err(error) => {
                    self.shared.metrics.nats_publish_failure();
                    self.stream_subjects = None;
                    let wait = self.backoff.next();
                    let failures = self.failures_in_a_row.get_or_insert(0);
                    *failures += 1;
                    let failures = *failures;
                    // A request that timed out says nothing of why: whether
                    // the server is reached at all does.
                    let connection = self.jetstream.client().connection_state();
                    let error = if connection == async_nats::connection::State::Connected {
                        format!("{error:#}")
                    } else {
                        format!("the server cannot be reached (connection {connection}): {error:#}")
                    };
                    let nats = &*self.nats;
                    if failures == 1 {
                        self.warned_at = Some(Instant::now());
                        tracing::warn!(%nats, event_id, %error, retry_in = ?wait, "cannot publish to nats; events stay in the outbox and are retried");
                    } else if self.warned_at.is_none_or(|at| at.elapsed() >= WARN_AGAIN) {
                        self.warned_at = Some(Instant::now());
                        tracing::warn!(%nats, event_id, %error, retry_in = ?wait, failures, "still cannot publish to nats; events stay in the outbox and are retried");
                    } else {
                        tracing::debug!(%nats, event_id, %error, retry_in = ?wait, failures, "still cannot publish to nats");
                    }
                    self.mark(published).await;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One attempt: makes sure the stream exists, publishes, waits for the
    /// acknowledgement.
    async fn publish(
        &mut self,
        message: &Message,
    ) -> anyhow::Result<jetstream::publish::PublishAck> {
        let config = &self.shared.config;
        let subjects = match &self.stream_subjects {
            Some(subjects) => subjects,
            None => {
                let stream = self
                    .jetstream
                    .get_or_create_stream(stream::Config {
                        name: config.nats_stream.clone(),
                        subjects: vec![format!("{}.>", config.nats_subject_prefix)],
                        ..Default::default()
                    })
                    .await
                    .with_context(|| {
                        format!("cannot find or create the stream {}", config.nats_stream)
                    })?;
                self.stream_subjects
                    .insert(stream.cached_info().config.subjects.clone())
            }
        };
        // An existing stream keeps its own subjects: one made for another
        // prefix would only answer that no stream takes the subject.
        stream_takes(
            &config.nats_stream,
            subjects,
            &config.nats_subject_prefix,
            &message.subject,
        )?;
        let publish = PublishMessage::build()
            .payload(message.body.clone().into())
            .message_id(&message.msg_id)
            .header("Content-Type", message::CONTENT_TYPE);
        let ack = self
            .jetstream
            .send_publish(message.subject.clone(), publish)
            .await
            .context("cannot send to nats")?
            .await
            .context("no acknowledgement from jetstream")?;
        Ok(ack)
    }

    /// Takes `published` out of the outbox, retrying until the store takes
    /// it (an unremoved event would only be published again, and dropped
    /// by JetStream as a duplicate).
    async fn mark(&mut self, published: &mut Vec<i64>) {
        if published.is_empty() {
            return;
        }
        let ids = std::mem::take(published);
        let mut wait = FIRST_RETRY;
        loop {
            match self.shared.store.published(ids.clone()).await {
                Ok(_) => return,
                Err(crate::StoreError::Closed) => return,
                Err(error) => {
                    tracing::error!(%error, events = ids.len(), "cannot take published events out of the outbox; retrying");
                    tokio::time::sleep(wait).await;
                    wait = wait
                        .saturating_mul(2)
                        .min(self.shared.config.nats_retry_max);
                }
            }
        }
    }
}

/// A NATS URL as logged: its user info, a user and password or a token
/// alone, as `***`.
fn without_credentials(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let hidden = if host.len() < authority.len() {
        "***@"
    } else {
        ""
    };
    let scheme = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    format!("{scheme}{hidden}{host}{tail}")
}

/// Fails, saying what to do, unless one of `subjects` (those of `stream`)
/// takes `subject`, a subject under `prefix`.
fn stream_takes(
    stream: &str,
    subjects: &[String],
    prefix: &str,
    subject: &str,
) -> anyhow::Result<()> {
    if subjects.iter().any(|s| subject_matches(s, subject)) {
        return Ok(());
    }
    anyhow::bail!(
        "the stream {stream} takes the subjects {subjects:?}, not {subject}: give \
         --nats-stream another name, or add {prefix}.> to that stream's subjects"
    )
}

/// Whether a NATS subject filter (`*` one token, `>` the rest, at least
/// one token) takes `subject`.
fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for part in filter.split('.') {
        match (part, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (part, Some(token)) if part == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

/// A wait that doubles after each failure, from `first` up to `max`.
#[derive(Debug, Clone)]
struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Backoff {
        let first = first.min(max);
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The wait before the next attempt.
    fn next(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_filters_take_what_nats_would_route_to_them() {
        use super::subject_matches as takes;
        assert!(takes("relaycb.>", "relaycb.1253.t1.TaskStart"));
        assert!(takes("relaycb.*.*.*", "relaycb.1253.t1.TaskStart"));
        assert!(takes(
            "relaycb.1253.t1.TaskStart",
            "relaycb.1253.t1.TaskStart"
        ));
        assert!(takes(">", "relaycb.1253.t1.TaskStart"));
        assert!(!takes("relaycb.>", "relaycb"));
        assert!(!takes("other.>", "relaycb.1253.t1.TaskStart"));
        assert!(!takes("relaycb.*", "relaycb.1253.t1.TaskStart"));
        assert!(!takes(
            "relaycb.1253.t1.TaskStart.x",
            "relaycb.1253.t1.TaskStart"
        ));
        assert!(!takes("relaycbx.>", "relaycb.1253.t1.TaskStart"));
    }

    #[test]
    fn credentials_never_reach_the_log() {
        use super::without_credentials as shown;
        assert_eq!(shown("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            shown("nats://s3cret@nats.internal:4222"),
            "nats://***@nats.internal:4222"
        );
        assert_eq!(
            shown("nats://user:pw@nats.internal"),
            "nats://***@nats.internal"
        );
        assert_eq!(shown("user:pw@nats.internal"), "***@nats.internal");
        assert_eq!(shown("tls://a@b/x?y=1"), "tls://***@b/x?y=1");
    }

    #[test]
    fn a_stream_for_other_subjects_is_named_with_what_to_do() {
        let subjects = ["old.>".to_owned()];
        let error = super::stream_takes("RELAYCB", &subjects, "new", "new.1.t1.TaskStart")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "the stream RELAYCB takes the subjects [\"old.>\"], not new.1.t1.TaskStart: \
             give --nats-stream another name, or add new.> to that stream's subjects"
        );
        let subjects = ["old.>".to_owned(), "new.>".to_owned()];
        assert!(super::stream_takes("RELAYCB", &subjects, "new", "new.1.t1.TaskStart").is_ok());
    }

    #[test]
    fn the_wait_doubles_up_to_the_cap_and_starts_again_after_a_success() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let waits: Vec<u64> = (0..5).map(|_| backoff.next().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next(), Duration::from_millis(100));
        let mut short = Backoff::new(Duration::from_millis(100), Duration::from_millis(10));
        assert_eq!(
            short.next(),
            Duration::from_millis(10),
            "the cap wins over the first wait"
        );
    }
}
