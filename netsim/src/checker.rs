//! The task checker: reads the execution trace (every execution on the
//! simulator's true clock) and the clients' records, and checks what custody
//! promises about tasks.
//!
//! * every submitted task ran at least once (liveness);
//! * every acknowledged task ran, with the token its answer names (safety);
//! * no task ran twice, unless custody may be lost in the run (safety);
//! * every submitted task completed, when the plan expects it (liveness);
//! * executions of one resource never overlap in true time (safety);
//! * tokens and sequence numbers of one resource strictly increase in start
//!   order (safety).
//!
//! A failing check names the first offending execution, or pair of them.

use std::collections::BTreeMap;

use custody::engine::Token;

use crate::plan::{TaskExpect, Workload};
use crate::report::{Check, CheckKind, Latency, Tasks};
use crate::workload::{ClientCounts, TaskRecord, TaskStatus, resource_name, task_id};

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
}

/// Checks a run's tasks: the checks, and the numbers for the report.
pub fn check(run: &TaskRun<'_>) -> (Vec<Check>, Tasks) {
    let tasks = run.tasks;
    let trace = run.trace;
    // Executions per task, in start order.
    let mut per_task: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
    let mut strays: Vec<String> = Vec::new();
    for (i, e) in trace.iter().enumerate() {
        match per_task.get_mut(e.task as usize) {
            Some(list) if tasks[e.task as usize].resource == e.resource => list.push(i),
            _ => strays.push(format!("{e} (no client submitted it)")),
        }
    }
    let executed = per_task.iter().filter(|l| !l.is_empty()).count() as u64;
    let duplicate_executions = per_task.iter().map(|l| l.len().saturating_sub(1) as u64).sum::<u64>();
    let mut checks = Vec::new();

    // At least once.
    let never: Vec<usize> = (0..tasks.len()).filter(|&k| per_task[k].is_empty()).collect();
    checks.push(Check {
        name: "every submitted task ran at least once".into(),
        ok: never.is_empty(),
        kind: CheckKind::Liveness,
        detail: match never.first() {
            None => format!("{executed} of {} tasks ran ({} executions)", tasks.len(), trace.len()),
            Some(&k) => format!(
                "{} of {} tasks never ran; the first, {} of {}, arrived at {} ms and ended {} after {} submits",
                never.len(),
                tasks.len(),
                task_id(k as u64),
                resource_name(tasks[k].resource),
                tasks[k].arrived / 1000,
                status_text(&tasks[k].status),
                tasks[k].attempts
            ),
        },
    });

    // Acknowledged tasks ran, with their token.
    let mut unacked_runs: Vec<String> = Vec::new();
    for (k, t) in tasks.iter().enumerate() {
        if let TaskStatus::Completed { token, task_id: answered, at } = &t.status {
            let ran = per_task[k].iter().any(|&i| trace[i].token == *token && trace[i].end.is_some_and(|e| e <= *at));
            if *answered != task_id(k as u64) {
                unacked_runs.push(format!("{}'s client was answered about task {answered:?}", task_id(k as u64)));
            } else if !ran {
                let runs: Vec<String> = per_task[k].iter().map(|&i| trace[i].to_string()).collect();
                unacked_runs.push(format!(
                    "{} was answered completed with τ {token} at {:.3} ms, but its executions are [{}]",
                    task_id(k as u64),
                    *at as f64 / 1000.0,
                    runs.join("; ")
                ));
            }
        }
    }
    let problems = unacked_runs.len() + strays.len();
    checks.push(Check {
        name: "every completed task ran, with the token its answer names, and only submitted tasks ran".into(),
        ok: problems == 0,
        kind: CheckKind::Safety,
        detail: if problems == 0 {
            format!("{} completions match an earlier execution", run.counts.completed)
        } else {
            format!(
                "{} answers without a matching execution, {} executions of unsubmitted tasks; first: {}",
                unacked_runs.len(),
                strays.len(),
                unacked_runs.first().or(strays.first()).expect("one problem")
            )
        },
    });

    // Exactly once.
    let first_dup = per_task
        .iter()
        .filter(|l| l.len() > 1)
        .map(|l| (l[0], l[1]))
        .min_by_key(|&(_, second)| (trace[second].start, second));
    checks.push(Check {
        name: if run.expect.exactly_once {
            "no task ran twice".into()
        } else {
            "tasks that ran twice (allowed: custody may be lost in this run)".into()
        },
        ok: !run.expect.exactly_once || first_dup.is_none(),
        kind: CheckKind::Safety,
        detail: match first_dup {
            None => "no duplicate execution".into(),
            Some((a, b)) => format!(
                "{duplicate_executions} duplicate executions of {} tasks; first: {} and again {}",
                per_task.iter().filter(|l| l.len() > 1).count(),
                trace[a],
                trace[b]
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
                    "{} of {} tasks not completed ({} gave up, {} rejected, {} open); the first, {} of {}, \
                     arrived at {} ms and ended {} after {} submits",
                    open.len(),
                    tasks.len(),
                    run.counts.gave_up,
                    run.counts.rejected,
                    open.iter().filter(|&&k| tasks[k].status == TaskStatus::Open).count(),
                    task_id(k as u64),
                    resource_name(tasks[k].resource),
                    tasks[k].arrived / 1000,
                    status_text(&tasks[k].status),
                    tasks[k].attempts
                ),
            },
        });
    }

    // Per resource, in start order: no overlap, increasing tokens and seqs.
    let mut per_resource: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, e) in trace.iter().enumerate() {
        per_resource.entry(e.resource).or_default().push(i);
    }
    let mut overlaps = 0u64;
    let mut first_overlap: Option<(usize, usize)> = None;
    let mut disorders = 0u64;
    let mut first_disorder: Option<(usize, usize)> = None;
    let earlier = |candidate: (usize, usize), first: Option<(usize, usize)>| {
        first.is_none_or(|(_, b)| (trace[candidate.1].start, candidate.1) < (trace[b].start, b))
    };
    for list in per_resource.values() {
        // The trace is in start order; keep it so for equal starts.
        let mut order = list.clone();
        order.sort_by_key(|&i| (trace[i].start, i));
        // The execution with the latest end so far.
        let mut latest: Option<usize> = None;
        for pair in order.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if !(trace[b].token > trace[a].token && trace[b].token.seq > trace[a].token.seq) {
                disorders += 1;
                if earlier((a, b), first_disorder) {
                    first_disorder = Some((a, b));
                }
            }
        }
        for &i in &order {
            if let Some(l) = latest {
                if trace[i].start < trace[l].end_or_max() {
                    overlaps += 1;
                    if earlier((l, i), first_overlap) {
                        first_overlap = Some((l, i));
                    }
                }
                if trace[i].end_or_max() > trace[l].end_or_max() {
                    latest = Some(i);
                }
            } else {
                latest = Some(i);
            }
        }
    }
    checks.push(Check {
        name: "executions of one resource never overlap in true time".into(),
        ok: overlaps == 0,
        kind: CheckKind::Safety,
        detail: match first_overlap {
            None => format!("{} executions over {} resources, one at a time each", trace.len(), per_resource.len()),
            Some((a, b)) => format!("{overlaps} overlapping executions; first: {} overlaps {}", trace[b], trace[a]),
        },
    });
    checks.push(Check {
        name: "tokens and sequence numbers of one resource strictly increase in start order".into(),
        ok: disorders == 0,
        kind: CheckKind::Safety,
        detail: match first_disorder {
            None => "every resource's executions start in increasing (token, seq) order".into(),
            Some((a, b)) => {
                format!("{disorders} executions out of order; first: {} started after {}", trace[b], trace[a])
            }
        },
    });

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
    use crate::plan::Arrivals;

    fn workload(count: u64) -> Workload {
        Workload {
            count,
            resources: 2,
            rate: 10.0,
            arrivals: Arrivals::Even,
            task_ms: 10,
            start_at_ms: 0,
            retry_ms: 10,
            max_attempts: 3,
        }
    }

    fn record(resource: u64, token: (u64, u64)) -> TaskRecord {
        let token = Token { epoch: token.0, seq: token.1 };
        let status = TaskStatus::Completed { token, task_id: String::new(), at: 1_000_000 };
        TaskRecord { resource, arrived: 0, attempts: 1, status }
    }

    fn exec(node: usize, task: u64, resource: u64, token: (u64, u64), start: u64, end: u64) -> ExecRecord {
        let token = Token { epoch: token.0, seq: token.1 };
        ExecRecord { node, task, resource, token, attempt: 1, start, end: Some(end) }
    }

    fn run(tasks: &mut [TaskRecord], trace: &[ExecRecord], expect: TaskExpect) -> (Vec<Check>, Tasks) {
        for (k, t) in tasks.iter_mut().enumerate() {
            if let TaskStatus::Completed { task_id: id, .. } = &mut t.status {
                *id = task_id(k as u64);
            }
        }
        let w = workload(tasks.len() as u64);
        let counts =
            ClientCounts { submitted: tasks.len() as u64, completed: tasks.len() as u64, ..Default::default() };
        let tasks: &[TaskRecord] = tasks;
        check(&TaskRun { workload: &w, expect, tasks, counts, trace })
    }

    fn failed(checks: &[Check]) -> Vec<&str> {
        checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect()
    }

    const STRICT: TaskExpect = TaskExpect { all_complete: true, exactly_once: true };

    #[test]
    fn a_clean_trace_passes() {
        let mut tasks = [record(0, (1, 1)), record(0, (2, 2)), record(1, (1, 1))];
        let trace = [
            exec(0, 0, 0, (1, 1), 100, 200),
            exec(1, 2, 1, (1, 1), 150, 250),
            // Back to back on another node: half-open intervals touch.
            exec(1, 1, 0, (2, 2), 200, 300),
        ];
        let (checks, report) = run(&mut tasks, &trace, STRICT);
        assert!(failed(&checks).is_empty(), "{checks:#?}");
        assert_eq!((report.executed, report.executions, report.duplicate_executions), (3, 3, 0));
    }

    #[test]
    fn overlap_duplicates_and_disorder_are_caught_with_the_first_pair() {
        let mut tasks = [record(0, (1, 1)), record(0, (1, 2))];
        let trace = [exec(0, 0, 0, (1, 1), 100, 200), exec(1, 1, 0, (1, 2), 150, 300), exec(2, 0, 0, (2, 1), 400, 500)];
        let (checks, report) = run(&mut tasks, &trace, STRICT);
        assert_eq!(
            failed(&checks),
            vec![
                "no task ran twice",
                "executions of one resource never overlap in true time",
                "tokens and sequence numbers of one resource strictly increase in start order"
            ]
        );
        assert_eq!(report.duplicate_executions, 1);
        let overlap = &checks[4].detail;
        assert!(overlap.contains("t1 of r0") && overlap.contains("n1") && overlap.contains("t0 of r0"), "{overlap}");
        // Without the exactly-once expectation the duplicate is reported only.
        let (checks, _) = run(&mut tasks, &trace, TaskExpect { all_complete: true, exactly_once: false });
        assert!(checks[2].ok && checks[2].detail.contains("1 duplicate"), "{:?}", checks[2]);
    }

    #[test]
    fn a_lost_or_misreported_task_fails() {
        let mut tasks = [record(0, (1, 1)), record(1, (1, 1))];
        tasks[1].status = TaskStatus::GaveUp;
        // t0's answer names a token it did not run with.
        let trace = [exec(0, 0, 0, (1, 2), 100, 200)];
        let (checks, _) = run(&mut tasks, &trace, STRICT);
        assert_eq!(
            failed(&checks),
            vec![
                "every submitted task ran at least once",
                "every completed task ran, with the token its answer names, and only submitted tasks ran",
                "every task arrived and completed",
            ]
        );
    }
}
