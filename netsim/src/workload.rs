//! Simulated clients: a [`Workload`]'s arrivals and each task's submits.
//!
//! Arrivals are generated one at a time, as they come due, so a workload of
//! millions of tasks costs nothing up front. Every task keeps one record
//! (its resource, its submits and how it ended), which the checker reads
//! with the execution trace.
//!
//! A client sends one request at a time per task, each on a fresh client
//! connection ([`ClientId`]). An answer that says "try again" (`Busy`,
//! `Unavailable`), or the node stopping before it answered, makes the
//! client submit the same task id again after the workload's `retry_ms`, to
//! a node picked afresh; the engine recognises the id, so a retry never
//! makes a second task.
//!
//! This module decides nothing about time or the network: the simulator
//! asks it what to send and tells it what came back.

use std::collections::BTreeMap;

use custody::engine::ClientId;
use custody::engine::Task;
use custody::engine::Token;
use custody::engine::wire::{self, Frame, Message, Request, Response};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::plan::{Arrivals, Workload};

/// The id of task `k`.
pub fn task_id(k: u64) -> String {
    format!("t{k}")
}

/// The name of resource `j`.
pub fn resource_name(j: u64) -> String {
    format!("r{j}")
}

/// The index in a name made by [`task_id`] or [`resource_name`].
pub fn parse_index(name: &str, prefix: char) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?;
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    digits.parse().ok()
}

/// How one task ended, as its client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    /// Not answered yet (or waiting to retry).
    Open,
    /// Answered `Completed`.
    Completed {
        /// The token the answer names.
        token: Token,
        /// The task id the answer names (must be the task's).
        task_id: String,
        /// True time of the answer, µs.
        at: u64,
    },
    /// The client gave up after `max_attempts` submits.
    GaveUp,
    /// Answered with an error.
    Rejected(String),
}

/// One task, from its client's side.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    /// Its resource's index.
    pub resource: u64,
    /// True time of its arrival (first submit), µs.
    pub arrived: u64,
    /// Submits sent.
    pub attempts: u32,
    /// How it ended.
    pub status: TaskStatus,
}

/// Counters of the clients' side, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCounts {
    /// Tasks that arrived and were submitted.
    pub submitted: u64,
    /// Tasks answered `Completed`.
    pub completed: u64,
    /// Submits sent, retries included.
    pub requests: u64,
    /// Retries after an `Unavailable` answer.
    pub unavailable_retries: u64,
    /// Retries after a `Busy` answer.
    pub busy_retries: u64,
    /// Retries because the node stopped (left or crashed) before answering.
    pub reset_retries: u64,
    /// Retries because no node could be asked (none running and configured).
    pub no_node_retries: u64,
    /// Tasks given up after `max_attempts` submits.
    pub gave_up: u64,
    /// Tasks answered with an error.
    pub rejected: u64,
}

/// A request in flight.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    task: u64,
    node: usize,
}

/// What the simulator must do after a client event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAction {
    /// Nothing.
    None,
    /// Submit task `.0` again after the workload's retry delay.
    Retry(u64),
}

/// Every simulated client of one run.
pub struct Clients {
    workload: Workload,
    rng: Xoshiro256PlusPlus,
    tasks: Vec<TaskRecord>,
    /// True time of the next arrival, µs, while tasks remain.
    next_arrival: Option<u64>,
    outstanding: BTreeMap<u64, Outstanding>,
    next_client: u64,
    counts: ClientCounts,
}

impl Clients {
    /// The clients of `workload`, drawing from `seed`.
    pub fn new(workload: Workload, seed: u64) -> Clients {
        let next_arrival = (workload.count > 0).then_some(workload.start_at_ms * 1000);
        Clients {
            workload,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            tasks: Vec::new(),
            next_arrival,
            outstanding: BTreeMap::new(),
            next_client: 1,
            counts: ClientCounts::default(),
        }
    }

