//! `relaycb analyze`: a log of callbacks (JSON Lines of bodies, JSON Lines
//! from `relaycb export`, or the server's store) turned into a report
//! of what every task did, one task's timeline, or a picture.
//!
//! The log is streamed: a reader thread reads chunks, workers decode them
//! on every core, and the results are folded in log order into
//! relaycb-core's tracker, which recognises retries itself.

mod fold;
mod locate;
mod plot;
mod render;
mod report;
mod timeline;

use anyhow::Context;
use relaycb_core::explain;
use serde_json::json;

use crate::Status;
use crate::console::Console;
use crate::input::log::Progress;
use fold::Analysis;
use locate::Logs;
use render::Markup;
use report::{ExitGroup, Report, TaskReport};

/// Inputs smaller than this get no progress line.
const PROGRESS_FROM_BYTES: u64 = 32 << 20;

/// Arguments of `relaycb analyze`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The logs: JSON Lines of bodies, JSON Lines from `relaycb export`, the
    /// server's SQLite file, the `postgres://` URL of its PostgreSQL store,
    /// or a single body (pretty printed or not); `-` for standard input. Several logs are read as one, in the
    /// order given, and what the report points at is then named by its log
    /// (`b.jsonl:14`, `relaycb.db id 5`).
    #[arg(required = true)]
    pub logs: Vec<String>,
    /// How to print the report.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print one task's timeline and state instead of the whole report.
    #[arg(long, value_name = "ID", value_parser = crate::cli::task_id)]
    pub task: Option<String>,
    /// Also draw a timeline picture, one row per task, to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<String>,
    /// Threads that decode (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Report formats of `relaycb analyze`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// One JSON document.
    Json,
    /// Markdown, for an issue or a wiki.
    Markdown,
}

/// Reads every log, then prints the report (or the timeline) and draws
/// the picture.
pub(crate) fn run(args: &Args, console: &mut Console<'_>) -> anyhow::Result<Status> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1);
    if let Some(path) = &args.plot
        && let Some(extension) = std::path::Path::new(path).extension()
        && !extension.eq_ignore_ascii_case("svg")
    {
        // A picture named .png that holds SVG opens as a broken file.
        return Err(crate::UsageError(format!(
            "--plot draws SVG; name the file .svg (found {path:?})"
        ))
        .into());
    }
    let mut analysis = Analysis::new(args.task.clone(), args.plot.is_some());
    let mut logs = Logs::new();
    let mut base = 0u64;
    for path in &args.logs {
        let show_progress = console.progress;
        let (last_id, stored) = analysis.read_log(path, threads, base, |progress| {
            if show_progress {
                draw_progress(console, path, progress);
            }
        })?;
        if show_progress {
            let _ = write!(console.err, "\r\x1b[K");
        }
        logs.push(shown(path), base, stored);
        // The next log's ids count on past this one's.
        base = last_id + 1;
    }
    if analysis.records == analysis.undecodable {
        return Err(nothing_decoded(&analysis, &args.logs, &logs));
    }
    if let Some(task_id) = &args.task
        && analysis.tracker.task(task_id, None).is_none()
    {
        return Err(no_such_task(&analysis, &args.logs, task_id));
    }
    if let Some(path) = &args.plot {
        let plot = analysis.plot.as_mut().expect("asked for a plot");
        std::fs::write(path, plot.svg()).with_context(|| format!("cannot write {path}"))?;
        let drawn = if args.task.is_some() {
            1
        } else {
            analysis.tracker.len()
        };
        writeln!(console.err, "wrote a timeline of {drawn} task(s) to {path}")?;
    }
    match args.task.clone() {
        Some(task_id) => print_task(&mut analysis, &task_id, args.format, &logs, console)?,
        None => {
            let report = Report::new(analysis);
            let text = match args.format {
                Format::Json => {
                    let mut value = serde_json::to_value(&report)?;
                    logs.localise(&mut value);
                    serde_json::to_string_pretty(&value)? + "\n"
                }
                Format::Table => render::render(&report, Markup::Text, &logs, console),
                Format::Markdown => render::render(&report, Markup::Markdown, &logs, console),
            };
            console.out.write_all(text.as_bytes())?;
        }
    }
    Ok(Status::Success)
}

