//! Helpers: a service over a temporary database driven through `oneshot`,
//! the fixtures folder, and the redaction of what varies between runs
//! (arrival times, peer ports) before snapshotting.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use clap::Parser;
use relaycb_server::{Config, Service, app};
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

/// The repository's `fixtures/` folder.
pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Reads one fixture, `docs/task_start.json` for example.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap()
}

/// A configuration over `db` with extra flags.
pub(crate) fn config(db: &Path, extra: &[&str]) -> Config {
    let mut args = vec![
        "relaycb-server".to_owned(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--db".to_owned(),
        db.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Config::parse_from(args)
}

/// An open service on a temporary database, driven without a socket.
pub(crate) struct Harness {
    pub(crate) service: Service,
    pub(crate) router: Router,
    pub(crate) db: PathBuf,
    extra: Vec<String>,
    _dir: Option<TempDir>,
}

impl Harness {
    pub(crate) async fn new(extra: &[&str]) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("relaycb.db");
        let mut harness = Harness::open(&db, extra).await;
        harness._dir = Some(dir);
        harness
    }

    pub(crate) async fn open(db: &Path, extra: &[&str]) -> Harness {
        let service = Service::open(config(db, extra)).await.unwrap();
        let router = app(&service);
        Harness {
            service,
            router,
            db: db.to_owned(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            _dir: None,
        }
    }

    /// Closes the store and opens it again on the same file, as a restart.
    pub(crate) async fn restart(mut self) -> Harness {
        self.service.close().await.unwrap();
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let mut again = Harness::open(&self.db, &extra).await;
        again._dir = self._dir.take();
        again
    }

    pub(crate) async fn send(&self, request: Request<Body>) -> (StatusCode, Vec<u8>) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, bytes.to_vec())
    }

    /// Posts a callback body to `uri`.
    pub(crate) async fn post(&self, uri: &str, body: impl Into<Vec<u8>>) -> (StatusCode, Value) {
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.into()))
            .unwrap();
        let (status, bytes) = self.send(request).await;
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// GETs `uri` and parses the answer as JSON.
    pub(crate) async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let (status, bytes) = self.get_bytes(uri).await;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{uri} answered {status} with non-JSON ({e})"));
        (status, value)
    }

    pub(crate) async fn get_bytes(&self, uri: &str) -> (StatusCode, Vec<u8>) {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    /// GETs `uri`, expecting 200.
    pub(crate) async fn ok(&self, uri: &str) -> Value {
        let (status, value) = self.get(uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {value}");
        value
    }

    pub(crate) async fn close(self) {
        self.service.close().await.unwrap();
    }
}

/// Waits until the clock has moved to another millisecond. Bodies without
/// a time of their own are ordered by arrival, to the millisecond; two
/// posted within the same one would be ordered by event kind instead, so
/// tests that post sequences wait between posts to stay deterministic
/// however fast the disk is.
pub(crate) async fn next_millisecond() {
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
}

/// A runtime for tests whose body is a synchronous closure (insta's glob).
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Replaces what varies between runs: arrival-based times, peer
/// addresses, the `Host` header, and the seconds in overdue details.
pub(crate) fn redact(mut value: Value) -> Value {
    redact_in(&mut value);
    value
}

fn redact_in(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let varies = key == "at"
                    || key == "at_ms"
                    || key.ends_with("_at")
                    || key.ends_with("_at_ms")
                    || key == "expected_end_ms"
                    || key == "peer"
                    || key == "host";
                if varies && !v.is_null() {
                    *v = Value::String(format!("[{key}]"));
                } else if key == "detail" {
                    if let Value::String(text) = v {
                        *text = time_ago(text);
                    }
                } else {
                    redact_in(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_in),
        _ => {}
    }
}

/// "should have ended 3h 2m 1s ago" depends on today's date: "should have
/// ended [n] ago".
fn time_ago(text: &str) -> String {
    const ENDED: &str = "should have ended ";
    let (Some(start), Some(end)) = (text.find(ENDED), text.find(" ago")) else {
        return text.to_owned();
    };
    let start = start + ENDED.len();
    if start > end {
        return text.to_owned();
    }
    format!("{}[n]{}", &text[..start], &text[end..])
}
