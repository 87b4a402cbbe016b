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
//! [`invariants`] gives the invariants (docs/design.md, section 12), each
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
//! end never does). In custody mode it is the fencing-aware resource of
//! docs/design.md (section 11.3): a token whose epoch is below the highest
//! applied epoch is rejected as stale; one whose sequence number is at
//! most the last applied one is recognised as already applied (a
//! re-execution after failover); anything else applies. In lock mode it is a fence on the lock service's revision
//! (a token not above the last applied one is rejected as stale) that also
//! remembers the task ids it applied (the idempotency key a resource behind
//! per-task locks needs: a task re-run under a newer revision, after its
//! "executed" mark was lost with a partition, is recognised as already
//! applied).
//!
//! Everything runs in a few sorts over indices, without a string per task:
//! a million executions check in about a second.

use std::collections::BTreeMap;

use custody::engine::Token;

use crate::plan::{Mode, TaskExpect, Workload};
use crate::report::{
    Check, CheckKind, Expectations, Invariant, Latency, LivenessClass, LivenessClasses, Tasks, class_text,
};
use crate::workload::{ClientCounts, TaskRecord, TaskStatus, parse_index, resource_name, task_id};

/// One execution, on the simulator's true clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRecord {
    /// The node that ran it.
    pub node: usize,
    /// The task's index (see [`task_id`]).
    pub task: u64,
    /// The resource's index (see [`resource_name`]).
    pub resource: u64,
    /// Its fencing token.
    pub token: Token,
    /// The attempt number the engine gave.
    pub attempt: u32,
    /// True time it started, µs.
    pub start: u64,
    /// True time it ended (its end was reported to the node, or the node
    /// stopped), µs; `None` while it runs.
    pub end: Option<u64>,
}

impl ExecRecord {
    /// The end, with a still-running execution lasting forever.
    fn end_or_max(&self) -> u64 {
        self.end.unwrap_or(u64::MAX)
    }
}

impl std::fmt::Display for ExecRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |us: u64| us as f64 / 1000.0;
        let end = self.end.map_or("running".to_string(), |e| format!("{:.3} ms", ms(e)));
        write!(
            f,
            "{} of {} with τ {} (attempt {}) on n{} [{:.3} ms – {end}]",
            task_id(self.task),
            resource_name(self.resource),
            self.token,
            self.attempt,
            self.node,
            ms(self.start)
        )
    }
}

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
}

impl Touch {
    const ALL: [Touch; 5] = [Touch::Crashed, Touch::Paused, Touch::CutOff, Touch::Removed, Touch::InDoubt];

    fn bit(self) -> Reasons {
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
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Touch::Crashed => "crashed",
            Touch::Paused => "was paused",
            Touch::CutOff => "was cut off",
            Touch::Removed => "was removed",
            Touch::InDoubt => "sent a transfer that ended in doubt",
        }
    }
}

/// Why a task's expectations were relaxed: one bit per reason.
type Reasons = u16;
/// Reason bits beyond [`Touch`]: the node the client asked was touched.
const GATEWAY: Reasons = 1 << 5;
/// A holder was still paused or cut off at the end.
const UNHEALED: Reasons = 1 << 6;
/// The lock baseline in a run with faults: every task.
const RUN_WIDE: Reasons = 1 << 7;
/// The epoch store lost its voters' majority for good before the task
/// settled.
const STORE_LOST: Reasons = 1 << 8;
/// Every reason bit.
const REASON_BITS: u32 = 9;

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

/// The trace, grouped.
struct Index {
    /// Executions of submitted tasks (on their task's resource), grouped by
    /// task, each group in (start, trace index) order.
    by_task: Vec<Ix>,
    /// `by_task[task_at[k]..task_at[k + 1]]` are task `k`'s executions.
    task_at: Vec<Ix>,
    /// Executions of tasks no client submitted, or not on their task's
    /// resource, in trace order.
    strays: Vec<Ix>,
    /// Every execution, grouped by resource, each group in (start, trace
    /// index) order.
    by_resource: Vec<Ix>,
    /// Where each resource's group starts in `by_resource`, with the end.
    resource_at: Vec<Ix>,
}

impl Index {
    fn new(tasks: &[TaskRecord], trace: &[ExecRecord]) -> Index {
        assert!(trace.len() < Ix::MAX as usize, "a trace of {} executions is too long", trace.len());
        let n = tasks.len();
        let is_stray = |e: &ExecRecord| e.task >= n as u64 || tasks[e.task as usize].resource != e.resource;
        // A counting sort by task, in trace order within a task.
        let mut task_at = vec![0 as Ix; n + 1];
        let mut strays = Vec::new();
        for (i, e) in trace.iter().enumerate() {
            if is_stray(e) {
                strays.push(i as Ix);
            } else {
                task_at[e.task as usize + 1] += 1;
            }
        }
        for k in 0..n {
            task_at[k + 1] += task_at[k];
        }
        let mut fill = task_at.clone();
        let mut by_task = vec![0 as Ix; trace.len() - strays.len()];
        for (i, e) in trace.iter().enumerate() {
            if !is_stray(e) {
                let slot = &mut fill[e.task as usize];
                by_task[*slot as usize] = i as Ix;
                *slot += 1;
            }
        }
        let key = |&i: &Ix| (trace[i as usize].start, i);
        for k in 0..n {
            let group = &mut by_task[task_at[k] as usize..task_at[k + 1] as usize];
            if group.len() > 1 && !group.is_sorted_by_key(key) {
                group.sort_unstable_by_key(key);
            }
        }
        // By resource: a counting sort when resource indices are dense (as
        // a workload's are), a comparison sort otherwise.
        let top = trace.iter().map(|e| e.resource).max().map_or(0, |r| r.saturating_add(1));
        let mut by_resource: Vec<Ix>;
        if top <= (4 * trace.len() as u64).max(1 << 16) {
            let mut at = vec![0 as Ix; top as usize + 1];
            for e in trace {
                at[e.resource as usize + 1] += 1;
            }
            for r in 0..top as usize {
                at[r + 1] += at[r];
            }
            by_resource = vec![0; trace.len()];
            for (i, e) in trace.iter().enumerate() {
                let slot = &mut at[e.resource as usize];
                by_resource[*slot as usize] = i as Ix;
                *slot += 1;
            }
        } else {
            by_resource = (0..trace.len() as Ix).collect();
            by_resource.sort_unstable_by_key(|&i| trace[i as usize].resource);
        }
        let mut resource_at = Vec::new();
        for (pos, &i) in by_resource.iter().enumerate() {
            if pos == 0 || trace[by_resource[pos - 1] as usize].resource != trace[i as usize].resource {
                resource_at.push(pos as Ix);
            }
        }
        resource_at.push(by_resource.len() as Ix);
        // Each group in (start, index) order: the trace's order already, when
        // it is in start order.
        for w in resource_at.windows(2) {
            let group = &mut by_resource[w[0] as usize..w[1] as usize];
            if !group.is_sorted_by_key(key) {
                group.sort_unstable_by_key(key);
            }
        }
        Index { by_task, task_at, strays, by_resource, resource_at }
    }

