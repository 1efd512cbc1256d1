//! The checks after a run: the database file opened read-only and
//! compared with what the clients were answered, the task state the
//! server shows compared with relaycb-core's fold of exactly the events
//! that were answered, and each task's events as the server lists them
//! compared with the task's rows.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use relaycb_core::{DedupKey, Observation, TaskState, Tracker};
use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};

use crate::bodies::seq_of;
use crate::load::{Fate, Ledger};

/// What the store holds, per body number.
#[derive(Debug, Default)]
pub(crate) struct Stored {
    /// `PRAGMA integrity_check` said `ok`.
    pub(crate) intact: bool,
    /// Event rows per body number.
    pub(crate) events: HashMap<u64, u32>,
    /// Deliveries counted for each body number's event.
    pub(crate) deliveries: HashMap<u64, i64>,
    /// Rejected rows per body number.
    pub(crate) rejected: HashMap<u64, u32>,
    /// Rows whose body carries no number of this run.
    pub(crate) foreign: u64,
    /// The fold of every stored event, as relaycb-core does it.
    pub(crate) tasks: Vec<Value>,
    /// The ids of each task's rows (by `task_id`, or the task it was
    /// attributed to), in id order.
    pub(crate) task_events: BTreeMap<String, Vec<i64>>,
}

/// Reads the stopped server's database.
pub(crate) fn read_store(db: &Path) -> Result<Stored> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {} read-only", db.display()))?;
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .context("integrity check failed to run")?;
    let mut stored = Stored {
        intact: check == "ok",
        ..Stored::default()
    };

    let mut tracker = Tracker::new();
    let mut duplicates: BTreeMap<String, u64> = BTreeMap::new();
    let mut select = conn
        .prepare(
            "SELECT id, dedup_key, received_at_ms, deliveries, raw,
                 coalesce(attributed_to, task_id)
             FROM events ORDER BY id",
        )
        .context("cannot read events")?;
    let mut rows = select.query([])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let dedup_key: String = row.get(1)?;
        let received_at_ms: i64 = row.get(2)?;
        let deliveries: i64 = row.get(3)?;
        let raw: Vec<u8> = row.get(4)?;
        if let Some(task) = row.get::<_, Option<String>>(5)? {
            stored.task_events.entry(task).or_default().push(id);
        }
        let Some(seq) = seq_of(&raw) else {
            stored.foreign += 1;
            continue;
        };
        *stored.events.entry(seq).or_default() += 1;
        *stored.deliveries.entry(seq).or_default() += deliveries;
        let decoded = relaycb_core::decode(&raw)
            .with_context(|| format!("stored event {id} does not decode"))?;
        let key = DedupKey::of_body(&raw).context("stored event has no dedup key")?;
        anyhow::ensure!(
            key.to_string() == dedup_key,
            "stored event {id} has dedup key {dedup_key}, its body gives {key}"
        );
        if let Some(task) = &decoded.callback.task_id {
            *duplicates.entry(task.clone()).or_default() += (deliveries - 1).max(0) as u64;
        }
        tracker.observe(Observation {
            id: id as u64,
            key,
            received_at_ms: Some(received_at_ms),
            callback: &decoded.callback,
        });
    }
    let now = now_ms();
    stored.tasks = tracker
        .tasks(Some(now))
        .map(|t| {
            let extra = duplicates.get(&t.task_id).copied().unwrap_or(0);
            project_state(&t, extra)
        })
        .collect();

    let mut select = conn
        .prepare("SELECT raw FROM rejected")
        .context("cannot read rejected")?;
    let mut rows = select.query([])?;
    while let Some(row) = rows.next()? {
        let raw: Vec<u8> = row.get(0)?;
        match seq_of(&raw) {
            Some(seq) => *stored.rejected.entry(seq).or_default() += 1,
            None => stored.foreign += 1,
        }
    }
    Ok(stored)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What is compared of a task: everything the fold decides, nothing that
