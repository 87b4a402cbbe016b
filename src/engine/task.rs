//! Tasks at their custodian: per-resource FIFO queues, sequence numbers,
//! deduplication by task id, and a bounded pool of workers shared round-robin
//! over the resources that have work.
//!
//! The scheduler keeps the promise the mission rests on: at most one task of
//! a resource runs at a time, and a hot resource takes one worker, never all
//! of them, so the other resources keep running. Every queue is bounded; past
//! a bound the submitter gets [`Refused::Busy`], not an unbounded backlog.
//!
//! This is the custodian's local part; routing to the custodian, custody of
//! ranges and handoff build on it.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Longest task id accepted, in bytes.
pub const TASK_ID_LEN_MAX: usize = 128;
/// Longest resource name accepted, in bytes.
pub const RESOURCE_LEN_MAX: usize = 256;
/// Largest task payload accepted, in bytes.
pub const PAYLOAD_LEN_MAX: usize = 256 * 1024;
/// Tasks waiting for one resource; past it, submits of that resource are
/// refused as busy.
pub const QUEUED_PER_RESOURCE_MAX: usize = 4096;
/// Tasks waiting at this node over all resources.
pub const QUEUED_TOTAL_MAX: usize = 65_536;
/// Resources this node keeps state for (sequence numbers, watermark, recent
/// task ids). A task of a new resource past it is refused as busy. (Handing
/// custody off, later, moves this state and frees it here.)
pub const RESOURCES_MAX: usize = 1 << 20;
/// Task ids remembered per resource for deduplication (the most recent
/// ones); an older retry is no longer recognised.
pub const DEDUP_PER_RESOURCE_MAX: usize = 4096;

/// A fencing token `τ = (activation_epoch, seq)`: the epoch in which the
/// executing custodian activated the resource's range, and the task's
/// per-resource sequence number. A fencing-aware resource accepts effects in
/// strictly increasing token order only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Token {
    /// The epoch in which the custodian activated the range.
    pub epoch: u64,
    /// The task's sequence number within its resource.
    pub seq: u64,
}

/// A unit of work on one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The client's idempotency key: a retry with the same id is the same
    /// task.
    pub id: String,
    /// The resource it targets.
    pub resource: String,
    /// Opaque to custody.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl Task {
    /// Checks the task's sizes at the input boundary.
    pub fn validate(&self) -> Result<(), Refused> {
        if self.id.is_empty() || self.id.len() > TASK_ID_LEN_MAX {
            return Err(Refused::Invalid(format!("task id must be 1 to {TASK_ID_LEN_MAX} bytes")));
        }
        if self.resource.len() > RESOURCE_LEN_MAX {
            return Err(Refused::Invalid(format!("resource name exceeds {RESOURCE_LEN_MAX} bytes")));
        }
        if self.payload.len() > PAYLOAD_LEN_MAX {
            return Err(Refused::Invalid(format!("payload exceeds {PAYLOAD_LEN_MAX} bytes")));
        }
        Ok(())
    }
}

/// Why a task was not accepted. Nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Refused {
    /// A bound is reached: retry later.
    #[error("busy: the node's task queues are full; retry later")]
    Busy,
    /// The task is malformed.
    #[error("invalid task: {0}")]
    Invalid(String),
}

/// The outcome of a submit that was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The task's sequence number within its resource.
    pub seq: u64,
    /// Whether this id was seen before (a retry): nothing new was queued.
    pub duplicate: bool,
}

/// A task the driver should start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The task.
    pub task: Task,
    /// Its sequence number within its resource.
    pub seq: u64,
}

#[derive(Debug, Default)]
struct ResourceQueue {
    queued: VecDeque<(u64, Task)>,
    in_flight: Option<u64>,
    /// The last sequence number assigned.
    last_seq: u64,
    /// The highest sequence number whose execution finished.
    executed: u64,
    /// Recent task ids and their sequence numbers, oldest first.
    dedup: VecDeque<(String, u64)>,
}

