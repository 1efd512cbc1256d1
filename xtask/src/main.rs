//! The project's runner: `cargo xtask <task>`, for what plain `cargo`
//! commands do not do in one step.
//!
//! - `ci`: formatting check, clippy with warnings denied on every target,
//!   then the whole test suite, as CI runs it.
//! - `chaos`: the release server killed again and again under load; every
//!   answered callback must be stored exactly once.
//! - `fuzz`: the decoder under libFuzzer, seeded with the fixtures.
//! - `bench`: every speed and memory target beside its reference.

mod bench;
mod chaos;
mod ci;
mod fuzz;

use std::path::PathBuf;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("chaos") => chaos::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        // Internal: the no-op server the ingest benchmark measures as its floor.
        Some("bench-floor") => bench::floor::run(&args[1..]),
        Some("-h" | "--help") | None => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("error: unknown task `{other}`\n\n{}", usage());
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> &'static str {
    "usage: cargo xtask <task>\n\n\
     tasks:\n  \
     ci        fmt check, clippy -D warnings on all targets, the whole test suite\n  \
     chaos     kill the release server under load, check nothing answered is lost\n            \
     [--callbacks N] [--kills K] [--terms T] [--clients C] [--seed S]\n  \
     fuzz      run the decoder under libFuzzer [--time SECONDS], keep what fails\n  \
     bench     measure every speed and memory target against its reference [--quick]\n"
}

/// The workspace's top folder (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}
