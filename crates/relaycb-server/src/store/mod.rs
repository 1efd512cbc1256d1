//! Durable storage of accepted and refused callbacks.
//!
//! Writes go through one writer ([`writer`]) that owns the only write
//! connection and commits every waiting request in one transaction (group
//! commit); a request is answered only after the commit that holds it.
//! Reads go through a [`Reader`] on their own connection.
//!
//! The database is reached through two small traits, [`Backend`] for the
//! writer and [`Reader`] for queries: [`sqlite`] is the embedded default,
//! [`postgres`] a database that several servers share.
//!
//! When publishing to NATS is configured, the store also keeps an outbox:
//! the ids of new events not yet acknowledged by JetStream. A row is added
//! in the transaction that inserts its event (never for a retry), read in
//! event id order by the publisher, and removed through the writer once
//! JetStream acknowledged it. Events stored while publishing was off have
//! no outbox row and are not published later.

mod checkpoint;
#[cfg(test)]
mod contract;
mod heads;
pub(crate) mod postgres;
pub(crate) mod sqlite;
pub(crate) mod writer;

use std::sync::Arc;

use crate::config::Database;

use relaycb_core::Callback;
use serde::Serialize;
use serde_json::Value;

pub(crate) use writer::StoreHandle;

/// What can go wrong in the store. Shown in logs only.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused an operation. The message says it whole, so
    /// the client's error is not also given as the source, which would
    /// print it twice in a chain.
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    /// The PostgreSQL server refused an operation or could not be reached.
    #[error("postgres: {}", relaycb_pg::describe(.0))]
    Postgres(::postgres::Error),
    /// The PostgreSQL URL asks for what relaycb does not do.
    #[error("postgres: {0}")]
    PostgresUrl(relaycb_pg::Error),
    /// Another server's events could not all be read before writing.
    #[error("the store holds events up to id {stored} but only {folded} could be read back")]
    Behind {
        /// The highest stored id.
        stored: i64,
        /// The highest id folded into task state.
        folded: i64,
    },
    /// A stored value could not be read back.
    #[error("stored {what} is not valid JSON: {source}")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// The database answered something other than what was asked for.
    #[error("the store answered an unreadable {0}")]
    Unreadable(&'static str),
    /// The batch holding this write could not be committed (the cause is
    /// logged once by the writer).
    #[error("the write could not be committed")]
    Failed,
    /// The writer has stopped (the server is shutting down).
    #[error("the store writer has stopped")]
    Closed,
    /// The writer did not answer in time.
    #[error("the store writer did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// A thread of the store could not be started.
    #[error("cannot start a store thread: {0}")]
    Thread(std::io::Error),
    /// The folder of the SQLite database does not exist.
    #[error("the folder {0} does not exist: create it, or give --db a file in a folder that does")]
    NoFolder(String),
    /// Another server writes to this SQLite database.
    #[error(
        "{0} is in use by another relaycb-server: only one server may write to a SQLite store (servers that share a store use PostgreSQL)"
    )]
    InUse(String),
    /// The SQLite database file could not be locked for this server.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The database file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// A blocking read task failed.
    #[error("read task failed: {0}")]
    Join(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::Sqlite(error)
    }
}

impl From<::postgres::Error> for StoreError {
    fn from(error: ::postgres::Error) -> StoreError {
        StoreError::Postgres(error)
    }
}

impl From<relaycb_pg::Error> for StoreError {
    fn from(error: relaycb_pg::Error) -> StoreError {
        match error {
            relaycb_pg::Error::Url(error) => StoreError::Postgres(error),
            other => StoreError::PostgresUrl(other),
        }
    }
}

/// An accepted callback on its way to the store.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub(crate) dedup_key: String,
    pub(crate) task_id: Option<String>,
    pub(crate) callback_event: String,
    pub(crate) event_time: Option<i64>,
    pub(crate) occurred_at_ms: Option<i64>,
    pub(crate) received_at_ms: i64,
    pub(crate) raw: Vec<u8>,
    pub(crate) decoded: String,
    pub(crate) deviations: String,
    pub(crate) headers: String,
    pub(crate) peer: Option<String>,
    /// The decoded callback, for the task tracker.
    pub(crate) callback: Callback,
    /// The dedup key itself, for the task tracker.
    pub(crate) key: relaycb_core::DedupKey,
}

/// A refused callback on its way to the store.
#[derive(Debug, Clone)]
pub(crate) struct NewRejected {
    pub(crate) received_at_ms: i64,
    pub(crate) status: u16,
    pub(crate) category: String,
    /// The short fixed name of what was wrong: the `reason` label of the
    /// rejections metric.
    pub(crate) kind: String,
    pub(crate) reason: String,
    pub(crate) raw: Vec<u8>,
    pub(crate) truncated: bool,
    pub(crate) headers: String,
    pub(crate) peer: Option<String>,
}

