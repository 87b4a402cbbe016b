//! The simulated fencing-aware resources: each resource sees every
//! execution's effect at the execution's end, in true time order, and
//! applies it, recognises it as already applied, or rejects it as stale;
//! what they did is what I2, I4 and I5 read.
//!
//! In custody mode it is the fencing-aware resource of docs/design.md
//! (section 11.3): a token whose epoch is below the highest applied epoch
//! is rejected as stale; one whose sequence number is at most the last
//! applied one is recognised as already applied (a re-execution after
//! failover); anything else applies. In lock mode it is a fence on the lock
//! service's revision (a token not above the last applied one is rejected
//! as stale) that also remembers the task ids it applied (the idempotency
//! key a resource behind per-task locks needs).

use super::index::Index;
use super::{Ix, Tally, TaskRun};
use crate::plan::Mode;

/// What the simulated fencing-aware resources did with every effect.
pub(super) struct Fence {
    /// Per task: effects of it applied (saturating).
    pub(super) applied: Vec<u8>,
    /// Per task: its effect is in place: an execution of it that ran its
    /// full time was applied, or recognised as already applied (under its
    /// own sequence number in custody mode).
    pub(super) effected: Vec<bool>,
    /// Effects applied, strays included.
    pub(super) applied_total: u64,
    /// Re-executions recognised as already applied (custody: by sequence
    /// number; lock: by task id).
    pub(super) already: u64,
    /// Stale effects rejected: (the last applied execution, the rejected
    /// one).
    pub(super) stale: Tally<(Ix, Ix)>,
    /// A second application of a task: (the first, the second).
    pub(super) twice: Tally<(Ix, Ix)>,
    /// Custody mode: a resource whose applied sequence numbers skip one
    /// (the execution applied after the gap, the number missing).
    pub(super) gaps: Tally<(Ix, u64)>,
    /// Every stale effect: (its end, (the last applied, it)).
    pub(super) stale_all: Vec<(u64, (Ix, Ix))>,
    /// Every gap: (the end of the execution applied after it, (it, the
    /// number missing)).
    pub(super) gaps_all: Vec<(u64, (Ix, u64))>,
}

/// Every effect of the run's trace, through its resource's fence.
pub(super) fn fence(mode: Mode, run: &TaskRun<'_>, index: &Index) -> Fence {
    let trace = run.trace;
    let n = run.tasks.len();
    let mut f = Fence {
        applied: vec![0; n],
        effected: vec![false; n],
        applied_total: 0,
        already: 0,
        stale: Tally::new(),
        twice: Tally::new(),
        gaps: Tally::new(),
        stale_all: Vec::new(),
        gaps_all: Vec::new(),
    };
    let mut first_applied: Vec<Ix> = vec![Ix::MAX; n];
    let mut ended: Vec<Ix> = Vec::new();
    // (seq, task) applied to the current resource, in increasing seq.
    let mut applied_here: Vec<(u64, u64)> = Vec::new();
    for group in index.resources() {
        ended.clear();
        ended.extend(group.iter().copied().filter(|&i| trace[i as usize].end.is_some()));
        ended.sort_by_key(|&i| (trace[i as usize].end_or_max(), trace[i as usize].start, i));
        applied_here.clear();
        let mut last: Option<Ix> = None;
        for &i in &ended {
            let e = &trace[i as usize];
            let end = e.end_or_max();
            let task = (e.task < n as u64 && run.tasks[e.task as usize].resource == e.resource).then_some(e.task);
            // Ran its full time (not cut short by its node stopping, nor
            // cancelled): only then is its effect surely in place, for I4.
            // For the safety checks every ended execution, a cancelled one
            // too, is taken to have reached the resource (the worst case
            // there).
            let complete =
                !e.cancelled && run.exec_us.is_none_or(|us| task.is_none_or(|k| end.saturating_sub(e.start) >= us(k)));
            let seen = task.is_some_and(|k| first_applied[k as usize] != Ix::MAX);
            let verdict = match (mode, last.map(|l| trace[l as usize].token)) {
                (_, None) => Applied::Yes,
                (Mode::Custody, Some(top)) if e.token.epoch < top.epoch => Applied::Stale,
                (Mode::Custody, Some(top)) if e.token.seq <= top.seq => Applied::Already,
                (Mode::Custody, Some(_)) => Applied::Yes,
                (Mode::Lock, Some(top)) if e.token <= top => Applied::Stale,
                (Mode::Lock, Some(_)) if seen => Applied::Already,
                (Mode::Lock, Some(_)) => Applied::Yes,
            };
            match verdict {
                Applied::Stale => {
                    let pair = (last.expect("something applied"), i);
                    f.stale.add(end, pair);
                    f.stale_all.push((end, pair));
                }
                Applied::Already if mode == Mode::Lock => {
                    f.already += 1;
                    last = Some(i);
                    if let (true, Some(k)) = (complete, task) {
                        f.effected[k as usize] = true;
                    }
                }
                Applied::Already => {
                    f.already += 1;
                    let same = applied_here
                        .binary_search_by_key(&e.token.seq, |&(s, _)| s)
                        .is_ok_and(|at| Some(applied_here[at].1) == task);
                    if let (true, true, Some(k)) = (same, complete, task) {
                        f.effected[k as usize] = true;
                    }
                }
                Applied::Yes => {
                    if mode == Mode::Custody {
                        let expected = applied_here.last().map_or(1, |&(s, _)| s + 1);
                        if e.token.seq != expected {
                            f.gaps.add(end, (i, expected));
                            f.gaps_all.push((end, (i, expected)));
                        }
                    }
                    applied_here.push((e.token.seq, task.unwrap_or(u64::MAX)));
                    last = Some(i);
                    f.applied_total += 1;
                    if let Some(k) = task.map(|k| k as usize) {
                        f.effected[k] |= complete;
                        f.applied[k] = f.applied[k].saturating_add(1);
                        if first_applied[k] == Ix::MAX {
                            first_applied[k] = i;
                        } else {
                            f.twice.add(end, (first_applied[k], i));
                        }
                    }
                }
            }
        }
    }
    f
}

/// What a fencing-aware resource does with one effect.
enum Applied {
    /// Applied.
    Yes,
    /// Recognised as already applied.
    Already,
    /// Rejected as stale.
    Stale,
}
