//! Unit tests of the fold rules, one behaviour per test.

use super::*;
use crate::callback::{FileEvent, TaskExit};

struct Script {
    tracker: Tracker,
    next_id: u64,
}

fn callback(task: Option<&str>, at_s: i64, event: Event) -> Callback {
    let mut c = Callback::new(event);
    c.task_id = task.map(str::to_owned);
    c.event_time = Some(at_s);
    c.source_urls = vec!["http://src.example/a.m3u8".to_owned()];
    c
}

fn file(index: u32, duration: u64) -> FileEvent {
    FileEvent {
        url: Some(format!("http://src.example/{index}.mp4")),
        index: Some(index),
        duration: Some(duration),
    }
}

fn exit(code: i64) -> Event {
    Event::TaskExit(TaskExit {
        task_exit_time: Some(0),
        code: Some(code),
        message: Some("write packet error.".to_owned()),
    })
}

fn start() -> Event {
    Event::TaskStart {
        task_start_time: Some(0),
    }
}

impl Script {
    fn new() -> Script {
        Script {
            tracker: Tracker::new(),
            next_id: 1,
        }
    }

    fn feed(&mut self, c: &Callback) -> Outcome {
        let body = crate::encode(c);
        let key = DedupKey::of_body(&body).unwrap();
        let id = self.next_id;
        self.next_id += 1;
        self.tracker.observe(Observation {
            id,
            key,
            received_at_ms: None,
            callback: c,
        })
    }

    fn state(&self, task: &str) -> TaskState {
        self.tracker.task(task, None).unwrap()
    }
}

fn kinds(state: &TaskState) -> Vec<AnomalyKind> {
    state.anomalies.iter().map(|a| a.kind).collect()
}

#[test]
fn a_playlist_that_loops_counts_files_and_loops() {
    let mut s = Script::new();
    let t = Some("1");
    s.feed(&callback(t, 100, start()));
    let mut now = 101;
    for round in 0..2 {
        for i in 0..3 {
            s.feed(&callback(t, now, Event::VodSourceFileStart(file(i, 60))));
            now += 60;
            s.feed(&callback(t, now, Event::VodSourceFileFinish(file(i, 60))));
            let _ = round;
        }
    }
    let st = s.state("1");
    assert_eq!((st.phase, st.starts, st.restarts), (Phase::Running, 1, 0));
    assert_eq!((st.files_started, st.files_finished, st.loops), (6, 6, 1));
    assert!(st.current_file.is_none());
    assert!(st.anomalies.is_empty(), "{:?}", st.anomalies);
}

#[test]
fn an_exit_then_a_start_is_a_restart() {
    let mut s = Script::new();
    let t = Some("7");
    s.feed(&callback(t, 100, start()));
    s.feed(&callback(t, 200, exit(-875574520)));
    let st = s.state("7");
    assert_eq!(st.phase, Phase::Exited);
    let last = st.last_exit.as_ref().unwrap();
    assert_eq!(
        last.explanation.as_ref().unwrap().name,
        "AVERROR_HTTP_NOT_FOUND"
    );
    assert_eq!(kinds(&st), [AnomalyKind::ErrorExit]);
    s.feed(&callback(t, 300, start()));
    let st = s.state("7");
    assert_eq!((st.phase, st.starts, st.restarts), (Phase::Running, 2, 1));
    assert_eq!(st.exits.get("-875574520"), Some(&1));
    assert_eq!(
        st.anomalies[0].detail,
        "exited with -875574520 (AVERROR_HTTP_NOT_FOUND): the source answered HTTP 404: the file or stream is gone"
    );
}

#[test]
fn error_exits_of_several_codes_are_counted_by_code_in_their_record() {
    let mut s = Script::new();
    let t = Some("7");
    for (at, code) in [(100, -875574520), (200, -22), (300, 0), (400, -22)] {
        s.feed(&callback(t, at, start()));
        s.feed(&callback(t, at + 50, exit(code)));
    }
    let st = s.state("7");
    let error_exit = st
        .anomalies
        .iter()
        .find(|a| a.kind == AnomalyKind::ErrorExit)
        .unwrap();
    assert_eq!(error_exit.count, 3);
    assert!(
        error_exit.detail.starts_with("exited with -22 (EINVAL): ")
            && error_exit
                .detail
                .ends_with("; error exits by code: -22 ×2, -875574520 ×1"),
        "{}",
        error_exit.detail
    );
}

