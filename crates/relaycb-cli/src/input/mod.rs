//! Reading what the commands are given: a file or `-` for standard input,
//! holding one body, JSON Lines of bodies, JSON Lines written by
//! `relaycb export`, or (for the log commands) the server's store: its
//! SQLite file or a `postgres://` URL.

pub(crate) mod log;
pub(crate) mod postgres;

use std::borrow::Cow;
use std::io::Read;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Reads a whole input: a path, or `-` for standard input.
pub(crate) fn read_all(path: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if path == "-" {
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
    }
    Ok(bytes)
}

/// Reads one of the inputs a command was given. One input alone that
/// cannot be read fails as any command does; among `several`, the reason
/// is told on `err` and `None` returned, so that the others still go.
pub(crate) fn read_one_of(
    path: &str,
    several: bool,
    err: &mut dyn std::io::Write,
) -> anyhow::Result<Option<Vec<u8>>> {
    match read_all(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if several => {
            writeln!(err, "error: {error:#}")?;
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// The name an input is reported by: its path, or `(standard input)` for
/// `-`, as grep says.
pub(crate) fn name(path: &str) -> &str {
    if path == "-" {
        "(standard input)"
    } else {
        path
    }
}

/// Refuses standard input named twice: the second reading would find it
/// empty.
pub(crate) fn stdin_at_most_once(paths: &[String]) -> Result<(), crate::UsageError> {
    if paths.iter().filter(|p| *p == "-").count() > 1 {
        return Err(crate::UsageError(
            "`-` (standard input) may be given only once".into(),
        ));
    }
    Ok(())
}

/// How an input holds its bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// One body, or JSON Lines if there are several lines and the first one
    /// is a whole JSON value by itself.
    Auto,
    /// The whole input is one body, however many lines it spans.
    Body,
    /// One body per line (bare, or as written by `relaycb export`).
    Lines,
}

/// One line written by `relaycb export`: the body as the server stored it,
/// with when and how often it arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExportLine {
    /// The row id: arrival order in the server's store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<u64>,
    /// First arrival, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) received_at_ms: Option<i64>,
    /// Latest arrival, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_received_at_ms: Option<i64>,
    /// How many times the same event was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) deliveries: Option<u64>,
    /// The body, byte for byte as received.
    pub(crate) raw: String,
}

impl ExportLine {
    /// Parses an export line.
    pub(crate) fn parse(line: &[u8]) -> Result<ExportLine, String> {
        serde_json::from_slice(line).map_err(|e| format!("not a line of `relaycb export`: {e}"))
    }
}

/// Whether a line looks written by `relaycb export`: an object with a
/// `raw` string and no `callback_event` of its own.
pub(crate) fn is_export_line(line: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(object)) => {
            object.get("raw").is_some_and(serde_json::Value::is_string)
                && !object.contains_key("callback_event")
        }
        _ => false,
    }
}

/// One body found in an input.
#[derive(Debug)]
pub(crate) struct Item<'a> {
    /// The line it was on, 1-based, when the input is JSON Lines.
    pub(crate) line: Option<u64>,
    /// The body, or why the line holds none.
    pub(crate) body: Result<Cow<'a, [u8]>, String>,
}

impl Item<'_> {
    /// `line 3: ` for a line of JSON Lines, empty for a whole body.
    pub(crate) fn prefix(&self) -> String {
        self.line.map(|n| format!("line {n}: ")).unwrap_or_default()
    }

    /// Where the body is, for a message: [`Item::prefix`] when one input
    /// was given (`file` is `None`), else the input's name with the line,
    /// as compilers and grep say it: `a.jsonl:3: `, or `a.json: ` for a
    /// whole body.
    pub(crate) fn prefix_in(&self, file: Option<&str>) -> String {
        match (file, self.line) {
            (None, _) => self.prefix(),
            (Some(file), Some(line)) => format!("{file}:{line}: "),
            (Some(file), None) => format!("{file}: "),
        }
    }
}

/// The bodies an input holds, in order.
pub(crate) fn split(bytes: &[u8], layout: Layout) -> Vec<Item<'_>> {
    let lines = match layout {
        Layout::Body => false,
        Layout::Lines => true,
        Layout::Auto => looks_like_lines(bytes),
    };
    if !lines {
        return vec![Item {
            line: None,
            body: Ok(Cow::Borrowed(bytes)),
        }];
    }
    let mut export = None;
    let mut items = Vec::new();
    for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let export = *export.get_or_insert_with(|| is_export_line(line));
        let body = if export {
            ExportLine::parse(line).map(|e| Cow::Owned(e.raw.into_bytes()))
        } else {
            Ok(Cow::Borrowed(line))
        };
        items.push(Item {
            line: Some(index as u64 + 1),
            body,
        });
    }
    items
}

fn looks_like_lines(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut lines = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    let (Some(first), Some(_)) = (lines.next(), lines.next()) else {
        return false;
    };
    serde_json::from_slice::<serde::de::IgnoredAny>(first).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pretty_printed_body_is_one_body() {
        let items = split(b"{\n  \"a\": 1\n}\n", Layout::Auto);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].line, None);
    }

    #[test]
    fn json_lines_are_numbered_from_one_and_blank_lines_skipped() {
        let items = split(b"{\"a\":1}\n\n{\"a\":2}\r\nnot json\n", Layout::Auto);
        let lines: Vec<_> = items.iter().map(|i| i.line).collect();
        assert_eq!(lines, [Some(1), Some(3), Some(4)]);
        assert_eq!(items[1].body.as_deref().unwrap(), b"{\"a\":2}");
    }

    #[test]
    fn a_body_is_named_by_its_line_and_among_several_inputs_by_its_file_too() {
        let items = split(b"{\"a\":1}\n{\"a\":2}\n", Layout::Auto);
        assert_eq!(items[1].prefix_in(None), "line 2: ");
        assert_eq!(items[1].prefix_in(Some("b.jsonl")), "b.jsonl:2: ");
        let whole = split(b"{}", Layout::Auto);
        assert_eq!(whole[0].prefix_in(None), "");
        assert_eq!(whole[0].prefix_in(Some("a.json")), "a.json: ");
        assert_eq!(name("-"), "(standard input)");
    }

    #[test]
    fn export_lines_give_their_raw_body() {
        let items = split(
            b"{\"id\":1,\"raw\":\"{\\\"x\\\":1}\"}\n{\"id\":2,\"raw\":\"{}\"}\n",
            Layout::Auto,
        );
        assert_eq!(items[0].body.as_deref().unwrap(), b"{\"x\":1}");
        assert_eq!(items[1].body.as_deref().unwrap(), b"{}");
    }
}
