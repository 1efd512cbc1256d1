//! `export` reads the server's store and writes lines that `analyze`
//! reads back as it reads the store itself.

use crate::analyze::stored;
use crate::{make_store, relaycb};

#[test]
fn export_writes_one_line_per_stored_event_and_filters_by_time_and_task() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relaycb.db");
    let mut rows = stored("exit_and_restart");
    rows.extend(
        stored("restart_loop")
            .into_iter()
            .map(|(id, at, _, raw)| (id + 100, at, 3, raw)),
    );
    make_store(&db, &rows);
    let db = db.to_string_lossy().into_owned();

    let run = relaycb(&["export", "--db", &db]);
    assert_eq!(run.code, 0, "{}", run.err);
    assert_eq!(run.out.lines().count(), rows.len());
    let first: serde_json::Value = serde_json::from_str(run.out.lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], 1);
    assert_eq!(first["deliveries"], 1);
    assert_eq!(first["raw"].as_str().unwrap(), rows[0].3);
    assert!(
        run.err
            .starts_with(&format!("exported {} events", rows.len()))
    );

    let run = relaycb(&[
        "export",
        "--db",
        &db,
        "--task",
        "200005",
        "--since",
        "2025-12-03T23:22:00Z",
    ]);
    assert_eq!(run.code, 0, "{}", run.err);
    assert_eq!(run.out.lines().count(), 4, "{}", run.out);

    // A task with nothing to export fails, as analyze --task does.
    let run = relaycb(&["export", "--db", &db, "--task", "20005"]);
    assert_eq!(run.code, 1, "{}", run.err);
    assert!(run.out.is_empty());
    assert!(
        run.err.ends_with("error: no events of task \"20005\"\n"),
        "{}",
        run.err
    );

    let export = dir.path().join("export.jsonl");
    std::fs::write(&export, relaycb(&["export", "--db", &db]).out).unwrap();
    let from_export = relaycb(&["analyze", "--format", "json", &export.to_string_lossy()]);
    let from_store = relaycb(&["analyze", "--format", "json", &db]);
    assert_eq!(from_export.out, from_store.out);
    let report: serde_json::Value = serde_json::from_str(&from_store.out).unwrap();
    assert_eq!(report["summary"]["deliveries"], 8 + 8 * 3);
    assert_eq!(report["summary"]["stored_repeats"], 8 * 2);
}

/// An exit without `task_id` that the server attributed to a task by its
/// sources is one of that task's events, as the server lists them.
#[test]
fn export_of_a_task_includes_the_events_attributed_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relaycb.db");
    let rows = stored("exit_and_restart");
    make_store(&db, &rows);
    let attributed = rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE events SET attributed_to = '200002' WHERE task_id IS NULL",
            [],
        )
        .unwrap();
    assert_eq!(
        attributed, 1,
        "the sequence ends with an exit without task_id"
    );
    let db = db.to_string_lossy().into_owned();

    let run = relaycb(&["export", "--db", &db, "--task", "200002"]);
    assert_eq!(run.code, 0, "{}", run.err);
    assert_eq!(run.out.lines().count(), rows.len(), "{}", run.out);
    let last: serde_json::Value = serde_json::from_str(run.out.lines().last().unwrap()).unwrap();
    assert!(
        !last["raw"].as_str().unwrap().contains("task_id"),
        "the attributed exit is exported: {last}"
    );
}

#[test]
fn export_refuses_a_time_it_cannot_read_as_a_usage_error() {
    let run = relaycb(&["export", "--db", "unused.db", "--since", "last tuesday"]);
    assert_eq!(run.code, 2);
    assert!(
        run.err
            .starts_with("error: cannot read \"last tuesday\" as a time"),
        "{}",
        run.err
    );
}

/// The server counts a task's duplicates as `deliveries - 1` of each of its
/// stored events; analyze counts those and the repeats it recognises itself.
#[test]
fn a_tasks_duplicates_count_the_repeats_the_store_had_merged() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.db");
    let rows: Vec<_> = stored("restart_loop")
        .into_iter()
        .map(|(id, at, _, raw)| (id, at, 3, raw))
        .collect();
    make_store(&one, &rows);
    let one = one.to_string_lossy().into_owned();

    let run = relaycb(&["analyze", "--format", "json", &one]);
    assert_eq!(run.code, 0, "{}", run.err);
    let report: serde_json::Value = serde_json::from_str(&run.out).unwrap();
    assert_eq!(report["summary"]["duplicates"], 0);
    assert_eq!(report["summary"]["stored_repeats"], 16);
    assert_eq!(report["tasks"][0]["task_id"], "200005");
    assert_eq!(
        report["tasks"][0]["duplicates"], 16,
        "8 events, each delivered 3 times"
    );

    let run = relaycb(&["analyze", "--task", "200005", "--format", "json", &one]);
    let task: serde_json::Value = serde_json::from_str(&run.out).unwrap();
    assert_eq!(task["task"]["duplicates"], 16);

    // The same events stored by a second server: each row repeats one of
    // the first store's, and merged 2 repeats of its own.
    let two = dir.path().join("two.db");
    make_store(&two, &rows);
    let two = two.to_string_lossy().into_owned();
    let run = relaycb(&["analyze", "--format", "json", &one, &two]);
    let report: serde_json::Value = serde_json::from_str(&run.out).unwrap();
    let summary = &report["summary"];
    assert_eq!(summary["deliveries"], 48);
    assert_eq!(summary["events"], 8);
    assert_eq!(summary["duplicates"], 8);
    assert_eq!(summary["stored_repeats"], 32);
    assert_eq!(
        report["tasks"][0]["duplicates"], 40,
        "every delivery but the first of each event"
    );
}
