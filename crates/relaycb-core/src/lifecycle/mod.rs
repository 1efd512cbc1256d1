//! The task lifecycle: a pure, deterministic fold of callbacks into the
//! state of every task, as DOMAIN.md §7 defines it.
//!
//! Callbacks may arrive late, twice, and out of order. Each task keeps its
//! latest events in a small reorder window: an event that arrives behind
//! others is put back in event order, and the window is folded again the
//! next time the task's state is asked for, so the state depends only on
//! which events arrived, not on their arrival order, as long as no event is
//! later than [`REORDER_WINDOW`] events of its task. Events that leave the
//! window are folded once, into the task's settled state; a stream nobody
//! asks about in between (a log being analysed) folds every event once.
//! A task whose newest event is [`SETTLE_AFTER_MS`] older than the newest
//! event of any task has its window folded away, since no retry comes that
//! late; a task then costs one fold and its recent dedup keys. Memory grows
//! with the number of tasks, not the number of events.

mod anomaly;
mod task;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

pub use anomaly::{Anomaly, AnomalyKind, EVENTS_KEPT};
pub use task::{CurrentFile, LastExit, Phase, TaskState, same_instant_rank};

use crate::callback::{Callback, Event};
use crate::dedup::DedupKey;
use anomaly::Anomalies;
use task::{Entry, Fold, Meta};

/// How many of a task's latest events are kept to put late arrivals back in
/// order.
pub const REORDER_WINDOW: usize = 32;
/// How long a task may be quiet, in event time measured by the newest event
/// of any task, before its reorder window is folded away: Tencent retries a
/// callback every minute up to 12 times, so an hour leaves a wide margin.
pub const SETTLE_AFTER_MS: i64 = 3_600_000;
/// A sweep for quiet tasks runs after this many observations, or after as
/// many as there are tasks when there are more, so that it costs O(1) per
/// observation.
const SWEEP_EVERY: usize = 4096;
/// How many recent dedup keys each task remembers to recognise a retry.
pub const DEDUP_MEMORY: usize = 256;
/// How many unattributed events are kept for the report (all are counted).
pub const UNATTRIBUTED_KEPT: usize = 100;

/// One delivered callback, as the tracker sees it.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// A caller-chosen id that anomalies point back at (a row id, a line
    /// number); the same event must keep the same id.
    pub id: u64,
    /// The event's dedup key.
    pub key: DedupKey,
    /// When relaycb received it, ms since the epoch; used for ordering only
    /// when the callback carries no time of its own. When neither is known
    /// (a log of bare bodies), the event is placed after every event of its
    /// task seen so far, which is arrival order.
    pub received_at_ms: Option<i64>,
    /// The decoded callback.
    pub callback: &'a Callback,
}

/// What the tracker did with an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Folded into the task of that id.
    Applied {
        /// The task.
        task_id: String,
        /// Whether the task id was inferred from `source_urls`.
        attributed_by_sources: bool,
    },
    /// A repeat of an event already folded into that task.
    Duplicate {
        /// The task.
        task_id: String,
    },
    /// No task could be named for it.
    Unattributed,
}

/// An event that could not be attributed to a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unattributed {
    /// The observation's id.
    pub event: u64,
    /// The event name.
    pub callback_event: String,
    /// When it happened (or arrived), ms since the epoch, if known.
    pub at_ms: Option<i64>,
    /// Why no task was named.
    pub reason: String,
}

/// The state of every task seen, folded from their callbacks.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    tasks: BTreeMap<String, History>,
    unattributed: VecDeque<Unattributed>,
    unattributed_total: u64,
    latest_ms: Option<i64>,
    /// Observations since the last sweep for quiet tasks.
    since_sweep: usize,
}

