//! The domain form of a relay callback: what the rest of relaycb works with
//! once a body has been decoded.
//!
//! These types say what a callback means, not how Tencent spelled it: the
//! wire structs that mirror the JSON live in `wire` and never leave the
//! crate.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `event_type` of every relay callback.
pub const RELAY_EVENT_TYPE: u64 = 314;

/// One relay callback, as understood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Callback {
    /// Account APPID (`appid`, also spelled `appId`).
    pub appid: Option<u64>,
    /// Relay task ID; absent from some `TaskExit` bodies.
    pub task_id: Option<String>,
    /// Stream name; sometimes empty.
    pub stream_id: Option<String>,
    /// Push destination.
    pub to_url: Option<String>,
    /// The task's sources, in playlist order.
    pub source_urls: Vec<String>,
    /// The task's callback URL, as echoed by Tencent.
    pub callback_url: Option<String>,
    /// When the event happened, Unix seconds.
    pub event_time: Option<i64>,
    /// `interface`, `"general_callback"` in every sample.
    pub interface: Option<String>,
    /// `product_name`, `"pullpush"` in every sample.
    pub product_name: Option<String>,
    /// Signature expiry, Unix seconds.
    pub t: Option<i64>,
    /// Signature: lower-case hex MD5 of key and `t`.
    pub sign: Option<String>,
    /// What happened.
    pub event: Event,
    /// `msg` as sent, when it was not a JSON object (empty, or not JSON).
    pub raw_msg: Option<String>,
    /// Undocumented keys of `msg`, kept as they came.
    pub msg_extra: BTreeMap<String, Value>,
    /// Undocumented top-level keys, kept as they came.
    pub extra: BTreeMap<String, Value>,
}

impl Callback {
    /// A callback of the given event with every other field empty.
    pub fn new(event: Event) -> Self {
        Callback {
            appid: None,
            task_id: None,
            stream_id: None,
            to_url: None,
            source_urls: Vec::new(),
            callback_url: None,
            event_time: None,
            interface: None,
            product_name: None,
            t: None,
            sign: None,
            event,
            raw_msg: None,
            msg_extra: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// When the event happened in milliseconds since the epoch, if the body
    /// says: `event_time`, else a non-zero time inside `msg`.
    ///
    /// Returns `None` if and only if neither is known.
    pub fn occurred_at_ms(&self) -> Option<i64> {
        if let Some(seconds) = self.event_time {
            return Some(seconds.saturating_mul(1000));
        }
        match &self.event {
            Event::TaskStart {
                task_start_time: Some(ms),
            } if *ms > 0 => Some(*ms),
            Event::TaskExit(exit) => exit.task_exit_time.filter(|ms| *ms > 0),
            _ => None,
        }
    }
}

/// What a callback reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Event {
    /// The task started pulling and pushing.
    TaskStart {
        /// `msg.task_start_time`, ms since the epoch (0 in every sample).
        task_start_time: Option<i64>,
    },
    /// A playlist file started playing.
    VodSourceFileStart(FileEvent),
    /// A playlist file finished playing.
    VodSourceFileFinish(FileEvent),
    /// The task stopped, normally or on an error; it may start again.
    TaskExit(TaskExit),
    /// Something is going wrong with the source or the destination.
    TaskAlarm {
        /// `msg.type`, or the event name when an alarm type was used as
        /// one; `None` when neither says.
        alarm: Option<AlarmKind>,
    },
    /// The task's configuration changed; `msg` is undocumented and kept.
    ResetTaskConfig {
        /// `msg` as it came.
        details: Value,
    },
    /// An event this version does not know; kept whole.
    Unknown {
        /// `callback_event` as it came.
        name: String,
        /// `msg` as it came (`null` when absent or not JSON).
        details: Value,
    },
}

impl Event {
    /// The event's name as Tencent spells it in `callback_event`.
    pub fn name(&self) -> &str {
        match self {
            Event::TaskStart { .. } => "TaskStart",
            Event::VodSourceFileStart(_) => "VodSourceFileStart",
            Event::VodSourceFileFinish(_) => "VodSourceFileFinish",
            Event::TaskExit(_) => "TaskExit",
            Event::TaskAlarm { .. } => "TaskAlarm",
            Event::ResetTaskConfig { .. } => "ResetTaskConfig",
            Event::Unknown { name, .. } => name,
        }
    }
}

/// The details of a playlist file event.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FileEvent {
    /// The file's URL (it need not equal an entry of `source_urls`).
    pub url: Option<String>,
    /// Position in the playlist, 0-based.
    pub index: Option<u32>,
    /// Documented length of the file, in seconds.
    pub duration: Option<u64>,
}

