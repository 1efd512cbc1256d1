//! Where an event of the logs `analyze` read is, in words.
//!
//! Every delivery is known by an id: its line in a log of bodies, or its
//! row id in the server's store (or in lines written by `relaycb export`).
//! Of one log, that id is shown as it is (`line 14`, `id 5`). Of several,
//! each log's ids are counted on from the highest id of the logs before it,
//! so that they stay distinct in relaycb-core's tracker, and are shown back
//! as the log and the id within it (`b.jsonl:14`, `relaycb.db id 5`).

use serde_json::Value;

/// The logs read, and how to name an id of theirs.
#[derive(Debug, Clone)]
pub(crate) struct Logs {
    /// What the ids of the logs are, together: `line` when every log held
    /// bare bodies, `id` when any held stored events.
    unit: &'static str,
    /// The logs in the order read; their ids are named by log only when
    /// there are several.
    logs: Vec<Log>,
}

#[derive(Debug, Clone)]
struct Log {
    name: String,
    /// Added to every id of the log.
    base: u64,
    unit: &'static str,
}

impl Logs {
    /// No log yet.
    pub(crate) fn new() -> Logs {
        Logs {
            unit: "line",
            logs: Vec::new(),
        }
    }

    /// Adds a log, named `name`, whose ids were counted from `base`;
    /// `stored`: it held stored events (ids are row ids), not bare bodies.
    pub(crate) fn push(&mut self, name: String, base: u64, stored: bool) {
        let unit = if stored { "id" } else { "line" };
        if stored {
            self.unit = "id";
        }
        self.logs.push(Log { name, base, unit });
    }

    /// `line` or `id`: what a bare number of a single log is.
    pub(crate) fn unit(&self) -> &'static str {
        self.unit
    }

    /// The heading of a column of [`Logs::cell`]s: `LINE` or `ID` of a
    /// single log, `WHERE` among several (whose cells name the log).
    pub(crate) fn heading(&self) -> String {
        if self.several() {
            "WHERE".to_owned()
        } else {
            self.unit.to_uppercase()
        }
    }

    fn several(&self) -> bool {
        self.logs.len() > 1
    }

    /// The log an id belongs to, among several.
    fn log(&self, id: u64) -> Option<&Log> {
        if !self.several() {
            return None;
        }
        let after = self.logs.partition_point(|log| log.base <= id);
        after.checked_sub(1).map(|i| &self.logs[i])
    }

    /// The id within its log: the line or row id.
    pub(crate) fn local(&self, id: u64) -> u64 {
        self.log(id).map_or(id, |log| id - log.base)
    }

    /// An id in a cell of a column headed by [`Logs::unit`]: the number of
    /// a single log, the log and the number among several.
    pub(crate) fn cell(&self, id: u64) -> String {
        match self.log(id) {
            None => id.to_string(),
            Some(log) => located(log, id - log.base),
        }
    }

    /// An id as a timeline's text shows it: `#14` of a single log, the
    /// log and the number among several.
    pub(crate) fn tag(&self, id: u64) -> String {
        match self.log(id) {
            None => format!("#{id}"),
            Some(log) => located(log, id - log.base),
        }
    }

    /// An id in a sentence: `line 14`, `id 5`; among several logs
    /// `b.jsonl:14`, `relaycb.db id 5`.
    pub(crate) fn one(&self, id: u64) -> String {
        match self.log(id) {
            None => format!("{} {id}", self.unit),
            Some(log) => located(log, id - log.base),
        }
    }

    /// Ids in a sentence: `lines 3, 5`; among several logs `a.jsonl:3,
    /// b.jsonl:14`.
    pub(crate) fn list(&self, ids: &[u64]) -> String {
        let cells: Vec<String> = ids.iter().map(|id| self.cell(*id)).collect();
        if self.several() {
            return cells.join(", ");
        }
        let plural = if ids.len() == 1 { "" } else { "s" };
        format!("{}{plural} {}", self.unit, cells.join(", "))
    }

    /// The ids of a JSON report (or timeline) made plain: among several
    /// logs, each id becomes the line or row id within its log, with its
    /// `location` (`b.jsonl:14`) beside it; of one log, nothing changes.
    pub(crate) fn localise(&self, value: &mut Value) {
        if !self.several() {
            return;
        }
        for undecodable in array(value, "undecodable") {
            self.one_in(undecodable, "id", "location");
        }
        for unattributed in array(value, "unattributed") {
            self.one_in(unattributed, "event", "location");
        }
        if let Some(timeline) = value.get_mut("timeline") {
            for entry in array(timeline, "entries") {
                self.one_in(entry, "id", "location");
            }
        }
        let tasks: Vec<&mut Value> = match value.get_mut("task") {
            Some(task) if task.is_object() => vec![task],
            _ => array(value, "tasks").collect(),
        };
        for task in tasks {
            if let Some(exit) = task.get_mut("last_exit") {
                self.one_in(exit, "event", "location");
            }
            for anomaly in array(task, "anomalies") {
                self.many_in(anomaly, "events", "locations");
            }
        }
    }

    fn one_in(&self, object: &mut Value, key: &str, location: &str) {
        let Some(id) = object.get(key).and_then(Value::as_u64) else {
            return;
        };
        object[key] = self.local(id).into();
        object[location] = self.cell(id).into();
    }

    fn many_in(&self, object: &mut Value, key: &str, locations: &str) {
        let Some(ids) = object.get(key).and_then(Value::as_array) else {
            return;
        };
        let ids: Vec<u64> = ids.iter().filter_map(Value::as_u64).collect();
        object[key] = ids.iter().map(|id| self.local(*id)).collect();
        object[locations] = ids.iter().map(|id| self.cell(*id)).collect();
    }
}