/// depends on the clock of the moment.
fn project_state(t: &TaskState, duplicates: u64) -> Value {
    json!({
        "task_id": t.task_id,
        "phase": t.phase,
        "starts": t.starts,
        "restarts": t.restarts,
        "files_started": t.files_started,
        "files_finished": t.files_finished,
        "loops": t.loops,
        "alarms": t.alarms,
        "exits": t.exits,
        "config_resets": t.config_resets,
        "unknown_events": t.unknown_events,
        "event_count": t.events,
        "duplicates": duplicates,
        "last_exit": t.last_exit.as_ref().map(|e| json!([e.code, e.event])),
        "current_file": t.current_file.as_ref().map(|f| json!([f.index, f.event])),
        "anomalies": t.anomalies.iter().map(|a| json!([a.kind.as_str(), a.count, a.events])).collect::<Vec<_>>(),
        "first_event_at_ms": t.first_event_at_ms,
        "last_event_at_ms": t.last_event_at_ms,
    })
}

/// The same projection of one task of `GET /api/tasks`.
fn project_api(t: &Value) -> Value {
    let pair = |v: &Value, a: &str, b: &str| {
        if v.is_null() {
            Value::Null
        } else {
            json!([v[a], v[b]])
        }
    };
    json!({
        "task_id": t["task_id"],
        "phase": t["phase"],
        "starts": t["starts"],
        "restarts": t["restarts"],
        "files_started": t["files_started"],
        "files_finished": t["files_finished"],
        "loops": t["loops"],
        "alarms": t["alarms"],
        "exits": t["exits"],
        "config_resets": t["config_resets"],
        "unknown_events": t["unknown_events"],
        "event_count": t["event_count"],
        "duplicates": t["duplicates"],
        "last_exit": pair(&t["last_exit"], "code", "event"),
        "current_file": pair(&t["current_file"], "index", "event"),
        "anomalies": t["anomalies"].as_array().map(|all| all.iter()
            .map(|a| json!([a["kind"], a["count"], a["events"]])).collect::<Vec<_>>()),
        "first_event_at_ms": t["first_event_at_ms"],
        "last_event_at_ms": t["last_event_at_ms"],
    })
}

/// The tasks whose state differs between the fold and the API's answer,
/// with both projections.
pub(crate) fn task_mismatches(folded: &[Value], api: &Value) -> Vec<String> {
    let shown: BTreeMap<String, Value> = api["tasks"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|t| {
                    (
                        t["task_id"].as_str().unwrap_or("").to_owned(),
                        project_api(t),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let folded: BTreeMap<String, Value> = folded
        .iter()
        .map(|t| (t["task_id"].as_str().unwrap_or("").to_owned(), t.clone()))
        .collect();
    let mut out = Vec::new();
    for (id, want) in &folded {
        match shown.get(id) {
            Some(got) if got == want => {}
            Some(got) => out.push(format!("task {id}: folded {want}, served {got}")),
            None => out.push(format!("task {id}: folded but not served")),
        }
    }
    for id in shown.keys().filter(|id| !folded.contains_key(*id)) {
        out.push(format!("task {id}: served but not folded"));
    }
    out
}

/// The tasks whose events, as listed by the server newest first
/// (`listed`), are not exactly their rows in the store.
pub(crate) fn listing_mismatches(
    stored: &BTreeMap<String, Vec<i64>>,
    listed: &BTreeMap<String, Vec<i64>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (task, ids) in stored {
        let want: Vec<i64> = ids.iter().rev().copied().collect();
        match listed.get(task) {
            Some(got) if *got == want => {}
            Some(got) => {
                let first = want.iter().zip(got).position(|(w, g)| w != g);
                out.push(format!(
                    "task {task}: {} events stored, {} listed, first difference at {first:?}",
                    want.len(),
                    got.len()
                ));
            }
            None => out.push(format!("task {task}: events stored but not listed")),
        }
    }
    out
}

/// The body numbers by fate, for the counts.
pub(crate) fn fates(ledger: &Ledger) -> impl Iterator<Item = (usize, bool, Fate)> + '_ {
    (0..ledger.bodies.len()).map(|n| (n, ledger.bodies[n].valid, ledger.fate(n)))
}
