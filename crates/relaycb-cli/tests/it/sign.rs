//! `sign` against values computed independently, and `verify` naming the
//! check that failed.

use crate::relaycb;

#[test]
fn sign_prints_t_and_the_md5_of_key_then_t() {
    // md5("key1700000600"), computed with coreutils md5sum.
    let run = relaycb(&["sign", "--key", "key", "--t", "1700000600"]);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.out,
        "t=1700000600\nsign=bae57a7a26dc8fe289f922d0ba53dde8\n"
    );
}

#[test]
fn sign_needs_t_or_ttl_and_says_so_with_status_2() {
    let run = relaycb(&["sign", "--key", "key"]);
    assert_eq!(run.code, 2);
    assert!(run.err.contains("--t <T>|--ttl <TTL>"), "{}", run.err);
}

#[test]
fn sign_refuses_an_empty_key_with_status_2() {
    let run = relaycb(&["sign", "--key", "", "--ttl", "600"]);
    assert_eq!(run.code, 2);
    assert!(run.err.contains("--key"), "{}", run.err);
    assert!(run.out.is_empty());
}

#[test]
fn sign_with_a_ttl_signs_a_time_that_far_ahead() {
    let run = relaycb(&["sign", "--key", "key", "--ttl", "600"]);
    let t: i64 = run
        .out
        .lines()
        .next()
        .unwrap()
        .strip_prefix("t=")
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((t - now - 600).abs() <= 2, "t={t} now={now}");
}

fn signed_body(dir: &tempfile::TempDir, t: i64, sign: &str) -> String {
    let body = format!(
        r#"{{"appid":1,"callback_event":"TaskStart","event_type":314,"msg":"{{\"task_start_time\":0}}","task_id":"1","t":{t},"sign":"{sign}"}}"#
    );
    let path = dir.path().join(format!("{t}-{sign}.json"));
    std::fs::write(&path, body).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn verify_accepts_a_good_signature_and_names_each_failed_check() {
    let dir = tempfile::tempdir().unwrap();
    let good = signed_body(&dir, 1_700_000_600, "bae57a7a26dc8fe289f922d0ba53dde8");
    let run = relaycb(&["verify", "--key", "key", "--now", "1700000000", &good]);
    assert_eq!(run.code, 0, "{}", run.err);
    assert_eq!(
        run.out,
        "signature valid: t 1700000600 expires 2023-11-14T22:23:20Z (600 s from now)\n"
    );

    let run = relaycb(&[
        "verify",
        "--key",
        "other",
        "--key",
        "key",
        "--now",
        "1700000000",
        &good,
    ]);
    assert_eq!(run.code, 0, "a key ring accepts any of its keys");

    let run = relaycb(&["verify", "--key", "wrong", "--now", "1700000000", &good]);
    assert_eq!(
        (run.code, run.out.as_str()),
        (
            1,
            "signature refused: signature mismatch: sign does not match any configured key\n"
        )
    );

    let run = relaycb(&["verify", "--key", "key", "--now", "1700001000", &good]);
    assert_eq!(
        (run.code, run.out.as_str()),
        (
            1,
            "signature refused: signature expired: t is 6m 40s in the past\n"
        )
    );

    let unsigned = crate::workspace().join("fixtures/docs/task_start.json");
    let run = relaycb(&["verify", "--key", "key", &unsigned.to_string_lossy()]);
    assert_eq!(
        (run.code, run.out.as_str()),
        (
            1,
            "signature refused: signature missing: the body has no t\n"
        )
    );
}

#[test]
fn verify_of_several_files_names_each_body_by_its_file_and_fails_if_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = signed_body(&dir, 1_700_000_600, "bae57a7a26dc8fe289f922d0ba53dde8");
    let forged = signed_body(&dir, 1_700_000_600, "00000000000000000000000000000000");
    let run = relaycb(&[
        "verify",
        "--key",
        "key",
        "--now",
        "1700000000",
        &good,
        &good,
    ]);
    assert_eq!(run.code, 0, "{}", run.err);
    assert_eq!(run.out.lines().count(), 2, "{}", run.out);

    let missing = dir.path().join("missing.json");
    let run = relaycb(&[
        "verify",
        "--key",
        "key",
        "--now",
        "1700000000",
        &good,
        &forged,
        &missing.to_string_lossy(),
    ]);
    assert_eq!(run.code, 1, "{}", run.err);
    assert_eq!(
        run.out,
        format!(
            "{good}: signature valid: t 1700000600 expires 2023-11-14T22:23:20Z (600 s from now)\n\
             {forged}: signature refused: signature mismatch: sign does not match any configured key\n",
        )
    );
    assert!(run.err.contains("missing.json"), "{}", run.err);
}