fn located(log: &Log, local: u64) -> String {
    match log.unit {
        "line" => format!("{}:{local}", log.name),
        unit => format!("{} {unit} {local}", log.name),
    }
}

/// The elements of an array field of a JSON object (none if absent).
fn array<'v>(value: &'v mut Value, key: &str) -> impl Iterator<Item = &'v mut Value> {
    value
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Logs {
        let mut logs = Logs::new();
        logs.push("a.jsonl".into(), 0, false);
        logs.push("relaycb.db".into(), 15, true);
        logs
    }

    #[test]
    fn the_ids_of_one_log_are_shown_as_they_are() {
        let mut logs = Logs::new();
        logs.push("a.jsonl".into(), 0, false);
        assert_eq!(logs.one(28), "line 28");
        assert_eq!(logs.list(&[3]), "line 3");
        assert_eq!(logs.list(&[3, 5]), "lines 3, 5");
        assert_eq!(logs.cell(28), "28");
        let mut value = serde_json::json!({"undecodable": [{"id": 28}]});
        logs.localise(&mut value);
        assert_eq!(value, serde_json::json!({"undecodable": [{"id": 28}]}));
    }

    #[test]
    fn the_ids_of_several_logs_are_shown_with_their_log() {
        let logs = two();
        assert_eq!(logs.one(14), "a.jsonl:14");
        assert_eq!(logs.one(15 + 5), "relaycb.db id 5");
        assert_eq!(logs.list(&[3, 20]), "a.jsonl:3, relaycb.db id 5");
        assert_eq!(logs.unit(), "id");
    }

    #[test]
    fn a_json_report_of_several_logs_gives_each_id_within_its_log_and_where() {
        let mut value = serde_json::json!({
            "undecodable": [{"id": 2}],
            "tasks": [{"last_exit": {"event": 20}, "anomalies": [{"events": [3, 20]}]}],
        });
        two().localise(&mut value);
        assert_eq!(
            value,
            serde_json::json!({
                "undecodable": [{"id": 2, "location": "a.jsonl:2"}],
                "tasks": [{
                    "last_exit": {"event": 5, "location": "relaycb.db id 5"},
                    "anomalies": [{"events": [3, 5], "locations": ["a.jsonl:3", "relaycb.db id 5"]}],
                }],
            })
        );
    }
}
