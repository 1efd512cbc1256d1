//! The report of `relaycb analyze` for people: an aligned plain-text table
//! (coloured on a terminal) or Markdown, from the same sections.

use std::fmt::Write as _;

use super::locate::Logs;
use super::report::{Report, TaskReport};
use crate::console::{Console, Style};
use crate::time;

/// Plain text or Markdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Markup {
    /// Aligned columns for a terminal.
    Text,
    /// GitHub-flavoured Markdown.
    Markdown,
}

struct Doc<'c, 'a> {
    markup: Markup,
    console: &'c Console<'a>,
    out: String,
}

impl Doc<'_, '_> {
    fn heading(&mut self, title: &str) {
        match self.markup {
            Markup::Text => {
                let title = self.console.paint(Style::Bold, title);
                let _ = writeln!(self.out, "\n{title}");
            }
            Markup::Markdown => {
                let _ = writeln!(self.out, "\n## {title}\n");
            }
        }
    }

    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        if self.markup == Markup::Markdown {
            self.out.push('\n');
        }
    }

    fn table(&mut self, headers: &[&str], rows: &[Vec<String>]) {
        match self.markup {
            Markup::Markdown => {
                let _ = writeln!(self.out, "| {} |", headers.join(" | "));
                let rule: Vec<&str> = headers.iter().map(|_| "---").collect();
                let _ = writeln!(self.out, "| {} |", rule.join(" | "));
                for row in rows {
                    let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
                    let _ = writeln!(self.out, "| {} |", cells.join(" | "));
                }
            }
            Markup::Text => {
                let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
                for row in rows {
                    for (w, cell) in widths.iter_mut().zip(row) {
                        *w = (*w).max(cell.chars().count());
                    }
                }
                let head = padded(headers.iter().copied(), &widths);
                let _ = writeln!(self.out, "{}", self.console.paint(Style::Dim, &head));
                let mut line = String::new();
                for row in rows {
                    line.clear();
                    pad_into(&mut line, row.iter().map(String::as_str), &widths);
                    self.out.push_str(&line);
                    self.out.push('\n');
                }
            }
        }
    }

    /// A labelled fact of a task's details.
    fn fact(&mut self, label: &str, values: &[String]) {
        match (self.markup, values) {
            (Markup::Markdown, [one]) => {
                let _ = writeln!(self.out, "- **{label}**: {one}");
            }
            (Markup::Markdown, many) => {
                let _ = writeln!(self.out, "- **{label}**:");
                for value in many {
                    let _ = writeln!(self.out, "  - {value}");
                }
            }
            (Markup::Text, values) => {
                for (i, value) in values.iter().enumerate() {
                    let label = if i == 0 { label } else { "" };
                    let _ = writeln!(self.out, "  {label:<11} {value}");
                }
            }
        }
    }
}

/// One line of a text table: each cell left-aligned in its column.
fn padded<'a>(cells: impl Iterator<Item = &'a str>, widths: &[usize]) -> String {
    let mut line = String::new();
    pad_into(&mut line, cells, widths);
    line
}

/// Writes [`padded`] into `line`, which a long table reuses for every row
/// (a report may have a row for each of a hundred thousand tasks).
fn pad_into<'a>(line: &mut String, cells: impl Iterator<Item = &'a str>, widths: &[usize]) {
    line.push(' ');
    for (cell, width) in cells.zip(widths) {
        line.push(' ');
        line.push_str(cell);
        let fill = width.saturating_sub(cell.chars().count());
        line.extend(std::iter::repeat_n(' ', fill));
    }
    line.truncate(line.trim_end().len());
}

/// The report as text or Markdown; `logs` names what anomalies point at.
pub(crate) fn render(
    report: &Report,
    markup: Markup,
    logs: &Logs,
    console: &Console<'_>,
) -> String {
    let mut doc = Doc {
        markup,
        console,
        out: String::new(),
    };
    let s = &report.summary;
    if markup == Markup::Markdown {
        doc.line("# relaycb analyze");
    }
    let merged = if s.stored_repeats > 0 {
        format!(" (and {} repeats the server had merged)", s.stored_repeats)
    } else {
        String::new()
    };
    let tasks = if s.tasks == 1 { "task" } else { "tasks" };
    let as_of = s
        .as_of_ms
        .map(|ms| format!(", judged as of {}", time::utc_ms(ms)))
        .unwrap_or_default();
    doc.line(&format!(
        "{} deliveries in {} records: {} distinct events, {} duplicates{merged}, {} undecodable, {} unattributed; {} {tasks}{as_of}",
        s.deliveries, s.records, s.events, s.duplicates, s.undecodable, s.unattributed, s.tasks,
    ));

    doc.heading("Events");
    let rows: Vec<Vec<String>> = report
        .events
        .iter()
        .map(|(name, c)| {
            vec![
                name.clone(),
                c.distinct.to_string(),
                c.deliveries.to_string(),
            ]
        })
        .collect();
    doc.table(&["EVENT", "DISTINCT", "DELIVERIES"], &rows);

    doc.heading("Deviations");
    if report.deviations.is_empty() {
        doc.line("none");
    } else {
        doc.line(&format!(
            "{} distinct events deviated from the documented form",
            s.deviating_events
        ));
        let rows: Vec<Vec<String>> = report
            .deviations
            .iter()
            .map(|(what, n)| vec![what.clone(), n.to_string()])
            .collect();
        doc.table(&["DEVIATION", "EVENTS"], &rows);
    }

    if !report.undecodable.is_empty() {
        doc.heading("Undecodable");
        let rows: Vec<Vec<String>> = report
            .undecodable
            .iter()
            .map(|u| vec![logs.cell(u.id), u.reason.clone()])
            .collect();
        doc.table(&[&logs.heading(), "REASON"], &rows);
        if s.undecodable > report.undecodable.len() as u64 {
            doc.line(&format!(
                "(the first {} of {})",
                report.undecodable.len(),
                s.undecodable
            ));
        }
    }

    if !report.unattributed.is_empty() {
        doc.heading("Unattributed");
        let rows: Vec<Vec<String>> = report
            .unattributed
            .iter()
            .map(|u| {
                vec![
                    logs.cell(u.event),
                    u.callback_event.clone(),
                    u.at_ms.map_or_else(String::new, time::utc_ms),
                    u.reason.clone(),
                ]
            })
            .collect();
        doc.table(&[&logs.heading(), "EVENT", "AT", "REASON"], &rows);
    }

    doc.heading("Tasks");
    let rows: Vec<Vec<String>> = report.tasks.iter().map(task_row).collect();
    doc.table(
        &[
            "TASK",
            "PHASE",
            "STARTS",
            "RESTARTS",
            "FILES STARTED/FINISHED",
            "LOOPS",
            "EXITS",
            "ALARMS",
            "ANOMALIES",
            "DUPLICATES",
            "LAST EVENT",
        ],
        &rows,
    );
    for task in report.tasks.iter().filter(|t| noteworthy(t)) {
        doc.details(task, logs);
    }
    doc.out
}

