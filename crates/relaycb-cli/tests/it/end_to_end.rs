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
