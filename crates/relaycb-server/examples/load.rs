//! A quick load check by hand, not a benchmark (that is `cargo xtask
//! bench`): starts a server on a temporary database, posts distinct
//! callbacks from concurrent clients for a few seconds, and prints the
//! durable-ack throughput and latency percentiles.
//!
//! `cargo run -p relaycb-server --example load -- [clients] [seconds] [noop]`
//!
//! With `noop`, the clients GET `/healthz` instead: the ceiling of the HTTP
//! stack on this machine, to compare with.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let seconds: u64 = args.next().map_or(Ok(5), |a| a.parse())?;
    let noop = args.next().as_deref() == Some("noop");
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("load.db");
    let config = relaycb_server::Config::parse_from([
        "relaycb-server",
        "--listen",
        "127.0.0.1:0",
        "--db",
        &db.display().to_string(),
    ]);
    let running = relaycb_server::start(config).await?;
    let base = format!("http://{}", running.local_addr());
    let url = format!("{base}/callback");
    let health = format!("{base}/healthz");
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (client, url, health, next) =
            (client.clone(), url.clone(), health.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let body = format!(
                    r#"{{"appid":1,"callback_event":"TaskAlarm","event_type":314,"msg":"{{\"type\":\"PullFileUnstable\",\"n\":{n}}}","task_id":"{}","stream_id":"s","to_url":"rtmp://a/b","source_urls":"[\"http://a/x.m3u8\"]\n"}}"#,
                    n % 64
                );
                let started = Instant::now();
                let response = if noop {
                    client.get(&health).send().await?
                } else {
                    client.post(&url).body(body).send().await?
                };
                anyhow::ensure!(response.status() == 200, "answered {}", response.status());
                latencies.push(started.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{clients} clients, {seconds} s: {} acks, {:.0}/s, p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        latencies.len() as f64 / seconds as f64,
        pick(0.50),
        pick(0.99),
        latencies.last().copied().unwrap_or_default(),
    );
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let batches = value("relaycb_batch_size_count ");
    if batches > 0.0 {
        println!(
            "{batches} commits, {:.1} writes per commit on average",
            value("relaycb_batch_size_sum ") / batches
        );
    }
    running.shutdown().await
}
