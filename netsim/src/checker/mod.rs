//! The task checker: reads the execution trace (every execution on the
//! simulator's true clock) and the clients' records, and checks what the
//! system promises about tasks — in either mode (custody, or the
//! per-task-locking baseline), over the same kind of trace.
//!
//! [`check`] gives the liveness checks and the numbers of the report's
//! `tasks` section:
//!
//! * every submitted task ran at least once;
//! * every submitted task completed, when the plan expects it.
//!
//! [`invariants()`] gives the invariants (docs/design.md, section 12), each
//! with a count of offences and the first offending execution or pair of
//! them:
//!
//! * **I1** real-time mutual exclusion: executions of one resource never
//!   overlap in true time;
//! * **I2** effect fencing: a simulated fencing-aware resource (below)
//!   applies effects in strictly increasing token order, and never has to
//!   reject a stale effect in a run where custody cannot be lost;
//! * **I4** no acknowledged task lost: every task answered `Completed`,
//!   acknowledged otherwise (the baseline's durable enqueue) or executed has
//!   its effect applied, unless the run ended before it settled (its client
//!   still waits, or it still runs: the completion check reports those); in
//!   custody mode each resource's applied sequence numbers form a
//!   contiguous prefix `1..n`. Liveness, unless the plan expects every task
//!   to complete;
//! * **I5** exactly-once effect: no task's effect is applied twice;
//! * **I6** attributable duplicates: a task runs twice only in a run that
//!   may lose custody (a crash, pause or partition), never when the plan
//!   expects exactly once, and a second execution always carries a higher
//!   token than the one before (a newer custodian or lock holder);
//! * **I7** per-resource order: executions of one resource start in token
//!   order (sequence numbers increase within an epoch; they may go back only
//!   with a higher epoch, to re-run an unconfirmed tail);
//! * **I8** epoch discipline: the epoch chain is one chain and learned epochs
//!   never go back (what the simulator saw), and in custody mode every
//!   token's epoch was committed before its execution started;
//! * **I11** dedup: a task keeps one sequence number (custody mode), a
//!   resource's sequence number names one task, and an answer names the
//!   task and a token it ran with;
//! * **I12** no phantom: every execution is of a task a client submitted,
//!   on that task's resource, after it arrived.
//!
//! The simulated fencing-aware resource sees each execution's effect at the
//! execution's end, in true time order (an execution cut short by its node
//! stopping is taken to have reached the resource; one still running at the
//! end never does): in custody mode the fencing-aware resource of
//! docs/design.md (section 11.3), in lock mode a fence on the lock
//! service's revision that also remembers the task ids it applied (see
//! `fence.rs`).
//!
//! Everything runs in a few sorts over indices, without a string per task:
//! a million executions check in about a second.
//!
//! # Where it lives
//!
//! One file per part, and one per invariant:
//!
//! * `index.rs`: the trace grouped by task and by resource;
//! * `fence.rs`: the simulated fencing-aware resources;
//! * `exposure.rs`: how faults touched tasks ([`Exposure`], [`Touch`]), the
//!   documented limitation that explains a failing task, the expectations;
//! * `liveness.rs`: the liveness checks;
//! * `invariants/`: one file per invariant (`exclusion.rs` I1, `fencing.rs`
//!   I2, `no_loss.rs` I4, `exactly_once.rs` I5, `duplicates.rs` I6,
//!   `order.rs` I7, `epochs.rs` I8, `dedup.rs` I11, `no_phantom.rs` I12),
//!   each with the unit tests that show it fails when broken;
//! * here: what the checker reads ([`TaskRun`]) and concludes ([`Checked`]).

mod exposure;
mod fence;
mod index;
mod invariants;
mod liveness;
#[cfg(test)]
mod testkit;

use std::collections::BTreeMap;

pub use exposure::{Exposure, Touch};
use index::Index;

use crate::plan::{Mode, TaskExpect, Workload};
use crate::report::{Check, Expectations, Invariant, Latency, LivenessClasses, Tasks};
use crate::trace::{ClientCounts, ExecRecord, TaskRecord, TaskStatus, resource_name, task_id};

