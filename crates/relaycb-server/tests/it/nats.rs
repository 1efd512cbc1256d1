//! Publishing to NATS JetStream against real servers: the machine's NATS
//! (`RELAYCB_TEST_NATS`, a URL; skipped when unset) for what arrives and
//! how it looks, and a `nats-server` child process of our own for outages.
//! Each test uses its own stream and subject prefix, and deletes its stream.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use relaycb_core::DedupKey;
use serde_json::{Value, json};

use crate::common::config;

/// Longest wait for anything to arrive.
const WAIT: Duration = Duration::from_secs(30);

/// A name no other run uses: `<prefix>_<pid>_<nanos>`.
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// The machine's NATS (`RELAYCB_TEST_NATS`); `None`, saying the test is
/// skipped, when it is not set.
fn machine_nats() -> Option<String> {
    let url = std::env::var("RELAYCB_TEST_NATS").ok();
    if url.is_none() {
        eprintln!(
            "skipped: set RELAYCB_TEST_NATS (for example nats://127.0.0.1:4222) to test publishing to NATS"
        );
    }
    url
}

/// One relay callback of `task`; `n` makes it distinct and orders it.
pub(crate) fn body(task: &str, event: &str, n: u32) -> String {
    let msg = match event {
        "TaskStart" => json!({ "task_start_time": 0 }),
        "VodSourceFileStart" | "VodSourceFileFinish" => {
            json!({ "url": format!("http://src/{task}/{n}.mp4"), "index": n, "duration": 60 })
        }
        "TaskExit" => json!({ "message": "ok", "code": 0, "task_exit_time": 0 }),
        other => panic!("no body for {other}"),
    };
    json!({
        "appid": 1253, "callback_event": event, "event_type": 314,
        "event_time": 1_700_000_000 + n, "msg": msg.to_string(), "task_id": task,
        "stream_id": format!("s{task}"), "to_url": format!("rtmp://push/live/{task}"),
        "source_urls": format!("[\"http://src/{task}.m3u8\"]"),
    })
    .to_string()
}

pub(crate) fn key(body: &str) -> String {
    DedupKey::of_body(body.as_bytes()).unwrap().to_string()
}

/// A relaycb server publishing to `url` into `stream` under `prefix`.
async fn relaycb(db: &Path, url: &str, stream: &str, prefix: &str) -> relaycb_server::Running {
    let flags = [
        "--nats-url",
        url,
        "--nats-stream",
        stream,
        "--nats-subject-prefix",
        prefix,
        "--nats-retry-max",
        "500ms",
    ];
    relaycb_server::start(config(db, &flags)).await.unwrap()
}

async fn post(running: &relaycb_server::Running, body: &str) {
    let answer = reqwest::Client::new()
        .post(format!("http://{}/callback", running.local_addr()))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{body}");
}

