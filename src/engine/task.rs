//! Tasks, fencing tokens, outcomes, and the bounds on them.
//!
//! A task names a resource; custody runs it at the resource's custodian, one
//! task of a resource at a time ([`super::custody`]). Every size and count
//! here is bounded at the input boundary, so one oversized submit can neither
//! exhaust a node nor grow a handoff past the frame limit.

use serde::{Deserialize, Serialize};

/// Longest task id accepted, in bytes.
pub const TASK_ID_LEN_MAX: usize = 128;
/// Longest resource name accepted, in bytes.
pub const RESOURCE_LEN_MAX: usize = 256;
/// Largest task payload accepted, in bytes.
pub const PAYLOAD_LEN_MAX: usize = 64 * 1024;
/// Largest outcome a handler may return, in bytes; a longer one is cut.
pub const OUTCOME_LEN_MAX: usize = 64 * 1024;
/// Tasks waiting for one resource; past it, submits of that resource get
/// `Busy`.
pub const QUEUED_PER_RESOURCE_MAX: usize = 4096;
/// Bytes (ids, resource names and payloads) of the tasks waiting for one resource; past it,
/// submits of that resource get `Busy`. Keeps one resource's state within
/// one handoff frame.
pub const QUEUED_BYTES_PER_RESOURCE_MAX: usize = 512 * 1024;
/// Tasks waiting at one node over all resources.
pub const QUEUED_TOTAL_MAX: usize = 262_144;
/// Bytes of the tasks waiting at one node over all resources.
pub const QUEUED_BYTES_TOTAL_MAX: usize = 256 * 1024 * 1024;
/// Resources one node keeps state for; a task of a new resource past it
/// gets `Busy`.
pub const RESOURCES_MAX: usize = 1 << 20;
/// Task ids of executed tasks remembered per resource for deduplication
/// (the most recent), besides every task still queued or running; older
/// ones are kept as hashes ([`FORGOTTEN_PER_RESOURCE_MAX`]).
pub const DEDUP_PER_RESOURCE_MAX: usize = 1024;
/// Executed tasks remembered per resource past [`DEDUP_PER_RESOURCE_MAX`],
/// as a 64-bit hash of the task id with its sequence number (16 bytes
/// each): a retry of such a task, through any node, is told it ran (with
/// its token while the token epochs reach back) and never runs again.
/// Older still, a retry is no longer recognised and runs again. Two ids of
/// one resource with the same hash inside this window would be taken for
/// one task: about 2⁻⁵⁰ per submit.
pub const FORGOTTEN_PER_RESOURCE_MAX: usize = 8192;
/// Steps of token epochs remembered per resource (one per custodian that
/// ran its tasks): past it, the oldest go, and a reminder about a task that
/// old is told it ran, without its token.
pub const TOKEN_EPOCHS_PER_RESOURCE_MAX: usize = 64;
/// Submitters waiting for one task's outcome.
pub const WAITERS_PER_TASK_MAX: usize = 8;

/// A fencing token `τ = (epoch, seq)`: the epoch in which the executing
/// custodian took custody of the resource, and the task's per-resource
/// sequence number. Tokens of one resource increase in execution order,
/// across custodians: strictly from task to task, while a task run again
/// after a cancelled run may carry that run's token. A fencing-aware
/// resource rejects a token not above the last one it applied, and so
/// applies each task at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Token {
    /// The epoch in which the custodian took custody.
    pub epoch: u64,
    /// The task's sequence number within its resource.
    pub seq: u64,
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}, {})", self.epoch, self.seq)
    }
}

/// A unit of work on one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The client's idempotency key: a retry with the same id is the same
    /// task, gets the same sequence number and runs once.
    pub id: String,
    /// The resource it targets.
    pub resource: String,
    /// Opaque to custody.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl Task {
    /// Checks the task's sizes at the input boundary.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() || self.id.len() > TASK_ID_LEN_MAX {
            return Err(format!("the task id must be 1 to {TASK_ID_LEN_MAX} bytes"));
        }
        if self.resource.is_empty() || self.resource.len() > RESOURCE_LEN_MAX {
            return Err(format!("the resource name must be 1 to {RESOURCE_LEN_MAX} bytes"));
        }
        if self.payload.len() > PAYLOAD_LEN_MAX {
            return Err(format!("the payload is {} bytes; at most {PAYLOAD_LEN_MAX} are accepted", self.payload.len()));
        }
        Ok(())
    }

    /// Bytes the task takes in queues and handoffs (id, resource name and
    /// payload).
    pub fn weight(&self) -> usize {
        self.id.len() + self.resource.len() + self.payload.len()
    }
}

/// What a handler made of a task. A failure is still a completion: the task
/// ran and will not run again; retrying is the host's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The handler succeeded, with an optional result (at most
    /// [`OUTCOME_LEN_MAX`] bytes).
    Ok(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The handler failed, with its message.
    Failed(String),
}

impl Outcome {
    /// Cuts an oversized result or message to [`OUTCOME_LEN_MAX`].
    pub fn bounded(self) -> Outcome {
        match self {
            Outcome::Ok(mut bytes) => {
                bytes.truncate(OUTCOME_LEN_MAX);
                Outcome::Ok(bytes)
            }
            Outcome::Failed(mut message) => {
                if message.len() > OUTCOME_LEN_MAX {
                    let mut cut = OUTCOME_LEN_MAX;
                    while !message.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    message.truncate(cut);
                }
                Outcome::Failed(message)
            }
        }
    }

    /// Whether the handler succeeded.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, resource: &str) -> Task {
        Task { id: id.into(), resource: resource.into(), payload: Vec::new() }
    }

    #[test]
    fn malformed_tasks_are_refused_with_a_reason() {
        assert!(task("t", "r").validate().is_ok());
        assert!(task("", "r").validate().unwrap_err().contains("task id"));
        assert!(task(&"x".repeat(TASK_ID_LEN_MAX + 1), "r").validate().is_err());
        assert!(task("t", "").validate().unwrap_err().contains("resource"));
        assert!(task("t", &"r".repeat(RESOURCE_LEN_MAX + 1)).validate().is_err());
        let big = Task { payload: vec![0; PAYLOAD_LEN_MAX + 1], ..task("t", "r") };
        assert!(big.validate().unwrap_err().contains("payload"));
    }

    #[test]
    fn tokens_order_by_epoch_then_sequence() {
        let a = Token { epoch: 3, seq: 9 };
        assert!(a < Token { epoch: 4, seq: 1 });
        assert!(a < Token { epoch: 3, seq: 10 });
    }

    #[test]
    fn oversized_outcomes_are_cut_on_a_character_boundary() {
        let long = "é".repeat(OUTCOME_LEN_MAX);
        let Outcome::Failed(cut) = Outcome::Failed(long).bounded() else { panic!() };
        assert!(cut.len() <= OUTCOME_LEN_MAX && cut.chars().all(|c| c == 'é'));
        let Outcome::Ok(bytes) = Outcome::Ok(vec![1; OUTCOME_LEN_MAX + 5]).bounded() else { panic!() };
        assert_eq!(bytes.len(), OUTCOME_LEN_MAX);
    }
}
