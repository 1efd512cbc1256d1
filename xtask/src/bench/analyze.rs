//! Benchmark 4: analyze. `relaycb analyze` over a JSON Lines log generated
//! by `relaycb simulate --out` (1 GB, or about 100 MB in quick mode),
//! against `jq -c .task_id` (the tool one reaches for) and `wc -l` (the
//! read floor) over the same file, alternating, with the file already in
//! the page cache. Wall time from this process; peak memory from
//! `/usr/bin/time -v`.
//!
//! Two shapes of log, of the same size:
//! - [`Shape::Week`], where the targets are taken: a week of a few hundred
//!   tasks pushed around the clock (`--hours 168`), thousands of events
//!   each, which is what a user's log looks like;
//! - [`Shape::ShortTasks`], the stress case: every task plays its playlist
//!   once or a few times, so that a 1 GB log holds over a hundred thousand
//!   tasks, all running at once. It shows what a task costs; analyze is run
//!   on it alone.
//!
//! The short-task log is also where the ingest benchmarks take their
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

/// The shape of a generated log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Tasks kept running for a week.
    Week,
    /// Tasks that play their playlist once to three times.
    ShortTasks,
}

impl Shape {
    fn hours(self) -> Option<u32> {
        match self {
            Shape::Week => Some(168),
            Shape::ShortTasks => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Shape::Week => "tasks pushed around the clock for a week (`--hours 168`)",
            Shape::ShortTasks => "short tasks, all at once (the simulator's default histories)",
        }
    }
}

/// Writes a simulated log of about `bytes` bytes to `path` with
/// `relaycb simulate --out`, sizing the task count from a small sample;
/// returns the task count.
pub(crate) fn generate_log(relaycb: &Path, bytes: u64, shape: Shape, path: &Path) -> Result<u64> {
    let sample_tasks = match shape {
        Shape::Week => 12,
        Shape::ShortTasks => 200u64,
    };
    simulate(relaycb, sample_tasks, shape, path)?;
    let sample = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len()
        .max(1);
    let tasks = (bytes * sample_tasks).div_ceil(sample);
    let begun = Instant::now();
    simulate(relaycb, tasks, shape, path)?;
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    eprintln!(
        "bench: generated {} ({:.0} MB, {tasks} tasks) in {:.1} s",
        path.display(),
        size as f64 / 1e6,
        begun.elapsed().as_secs_f64()
    );
    Ok(tasks)
}

fn simulate(relaycb: &Path, tasks: u64, shape: Shape, path: &Path) -> Result<()> {
    let mut command = Command::new(relaycb);
    command.args(["simulate", "--seed", SEED, "--tasks", &tasks.to_string()]);
    if let Some(hours) = shape.hours() {
        command.args(["--hours", &hours.to_string()]);
    }
    let output = command
        .arg("--out")
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

/// A generated log.
pub(crate) struct Log {
    pub(crate) path: PathBuf,
    pub(crate) shape: Shape,
    pub(crate) tasks: u64,
}

impl Log {
    /// Generates a log of about `bytes` bytes of `shape` at `path`.
    pub(crate) fn generate(relaycb: &Path, bytes: u64, shape: Shape, path: PathBuf) -> Result<Log> {
        let tasks = generate_log(relaycb, bytes, shape, &path)?;
        Ok(Log { path, shape, tasks })
    }

    fn size(&self) -> Result<u64> {
        Ok(std::fs::metadata(&self.path)
            .with_context(|| format!("cannot read {}", self.path.display()))?
            .len())
    }
}

/// Runs benchmark 4: the comparison over `week` with its targets, then
/// analyze alone over `short`; adds their tables.
pub(crate) fn run(
    plan: &Plan,
    relaycb: &Path,
    week: &Log,
    short: &Log,
    report: &mut Report,
) -> Result<()> {
    let log = week.path.as_path();
    let size = week.size()?;
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
        "A {:.0} MB JSON Lines log from `relaycb simulate --seed {SEED}`: {} {}; {} rounds, \
         order rotated each round, file in the page cache; median [min–max].\n\n\
         | command | seconds | MB/s (median) | peak RSS MiB | throughput / jq |\n|---|---|---|---|---|\n",
        size as f64 / 1e6,
        week.tasks,
        week.shape.describe(),
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
    body.push_str(&stress(plan, relaycb, short, has_time)?);
    report.section("4. Analyze", body);
    Ok(())
}

/// `relaycb analyze` alone over the short-task log: what a task costs.
fn stress(plan: &Plan, relaycb: &Path, short: &Log, has_time: bool) -> Result<String> {
    let size = short.size()?;
    let mut tool = Tool {
        label: "relaycb analyze",
        program: relaycb.to_path_buf(),
        args: vec!["analyze".into(), short.path.display().to_string()],
        walls: Vec::new(),
        peaks_mib: Vec::new(),
    };
    for round in 0..plan.analyze_rounds {
        let (wall, peak) = timed(&tool, has_time)?;
        eprintln!(
            "bench: analyze, short tasks, round {}/{}: {wall:>6.2} s  {:>7.0} MB/s",
            round + 1,
            plan.analyze_rounds,
            size as f64 / wall / 1e6
        );
        tool.walls.push(wall);
        tool.peaks_mib.extend(peak);
    }
    let wall = Spread::of(tool.walls.iter().copied()).context("no analyze round ran")?;
    let peak = tool.peaks_mib.iter().copied().fold(f64::NAN, f64::max);
    let (peak_cell, per_task) = if peak.is_nan() {
        ("-".to_owned(), "-".to_owned())
    } else {
        (
            number(peak),
            format!("{:.1}", peak * 1024.0 / short.tasks.max(1) as f64),
        )
    };
    Ok(format!(
        "\nThe stress case, no target: a {:.0} MB log of the same seed with {} {}, \
         analyze alone, {} rounds.\n\n\
         | command | tasks | seconds | MB/s (median) | peak RSS MiB | KiB per task at the peak |\n\
         |---|---|---|---|---|---|\n\
         | `relaycb analyze` | {} | {} | {:.0} | {peak_cell} | {per_task} |\n",
        size as f64 / 1e6,
        short.tasks,
        short.shape.describe(),
        plan.analyze_rounds,
        short.tasks,
        wall.show(2),
        size as f64 / wall.median / 1e6,
    ))
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
