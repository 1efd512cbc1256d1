//! `relaycb simulate`: realistic relay task histories, written as JSON
//! Lines or sent to a receiver the way Tencent's sender sends them; also
//! the load generator of the benchmarks.
//!
//! Histories come from `history`, deliveries (with `--faults`: retries,
//! reordering and drifts) from `faults`, bodies from relaycb-core's
//! encoder, and sending from the shared sender.

mod faults;
mod history;
mod rng;
#[cfg(test)]
mod tests;

use std::io::{BufWriter, Write};
use std::time::Duration;

use anyhow::Context;

use super::replay::SendArgs;
use crate::console::Console;
use crate::send::{self, Name, Outgoing};
use crate::{Status, UsageError, time};
use faults::Delivery;
use history::Expected;

/// Where simulated histories start when written to a file: a fixed time,
/// so that a seed always gives the same file (2025-12-04T00:00:00Z).
const FIXED_START: i64 = 1_764_806_400;

/// The id of the first simulated task unless `--first-task` says another.
const FIRST_TASK: u64 = 300_000;

/// The most files a relay task's playlist may hold.
const MAX_FILES: u32 = 30;

/// Arguments of `relaycb simulate`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to", "out"])))]
pub struct Args {
    /// How many relay tasks to simulate.
    #[arg(long, value_name = "N")]
    pub tasks: u32,
    /// Files in each task's playlist (at most 30); 0 simulates live-source
    /// tasks.
    #[arg(long, value_name = "M", default_value_t = 3)]
    pub files: u32,
    /// Seed of the random histories; the same seed gives the same
    /// histories (default: drawn from the clock, and printed).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// With --to, send in simulated time sped up this many times (and
    /// retry that much sooner); without it, send as fast as allowed.
    #[arg(long, value_name = "X")]
    pub speed: Option<f64>,
    /// Keep every task running for this many hours of simulated time: its
    /// playlist loops and it is started again after each failure, as a task
    /// pushed around the clock (default: each task plays its playlist 1 to
    /// 3 times and is left exited after 3 failed restarts).
    #[arg(long, value_name = "H")]
    pub hours: Option<u32>,
    /// Add Tencent's faults: retries of the same event, reordering, and
    /// the documented drifts of the body's shape.
    #[arg(long)]
    pub faults: bool,
    /// Write the bodies as JSON Lines to this file (`-`: standard output).
    #[arg(long, value_name = "FILE")]
    pub out: Option<String>,
    /// Unix time at which the histories start (default: 2025-12-04T00:00:00Z
    /// with --out; with --to, now when --speed paces the sending, else so
    /// that the histories end now, as if they had just happened).
    #[arg(long, value_name = "UNIX")]
    pub start: Option<i64>,
    /// The id of the first task; the others count on from it (so that
    /// simulations sent to one receiver can be told apart).
    #[arg(long, value_name = "ID", default_value_t = FIRST_TASK)]
    pub first_task: u64,
    #[command(flatten)]
    pub send: SendArgs,
}

/// What to simulate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) seed: u64,
    pub(crate) tasks: u32,
    pub(crate) files: u32,
    pub(crate) hours: Option<u32>,
    pub(crate) faults: bool,
    pub(crate) start_s: i64,
    pub(crate) first_task: u64,
}

/// Every delivery of a simulation in sending order, and what each task's
/// history should fold into.
pub(crate) fn generate(plan: Plan) -> (Vec<Delivery>, Vec<Expected>) {
    let Plan {
        seed,
        tasks,
        files,
        hours,
        faults,
        start_s,
        first_task,
    } = plan;
    // FIXME: every delivery is held until sorted by time; a simulation of
    // millions of events would rather merge the tasks' streams lazily.
    let mut all = Vec::new();
    let mut expected = Vec::with_capacity(tasks as usize);
    let mut seq = 0;
    for index in 0..u64::from(tasks) {
        let (events, task) = history::task(seed, index, first_task, files, start_s, hours);
        let mut rng = rng::Rng::fork(seed ^ 0xFA17_FA17, index);
        all.extend(faults::deliveries(
            index, &events, &mut rng, faults, &mut seq,
        ));
        expected.push(task);
    }
    all.sort_by_key(|d| (d.at_ms, d.seq));
    (all, expected)
}