    /// The workload.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// When the next task arrives (true µs), if any remain.
    pub fn next_arrival(&self) -> Option<u64> {
        self.next_arrival
    }

    /// The task due at `now` arrives: its index. Schedules the one after.
    pub fn arrive(&mut self, now: u64) -> u64 {
        let k = self.tasks.len() as u64;
        let resource = self.rng.random_range(0..self.workload.resources);
        self.tasks.push(TaskRecord { resource, arrived: now, attempts: 0, status: TaskStatus::Open });
        self.counts.submitted += 1;
        let next = k + 1;
        self.next_arrival = (next < self.workload.count).then(|| {
            let start = self.workload.start_at_ms * 1000;
            match self.workload.arrivals {
                Arrivals::Even => start + (next as f64 * 1e6 / self.workload.rate) as u64,
                Arrivals::Poisson => {
                    let u: f64 = self.rng.random();
                    // 1 − u is in (0, 1]: its logarithm is finite.
                    let gap_s = -(1.0 - u).ln() / self.workload.rate;
                    now + (gap_s * 1e6).min(3.6e9) as u64
                }
            }
        });
        k
    }

    /// Picks one of `candidates` (nodes a client may ask) for task `k`'s
    /// next submit.
    pub fn pick_node(&mut self, candidates: &[usize]) -> Option<usize> {
        (!candidates.is_empty()).then(|| candidates[self.rng.random_range(0..candidates.len())])
    }

    /// Whether task `k` may be submitted again; if not, it is given up.
    pub fn may_retry(&mut self, k: u64) -> bool {
        let max = self.workload.max_attempts;
        let t = &mut self.tasks[k as usize];
        if t.status != TaskStatus::Open {
            return false;
        }
        if t.attempts >= max {
            t.status = TaskStatus::GaveUp;
            self.counts.gave_up += 1;
            return false;
        }
        true
    }

    /// No node could be asked for task `k`: retry it later (if it may).
    pub fn no_node(&mut self, k: u64) -> ClientAction {
        self.counts.no_node_retries += 1;
        ClientAction::Retry(k)
    }

    /// A submit of task `k` to `node`: the client connection and the
    /// request frame to deliver.
    pub fn submit(&mut self, k: u64, node: usize) -> (ClientId, Vec<u8>) {
        let t = &mut self.tasks[k as usize];
        t.attempts += 1;
        self.counts.requests += 1;
        let client = self.next_client;
        self.next_client += 1;
        self.outstanding.insert(client, Outstanding { task: k, node });
        let task = Task { id: task_id(k), resource: resource_name(t.resource), payload: Vec::new() };
        let bytes = wire::encode_message(&Message::Request(Request::Submit { task, wait: true }))
            .expect("a small task encodes");
        (ClientId(client), bytes)
    }

    /// Whether a request is still waiting for its answer (a stopped node's
    /// requests are not: their clients saw the connection reset).
    pub fn is_outstanding(&self, client: ClientId) -> bool {
        self.outstanding.contains_key(&client.0)
    }

    /// `node` stopped: its unanswered requests reset, and their tasks are
    /// retried.
    pub fn node_stopped(&mut self, node: usize) -> Vec<u64> {
        let reset: Vec<u64> = self.outstanding.iter().filter(|(_, o)| o.node == node).map(|(&c, _)| c).collect();
        let mut retry = Vec::with_capacity(reset.len());
        for client in reset {
            let o = self.outstanding.remove(&client).expect("listed");
            self.counts.reset_retries += 1;
            retry.push(o.task);
        }
        retry
    }

