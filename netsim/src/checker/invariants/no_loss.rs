//! **I4** no acknowledged task lost: every task answered `Completed`,
//! acknowledged otherwise (the baseline's durable enqueue) or executed has
//! its effect applied, unless the run ended before it settled (its client
//! still waits, or it still runs: the completion check reports those); in
//! custody mode each resource's applied sequence numbers form a contiguous
//! prefix `1..n`. A loss a documented limitation explains is classified
//! liveness; any other is a safety failure.

use std::collections::BTreeMap;

use super::Cx;
use crate::checker::exposure::{RUN_WIDE, UNHEALED, classify, exposures};
use crate::checker::{Ix, Tally, status_text, task_text};
use crate::plan::Mode;
use crate::report::{CheckKind, Invariant, class_text};
use crate::trace::TaskStatus;

/// I4: every acknowledged task has its effect; custody's applied seqs
/// are contiguous. Acknowledged: a custodian accepted it (the client's
/// gateway got `Accepted`), its client was answered `Completed`, the
/// lock baseline enqueued it durably, or it ran. Lost: acknowledged and
/// no effect applied by the end, unless it had not settled: it still
/// runs, or (custody) its resource still runs another task (its queue
/// drains), or (lock) its client still waits on the durable queue.
pub(super) fn check(cx: &Cx<'_, '_>, failing: &mut [u8]) -> Invariant {
    let trace = cx.run.trace;
    let ex = |i: Ix| &trace[i as usize];
    let tasks = cx.run.tasks;
    let run = cx.run;
    let mode = cx.mode;
    let index = cx.index;
    let fence = cx.fence;
    let mask = cx.mask;
    let busy_at_end: Vec<u64> = {
        let mut v: Vec<u64> = trace.iter().filter(|e| e.end.is_none()).map(|e| e.resource).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut acknowledged = 0u64;
    let mut in_progress = 0u64;
    let mut lost: Tally<usize> = Tally::new();
    let mut lost_classes: BTreeMap<String, u64> = BTreeMap::new();
    for (k, t) in tasks.iter().enumerate() {
        let runs = index.of_task(k);
        let acked = matches!(t.status, TaskStatus::Completed { .. }) || t.acked.is_some() || !runs.is_empty();
        if acked {
            acknowledged += 1;
            if !fence.effected[k] {
                let running = runs.iter().any(|&i| ex(i).end.is_none());
                let settling = match mode {
                    Mode::Custody => busy_at_end.binary_search(&t.resource).is_ok(),
                    Mode::Lock => t.status == TaskStatus::Open,
                };
                if running || settling {
                    in_progress += 1;
                } else {
                    lost.add(t.arrived, k);
                    failing[k] |= 4;
                    if let Some(class) = classify(mask[k], true, &t.status, run.faults.recovery) {
                        *lost_classes.entry(class.name().to_string()).or_insert(0) += 1;
                    }
                }
            }
        }
    }
    for &(at, (i, _)) in &fence.gaps_all {
        let r = ex(i).resource;
        let mine = exposures(run.faults.exposures, r);
        let bits = mine.iter().filter(|e| e.from <= at).fold(if run.faults.run_wide { RUN_WIDE } else { 0 }, |m, e| {
            m | e.touch.bit() | if e.unhealed { UNHEALED } else { 0 }
        });
        if let Some(class) = classify(bits, true, &TaskStatus::Open, run.faults.recovery) {
            *lost_classes.entry(class.name().to_string()).or_insert(0) += 1;
        }
    }
    let unsettled = if in_progress == 0 {
        String::new()
    } else {
        format!(" ({in_progress} more still in progress at the end: running or queued behind a running task, not lost)")
    };
    let i4_violations = lost.count + fence.gaps.count;
    let i4_explained = lost_classes.values().sum::<u64>();
    let explained = if lost_classes.is_empty() {
        String::new()
    } else {
        format!(
            " [explained by documented limitations: {}{}]",
            class_text(&lost_classes),
            if i4_explained < i4_violations {
                format!("; {} explained by none", i4_violations - i4_explained)
            } else {
                String::new()
            }
        )
    };
    let mut i4 = cx.invariant(
        "I4",
        "no acknowledged task lost: each has its effect applied (after the run, its quiescence included)",
        CheckKind::Safety,
        i4_violations,
        match (&lost.first, &fence.gaps.first) {
            (Some((_, k)), _) => {
                let runs: Vec<String> = index.of_task(*k).iter().map(|&i| ex(i).to_string()).collect();
                format!(
                    "{} of {acknowledged} acknowledged tasks have no effect applied{unsettled}; the first to \
                     arrive, {}, arrived at {:.3} ms, acknowledged at {}, ended {}, executions [{}]{explained}",
                    lost.count,
                    task_text(*k, &tasks[*k]),
                    tasks[*k].arrived as f64 / 1000.0,
                    tasks[*k].acked.map_or("its answer".to_string(), |at| format!("{:.3} ms", at as f64 / 1000.0)),
                    status_text(&tasks[*k].status),
                    runs.join("; ")
                )
            }
            (None, Some((_, (i, missing)))) => format!(
                "{} gaps in applied sequence numbers; first: {} applied where seq {missing} was due{explained}",
                fence.gaps.count,
                ex(*i)
            ),
            (None, None) => format!(
                "{acknowledged} acknowledged tasks, each with its effect applied{unsettled}{}",
                if mode == Mode::Custody { "; applied seqs contiguous per resource" } else { "" }
            ),
        },
    );
    i4.classified = lost_classes;
    i4
}

#[cfg(test)]
mod tests {
    use crate::checker::testkit::*;

    /// A task accepted (acknowledged to its client's gateway) at 50 µs
    /// that is still open at the end.
    fn accepted_open(resource: u64) -> TaskRecord {
        TaskRecord { acked: Some(50), status: TaskStatus::Open, ..record(resource, (1, 1)) }
    }

    #[test]
    fn i4_catches_a_lost_acknowledged_task_and_a_gap_in_seqs() {
        // t1 was acknowledged (the baseline's enqueue) but never ran, and
        // its client no longer waits.
        let mut tasks = [record(0, (1, 1)), record(1, (1, 1))];
        tasks[1].status = TaskStatus::GaveUp;
        tasks[1].acked = Some(50);
        let trace = [exec(0, 0, 0, (1, 1), 100, 200)];
        let out = invs(Mode::Lock, &mut tasks, &trace, &facts(LOOSE, false));
        assert_eq!(failed(&out), ["I4"]);
        let i4 = get(&out, "I4");
        // Nothing explains it: a safety failure.
        assert_eq!((i4.kind, i4.unclassified()), (CheckKind::Safety, 1));
        assert_eq!(i4.to_check().kind, CheckKind::Safety);
        assert!(i4.detail.contains("1 of 2 acknowledged tasks") && i4.detail.contains("t1 of r1"), "{i4:?}");
        // A baseline run with faults explains it (its tasks are not traced):
        // still a violation, classified.
        let out = invs(Mode::Lock, &mut tasks, &trace, &facts(STRICT, true));
        let i4 = get(&out, "I4");
        assert_eq!((i4.ok, i4.violations, i4.unclassified()), (false, 1, 0));
        let check = i4.to_check();
        assert_eq!(check.kind, CheckKind::Liveness);
        assert!(check.class.as_deref().is_some_and(|c| c.contains("lock baseline")), "{check:?}");
        // A task whose client still waits at the end, or that still runs, is
        // not lost: the run ended before it settled.
        tasks[1].status = TaskStatus::Open;
        let out = invs(Mode::Lock, &mut tasks, &trace, &facts(STRICT, false));
        assert!(failed(&out).is_empty(), "{out:#?}");
        assert!(get(&out, "I4").detail.contains("1 more still in progress at the end"), "{:?}", get(&out, "I4"));
        let mut running = [TaskRecord { status: TaskStatus::Open, ..record(0, (1, 1)) }];
        let trace = [ExecRecord { end: None, ..exec(0, 0, 0, (1, 1), 100, 0) }];
        let out = invs(Mode::Custody, &mut running, &trace, &facts(STRICT, false));
        assert!(failed(&out).is_empty(), "{out:#?}");
        // Custody: seq 2 of r0 never applied, seq 3 was.
        let mut tasks = [record(0, (1, 1)), record(0, (1, 3))];
        let trace = [exec(0, 0, 0, (1, 1), 100, 200), exec(0, 1, 0, (1, 3), 200, 300)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(STRICT, false));
        assert_eq!(failed(&out), ["I4"]);
        assert!(get(&out, "I4").detail.contains("where seq 2 was due"), "{:?}", get(&out, "I4"));
        // The baseline's revisions may skip (an acquire that found its task done).
        let out = invs(Mode::Lock, &mut tasks, &trace, &facts(STRICT, false));
        assert!(failed(&out).is_empty(), "{out:#?}");
    }

    #[test]
    fn i4_catches_an_accepted_task_that_never_ran_and_classifies_a_crash() {
        // t1 was accepted and never ran; its client still waits.
        let mut tasks = [record(0, (1, 1)), accepted_open(1)];
        let trace = [exec(0, 0, 0, (1, 1), 100, 200)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, false));
        assert_eq!(failed(&out), ["I4"]);
        let i4 = get(&out, "I4");
        assert!(i4.detail.contains("the first to arrive, t1 of r1") && i4.detail.contains("acknowledged at 0.050 ms"));
        assert_eq!((i4.unclassified(), i4.to_check().kind, i4.to_check().class), (1, CheckKind::Safety, None));
        // r1's custodian crashed while holding it: the documented
        // limitation explains the loss; I4 still fails, as classified
        // liveness.
        let mut f = facts(LOOSE, false);
        f.exposures.push(window(1, Touch::Crashed, 20, u64::MAX));
        let out = invs(Mode::Custody, &mut tasks, &trace, &f);
        let i4 = get(&out, "I4");
        assert_eq!((i4.ok, i4.violations, i4.unclassified()), (false, 1, 0));
        assert_eq!(i4.classified.get(LivenessClass::CrashedCustodian.name()), Some(&1));
        assert_eq!(i4.to_check().kind, CheckKind::Liveness);
        // A pause that healed explains nothing: the paused custodian kept
        // the task and must run it.
        let mut f = facts(LOOSE, false);
        f.exposures.push(window(1, Touch::Paused, 20, 500));
        let out = invs(Mode::Custody, &mut tasks, &trace, &f);
        assert_eq!(get(&out, "I4").unclassified(), 1);
        // Not lost while its resource still runs a task (its queue drains).
        let trace = [exec(0, 0, 0, (1, 1), 100, 200), ExecRecord { end: None, ..exec(0, 2, 1, (1, 1), 300, 0) }];
        let mut tasks =
            [record(0, (1, 1)), accepted_open(1), TaskRecord { status: TaskStatus::Open, ..record(1, (1, 1)) }];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, false));
        assert!(!failed(&out).contains(&"I4"), "{out:#?}");
    }

    #[test]
    fn i4_takes_a_run_cut_short_by_its_node_stopping_as_no_effect() {
        // t0 runs 100 µs; its only execution ended after 50 (its node
        // crashed): its effect is not surely in place.
        let mut tasks = [TaskRecord { status: TaskStatus::Open, ..record(0, (1, 1)) }];
        let trace = [exec(0, 0, 0, (1, 1), 100, 150)];
        let mut f = facts(LOOSE, false);
        f.exec_us = vec![100];
        let out = invs(Mode::Custody, &mut tasks, &trace, &f);
        assert_eq!(failed(&out), ["I4"]);
        // Run again in full by a newer custodian: in place.
        let trace = [exec(0, 0, 0, (1, 1), 100, 150), exec(1, 0, 0, (2, 1), 500, 600)];
        f.exposures.push(window(0, Touch::Crashed, 150, u64::MAX));
        let out = invs(Mode::Custody, &mut tasks, &trace, &f);
        assert!(failed(&out).is_empty(), "{out:#?}");
    }
}