/// What an upsert of an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upserted {
    /// The row id (the first arrival's).
    pub(crate) id: i64,
    /// Deliveries so far, this one included; 1 for a new event.
    pub(crate) deliveries: i64,
    /// The task the event was folded into, if known.
    pub(crate) task: Option<String>,
}

/// One stored event, as read back.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventRow {
    pub(crate) id: i64,
    pub(crate) dedup_key: String,
    pub(crate) task_id: Option<String>,
    /// The task it was folded into when the body had no `task_id`.
    pub(crate) attributed_to: Option<String>,
    pub(crate) callback_event: String,
    pub(crate) event_time: Option<i64>,
    pub(crate) occurred_at_ms: Option<i64>,
    pub(crate) received_at_ms: i64,
    pub(crate) last_received_at_ms: i64,
    pub(crate) deliveries: i64,
    pub(crate) decoded: Value,
    pub(crate) deviations: Value,
    pub(crate) headers: Value,
    pub(crate) peer: Option<String>,
    /// Only filled when one event is read.
    #[serde(skip)]
    pub(crate) raw: Option<Vec<u8>>,
}

/// One refused callback, as read back.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RejectedRow {
    pub(crate) id: i64,
    pub(crate) received_at_ms: i64,
    pub(crate) status: u16,
    pub(crate) category: String,
    /// `None` for a refusal stored before kinds were.
    pub(crate) kind: Option<String>,
    pub(crate) reason: String,
    pub(crate) truncated: bool,
    pub(crate) size: i64,
    pub(crate) headers: Value,
    pub(crate) peer: Option<String>,
    #[serde(skip)]
    pub(crate) raw: Option<Vec<u8>>,
}

/// What to list of the refused callbacks, newest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct RejectedQuery {
    /// Only this kind (the metric's `reason` label).
    pub(crate) kind: Option<String>,
    /// Only this category.
    pub(crate) category: Option<String>,
    /// Only ids below this one.
    pub(crate) before_id: Option<i64>,
    pub(crate) limit: usize,
}

/// What to list of the stored events, newest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct EventQuery {
    pub(crate) task_id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) since_ms: Option<i64>,
    /// Only ids below this one.
    pub(crate) before_id: Option<i64>,
    pub(crate) limit: usize,
}

/// What the tracker needs of each stored event to rebuild task state.
#[derive(Debug, Clone)]
pub(crate) struct ReplayRow {
    pub(crate) id: i64,
    pub(crate) dedup_key: String,
    pub(crate) received_at_ms: i64,
    /// `None` when the stored event no longer decodes (a warning was logged).
    pub(crate) callback: Option<Callback>,
}

/// The callback of a stored event: its stored decoded form, or, when that
/// is from another version, the raw body decoded again (it is the
/// authority); `None`, with a warning, when neither reads.
fn stored_callback(
    id: i64,
    decoded: &str,
    raw: impl FnOnce() -> Result<Vec<u8>, StoreError>,
) -> Result<Option<Callback>, StoreError> {
    if let Ok(callback) = serde_json::from_str(decoded) {
        return Ok(Some(callback));
    }
    match relaycb_core::decode(&raw()?) {
        Ok(d) => Ok(Some(d.callback)),
        Err(error) => {
            tracing::warn!(id, %error, "stored event no longer decodes; skipped");
            Ok(None)
        }
    }
}

/// An open store: the writer's side and the reader.
pub(crate) type Opened = (Box<dyn Backend>, Arc<dyn Reader>);

/// Opens the store named by `db`, creating and migrating it.
pub(crate) fn open(db: &Database) -> Result<Opened, StoreError> {
    Ok(match db {
        Database::Sqlite(path) => {
            let (writer, reader) = sqlite::open(path)?;
            (Box::new(writer), Arc::new(reader))
        }
        Database::Postgres(url) => {
            let (writer, reader) = postgres::open(url)?;
            (Box::new(writer), Arc::new(reader))
        }
    })
}

/// One event waiting in the outbox, with what publishing it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxRow {
    /// The event's row id; the outbox is read in this order.
    pub(crate) event_id: i64,
    pub(crate) dedup_key: String,
    /// `task_id`, else the task the event was attributed to.
    pub(crate) task_id: Option<String>,
    pub(crate) callback_event: String,
    pub(crate) occurred_at_ms: Option<i64>,
    pub(crate) received_at_ms: i64,
    /// The normalised callback: JSON text of relaycb-core's `Callback`, as
    /// stored in `events.decoded`.
    pub(crate) decoded: String,
}

