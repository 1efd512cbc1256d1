//! Logs read as a stream of records, a chunk at a time, so that a log of
//! any size is read in bounded memory: JSON Lines of bare bodies, JSON
//! Lines written by `relaycb export`, the server's SQLite file (known by
//! its `SQLite format 3` header) or its PostgreSQL store (a `postgres://`
//! URL). A single body spread over lines (a pretty-printed file, as
//! `decode` takes) is read as that one body, not line by line.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};

use super::ExportLine;

/// The first bytes of every SQLite 3 database file.
const SQLITE_HEADER: &[u8] = b"SQLite format 3\0";

/// The most of an input that is read ahead to tell whether it is one body
/// spread over lines, when its first line is not a JSON value by itself. A
/// callback is far smaller (the server takes 64 KiB by default); a longer
/// input is JSON Lines whose first line is broken.
const ONE_BODY_AT_MOST: u64 = 4 << 20;

/// Records read together, with the text of the lines they were read from:
/// one buffer for a chunk of lines rather than one for each line.
#[derive(Debug, Clone)]
pub(crate) struct Records {
    /// The lines of the records that are lines, one after another.
    text: Vec<u8>,
    records: Vec<Record>,
}

/// One delivery found in a log.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// The line number (JSON Lines) or row id (SQLite).
    pub(crate) line: u64,
    /// What the line holds.
    pub(crate) payload: Payload,
}

/// A record's content before it is looked at.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    /// A bare body: no arrival time known, one delivery. Where its line is
    /// in the text of its [`Records`].
    Body(Range<usize>),
    /// A line written by `relaycb export`, not parsed yet; where it is in
    /// the text of its [`Records`].
    Export(Range<usize>),
    /// A row of the server's store.
    Row(Delivery<'static>),
}

/// A body with what the log says about its arrival.
#[derive(Debug, Clone)]
pub(crate) struct Delivery<'a> {
    /// The id anomalies point at: the row id, or the line number of a bare
    /// body.
    pub(crate) id: u64,
    /// First arrival, ms since the epoch, when the log says.
    pub(crate) received_at_ms: Option<i64>,
    /// How many times it arrived (1 for a bare body).
    pub(crate) deliveries: u64,
    /// The body as received.
    pub(crate) body: Cow<'a, [u8]>,
}

impl Records {
    /// The records, in order.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, Record> {
        self.records.iter()
    }

    /// The delivery a record of these holds, or why it holds none.
    pub(crate) fn delivery<'a>(&'a self, record: &'a Record) -> Result<Delivery<'a>, String> {
        let text = |range: &Range<usize>| {
            self.text
                .get(range.clone())
                .ok_or_else(|| "a record outside the text it was read from".to_owned())
        };
        match &record.payload {
            Payload::Body(range) => Ok(Delivery {
                id: record.line,
                received_at_ms: None,
                deliveries: 1,
                body: Cow::Borrowed(text(range)?),
            }),
            Payload::Export(range) => {
                let export = ExportLine::parse(text(range)?)?;
                Ok(Delivery {
                    id: export.id.unwrap_or(record.line),
                    received_at_ms: export.received_at_ms,
                    deliveries: export.deliveries.unwrap_or(1).max(1),
                    body: Cow::Owned(export.raw.into_bytes()),
                })
            }
            Payload::Row(delivery) => Ok(Delivery {
                body: Cow::Borrowed(&delivery.body),
                ..*delivery
            }),
        }
    }
}

/// How far through its input a reader is, for a progress line.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Progress {
    /// Bytes (or rows) read so far.
    pub(crate) done: u64,
    /// Bytes (or rows) in all, when known.
    pub(crate) total: Option<u64>,
}

/// Reads a log and hands its records to `each_chunk`, at most `chunk` at a
/// time, in order.
pub(crate) fn read(
    path: &str,
    chunk: usize,
    mut each_chunk: impl FnMut(Records, Progress) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if path == "-" {
        let stdin = std::io::stdin();
        return read_text(stdin.lock(), None, chunk, &mut each_chunk)
            .context("cannot read standard input");
    }
    if super::postgres::is_url(path) {
        return read_postgres(path, chunk, &mut each_chunk).with_context(|| {
            format!(
                "cannot read the relaycb-server store {}",
                relaycb_core::redact_url(path)
            )
        });
    }
    let mut file = File::open(path).with_context(|| format!("cannot open {path}"))?;
    let mut header = [0u8; 16];
    let n = read_up_to(&mut file, &mut header).with_context(|| format!("cannot read {path}"))?;
    if header[..n] == *SQLITE_HEADER {
        drop(file);
        return read_sqlite(path, chunk, &mut each_chunk)
            .with_context(|| format!("cannot read the relaycb-server store {path}"));
    }
    let total = file.metadata().ok().map(|m| m.len());
    let reader = std::io::Cursor::new(header[..n].to_vec()).chain(file);
    read_text(
        BufReader::with_capacity(1 << 20, reader),
        total,
        chunk,
        &mut each_chunk,
    )
    .with_context(|| format!("cannot read {path}"))
}

