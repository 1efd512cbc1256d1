//! `relaycb decode`: what a body says, in words (or in the normalised JSON
//! form), with every deviation from the documented form and, for an exit,
//! what its code means.

use std::fmt::Write as _;

use relaycb_core::{Callback, DecodeOptions, Decoded, DedupKey, Event, decode_keyed, explain};
use serde_json::json;

use crate::console::{Console, Style};
use crate::input::{self, Layout};
use crate::{Status, time};

/// Arguments of `relaycb decode`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bodies: files, or `-` for standard input.
    #[arg(default_value = "-", value_name = "FILE")]
    pub inputs: Vec<String>,
    /// How to print what was decoded.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Fail on any deviation from the documented form, not only on bodies
    /// that cannot be understood.
    #[arg(long)]
    pub strict: bool,
    /// Whether each input is one body or JSON Lines (one body per line).
    #[arg(long, value_enum, default_value_t = Layout::Auto)]
    pub layout: Layout,
}

/// Output formats of `relaycb decode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Words for a person.
    Human,
    /// The normalised form as JSON: one object, or one object per line for
    /// JSON Lines and for several inputs (each with its `file`).
    Json,
}

/// Decodes every body of every input, printing each; fails if any cannot
/// be decoded or an input cannot be read.
pub(crate) fn run(args: &Args, console: &mut Console<'_>) -> anyhow::Result<Status> {
    input::stdin_at_most_once(&args.inputs)?;
    let options = DecodeOptions {
        strict: args.strict,
    };
    let several = args.inputs.len() > 1;
    let (mut bodies, mut failed, mut unreadable) = (0usize, 0usize, 0usize);
    let mut first = true;
    for path in &args.inputs {
        let Some(bytes) = input::read_one_of(path, several, console.err)? else {
            unreadable += 1;
            continue;
        };
        let file = several.then(|| input::name(path));
        let items = input::split(&bytes, args.layout);
        bodies += items.len();
        for item in &items {
            let prefix = item.prefix_in(file);
            let decoded = match &item.body {
                Ok(body) => decode_keyed(body, options).map_err(|e| e.to_string()),
                Err(reason) => Err(reason.clone()),
            };
            let (decoded, key) = match decoded {
                Ok((decoded, key)) => (decoded, key.ok()),
                Err(reason) => {
                    failed += 1;
                    let message = format!("error: {prefix}cannot decode the body: {reason}");
                    writeln!(console.err, "{message}")?;
                    continue;
                }
            };
            match args.format {
                Format::Human => {
                    if !first {
                        writeln!(console.out)?;
                    }
                    let text = human(&decoded, &prefix, key, console);
                    write!(console.out, "{text}")?;
                }
                Format::Json => {
                    let mut value = normalised(&decoded, item.line, key);
                    if let Some(file) = file {
                        value["file"] = file.into();
                    }
                    // A stream of bodies is printed as JSON Lines.
                    if item.line.is_some() || several {
                        writeln!(console.out, "{value}")?;
                    } else {
                        writeln!(console.out, "{}", serde_json::to_string_pretty(&value)?)?;
                    }
                }
            }
            first = false;
        }
    }
    if several && (failed > 0 || unreadable > 0) {
        let files = args.inputs.len();
        let unreadable = match unreadable {
            0 => String::new(),
            1 => "; 1 file could not be read".to_owned(),
            n => format!("; {n} files could not be read"),
        };
        writeln!(
            console.err,
            "error: {failed} of {bodies} bodies in {files} files could not be decoded{unreadable}"
        )?;
    } else if bodies > 1 && failed > 0 {
        writeln!(
            console.err,
            "error: {failed} of {bodies} bodies could not be decoded"
        )?;
    }
    Ok(if failed == 0 && unreadable == 0 {
        Status::Success
    } else {
        Status::Failure
    })
}

/// The normalised JSON form: the typed callback, its deviations, and the
/// explanation of an exit code.
pub(crate) fn normalised(
    decoded: &Decoded,
    line: Option<u64>,
    key: Option<DedupKey>,
) -> serde_json::Value {
    let mut value = json!({
        "callback": decoded.callback,
        "deviations": decoded.deviations,
    });
    if let Some(line) = line {
        value["line"] = line.into();
    }
    if let Some(key) = key {
        value["dedup_key"] = key.to_string().into();
    }
    if let Event::TaskExit(relaycb_core::TaskExit {
        code: Some(code), ..
    }) = &decoded.callback.event
    {
        value["exit"] = json!(explain(*code));
    }
    value
}