#[test]
fn a_normal_exit_is_not_an_anomaly() {
    let mut s = Script::new();
    s.feed(&callback(Some("1"), 100, start()));
    s.feed(&callback(Some("1"), 200, exit(0)));
    assert!(s.state("1").anomalies.is_empty());
}

#[test]
fn retries_are_counted_once() {
    let mut s = Script::new();
    let mut c = callback(Some("1"), 100, start());
    s.feed(&c);
    c.t = Some(999);
    c.sign = Some("abc".to_owned());
    assert_eq!(
        s.feed(&c),
        Outcome::Duplicate {
            task_id: "1".to_owned()
        }
    );
    let st = s.state("1");
    assert_eq!((st.starts, st.events, st.duplicates), (1, 1, 1));
}

#[test]
fn a_late_first_file_is_flagged() {
    let mut s = Script::new();
    s.feed(&callback(Some("1"), 100, start()));
    s.feed(&callback(
        Some("1"),
        105,
        Event::VodSourceFileStart(file(0, 60)),
    ));
    let st = s.state("1");
    assert_eq!(kinds(&st), [AnomalyKind::LateFileStart]);
    assert_eq!(
        st.anomalies[0].detail,
        "the first file started 5s after the task"
    );
}

#[test]
fn a_file_event_without_task_start_is_flagged() {
    let mut s = Script::new();
    s.feed(&callback(
        Some("1"),
        100,
        Event::VodSourceFileStart(file(0, 60)),
    ));
    let st = s.state("1");
    assert_eq!(st.phase, Phase::Running);
    assert_eq!(kinds(&st), [AnomalyKind::FileWithoutTaskStart]);
}

#[test]
fn a_file_ending_well_before_its_duration_is_flagged() {
    let mut s = Script::new();
    s.feed(&callback(Some("1"), 100, start()));
    s.feed(&callback(
        Some("1"),
        101,
        Event::VodSourceFileStart(file(0, 600)),
    ));
    s.feed(&callback(
        Some("1"),
        161,
        Event::VodSourceFileFinish(file(0, 600)),
    ));
    let st = s.state("1");
    assert_eq!(kinds(&st), [AnomalyKind::FileEndedEarly]);
    assert_eq!(st.anomalies[0].detail, "file 0 played 1m of its 10m");
}

#[test]
fn an_overdue_file_is_flagged_as_of_now() {
    let mut s = Script::new();
    s.feed(&callback(Some("1"), 100, start()));
    s.feed(&callback(
        Some("1"),
        101,
        Event::VodSourceFileStart(file(0, 60)),
    ));
    let early = s.tracker.task("1", Some(150_000)).unwrap();
    assert!(early.anomalies.is_empty());
    let late = s.tracker.task("1", Some(1_000_000)).unwrap();
    assert_eq!(kinds(&late), [AnomalyKind::FileOverdue]);
    // Ended at 161 s, seen at 1,000 s: a span people read at a glance.
    assert_eq!(
        late.anomalies[0].detail,
        "file 0 should have ended 13m 59s ago and has not finished"
    );
    // It happened when the grace of 30 s after the end ran out, however
    // late it is asked for.
    assert_eq!(late.anomalies[0].at_ms, 191_000);
    let a_year_on = s.tracker.task("1", Some(161_000 + 31_571_021_000)).unwrap();
    assert_eq!(
        a_year_on.anomalies[0].detail,
        "file 0 should have ended 365days 9h 43m 41s ago and has not finished"
    );
    assert_eq!(a_year_on.anomalies[0].at_ms, 191_000);
}

#[test]
fn three_exits_in_ten_minutes_are_a_restart_loop() {
    let mut s = Script::new();
    for i in 0..3 {
        s.feed(&callback(Some("1"), 100 + i * 60, start()));
        s.feed(&callback(Some("1"), 130 + i * 60, exit(-111)));
    }
    let st = s.state("1");
    assert_eq!(
        kinds(&st),
        [AnomalyKind::ErrorExit, AnomalyKind::RestartLoop]
    );
    let error = &st.anomalies[0];
    assert_eq!(error.count, 3);
}