#[derive(Debug, Clone)]
struct History {
    /// The fold of every event that has left the window; `None` while the
    /// window is empty, when `current` holds every event.
    settled: Option<Box<Fold>>,
    /// The latest events, in event order.
    window: VecDeque<Entry>,
    /// `settled` with the window applied, computed when first asked for
    /// (see [`History::current`]) and kept up to date by events that arrive
    /// in order; one that arrives out of order empties it. Always filled
    /// while the window is empty. A `OnceLock`, so that a query through
    /// `&self` can fill it and a tracker can still be shared for reading;
    /// boxed, so that an empty one costs a task a pointer, not a fold.
    current: OnceLock<Box<Fold>>,
    /// What the latest event, in the order events are folded, that named
    /// its sources named: the sources of the current state (none while no
    /// event named any). An exit without a task id is matched against the
    /// sources of every task, which must neither compute the current state
    /// nor compare every list in full.
    sources: Option<Arc<Meta>>,
    /// The time of the newest event, ms since the epoch.
    newest_ms: Option<i64>,
    /// Anomalies about delivery rather than about the task.
    delivery: Anomalies,
    /// The latest [`DEDUP_MEMORY`] dedup keys, oldest first, and the same
    /// as a set: a long task checks every event against all of them.
    seen: VecDeque<u64>,
    seen_set: HashSet<u64, BuildHasherDefault<ShortKeyHasher>>,
    duplicates: u64,
}

/// Hashes short dedup keys by taking them as they are: they are the first
/// bits of a SHA-256 already, as evenly spread as a hash of them would be,
/// and a sender could steer them only by trying bodies by the million. Each
/// task's set holds at most [`DEDUP_MEMORY`] of them, so even keys made to
/// collide cost little.
#[derive(Debug, Default)]
struct ShortKeyHasher(u64);

impl Hasher for ShortKeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Why `current` can be empty only while events are settled.
const SETTLED_WHILE_LAZY: &str =
    "the current fold is computed lazily only while events are settled";

impl History {
    fn new(task_id: &str) -> History {
        History {
            settled: None,
            window: VecDeque::new(),
            current: OnceLock::from(Box::new(Fold::new(task_id))),
            sources: None,
            newest_ms: None,
            delivery: Anomalies::default(),
            seen: VecDeque::new(),
            seen_set: HashSet::default(),
            duplicates: 0,
        }
    }

    /// The fold of every event: `settled` with the window applied, computed
    /// now if no query asked for it since the last out-of-order arrival.
    fn current(&self) -> &Fold {
        self.current.get_or_init(|| {
            let settled = self.settled.as_deref().expect(SETTLED_WHILE_LAZY);
            Box::new(with_window(Fold::clone(settled), &self.window))
        })
    }

    /// Whether the current state has these sources, of that
    /// [`task::sources_hash`].
    fn has_sources(&self, source_urls: &[String], hash: u64) -> bool {
        self.sources
            .as_ref()
            .is_some_and(|meta| meta.sources_hash == hash && meta.source_urls == source_urls)
    }

    fn insert(&mut self, entry: Entry) {
        let at_ms = entry.at_ms();
        if self.window.is_empty()
            && self.current().state.events > 0
            && self.newest_ms.is_some_and(|newest| at_ms < newest)
        {
            // The window of this task was folded away: its events are
            // settled, and this one can only follow them.
            self.delivery.record(
                AnomalyKind::TooLate,
                at_ms,
                &[entry.id],
                format!(
                    "arrived after its task had been quiet for {} min of log time; folded after the events already settled",
                    SETTLE_AFTER_MS / 60_000
                ),
            );
        }
        self.newest_ms = Some(self.newest_ms.map_or(at_ms, |t| t.max(at_ms)));
        if self.settled.is_none() {
            // The window is empty and `current` holds every event: they are
            // all settled now, and `current` is computed again when needed.
            let fold = self
                .current
                .take()
                .expect("filled while nothing is settled");
            self.settled = Some(fold);
        }
        let settled = self.settled.as_deref_mut().expect("settled above");
        let position = self.window.partition_point(|e| e.order <= entry.order);
        // Every settled event is folded before the window, and the events
        // after `position` after this one.
        if !entry.meta.source_urls.is_empty()
            && self
                .window
                .range(position..)
                .all(|e| e.meta.source_urls.is_empty())
        {
            self.sources = Some(Arc::clone(&entry.meta));
        }
        if position == self.window.len() {
            if let Some(current) = self.current.get_mut() {
                current.apply(&entry);
            }
            self.window.push_back(entry);
        } else {
            let later: Vec<u64> = self.window.range(position..).map(|e| e.id).collect();
            let mut ids = vec![entry.id];
            ids.extend(later.iter().take(anomaly::EVENTS_KEPT - 1));
            self.delivery.record(
                AnomalyKind::OutOfOrder,
                at_ms,
                &ids,
                format!("arrived after {} event(s) that happened later", later.len()),
            );
            if position == 0 && settled.state.events > 0 {
                self.delivery.record(
                    AnomalyKind::TooLate,
                    at_ms,
                    &[entry.id],
                    format!(
                        "arrived more than {REORDER_WINDOW} events late; folded as the oldest event still in order"
                    ),
                );
            }
            self.window.insert(position, entry);
            // FIXME: the current fold is computed again when next asked for,
            // from a copy of the settled fold and the whole window (about
            // 40k instructions). Analysing a log asks only at the end; the
            // server, which may be asked after every arrival, pays it per
            // late arrival, which is cheap only while late arrivals are
            // rare (Tencent's retries, deliveries racing within a second).
            self.current.take();
        }
        if self.window.len() > REORDER_WINDOW {
            let oldest = self.window.pop_front().expect("window is not empty");
            settled.apply(&oldest);
        }
    }

