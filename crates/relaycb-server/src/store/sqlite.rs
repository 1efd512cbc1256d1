//! The embedded SQLite store: WAL journal, `synchronous = FULL`, schema
//! migrations run on open, the WAL checkpointed on a thread of its own
//! ([`super::checkpoint`]).
//!
//! The `events` and `rejected` tables are read by `relaycb export` and
//! `relaycb analyze` as well: their column names and meanings are a
//! contract. New columns may be added; none may change meaning.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use super::checkpoint::{self, Checkpointer};
use super::heads::{PendingHeads, TaskHeads};
use super::{
    Backend, EventQuery, EventRow, NewEvent, NewRejected, OutboxRow, Reader, RejectedQuery,
    RejectedRow, ReplayRow, StoreError, Upserted,
};

/// Schema migrations, applied in order; `PRAGMA user_version` counts those
/// applied. Append only.
const MIGRATIONS: &[&str] = &[
    // 1: events, rejected and a small key-value table.
    "
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        dedup_key TEXT NOT NULL UNIQUE,
        task_id TEXT,
        callback_event TEXT NOT NULL,
        event_time INTEGER,
        received_at_ms INTEGER NOT NULL,
        last_received_at_ms INTEGER NOT NULL,
        deliveries INTEGER NOT NULL,
        raw BLOB NOT NULL,
        decoded TEXT NOT NULL,
        deviations TEXT NOT NULL,
        headers TEXT NOT NULL,
        peer TEXT,
        occurred_at_ms INTEGER,
        attributed_to TEXT
    );
    CREATE INDEX events_task_id ON events (task_id, id);
    CREATE INDEX events_attributed_to ON events (attributed_to, id);
    CREATE INDEX events_callback_event ON events (callback_event, id);
    CREATE TABLE rejected (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at_ms INTEGER NOT NULL,
        status INTEGER NOT NULL,
        category TEXT NOT NULL,
        reason TEXT NOT NULL,
        raw BLOB NOT NULL,
        truncated INTEGER NOT NULL,
        headers TEXT NOT NULL,
        peer TEXT
    );
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    ",
    // 2: events stored but not yet acknowledged by JetStream.
    "
    CREATE TABLE outbox (
        event_id INTEGER PRIMARY KEY REFERENCES events (id)
    );
    ",
    // 3: only the rare events attributed by their sources are indexed by
    // `attributed_to`, so that an ordinary insert updates one index less.
    "
    DROP INDEX events_attributed_to;
    CREATE INDEX events_attributed_to ON events (attributed_to, id)
        WHERE attributed_to IS NOT NULL;
    ",
    // 4: a retry is found through an index that leads with the event's own
    // time (part of what the key hashes, so the pair is unique exactly when
    // the key is). New events then land at the end of that index instead
    // of on a random page each, and a batch writes a few pages of it to the
    // WAL instead of one an event. SQLite cannot drop a column's UNIQUE, so
    // the table is copied.
    "
    CREATE TABLE events_v4 (
        id INTEGER PRIMARY KEY,
        dedup_key TEXT NOT NULL,
        task_id TEXT,
        callback_event TEXT NOT NULL,
        event_time INTEGER,
        received_at_ms INTEGER NOT NULL,
        last_received_at_ms INTEGER NOT NULL,
        deliveries INTEGER NOT NULL,
        raw BLOB NOT NULL,
        decoded TEXT NOT NULL,
        deviations TEXT NOT NULL,
        headers TEXT NOT NULL,
        peer TEXT,
        occurred_at_ms INTEGER,
        attributed_to TEXT
    );
    INSERT INTO events_v4 SELECT id, dedup_key, task_id, callback_event, event_time,
        received_at_ms, last_received_at_ms, deliveries, raw, decoded, deviations, headers,
        peer, occurred_at_ms, attributed_to
    FROM events ORDER BY id;
    DROP TABLE events;
    ALTER TABLE events_v4 RENAME TO events;
    CREATE UNIQUE INDEX events_dedup ON events (coalesce(event_time, -1), dedup_key);
    CREATE INDEX events_task_id ON events (task_id, id);
    CREATE INDEX events_attributed_to ON events (attributed_to, id)
        WHERE attributed_to IS NOT NULL;
    CREATE INDEX events_callback_event ON events (callback_event, id);
    ",
    // 5: each event names the previous event of its task (`task_prev`), and
    // a task's events are found by walking that chain back from its newest
    // one (see `heads`), instead of through indexes on `task_id` and
    // `attributed_to` that cost every insert a write to a random page.
    "
    ALTER TABLE events ADD COLUMN task_prev INTEGER;
    UPDATE events SET task_prev = chained.prev
    FROM (
        SELECT id, lag(id) OVER (PARTITION BY coalesce(attributed_to, task_id) ORDER BY id) AS prev
        FROM events WHERE coalesce(attributed_to, task_id) IS NOT NULL
    ) AS chained
    WHERE events.id = chained.id AND chained.prev IS NOT NULL;
    DROP INDEX events_task_id;
    DROP INDEX events_attributed_to;
    ",
    // 6: a refusal's kind, the `reason` label of the rejections metric, so
    // that a refusal counted there can be found here.
    "
    ALTER TABLE rejected ADD COLUMN kind TEXT;
    ",
];

