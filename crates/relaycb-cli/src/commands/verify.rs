//! `relaycb verify`: checks the `t`/`sign` of signed bodies against one or
//! more keys and says which check failed. Among several inputs, each body
//! is named by its file (and line), as `check` names them.

use std::time::Duration;

use relaycb_core::{KeyRing, decode};

use crate::console::{Console, Style};
use crate::input::{self, Layout};
use crate::{Status, time};

/// Arguments of `relaycb verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The signed bodies: files, or `-` for standard input.
    #[arg(default_value = "-", value_name = "FILE")]
    pub inputs: Vec<String>,
    /// A callback key; repeat it to accept any of several (during a key
    /// rotation).
    #[arg(
        long = "key",
        env = "RELAYCB_KEY",
        hide_env_values = true,
        required = true
    )]
    pub keys: Vec<String>,
    /// Judge expiry as of this Unix time instead of now (for old logs).
    #[arg(long)]
    pub now: Option<i64>,
    /// How far the sender's clock may be off: a span (`60s`, `2m`) or
    /// seconds (`60`), as relaycb-server's `--clock-skew`.
    #[arg(long, default_value = "60s", value_parser = skew)]
    pub skew: Duration,
    /// Whether the input is one body or JSON Lines (one body per line).
    #[arg(long, value_enum, default_value_t = Layout::Auto)]
    pub layout: Layout,
}

/// A clock skew: seconds, or a span as humantime reads it.
fn skew(given: &str) -> Result<Duration, String> {
    match given.trim().parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(given.trim())
            .map_err(|e| format!("{e} (give seconds, or a span such as 60s or 2m)")),
    }
}

/// Verifies every body of every input; fails if any is refused or an
/// input cannot be read.
pub(crate) fn run(args: &Args, console: &mut Console<'_>) -> anyhow::Result<Status> {
    let ring = KeyRing::new(args.keys.iter().cloned()).with_skew(args.skew);
    if ring.is_empty() {
        return Err(crate::UsageError("--key must not be empty".into()).into());
    }
    input::stdin_at_most_once(&args.inputs)?;
    let now = args.now.unwrap_or_else(time::now_seconds);
    let several = args.inputs.len() > 1;
    let mut refused = 0usize;
    for path in &args.inputs {
        let name = input::name(path);
        let Some(bytes) = input::read_one_of(path, several, console.err)? else {
            refused += 1;
            continue;
        };
        refused += verify(&bytes, args, &ring, now, several.then_some(name), console)?;
    }
    Ok(if refused == 0 {
        Status::Success
    } else {
        Status::Failure
    })
}

/// Verifies every body of one input, each named by `file` (among several
/// inputs) and its line; returns how many were refused.
fn verify(
    bytes: &[u8],
    args: &Args,
    ring: &KeyRing,
    now: i64,
    file: Option<&str>,
    console: &mut Console<'_>,
) -> anyhow::Result<usize> {
    let mut refused = 0usize;
    for item in input::split(bytes, args.layout) {
        let prefix = item.prefix_in(file);
        let decoded = match &item.body {
            Ok(body) => decode(body).map_err(|e| e.to_string()),
            Err(reason) => Err(reason.clone()),
        };
        let callback = match decoded {
            Ok(decoded) => decoded.callback,
            Err(reason) => {
                refused += 1;
                writeln!(
                    console.err,
                    "error: {prefix}cannot decode the body: {reason}"
                )?;
                continue;
            }
        };
        match ring.verify(callback.t, callback.sign.as_deref(), now) {
            Ok(()) => {
                let t = callback.t.unwrap_or_default();
                let ok = console.paint(Style::Good, "valid");
                writeln!(
                    console.out,
                    "{prefix}signature {ok}: t {t} expires {} ({} s from now)",
                    time::utc_seconds(t),
                    t - now
                )?;
            }
            Err(error) => {
                refused += 1;
                let refused = console.paint(Style::Bad, "refused");
                writeln!(console.out, "{prefix}signature {refused}: {error}")?;
            }
        }
    }
    Ok(refused)
}
