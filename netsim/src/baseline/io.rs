//! The lock baseline's boundary with the simulator: the message legs and
//! timers it puts in the simulator's queue ([`LockEv`], [`Msg`]), and what
//! it asks of the simulator ([`Io`]): the time, which engines run, lead and
//! vote, sending a leg over the simulated network, and the trace.
//!
//! The simulator's side of it is `crate::sim`'s `SimIo`; the baseline's tests
//! play it over a tiny scripted network.

use custody::engine::Token;

use super::{Answer, SessionId, WorkerId};
use crate::trace::ExecRecord;

/// The endpoint of the simulated clients: off the cluster, never cut off.
pub const CLIENT: u32 = u32::MAX;

/// One operation in flight: its slot and the slot's generation (a reused
/// slot's late messages are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpRef {
    pub(super) idx: u32,
    pub(super) generation: u32,
}

/// One message leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    /// Requester → leader.
    Request(OpRef),
    /// Leader → voter: replicate the operation's entry.
    Append {
        /// The operation.
        op: OpRef,
        /// The replication round.
        round: u32,
    },
    /// Voter → leader: the entry is stored.
    Ack {
        /// The operation.
        op: OpRef,
        /// The replication round.
        round: u32,
    },
    /// Leader → requester.
    Reply {
        /// The operation.
        op: OpRef,
        /// The answer.
        answer: Answer,
    },
    /// Leader → a waiter: the lock it waited for is its now.
    Grant {
        /// The waiter.
        worker: WorkerId,
        /// Its session.
        session: SessionId,
        /// The resource.
        resource: u64,
        /// The fencing revision.
        rev: u64,
    },
    /// Leader → a parked worker: a task for it.
    Handout {
        /// The worker.
        worker: WorkerId,
        /// Its session.
        session: SessionId,
        /// The task.
        task: u64,
    },
}

/// A baseline event in the simulator's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockEv {
    /// A message leg arrives at `to` (a node, or [`CLIENT`]).
    Leg {
        /// Sender.
        from: u32,
        /// Receiver.
        to: u32,
        /// What.
        msg: Msg,
    },
    /// An operation's answer is overdue: ask the leader again.
    Retry {
        /// The operation.
        op: OpRef,
        /// Which send this timer belongs to.
        attempt: u32,
    },
    /// A node's worker process keeps its session alive.
    Renew {
        /// The node.
        node: u32,
        /// Its process's life.
        life: u32,
    },
    /// The leader checks whether a session has expired.
    SessionCheck {
        /// The session.
        session: SessionId,
    },
    /// An execution ends.
    ExecDone {
        /// The worker.
        worker: WorkerId,
        /// Its place in the trace.
        exec: usize,
    },
}

/// The simulator, as the baseline sees it.
pub trait Io {
    /// True time, µs.
    fn now(&self) -> u64;
    /// Nodes in the plan.
    fn node_count(&self) -> usize;
    /// Whether the node's engine runs.
    fn engine_running(&self, node: u32) -> bool;
    /// Whether the node is paused.
    fn paused(&self, node: u32) -> bool;
    /// Whether the node's engine leads the epoch store's Raft group.
    fn is_leader(&self, node: u32) -> bool;
    /// Whether the node's engine is a voter of the epoch store.
    fn is_voter(&self, node: u32) -> bool;
    /// Sends one leg between two different endpoints: the simulator delivers
    /// [`LockEv::Leg`] after the link's delay (lost copies retransmitted), or
    /// drops it at a partition.
    fn send(&mut self, from: u32, to: u32, msg: Msg);
    /// Schedules an event.
    fn schedule(&mut self, at: u64, ev: LockEv);
    /// Task `task`'s resource.
    fn resource_of(&self, task: u64) -> u64;
    /// How long task `task` runs, true µs.
    fn exec_us(&self, task: u64) -> u64;
    /// Task `task`'s enqueue committed: it is acknowledged.
    fn acknowledge(&mut self, task: u64);
    /// Task `task`'s executed mark committed, naming `token`.
    fn complete(&mut self, task: u64, token: Token);
    /// An execution starts: its place in the trace.
    fn exec_start(&mut self, record: ExecRecord) -> usize;
    /// An execution ends now.
    fn exec_end(&mut self, exec: usize);
    /// An entry committed: the service's consensus instances so far.
    fn committed(&mut self, instances: u64);
}
