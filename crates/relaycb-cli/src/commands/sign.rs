//! `relaycb sign`: the `t` and `sign` Tencent sends with a callback key,
//! for testing a receiver by hand.

use relaycb_core::sign;

use crate::console::Console;
use crate::{Status, time};

/// Arguments of `relaycb sign`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("expiry").required(true).args(["t", "ttl"])))]
pub struct Args {
    /// The callback key (the secret Tencent and the receiver share).
    #[arg(
        long,
        env = "RELAYCB_KEY",
        hide_env_values = true,
        value_parser = clap::builder::NonEmptyStringValueParser::new()
    )]
    pub key: String,
    /// The expiry time `t` to sign, Unix seconds.
    #[arg(long, allow_negative_numbers = true)]
    pub t: Option<i64>,
    /// Sign a `t` this many seconds from now (Tencent uses 600).
    #[arg(long)]
    pub ttl: Option<u64>,
}

/// Prints `t=...` and `sign=...`, one a line.
pub(crate) fn run(args: &Args, console: &mut Console<'_>) -> anyhow::Result<Status> {
    let t = match (args.t, args.ttl) {
        (Some(t), _) => t,
        (None, Some(ttl)) => time::now_seconds().saturating_add(i64::try_from(ttl)?),
        (None, None) => unreachable!("clap requires --t or --ttl"),
    };
    writeln!(console.out, "t={t}")?;
    writeln!(console.out, "sign={}", sign(&args.key, t))?;
    Ok(Status::Success)
}
