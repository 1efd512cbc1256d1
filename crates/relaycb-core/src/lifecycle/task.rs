//! The state of one relay task and how each event changes it: the fold of
//! DOMAIN.md's task model.
//!
//! `apply` is only ever called in event order; putting late arrivals back
//! in order is the job of the history in `mod.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::callback::{AlarmKind, Callback, Event};
use crate::exit_code::{Explanation, explain};
use crate::lifecycle::anomaly::{Anomalies, Anomaly, AnomalyKind, EVENTS_KEPT};

/// The longest documented gap between `TaskStart` and the first file.
const FIRST_FILE_WITHIN_MS: i64 = 2_000;
/// Exits closer together than this count towards a restart loop.
const RESTART_LOOP_WINDOW_MS: i64 = 10 * 60 * 1000;
/// How many exits within the window make a restart loop.
const RESTART_LOOP_EXITS: usize = 3;

/// What a task is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Nothing attributable seen yet.
    #[default]
    Unknown,
    /// Started, or playing a file.
    Running,
    /// Exited; not final, a later `TaskStart` makes it running again.
    Exited,
}

impl Phase {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Unknown => "unknown",
            Phase::Running => "running",
            Phase::Exited => "exited",
        }
    }
}

impl std::str::FromStr for Phase {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "unknown" => Ok(Phase::Unknown),
            "running" => Ok(Phase::Running),
            "exited" => Ok(Phase::Exited),
            other => Err(format!(
                "expected one of unknown, running, exited, found {other:?}"
            )),
        }
    }
}

/// The playlist file being played.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentFile {
    /// 0-based playlist index.
    pub index: Option<u32>,
    /// The file's URL.
    pub url: Option<String>,
    /// Documented duration, seconds.
    pub duration: Option<u64>,
    /// When it started, ms since the epoch.
    pub started_at_ms: i64,
    /// When it should end, ms since the epoch, if its duration is known.
    pub expected_end_ms: Option<i64>,
    /// The `VodSourceFileStart` event.
    pub event: u64,
}

/// The latest exit of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    /// Exit code, if the body had one.
    pub code: Option<i64>,
    /// Tencent's message.
    pub message: Option<String>,
    /// What the code means, if there was one.
    pub explanation: Option<Explanation>,
    /// When it happened, ms since the epoch.
    pub at_ms: i64,
    /// The `TaskExit` event.
    pub event: u64,
}

/// Everything relaycb knows about one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    /// Relay task ID.
    pub task_id: String,
    /// Stream name, from the latest event that had one.
    pub stream_id: Option<String>,
    /// Push destination, from the latest event that had one.
    pub to_url: Option<String>,
    /// Sources, from the latest event that had them.
    pub source_urls: Vec<String>,
    /// What the task is doing.
    pub phase: Phase,
    /// The file being played, if any.
    pub current_file: Option<CurrentFile>,
    /// `TaskStart` events.
    pub starts: u64,
    /// `TaskStart` events after the first.
    pub restarts: u64,
    /// `VodSourceFileStart` events.
    pub files_started: u64,
    /// `VodSourceFileFinish` events.
    pub files_finished: u64,
    /// Times the playlist index wrapped back.
    pub loops: u64,
    /// Alarms by type (`unspecified` when the alarm named none).
    pub alarms: BTreeMap<String, u64>,
    /// Exits by code (`none` when the exit had no code).
    pub exits: BTreeMap<String, u64>,
    /// The latest exit.
    pub last_exit: Option<LastExit>,
    /// `ResetTaskConfig` events.
    pub config_resets: u64,
    /// Events of undocumented kinds.
    pub unknown_events: u64,
    /// What looks wrong, one record per kind.
    pub anomalies: Vec<Anomaly>,
    /// Distinct events folded.
    pub events: u64,
    /// Deliveries recognised as repeats of an event already folded.
    pub duplicates: u64,
    /// Time of the earliest event, ms since the epoch.
    pub first_event_at_ms: Option<i64>,
    /// Time of the latest event, ms since the epoch.
    pub last_event_at_ms: Option<i64>,
}

