//! `analyze` over the sequence fixtures, as bare bodies, as export lines
//! and as the server's SQLite store, and the `--task` and `--plot` outputs.

use crate::{fixture, relaycb, workspace};

#[test]
fn every_sequence_is_reported_task_by_task() {
    insta::glob!("../../../../fixtures", "sequences/*.jsonl", |path| {
        let run = relaycb(&["analyze", &fixture(path)]);
        assert_eq!(run.code, 0, "{}", run.err);
        insta::assert_snapshot!(run.out);
    });
}

#[test]
fn every_sequence_has_a_json_report() {
    insta::glob!("../../../../fixtures", "sequences/*.jsonl", |path| {
        let run = relaycb(&["analyze", "--format", "json", &fixture(path)]);
        assert_eq!(run.code, 0, "{}", run.err);
        let value: serde_json::Value = serde_json::from_str(&run.out).unwrap();
        insta::assert_json_snapshot!(value);
    });
}

#[test]
fn markdown_report_of_all_sequences_together() {
    let paths: Vec<String> = ["exit_and_restart", "retry_storm"]
        .iter()
        .map(|name| format!("../../fixtures/sequences/{name}.jsonl"))
        .collect();
    let run = relaycb(&["analyze", "--format", "markdown", &paths[0], &paths[1]]);
    assert_eq!(run.code, 0, "{}", run.err);
    insta::assert_snapshot!(run.out);
}

#[test]
fn task_timeline_lists_every_delivery_in_event_order() {
    let run = relaycb(&[
        "analyze",
        "--task",
        "200004",
        "../../fixtures/sequences/out_of_order.jsonl",
    ]);
    assert_eq!(run.code, 0, "{}", run.err);
    insta::assert_snapshot!(run.out);
}

/// The bodies of a sequence fixture as export lines and as rows of the
/// server's store, each arriving when it happened (a body without a time
/// together with the one before), so that the fold matches the bare log's.
pub(crate) fn stored(name: &str) -> Vec<(u64, i64, u64, String)> {
    let text =
        std::fs::read_to_string(workspace().join(format!("fixtures/sequences/{name}.jsonl")))
            .unwrap();
    let mut arrival = 0;
    text.lines()
        .enumerate()
        .map(|(i, body)| {
            let value: serde_json::Value = serde_json::from_str(body).unwrap();
            if let Some(seconds) = value["event_time"].as_str() {
                arrival = seconds.parse::<i64>().unwrap() * 1000;
            }
            (i as u64 + 1, arrival, 1, body.to_owned())
        })
        .collect()
}

#[test]
fn export_lines_and_the_sqlite_store_give_the_same_tasks_as_bare_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let rows = stored("exit_and_restart");

    let export = dir.path().join("export.jsonl");
    let lines: Vec<String> = rows
        .iter()
        .map(|(id, at, deliveries, raw)| {
            serde_json::json!({"id": id, "received_at_ms": at, "last_received_at_ms": at, "deliveries": deliveries, "raw": raw})
                .to_string()
        })
        .collect();
    std::fs::write(&export, lines.join("\n")).unwrap();

    let db_path = dir.path().join("relaycb.db");
    crate::make_store(&db_path, &rows);

    let tasks = |path: &str| {
        let run = relaycb(&["analyze", "--format", "json", path]);
        assert_eq!(run.code, 0, "{}", run.err);
        let report: serde_json::Value = serde_json::from_str(&run.out).unwrap();
        report["tasks"].clone()
    };
    let bare = tasks("../../fixtures/sequences/exit_and_restart.jsonl");
    assert_eq!(tasks(&export.to_string_lossy()), bare);
    assert_eq!(tasks(&db_path.to_string_lossy()), bare);
}

