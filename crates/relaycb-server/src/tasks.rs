//! The state of every task: relaycb-core's [`Tracker`] fed with the stored
//! events, kept in memory behind a lock.
//!
//! Every stored event is folded once, in row id order, whoever wrote it:
//! the writer folds its own events inside its transaction, after
//! [`TaskBoard::catch_up`] has folded every event committed before (by
//! this server or, on a shared PostgreSQL store, by another); the API
//! catches up before it answers. On start the board is rebuilt by folding
//! the stored events in the same order with the same observations, so a
//! restart changes nothing that the API shows, and two servers on one
//! store show the same state.
//!
//! Retries are never fed to the tracker (the store already recognised
//! them); their count per task is kept beside it from the `deliveries`
//! column, because the tracker's own retry memory is bounded.

// FIXME: memory grows with the tasks active in the last hour of event
// time: this board keeps a fold and a reorder window for each (the tracker
// folds away those quiet for an hour), about 1.7 KiB for a task of two
// events. The benchmark's bodies come from 120,615 short tasks all running
// at once, so a fresh server that takes them at 64 clients for 3.5 s peaks
// at 80 to 127 MiB, with the number of tasks it saw (target 64 MiB), and
// one holding a million events at 465 to 552 MiB (BENCHMARKS.md). A few
// hundred long tasks cost a few MiB.

use std::collections::HashMap;
use std::sync::RwLock;

use relaycb_core::lifecycle::Unattributed;
use relaycb_core::{Callback, DedupKey, Observation, Outcome, TaskState, Tracker};

use crate::store::{Reader, ReplayRow, StoreError};

/// Every task's state.
#[derive(Debug, Default)]
pub(crate) struct TaskBoard {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tracker: Tracker,
    /// Extra deliveries per task.
    duplicates: HashMap<String, u64>,
    /// The highest event id folded (or skipped as unreadable).
    last_folded: i64,
}

impl TaskBoard {
    /// Rebuilds the board from every stored event.
    pub(crate) fn rebuild(reader: &dyn Reader) -> Result<TaskBoard, StoreError> {
        let board = TaskBoard::default();
        board.reload(reader)?;
        Ok(board)
    }

    /// Replaces the state with the fold of every stored event; used on start
    /// and after a failed commit (whose events were already observed).
    ///
    /// FIXME: start-up time grows with the number of stored events (each
    /// is read and folded again); a persisted snapshot of the tracker would
    /// bound it.
    pub(crate) fn reload(&self, reader: &dyn Reader) -> Result<(), StoreError> {
        let mut fresh = Inner::default();
        let mut count = 0u64;
        reader.replay_after(0, &mut |row| {
            count += u64::from(fresh.fold(&row));
        })?;
        fresh.duplicates = reader.duplicates_by_task()?.into_iter().collect();
        let mut inner = self.write();
        *inner = fresh;
        tracing::info!(
            events = count,
            tasks = inner.tracker.len(),
            "task state rebuilt from the store"
        );
        Ok(())
    }

    /// Folds every stored event above the last one folded, in id order;
    /// returns the highest id folded so far.
    pub(crate) fn catch_up(&self, reader: &dyn Reader) -> Result<i64, StoreError> {
        let after = self.read().last_folded;
        let mut rows = Vec::new();
        reader.replay_after(after, &mut |row| rows.push(row))?;
        Ok(self.fold_newer(&rows))
    }

    /// Folds those of `rows` (in id order) above the last event folded;
    /// returns the highest id folded so far.
    pub(crate) fn fold_newer(&self, rows: &[ReplayRow]) -> i64 {
        let mut inner = self.write();
        // The writer may have folded some of them meanwhile.
        for row in rows {
            if row.id > inner.last_folded {
                inner.fold(row);
            }
        }
        if !rows.is_empty() {
            tracing::debug!(
                read = rows.len(),
                last_folded = inner.last_folded,
                "task state caught up with the store"
            );
        }
        inner.last_folded
    }

