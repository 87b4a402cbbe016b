//! What a run records, as plain data: every task execution on the
//! simulator's true clock ([`ExecRecord`]), every task as its client saw it
//! ([`TaskRecord`], [`TaskStatus`], [`ClientCounts`]), stream frames by what
//! they carry ([`FrameCounts`]) and the lock baseline's counters
//! ([`LockCounts`]); and the names tasks and resources go by.
//!
//! The simulator, the workload's clients and the lock baseline write these
//! records; the checker, the metrics and the report read them. This module
//! depends on nothing else in the crate, so neither side depends on the
//! other through it.

use custody::engine::Token;
use serde::{Deserialize, Serialize};

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
    /// True time it ended (its end was reported to the node, the node
    /// stopped, or the node cancelled it), µs; `None` while it runs.
    pub end: Option<u64>,
    /// Its node cancelled it (the lease it ran under was about to end): it
    /// ended at the cancel and did not complete; the task runs again.
    pub cancelled: bool,
}

impl ExecRecord {
    /// The end, with a still-running execution lasting forever.
    pub fn end_or_max(&self) -> u64 {
        self.end.unwrap_or(u64::MAX)
    }
}

impl std::fmt::Display for ExecRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |us: u64| us as f64 / 1000.0;
        let end = self.end.map_or("running".to_string(), |e| format!("{:.3} ms", ms(e)));
        let end = if self.cancelled { format!("{end}, cancelled") } else { end };
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
    /// True time it was first acknowledged, µs, apart from its answer: in
    /// custody mode a custodian's `Accepted` reached the gateway the client
    /// asked (or the gateway, itself the custodian, accepted it as the
    /// client's submit arrived); in lock mode its durable enqueue committed.
    /// An answer `Completed` acknowledges a task too.
    pub acked: Option<u64>,
    /// True time the node a request of this task waited at first crashed,
    /// paused or was cut off from the voters' majority (the client's side
    /// of the task was touched by a fault), µs.
    pub gateway_fault: Option<u64>,
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

/// Stream frames between nodes, by what they carry (read from the frame's
/// first bytes: a message is an rmp map whose key names its variant).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// The epoch store: Raft messages, lease requests and grants, votes,
    /// epoch fetches and announcements (coordination, in both modes).
    pub epoch_store: u64,
    /// Custody handoffs: transfers and their acknowledgements
    /// (coordination, in custody mode).
    pub handoff: u64,
    /// Tasks' data path: submits routed to custodians and their answers.
    pub task: u64,
    /// Membership (SWIM over streams, syncs) and anything else.
    pub other: u64,
    /// Lock baseline legs retransmitted after a loss.
    pub lock_retransmissions: u64,
    /// Lock baseline legs dropped by a partition.
    pub lock_partition_dropped: u64,
}

impl FrameCounts {
    /// Counts one stream frame by what it carries.
    pub fn count(&mut self, bytes: &[u8]) {
        // [version, kind = message, fixmap(1), fixstr(len), name…]
        let name = |at: usize| -> &[u8] {
            match bytes.get(at) {
                Some(&h) if h & 0xe0 == 0xa0 => bytes.get(at + 1..at + 1 + usize::from(h & 0x1f)).unwrap_or(&[]),
                _ => &[],
            }
        };
        if bytes.get(1) != Some(&custody::engine::wire::KIND_MESSAGE) || bytes.get(2) != Some(&0x81) {
            self.other += 1;
            return;
        }
        match name(3) {
            b"Raft" | b"Epoch" => self.epoch_store += 1,
            b"Task" if bytes.get(8) == Some(&0x81) && name(9).starts_with(b"Transfer") => self.handoff += 1,
            b"Task" => self.task += 1,
            _ => self.other += 1,
        }
    }
}

/// What the lock baseline counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockCounts {
    /// Committed enqueues (consensus instances).
    pub enqueue: u64,
    /// Committed lock acquisitions (consensus instances).
    pub acquire: u64,
    /// Committed "executed" marks (consensus instances).
    pub mark: u64,
    /// Committed lock releases (consensus instances).
    pub release: u64,
    /// Committed session opens, closes and expiries (consensus instances).
    pub session: u64,
    /// Picks answered by the leader (reads).
    pub picks: u64,
    /// Task-state re-checks answered by the leader (reads).
    pub rechecks: u64,
    /// Session keepalives answered by the leader (reads).
    pub keepalives: u64,
    /// Message legs between distinct endpoints: requests, appends, acks,
    /// answers, grant and hand-out notifications.
    pub messages: u64,
    /// Requests answered `NotLeader`.
    pub not_leader: u64,
    /// Requests sent again after the timeout.
    pub retries: u64,
    /// Replication rounds abandoned (leadership moved before commit).
    pub rounds_abandoned: u64,
    /// Sessions expired by the leader.
    pub sessions_expired: u64,
    /// Locks passed to a waiter by a release or an expiry.
    pub handovers: u64,
    /// Waiting workers that asked again after their process's connection
    /// to the leader broke or the leader changed (a watch resuming).
    pub resyncs: u64,
}

impl LockCounts {
    /// Committed entries of the lock service: its consensus instances.
    pub fn consensus(&self) -> u64 {
        self.enqueue + self.acquire + self.mark + self.release + self.session
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_odd_names_do_not_parse() {
        assert_eq!(parse_index(&task_id(0), 't'), Some(0));
        assert_eq!(parse_index(&resource_name(4711), 'r'), Some(4711));
        for odd in ["t", "x1", "t01", "t-1", "t1a", "r1"] {
            assert_eq!(parse_index(odd, 't'), None, "{odd}");
        }
    }

    #[test]
    fn frames_are_counted_by_what_they_carry() {
        use custody::engine::wire::{self, EpochMsg, Message, TaskMsg};
        let mut c = FrameCounts::default();
        let frames = [
            Message::Raft { origin: 1, bytes: vec![1, 2, 3] },
            Message::Epoch(EpochMsg::Fetch { epoch: 3 }),
            Message::Task(TaskMsg::TransferAck { id: 7 }),
            Message::Task(TaskMsg::Busy { req: 1 }),
            Message::SyncRequest(Vec::new()),
        ];
        for m in &frames {
            c.count(&wire::encode_message(m).unwrap());
        }
        c.count(&wire::datagram_to_frame(&wire::encode_datagram(b"swim")).unwrap());
        assert_eq!((c.epoch_store, c.handoff, c.task, c.other), (2, 1, 1, 2));
    }
}
