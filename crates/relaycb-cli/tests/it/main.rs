//! The integration tests of relaycb-cli, one binary: each module drives one
//! command through [`relaycb_cli::run`], as the binary would, and
//! `end_to_end` runs the built binary itself.

mod analyze;
mod decode;
mod end_to_end;
mod sign;

use std::path::{Path, PathBuf};

/// What one run of `relaycb` printed and returned.
pub(crate) struct Run {
    pub(crate) code: u8,
    pub(crate) out: String,
    pub(crate) err: String,
}

/// Runs `relaycb` with the given arguments (without the program name),
/// colour off.
pub(crate) fn relaycb(args: &[&str]) -> Run {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut console = relaycb_cli::Console {
        out: &mut out,
        err: &mut err,
        color: false,
        progress: false,
    };
    let code = relaycb_cli::run(
        std::iter::once("relaycb").chain(args.iter().copied()),
        &mut console,
    );
    Run {
        code,
        out: String::from_utf8(out).expect("stdout is UTF-8"),
        err: String::from_utf8(err).expect("stderr is UTF-8"),
    }
}

/// The workspace root.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fixture's path relative to the crate (the tests' working directory),
/// so that no machine path ends up in a snapshot.
pub(crate) fn fixture(path: &Path) -> String {
    let root = workspace().canonicalize().expect("workspace root exists");
    let relative = path
        .strip_prefix(&root)
        .expect("fixtures live in the workspace");
    format!("../../{}", relative.display())
}