    /// Catches up and takes the retry counts from the store: what a server
    /// sharing its store with others does before it shows task state.
    pub(crate) fn refresh(&self, reader: &dyn Reader) -> Result<(), StoreError> {
        self.catch_up(reader)?;
        let duplicates = reader.duplicates_by_task()?.into_iter().collect();
        self.write().duplicates = duplicates;
        Ok(())
    }

    /// Folds a newly stored event; its id must be above every id folded.
    pub(crate) fn observe(
        &self,
        id: i64,
        key: DedupKey,
        received_at_ms: i64,
        callback: &Callback,
    ) -> Outcome {
        let mut inner = self.write();
        debug_assert!(id > inner.last_folded, "events are folded in id order");
        inner.last_folded = inner.last_folded.max(id);
        inner
            .tracker
            .observe(observation(id, key, received_at_ms, callback))
    }

    /// The highest event id folded so far.
    pub(crate) fn last_folded(&self) -> i64 {
        self.read().last_folded
    }

    /// Counts one more delivery of an event of that task.
    pub(crate) fn count_duplicate(&self, task_id: &str) {
        *self
            .write()
            .duplicates
            .entry(task_id.to_owned())
            .or_default() += 1;
    }

    /// Every task, ordered by task id, overdue files judged at `now_ms`.
    pub(crate) fn tasks(&self, now_ms: i64) -> Vec<TaskState> {
        self.tasks_after(None, now_ms, usize::MAX, |_| true)
    }

    /// The tasks after `after` in task id order (from the first when
    /// `None`) that `keep` accepts, at most `take` of them, overdue files
    /// judged at `now_ms`.
    pub(crate) fn tasks_after(
        &self,
        after: Option<&str>,
        now_ms: i64,
        take: usize,
        keep: impl Fn(&TaskState) -> bool,
    ) -> Vec<TaskState> {
        let inner = self.read();
        inner
            .tracker
            .tasks_after(after, Some(now_ms))
            .map(|t| with_duplicates(t, &inner.duplicates))
            .filter(keep)
            .take(take)
            .collect()
    }

    /// One task, overdue files judged at `now_ms`.
    pub(crate) fn task(&self, task_id: &str, now_ms: i64) -> Option<TaskState> {
        let inner = self.read();
        inner
            .tracker
            .task(task_id, Some(now_ms))
            .map(|t| with_duplicates(t, &inner.duplicates))
    }

    /// How many events could not be attributed to a task.
    pub(crate) fn unattributed_total(&self) -> u64 {
        self.read().tracker.unattributed_total()
    }

    /// The latest events that could not be attributed to a task, and how
    /// many there were in all.
    pub(crate) fn unattributed(&self) -> (Vec<Unattributed>, u64) {
        let inner = self.read();
        (
            inner.tracker.unattributed().cloned().collect(),
            inner.tracker.unattributed_total(),
        )
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // The tracker is only mutated by plain method calls; a panic in one
        // leaves it usable, so a poisoned lock is taken as it is.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// Folds one stored event; returns whether it could be.
    fn fold(&mut self, row: &ReplayRow) -> bool {
        self.last_folded = self.last_folded.max(row.id);
        let Some(callback) = &row.callback else {
            return false;
        };
        let key = match row.dedup_key.parse::<DedupKey>() {
            Ok(key) => key,
            Err(error) => {
                tracing::warn!(id = row.id, %error, "stored dedup key unreadable; event skipped");
                return false;
            }
        };
        self.tracker
            .observe(observation(row.id, key, row.received_at_ms, callback));
        true
    }
}

fn observation(
    id: i64,
    key: DedupKey,
    received_at_ms: i64,
    callback: &Callback,
) -> Observation<'_> {
    Observation {
        id: id as u64,
        key,
        received_at_ms: Some(received_at_ms),
        callback,
    }
}

fn with_duplicates(mut task: TaskState, duplicates: &HashMap<String, u64>) -> TaskState {
    task.duplicates = duplicates.get(&task.task_id).copied().unwrap_or(0);
    task
}