/// Generates the histories, then writes or sends them.
pub(crate) fn run(args: &Args, console: &mut Console<'_>) -> anyhow::Result<Status> {
    if let Some(speed) = args.speed
        && !(speed.is_finite() && speed > 0.0)
    {
        return Err(UsageError("--speed must be a number above 0".into()).into());
    }
    if args.files > MAX_FILES {
        return Err(UsageError(format!(
            "--files {} is more than a relay playlist holds ({MAX_FILES})",
            args.files
        ))
        .into());
    }
    if args.hours == Some(0) {
        return Err(UsageError("--hours must be at least 1".into()).into());
    }
    // The file is made before the work, so that a path that cannot be
    // written fails at once.
    let out = match args.out.as_deref() {
        Some("-") | None => None,
        Some(path) => {
            Some(std::fs::File::create(path).with_context(|| format!("cannot create {path}"))?)
        }
    };
    let seed = args.seed.unwrap_or_else(|| time::now_ms() as u64);
    let now = time::now_seconds();
    let mut plan = Plan {
        seed,
        tasks: args.tasks,
        files: args.files,
        hours: args.hours,
        faults: args.faults,
        start_s: args
            .start
            .unwrap_or(if args.out.is_some() { FIXED_START } else { now }),
        first_task: args.first_task,
    };
    let (mut deliveries, mut expected) = generate(plan);
    // Sent as fast as allowed, histories that start now would tell of
    // events to come: start them earlier by their length, so that they end
    // now. The same seed tells the same histories from any start.
    if args.out.is_none() && args.start.is_none() && args.speed.is_none() {
        let last_s = deliveries.iter().map(|d| d.at_ms).max().unwrap_or(0) / 1000;
        if last_s > now {
            plan.start_s -= last_s - now;
            (deliveries, expected) = generate(plan);
        }
    }
    let events: u64 = expected
        .iter()
        .map(|e| {
            e.starts
                + e.files_started
                + e.files_finished
                + e.exits.values().sum::<u64>()
                + e.alarms
                + e.config_resets
        })
        .sum();
    writeln!(
        console.err,
        "simulated {} task(s) with seed {seed}: {events} events in {} deliveries",
        args.tasks,
        deliveries.len()
    )?;
    match (&args.out, &args.send.to) {
        (Some(path), _) => {
            write_out(path, out, &deliveries, args.send.key.as_deref(), console)?;
            Ok(Status::Success)
        }
        (None, Some(url)) => {
            let options = args.send.options(url, args.speed)?;
            let first = deliveries.first().map_or(0, |d| d.at_ms);
            let speed = args.speed;
            let outgoing = deliveries.into_iter().zip(1..).map(move |(d, n)| Outgoing {
                after: speed.map(|x| {
                    Duration::from_secs_f64(((d.at_ms - first) as f64 / 1000.0 / x).max(0.0))
                }),
                body: d.body,
                task: Some(d.task),
                name: Name::Nth(n),
                once: false,
            });
            let mut report = send::send_all(&options, outgoing, &mut *console.err)?;
            write!(console.out, "{}", report.render(url))?;
            Ok(if report.given_up == 0 {
                Status::Success
            } else {
                Status::Failure
            })
        }
        (None, None) => unreachable!("clap requires --to or --out"),
    }
}

/// Writes the bodies to `file`, made for `path`, or to standard output
/// when there is none (`-`).
fn write_out(
    path: &str,
    file: Option<std::fs::File>,
    deliveries: &[Delivery],
    key: Option<&str>,
    console: &mut Console<'_>,
) -> anyhow::Result<()> {
    let mut file = file;
    let target: &mut dyn Write = match &mut file {
        Some(file) => file,
        None => &mut *console.out,
    };
    let mut out = BufWriter::new(target);
    for delivery in deliveries {
        let body = match key {
            // Tencent's t: when the notification expires, 10 minutes after sending.
            Some(key) => send::signed(&delivery.body, key, delivery.at_ms.div_euclid(1000) + 600),
            None => delivery.body.clone(),
        };
        out.write_all(&body)?;
        out.write_all(b"\n")?;
    }
    out.flush()
        .with_context(|| format!("cannot write {path}"))?;
    Ok(())
}