/// The writer's side of a database: one connection, one transaction at a
/// time. Every method but `begin`, `commit` and `rollback` runs inside a
/// transaction that `begin` opened.
pub(crate) trait Backend: Send + 'static {
    /// Opens a transaction. On a store shared with other servers this also
    /// waits for theirs to end, so that event ids are committed in id order.
    /// `folded` is the highest event id this server has folded into task
    /// state: a backend that learns of newer events in the same round trip
    /// keeps them for [`Backend::take_newer`].
    fn begin(&mut self, folded: i64) -> Result<(), StoreError>;
    /// The highest event id committed so far (0 for none), as seen inside
    /// the transaction: every event up to it must be folded into task state
    /// before this transaction's own.
    fn last_event_id(&mut self) -> Result<i64, StoreError>;
    /// Events above `begin`'s `folded`, in id order, that `begin` read on
    /// its way (another server's, on a shared store). They may stop short
    /// of [`Backend::last_event_id`]; the rest is read through the reader.
    fn take_newer(&mut self) -> Vec<ReplayRow> {
        Vec::new()
    }
    /// Told every event of the transaction, in order, before the first
    /// `upsert_event`: a backend whose round trips are dear may write them
    /// all at once here, as long as `upsert_event` then answers for each as
    /// if it were written then, and ids follow this order.
    fn stage_events(&mut self, events: &[&NewEvent]) -> Result<(), StoreError> {
        let _ = events;
        Ok(())
    }
    /// Inserts an event, or counts one more delivery of the stored one with
    /// the same dedup key.
    fn upsert_event(&mut self, event: &NewEvent) -> Result<Upserted, StoreError>;
    /// Records that an event without `task_id` was folded into a task.
    fn attribute(&mut self, id: i64, task_id: &str) -> Result<(), StoreError>;
    /// Keeps a refused callback; returns its id.
    fn insert_rejected(&mut self, rejected: &NewRejected) -> Result<i64, StoreError>;
    /// Drops the oldest refused callbacks beyond `keep`; returns how many.
    fn trim_rejected(&mut self, keep: u64) -> Result<u64, StoreError>;
    /// Queues a newly inserted event for publishing. Called in the
    /// transaction that inserted it, and only for a new event.
    fn outbox_add(&mut self, event_id: i64) -> Result<(), StoreError>;
    /// Takes published events out of the outbox; returns how many of them
    /// were in it (an id already gone is no error).
    fn outbox_remove(&mut self, event_ids: &[i64]) -> Result<u64, StoreError>;
    /// Writes something small, to prove the store takes writes.
    fn probe(&mut self, now_ms: i64) -> Result<(), StoreError>;
    /// Makes the transaction durable.
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Abandons the transaction.
    fn rollback(&mut self);
    /// Flushes and closes the connection.
    fn close(self: Box<Self>) -> Result<(), StoreError>;
}

/// The query side of a database. Methods block; call them from
/// `spawn_blocking`.
pub(crate) trait Reader: Send + Sync + 'static {
    /// Calls `each` with every stored event whose id is above `after_id`,
    /// in id order.
    fn replay_after(
        &self,
        after_id: i64,
        each: &mut dyn FnMut(ReplayRow),
    ) -> Result<(), StoreError>;
    /// Extra deliveries (retries) per task.
    fn duplicates_by_task(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Events matching the query, newest first.
    fn events(&self, query: &EventQuery) -> Result<Vec<EventRow>, StoreError>;
    /// One event with its raw body.
    fn event(&self, id: i64) -> Result<Option<EventRow>, StoreError>;
    /// A task's events in event order (event time where known, else arrival).
    /// The latest `limit` events of a task in event order (event time where
    /// known, else arrival), and how many events the task has.
    fn latest_of_task(
        &self,
        task_id: &str,
        limit: usize,
    ) -> Result<(Vec<EventRow>, u64), StoreError>;
    /// Refused callbacks matching the query, newest first.
    fn rejected(&self, query: &RejectedQuery) -> Result<Vec<RejectedRow>, StoreError>;
    /// One refused callback with its raw body.
    fn rejected_one(&self, id: i64) -> Result<Option<RejectedRow>, StoreError>;
    /// How many refused callbacks were dropped to keep the store bounded.
    fn rejected_dropped(&self) -> Result<u64, StoreError>;
    /// At most `limit` outbox entries whose event id is above `after_id`,
    /// in event id order.
    fn outbox_pending(&self, after_id: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError>;
    /// How many events wait in the outbox.
    fn outbox_len(&self) -> Result<u64, StoreError>;
}
