//! Properties that must hold for every input, not only for the fixtures:
//! the decoder never panics, encoding round-trips, retries share a dedup
//! key, and the task fold does not depend on arrival order, nor on when its
//! state is asked for.

use std::collections::BTreeMap;

use proptest::prelude::*;
use relaycb_core::lifecycle::AnomalyKind;
use relaycb_core::{
    AlarmKind, Callback, DedupKey, Event, FileEvent, Observation, TaskExit, TaskState, Tracker,
    decode, encode,
};
use serde_json::Value;

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

/// An identifier as decoding leaves it: white space around it is removed.
fn opt_identifier() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text().prop_map(|s| s.trim().to_owned()))
}

fn extra_map() -> impl Strategy<Value = BTreeMap<String, Value>> {
    let value = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    proptest::collection::btree_map("x_[a-z]{1,8}", value, 0..3)
}

/// A Unix time in seconds as decoding leaves it: one whose size says
/// seconds, or 0 and below (a larger one is taken for milliseconds and
/// converted, so it cannot round-trip).
fn seconds() -> impl Strategy<Value = Option<i64>> {
    proptest::option::of(prop_oneof![i64::MIN..=0, 1..100_000_000_000i64])
}

/// A Unix time in milliseconds as decoding leaves it (see [`seconds`]).
fn milliseconds() -> impl Strategy<Value = Option<i64>> {
    proptest::option::of(prop_oneof![
        i64::MIN..=0,
        100_000_000_000..100_000_000_000_000i64
    ])
}

fn file_event() -> impl Strategy<Value = FileEvent> {
    (
        opt_text(),
        proptest::option::of(any::<u32>()),
        proptest::option::of(0..=i64::MAX as u64),
    )
        .prop_map(|(url, index, duration)| FileEvent {
            url,
            index,
            duration,
        })
}

fn alarm() -> impl Strategy<Value = Option<AlarmKind>> {
    proptest::option::of(prop_oneof![
        proptest::sample::select(AlarmKind::DOCUMENTED.to_vec()),
        "[A-Z][a-z]{1,12}X".prop_map(AlarmKind::Other),
    ])
}

fn details() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        extra_map().prop_map(|m| Value::Object(m.into_iter().collect())),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        milliseconds().prop_map(|t| Event::TaskStart { task_start_time: t }),
        file_event().prop_map(Event::VodSourceFileStart),
        file_event().prop_map(Event::VodSourceFileFinish),
        (
            milliseconds(),
            proptest::option::of(any::<i64>()),
            opt_text()
        )
            .prop_map(|(task_exit_time, code, message)| Event::TaskExit(TaskExit {
                task_exit_time,
                code,
                message
            })),
        alarm().prop_map(|alarm| Event::TaskAlarm { alarm }),
        details().prop_map(|details| Event::ResetTaskConfig { details }),
        ("Zz[A-Za-z]{0,10}", details())
            .prop_map(|(name, details)| Event::Unknown { name, details }),
    ]
}

