//! Benchmarks 1 and 2: ingest. relaycb-server with its durable store, the
//! floor (HTTP alone) and the Python alternative, each started fresh on an
//! empty store and driven by the same load generator with the same unique
//! callbacks, at 1, 16 and 64 connections. Within a round the servers run
//! one after the other (A B C A B C ...), so that drift in the machine's
//! load hits them all, and ratios are taken round by round.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;

use super::Plan;
use super::load::{self, Load, Run};
use super::report::{Goal, Report, Target, number};
use super::servers::{Kind, Programs, Server};
use super::stats::Spread;

/// The connection counts measured.
pub(crate) const CONCURRENCY: [usize; 3] = [1, 16, 64];

/// One measured run of one server.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) run: Run,
    pub(crate) peak_rss_mib: Option<f64>,
}

/// Starts a fresh server of `kind`, drives it with `load` from body 0
/// and stops it.
pub(crate) fn measure_fresh(
    kind: Kind,
    programs: &Programs,
    plan: &Plan,
    concurrency: usize,
    bodies: &Arc<Vec<Bytes>>,
) -> Result<Sample> {
    let server = Server::start(kind, programs)?;
    let load = Load {
        addrs: vec![server.addr],
        path: server.path.to_owned(),
        concurrency,
        warmup: plan.warmup,
        duration: plan.warmup + plan.window,
        first: 0,
        end: bodies.len(),
    };
    let run = load::drive(&load, bodies)
        .with_context(|| format!("driving {} at {concurrency} connections", kind.label()))?;
    let peak_rss_mib = server.peak_rss_mib();
    if let Some(failure) = &run.first_failure {
        eprintln!(
            "bench: {} failed {} request(s), first: {failure}\n{}",
            kind.label(),
            run.failed,
            server.log_tail()
        );
    }
    server
        .stop()
        .with_context(|| format!("stopping {}", kind.label()))?;
    Ok(Sample { run, peak_rss_mib })
}

/// Runs benchmarks 1 and 2 and adds their tables and targets.
pub(crate) fn run(
    plan: &Plan,
    programs: &Programs,
    bodies: &Arc<Vec<Bytes>>,
    report: &mut Report,
) -> Result<()> {
    let mut kinds = vec![Kind::Relaycb, Kind::Floor];
    if programs.python.is_some() {
        kinds.push(Kind::Python);
    }
    let mut body = String::new();
    let _ = writeln!(
        body,
        "Each server fresh on an empty store per run; {} rounds per connection count, \
         {:.1} s counted after {:.1} s of warm-up; figures are median [min–max] over rounds; \
         ratios are taken within a round.\n",
        plan.rounds,
        plan.window.as_secs_f64(),
        plan.warmup.as_secs_f64()
    );
    body.push_str(
        "| clients | server | requests/s | p50 ms | p99 ms | max ms | peak RSS MiB | failed | ratio to floor |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let mut failed = 0u64;
    let mut rss_max: f64 = 0.0;
    for &c in &CONCURRENCY {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); kinds.len()];
        for round in 0..plan.rounds {
            for (k, &kind) in kinds.iter().enumerate() {
                let sample = measure_fresh(kind, programs, plan, c, bodies)?;
                eprintln!(
                    "bench: ingest {c:>2} clients, round {}/{}, {:<28} {:>8.0} req/s  p99 {:>7.2} ms",
                    round + 1,
                    plan.rounds,
                    kind.label(),
                    sample.run.per_second(),
                    sample.run.latency_ms(0.99)
                );
                if kind != Kind::Python {
                    failed += sample.run.failed;
                }
                samples[k].push(sample);
            }
        }
        let floor = &samples[1];
        for (k, &kind) in kinds.iter().enumerate() {
            let s = &samples[k];
            let rps = spread(s, |x| x.run.per_second());
            let p50 = spread(s, |x| x.run.latency_ms(0.5));
            let p99 = spread(s, |x| x.run.latency_ms(0.99));
            let max = s.iter().map(|x| x.run.latency_ms(1.0)).fold(0.0, f64::max);
            let rss = s.iter().filter_map(|x| x.peak_rss_mib).fold(0.0, f64::max);
            let ratio = Spread::of(
                s.iter()
                    .zip(floor)
                    .map(|(a, f)| a.run.per_second() / f.run.per_second()),
            );
            let failures: u64 = s.iter().map(|x| x.run.failed).sum();
            let _ = writeln!(
                body,
                "| {c} | {} | {} | {} | {} | {} | {rss:.1} | {failures} | {} |",
                kind.label(),
                rps.show(0),
                p50.show(2),
                p99.show(2),
                number(max),
                ratio.map_or_else(|| "-".to_owned(), |r| r.show(2)),
            );
            if kind == Kind::Relaycb {
                rss_max = rss_max.max(rss);
            }
        }
        if c == 64 {
            add_targets(report, &kinds, &samples);
        }
    }
    report.target(Target::new(
        "ingest: relaycb peak RSS, any run",
        rss_max,
        Goal::Below(64.0),
        " MiB",
    ));
    report.target(Target::new(
        "ingest: requests to relaycb or the floor not answered 200",
        failed as f64,
        Goal::AtMost(0.0),
        "",
    ));
    report.section(
        "1–2. Ingest: relaycb vs the floor and the Python alternative",
        body,
    );
    Ok(())
}

fn add_targets(report: &mut Report, kinds: &[Kind], samples: &[Vec<Sample>]) {
    let relaycb = &samples[0];
    let floor = &samples[1];
    let ratio = Spread::of(
        relaycb
            .iter()
            .zip(floor)
            .map(|(a, f)| a.run.per_second() / f.run.per_second()),
    );
    if let Some(ratio) = ratio {
        report.target(Target::new(
            "ingest, 64 clients: relaycb / floor throughput",
            ratio.median,
            Goal::AtLeast(0.5),
            "",
        ));
    }
    let p99 = spread(relaycb, |x| x.run.latency_ms(0.99));
    report.target(Target::new(
        "ingest, 64 clients: relaycb p99 latency",
        p99.median,
        Goal::Below(10.0),
        " ms",
    ));
    if kinds.contains(&Kind::Python) {
        let python = &samples[2];
        let ratio = Spread::of(
            relaycb
                .iter()
                .zip(python)
                .map(|(a, p)| a.run.per_second() / p.run.per_second()),
        );
        if let Some(ratio) = ratio {
            report.target(Target::new(
                "alternative, 64 clients: relaycb / Python throughput",
                ratio.median,
                Goal::AtLeast(15.0),
                "",
            ));
        }
        let python_p99 = spread(python, |x| x.run.latency_ms(0.99));
        report.target(Target::new(
            "alternative, 64 clients: relaycb p99 / Python p99",
            p99.median / python_p99.median,
            Goal::Below(1.0),
            "",
        ));
    } else {
        report.skip("alternative: no Python 3 interpreter, so relaycb was not compared with it");
    }
}

/// The spread of a figure over samples (there is always at least one).
fn spread(samples: &[Sample], figure: impl Fn(&Sample) -> f64) -> Spread {
    Spread::of(samples.iter().map(figure)).unwrap_or(Spread {
        median: f64::NAN,
        min: f64::NAN,
        max: f64::NAN,
    })
}
