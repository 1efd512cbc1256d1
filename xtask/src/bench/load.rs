//! The load generator shared by every HTTP benchmark: `C` keep-alive
//! connections, each posting one callback body after another as soon as
//! the previous one is answered (closed loop), for a bounded time and a
//! bounded number of bodies.
//!
//! It runs on one thread (a current-thread runtime) so that on a small
//! machine it leaves the other cores to the server under test; the same
//! generator drives every server, so its own cost is in every figure alike.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

use super::stats::quantile;

/// Longest wait for one answer before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What to send, where, and for how long.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    /// The servers: connection `i` goes to `addrs[i % addrs.len()]`.
    pub(crate) addrs: Vec<SocketAddr>,
    /// Path (and query) of the callback endpoint.
    pub(crate) path: String,
    /// Connections, each with one request in flight at a time.
    pub(crate) concurrency: usize,
    /// Answers that complete before this are not counted.
    pub(crate) warmup: Duration,
    /// The run stops after this long (warm-up included) ...
    pub(crate) duration: Duration,
    /// ... or when the bodies `first..end` are all sent.
    pub(crate) first: usize,
    pub(crate) end: usize,
}

/// What one run measured, after the warm-up.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// Requests answered 200 after the warm-up.
    pub(crate) answered: u64,
    /// Requests answered with another status, failed or timed out.
    pub(crate) failed: u64,
    /// The first failure, in words.
    pub(crate) first_failure: Option<String>,
    /// From the end of the warm-up to the last answer.
    pub(crate) elapsed: Duration,
    /// Latencies of the counted answers, sorted, in microseconds.
    pub(crate) latencies_us: Vec<u32>,
    /// Index of the first body not sent.
    pub(crate) next: usize,
}

impl Run {
    /// Answers per second.
    pub(crate) fn per_second(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.answered as f64 / s
        } else {
            0.0
        }
    }

    /// Latency at quantile `q`, in milliseconds.
    pub(crate) fn latency_ms(&self, q: f64) -> f64 {
        f64::from(quantile(&self.latencies_us, q)) / 1000.0
    }
}

/// Drives `load` with `bodies` and waits for it to finish.
pub(crate) fn drive(load: &Load, bodies: &Arc<Vec<Bytes>>) -> Result<Run> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the load generator's runtime")?;
    runtime.block_on(drive_async(load.clone(), Arc::clone(bodies)))
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    answered: u64,
    failed: u64,
    first_failure: Option<String>,
    last_answer: Option<Instant>,
    latencies_us: Vec<u32>,
}

async fn drive_async(load: Load, bodies: Arc<Vec<Bytes>>) -> Result<Run> {
    let cursor = Arc::new(AtomicUsize::new(load.first));
    let start = Instant::now();
    let counted_from = start + load.warmup;
    let deadline = start + load.duration;
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..load.concurrency.max(1) {
        let (load, bodies, cursor) = (load.clone(), Arc::clone(&bodies), Arc::clone(&cursor));
        let addr = load.addrs[i % load.addrs.len()];
        workers.spawn(async move {
            let mut tally = Tally::default();
            if let Err(error) = connection(
                &load,
                addr,
                &bodies,
                &cursor,
                counted_from,
                deadline,
                &mut tally,
            )
            .await
            {
                tally.failed += 1;
                tally.first_failure.get_or_insert(format!("{error:#}"));
            }
            tally
        });
    }
    let mut run = Run {
        answered: 0,
        failed: 0,
        first_failure: None,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
        next: 0,
    };
    let mut last = counted_from;
    while let Some(tally) = workers.join_next().await {
        let tally = tally.context("a load connection panicked")?;
        run.answered += tally.answered;
        run.failed += tally.failed;
        if run.first_failure.is_none() {
            run.first_failure = tally.first_failure;
        }
        if let Some(at) = tally.last_answer {
            last = last.max(at);
        }
        run.latencies_us.extend(tally.latencies_us);
    }
    run.latencies_us.sort_unstable();
    run.elapsed = last.saturating_duration_since(counted_from);
    run.next = cursor
        .load(Ordering::Relaxed)
        .min(load.end.min(bodies.len()));
    Ok(run)
}

/// One keep-alive connection posting bodies until the deadline or the end
/// of the bodies.
async fn connection(
    load: &Load,
    addr: SocketAddr,
    bodies: &[Bytes],
    cursor: &AtomicUsize,
    counted_from: Instant,
    deadline: Instant,
    tally: &mut Tally,
) -> Result<()> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true).context("cannot set TCP_NODELAY")?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake failed")?;
    let driver = tokio::spawn(conn);
    let host = addr.to_string();
    let end = load.end;
    loop {
        if Instant::now() >= deadline {
            break;
        }
        let index = cursor.fetch_add(1, Ordering::Relaxed);
        if index >= end {
            break;
        }
        let Some(body) = bodies.get(index) else { break };
        let request = Request::post(load.path.as_str())
            .header(hyper::header::HOST, host.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
            .context("cannot build a request")?;
        let begun = Instant::now();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        })
        .await;
        let done = Instant::now();
        let status = match answer {
            Ok(Ok(status)) => status,
            Ok(Err(error)) => return Err(error).context("request failed"),
            Err(_) => anyhow::bail!("no answer within {REQUEST_TIMEOUT:?}"),
        };
        if status != hyper::StatusCode::OK {
            tally.failed += 1;
            tally
                .first_failure
                .get_or_insert_with(|| format!("answered {status} to body {index}"));
            continue;
        }
        if done >= counted_from {
            tally.answered += 1;
            tally.last_answer = Some(done);
            let us = (done - begun).as_micros();
            tally
                .latencies_us
                .push(u32::try_from(us).unwrap_or(u32::MAX));
        }
    }
    drop(sender);
    driver.abort();
    Ok(())
}
