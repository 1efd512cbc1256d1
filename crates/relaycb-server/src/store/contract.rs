//! What every store must do, written once and run against each backend
//! from its own tests: the outbox keeps each new event once, in id order,
//! until it is published, across a restart, and only when publishing is on;
//! a task's events, attributed exits included, are listed newest first,
//! page after page, before and after a restart; refusals are listed by
//! kind and category.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{Backend, EventQuery, NewEvent, NewRejected, Reader, RejectedQuery, StoreHandle};
use crate::tasks::TaskBoard;
use crate::telemetry::metrics::Metrics;

/// A task start of task 7 with an event time.
pub(super) const START: &str = r#"{"callback_event":"TaskStart","event_type":314,"task_id":"7","appid":12,"event_time":1700000000}"#;
/// An exit of task 7.
pub(super) const EXIT: &str = r#"{"callback_event":"TaskExit","event_type":314,"task_id":"7","appid":12,"msg":"{\"exit_code\":0}"}"#;

/// An accepted callback as the callback route would hand it to the store,
/// received at 5 ms.
pub(super) fn event(body: &str) -> NewEvent {
    let decoded = relaycb_core::decode(body.as_bytes()).unwrap();
    let key = relaycb_core::DedupKey::of_body(body.as_bytes()).unwrap();
    NewEvent {
        dedup_key: key.to_string(),
        task_id: decoded.callback.task_id.clone(),
        callback_event: decoded.callback.event.name().to_owned(),
        event_time: decoded.callback.event_time,
        occurred_at_ms: decoded.callback.occurred_at_ms(),
        received_at_ms: 5,
        raw: body.as_bytes().to_vec(),
        decoded: serde_json::to_string(&decoded.callback).unwrap(),
        deviations: "[]".to_owned(),
        headers: "{}".to_owned(),
        peer: None,
        key,
        callback: decoded.callback,
    }
}

/// Starts the writer over an opened store, with the task board rebuilt
/// from it (as the server starts) and fresh metrics (returned, to read the
/// gauges), keeping 10 refusals.
pub(super) fn spawn(
    writer: Box<dyn Backend>,
    reader: Arc<dyn Reader>,
    outbox: Option<Arc<Notify>>,
) -> (StoreHandle, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    // On a thread of its own: the PostgreSQL client blocks, and may not on a
    // thread that drives async tasks.
    let board = std::thread::scope(|s| s.spawn(|| TaskBoard::rebuild(&*reader)).join())
        .unwrap()
        .unwrap();
    let store =
        StoreHandle::spawn(writer, reader, Arc::new(board), metrics.clone(), 10, outbox).unwrap();
    (store, metrics)
}

/// The outbox contract. `open` opens the same store each time it is called
/// (queueing for publication when given a waker) and returns it with its
/// metrics.
pub(super) async fn outbox_keeps_new_events_in_order_until_published(
    open: impl AsyncFn(Option<Arc<Notify>>) -> (StoreHandle, Arc<Metrics>),
) {
    let notify = Arc::new(Notify::new());
    let (store, metrics) = open(Some(notify.clone())).await;

    let first = store.accept(event(START)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), notify.notified())
        .await
        .expect("a commit that queued an event wakes the publisher");
    let retry = store.accept(event(START)).await.unwrap();
    assert!(retry.duplicate);
    let second = store.accept(event(EXIT)).await.unwrap();

    let pending = store.read(|r| r.outbox_pending(0, 10)).await.unwrap();
    let ids: Vec<i64> = pending.iter().map(|row| row.event_id).collect();
    assert_eq!(ids, [first.id, second.id], "a retry is not queued again");
    assert_eq!(pending[0].task_id.as_deref(), Some("7"));
    assert_eq!(pending[0].callback_event, "TaskStart");
    assert_eq!(pending[0].occurred_at_ms, Some(1_700_000_000_000));
    assert_eq!(pending[0].received_at_ms, 5);
    let decoded: relaycb_core::Callback = serde_json::from_str(&pending[1].decoded).unwrap();
    assert_eq!(decoded.appid, Some(12));
    let after_first = store
        .read(move |r| r.outbox_pending(first.id, 10))
        .await
        .unwrap();
    assert_eq!(after_first.len(), 1);
    assert_eq!(after_first[0].event_id, second.id);
    assert!(metrics.render(&[], 0).contains("relaycb_nats_pending 2"));

    assert_eq!(store.published(vec![first.id]).await.unwrap(), 1);
    assert_eq!(
        store.published(vec![first.id]).await.unwrap(),
        0,
        "an id already taken out is no error"
    );
    assert_eq!(store.read(|r| r.outbox_len()).await.unwrap(), 1);
    assert!(metrics.render(&[], 0).contains("relaycb_nats_pending 1"));
    store.close().await.unwrap();

    let (store, _) = open(None).await;
    let pending = store.read(|r| r.outbox_pending(0, 10)).await.unwrap();
    assert_eq!(
        pending.len(),
        1,
        "what was not published survives a restart"
    );
    assert_eq!(pending[0].event_id, second.id);
    store
        .accept(event(&START.replace("7\"", "8\"")))
        .await
        .unwrap();
    assert_eq!(
        store.read(|r| r.outbox_len()).await.unwrap(),
        1,
        "without an outbox nothing is queued"
    );
    store.close().await.unwrap();
}

