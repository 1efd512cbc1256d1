//! The callbacks a run sends: each one unique (its number is in the body
//! as `chaos_seq`, an unknown key that the server keeps), most of them
//! valid relay events spread over a few tasks, a few of them junk that the
//! server must refuse and keep in its rejected store.

use bytes::Bytes;
use serde_json::json;

use crate::rng::Rng;

/// The top-level key that numbers each body.
pub(crate) const SEQ_KEY: &str = "chaos_seq";

/// One body in every `JUNK_EVERY` is junk.
const JUNK_EVERY: u64 = 25;

const ALARMS: [&str; 5] = [
    "PullFileUnstable",
    "PushStreamUnstable",
    "PullFileFailed",
    "PushStreamFailed",
    "FileEndEarly",
];
const EXIT_CODES: [i64; 5] = [0, -5, -22, -104, -541_478_725];

/// A body and whether the server must accept it.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    pub(crate) bytes: Bytes,
    pub(crate) valid: bool,
}

/// `count` bodies over `tasks` tasks, chosen by `seed`.
pub(crate) fn generate(count: usize, tasks: u64, seed: u64) -> Vec<Body> {
    let mut rng = Rng::new(seed);
    (0..count as u64)
        .map(|n| {
            if n % JUNK_EVERY == JUNK_EVERY - 1 {
                // Not JSON, and unique, so each refusal is told apart.
                return Body {
                    bytes: Bytes::from(format!("{{\"{SEQ_KEY}\": {n}, not json")),
                    valid: false,
                };
            }
            let task = rng.below(tasks.max(1)) + 1000;
            let (event, msg) = match rng.below(8) {
                0 | 1 => ("TaskStart", json!({ "task_start_time": 0 })),
                2 | 3 => ("TaskAlarm", json!({ "type": rng.pick(&ALARMS) })),
                4 => (
                    "TaskExit",
                    json!({ "task_exit_time": 0, "code": rng.pick(&EXIT_CODES), "message": "chaos" }),
                ),
                5 => (
                    "VodSourceFileStart",
                    // A day long: nothing becomes overdue during a run.
                    json!({ "url": "http://a/x.mp4", "index": rng.below(4), "duration": 86_400 }),
                ),
                6 => (
                    "VodSourceFileFinish",
                    json!({ "url": "http://a/x.mp4", "index": rng.below(4), "duration": 86_400 }),
                ),
                _ => ("ResetTaskConfig", json!({})),
            };
            let body = json!({
                "appid": 1,
                "event_type": 314,
                "callback_event": event,
                "task_id": task.to_string(),
                "stream_id": format!("s{task}"),
                "to_url": "rtmp://a/b",
                "source_urls": "[\"http://a/x.m3u8\"]\n",
                "msg": msg.to_string(),
                SEQ_KEY: n,
            });
            Body {
                bytes: Bytes::from(body.to_string()),
                valid: true,
            }
        })
        .collect()
}

/// The number of a body, read back from the stored bytes.
pub(crate) fn seq_of(raw: &[u8]) -> Option<u64> {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(raw) {
        return value.get(SEQ_KEY)?.as_u64();
    }
    // Junk: `{"chaos_seq": N, not json`.
    let text = std::str::from_utf8(raw).ok()?;
    let rest = text.strip_prefix(&format!("{{\"{SEQ_KEY}\": "))?;
    rest.split(',').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_unique_decodable_and_numbered() {
        let bodies = generate(200, 8, 3);
        let mut keys = std::collections::HashSet::new();
        for (n, body) in bodies.iter().enumerate() {
            assert_eq!(seq_of(&body.bytes), Some(n as u64));
            let decoded = relaycb_core::decode(&body.bytes);
            assert_eq!(decoded.is_ok(), body.valid, "{:?}", body.bytes);
            if body.valid {
                assert!(keys.insert(relaycb_core::DedupKey::of_body(&body.bytes).unwrap()));
            }
        }
        assert_eq!(bodies.iter().filter(|b| !b.valid).count(), 8);
    }
}
