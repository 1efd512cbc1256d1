//! The `relaycb` binary: parses nothing itself, it hands the command line and
//! the process's standard streams to [`relaycb_cli::run`].

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

// `analyze` allocates and frees a decoded callback per record on every core;
// mimalloc's per-thread heaps do that with far less work than glibc's arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let color = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let progress = stderr.is_terminal();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let mut console = relaycb_cli::Console {
        out: &mut out,
        err: &mut err,
        color,
        progress,
    };
    let code = relaycb_cli::run(std::env::args_os(), &mut console);
    let _ = out.flush();
    ExitCode::from(code)
}