fn read_up_to(file: &mut File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

type EachChunk<'a> = dyn FnMut(Records, Progress) -> anyhow::Result<()> + 'a;

/// Records gathered into chunks of one size, each handed on with the
/// progress made when it filled.
struct Chunks<'e, 'a> {
    records: Records,
    size: usize,
    progress: Progress,
    each: &'e mut EachChunk<'a>,
}

impl<'e, 'a> Chunks<'e, 'a> {
    fn new(size: usize, total: Option<u64>, each: &'e mut EachChunk<'a>) -> Self {
        Chunks {
            records: Records {
                text: Vec::new(),
                records: Vec::with_capacity(size),
            },
            size,
            progress: Progress { done: 0, total },
            each,
        }
    }

    /// Counts `n` more units of the input read (bytes or rows).
    fn advance(&mut self, n: u64) {
        self.progress.done += n;
    }

    /// The text the next line is read into, at its end.
    fn text(&mut self) -> &mut Vec<u8> {
        &mut self.records.text
    }

    fn push(&mut self, record: Record) -> anyhow::Result<()> {
        self.records.records.push(record);
        if self.records.records.len() == self.size {
            let next = Records {
                // The next chunk's lines are likely as long as these.
                text: Vec::with_capacity(self.records.text.len()),
                records: Vec::with_capacity(self.size),
            };
            let full = std::mem::replace(&mut self.records, next);
            (self.each)(full, self.progress)?;
        }
        Ok(())
    }

    /// Hands on what is left.
    fn finish(self) -> anyhow::Result<()> {
        if self.records.records.is_empty() {
            return Ok(());
        }
        (self.each)(self.records, self.progress)
    }
}

/// Reads text: JSON Lines, unless its first line is not a JSON value by
/// itself while the whole input (a few MiB at most) is one; then that one
/// body, as record 1.
fn read_text(
    mut reader: impl BufRead,
    total: Option<u64>,
    chunk: usize,
    each_chunk: &mut EachChunk<'_>,
) -> anyhow::Result<()> {
    // Up to the first line that holds something.
    let mut head = Vec::new();
    let mut first = 0..0;
    loop {
        let start = head.len();
        if reader.read_until(b'\n', &mut head)? == 0 {
            break;
        }
        if !head[start..].iter().all(u8::is_ascii_whitespace) {
            first = start..head.len();
            break;
        }
    }
    if !first.is_empty() && !is_json(&head[first]) {
        (&mut reader)
            .take(ONE_BODY_AT_MOST)
            .read_to_end(&mut head)?;
        let whole = head.len() as u64 <= ONE_BODY_AT_MOST && reader.fill_buf()?.is_empty();
        if whole && is_json(&head) {
            let mut chunks = Chunks::new(chunk, total, each_chunk);
            chunks.advance(head.len() as u64);
            let body = head.trim_ascii_end();
            let text = chunks.text();
            text.extend_from_slice(body);
            let range = 0..text.len();
            chunks.push(Record {
                line: 1,
                payload: Payload::Body(range),
            })?;
            return chunks.finish();
        }
    }
    read_lines(
        std::io::Cursor::new(head).chain(reader),
        total,
        chunk,
        each_chunk,
    )
}

/// Whether `bytes` (after a byte order mark) are one JSON value.
fn is_json(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

fn read_lines(
    mut reader: impl BufRead,
    total: Option<u64>,
    chunk: usize,
    each_chunk: &mut EachChunk<'_>,
) -> anyhow::Result<()> {
    let mut export = None;
    let mut chunks = Chunks::new(chunk, total, each_chunk);
    let mut number = 0u64;
    loop {
        // Each line is read straight into the text of its chunk.
        let text = chunks.text();
        let start = text.len();
        let n = reader.read_until(b'\n', text)?;
        if n == 0 {
            break;
        }
        number += 1;
        while text.len() > start && text.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            text.pop();
        }
        let line = &text[start..];
        if line.iter().all(u8::is_ascii_whitespace) {
            text.truncate(start);
            chunks.advance(n as u64);
            continue;
        }
        let export = *export.get_or_insert_with(|| super::is_export_line(line));
        let range = start..text.len();
        let payload = if export {
            Payload::Export(range)
        } else {
            Payload::Body(range)
        };
        chunks.advance(n as u64);
        chunks.push(Record {
            line: number,
            payload,
        })?;
    }
    chunks.finish()
}

fn read_sqlite(path: &str, chunk: usize, each_chunk: &mut EachChunk<'_>) -> anyhow::Result<()> {
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let total: i64 = db.query_row("SELECT count(*) FROM events", [], |row| row.get(0))?;
    let mut statement =
        db.prepare("SELECT id, received_at_ms, deliveries, raw FROM events ORDER BY id")?;
    let mut rows = statement.query([])?;
    let mut chunks = Chunks::new(chunk, u64::try_from(total).ok(), each_chunk);
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let id = u64::try_from(id).unwrap_or_default();
        let deliveries: Option<i64> = row.get(2)?;
        chunks.advance(1);
        chunks.push(Record {
            line: id,
            payload: Payload::Row(Delivery {
                id,
                received_at_ms: row.get(1)?,
                deliveries: deliveries
                    .and_then(|d| u64::try_from(d).ok())
                    .unwrap_or(1)
                    .max(1),
                body: Cow::Owned(raw_bytes(row.get_ref(3)?)),
            }),
        })?;
    }
    chunks.finish()
}

