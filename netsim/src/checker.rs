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
//! [`invariants`] gives the invariants of the handoff reference (section
//! 6.2), each with a count of offences and the first offending execution or
//! pair of them:
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
//! end never does). In custody mode it is the reference's resource (section
//! 3.6): a token whose epoch is below the highest applied epoch is rejected
//! as stale; one whose sequence number is at most the last applied one is
//! recognised as already applied (a re-execution after failover); anything
//! else applies. In lock mode it is a fence on the lock service's revision
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
use crate::report::{Check, CheckKind, Invariant, Latency, Tasks};
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

/// What the checker reads.
pub struct TaskRun<'a> {
    /// The workload.
    pub workload: &'a Workload,
    /// What must hold beyond the standing checks.
    pub expect: TaskExpect,
    /// Every task that arrived, by index.
    pub tasks: &'a [TaskRecord],
    /// The clients' counters.
    pub counts: ClientCounts,
    /// Every execution, in start order. One of a task no client submitted
    /// has the index `u64::MAX`.
    pub trace: &'a [ExecRecord],
    /// Whether custody (or a lock) may be lost in the run — a crash, a
    /// pause, a partition ([`crate::plan::Plan::may_lose_custody`]): only
    /// then may a task run twice, or a stale effect reach a resource.
    pub may_lose_custody: bool,
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

