//! Benchmark 4: analyze. `relaycb analyze` over a JSON Lines log generated
//! by `relaycb simulate --out` (1 GB, or about 100 MB in quick mode),
//! against `jq -c .task_id` (the tool one reaches for) and `wc -l` (the
//! read floor) over the same file, alternating, with the file already in
//! the page cache. Wall time from this process; peak memory from
//! `/usr/bin/time -v`.
//!
//! The generated log is also where the ingest benchmarks take their
//! unique, realistic callbacks from.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::Plan;
use super::report::{Goal, Report, Target, number};
use super::stats::{Spread, kib_field};

/// The seed of every generated log, so that runs compare like with like.
const SEED: &str = "20251204";

/// Writes a simulated log of about `bytes` bytes to `path` with
/// `relaycb simulate --out`, sizing the task count from a small sample.
pub(crate) fn generate_log(relaycb: &Path, bytes: u64, path: &Path) -> Result<()> {
    let sample_tasks = 200u64;
    simulate(relaycb, sample_tasks, path)?;
    let sample = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len()
        .max(1);
    let tasks = (bytes * sample_tasks).div_ceil(sample);
    let begun = Instant::now();
    simulate(relaycb, tasks, path)?;
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    eprintln!(
        "bench: generated {} ({:.0} MB, {tasks} tasks) in {:.1} s",
        path.display(),
        size as f64 / 1e6,
        begun.elapsed().as_secs_f64()
    );
    Ok(())
}

fn simulate(relaycb: &Path, tasks: u64, path: &Path) -> Result<()> {
    let output = Command::new(relaycb)
        .args([
            "simulate",
            "--seed",
            SEED,
            "--tasks",
            &tasks.to_string(),
            "--out",
        ])
        .arg(path)
        .stdout(Stdio::null())
        .output()
        .context("cannot run relaycb simulate")?;
    if !output.status.success() {
        bail!(
            "relaycb simulate failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// One timed command over the log.
struct Tool {
    label: &'static str,
    program: PathBuf,
    args: Vec<String>,
    walls: Vec<f64>,
    peaks_mib: Vec<f64>,
}

/// Runs benchmark 4 over `log` and adds its table and targets.
pub(crate) fn run(plan: &Plan, relaycb: &Path, log: &Path, report: &mut Report) -> Result<()> {
    let size = std::fs::metadata(log)
        .with_context(|| format!("cannot read {}", log.display()))?
        .len();
    let time_v = Path::new("/usr/bin/time");
    let has_time = time_v.exists();
    if !has_time {
        report.skip("analyze peak memory: /usr/bin/time is missing (apt-get install time)");
    }
    let path = log.display().to_string();
    let mut tools = vec![Tool {
        label: "relaycb analyze",
        program: relaycb.to_path_buf(),
        args: vec!["analyze".into(), path.clone()],
        walls: Vec::new(),
        peaks_mib: Vec::new(),
    }];
    match find_jq() {
        Ok(jq) => tools.push(Tool {
            label: "jq -c .task_id",
            program: jq,
            args: vec!["-c".into(), ".task_id".into(), path.clone()],
            walls: Vec::new(),
            peaks_mib: Vec::new(),
        }),
        Err(why) => report.skip(format!("analyze vs jq: {why:#}")),
    }
    tools.push(Tool {
        label: "wc -l",
        program: "wc".into(),
        args: vec!["-l".into(), path],
        walls: Vec::new(),
        peaks_mib: Vec::new(),
    });
    // Bring the file into the page cache, so that no tool pays for the disk.
    timed(&tools[tools.len() - 1], has_time)?;
    for round in 0..plan.analyze_rounds {
        // Rotate the order, so that no tool always runs first.
        let n = tools.len();
        for i in 0..n {
            let tool = &tools[(i + round) % n];
            let (wall, peak) = timed(tool, has_time)?;
            eprintln!(
                "bench: analyze round {}/{}: {:<16} {wall:>6.2} s  {:>7.0} MB/s",
                round + 1,
                plan.analyze_rounds,
                tool.label,
                size as f64 / wall / 1e6
            );
            let tool = &mut tools[(i + round) % n];
            tool.walls.push(wall);
            if let Some(peak) = peak {
                tool.peaks_mib.push(peak);
            }
        }
    }
    let mut body = format!(
        "A {:.0} MB JSON Lines log from `relaycb simulate --seed {SEED}`, {} rounds, \
         order rotated each round, file in the page cache; median [min–max].\n\n\
         | command | seconds | MB/s (median) | peak RSS MiB | throughput / jq |\n|---|---|---|---|---|\n",
        size as f64 / 1e6,
        plan.analyze_rounds
    );
    let jq = tools.iter().find(|t| t.label.starts_with("jq"));
    for tool in &tools {
        let wall = Spread::of(tool.walls.iter().copied()).context("no analyze round ran")?;
        let versus_jq =
            jq.and_then(|jq| Spread::of(jq.walls.iter().zip(&tool.walls).map(|(j, t)| j / t)));
        let peak = tool.peaks_mib.iter().copied().fold(f64::NAN, f64::max);
        let _ = writeln!(
            body,
            "| `{}` | {} | {:.0} | {} | {} |",
            tool.label,
            wall.show(2),
            size as f64 / wall.median / 1e6,
            if peak.is_nan() {
                "-".to_owned()
            } else {
                number(peak)
            },
            versus_jq.map_or_else(|| "-".to_owned(), |r| r.show(1))
        );
        if tool.label == "relaycb analyze" {
            if let Some(r) = versus_jq {
                report.target(Target::new(
                    "analyze: throughput / jq",
                    r.median,
                    Goal::AtLeast(8.0),
                    "",
                ));
            }
            if !peak.is_nan() {
                report.target(Target::new(
                    "analyze: peak RSS",
                    peak,
                    Goal::Below(64.0),
                    " MiB",
                ));
            }
        }
    }
    report.section("4. Analyze", body);
    Ok(())
}

/// Runs `tool` with its output discarded: wall seconds and peak RSS (MiB).
fn timed(tool: &Tool, has_time: bool) -> Result<(f64, Option<f64>)> {
    let stats = tempfile::NamedTempFile::new().context("cannot create a temporary file")?;
    let mut command = if has_time {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-v").arg("-o").arg(stats.path()).arg(&tool.program);
        c
    } else {
        Command::new(&tool.program)
    };
    command
        .args(&tool.args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let begun = Instant::now();
    let output = command
        .output()
        .with_context(|| format!("cannot run {}", tool.label))?;
    let wall = begun.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            tool.label,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let peak = if has_time {
        let text =
            std::fs::read_to_string(stats.path()).context("cannot read /usr/bin/time's output")?;
        kib_field(&text, "\tMaximum resident set size (kbytes):").map(|kib| kib as f64 / 1024.0)
    } else {
        None
    };
    Ok((wall, peak))
}

/// jq on the PATH, installed with apt-get when it is missing and we may.
fn find_jq() -> Result<PathBuf> {
    let works = || {
        Command::new("jq")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works() {
        return Ok("jq".into());
    }
    eprintln!("bench: jq is missing; trying `apt-get install -y jq`");
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", "jq"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed && works() {
        return Ok("jq".into());
    }
    bail!(
        "jq is not installed and `apt-get install -y jq` did not install it; install jq to compare"
    )
}
