//! From a [`Callback`] back to Tencent's wire form: `msg` and `source_urls`
//! encoded as JSON strings, `event_time` as a string, as the documentation's
//! samples show them.
//!
//! Decoding what this produces gives back an equal [`Callback`] with no
//! deviation other than those the callback itself carries (an empty
//! `stream_id`, an undocumented key): the simulator and the round-trip
//! tests depend on it.

use serde_json::{Map, Value};

use crate::callback::{Callback, Event, FileEvent, RELAY_EVENT_TYPE};

/// Encodes a callback as the body Tencent would send.
pub fn encode(callback: &Callback) -> Vec<u8> {
    serde_json::to_vec(&to_wire(callback)).expect("a JSON map always serialises")
}

/// The wire form of a callback as a JSON value.
pub fn to_wire(callback: &Callback) -> Value {
    let mut body = Map::new();
    if let Some(appid) = callback.appid {
        body.insert("appid".into(), appid.into());
    }
    let name = match (&callback.event, &callback.raw_msg) {
        // A msg kept as text cannot carry the alarm type; the event name,
        // the other documented place for it, can.
        (Event::TaskAlarm { alarm: Some(kind) }, Some(_)) => kind.as_str(),
        (event, _) => event.name(),
    };
    body.insert("callback_event".into(), name.into());
    body.insert("event_type".into(), RELAY_EVENT_TYPE.into());
    let text = |v: &Option<String>| v.clone().map(Value::String);
    let fields = [
        ("task_id", text(&callback.task_id)),
        ("stream_id", text(&callback.stream_id)),
        ("to_url", text(&callback.to_url)),
        ("callback_url", text(&callback.callback_url)),
        ("interface", text(&callback.interface)),
        ("product_name", text(&callback.product_name)),
        ("sign", text(&callback.sign)),
        (
            "event_time",
            callback.event_time.map(|t| t.to_string().into()),
        ),
        ("t", callback.t.map(Value::from)),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            body.insert(key.into(), value);
        }
    }
    if !callback.source_urls.is_empty() {
        let list = serde_json::to_string(&callback.source_urls).expect("strings serialise");
        body.insert("source_urls".into(), format!("{list}\n").into());
    }
    if let Some(msg) = msg(callback) {
        body.insert("msg".into(), msg);
    }
    for (key, value) in &callback.extra {
        body.insert(key.clone(), value.clone());
    }
    Value::Object(body)
}

fn msg(callback: &Callback) -> Option<Value> {
    if let Some(raw) = &callback.raw_msg {
        return Some(Value::String(raw.clone()));
    }
    let mut msg = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            msg.insert(key.to_owned(), value);
        }
    };
    match &callback.event {
        Event::TaskStart { task_start_time } => {
            put("task_start_time", task_start_time.map(Into::into));
        }
        Event::VodSourceFileStart(file) | Event::VodSourceFileFinish(file) => {
            let FileEvent {
                url,
                index,
                duration,
            } = file;
            put("url", url.clone().map(Into::into));
            put("index", index.map(Into::into));
            put("duration", duration.map(Into::into));
        }
        Event::TaskExit(exit) => {
            put("task_exit_time", exit.task_exit_time.map(Into::into));
            put("code", exit.code.map(Into::into));
            put("message", exit.message.clone().map(Into::into));
        }
        Event::TaskAlarm { alarm } => put("type", alarm.as_ref().map(|a| a.as_str().into())),
        Event::ResetTaskConfig { details } | Event::Unknown { details, .. } => {
            return match details {
                Value::Null => None,
                other => Some(Value::String(other.to_string())),
            };
        }
    }
    for (key, value) in &callback.msg_extra {
        msg.insert(key.clone(), value.clone());
    }
    Some(Value::String(Value::Object(msg).to_string()))
}
