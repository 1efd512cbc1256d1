//! `relaycb analyze --task ID`: every delivery of one task, in event order,
//! each in one line. Only that task's events are kept, so the memory this
//! takes grows with that task's history alone.

use relaycb_core::{Callback, Event, explain};
use serde::Serialize;

use super::locate::Logs;
use crate::time;

/// The deliveries of one task.
#[derive(Debug, Serialize)]
pub(crate) struct Timeline {
    /// The task asked for.
    pub(crate) task_id: String,
    /// Its deliveries, in the order they were read.
    pub(crate) entries: Vec<Entry>,
}

/// One delivery of the task.
#[derive(Debug, Serialize)]
pub(crate) struct Entry {
    /// The id anomalies point at (line number or row id).
    pub(crate) id: u64,
    /// When it happened (or, failing that, arrived), ms since the epoch.
    pub(crate) at_ms: Option<i64>,
    /// The event name.
    pub(crate) event: String,
    /// What it said, in words.
    pub(crate) detail: String,
    /// Whether it repeated an event already seen.
    pub(crate) duplicate: bool,
}

impl Timeline {
    pub(crate) fn new(task_id: String) -> Timeline {
        Timeline {
            task_id,
            entries: Vec::new(),
        }
    }

    /// Keeps the delivery if it belongs to the task.
    pub(crate) fn add(
        &mut self,
        task_id: &str,
        id: u64,
        received_at_ms: Option<i64>,
        callback: &Callback,
        duplicate: bool,
    ) {
        if task_id != self.task_id {
            return;
        }
        self.entries.push(Entry {
            id,
            at_ms: callback.occurred_at_ms().or(received_at_ms),
            event: callback.event.name().to_owned(),
            detail: summary(callback),
            duplicate,
        });
    }

    /// The entries in event order: by time, those without a time where
    /// they were read.
    pub(crate) fn sorted(&mut self) {
        let mut last = i64::MIN;
        let mut keyed: Vec<(i64, Entry)> = self
            .entries
            .drain(..)
            .map(|e| {
                last = e.at_ms.unwrap_or(last);
                (last, e)
            })
            .collect();
        keyed.sort_by_key(|(at, e)| (*at, rank(&e.event), e.id));
        self.entries = keyed.into_iter().map(|(_, e)| e).collect();
    }

    /// The timeline as a Markdown table.
    pub(crate) fn markdown(&self, logs: &Logs) -> String {
        let mut out = format!("# Timeline of task {}\n\n", self.task_id);
        out.push_str("| at | id | event | detail |\n| --- | --- | --- | --- |\n");
        for e in &self.entries {
            let at = e
                .at_ms
                .map_or_else(|| "(time unknown)".to_owned(), time::utc_ms);
            let repeat = if e.duplicate { " (repeat)" } else { "" };
            let detail = e.detail.replace('|', "\\|");
            out.push_str(&format!(
                "| {at} | {} | {} | {detail}{repeat} |\n",
                logs.cell(e.id),
                e.event
            ));
        }
        out
    }

    /// The timeline as text, one delivery a line.
    pub(crate) fn render(&self, logs: &Logs) -> String {
        let mut out = format!("Timeline of task {}\n", self.task_id);
        if self.entries.is_empty() {
            out.push_str("  (no event of this task in the log)\n");
        }
        let tags: Vec<String> = self.entries.iter().map(|e| logs.tag(e.id)).collect();
        let width = tags
            .iter()
            .map(|t| t.chars().count())
            .max()
            .unwrap_or(0)
            .max(7);
        for (e, tag) in self.entries.iter().zip(&tags) {
            let at = e
                .at_ms
                .map_or_else(|| "(time unknown)".to_owned(), time::utc_ms);
            let repeat = if e.duplicate { "  (repeat)" } else { "" };
            out.push_str(&format!(
                "  {at:<24} {tag:<width$} {:<20} {}{repeat}\n",
                e.event, e.detail
            ));
        }
        out
    }
}

/// Within one instant, the order relaycb-core folds events in: a file's
/// finish before the next file's start, an exit before the restart.
fn rank(event: &str) -> u8 {
    match event {
        "VodSourceFileFinish" => 0,
        "TaskExit" => 1,
        "TaskStart" => 2,
        "VodSourceFileStart" => 3,
        "TaskAlarm" => 4,
        "ResetTaskConfig" => 5,
        _ => 6,
    }
}

/// A callback in one line of words.
pub(crate) fn summary(callback: &Callback) -> String {
    match &callback.event {
        Event::TaskStart { .. } => "task started".to_owned(),
        Event::VodSourceFileStart(f) | Event::VodSourceFileFinish(f) => {
            let verb = if matches!(callback.event, Event::VodSourceFileStart(_)) {
                "started"
            } else {
                "finished"
            };
            let index = f.index.map_or_else(|| "?".to_owned(), |i| i.to_string());
            let duration = f.duration.map(|d| format!(" ({d} s)")).unwrap_or_default();
            let url = f.url.as_deref().unwrap_or("");
            format!("file {index} {verb}{duration} {url}")
                .trim_end()
                .to_owned()
        }
        Event::TaskExit(exit) => {
            let code = exit.code.map_or_else(
                || "exit without code".to_owned(),
                |c| format!("exit {c} ({})", explain(c).name),
            );
            match &exit.message {
                Some(message) => format!("{code}: {message}"),
                None => code,
            }
        }
        Event::TaskAlarm { alarm } => match alarm {
            Some(kind) => format!("alarm {kind}"),
            None => "alarm of no type".to_owned(),
        },
        Event::ResetTaskConfig { .. } => "configuration reset".to_owned(),
        Event::Unknown { name, .. } => format!("undocumented event {name}"),
    }
}
