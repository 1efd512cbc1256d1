//! What the binary writes to its log when standard error is not a terminal.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Pretty logs written to a pipe or a file carry no terminal colour codes,
/// so that a log file or a journal stays plain text.
#[test]
fn pretty_logs_into_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_relaycb-server"))
        .args(["--listen", "127.0.0.1:0", "--log-format", "pretty", "--db"])
        .arg(dir.path().join("r.db"))
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(20)) {
        let listening = line.contains("relaycb-server listening");
        log.push(line);
        if listening {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let log = log.join("\n");
    assert!(log.contains("relaycb-server listening"), "log: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log:?}"
    );
}

/// A line logged while a callback is handled (a retry is logged at info)
/// carries its request's span with the task, the event and what was done.
#[test]
fn a_logged_callback_carries_its_task_event_and_outcome() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_relaycb-server"))
        .args(["--listen", "127.0.0.1:0", "--log-format", "json", "--db"])
        .arg(dir.path().join("r.db"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(value) = serde_json::from_str(&line) else {
                continue;
            };
            if lines_tx.send(value).is_err() {
                break;
            }
        }
    });
    let next = |what: &dyn Fn(&serde_json::Value) -> bool| loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the line is logged");
        if what(&line) {
            return line;
        }
    };
    let listening = next(&|l| l["message"] == "relaycb-server listening");
    let addr = listening["addr"].as_str().unwrap().to_owned();
    let body = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/docs/task_start.json"),
    )
    .unwrap();
    for _ in 0..2 {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        let head = format!(
            "POST /callback HTTP/1.1\r\nHost: relaycb.test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let retry = next(&|l| l["message"] == "callback duplicate");
    child.kill().unwrap();
    child.wait().unwrap();
    let span = &retry["span"];
    assert_eq!(span["name"], "request", "{retry}");
    assert_eq!(span["route"], "/callback", "{retry}");
    assert_eq!(span["event"], "TaskStart", "{retry}");
    assert_eq!(span["outcome"], "duplicate", "{retry}");
    assert!(
        span["task_id"].as_str().is_some_and(|t| !t.is_empty()),
        "{retry}"
    );
    assert!(span["request_id"].as_str().is_some(), "{retry}");
}