#[test]
fn plot_draws_one_row_per_task() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("plot.svg");
    let run = relaycb(&[
        "analyze",
        "--plot",
        &svg.to_string_lossy(),
        "../../fixtures/sequences/exit_and_restart.jsonl",
        "../../fixtures/sequences/restart_loop.jsonl",
    ]);
    assert_eq!(run.code, 0, "{}", run.err);
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains(">200002</text>") && svg.contains(">200005</text>"));
    assert_eq!(svg.matches("ECONNREFUSED").count(), 4, "one mark per exit");

    // With --task, the picture is of that task alone.
    let one = dir.path().join("one.svg");
    let run = relaycb(&[
        "analyze",
        "--task",
        "200005",
        "--plot",
        &one.to_string_lossy(),
        "../../fixtures/sequences/exit_and_restart.jsonl",
        "../../fixtures/sequences/restart_loop.jsonl",
    ]);
    assert_eq!(run.code, 0, "{}", run.err);
    assert!(
        run.err.contains("wrote a timeline of 1 task(s)"),
        "{}",
        run.err
    );
    let one = std::fs::read_to_string(one).unwrap();
    assert!(one.contains(">200005</text>") && !one.contains(">200002</text>"));

    // The picture is SVG, whatever its name says: another extension is a
    // usage error, and nothing is written.
    let png = dir.path().join("plot.png");
    let run = relaycb(&[
        "analyze",
        "--plot",
        &png.to_string_lossy(),
        "../../fixtures/sequences/exit_and_restart.jsonl",
    ]);
    assert_eq!(run.code, 2, "{}", run.err);
    assert!(run.err.contains("name the file .svg"), "{}", run.err);
    assert!(!png.exists());
}

#[test]
fn a_simulated_log_reports_the_same_whatever_the_number_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sim.jsonl").to_string_lossy().into_owned();
    let run = relaycb(&[
        "simulate", "--tasks", "600", "--seed", "77", "--faults", "--out", &log,
    ]);
    assert_eq!(run.code, 0, "{}", run.err);
    let one = relaycb(&["analyze", "--threads", "1", "--format", "json", &log]);
    let three = relaycb(&["analyze", "--threads", "3", "--format", "json", &log]);
    assert_eq!(one.code, 0, "{}", one.err);
    assert_eq!(one.out, three.out);
    let report: serde_json::Value = serde_json::from_str(&one.out).unwrap();
    assert_eq!(report["summary"]["tasks"], 600);
    assert_eq!(report["summary"]["undecodable"], 0);
    assert_eq!(report["summary"]["unattributed"], 0);
    assert!(
        report["summary"]["records"].as_u64().unwrap() > 4096 * 2,
        "several chunks"
    );
}

#[test]
fn a_log_where_nothing_decodes_is_a_failure_that_says_what_analyze_reads() {
    let run = relaycb(&["analyze", "README.md"]);
    assert_eq!(run.code, 1, "{}", run.out);
    assert_eq!(run.out, "", "no report of nothing");
    assert!(run.err.starts_with("error: none of the "), "{}", run.err);
    assert!(
        run.err.contains(" lines read from README.md is a relay callback that can be decoded (the first: line 1: "),
        "{}",
        run.err
    );
    assert!(
        run.err
            .contains("analyze reads JSON Lines of callback bodies"),
        "{}",
        run.err
    );

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let run = relaycb(&["analyze", "--format", "json", &empty.to_string_lossy()]);
    assert_eq!(run.code, 1, "{}", run.out);
    assert!(
        run.err.contains(": it holds no line or event;"),
        "{}",
        run.err
    );
}

#[test]
fn a_log_where_some_lines_decode_is_still_reported() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mixed.jsonl");
    let good =
        std::fs::read_to_string(workspace().join("fixtures/sequences/restart_loop.jsonl")).unwrap();
    std::fs::write(&log, format!("not a body\n{good}")).unwrap();
    let run = relaycb(&["analyze", &log.to_string_lossy()]);
    assert_eq!(run.code, 0, "{}", run.err);
    assert!(
        run.out.starts_with(
            "9 deliveries in 9 records: 8 distinct events, 0 duplicates, 1 undecodable"
        ),
        "{}",
        run.out
    );
}

#[test]
fn a_task_that_is_not_in_the_log_is_a_failure_that_names_the_tasks_there_are() {
    for format in ["table", "json"] {
        let run = relaycb(&[
            "analyze",
            "--format",
            format,
            "--task",
            "999",
            "../../fixtures/sequences/exit_and_restart.jsonl",
        ]);
        assert_eq!(run.code, 1, "{}", run.out);
        assert_eq!(run.out, "");
        assert_eq!(
            run.err,
            "error: no task 999 in ../../fixtures/sequences/exit_and_restart.jsonl, whose one task is 200002; check the task id (`relaycb analyze` without --task lists every task)\n"
        );
    }
}