    /// An answer on client connection `client` at true time `now`.
    pub fn on_reply(&mut self, client: ClientId, bytes: &[u8], now: u64) -> ClientAction {
        let Some(o) = self.outstanding.remove(&client.0) else { return ClientAction::None };
        let k = o.task;
        let response = match wire::decode_frame(bytes) {
            Ok(Frame::Message(Message::Response(r))) => r,
            Ok(_) => Response::Error("an answer that is not a response".into()),
            Err(e) => Response::Error(format!("an answer that does not decode: {e}")),
        };
        let t = &mut self.tasks[k as usize];
        match response {
            Response::Completed(c) => {
                t.status = TaskStatus::Completed { token: c.token, task_id: c.task_id, at: now };
                self.counts.completed += 1;
                ClientAction::None
            }
            Response::Unavailable(_) => {
                self.counts.unavailable_retries += 1;
                ClientAction::Retry(k)
            }
            Response::Busy => {
                self.counts.busy_retries += 1;
                ClientAction::Retry(k)
            }
            Response::Error(message) => {
                t.status = TaskStatus::Rejected(message);
                self.counts.rejected += 1;
                ClientAction::None
            }
            other => {
                t.status = TaskStatus::Rejected(format!("unexpected answer to a submit: {other:?}"));
                self.counts.rejected += 1;
                ClientAction::None
            }
        }
    }

    /// Every task that arrived, by index.
    pub fn tasks(&self) -> &[TaskRecord] {
        &self.tasks
    }

    /// The counters.
    pub fn counts(&self) -> ClientCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(arrivals: Arrivals) -> Workload {
        Workload {
            count: 1000,
            resources: 10,
            rate: 100.0,
            arrivals,
            task_ms: 10,
            start_at_ms: 2_000,
            retry_ms: 100,
            max_attempts: 3,
        }
    }

    #[test]
    fn names_round_trip_and_odd_names_do_not_parse() {
        assert_eq!(parse_index(&task_id(0), 't'), Some(0));
        assert_eq!(parse_index(&resource_name(4711), 'r'), Some(4711));
        for odd in ["t", "x1", "t01", "t-1", "t1a", "r1"] {
            assert_eq!(parse_index(odd, 't'), None, "{odd}");
        }
    }

    #[test]
    fn arrivals_come_lazily_at_the_rate() {
        for arrivals in [Arrivals::Even, Arrivals::Poisson] {
            let mut c = Clients::new(workload(arrivals), 9);
            let mut last = 0;
            let mut n = 0;
            while let Some(at) = c.next_arrival() {
                assert!(at >= last);
                last = at;
                assert_eq!(c.arrive(at), n);
                n += 1;
            }
            assert_eq!(n, 1000);
            assert_eq!(c.tasks().len(), 1000);
            // 1,000 tasks at 100/s from 2 s: about 10 s.
            let span_s = (last - 2_000_000) as f64 / 1e6;
            assert!((8.0..12.0).contains(&span_s), "{arrivals:?}: {span_s} s");
            assert!(c.tasks().iter().all(|t| t.resource < 10));
        }
    }

    #[test]
    fn retries_are_bounded_and_resets_retry_the_stopped_nodes_tasks() {
        let mut c = Clients::new(workload(Arrivals::Even), 1);
        let k = c.arrive(0);
        let (a, _) = c.submit(k, 3);
        let busy = wire::encode_message(&Message::Response(Response::Busy)).unwrap();
        assert_eq!(c.on_reply(a, &busy, 10), ClientAction::Retry(k));
        assert_eq!(c.on_reply(a, &busy, 11), ClientAction::None, "answered once");
        assert!(c.may_retry(k));
        let (b, _) = c.submit(k, 4);
        assert!(c.is_outstanding(b));
        assert_eq!(c.node_stopped(3), Vec::<u64>::new());
        assert_eq!(c.node_stopped(4), vec![k]);
        assert!(!c.is_outstanding(b));
        assert!(c.may_retry(k));
        c.submit(k, 5);
        assert!(!c.may_retry(k), "three submits");
        assert_eq!(c.tasks()[0].status, TaskStatus::GaveUp);
        let counts = c.counts();
        assert_eq!((counts.busy_retries, counts.reset_retries, counts.gave_up, counts.requests), (1, 1, 1, 3));
    }
}