/// How a log is named in a message: its path, a PostgreSQL URL without
/// its password.
fn shown(path: &str) -> String {
    if crate::input::postgres::is_url(path) {
        relaycb_core::redact_url(path)
    } else {
        crate::input::name(path).to_owned()
    }
}

/// The logs, named one after another.
fn shown_all(logs: &[String]) -> String {
    logs.iter().map(|l| shown(l)).collect::<Vec<_>>().join(", ")
}

/// Why a report of nothing is refused: what was read, and what analyze
/// reads.
fn nothing_decoded(analysis: &Analysis, paths: &[String], logs: &Logs) -> anyhow::Error {
    let shown = shown_all(paths);
    let what = match analysis.errors.first() {
        None => format!("no callback in {shown}: it holds no line or event"),
        Some((id, reason)) => {
            let records = analysis.records;
            // Rows of a store are records, not lines.
            let unit = if logs.unit() == "line" {
                "line"
            } else {
                "record"
            };
            let read = if records == 1 {
                format!("the one {unit} read from {shown} is")
            } else {
                format!("none of the {records} {unit}s read from {shown} is")
            };
            let first = logs.one(*id);
            format!("{read} a relay callback that can be decoded (the first: {first}: {reason})")
        }
    };
    anyhow::anyhow!(
        "{what}; analyze reads JSON Lines of callback bodies (one body a line), JSON Lines written by `relaycb export`, or the server's store (its SQLite file or a postgres:// URL)"
    )
}

/// Why `--task` found nothing: which tasks there are instead.
fn no_such_task(analysis: &Analysis, logs: &[String], task_id: &str) -> anyhow::Error {
    const NAMED: usize = 5;
    let logs = shown_all(logs);
    let tasks = analysis.tracker.len();
    let named: Vec<String> = analysis
        .tracker
        .tasks(None)
        .take(NAMED)
        .map(|t| t.task_id)
        .collect();
    let holds = match tasks {
        0 => "which names no task at all".to_owned(),
        1 => format!("whose one task is {}", named.join("")),
        _ => {
            let more = if tasks > NAMED { ", ..." } else { "" };
            format!("whose {tasks} tasks are {}{more}", named.join(", "))
        }
    };
    anyhow::anyhow!(
        "no task {task_id} in {logs}, {holds}; check the task id (`relaycb analyze` without --task lists every task)"
    )
}

fn draw_progress(console: &mut Console<'_>, path: &str, progress: Progress) {
    let Some(total) = progress.total.filter(|t| *t >= PROGRESS_FROM_BYTES) else {
        return;
    };
    let percent = progress.done.saturating_mul(100) / total.max(1);
    let path = if crate::input::postgres::is_url(path) {
        relaycb_core::redact_url(path)
    } else {
        path.to_owned()
    };
    let _ = write!(
        console.err,
        "\r\x1b[Kanalyze {path}: {percent}% ({} of {} MB)",
        progress.done >> 20,
        total >> 20
    );
}

fn print_task(
    analysis: &mut Analysis,
    task_id: &str,
    format: Format,
    logs: &Logs,
    console: &mut Console<'_>,
) -> anyhow::Result<()> {
    let state = analysis
        .tracker
        .task(task_id, analysis.tracker.latest_ms())
        .map(|state| analysis.reported(state));
    let timeline = analysis.timeline.as_mut().expect("asked for a timeline");
    timeline.sorted();
    let task = state.map(|state| {
        let exit_codes = state
            .exits
            .iter()
            .map(|(code, count)| {
                let code = code.parse::<i64>().ok();
                ExitGroup {
                    code,
                    count: *count,
                    explanation: code.map(explain),
                }
            })
            .collect();
        TaskReport { state, exit_codes }
    });
    if format == Format::Json {
        let mut value = json!({ "timeline": timeline, "task": task });
        logs.localise(&mut value);
        writeln!(console.out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    let markup = if format == Format::Markdown {
        Markup::Markdown
    } else {
        Markup::Text
    };
    let text = match markup {
        Markup::Markdown => timeline.markdown(logs),
        Markup::Text => timeline.render(logs),
    };
    write!(console.out, "{text}")?;
    if let Some(task) = &task {
        write!(
            console.out,
            "{}",
            render::task_details(task, markup, logs, console)
        )?;
    }
    Ok(())
}