/// The human form: a heading, then one labelled line per fact.
fn human(decoded: &Decoded, prefix: &str, key: Option<DedupKey>, console: &Console<'_>) -> String {
    let c = &decoded.callback;
    let mut out = String::new();
    let mut heading = console.paint(Style::Bold, c.event.name());
    if let Some(task) = &c.task_id {
        let _ = write!(heading, " of task {task}");
    }
    if !prefix.is_empty() {
        heading = format!("{prefix}{heading}");
    }
    let _ = writeln!(out, "{heading}");
    let mut field = |label: &str, value: String| {
        let _ = writeln!(out, "  {label:<12} {value}");
    };
    field("event time", event_time(c));
    field(
        "task",
        c.task_id.clone().unwrap_or_else(|| "(not given)".into()),
    );
    if let Some(stream) = &c.stream_id {
        field(
            "stream",
            if stream.is_empty() {
                "(empty)".into()
            } else {
                stream.clone()
            },
        );
    }
    if let Some(to) = &c.to_url {
        field("to", to.clone());
    }
    match c.source_urls.as_slice() {
        [] => field("sources", "(none)".into()),
        [one] => field("sources", one.clone()),
        many => {
            for (i, url) in many.iter().enumerate() {
                field(
                    if i == 0 { "sources" } else { "" },
                    format!("{}. {url}", i + 1),
                );
            }
        }
    }
    for (label, value) in msg_lines(c, console) {
        field(label, value);
    }
    if let Some(appid) = c.appid {
        field("appid", appid.to_string());
    }
    if let Some(url) = &c.callback_url {
        field("callback to", url.clone());
    }
    field("signature", signature(c));
    for (key, value) in &c.extra {
        field("extra", format!("{key} = {value}"));
    }
    if let Some(key) = key {
        field("dedup key", key.to_string());
    }
    if decoded.deviations.is_empty() {
        field("deviations", console.paint(Style::Good, "none"));
    } else {
        for (i, deviation) in decoded.deviations.iter().enumerate() {
            let label = if i == 0 { "deviations" } else { "" };
            field(label, console.paint(Style::Warn, &deviation.to_string()));
        }
    }
    out
}

fn event_time(c: &Callback) -> String {
    match (c.event_time, c.occurred_at_ms()) {
        (Some(seconds), _) => format!("{} ({seconds})", time::utc_seconds(seconds)),
        (None, Some(ms)) => format!("{} (from msg)", time::utc_ms(ms)),
        (None, None) => "(not given)".into(),
    }
}

fn instant_ms(ms: Option<i64>) -> String {
    match ms {
        None => "(absent)".into(),
        Some(0) => "unknown (given as 0)".into(),
        Some(ms) => format!("{} ({ms})", time::utc_ms(ms)),
    }
}

fn msg_lines(c: &Callback, console: &Console<'_>) -> Vec<(&'static str, String)> {
    let mut lines = Vec::new();
    match &c.event {
        Event::TaskStart { task_start_time } => {
            lines.push(("started at", instant_ms(*task_start_time)));
        }
        Event::VodSourceFileStart(file) | Event::VodSourceFileFinish(file) => {
            let index = file.index.map_or_else(|| "?".into(), |i| i.to_string());
            lines.push(("file", format!("index {index} (0-based)")));
            if let Some(url) = &file.url {
                lines.push(("file url", url.clone()));
            }
            let duration = file.duration.map_or_else(
                || "(not given)".into(),
                // The span only where it says more than the seconds.
                |d| match d {
                    0..60 => format!("{d} s"),
                    _ => format!("{d} s ({})", time::span(d)),
                },
            );
            lines.push(("duration", duration));
        }
        Event::TaskExit(exit) => {
            lines.push(("exited at", instant_ms(exit.task_exit_time)));
            match exit.code {
                Some(code) => {
                    let explanation = explain(code);
                    let style = if code == 0 { Style::Good } else { Style::Bad };
                    let head = console.paint(style, &format!("{code} ({})", explanation.name));
                    lines.push(("code", head));
                    lines.push(("meaning", explanation.summary));
                }
                None => lines.push(("code", "(not given)".into())),
            }
            if let Some(message) = &exit.message {
                lines.push(("message", format!("{message:?}")));
            }
        }
        Event::TaskAlarm { alarm } => {
            let text = match alarm {
                Some(kind) => format!("{kind}: {}", kind.meaning()),
                None => "(type not given)".into(),
            };
            lines.push(("alarm", text));
        }
        Event::ResetTaskConfig { details } | Event::Unknown { details, .. } => {
            if !details.is_null() {
                lines.push(("details", details.to_string()));
            }
        }
    }
    if let Some(raw) = &c.raw_msg {
        lines.push(("msg as sent", format!("{raw:?}")));
    }
    for (key, value) in &c.msg_extra {
        lines.push(("msg extra", format!("{key} = {value}")));
    }
    lines
}

fn signature(c: &Callback) -> String {
    match (c.t, &c.sign) {
        (None, None) => "unsigned".into(),
        (Some(t), Some(sign)) => format!("t {t} (expires {}), sign {sign}", time::utc_seconds(t)),
        (Some(t), None) => format!("t {t} without sign"),
        (None, Some(sign)) => format!("sign {sign} without t"),
    }
}
