//! The single writer: a dedicated thread that owns the write connection,
//! takes every request waiting in its channel, writes them all in one
//! transaction, commits, and only then answers each one (group commit).
//!
//! One fsync is shared by everything that arrived while the previous
//! commit was running, so throughput grows with concurrency while every
//! answered write is on disk.
//!
//! With an outbox (publishing to NATS is on), each new event is queued in
//! the outbox in the same transaction, and the publisher is woken after the
//! commit; the publisher's "these are published" goes through here too, in
//! the next batch, so it never competes with ingest for the database.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use relaycb_core::Outcome;
use tokio::sync::{Notify, mpsc, oneshot};

use super::{Backend, NewEvent, NewRejected, Reader, StoreError};
use crate::tasks::TaskBoard;
use crate::telemetry::metrics::Metrics;

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 1024;
/// Requests that may wait for the writer before senders are held back.
const QUEUE: usize = 8192;
/// How long a request waits for its commit before it is answered 503 (the
/// write may still land; Tencent's retry is then recognised as a
/// duplicate). Far inside Tencent's 20 s.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the store did with an accepted callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Row id of the event (the first arrival's for a retry).
    pub(crate) id: i64,
    /// Whether the event was already stored.
    pub(crate) duplicate: bool,
    /// Deliveries so far.
    pub(crate) deliveries: i64,
    /// The task it belongs to, if any.
    pub(crate) task: Option<String>,
}

/// The writer thread; it returns how closing the store went.
type WriterThread = JoinHandle<Result<(), StoreError>>;

enum Command {
    Event(Box<NewEvent>, oneshot::Sender<Result<Stored, StoreError>>),
    Rejected(Box<NewRejected>, oneshot::Sender<Result<i64, StoreError>>),
    Probe(oneshot::Sender<Result<(), StoreError>>),
    Published(Vec<i64>, oneshot::Sender<Result<u64, StoreError>>),
    Shutdown,
}

/// The handle the routes use: writes go to the writer thread, reads to the
/// reader on a blocking thread.
#[derive(Clone)]
pub(crate) struct StoreHandle {
    tx: mpsc::Sender<Command>,
    reader: Arc<dyn Reader>,
    thread: Arc<Mutex<Option<WriterThread>>>,
}

impl StoreHandle {
    /// Starts the writer thread over `backend`. With `outbox`, every new
    /// event is queued for publishing and `outbox` is notified after each
    /// commit that queued some.
    pub(crate) fn spawn(
        backend: Box<dyn Backend>,
        reader: Arc<dyn Reader>,
        board: Arc<TaskBoard>,
        metrics: Arc<Metrics>,
        max_rejected: u64,
        outbox: Option<Arc<Notify>>,
    ) -> std::io::Result<StoreHandle> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            backend,
            reader: reader.clone(),
            board,
            metrics,
            max_rejected,
            outbox,
        };
        let thread = std::thread::Builder::new()
            .name("relaycb-writer".to_owned())
            .spawn(move || writer.run(rx))?;
        Ok(StoreHandle {
            tx,
            reader,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    async fn send<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        match tokio::time::timeout(WRITE_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => Err(StoreError::Timeout(WRITE_TIMEOUT)),
        }
    }

    /// Stores an accepted callback; returns once it is committed.
    pub(crate) async fn accept(&self, event: NewEvent) -> Result<Stored, StoreError> {
        self.send(|reply| Command::Event(Box::new(event), reply))
            .await
    }

    /// Stores a refused callback; returns its id once it is committed.
    pub(crate) async fn reject(&self, rejected: NewRejected) -> Result<i64, StoreError> {
        self.send(|reply| Command::Rejected(Box::new(rejected), reply))
            .await
    }

    /// Commits a small write through the writer: the store takes writes.
    pub(crate) async fn probe(&self) -> Result<(), StoreError> {
        self.send(Command::Probe).await
    }

    /// Takes published events out of the outbox; returns once committed,
    /// with how many were still in it.
    pub(crate) async fn published(&self, event_ids: Vec<i64>) -> Result<u64, StoreError> {
        self.send(|reply| Command::Published(event_ids, reply))
            .await
    }

    /// Runs a query on a blocking thread.
    pub(crate) async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Reader) -> Result<T, StoreError> + Send + 'static,
    {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || query(&*reader))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
    }

    /// Lets the writer commit everything already sent, then closes the
    /// store. Later writes fail with [`StoreError::Closed`].
    pub(crate) async fn close(&self) -> Result<(), StoreError> {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(thread) = thread else {
            return Ok(());
        };
        // A full queue only delays this; a closed one means the writer is gone.
        let _ = self.tx.send(Command::Shutdown).await;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
            .map_err(|_| StoreError::Join("the writer thread panicked".to_owned()))?
    }
}