/// Task 7 starts playing its one file.
const SEVEN_START: &str = r#"{"callback_event":"TaskStart","event_type":314,"task_id":"7","event_time":1700000000,"source_urls":["http://a/7.mp4"]}"#;
/// Task 8 starts.
const EIGHT_START: &str = r#"{"callback_event":"TaskStart","event_type":314,"task_id":"8","event_time":1700000001,"source_urls":["http://a/8.mp4"]}"#;
/// Task 7's file starts.
const SEVEN_FILE: &str = r#"{"callback_event":"VodSourceFileStart","event_type":314,"task_id":"7","event_time":1700000002,"msg":{"url":"http://a/7.mp4","index":0,"duration":60}}"#;
/// An exit without task id, with task 7's sources.
const SEVEN_EXIT: &str = r#"{"callback_event":"TaskExit","event_type":314,"event_time":1700000003,"source_urls":["http://a/7.mp4"],"msg":{"code":-5,"message":"io"}}"#;
/// Task 8 exits.
const EIGHT_EXIT: &str = r#"{"callback_event":"TaskExit","event_type":314,"task_id":"8","event_time":1700000004,"msg":{"code":0}}"#;
/// Task 7 starts again.
const SEVEN_AGAIN: &str = r#"{"callback_event":"TaskStart","event_type":314,"task_id":"7","event_time":1700000005,"source_urls":["http://a/7.mp4"]}"#;

/// Task 7's file finishes, before it started again, told after.
const SEVEN_LATE: &str = r#"{"callback_event":"VodSourceFileFinish","event_type":314,"task_id":"7","event_time":1700000004,"msg":{"url":"http://a/7.mp4","index":0,"duration":60}}"#;

/// The ids of the events of `task_id` that `query` lists.
async fn listed(store: &StoreHandle, task_id: &str, query: EventQuery) -> Vec<i64> {
    let query = EventQuery {
        task_id: Some(task_id.to_owned()),
        ..query
    };
    let rows = store.read(move |r| r.events(&query)).await.unwrap();
    rows.iter().map(|row| row.id).collect()
}

/// The ids of the latest `limit` events of task 7, and how many it has.
async fn latest_of_seven(store: &StoreHandle, limit: usize) -> (Vec<i64>, u64) {
    let (rows, total) = store
        .read(move |r| r.latest_of_task("7", limit))
        .await
        .unwrap();
    (rows.iter().map(|row| row.id).collect(), total)
}

fn page(limit: usize) -> EventQuery {
    EventQuery {
        limit,
        ..EventQuery::default()
    }
}