/// Checks a run's tasks: the liveness checks, and the numbers for the
/// report. The safety checks are [`invariants`].
pub fn check(run: &TaskRun<'_>) -> (Vec<Check>, Tasks) {
    let tasks = run.tasks;
    let trace = run.trace;
    let index = Index::new(tasks, trace);
    let executed = (0..tasks.len()).filter(|&k| !index.of_task(k).is_empty()).count() as u64;
    let duplicate_executions = (0..tasks.len()).map(|k| index.of_task(k).len().saturating_sub(1) as u64).sum::<u64>();
    let mut checks = Vec::new();

    // At least once.
    let never: Vec<usize> = (0..tasks.len()).filter(|&k| index.of_task(k).is_empty()).collect();
    checks.push(Check {
        name: "every submitted task ran at least once".into(),
        ok: never.is_empty(),
        kind: CheckKind::Liveness,
        detail: match never.first() {
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
    });

    // All completed.
    if run.expect.all_complete {
        let open: Vec<usize> =
            (0..tasks.len()).filter(|&k| !matches!(tasks[k].status, TaskStatus::Completed { .. })).collect();
        let arrived_all = tasks.len() as u64 == run.workload.count;
        checks.push(Check {
            name: "every task arrived and completed".into(),
            ok: open.is_empty() && arrived_all,
            kind: CheckKind::Liveness,
            detail: match open.first() {
                None if arrived_all => format!("{} of {} tasks completed", run.counts.completed, tasks.len()),
                None => format!("only {} of {} tasks arrived before the end", tasks.len(), run.workload.count),
                Some(&k) => format!(
                    "{} of {} tasks not completed ({} gave up, {} rejected, {} open); the first, {}, \
                     arrived at {} ms and ended {} after {} submits",
                    open.len(),
                    tasks.len(),
                    run.counts.gave_up,
                    run.counts.rejected,
                    open.iter().filter(|&&k| tasks[k].status == TaskStatus::Open).count(),
                    task_text(k, &tasks[k]),
                    tasks[k].arrived / 1000,
                    status_text(&tasks[k].status),
                    tasks[k].attempts
                ),
            },
        });
    }

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
    (checks, report)
}

/// What the simulated fencing-aware resources did with every effect.
struct Fence {
    /// Per task: effects of it applied (saturating).
    applied: Vec<u8>,
    /// Per task: its effect is in place (applied, or recognised as already
    /// applied under its own sequence number).
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
                Applied::Stale => f.stale.add(end, (last.expect("something applied"), i)),
                Applied::Already if mode == Mode::Lock => {
                    f.already += 1;
                    last = Some(i);
                }
                Applied::Already => {
                    f.already += 1;
                    let same = applied_here
                        .binary_search_by_key(&e.token.seq, |&(s, _)| s)
                        .is_ok_and(|at| Some(applied_here[at].1) == task);
                    if let (true, Some(k)) = (same, task) {
                        f.effected[k as usize] = true;
                    }
                }
                Applied::Yes => {
                    if mode == Mode::Custody {
                        let expected = applied_here.last().map_or(1, |&(s, _)| s + 1);
                        if e.token.seq != expected {
                            f.gaps.add(end, (i, expected));
                        }
                    }
                    applied_here.push((e.token.seq, task.unwrap_or(u64::MAX)));
                    last = Some(i);
                    f.applied_total += 1;
                    if let Some(k) = task.map(|k| k as usize) {
                        f.effected[k] = true;
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

/// Checks the invariants of the handoff reference (section 6.2) over one
/// mode's trace: one entry per invariant, in the order I1, I2, I4, I5, I6,
/// I7, I8, I11, I12.
pub fn invariants(mode: Mode, run: &TaskRun<'_>) -> Vec<Invariant> {
    let tasks = run.tasks;
    let trace = run.trace;
    let index = Index::new(tasks, trace);
    let fence = fence(mode, run, &index);
    let ex = |i: Ix| &trace[i as usize];
    let make = |name: &str, about: &str, kind: CheckKind, violations: u64, detail: String| Invariant {
        name: name.into(),
        mode,
        ok: violations == 0,
        violations,
        detail,
        about: about.into(),
        kind,
    };
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

    // I2: the fence applied in increasing token order (by construction);
    // a stale effect reached it only where custody may be lost.
    let stale_counts = !run.may_lose_custody;
    let stale = fence.stale.count;
    out.push(make(
        "I2",
        "effect fencing: a fencing-aware resource applies each resource's effects in increasing token order",
        CheckKind::Safety,
        if stale_counts { stale } else { 0 },
        match fence.stale.first {
            Some((_, (a, b))) if stale_counts => format!(
                "{stale} stale effects reached a resource in a run that cannot lose custody; first: {} after {} \
                 was applied",
                ex(b),
                ex(a)
            ),
            _ => format!(
                "{} effects applied in increasing token order, {} re-executions recognised as already applied; {}",
                fence.applied_total,
                fence.already,
                if stale == 0 {
                    "no stale effect reached a resource".to_string()
                } else {
                    format!("{stale} stale effects rejected (allowed: custody may be lost in this run)")
                }
            ),
        },
    ));

    // I4: every acknowledged task has its effect; custody's applied seqs
    // are contiguous.
    let mut acknowledged = 0u64;
    let mut in_progress = 0u64;
    let mut lost: Tally<usize> = Tally::new();
    for (k, t) in tasks.iter().enumerate() {
        let runs = index.of_task(k);
        let acked = matches!(t.status, TaskStatus::Completed { .. }) || t.acked.is_some() || !runs.is_empty();
        if acked {
            acknowledged += 1;
            if !fence.effected[k] {
                // Not lost while the run had not settled for it: its client
                // still waits, or it still runs (the completion check
                // reports those).
                if t.status == TaskStatus::Open || runs.iter().any(|&i| ex(i).end.is_none()) {
                    in_progress += 1;
                } else {
                    lost.add(t.arrived, k);
                }
            }
        }
    }
    let unsettled = if in_progress == 0 {
        String::new()
    } else {
        format!(" ({in_progress} more still in progress at the end: waiting or running, not counted as lost)")
    };
    let i4_kind = if run.expect.all_complete { CheckKind::Safety } else { CheckKind::Liveness };
    out.push(make(
        "I4",
        "no acknowledged task lost: each has its effect applied (after the run, its quiescence included)",
        i4_kind,
        lost.count + fence.gaps.count,
        match (&lost.first, &fence.gaps.first) {
            (Some((_, k)), _) => {
                let runs: Vec<String> = index.of_task(*k).iter().map(|&i| ex(i).to_string()).collect();
                format!(
                    "{} of {acknowledged} acknowledged tasks have no effect applied{unsettled}; the first to \
                     arrive, {}, arrived at {:.3} ms, ended {}, executions [{}]",
                    lost.count,
                    task_text(*k, &tasks[*k]),
                    tasks[*k].arrived as f64 / 1000.0,
                    status_text(&tasks[*k].status),
                    runs.join("; ")
                )
            }
            (None, Some((_, (i, missing)))) => format!(
                "{} gaps in applied sequence numbers; first: {} applied where seq {missing} was due",
                fence.gaps.count,
                ex(*i)
            ),
            (None, None) => format!(
                "{acknowledged} acknowledged tasks, each with its effect applied{unsettled}{}",
                if mode == Mode::Custody { "; applied seqs contiguous per resource" } else { "" }
            ),
        },
    ));

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
    let dups_allowed = run.may_lose_custody && !run.expect.exactly_once;
    let mut duplicates = 0u64;
    let mut dup_tasks = 0u64;
    let mut bad_dups: Tally<(Ix, Ix)> = Tally::new();
    for k in 0..tasks.len() {
        let runs = index.of_task(k);
        if runs.len() > 1 {
            dup_tasks += 1;
        }
        for pair in runs.windows(2) {
            duplicates += 1;
            let (a, b) = (pair[0], pair[1]);
            if !dups_allowed || ex(b).token <= ex(a).token {
                bad_dups.add(ex(b).start, (a, b));
            }
        }
    }
    out.push(make(
        "I6",
        "attributable duplicates: a task runs again only after custody may have been lost, with a newer token",
        CheckKind::Safety,
        bad_dups.count,
        match bad_dups.first {
            None if duplicates == 0 => "no duplicate execution".into(),
            None => format!(
                "{duplicates} duplicate executions of {dup_tasks} tasks, each with a newer token \
                 (allowed: custody may be lost in this run)"
            ),
            Some((_, (a, b))) => format!(
                "{duplicates} duplicate executions of {dup_tasks} tasks{}; first: {} and again {}",
                if dups_allowed { "" } else { " in a run that must run each task once" },
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
        TaskRecord { resource, arrived: 0, acked: None, attempts: 1, status }
    }

    fn exec(node: usize, task: u64, resource: u64, token: (u64, u64), start: u64, end: u64) -> ExecRecord {
        let token = Token { epoch: token.0, seq: token.1 };
        ExecRecord { node, task, resource, token, attempt: 1, start, end: Some(end) }
    }

    const STRICT: TaskExpect = TaskExpect { all_complete: true, exactly_once: true };
    const LOOSE: TaskExpect = TaskExpect { all_complete: false, exactly_once: false };

    /// A run's facts beyond tasks and trace.
    struct Facts {
        expect: TaskExpect,
        may_lose_custody: bool,
        chain: Vec<String>,
        committed_at: BTreeMap<u64, u64>,
    }

    fn facts(expect: TaskExpect, may_lose_custody: bool) -> Facts {
        // Epochs 1 to 3 committed at time 0.
        Facts { expect, may_lose_custody, chain: Vec::new(), committed_at: (1..=3).map(|e| (e, 0)).collect() }
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
        f(&TaskRun {
            workload: &w,
            expect: facts.expect,
            tasks,
            counts,
            trace,
            may_lose_custody: facts.may_lose_custody,
            epochs: EpochFacts { violations: &facts.chain, committed_at: Some(&facts.committed_at) },
        })
    }

    fn invs(mode: Mode, tasks: &mut [TaskRecord], trace: &[ExecRecord], facts: &Facts) -> Vec<Invariant> {
        let out = with_run(tasks, trace, facts, |run| invariants(mode, run));
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
        let (checks, report) = with_run(&mut tasks, &trace, &facts(STRICT, false), check);
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
    fn i2_catches_a_stale_effect_unless_custody_may_be_lost() {
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
        assert!(get(&out, "I2").detail.contains("1 stale effects rejected (allowed"));
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
        assert_eq!(i4.kind, CheckKind::Liveness);
        assert!(i4.detail.contains("1 of 2 acknowledged tasks") && i4.detail.contains("t1 of r1"), "{i4:?}");
        // Expected to complete: losing it is a safety failure.
        let out = invs(Mode::Lock, &mut tasks, &trace, &facts(STRICT, false));
        assert_eq!(get(&out, "I4").kind, CheckKind::Safety);
        assert_eq!(failed(&out), ["I4"]);
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
        assert!(get(&out, "I6").detail.contains("1 duplicate executions of 1 tasks; first"), "{:?}", get(&out, "I6"));
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
        let (checks, _) = with_run(&mut tasks, &trace, &facts(STRICT, false), check);
        let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
        assert_eq!(failed, ["every submitted task ran at least once", "every task arrived and completed"]);
        assert!(checks.iter().all(|c| c.kind == CheckKind::Liveness));
        assert!(checks[0].detail.contains("the first, t1 of r1") && checks[0].detail.contains("given up"));
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
