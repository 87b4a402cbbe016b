//! The trace, grouped: each task's executions and each resource's, in
//! start order, by counting sorts over indices (no string per task).

use super::Ix;
use crate::trace::{ExecRecord, TaskRecord};

/// The trace, grouped.
pub(super) struct Index {
    /// Executions of submitted tasks (on their task's resource), grouped by
    /// task, each group in (start, trace index) order.
    pub(super) by_task: Vec<Ix>,
    /// `by_task[task_at[k]..task_at[k + 1]]` are task `k`'s executions.
    pub(super) task_at: Vec<Ix>,
    /// Executions of tasks no client submitted, or not on their task's
    /// resource, in trace order.
    pub(super) strays: Vec<Ix>,
    /// Every execution, grouped by resource, each group in (start, trace
    /// index) order.
    pub(super) by_resource: Vec<Ix>,
    /// Where each resource's group starts in `by_resource`, with the end.
    pub(super) resource_at: Vec<Ix>,
}

impl Index {
    /// Groups `trace` by task (of `tasks`) and by resource.
    pub(super) fn new(tasks: &[TaskRecord], trace: &[ExecRecord]) -> Index {
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
    pub(super) fn of_task(&self, k: usize) -> &[Ix] {
        &self.by_task[self.task_at[k] as usize..self.task_at[k + 1] as usize]
    }

    /// Each resource's executions, in start order.
    pub(super) fn resources(&self) -> impl Iterator<Item = &[Ix]> {
        self.resource_at.windows(2).map(|w| &self.by_resource[w[0] as usize..w[1] as usize])
    }

    /// Resources with an execution.
    pub(super) fn resource_count(&self) -> usize {
        self.resource_at.len() - 1
    }

    /// Tasks that ran at least once.
    pub(super) fn executed(&self) -> u64 {
        (0..self.task_at.len() - 1).filter(|&k| !self.of_task(k).is_empty()).count() as u64
    }

    /// Executions beyond the first of their task.
    pub(super) fn duplicate_executions(&self) -> u64 {
        (0..self.task_at.len() - 1).map(|k| self.of_task(k).len().saturating_sub(1) as u64).sum::<u64>()
    }
}
