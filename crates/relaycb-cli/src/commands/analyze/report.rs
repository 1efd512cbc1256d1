//! The report of `relaycb analyze` as data: built once from an
//! [`Analysis`], then printed as a table, as Markdown or as JSON.

use std::collections::BTreeMap;

use relaycb_core::lifecycle::Unattributed;
use relaycb_core::{Explanation, TaskState, explain};
use serde::Serialize;

use super::fold::Analysis;

/// Everything `analyze` reports.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// Counts over the whole log.
    pub(crate) summary: Summary,
    /// Events by name.
    pub(crate) events: BTreeMap<String, EventCount>,
    /// Deviations of distinct events, by `path: what`.
    pub(crate) deviations: BTreeMap<String, u64>,
    /// The first bodies that could not be decoded.
    pub(crate) undecodable: Vec<Undecodable>,
    /// The latest events no task could be named for.
    pub(crate) unattributed: Vec<Unattributed>,
    /// Every task, by task id.
    pub(crate) tasks: Vec<TaskReport>,
}

/// Counts over the whole log.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    /// Lines or rows read.
    pub(crate) records: u64,
    /// Deliveries they stand for.
    pub(crate) deliveries: u64,
    /// Distinct events.
    pub(crate) events: u64,
    /// Deliveries that repeated an event already seen in the log.
    pub(crate) duplicates: u64,
    /// Repeats the server had already folded into one stored row. A task's
    /// `duplicates` counts both kinds, as the server does.
    pub(crate) stored_repeats: u64,
    /// Bodies that could not be decoded.
    pub(crate) undecodable: u64,
    /// Events no task could be named for.
    pub(crate) unattributed: u64,
    /// Distinct events that deviated from the documented form.
    pub(crate) deviating_events: u64,
    /// Tasks seen.
    pub(crate) tasks: u64,
    /// The time the tasks are judged at (the latest event), ms since the epoch.
    pub(crate) as_of_ms: Option<i64>,
}

/// How many of one event the log held.
#[derive(Debug, Serialize)]
pub(crate) struct EventCount {
    /// Distinct events.
    pub(crate) distinct: u64,
    /// Deliveries, repeats included.
    pub(crate) deliveries: u64,
}

/// A body that could not be decoded.
#[derive(Debug, Serialize)]
pub(crate) struct Undecodable {
    /// Its line number or row id.
    pub(crate) id: u64,
    /// Why.
    pub(crate) reason: String,
}

/// One task: relaycb-core's state, and its exits explained.
#[derive(Debug, Serialize)]
pub(crate) struct TaskReport {
    /// The folded state.
    #[serde(flatten)]
    pub(crate) state: TaskState,
    /// Exits grouped by code, with what each code means.
    pub(crate) exit_codes: Vec<ExitGroup>,
}

/// The exits of one code.
#[derive(Debug, Serialize)]
pub(crate) struct ExitGroup {
    /// The code, `None` for exits that gave none.
    pub(crate) code: Option<i64>,
    /// How many.
    pub(crate) count: u64,
    /// What the code means.
    pub(crate) explanation: Option<Explanation>,
}

impl Report {
    /// The report of an analysis.
    pub(crate) fn new(mut analysis: Analysis) -> Report {
        let now = analysis.tracker.latest_ms();
        let unattributed_total = analysis.tracker.unattributed_total();
        let unattributed = analysis.tracker.unattributed().cloned().collect();
        let tasks: Vec<TaskReport> = std::mem::take(&mut analysis.tracker)
            .into_tasks(now)
            .map(|state| {
                let state = analysis.reported(state);
                let mut exit_codes: Vec<ExitGroup> = state
                    .exits
                    .iter()
                    .map(|(code, count)| {
                        let code = code.parse::<i64>().ok();
                        ExitGroup {
                            code,
                            count: *count,
                            explanation: code.map(explain),
                        }
                    })
                    .collect();
                exit_codes.sort_by_key(|g| std::cmp::Reverse(g.count));
                TaskReport { state, exit_codes }
            })
            .collect();
        let events = analysis
            .deliveries_by_event
            .iter()
            .map(|(name, deliveries)| {
                let distinct = analysis.events.get(name).copied().unwrap_or_default();
                (
                    name.clone(),
                    EventCount {
                        distinct,
                        deliveries: *deliveries,
                    },
                )
            })
            .collect();
        Report {
            summary: Summary {
                records: analysis.records,
                deliveries: analysis.deliveries,
                events: analysis.events.values().sum(),
                duplicates: analysis.duplicates,
                stored_repeats: analysis.stored_repeats,
                undecodable: analysis.undecodable,
                unattributed: unattributed_total,
                deviating_events: analysis.deviating_events,
                tasks: tasks.len() as u64,
                as_of_ms: now,
            },
            events,
            deviations: std::mem::take(&mut analysis.deviations),
            undecodable: analysis
                .errors
                .iter()
                .map(|(id, reason)| Undecodable {
                    id: *id,
                    reason: reason.clone(),
                })
                .collect(),
            unattributed,
            tasks,
        }
    }
}
