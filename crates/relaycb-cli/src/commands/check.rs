//! `relaycb check`: validation only, for scripts and CI. Prints why each
//! refused body was refused on standard error, a summary line on standard
//! output (one per input and a total when several were given), and exits 0
//! if every body of every input decodes, 1 otherwise.

use relaycb_core::{DecodeOptions, decode_with};

use crate::Status;
use crate::console::Console;
use crate::input::{self, Layout};

/// Arguments of `relaycb check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bodies: files, or `-` for standard input.
    #[arg(default_value = "-", value_name = "FILE")]
    pub inputs: Vec<String>,
    /// Count a body with any deviation from the documented form as invalid.
    #[arg(long)]
    pub strict: bool,
    /// Whether each input is one body or JSON Lines (one body per line).
    #[arg(long, value_enum, default_value_t = Layout::Auto)]
    pub layout: Layout,
}

/// What checking some bodies found.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    bodies: usize,
    valid: usize,
    deviating: usize,
    invalid: usize,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.bodies += other.bodies;
        self.valid += other.valid;
        self.deviating += other.deviating;
        self.invalid += other.invalid;
    }

    /// `12 bodies checked, 12 valid (0 with deviations), 0 invalid`, with
    /// `bodies` in front of the rest (`in 3 files`) when given.
    fn summary(&self, bodies_in: &str) -> String {
        let bodies = if self.bodies == 1 { "body" } else { "bodies" };
        format!(
            "{} {bodies}{bodies_in} checked, {} valid ({} with deviations), {} invalid",
            self.bodies, self.valid, self.deviating, self.invalid
        )
    }
}

/// Checks every body of every input.
pub(crate) fn run(args: &Args, console: &mut Console<'_>) -> anyhow::Result<Status> {
    input::stdin_at_most_once(&args.inputs)?;
    let options = DecodeOptions {
        strict: args.strict,
    };
    let several = args.inputs.len() > 1;
    let mut total = Counts::default();
    let mut unreadable = 0usize;
    for path in &args.inputs {
        let name = input::name(path);
        // FIXME: each input is read whole into memory; fine for the bodies
        // and test logs this is for, not for a week's log (use `analyze`).
        let Some(bytes) = input::read_one_of(path, several, console.err)? else {
            unreadable += 1;
            writeln!(console.out, "FAILED: {name}: cannot be read")?;
            continue;
        };
        let counts = check(
            &bytes,
            args.layout,
            options,
            several.then_some(name),
            console,
        )?;
        if several {
            writeln!(
                console.out,
                "{}: {name}: {}",
                verdict(counts.invalid == 0),
                counts.summary("")
            )?;
        }
        total.add(counts);
    }
    let ok = total.invalid == 0 && unreadable == 0;
    let summary = if several {
        let files = args.inputs.len();
        let unreadable = match unreadable {
            0 => String::new(),
            1 => "; 1 file could not be read".to_owned(),
            n => format!("; {n} files could not be read"),
        };
        format!(
            "{}{unreadable}",
            total.summary(&format!(" in {files} files"))
        )
    } else {
        total.summary("")
    };
    writeln!(console.out, "{}: {summary}", verdict(ok))?;
    Ok(if ok { Status::Success } else { Status::Failure })
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "FAILED" }
}

/// Checks the bodies of one input, saying on standard error why each
/// refused one was refused; `file` names the input when there are several.
fn check(
    bytes: &[u8],
    layout: Layout,
    options: DecodeOptions,
    file: Option<&str>,
    console: &mut Console<'_>,
) -> anyhow::Result<Counts> {
    let items = input::split(bytes, layout);
    let mut counts = Counts {
        bodies: items.len(),
        ..Counts::default()
    };
    for item in &items {
        let result = match &item.body {
            Ok(body) => decode_with(body, options).map_err(|e| e.to_string()),
            Err(reason) => Err(reason.clone()),
        };
        match result {
            Ok(decoded) => {
                counts.valid += 1;
                if !decoded.deviations.is_empty() {
                    counts.deviating += 1;
                }
            }
            Err(reason) => {
                counts.invalid += 1;
                writeln!(console.err, "{}{reason}", item.prefix_in(file))?;
            }
        }
    }
    Ok(counts)
}