#[test]
fn a_restart_storm_points_at_its_latest_exits() {
    // A source that is down: the task starts and exits every 5 s for ten
    // minutes, 120 exits in the loop window.
    let mut s = Script::new();
    let mut exit_ids = Vec::new();
    for i in 0..120 {
        s.feed(&callback(Some("1"), 1_000 + i * 5, start()));
        exit_ids.push(s.next_id);
        s.feed(&callback(Some("1"), 1_002 + i * 5, exit(-111)));
    }
    let st = s.state("1");
    let latest = &exit_ids[exit_ids.len() - EVENTS_KEPT..];
    let restart_loop = st
        .anomalies
        .iter()
        .find(|a| a.kind == AnomalyKind::RestartLoop)
        .expect("a restart loop");
    assert_eq!(restart_loop.count, 118);
    assert_eq!(restart_loop.events, latest);
    assert_eq!(restart_loop.detail, "120 exits within 10 minutes");
    let error = &st.anomalies[0];
    assert_eq!(error.kind, AnomalyKind::ErrorExit);
    assert_eq!(error.count, 120);
    assert_eq!(error.events, latest);
}

#[test]
fn an_exit_without_task_id_is_attributed_by_sources() {
    let mut s = Script::new();
    s.feed(&callback(Some("1"), 100, start()));
    let outcome = s.feed(&callback(None, 200, exit(-22)));
    assert_eq!(
        outcome,
        Outcome::Applied {
            task_id: "1".to_owned(),
            attributed_by_sources: true
        }
    );
    assert_eq!(s.state("1").phase, Phase::Exited);
}

#[test]
fn an_ambiguous_exit_is_kept_unattributed() {
    let mut s = Script::new();
    s.feed(&callback(Some("1"), 100, start()));
    s.feed(&callback(Some("2"), 100, start()));
    assert_eq!(
        s.feed(&callback(None, 200, exit(-22))),
        Outcome::Unattributed
    );
    assert_eq!(s.tracker.unattributed_total(), 1);
    assert!(
        s.tracker
            .unattributed()
            .next()
            .unwrap()
            .reason
            .contains("several")
    );
}

#[test]
fn out_of_order_delivery_gives_the_in_order_state_and_is_flagged() {
    let events = [
        callback(Some("1"), 100, start()),
        callback(Some("1"), 101, Event::VodSourceFileStart(file(0, 60))),
        callback(Some("1"), 161, Event::VodSourceFileFinish(file(0, 60))),
        callback(Some("1"), 162, Event::VodSourceFileStart(file(1, 60))),
    ];
    let mut in_order = Script::new();
    for c in &events {
        in_order.feed(c);
    }
    let mut shuffled = Script::new();
    for i in [2, 0, 3, 1] {
        shuffled.next_id = i as u64 + 1;
        shuffled.feed(&events[i]);
    }
    let mut a = in_order.state("1");
    let mut b = shuffled.state("1");
    assert!(kinds(&b).contains(&AnomalyKind::OutOfOrder));
    b.anomalies.retain(|x| x.kind != AnomalyKind::OutOfOrder);
    a.anomalies.retain(|x| x.kind != AnomalyKind::OutOfOrder);
    assert_eq!(a, b);
    assert_eq!(b.current_file.as_ref().unwrap().index, Some(1));
}

/// Feeds task `t` a start and `files` files from `at_s` on; returns the
/// time after the last.
fn play(s: &mut Script, t: &str, at_s: i64, files: u32) -> i64 {
    s.feed(&callback(Some(t), at_s, start()));
    let mut now = at_s + 1;
    for i in 0..files {
        s.feed(&callback(
            Some(t),
            now,
            Event::VodSourceFileStart(file(i, 60)),
        ));
        now += 60;
        s.feed(&callback(
            Some(t),
            now,
            Event::VodSourceFileFinish(file(i, 60)),
        ));
    }
    now
}

#[test]
fn a_task_quiet_for_an_hour_keeps_its_state_without_its_window() {
    let mut s = Script::new();
    let end = play(&mut s, "quiet", 1_000, 3);
    let before = s.state("quiet");
    assert!(!s.tracker.tasks["quiet"].window.is_empty());
    // Another task goes on for more than an hour and a sweep's worth of events.
    let mut now = end;
    while now < end + SETTLE_AFTER_MS / 1000 + 60 || s.next_id < SWEEP_EVERY as u64 + 10 {
        s.feed(&callback(
            Some("busy"),
            now,
            Event::VodSourceFileStart(file(0, 1)),
        ));
        now += 1;
    }
    let quiet = &s.tracker.tasks["quiet"];
    assert!(quiet.window.is_empty() && quiet.settled.is_none());
    assert_eq!(s.state("quiet"), before);
    assert!(!s.tracker.tasks["busy"].window.is_empty());

    // It starts again, in order: folded as before, no anomaly.
    play(&mut s, "quiet", now, 1);
    let again = s.state("quiet");
    assert_eq!((again.starts, again.files_finished), (2, 4));
    assert_eq!(kinds(&again), kinds(&before));
}