/// The task-query contract. `open` opens the same store each time.
pub(super) async fn task_events_are_listed_newest_first_across_a_restart(
    open: impl AsyncFn() -> StoreHandle,
) {
    let store = open().await;
    let mut ids = Vec::new();
    for body in [SEVEN_START, EIGHT_START, SEVEN_FILE, SEVEN_EXIT, EIGHT_EXIT] {
        ids.push(store.accept(event(body)).await.unwrap().id);
    }
    assert!(store.accept(event(SEVEN_START)).await.unwrap().duplicate);
    let [start, eight, file, exit, eight_exit] = ids[..] else {
        unreachable!()
    };

    assert_eq!(listed(&store, "7", page(10)).await, [exit, file, start]);
    assert_eq!(listed(&store, "8", page(10)).await, [eight_exit, eight]);
    assert_eq!(listed(&store, "9", page(10)).await, [] as [i64; 0]);
    let exit_row = store.read(move |r| r.event(exit)).await.unwrap().unwrap();
    assert_eq!(exit_row.attributed_to.as_deref(), Some("7"));

    // Page by page, each page starting below the last id of the previous.
    assert_eq!(listed(&store, "7", page(2)).await, [exit, file]);
    let below = |before_id| EventQuery {
        before_id: Some(before_id),
        ..page(2)
    };
    assert_eq!(listed(&store, "7", below(file)).await, [start]);
    assert_eq!(
        listed(&store, "7", below(eight_exit)).await,
        [exit, file],
        "a cursor need not be one of the task's events"
    );
    let starts = EventQuery {
        event: Some("TaskStart".to_owned()),
        ..page(10)
    };
    assert_eq!(listed(&store, "7", starts).await, [start]);
    let since = EventQuery {
        since_ms: Some(6),
        ..page(10)
    };
    assert_eq!(listed(&store, "7", since).await, [] as [i64; 0]);
    assert_eq!(
        latest_of_seven(&store, 10).await,
        (vec![start, file, exit], 3),
        "the timeline is in event order"
    );
    assert_eq!(latest_of_seven(&store, 2).await, (vec![file, exit], 3));
    assert_eq!(latest_of_seven(&store, 1).await, (vec![exit], 3));
    store.close().await.unwrap();

    let store = open().await;
    assert_eq!(listed(&store, "7", page(10)).await, [exit, file, start]);
    let again = store.accept(event(SEVEN_AGAIN)).await.unwrap().id;
    assert_eq!(
        listed(&store, "7", page(10)).await,
        [again, exit, file, start],
        "an event stored after a restart follows those stored before"
    );
    assert_eq!(listed(&store, "8", page(10)).await, [eight_exit, eight]);

    // A file's finish that happened before the restart arrives after it:
    // the latest event is still the restart.
    let late = store.accept(event(SEVEN_LATE)).await.unwrap().id;
    assert_eq!(latest_of_seven(&store, 1).await, (vec![again], 5));
    assert_eq!(latest_of_seven(&store, 2).await, (vec![late, again], 5));
    assert_eq!(
        latest_of_seven(&store, 5).await,
        (vec![start, file, exit, late, again], 5)
    );
    store.close().await.unwrap();
}

/// The refusal contract: each refusal keeps its kind, and the list is
/// filtered by kind and category, newest first.
pub(super) async fn refusals_are_listed_by_kind_and_category(store: StoreHandle) {
    let refusal = |category: &str, kind: &str| NewRejected {
        received_at_ms: 5,
        status: 400,
        category: category.to_owned(),
        kind: kind.to_owned(),
        reason: format!("{kind} in words"),
        raw: kind.as_bytes().to_vec(),
        truncated: false,
        headers: "{}".to_owned(),
        peer: None,
    };
    let mut ids = Vec::new();
    for (category, kind) in [
        ("syntax", "not_json"),
        ("not_relay", "not_object"),
        ("syntax", "not_json"),
    ] {
        ids.push(store.reject(refusal(category, kind)).await.unwrap());
    }
    let list = |kind: Option<&str>, category: Option<&str>| {
        let q = RejectedQuery {
            kind: kind.map(str::to_owned),
            category: category.map(str::to_owned),
            before_id: None,
            limit: 10,
        };
        let store = store.clone();
        async move {
            let rows = store.read(move |r| r.rejected(&q)).await.unwrap();
            rows.iter()
                .map(|r| (r.id, r.kind.clone().unwrap()))
                .collect::<Vec<_>>()
        }
    };
    let not_json = |id: i64| (id, "not_json".to_owned());
    assert_eq!(
        list(Some("not_json"), None).await,
        [not_json(ids[2]), not_json(ids[0])]
    );
    assert_eq!(
        list(None, Some("not_relay")).await,
        [(ids[1], "not_object".to_owned())]
    );
    assert!(list(Some("not_json"), Some("not_relay")).await.is_empty());
    assert_eq!(list(None, None).await.len(), 3);
    store.close().await.unwrap();
}
