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