struct Writer {
    backend: Box<dyn Backend>,
    reader: Arc<dyn Reader>,
    board: Arc<TaskBoard>,
    metrics: Arc<Metrics>,
    max_rejected: u64,
    outbox: Option<Arc<Notify>>,
}

/// What a committed batch changed beyond the events themselves.
#[derive(Default)]
struct Committed {
    /// Tasks of retried events, one entry per retry.
    duplicates: Vec<String>,
    /// Events queued in the outbox.
    queued: u64,
    /// Events taken out of the outbox.
    removed: u64,
}

/// An answer to send once the batch is committed.
enum Reply {
    Event(oneshot::Sender<Result<Stored, StoreError>>, Stored),
    Rejected(oneshot::Sender<Result<i64, StoreError>>, i64),
    Probe(oneshot::Sender<Result<(), StoreError>>),
    Published(oneshot::Sender<Result<u64, StoreError>>, u64),
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) -> Result<(), StoreError> {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            // The transaction is opened before the rest of the batch is
            // taken. On a shared store opening waits for the other servers'
            // transactions, and what arrives meanwhile (the requests the
            // last commit answered, sent again) joins this batch instead of
            // waiting for the next one.
            let opened = self.backend.begin(self.board.last_folded());
            drain(&mut rx, &mut batch);
            let shutdown = batch.iter().any(|c| matches!(c, Command::Shutdown));
            if shutdown {
                // No new requests; those already queued are still written.
                rx.close();
            }
            self.write(&mut batch, opened);
        }
        tracing::info!("store writer drained; closing the store");
        self.backend.close()
    }

    /// Writes one batch in the transaction that `opened` began, and
    /// answers every request in it.
    fn write(&mut self, batch: &mut Vec<Command>, opened: Result<(), StoreError>) {
        let size = batch
            .iter()
            .filter(|c| !matches!(c, Command::Shutdown))
            .count();
        if size == 0 {
            if opened.is_ok() {
                self.backend.rollback();
            }
            batch.clear();
            return;
        }
        let mut replies = Vec::with_capacity(size);
        let mut failed = Vec::new();
        let mut observed = false;
        let result = match opened {
            Ok(()) => self.transaction(batch, &mut replies, &mut failed, &mut observed),
            Err(error) => {
                failed.append(batch);
                Err(error)
            }
        };
        match result {
            Ok(committed) => {
                self.metrics.batch(size);
                for task in committed.duplicates {
                    self.board.count_duplicate(&task);
                }
                self.metrics
                    .outbox_changed(committed.queued, committed.removed);
                if committed.queued > 0
                    && let Some(outbox) = &self.outbox
                {
                    outbox.notify_one();
                }
                for reply in replies {
                    // A requester that gave up is no reason to stop.
                    let _ = match reply {
                        Reply::Event(tx, stored) => tx.send(Ok(stored)).map_err(drop),
                        Reply::Rejected(tx, id) => tx.send(Ok(id)).map_err(drop),
                        Reply::Probe(tx) => tx.send(Ok(())).map_err(drop),
                        Reply::Published(tx, n) => tx.send(Ok(n)).map_err(drop),
                    };
                }
            }
            Err(error) => {
                tracing::error!(%error, batch = size, "store write failed; the batch is refused and will be retried by its senders");
                self.backend.rollback();
                if observed {
                    // The tracker saw events that were rolled back: put it
                    // back as the store is before anyone hears of the failure.
                    if let Err(error) = self.board.reload(&*self.reader) {
                        tracing::error!(%error, "could not rebuild task state after a failed write");
                    }
                }
                for reply in replies {
                    let _ = match reply {
                        Reply::Event(tx, _) => tx.send(Err(StoreError::Failed)).map_err(drop),
                        Reply::Rejected(tx, _) => tx.send(Err(StoreError::Failed)).map_err(drop),
                        Reply::Probe(tx) => tx.send(Err(StoreError::Failed)).map_err(drop),
                        Reply::Published(tx, _) => tx.send(Err(StoreError::Failed)).map_err(drop),
                    };
                }
                for command in failed {
                    fail(command);
                }
            }
        }
    }

    /// Runs the batch's writes and commits them.
    fn transaction(
        &mut self,
        batch: &mut Vec<Command>,
        replies: &mut Vec<Reply>,
        failed: &mut Vec<Command>,
        observed: &mut bool,
    ) -> Result<Committed, StoreError> {
        let mut committed = Committed::default();
        let mut rejected = false;
        let events: Vec<&NewEvent> = batch
            .iter()
            .filter_map(|c| match c {
                Command::Event(event, _) => Some(&**event),
                _ => None,
            })
            .collect();
        let opened = self
            .catch_up()
            .and_then(|()| self.backend.stage_events(&events));
        drop(events);
        if let Err(error) = opened {
            failed.append(batch);
            return Err(error);
        }
        let mut commands = batch.drain(..);
        for command in commands.by_ref() {
            let step = match command {
                Command::Event(event, reply) => match self.event(&event, observed) {
                    Ok(stored) => {
                        if stored.duplicate {
                            committed.duplicates.extend(stored.task.clone());
                        } else if self.outbox.is_some() {
                            committed.queued += 1;
                        }
                        replies.push(Reply::Event(reply, stored));
                        Ok(())
                    }
                    Err(error) => {
                        failed.push(Command::Event(event, reply));
                        Err(error)
                    }
                },
                Command::Rejected(r, reply) => match self.backend.insert_rejected(&r) {
                    Ok(id) => {
                        rejected = true;
                        replies.push(Reply::Rejected(reply, id));
                        Ok(())
                    }
                    Err(error) => {
                        failed.push(Command::Rejected(r, reply));
                        Err(error)
                    }
                },
                Command::Probe(reply) => match self.backend.probe(now_ms()) {
                    Ok(()) => {
                        replies.push(Reply::Probe(reply));
                        Ok(())
                    }
                    Err(error) => {
                        failed.push(Command::Probe(reply));
                        Err(error)
                    }
                },
                Command::Published(ids, reply) => match self.backend.outbox_remove(&ids) {
                    Ok(removed) => {
                        committed.removed += removed;
                        replies.push(Reply::Published(reply, removed));
                        Ok(())
                    }
                    Err(error) => {
                        failed.push(Command::Published(ids, reply));
                        Err(error)
                    }
                },
                Command::Shutdown => Ok(()),
            };
            if let Err(error) = step {
                failed.extend(commands);
                return Err(error);
            }
        }
        drop(commands);
        if rejected {
            let dropped = self.backend.trim_rejected(self.max_rejected)?;
            if dropped > 0 {
                self.metrics.rejected_dropped(dropped);
                tracing::warn!(
                    dropped,
                    keep = self.max_rejected,
                    "rejected store full; oldest refused callbacks dropped"
                );
            }
        }
        self.backend.commit()?;
        Ok(committed)
    }

    /// Folds every event committed before this transaction (by another
    /// server sharing the store), so that this batch's events are folded
    /// after them, in id order, as every server folds them. Those that
    /// `begin` read in its own round trip are folded from there; only a
    /// longer gap is read through the reader.
    fn catch_up(&mut self) -> Result<(), StoreError> {
        let stored = self.backend.last_event_id()?;
        if self.board.last_folded() >= stored {
            return Ok(());
        }
        let mut folded = self.board.fold_newer(&self.backend.take_newer());
        if folded < stored {
            folded = self.board.catch_up(&*self.reader)?;
        }
        if folded < stored {
            return Err(StoreError::Behind { stored, folded });
        }
        Ok(())
    }

    fn event(&mut self, event: &NewEvent, observed: &mut bool) -> Result<Stored, StoreError> {
        let upserted = self.backend.upsert_event(event)?;
        if upserted.deliveries > 1 {
            return Ok(Stored {
                id: upserted.id,
                duplicate: true,
                deliveries: upserted.deliveries,
                task: upserted.task,
            });
        }
        if self.outbox.is_some() {
            self.backend.outbox_add(upserted.id)?;
        }
        // Folded before the commit so that an attribution by source URLs
        // is written in the same transaction; a failed commit reloads the
        // board from the store.
        *observed = true;
        let outcome = self.board.observe(
            upserted.id,
            event.key,
            event.received_at_ms,
            &event.callback,
        );
        let task = match outcome {
            Outcome::Applied {
                task_id,
                attributed_by_sources,
            } => {
                if attributed_by_sources {
                    self.backend.attribute(upserted.id, &task_id)?;
                }
                Some(task_id)
            }
            Outcome::Duplicate { task_id } => Some(task_id),
            Outcome::Unattributed => None,
        };
        Ok(Stored {
            id: upserted.id,
            duplicate: false,
            deliveries: 1,
            task,
        })
    }
}

