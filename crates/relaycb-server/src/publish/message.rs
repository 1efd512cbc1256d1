//! What a stored event becomes on NATS: its subject and its CloudEvents 1.0
//! JSON body (structured mode).
//!
//! - subject `<prefix>.<appid>.<task_id>.<event>`, each token with every
//!   character a subject cannot hold in a token (`.`, `*`, `>`, whitespace,
//!   control characters) replaced by `_`, and `_` for a missing or empty
//!   one; so a consumer follows one task with `<prefix>.*.<task_id>.>`.
//! - `id`: the dedup key, also sent as `Nats-Msg-Id` so that JetStream
//!   drops a republished event within its duplicate window.
//! - `source`: the appid in decimal, a relative URI-reference (`_` when
//!   the body has none). `type`: `com.tencent.css.relay.<callback_event>`.
//!   `subject`: the task id (or the task the event was attributed to),
//!   absent when unknown.
//! - `time`: when the event happened by the body (`event_time`, else a time
//!   in `msg`), else when it arrived; RFC 3339 in UTC with milliseconds.
//! - `relaycbeventid`: the event's id in the store (`/api/events/<id>`).
//! - `datacontenttype` `application/json`, `data` the normalised callback
//!   (relaycb-core's serde form of `Callback`, with `msg` decoded).

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::store::OutboxRow;

/// The `Content-Type` header of every message.
pub(crate) const CONTENT_TYPE: &str = "application/cloudevents+json";

/// Prefix of the CloudEvents `type`.
const TYPE_PREFIX: &str = "com.tencent.css.relay.";

/// Times RFC 3339 can show: up to the end of year 9999, in milliseconds.
const LAST_MS: i64 = 253_402_300_800_000 - 1;

/// One message ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    pub(crate) subject: String,
    /// The `Nats-Msg-Id` header: the dedup key.
    pub(crate) msg_id: String,
    /// The CloudEvents JSON.
    pub(crate) body: Vec<u8>,
}

/// Builds the message of one outbox row under the subject `prefix`.
///
/// Fails only if the stored callback is not valid JSON.
pub(crate) fn build(prefix: &str, row: &OutboxRow) -> Result<Message, serde_json::Error> {
    let data: Value = serde_json::from_str(&row.decoded)?;
    let appid = data
        .get("appid")
        .and_then(Value::as_u64)
        .map(|a| a.to_string());
    let appid = appid.as_deref().unwrap_or("_");
    let subject = format!(
        "{prefix}.{}.{}.{}",
        token(appid),
        token(row.task_id.as_deref().unwrap_or("")),
        token(&row.callback_event),
    );
    let mut event = json!({
        "specversion": "1.0",
        "id": row.dedup_key,
        "source": appid,
        "type": format!("{TYPE_PREFIX}{}", row.callback_event),
        "relaycbeventid": row.event_id,
        "datacontenttype": "application/json",
    });
    if let Some(task) = row.task_id.as_deref().filter(|t| !t.is_empty()) {
        event["subject"] = Value::from(task);
    }
    let time = row
        .occurred_at_ms
        .filter(|ms| (0..=LAST_MS).contains(ms))
        .or(Some(row.received_at_ms).filter(|ms| (0..=LAST_MS).contains(ms)));
    if let Some(ms) = time {
        let at = UNIX_EPOCH + Duration::from_millis(ms as u64);
        event["time"] = Value::from(humantime::format_rfc3339_millis(at).to_string());
    }
    event["data"] = data;
    Ok(Message {
        subject,
        msg_id: row.dedup_key.clone(),
        body: serde_json::to_vec(&event).expect("a JSON value always serialises"),
    })
}

/// One subject token: what a token cannot hold becomes `_`; empty is `_`.
fn token(text: &str) -> String {
    if text.is_empty() {
        return "_".to_owned();
    }
    text.chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(task_id: Option<&str>, event: &str, decoded: &Value) -> OutboxRow {
        OutboxRow {
            event_id: 42,
            dedup_key: "ab12".to_owned(),
            task_id: task_id.map(str::to_owned),
            callback_event: event.to_owned(),
            occurred_at_ms: Some(1_700_000_000_123),
            received_at_ms: 1_700_000_005_000,
            decoded: decoded.to_string(),
        }
    }

    fn body(message: &Message) -> Value {
        serde_json::from_slice(&message.body).unwrap()
    }

    #[test]
    fn a_task_event_is_a_cloudevent_under_its_app_task_and_event() {
        let data = json!({"appid": 1253, "task_id": "118148", "event": {"kind": "TaskStart"}});
        let message = build("relaycb", &row(Some("118148"), "TaskStart", &data)).unwrap();
        assert_eq!(message.subject, "relaycb.1253.118148.TaskStart");
        assert_eq!(message.msg_id, "ab12");
        assert_eq!(
            body(&message),
            json!({
                "specversion": "1.0",
                "id": "ab12",
                "source": "1253",
                "type": "com.tencent.css.relay.TaskStart",
                "subject": "118148",
                "time": "2023-11-14T22:13:20.123Z",
                "relaycbeventid": 42,
                "datacontenttype": "application/json",
                "data": data,
            })
        );
    }

    #[test]
    fn what_a_subject_cannot_hold_becomes_an_underscore() {
        let message = build(
            "css.relay",
            &row(Some("a.b *>\tc"), "Odd Event", &json!({"appid": null})),
        )
        .unwrap();
        assert_eq!(message.subject, "css.relay._.a_b____c.Odd_Event");
        let event = body(&message);
        assert_eq!(event["source"], "_");
        assert_eq!(
            event["subject"], "a.b *>\tc",
            "the CloudEvents subject is kept as it is"
        );
        assert_eq!(event["type"], "com.tencent.css.relay.Odd Event");
    }

    #[test]
    fn without_a_task_there_is_no_subject_and_without_a_time_the_arrival_is_used() {
        let mut r = row(None, "TaskExit", &json!({"appid": 7}));
        r.occurred_at_ms = None;
        let message = build("relaycb", &r).unwrap();
        assert_eq!(message.subject, "relaycb.7._.TaskExit");
        let event = body(&message);
        assert!(event.get("subject").is_none(), "{event}");
        assert_eq!(event["time"], "2023-11-14T22:13:25.000Z");

        r.occurred_at_ms = Some(i64::MAX);
        r.received_at_ms = -1;
        let event = body(&build("relaycb", &r).unwrap());
        assert!(
            event.get("time").is_none(),
            "a time RFC 3339 cannot show is left out"
        );
    }

    #[test]
    fn a_stored_callback_that_is_not_json_cannot_be_published() {
        let mut r = row(Some("1"), "TaskStart", &json!({}));
        r.decoded = "{".to_owned();
        assert!(build("relaycb", &r).is_err());
    }
}
