//! Every file under `fixtures/` is a test: the decoded form and deviations
//! of the documented and drifted bodies, the error of the invalid ones, and
//! the folded task states of the sequences. Adding a file adds a test.

use relaycb_core::{DedupKey, Observation, Tracker, decode, encode};
use serde_json::json;

#[test]
fn documented_bodies_decode_without_deviation_except_the_samples_own_gaps() {
    insta::glob!("../../../fixtures", "docs/*.json", |path| {
        let bytes = std::fs::read(path).unwrap();
        let decoded = decode(&bytes).unwrap();
        insta::assert_json_snapshot!(json!({
            "callback": decoded.callback,
            "deviations": decoded.deviations,
        }));
    });
}

#[test]
fn drifted_bodies_are_accepted_and_each_drift_is_reported() {
    insta::glob!("../../../fixtures", "drift/*.json", |path| {
        let bytes = std::fs::read(path).unwrap();
        let decoded = decode(&bytes).unwrap();
        assert!(
            !decoded.deviations.is_empty(),
            "a drift fixture must deviate: {}",
            path.display()
        );
        let said: Vec<String> = decoded.deviations.iter().map(ToString::to_string).collect();
        insta::assert_json_snapshot!(json!({
            "callback": decoded.callback,
            "deviations": said,
        }));
    });
}

#[test]
fn invalid_bodies_are_refused_with_the_field_and_the_reason() {
    insta::glob!("../../../fixtures", "invalid/*", |path| {
        let bytes = std::fs::read(path).unwrap();
        let error = decode(&bytes).expect_err("an invalid fixture must be refused");
        insta::assert_snapshot!(format!(
            "category: {}\npath: {}\nmessage: {error}",
            error.category(),
            error.path().unwrap_or("-"),
        ));
    });
}

#[test]
fn sequences_fold_into_the_task_states_they_describe() {
    insta::glob!("../../../fixtures", "sequences/*.jsonl", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let mut tracker = Tracker::new();
        for (line, body) in text.lines().enumerate() {
            let decoded = decode(body.as_bytes()).unwrap();
            tracker.observe(Observation {
                id: line as u64 + 1,
                key: DedupKey::of_body(body.as_bytes()).unwrap(),
                received_at_ms: None,
                callback: &decoded.callback,
            });
        }
        let now = tracker.latest_ms();
        let tasks: Vec<_> = tracker.tasks(now).collect();
        let unattributed: Vec<_> = tracker.unattributed().collect();
        insta::assert_json_snapshot!(json!({
            "tasks": tasks,
            "unattributed": unattributed,
        }));
    });
}

#[test]
fn every_accepted_fixture_survives_encode_then_decode() {
    insta::glob!("../../../fixtures", "{docs,drift}/*.json", |path| {
        let bytes = std::fs::read(path).unwrap();
        let first = decode(&bytes).unwrap().callback;
        let again = decode(&encode(&first)).unwrap().callback;
        assert_eq!(first, again, "{}", path.display());
    });
}

/// The samples end the encoded `source_urls` with a newline; without one it
/// means the same and is not worth a deviation.
#[test]
fn source_urls_trailing_newline_is_optional() {
    let with = std::fs::read_to_string("../../fixtures/docs/task_start.json").unwrap();
    let without = with.replace(r#"]\n""#, r#"]""#);
    assert_ne!(with, without);
    let a = decode(with.as_bytes()).unwrap();
    let b = decode(without.as_bytes()).unwrap();
    assert_eq!(a, b);
}

/// Inputs the fuzzer once broke the decoder with (`cargo xtask fuzz` keeps
/// them here): each must decode or be refused without panicking, and what
/// decodes must survive encoding again.
#[test]
fn fuzz_findings_stay_fixed() {
    let Ok(entries) = std::fs::read_dir("../../fixtures/fuzz") else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if let Ok(decoded) = decode(&bytes) {
            let again = decode(&encode(&decoded.callback)).unwrap();
            assert_eq!(again.callback, decoded.callback, "{}", path.display());
        }
    }
}
