//! A real server on `127.0.0.1:0`: what crosses the network, concurrent
//! callbacks sharing commits, graceful shutdown, restart, and the real
//! binary killed and stopped under load.

use serde_json::{Value, json};

use crate::common::{config, fixture, fixtures};

fn body_for(task: usize, n: usize) -> String {
    json!({
        "appid": 1, "callback_event": "TaskAlarm", "event_type": 314,
        "msg": format!("{{\"type\":\"PullFileUnstable\",\"n\":{n}}}"),
        "task_id": format!("{task}"), "stream_id": "s", "to_url": "rtmp://a/b",
        "source_urls": "[\"http://a/x.m3u8\"]\n",
    })
    .to_string()
}

#[tokio::test]
async fn a_real_server_stores_the_peer_and_serves_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let running = relaycb_server::start(config(&dir.path().join("r.db"), &[]))
        .await
        .unwrap();
    let base = format!("http://{}", running.local_addr());
    let client = reqwest::Client::new();
    let answer = client
        .post(format!("{base}/callback"))
        .header("content-type", "application/json")
        .body(fixture("docs/task_exit.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json::<Value>().await.unwrap(), json!({ "code": 0 }));
    let event: Value = client
        .get(format!("{base}/api/events/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        event["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{event}"
    );
    assert_eq!(event["headers"]["content-type"], "application/json");
    let raw = client
        .get(format!("{base}/api/events/1/raw"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(raw.as_ref(), fixture("docs/task_exit.json").as_slice());
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "relaycb_callbacks_total",
        "relaycb_ack_latency_seconds_bucket",
        "relaycb_batch_size_bucket",
        "relaycb_tasks{",
    ] {
        assert!(metrics.contains(name), "{name} missing from {metrics}");
    }
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_callbacks_are_all_stored_and_survive_shutdown_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let running = relaycb_server::start(config(&db, &[])).await.unwrap();
    let base = format!("http://{}", running.local_addr());
    let client = reqwest::Client::new();
    let mut sends = Vec::new();
    for n in 0..200 {
        let client = client.clone();
        let url = format!("{base}/callback");
        sends.push(tokio::spawn(async move {
            let status = client
                .post(url)
                .body(body_for(n % 4, n))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200);
        }));
    }
    for send in sends {
        send.await.unwrap();
    }
    let tasks_before: Value = client
        .get(format!("{base}/api/tasks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    running.shutdown().await.unwrap();

    let running = relaycb_server::start(config(&db, &[])).await.unwrap();
    let base = format!("http://{}", running.local_addr());
    let events: Value = client
        .get(format!("{base}/api/events?limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events["events"].as_array().unwrap().len(), 200);
    let tasks_after: Value = client
        .get(format!("{base}/api/tasks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // No task here has a file in progress, so nothing depends on "now".
    assert_eq!(tasks_after, tasks_before);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_restart_changes_nothing_the_api_shows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let running = relaycb_server::start(config(&db, &[])).await.unwrap();
    let base = format!("http://{}", running.local_addr());
    let client = reqwest::Client::new();
    for name in [
        "restart_loop.jsonl",
        "exit_and_restart.jsonl",
        "retry_storm.jsonl",
    ] {
        let text = std::fs::read_to_string(fixtures().join("sequences").join(name)).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let status = client
                .post(format!("{base}/callback"))
                .body(line.to_owned())
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200);
        }
    }
    for body in [&b"oops"[..], &fixture("docs/task_exit.json")] {
        client
            .post(format!("{base}/callback"))
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
    }
    let read = |base: String| {
        let client = client.clone();
        async move {
            let mut seen = Vec::new();
            for uri in [
                "/api/events?limit=1000",
                "/api/rejected",
                "/api/tasks/200005",
            ] {
                let v: Value = client
                    .get(format!("{base}{uri}"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                seen.push(v);
            }
            seen
        }
    };
    let before = read(base).await;
    running.shutdown().await.unwrap();
    let running = relaycb_server::start(config(&db, &[])).await.unwrap();
    let after = read(format!("http://{}", running.local_addr())).await;
    assert_eq!(after, before);
    running.shutdown().await.unwrap();
}

/// The real binary under load, killed with SIGKILL three times and stopped
/// with SIGTERM once, restarted each time: every callback answered 200 is
/// stored exactly once, every refused one is kept, each SIGTERM exits 0
/// without answering anything it did not commit, and the task state equals
/// the fold of the answered events. `cargo xtask chaos` is the same run at
/// full size against the release build.
#[test]
fn a_killed_or_stopped_server_loses_nothing_it_answered() {
    let plan = relaycb_chaos::Plan {
        callbacks: 3000,
        kills: 3,
        terms: 1,
        seed: 7,
        ..relaycb_chaos::Plan::new(env!("CARGO_BIN_EXE_relaycb-server").into())
    };
    let report = relaycb_chaos::run(&plan).unwrap();
    eprintln!("{report}");
    assert_eq!((report.kills, report.terms), (3, 2), "{report}");
    assert!(report.answered >= 2800, "{report}");
    assert!(report.junk_refused > 0, "{report}");
    assert!(report.tasks > 0, "{report}");
    report.check().unwrap();
}

/// A port already taken fails the start at once, naming the address, and
/// leaves no database behind.
#[tokio::test]
async fn a_taken_port_fails_the_start_before_any_database_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let db = dir.path().join("r.db");
    let mut config = config(&db, &[]);
    config.listen = addr.parse().unwrap();
    let error = match relaycb_server::start(config).await {
        Ok(_) => panic!("started on a taken port"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.starts_with(&format!("cannot listen on {addr}")),
        "{error}"
    );
    assert!(
        !db.exists(),
        "a database was made for a server that never ran"
    );
}