/// Opens (creating if needed) the database file with the pragmas every
/// connection needs.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(journal_mode = %mode, "sqlite did not switch to WAL");
    }
    // FULL: a commit is on disk before the writer answers anyone.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Applies the migrations not applied yet up to `version` (a store of an
/// older schema, in tests).
fn migrate_to(conn: &mut Connection, version: usize) -> Result<(), StoreError> {
    let applied: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let pending = MIGRATIONS.iter().enumerate().take(version);
    for (index, sql) in pending.skip(applied as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied store migration");
    }
    Ok(())
}

/// Opens the database at `path`: the writer's connection and the reader.
/// Fails with [`StoreError::InUse`] while another server has it open.
pub(crate) fn open(path: &Path) -> Result<(SqliteWriter, SqliteReader), StoreError> {
    // SQLite would only say that it cannot open the file.
    if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty())
        && !folder.is_dir()
    {
        return Err(StoreError::NoFolder(folder.display().to_string()));
    }
    let mut conn = connect(path)?;
    let lock = lock(path)?;
    migrate(&mut conn)?;
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        checkpoint::WRITER_AUTOCHECKPOINT_PAGES,
    )?;
    let heads = Arc::new(load_heads(&conn)?);
    let checkpointer = Checkpointer::start(checkpoint::connect(path)?)?;
    let read = connect(path)?;
    read.pragma_update(None, "query_only", true)?;
    Ok((
        SqliteWriter {
            conn,
            checkpointer,
            heads: heads.clone(),
            pending: PendingHeads::default(),
            _lock: lock,
        },
        SqliteReader {
            conn: Mutex::new(read),
            heads,
        },
    ))
}

/// Takes the database file for this server alone, for as long as the
/// returned file is open. Two servers writing one file would each extend
/// the task chains from the heads they know, and lose the other's events
/// from the task queries; SQLite's own locks keep only their transactions
/// apart. The lock is advisory (`flock`), so readers such as `relaycb
/// analyze` and `relaycb export` are not kept out.
fn lock(path: &Path) -> Result<std::fs::File, StoreError> {
    let shown = || path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| StoreError::Lock {
        path: shown(),
        source,
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse(shown())),
        Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Lock {
            path: shown(),
            source,
        }),
    }
}

/// The newest event of every task, read from the store: one pass over the
/// events, in id order.
fn load_heads(conn: &Connection) -> Result<TaskHeads, StoreError> {
    let started = std::time::Instant::now();
    let heads = TaskHeads::default();
    let mut stmt = conn.prepare(
        "SELECT id, coalesce(attributed_to, task_id) FROM events
         WHERE coalesce(attributed_to, task_id) IS NOT NULL ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let task = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
        heads.load(task, id);
    }
    tracing::info!(
        tasks = heads.len(),
        ms = started.elapsed().as_millis() as u64,
        "task chains loaded from the store"
    );
    Ok(heads)
}