/// Per-resource FIFO queues and a worker pool of `workers` slots.
#[derive(Debug)]
pub struct Scheduler {
    workers: usize,
    resources: BTreeMap<String, ResourceQueue>,
    /// Resources with queued tasks and nothing in flight, in the order they
    /// get a worker (round robin: a resource goes to the back after each
    /// start).
    runnable: VecDeque<String>,
    running: usize,
    queued_total: usize,
}

impl Scheduler {
    /// A scheduler with `workers` worker slots.
    ///
    /// # Panics
    /// If `workers` is zero.
    pub fn new(workers: usize) -> Scheduler {
        assert!(workers > 0, "a scheduler needs at least one worker");
        Scheduler { workers, resources: BTreeMap::new(), runnable: VecDeque::new(), running: 0, queued_total: 0 }
    }

    /// Tasks waiting, over all resources.
    pub fn queued(&self) -> usize {
        self.queued_total
    }

    /// Tasks running.
    pub fn running(&self) -> usize {
        self.running
    }

    /// The highest sequence number of `resource` whose execution finished.
    pub fn executed(&self, resource: &str) -> u64 {
        self.resources.get(resource).map_or(0, |r| r.executed)
    }

    /// Accepts a task: assigns the next sequence number of its resource, or
    /// recognises a retry of a recent task id and answers with its number.
    pub fn submit(&mut self, task: Task) -> Result<Accepted, Refused> {
        task.validate()?;
        if let Some(r) = self.resources.get(&task.resource)
            && let Some(&(_, seq)) = r.dedup.iter().find(|(id, _)| *id == task.id)
        {
            return Ok(Accepted { seq, duplicate: true });
        }
        let queued_here = self.resources.get(&task.resource).map_or(0, |r| r.queued.len());
        let new_resource = !self.resources.contains_key(&task.resource);
        if queued_here >= QUEUED_PER_RESOURCE_MAX
            || self.queued_total >= QUEUED_TOTAL_MAX
            || (new_resource && self.resources.len() >= RESOURCES_MAX)
        {
            return Err(Refused::Busy);
        }
        let r = self.resources.entry(task.resource.clone()).or_default();
        r.last_seq += 1;
        let seq = r.last_seq;
        r.dedup.push_back((task.id.clone(), seq));
        if r.dedup.len() > DEDUP_PER_RESOURCE_MAX {
            r.dedup.pop_front();
        }
        let became_runnable = r.queued.is_empty() && r.in_flight.is_none();
        let resource = task.resource.clone();
        r.queued.push_back((seq, task));
        self.queued_total += 1;
        if became_runnable {
            self.runnable.push_back(resource);
        }
        Ok(Accepted { seq, duplicate: false })
    }

    /// The next task to start, if a worker is free and a resource has work
    /// and nothing in flight. Call until it returns `None`.
    pub fn next_start(&mut self) -> Option<Start> {
        if self.running >= self.workers {
            return None;
        }
        let resource = self.runnable.pop_front()?;
        let r = self.resources.get_mut(&resource).expect("a runnable resource has a queue");
        assert!(r.in_flight.is_none(), "resource {resource:?} was runnable with a task in flight");
        let (seq, task) = r.queued.pop_front().expect("a runnable resource has a queued task");
        r.in_flight = Some(seq);
        self.queued_total -= 1;
        self.running += 1;
        Some(Start { task, seq })
    }

