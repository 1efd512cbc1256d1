//! relaycb-cli: the `relaycb` command, for the operator who has a callback
//! body and wants to know what it says, the engineer who wants a log of
//! callbacks turned into a report of what every task did, and the developer
//! who needs Tencent's sender on a laptop.
//!
//! Every body goes through relaycb-core: this crate reads inputs, prints
//! and sends, and never decodes or folds a callback by itself.
//!
//! The binary is a thin shell over [`run`], so that tests drive the
//! commands without spawning a process.
//!
//! Exit status: 0 on success, 1 when the command ran but failed (a body
//! did not decode, a signature was refused, a file could not be read), 2
//! for a usage error. A standard output closed by its reader (`relaycb
//! decode ... | head -1`) ends the command quietly with 0, as other Unix
//! tools do.

mod cli;
mod commands;
mod console;
mod input;
mod send;

mod time;

use std::ffi::OsString;

use clap::Parser;

pub use cli::Cli;
pub use console::Console;

/// What a command that ran to the end concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything it looked at was fine.
    Success,
    /// It ran, and found something wrong (exit status 1).
    Failure,
}

/// A usage error found after parsing, such as two options that cannot go
/// together; reported with exit status 2 like clap's own.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Parses the command line, runs the command and returns the exit status.
///
/// Errors are printed whole (`error: what: why: cause`) on `console.err`.
pub fn run<I, T>(args: I, console: &mut Console<'_>) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let rendered = if console.color {
                error.render().ansi().to_string()
            } else {
                error.render().to_string()
            };
            let target: &mut dyn std::io::Write = if error.use_stderr() {
                console.err
            } else {
                console.out
            };
            let _ = write!(target, "{rendered}");
            return u8::try_from(error.exit_code()).unwrap_or(2);
        }
    };
    let mut out = Watched {
        inner: &mut *console.out,
        closed: false,
    };
    let result = commands::dispatch(
        cli,
        &mut Console {
            out: &mut out,
            err: &mut *console.err,
            color: console.color,
            progress: console.progress,
        },
    );
    match result {
        Ok(Status::Success) => 0,
        Ok(Status::Failure) => 1,
        // Whoever read the output has what they wanted: the error is the
        // reader's going away, not the command's failing.
        Err(_) if out.closed => 0,
        Err(error) => {
            let _ = writeln!(console.err, "error: {error:#}");
            if error.downcast_ref::<UsageError>().is_some() {
                2
            } else {
                1
            }
        }
    }
}

/// Standard output, noting whether a write found it closed by its reader
/// (`EPIPE`): the command's error is then only that, however it was
/// wrapped on the way up.
struct Watched<'a> {
    inner: &'a mut dyn std::io::Write,
    closed: bool,
}

impl Watched<'_> {
    fn note<T>(&mut self, result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(error) = &result
            && error.kind() == std::io::ErrorKind::BrokenPipe
        {
            self.closed = true;
        }
        result
    }
}

impl std::io::Write for Watched<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let result = self.inner.write(buf);
        self.note(result)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let result = self.inner.write_all(buf);
        self.note(result)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = self.inner.flush();
        self.note(result)
    }
}
