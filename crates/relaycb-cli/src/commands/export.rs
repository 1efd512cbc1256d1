//! `relaycb export`: the server's store as JSON Lines, one stored event a
//! line with its arrival times and delivery count, in arrival order. What
//! it writes is what `relaycb analyze` and `relaycb replay` read.

use std::io::{BufWriter, Write};

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};

use crate::console::Console;
use crate::input::ExportLine;
use crate::input::log::raw_bytes;
use crate::input::postgres;
use crate::{Status, UsageError, time};

/// Arguments of `relaycb export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The relaycb-server store: its SQLite file, or the `postgres://` URL
    /// of its PostgreSQL database.
    #[arg(
        long,
        env = "RELAYCB_DB",
        value_name = "PATH|URL",
        hide_env_values = true
    )]
    pub db: String,
    /// Only events first received at or after this: an RFC 3339 time
    /// (`2025-12-03T22:00:00Z`), Unix seconds or ms, or a span before now
    /// (`2h`, `7days`).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only events first received before this (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only the events of this task.
    #[arg(long, value_name = "ID", value_parser = crate::cli::task_id)]
    pub task: Option<String>,
}

/// Writes the selected events to standard output.
pub(crate) fn run(args: &Args, console: &mut Console<'_>) -> anyhow::Result<Status> {
    let now = time::now_ms();
    let since = args
        .since
        .as_deref()
        .map(|w| parse_when(w, now))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|w| parse_when(w, now))
        .transpose()?;
    let mut out = BufWriter::new(&mut *console.out);
    let (mut written, mut lossy) = (0u64, 0u64);
    let mut write = |id: i64,
                     received: Option<i64>,
                     last: Option<i64>,
                     deliveries: Option<i64>,
                     raw: Vec<u8>| {
        let raw = match String::from_utf8(raw) {
            Ok(text) => text,
            Err(e) => {
                lossy += 1;
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        };
        let line = ExportLine {
            id: u64::try_from(id).ok(),
            received_at_ms: received,
            last_received_at_ms: last,
            deliveries: deliveries.and_then(|d| u64::try_from(d).ok()),
            raw,
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
        written += 1;
        anyhow::Ok(())
    };
    let shown = if postgres::is_url(&args.db) {
        relaycb_core::redact_url(&args.db)
    } else {
        args.db.clone()
    };
    if postgres::is_url(&args.db) {
        let mut client = postgres::connect(&args.db)
            .with_context(|| format!("cannot read the relaycb-server store {shown}"))?;
        let filter = postgres::Filter {
            since_ms: since,
            until_ms: until,
            task: args.task.as_deref(),
        };
        postgres::each_event(&mut client, &filter, |e| {
            write(
                e.id,
                Some(e.received_at_ms),
                Some(e.last_received_at_ms),
                Some(e.deliveries),
                e.raw,
            )
        })
        .with_context(|| format!("cannot read the relaycb-server store {shown}"))?;
    } else {
        let db = Connection::open_with_flags(&args.db, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open the relaycb-server store {}", args.db))?;
        let mut statement = db
            .prepare(
                "SELECT id, received_at_ms, last_received_at_ms, deliveries, raw FROM events
                 WHERE (?1 IS NULL OR received_at_ms >= ?1)
                   AND (?2 IS NULL OR received_at_ms < ?2)
                   AND (?3 IS NULL OR task_id = ?3 OR attributed_to = ?3)
                 ORDER BY id",
            )
            .with_context(|| format!("{} does not look like a relaycb-server store", args.db))?;
        let mut rows = statement.query(rusqlite::params![since, until, args.task])?;
        while let Some(row) = rows.next()? {
            write(
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                raw_bytes(row.get_ref(4)?),
            )?;
        }
    }
    out.flush()?;
    drop(out);
    if lossy > 0 {
        writeln!(
            console.err,
            "warning: {lossy} stored bodies were not UTF-8; their invalid bytes were replaced"
        )?;
    }
    writeln!(console.err, "exported {written} events from {shown}")?;
    if let Some(task) = &args.task
        && written == 0
    {
        // As grep does when nothing matches: a misspelt task id should not
        // pass for a task with nothing to export.
        let window = if args.since.is_some() || args.until.is_some() {
            " in the --since/--until window"
        } else {
            ""
        };
        writeln!(console.err, "error: no events of task {task:?}{window}")?;
        return Ok(Status::Failure);
    }
    Ok(Status::Success)
}

/// A time given on the command line, in ms since the epoch.
fn parse_when(text: &str, now_ms: i64) -> anyhow::Result<i64> {
    relaycb_core::parse_when(text, now_ms).map_err(|e| UsageError(e.to_string()).into())
}
