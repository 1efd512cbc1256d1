//! A simulation is reproducible, decodes without error, and folds, through
//! relaycb-core's tracker, into the histories it meant to tell.

use relaycb_core::lifecycle::AnomalyKind;
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
        first_task: super::FIRST_TASK,
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

/// Without faults, a task's deliveries leave in the order its events
/// happened: folding them, the tracker never finds one that overtook
/// another.
#[test]
fn without_faults_no_delivery_overtakes_an_earlier_one_of_its_task() {
    for (seed, files, hours) in [(1, 3, None), (2, 0, None), (3, 1, None), (4, 5, Some(24))] {
        for start_s in [1_700_000_000, super::FIXED_START] {
            let plan = Plan {
                hours,
                ..plan(seed, 40, files, false, start_s)
            };
            let (tracker, _) = fold(plan);
            for task in tracker.tasks(None) {
                let reordered: Vec<_> = task
                    .anomalies
                    .iter()
                    .filter(|a| matches!(a.kind, AnomalyKind::OutOfOrder | AnomalyKind::TooLate))
                    .collect();
                assert!(
                    reordered.is_empty(),
                    "task {} (seed {seed}, files {files}): {reordered:?}",
                    task.task_id
                );
            }
        }
    }
}

#[test]
fn faults_still_reorder_deliveries() {
    let (tracker, _) = fold(plan(1, 40, 3, true, super::FIXED_START));
    let reordered = tracker
        .tasks(None)
        .flat_map(|t| t.anomalies)
        .filter(|a| a.kind == AnomalyKind::OutOfOrder)
        .count();
    assert!(reordered > 0);
}