    /// Folds the window away, leaving one fold of every event.
    fn settle(&mut self) {
        if self.current.get().is_none() {
            let mut settled = self.settled.take().expect(SETTLED_WHILE_LAZY);
            for entry in &self.window {
                settled.apply(entry);
            }
            self.current = OnceLock::from(settled);
        }
        self.window = VecDeque::new();
        self.settled = None;
    }

    fn is_repeat(&mut self, key: u64) -> bool {
        if self.seen_set.contains(&key) {
            self.duplicates += 1;
            return true;
        }
        if self.seen.len() == DEDUP_MEMORY
            && let Some(oldest) = self.seen.pop_front()
        {
            self.seen_set.remove(&oldest);
        }
        self.seen_set.insert(key);
        self.seen.push_back(key);
        false
    }

    fn snapshot(&self, now_ms: Option<i64>) -> TaskState {
        let current = self.current();
        finish(
            current.state.clone(),
            current.anomalies.clone(),
            &self.delivery,
            self.duplicates,
            now_ms,
        )
    }

    /// [`History::snapshot`] without copying.
    fn into_snapshot(self, now_ms: Option<i64>) -> TaskState {
        let History {
            settled,
            window,
            current,
            delivery,
            duplicates,
            ..
        } = self;
        let current = match current.into_inner() {
            Some(current) => *current,
            None => with_window(*settled.expect(SETTLED_WHILE_LAZY), &window),
        };
        finish(
            current.state,
            current.anomalies,
            &delivery,
            duplicates,
            now_ms,
        )
    }
}

/// `fold` with the events of a window applied, in order.
fn with_window(mut fold: Fold, window: &VecDeque<Entry>) -> Fold {
    for entry in window {
        fold.apply(entry);
    }
    fold
}

/// A task's state as shown: its fold with the delivery anomalies and, as of
/// `now_ms`, an overdue file.
fn finish(
    mut state: TaskState,
    mut anomalies: Anomalies,
    delivery: &Anomalies,
    duplicates: u64,
    now_ms: Option<i64>,
) -> TaskState {
    state.duplicates = duplicates;
    if let Some((at, event, detail)) = now_ms.and_then(|now| task::overdue(&state, now)) {
        anomalies.record(AnomalyKind::FileOverdue, at, &[event], detail);
    }
    state.anomalies = anomalies.merged(delivery);
    state
}

