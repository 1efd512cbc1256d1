//! A simulation is reproducible, decodes without error, and folds, through
//! relaycb-core's tracker, into the histories it meant to tell.

use relaycb_core::{DedupKey, Observation, Tracker, decode};

use super::{Plan, generate};

fn plan(seed: u64, tasks: u32, files: u32, faults: bool, start_s: i64) -> Plan {
    Plan {
        seed,
        tasks,
        files,
        hours: None,
        faults,
        start_s,
    }
}

fn fold(plan: Plan) -> (Tracker, Vec<super::Expected>) {
    let faults = plan.faults;
    let (deliveries, expected) = generate(plan);
    let mut tracker = Tracker::new();
    for (line, delivery) in deliveries.iter().enumerate() {
        let decoded = decode(&delivery.body).unwrap_or_else(|e| {
            panic!(
                "line {}: {e}: {}",
                line + 1,
                String::from_utf8_lossy(&delivery.body)
            )
        });
        if !faults {
            assert_eq!(decoded.deviations, [], "only faults drift");
        }
        tracker.observe(Observation {
            id: line as u64 + 1,
            key: DedupKey::of_body(&delivery.body).unwrap(),
            received_at_ms: None,
            callback: &decoded.callback,
        });
    }
    (tracker, expected)
}

fn check(seed: u64, tasks: u32, files: u32, faults: bool) {
    check_plan(plan(seed, tasks, files, faults, super::FIXED_START));
}

fn check_plan(plan: Plan) {
    let Plan {
        seed,
        tasks,
        faults,
        ..
    } = plan;
    let (tracker, expected) = fold(plan);
    assert_eq!(tracker.len(), tasks as usize);
    assert_eq!(tracker.unattributed_total(), 0);
    for want in expected {
        let got = tracker
            .task(&want.task_id, None)
            .expect("every task is seen");
        let context = format!("task {} (seed {seed}, faults {faults})", want.task_id);
        assert_eq!(got.starts, want.starts, "{context}");
        assert_eq!(got.restarts, want.starts - 1, "{context}");
        assert_eq!(got.files_started, want.files_started, "{context}");
        assert_eq!(got.files_finished, want.files_finished, "{context}");
        assert_eq!(got.loops, want.loops, "{context}");
        assert_eq!(got.exits, want.exits, "{context}");
        assert_eq!(got.alarms.values().sum::<u64>(), want.alarms, "{context}");
        assert_eq!(got.config_resets, want.config_resets, "{context}");
        assert_eq!(
            got.phase,
            relaycb_core::lifecycle::Phase::Exited,
            "{context}: every history ends in an exit"
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_deliveries_and_another_seed_others() {
    assert_eq!(
        generate(plan(7, 20, 3, true, 0)),
        generate(plan(7, 20, 3, true, 0))
    );
    assert_ne!(
        generate(plan(7, 20, 3, true, 0)).0,
        generate(plan(8, 20, 3, true, 0)).0
    );
}

#[test]
fn playlist_histories_fold_into_what_they_tell() {
    for seed in 0..5 {
        check(seed, 40, 3, false);
    }
}

#[test]
fn live_and_single_file_histories_fold_into_what_they_tell() {
    check(11, 30, 0, false);
    check(12, 30, 1, false);
}

#[test]
fn faults_change_the_deliveries_but_not_the_histories() {
    for seed in 0..5 {
        check(seed, 40, 4, true);
    }
    let (plain, _) = generate(plan(3, 40, 4, false, 0));
    let (faulty, _) = generate(plan(3, 40, 4, true, 0));
    assert!(faulty.len() > plain.len(), "faults add retries");
}

#[test]
fn tasks_kept_running_for_hours_restart_after_every_failure_and_fold_into_what_they_tell() {
    for (files, faults) in [(3, false), (0, false), (5, true)] {
        let plan = Plan {
            hours: Some(48),
            ..plan(21, 8, files, faults, super::FIXED_START)
        };
        check_plan(plan);
        let (tracker, expected) = fold(plan);
        for want in &expected {
            let got = tracker.task(&want.task_id, None).unwrap();
            let span = got.last_event_at_ms.unwrap() - got.first_event_at_ms.unwrap();
            assert!(
                span >= 48 * 3_600_000,
                "task {} ran {span} ms",
                want.task_id
            );
        }
        // Over two days a task fails more often than a short one may.
        let most = expected.iter().map(|e| e.starts).max().unwrap();
        assert!(most > 4, "at most {most} starts (files {files})");
    }
}
