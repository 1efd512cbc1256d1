//! `relaycb analyze --plot FILE.svg`: a timeline picture, one row per task,
//! files as bars, the time a task ran as a thin line, exits and alarms as
//! marks (each with a tooltip). Written by hand: an SVG of rectangles,
//! lines and text needs no library.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use relaycb_core::{Callback, Event, explain};

use crate::time;

/// How many marks one task keeps for the picture.
const MARKS_PER_TASK: usize = 2_000;
/// How many tasks the picture shows (the first by task id).
// FIXME: with more tasks than this, the picture shows only the first; a
// picture of thousands of rows would need paging or aggregation.
const TASKS_SHOWN: usize = 300;

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 150.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 60.0;
const ROW: f64 = 24.0;
const BOTTOM: f64 = 50.0;

/// The marks of every task shown.
#[derive(Debug, Default)]
pub(crate) struct PlotData {
    tasks: BTreeMap<String, Vec<Mark>>,
    /// Tasks left out of the picture.
    pub(crate) tasks_left_out: u64,
}

#[derive(Debug, Clone)]
struct Mark {
    at_ms: i64,
    kind: MarkKind,
}

#[derive(Debug, Clone)]
enum MarkKind {
    Start,
    FileStart(Option<u32>),
    FileFinish(Option<u32>),
    Exit(Option<i64>, Option<String>),
    Alarm(String),
}

impl MarkKind {
    fn rank(&self) -> u8 {
        match self {
            MarkKind::FileFinish(_) => 0,
            MarkKind::Exit(..) => 1,
            MarkKind::Start => 2,
            MarkKind::FileStart(_) => 3,
            MarkKind::Alarm(_) => 4,
        }
    }
}

impl PlotData {
    /// Keeps what the picture needs of one distinct event of a task.
    pub(crate) fn add(&mut self, task_id: &str, received_at_ms: Option<i64>, callback: &Callback) {
        let Some(at_ms) = callback.occurred_at_ms().or(received_at_ms) else {
            return;
        };
        let kind = match &callback.event {
            Event::TaskStart { .. } => MarkKind::Start,
            Event::VodSourceFileStart(f) => MarkKind::FileStart(f.index),
            Event::VodSourceFileFinish(f) => MarkKind::FileFinish(f.index),
            Event::TaskExit(exit) => MarkKind::Exit(exit.code, exit.message.clone()),
            Event::TaskAlarm { alarm } => MarkKind::Alarm(
                alarm
                    .as_ref()
                    .map_or_else(|| "unspecified".to_owned(), ToString::to_string),
            ),
            Event::ResetTaskConfig { .. } | Event::Unknown { .. } => return,
        };
        if !self.tasks.contains_key(task_id) && self.tasks.len() >= TASKS_SHOWN {
            self.tasks_left_out += 1;
            return;
        }
        let marks = self.tasks.entry(task_id.to_owned()).or_default();
        if marks.len() < MARKS_PER_TASK {
            marks.push(Mark { at_ms, kind });
        }
    }

