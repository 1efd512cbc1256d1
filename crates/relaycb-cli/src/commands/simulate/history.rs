//! Task histories as Tencent would report them: `TaskStart`, the first file
//! within 2 s, each file finishing after its duration, playlist loops,
//! exits with real FFmpeg codes followed by restarts, alarms, now and then
//! a configuration reset, and a normal exit at the end.
//!
//! Each task draws from its own generator forked from the seed, so a task's
//! history does not depend on how many tasks there are. What each history
//! should fold into is returned beside it, for the tests.

use std::collections::BTreeMap;

use relaycb_core::{AlarmKind, Callback, Event, FileEvent, TaskExit};

use super::rng::Rng;

/// Exit codes a relay really reports, with Tencent-like messages.
const ERROR_EXITS: &[(i64, &str)] = &[
    (-5, "Input/output error"),
    (-22, "write packet error."),
    (-32, "Broken pipe"),
    (-104, "Connection reset by peer"),
    (-110, "Connection timed out"),
    (-111, "Connection refused"),
    (-541_478_725, "End of file"),
    (
        -858_797_304,
        "Server returned 403 Forbidden (access denied)",
    ),
    (-875_574_520, "Server returned 404 Not Found"),
    (-1_482_175_992, "Server returned 5XX Server Error reply"),
];
/// How often a file fails part-way (the task exits with an error).
const FILE_FAILS: f64 = 0.08;
/// How often a file ends early, with a `FileEndEarly` alarm.
const FILE_ENDS_EARLY: f64 = 0.03;
/// How often the configuration is reset while a file plays.
const CONFIG_RESET: f64 = 0.01;
/// How many times a failing task is restarted before it is left exited.
const MAX_RESTARTS: u64 = 3;

/// One event of a task, at the time it happened.
#[derive(Debug, Clone)]
pub(crate) struct Happening {
    /// When, ms since the epoch.
    pub(crate) at_ms: i64,
    /// What Tencent would send about it.
    pub(crate) callback: Callback,
}

/// What a task's history should fold into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) task_id: String,
    pub(crate) starts: u64,
    pub(crate) files_started: u64,
    pub(crate) files_finished: u64,
    pub(crate) loops: u64,
    pub(crate) exits: BTreeMap<String, u64>,
    pub(crate) alarms: u64,
    pub(crate) config_resets: u64,
}

struct Task<'a> {
    rng: &'a mut Rng,
    id: String,
    stream: String,
    to_url: String,
    sources: Vec<String>,
    events: Vec<Happening>,
    expected: Expected,
}

impl Task<'_> {
    fn emit(&mut self, at_ms: i64, event: Event) {
        match &event {
            Event::TaskStart { .. } => self.expected.starts += 1,
            Event::VodSourceFileStart(_) => self.expected.files_started += 1,
            Event::VodSourceFileFinish(_) => self.expected.files_finished += 1,
            Event::TaskExit(exit) => {
                let code = exit
                    .code
                    .map_or_else(|| "none".to_owned(), |c| c.to_string());
                *self.expected.exits.entry(code).or_default() += 1;
            }
            Event::TaskAlarm { .. } => self.expected.alarms += 1,
            Event::ResetTaskConfig { .. } => self.expected.config_resets += 1,
            Event::Unknown { .. } => {}
        }
        let is_file = matches!(
            event,
            Event::VodSourceFileStart(_) | Event::VodSourceFileFinish(_)
        );
        let mut callback = Callback::new(event);
        callback.appid = Some(1_250_000_000);
        callback.task_id = Some(self.id.clone());
        callback.stream_id = Some(self.stream.clone());
        callback.to_url = Some(self.to_url.clone());
        callback.source_urls.clone_from(&self.sources);
        callback.event_time = Some(at_ms.div_euclid(1000));
        callback.interface = Some("general_callback".to_owned());
        callback.product_name = Some("pullpush".to_owned());
        if is_file {
            callback.callback_url = Some("http://callback.example.com/relay".to_owned());
        }
        self.events.push(Happening { at_ms, callback });
    }

    fn start(&mut self, at_ms: i64) {
        self.emit(
            at_ms,
            Event::TaskStart {
                task_start_time: Some(at_ms),
            },
        );
    }

    fn exit(&mut self, at_ms: i64, code: i64, message: &str) {
        self.emit(
            at_ms,
            Event::TaskExit(TaskExit {
                task_exit_time: Some(at_ms),
                code: Some(code),
                message: Some(message.to_owned()),
            }),
        );
    }

    fn alarm(&mut self, at_ms: i64, kind: AlarmKind) {
        self.emit(at_ms, Event::TaskAlarm { alarm: Some(kind) });
    }

    /// A failure at `at_ms`: maybe an alarm first, then an error exit.
    fn fail(&mut self, from_ms: i64, at_ms: i64) {
        if self.rng.chance(0.5) {
            let kind = if self.rng.chance(0.5) {
                AlarmKind::PullFileUnstable
            } else {
                AlarmKind::PushStreamUnstable
            };
            let alarm_at = (at_ms - self.rng.range(2_000, 10_000))
                .max(from_ms + 1_000)
                .min(at_ms);
            self.alarm(alarm_at, kind);
        }
        let (code, message) = *self.rng.pick(ERROR_EXITS);
        self.exit(at_ms, code, message);
    }
}