#[test]
fn of_several_logs_each_line_is_named_by_its_file_and_its_line_there() {
    let first = "../../fixtures/sequences/exit_and_restart.jsonl";
    let second = "../../fixtures/sequences/out_of_order.jsonl";
    let run = relaycb(&["analyze", first, second]);
    assert_eq!(run.code, 0, "{}", run.err);
    assert!(
        run.out.contains(&format!("({first}:8)\n")),
        "the last exit: {}",
        run.out
    );
    assert!(
        run.out.contains(&format!(
            "3 × out_of_order: arrived after 1 event(s) that happened later ({second}:2, {second}:1, {second}:4, {second}:3, {second}:6, {second}:5)"
        )),
        "{}",
        run.out
    );

    let run = relaycb(&["analyze", "--task", "200004", first, second]);
    assert_eq!(run.code, 0, "{}", run.err);
    assert!(
        run.out
            .contains(&format!("  2025-12-03T23:03:20Z     {second}:2 TaskStart ")),
        "{}",
        run.out
    );

    let run = relaycb(&["analyze", "--format", "json", first, second]);
    let report: serde_json::Value = serde_json::from_str(&run.out).unwrap();
    let task = &report["tasks"][1];
    assert_eq!(task["task_id"], "200004");
    let out_of_order = &task["anomalies"][0];
    assert_eq!(
        out_of_order["events"],
        serde_json::json!([2, 1, 4, 3, 6, 5])
    );
    assert_eq!(out_of_order["locations"][0], format!("{second}:2"));
    assert_eq!(report["tasks"][0]["last_exit"]["event"], 8);
    assert_eq!(
        report["tasks"][0]["last_exit"]["location"],
        format!("{first}:8")
    );
}

#[test]
fn of_several_logs_an_undecodable_line_and_a_stored_row_are_named_by_their_log() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    let good =
        std::fs::read_to_string(workspace().join("fixtures/sequences/restart_loop.jsonl")).unwrap();
    std::fs::write(&bad, format!("{good}not a body\n")).unwrap();
    let bad = bad.to_string_lossy().into_owned();
    let db = dir.path().join("relaycb.db");
    crate::make_store(&db, &stored("exit_and_restart"));
    let db = db.to_string_lossy().into_owned();

    let run = relaycb(&["analyze", &bad, &db]);
    assert_eq!(run.code, 0, "{}", run.err);
    assert!(
        run.out.contains(&format!(
            "\n  WHERE{}REASON\n  {bad}:9 body is not JSON",
            " ".repeat(bad.len() - 2)
        )),
        "{}",
        run.out
    );
    assert!(
        run.out.contains(&format!("({db} id 8)\n")),
        "the last exit is row 8 of the store: {}",
        run.out
    );
    let run = relaycb(&["analyze", "--format", "json", &bad, &db]);
    let report: serde_json::Value = serde_json::from_str(&run.out).unwrap();
    assert_eq!(
        report["undecodable"][0],
        serde_json::json!({"id": 9, "location": format!("{bad}:9"), "reason": report["undecodable"][0]["reason"]})
    );
}

#[test]
fn a_simulation_without_faults_has_no_reordering_to_report() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sim.jsonl").to_string_lossy().into_owned();
    let run = relaycb(&["simulate", "--tasks", "20", "--seed", "1", "--out", &log]);
    assert_eq!(run.code, 0, "{}", run.err);
    let run = relaycb(&["analyze", "--format", "json", &log]);
    assert_eq!(run.code, 0, "{}", run.err);
    let report: serde_json::Value = serde_json::from_str(&run.out).unwrap();
    let reordered: Vec<&serde_json::Value> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["anomalies"].as_array().unwrap())
        .filter(|a| a["kind"] == "out_of_order" || a["kind"] == "too_late")
        .collect();
    assert!(reordered.is_empty(), "{reordered:#?}");
}