/// The details of a `TaskExit`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TaskExit {
    /// `msg.task_exit_time`, ms since the epoch (0 in the sample).
    pub task_exit_time: Option<i64>,
    /// Exit code: 0 is a normal stop, negative values are FFmpeg errors.
    pub code: Option<i64>,
    /// Tencent's message, such as `"write packet error."`.
    pub message: Option<String>,
}

/// The kind of a `TaskAlarm`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlarmKind {
    /// Pulling the source is unstable.
    PullFileUnstable,
    /// Pushing to the destination is unstable.
    PushStreamUnstable,
    /// Pulling the source failed.
    PullFileFailed,
    /// Pushing to the destination failed.
    PushStreamFailed,
    /// A file ended before its expected duration.
    FileEndEarly,
    /// A type the documentation does not list (it calls its list examples).
    Other(String),
}

impl AlarmKind {
    /// Every documented alarm type.
    pub const DOCUMENTED: [AlarmKind; 5] = [
        AlarmKind::PullFileUnstable,
        AlarmKind::PushStreamUnstable,
        AlarmKind::PullFileFailed,
        AlarmKind::PushStreamFailed,
        AlarmKind::FileEndEarly,
    ];

    /// The documented alarm type of that name, if there is one.
    pub fn documented(name: &str) -> Option<AlarmKind> {
        Some(match name {
            "PullFileUnstable" => AlarmKind::PullFileUnstable,
            "PushStreamUnstable" => AlarmKind::PushStreamUnstable,
            "PullFileFailed" => AlarmKind::PullFileFailed,
            "PushStreamFailed" => AlarmKind::PushStreamFailed,
            "FileEndEarly" => AlarmKind::FileEndEarly,
            _ => return None,
        })
    }

    /// What the alarm means, in words an operator understands.
    pub fn meaning(&self) -> &'static str {
        match self {
            AlarmKind::PullFileUnstable => "pulling the source is unstable",
            AlarmKind::PushStreamUnstable => "pushing to the destination is unstable",
            AlarmKind::PullFileFailed => "pulling the source failed",
            AlarmKind::PushStreamFailed => "pushing to the destination failed",
            AlarmKind::FileEndEarly => "a file ended before its expected duration",
            AlarmKind::Other(_) => "an alarm type the documentation does not list",
        }
    }

    /// The alarm type as Tencent spells it.
    pub fn as_str(&self) -> &str {
        match self {
            AlarmKind::PullFileUnstable => "PullFileUnstable",
            AlarmKind::PushStreamUnstable => "PushStreamUnstable",
            AlarmKind::PullFileFailed => "PullFileFailed",
            AlarmKind::PushStreamFailed => "PushStreamFailed",
            AlarmKind::FileEndEarly => "FileEndEarly",
            AlarmKind::Other(name) => name,
        }
    }
}

impl From<&str> for AlarmKind {
    fn from(name: &str) -> Self {
        AlarmKind::documented(name).unwrap_or_else(|| AlarmKind::Other(name.to_owned()))
    }
}

impl fmt::Display for AlarmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AlarmKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AlarmKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(AlarmKind::from(name.as_str()))
    }
}
