//! `cargo xtask bench [--quick]`: every speed and memory target of
//! relaycb measured beside its reference in the same run, on a
//! machine that is usually shared, so that only ratios taken round by
//! round mean much.
//!
//! 1–2. ingest: relaycb-server vs a no-op axum floor and a Python handler
//!      (`ingest`), driven by one load generator (`load`);
//! 1b.  ingest into PostgreSQL, two servers on one database, beside SQLite
//!      (`postgres`);
//! 3.   decode: typed decode vs `serde_json::Value` (`decode`);
//! 4.   analyze: `relaycb analyze` vs `jq` and `wc -l` (`analyze`);
//! 5.   scale: ingest with 10k, 100k, 1M events stored (`scale`).
//!
//! It builds what it measures in release mode (and re-runs itself from a
//! release build, since a debug load generator or floor would measure
//! nothing useful), writes `target/bench/report.md`, and fails naming each
//! missed target and by how much. Quick mode is meant to finish in under
//! two minutes, the full run in under fifteen; every loop is bounded in
//! count and time, and all traffic stays on 127.0.0.1.

mod analyze;
mod decode;
pub(crate) mod floor;
mod ingest;
mod load;
mod postgres;
mod report;
mod scale;
mod servers;
mod stats;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;

use analyze::Shape;
use report::Report;
use servers::Programs;
use stats::Machine;

/// Set by the debug `cargo xtask bench` for the release build it runs, to
/// say that everything is built already.
const BUILT_ENV: &str = "RELAYCB_BENCH_BUILT";

/// How much to measure.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) quick: bool,
    /// Rounds of each HTTP comparison.
    pub(crate) rounds: usize,
    /// Answers not counted at the start of each HTTP run.
    pub(crate) warmup: Duration,
    /// Counted part of each HTTP run.
    pub(crate) window: Duration,
    pub(crate) decode_rounds: usize,
    pub(crate) analyze_rounds: usize,
    /// Size of the generated log.
    pub(crate) analyze_bytes: u64,
    /// Stored events before each scale measurement.
    pub(crate) scale_levels: Vec<usize>,
    /// The parts to run (`--only`); `None`: all of them.
    pub(crate) only: Option<Vec<String>>,
}

impl Plan {
    /// Whether `part` is to be measured.
    fn runs(&self, part: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|p| p == part))
    }
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                rounds: 3,
                warmup: Duration::from_millis(250),
                window: Duration::from_millis(1000),
                decode_rounds: 200,
                analyze_rounds: 3,
                analyze_bytes: 100_000_000,
                scale_levels: vec![10_000, 100_000],
                only: None,
            }
        } else {
            Plan {
                quick,
                rounds: 5,
                warmup: Duration::from_millis(500),
                window: Duration::from_secs(3),
                decode_rounds: 400,
                analyze_rounds: 3,
                analyze_bytes: 1_000_000_000,
                scale_levels: vec![10_000, 100_000, 1_000_000],
                only: None,
            }
        }
    }
}

/// The parts of the benchmark, as `--only` names them.
const PARTS: [&str; 5] = ["decode", "analyze", "ingest", "postgres", "scale"];

/// Runs `cargo xtask bench [--quick] [--only PART,...]`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let usage = || {
        format!(
            "usage: cargo xtask bench [--quick] [--only PART,...] (parts: {})",
            PARTS.join(", ")
        )
    };
    let mut quick = false;
    let mut only: Option<Vec<String>> = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--only" => {
                let parts = rest.next().with_context(usage)?;
                let parts: Vec<String> = parts.split(',').map(str::to_owned).collect();
                if let Some(unknown) = parts.iter().find(|p| !PARTS.contains(&p.as_str())) {
                    bail!("no benchmark part {unknown:?}; {}", usage());
                }
                only = Some(parts);
            }
            other => bail!("{}, found {other:?}", usage()),
        }
    }
    let root = crate::workspace_root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let release = target.join("release");
    if cfg!(debug_assertions) {
        build(&root, &["relaycb-server", "relaycb-cli", "xtask"])?;
        let status = Command::new(release.join("xtask"))
            .arg("bench")
            .args(args)
            .env(BUILT_ENV, "1")
            .status()
            .context("cannot run the release build of xtask")?;
        if status.success() {
            return Ok(());
        }
        bail!("the benchmark failed ({status})");
    }
    if std::env::var_os(BUILT_ENV).is_none() {
        build(&root, &["relaycb-server", "relaycb-cli"])?;
    }
    let plan = Plan {
        only,
        ..Plan::new(quick)
    };
    measure(&plan, &root, &target)
}

/// `cargo build --release` of the given packages.
fn build(root: &Path, packages: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root).args(["build", "--release"]);
    for p in packages {
        command.args(["-p", p]);
    }
    eprintln!("bench: cargo build --release -p {}", packages.join(" -p "));
    let status = command.status().context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build --release failed ({status})");
    }
    Ok(())
}