    /// A started task finished (whatever its outcome): its resource may run
    /// the next one.
    ///
    /// # Panics
    /// If that task is not the one in flight for its resource: a driver bug.
    pub fn finished(&mut self, resource: &str, seq: u64) {
        let r = self.resources.get_mut(resource).expect("finished a task of an unknown resource");
        assert_eq!(r.in_flight, Some(seq), "finished a task that was not in flight");
        r.in_flight = None;
        r.executed = r.executed.max(seq);
        self.running -= 1;
        if !r.queued.is_empty() {
            // To the back: the other resources waiting go first.
            self.runnable.push_back(resource.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, resource: &str) -> Task {
        Task { id: id.into(), resource: resource.into(), payload: Vec::new() }
    }

    fn starts(s: &mut Scheduler) -> Vec<(String, u64)> {
        std::iter::from_fn(|| s.next_start()).map(|st| (st.task.resource, st.seq)).collect()
    }

    #[test]
    fn one_task_per_resource_at_a_time_in_submit_order() {
        let mut s = Scheduler::new(8);
        for i in 1..=3 {
            assert_eq!(s.submit(task(&format!("t{i}"), "r")), Ok(Accepted { seq: i, duplicate: false }));
        }
        assert_eq!(starts(&mut s), vec![("r".into(), 1)]);
        s.finished("r", 1);
        assert_eq!(starts(&mut s), vec![("r".into(), 2)]);
        s.finished("r", 2);
        assert_eq!(starts(&mut s), vec![("r".into(), 3)]);
        s.finished("r", 3);
        assert_eq!(s.executed("r"), 3);
        assert_eq!((s.queued(), s.running()), (0, 0));
    }

    #[test]
    fn a_hot_resource_takes_one_worker_and_never_starves_the_others() {
        let mut s = Scheduler::new(2);
        for i in 0..100 {
            s.submit(task(&format!("hot{i}"), "hot")).unwrap();
        }
        for r in ["a", "b", "c"] {
            s.submit(task(r, r)).unwrap();
        }
        // Two workers: the hot resource gets one, a cold one the other.
        assert_eq!(starts(&mut s), vec![("hot".into(), 1), ("a".into(), 1)]);
        s.finished("hot", 1);
        // The hot resource goes to the back: b runs before hot's next task.
        assert_eq!(starts(&mut s), vec![("b".into(), 1)]);
        s.finished("a", 1);
        assert_eq!(starts(&mut s), vec![("c".into(), 1)]);
        s.finished("b", 1);
        assert_eq!(starts(&mut s), vec![("hot".into(), 2)]);
    }

    #[test]
    fn a_retried_task_id_gets_its_sequence_number_and_runs_once() {
        let mut s = Scheduler::new(1);
        assert_eq!(s.submit(task("x", "r")), Ok(Accepted { seq: 1, duplicate: false }));
        assert_eq!(s.submit(task("y", "r")), Ok(Accepted { seq: 2, duplicate: false }));
        assert_eq!(s.submit(task("x", "r")), Ok(Accepted { seq: 1, duplicate: true }));
        assert_eq!(s.queued(), 2);
        // Also after it ran.
        assert_eq!(starts(&mut s), vec![("r".into(), 1)]);
        s.finished("r", 1);
        assert_eq!(s.submit(task("x", "r")), Ok(Accepted { seq: 1, duplicate: true }));
        assert_eq!(starts(&mut s), vec![("r".into(), 2)]);
    }

    #[test]
    fn past_a_bound_the_submitter_is_told_busy_and_nothing_is_queued() {
        let mut s = Scheduler::new(1);
        for i in 0..QUEUED_PER_RESOURCE_MAX {
            s.submit(task(&format!("t{i}"), "r")).unwrap();
        }
        assert_eq!(s.submit(task("one-too-many", "r")), Err(Refused::Busy));
        assert_eq!(s.queued(), QUEUED_PER_RESOURCE_MAX);
        // Another resource is still welcome.
        assert!(s.submit(task("other", "s")).is_ok());
    }

    #[test]
    fn malformed_tasks_are_refused() {
        let mut s = Scheduler::new(1);
        assert!(matches!(s.submit(task("", "r")), Err(Refused::Invalid(_))));
        assert!(matches!(s.submit(task(&"x".repeat(TASK_ID_LEN_MAX + 1), "r")), Err(Refused::Invalid(_))));
        let big = Task { payload: vec![0; PAYLOAD_LEN_MAX + 1], ..task("t", "r") };
        assert!(matches!(s.submit(big), Err(Refused::Invalid(_))));
        assert_eq!(s.queued(), 0);
    }

    #[test]
    fn tokens_order_by_epoch_then_sequence() {
        let a = Token { epoch: 3, seq: 9 };
        assert!(a < Token { epoch: 4, seq: 1 });
        assert!(a < Token { epoch: 3, seq: 10 });
    }
}
