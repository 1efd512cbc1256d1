//! The clients: each takes the next body, posts it, and posts it again
//! after any failure (connection refused or reset, no answer, 5xx) until
//! the server answers, as Tencent retries a callback that was not
//! acknowledged. What each body finally got is recorded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};

use crate::bodies::Body;
use crate::client::Client;

/// How long one body is retried before the client gives up on it.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// What a body finally got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Fate {
    /// Not sent (the run stopped first).
    Unsent = 0,
    /// Answered 200.
    Answered = 1,
    /// Answered 4xx.
    Refused = 2,
    /// Never answered before the client gave up.
    GaveUp = 3,
}

impl Fate {
    fn from_u8(v: u8) -> Fate {
        match v {
            1 => Fate::Answered,
            2 => Fate::Refused,
            3 => Fate::GaveUp,
            _ => Fate::Unsent,
        }
    }
}

/// Shared by the clients and read by the controller and the checks.
pub(crate) struct Ledger {
    pub(crate) bodies: Vec<Body>,
    fates: Vec<AtomicU8>,
    attempts: Vec<AtomicU32>,
    cursor: AtomicUsize,
    /// Bodies whose fate is known.
    pub(crate) done: AtomicUsize,
    /// Requests sent, retries included.
    pub(crate) requests: AtomicU64,
    /// Answers 5xx (the server was up but did not store).
    pub(crate) unavailable: AtomicU64,
    /// Requests that got no answer (connection refused, reset, timed out).
    pub(crate) unanswered: AtomicU64,
}

impl Ledger {
    pub(crate) fn new(bodies: Vec<Body>) -> Ledger {
        let n = bodies.len();
        Ledger {
            bodies,
            fates: (0..n).map(|_| AtomicU8::new(Fate::Unsent as u8)).collect(),
            attempts: (0..n).map(|_| AtomicU32::new(0)).collect(),
            cursor: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            unanswered: AtomicU64::new(0),
        }
    }

    pub(crate) fn fate(&self, n: usize) -> Fate {
        Fate::from_u8(self.fates[n].load(Ordering::Relaxed))
    }

    pub(crate) fn attempts(&self, n: usize) -> u32 {
        self.attempts[n].load(Ordering::Relaxed)
    }
}

/// Runs `clients` clients until every body has its fate.
pub(crate) async fn drive(ledger: Arc<Ledger>, addr: SocketAddr, path: String, clients: usize) {
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (ledger, path) = (Arc::clone(&ledger), path.clone());
        workers.spawn(async move { client(&ledger, addr, &path).await });
    }
    while workers.join_next().await.is_some() {}
}

async fn client(ledger: &Ledger, addr: SocketAddr, path: &str) {
    let mut client = Client::new(addr);
    loop {
        let n = ledger.cursor.fetch_add(1, Ordering::Relaxed);
        let Some(body) = ledger.bodies.get(n) else {
            return;
        };
        let fate = post_until_answered(ledger, &mut client, path, n, body).await;
        ledger.fates[n].store(fate as u8, Ordering::Relaxed);
        ledger.done.fetch_add(1, Ordering::Relaxed);
    }
}

async fn post_until_answered(
    ledger: &Ledger,
    client: &mut Client,
    path: &str,
    n: usize,
    body: &Body,
) -> Fate {
    let first = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        ledger.attempts[n].fetch_add(1, Ordering::Relaxed);
        ledger.requests.fetch_add(1, Ordering::Relaxed);
        match client.send(Method::POST, path, body.bytes.clone()).await {
            Ok((StatusCode::OK, _)) => return Fate::Answered,
            Ok((status, _)) if status.is_client_error() => return Fate::Refused,
            Ok(_) => {
                ledger.unavailable.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                ledger.unanswered.fetch_add(1, Ordering::Relaxed);
            }
        }
        if first.elapsed() > GIVE_UP_AFTER {
            return Fate::GaveUp;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
