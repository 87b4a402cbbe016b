//! The liveness checks of a run's tasks: the workload ran at all, every
//! submitted task ran at least once, and every task completed (every task
//! when the plan expects it, otherwise every task no fault touched). A
//! failing task is explained by a documented limitation
//! ([`LivenessClass`]) or by none, which fails the run.

use std::collections::BTreeMap;

use super::exposure::{Reasons, classify};
use super::index::Index;
use super::{TaskRun, acknowledged, status_text, task_text};
use crate::report::{Check, CheckKind, LivenessClass, LivenessClasses, class_text};
use crate::trace::TaskStatus;

/// The liveness checks, in order; marks each task that never ran
/// (`failing |= 1`) or did not complete where it had to (`failing |= 2`).
pub(super) fn checks(run: &TaskRun<'_>, index: &Index, mask: &[Reasons], failing: &mut [u8]) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.extend(workload_ran(run, index));
    checks.push(ran_at_least_once(run, index, mask, failing));
    checks.push(completed(run, mask, failing));
    checks
}

/// A run that carries tasks executes some (whatever explains each task).
fn workload_ran(run: &TaskRun<'_>, index: &Index) -> Option<Check> {
    let tasks = run.tasks;
    let executed = index.executed();
    (run.workload.count > 0).then(|| Check {
        name: "the workload ran: a run that carries tasks executes some".into(),
        ok: executed > 0,
        kind: CheckKind::Liveness,
        detail: format!("{executed} of {} tasks ran ({} arrived)", run.workload.count, tasks.len()),
        class: None,
    })
}

/// Every submitted task ran at least once.
fn ran_at_least_once(run: &TaskRun<'_>, index: &Index, mask: &[Reasons], failing: &mut [u8]) -> Check {
    let (tasks, trace) = (run.tasks, run.trace);
    let recovery = run.faults.recovery;
    let executed = index.executed();
    let never: Vec<usize> = (0..tasks.len()).filter(|&k| index.of_task(k).is_empty()).collect();
    for &k in &never {
        failing[k] |= 1;
    }
    let (classes, unclassified) =
        tally_classes(never.iter().map(|&k| classify(mask[k], acknowledged(&tasks[k]), &tasks[k].status, recovery)));
    classified_check(
        "every submitted task ran at least once".into(),
        never.is_empty(),
        match never.first() {
            None => format!("{executed} of {} tasks ran ({} executions)", tasks.len(), trace.len()),
            Some(&k) => format!(
                "{} of {} tasks never ran; the first, {}, arrived at {} ms and ended {} after {} submits",
                never.len(),
                tasks.len(),
                task_text(k, &tasks[k]),
                tasks[k].arrived / 1000,
                status_text(&tasks[k].status),
                tasks[k].attempts
            ),
        },
        classes,
        unclassified,
    )
}

/// Every task arrived and completed: every task when the plan expects it,
/// otherwise every task no fault touched.
fn completed(run: &TaskRun<'_>, mask: &[Reasons], failing: &mut [u8]) -> Check {
    let tasks = run.tasks;
    let recovery = run.faults.recovery;
    let all = run.expect.all_complete;
    let open: Vec<usize> = (0..tasks.len())
        .filter(|&k| (all || mask[k] == 0) && !matches!(tasks[k].status, TaskStatus::Completed { .. }))
        .collect();
    for &k in &open {
        failing[k] |= 2;
    }
    let arrived_all = tasks.len() as u64 == run.workload.count;
    let (classes, mut unclassified) =
        tally_classes(open.iter().map(|&k| classify(mask[k], acknowledged(&tasks[k]), &tasks[k].status, recovery)));
    if !arrived_all {
        unclassified += 1;
    }
    let whose = if all { "every task" } else { "every task no fault touched" };
    classified_check(
        format!("{whose} arrived and completed"),
        open.is_empty() && arrived_all,
        match open.first() {
            None if arrived_all => format!(
                "{} of {} tasks completed ({} required to)",
                run.counts.completed,
                tasks.len(),
                if all { tasks.len() } else { mask.iter().filter(|&&m| m == 0).count() }
            ),
            None => format!("only {} of {} tasks arrived before the end", tasks.len(), run.workload.count),
            Some(&k) => format!(
                "{} of {} tasks not completed ({} gave up, {} rejected, {} open); the first, {}, \
             arrived at {} ms and ended {} after {} submits",
                open.len(),
                tasks.len(),
                open.iter().filter(|&&k| tasks[k].status == TaskStatus::GaveUp).count(),
                open.iter().filter(|&&k| matches!(tasks[k].status, TaskStatus::Rejected(_))).count(),
                open.iter().filter(|&&k| tasks[k].status == TaskStatus::Open).count(),
                task_text(k, &tasks[k]),
                tasks[k].arrived / 1000,
                status_text(&tasks[k].status),
                tasks[k].attempts
            ),
        },
        classes,
        unclassified,
    )
}

