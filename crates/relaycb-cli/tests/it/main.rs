//! The integration tests of relaycb-cli, one binary: each module drives one
//! command through [`relaycb_cli::run`], as the binary would, and
//! `end_to_end` runs the built binary itself.

pub(crate) mod analyze;
mod decode;
mod end_to_end;
mod export;
mod send;
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

/// Creates a relaycb-server store at `path` holding the given rows
/// (id, received_at_ms, deliveries, raw body), with the server's schema.
pub(crate) fn make_store(path: &Path, rows: &[(u64, i64, u64, String)]) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, dedup_key TEXT UNIQUE, task_id TEXT,
            callback_event TEXT, event_time INTEGER, received_at_ms INTEGER,
            last_received_at_ms INTEGER, deliveries INTEGER, raw BLOB, decoded TEXT,
            deviations TEXT, headers TEXT, peer TEXT, attributed_to TEXT)",
    )
    .unwrap();
    for (id, at, deliveries, raw) in rows {
        let task: Option<String> =
            serde_json::from_str::<serde_json::Value>(raw).unwrap()["task_id"]
                .as_str()
                .map(str::to_owned);
        db.execute(
            "INSERT INTO events (id, dedup_key, task_id, received_at_ms, last_received_at_ms, deliveries, raw)
             VALUES (?1, ?1, ?2, ?3, ?3, ?4, ?5)",
            rusqlite::params![*id as i64, task, at, *deliveries as i64, raw.as_bytes()],
        )
        .unwrap();
    }
}