    /// Task `k`'s executions, in start order.
    fn of_task(&self, k: usize) -> &[Ix] {
        &self.by_task[self.task_at[k] as usize..self.task_at[k + 1] as usize]
    }

    /// Each resource's executions, in start order.
    fn resources(&self) -> impl Iterator<Item = &[Ix]> {
        self.resource_at.windows(2).map(|w| &self.by_resource[w[0] as usize..w[1] as usize])
    }
}

/// Offences of one kind: how many, and the earliest (by a time) with what
/// it was about.
struct Tally<T> {
    count: u64,
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

/// What the faults did to each task: reason bits ([`Touch::bit`],
/// [`GATEWAY`], [`UNHEALED`], [`RUN_WIDE`], [`STORE_LOST`]) and, for the report, the
/// exposure behind each reason's first task.
struct Touched {
    mask: Vec<Reasons>,
    /// Per reason bit: the first task (by arrival) it touched, and the
    /// exposure (or the gateway fault's or the store loss's time).
    first: BTreeMap<Reasons, (usize, Option<Exposure>, u64)>,
}

/// The exposures of resource `r`.
fn exposures(all: &[Exposure], r: u64) -> &[Exposure] {
    let lo = all.partition_point(|e| e.resource < r);
    let hi = lo + all[lo..].partition_point(|e| e.resource == r);
    &all[lo..hi]
}

fn touched(run: &TaskRun<'_>) -> Touched {
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
/// first of [`LivenessClass`]'s classes that applies.
fn classify(mask: Reasons, acknowledged: bool, status: &TaskStatus) -> Option<LivenessClass> {
    let any = |bits: Reasons| mask & bits != 0;
    if any(Touch::Crashed.bit()) {
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

/// Checks a run's tasks: the liveness checks and the numbers for the
/// report (the invariants are [`invariants`]; [`check_run`] gives both).
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
    let tasks = run.tasks;
    let trace = run.trace;
    let index = Index::new(tasks, trace);
    let fence = fence(mode, run, &index);
    let touched = touched(run);
    let mask = &touched.mask;
    let executed = (0..tasks.len()).filter(|&k| !index.of_task(k).is_empty()).count() as u64;
    let duplicate_executions = (0..tasks.len()).map(|k| index.of_task(k).len().saturating_sub(1) as u64).sum::<u64>();
    let acknowledged = |k: usize| matches!(tasks[k].status, TaskStatus::Completed { .. }) || tasks[k].acked.is_some();
    let mut checks = Vec::new();
    // Per task: 1 never ran, 2 not completed (where expected), 4 lost (I4).
    let mut failing = vec![0u8; tasks.len()];

    // The workload ran at all.
    if run.workload.count > 0 {
        checks.push(Check {
            name: "the workload ran: a run that carries tasks executes some".into(),
            ok: executed > 0,
            kind: CheckKind::Liveness,
            detail: format!("{executed} of {} tasks ran ({} arrived)", run.workload.count, tasks.len()),
            class: None,
        });
    }

    // At least once.
    let never: Vec<usize> = (0..tasks.len()).filter(|&k| index.of_task(k).is_empty()).collect();
    for &k in &never {
        failing[k] |= 1;
    }
    let (classes, unclassified) =
        tally_classes(never.iter().map(|&k| classify(mask[k], acknowledged(k), &tasks[k].status)));
    checks.push(classified_check(
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
    ));

    // Completed: every task when the plan expects it, otherwise every task
    // no fault touched.
    let all = run.expect.all_complete;
    let open: Vec<usize> = (0..tasks.len())
        .filter(|&k| (all || mask[k] == 0) && !matches!(tasks[k].status, TaskStatus::Completed { .. }))
        .collect();
    for &k in &open {
        failing[k] |= 2;
    }
    let arrived_all = tasks.len() as u64 == run.workload.count;
    let (classes, mut unclassified) =
        tally_classes(open.iter().map(|&k| classify(mask[k], acknowledged(k), &tasks[k].status)));
    if !arrived_all {
        unclassified += 1;
    }
    let whose = if all { "every task" } else { "every task no fault touched" };
    checks.push(classified_check(
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
    ));

    let invariants = invariants_of(mode, run, &index, &fence, mask, &mut failing);

    // Every failing task, once, by class.
    let (classified, unclassified) = tally_classes(
        (0..tasks.len())
            .filter(|&k| failing[k] != 0)
            .map(|k| classify(mask[k], acknowledged(k) || failing[k] & 4 != 0, &tasks[k].status)),
    );
    let classes = LivenessClasses { classified, unclassified };

    // Expectations.
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
    let expectations = Expectations { kept: tasks.len() as u64 - relaxed, relaxed, reasons, examples };

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
    let report = Tasks {
        submitted: c.submitted,
        completed: c.completed,
        accepted: (0..tasks.len()).filter(|&k| acknowledged(k)).count() as u64,
        executed,
        executions: trace.len() as u64,
        duplicate_executions,
        unavailable_retries: c.unavailable_retries,
        busy_retries: c.busy_retries,
        reset_retries: c.reset_retries,
        no_node_retries: c.no_node_retries,
        gave_up: c.gave_up,
        rejected: c.rejected,
        requests: c.requests,
        latency,
    };
    Checked { checks, tasks: report, invariants, classes, expectations }
}

/// What the simulated fencing-aware resources did with every effect.
struct Fence {
    /// Per task: effects of it applied (saturating).
    applied: Vec<u8>,
    /// Per task: its effect is in place: an execution of it that ran its
    /// full time was applied, or recognised as already applied (under its
    /// own sequence number in custody mode).
    effected: Vec<bool>,
    /// Effects applied, strays included.
    applied_total: u64,
    /// Re-executions recognised as already applied (custody: by sequence
    /// number; lock: by task id).
    already: u64,
    /// Stale effects rejected: (the last applied execution, the rejected
    /// one).
    stale: Tally<(Ix, Ix)>,
    /// A second application of a task: (the first, the second).
    twice: Tally<(Ix, Ix)>,
    /// Custody mode: a resource whose applied sequence numbers skip one
    /// (the execution applied after the gap, the number missing).
    gaps: Tally<(Ix, u64)>,
    /// Every stale effect: (its end, (the last applied, it)).
    stale_all: Vec<(u64, (Ix, Ix))>,
    /// Every gap: (the end of the execution applied after it, (it, the
    /// number missing)).
    gaps_all: Vec<(u64, (Ix, u64))>,
}

fn fence(mode: Mode, run: &TaskRun<'_>, index: &Index) -> Fence {
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
            // Ran its full time (not cut short by its node stopping): only
            // then is its effect surely in place, for I4. For the safety
            // checks every ended execution is taken to have reached the
            // resource (the worst case there).
            let complete = run.exec_us.is_none_or(|us| task.is_none_or(|k| end.saturating_sub(e.start) >= us(k)));
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
    Yes,
    Already,
    Stale,
}

/// The invariants, over the run's index and fence, with each task's reason
/// bits; marks tasks I4 finds lost (`failing |= 4`).
fn invariants_of(
    mode: Mode,
    run: &TaskRun<'_>,
    index: &Index,
    fence: &Fence,
    mask: &[Reasons],
    failing: &mut [u8],
) -> Vec<Invariant> {
    let tasks = run.tasks;
    let trace = run.trace;
    let ex = |i: Ix| &trace[i as usize];
    let make = |name: &str, about: &str, kind: CheckKind, violations: u64, detail: String| Invariant {
        name: name.into(),
        mode,
        ok: violations == 0,
        violations,
        detail,
        about: about.into(),
        kind,
        classified: BTreeMap::new(),
    };
    // Whether a fault touched resource `r` at or before `at`.
    let touched_by =
        |r: u64, at: u64| run.faults.run_wide || exposures(run.faults.exposures, r).iter().any(|e| e.from <= at);
    let resources = index.resource_at.len() - 1;
    let mut out = Vec::with_capacity(9);

    // I1: per resource, in start order, nothing starts before the latest
    // end so far.
    let mut overlaps: Tally<(Ix, Ix)> = Tally::new();
    for group in index.resources() {
        let mut latest: Option<Ix> = None;
        for &i in group {
            if let Some(l) = latest {
                if ex(i).start < ex(l).end_or_max() {
                    overlaps.add(ex(i).start, (l, i));
                }
                if ex(i).end_or_max() > ex(l).end_or_max() {
                    latest = Some(i);
                }
            } else {
                latest = Some(i);
            }
        }
    }
    out.push(make(
        "I1",
        "real-time mutual exclusion: executions of one resource never overlap in true time",
        CheckKind::Safety,
        overlaps.count,
        match overlaps.first {
            None => format!("{} executions over {resources} resources, one at a time each", trace.len()),
            Some((_, (a, b))) => format!("first: {} overlaps {}", ex(b), ex(a)),
        },
    ));

    // I2: what the fence cannot see. Its applied tokens increase by
    // construction (it rejects a token below the highest applied epoch, and
    // takes a sequence number at most the last applied as already applied),
    // so I2 checks the two things that make that fence enough:
    // * custody: every execution carries a token of an epoch whose
    //   committed ring gives the resource to the node that ran it (the
    //   token's epoch is that node's activation epoch for the resource);
    // * a stale effect (one the fence rejected) reaches a resource only
    //   after a fault touched the resource's custody: otherwise a zombie
    //   custodian ran with nothing to excuse it.
    let mut foreign: Tally<Ix> = Tally::new();
    let mut ring_checked = 0u64;
    if let (Mode::Custody, Some(owner)) = (mode, run.faults.owner) {
        for group in index.resources() {
            let mut memo: Option<(u64, Option<usize>)> = None;
            for &i in group {
                let e = ex(i);
                if e.resource == u64::MAX {
                    continue;
                }
                let who = match memo {
                    Some((epoch, who)) if epoch == e.token.epoch => who,
                    _ => {
                        let who = owner(e.token.epoch, e.resource);
                        memo = Some((e.token.epoch, who));
                        who
                    }
                };
                if let Some(who) = who {
                    ring_checked += 1;
                    if who != e.node {
                        foreign.add(e.start, i);
                    }
                }
            }
        }
    }
    let mut unexcused: Tally<(Ix, Ix)> = Tally::new();
    for &(at, (a, b)) in &fence.stale_all {
        if !touched_by(ex(b).resource, at) {
            unexcused.add(at, (a, b));
        }
    }
    let stale = fence.stale.count;
    out.push(make(
        "I2",
        "effect fencing: each token's epoch gives its resource to the node that ran it, and a stale effect \
         reaches a resource only after a fault touched its custody (the fence applies increasing tokens by \
         construction)",
        CheckKind::Safety,
        foreign.count + unexcused.count,
        if let Some((_, i)) = foreign.first {
            format!(
                "{} executions ran with a token whose epoch's ring gives the resource to another node; first: {} \
                 (epoch {}'s custodian of it is n{})",
                foreign.count,
                ex(i),
                ex(i).token.epoch,
                run.faults.owner.and_then(|o| o(ex(i).token.epoch, ex(i).resource)).unwrap_or(usize::MAX)
            )
        } else if let Some((_, (a, b))) = unexcused.first {
            format!(
                "{} stale effects reached a resource no fault had touched; first: {} after {} was applied",
                unexcused.count,
                ex(b),
                ex(a)
            )
        } else {
            format!(
                "{} effects applied in increasing token order, {} re-executions recognised as already applied; \
                 {}; {}",
                fence.applied_total,
                fence.already,
                if ring_checked > 0 {
                    format!("{ring_checked} executions' tokens checked against their epoch's ring")
                } else {
                    "tokens not checked against rings (none known)".to_string()
                },
                if stale == 0 {
                    "no stale effect reached a resource".to_string()
                } else {
                    format!("{stale} stale effects rejected, each on a resource a fault had touched")
                }
            )
        },
    ));

    // I4: every acknowledged task has its effect; custody's applied seqs
    // are contiguous. Acknowledged: a custodian accepted it (the client's
    // gateway got `Accepted`), its client was answered `Completed`, the
    // lock baseline enqueued it durably, or it ran. Lost: acknowledged and
    // no effect applied by the end, unless it had not settled: it still
    // runs, or (custody) its resource still runs another task (its queue
    // drains), or (lock) its client still waits on the durable queue.
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
                    if let Some(class) = classify(mask[k], true, &t.status) {
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
        if let Some(class) = classify(bits, true, &TaskStatus::Open) {
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
    let mut i4 = make(
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
    out.push(i4);

    // I5: no effect applied twice.
    let twice_tasks = fence.applied.iter().filter(|&&a| a > 1).count();
    out.push(make(
        "I5",
        "exactly-once effect: no task's effect applied twice",
        CheckKind::Safety,
        fence.twice.count,
        match fence.twice.first {
            None => format!("{} effects of {} tasks, each once", fence.applied_total, tasks.len()),
            Some((_, (a, b))) => {
                format!("{twice_tasks} tasks applied more than once; first: {} applied after {}", ex(b), ex(a))
            }
        },
    ));

    // I6: duplicates only where custody may be lost, each with a newer token.
    // A duplicate is allowed when a fault touched its resource's custody
    // before it started, and not after its first execution began had it
    // all ended (a window reaching into the first execution's life), and
    // the plan does not demand exactly once.
    let mut duplicates = 0u64;
    let mut dup_tasks = 0u64;
    let mut unexcused_dups = 0u64;
    let mut bad_dups: Tally<(Ix, Ix)> = Tally::new();
    for (k, task) in tasks.iter().enumerate() {
        let runs = index.of_task(k);
        if runs.len() > 1 {
            dup_tasks += 1;
        }
        for pair in runs.windows(2) {
            duplicates += 1;
            let (a, b) = (pair[0], pair[1]);
            let excused = !run.expect.exactly_once
                && (run.faults.run_wide
                    || exposures(run.faults.exposures, task.resource)
                        .iter()
                        .any(|e| e.from <= ex(b).start && e.to >= ex(a).start));
            if !excused {
                unexcused_dups += 1;
            }
            if !excused || ex(b).token <= ex(a).token {
                bad_dups.add(ex(b).start, (a, b));
            }
        }
    }
    out.push(make(
        "I6",
        "attributable duplicates: a task runs again only after a fault touched its resource's custody, with a \
         newer token",
        CheckKind::Safety,
        bad_dups.count,
        match bad_dups.first {
            None if duplicates == 0 => "no duplicate execution".into(),
            None => format!(
                "{duplicates} duplicate executions of {dup_tasks} tasks, each with a newer token after a fault \
                 touched its resource's custody"
            ),
            Some((_, (a, b))) => format!(
                "{duplicates} duplicate executions of {dup_tasks} tasks ({unexcused_dups} where no fault touched \
                 the resource's custody, or the plan demands exactly once); first: {} and again {}",
                ex(a),
                ex(b)
            ),
        },
    ));

    // I7: per resource, in start order, tokens increase; a seq goes back
    // only with a higher epoch.
    let mut disorder: Tally<(Ix, Ix)> = Tally::new();
    for group in index.resources() {
        for pair in group.windows(2) {
            let (a, b) = (ex(pair[0]).token, ex(pair[1]).token);
            if b.epoch < a.epoch || (b.epoch == a.epoch && b.seq <= a.seq) {
                disorder.add(ex(pair[1]).start, (pair[0], pair[1]));
            }
        }
    }
    out.push(make(
        "I7",
        "per-resource order: executions of one resource start in sequence order",
        CheckKind::Safety,
        disorder.count,
        match disorder.first {
            None => "every resource's executions start in increasing token order".into(),
            Some((_, (a, b))) => format!("first: {} started after {}", ex(b), ex(a)),
        },
    ));

    // I8: what the simulator saw of the chain, and custody tokens' epochs.
    let mut uncommitted: Tally<Ix> = Tally::new();
    if let (Mode::Custody, Some(committed_at)) = (mode, run.epochs.committed_at) {
        for (i, e) in trace.iter().enumerate() {
            if committed_at.get(&e.token.epoch).is_none_or(|&at| at > e.start) {
                uncommitted.add(e.start, i as Ix);
            }
        }
    }
    let chain = run.epochs.violations;
    out.push(make(
        "I8",
        "epoch discipline: one chain of committed epochs, learned epochs never go back, tokens carry committed epochs",
        CheckKind::Safety,
        chain.len() as u64 + uncommitted.count,
        match (chain.first(), uncommitted.first) {
            (Some(v), _) => v.clone(),
            (None, Some((_, i))) => format!("{} carries an epoch not committed when it started", ex(i)),
            (None, None) => match (mode, run.epochs.committed_at) {
                (Mode::Custody, Some(c)) => {
                    format!("{} epochs committed in one chain; every token's epoch committed before its start", c.len())
                }
                _ => "the epoch chain is one chain; learned epochs never went back".into(),
            },
        },
    ));

    // I11: one seq per task (custody), one task per (resource, seq), and
    // answers that name the task and a token it ran with.
    let mut reseq: Tally<(Ix, Ix)> = Tally::new();
    if mode == Mode::Custody {
        for k in 0..tasks.len() {
            for pair in index.of_task(k).windows(2) {
                if ex(pair[0]).token.seq != ex(pair[1]).token.seq {
                    reseq.add(ex(pair[1]).start, (pair[0], pair[1]));
                }
            }
        }
    }
    let mut shared_seq: Tally<(Ix, Ix)> = Tally::new();
    let mut by_seq: Vec<Ix> = Vec::new();
    for group in index.resources() {
        by_seq.clear();
        by_seq.extend_from_slice(group);
        by_seq.sort_by_key(|&i| (ex(i).token.seq, ex(i).start, i));
        for pair in by_seq.windows(2) {
            let (a, b) = (ex(pair[0]), ex(pair[1]));
            if a.token.seq == b.token.seq && a.task != b.task {
                shared_seq.add(b.start, (pair[0], pair[1]));
            }
        }
    }
    let mut bad_answers: Tally<usize> = Tally::new();
    for (k, t) in tasks.iter().enumerate() {
        if let TaskStatus::Completed { token, task_id: answered, at } = &t.status {
            let ran = index.of_task(k).iter().any(|&i| ex(i).token == *token && ex(i).end.is_some_and(|e| e <= *at));
            if parse_index(answered, 't') != Some(k as u64) || !ran {
                bad_answers.add(*at, k);
            }
        }
    }
    out.push(make(
        "I11",
        "dedup: a task keeps one sequence number, a sequence number names one task, answers name a real run",
        CheckKind::Safety,
        reseq.count + shared_seq.count + bad_answers.count,
        if let Some((_, (a, b))) = reseq.first {
            format!("a task got a second sequence number; first: {} and again {}", ex(a), ex(b))
        } else if let Some((_, (a, b))) = shared_seq.first {
            format!("two tasks share a sequence number of one resource; first: {} and {}", ex(a), ex(b))
        } else if let Some((_, k)) = bad_answers.first {
            let runs: Vec<String> = index.of_task(k).iter().map(|&i| ex(i).to_string()).collect();
            format!(
                "{} answers name another task or a token it did not run with; first: {} was answered {} \
                 but its executions are [{}]",
                bad_answers.count,
                task_id(k as u64),
                status_text(&tasks[k].status),
                runs.join("; ")
            )
        } else {
            format!(
                "{} answers each name their task and a token it ran with{}",
                run.counts.completed,
                if mode == Mode::Custody { "; every task kept one sequence number" } else { "" }
            )
        },
    ));

    // I12: only submitted tasks ran, on their resource, after they arrived.
    let mut phantoms: Tally<Ix> = Tally::new();
    for &i in &index.strays {
        phantoms.add(ex(i).start, i);
    }
    let mut early: Tally<Ix> = Tally::new();
    for (k, t) in tasks.iter().enumerate() {
        for &i in index.of_task(k) {
            if ex(i).start < t.arrived {
                early.add(ex(i).start, i);
            }
        }
    }
    out.push(make(
        "I12",
        "no phantom task: every execution is of a submitted task, on its resource, after it arrived",
        CheckKind::Safety,
        phantoms.count + early.count,
        match (phantoms.first, early.first) {
            (Some((_, i)), _) => format!("first: {} (no client submitted it on that resource)", ex(i)),
            (None, Some((_, i))) => format!(
                "first: {} started before its task arrived ({:.3} ms)",
                ex(i),
                tasks[ex(i).task as usize].arrived as f64 / 1000.0
            ),
            (None, None) => format!("{} executions, all of submitted tasks", trace.len()),
        },
    ));
    out
}

fn task_text(k: usize, t: &TaskRecord) -> String {
    format!("{} of {}", task_id(k as u64), resource_name(t.resource))
}

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
    use std::collections::BTreeSet;

    use super::*;
    use crate::plan::{Arrivals, Distribution, ExecTime};

    fn workload(count: u64) -> Workload {
        Workload {
            count,
            resources: 2,
            distribution: Distribution::Uniform,
            rate: 10.0,
            arrivals: Arrivals::Even,
            task_ms: 10,
            exec: ExecTime::Fixed,
            start_at_ms: 0,
            retry_ms: 10,
            max_attempts: 3,
        }
    }

    /// A task of `resource` answered completed with `token` at 1 s.
    fn record(resource: u64, token: (u64, u64)) -> TaskRecord {
        let token = Token { epoch: token.0, seq: token.1 };
        let status = TaskStatus::Completed { token, task_id: String::new(), at: 1_000_000 };
        TaskRecord { resource, arrived: 0, acked: None, gateway_fault: None, attempts: 1, status }
    }

    fn exec(node: usize, task: u64, resource: u64, token: (u64, u64), start: u64, end: u64) -> ExecRecord {
        let token = Token { epoch: token.0, seq: token.1 };
        ExecRecord { node, task, resource, token, attempt: 1, start, end: Some(end) }
    }

    const STRICT: TaskExpect = TaskExpect { all_complete: true, exactly_once: true };
    const LOOSE: TaskExpect = TaskExpect { all_complete: false, exactly_once: false };

    /// A run's facts beyond tasks and trace.
    #[derive(Clone)]
    struct Facts {
        expect: TaskExpect,
        /// Custody mode: the fault windows; lock mode: any makes the run's
        /// faults run-wide.
        exposures: Vec<Exposure>,
        chain: Vec<String>,
        committed_at: BTreeMap<u64, u64>,
        /// (epoch, resource) → the ring's custodian; empty: rings unknown.
        owners: BTreeMap<(u64, u64), usize>,
        /// Task `k` runs `exec_us[k]` µs; empty: every ended run was full.
        exec_us: Vec<u64>,
        /// When the store's voters' majority crashed, if it did.
        store_lost_at: Option<u64>,
    }

    /// A fault window on resource `r`.
    fn window(r: u64, touch: Touch, from: u64, to: u64) -> Exposure {
        Exposure { resource: r, touch, node: 9, from, to, unhealed: to == u64::MAX && touch == Touch::Paused }
    }

    /// `touched`: a pause of a holder of resources 0 and 1 for the whole
    /// run (healed by the end).
    fn facts(expect: TaskExpect, touched: bool) -> Facts {
        let exposures =
            if touched { (0..2).map(|r| window(r, Touch::Paused, 0, u64::MAX - 1)).collect() } else { Vec::new() };
        // Epochs 1 to 3 committed at time 0.
        Facts {
            expect,
            exposures,
            chain: Vec::new(),
            committed_at: (1..=3).map(|e| (e, 0)).collect(),
            owners: BTreeMap::new(),
            exec_us: Vec::new(),
            store_lost_at: None,
        }
    }

    /// Names every answer after its own task, then runs `f` on the run.
    fn with_run<R>(tasks: &mut [TaskRecord], trace: &[ExecRecord], facts: &Facts, f: impl Fn(&TaskRun<'_>) -> R) -> R {
        for (k, t) in tasks.iter_mut().enumerate() {
            if let TaskStatus::Completed { task_id: id, .. } = &mut t.status
                && id.is_empty()
            {
                *id = task_id(k as u64);
            }
        }
        let w = workload(tasks.len() as u64);
        let completed = tasks.iter().filter(|t| matches!(t.status, TaskStatus::Completed { .. })).count() as u64;
        let counts = ClientCounts { submitted: tasks.len() as u64, completed, ..Default::default() };
        let tasks: &[TaskRecord] = tasks;
        let mut exposures = facts.exposures.clone();
        exposures.sort_by_key(|e| (e.resource, e.from));
        let owner = |epoch: u64, r: u64| facts.owners.get(&(epoch, r)).copied();
        let exec_us = |k: u64| facts.exec_us[k as usize];
        f(&TaskRun {
            workload: &w,
            expect: facts.expect,
            tasks,
            counts,
            trace,
            faults: FaultFacts {
                exposures: &exposures,
                run_wide: false,
                store_lost_at: facts.store_lost_at,
                owner: (!facts.owners.is_empty()).then_some(&owner as &dyn Fn(u64, u64) -> Option<usize>),
            },
            exec_us: (!facts.exec_us.is_empty()).then_some(&exec_us as &dyn Fn(u64) -> u64),
            epochs: EpochFacts { violations: &facts.chain, committed_at: Some(&facts.committed_at) },
        })
    }

    /// In lock mode, the baseline's faults are run-wide.
    fn lock_run<R>(tasks: &mut [TaskRecord], trace: &[ExecRecord], facts: &Facts, f: impl Fn(&TaskRun<'_>) -> R) -> R {
        let run_wide = !facts.exposures.is_empty();
        with_run(tasks, trace, &Facts { exposures: Vec::new(), ..facts.clone() }, |run| {
            f(&TaskRun { faults: FaultFacts { run_wide, ..run.faults }, ..*run })
        })
    }

    fn invs(mode: Mode, tasks: &mut [TaskRecord], trace: &[ExecRecord], facts: &Facts) -> Vec<Invariant> {
        let out = match mode {
            Mode::Custody => with_run(tasks, trace, facts, |run| invariants(mode, run)),
            Mode::Lock => lock_run(tasks, trace, facts, |run| invariants(mode, run)),
        };
        let names: Vec<&str> = out.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["I1", "I2", "I4", "I5", "I6", "I7", "I8", "I11", "I12"]);
        for i in &out {
            assert_eq!(i.mode, mode);
            assert_eq!(i.ok, i.violations == 0, "{i:?}");
        }
        out
    }

    fn failed(invariants: &[Invariant]) -> Vec<&str> {
        invariants.iter().filter(|i| !i.ok).map(|i| i.name.as_str()).collect()
    }

    fn get<'a>(invariants: &'a [Invariant], name: &str) -> &'a Invariant {
        invariants.iter().find(|i| i.name == name).expect("listed")
    }

    #[test]
    fn a_clean_trace_passes_every_invariant_in_both_modes() {
        let mut tasks = [record(0, (1, 1)), record(0, (2, 2)), record(1, (1, 1))];
        let trace = [
            exec(0, 0, 0, (1, 1), 100, 200),
            exec(1, 2, 1, (1, 1), 150, 250),
            // Back to back on another node: half-open intervals touch.
            exec(1, 1, 0, (2, 2), 200, 300),
        ];
        for mode in [Mode::Custody, Mode::Lock] {
            let out = invs(mode, &mut tasks, &trace, &facts(STRICT, false));
            assert!(failed(&out).is_empty(), "{out:#?}");
            assert!(get(&out, "I2").detail.contains("3 effects applied"), "{:?}", get(&out, "I2"));
            let check = get(&out, "I1").to_check();
            assert!(check.ok && check.name.starts_with("I1 (") && check.kind == CheckKind::Safety, "{check:?}");
        }
        let (checks, report) = with_run(&mut tasks, &trace, &facts(STRICT, false), |run| check(Mode::Custody, run));
        assert!(checks.iter().all(|c| c.ok), "{checks:#?}");
        assert_eq!((report.executed, report.executions, report.duplicate_executions), (3, 3, 0));
    }

    #[test]
    fn a_failover_re_execution_is_attributable_and_applied_once() {
        // t0 ran at epoch 1 on n0, which stopped as it ended; n1 ran it again
        // at epoch 2 under the same seq, then t1.
        let mut tasks = [record(0, (2, 1)), record(0, (2, 2))];
        let trace =
            [exec(0, 0, 0, (1, 1), 100, 150), exec(1, 0, 0, (2, 1), 5_000, 5_100), exec(1, 1, 0, (2, 2), 5_100, 5_200)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, true));
        assert!(failed(&out).is_empty(), "{out:#?}");
        assert!(get(&out, "I2").detail.contains("1 re-executions recognised as already applied"));
        assert!(get(&out, "I6").detail.contains("1 duplicate executions of 1 tasks, each with a newer token"));
        // In a run that cannot lose custody, or must run each task once, the
        // duplicate is a violation.
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, false));
        assert_eq!(failed(&out), ["I6"]);
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(STRICT, true));
        assert_eq!(failed(&out), ["I6"]);
        let i6 = get(&out, "I6");
        assert!(i6.detail.contains("t0 of r0 with τ") && i6.detail.contains("on n1"), "{i6:?}");
    }