/// Takes every request already waiting, up to [`MAX_BATCH`].
fn drain(rx: &mut mpsc::Receiver<Command>, batch: &mut Vec<Command>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
}

fn fail(command: Command) {
    let _ = match command {
        Command::Event(_, tx) => tx.send(Err(StoreError::Failed)).map_err(drop),
        Command::Rejected(_, tx) => tx.send(Err(StoreError::Failed)).map_err(drop),
        Command::Probe(tx) => tx.send(Err(StoreError::Failed)).map_err(drop),
        Command::Published(_, tx) => tx.send(Err(StoreError::Failed)).map_err(drop),
        Command::Shutdown => Ok(()),
    };
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;
    use crate::store::{
        EventQuery, EventRow, OutboxRow, RejectedQuery, RejectedRow, ReplayRow, Upserted,
    };

    /// A backend that keeps nothing and whose commits fail while `broken`.
    /// With a gate, each `begin` says it was entered and waits until let go
    /// (as one waits for another server's transaction), then fails if
    /// `refuse_begin`.
    #[derive(Default)]
    struct Fake {
        broken: Arc<AtomicBool>,
        gate: Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>,
        refuse_begin: bool,
        commits: Arc<AtomicUsize>,
        next_id: i64,
    }

    impl Backend for Fake {
        fn begin(&mut self, _: i64) -> Result<(), StoreError> {
            if let Some((entered, go)) = &self.gate {
                let _ = entered.send(());
                // A closed gate lets every later transaction through.
                let _ = go.recv();
            }
            if self.refuse_begin {
                return Err(StoreError::Sqlite(rusqlite::Error::InvalidQuery));
            }
            Ok(())
        }
        fn last_event_id(&mut self) -> Result<i64, StoreError> {
            Ok(0)
        }
        fn upsert_event(&mut self, event: &NewEvent) -> Result<Upserted, StoreError> {
            self.next_id += 1;
            Ok(Upserted {
                id: self.next_id,
                deliveries: 1,
                task: event.task_id.clone(),
            })
        }
        fn attribute(&mut self, _: i64, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        fn insert_rejected(&mut self, _: &NewRejected) -> Result<i64, StoreError> {
            Ok(1)
        }
        fn trim_rejected(&mut self, _: u64) -> Result<u64, StoreError> {
            Ok(0)
        }
        fn outbox_add(&mut self, _: i64) -> Result<(), StoreError> {
            Ok(())
        }
        fn outbox_remove(&mut self, ids: &[i64]) -> Result<u64, StoreError> {
            Ok(ids.len() as u64)
        }
        fn probe(&mut self, _: i64) -> Result<(), StoreError> {
            Ok(())
        }
        fn commit(&mut self) -> Result<(), StoreError> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(StoreError::Sqlite(rusqlite::Error::InvalidQuery));
            }
            self.commits.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn rollback(&mut self) {}
        fn close(self: Box<Self>) -> Result<(), StoreError> {
            Ok(())
        }
    }

    /// A store that holds nothing, as after a rolled back first write.
    struct Empty;

    impl Reader for Empty {
        fn replay_after(&self, _: i64, _: &mut dyn FnMut(ReplayRow)) -> Result<(), StoreError> {
            Ok(())
        }
        fn duplicates_by_task(&self) -> Result<Vec<(String, u64)>, StoreError> {
            Ok(Vec::new())
        }
        fn events(&self, _: &EventQuery) -> Result<Vec<EventRow>, StoreError> {
            Ok(Vec::new())
        }
        fn event(&self, _: i64) -> Result<Option<EventRow>, StoreError> {
            Ok(None)
        }
        fn latest_of_task(&self, _: &str, _: usize) -> Result<(Vec<EventRow>, u64), StoreError> {
            Ok((Vec::new(), 0))
        }
        fn rejected(&self, _: &RejectedQuery) -> Result<Vec<RejectedRow>, StoreError> {
            Ok(Vec::new())
        }
        fn rejected_one(&self, _: i64) -> Result<Option<RejectedRow>, StoreError> {
            Ok(None)
        }
        fn rejected_dropped(&self) -> Result<u64, StoreError> {
            Ok(0)
        }
        fn outbox_pending(&self, _: i64, _: usize) -> Result<Vec<OutboxRow>, StoreError> {
            Ok(Vec::new())
        }
        fn outbox_len(&self) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    fn event() -> NewEvent {
        let body = br#"{"callback_event":"TaskStart","event_type":314,"task_id":"7"}"#;
        let decoded = relaycb_core::decode(body).unwrap();
        NewEvent {
            dedup_key: String::new(),
            task_id: Some("7".to_owned()),
            callback_event: "TaskStart".to_owned(),
            event_time: None,
            occurred_at_ms: None,
            received_at_ms: 1,
            raw: body.to_vec(),
            decoded: String::new(),
            deviations: "[]".to_owned(),
            headers: "{}".to_owned(),
            peer: None,
            key: relaycb_core::DedupKey::of_body(body).unwrap(),
            callback: decoded.callback,
        }
    }

    /// Sends one request, and nine more while the writer waits in `begin`
    /// for it; returns the answers and how many commits there were.
    async fn ten_requests_behind_a_slow_begin(
        refuse_begin: bool,
    ) -> (Vec<Result<Stored, StoreError>>, usize) {
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel();
        let commits = Arc::new(AtomicUsize::new(0));
        let store = StoreHandle::spawn(
            Box::new(Fake {
                gate: Some((entered_tx, go_rx)),
                refuse_begin,
                commits: commits.clone(),
                ..Fake::default()
            }),
            Arc::new(Empty),
            Arc::new(TaskBoard::default()),
            Arc::new(Metrics::default()),
            10,
            None,
        )
        .unwrap();
        let first = tokio::spawn({
            let store = store.clone();
            async move { store.accept(event()).await }
        });
        tokio::task::spawn_blocking(move || entered.recv().unwrap())
            .await
            .unwrap();
        let rest: Vec<_> = (0..9)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.accept(event()).await })
            })
            .collect();
        // Let them reach the writer's queue, then open the gate for good.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(go);
        let mut answers = vec![first.await.unwrap()];
        for request in rest {
            answers.push(request.await.unwrap());
        }
        let _ = store.close().await;
        (answers, commits.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn requests_that_arrive_while_a_transaction_opens_join_its_batch() {
        let (answers, commits) = ten_requests_behind_a_slow_begin(false).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(commits, 1, "all ten are committed together");
    }

    #[tokio::test]
    async fn a_transaction_that_cannot_open_refuses_its_whole_batch() {
        let (answers, commits) = ten_requests_behind_a_slow_begin(true).await;
        assert_eq!(commits, 0);
        assert_eq!(answers.len(), 10);
        assert!(
            answers.iter().all(|a| matches!(a, Err(StoreError::Failed))),
            "{answers:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_commit_answers_an_error_and_forgets_what_it_folded() {
        let broken = Arc::new(AtomicBool::new(true));
        let board = Arc::new(TaskBoard::default());
        let store = StoreHandle::spawn(
            Box::new(Fake {
                broken: broken.clone(),
                ..Fake::default()
            }),
            Arc::new(Empty),
            board.clone(),
            Arc::new(Metrics::default()),
            10,
            None,
        )
        .unwrap();

        let refused = store.accept(event()).await;
        assert!(matches!(refused, Err(StoreError::Failed)), "{refused:?}");
        assert!(
            board.task("7", 0).is_none(),
            "a write that was not committed must not show in task state"
        );

        broken.store(false, Ordering::SeqCst);
        let stored = store.accept(event()).await.unwrap();
        assert!(!stored.duplicate);
        assert_eq!(board.task("7", 0).unwrap().starts, 1);
        store.close().await.unwrap();
        assert!(matches!(
            store.accept(event()).await,
            Err(StoreError::Closed)
        ));
    }
}