prop_compose! {
    fn callback()(
        appid in proptest::option::of(0..=i64::MAX as u64),
        task_id in opt_identifier(),
        stream_id in opt_identifier(),
        to_url in opt_text(),
        source_urls in proptest::collection::vec(text(), 0..3),
        callback_url in opt_text(),
        event_time in seconds(),
        interface in opt_text(),
        product_name in opt_text(),
        t in proptest::option::of(any::<i64>()),
        sign in opt_text(),
        event in event(),
        msg_extra in extra_map(),
        extra in extra_map(),
        unreadable_msg in proptest::option::of("[a-z][a-z ]{0,20}"),
    ) -> Callback {
        let mut c = Callback::new(event);
        c.appid = appid;
        c.task_id = task_id;
        c.stream_id = stream_id;
        c.to_url = to_url;
        c.source_urls = source_urls;
        c.callback_url = callback_url;
        c.event_time = event_time;
        c.interface = interface;
        c.product_name = product_name;
        c.t = t;
        c.sign = sign;
        c.extra = extra;
        let documented = !matches!(c.event, Event::Unknown { .. } | Event::ResetTaskConfig { .. });
        if documented {
            c.msg_extra = msg_extra;
            // A msg that is not JSON carries none of the event's fields.
            if let Some(raw) = unreadable_msg {
                c.event = match c.event {
                    Event::TaskStart { .. } => Event::TaskStart { task_start_time: None },
                    Event::VodSourceFileStart(_) => Event::VodSourceFileStart(FileEvent::default()),
                    Event::VodSourceFileFinish(_) => Event::VodSourceFileFinish(FileEvent::default()),
                    Event::TaskExit(_) => Event::TaskExit(TaskExit::default()),
                    _ => Event::TaskAlarm { alarm: None },
                };
                c.msg_extra.clear();
                c.raw_msg = Some(raw);
            }
        }
        c
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
        let _ = DedupKey::of_body(&bytes);
    }

    #[test]
    fn arbitrary_json_objects_never_panic_the_decoder(
        keys in proptest::collection::vec(prop_oneof![
            Just("appid".to_owned()), Just("callback_event".to_owned()), Just("msg".to_owned()),
            Just("source_urls".to_owned()), Just("task_id".to_owned()), Just("event_type".to_owned()),
            "[a-z_]{1,6}",
        ], 0..8),
        values in proptest::collection::vec(prop_oneof![
            Just(Value::Null), any::<bool>().prop_map(Value::from), any::<f64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from), text().prop_map(Value::from),
            Just(Value::from("TaskExit")), Just(Value::from("{\"code\":\"x\"}")),
            Just(serde_json::json!([1, "a"])), Just(serde_json::json!({"index": -1})),
        ], 8),
    ) {
        let object: serde_json::Map<String, Value> = keys.into_iter().zip(values).collect();
        let _ = decode(&serde_json::to_vec(&object).unwrap());
    }

    #[test]
    fn decode_of_encode_is_identity(c in callback()) {
        let decoded = decode(&encode(&c)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded.callback, c);
    }

    #[test]
    fn a_retry_keeps_its_dedup_key_and_any_change_gives_another(c in callback(), t in any::<i64>(), sign in text()) {
        let first = DedupKey::of_body(&encode(&c)).unwrap();
        let mut retry = c.clone();
        retry.t = Some(t);
        retry.sign = Some(sign);
        prop_assert_eq!(DedupKey::of_body(&encode(&retry)).unwrap(), first);
        let mut other = c;
        other.extra.insert("y_changed".to_owned(), Value::Bool(true));
        prop_assert_ne!(DedupKey::of_body(&encode(&other)).unwrap(), first);
    }

    #[test]
    fn the_fold_does_not_depend_on_arrival_order(
        history in proptest::collection::vec((0u8..6, 0u32..4, 0i64..3), 1..30),
        shuffle in proptest::collection::vec(any::<proptest::sample::Index>(), 30),
    ) {
        let mut time = 1_700_000_000;
        let bodies: Vec<Callback> = history
            .iter()
            .enumerate()
            .map(|(seq, &(kind, index, step))| {
                time += step;
                let event = match kind {
                    0 => Event::TaskStart { task_start_time: Some(0) },
                    1 => Event::VodSourceFileStart(FileEvent { url: None, index: Some(index), duration: Some(30) }),
                    2 => Event::VodSourceFileFinish(FileEvent { url: None, index: Some(index), duration: Some(30) }),
                    3 => Event::TaskExit(TaskExit { task_exit_time: Some(0), code: Some(-(index as i64)), message: None }),
                    4 => Event::TaskAlarm { alarm: Some(AlarmKind::PushStreamUnstable) },
                    _ => Event::ResetTaskConfig { details: Value::Null },
                };
                let mut c = Callback::new(event);
                c.task_id = Some("1".to_owned());
                c.event_time = Some(time);
                // Events may share a time, but no two are the same event.
                c.extra.insert("x_seq".to_owned(), Value::from(seq));
                c
            })
            .collect();
        let mut order: Vec<usize> = (0..bodies.len()).collect();
        for (i, pick) in shuffle.iter().enumerate().take(order.len()) {
            let j = pick.index(order.len());
            order.swap(i, j);
        }
        let fold = |order: &[usize]| -> TaskState {
            let mut tracker = Tracker::new();
            for &i in order {
                let body = encode(&bodies[i]);
                tracker.observe(Observation {
                    id: i as u64,
                    key: DedupKey::of_body(&body).unwrap(),
                    received_at_ms: None,
                    callback: &bodies[i],
                });
            }
            let mut state = tracker.task("1", None).unwrap();
            // Delivery anomalies describe the arrival order itself.
            state.anomalies.retain(|a| !matches!(a.kind, AnomalyKind::OutOfOrder | AnomalyKind::TooLate));
            state
        };
        let in_order: Vec<usize> = (0..bodies.len()).collect();
        prop_assert_eq!(fold(&order), fold(&in_order));
    }

    #[test]
    fn queries_between_arrivals_do_not_change_the_fold(
        history in proptest::collection::vec((0u8..8, 0u32..4, 0i64..3, 0u8..3), 1..120),
        shuffle in proptest::collection::vec((any::<proptest::sample::Index>(), 0usize..48), 120),
        queries in proptest::collection::vec(any::<bool>(), 120),
    ) {
        let bodies = long_history(&history);
        // Each event moves up to 48 places: some beyond the reorder window.
        let mut order: Vec<usize> = (0..bodies.len()).collect();
        for (i, (pick, reach)) in shuffle.iter().enumerate().take(order.len()) {
            let span = (order.len() - i).min(reach + 1);
            order.swap(i, i + pick.index(span));
        }
        let run = |query: bool| {
            let mut tracker = Tracker::new();
            let mut seen = Vec::new();
            for (step, &i) in order.iter().enumerate() {
                seen.push(tracker.observe(observation(&bodies, i)));
                if query && queries[step] {
                    let _ = tracker.task("1", None);
                    let _ = tracker.tasks(Some(0)).count();
                }
            }
            let states: Vec<TaskState> = tracker.tasks(None).collect();
            let taken: Vec<TaskState> = tracker.clone().into_tasks(None).collect();
            (seen, states, taken, tracker.unattributed().cloned().collect::<Vec<_>>())
        };
        let (plain, queried) = (run(false), run(true));
        prop_assert_eq!(&plain.1, &plain.2);
        prop_assert_eq!(plain, queried);
    }

    #[test]
    fn the_state_asked_for_is_the_fold_of_what_arrived_in_event_order(
        history in proptest::collection::vec((0u8..7, 0u32..4, 0i64..3, 0u8..3), 1..120),
        swaps in proptest::collection::vec(any::<bool>(), 120),
        queries in proptest::collection::vec(any::<bool>(), 120),
    ) {
        let bodies = long_history(&history);
        // Neighbours swapped: every late event is still within the window.
        let mut order: Vec<usize> = (0..bodies.len()).collect();
        let mut i = 0;
        while i + 1 < order.len() {
            if swaps[i] {
                order.swap(i, i + 1);
                i += 1;
            }
            i += 1;
        }
        let mut tracker = Tracker::new();
        for (step, &i) in order.iter().enumerate() {
            tracker.observe(observation(&bodies, i));
            if queries[step] || step + 1 == order.len() {
                let mut arrived = order[..=step].to_vec();
                arrived.sort_unstable();
                let mut scratch = Tracker::new();
                for &j in &arrived {
                    scratch.observe(observation(&bodies, j));
                }
                let without_delivery = |mut state: TaskState| {
                    state.anomalies.retain(|a| !matches!(a.kind, AnomalyKind::OutOfOrder | AnomalyKind::TooLate));
                    state
                };
                let lazy = tracker.task("1", None).map(without_delivery);
                prop_assert_eq!(lazy, scratch.task("1", None).map(without_delivery));
            }
        }
    }
}