/// One event reduced to what the fold needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: u64,
    /// Event order: time, then a rank that puts a finish before the next
    /// start within the same instant, then the dedup key as a tie-break.
    pub(crate) order: (i64, u8, u64),
    pub(crate) kind: EntryKind,
    /// Where the task streams; shared by consecutive entries that agree, so
    /// the reorder window does not hold a copy per event.
    pub(crate) meta: Arc<Meta>,
}

/// The stream name, destination and sources an event carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) stream_id: Option<String>,
    pub(crate) to_url: Option<String>,
    pub(crate) source_urls: Vec<String>,
    /// [`sources_hash`] of `source_urls`, so that sources are compared
    /// across many tasks cheaply.
    pub(crate) sources_hash: u64,
}

/// A hash of a list of sources: equal lists hash alike.
pub(crate) fn sources_hash(source_urls: &[String]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(source_urls)
}

impl Meta {
    /// The meta of a callback, reusing `previous` when it is the same.
    pub(crate) fn of(callback: &Callback, previous: Option<&Arc<Meta>>) -> Arc<Meta> {
        let stream_id = callback.stream_id.as_deref().filter(|s| !s.is_empty());
        if let Some(previous) = previous
            && previous.stream_id.as_deref() == stream_id
            && previous.to_url == callback.to_url
            && previous.source_urls == callback.source_urls
        {
            return Arc::clone(previous);
        }
        Arc::new(Meta {
            stream_id: stream_id.map(str::to_owned),
            to_url: callback.to_url.clone(),
            source_urls: callback.source_urls.clone(),
            sources_hash: sources_hash(&callback.source_urls),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Start,
    FileStart(File),
    FileFinish(File),
    Exit {
        code: Option<i64>,
        message: Option<String>,
    },
    Alarm(Option<AlarmKind>),
    Reset,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct File {
    index: Option<u32>,
    url: Option<String>,
    duration: Option<u64>,
}

impl Entry {
    pub(crate) fn new(
        id: u64,
        at_ms: i64,
        key: u64,
        callback: &Callback,
        meta: Arc<Meta>,
    ) -> Entry {
        let file = |f: &crate::callback::FileEvent| File {
            index: f.index,
            url: f.url.clone(),
            duration: f.duration,
        };
        let kind = match &callback.event {
            Event::VodSourceFileFinish(f) => EntryKind::FileFinish(file(f)),
            Event::TaskExit(exit) => EntryKind::Exit {
                code: exit.code,
                message: exit.message.clone(),
            },
            Event::TaskStart { .. } => EntryKind::Start,
            Event::VodSourceFileStart(f) => EntryKind::FileStart(file(f)),
            Event::TaskAlarm { alarm } => EntryKind::Alarm(alarm.clone()),
            Event::ResetTaskConfig { .. } => EntryKind::Reset,
            Event::Unknown { .. } => EntryKind::Unknown,
        };
        let rank = same_instant_rank(&callback.event);
        Entry {
            id,
            order: (at_ms, rank, key),
            kind,
            meta,
        }
    }

    pub(crate) fn at_ms(&self) -> i64 {
        self.order.0
    }
}

/// Where an event goes among events of the same instant: a file's finish
/// before the next file's start, an exit before the restart, a task's start
/// before its first file. Lower comes first.
pub fn same_instant_rank(event: &Event) -> u8 {
    match event {
        Event::VodSourceFileFinish(_) => 0,
        Event::TaskExit(_) => 1,
        Event::TaskStart { .. } => 2,
        Event::VodSourceFileStart(_) => 3,
        Event::TaskAlarm { .. } => 4,
        Event::ResetTaskConfig { .. } => 5,
        Event::Unknown { .. } => 6,
    }
}

/// The fold's working state: the public fields plus what the rules need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fold {
    pub(crate) state: TaskState,
    pub(crate) anomalies: Anomalies,
    /// The latest `TaskStart` whose first file has not been seen yet.
    awaiting_first_file: Option<(i64, u64)>,
    last_index: Option<u32>,
    recent_exits: VecDeque<(i64, u64)>,
    /// The meta last applied: consecutive events share one, and then there
    /// is nothing to compare.
    meta: Option<Arc<Meta>>,
}

impl Fold {
    pub(crate) fn new(task_id: &str) -> Fold {
        Fold {
            state: TaskState {
                task_id: task_id.to_owned(),
                stream_id: None,
                to_url: None,
                source_urls: Vec::new(),
                phase: Phase::Unknown,
                current_file: None,
                starts: 0,
                restarts: 0,
                files_started: 0,
                files_finished: 0,
                loops: 0,
                alarms: BTreeMap::new(),
                exits: BTreeMap::new(),
                last_exit: None,
                config_resets: 0,
                unknown_events: 0,
                anomalies: Vec::new(),
                events: 0,
                duplicates: 0,
                first_event_at_ms: None,
                last_event_at_ms: None,
            },
            anomalies: Anomalies::default(),
            awaiting_first_file: None,
            last_index: None,
            recent_exits: VecDeque::new(),
            meta: None,
        }
    }

    /// Applies one event; events must come in event order.
    pub(crate) fn apply(&mut self, entry: &Entry) {
        let at = entry.at_ms();
        let s = &mut self.state;
        s.events += 1;
        s.first_event_at_ms = Some(s.first_event_at_ms.map_or(at, |t| t.min(at)));
        s.last_event_at_ms = Some(s.last_event_at_ms.map_or(at, |t| t.max(at)));
        let meta = &entry.meta;
        if !self.meta.as_ref().is_some_and(|m| Arc::ptr_eq(m, meta)) {
            if meta.stream_id.is_some() && s.stream_id != meta.stream_id {
                s.stream_id.clone_from(&meta.stream_id);
            }
            if meta.to_url.is_some() && s.to_url != meta.to_url {
                s.to_url.clone_from(&meta.to_url);
            }
            if !meta.source_urls.is_empty() && s.source_urls != meta.source_urls {
                s.source_urls.clone_from(&meta.source_urls);
            }
            self.meta = Some(Arc::clone(meta));
        }
        match &entry.kind {
            EntryKind::Start => {
                s.starts += 1;
                s.restarts = s.starts - 1;
                s.phase = Phase::Running;
                s.current_file = None;
                self.last_index = None;
                self.awaiting_first_file = Some((at, entry.id));
            }
            EntryKind::FileStart(file) => {
                s.files_started += 1;
                s.phase = Phase::Running;
                if s.starts == 0 {
                    self.anomalies.record(
                        AnomalyKind::FileWithoutTaskStart,
                        at,
                        &[entry.id],
                        "a file started, but the task was never seen starting".to_owned(),
                    );
                }
                if let Some((started, start_id)) = self.awaiting_first_file.take() {
                    let gap = at - started;
                    if gap > FIRST_FILE_WITHIN_MS {
                        self.anomalies.record(
                            AnomalyKind::LateFileStart,
                            at,
                            &[start_id, entry.id],
                            format!("the first file started {} after the task", span_text(gap)),
                        );
                    }
                }
                if let (Some(prev), Some(index)) = (self.last_index, file.index)
                    && index <= prev
                {
                    s.loops += 1;
                }
                if file.index.is_some() {
                    self.last_index = file.index;
                }
                s.current_file = Some(CurrentFile {
                    index: file.index,
                    url: file.url.clone(),
                    duration: file.duration,
                    started_at_ms: at,
                    expected_end_ms: file
                        .duration
                        .map(|d| at.saturating_add((d as i64).saturating_mul(1000))),
                    event: entry.id,
                });
            }
            EntryKind::FileFinish(file) => {
                s.files_finished += 1;
                s.phase = Phase::Running;
                if s.starts == 0 && s.files_started == 0 {
                    self.anomalies.record(
                        AnomalyKind::FileWithoutTaskStart,
                        at,
                        &[entry.id],
                        "a file finished, but the task was never seen starting".to_owned(),
                    );
                }
                let matches = s
                    .current_file
                    .as_ref()
                    .is_some_and(|c| file.index.is_none() || c.index == file.index);
                if matches {
                    let current = s.current_file.take().expect("checked above");
                    let duration = file.duration.or(current.duration);
                    if let Some(duration) = duration {
                        let expected = (duration as i64).saturating_mul(1000);
                        let played = at - current.started_at_ms;
                        let tolerance = (expected / 10).max(5_000);
                        if played + tolerance < expected {
                            self.anomalies.record(
                                AnomalyKind::FileEndedEarly,
                                at,
                                &[current.event, entry.id],
                                format!(
                                    "file {} played {} of its {}",
                                    index_text(file.index),
                                    span_text(played),
                                    span_text(expected)
                                ),
                            );
                        }
                    }
                }
            }
            EntryKind::Exit { code, message } => {
                s.phase = Phase::Exited;
                s.current_file = None;
                self.awaiting_first_file = None;
                let code_key = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
                *s.exits.entry(code_key).or_default() += 1;
                let explanation = code.map(explain);
                if let (Some(code), Some(explanation)) = (code, &explanation)
                    && *code != 0
                {
                    let mut detail = format!(
                        "exited with {code} ({}): {}",
                        explanation.name, explanation.summary
                    );
                    // One record stands for every error exit: when their
                    // codes differ, say so rather than let the latest speak
                    // for all.
                    let errors: Vec<(&String, &u64)> = s
                        .exits
                        .iter()
                        .filter(|(code, _)| *code != "0" && *code != "none")
                        .collect();
                    if errors.len() > 1 {
                        let counts: Vec<String> =
                            errors.iter().map(|(c, n)| format!("{c} ×{n}")).collect();
                        detail = format!("{detail}; error exits by code: {}", counts.join(", "));
                    }
                    self.anomalies
                        .record(AnomalyKind::ErrorExit, at, &[entry.id], detail);
                }
                s.last_exit = Some(LastExit {
                    code: *code,
                    message: message.clone(),
                    explanation,
                    at_ms: at,
                    event: entry.id,
                });
                self.recent_exits.push_back((at, entry.id));
                while self
                    .recent_exits
                    .front()
                    .is_some_and(|(t, _)| at - t > RESTART_LOOP_WINDOW_MS)
                {
                    self.recent_exits.pop_front();
                }
                let exits = self.recent_exits.len();
                if exits >= RESTART_LOOP_EXITS {
                    // The record keeps only the latest exits; a storm of
                    // them need not be copied whole at every exit.
                    let ids: Vec<u64> = self
                        .recent_exits
                        .range(exits.saturating_sub(EVENTS_KEPT)..)
                        .map(|(_, id)| *id)
                        .collect();
                    self.anomalies.record(
                        AnomalyKind::RestartLoop,
                        at,
                        &ids,
                        format!(
                            "{exits} exits within {} minutes",
                            RESTART_LOOP_WINDOW_MS / 60_000
                        ),
                    );
                }
            }
            EntryKind::Alarm(kind) => {
                let name = kind.as_ref().map_or("unspecified", AlarmKind::as_str);
                *s.alarms.entry(name.to_owned()).or_default() += 1;
            }
            EntryKind::Reset => s.config_resets += 1,
            EntryKind::Unknown => s.unknown_events += 1,
        }
    }
}

/// The overdue-file anomaly as of `now_ms`, if the current file has played
/// longer than its duration plus a grace of 10% (at least 30 s). It
/// happened when the grace ran out, whenever it is asked for; only its
/// words say how long ago the file should have ended.
pub(crate) fn overdue(state: &TaskState, now_ms: i64) -> Option<(i64, u64, String)> {
    let file = state.current_file.as_ref()?;
    let end = file.expected_end_ms?;
    let grace = ((end - file.started_at_ms) / 10).max(30_000);
    (now_ms > end + grace).then(|| {
        (
            end + grace,
            file.event,
            format!(
                "file {} should have ended {} ago and has not finished",
                index_text(file.index),
                span_text(now_ms - end)
            ),
        )
    })
}

/// A span of milliseconds in whole seconds, as people read it.
fn span_text(ms: i64) -> String {
    crate::span_text(u64::try_from(ms / 1000).unwrap_or(0))
}

fn index_text(index: Option<u32>) -> String {
    index.map_or_else(|| "?".to_owned(), |i| i.to_string())
}
