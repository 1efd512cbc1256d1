//! The callback endpoint: retries, each kind of refusal with its status and
//! stored body, the URL token, signatures and the body limit.

use axum::http::StatusCode;
use relaycb_core::sign;
use serde_json::{Value, json};

use crate::common::{Harness, fixture};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The documented TaskStart sample with `t` and `sign` set.
fn signed(t: Value, sign: &str) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&fixture("docs/task_start.json")).unwrap();
    body["t"] = t;
    body["sign"] = json!(sign);
    serde_json::to_vec(&body).unwrap()
}

#[tokio::test]
async fn a_retry_answers_200_is_stored_once_and_counted() {
    let h = Harness::new(&[]).await;
    let body = fixture("docs/task_start.json");
    for _ in 0..3 {
        let (status, answer) = h.post("/callback", body.clone()).await;
        assert_eq!((status, answer), (StatusCode::OK, json!({ "code": 0 })));
    }
    // The same event re-signed by Tencent (new t and sign) is the same event.
    let (status, _) = h
        .post("/callback", signed(json!(now() + 600), "0123"))
        .await;
    assert_eq!(status, StatusCode::OK);

    let events = h.ok("/api/events").await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["deliveries"], 4);
    assert!(events[0]["last_received_at_ms"].as_i64() >= events[0]["received_at_ms"].as_i64());
    let task = h.ok("/api/tasks/118148").await;
    assert_eq!(task["events"].as_array().unwrap().len(), 1);
    assert_eq!(task["starts"], 1);
    assert_eq!(task["duplicates"], 3);
    let (_, metrics) = h.get_bytes("/metrics").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("relaycb_duplicates_total 3"), "{metrics}");
    h.close().await;
}

