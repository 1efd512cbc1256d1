//! The built binary itself: standard input, exit statuses, `--version`.

use std::io::Write;
use std::process::{Command, Stdio};

fn relaycb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_relaycb"))
}

#[test]
fn decode_reads_standard_input_and_prints_no_colour_into_a_pipe() {
    let body = std::fs::read(crate::workspace().join("fixtures/docs/task_exit.json")).unwrap();
    let mut child = relaycb()
        .args(["decode", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let out = String::from_utf8(output.stdout).unwrap();
    assert!(out.starts_with("TaskExit\n"), "{out}");
    assert!(out.contains("-22 (EINVAL)"));
    assert!(!out.contains('\x1b'), "no colour into a pipe");
}

#[test]
fn exit_statuses_are_2_for_usage_and_1_for_failure() {
    let usage = relaycb()
        .args(["decode", "--format", "yaml"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let failure = relaycb()
        .args(["decode", "no/such/file.json"])
        .output()
        .unwrap();
    assert_eq!(failure.status.code(), Some(1));
    let err = String::from_utf8(failure.stderr).unwrap();
    assert!(
        err.starts_with("error: cannot read no/such/file.json: "),
        "{err}"
    );
}

#[test]
fn version_is_printed() {
    let output = relaycb().arg("--version").output().unwrap();
    assert!(output.status.success());
    let out = String::from_utf8(output.stdout).unwrap();
    assert_eq!(out, format!("relaycb {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn simulate_with_a_seed_writes_the_same_log_every_time_and_it_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let paths = [dir.path().join("a.jsonl"), dir.path().join("b.jsonl")];
    for path in &paths {
        let status = relaycb()
            .args([
                "simulate", "--tasks", "30", "--seed", "1234", "--faults", "--key", "k", "--out",
            ])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let a = std::fs::read(&paths[0]).unwrap();
    assert_eq!(
        a,
        std::fs::read(&paths[1]).unwrap(),
        "the same seed gives the same bytes"
    );
    let check = relaycb().arg("check").arg(&paths[0]).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let verify = relaycb()
        .args(["verify", "--key", "k", "--now", "1764806400"])
        .arg(&paths[0])
        .output()
        .unwrap();
    let out = String::from_utf8(verify.stdout).unwrap();
    assert!(
        out.lines().take(5).all(|l| l.contains("signature valid")),
        "{out}"
    );
}

/// `relaycb ... | head -1`: once the reader has gone, the next write fails
/// with EPIPE, and every command that writes to standard output then ends
/// quietly, with status 0.
#[test]
fn a_standard_output_closed_by_its_reader_ends_every_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relaycb.db");
    crate::make_store(&db, &crate::analyze::stored("exit_and_restart"));
    let db = db.to_string_lossy().into_owned();
    let fixture = |path: &str| crate::workspace().join(path).to_string_lossy().into_owned();
    let sequence = fixture("fixtures/sequences/exit_and_restart.jsonl");
    let commands: Vec<Vec<String>> = [
        &["decode", &fixture("fixtures/docs/task_exit.json")][..],
        &["decode", "--format", "json", &sequence],
        &["check", &sequence],
        &["sign", "--key", "k", "--t", "1"],
        &[
            "verify",
            "--key",
            "k",
            &fixture("fixtures/docs/task_exit.json"),
        ],
        &["analyze", &sequence],
        &["analyze", "--format", "json", &sequence],
        &["analyze", "--task", "200002", &sequence],
        &["export", "--db", &db],
        &["simulate", "--tasks", "3", "--seed", "1", "--out", "-"],
    ]
    .iter()
    .map(|args| args.iter().map(|a| (*a).to_owned()).collect())
    .collect();
    for args in commands {
        // The reading end is closed before the command starts, so that its
        // first write meets EPIPE whatever its timing.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = relaycb()
            .args(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8(output.stderr).unwrap();
        assert!(
            !err.contains("Broken pipe") && !err.contains("error"),
            "{args:?}: {err}"
        );
        assert_eq!(output.status.code(), Some(0), "{args:?}: {err}");
    }
}
