//! From events to deliveries: each event is sent a little after it
//! happened, a task's events in the order they happened; with faults, each
//! is sent after a delay of its own, so that a task's events close together
//! may swap, some are sent late enough to arrive well out of order, some
//! are sent again a minute later as Tencent retries, and some come in one
//! of the drifted shapes the documentation has shown (DOMAIN.md §2).

use relaycb_core::lifecycle::same_instant_rank;
use relaycb_core::{DedupKey, Event, encode, to_wire};
use serde_json::Value;

use super::history::Happening;
use super::rng::Rng;

/// How often an event is delayed enough to overtake the next one.
const REORDERED: f64 = 0.05;
/// How often an event is delivered more than once.
const RETRIED: f64 = 0.05;
/// How often an event comes in a drifted shape.
const DRIFTED: f64 = 0.10;
/// Tencent's interval between tries.
const RETRY_INTERVAL_MS: i64 = 60_000;

/// One body to deliver, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// When it is sent, ms since the epoch (simulated time).
    pub(crate) at_ms: i64,
    /// Tie-break that keeps a task's deliveries in generation order.
    pub(crate) seq: u64,
    /// The task's number in the simulation.
    pub(crate) task: u64,
    /// The body, unsigned.
    pub(crate) body: Vec<u8>,
}

/// The deliveries of one task's events.
pub(crate) fn deliveries(
    task: u64,
    events: &[Happening],
    rng: &mut Rng,
    faults: bool,
    seq: &mut u64,
) -> Vec<Delivery> {
    if !faults {
        return in_order(task, events, rng, seq);
    }
    let mut out = Vec::with_capacity(events.len());
    for happening in events {
        let mut at = happening.at_ms + rng.range(50, 400);
        let body = if faults && rng.chance(DRIFTED) {
            drifted(happening, rng)
        } else {
            encode(&happening.callback)
        };
        if faults && rng.chance(REORDERED) {
            at += rng.range(2_000, 8_000);
        }
        let tries = if faults && rng.chance(RETRIED) {
            rng.range(2, 4)
        } else {
            1
        };
        for attempt in 0..tries {
            *seq += 1;
            out.push(Delivery {
                at_ms: at + attempt * RETRY_INTERVAL_MS,
                seq: *seq,
                task,
                body: body.clone(),
            });
        }
    }
    out
}

/// The deliveries of a task's events without faults: each sent 50 to 400
/// ms after it happened, but never before an earlier event of the task, so
/// that none overtakes another.
///
/// Earlier means earlier in the order relaycb-core folds a task's events
/// in: by the time the body gives (whole seconds), then, within one second,
/// a file's finish before the next file's start and so on, then by dedup
/// key. A body gives no finer time, so within a second that order is as
/// true as any; sent in another, two events of one second would be taken
/// for a reordering.
fn in_order(task: u64, events: &[Happening], rng: &mut Rng, seq: &mut u64) -> Vec<Delivery> {
    /// Where relaycb-core folds an event: time, rank in the instant, key.
    type Order = (i64, u8, u64);
    let mut sent: Vec<(Order, i64, Vec<u8>)> = events
        .iter()
        .map(|happening| {
            let at = happening.at_ms + rng.range(50, 400);
            let callback = &happening.callback;
            let body = encode(callback);
            let key = DedupKey::of_body(&body).map_or(0, |key| key.short());
            let happened = callback.occurred_at_ms().unwrap_or(happening.at_ms);
            let order = (happened, same_instant_rank(&callback.event), key);
            (order, at, body)
        })
        .collect();
    sent.sort_by_key(|(order, ..)| *order);
    let mut last = i64::MIN;
    sent.into_iter()
        .map(|(_, at, body)| {
            last = last.max(at);
            *seq += 1;
            Delivery {
                at_ms: last,
                seq: *seq,
                task,
                body,
            }
        })
        .collect()
}

/// The event in one of the documented drifts.
fn drifted(happening: &Happening, rng: &mut Rng) -> Vec<u8> {
    let mut wire = to_wire(&happening.callback);
    let Value::Object(body) = &mut wire else {
        return encode(&happening.callback);
    };
    let is_exit = matches!(happening.callback.event, Event::TaskExit(_));
    let is_file = matches!(
        happening.callback.event,
        Event::VodSourceFileStart(_) | Event::VodSourceFileFinish(_)
    );
    match rng.range(0, 5) {
        // The English tables' spelling.
        0 => {
            if let Some(appid) = body.remove("appid") {
                body.insert("appId".into(), appid);
            }
        }
        // event_time as a number.
        1 => {
            if let Some(Value::String(seconds)) = body.get("event_time")
                && let Ok(n) = seconds.parse::<i64>()
            {
                body.insert("event_time".into(), n.into());
            }
        }
        // msg and source_urls as plain JSON rather than encoded strings.
        2 => {
            for key in ["msg", "source_urls"] {
                if let Some(Value::String(text)) = body.get(key)
                    && let Ok(plain) = serde_json::from_str::<Value>(text)
                {
                    body.insert(key.into(), plain);
                }
            }
        }
        // The TaskExit sample: no task_id, stream_id nor to_url.
        3 if is_exit => {
            for key in ["task_id", "stream_id", "to_url"] {
                body.remove(key);
            }
        }
        // Numbers of msg as strings (index, duration, code).
        _ if is_exit || is_file => {
            if let Some(Value::String(text)) = body.get("msg")
                && let Ok(Value::Object(mut msg)) = serde_json::from_str::<Value>(text)
            {
                for key in ["index", "duration", "code"] {
                    if let Some(Value::Number(n)) = msg.get(key) {
                        let as_text = n.to_string();
                        msg.insert(key.into(), as_text.into());
                    }
                }
                body.insert("msg".into(), Value::String(Value::Object(msg).to_string()));
            }
        }
        _ => {
            body.insert("stream_id".into(), "".into());
        }
    }
    serde_json::to_vec(&wire).expect("a JSON value always serialises")
}