#[tokio::test]
async fn each_refusal_has_its_status_reason_and_kept_body() {
    let h = Harness::new(&[]).await;
    let cases: [(&[u8], u16, &str, &str); 6] = [
        (b"not json", 400, "syntax", "not_json"),
        (b"[1, 2]", 400, "not_relay", "not_object"),
        (br#"{"event_type": 314}"#, 422, "missing", "missing_field"),
        (
            br#"{"callback_event": 5, "event_type": 314}"#,
            422,
            "wrong_type",
            "wrong_type",
        ),
        (
            br#"{"callback_event": "TaskStart", "event_type": 100}"#,
            422,
            "not_relay",
            "not_relay",
        ),
        (b"", 400, "syntax", "not_json"),
    ];
    for (body, status, category, kind) in cases {
        let (got, answer) = h.post("/callback", body).await;
        assert_eq!(got.as_u16(), status, "{answer}");
        assert_eq!(answer["code"], status);
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
        let listed = h.ok("/api/rejected?limit=1").await;
        let newest = &listed["rejected"][0];
        assert_eq!(newest["status"], status);
        assert_eq!(newest["category"], category);
        assert_eq!(newest["kind"], kind);
        assert_eq!(newest["reason"], answer["error"]);
        let id = newest["id"].as_i64().unwrap();
        let (_, raw) = h.get_bytes(&format!("/api/rejected/{id}/raw")).await;
        assert_eq!(raw, body);
    }
    let listed = |query: &'static str| {
        let h = &h;
        async move {
            h.ok(&format!("/api/rejected{query}")).await["rejected"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(listed("").await, 6);
    // A refusal counted by the metric is found under the same name.
    let (_, metrics) = h.get_bytes("/metrics").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains(r#"relaycb_rejections_total{reason="not_json"} 2"#),
        "{metrics}"
    );
    assert_eq!(listed("?kind=not_json").await, 2);
    assert_eq!(listed("?category=not_relay").await, 2);
    assert_eq!(listed("?category=not_relay&kind=not_object").await, 1);
    assert_eq!(listed("?kind=").await, 6, "an empty filter is no filter");
    assert_eq!(listed("?kind=token_mismatch").await, 0);
    h.close().await;
}

#[tokio::test]
async fn any_content_type_is_accepted_when_the_body_is_json() {
    let h = Harness::new(&[]).await;
    let request = axum::http::Request::post("/callback")
        .header("content-type", "text/plain")
        .body(axum::body::Body::from(fixture("docs/task_alarm.json")))
        .unwrap();
    let (status, _) = h.send(request).await;
    assert_eq!(status, StatusCode::OK);
    h.close().await;
}

#[tokio::test]
async fn the_url_token_is_required_when_configured() {
    let h = Harness::new(&["--callback-token", "s3cret"]).await;
    let body = fixture("docs/task_start.json");
    let (status, answer) = h.post("/callback", body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["code"], 401);
    assert!(answer["error"].as_str().unwrap().contains("missing"));
    let (status, answer) = h.post("/callback?token=wrong", body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(answer["error"].as_str().unwrap().contains("mismatch"));
    assert!(!answer.to_string().contains("s3cret"));
    let (status, _) = h.post("/callback?token=s3cret", body.clone()).await;
    assert_eq!(status, StatusCode::OK);

    let rejected = h.ok("/api/rejected").await;
    let rejected = rejected["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert!(
        rejected
            .iter()
            .all(|r| r["category"] == "token" && r["status"] == 401)
    );
    h.close().await;
}

#[tokio::test]
async fn signatures_are_checked_when_a_key_is_configured() {
    let h = Harness::new(&["--callback-key", "old", "--callback-key", "k3y"]).await;
    let t = now() + 600;
    let cases = [
        (signed(json!(t), &sign("k3y", t)), 200, None),
        (signed(json!(t.to_string()), &sign("old", t)), 200, None),
        (signed(json!(t), &sign("other", t)), 401, Some("mismatch")),
        (
            signed(json!(now() - 3600), &sign("k3y", now() - 3600)),
            401,
            Some("expired"),
        ),
        (
            signed(json!(now() + 7200), &sign("k3y", now() + 7200)),
            401,
            Some("future"),
        ),
    ];
    for (body, status, words) in cases {
        let (got, answer) = h.post("/callback", body).await;
        assert_eq!(got.as_u16(), status, "{answer}");
        if let Some(words) = words {
            assert!(
                answer["error"].as_str().unwrap().contains(words),
                "{answer}"
            );
        }
    }
    // Unsigned bodies pass unless signatures are required.
    let (status, _) = h.post("/callback", fixture("docs/task_alarm.json")).await;
    assert_eq!(status, StatusCode::OK);
    let rejected = h.ok("/api/rejected").await;
    assert!(
        rejected["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["category"] == "signature")
    );
    h.close().await;

    let h = Harness::new(&["--callback-key", "k3y", "--require-signature"]).await;
    let (status, answer) = h.post("/callback", fixture("docs/task_alarm.json")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        answer["error"].as_str().unwrap().contains("missing"),
        "{answer}"
    );
    let (status, _) = h.post("/callback", signed(json!(t), &sign("k3y", t))).await;
    assert_eq!(status, StatusCode::OK);
    h.close().await;
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_and_the_part_read_is_kept() {
    let h = Harness::new(&["--max-body", "100"]).await;
    let body = fixture("docs/task_start.json");
    assert!(body.len() > 100);
    let (status, answer) = h.post("/callback", body.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["code"], 413);
    let rejected = h.ok("/api/rejected/1").await;
    assert_eq!(rejected["truncated"], true);
    assert_eq!(rejected["size"], 100);
    assert_eq!(rejected["category"], "too_large");
    let (_, raw) = h.get_bytes("/api/rejected/1/raw").await;
    assert_eq!(raw, &body[..100]);
    // Exactly at the limit is fine.
    let small = br#"{"callback_event":"TaskStart","event_type":314,"task_id":"1"}"#;
    let h = h.restart().await;
    let (status, _) = h.post("/callback", &small[..]).await;
    assert_eq!(status, StatusCode::OK);
    h.close().await;
}

#[tokio::test]
async fn the_rejected_store_is_bounded_oldest_first_and_counts_what_it_drops() {
    let h = Harness::new(&["--max-rejected", "2"]).await;
    for body in ["a", "b", "c", "d"] {
        let (status, _) = h.post("/callback", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let listed = h.ok("/api/rejected").await;
    let raws: Vec<i64> = listed["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(raws, [4, 3]);
    assert_eq!(listed["dropped"], 2);
    let (_, metrics) = h.get_bytes("/metrics").await;
    assert!(
        String::from_utf8(metrics)
            .unwrap()
            .contains("relaycb_rejected_dropped_total 2")
    );
    h.close().await;
}

#[tokio::test]
async fn deviations_and_unknown_events_are_accepted_and_flagged() {
    let h = Harness::new(&[]).await;
    let (status, _) = h
        .post("/callback", fixture("drift/event_undocumented.json"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let event = h.ok("/api/events/1").await;
    let kinds: Vec<&str> = event["deviations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"unknown_event"), "{kinds:?}");
    let (_, metrics) = h.get_bytes("/metrics").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains(r#"relaycb_deviations_total{kind="unknown_event"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"relaycb_callbacks_total{event="unknown",outcome="stored"} 1"#));
    h.close().await;
}