/// The value of a metric without labels, from `/metrics`.
pub(crate) async fn metric(running: &relaycb_server::Running, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", running.local_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Waits until `check` holds, at most [`WAIT`].
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < WAIT, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every message of `stream` in stream order, once it holds `count` (and
/// no more arrive within a moment).
pub(crate) async fn messages(url: &str, stream: &str, count: u64) -> Vec<(String, String, Value)> {
    let js = jetstream::new(client(url).await);
    eventually(&format!("{count} messages in {stream}"), || {
        let js = js.clone();
        async move {
            match js.get_stream(stream).await {
                Ok(stream) => stream.get_info().await.unwrap().state.messages >= count,
                Err(_) => false,
            }
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stream = js.get_stream(stream).await.unwrap();
    let info = stream.get_info().await.unwrap();
    assert_eq!(info.state.messages, count, "every event once, no more");
    let mut out = Vec::new();
    for sequence in info.state.first_sequence..=info.state.last_sequence {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let msg_id = message
            .headers
            .get("Nats-Msg-Id")
            .expect("every message carries its dedup key")
            .as_str()
            .to_owned();
        let content_type = message.headers.get("Content-Type").unwrap().as_str();
        assert_eq!(content_type, "application/cloudevents+json");
        let event: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(event["id"], msg_id);
        out.push((message.subject.to_string(), msg_id, event));
    }
    out
}

/// A client of our own, that waits for a server still starting.
async fn client(url: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url)
        .await
        .unwrap()
}

pub(crate) async fn delete_stream(url: &str, stream: &str) {
    jetstream::new(client(url).await)
        .delete_stream(stream)
        .await
        .unwrap();
}

/// The message ids of each task (the CloudEvents subject), in stream order.
pub(crate) fn by_task(messages: &[(String, String, Value)]) -> BTreeMap<String, Vec<String>> {
    let mut tasks: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, id, event) in messages {
        let task = event["subject"].as_str().unwrap().to_owned();
        tasks.entry(task).or_default().push(id.clone());
    }
    tasks
}

#[tokio::test]
async fn every_new_event_arrives_once_in_order_per_task_as_a_cloudevent() {
    let Some(url) = machine_nats() else {
        return;
    };
    let stream = unique("RELAYCB_IT");
    let prefix = unique("relaycbit");
    let dir = tempfile::tempdir().unwrap();
    let running = relaycb(&dir.path().join("r.db"), &url, &stream, &prefix).await;

    let events = [
        "TaskStart",
        "VodSourceFileStart",
        "VodSourceFileFinish",
        "TaskExit",
    ];
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (n, event) in events.iter().enumerate() {
        for task in ["118145", "220001"] {
            let body = body(task, event, n as u32 + 1);
            post(&running, &body).await;
            expected
                .entry(task.to_owned())
                .or_default()
                .push(key(&body));
            // Tencent's retry of the previous event: stored once, published once.
            if n > 0 {
                post(&running, &self::body(task, events[n - 1], n as u32)).await;
            }
        }
    }

    let got = messages(&url, &stream, 8).await;
    assert_eq!(by_task(&got), expected);
    let (subject, _, first) = &got[0];
    assert_eq!(subject, &format!("{prefix}.1253.118145.TaskStart"));
    assert_eq!(first["specversion"], "1.0");
    assert_eq!(first["source"], "1253");
    assert_eq!(first["type"], "com.tencent.css.relay.TaskStart");
    assert_eq!(first["subject"], "118145");
    assert_eq!(first["time"], "2023-11-14T22:13:21.000Z");
    assert_eq!(first["datacontenttype"], "application/json");
    assert_eq!(first["data"]["task_id"], "118145");
    let (subject, _, file) = &got[2];
    assert_eq!(subject, &format!("{prefix}.1253.118145.VodSourceFileStart"));
    assert_eq!(
        file["data"]["event"],
        json!({ "kind": "VodSourceFileStart", "url": "http://src/118145/2.mp4", "index": 2, "duration": 60 }),
        "data holds the callback with msg decoded"
    );
    eventually("the outbox to empty", || async {
        metric(&running, "relaycb_nats_pending").await == 0.0
    })
    .await;
    assert_eq!(metric(&running, "relaycb_nats_published_total").await, 8.0);

    running.shutdown().await.unwrap();
    delete_stream(&url, &stream).await;
}

#[tokio::test]
async fn a_stream_made_for_other_subjects_holds_events_back_until_it_takes_them() {
    let Some(url) = machine_nats() else {
        return;
    };
    let stream = unique("RELAYCB_IT");
    let prefix = unique("relaycbit");
    // The stream exists already, made for another prefix.
    let js = jetstream::new(client(&url).await);
    js.create_stream(jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{prefix}_old.>")],
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let running = relaycb(&dir.path().join("r.db"), &url, &stream, &prefix).await;
    let first = body("118145", "TaskStart", 1);
    post(&running, &first).await;
    eventually("a failed publish", || async {
        metric(&running, "relaycb_nats_publish_failures_total").await >= 1.0
    })
    .await;
    assert_eq!(metric(&running, "relaycb_nats_pending").await, 1.0);
    assert_eq!(metric(&running, "relaycb_nats_published_total").await, 0.0);

    // What the warning asks for: the stream takes the prefix too.
    let mut config = js
        .get_stream(&stream)
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    config.subjects.push(format!("{prefix}.>"));
    js.update_stream(config).await.unwrap();
    let got = messages(&url, &stream, 1).await;
    assert_eq!(got[0].1, key(&first));
    eventually("the outbox to empty", || async {
        metric(&running, "relaycb_nats_pending").await == 0.0
    })
    .await;

    running.shutdown().await.unwrap();
    delete_stream(&url, &stream).await;
}

/// `nats-server` on PATH or where Debian puts it.
fn nats_server_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from("/usr/sbin/nats-server");
        debian.is_file().then_some(debian)
    })
}

/// A JetStream-enabled `nats-server` child on a fixed port, killed on drop.
struct NatsChild(Child);

impl NatsChild {
    fn start(binary: &Path, port: u16, store: &Path) -> NatsChild {
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        NatsChild(child)
    }

    fn stop(mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

impl Drop for NatsChild {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn what_is_stored_while_nats_is_down_arrives_once_it_is_back() {
    let Some(binary) = nats_server_binary() else {
        eprintln!("skipped: no nats-server on PATH nor at /usr/sbin/nats-server to test outages");
        return;
    };
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let stream = unique("RELAYCB_OUTAGE");
    let prefix = unique("relaycbout");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let mut expected = Vec::new();

    // Nothing listens yet: callbacks are still accepted, and kept.
    let running = relaycb(&db, &url, &stream, &prefix).await;
    for n in 1..=3 {
        let body = body(
            "7",
            if n == 1 {
                "TaskStart"
            } else {
                "VodSourceFileStart"
            },
            n,
        );
        post(&running, &body).await;
        expected.push(key(&body));
    }
    eventually("a failed publish to be counted", || async {
        metric(&running, "relaycb_nats_publish_failures_total").await > 0.0
    })
    .await;
    assert_eq!(metric(&running, "relaycb_nats_pending").await, 3.0);
    // A restart keeps what is pending.
    running.shutdown().await.unwrap();
    let running = relaycb(&db, &url, &stream, &prefix).await;
    assert_eq!(metric(&running, "relaycb_nats_pending").await, 3.0);
    let finish = body("7", "VodSourceFileFinish", 4);
    post(&running, &finish).await;
    expected.push(key(&finish));

    let nats = NatsChild::start(&binary, port, &dir.path().join("js"));
    let got = messages(&url, &stream, 4).await;
    assert_eq!(by_task(&got)["7"], expected, "the backlog arrives in order");
    eventually("the outbox to empty", || async {
        metric(&running, "relaycb_nats_pending").await == 0.0
    })
    .await;

    // NATS goes away while the server runs, and comes back.
    nats.stop();
    for n in 5..=6 {
        let body = body("7", "VodSourceFileStart", n);
        post(&running, &body).await;
        expected.push(key(&body));
    }
    let nats = NatsChild::start(&binary, port, &dir.path().join("js"));
    let got = messages(&url, &stream, 6).await;
    assert_eq!(by_task(&got)["7"], expected);
    eventually("the outbox to empty", || async {
        metric(&running, "relaycb_nats_pending").await == 0.0
    })
    .await;

    running.shutdown().await.unwrap();
    delete_stream(&url, &stream).await;
    drop(nats);
}
