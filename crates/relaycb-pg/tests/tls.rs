//! TLS against the PostgreSQL that `RELAYCB_TEST_POSTGRES` names (skipped,
//! saying so, when it is unset or the server has TLS off).

use relaycb_pg::{Store, Tls};

/// The test URL with `sslmode` set, when the server speaks TLS.
fn url_with(mode: &str) -> Option<String> {
    let Ok(url) = std::env::var("RELAYCB_TEST_POSTGRES") else {
        eprintln!("skipped: set RELAYCB_TEST_POSTGRES to test TLS to PostgreSQL");
        return None;
    };
    let mut plain = Store::parse(&url).unwrap().connect().unwrap();
    let ssl: String = plain.query_one("SHOW ssl", &[]).unwrap().get(0);
    if ssl != "on" {
        eprintln!("skipped: the PostgreSQL at RELAYCB_TEST_POSTGRES has TLS off");
        return None;
    }
    let joiner = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{joiner}sslmode={mode}"))
}

#[test]
fn require_encrypts_the_connection() {
    let Some(url) = url_with("require") else {
        return;
    };
    let store = Store::parse(&url).unwrap();
    assert_eq!(store.tls(), Tls::Encrypted);
    let mut client = store.connect().unwrap();
    let encrypted: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(encrypted);
}

#[test]
fn verify_full_refuses_a_certificate_no_root_vouches_for() {
    let Some(url) = url_with("verify-full") else {
        return;
    };
    let store = Store::parse(&url).unwrap();
    assert_eq!(store.tls(), Tls::Verified);
    // A test server's certificate is its own (Debian's "snakeoil").
    match store.connect() {
        Err(error) => assert!(
            format!("{error:?}").to_lowercase().contains("certificate"),
            "{error:?}"
        ),
        Ok(_) => eprintln!("the test server's certificate is trusted here; nothing refused"),
    }
}
