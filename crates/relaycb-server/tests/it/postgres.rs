//! The PostgreSQL store: several servers on one database store each event
//! once, whichever server a retry lands on, and show the same task state.
//!
//! These tests need a PostgreSQL server: `RELAYCB_TEST_POSTGRES` is the URL
//! of a database where they may create schemas (CI sets it). Each test
//! works in a schema of its own, dropped at the end. Without the variable
//! they print that they were skipped and pass.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use relaycb_server::{Config, Running};
use serde_json::{Value, json};

/// A schema of its own in the test database, dropped when this is dropped.
pub(crate) struct TestDb {
    admin: String,
    schema: String,
    /// A URL whose connections use the schema.
    pub(crate) url: String,
}

impl TestDb {
    /// A fresh schema, or `None` (with a message) when no database is given.
    pub(crate) fn create(test: &str) -> Option<TestDb> {
        let Ok(admin) = std::env::var("RELAYCB_TEST_POSTGRES") else {
            // Written to the process's stderr, not through `eprintln!`, so
            // that the test harness does not swallow it.
            let _ = writeln!(
                std::io::stderr(),
                "skipped {test}: RELAYCB_TEST_POSTGRES is not set (a postgres:// URL of a database where tests may create schemas)"
            );
            return None;
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!("relaycb_test_{}_{nanos}", std::process::id());
        let separator = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{separator}options=-csearch_path%3D{schema}");
        let db = TestDb { admin, schema, url };
        db.sql(&format!("CREATE SCHEMA {}", db.schema));
        Some(db)
    }

    /// Runs statements in the test's schema on a thread of their own (the
    /// synchronous client must not run on the test's runtime); returns the
    /// first column of the last row as text.
    pub(crate) fn sql(&self, sql: &str) -> Option<String> {
        let (url, sql) = (self.url.clone(), sql.to_owned());
        std::thread::spawn(move || {
            let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
            let messages = client.simple_query(&sql).unwrap();
            messages.iter().rev().find_map(|m| match m {
                ::postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
        })
        .join()
        .unwrap()
    }

    /// A number the query selects.
    pub(crate) fn number(&self, sql: &str) -> i64 {
        self.sql(sql).unwrap().parse().unwrap()
    }

    /// Flags of a server on this schema.
    pub(crate) fn config(&self) -> Config {
        Config::parse_from([
            "relaycb-server",
            "--listen",
            "127.0.0.1:0",
            "--db",
            &self.url,
        ])
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, schema) = (self.admin.clone(), self.schema.clone());
        let dropped = std::thread::spawn(move || {
            let mut client = ::postgres::Client::connect(&admin, ::postgres::NoTls)?;
            client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test schema {}", self.schema);
        }
    }
}

/// A small deterministic generator (xorshift), so a failure can be rerun.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Every event of `tasks` relay tasks: a start, a playlist of files each
/// started and finished, an alarm, and an exit (without `task_id` for every
/// third task, so that it must be attributed by its source URLs).
fn histories(tasks: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    for task in 0..tasks {
        let id = format!("{}", 300_000 + task);
        let sources = format!("[\"http://vod.example.com/task{id}/playlist.m3u8\"]\n");
        let base = 1_764_800_000 + task as i64 * 1000;
        let mut t = base;
        let mut event = |name: &str, msg: String, with_id: bool| {
            t += 10;
            let mut body = json!({
                "appid": 1_250_000_000, "callback_event": name, "event_type": 314,
                "interface": "general_callback", "msg": msg, "product_name": "pullpush",
                "source_urls": sources, "stream_id": format!("stream{id}"),
                "to_url": format!("rtmp://push.example.com/live/stream{id}"),
                "event_time": t.to_string(),
            });
            if with_id {
                body["task_id"] = json!(id);
            }
            body.to_string()
        };
        bodies.push(event(
            "TaskStart",
            format!("{{\"task_start_time\":{}}}", (base + 10) * 1000),
            true,
        ));
        for index in 0..3 {
            let file = format!("http://vod.example.com/task{id}/{index}.mp4");
            let msg = format!("{{\"url\":\"{file}\",\"index\":{index},\"duration\":10}}");
            bodies.push(event("VodSourceFileStart", msg.clone(), true));
            bodies.push(event("VodSourceFileFinish", msg, true));
        }
        bodies.push(event(
            "TaskAlarm",
            "{\"type\":\"PullFileUnstable\"}".to_owned(),
            true,
        ));
        bodies.push(event(
            "TaskExit",
            format!(
                "{{\"message\":\"http error 404\",\"code\":-875574520,\"task_exit_time\":{}}}",
                (base + 90) * 1000
            ),
            task % 3 != 1,
        ));
    }
    bodies
}

async fn get(client: &reqwest::Client, server: &Running, path: &str) -> Value {
    let answer = client
        .get(format!("http://{}{path}", server.local_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{path}");
    answer.json().await.unwrap()
}

async fn post(client: &reqwest::Client, server: &Running, body: String) {
    let answer = client
        .post(format!("http://{}/callback", server.local_addr()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn two_servers_on_one_database_store_each_event_once_and_show_the_same_tasks() {
    let Some(db) = TestDb::create("two_servers_on_one_database") else {
        return;
    };
    let servers = [
        relaycb_server::start(db.config()).await.unwrap(),
        relaycb_server::start(db.config()).await.unwrap(),
    ];
    let servers = std::sync::Arc::new(servers);
    let unique = histories(12);
    // Every event is delivered one to three times, each delivery to either
    // server, all of them shuffled: retries and reordering across both.
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut sends = Vec::new();
    for body in &unique {
        for _ in 0..=rng.below(3) {
            sends.push((body.clone(), rng.below(2)));
        }
    }
    for i in (1..sends.len()).rev() {
        sends.swap(i, rng.below(i + 1));
    }
    let total = sends.len();
    let client = reqwest::Client::new();
    let workers = 16;
    let mut lanes: Vec<Vec<(String, usize)>> = vec![Vec::new(); workers];
    for (n, send) in sends.into_iter().enumerate() {
        lanes[n % workers].push(send);
    }
    let mut running = tokio::task::JoinSet::new();
    for lane in lanes {
        let (client, servers) = (client.clone(), servers.clone());
        running.spawn(async move {
            for (body, to) in lane {
                post(&client, &servers[to], body).await;
            }
        });
    }
    while let Some(done) = running.join_next().await {
        done.unwrap();
    }

    assert_eq!(
        db.number("SELECT count(*) FROM events"),
        unique.len() as i64,
        "each event is stored once"
    );
    assert_eq!(
        db.number("SELECT sum(deliveries) FROM events"),
        total as i64,
        "every delivery is counted"
    );
    let [a, b] = &*servers;
    let tasks_a = get(&client, a, "/api/tasks").await;
    let tasks_b = get(&client, b, "/api/tasks").await;
    assert_eq!(tasks_a["tasks"].as_array().unwrap().len(), 12, "{tasks_a}");
    assert_eq!(tasks_a, tasks_b, "both servers show the same task state");
    let duplicates: i64 = tasks_a["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["duplicates"].as_i64().unwrap())
        .sum();
    assert_eq!(
        duplicates,
        db.number(
            "SELECT coalesce(sum(deliveries - 1), 0) FROM events
             WHERE coalesce(attributed_to, task_id) IS NOT NULL"
        ),
        "retries are counted from the shared deliveries, whichever server took them"
    );
    assert!(
        db.number(
            "SELECT count(*) FROM events WHERE task_id IS NULL AND attributed_to IS NOT NULL"
        ) > 0,
        "exits without task_id were attributed by their source URLs"
    );
    let one_a = get(&client, a, "/api/tasks/300003").await;
    let one_b = get(&client, b, "/api/tasks/300003").await;
    assert_eq!(one_a, one_b);
    assert_eq!(one_a["events"].as_array().unwrap().len(), 9, "{one_a}");
    get(&client, a, "/readyz").await;
    get(&client, b, "/readyz").await;

    // A third server started now rebuilds the same state from the store.
    let c = relaycb_server::start(db.config()).await.unwrap();
    assert_eq!(get(&client, &c, "/api/tasks").await, tasks_a);
    c.shutdown().await.unwrap();
    let servers = std::sync::Arc::into_inner(servers).unwrap();
    for server in servers {
        server.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_retry_that_lands_on_the_other_server_is_a_duplicate_there_and_here() {
    let Some(db) = TestDb::create("a_retry_that_lands_on_the_other_server") else {
        return;
    };
    let a = relaycb_server::start(db.config()).await.unwrap();
    let b = relaycb_server::start(db.config()).await.unwrap();
    let client = reqwest::Client::new();
    let start = histories(1).swap_remove(0);
    post(&client, &a, start.clone()).await;
    // B has never seen it, but its task state catches up from the store.
    assert_eq!(
        get(&client, &b, "/api/tasks/300000").await["phase"],
        get(&client, &a, "/api/tasks/300000").await["phase"]
    );
    post(&client, &b, start).await;
    let events = get(&client, &a, "/api/events").await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["deliveries"], 2);
    for server in [&a, &b] {
        assert_eq!(
            get(&client, server, "/api/tasks/300000").await["duplicates"],
            1
        );
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn servers_starting_together_migrate_the_schema_once() {
    let Some(db) = TestDb::create("servers_starting_together_migrate") else {
        return;
    };
    let (a, b) = tokio::join!(
        relaycb_server::start(db.config()),
        relaycb_server::start(db.config())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let applied = db.number("SELECT count(*) FROM relaycb_schema");
    assert!(applied >= 1);
    assert_eq!(
        applied,
        db.number("SELECT count(DISTINCT version) FROM relaycb_schema"),
        "no migration was applied twice"
    );
    assert_eq!(
        applied,
        db.number("SELECT max(version) FROM relaycb_schema")
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    // And once is enough: a restart applies nothing.
    let again = relaycb_server::start(db.config()).await.unwrap();
    assert_eq!(db.number("SELECT count(*) FROM relaycb_schema"), applied);
    again.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_schema_named_by_search_path_is_created_when_missing() {
    let Some(db) = TestDb::create("a_schema_named_by_search_path_is_created") else {
        return;
    };
    db.sql(&format!("DROP SCHEMA {}", db.schema));
    let server = relaycb_server::start(db.config()).await.unwrap();
    server.shutdown().await.unwrap();
    let tables = db.number(&format!(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{}' AND table_name = 'events'",
        db.schema
    ));
    assert_eq!(
        tables, 1,
        "the events table is in the schema of search_path"
    );
}

/// A stream and subject prefix of a test's own for servers on one
/// PostgreSQL store publishing to the NATS server named by
/// `RELAYCB_TEST_NATS`; `None`, saying the test was skipped, when it is unset.
struct SharedNats {
    url: String,
    stream: String,
    prefix: String,
    db_url: String,
}

impl SharedNats {
    fn new(db: &TestDb, test: &str, tag: &str) -> Option<SharedNats> {
        use crate::nats::unique;
        let Ok(url) = std::env::var("RELAYCB_TEST_NATS") else {
            let _ = writeln!(
                std::io::stderr(),
                "skipped {test}: RELAYCB_TEST_NATS is not set"
            );
            return None;
        };
        Some(SharedNats {
            url,
            stream: unique(&format!("RELAYCB_PG_{tag}")),
            prefix: unique(&format!("relaycbpg{}", tag.to_lowercase())),
            db_url: db.url.clone(),
        })
    }

    /// A server on the shared store that publishes to `nats_url`.
    fn config(&self, nats_url: &str) -> Config {
        Config::parse_from([
            "relaycb-server",
            "--listen",
            "127.0.0.1:0",
            "--db",
            &self.db_url,
            "--nats-url",
            nats_url,
            "--nats-stream",
            &self.stream,
            "--nats-subject-prefix",
            &self.prefix,
            "--nats-retry-max",
            "500ms",
        ])
    }
}

#[tokio::test]
async fn two_servers_on_one_database_publish_each_event_once_in_order_per_task() {
    use crate::nats::{body, by_task, delete_stream, key, messages};
    let Some(db) = TestDb::create("two_servers_on_one_database_publish") else {
        return;
    };
    let Some(shared) = SharedNats::new(&db, "two_servers_on_one_database_publish", "PUBLISH")
    else {
        return;
    };
    let (nats, stream) = (&shared.url, &shared.stream);
    let servers = [
        relaycb_server::start(shared.config(nats)).await.unwrap(),
        relaycb_server::start(shared.config(nats)).await.unwrap(),
    ];
    let client = reqwest::Client::new();
    let mut expected: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let events = [
        "TaskStart",
        "VodSourceFileStart",
        "VodSourceFileFinish",
        "TaskExit",
    ];
    for (n, event) in events.iter().enumerate() {
        for (t, task) in ["118145", "220001"].into_iter().enumerate() {
            let body = body(task, event, n as u32 + 1);
            // The first delivery to one server, the retry to the other.
            post(&client, &servers[(n + t) % 2], body.clone()).await;
            post(&client, &servers[(n + t + 1) % 2], body.clone()).await;
            expected
                .entry(task.to_owned())
                .or_default()
                .push(key(&body));
        }
    }
    let got = messages(nats, stream, 8).await;
    assert_eq!(by_task(&got), expected);
    for server in servers {
        server.shutdown().await.unwrap();
    }
    assert_eq!(db.number("SELECT count(*) FROM outbox"), 0);
    delete_stream(nats, stream).await;
}

#[tokio::test]
async fn every_server_reports_what_the_shared_outbox_holds_whoever_publishes_it() {
    use crate::nats::{body, delete_stream, eventually, messages, metric};
    let Some(db) = TestDb::create("every_server_reports_the_shared_outbox") else {
        return;
    };
    let Some(shared) = SharedNats::new(&db, "every_server_reports_the_shared_outbox", "PENDING")
    else {
        return;
    };
    let (nats, stream) = (&shared.url, &shared.stream);
    // The first server cannot reach NATS (nothing listens on port 1); the
    // second publishes what the first stores.
    let cut_off = relaycb_server::start(shared.config("nats://127.0.0.1:1"))
        .await
        .unwrap();
    let publishing = relaycb_server::start(shared.config(nats)).await.unwrap();
    let client = reqwest::Client::new();
    for n in 1..=4 {
        post(&client, &cut_off, body("330001", "VodSourceFileStart", n)).await;
    }
    messages(nats, stream, 4).await;
    eventually("the outbox emptied", || async {
        db.number("SELECT count(*) FROM outbox") == 0
    })
    .await;
    assert_eq!(metric(&cut_off, "relaycb_nats_pending").await, 0.0);
    assert_eq!(metric(&publishing, "relaycb_nats_pending").await, 0.0);
    cut_off.shutdown().await.unwrap();
    publishing.shutdown().await.unwrap();
    delete_stream(nats, stream).await;
}

/// Sends every documentation fixture, one of them twice, and one refused
/// body, to `server`; returns what the API then answers, with the times
/// and addresses that vary between runs redacted.
async fn answers(client: &reqwest::Client, server: &Running) -> Vec<Value> {
    let mut names: Vec<_> = std::fs::read_dir(crate::common::fixtures().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    // Fixtures that are retries of an earlier one are left out: on
    // PostgreSQL a conflicting insert still takes an id from the sequence,
    // so ids have gaps where SQLite's have none. The one retry is sent last.
    let mut keys = std::collections::HashSet::new();
    names.retain(|path| {
        let body = std::fs::read(path).unwrap();
        relaycb_core::DedupKey::of_body(&body).map_or(true, |key| keys.insert(key.to_string()))
    });
    for path in &names {
        post(client, server, std::fs::read_to_string(path).unwrap()).await;
        crate::common::next_millisecond().await;
    }
    post(client, server, std::fs::read_to_string(&names[0]).unwrap()).await;
    let refused = client
        .post(format!("http://{}/callback", server.local_addr()))
        .body(crate::common::fixture("invalid/event_type_not_relay.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let mut out = Vec::new();
    for path in [
        "/api/tasks",
        "/api/events?limit=100",
        "/api/events/1",
        "/api/rejected",
        "/api/rejected/1",
    ] {
        out.push(crate::common::redact(get(client, server, path).await));
    }
    let first = get(client, server, "/api/tasks").await;
    let task = first["tasks"][0]["task_id"].as_str().unwrap().to_owned();
    out.push(crate::common::redact(
        get(client, server, &format!("/api/tasks/{task}")).await,
    ));
    out
}

#[tokio::test]
async fn the_api_answers_on_postgres_what_it_answers_on_sqlite() {
    let Some(db) = TestDb::create("the_api_answers_on_postgres") else {
        return;
    };
    let client = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = relaycb_server::start(crate::common::config(&dir.path().join("r.db"), &[]))
        .await
        .unwrap();
    let expected = answers(&client, &sqlite).await;
    sqlite.shutdown().await.unwrap();
    let postgres = relaycb_server::start(db.config()).await.unwrap();
    let got = answers(&client, &postgres).await;
    postgres.shutdown().await.unwrap();
    assert_eq!(got, expected);
}
