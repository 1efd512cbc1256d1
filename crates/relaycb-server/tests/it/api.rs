//! The JSON API: filters, pagination, not-found answers and the bearer
//! token.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use crate::common::{Harness, fixtures, redact};

async fn post_sequence(h: &Harness, name: &str) {
    let text = std::fs::read_to_string(fixtures().join("sequences").join(name)).unwrap();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (status, answer) = h.post("/callback", line).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        crate::common::next_millisecond().await;
    }
}

fn task_ids(tasks: &Value) -> Vec<&str> {
    tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn tasks_filter_by_phase_and_anomalies() {
    let h = Harness::new(&[]).await;
    post_sequence(&h, "restart_loop.jsonl").await;
    post_sequence(&h, "playlist_loop.jsonl").await;
    let all = h.ok("/api/tasks").await;
    assert_eq!(task_ids(&all), ["200001", "200005"]);
    for t in all["tasks"].as_array().unwrap() {
        for key in [
            "task_id",
            "phase",
            "current_file",
            "starts",
            "restarts",
            "files_started",
            "files_finished",
            "loops",
            "alarms",
            "last_exit",
            "anomalies",
            "last_event_at",
        ] {
            assert!(t.get(key).is_some(), "task lacks {key}: {t}");
        }
    }
    let phases: Vec<(String, String)> = all["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["task_id"].as_str().unwrap().into(),
                t["phase"].as_str().unwrap().into(),
            )
        })
        .collect();
    for (id, phase) in &phases {
        let filtered = h.ok(&format!("/api/tasks?phase={phase}")).await;
        assert!(task_ids(&filtered).contains(&id.as_str()));
        assert!(
            filtered["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["phase"] == **phase)
        );
    }
    let anomalous = h.ok("/api/tasks?has_anomalies=true").await;
    assert!(
        task_ids(&anomalous).contains(&"200005"),
        "a restart loop is an anomaly"
    );
    let calm = h.ok("/api/tasks?has_anomalies=false").await;
    assert!(
        calm["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["anomalies"] == json!([]))
    );

    let (status, answer) = h.get("/api/tasks?phase=sleeping").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["code"], 400);
    let (status, answer) = h.get("/api/tasks?has_anomalies=yes").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer["error"],
        "has_anomalies must be true or false, found \"yes\""
    );
    // Empty, as any filter: as if not given.
    assert_eq!(
        h.ok("/api/tasks?has_anomalies=").await["tasks"],
        all["tasks"]
    );
    h.close().await;
}

