//! How faults touched tasks: the windows in which a fault touched a
//! resource's custody ([`Exposure`], what happened: [`Touch`]), each task's
//! reasons for relaxed expectations (those windows during its life, a fault
//! at the node its client asked, the store losing its voters' majority), the
//! documented limitation that explains a failing task, and the report's
//! [`Expectations`].

use std::collections::BTreeMap;

use super::{TaskRun, task_text};
use crate::report::{Expectations, LivenessClass};
use crate::trace::{TaskRecord, TaskStatus, resource_name};

/// How a fault may have touched a resource's custody (see
/// [`Exposure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Touch {
    /// A holder of the resource crashed: its state is gone.
    Crashed,
    /// A holder was paused.
    Paused,
    /// A holder was cut off from the voters' majority by a partition.
    CutOff,
    /// A holder was removed from the configuration, not by a graceful
    /// leave (a suspicion vote): its custody is in doubt until it hands
    /// the resource off.
    Removed,
    /// A transfer of the resource's range was never acknowledged and its
    /// receiver was removed: the sender holds it in doubt.
    InDoubt,
    /// A custodian of the resource left the configuration without handing
    /// it off, and by the time the next epoch was committed (and a second
    /// after) so many of the range's replicas of its last epoch had lost
    /// their copies (crashed, restarted, removed or left; the custodian
    /// counting) that no read quorum was left: recovery cannot rebuild the
    /// state, and must not take the range without it.
    QuorumLost,
}

impl Touch {
    const ALL: [Touch; 6] =
        [Touch::Crashed, Touch::Paused, Touch::CutOff, Touch::Removed, Touch::InDoubt, Touch::QuorumLost];

    pub(super) fn bit(self) -> Reasons {
        1 << (self as u8)
    }

    /// The reason's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Touch::Crashed => "its resource's custodian crashed while holding it",
            Touch::Paused => "its resource's custodian was paused while holding it",
            Touch::CutOff => "its resource's custodian was cut off from the voters' majority while holding it",
            Touch::Removed => "its resource's custodian was removed (not by a graceful leave) while holding it",
            Touch::InDoubt => "a transfer of its resource's range ended in doubt",
            Touch::QuorumLost => "its resource's custodian was lost together with a read quorum of its replicas",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Touch::Crashed => "crashed",
            Touch::Paused => "was paused",
            Touch::CutOff => "was cut off",
            Touch::Removed => "was removed",
            Touch::InDoubt => "sent a transfer that ended in doubt",
            Touch::QuorumLost => "was lost with a read quorum of the replicas",
        }
    }
}

/// Why a task's expectations were relaxed: one bit per reason.
pub(super) type Reasons = u16;
/// Reason bits beyond [`Touch`]: the node the client asked was touched.
pub(super) const GATEWAY: Reasons = 1 << 6;
/// A holder was still paused or cut off at the end.
pub(super) const UNHEALED: Reasons = 1 << 7;
/// The lock baseline in a run with faults: every task.
pub(super) const RUN_WIDE: Reasons = 1 << 8;
/// The epoch store lost its voters' majority for good before the task
/// settled.
pub(super) const STORE_LOST: Reasons = 1 << 9;
/// Every reason bit.
const REASON_BITS: u32 = 10;

/// A window of true time during which a fault may have touched one
/// resource's custody: a node that held it (custodian of the resource in a
/// committed epoch, from that epoch's commit until a transfer of the
/// resource away from it was acknowledged) was hit by the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exposure {
    /// The resource's index.
    pub resource: u64,
    /// What happened.
    pub touch: Touch,
    /// The holder it happened to.
    pub node: usize,
    /// From when, true µs.
    pub from: u64,
    /// Until when, true µs: the end of the fault, or later, until the
    /// holder's handoff of the resource was acknowledged; `u64::MAX`: still
    /// at the end of the run (a crash's state never comes back).
    pub to: u64,
    /// The fault itself (a pause, a cut) still lasted at the end of the
    /// run: liveness is not owed for what it holds.
    pub unhealed: bool,
}

