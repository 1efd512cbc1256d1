//! The streaming part of `relaycb analyze`: a reader thread reads chunks of
//! a log, worker threads decode them (one per core), and the results are
//! folded into relaycb-core's [`Tracker`] in log order, counting what the tracker does not (events by name, duplicates,
//! deviations, bodies that did not decode).
//!
//! Memory grows with the number of tasks (the tracker's state and the
//! per-task marks of a plot), never with the number of events: counts are
//! kept by name, and only the first few errors are kept whole.
//!
//! FIXME: on the benchmark's week log (1.25 GB, 477 tasks) analyze reads 3.0
//! to 3.7 times as fast as `jq -c .task_id` (target 8), in under 50 MiB
//! (see BENCHMARKS.md). It is bound by the CPU time of all its threads on
//! two cores, 3 to 4.5 us an event from machine to machine, of which the
//! two decoding threads take about 70%: decoding (most of it building the
//! `String`s of a `Callback`, about 20 allocations, and moving the result
//! between threads) and the SHA-256 dedup key (SHA-NI already; the key
//! also orders events of the same instant, so it cannot simply be made
//! cheaper). The fold takes about a quarter on a thread of its own, much
//! of it waiting on memory: each event probes its task's set of recent
//! keys and its reorder window, which for 477 tasks do not stay in cache.
//! 8 times jq needs about 2 us an event in all.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use relaycb_core::{
    DecodeOptions, Decoded, DedupKey, Observation, Outcome, TaskState, Tracker, decode_keyed,
};

use super::plot::PlotData;
use super::timeline::Timeline;
use crate::input::log::{self, Payload, Progress, Record, Records};

/// Records decoded together: big enough to hand between threads cheaply,
/// small enough to keep memory flat.
const CHUNK: usize = 256;

/// How many undecodable bodies are kept for the report (all are counted).
pub(crate) const ERRORS_KEPT: usize = 20;

/// Everything `analyze` learns from a log.
pub(crate) struct Analysis {
    /// The state of every task.
    pub(crate) tracker: Tracker,
    /// Records read (lines or rows).
    pub(crate) records: u64,
    /// Deliveries they stand for (a stored row may stand for several).
    pub(crate) deliveries: u64,
    /// Deliveries recognised as repeats of an event already seen.
    pub(crate) duplicates: u64,
    /// Repeats the server had already folded into one row (`deliveries - 1`).
    pub(crate) stored_repeats: u64,
    /// Those of them whose event went to a task, by task: a task's repeats
    /// are these and those the tracker recognised, as the server counts
    /// them.
    pub(crate) stored_repeats_by_task: BTreeMap<String, u64>,
    /// Distinct events by name.
    pub(crate) events: BTreeMap<String, u64>,
    /// Deliveries by event name.
    pub(crate) deliveries_by_event: BTreeMap<String, u64>,
    /// Deviations of distinct events, by `path: what`.
    pub(crate) deviations: BTreeMap<String, u64>,
    /// Distinct events that deviated at all.
    pub(crate) deviating_events: u64,
    /// Bodies that could not be decoded.
    pub(crate) undecodable: u64,
    /// The first [`ERRORS_KEPT`] of them: id and reason.
    pub(crate) errors: Vec<(u64, String)>,
    /// One task's events, when `--task` asked for them.
    pub(crate) timeline: Option<Timeline>,
    /// Marks for a picture, when `--plot` asked for one.
    pub(crate) plot: Option<PlotData>,
}

/// One record after decoding.
struct Decodes {
    id: u64,
    received_at_ms: Option<i64>,
    deliveries: u64,
    result: Result<(Decoded, DedupKey), String>,
}