#[tokio::test]
async fn tasks_come_in_pages_that_together_are_the_whole_list() {
    // A task id is any text: the cursor, which is one, must be sent
    // percent-encoded like any other query value.
    const ODD: &str = "t3 +&=é";
    let h = Harness::new(&[]).await;
    for task in ["t1", "t2", ODD, "t4", "t5"] {
        let (status, answer) = h
            .post("/callback", crate::nats::body(task, "TaskStart", 0))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    // Two tasks have exited: a filter applies before the page is cut.
    for task in ["t2", "t4"] {
        let (status, answer) = h
            .post("/callback", crate::nats::body(task, "TaskExit", 1))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let all = h.ok("/api/tasks").await;
    assert_eq!(task_ids(&all), ["t1", "t2", ODD, "t4", "t5"]);
    assert_eq!(all["next_cursor"], Value::Null, "no limit: no next page");

    let mut paged = Vec::new();
    let mut uri = "/api/tasks?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = h.ok(&uri).await;
        pages += 1;
        let ids = task_ids(&page);
        assert!(ids.len() <= 2, "{page}");
        paged.extend(ids.iter().map(|id| id.to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                assert_eq!(Some(&cursor), ids.last(), "the cursor is the last id shown");
                let query = serde_urlencoded::to_string([("limit", "2"), ("cursor", cursor)]);
                uri = format!("/api/tasks?{}", query.unwrap());
            }
            None => break,
        }
    }
    assert_eq!(paged, ["t1", "t2", ODD, "t4", "t5"]);
    assert_eq!(pages, 3);

    // A full last page says it is the last.
    let last = h.ok("/api/tasks?limit=2&cursor=t3%20%2B%26%3D%C3%A9").await;
    assert_eq!(task_ids(&last), ["t4", "t5"]);
    assert_eq!(last["next_cursor"], Value::Null);

    let exited = h.ok("/api/tasks?phase=exited&limit=1").await;
    assert_eq!(task_ids(&exited), ["t2"]);
    assert_eq!(exited["next_cursor"], "t2");
    let exited = h.ok("/api/tasks?phase=exited&limit=1&cursor=t2").await;
    assert_eq!(task_ids(&exited), ["t4"]);
    assert_eq!(exited["next_cursor"], Value::Null);

    for bad in ["0", "1001", "two"] {
        let (status, answer) = h.get(&format!("/api/tasks?limit={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("limit"),
            "{answer}"
        );
    }
    h.close().await;
}

#[tokio::test]
async fn an_exit_without_task_id_is_attributed_by_its_sources_or_reported() {
    let h = Harness::new(&[]).await;
    // The TaskExit sample has no task_id and sources no task has: reported.
    let (status, _) = h
        .post("/callback", crate::common::fixture("docs/task_exit.json"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let tasks = h.ok("/api/tasks").await;
    assert_eq!(tasks["unattributed_total"], 1);
    assert_eq!(tasks["unattributed"][0]["event"], 1);

    // Once a task with those sources is known, the same kind of exit is
    // folded into it and listed in its timeline.
    let mut start: Value =
        serde_json::from_slice(&crate::common::fixture("docs/task_start.json")).unwrap();
    let mut exit: Value =
        serde_json::from_slice(&crate::common::fixture("docs/task_exit.json")).unwrap();
    start["source_urls"] = json!("[\"http://a.example/only.m3u8\"]\n");
    exit["source_urls"] = start["source_urls"].clone();
    for body in [&start, &exit] {
        let (status, _) = h.post("/callback", serde_json::to_vec(body).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        crate::common::next_millisecond().await;
    }
    let task = h.ok("/api/tasks/118148").await;
    assert_eq!(task["phase"], "exited");
    let names: Vec<&str> = task["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["callback_event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["TaskStart", "TaskExit"]);
    let exit_row = &task["events"][1];
    assert_eq!(exit_row["task_id"], Value::Null);
    assert_eq!(exit_row["attributed_to"], "118148");
    let filtered = h.ok("/api/events?task_id=118148").await;
    assert_eq!(filtered["events"].as_array().unwrap().len(), 2);

    // The attribution is rebuilt identically after a restart.
    let before = h.ok("/api/tasks").await;
    let h = h.restart().await;
    assert_eq!(redact(h.ok("/api/tasks").await), redact(before));
    h.close().await;
}

#[tokio::test]
async fn unknown_ids_answer_404_in_json() {
    let h = Harness::new(&[]).await;
    for uri in [
        "/api/tasks/nope",
        "/api/events/99",
        "/api/rejected/99",
        "/api/nothing",
    ] {
        let (status, answer) = h.get(uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(answer["code"], 404);
        assert!(answer["error"].is_string());
    }
    let (status, answer) = h.get("/api/events/abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    insta::assert_json_snapshot!(answer, @r#"
    {
      "code": 400,
      "error": "expected a numeric id, found \"abc\""
    }
    "#);
    h.close().await;
}

#[tokio::test]
async fn events_are_newest_first_filtered_and_paginated() {
    let h = Harness::new(&[]).await;
    post_sequence(&h, "playlist_loop.jsonl").await;
    post_sequence(&h, "restart_loop.jsonl").await;
    let all = h.ok("/api/events?limit=1000").await;
    let all: Vec<i64> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(all.windows(2).all(|w| w[0] > w[1]), "newest first: {all:?}");

    let mut walked = Vec::new();
    let mut uri = "/api/events?limit=3".to_owned();
    loop {
        let page = h.ok(&uri).await;
        walked.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/api/events?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(walked, all);

    let exits = h.ok("/api/events?task_id=200005&event=TaskExit").await;
    let exits = exits["events"].as_array().unwrap();
    assert!(!exits.is_empty());
    assert!(
        exits
            .iter()
            .all(|e| e["callback_event"] == "TaskExit" && e["task_id"] == "200005")
    );

    let future = h.ok("/api/events?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future["events"], json!([]));
    let past = h.ok("/api/events?since=0&limit=1000").await;
    assert_eq!(past["events"].as_array().unwrap().len(), all.len());

    let (status, _) = h.get("/api/events?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = h.get("/api/events?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    h.close().await;
}

#[tokio::test]
async fn the_api_needs_the_bearer_token_when_one_is_set() {
    let h = Harness::new(&["--api-token", "t0ken"]).await;
    let (status, answer) = h.get("/api/tasks").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["code"], 401);
    let request = |token: &str| {
        Request::get("/api/tasks")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, _) = h.send(request("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = h.send(request("t0ken")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["tasks"],
        json!([])
    );
    // Operational routes stay open; callbacks are not behind the API token.
    assert_eq!(h.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(h.get("/readyz").await.0, StatusCode::OK);
    h.close().await;
}

#[tokio::test]
async fn a_task_shows_its_timeline_in_event_order() {
    let h = Harness::new(&[]).await;
    post_sequence(&h, "out_of_order.jsonl").await;
    let task = h.ok("/api/tasks/200004").await;
    let events = task["events"].as_array().unwrap();
    let times: Vec<i64> = events
        .iter()
        .map(|e| {
            e["occurred_at_ms"]
                .as_i64()
                .unwrap_or_else(|| e["received_at_ms"].as_i64().unwrap())
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(task["task_id"], "200004");
    assert_eq!(task["events_total"], events.len());
    insta::assert_json_snapshot!(redact(task["anomalies"].clone()));

    // `limit` keeps the latest events, still in event order.
    let latest = h.ok("/api/tasks/200004?limit=2").await;
    assert_eq!(latest["events_total"], events.len());
    assert_eq!(
        latest["events"].as_array().unwrap(),
        &events[events.len() - 2..]
    );
    // White space around a task id is no part of it, as in a callback.
    assert_eq!(h.ok("/api/tasks/%20200004%09?limit=2").await, latest);
    assert_eq!(
        h.ok("/api/events?task_id=%20200004").await,
        h.ok("/api/events?task_id=200004").await
    );
    let (status, answer) = h.get("/api/tasks/200004?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = h.get("/api/tasks/200004?cursor=3").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("`cursor`"),
        "{answer}"
    );
    h.close().await;
}

/// Every page holds events, and the last one says it is the last even when
/// it is full; a task's pages are its events, newest first, each once.
#[tokio::test]
async fn pages_end_with_the_last_full_page_and_never_with_an_empty_one() {
    let h = Harness::new(&[]).await;
    post_sequence(&h, "exit_and_restart.jsonl").await;
    post_sequence(&h, "restart_loop.jsonl").await;
    for base in [
        "/api/events?",
        "/api/events?task_id=200002&",
        "/api/rejected?",
    ] {
        let all = h.ok(&format!("{base}limit=1000")).await;
        let key = if base.starts_with("/api/rejected") {
            "rejected"
        } else {
            "events"
        };
        let ids = |page: &Value| -> Vec<i64> {
            page[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_i64().unwrap())
                .collect()
        };
        let all = ids(&all);
        for limit in [1, 2, all.len().max(1)] {
            let mut walked = Vec::new();
            let mut uri = format!("{base}limit={limit}");
            loop {
                let page = h.ok(&uri).await;
                let got = ids(&page);
                assert!(!got.is_empty() || all.is_empty(), "an empty page at {uri}");
                walked.extend(got);
                match page["next_cursor"].as_str() {
                    Some(cursor) => uri = format!("{base}limit={limit}&cursor={cursor}"),
                    None => break,
                }
            }
            assert_eq!(walked, all, "{base} in pages of {limit}");
        }
    }
    h.close().await;
}

/// A misspelt parameter, a limit that is no count and a time that is no
/// time are refused with what was wrong; `since` takes the forms `relaycb
/// export --since` takes.
#[tokio::test]
async fn query_parameters_are_checked_by_name_and_form() {
    let h = Harness::new(&[]).await;
    post_sequence(&h, "exit_and_restart.jsonl").await;
    let (status, answer) = h.get("/api/events?task=200002").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.starts_with("unknown parameter `task`") && error.contains("`task_id`"),
        "{error}"
    );
    let (status, answer) = h.get("/api/events?limit=2&limit=3").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"], "parameter `limit` given more than once");
    // Routes of one thing take no parameters, and say so.
    for route in [
        "/api/events/1",
        "/api/events/1/raw",
        "/api/rejected/1",
        "/api/rejected/1/raw",
    ] {
        let (status, answer) = h.get(&format!("{route}?x=1")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{route}: {answer}");
        assert_eq!(
            answer["error"], "unknown parameter `x`, this route takes none",
            "{route}"
        );
    }
    // A filter of fixed values is checked, so that a misspelling is not
    // taken for an empty list.
    for filter in ["kind=NOT_JSON", "category=bogus"] {
        let (status, answer) = h.get(&format!("/api/rejected?{filter}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{filter}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("is none of"),
            "{answer}"
        );
    }
    let (status, answer) = h.get("/api/tasks?phases=running").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = h.get("/api/rejected?limt=3").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    for bad in ["-1", "0", "1001", "ten"] {
        let (status, answer) = h.get(&format!("/api/events?limit={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            answer["error"],
            format!("limit must be a whole number from 1 to 1000, found {bad:?}")
        );
    }
    let (status, answer) = h.get("/api/events?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("since: cannot read \"yesterday\" as a time"),
        "{answer}"
    );
    // `since` is about arrival: everything arrived within the last hour.
    let all = h.ok("/api/events?limit=1000").await;
    let recent = h.ok("/api/events?since=1h&limit=1000").await;
    assert_eq!(recent["events"], all["events"]);
    assert!(!all["events"].as_array().unwrap().is_empty());
    h.close().await;
}