    /// The picture, as an SVG document.
    pub(crate) fn svg(&mut self) -> String {
        for marks in self.tasks.values_mut() {
            // Within an instant, in the order relaycb-core folds them: a
            // finish before the next start, an exit before the restart.
            marks.sort_by_key(|m| (m.at_ms, m.kind.rank()));
        }
        let first = self
            .tasks
            .values()
            .flatten()
            .map(|m| m.at_ms)
            .min()
            .unwrap_or(0);
        let last = self
            .tasks
            .values()
            .flatten()
            .map(|m| m.at_ms)
            .max()
            .unwrap_or(0)
            .max(first + 1000);
        let height = TOP + ROW * self.tasks.len().max(1) as f64 + BOTTOM;
        let x =
            |ms: i64| LEFT + (ms - first) as f64 / (last - first) as f64 * (WIDTH - LEFT - RIGHT);
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="10" y="20" font-size="14" font-weight="bold">relaycb: {} task(s), {} to {}</text>"#,
            self.tasks.len(),
            time::utc_ms(first),
            time::utc_ms(last)
        );
        legend(&mut svg);
        axis(&mut svg, first, last, height, &x);
        for (row, (task, marks)) in self.tasks.iter().enumerate() {
            let y = TOP + ROW * row as f64;
            let mid = y + ROW / 2.0;
            let _ = writeln!(
                svg,
                r#"<text x="10" y="{:.1}">{}</text>"#,
                mid + 4.0,
                escape(task)
            );
            draw_task(&mut svg, marks, mid, last, &x);
        }
        if self.tasks_left_out > 0 {
            let _ = writeln!(
                svg,
                r#"<text x="10" y="{:.1}">and events of {} more task(s) not shown</text>"#,
                height - 8.0,
                self.tasks_left_out
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

fn legend(svg: &mut String) {
    let _ = writeln!(
        svg,
        concat!(
            r##"<g transform="translate(10,38)">"##,
            r##"<line x1="0" y1="0" x2="20" y2="0" stroke="#999" stroke-width="2"/><text x="25" y="4">running</text>"##,
            r##"<rect x="90" y="-6" width="20" height="12" fill="#4a7fc1"/><text x="115" y="4">file playing</text>"##,
            r##"<path d="M 200 -6 L 212 -6 L 206 6 Z" fill="#c0392b"/><text x="217" y="4">error exit</text>"##,
            r##"<path d="M 290 -6 L 302 -6 L 296 6 Z" fill="#27ae60"/><text x="307" y="4">normal exit</text>"##,
            r##"<circle cx="386" cy="0" r="5" fill="#e67e22"/><text x="396" y="4">alarm</text>"##,
            "</g>"
        )
    );
}

fn axis(svg: &mut String, first: i64, last: i64, height: f64, x: &dyn Fn(i64) -> f64) {
    let bottom = height - BOTTOM + 10.0;
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#333"/>"##,
        WIDTH - RIGHT
    );
    for i in 0..=4 {
        let at = first + (last - first) * i / 4;
        let px = x(at);
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{bottom}" stroke="#eee"/><text x="{px:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"##,
            bottom + 16.0,
            time::utc_ms(at)
        );
    }
}

fn draw_task(svg: &mut String, marks: &[Mark], mid: f64, last: i64, x: &dyn Fn(i64) -> f64) {
    // Run lines under file bars under marks, whatever order they come in.
    let (mut lines, mut bars, mut points) = (String::new(), String::new(), String::new());
    let mut running: Option<i64> = None;
    let mut file: Option<(i64, Option<u32>)> = None;
    let run_line = |svg: &mut String, from: i64, to: i64| {
        let _ = writeln!(
            svg,
            r##"<line x1="{:.1}" y1="{mid:.1}" x2="{:.1}" y2="{mid:.1}" stroke="#999" stroke-width="2"/>"##,
            x(from),
            x(to)
        );
    };
    let bar = |svg: &mut String, from: i64, to: i64, index: Option<u32>, open: bool| {
        let (x0, x1) = (x(from), x(to));
        let shade = if index.unwrap_or(0).is_multiple_of(2) {
            "#4a7fc1"
        } else {
            "#7fa7d9"
        };
        let opacity = if open { r#" fill-opacity="0.5""# } else { "" };
        let index = index.map_or_else(|| "?".to_owned(), |i| i.to_string());
        let _ = writeln!(
            svg,
            r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="12" fill="{shade}" stroke="white" stroke-width="0.5"{opacity}><title>file {index}: {} to {}</title></rect>"#,
            mid - 6.0,
            (x1 - x0).max(1.0),
            time::utc_ms(from),
            time::utc_ms(to)
        );
    };
    for mark in marks {
        match &mark.kind {
            MarkKind::Start => {
                if let Some(from) = running.take() {
                    run_line(&mut lines, from, mark.at_ms);
                }
                running = Some(mark.at_ms);
            }
            MarkKind::FileStart(index) => {
                if let Some((from, previous)) = file.take() {
                    bar(&mut bars, from, mark.at_ms, previous, false);
                }
                running.get_or_insert(mark.at_ms);
                file = Some((mark.at_ms, *index));
            }
            MarkKind::FileFinish(finished) => {
                // A finish closes the file playing, unless it names another.
                if let Some((from, index)) = file
                    && (finished.is_none() || *finished == index)
                {
                    bar(&mut bars, from, mark.at_ms, index, false);
                    file = None;
                }
            }
            MarkKind::Exit(code, message) => {
                if let Some((from, index)) = file.take() {
                    bar(&mut bars, from, mark.at_ms, index, false);
                }
                if let Some(from) = running.take() {
                    run_line(&mut lines, from, mark.at_ms);
                }
                let colour = if *code == Some(0) {
                    "#27ae60"
                } else {
                    "#c0392b"
                };
                let what = code.map_or_else(
                    || "exit without code".to_owned(),
                    |c| format!("exit {c} ({})", explain(c).name),
                );
                let message = message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                let px = x(mark.at_ms);
                let _ = writeln!(
                    points,
                    r#"<path d="M {:.1} {:.1} L {:.1} {:.1} L {px:.1} {:.1} Z" fill="{colour}"><title>{} at {}</title></path>"#,
                    px - 6.0,
                    mid - 8.0,
                    px + 6.0,
                    mid - 8.0,
                    mid + 4.0,
                    escape(&format!("{what}{message}")),
                    time::utc_ms(mark.at_ms)
                );
            }
            MarkKind::Alarm(kind) => {
                let _ = writeln!(
                    points,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="5" fill="#e67e22"><title>alarm {} at {}</title></circle>"##,
                    x(mark.at_ms),
                    mid + 7.0,
                    escape(kind),
                    time::utc_ms(mark.at_ms)
                );
            }
        }
    }
    if let Some((from, index)) = file {
        bar(&mut bars, from, last, index, true);
    }
    if let Some(from) = running {
        run_line(&mut lines, from, last);
    }
    svg.push_str(&lines);
    svg.push_str(&bars);
    svg.push_str(&points);
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