fn task_row(task: &TaskReport) -> Vec<String> {
    let s = &task.state;
    vec![
        s.task_id.clone(),
        s.phase.as_str().to_owned(),
        s.starts.to_string(),
        s.restarts.to_string(),
        format!("{}/{}", s.files_started, s.files_finished),
        s.loops.to_string(),
        s.exits.values().sum::<u64>().to_string(),
        s.alarms.values().sum::<u64>().to_string(),
        s.anomalies.iter().map(|a| a.count).sum::<u64>().to_string(),
        s.duplicates.to_string(),
        s.last_event_at_ms.map_or_else(String::new, time::utc_ms),
    ]
}

fn noteworthy(task: &TaskReport) -> bool {
    let s = &task.state;
    !s.exits.is_empty() || !s.alarms.is_empty() || !s.anomalies.is_empty()
}

impl Doc<'_, '_> {
    /// One task in full: what it is doing, its exits, alarms and anomalies.
    fn details(&mut self, task: &TaskReport, logs: &Logs) {
        let s = &task.state;
        let stream = s
            .stream_id
            .as_deref()
            .map(|x| format!(" ({x})"))
            .unwrap_or_default();
        self.heading(&format!("Task {}{stream}", s.task_id));
        if let Some(to) = &s.to_url {
            self.fact("to", std::slice::from_ref(to));
        }
        let since = match (s.phase, &s.last_exit, s.last_event_at_ms) {
            (relaycb_core::lifecycle::Phase::Exited, Some(exit), _) => {
                format!(" since {}", time::utc_ms(exit.at_ms))
            }
            (_, _, Some(ms)) => format!(", last event {}", time::utc_ms(ms)),
            _ => String::new(),
        };
        self.fact("phase", &[format!("{}{since}", s.phase.as_str())]);
        self.fact(
            "runs",
            &[format!(
                "{} start(s), {} restart(s); files {} started, {} finished, {} loop(s)",
                s.starts, s.restarts, s.files_started, s.files_finished, s.loops
            )],
        );
        if let Some(file) = &s.current_file {
            let index = file.index.map_or_else(|| "?".to_owned(), |i| i.to_string());
            self.fact(
                "playing",
                &[format!(
                    "file {index} since {}",
                    time::utc_ms(file.started_at_ms)
                )],
            );
        }
        if !task.exit_codes.is_empty() {
            let lines: Vec<String> = task
                .exit_codes
                .iter()
                .map(|g| match (&g.code, &g.explanation) {
                    (Some(code), Some(e)) => {
                        format!("{} × {code} {}: {}", g.count, e.name, e.summary)
                    }
                    _ => format!("{} × without a code", g.count),
                })
                .collect();
            self.fact("exits", &lines);
        }
        if let Some(exit) = &s.last_exit {
            let code = exit
                .code
                .map_or_else(|| "no code".to_owned(), |c| c.to_string());
            let message = exit
                .message
                .as_deref()
                .map(|m| format!(" {m:?}"))
                .unwrap_or_default();
            self.fact(
                "last exit",
                &[format!(
                    "{code}{message} at {} ({})",
                    time::utc_ms(exit.at_ms),
                    logs.one(exit.event)
                )],
            );
        }
        if !s.alarms.is_empty() {
            let lines: Vec<String> = s
                .alarms
                .iter()
                .map(|(kind, n)| format!("{n} × {kind}"))
                .collect();
            self.fact("alarms", &lines);
        }
        if !s.anomalies.is_empty() {
            let lines: Vec<String> = s
                .anomalies
                .iter()
                .map(|a| {
                    let text = format!(
                        "{} × {}: {} ({})",
                        a.count,
                        a.kind.as_str(),
                        a.detail,
                        logs.list(&a.events)
                    );
                    if self.markup == Markup::Text {
                        self.console.paint(Style::Warn, &text)
                    } else {
                        text
                    }
                })
                .collect();
            self.fact("anomalies", &lines);
        }
    }
}

/// One task's details alone, for `--task`.
pub(crate) fn task_details(
    task: &TaskReport,
    markup: Markup,
    logs: &Logs,
    console: &Console<'_>,
) -> String {
    let mut doc = Doc {
        markup,
        console,
        out: String::new(),
    };
    doc.details(task, logs);
    doc.out
}
