//! `decode` and `check` over every fixture: the human and JSON output of
//! the bodies that decode, the error of those that do not.

use crate::{fixture, relaycb};

#[test]
fn every_documented_and_drifted_body_is_described_in_words() {
    insta::glob!("../../../../fixtures", "{docs,drift}/*.json", |path| {
        let run = relaycb(&["decode", &fixture(path)]);
        assert_eq!(run.code, 0, "{}", run.err);
        assert_eq!(run.err, "");
        insta::assert_snapshot!(run.out);
    });
}

#[test]
fn every_documented_and_drifted_body_has_a_normalised_json_form() {
    insta::glob!("../../../../fixtures", "{docs,drift}/*.json", |path| {
        let run = relaycb(&["decode", "--format", "json", &fixture(path)]);
        assert_eq!(run.code, 0, "{}", run.err);
        let value: serde_json::Value = serde_json::from_str(&run.out).expect("decode prints JSON");
        insta::assert_json_snapshot!(value);
    });
}

#[test]
fn every_invalid_body_fails_with_the_reason_on_stderr() {
    insta::glob!("../../../../fixtures", "invalid/*", |path| {
        let run = relaycb(&["decode", &fixture(path)]);
        assert_eq!(run.code, 1);
        assert_eq!(run.out, "");
        insta::assert_snapshot!(run.err);
    });
}

#[test]
fn strict_decoding_refuses_a_drifted_body() {
    let path = crate::workspace().join("fixtures/drift/app_id_camel_case.json");
    let run = relaycb(&["decode", "--strict", &path.to_string_lossy()]);
    assert_eq!(run.code, 1);
    assert!(
        run.err.contains("strict decoding refuses deviations"),
        "{}",
        run.err
    );
}

#[test]
fn json_lines_errors_name_their_line_and_the_good_lines_still_print() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let good =
        std::fs::read_to_string(crate::workspace().join("fixtures/sequences/restart_loop.jsonl"))
            .unwrap();
    let first = good.lines().next().unwrap();
    std::fs::write(&log, format!("{first}\n{{\"event_type\":314}}\n{first}\n")).unwrap();
    let run = relaycb(&["decode", "--format", "json", &log.to_string_lossy()]);
    assert_eq!(run.code, 1);
    assert_eq!(run.out.lines().count(), 2);
    insta::assert_snapshot!(run.err, @r"
    error: line 2: cannot decode the body: callback_event: absent, but every relay callback names its event
    error: 1 of 3 bodies could not be decoded
    ");
}

#[test]
fn check_prints_a_summary_and_exits_by_validity() {
    let good = crate::workspace().join("fixtures/sequences/retry_storm.jsonl");
    let run = relaycb(&["check", &good.to_string_lossy()]);
    assert_eq!(
        (run.code, run.out.as_str()),
        (
            0,
            "ok: 12 bodies checked, 12 valid (0 with deviations), 0 invalid\n"
        )
    );

    let bad = crate::workspace().join("fixtures/invalid/truncated.json");
    let run = relaycb(&["check", &bad.to_string_lossy()]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.out,
        "FAILED: 1 body checked, 0 valid (0 with deviations), 1 invalid\n"
    );
    assert!(run.err.starts_with("body is not JSON"), "{}", run.err);
}

#[test]
fn colour_is_used_only_when_the_console_allows_it() {
    let path = crate::workspace().join("fixtures/docs/task_exit.json");
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut console = relaycb_cli::Console {
        out: &mut out,
        err: &mut err,
        color: true,
        progress: false,
    };
    let code = relaycb_cli::run(["relaycb", "decode", &path.to_string_lossy()], &mut console);
    assert_eq!(code, 0);
    let coloured = String::from_utf8(out).unwrap();
    assert!(
        coloured.contains("\x1b[31m-22 (EINVAL)\x1b[0m"),
        "{coloured}"
    );
    assert!(
        !relaycb(&["decode", &path.to_string_lossy()])
            .out
            .contains('\x1b')
    );
}