/// The history of task number `index` (0-based) of a simulation, whose id
/// is `first_task + index`; the history depends on the seed and the
/// index, not on the id. With
/// `hours`, the task runs that long: its playlist loops, and it is started
/// again after every failure, as a task pushed around the clock; without,
/// it plays its playlist 1 to 3 times and is left exited after
/// [`MAX_RESTARTS`] restarts.
pub(crate) fn task(
    seed: u64,
    index: u64,
    first_task: u64,
    files: u32,
    start_s: i64,
    hours: Option<u32>,
) -> (Vec<Happening>, Expected) {
    let mut rng = Rng::fork(seed, index);
    let id = first_task.saturating_add(index).to_string();
    let sources = if files == 0 {
        vec![format!("rtmp://origin.example.com/live/src{id}")]
    } else {
        (0..files)
            .map(|k| format!("http://vod.example.com/sim/{id}/{k}.mp4"))
            .collect()
    };
    let begin = start_s * 1000 + rng.range(0, 120_000);
    let mut task = Task {
        stream: format!("sim{id}"),
        to_url: format!("rtmp://push.example.com/live/sim{id}"),
        sources,
        events: Vec::new(),
        expected: Expected {
            task_id: id.clone(),
            ..Expected::default()
        },
        id,
        rng: &mut rng,
    };
    let until = hours.map(|h| begin + i64::from(h) * 3_600_000);
    if files == 0 {
        live(&mut task, begin, until);
    } else {
        playlist(&mut task, begin, files, until);
    }
    (task.events, task.expected)
}

/// A playlist task: its files in order, looped 0 to 2 times, or until
/// `until` (ms since the epoch).
fn playlist(task: &mut Task<'_>, begin: i64, files: u32, until: Option<i64>) {
    let durations: Vec<u64> = (0..files).map(|_| task.rng.range(30, 600) as u64).collect();
    let plays = u64::from(files) * (1 + task.rng.range(0, 2) as u64);
    let mut now = begin;
    task.start(now);
    now += task.rng.range(0, 1_500);
    let mut restarts = 0;
    let mut played = 0;
    let mut previous: Option<u32> = None;
    while until.map_or(played < plays, |until| now < until) {
        let index = (played % u64::from(files)) as u32;
        let duration = durations[index as usize];
        if previous.is_some_and(|p| index <= p) {
            task.expected.loops += 1;
        }
        previous = Some(index);
        let file = FileEvent {
            url: Some(task.sources[index as usize].clone()),
            index: Some(index),
            duration: Some(duration),
        };
        task.emit(now, Event::VodSourceFileStart(file.clone()));
        let length = duration as i64 * 1000;
        if task.rng.chance(CONFIG_RESET) {
            let at = now + task.rng.range(1_000, length - 1_000);
            task.emit(
                at,
                Event::ResetTaskConfig {
                    details: serde_json::Value::Null,
                },
            );
        }
        if task.rng.chance(FILE_FAILS) {
            let at = now + task.rng.range(length / 10, length * 9 / 10);
            task.fail(now, at);
            if restarts == MAX_RESTARTS && until.is_none() {
                return;
            }
            restarts += 1;
            now = at + task.rng.range(30_000, 90_000);
            task.start(now);
            now += task.rng.range(0, 1_500);
            // The restarted task plays the failed file again.
            previous = None;
            continue;
        }
        let end = if task.rng.chance(FILE_ENDS_EARLY) {
            let at = now + length * 4 / 10;
            task.alarm(at, AlarmKind::FileEndEarly);
            at
        } else {
            now + length
        };
        task.emit(end, Event::VodSourceFileFinish(file));
        now = end;
        played += 1;
    }
    task.exit(now + 1_000, 0, "task end");
}

/// A live-source task: runs 1 to 4 stretches of 5 to 30 minutes, or
/// stretches until `until`, failing now and then.
fn live(task: &mut Task<'_>, begin: i64, until: Option<i64>) {
    let stretches = task.rng.range(1, 4);
    let mut now = begin;
    task.start(now);
    let mut restarts = 0;
    let mut done = 0;
    while until.map_or(done < stretches, |until| now < until) {
        let length = task.rng.range(5, 30) * 60_000;
        if task.rng.chance(FILE_FAILS * 2.0) {
            let at = now + task.rng.range(length / 10, length * 9 / 10);
            task.fail(now, at);
            if restarts == MAX_RESTARTS && until.is_none() {
                return;
            }
            restarts += 1;
            now = at + task.rng.range(30_000, 90_000);
            task.start(now);
            continue;
        }
        now += length;
        done += 1;
    }
    // A task kept running may have just been started again at `now`: its
    // end comes after that start.
    let end = if until.is_some() { now + 1_000 } else { now };
    task.exit(end, 0, "task end");
}
