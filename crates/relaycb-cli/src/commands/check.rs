//! `relaycb check`: validation only, for scripts and CI. Prints why each
//! refused body was refused on standard error, a summary line on standard
//! output, and exits 0 if every body decodes, 1 otherwise.

use relaycb_core::{DecodeOptions, decode_with};

use crate::Status;
use crate::console::Console;
use crate::input::{self, Layout};

/// Arguments of `relaycb check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bodies: a file, or `-` for standard input.
    #[arg(default_value = "-")]
    pub input: String,
    /// Count a body with any deviation from the documented form as invalid.
    #[arg(long)]
    pub strict: bool,
    /// Whether the input is one body or JSON Lines (one body per line).
    #[arg(long, value_enum, default_value_t = Layout::Auto)]
    pub layout: Layout,
}

/// Checks every body of the input.
pub(crate) fn run(args: &Args, console: &mut Console<'_>) -> anyhow::Result<Status> {
    // FIXME: the whole input is read into memory; fine for the bodies and
    // test logs this is for, not for a week's log (use `analyze` there).
    let bytes = input::read_all(&args.input)?;
    let items = input::split(&bytes, args.layout);
    let options = DecodeOptions {
        strict: args.strict,
    };
    let (mut valid, mut invalid, mut deviating) = (0usize, 0usize, 0usize);
    for item in &items {
        let result = match &item.body {
            Ok(body) => decode_with(body, options).map_err(|e| e.to_string()),
            Err(reason) => Err(reason.clone()),
        };
        match result {
            Ok(decoded) => {
                valid += 1;
                if !decoded.deviations.is_empty() {
                    deviating += 1;
                }
            }
            Err(reason) => {
                invalid += 1;
                writeln!(console.err, "{}{reason}", item.prefix())?;
            }
        }
    }
    let bodies = if items.len() == 1 { "body" } else { "bodies" };
    let verdict = if invalid == 0 { "ok" } else { "FAILED" };
    writeln!(
        console.out,
        "{verdict}: {} {bodies} checked, {valid} valid ({deviating} with deviations), {invalid} invalid",
        items.len()
    )?;
    Ok(if invalid == 0 {
        Status::Success
    } else {
        Status::Failure
    })
}
