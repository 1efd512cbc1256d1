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
        Server::on(dir.path().join("relaycb.db").to_string_lossy().into_owned())
    }

    /// A server on the store `db`: a SQLite path or a PostgreSQL URL.
    fn on(db: String) -> Server {
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

    /// What the server's `/api/tasks` answers.
    fn tasks(&self) -> serde_json::Value {
        let addr = self.running.as_ref().unwrap().local_addr();
        self.runtime.block_on(async {
            reqwest::get(format!("http://{addr}/api/tasks"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
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
    let api = server.tasks();
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
    let duplicates = |tasks: &serde_json::Value| -> Vec<(String, u64)> {
        tasks
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["task_id"].as_str().unwrap().to_owned(),
                    t["duplicates"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        duplicates(&stored["tasks"]),
        duplicates(&api["tasks"]),
        "analyze of the store counts a task's duplicates as the server's API does"
    );
    assert_eq!(
        duplicates(&stored["tasks"])
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>(),
        8
    );
    assert_eq!(
        histories(&stored),
        histories(&analyze(&log.to_string_lossy()))
    );
}

/// A schema of its own in the database named by `RELAYCB_TEST_POSTGRES`,
/// dropped at the end; `None`, with a message, when the variable is unset.
struct Schema {
    admin: String,
    name: String,
    url: String,
}

impl Schema {
    fn create(test: &str) -> Option<Schema> {
        use std::io::Write as _;
        let Ok(admin) = std::env::var("RELAYCB_TEST_POSTGRES") else {
            // Past the test harness's capture, so that the skip is seen.
            let _ = writeln!(
                std::io::stderr(),
                "skipped {test}: RELAYCB_TEST_POSTGRES is not set (a postgres:// URL of a database where tests may create schemas)"
            );
            return None;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("relaycb_cli_test_{}_{nanos}", std::process::id());
        let separator = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{separator}options=-csearch_path%3D{name}");
        postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap()
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .unwrap();
        Some(Schema { admin, name, url })
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let dropped = postgres::Client::connect(&self.admin, postgres::NoTls).and_then(|mut c| {
            c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
        });
        if dropped.is_err() {
            eprintln!("could not drop the test schema {}", self.name);
        }
    }
}

#[test]
fn analyze_and_export_read_a_postgres_store_that_two_servers_filled() {
    let Some(schema) = Schema::create("analyze_and_export_read_a_postgres_store") else {
        return;
    };
    let mut servers = [
        Server::on(schema.url.clone()),
        Server::on(schema.url.clone()),
    ];
    let log = workspace().join("fixtures/sequences/retry_storm.jsonl");
    for server in &servers {
        let run = relaycb(&[
            "replay",
            &log.to_string_lossy(),
            "--to",
            &server.url(),
            "--rate",
            "200",
        ]);
        assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    }
    for server in &mut servers {
        server.stop();
    }

    let stored = analyze(&schema.url);
    assert_eq!(
        stored["summary"]["records"], 4,
        "one row per distinct event"
    );
    assert_eq!(
        stored["summary"]["deliveries"], 24,
        "every delivery to either server counted"
    );
    assert_eq!(
        histories(&stored),
        histories(&analyze(&log.to_string_lossy()))
    );
    let export = relaycb(&["export", "--db", &schema.url]);
    assert_eq!(export.code, 0, "{}", export.err);
    assert_eq!(export.out.lines().count(), 4, "{}", export.out);
    assert!(
        export.err.starts_with("exported 4 events from postgres://"),
        "{}",
        export.err
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    std::fs::write(&file, &export.out).unwrap();
    assert_eq!(
        analyze(&file.to_string_lossy()),
        stored,
        "the export reads back as the store itself"
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

/// Sent as fast as allowed with no `--start`, a simulation tells of events
/// that have just happened, never of events to come; `--first-task` keeps
/// two simulations sent to one receiver apart.
#[test]
fn simulate_to_a_receiver_ends_its_histories_now_and_numbers_tasks_from_first_task() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir);
    let url = server.url();
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for first in ["300000", "400000"] {
        let run = relaycb(&[
            "simulate",
            "--to",
            &url,
            "--tasks",
            "2",
            "--seed",
            "9",
            "--first-task",
            first,
        ]);
        assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    }
    let after_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let tasks = server.tasks();
    server.stop();
    let tasks = tasks["tasks"].as_array().unwrap();
    let ids: Vec<&str> = tasks
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["300000", "300001", "400000", "400001"]);
    // The same seed tells the same histories under other ids: the two
    // simulations did not mix.
    for (a, b) in [(0, 2), (1, 3)] {
        assert_eq!(tasks[a]["starts"], tasks[b]["starts"]);
        assert_eq!(tasks[a]["event_count"], tasks[b]["event_count"]);
    }
    let last = tasks
        .iter()
        .map(|t| t["last_event_at_ms"].as_i64().unwrap())
        .max()
        .unwrap();
    assert!(
        last <= after_ms && last >= before_ms - 10_000,
        "the latest event at {last} ms, sent between {before_ms} and {after_ms}"
    );
}

/// A line that does not decode is sent once, that the receiver may keep
/// it, and not again: no retry can make a receiver take it.
#[test]
fn replay_sends_a_body_that_does_not_decode_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let good: serde_json::Value = serde_json::from_slice(
        &std::fs::read(crate::workspace().join("fixtures/docs/task_start.json")).unwrap(),
    )
    .unwrap();
    std::fs::write(&log, format!("{good}\nnot a callback\n")).unwrap();
    let mut server = Server::start(&dir);
    let url = server.url();
    let run = relaycb(&[
        "replay",
        &log.to_string_lossy(),
        "--to",
        &url,
        "--retries",
        "3",
        "--retry-interval",
        "0.05",
    ]);
    server.stop();
    assert_eq!(run.code, 1, "{}{}", run.out, run.err);
    assert!(
        run.err
            .contains("line 2 (a body that does not decode): answered 400 Bad Request")
            && run
                .err
                .contains("it is not tried again (it does not decode)"),
        "{}",
        run.err
    );
    assert!(run.out.contains(", 1 given up, 0 retries"), "{}", run.out);
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
    // Said once, at the first failure, then counted at the end.
    insta::assert_snapshot!(run.err, @r"
    warning: line 1 (TaskStart of task 200005): answered 503 Service Unavailable, body busy; it is tried again every 0.01 s up to 12 times (--retry-interval, --retries); further failures of this kind are counted at the end, not shown
    warning: failed attempts by kind: answered 503 Service Unavailable: 8 attempts of 8 callbacks
    ");
    let failures: Vec<&str> = run
        .out
        .lines()
        .filter(|l| l.starts_with("failure: "))
        .collect();
    assert_eq!(failures.len(), 8, "{}", run.out);
    for line in 1..=8 {
        let failure = format!("failure: line {line} (Task");
        assert!(
            failures.iter().any(|f| f.starts_with(&failure)
                && f.ends_with(
                    " of task 200005), attempt 1: answered 503 Service Unavailable, body busy"
                )),
            "{}",
            run.out
        );
    }

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
    insta::assert_snapshot!(run.err, @r"
    warning: line 1 (TaskStart of task 200005): connection refused; it is tried again every 0 s up to 1 time (--retry-interval, --retries); further failures of this kind are counted at the end, not shown
    warning: failed attempts by kind: connection refused: 16 attempts of 8 callbacks
    ");
    assert!(
        run.out.contains(
            "\nfailure: line 1 (TaskStart of task 200005), attempt 1: connection refused\n"
        ),
        "{}",
        run.out
    );
}

/// Against a wrong path, with Tencent's retries, the sender would be
/// silent for 13 minutes: it says what went wrong as soon as it does.
#[test]
fn the_first_failure_of_a_kind_is_told_at_once_naming_the_callback_and_the_retries() {
    use std::io::BufRead;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (addr, _) = runtime.block_on(flaky_receiver());
    let simulated = std::process::Command::new(env!("CARGO_BIN_EXE_relaycb"))
        .args([
            "simulate",
            "--tasks",
            "2",
            "--seed",
            "1",
            "--concurrency",
            "1",
        ])
        .arg("--to")
        .arg(format!("http://{addr}/wrong"))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Ended by its id when the test is done with it, whatever happens.
    struct Ended(std::process::Child);
    impl Drop for Ended {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Ended(simulated);
    let (lines, heard) = std::sync::mpsc::channel();
    let stderr = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            if lines.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let within = std::time::Duration::from_secs(20);
    let simulated = heard.recv_timeout(within).unwrap();
    assert!(simulated.starts_with("simulated 2 task(s)"), "{simulated}");
    let told = heard.recv_timeout(within).unwrap();
    assert_eq!(
        told,
        "warning: callback 1 (TaskStart of task 300000): answered 404 Not Found; it is tried again every 60 s up to 12 times (--retry-interval, --retries); further failures of this kind are counted at the end, not shown"
    );
    assert!(
        heard
            .recv_timeout(std::time::Duration::from_millis(500))
            .is_err(),
        "one line per kind of failure"
    );
}

/// A receiver that takes its time over every `TaskStart` and notes each
/// body when it has handled it, as a server that folds it then would.
async fn slow_starting_receiver() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let handled: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let state = Arc::clone(&handled);
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::post(move |body: axum::body::Bytes| {
            let state = Arc::clone(&state);
            async move {
                let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
                if value["callback_event"] == "TaskStart" {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                state.lock().unwrap().push(body.to_vec());
                (axum::http::StatusCode::OK, r#"{"code":0}"#)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, handled)
}

/// Each task's bodies, in the order given.
fn by_task(bodies: impl Iterator<Item = Vec<u8>>) -> HashMap<String, Vec<Vec<u8>>> {
    let mut tasks: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for body in bodies {
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let task = value["task_id"].as_str().unwrap().to_owned();
        tasks.entry(task).or_default().push(body);
    }
    tasks
}

#[test]
fn simulate_and_replay_send_a_tasks_callbacks_in_order_even_several_at_once() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sim.jsonl").to_string_lossy().into_owned();
    let args = ["--tasks", "6", "--seed", "9", "--start", "1764806400"];
    let run = relaycb(&[&["simulate", "--out", &file][..], &args[..]].concat());
    assert_eq!(run.code, 0, "{}", run.err);
    let log = std::fs::read(&file).unwrap();
    let want = by_task(
        log.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec),
    );

    let (addr, handled) = runtime.block_on(slow_starting_receiver());
    let url = format!("http://{addr}/callback");
    let run = relaycb(
        &[
            &["simulate", "--to", &url, "--concurrency", "8"][..],
            &args[..],
        ]
        .concat(),
    );
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    let got = by_task(std::mem::take(&mut *handled.lock().unwrap()).into_iter());
    assert_eq!(
        got, want,
        "simulate --to: each task's bodies handled in order"
    );

    let run = relaycb(&["replay", &file, "--to", &url, "--concurrency", "8"]);
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    let got = by_task(std::mem::take(&mut *handled.lock().unwrap()).into_iter());
    assert_eq!(got, want, "replay: each task's bodies handled in order");
}