/// The writer's connection, the thread that checkpoints its WAL, and the
/// task chains it extends.
pub(crate) struct SqliteWriter {
    conn: Connection,
    checkpointer: Checkpointer,
    heads: Arc<TaskHeads>,
    /// Heads moved by the open transaction.
    pending: PendingHeads,
    /// Held for this server alone while it is open (see [`lock`]).
    _lock: std::fs::File,
}

impl Backend for SqliteWriter {
    fn begin(&mut self, _folded: i64) -> Result<(), StoreError> {
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(())
    }

    fn last_event_id(&mut self) -> Result<i64, StoreError> {
        let id = self
            .conn
            .prepare_cached("SELECT coalesce(max(id), 0) FROM events")?
            .query_row([], |r| r.get(0))?;
        Ok(id)
    }

    /// A plain insert for a new event, and an update only for a retry: an
    /// upsert with `RETURNING` costs SQLite a temporary table and a
    /// statement journal on every call, retries or not.
    fn upsert_event(&mut self, e: &NewEvent) -> Result<Upserted, StoreError> {
        let chain = e.task_id.as_deref().map(|task| self.heads.key(task));
        let task_prev = chain.and_then(|key| self.pending.head(&self.heads, key));
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO events (dedup_key, task_id, callback_event, event_time,
                     received_at_ms, last_received_at_ms, deliveries, raw, decoded, deviations,
                     headers, peer, occurred_at_ms, task_prev)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (coalesce(event_time, -1), dedup_key) DO NOTHING",
            )?
            .execute(params![
                e.dedup_key,
                e.task_id,
                e.callback_event,
                e.event_time,
                e.received_at_ms,
                e.raw,
                e.decoded,
                e.deviations,
                e.headers,
                e.peer,
                e.occurred_at_ms,
                task_prev,
            ])?;
        if inserted == 1 {
            let id = self.conn.last_insert_rowid();
            if let Some(key) = chain {
                self.pending.advance(key, id);
            }
            return Ok(Upserted {
                id,
                deliveries: 1,
                task: e.task_id.clone(),
            });
        }
        let retried = self
            .conn
            .prepare_cached(
                "UPDATE events SET
                     deliveries = deliveries + 1,
                     last_received_at_ms = max(last_received_at_ms, ?2)
                 WHERE coalesce(event_time, -1) = coalesce(?3, -1) AND dedup_key = ?1
                 RETURNING id, deliveries, coalesce(attributed_to, task_id)",
            )?
            .query_row(params![e.dedup_key, e.received_at_ms, e.event_time], |r| {
                Ok(Upserted {
                    id: r.get(0)?,
                    deliveries: r.get(1)?,
                    task: r.get(2)?,
                })
            })?;
        Ok(retried)
    }

    /// The event joins the task's chain: it is the newest row, so it
    /// follows the task's head.
    fn attribute(&mut self, id: i64, task_id: &str) -> Result<(), StoreError> {
        let key = self.heads.key(task_id);
        let task_prev = self.pending.head(&self.heads, key);
        self.conn
            .prepare_cached("UPDATE events SET attributed_to = ?2, task_prev = ?3 WHERE id = ?1")?
            .execute(params![id, task_id, task_prev])?;
        self.pending.advance(key, id);
        Ok(())
    }

    fn insert_rejected(&mut self, r: &NewRejected) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO rejected (received_at_ms, status, category, reason, raw, truncated,
                     headers, peer, kind)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                r.received_at_ms,
                r.status,
                r.category,
                r.reason,
                r.raw,
                r.truncated,
                r.headers,
                r.peer,
                r.kind,
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    fn trim_rejected(&mut self, keep: u64) -> Result<u64, StoreError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let dropped = self
            .conn
            .prepare_cached(
                // Ids are contiguous: AUTOINCREMENT never reuses one, a rolled
                // back insert takes none, and only this trim deletes, oldest
                // first. So everything at or below max - keep is the excess.
                "DELETE FROM rejected WHERE id <= (SELECT max(id) FROM rejected) - ?1",
            )?
            .execute([keep])?;
        if dropped > 0 {
            self.conn
                .prepare_cached(
                    "INSERT INTO meta (key, value) VALUES ('rejected_dropped', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
                )?
                .execute([dropped as i64])?;
        }
        Ok(dropped as u64)
    }

    fn outbox_add(&mut self, event_id: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT INTO outbox (event_id) VALUES (?1)")?
            .execute([event_id])?;
        Ok(())
    }

    fn outbox_remove(&mut self, event_ids: &[i64]) -> Result<u64, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM outbox WHERE event_id = ?1")?;
        let mut removed = 0;
        for id in event_ids {
            removed += stmt.execute([id])? as u64;
        }
        Ok(removed)
    }

    fn probe(&mut self, now_ms: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('probed_at_ms', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([now_ms])?;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.heads.publish(&mut self.pending);
        Ok(())
    }

    fn rollback(&mut self) {
        self.pending.clear();
        if let Err(error) = self.conn.execute_batch("ROLLBACK") {
            tracing::warn!(%error, "rollback failed");
        }
    }

    fn close(mut self: Box<Self>) -> Result<(), StoreError> {
        self.checkpointer.stop();
        // A passive checkpoint folds the WAL back into the main file so that
        // a copied database file is complete; failing it loses nothing.
        if let Err(error) = self.conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::warn!(%error, "checkpoint on close failed");
        }
        let SqliteWriter { conn, .. } = *self;
        conn.close().map_err(|(_, e)| StoreError::Sqlite(e))
    }
}

