//! Benchmark 1b: durable ingest into PostgreSQL. Two relaycb-server
//! processes share one database (a fresh schema per round) and the 64
//! connections of the load generator are split between them; beside it, in
//! the same round, one relaycb-server on its SQLite file with the same 64
//! connections.
//!
//! The database is the one named by `RELAYCB_BENCH_POSTGRES` (or, failing
//! that, `RELAYCB_TEST_POSTGRES`), a `postgres://` URL of a database where
//! schemas may be created; without either the benchmark is skipped.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bytes::Bytes;

use super::Plan;
use super::ingest::{Sample, measure_fresh};
use super::load::{self, Load};
use super::report::{Goal, Report, Target};
use super::servers::{Kind, Programs, Server};
use super::stats::Spread;

/// Connections, split over the servers.
const CLIENTS: usize = 64;
/// Servers sharing the database.
const SERVERS: usize = 2;

/// A schema of its own for one round, dropped afterwards.
struct Schema {
    admin: String,
    name: String,
    /// A URL whose connections use the schema.
    url: String,
}

impl Schema {
    fn create(admin: &str, round: usize) -> Result<Schema> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("relaycb_bench_{}_{round}_{nanos}", std::process::id());
        let separator = if admin.contains('?') { '&' } else { '?' };
        let schema = Schema {
            admin: admin.to_owned(),
            url: format!("{admin}{separator}options=-csearch_path%3D{name}"),
            name,
        };
        schema.execute(&format!("CREATE SCHEMA {}", schema.name))?;
        Ok(schema)
    }

    fn execute(&self, sql: &str) -> Result<()> {
        let mut client = postgres::Client::connect(&self.admin, postgres::NoTls)
            .context("cannot connect to the benchmark's PostgreSQL database")?;
        client
            .batch_execute(sql)
            .with_context(|| format!("PostgreSQL refused {sql:?}"))
    }

    fn stored_events(&self) -> Result<i64> {
        let mut client = postgres::Client::connect(&self.url, postgres::NoTls)
            .context("cannot connect to the benchmark's PostgreSQL database")?;
        Ok(client
            .query_one("SELECT count(*) FROM events", &[])
            .context("cannot count the stored events")?
            .get(0))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Err(error) = self.execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name)) {
            eprintln!("bench: could not drop {}: {error:#}", self.name);
        }
    }
}

/// One round on PostgreSQL: two fresh servers on a fresh schema.
fn measure_shared(
    admin: &str,
    round: usize,
    programs: &Programs,
    plan: &Plan,
    bodies: &Arc<Vec<Bytes>>,
) -> Result<Sample> {
    let schema = Schema::create(admin, round)?;
    let servers = (0..SERVERS)
        .map(|_| Server::start_postgres(programs, &schema.url))
        .collect::<Result<Vec<_>>>()?;
    let load = Load {
        addrs: servers.iter().map(|s| s.addr).collect(),
        path: servers[0].path.to_owned(),
        concurrency: CLIENTS,
        warmup: plan.warmup,
        duration: plan.warmup + plan.window,
        first: 0,
        end: bodies.len(),
    };
    let run = load::drive(&load, bodies).context("driving two servers on PostgreSQL")?;
    let peak_rss_mib = servers
        .iter()
        .filter_map(Server::peak_rss_mib)
        .reduce(f64::max);
    if let Some(failure) = &run.first_failure {
        eprintln!(
            "bench: relaycb on PostgreSQL failed {} request(s), first: {failure}\n{}",
            run.failed,
            servers
                .iter()
                .map(Server::log_tail)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    for server in servers {
        server.stop().context("stopping relaycb on PostgreSQL")?;
    }
    // Every answered request is a stored event (the bodies are unique).
    let stored = schema.stored_events()?;
    anyhow::ensure!(
        stored >= i64::try_from(run.answered).unwrap_or(i64::MAX),
        "{} requests were answered 200 but only {stored} events are stored",
        run.answered
    );
    Ok(Sample { run, peak_rss_mib })
}

/// Runs benchmark 1b and adds its table and target.
pub(crate) fn run(
    plan: &Plan,
    programs: &Programs,
    bodies: &Arc<Vec<Bytes>>,
    report: &mut Report,
) -> Result<()> {
    let admin = std::env::var("RELAYCB_BENCH_POSTGRES")
        .or_else(|_| std::env::var("RELAYCB_TEST_POSTGRES"))
        .ok()
        .filter(|url| !url.is_empty());
    let Some(admin) = admin else {
        report.skip(
            "ingest into PostgreSQL: neither RELAYCB_BENCH_POSTGRES nor RELAYCB_TEST_POSTGRES names a database",
        );
        return Ok(());
    };
    let (mut shared, mut sqlite) = (Vec::new(), Vec::new());
    for round in 0..plan.rounds {
        let p = measure_shared(&admin, round, programs, plan, bodies)?;
        let s = measure_fresh(Kind::Relaycb, programs, plan, CLIENTS, bodies)?;
        eprintln!(
            "bench: ingest {CLIENTS} clients, round {}/{}, PostgreSQL x{SERVERS} {:>8.0} req/s, SQLite {:>8.0} req/s",
            round + 1,
            plan.rounds,
            p.run.per_second(),
            s.run.per_second()
        );
        shared.push(p);
        sqlite.push(s);
    }
    let mut body = format!(
        "{CLIENTS} clients; PostgreSQL: {SERVERS} relaycb-server sharing one fresh schema, \
         connections split evenly; SQLite: one relaycb-server on a fresh file, in the same round. \
         {} rounds; median [min–max].\n\n\
         | store | requests/s | p50 ms | p99 ms | peak RSS MiB (per server) | failed |\n\
         |---|---|---|---|---|---|\n",
        plan.rounds
    );
    let mut rps_shared = None;
    for (label, samples) in [
        ("PostgreSQL, 2 servers", &shared),
        ("SQLite, 1 server", &sqlite),
    ] {
        let rps = Spread::of(samples.iter().map(|x| x.run.per_second()));
        let p50 = Spread::of(samples.iter().map(|x| x.run.latency_ms(0.5)));
        let p99 = Spread::of(samples.iter().map(|x| x.run.latency_ms(0.99)));
        let rss = samples
            .iter()
            .filter_map(|x| x.peak_rss_mib)
            .fold(0.0, f64::max);
        let failed: u64 = samples.iter().map(|x| x.run.failed).sum();
        let show = |s: Option<Spread>, d| s.map_or_else(|| "-".to_owned(), |s| s.show(d));
        let _ = writeln!(
            body,
            "| {label} | {} | {} | {} | {rss:.1} | {failed} |",
            show(rps, 0),
            show(p50, 2),
            show(p99, 2)
        );
        if rps_shared.is_none() {
            rps_shared = Some((rps, failed));
        }
    }
    if let Some((Some(rps), failed)) = rps_shared {
        report.target(Target::new(
            "ingest into PostgreSQL, 64 clients over 2 servers: requests/s",
            rps.median,
            Goal::AtLeast(10_000.0),
            "/s",
        ));
        report.target(Target::new(
            "ingest into PostgreSQL: requests not answered 200",
            failed as f64,
            Goal::AtMost(0.0),
            "",
        ));
    }
    report.section("1b. Ingest into PostgreSQL beside SQLite", body);
    Ok(())
}
