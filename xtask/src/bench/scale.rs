//! Benchmark 5: scale. One relaycb-server is filled through its callback
//! endpoint to each level of stored events (10k, 100k, 1M) and, at each
//! level, measured against a fresh server on an empty store, alternating
//! empty, filled, empty, filled, at 64 connections. Throughput should not
//! fall by more than 20%: lookups go through indexes, not scans.
//!
//! The filled server keeps the callbacks sent while it is measured, so the
//! stored count grows a little within a level; the table shows the count
//! at the start of each level's first run.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;

use super::Plan;
use super::ingest::measure_fresh;
use super::load::{self, Load};
use super::report::{Goal, Report, Target};
use super::servers::{Kind, Programs, Server};
use super::stats::Spread;

/// Connections during the measured runs and while filling.
const CLIENTS: usize = 64;
/// Upper bound on the time spent filling one level.
const FILL_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs benchmark 5 and adds its table and targets.
pub(crate) fn run(
    plan: &Plan,
    programs: &Programs,
    bodies: &Arc<Vec<Bytes>>,
    report: &mut Report,
) -> Result<()> {
    let filled = Server::start(Kind::Relaycb, programs)?;
    let mut stored = 0usize;
    let mut body = format!(
        "{CLIENTS} clients; {} rounds of empty store then filled store per level; \
         requests/s median [min–max]; ratio filled / empty taken within a round.\n\n\
         | stored events | fill time s | empty req/s | filled req/s | filled p99 ms | filled / empty | filled server peak RSS MiB |\n\
         |---|---|---|---|---|---|---|\n",
        plan.rounds
    );
    for &level in &plan.scale_levels {
        if level + plan.rounds * 100 > bodies.len() {
            report.skip(format!(
                "scale at {level} stored events: only {} unique bodies were generated",
                bodies.len()
            ));
            continue;
        }
        let began = Instant::now();
        if stored < level {
            let fill = Load {
                addrs: vec![filled.addr],
                path: filled.path.to_owned(),
                concurrency: CLIENTS,
                warmup: Duration::ZERO,
                duration: FILL_TIMEOUT,
                first: stored,
                end: level,
            };
            let run = load::drive(&fill, bodies).context("filling the store")?;
            anyhow::ensure!(
                run.failed == 0,
                "filling the store failed {} request(s): {}\n{}",
                run.failed,
                run.first_failure.unwrap_or_default(),
                filled.log_tail()
            );
            stored = run.next;
            eprintln!(
                "bench: scale: {stored} events stored in {:.1} s",
                began.elapsed().as_secs_f64()
            );
        }
        let fill_seconds = began.elapsed().as_secs_f64();
        let at_start = stored;
        let (mut empty, mut full, mut p99) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..plan.rounds {
            let e = measure_fresh(Kind::Relaycb, programs, plan, CLIENTS, bodies)?;
            let load = Load {
                addrs: vec![filled.addr],
                path: filled.path.to_owned(),
                concurrency: CLIENTS,
                warmup: plan.warmup,
                duration: plan.warmup + plan.window,
                first: stored,
                end: bodies.len(),
            };
            let f = load::drive(&load, bodies).context("driving the filled server")?;
            if f.next >= bodies.len() {
                eprintln!(
                    "bench: scale: the filled server used up the generated bodies; its run was cut short"
                );
            }
            stored = f.next;
            eprintln!(
                "bench: scale {at_start:>7} stored, round {}/{}: empty {:>8.0} req/s, filled {:>8.0} req/s",
                round + 1,
                plan.rounds,
                e.run.per_second(),
                f.per_second()
            );
            anyhow::ensure!(
                f.failed == 0 && e.run.failed == 0,
                "scale: requests failed: {}",
                f.first_failure.or(e.run.first_failure).unwrap_or_default()
            );
            empty.push(e.run.per_second());
            full.push(f.per_second());
            p99.push(f.latency_ms(0.99));
        }
        let ratio = Spread::of(empty.iter().zip(&full).map(|(e, f)| f / e))
            .context("no scale round ran")?;
        let show = |v: &[f64], d| Spread::of(v.iter().copied()).map_or("-".into(), |s| s.show(d));
        let _ = writeln!(
            body,
            "| {at_start} | {fill_seconds:.1} | {} | {} | {} | {} | {:.1} |",
            show(&empty, 0),
            show(&full, 0),
            show(&p99, 2),
            ratio.show(2),
            filled.peak_rss_mib().unwrap_or(f64::NAN)
        );
        report.target(Target::new(
            format!("scale, {level} stored events: filled / empty throughput"),
            ratio.median,
            Goal::AtLeast(0.8),
            "",
        ));
    }
    let _ = writeln!(
        body,
        "\nThe filled server ended with {stored} stored events."
    );
    filled.stop().context("stopping the filled server")?;
    report.section("5. Scale: ingest with events already stored", body);
    Ok(())
}