impl Analysis {
    /// An empty analysis; `task` asks for that task's timeline, `plot` for
    /// the marks of a picture.
    pub(crate) fn new(task: Option<String>, plot: bool) -> Analysis {
        Analysis {
            tracker: Tracker::new(),
            records: 0,
            deliveries: 0,
            duplicates: 0,
            stored_repeats: 0,
            stored_repeats_by_task: BTreeMap::new(),
            events: BTreeMap::new(),
            deliveries_by_event: BTreeMap::new(),
            deviations: BTreeMap::new(),
            deviating_events: 0,
            undecodable: 0,
            errors: Vec::new(),
            timeline: task.map(Timeline::new),
            plot: plot.then(PlotData::default),
        }
    }

    /// Reads a log and folds it: a reader thread reads chunks, `threads`
    /// workers decode them, and this thread folds them back in log order.
    /// `base` is added to every id (line number or row id), so that ids
    /// stay distinct across several logs; `progress` is told after each
    /// chunk. Returns the highest id given (`base` if none) and whether the
    /// log held stored events (export lines or rows) rather than bare
    /// bodies.
    pub(crate) fn read_log(
        &mut self,
        path: &str,
        threads: usize,
        base: u64,
        mut progress: impl FnMut(Progress),
    ) -> anyhow::Result<(u64, bool)> {
        let threads = threads.max(1);
        let mut last_id = base;
        let mut stored = false;
        std::thread::scope(|scope| {
            let (chunks, to_decode) = mpsc::sync_channel::<Chunk<Records>>(threads * 2);
            let to_decode = Arc::new(Mutex::new(to_decode));
            let (decoded, to_fold) = mpsc::sync_channel::<Chunk<Vec<Decodes>>>(threads * 2);
            let reader = scope.spawn(move || {
                let mut seq = 0;
                log::read(path, CHUNK, |records, read| {
                    let stored = records
                        .iter()
                        .any(|r| !matches!(r.payload, Payload::Body(_)));
                    let chunk = Chunk {
                        seq,
                        worker: 0,
                        items: records,
                        read,
                        stored,
                    };
                    seq += 1;
                    // A closed channel means the analysis stopped: stop reading.
                    chunks
                        .send(chunk)
                        .map_err(|_| anyhow::anyhow!("analysis stopped"))
                })
            });
            // What was folded goes back to the worker that decoded it, to be
            // freed there: the allocator frees memory on the thread that
            // allocated it at a fraction of the cost of freeing it on another.
            let mut give_back = Vec::with_capacity(threads);
            for worker in 0..threads {
                let (to_decode, decoded) = (Arc::clone(&to_decode), decoded.clone());
                let (back, folded) = mpsc::channel::<Vec<Decodes>>();
                give_back.push(back);
                scope.spawn(move || {
                    loop {
                        // Free what came back since the last chunk.
                        folded.try_iter().for_each(drop);
                        let next = to_decode.lock().expect("queue lock").recv();
                        let Ok(chunk) = next else { break };
                        let records = &chunk.items;
                        let items = records
                            .iter()
                            .map(|r| decode_one(records, r, base))
                            .collect();
                        let chunk = Chunk {
                            seq: chunk.seq,
                            worker,
                            items,
                            read: chunk.read,
                            stored: chunk.stored,
                        };
                        if decoded.send(chunk).is_err() {
                            break;
                        }
                    }
                    // The rest comes back as the fold finishes, which it does
                    // only once every worker has let go of `decoded`.
                    drop(decoded);
                    folded.into_iter().for_each(drop);
                });
            }
            drop(decoded);
            // Workers finish out of order; fold strictly in log order.
            let mut waiting = BTreeMap::new();
            let mut next = 0;
            for chunk in to_fold {
                waiting.insert(chunk.seq, chunk);
                while let Some(chunk) = waiting.remove(&next) {
                    stored |= chunk.stored;
                    for item in &chunk.items {
                        last_id = last_id.max(item.id);
                        self.fold(item);
                    }
                    // A worker that stopped has dropped its end: the chunk is
                    // then freed here.
                    let _ = give_back[chunk.worker].send(chunk.items);
                    progress(chunk.read);
                    next += 1;
                }
            }
            drop(give_back);
            reader.join().expect("the reader thread never panics")
        })?;
        Ok((last_id, stored))
    }