    #[test]
    fn i1_catches_an_overlap_with_the_first_pair() {
        let mut tasks = [record(0, (1, 1)), record(0, (1, 2))];
        let trace = [exec(0, 0, 0, (1, 1), 100, 200), exec(1, 1, 0, (1, 2), 150, 300)];
        for mode in [Mode::Custody, Mode::Lock] {
            let out = invs(mode, &mut tasks, &trace, &facts(STRICT, false));
            assert_eq!(failed(&out), ["I1"]);
            let i1 = get(&out, "I1");
            assert_eq!(i1.violations, 1);
            assert!(i1.detail.contains("first: t1 of r0") && i1.detail.contains("overlaps t0 of r0"), "{i1:?}");
        }
    }

    #[test]
    fn i2_catches_a_stale_effect_unless_a_fault_touched_the_resource() {
        // A zombie: t0 at epoch 1 ends after t1 at epoch 2 was applied.
        let mut tasks = [record(0, (1, 1)), record(0, (2, 2))];
        let trace = [exec(0, 0, 0, (1, 1), 100, 1_000), exec(1, 1, 0, (2, 2), 300, 400)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, false));
        // Also an overlap, and t0's effect never landed.
        assert_eq!(failed(&out), ["I1", "I2", "I4"]);
        let i2 = get(&out, "I2");
        assert!(i2.detail.contains("first: t0 of r0") && i2.detail.contains("after t1 of r0"), "{i2:?}");
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, true));
        assert_eq!(failed(&out), ["I1", "I4"]);
        assert!(get(&out, "I2").detail.contains("1 stale effects rejected, each on a resource a fault had touched"));
        // The lock baseline's fence is the lock revision.
        let mut tasks = [record(0, (1, 3)), record(0, (1, 4))];
        let trace = [exec(0, 0, 0, (1, 3), 100, 1_000), exec(1, 1, 0, (1, 4), 300, 400)];
        let out = invs(Mode::Lock, &mut tasks, &trace, &facts(LOOSE, false));
        assert_eq!(failed(&out), ["I1", "I2", "I4"]);
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
    fn i5_catches_an_effect_applied_twice() {
        // Custody: a task that got a second seq is applied twice.
        let mut tasks = [record(0, (1, 2))];
        let trace = [exec(0, 0, 0, (1, 1), 100, 200), exec(1, 0, 0, (1, 2), 300, 400)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, true));
        assert_eq!(failed(&out), ["I5", "I11"]);
        let i5 = get(&out, "I5");
        assert!(i5.detail.contains("1 tasks applied more than once") && i5.detail.contains("on n1"), "{i5:?}");
        // The baseline ran t0 again under a newer lock revision (its mark was
        // lost): the resource knows the task id and applies it once.
        let out = invs(Mode::Lock, &mut tasks, &trace, &facts(LOOSE, true));
        assert!(failed(&out).is_empty(), "{out:#?}");
        assert!(
            get(&out, "I2").detail.contains("1 re-executions recognised as already applied"),
            "{:?}",
            get(&out, "I2")
        );
    }

    #[test]
    fn i6_catches_a_re_execution_without_a_newer_token() {
        let mut tasks = [record(0, (2, 1))];
        let trace = [exec(0, 0, 0, (2, 1), 100, 200), exec(1, 0, 0, (2, 1), 300, 400)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, true));
        assert_eq!(failed(&out), ["I6", "I7"]);
        assert!(get(&out, "I6").detail.contains("1 duplicate executions of 1 tasks (0 where"), "{:?}", get(&out, "I6"));
    }

    #[test]
    fn i7_catches_a_seq_started_out_of_order() {
        let mut tasks = [record(0, (1, 2)), record(0, (1, 1))];
        let trace = [exec(0, 0, 0, (1, 2), 100, 200), exec(0, 1, 0, (1, 1), 300, 400)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(STRICT, false));
        // The fence takes seq 1 after seq 2 for done: t1's effect is lost,
        // and seq 1 was never applied first.
        assert_eq!(failed(&out), ["I4", "I7"]);
        let i7 = get(&out, "I7");
        assert!(i7.detail.contains("first: t1 of r0") && i7.detail.contains("started after t0 of r0"), "{i7:?}");
        // Lock revisions out of order, too.
        let out = invs(Mode::Lock, &mut tasks, &trace, &facts(STRICT, false));
        assert!(failed(&out).contains(&"I7"), "{out:#?}");
    }

    #[test]
    fn i8_reports_the_chain_and_catches_an_uncommitted_token_epoch() {
        let mut tasks = [record(0, (1, 1))];
        let trace = [exec(0, 0, 0, (1, 1), 100, 200)];
        let mut f = facts(STRICT, false);
        f.chain.push("epoch chain forked: epoch 2 has two hashes".into());
        let out = invs(Mode::Custody, &mut tasks, &trace, &f);
        assert_eq!(failed(&out), ["I8"]);
        assert_eq!(get(&out, "I8").detail, "epoch chain forked: epoch 2 has two hashes");
        // A token of epoch 5, which was never committed; epoch 3 committed
        // only after the start.
        let mut tasks = [record(0, (5, 1)), record(1, (3, 1))];
        let trace = [exec(0, 0, 0, (5, 1), 100, 200), exec(0, 1, 1, (3, 1), 100, 200)];
        let mut f = facts(STRICT, false);
        f.committed_at.insert(3, 150);
        let out = invs(Mode::Custody, &mut tasks, &trace, &f);
        assert_eq!(failed(&out), ["I8"]);
        assert_eq!(get(&out, "I8").violations, 2);
        // The baseline's tokens are lock revisions, not epochs.
        let out = invs(Mode::Lock, &mut tasks, &trace, &f);
        assert!(failed(&out).is_empty(), "{out:#?}");
    }

    #[test]
    fn i11_catches_a_shared_seq_and_a_false_answer() {
        // Two tasks under seq 1 of r0.
        let mut tasks = [record(0, (1, 1)), record(0, (2, 1))];
        let trace = [exec(0, 0, 0, (1, 1), 100, 200), exec(1, 1, 0, (2, 1), 300, 400)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(STRICT, false));
        assert_eq!(failed(&out), ["I4", "I11"]);
        assert!(get(&out, "I11").detail.contains("two tasks share a sequence number"), "{:?}", get(&out, "I11"));
        // An answer naming a token the task did not run with, and one naming
        // another task.
        let mut tasks = [record(0, (1, 2)), record(1, (1, 1))];
        tasks[1].status = TaskStatus::Completed { token: Token { epoch: 1, seq: 1 }, task_id: "t0".into(), at: 1_000 };
        let trace = [exec(0, 0, 0, (1, 1), 100, 200), exec(0, 1, 1, (1, 1), 100, 200)];
        for mode in [Mode::Custody, Mode::Lock] {
            let out = invs(mode, &mut tasks, &trace, &facts(STRICT, false));
            assert_eq!(failed(&out), ["I11"]);
            let i11 = get(&out, "I11");
            assert_eq!(i11.violations, 2);
            assert!(i11.detail.contains("first: t1 was answered completed with τ"), "{i11:?}");
        }
    }

    #[test]
    fn i12_catches_phantoms_and_early_starts() {
        let mut tasks = [record(0, (1, 1)), record(1, (1, 1))];
        tasks[1].arrived = 500;
        let trace = [
            exec(0, 0, 0, (1, 1), 100, 200),
            // No client submitted task 9, nor task 0 on r1.
            exec(0, u64::MAX, 1, (1, 5), 100, 150),
            // t1 ran before it arrived.
            exec(0, 1, 1, (1, 1), 300, 400),
        ];
        let out = invs(Mode::Lock, &mut tasks, &trace, &facts(LOOSE, false));
        assert!(failed(&out).contains(&"I12"), "{out:#?}");
        let i12 = get(&out, "I12");
        assert_eq!(i12.violations, 2);
        assert!(i12.detail.contains("no client submitted it"), "{i12:?}");
        let trace = [exec(0, 0, 0, (1, 1), 100, 200), exec(0, 1, 1, (1, 1), 300, 400)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, false));
        assert_eq!(failed(&out), ["I12"]);
        assert!(get(&out, "I12").detail.contains("started before its task arrived (0.500 ms)"));
    }

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

    /// A task accepted (acknowledged to its client's gateway) at 50 µs
    /// that is still open at the end.
    fn accepted_open(resource: u64) -> TaskRecord {
        TaskRecord { acked: Some(50), status: TaskStatus::Open, ..record(resource, (1, 1)) }
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

    #[test]
    fn i2_catches_a_token_whose_epoch_gives_the_resource_to_another_node() {
        let mut tasks = [record(0, (1, 1)), record(0, (2, 2))];
        let trace = [exec(0, 0, 0, (1, 1), 100, 200), exec(1, 1, 0, (2, 2), 300, 400)];
        let mut f = facts(STRICT, false);
        f.owners.insert((1, 0), 0);
        f.owners.insert((2, 0), 1);
        let out = invs(Mode::Custody, &mut tasks, &trace, &f);
        assert!(failed(&out).is_empty(), "{out:#?}");
        assert!(get(&out, "I2").detail.contains("2 executions' tokens checked"), "{:?}", get(&out, "I2"));
        // Epoch 2's ring gives r0 to n0, yet n1 ran with an epoch-2 token.
        f.owners.insert((2, 0), 0);
        let out = invs(Mode::Custody, &mut tasks, &trace, &f);
        assert_eq!(failed(&out), ["I2"]);
        let i2 = get(&out, "I2");
        assert_eq!(i2.violations, 1);
        assert!(i2.detail.contains("first: t1 of r0") && i2.detail.contains("custodian of it is n0"), "{i2:?}");
    }

    #[test]
    fn i2_allows_a_stale_effect_only_on_a_resource_a_fault_touched_first() {
        // Zombies on r0 and on r1; a fault touched r1 before, r0 never.
        let mut tasks = [record(0, (1, 1)), record(0, (2, 2)), record(1, (1, 1)), record(1, (2, 2))];
        let trace = [
            exec(0, 0, 0, (1, 1), 100, 1_000),
            exec(1, 1, 0, (2, 2), 300, 400),
            exec(0, 2, 1, (1, 1), 100, 1_000),
            exec(1, 3, 1, (2, 2), 300, 400),
        ];
        let mut f = facts(LOOSE, false);
        f.exposures.push(window(1, Touch::Paused, 50, 900));
        let out = invs(Mode::Custody, &mut tasks, &trace, &f);
        let i2 = get(&out, "I2");
        assert_eq!(i2.violations, 1, "{i2:?}");
        assert!(i2.detail.contains("first: t0 of r0"), "{i2:?}");
        // Touched after the stale effect arrived: not excused either.
        f.exposures.push(window(0, Touch::Paused, 2_000, 3_000));
        assert_eq!(get(&invs(Mode::Custody, &mut tasks, &trace, &f), "I2").violations, 1);
        f.exposures.push(window(0, Touch::CutOff, 200, 3_000));
        assert!(get(&invs(Mode::Custody, &mut tasks, &trace, &f), "I2").ok);
    }

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