/// What the checker knows of the epoch store (for I8).
#[derive(Debug, Clone, Copy, Default)]
pub struct EpochFacts<'a> {
    /// Violations of the epoch discipline the simulator saw: a forked
    /// chain, a learned epoch going back, a cut-off minority committing.
    pub violations: &'a [String],
    /// When each committed epoch was first committed (true µs); `None`:
    /// not known, so tokens' epochs are not checked against it.
    pub committed_at: Option<&'a BTreeMap<u64, u64>>,
}

/// What the checker knows of the faults (see [`Exposure`]).
#[derive(Clone, Copy, Default)]
pub struct FaultFacts<'a> {
    /// Custody mode: every window in which a fault touched a resource,
    /// sorted by resource, then start.
    pub exposures: &'a [Exposure],
    /// Every task is touched (the lock baseline in a run with a crash,
    /// pause or partition: its tasks are not traced to the faults).
    pub run_wide: bool,
    /// Custody mode: when a majority of the epoch store's committed voters
    /// had crashed (true µs), if that happened: nothing commits after it.
    pub store_lost_at: Option<u64>,
    /// Custody mode: the node whose committed ring of an epoch gives it a
    /// resource, as `owner(epoch, resource)`; `None`: the epoch's ring is
    /// not known (I2 checks tokens against it).
    pub owner: Option<&'a dyn Fn(u64, u64) -> Option<usize>>,
    /// Custody mode: the engines recover a crashed or removed custodian's
    /// ranges from their replicas (a crash alone explains no loss).
    pub recovery: bool,
}

/// What the checker reads.
pub struct TaskRun<'a> {
    /// The workload.
    pub workload: &'a Workload,
    /// What must hold beyond the standing checks, for tasks a fault
    /// touched too; tasks no fault touched must run, have their effect and
    /// run once whatever this says.
    pub expect: TaskExpect,
    /// Every task that arrived, by index.
    pub tasks: &'a [TaskRecord],
    /// The clients' counters.
    pub counts: ClientCounts,
    /// Every execution, in start order. One of a task no client submitted
    /// has the index `u64::MAX`.
    pub trace: &'a [ExecRecord],
    /// The faults, as they touched resources and tasks.
    pub faults: FaultFacts<'a>,
    /// How long task `k` runs, true µs: an execution that ended sooner was
    /// cut short (its node crashed or stopped) and, for I4, may not have
    /// reached the resource. `None`: every ended execution ran fully.
    pub exec_us: Option<&'a dyn Fn(u64) -> u64>,
    /// The epoch store's side (I8).
    pub epochs: EpochFacts<'a>,
}

/// A trace index (a million executions fit).
type Ix = u32;

/// Offences of one kind: how many, and the earliest (by a time) with what
/// it was about.
struct Tally<T> {
    /// Offences counted.
    count: u64,
    /// The earliest, with when.
    first: Option<(u64, T)>,
}

impl<T> Tally<T> {
    fn new() -> Tally<T> {
        Tally { count: 0, first: None }
    }

    fn add(&mut self, at: u64, what: T) {
        self.count += 1;
        if self.first.as_ref().is_none_or(|(t, _)| at < *t) {
            self.first = Some((at, what));
        }
    }
}

/// Everything the checker concludes about one run's tasks.
pub struct Checked {
    /// The liveness checks of the tasks.
    pub checks: Vec<Check>,
    /// The numbers of the report's `tasks` section.
    pub tasks: Tasks,
    /// The invariants, in the order I1, I2, I4, I5, I6, I7, I8, I11, I12.
    pub invariants: Vec<Invariant>,
    /// Failing tasks by documented limitation.
    pub classes: LivenessClasses,
    /// Which tasks kept their expectations, and why the others did not.
    pub expectations: Expectations,
}

/// Checks a run's tasks: the liveness checks and the numbers for the
/// report (the invariants are [`invariants()`]; [`check_run`] gives both).
pub fn check(mode: Mode, run: &TaskRun<'_>) -> (Vec<Check>, Tasks) {
    let c = check_run(mode, run);
    (c.checks, c.tasks)
}

/// Checks the invariants (docs/design.md, section 12) over one
/// mode's trace: one entry per invariant, in the order I1, I2, I4, I5, I6,
/// I7, I8, I11, I12.
pub fn invariants(mode: Mode, run: &TaskRun<'_>) -> Vec<Invariant> {
    check_run(mode, run).invariants
}

