//! Deviations: the ways a body differed from the documented wire form while
//! still being understood.
//!
//! Tencent's documentation disagrees with itself about field names, types
//! and encodings, so lenient decoding accepts every documented shape and
//! records here each place where it had to. A strict caller refuses any
//! deviation; the CLI and the server show them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One place where a body differed from the documented wire form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Deviation {
    /// JSON path of the field (`appid`, `msg.index`); empty for the body itself.
    pub path: String,
    /// What was different.
    #[serde(flatten)]
    pub kind: DeviationKind,
}

/// What was different about a field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeviationKind {
    /// The key was spelled another documented way (`appId` for `appid`).
    Alias {
        /// The spelling that was found.
        found: String,
    },
    /// A number was sent as a string (`"0"` for `0`).
    NumberAsString,
    /// A string was sent as a number (`118148` for `"118148"`).
    StringAsNumber,
    /// A whole number was sent with a fraction part (`5.0` for `5`).
    FloatAsInteger,
    /// A time or a duration came with a fraction of its unit (`12.5`
    /// seconds), which was dropped (`12`).
    FractionDropped,
    /// A point in time came in another unit than the documented one (told
    /// apart by its size) and was converted.
    TimeUnit {
        /// The unit it came in (`milliseconds`).
        found: String,
        /// The documented unit it was converted to (`seconds`).
        documented: String,
    },
    /// A value documented as JSON encoded in a string came as plain JSON.
    NotEncoded,
    /// A single value where a list is documented (one bare URL for
    /// `source_urls`).
    SingleValue,
    /// A documented field was absent.
    Missing,
    /// A field was `null`.
    Null,
    /// A field was an empty string.
    Empty,
    /// An identifier came with white space around it, which was removed.
    Padded,
    /// `msg` was a string but not a JSON object; it is kept as text.
    NotJson {
        /// The parser's complaint.
        reason: String,
    },
    /// The event name was an alarm type (`PushStreamFailed`) rather than
    /// `TaskAlarm`.
    AlarmAsEvent,
    /// The field contradicts another one that takes precedence (an alarm
    /// `msg.type` other than the alarm named by the event).
    Conflict {
        /// The value that was set aside.
        found: String,
    },
    /// The event name is not documented; the callback is kept whole.
    UnknownEvent,
    /// The alarm type is not one of the documented examples.
    UnknownAlarm,
    /// An undocumented key, kept as it came.
    UnknownField,
    /// The same key appeared twice; the last value is used.
    DuplicateKey,
    /// The body started with a UTF-8 byte order mark, which was skipped.
    ByteOrderMark,
}

impl DeviationKind {
    /// The snake_case name of the kind, as used in metrics and reports.
    pub fn name(&self) -> &'static str {
        match self {
            DeviationKind::Alias { .. } => "alias",
            DeviationKind::NumberAsString => "number_as_string",
            DeviationKind::StringAsNumber => "string_as_number",
            DeviationKind::FloatAsInteger => "float_as_integer",
            DeviationKind::FractionDropped => "fraction_dropped",
            DeviationKind::TimeUnit { .. } => "time_unit",
            DeviationKind::NotEncoded => "not_encoded",
            DeviationKind::SingleValue => "single_value",
            DeviationKind::Missing => "missing",
            DeviationKind::Null => "null",
            DeviationKind::Empty => "empty",
            DeviationKind::Padded => "padded",
            DeviationKind::NotJson { .. } => "not_json",
            DeviationKind::AlarmAsEvent => "alarm_as_event",
            DeviationKind::Conflict { .. } => "conflict",
            DeviationKind::UnknownEvent => "unknown_event",
            DeviationKind::UnknownAlarm => "unknown_alarm",
            DeviationKind::UnknownField => "unknown_field",
            DeviationKind::DuplicateKey => "duplicate_key",
            DeviationKind::ByteOrderMark => "byte_order_mark",
        }
    }
}

impl fmt::Display for Deviation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "body"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.kind)
    }
}

/// What was different, without where (`string sent as a number`).
impl fmt::Display for DeviationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviationKind::Alias { found } => write!(f, "spelled `{found}`"),
            DeviationKind::NumberAsString => f.write_str("number sent as a string"),
            DeviationKind::StringAsNumber => f.write_str("string sent as a number"),
            DeviationKind::FloatAsInteger => f.write_str("whole number sent with a fraction"),
            DeviationKind::FractionDropped => {
                f.write_str("fraction of the unit sent, dropped (rounded down)")
            }
            DeviationKind::TimeUnit { found, documented } => {
                write!(
                    f,
                    "a time in {found} where {documented} are documented, converted"
                )
            }
            DeviationKind::NotEncoded => {
                f.write_str("plain JSON where a JSON-encoded string is documented")
            }
            DeviationKind::SingleValue => f.write_str("one value where a list is documented"),
            DeviationKind::Missing => f.write_str("absent"),
            DeviationKind::Null => f.write_str("null"),
            DeviationKind::Empty => f.write_str("empty string"),
            DeviationKind::Padded => f.write_str("white space around the value, removed"),
            DeviationKind::NotJson { reason } => write!(f, "not JSON, kept as text ({reason})"),
            DeviationKind::AlarmAsEvent => f.write_str("alarm type used as the event name"),
            DeviationKind::Conflict { found } => {
                write!(f, "{found:?} contradicts the event name, which is used")
            }
            DeviationKind::UnknownEvent => f.write_str("undocumented event, kept whole"),
            DeviationKind::UnknownAlarm => f.write_str("undocumented alarm type"),
            DeviationKind::UnknownField => f.write_str("undocumented field, kept"),
            DeviationKind::DuplicateKey => f.write_str("key repeated, the last value is used"),
            DeviationKind::ByteOrderMark => f.write_str("starts with a UTF-8 byte order mark"),
        }
    }
}