    /// A task's state as reported: the tracker's, with the repeats the
    /// server had merged into its stored events counted among its
    /// duplicates.
    pub(crate) fn reported(&self, mut state: TaskState) -> TaskState {
        state.duplicates += self
            .stored_repeats_by_task
            .get(&state.task_id)
            .copied()
            .unwrap_or_default();
        state
    }

    fn fold(&mut self, item: &Decodes) {
        self.records += 1;
        self.deliveries += item.deliveries;
        self.stored_repeats += item.deliveries - 1;
        let (decoded, key) = match &item.result {
            Ok((decoded, key)) => (decoded, *key),
            Err(reason) => {
                self.undecodable += 1;
                if self.errors.len() < ERRORS_KEPT {
                    self.errors.push((item.id, reason.clone()));
                }
                return;
            }
        };
        let callback = &decoded.callback;
        let name = callback.event.name();
        count(&mut self.deliveries_by_event, name, item.deliveries);
        let outcome = self.tracker.observe(Observation {
            id: item.id,
            key,
            received_at_ms: item.received_at_ms,
            callback,
        });
        if let Outcome::Duplicate { task_id } | Outcome::Applied { task_id, .. } = &outcome
            && item.deliveries > 1
        {
            count(
                &mut self.stored_repeats_by_task,
                task_id,
                item.deliveries - 1,
            );
        }
        let task_id = match &outcome {
            Outcome::Duplicate { task_id } => {
                self.duplicates += 1;
                if let Some(timeline) = &mut self.timeline {
                    timeline.add(task_id, item.id, item.received_at_ms, callback, true);
                }
                return;
            }
            Outcome::Applied { task_id, .. } => Some(task_id.as_str()),
            Outcome::Unattributed => None,
        };
        count(&mut self.events, name, 1);
        if !decoded.deviations.is_empty() {
            self.deviating_events += 1;
        }
        for deviation in &decoded.deviations {
            *self.deviations.entry(deviation.to_string()).or_default() += 1;
        }
        if let Some(task_id) = task_id {
            if let Some(timeline) = &mut self.timeline {
                timeline.add(task_id, item.id, item.received_at_ms, callback, false);
            }
            // With `--task`, the picture is of that task alone.
            if let Some(plot) = &mut self.plot
                && self.timeline.as_ref().is_none_or(|t| t.task_id == task_id)
            {
                plot.add(task_id, item.received_at_ms, callback);
            }
        }
    }
}

/// Adds to a count by name, allocating the name only the first time.
fn count(counts: &mut BTreeMap<String, u64>, name: &str, n: u64) {
    match counts.get_mut(name) {
        Some(total) => *total += n,
        None => {
            counts.insert(name.to_owned(), n);
        }
    }
}

/// Records (or what they decoded to) of one chunk of a log, numbered so
/// that they can be folded in log order.
struct Chunk<T> {
    seq: u64,
    /// The worker that decoded it (0 before decoding).
    worker: usize,
    items: T,
    read: Progress,
    stored: bool,
}

fn decode_one(records: &Records, record: &Record, base: u64) -> Decodes {
    let is_line = !matches!(record.payload, Payload::Row(_));
    let line = base + record.line;
    let delivery = match records.delivery(record) {
        Ok(delivery) => delivery,
        Err(reason) => {
            return Decodes {
                id: line,
                received_at_ms: None,
                deliveries: 1,
                result: Err(reason),
            };
        }
    };
    // Bare bodies are known by their line; stored rows by their row id.
    let id = if is_line && delivery.received_at_ms.is_none() {
        line
    } else {
        base + delivery.id
    };
    // Decoding's error first, then the key's.
    let result = decode_keyed(&delivery.body, DecodeOptions::default())
        .and_then(|(decoded, key)| key.map(|key| (decoded, key)))
        .map_err(|e| e.to_string());
    Decodes {
        id,
        received_at_ms: delivery.received_at_ms,
        deliveries: delivery.deliveries,
        result,
    }
}