#[test]
fn an_event_arriving_after_its_task_settled_is_folded_last_and_flagged() {
    let mut s = Script::new();
    let end = play(&mut s, "q", 1_000, 2);
    let mut now = end;
    while now < end + SETTLE_AFTER_MS / 1000 + 60 || s.next_id < SWEEP_EVERY as u64 + 10 {
        s.feed(&callback(
            Some("busy"),
            now,
            Event::TaskAlarm { alarm: None },
        ));
        now += 1;
    }
    assert!(s.tracker.tasks["q"].window.is_empty());
    // A file of the first minutes, two hours late.
    let late = callback(Some("q"), 1_030, Event::VodSourceFileStart(file(7, 60)));
    assert!(matches!(s.feed(&late), Outcome::Applied { .. }));
    let state = s.state("q");
    assert_eq!(state.files_started, 3);
    let too_late = state
        .anomalies
        .iter()
        .find(|a| a.kind == AnomalyKind::TooLate)
        .expect("flagged too late");
    assert!(too_late.detail.contains("quiet"), "{}", too_late.detail);
    // A retry of a settled event is still recognised.
    let retry = callback(Some("q"), 1_000, start());
    assert!(matches!(s.feed(&retry), Outcome::Duplicate { .. }));
}

proptest::proptest! {
    /// The sources an exit without a task id is matched against are those
    /// of the task's state, however its events arrived.
    #[test]
    fn the_sources_matched_are_those_of_the_current_state(
        events in proptest::collection::vec((0u8..3, 0u32..3, proptest::bool::ANY), 1..80),
        picks in proptest::collection::vec(proptest::sample::select(vec![0usize, 0, 0, 1, 2, 40]), 80),
    ) {
        let mut s = Script::new();
        let callbacks: Vec<Callback> = events
            .iter()
            .enumerate()
            .map(|(i, &(sources, index, finish))| {
                let f = file(index, 60);
                let event = if finish {
                    Event::VodSourceFileFinish(f)
                } else {
                    Event::VodSourceFileStart(f)
                };
                let mut c = callback(Some("1"), 100 + i as i64, event);
                c.source_urls = match sources {
                    0 => Vec::new(),
                    n => vec![format!("http://src.example/{n}.m3u8")],
                };
                c
            })
            .collect();
        // Each event moves back by one of `picks` places, most not at all.
        let mut order: Vec<usize> = (0..callbacks.len()).collect();
        for (i, back) in picks.iter().enumerate().take(order.len()) {
            let to = i.saturating_sub(*back);
            let moved = order.remove(i);
            order.insert(to, moved);
        }
        for i in order {
            s.feed(&callbacks[i]);
            let history = &s.tracker.tasks["1"];
            let mut fresh = history.clone();
            if fresh.settled.is_some() {
                fresh.current = OnceLock::new();
            }
            let expected = &fresh.current().state.source_urls;
            let kept = history.sources.as_ref().map_or(&[][..], |m| m.source_urls.as_slice());
            proptest::prop_assert_eq!(kept, expected.as_slice());
            let hash = task::sources_hash(expected);
            proptest::prop_assert_eq!(history.has_sources(expected, hash), !expected.is_empty());
        }
    }
}

#[test]
fn tasks_after_an_id_are_the_rest_of_the_list_in_order() {
    let mut s = Script::new();
    for task in ["b", "a", "c", "ab"] {
        s.feed(&callback(Some(task), 100, start()));
    }
    let ids = |after: Option<&str>| -> Vec<String> {
        s.tracker
            .tasks_after(after, None)
            .map(|t| t.task_id)
            .collect()
    };
    assert_eq!(ids(None), ["a", "ab", "b", "c"]);
    assert_eq!(ids(Some("a")), ["ab", "b", "c"]);
    // An id that is no task's still says where the page starts.
    assert_eq!(ids(Some("aa")), ["ab", "b", "c"]);
    assert_eq!(ids(Some("")), ["a", "ab", "b", "c"]);
    assert_eq!(ids(Some("c")), Vec::<String>::new());
    let all: Vec<String> = s.tracker.tasks(None).map(|t| t.task_id).collect();
    assert_eq!(ids(None), all);
}
