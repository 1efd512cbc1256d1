//! Where a command writes, and whether it may colour what it writes.
//!
//! Colour is decided once, by the binary: only when standard output is a
//! terminal and `NO_COLOR` is not set. Tests pass plain buffers.

use std::io::Write;

/// The output streams of one run.
pub struct Console<'a> {
    /// Standard output: results.
    pub out: &'a mut dyn Write,
    /// Standard error: errors, warnings and progress.
    pub err: &'a mut dyn Write,
    /// Whether `out` may carry ANSI colours.
    pub color: bool,
    /// Whether `err` is a terminal, where a progress line may be drawn.
    pub progress: bool,
}

/// The few styles relaycb uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Style {
    /// Headings and event names.
    Bold,
    /// Something fine.
    Good,
    /// Something to look at.
    Warn,
    /// Something wrong.
    Bad,
    /// Secondary detail.
    Dim,
}

impl Console<'_> {
    /// The text in the given style, or as it is when colour is off.
    pub(crate) fn paint(&self, style: Style, text: &str) -> String {
        if !self.color {
            return text.to_owned();
        }
        let code = match style {
            Style::Bold => "1",
            Style::Good => "32",
            Style::Warn => "33",
            Style::Bad => "31",
            Style::Dim => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}
