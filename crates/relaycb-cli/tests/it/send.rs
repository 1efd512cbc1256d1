//! `replay` and `simulate --to` against a real relaycb-server on a free
//! port, and the sender's retries against a receiver that fails first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use clap::Parser;

use crate::{relaycb, workspace};

/// A relaycb-server on 127.0.0.1 with its store in `dir`, on its own runtime.
struct Server {
    runtime: tokio::runtime::Runtime,
    running: Option<relaycb_server::Running>,
    db: String,
}

impl Server {
    fn start(dir: &tempfile::TempDir) -> Server {
        let db = dir.path().join("relaycb.db").to_string_lossy().into_owned();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = relaycb_server::Config::parse_from([
            "relaycb-server",
            "--listen",
            "127.0.0.1:0",
            "--db",
            &db,
        ]);
        let running = runtime
            .block_on(relaycb_server::start(config))
            .expect("the server starts");
        Server {
            runtime,
            running: Some(running),
            db,
        }
    }

    fn url(&self) -> String {
        let addr = self.running.as_ref().unwrap().local_addr();
        format!("http://{addr}/callback")
    }

    /// Stops the server, so that everything it stored is on disk.
    fn stop(&mut self) {
        let running = self.running.take().unwrap();
        self.runtime
            .block_on(running.shutdown())
            .expect("the server stops cleanly");
    }
}

/// The parts of each task's state that do not depend on how the events
/// were delivered (ids, repeats, arrival times).
fn histories(report: &serde_json::Value) -> Vec<serde_json::Value> {
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            serde_json::json!([
                t["task_id"],
                t["phase"],
                t["starts"],
                t["restarts"],
                t["files_started"],
                t["files_finished"],
                t["loops"],
                t["exits"],
                t["alarms"],
                t["config_resets"]
            ])
        })
        .collect()
}

fn analyze(path: &str) -> serde_json::Value {
    let run = relaycb(&["analyze", "--format", "json", path]);
    assert_eq!(run.code, 0, "{}", run.err);
    serde_json::from_str(&run.out).unwrap()
}

#[test]
fn replay_delivers_a_retry_storm_and_the_server_keeps_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir);
    let log = workspace().join("fixtures/sequences/retry_storm.jsonl");
    let run = relaycb(&[
        "replay",
        &log.to_string_lossy(),
        "--to",
        &server.url(),
        "--rate",
        "200",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    assert!(
        run.out
            .contains(": 12 answered 200, 0 given up, 0 retries\nattempts by answer: 200: 12\n"),
        "{}",
        run.out
    );
    server.stop();

    let stored = analyze(&server.db);
    assert_eq!(
        stored["summary"]["records"], 4,
        "one row per distinct event"
    );
    assert_eq!(
        stored["summary"]["deliveries"], 12,
        "every delivery counted"
    );
    assert_eq!(
        histories(&stored),
        histories(&analyze(&log.to_string_lossy()))
    );
}

#[test]
fn simulate_sends_like_tencent_and_the_server_folds_the_same_histories() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sim.jsonl").to_string_lossy().into_owned();
    let args = [
        "--tasks",
        "8",
        "--files",
        "3",
        "--seed",
        "5",
        "--faults",
        "--start",
        "1764806400",
    ];
    let run = relaycb(&[&["simulate", "--out", &file][..], &args[..]].concat());
    assert_eq!(run.code, 0, "{}", run.err);

    let mut server = Server::start(&dir);
    let url = server.url();
    let run = relaycb(
        &[
            &["simulate", "--to", &url, "--concurrency", "2"][..],
            &args[..],
        ]
        .concat(),
    );
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    assert!(run.out.contains(" 0 given up, 0 retries"), "{}", run.out);
    server.stop();

    let sent = analyze(&file);
    let stored = analyze(&server.db);
    assert_eq!(
        stored["summary"]["deliveries"],
        sent["summary"]["deliveries"]
    );
    assert_eq!(histories(&stored), histories(&sent));
}

/// A receiver that answers 503 to the first attempt of each body and 200
/// to the next, counting attempts.
async fn flaky_receiver() -> (SocketAddr, Arc<Mutex<HashMap<Vec<u8>, u32>>>) {
    let seen: Arc<Mutex<HashMap<Vec<u8>, u32>>> = Arc::default();
    let state = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::post(move |body: axum::body::Bytes| {
            let state = Arc::clone(&state);
            async move {
                let mut seen = state.lock().unwrap();
                let attempts = seen.entry(body.to_vec()).or_default();
                *attempts += 1;
                if *attempts == 1 {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy")
                } else {
                    (axum::http::StatusCode::OK, r#"{"code":0}"#)
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

#[test]
fn a_callback_not_answered_200_is_sent_again_after_the_interval() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (addr, seen) = runtime.block_on(flaky_receiver());
    let log = workspace().join("fixtures/sequences/restart_loop.jsonl");
    let url = format!("http://{addr}/callback");
    let run = relaycb(&[
        "replay",
        &log.to_string_lossy(),
        "--to",
        &url,
        "--retry-interval",
        "0.01",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    assert!(
        run.out.contains(
            ": 8 answered 200, 0 given up, 8 retries\nattempts by answer: 200: 8, 503: 8\n"
        ),
        "{}",
        run.out
    );
    assert!(seen.lock().unwrap().values().all(|n| *n == 2));

    let run = relaycb(&[
        "replay",
        &log.to_string_lossy(),
        "--to",
        "http://127.0.0.1:9/callback",
        "--retries",
        "1",
        "--retry-interval",
        "0",
    ]);
    assert_eq!(run.code, 1, "nothing listens: every callback is given up");
    assert!(
        run.out
            .contains(": 0 answered 200, 8 given up, 8 retries\nattempts by answer: error: 16\n"),
        "{}",
        run.out
    );
}