impl Tracker {
    /// An empty tracker.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Folds one delivered callback into the state of its task.
    ///
    /// A `TaskExit` without `task_id` is attributed to the one task whose
    /// `source_urls` equal its own, if exactly one does.
    pub fn observe(&mut self, observation: Observation<'_>) -> Outcome {
        let callback = observation.callback;
        let own_time = callback.occurred_at_ms().or(observation.received_at_ms);
        let (task_id, by_sources) = match callback.task_id.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => (id.to_owned(), false),
            None => match self.attribute(callback) {
                Ok(id) => (id, true),
                Err(reason) => {
                    self.unattributed_total += 1;
                    if self.unattributed.len() == UNATTRIBUTED_KEPT {
                        self.unattributed.pop_front();
                    }
                    self.unattributed.push_back(Unattributed {
                        event: observation.id,
                        callback_event: callback.event.name().to_owned(),
                        at_ms: own_time,
                        reason,
                    });
                    return Outcome::Unattributed;
                }
            },
        };
        let history = self
            .tasks
            .entry(task_id.clone())
            .or_insert_with_key(|id| History::new(id));
        if history.is_repeat(observation.key.short()) {
            return Outcome::Duplicate { task_id };
        }
        let at_ms = own_time.or(history.newest_ms).unwrap_or(0);
        self.latest_ms = Some(self.latest_ms.map_or(at_ms, |t| t.max(at_ms)));
        let meta = task::Meta::of(callback, history.window.back().map(|e| &e.meta));
        history.insert(Entry::new(
            observation.id,
            at_ms,
            observation.key.short(),
            callback,
            meta,
        ));
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY.max(self.tasks.len()) {
            self.settle_quiet();
        }
        Outcome::Applied {
            task_id,
            attributed_by_sources: by_sources,
        }
    }

    /// Folds away the window of every task quiet for [`SETTLE_AFTER_MS`].
    fn settle_quiet(&mut self) {
        self.since_sweep = 0;
        let Some(horizon) = self.latest_ms.map(|t| t - SETTLE_AFTER_MS) else {
            return;
        };
        for history in self.tasks.values_mut() {
            if !history.window.is_empty() && history.newest_ms.is_some_and(|t| t < horizon) {
                history.settle();
            }
        }
    }

    fn attribute(&self, callback: &Callback) -> Result<String, String> {
        if !matches!(callback.event, Event::TaskExit(_)) {
            return Err(
                "no task_id, and only a TaskExit may be attributed by its sources".to_owned(),
            );
        }
        if callback.source_urls.is_empty() {
            return Err("no task_id and no source_urls".to_owned());
        }
        let hash = task::sources_hash(&callback.source_urls);
        let mut matching = self
            .tasks
            .iter()
            .filter(|(_, h)| h.has_sources(&callback.source_urls, hash))
            .map(|(id, _)| id);
        match (matching.next(), matching.next()) {
            (Some(id), None) => Ok(id.clone()),
            (None, _) => Err("no task_id, and no known task has these source_urls".to_owned()),
            (Some(_), Some(_)) => {
                Err("no task_id, and several known tasks have these source_urls".to_owned())
            }
        }
    }

    /// The state of one task, with overdue files judged as of `now_ms`
    /// (`None`: not judged).
    pub fn task(&self, task_id: &str, now_ms: Option<i64>) -> Option<TaskState> {
        self.tasks.get(task_id).map(|h| h.snapshot(now_ms))
    }

    /// The state of every task, ordered by task id.
    pub fn tasks(&self, now_ms: Option<i64>) -> impl Iterator<Item = TaskState> + '_ {
        self.tasks.values().map(move |h| h.snapshot(now_ms))
    }

    /// The state of the tasks whose id sorts after `after` (every task when
    /// `None`), ordered by task id: a list taken in pages, each starting
    /// after the last id of the one before. A state is taken only when the
    /// iterator reaches it.
    pub fn tasks_after(
        &self,
        after: Option<&str>,
        now_ms: Option<i64>,
    ) -> impl Iterator<Item = TaskState> + '_ {
        use std::ops::Bound::{Excluded, Unbounded};
        let from = after.map_or(Unbounded, Excluded);
        self.tasks
            .range::<str, _>((from, Unbounded))
            .map(move |(_, h)| h.snapshot(now_ms))
    }

    /// The state of every task, ordered by task id, each task's history
    /// freed as its state is taken: a report over many tasks need not hold
    /// both at once.
    pub fn into_tasks(self, now_ms: Option<i64>) -> impl Iterator<Item = TaskState> {
        self.tasks
            .into_values()
            .map(move |h| h.into_snapshot(now_ms))
    }

    /// How many tasks have been seen.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no task has been seen.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The latest unattributed events (at most [`UNATTRIBUTED_KEPT`]).
    pub fn unattributed(&self) -> impl Iterator<Item = &Unattributed> {
        self.unattributed.iter()
    }

    /// How many events could not be attributed, in all.
    pub fn unattributed_total(&self) -> u64 {
        self.unattributed_total
    }

    /// The time of the latest event seen, ms since the epoch: the natural
    /// "now" for judging a log after the fact.
    pub fn latest_ms(&self) -> Option<i64> {
        self.latest_ms
    }
}

#[cfg(test)]
mod tests;