fn read_postgres(url: &str, chunk: usize, each_chunk: &mut EachChunk<'_>) -> anyhow::Result<()> {
    use super::postgres;
    let mut client = postgres::connect(url)?;
    let total = postgres::count(&mut client)?;
    let mut chunks = Chunks::new(chunk, Some(total), each_chunk);
    postgres::each_event(&mut client, &postgres::Filter::default(), |event| {
        let id = u64::try_from(event.id).unwrap_or_default();
        chunks.advance(1);
        chunks.push(Record {
            line: id,
            payload: Payload::Row(Delivery {
                id,
                received_at_ms: Some(event.received_at_ms),
                deliveries: u64::try_from(event.deliveries).unwrap_or(1).max(1),
                body: Cow::Owned(event.raw),
            }),
        })
    })?;
    chunks.finish()
}

/// The body column as bytes, whether it was stored as a BLOB or as TEXT.
pub(crate) fn raw_bytes(value: rusqlite::types::ValueRef<'_>) -> Vec<u8> {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Blob(bytes) | ValueRef::Text(bytes) => bytes.to_vec(),
        ValueRef::Null => Vec::new(),
        ValueRef::Integer(n) => n.to_string().into_bytes(),
        ValueRef::Real(x) => x.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records `text` is read as: each one's number and body.
    fn records(text: &[u8]) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        read_text(text, None, 2, &mut |records, _| {
            for record in records.iter() {
                let body = records.delivery(record).map_err(anyhow::Error::msg)?.body;
                out.push((record.line, String::from_utf8_lossy(&body).into_owned()));
            }
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn a_pretty_printed_body_is_one_record() {
        let body = "{\n  \"callback_event\": \"TaskStart\",\n  \"task_id\": \"7\"\n}";
        assert_eq!(
            records(format!("\n{body}\n\n").as_bytes()),
            [(1, format!("\n{body}"))]
        );
        let marked = format!("\u{feff}{body}");
        assert_eq!(records(marked.as_bytes()), [(1, marked.clone())]);
    }

    #[test]
    fn json_lines_are_read_line_by_line_whatever_their_first_line() {
        assert_eq!(
            records(b"{\"a\":1}\n\n{\"b\":2}\n{\"c\":3}"),
            [
                (1, "{\"a\":1}".into()),
                (3, "{\"b\":2}".into()),
                (4, "{\"c\":3}".into())
            ]
        );
        // A broken first line does not make the rest one body.
        assert_eq!(
            records(b"{\"a\":\n{\"b\":2}\n"),
            [(1, "{\"a\":".into()), (2, "{\"b\":2}".into())]
        );
        assert_eq!(records(b"garbage"), [(1, "garbage".into())]);
        assert_eq!(records(b"\n\n"), []);
    }
}
