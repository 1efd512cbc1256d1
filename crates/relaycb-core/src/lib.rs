//! relaycb-core understands the callbacks that Tencent Cloud CSS sends about
//! relay (pull-and-push) tasks, `event_type = 314`.
//!
//! It decodes a body into a typed [`Callback`] whatever documented shape it
//! came in, saying in [`Deviation`]s what differed from the documented form;
//! encodes a callback back to the wire form; computes the [`DedupKey`] that
//! recognises Tencent's retries; verifies the `t`/`sign` signature; explains
//! `TaskExit` codes in plain words; and folds callbacks into the state of
//! each task with the [`Tracker`].
//!
//! It does no I/O and needs no async runtime.
//!
//! ```
//! use relaycb_core::{decode, explain, Event};
//!
//! let body = br#"{"appid": 4, "callback_event": "TaskExit", "event_type": 314,
//!     "interface": "general_callback",
//!     "msg": "{\"message\":\"write packet error.\",\"code\":-22,\"task_exit_time\":0}",
//!     "product_name": "pullpush", "source_urls": "[\"http://a.example/x.m3u8\"]\n"}"#;
//! let decoded = decode(body)?;
//! match &decoded.callback.event {
//!     Event::TaskExit(exit) => {
//!         assert_eq!(exit.code, Some(-22));
//!         assert_eq!(explain(-22).name, "EINVAL");
//!     }
//!     other => panic!("unexpected event {}", other.name()),
//! }
//! // The sample has no task_id, stream_id nor to_url: accepted, and said.
//! let missing: Vec<_> = decoded.deviations.iter().map(|d| d.path.as_str()).collect();
//! assert_eq!(missing, ["task_id", "stream_id", "to_url"]);
//! # Ok::<(), relaycb_core::Error>(())
//! ```

#![warn(missing_docs)]

mod callback;
mod decode;
mod dedup;
mod deviation;
mod encode;
mod error;
mod exit_code;
mod fast;
mod flat;
pub mod lifecycle;
mod redact;
pub mod signature;
mod when;
mod wire;

pub use callback::{AlarmKind, Callback, Event, FileEvent, RELAY_EVENT_TYPE, TaskExit};
pub use decode::{DecodeOptions, Decoded, decode, decode_keyed, decode_with};
pub use dedup::DedupKey;
pub use deviation::{Deviation, DeviationKind};
pub use encode::{encode, to_wire};
pub use error::{Category, Error};
pub use exit_code::{ExitKind, Explanation, explain};
pub use lifecycle::{Observation, Outcome, TaskState, Tracker};
pub use redact::redact_url;
pub use signature::{KeyRing, SignatureError, sign};
pub use when::{WhenError, parse_when, span_text};
