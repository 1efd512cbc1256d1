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

#[test]
fn check_takes_several_files_reports_each_by_name_and_fails_if_any_fails() {
    let drift: Vec<String> = std::fs::read_dir(crate::workspace().join("fixtures/drift"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            format!("../../fixtures/drift/{name}")
        })
        .collect();
    let mut args = vec!["check"];
    args.extend(drift.iter().map(String::as_str));
    let run = relaycb(&args);
    assert_eq!(run.code, 0, "{}", run.err);
    assert_eq!(run.out.lines().count(), drift.len() + 1, "{}", run.out);
    assert!(
        run.out
            .contains("ok: ../../fixtures/drift/app_id_camel_case.json: 1 body checked, 1 valid (1 with deviations), 0 invalid\n"),
        "{}",
        run.out
    );
    let total = format!(
        "ok: {0} bodies in {0} files checked, {0} valid",
        drift.len()
    );
    assert!(
        run.out.lines().last().unwrap().starts_with(&total),
        "{}",
        run.out
    );

    let run = relaycb(&[
        "check",
        "../../fixtures/sequences/retry_storm.jsonl",
        "../../fixtures/invalid/truncated.json",
        "no/such/file.json",
    ]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!(run.out, @r"
    ok: ../../fixtures/sequences/retry_storm.jsonl: 12 bodies checked, 12 valid (0 with deviations), 0 invalid
    FAILED: ../../fixtures/invalid/truncated.json: 1 body checked, 0 valid (0 with deviations), 1 invalid
    FAILED: no/such/file.json: cannot be read
    FAILED: 13 bodies in 3 files checked, 12 valid (0 with deviations), 1 invalid; 1 file could not be read
    ");
    let lines: Vec<&str> = run.err.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.err);
    assert!(
        lines[0].starts_with("../../fixtures/invalid/truncated.json: body is not JSON"),
        "{}",
        run.err
    );
    assert!(
        lines[1].starts_with("error: cannot read no/such/file.json: "),
        "{}",
        run.err
    );
}

#[test]
fn decode_takes_several_files_and_names_each_body_by_its_file() {
    let run = relaycb(&[
        "decode",
        "../../fixtures/docs/task_start.json",
        "../../fixtures/sequences/restart_loop.jsonl",
        "../../fixtures/invalid/truncated.json",
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.out
            .starts_with("../../fixtures/docs/task_start.json: TaskStart of task "),
        "{}",
        run.out
    );
    assert!(
        run.out
            .contains("\n../../fixtures/sequences/restart_loop.jsonl:2: TaskExit of task "),
        "{}",
        run.out
    );
    let err: Vec<&str> = run.err.lines().collect();
    assert!(
        err[0].starts_with(
            "error: ../../fixtures/invalid/truncated.json: cannot decode the body: body is not JSON"
        ),
        "{}",
        run.err
    );
    assert_eq!(
        err[1], "error: 1 of 10 bodies in 3 files could not be decoded",
        "{}",
        run.err
    );

    let run = relaycb(&[
        "decode",
        "--format",
        "json",
        "../../fixtures/docs/task_start.json",
        "../../fixtures/sequences/restart_loop.jsonl",
    ]);
    assert_eq!(run.code, 0, "{}", run.err);
    let values: Vec<serde_json::Value> = run
        .out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(values.len(), 9, "one JSON object a line: {}", run.out);
    assert_eq!(values[0]["file"], "../../fixtures/docs/task_start.json");
    assert_eq!(values[0].get("line"), None);
    assert_eq!(
        values[8]["file"],
        "../../fixtures/sequences/restart_loop.jsonl"
    );
    assert_eq!(values[8]["line"], 8);
}

#[test]
fn standard_input_may_be_named_only_once() {
    for command in ["check", "decode"] {
        let run = relaycb(&[command, "-", "-"]);
        assert_eq!(run.code, 2, "{command}");
        assert!(run.err.contains("`-` (standard input)"), "{}", run.err);
    }
}