/// Checks a run's tasks: the liveness checks (each failing task explained
/// by a documented limitation, or not), the invariants, the numbers of the
/// report, and which tasks kept their expectations.
///
/// A task no fault touched (see [`Exposure`]) must run, have its effect
/// applied and run once, whatever the plan's [`TaskExpect`] says; the
/// plan's expectations add to that for touched tasks.
pub fn check_run(mode: Mode, run: &TaskRun<'_>) -> Checked {
    let index = Index::new(run.tasks, run.trace);
    let fence = fence::fence(mode, run, &index);
    let touched = exposure::touched(run);
    let mask = &touched.mask;
    // Per task: 1 never ran, 2 not completed (where expected), 4 lost (I4).
    let mut failing = vec![0u8; run.tasks.len()];
    let checks = liveness::checks(run, &index, mask, &mut failing);
    let cx = invariants::Cx { mode, run, index: &index, fence: &fence, mask };
    let invariants = invariants::check_all(&cx, &mut failing);
    let classes = liveness::classes(run, mask, &failing);
    let expectations = exposure::expectations(run.tasks, &touched);
    let tasks = numbers(run, &index);
    Checked { checks, tasks, invariants, classes, expectations }
}

/// Whether a task was acknowledged apart from running: answered
/// `Completed`, or acknowledged otherwise (a custodian's `Accepted`, the
/// baseline's durable enqueue).
fn acknowledged(t: &TaskRecord) -> bool {
    matches!(t.status, TaskStatus::Completed { .. }) || t.acked.is_some()
}

/// The numbers of the report's `tasks` section.
fn numbers(run: &TaskRun<'_>, index: &Index) -> Tasks {
    let tasks = run.tasks;
    let mut latencies: Vec<u64> = tasks
        .iter()
        .filter_map(|t| match t.status {
            TaskStatus::Completed { at, .. } => Some(at.saturating_sub(t.arrived)),
            _ => None,
        })
        .collect();
    latencies.sort_unstable();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1000.0
    };
    let latency = (!latencies.is_empty()).then(|| Latency {
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        max_ms: *latencies.last().expect("not empty") as f64 / 1000.0,
    });
    let c = run.counts;
    Tasks {
        submitted: c.submitted,
        completed: c.completed,
        accepted: tasks.iter().filter(|t| acknowledged(t)).count() as u64,
        executed: index.executed(),
        executions: run.trace.len() as u64,
        duplicate_executions: index.duplicate_executions(),
        cancelled_executions: run.trace.iter().filter(|e| e.cancelled).count() as u64,
        unavailable_retries: c.unavailable_retries,
        busy_retries: c.busy_retries,
        reset_retries: c.reset_retries,
        no_node_retries: c.no_node_retries,
        gave_up: c.gave_up,
        rejected: c.rejected,
        requests: c.requests,
        latency,
    }
}

/// `"tK of rJ"`.
fn task_text(k: usize, t: &TaskRecord) -> String {
    format!("{} of {}", task_id(k as u64), resource_name(t.resource))
}

/// How a task ended, in words.
fn status_text(status: &TaskStatus) -> String {
    match status {
        TaskStatus::Open => "open".into(),
        TaskStatus::Completed { token, .. } => format!("completed with τ {token}"),
        TaskStatus::GaveUp => "given up".into(),
        TaskStatus::Rejected(m) => format!("rejected ({m})"),
    }
}

#[cfg(test)]
mod tests {
    use crate::checker::testkit::*;

    #[test]
    fn a_large_trace_checks_quickly() {
        // 200,000 tasks over 20,000 resources, once each, in order.
        let n = 200_000u64;
        let mut tasks: Vec<TaskRecord> = (0..n).map(|k| record(k % 20_000, (1, k / 20_000 + 1))).collect();
        let trace: Vec<ExecRecord> =
            (0..n).map(|k| exec((k % 7) as usize, k, k % 20_000, (1, k / 20_000 + 1), k * 4, k * 4 + 2)).collect();
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(STRICT, false));
        assert!(failed(&out).is_empty(), "{out:#?}");
    }
}
