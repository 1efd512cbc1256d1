//! The command line: one subcommand per job, each with its own arguments
//! defined beside its code in `commands/`.

use clap::{Parser, Subcommand};

use crate::commands::{analyze, check, decode, export, replay, sign, simulate, verify};

/// Decode, check, sign, analyse, export, replay and simulate the callbacks
/// that Tencent Cloud CSS sends about relay (pull-and-push) tasks.
#[derive(Debug, Parser)]
#[command(
    name = "relaycb",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Say what a callback body (or a JSON Lines file of them) contains.
    Decode(decode::Args),
    /// Validate bodies only: a summary line, exit status 0 or 1.
    Check(check::Args),
    /// Print the `t` and `sign` Tencent would send with a key.
    Sign(sign::Args),
    /// Check the `t` and `sign` of a signed body.
    Verify(verify::Args),
    /// Report what every task of a log did, one task's timeline, or a picture.
    Analyze(analyze::Args),
    /// Write the server's store as JSON Lines (raw body, arrival, deliveries).
    Export(export::Args),
    /// Generate realistic task histories, to a file or sent like Tencent.
    Simulate(simulate::Args),
    /// Send a log's bodies to a receiver as Tencent would.
    Replay(replay::Args),
}

/// A task id as given on the command line, without the white space around
/// it, as decoding takes a callback's `task_id`.
pub(crate) fn task_id(given: &str) -> Result<String, String> {
    match given.trim() {
        "" => Err("a task id cannot be empty".to_owned()),
        id => Ok(id.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_task_id_is_taken_without_the_white_space_around_it() {
        assert_eq!(super::task_id(" 118148\t").as_deref(), Ok("118148"));
        assert!(super::task_id("  ").is_err());
    }
}