#[test]
fn strict_decoding_refuses_what_lenient_decoding_reports() {
    use relaycb_core::{Category, DecodeOptions, decode_with};
    let body = std::fs::read("../../fixtures/drift/app_id_camel_case.json").unwrap();
    assert!(decode(&body).is_ok());
    let error = decode_with(&body, DecodeOptions { strict: true }).unwrap_err();
    assert_eq!(error.category(), Category::Deviation);
    assert_eq!(error.path(), Some("appid"));
    assert_eq!(
        error.to_string(),
        "appid: strict decoding refuses deviations: spelled `appId`"
    );
    // A deviation of the body as a whole names no field.
    let body = std::fs::read("../../fixtures/drift/byte_order_mark.json").unwrap();
    let error = decode_with(&body, DecodeOptions { strict: true }).unwrap_err();
    assert_eq!(error.path(), None);
    assert_eq!(
        error.to_string(),
        "strict decoding refuses deviations: body: starts with a UTF-8 byte order mark"
    );
}

/// Events of task 1 (and a few without a task id, attributed by their
/// sources) from `(kind, index, step, sources)`: `step` seconds after the
/// previous one, with one of two lists of sources or none.
fn long_history(history: &[(u8, u32, i64, u8)]) -> Vec<Callback> {
    let mut time = 1_700_000_000;
    history
        .iter()
        .enumerate()
        .map(|(seq, &(kind, index, step, sources))| {
            time += step;
            let file = FileEvent {
                url: Some(format!("http://src.example/{index}.mp4")),
                index: Some(index),
                duration: Some(30),
            };
            let exit = Event::TaskExit(TaskExit {
                task_exit_time: Some(0),
                code: Some(-(index as i64)),
                message: Some("write packet error.".to_owned()),
            });
            let event = match kind {
                0 => Event::TaskStart {
                    task_start_time: Some(0),
                },
                1 => Event::VodSourceFileStart(file),
                2 => Event::VodSourceFileFinish(file),
                3 | 7 => exit,
                4 => Event::TaskAlarm {
                    alarm: Some(AlarmKind::PushStreamUnstable),
                },
                5 => Event::ResetTaskConfig {
                    details: Value::Null,
                },
                _ => Event::VodSourceFileStart(FileEvent {
                    url: None,
                    index: None,
                    duration: None,
                }),
            };
            let mut c = Callback::new(event);
            c.task_id = (kind != 7).then(|| "1".to_owned());
            c.event_time = Some(time);
            c.source_urls = match sources {
                0 => Vec::new(),
                n => vec![format!("http://src.example/list{n}.m3u8")],
            };
            c.stream_id = Some(format!("stream{}", sources % 2));
            // Events may share a time, but no two are the same event.
            c.extra.insert("x_seq".to_owned(), Value::from(seq));
            c
        })
        .collect()
}

/// The observation of event `i` of `bodies`.
fn observation(bodies: &[Callback], i: usize) -> Observation<'_> {
    Observation {
        id: i as u64,
        key: DedupKey::of_body(&encode(&bodies[i])).unwrap(),
        received_at_ms: None,
        callback: &bodies[i],
    }
}
