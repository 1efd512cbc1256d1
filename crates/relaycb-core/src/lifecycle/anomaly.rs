//! Anomalies: what looks wrong in a task's history, each pointing at the
//! events that show it.
//!
//! Anomalies of one kind are folded into one record with a count, so that a
//! task that fails every minute for a week costs the same memory as one
//! that failed once.

use serde::{Deserialize, Serialize};

/// How many event ids one anomaly record keeps (the latest by event order).
pub const EVENTS_KEPT: usize = 8;

/// The kinds of anomaly relaycb detects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// The first file started more than 2 s after `TaskStart`.
    LateFileStart,
    /// A file event arrived for a task never seen starting.
    FileWithoutTaskStart,
    /// A file finished well before its documented duration.
    FileEndedEarly,
    /// The current file has outlived its duration with no finish.
    FileOverdue,
    /// The task exited with an error code.
    ErrorExit,
    /// Several exits in a short time: the task keeps failing and restarting.
    RestartLoop,
    /// Events arrived in another order than they happened.
    OutOfOrder,
    /// An event arrived so late that it could not be put back in order.
    TooLate,
}

impl AnomalyKind {
    /// The snake_case name, as used in the API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::LateFileStart => "late_file_start",
            AnomalyKind::FileWithoutTaskStart => "file_without_task_start",
            AnomalyKind::FileEndedEarly => "file_ended_early",
            AnomalyKind::FileOverdue => "file_overdue",
            AnomalyKind::ErrorExit => "error_exit",
            AnomalyKind::RestartLoop => "restart_loop",
            AnomalyKind::OutOfOrder => "out_of_order",
            AnomalyKind::TooLate => "too_late",
        }
    }
}

/// Every occurrence of one kind of anomaly in one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    /// What kind.
    pub kind: AnomalyKind,
    /// How many times it happened.
    pub count: u64,
    /// What the latest occurrence was, in words (an error exit's also
    /// counts the task's error exits by code when their codes differ).
    pub detail: String,
    /// When the latest occurrence happened, ms since the epoch.
    pub at_ms: i64,
    /// Ids of the events that show it, the latest last (at most
    /// [`EVENTS_KEPT`]).
    pub events: Vec<u64>,
}

/// A set of anomaly records, one per kind, ordered by kind. A task has a
/// handful at most, and every task keeps two or three of these sets, so a
/// sorted vector (one small allocation) serves better than a map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Anomalies(Vec<Anomaly>);

impl Anomalies {
    /// Records an occurrence shown by the given events (in event order).
    /// The record keeps the latest [`EVENTS_KEPT`] of the events shown by
    /// any occurrence, latest last: an event shown again moves to the end.
    /// Only the last [`EVENTS_KEPT`] of `events` can be among them, so a
    /// long list (every exit of a restart storm) costs no more than a short
    /// one.
    pub(crate) fn record(&mut self, kind: AnomalyKind, at_ms: i64, events: &[u64], detail: String) {
        let index = match self.0.binary_search_by_key(&kind, |a| a.kind) {
            Ok(index) => index,
            Err(index) => {
                self.0.insert(
                    index,
                    Anomaly {
                        kind,
                        count: 0,
                        detail: String::new(),
                        at_ms,
                        events: Vec::new(),
                    },
                );
                index
            }
        };
        let entry = &mut self.0[index];
        entry.count += 1;
        if at_ms >= entry.at_ms || entry.count == 1 {
            entry.at_ms = at_ms;
            entry.detail = detail;
        }
        let latest = &events[events.len().saturating_sub(EVENTS_KEPT)..];
        entry.events.retain(|id| !latest.contains(id));
        entry.events.extend_from_slice(latest);
        let excess = entry.events.len().saturating_sub(EVENTS_KEPT);
        entry.events.drain(..excess);
    }

    /// These records with `other`'s in place of any of the same kind.
    pub(crate) fn merged(&self, other: &Anomalies) -> Vec<Anomaly> {
        let mut all: Vec<Anomaly> = self
            .0
            .iter()
            .filter(|a| other.0.binary_search_by_key(&a.kind, |o| o.kind).is_err())
            .chain(&other.0)
            .cloned()
            .collect();
        all.sort_by_key(|a| a.kind);
        all
    }
}