/// The query connection.
///
/// FIXME: one connection serialises API reads; a small pool would let
/// several run at once (WAL allows it) if the API ever gets busy.
pub(crate) struct SqliteReader {
    conn: Mutex<Connection>,
    heads: Arc<TaskHeads>,
}

impl SqliteReader {
    /// `/api/events` for one task: its chain walked back from the newest
    /// event, or from the cursor when the cursor is one of its events (the
    /// last of the previous page).
    fn task_events(&self, task_id: &str, q: &EventQuery) -> Result<Vec<EventRow>, StoreError> {
        let mut out = Vec::new();
        if q.limit == 0 {
            return Ok(out);
        }
        self.walk(task_id, q.before_id, &mut |r| {
            let event: &str = r.get_ref(4)?.as_str().map_err(rusqlite::Error::from)?;
            let received_at_ms: i64 = r.get(7)?;
            if q.event.as_deref().is_none_or(|e| e == event)
                && q.since_ms.is_none_or(|since| received_at_ms >= since)
            {
                out.push(event_row(r, false)?);
            }
            Ok(out.len() < q.limit)
        })?;
        Ok(out)
    }

    /// Calls `each` with the rows of `task_id` (selected with
    /// [`EVENT_COLUMNS`]), newest first, below `before_id` if given, until
    /// it returns `false`.
    fn walk(
        &self,
        task_id: &str,
        before_id: Option<i64>,
        each: &mut dyn FnMut(&Row<'_>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let Some(head) = self.heads.of_task(task_id) else {
            return Ok(());
        };
        self.with(|conn| {
            let sql = format!(
                "SELECT {EVENT_COLUMNS}, task_prev, coalesce(attributed_to, task_id)
                 FROM events WHERE id = ?1"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut next = Some(head);
            if let Some(before) = before_id {
                let mut rows = stmt.query([before])?;
                if let Some(r) = rows.next()?
                    && r.get_ref(15)?.as_str().ok() == Some(task_id)
                {
                    next = r.get(14)?;
                }
            }
            while let Some(id) = next {
                let mut rows = stmt.query([id])?;
                let Some(r) = rows.next()? else {
                    tracing::warn!(id, task_id, "a task's chain names an event that is not stored; its older events are not listed");
                    break;
                };
                let prev: Option<i64> = r.get(14)?;
                next = prev.filter(|&p| p < id);
                if prev.is_some() && next.is_none() {
                    tracing::warn!(id, task_id, "a task's chain goes forward; its older events are not listed");
                }
                // Tasks whose ids hash alike share a chain: keep this one's.
                if r.get_ref(15)?.as_str().ok() != Some(task_id)
                    || before_id.is_some_and(|before| id >= before)
                {
                    continue;
                }
                if !each(r)? {
                    break;
                }
            }
            Ok(())
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A poisoned lock only means a reader panicked; the connection is fine.
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

const EVENT_COLUMNS: &str = "id, dedup_key, task_id, attributed_to, callback_event, event_time,
    occurred_at_ms, received_at_ms, last_received_at_ms, deliveries, decoded, deviations, headers,
    peer";

fn json(what: &'static str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt { what, source })
}

/// Reads a row selected with [`EVENT_COLUMNS`] (and `raw` after them when
/// `with_raw`).
fn event_row(r: &Row<'_>, with_raw: bool) -> Result<EventRow, StoreError> {
    let decoded: String = r.get(10)?;
    let deviations: String = r.get(11)?;
    let headers: String = r.get(12)?;
    Ok(EventRow {
        id: r.get(0)?,
        dedup_key: r.get(1)?,
        task_id: r.get(2)?,
        attributed_to: r.get(3)?,
        callback_event: r.get(4)?,
        event_time: r.get(5)?,
        occurred_at_ms: r.get(6)?,
        received_at_ms: r.get(7)?,
        last_received_at_ms: r.get(8)?,
        deliveries: r.get(9)?,
        decoded: json("decoded", &decoded)?,
        deviations: json("deviations", &deviations)?,
        headers: json("headers", &headers)?,
        peer: r.get(13)?,
        raw: if with_raw { Some(r.get(14)?) } else { None },
    })
}

const REJECTED_COLUMNS: &str =
    "id, received_at_ms, status, category, reason, truncated, length(raw), headers, peer, kind";

fn rejected_row(r: &Row<'_>, with_raw: bool) -> Result<RejectedRow, StoreError> {
    let headers: String = r.get(7)?;
    Ok(RejectedRow {
        id: r.get(0)?,
        received_at_ms: r.get(1)?,
        status: r.get(2)?,
        category: r.get(3)?,
        reason: r.get(4)?,
        truncated: r.get(5)?,
        size: r.get(6)?,
        headers: json("headers", &headers)?,
        peer: r.get(8)?,
        kind: r.get(9)?,
        raw: if with_raw { Some(r.get(10)?) } else { None },
    })
}

impl Reader for SqliteReader {
    fn replay_after(
        &self,
        after_id: i64,
        each: &mut dyn FnMut(ReplayRow),
    ) -> Result<(), StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, dedup_key, received_at_ms, decoded FROM events WHERE id > ?1
                 ORDER BY id",
            )?;
            let mut rows = stmt.query([after_id])?;
            while let Some(r) = rows.next()? {
                let decoded: String = r.get(3)?;
                let id: i64 = r.get(0)?;
                let callback = super::stored_callback(id, &decoded, || {
                    let raw =
                        conn.query_row("SELECT raw FROM events WHERE id = ?1", [id], |r| r.get(0))?;
                    Ok(raw)
                })?;
                each(ReplayRow {
                    id,
                    dedup_key: r.get(1)?,
                    received_at_ms: r.get(2)?,
                    callback,
                });
            }
            Ok(())
        })
    }

    fn duplicates_by_task(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT coalesce(attributed_to, task_id) AS task, sum(deliveries - 1)
                 FROM events WHERE deliveries > 1 AND coalesce(attributed_to, task_id) IS NOT NULL
                 GROUP BY task",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    fn events(&self, q: &EventQuery) -> Result<Vec<EventRow>, StoreError> {
        if let Some(task_id) = &q.task_id {
            return self.task_events(task_id, q);
        }
        self.with(|conn| {
            // Only the conditions asked for, so that SQLite can pick the
            // index that serves them.
            let mut conditions = Vec::new();
            if q.event.is_some() {
                conditions.push("callback_event = ?1");
            }
            if q.since_ms.is_some() {
                conditions.push("received_at_ms >= ?2");
            }
            if q.before_id.is_some() {
                conditions.push("id < ?3");
            }
            let filter = if conditions.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", conditions.join(" AND "))
            };
            let sql =
                format!("SELECT {EVENT_COLUMNS} FROM events {filter} ORDER BY id DESC LIMIT ?4");
            let mut stmt = conn.prepare_cached(&sql)?;
            // Unused parameters are bound all the same; SQLite allows it for
            // numbered parameters up to the highest one used (?4).
            let mut rows = stmt.query(params![q.event, q.since_ms, q.before_id, q.limit as i64])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(event_row(r, false)?);
            }
            Ok(out)
        })
    }

    fn event(&self, id: i64) -> Result<Option<EventRow>, StoreError> {
        self.with(|conn| {
            let sql = format!("SELECT {EVENT_COLUMNS}, raw FROM events WHERE id = ?1");
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query([id])?;
            rows.next()?.map(|r| event_row(r, true)).transpose()
        })
    }

    /// The walk goes from the newest arrival back, and the latest arrivals
    /// are mostly the latest events too: only a row that may be shown is
    /// read whole, so a task's page costs about `limit` rows of JSON
    /// whatever its length.
    ///
    /// FIXME: the walk still visits every event of the task, to count them
    /// and because an old event may arrive late; a task that runs for
    /// months makes its page slower by a row lookup per event.
    fn latest_of_task(
        &self,
        task_id: &str,
        limit: usize,
    ) -> Result<(Vec<EventRow>, u64), StoreError> {
        // The smallest (event time, id) kept is on top.
        let mut kept: BinaryHeap<Reverse<(i64, i64)>> = BinaryHeap::new();
        let mut rows: HashMap<i64, EventRow> = HashMap::new();
        let mut total = 0u64;
        self.walk(task_id, None, &mut |r| {
            total += 1;
            let id: i64 = r.get(0)?;
            let occurred: Option<i64> = r.get(6)?;
            let received: i64 = r.get(7)?;
            let order = (occurred.unwrap_or(received), id);
            if kept.len() == limit {
                match kept.peek() {
                    Some(Reverse(smallest)) if order > *smallest => {
                        let Some(Reverse((_, dropped))) = kept.pop() else {
                            unreachable!("peeked")
                        };
                        rows.remove(&dropped);
                    }
                    _ => return Ok(true),
                }
            }
            kept.push(Reverse(order));
            rows.insert(id, event_row(r, false)?);
            Ok(true)
        })?;
        let mut latest: Vec<EventRow> = rows.into_values().collect();
        latest.sort_by_key(|e| (e.occurred_at_ms.unwrap_or(e.received_at_ms), e.id));
        Ok((latest, total))
    }

    fn rejected(&self, q: &RejectedQuery) -> Result<Vec<RejectedRow>, StoreError> {
        self.with(|conn| {
            let sql = format!(
                "SELECT {REJECTED_COLUMNS} FROM rejected WHERE (?1 IS NULL OR id < ?1)
                     AND (?3 IS NULL OR kind = ?3) AND (?4 IS NULL OR category = ?4)
                 ORDER BY id DESC LIMIT ?2"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params![q.before_id, q.limit as i64, q.kind, q.category])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(rejected_row(r, false)?);
            }
            Ok(out)
        })
    }

    fn rejected_one(&self, id: i64) -> Result<Option<RejectedRow>, StoreError> {
        self.with(|conn| {
            let sql = format!("SELECT {REJECTED_COLUMNS}, raw FROM rejected WHERE id = ?1");
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query([id])?;
            rows.next()?.map(|r| rejected_row(r, true)).transpose()
        })
    }

    fn rejected_dropped(&self) -> Result<u64, StoreError> {
        self.with(|conn| {
            let n: Option<i64> = conn
                .query_row(
                    "SELECT value FROM meta WHERE key = 'rejected_dropped'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(n.unwrap_or(0) as u64)
        })
    }

    fn outbox_pending(&self, after_id: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT e.id, e.dedup_key, coalesce(e.task_id, e.attributed_to), e.callback_event,
                     e.occurred_at_ms, e.received_at_ms, e.decoded
                 FROM outbox o JOIN events e ON e.id = o.event_id
                 WHERE o.event_id > ?1 ORDER BY o.event_id LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![after_id, limit as i64], |r| {
                    Ok(OutboxRow {
                        event_id: r.get(0)?,
                        dedup_key: r.get(1)?,
                        task_id: r.get(2)?,
                        callback_event: r.get(3)?,
                        occurred_at_ms: r.get(4)?,
                        received_at_ms: r.get(5)?,
                        decoded: r.get(6)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    fn outbox_len(&self) -> Result<u64, StoreError> {
        self.with(|conn| {
            let n: i64 = conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?;
            Ok(n as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Notify;

    use super::*;
    use crate::store::StoreHandle;
    use crate::store::contract::{self, EXIT, START, event};
    use crate::telemetry::metrics::Metrics;

    fn open_store(
        dir: &tempfile::TempDir,
        outbox: Option<Arc<Notify>>,
    ) -> (StoreHandle, Arc<Metrics>) {
        let (writer, reader) = open(&dir.path().join("outbox.db")).unwrap();
        contract::spawn(Box::new(writer), Arc::new(reader), outbox)
    }

    #[tokio::test]
    async fn new_events_are_queued_once_in_id_order_and_leave_when_published() {
        let dir = tempfile::tempdir().unwrap();
        contract::outbox_keeps_new_events_in_order_until_published(async |outbox| {
            open_store(&dir, outbox)
        })
        .await;
    }

    #[test]
    fn a_store_of_the_previous_schema_keeps_its_events_and_still_knows_their_retries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let mut conn = connect(&path).unwrap();
            migrate_to(&mut conn, 3).unwrap();
            let e = event(START);
            conn.execute(
                "INSERT INTO events (dedup_key, task_id, callback_event, event_time,
                     received_at_ms, last_received_at_ms, deliveries, raw, decoded, deviations,
                     headers, peer, occurred_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    e.dedup_key,
                    e.task_id,
                    e.callback_event,
                    e.event_time,
                    e.received_at_ms,
                    e.raw,
                    e.decoded,
                    e.deviations,
                    e.headers,
                    e.peer,
                    e.occurred_at_ms,
                ],
            )
            .unwrap();
        }
        let (mut writer, _reader) = open(&path).unwrap();
        let version: i64 = writer
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
        writer.begin(0).unwrap();
        let retry = writer.upsert_event(&event(START)).unwrap();
        assert_eq!((retry.id, retry.deliveries), (1, 2));
        let new = writer.upsert_event(&event(EXIT)).unwrap();
        assert_eq!((new.id, new.deliveries), (2, 1));
        // An event without a time of its own is recognised as well.
        assert_eq!(event(EXIT).event_time, None);
        let again = writer.upsert_event(&event(EXIT)).unwrap();
        assert_eq!((again.id, again.deliveries), (2, 2));
        writer.commit().unwrap();
    }

    #[tokio::test]
    async fn a_tasks_events_are_listed_newest_first_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        contract::task_events_are_listed_newest_first_across_a_restart(async || {
            open_store(&dir, None).0
        })
        .await;
    }

    #[tokio::test]
    async fn refusals_are_listed_by_kind_and_category() {
        let dir = tempfile::tempdir().unwrap();
        contract::refusals_are_listed_by_kind_and_category(open_store(&dir, None).0).await;
    }

    /// The events of task 7 that the reader lists, newest first.
    fn task_seven(reader: &SqliteReader) -> Vec<i64> {
        let query = EventQuery {
            task_id: Some("7".to_owned()),
            limit: 10,
            ..EventQuery::default()
        };
        reader
            .events(&query)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect()
    }

    #[test]
    fn an_event_rolled_back_leaves_no_trace_in_its_tasks_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, reader) = open(&dir.path().join("chain.db")).unwrap();
        writer.begin(0).unwrap();
        let first = writer.upsert_event(&event(START)).unwrap().id;
        writer.commit().unwrap();
        writer.begin(0).unwrap();
        let lost = writer.upsert_event(&event(EXIT)).unwrap().id;
        writer.rollback();
        writer.begin(0).unwrap();
        let second = writer.upsert_event(&event(EXIT)).unwrap().id;
        writer.commit().unwrap();
        assert_eq!(lost, second, "SQLite gives the rolled back id out again");
        assert_eq!(task_seven(&reader), [second, first]);
    }

    #[test]
    fn a_store_of_the_previous_schema_chains_the_events_of_each_task() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v4.db");
        {
            let mut conn = connect(&path).unwrap();
            migrate_to(&mut conn, 4).unwrap();
            for (n, (task, attributed)) in [
                (Some("7"), None),
                (Some("8"), None),
                (None, Some("7")),
                (None, None),
            ]
            .into_iter()
            .enumerate()
            {
                conn.execute(
                    "INSERT INTO events (dedup_key, task_id, callback_event, received_at_ms,
                         last_received_at_ms, deliveries, raw, decoded, deviations, headers,
                         attributed_to)
                     VALUES (?1, ?2, 'TaskStart', 5, 5, 1, x'7b7d', '{}', '[]', '{}', ?3)",
                    params![format!("key{n}"), task, attributed],
                )
                .unwrap();
            }
        }
        let (mut writer, reader) = open(&path).unwrap();
        assert_eq!(
            task_seven(&reader),
            [3, 1],
            "the attributed event is on its task's chain"
        );
        writer.begin(0).unwrap();
        let next = writer.upsert_event(&event(START)).unwrap().id;
        writer.commit().unwrap();
        assert_eq!(task_seven(&reader), [next, 3, 1]);
        let indexes: Vec<String> = writer
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            !indexes
                .iter()
                .any(|name| name.contains("task") || name.contains("attributed")),
            "no index on the task columns is left to update: {indexes:?}"
        );
    }

    #[test]
    fn a_second_server_cannot_open_a_database_in_use_and_can_once_it_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.db");
        let (writer, _reader) = open(&path).unwrap();
        let Err(error) = open(&path) else {
            panic!("a second writer opened the database");
        };
        assert!(matches!(error, StoreError::InUse(_)), "{error}");
        assert!(
            error
                .to_string()
                .contains("in use by another relaycb-server")
        );
        Box::new(writer).close().unwrap();
        open(&path).expect("the database is free once its writer closed it");
    }

    #[test]
    fn a_database_in_a_missing_folder_is_refused_naming_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("nowhere");
        let Err(error) = open(&folder.join("x.db")) else {
            panic!("opened a database in a missing folder");
        };
        assert_eq!(
            error.to_string(),
            format!(
                "the folder {} does not exist: create it, or give --db a file in a folder that does",
                folder.display()
            )
        );
    }

    #[tokio::test]
    async fn without_an_outbox_nothing_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_store(&dir, None);
        store.accept(event(START)).await.unwrap();
        assert_eq!(store.read(|r| r.outbox_len()).await.unwrap(), 0);
        store.close().await.unwrap();
    }
}