/// Every failing task (never ran, not completed where it had to, or lost
/// by I4), once, by the documented limitation that explains it.
pub(super) fn classes(run: &TaskRun<'_>, mask: &[Reasons], failing: &[u8]) -> LivenessClasses {
    let tasks = run.tasks;
    let recovery = run.faults.recovery;
    let (classified, unclassified) = tally_classes(
        (0..tasks.len())
            .filter(|&k| failing[k] != 0)
            .map(|k| classify(mask[k], acknowledged(&tasks[k]) || failing[k] & 4 != 0, &tasks[k].status, recovery)),
    );
    LivenessClasses { classified, unclassified }
}

/// Failing tasks counted by class; the number none explains.
fn tally_classes(failing: impl Iterator<Item = Option<LivenessClass>>) -> (BTreeMap<String, u64>, u64) {
    let mut classes = BTreeMap::new();
    let mut unclassified = 0;
    for class in failing {
        match class {
            Some(c) => *classes.entry(c.name().to_string()).or_insert(0) += 1,
            None => unclassified += 1,
        }
    }
    (classes, unclassified)
}

/// A failed liveness check, classified: `class` when every failing task is
/// explained, and the breakdown in the detail.
fn classified_check(
    name: String,
    ok: bool,
    detail: String,
    classes: BTreeMap<String, u64>,
    unclassified: u64,
) -> Check {
    let breakdown = if ok || (classes.is_empty() && unclassified == 0) {
        String::new()
    } else if unclassified == 0 {
        format!(" [all explained: {}]", class_text(&classes))
    } else if classes.is_empty() {
        format!(" [{unclassified} explained by no documented limitation]")
    } else {
        format!(" [{unclassified} explained by no documented limitation; explained: {}]", class_text(&classes))
    };
    Check {
        name,
        ok,
        kind: CheckKind::Liveness,
        detail: detail + &breakdown,
        class: (!ok && unclassified == 0 && !classes.is_empty()).then(|| class_text(&classes)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::checker::testkit::*;

    #[test]
    fn liveness_checks_name_the_first_task_that_did_not_run_or_complete() {
        let mut tasks = [record(0, (1, 1)), record(1, (1, 1))];
        tasks[1].status = TaskStatus::GaveUp;
        let trace = [exec(0, 0, 0, (1, 1), 100, 200)];
        let (checks, _) = with_run(&mut tasks, &trace, &facts(STRICT, false), |run| check(Mode::Custody, run));
        let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
        assert_eq!(failed, ["every submitted task ran at least once", "every task arrived and completed"]);
        assert!(checks.iter().all(|c| c.kind == CheckKind::Liveness));
        let never = checks.iter().find(|c| c.name == "every submitted task ran at least once").expect("listed");
        assert!(never.detail.contains("the first, t1 of r1") && never.detail.contains("given up"), "{never:?}");
    }

    #[test]
    fn a_task_no_fault_touched_must_complete_even_in_a_run_with_faults() {
        let mut tasks = [record(0, (1, 1)), TaskRecord { status: TaskStatus::GaveUp, ..record(1, (1, 1)) }];
        let trace = [exec(0, 0, 0, (1, 1), 100, 200)];
        let mut f = facts(LOOSE, false);
        f.exposures.push(window(0, Touch::Crashed, 150, u64::MAX));
        let (checks, _) = with_run(&mut tasks, &trace, &f, |run| check(Mode::Custody, run));
        let c = checks.iter().find(|c| c.name == "every task no fault touched arrived and completed").expect("listed");
        assert!(!c.ok && c.class.is_none(), "{c:?}");
        let never = checks.iter().find(|c| c.name == "every submitted task ran at least once").expect("listed");
        assert!(!never.ok && never.class.is_none() && never.detail.contains("explained by no documented limitation"));
    }

    #[test]
    fn liveness_failures_are_classified_by_the_first_class_that_applies() {
        let open = TaskRecord { status: TaskStatus::Open, ..record(0, (1, 1)) };
        let gave_up = TaskRecord { status: TaskStatus::GaveUp, gateway_fault: Some(10), ..record(1, (1, 1)) };
        let mut tasks = [open.clone(), gave_up.clone()];
        let mut f = facts(LOOSE, false);
        f.exposures.push(window(0, Touch::InDoubt, 0, u64::MAX));
        f.exposures.push(window(0, Touch::Crashed, 0, u64::MAX));
        let c = with_run(&mut tasks, &[], &f, |run| check_run(Mode::Custody, run));
        let names = |c: &Checked| c.classes.classified.keys().cloned().collect::<BTreeSet<_>>();
        let set = |v: [&str; 2]| v.map(String::from).into_iter().collect::<BTreeSet<_>>();
        assert_eq!(
            names(&c),
            set([LivenessClass::CrashedCustodian.name(), LivenessClass::UnavailableDuringFault.name()])
        );
        assert_eq!(c.classes.unclassified, 0);
        let never = &c.checks[1];
        assert!(!never.ok && never.class.is_some(), "{never:?}");
        // Still paused at the end; a transfer in doubt.
        let mut f = facts(LOOSE, false);
        f.exposures.push(window(0, Touch::Paused, 0, u64::MAX));
        f.exposures.push(window(1, Touch::InDoubt, 0, u64::MAX));
        let mut tasks = [open.clone(), TaskRecord { gateway_fault: None, ..gave_up.clone() }];
        let c = with_run(&mut tasks, &[], &f, |run| check_run(Mode::Custody, run));
        assert_eq!(names(&c), set([LivenessClass::InDoubtTransfer.name(), LivenessClass::NotHealed.name()]));
        // A healed pause explains an open task no more: unclassified.
        let mut f = facts(LOOSE, false);
        f.exposures.push(window(0, Touch::Paused, 0, 500));
        let mut tasks = [open];
        let c = with_run(&mut tasks, &[], &f, |run| check_run(Mode::Custody, run));
        assert_eq!(c.classes.unclassified, 1);
        assert!(c.checks.iter().any(|c| !c.ok && c.class.is_none() && c.kind == CheckKind::Liveness));
    }

    #[test]
    fn with_recovery_a_crash_explains_nothing_unless_the_read_quorum_went_with_it() {
        let open = TaskRecord { status: TaskStatus::Open, ..record(0, (1, 1)) };
        let run = |exposures: Vec<Exposure>| {
            let mut f = facts(LOOSE, false);
            f.recovery = true;
            f.exposures = exposures;
            let mut tasks = [open.clone()];
            with_run(&mut tasks, &[], &f, |run| check_run(Mode::Custody, run)).classes
        };
        // Recovery brings a crashed custodian's range back: a task left
        // open is a failure nothing explains.
        let c = run(vec![window(0, Touch::Crashed, 0, u64::MAX)]);
        assert_eq!((c.unclassified, c.classified.len()), (1, 0), "{c:?}");
        // Unless the replicas it last wrote to lost their read quorum too.
        let c = run(vec![window(0, Touch::Crashed, 0, u64::MAX), window(0, Touch::QuorumLost, 10, u64::MAX)]);
        assert_eq!(c.unclassified, 0);
        assert_eq!(c.classified.keys().collect::<Vec<_>>(), [LivenessClass::ReadQuorumLost.name()]);
    }

    #[test]
    fn a_store_that_lost_its_voters_majority_explains_what_was_open_then_and_nothing_settled_before() {
        // Arrived at 0 and still open; completed at 1 s; acknowledged and
        // never run.
        let open = TaskRecord { status: TaskStatus::Open, ..record(0, (1, 1)) };
        let done = record(1, (1, 1));
        let lost = TaskRecord { status: TaskStatus::Open, acked: Some(10), ..record(2, (1, 1)) };
        let trace = [exec(0, 1, 1, (1, 1), 10, 20)];
        let run = |lost_at: Option<u64>| {
            let mut f = facts(LOOSE, false);
            f.store_lost_at = lost_at;
            let mut tasks = [open.clone(), done.clone(), lost.clone()];
            with_run(&mut tasks, &trace, &f, |run| check_run(Mode::Custody, run))
        };
        // Without the loss nothing explains the open tasks, and the
        // acknowledged one is lost (I4, safety).
        let c = run(None);
        assert_eq!(c.classes.unclassified, 2);
        assert!(c.invariants.iter().any(|i| i.name == "I4" && !i.ok));
        // Lost at 2 s: both open tasks are explained, I4 is classified,
        // and the task settled at 1 s keeps its expectations.
        let c = run(Some(2_000_000));
        assert_eq!(c.classes.unclassified, 0);
        assert_eq!(c.classes.classified.get(LivenessClass::StoreMajorityLost.name()), Some(&2));
        let i4 = c.invariants.iter().find(|i| i.name == "I4").expect("I4");
        assert!(!i4.ok && i4.classified.contains_key(LivenessClass::StoreMajorityLost.name()), "{i4:?}");
        assert_eq!(c.expectations.relaxed, 2);
    }

    #[test]
    fn a_run_that_carries_tasks_and_executes_none_fails() {
        // Every task touched by a crash, so each failure alone is explained;
        // but a workload that ran nothing fails the run regardless.
        let mut tasks = [TaskRecord { status: TaskStatus::Open, ..record(0, (1, 1)) }];
        let mut f = facts(LOOSE, false);
        f.exposures.push(window(0, Touch::Crashed, 0, u64::MAX));
        let (checks, report) = with_run(&mut tasks, &[], &f, |run| check(Mode::Custody, run));
        assert_eq!(report.executed, 0);
        let ran = checks.iter().find(|c| c.name.starts_with("the workload ran")).expect("listed");
        assert!(!ran.ok && ran.class.is_none() && ran.kind == CheckKind::Liveness, "{ran:?}");
        // With one execution it holds.
        let trace = [exec(0, 0, 0, (1, 1), 100, 200)];
        let (checks, _) = with_run(&mut tasks, &trace, &f, |run| check(Mode::Custody, run));
        assert!(checks.iter().find(|c| c.name.starts_with("the workload ran")).is_some_and(|c| c.ok));
    }
}
