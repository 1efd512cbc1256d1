//! What every store must do, written once and run against each backend
//! from its own tests: the outbox keeps each new event once, in id order,
//! until it is published, across a restart, and only when publishing is on.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{Backend, NewEvent, Reader, StoreHandle};
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

/// Starts the writer over an opened store, with an empty task board and
/// fresh metrics (returned, to read the gauges), keeping 10 refusals.
pub(super) fn spawn(
    writer: Box<dyn Backend>,
    reader: Arc<dyn Reader>,
    outbox: Option<Arc<Notify>>,
) -> (StoreHandle, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let store = StoreHandle::spawn(
        writer,
        reader,
        Arc::new(TaskBoard::default()),
        metrics.clone(),
        10,
        outbox,
    )
    .unwrap();
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
