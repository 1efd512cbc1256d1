//! Every file under `fixtures/` posted to the callback endpoint: documented
//! and drifted bodies are accepted and stored with their deviations,
//! invalid ones are refused with their status and kept, sequences fold into
//! task states. Adding a fixture adds a snapshot.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::{Harness, block_on, redact};

#[test]
fn documented_and_drifted_bodies_are_stored_byte_for_byte_with_their_deviations() {
    insta::glob!("../../../../fixtures", "{docs,drift}/*.json", |path| {
        let body = std::fs::read(path).unwrap();
        block_on(async {
            let h = Harness::new(&[]).await;
            let (status, answer) = h.post("/callback", body.clone()).await;
            assert_eq!(status, StatusCode::OK, "{}: {answer}", path.display());
            assert_eq!(answer, json!({ "code": 0 }));
            let (_, raw) = h.get_bytes("/api/events/1/raw").await;
            assert_eq!(raw, body, "the raw body must come back byte for byte");
            let event = h.ok("/api/events/1").await;
            insta::assert_json_snapshot!(redact(event));
            h.close().await;
        });
    });
}

#[test]
fn invalid_bodies_are_refused_with_their_status_and_kept() {
    insta::glob!("../../../../fixtures", "invalid/*", |path| {
        let body = std::fs::read(path).unwrap();
        block_on(async {
            let h = Harness::new(&[]).await;
            let (status, answer) = h.post("/callback", body.clone()).await;
            assert!(
                status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
                "{}: {status}",
                path.display()
            );
            assert_eq!(answer["code"], status.as_u16());
            let (_, raw) = h.get_bytes("/api/rejected/1/raw").await;
            assert_eq!(raw, body, "the refused body must be kept byte for byte");
            let events = h.ok("/api/events").await;
            assert_eq!(events["events"], json!([]), "nothing refused is an event");
            let rejected = h.ok("/api/rejected/1").await;
            insta::assert_json_snapshot!(redact(json!({
                "status": status.as_u16(),
                "answer": answer,
                "rejected": rejected,
            })));
            h.close().await;
        });
    });
}

#[test]
fn sequences_fold_into_task_states_and_survive_a_restart() {
    insta::glob!("../../../../fixtures", "sequences/*.jsonl", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        block_on(async {
            let h = Harness::new(&[]).await;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let (status, answer) = h.post("/callback", line).await;
                assert_eq!(status, StatusCode::OK, "{answer}");
                crate::common::next_millisecond().await;
            }
            let tasks = h.ok("/api/tasks").await;
            let ids: Vec<String> = tasks["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["task_id"].as_str().unwrap().to_owned())
                .collect();
            let mut details = Vec::new();
            for id in &ids {
                details.push(h.ok(&format!("/api/tasks/{id}")).await);
            }
            insta::assert_json_snapshot!(redact(json!({ "tasks": tasks, "details": details })));

            // A restart rebuilds the same state from the store.
            let h = h.restart().await;
            let again = h.ok("/api/tasks").await;
            assert_eq!(redact(again), redact(tasks));
            for (id, before) in ids.iter().zip(&details) {
                let after = h.ok(&format!("/api/tasks/{id}")).await;
                assert_eq!(redact(after), redact(before.clone()));
            }
            h.close().await;
        });
    });
}
