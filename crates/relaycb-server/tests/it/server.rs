//! A real server on `127.0.0.1:0`: what crosses the network, concurrent
//! callbacks sharing commits, graceful shutdown, restart, and a kill -9.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

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

/// Starts the real binary and returns it with the address it listens on.
fn spawn_binary(db: &std::path::Path) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relaycb-server"))
        .args(["--listen", "127.0.0.1:0", "--log-format", "json", "--db"])
        .arg(db)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && let Some(addr) = v["addr"].as_str()
            {
                let _ = addr_tx.send(addr.to_owned());
            }
        }
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    (child, addr)
}

/// SIGTERM: the binary finishes what it holds, exits 0, and the store has
/// every callback it answered.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let (mut child, addr) = spawn_binary(&db);
    let client = reqwest::Client::new();
    for n in 0..10 {
        let status = client
            .post(format!("http://{addr}/callback"))
            .body(body_for(1, n))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");
    let running = relaycb_server::start(config(&db, &[])).await.unwrap();
    let events: Value = client
        .get(format!("http://{}/api/events", running.local_addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events["events"].as_array().unwrap().len(), 10);
    running.shutdown().await.unwrap();
}

/// Kills the real binary with SIGKILL while callbacks are in flight: every
/// callback that was answered 200 must be in the store after a restart.
#[tokio::test]
async fn a_killed_server_loses_nothing_it_answered() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let (mut child, addr) = spawn_binary(&db);
    let url = format!("http://{addr}/callback");
    let client = reqwest::Client::new();
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut sends = Vec::new();
    for n in 0..400 {
        let client = client.clone();
        let url = url.clone();
        let acked = acked_tx.clone();
        sends.push(tokio::spawn(async move {
            if let Ok(r) = client.post(url).body(body_for(n % 8, n)).send().await
                && r.status() == 200
            {
                let _ = acked.send(n);
            }
        }));
        if n == 200 {
            child.kill().unwrap();
        }
    }
    drop(acked_tx);
    for send in sends {
        send.await.unwrap();
    }
    child.wait().unwrap();
    let mut acked = Vec::new();
    while let Some(n) = acked_rx.recv().await {
        acked.push(n);
    }

    let running = relaycb_server::start(config(&db, &[])).await.unwrap();
    let events: Value = client
        .get(format!(
            "http://{}/api/events?limit=1000",
            running.local_addr()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored: std::collections::HashSet<i64> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let msg = e["decoded"]["event"]["alarm"].clone();
            assert_eq!(msg, "PullFileUnstable");
            e["decoded"]["msg_extra"]["n"].as_i64().unwrap()
        })
        .collect();
    for n in &acked {
        assert!(
            stored.contains(&(*n as i64)),
            "callback {n} was answered 200 but is lost"
        );
    }
    running.shutdown().await.unwrap();
}
