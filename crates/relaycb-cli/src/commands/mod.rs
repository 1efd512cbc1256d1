//! The commands, one module each, and the dispatch from the parsed command
//! line to them.

pub(crate) mod analyze;
pub(crate) mod check;
pub(crate) mod decode;
pub(crate) mod export;
pub(crate) mod replay;
pub(crate) mod sign;
pub(crate) mod simulate;
pub(crate) mod verify;

use crate::cli::{Cli, Command};
use crate::{Console, Status};

/// Runs the parsed command.
pub(crate) fn dispatch(cli: Cli, console: &mut Console<'_>) -> anyhow::Result<Status> {
    match cli.command {
        Command::Decode(args) => decode::run(&args, console),
        Command::Check(args) => check::run(&args, console),
        Command::Sign(args) => sign::run(&args, console),
        Command::Verify(args) => verify::run(&args, console),
        Command::Analyze(args) => analyze::run(&args, console),
        Command::Export(args) => export::run(&args, console),
        Command::Simulate(args) => simulate::run(&args, console),
        Command::Replay(args) => replay::run(&args, console),
    }
}
