//! What the binary writes to its log when standard error is not a terminal.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

/// The server binary on a free port logging at info in `format` to a pipe,
/// and the lines it writes there.
struct Logging {
    child: Child,
    lines: mpsc::Receiver<String>,
    _dir: TempDir,
}

impl Logging {
    fn start(format: &str) -> Logging {
        Logging::with(format, "info", &[])
    }

    /// The server with `RUST_LOG=filter` and `extra` flags.
    fn with(format: &str, filter: &str, extra: &[&str]) -> Logging {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_relaycb-server"))
            .args(["--listen", "127.0.0.1:0", "--log-format", format])
            .args(extra)
            .arg("--db")
            .arg(dir.path().join("r.db"))
            .env("RUST_LOG", filter)
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
        Logging {
            child,
            lines,
            _dir: dir,
        }
    }

    /// The lines up to and including the first that `last` accepts.
    fn until(&self, last: impl Fn(&str) -> bool) -> Vec<String> {
        let mut log = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(20)) {
            let done = last(&line);
            log.push(line);
            if done {
                return log;
            }
        }
        panic!("the line never came; the log so far: {log:#?}");
    }
}

impl Drop for Logging {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pretty logs written to a pipe or a file carry no terminal colour codes,
/// so that a log file or a journal stays plain text.
#[test]
fn pretty_logs_into_a_pipe_have_no_colour_codes() {
    let server = Logging::start("pretty");
    let log = server
        .until(|line| line.contains("relaycb-server listening"))
        .join("\n");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log:?}"
    );
}

/// A line logged while a callback is handled (a retry is logged at info)
/// carries its request's span with the task, the event and what was done.
#[test]
fn a_logged_callback_carries_its_task_event_and_outcome() {
    let server = Logging::start("json");
    let json = |line: &str| serde_json::from_str::<serde_json::Value>(line).unwrap_or_default();
    let listening = server.until(|line| json(line)["message"] == "relaycb-server listening");
    let addr = json(listening.last().unwrap())["addr"]
        .as_str()
        .unwrap()
        .to_owned();
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
    let logged = server.until(|line| json(line)["message"] == "callback duplicate");
    let retry = json(logged.last().unwrap());
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

/// Even at debug, a NATS token or password never reaches the log: the NATS
/// client's own lines would show it while it tries to connect.
#[test]
fn nats_credentials_stay_out_of_a_debug_log() {
    // Nothing listens there: the client keeps trying, and logging.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("nats://s3cr3t-token@127.0.0.1:{port}");
    let server = Logging::with("pretty", "debug", &["--nats-url", &url]);
    let mut log = server.until(|line| line.contains("relaycb-server listening"));
    // The client's first attempts come within a moment of the start.
    std::thread::sleep(Duration::from_millis(500));
    log.extend(server.lines.try_iter());
    let log = log.join("\n");
    assert!(log.contains("nats://***@127.0.0.1"), "{log}");
    assert!(!log.contains("s3cr3t-token"), "{log}");
}