fn measure(plan: &Plan, root: &Path, target: &Path) -> Result<()> {
    let began = Instant::now();
    let machine = Machine::detect();
    let load_before = stats::load_average();
    eprintln!(
        "bench: {} run on {machine}, load average {load_before}",
        if plan.quick { "quick" } else { "full" }
    );
    let release = target.join("release");
    let out = target.join("bench");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let relaycb = release.join("relaycb");
    let mut report = Report::default();
    let programs = Programs {
        relaycb_server: release.join("relaycb-server"),
        xtask: std::env::current_exe().context("cannot find this program")?,
        python: find_python(root, &mut report),
    };

    if plan.runs("decode") {
        decode::run(plan, &mut report).context("decode benchmark")?;
    }
    let http = ["ingest", "postgres", "scale"].iter().any(|p| plan.runs(p));
    if plan.runs("analyze") || http {
        // The short-task log is also where the HTTP parts take their bodies.
        let short = analyze::Log::generate(
            &relaycb,
            plan.analyze_bytes,
            Shape::ShortTasks,
            out.join("log.jsonl"),
        )
        .context("generating the short-task log")?;
        if plan.runs("analyze") {
            let week = analyze::Log::generate(
                &relaycb,
                plan.analyze_bytes,
                Shape::Week,
                out.join("week.jsonl"),
            )
            .context("generating the week's log")?;
            analyze::run(plan, &relaycb, &week, &short, &mut report)
                .context("analyze benchmark")?;
            std::fs::remove_file(&week.path)
                .with_context(|| format!("cannot remove {}", week.path.display()))?;
        }
        let log = short.path;
        if http {
            let bodies = Arc::new(read_bodies(&log)?);
            eprintln!("bench: {} unique callbacks to send", bodies.len());
            if plan.runs("ingest") {
                ingest::run(plan, &programs, &bodies, &mut report).context("ingest benchmark")?;
            }
            if plan.runs("postgres") {
                postgres::run(plan, &programs, &bodies, &mut report)
                    .context("PostgreSQL ingest benchmark")?;
            }
            if plan.runs("scale") {
                scale::run(plan, &programs, &bodies, &mut report).context("scale benchmark")?;
            }
        }
        std::fs::remove_file(&log).with_context(|| format!("cannot remove {}", log.display()))?;
    }

    let load_after = stats::load_average();
    let preamble = format!(
        "# relaycb benchmarks\n\n\
         - date: {}\n- mode: {}\n- commit: {}\n- machine: {machine}\n\
         - load average (1 5 15 min): {load_before} before, {load_after} after\n\
         - took: {:.0} s\n- reproduce: `cargo xtask bench{}`\n",
        utc_now(),
        mode(plan),
        commit(root),
        began.elapsed().as_secs_f64(),
        reproduce_flags(plan),
    );
    let path = out.join("report.md");
    std::fs::write(&path, report.markdown(&preamble))
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!();
    for t in &report.targets {
        eprintln!("{}", t.line());
    }
    eprintln!(
        "\nbench: {machine}; load average {load_after}; {:.0} s; report in {}",
        began.elapsed().as_secs_f64(),
        path.display()
    );
    let missed = report.missed();
    if missed.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = missed.iter().map(|t| format!("  {}", t.line())).collect();
    bail!("{} target(s) missed:\n{}", missed.len(), names.join("\n"))
}

/// The run's mode as the report names it.
fn mode(plan: &Plan) -> String {
    let mode = if plan.quick {
        "quick (`--quick`)"
    } else {
        "full"
    };
    match &plan.only {
        Some(only) => format!("{mode}, only {}", only.join(", ")),
        None => mode.to_owned(),
    }
}

/// The flags that repeat this run.
fn reproduce_flags(plan: &Plan) -> String {
    let mut flags = String::new();
    if plan.quick {
        flags.push_str(" --quick");
    }
    if let Some(only) = &plan.only {
        flags.push_str(" --only ");
        flags.push_str(&only.join(","));
    }
    flags
}

/// Every line of the log, each a callback body.
fn read_bodies(log: &Path) -> Result<Vec<Bytes>> {
    let all =
        Bytes::from(std::fs::read(log).with_context(|| format!("cannot read {}", log.display()))?);
    let mut bodies = Vec::new();
    let mut start = 0;
    for (i, &b) in all.iter().enumerate() {
        if b == b'\n' {
            if i > start {
                bodies.push(all.slice(start..i));
            }
            start = i + 1;
        }
    }
    if start < all.len() {
        bodies.push(all.slice(start..));
    }
    Ok(bodies)
}

/// Python 3 with sqlite3 and the alternative's script, or a skip note.
fn find_python(root: &Path, report: &mut Report) -> Option<(PathBuf, PathBuf)> {
    let script = root.join("xtask/bench/alternative.py");
    let ok = Command::new("python3")
        .args(["-c", "import sqlite3, http.server"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(("python3".into(), script))
    } else {
        report
            .skip("the Python alternative: `python3` with sqlite3 was not found (install python3)");
        None
    }
}

/// The current time in UTC, as `date -u` prints it.
fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

/// The commit measured, marked when the tree has changes.
fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head} (with uncommitted changes)")
    } else {
        head
    }
}