/// What the faults did to each task: reason bits ([`Touch::bit`],
/// [`GATEWAY`], [`UNHEALED`], [`RUN_WIDE`], [`STORE_LOST`]) and, for the report, the
/// exposure behind each reason's first task.
pub(super) struct Touched {
    /// Per task: its reason bits.
    pub(super) mask: Vec<Reasons>,
    /// Per reason bit: the first task (by arrival) it touched, and the
    /// exposure (or the gateway fault's or the store loss's time).
    first: BTreeMap<Reasons, (usize, Option<Exposure>, u64)>,
}

/// The exposures of resource `r`.
pub(super) fn exposures(all: &[Exposure], r: u64) -> &[Exposure] {
    let lo = all.partition_point(|e| e.resource < r);
    let hi = lo + all[lo..].partition_point(|e| e.resource == r);
    &all[lo..hi]
}

/// What the faults did to each task of the run.
pub(super) fn touched(run: &TaskRun<'_>) -> Touched {
    let tasks = run.tasks;
    let mut mask = vec![if run.faults.run_wide { RUN_WIDE } else { 0 }; tasks.len()];
    let mut first: BTreeMap<Reasons, (usize, Option<Exposure>, u64)> = BTreeMap::new();
    let note = |bit: Reasons, k: usize, e: Option<Exposure>, at: u64, first: &mut BTreeMap<Reasons, _>| {
        let better = first
            .get(&bit)
            .is_none_or(|&(j, _, _): &(usize, Option<Exposure>, u64)| (tasks[k].arrived, k) < (tasks[j].arrived, j));
        if better {
            first.insert(bit, (k, e, at));
        }
    };
    for (k, t) in tasks.iter().enumerate() {
        if run.faults.run_wide {
            note(RUN_WIDE, k, None, 0, &mut first);
        }
        let gateway = t.gateway_fault;
        let mine = exposures(run.faults.exposures, t.resource);
        if mine.is_empty() && gateway.is_none() && run.faults.store_lost_at.is_none() {
            continue;
        }
        // The task's life: from its arrival to its client's `Completed`
        // answer, or to the end of the run (a fault between its execution
        // and its answer touches it too: the answer may be what is lost).
        let settle = match t.status {
            TaskStatus::Completed { at, .. } => at,
            _ => u64::MAX,
        };
        let mut m = mask[k];
        for e in mine {
            if e.from <= settle && e.to >= t.arrived {
                m |= e.touch.bit();
                note(e.touch.bit(), k, Some(*e), e.from, &mut first);
                if e.unhealed {
                    m |= UNHEALED;
                }
            }
        }
        if let Some(at) = gateway.filter(|&at| at <= settle) {
            m |= GATEWAY;
            note(GATEWAY, k, None, at, &mut first);
        }
        if let Some(at) = run.faults.store_lost_at.filter(|&at| at <= settle) {
            m |= STORE_LOST;
            note(STORE_LOST, k, None, at, &mut first);
        }
        mask[k] = m;
    }
    Touched { mask, first }
}

/// The documented limitation that explains a failing task (one that never
/// ran, never completed, or was acknowledged and lost), if one does: the
/// first of [`LivenessClass`]'s classes that applies. With `recovery`, a
/// crashed custodian explains nothing by itself: its range is recovered
/// unless a read quorum of its replicas went with it.
pub(super) fn classify(
    mask: Reasons,
    acknowledged: bool,
    status: &TaskStatus,
    recovery: bool,
) -> Option<LivenessClass> {
    let any = |bits: Reasons| mask & bits != 0;
    if recovery && any(Touch::QuorumLost.bit()) {
        Some(LivenessClass::ReadQuorumLost)
    } else if !recovery && any(Touch::Crashed.bit()) {
        Some(LivenessClass::CrashedCustodian)
    } else if any(STORE_LOST) {
        Some(LivenessClass::StoreMajorityLost)
    } else if any(Touch::InDoubt.bit()) {
        Some(LivenessClass::InDoubtTransfer)
    } else if any(UNHEALED) {
        Some(LivenessClass::NotHealed)
    } else if !acknowledged
        && *status == TaskStatus::GaveUp
        && any(Touch::Paused.bit() | Touch::CutOff.bit() | Touch::Removed.bit() | GATEWAY)
    {
        Some(LivenessClass::UnavailableDuringFault)
    } else if any(RUN_WIDE) {
        Some(LivenessClass::LockRunWithFaults)
    } else {
        None
    }
}

/// Which tasks kept their expectations, and why the others did not: per
/// reason, how many tasks and the first one (by arrival) with what touched
/// it.
pub(super) fn expectations(tasks: &[TaskRecord], touched: &Touched) -> Expectations {
    let mask = &touched.mask;
    let mut reasons = BTreeMap::new();
    let mut examples = BTreeMap::new();
    let reason_name = |bit: Reasons| -> &'static str {
        match bit {
            STORE_LOST => "the epoch store lost its voters' majority for good (crashed voters) before it settled",
            GATEWAY => "the node its client asked crashed, was paused or was cut off while the request waited there",
            UNHEALED => "its resource's custodian was still paused or cut off at the end",
            RUN_WIDE => "lock baseline: a crash, pause or partition in the run (not traced per task)",
            _ => Touch::ALL.iter().find(|t| t.bit() == bit).map_or("?", |t| t.name()),
        }
    };
    for bit in (0..REASON_BITS).map(|b| 1 << b) {
        let n = mask.iter().filter(|&&m| m & bit != 0).count() as u64;
        if n == 0 {
            continue;
        }
        reasons.insert(reason_name(bit).to_string(), n);
        if let Some(&(k, e, at)) = touched.first.get(&bit) {
            let what = match e {
                Some(e) => format!(
                    "n{} {} at {:.3} s while holding {} (until {})",
                    e.node,
                    e.touch.verb(),
                    e.from as f64 / 1e6,
                    resource_name(e.resource),
                    if e.to == u64::MAX { "the end".to_string() } else { format!("{:.3} s", e.to as f64 / 1e6) }
                ),
                None if bit == GATEWAY => format!("its request's node was touched at {:.3} s", at as f64 / 1e6),
                None if bit == STORE_LOST => {
                    format!("the store's voters' majority had crashed at {:.3} s", at as f64 / 1e6)
                }
                None => "a fault in the run".to_string(),
            };
            examples.insert(
                reason_name(bit).to_string(),
                format!("{}, arrived at {:.3} s: {what}", task_text(k, &tasks[k]), tasks[k].arrived as f64 / 1e6),
            );
        }
    }
    let relaxed = mask.iter().filter(|&&m| m != 0).count() as u64;
    Expectations { kept: tasks.len() as u64 - relaxed, relaxed, reasons, examples }
}

#[cfg(test)]
mod tests {
    use crate::checker::testkit::*;

    #[test]
    fn expectations_are_kept_for_untouched_tasks_and_relaxed_per_task_with_reasons() {
        // r0's custodian was paused from 1 ms to 2 ms; r1 was never touched.
        let mut tasks = [
            TaskRecord { arrived: 1_500, ..record(0, (2, 1)) },
            TaskRecord { arrived: 100, ..record(1, (2, 1)) },
            TaskRecord { arrived: 5_000, ..record(0, (2, 2)) },
        ];
        // t0 and t1 each ran twice with a newer token; t2 once, after the
        // pause.
        let trace = [
            exec(0, 0, 0, (1, 1), 1_600, 1_700),
            exec(1, 0, 0, (2, 1), 3_000, 3_100),
            exec(0, 1, 1, (1, 1), 200, 300),
            exec(1, 1, 1, (2, 1), 400, 500),
            exec(1, 2, 0, (2, 2), 5_100, 5_200),
        ];
        let mut f = facts(LOOSE, false);
        f.exposures.push(window(0, Touch::Paused, 1_000, 2_000));
        let c = with_run(&mut tasks, &trace, &f, |run| check_run(Mode::Custody, run));
        assert_eq!((c.expectations.kept, c.expectations.relaxed), (2, 1));
        assert_eq!(c.expectations.reasons.get(Touch::Paused.name()), Some(&1));
        let example = &c.expectations.examples[Touch::Paused.name()];
        assert!(example.starts_with("t0 of r0") && example.contains("n9 was paused at 0.001 s"), "{example}");
        // t1's duplicate has no fault to excuse it; t0's has.
        let i6 = get(&c.invariants, "I6");
        assert_eq!(i6.violations, 1, "{i6:?}");
        assert!(i6.detail.contains("first: t1 of r1"), "{i6:?}");
        // A plan that demands exactly once gets it for touched tasks too.
        let out = invs(Mode::Custody, &mut tasks, &trace, &Facts { expect: STRICT, ..f.clone() });
        assert_eq!(get(&out, "I6").violations, 2);
    }
}
