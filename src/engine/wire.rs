//! What travels between nodes and clients, and how it is framed.
//!
//! Two carriers (docs/design.md, section 2.3):
//!
//! * **Datagrams** carry SWIM packets: `[PROTOCOL_VERSION][foca packet]`.
//!   Unreliable and unordered.
//! * **Streams** carry frames: a 4-byte big-endian length, then
//!   `[PROTOCOL_VERSION][kind][body]`, at most [`FRAME_LEN_MAX`] bytes after the
//!   length. `kind` is [`KIND_SWIM`] (a SWIM packet too big for a datagram) or
//!   [`KIND_MESSAGE`] (a [`Message`] encoded with rmp-serde).
//!
//! Decoding never panics: every malformed, truncated, oversized or
//! unknown-version input is a [`WireError`]. What decodes is also checked
//! for range where a peer could ask too much of the receiver: a
//! configuration must be well formed, and a handoff ([`Transfer`]) must keep
//! the bounds and orders its sender keeps ([`Transfer::validate`]).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::id::NodeId;
use super::ring::Span;
use super::task::{
    DEDUP_PER_RESOURCE_MAX, FORGOTTEN_PER_RESOURCE_MAX, Outcome, QUEUED_BYTES_PER_RESOURCE_MAX,
    QUEUED_PER_RESOURCE_MAX, RESOURCE_LEN_MAX, TASK_ID_LEN_MAX, TOKEN_EPOCHS_PER_RESOURCE_MAX, Task, Token,
    WAITERS_PER_TASK_MAX,
};

/// The protocol version this build speaks. The first byte of every datagram
/// and frame.
pub const PROTOCOL_VERSION: u8 = 1;

/// Largest frame, in bytes, after the length prefix. A peer announcing a
/// longer one is cut off before anything is buffered.
pub const FRAME_LEN_MAX: usize = 1 << 20;

/// Bytes in a frame's length prefix.
pub const LEN_PREFIX_LEN: usize = 4;

/// Frame kind: a SWIM packet sent on a stream because it did not fit a
/// datagram.
pub const KIND_SWIM: u8 = 1;
/// Frame kind: an rmp-serde encoded [`Message`].
pub const KIND_MESSAGE: u8 = 2;

/// Why bytes from the network were rejected. The input is dropped; no state
/// changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Nothing to decode.
    #[error("empty datagram or frame")]
    Empty,
    /// The first byte names a protocol version this build does not speak.
    #[error("unknown protocol version {got} (this node speaks {PROTOCOL_VERSION})")]
    UnknownVersion {
        /// The version byte received.
        got: u8,
    },
    /// A frame longer than [`FRAME_LEN_MAX`].
    #[error("frame of {len} bytes exceeds the limit of {FRAME_LEN_MAX}")]
    FrameTooBig {
        /// The announced or actual length.
        len: usize,
    },
    /// The frame kind byte is unknown.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The frame ended before its header did.
    #[error("frame truncated")]
    Truncated,
    /// The body does not decode as a [`Message`].
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message decodes, but out of range: a configuration that is not
    /// well formed, or a handoff past its bounds.
    #[error("invalid message: {0}")]
    Invalid(String),
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "a frame lives from its decode to its dispatch, on the stack, one at a time; boxing would allocate for every message"
)]
pub enum Frame<'a> {
    /// A SWIM packet (without the version byte), to be handled like a
    /// datagram.
    Swim(&'a [u8]),
    /// A message.
    Message(Message),
}

/// Everything sent on streams, between nodes and between a client and a
/// node. Every message is idempotent, so a retry or a duplicate is harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A client's request. Sent alone on a fresh bidirectional stream; the
    /// node answers with one [`Message::Response`] on the same stream.
    Request(Request),
    /// The answer to a [`Message::Request`].
    Response(Response),
    /// Node to node: "here is my membership state; send me yours". Sent on
    /// joining and every `sync_period`, so views that gossip left behind
    /// (a member nobody told this node about) converge.
    SyncRequest(#[serde(deserialize_with = "bounded_list")] Vec<SyncMember>),
    /// The answer to a [`Message::SyncRequest`]: the answerer's state.
    SyncResponse(#[serde(deserialize_with = "bounded_list")] Vec<SyncMember>),
    /// A Raft message between voters of the epoch store.
    Raft {
        /// The Raft id of the group's founding voter (every voter starts
        /// from the same one-voter configuration).
        origin: u64,
        /// The raft-rs message, protobuf-encoded.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Epoch-store traffic that is not Raft itself.
    Epoch(EpochMsg),
    /// Tasks and custody: submits routed to custodians, their answers, and
    /// handoffs.
    Task(TaskMsg),
}

/// Messages between nodes about tasks and custody.
///
/// `req` numbers a submit at the node that routes it (the gateway); the
/// custodian's answers carry it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskMsg {
    /// "Accept this task": from a gateway to the custodian of its resource
    /// in the gateway's latest epoch.
    Submit {
        /// The gateway's request number.
        req: u64,
        /// The task.
        task: Task,
        /// Whether the gateway waits for the outcome.
        wait: bool,
        /// The gateway's latest epoch.
        epoch: u64,
        /// The sequence number a custodian gave the task, when this is a
        /// gateway's reminder about a task accepted already.
        #[serde(default)]
        seq: Option<u64>,
    },
    /// The custodian accepted the task (or recognised a retry of it).
    Accepted {
        /// The gateway's request number.
        req: u64,
        /// The task's per-resource sequence number.
        seq: u64,
        /// The custodian's latest epoch.
        epoch: u64,
        /// Whether the task id was known: nothing new was queued.
        duplicate: bool,
    },
    /// "Not mine in my epoch": the custodian there is `owner`.
    Redirect {
        /// The gateway's request number.
        req: u64,
        /// The epoch whose ring names `owner`.
        epoch: u64,
        /// The custodian in that epoch.
        owner: SocketAddr,
    },
    /// "Mine, but I do not hold the resource's state yet" (a handoff is on
    /// its way, or the range's custodian was lost), or "I may not act now"
    /// (no valid lease). Retry later.
    NotReady {
        /// The gateway's request number.
        req: u64,
    },
    /// A bound is reached; the task was not accepted.
    Busy {
        /// The gateway's request number.
        req: u64,
    },
    /// The task was refused (malformed).
    Rejected {
        /// The gateway's request number.
        req: u64,
        /// Why.
        reason: String,
    },
    /// The task ran.
    Done {
        /// The gateway's request number.
        req: u64,
        /// The task's id, so a restarted gateway cannot take the answer for
        /// another task.
        task_id: String,
        /// Its fencing token.
        token: Token,
        /// What the handler returned; `None` if the task had run before this
        /// request and its outcome is no longer kept.
        outcome: Option<Outcome>,
    },
    /// Sealed parts of the hash space with the state of every resource in
    /// them: custody moves to the receiver.
    Transfer(Transfer),
    /// The receiver holds the transferred state; the sender may forget it.
    TransferAck {
        /// The transfer acknowledged.
        id: u64,
    },
    /// A custodian's accepted tasks and executed watermarks, to one of the
    /// replicas of their ranges.
    Replicate(Replicate),
    /// What a replica holds after a [`TaskMsg::Replicate`].
    ReplicateAck(ReplicateAck),
    /// "Your copies of these parts are complete as of my epoch": from a
    /// custodian to a replica that holds every listed resource up to the
    /// listed number.
    SyncMark(SyncMark),
    /// A replica checked a [`SyncMark`].
    SyncAck {
        /// The mark's number.
        id: u64,
        /// Whether the replica held everything listed, and marked the parts.
        ok: bool,
    },
    /// "Seal this part at `epoch` and send me what you hold of it": from a
    /// custodian recovering a part whose previous custodian was removed, to
    /// the part's replicas in the epoch before.
    Recover {
        /// The recovery's number at the asker.
        id: u64,
        /// The epoch the asker owns the part in: the replica refuses writes
        /// of older epochs for it from now on.
        epoch: u64,
        /// The part.
        span: Span,
    },
    /// What a replica holds of a part it was asked to recover, in chunks.
    RecoverReply(RecoverReply),
}

/// A custodian's statement that a replica's copies are complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMark {
    /// Numbers the custodian's marks; the acknowledgement names it.
    pub id: u64,
    /// The custodian's epoch.
    pub epoch: u64,
    /// The parts of the hash space, disjoint.
    #[serde(deserialize_with = "bounded_list")]
    pub spans: Vec<Span>,
    /// Every resource in `spans` with state: `(resource, n)`, the replica
    /// must hold every task of it up to `n`.
    #[serde(deserialize_with = "bounded_list")]
    pub resources: Vec<(String, u64)>,
}

/// One chunk of what a replica holds of a part being recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverReply {
    /// The recovery's number at the asker.
    pub id: u64,
    /// The epoch the recovery is for.
    pub epoch: u64,
    /// The incarnation this replica's process started with: a process
    /// started after the life the asker counts on lost that life's copies.
    pub born: u64,
    /// Along the part, in runs: the epoch in which a custodian marked this
    /// replica's copies complete ([`SyncMark`]; 0: never), carried forward
    /// to the epoch before the recovery's where, by the replica's own
    /// rings, the run kept its custodian and replicas since.
    #[serde(deserialize_with = "bounded_list")]
    pub synced: Vec<(Span, u64)>,
    /// This chunk's index, from 0.
    pub chunk: u32,
    /// How many chunks the reply has.
    pub chunks: u32,
    /// The states of the resources of the part this chunk carries, each
    /// with the epoch of the last write the replica took for it (the newest
    /// writer's copy supersedes a former custodian's).
    #[serde(deserialize_with = "bounded_list")]
    pub resources: Vec<(u64, ResourceState)>,
}

/// Chunks one recovery reply may have.
pub const RECOVER_CHUNKS_MAX: u32 = 4096;

/// Writes of one custodian to one replica, batched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicate {
    /// The custodian's latest epoch: the ring that names the receiver a
    /// replica. A replica refuses writes older than the last epoch it took
    /// for a resource (a former custodian's late message).
    pub epoch: u64,
    /// One write per resource.
    #[serde(deserialize_with = "bounded_list")]
    pub writes: Vec<ReplicaWrite>,
}

/// One resource's write to a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaWrite {
    /// The tasks after `base` and the executed watermark, for a replica that
    /// holds every task up to `base`.
    Delta {
        /// The resource.
        resource: String,
        /// The last sequence number the replica must hold already.
        base: u64,
        /// Every task up to this number has run.
        executed: u64,
        /// The tasks numbered from `max(base, executed) + 1`, in order.
        #[serde(deserialize_with = "bounded_list")]
        tasks: Vec<PendingTask>,
        /// The custodian's latest token step `(first seq, epoch)`: the
        /// epoch of the tokens its tasks run with from that number on.
        #[serde(default)]
        step: Option<(u64, u64)>,
    },
    /// The whole state: replaces what the replica holds.
    Full(ResourceState),
}

/// A replica's answer to a [`Replicate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicateAck {
    /// The epoch of the write answered.
    pub epoch: u64,
    /// `(resource, n)`: the replica holds every task of the resource up to
    /// number `n`.
    #[serde(deserialize_with = "bounded_list")]
    pub held: Vec<(String, u64)>,
    /// Resources whose delta does not follow what the replica holds (a
    /// message was lost, or the replica is new): send the whole state.
    #[serde(deserialize_with = "bounded_list")]
    pub need_full: Vec<String>,
    /// Resources the replica has no room for (its bounds): not held.
    #[serde(deserialize_with = "bounded_list")]
    pub busy: Vec<String>,
}

/// Custody of a part of the hash space, moving from one node to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Numbers the sender's transfers (per sender life); the receiver's
    /// acknowledgement names it.
    pub id: u64,
    /// The sender's incarnation (with its address, the sender's life).
    pub from_incarnation: u64,
    /// The receiver's incarnation: another life at its address ignores it.
    pub to_incarnation: u64,
    /// The epoch whose ring gives these parts to the receiver.
    pub epoch: u64,
    /// The parts of the hash space.
    #[serde(deserialize_with = "bounded_list")]
    pub spans: Vec<Span>,
    /// Every resource in `spans` that has state.
    #[serde(deserialize_with = "bounded_list")]
    pub resources: Vec<ResourceState>,
}

/// One resource's custody state, as handed off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceState {
    /// The resource.
    pub resource: String,
    /// The last sequence number assigned.
    pub last_seq: u64,
    /// Every task up to this sequence number has run.
    pub executed: u64,
    /// The epoch of the last token handed to an execution: later tokens
    /// never go below it.
    pub token_floor: u64,
    /// Accepted tasks that have not run, in sequence order.
    #[serde(deserialize_with = "bounded_list")]
    pub pending: Vec<PendingTask>,
    /// Recent task ids, oldest first: `(id, seq, epoch of the token it ran
    /// with, 0 until it ran)`.
    #[serde(deserialize_with = "bounded_list")]
    pub dedup: Vec<(String, u64, u64)>,
    /// The epochs of the tokens the resource's tasks ran with, as steps
    /// `(first seq, epoch)`, oldest first: the token of a task whose id was
    /// forgotten.
    #[serde(default, deserialize_with = "bounded_list")]
    pub token_epochs: Vec<(u64, u64)>,
    /// Executed tasks older than `dedup`, oldest first: `(hash of the task
    /// id, seq)` (see [`crate::engine::task::FORGOTTEN_PER_RESOURCE_MAX`]).
    #[serde(default, deserialize_with = "bounded_list")]
    pub forgotten: Vec<(u64, u64)>,
}

impl Transfer {
    /// Checks a transfer from a peer against what a sender keeps: its parts
    /// are disjoint arcs, its resources distinct and each within its bounds
    /// ([`ResourceState::validate`]). A transfer failing this is refused
    /// whole, at decode: taking part of it could overlap pieces or break the
    /// order tasks run in.
    pub fn validate(&self) -> Result<(), String> {
        if let Some((a, b)) = overlapping(&self.spans) {
            return Err(format!("transfer {}: parts {a} and {b} overlap", self.id));
        }
        if let Some(name) = repeated(self.resources.iter().map(|r| r.resource.as_str())) {
            return Err(format!("transfer {}: resource {name:?} twice", self.id));
        }
        for state in &self.resources {
            state.validate().map_err(|e| format!("transfer {}: {e}", self.id))?;
        }
        Ok(())
    }
}

/// Whether some two of `spans` overlap: the pair, if so.
fn overlapping(spans: &[Span]) -> Option<(Span, Span)> {
    let mut spans = spans.to_vec();
    spans.sort_unstable_by_key(|s| s.end);
    // Sorted by end, arcs are disjoint when each misses the next one and
    // the last misses the first (a wrapping arc sorts first).
    let overlap = |a: &Span, b: &Span| a.contains(b.end) || b.contains(a.end);
    spans.windows(2).find(|w| overlap(&w[0], &w[1])).map(|w| (w[0], w[1])).or_else(|| {
        let (first, last) = (spans.first()?, spans.last()?);
        (spans.len() > 1 && overlap(first, last)).then_some((*first, *last))
    })
}

/// A name listed twice, if any.
fn repeated<'a>(names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut names: Vec<&str> = names.collect();
    names.sort_unstable();
    names.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// The first name that is not a valid resource name, or one listed twice.
fn bad_name<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Option<String> {
    if let Some(bad) = names.clone().find(|n| n.is_empty() || n.len() > RESOURCE_LEN_MAX) {
        return Some(format!("a resource name of {} bytes", bad.len()));
    }
    repeated(names).map(|name| format!("resource {name:?} twice"))
}

impl SyncMark {
    /// Disjoint parts, each resource once with a valid name.
    pub fn validate(&self) -> Result<(), String> {
        if let Some((a, b)) = overlapping(&self.spans) {
            return Err(format!("sync mark {}: parts {a} and {b} overlap", self.id));
        }
        match bad_name(self.resources.iter().map(|(r, _)| r.as_str())) {
            Some(e) => Err(format!("sync mark {}: {e}", self.id)),
            None => Ok(()),
        }
    }
}

impl RecoverReply {
    /// A chunk index below the count, within [`RECOVER_CHUNKS_MAX`]; each
    /// resource once, each state within its bounds.
    pub fn validate(&self) -> Result<(), String> {
        if self.chunks == 0 || self.chunks > RECOVER_CHUNKS_MAX || self.chunk >= self.chunks {
            return Err(format!("recovery reply {}: chunk {} of {}", self.id, self.chunk, self.chunks));
        }
        if let Some(e) = bad_name(self.resources.iter().map(|(_, r)| r.resource.as_str())) {
            return Err(format!("recovery reply {}: {e}", self.id));
        }
        self.resources
            .iter()
            .try_for_each(|(_, r)| r.validate())
            .map_err(|e| format!("recovery reply {}: {e}", self.id))
    }
}

impl Replicate {
    /// Checks a replication message against what a custodian sends: each
    /// resource once, each write within the bounds of its state
    /// ([`ReplicaWrite::validate`]). One bad write refuses the message whole.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(name) = repeated(self.writes.iter().map(ReplicaWrite::resource)) {
            return Err(format!("replication: resource {name:?} twice"));
        }
        self.writes.iter().try_for_each(ReplicaWrite::validate)
    }
}

impl ReplicaWrite {
    /// The resource written.
    pub fn resource(&self) -> &str {
        match self {
            ReplicaWrite::Delta { resource, .. } => resource,
            ReplicaWrite::Full(state) => &state.resource,
        }
    }

    /// A full state is checked as a handed-off one
    /// ([`ResourceState::validate`]); a delta's tasks must be of the
    /// resource, numbered without a gap from `max(base, executed) + 1`, and
    /// within the queue's bounds.
    pub fn validate(&self) -> Result<(), String> {
        let (resource, base, executed, tasks) = match self {
            ReplicaWrite::Full(state) => return state.validate(),
            ReplicaWrite::Delta { resource, base, executed, tasks, .. } => (resource, *base, *executed, tasks),
        };
        let state = ResourceState {
            resource: resource.clone(),
            last_seq: tasks.last().map_or(base.max(executed), |t| t.seq),
            executed: base.max(executed),
            token_floor: 0,
            pending: Vec::new(),
            dedup: Vec::new(),
            token_epochs: Vec::new(),
            forgotten: Vec::new(),
        };
        // The name and the order, through the handed-off state's checks on
        // an empty state; then the tasks as its queue.
        state.validate()?;
        ResourceState { pending: tasks.clone(), ..state }.validate()
    }
}

impl ReplicateAck {
    /// Names must be valid resource names, each listed once per list.
    pub fn validate(&self) -> Result<(), String> {
        let error = bad_name(self.held.iter().map(|(r, _)| r.as_str()))
            .or_else(|| bad_name(self.need_full.iter().map(String::as_str)))
            .or_else(|| bad_name(self.busy.iter().map(String::as_str)));
        match error {
            Some(e) => Err(format!("replication ack: {e}")),
            None => Ok(()),
        }
    }
}

impl ResourceState {
    /// Checks one resource's state from a peer against the bounds and orders
    /// custody keeps for it: a valid name; `executed <= last_seq`; the
    /// pending tasks valid, of this resource, numbered `executed + 1`
    /// onwards without a gap (the order they run in), within the queue's
    /// bounds ([`QUEUED_PER_RESOURCE_MAX`] tasks,
    /// [`QUEUED_BYTES_PER_RESOURCE_MAX`] bytes) and with at most
    /// [`WAITERS_PER_TASK_MAX`] waiters each; the task ids in sequence
    /// order, at most [`DEDUP_PER_RESOURCE_MAX`] more than the queue's bound;
    /// token epochs in sequence order, at most
    /// [`TOKEN_EPOCHS_PER_RESOURCE_MAX`]; at most
    /// [`FORGOTTEN_PER_RESOURCE_MAX`] forgotten ids.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.resource;
        if name.is_empty() || name.len() > RESOURCE_LEN_MAX {
            return Err(format!("a resource name of {} bytes (1 to {RESOURCE_LEN_MAX} are allowed)", name.len()));
        }
        if self.executed > self.last_seq {
            return Err(format!("{name:?}: executed {} past its last number {}", self.executed, self.last_seq));
        }
        if self.pending.len() > QUEUED_PER_RESOURCE_MAX {
            return Err(format!("{name:?}: {} pending tasks (at most {QUEUED_PER_RESOURCE_MAX})", self.pending.len()));
        }
        let mut bytes = 0usize;
        for (i, p) in self.pending.iter().enumerate() {
            p.task.validate().map_err(|e| format!("{name:?}: pending task {}: {e}", p.seq))?;
            if p.task.resource != *name {
                return Err(format!("{name:?}: pending task {} is of {:?}", p.seq, p.task.resource));
            }
            let expected = (i as u64).checked_add(self.executed).and_then(|n| n.checked_add(1));
            if expected != Some(p.seq) || p.seq > self.last_seq {
                return Err(format!(
                    "{name:?}: pending task {} out of order (executed {}, last {})",
                    p.seq, self.executed, self.last_seq
                ));
            }
            if p.waiters.len() > WAITERS_PER_TASK_MAX {
                return Err(format!("{name:?}: task {} has {} waiters", p.seq, p.waiters.len()));
            }
            bytes += p.task.weight();
        }
        if bytes > QUEUED_BYTES_PER_RESOURCE_MAX {
            return Err(format!("{name:?}: {bytes} bytes pending (at most {QUEUED_BYTES_PER_RESOURCE_MAX})"));
        }
        if self.dedup.len() > DEDUP_PER_RESOURCE_MAX + QUEUED_PER_RESOURCE_MAX {
            return Err(format!("{name:?}: {} task ids", self.dedup.len()));
        }
        if let Some((id, _, _)) = self.dedup.iter().find(|(id, _, _)| id.is_empty() || id.len() > TASK_ID_LEN_MAX) {
            return Err(format!("{name:?}: a task id of {} bytes", id.len()));
        }
        if self.dedup.windows(2).any(|w| w[0].1 >= w[1].1) || self.dedup.last().is_some_and(|d| d.1 > self.last_seq) {
            return Err(format!("{name:?}: task ids out of sequence order"));
        }
        if self.token_epochs.len() > TOKEN_EPOCHS_PER_RESOURCE_MAX {
            return Err(format!("{name:?}: {} token epochs", self.token_epochs.len()));
        }
        if self.token_epochs.windows(2).any(|w| w[0].0 > w[1].0) {
            return Err(format!("{name:?}: token epochs out of sequence order"));
        }
        if self.forgotten.len() > FORGOTTEN_PER_RESOURCE_MAX {
            return Err(format!("{name:?}: {} forgotten task ids", self.forgotten.len()));
        }
        Ok(())
    }
}

impl Message {
    /// Checks what a peer could send out of range (see the module docs).
    fn validate(&self) -> Result<(), WireError> {
        match self {
            Message::Epoch(EpochMsg::Config(config) | EpochMsg::Past(config)) if !config.is_well_formed() => {
                Err(WireError::Invalid(format!(
                    "configuration of epoch {} is not well formed ({} members, {} points each, {} replicas)",
                    config.epoch,
                    config.members.len(),
                    config.vnodes,
                    config.replication
                )))
            }
            Message::Task(TaskMsg::Transfer(t)) => t.validate().map_err(WireError::Invalid),
            Message::Task(TaskMsg::Replicate(r)) => r.validate().map_err(WireError::Invalid),
            Message::Task(TaskMsg::ReplicateAck(a)) => a.validate().map_err(WireError::Invalid),
            Message::Task(TaskMsg::SyncMark(m)) => m.validate().map_err(WireError::Invalid),
            Message::Task(TaskMsg::RecoverReply(r)) => r.validate().map_err(WireError::Invalid),
            _ => Ok(()),
        }
    }
}

/// An accepted task waiting to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTask {
    /// Its sequence number.
    pub seq: u64,
    /// The task.
    pub task: Task,
    /// Executions started so far.
    pub attempts: u32,
    /// Gateways waiting for its outcome.
    #[serde(deserialize_with = "bounded_list")]
    pub waiters: Vec<Waiter>,
}

/// A gateway waiting for a task's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    /// The gateway's address.
    pub gateway: SocketAddr,
    /// The gateway's request number.
    pub req: u64,
}

/// Epoch-store messages: leases, votes, leaves, configuration fetches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EpochMsg {
    /// "Renew my lease": answered by the leader after a linearizable read.
    LeaseRequest {
        /// The requesting life.
        id: NodeId,
        /// Its request number; the lease runs from when this was sent.
        seq: u64,
        /// The latest epoch in which the requester knows it was a member.
        member_of: Option<u64>,
    },
    /// The leader's answer to a lease request.
    LeaseGrant {
        /// The request answered.
        seq: u64,
        /// Granted, not a member (yet), or removed.
        status: LeaseStatus,
        /// The latest committed epoch.
        epoch: u64,
        /// Its hash.
        hash: u64,
        /// The leader's address.
        leader: SocketAddr,
        /// The voters' addresses.
        #[serde(deserialize_with = "bounded_list")]
        voters: Vec<SocketAddr>,
    },
    /// "I am not the leader; try this one."
    NotLeader {
        /// The request answered.
        seq: u64,
        /// The leader, if known.
        leader: Option<SocketAddr>,
    },
    /// A suspicion vote: `by` saw `target` go down.
    Vote {
        /// The suspected life.
        target: NodeId,
        /// The voter.
        by: NodeId,
    },
    /// "Mark me leaving", and later "my handoffs are done: remove me".
    Leave {
        /// The leaving life.
        id: NodeId,
        /// Whether every range it held has been handed off.
        handed_off: bool,
    },
    /// "Send me the configuration of this epoch (or a later one)."
    Fetch {
        /// The epoch wanted.
        epoch: u64,
    },
    /// A configuration.
    Config(super::epoch::Configuration),
    /// "Send me the configuration of exactly this epoch, if you keep it": a
    /// node that learned an epoch without the one before (it restarted, or
    /// was cut off) needs that one's ring to recover the parts whose
    /// custodian the later epoch removed.
    FetchPast {
        /// The epoch wanted.
        epoch: u64,
    },
    /// A configuration of the chain, answering [`EpochMsg::FetchPast`].
    Past(super::epoch::Configuration),
}

/// The outcome of a lease request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseStatus {
    /// The lease runs for `lease` from the request's send time.
    Granted,
    /// The requester is not a member (it has not been admitted yet).
    NotMember,
    /// The requester's life was removed: it must stop and rejoin.
    Removed,
}

/// One member's SWIM state, as exchanged in a membership sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMember {
    /// Which life of which node.
    pub id: NodeId,
    /// SWIM's own incarnation of that life (bumped to refute suspicion).
    pub incarnation: u16,
    /// Its state.
    pub state: MemberState,
}

/// A client request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The node's membership view.
    Members,
    /// Leave the cluster gracefully and stop.
    Leave,
    /// The node's epoch-store view: epoch, leader, voters, lease, members.
    Status,
    /// Who is custodian of a resource in the latest committed configuration.
    Owner {
        /// The resource.
        resource: String,
    },
    /// Run a task at its resource's custodian. Answered with
    /// [`Response::Submitted`] once the custodian accepted it or, with
    /// `wait`, [`Response::Completed`] once it ran.
    Submit {
        /// The task.
        task: Task,
        /// Answer when the task has run, not when it was accepted.
        wait: bool,
    },
}

/// A node's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The node's membership view, itself included, sorted by address.
    Members(#[serde(deserialize_with = "bounded_list")] Vec<MemberInfo>),
    /// The node is leaving.
    Leaving,
    /// The node's epoch-store view.
    Status(StatusInfo),
    /// A resource's custodian, or `None` before any configuration is known.
    Owner(Option<OwnerInfo>),
    /// The node cannot take the request now (a bound is reached); retry
    /// later.
    Busy,
    /// The request was refused.
    Error(String),
    /// The custodian accepted the task.
    Submitted(Submitted),
    /// The task ran.
    Completed(Completed),
    /// The task's resource has no custodian able to take it now (its range
    /// is being handed off or was lost with a crashed custodian, or the
    /// node has no lease); nothing was accepted. Retry later.
    Unavailable(String),
}

/// A task the custodian accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// The task's id.
    pub task_id: String,
    /// Its resource.
    pub resource: String,
    /// Its per-resource sequence number.
    pub seq: u64,
    /// The custodian's address.
    pub custodian: SocketAddr,
    /// The custodian's latest epoch.
    pub epoch: u64,
    /// Whether the id was known (a retry): nothing new was queued.
    pub duplicate: bool,
}

/// A task that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completed {
    /// The task's id.
    pub task_id: String,
    /// Its resource.
    pub resource: String,
    /// The fencing token it ran with.
    pub token: Token,
    /// The custodian that ran it.
    pub custodian: SocketAddr,
    /// What the handler returned; `None` if it ran before this request and
    /// its outcome is no longer kept.
    pub outcome: Option<Outcome>,
}

/// A node's view of the committed configuration, as `custody status` shows
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// The node's name.
    pub name: String,
    /// The latest epoch it knows (0: none yet).
    pub epoch: u64,
    /// That epoch's configuration hash, as 16 hex digits (empty: none yet).
    pub epoch_hash: String,
    /// The epoch-store leader's name, if known.
    pub leader: Option<String>,
    /// The voters' names.
    #[serde(deserialize_with = "bounded_list")]
    pub voters: Vec<String>,
    /// How long this node may still act as custodian, in milliseconds: its
    /// lease end minus now minus the cancel margin (`cancel_margin`); 0 if
    /// it may not.
    pub lease_remaining_ms: u64,
    /// The members of the latest configuration.
    #[serde(deserialize_with = "bounded_list")]
    pub members: Vec<StatusMember>,
    /// Custody at this node.
    pub custody: CustodyInfo,
}

/// Custody counters of one node, as `custody status` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyInfo {
    /// Ranges this node owns in its latest epoch.
    pub ranges_owned: u64,
    /// Of those, ranges whose state it does not hold (yet): a handoff is on
    /// its way, or the previous custodian was lost. Tasks of their resources
    /// are refused as unavailable meanwhile.
    pub ranges_unavailable: u64,
    /// Parts of the hash space sealed here and being handed off.
    pub ranges_sealing: u64,
    /// Resources this node holds state for.
    pub resources: u64,
    /// Tasks accepted and waiting to run.
    pub tasks_queued: u64,
    /// Tasks running.
    pub tasks_running: u64,
    /// Tasks this node ran (counted since it started).
    pub tasks_executed: u64,
    /// Transfers this node sent and had acknowledged.
    pub handoffs_sent: u64,
    /// Transfers this node received.
    pub handoffs_received: u64,
    /// Transfers whose receiver was removed before acknowledging: their
    /// ranges wait for recovery.
    pub handoffs_in_doubt: u64,
    /// Resources this node holds copies of, as a replica of their
    /// custodians.
    #[serde(default)]
    pub replica_resources: u64,
    /// Tasks in those copies.
    #[serde(default)]
    pub replica_tasks: u64,
    /// Parts this node is recovering (their custodian was removed).
    #[serde(default)]
    pub ranges_recovering: u64,
    /// Of those, parts no read quorum can rebuild now: every replica
    /// answered and none held the previous custodian's complete copy.
    #[serde(default)]
    pub ranges_unrecoverable: u64,
}

/// Where a resource lives in a committed configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerInfo {
    /// The resource.
    pub resource: String,
    /// The epoch whose ring decided.
    pub epoch: u64,
    /// The range the resource falls in: the ring point that ends it, as 16
    /// hex digits.
    pub range: String,
    /// The custodian's name.
    pub custodian: String,
    /// The custodian's address.
    pub addr: SocketAddr,
    /// The range's replicas (k distinct members clockwise, custodian first),
    /// by name.
    #[serde(deserialize_with = "bounded_list")]
    pub replicas: Vec<String>,
}

/// One member of a committed configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMember {
    /// Its name.
    pub name: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Its incarnation.
    pub incarnation: u64,
    /// Active or leaving.
    pub status: super::epoch::MemberStatus,
    /// Whether it is a voter of the epoch store (matched by address: names
    /// may repeat, addresses do not).
    #[serde(default)]
    pub voter: bool,
    /// Whether it leads the epoch store (by address).
    #[serde(default)]
    pub leader: bool,
}

/// One member as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The member's name.
    pub name: String,
    /// The member's address.
    pub addr: SocketAddr,
    /// The member's incarnation (which life of the node at `addr`).
    pub incarnation: u64,
    /// Its state in the viewing node's SWIM view.
    pub state: MemberState,
}

/// A member's liveness as SWIM sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// A probe failed; it is Down unless it refutes in time.
    Suspect,
    /// Declared down (crashed, unreachable or left).
    Down,
}

impl MemberState {
    /// The lowercase name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
        }
    }
}

/// Prefixes a SWIM packet with the version byte, making a datagram.
pub fn encode_datagram(packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() + 1);
    out.push(PROTOCOL_VERSION);
    out.extend_from_slice(packet);
    out
}

/// Checks a datagram's version and returns the SWIM packet inside.
pub fn decode_datagram(datagram: &[u8]) -> Result<&[u8], WireError> {
    match datagram.split_first() {
        None => Err(WireError::Empty),
        Some((&PROTOCOL_VERSION, packet)) => Ok(packet),
        Some((&got, _)) => Err(WireError::UnknownVersion { got }),
    }
}

/// Turns a datagram (as [`encode_datagram`] made it) into a stream frame,
/// for a SWIM packet larger than the connection's datagram limit. Returns
/// the frame without the length prefix.
pub fn datagram_to_frame(datagram: &[u8]) -> Result<Vec<u8>, WireError> {
    let packet = decode_datagram(datagram)?;
    let mut out = Vec::with_capacity(packet.len() + 2);
    out.extend_from_slice(&[PROTOCOL_VERSION, KIND_SWIM]);
    out.extend_from_slice(packet);
    check_len(out.len())?;
    Ok(out)
}

/// Encodes a message as a frame, without the length prefix.
pub fn encode_message(message: &Message) -> Result<Vec<u8>, WireError> {
    let mut out = vec![PROTOCOL_VERSION, KIND_MESSAGE];
    rmp_serde::encode::write(&mut out, message).map_err(|e| WireError::Malformed(e.to_string()))?;
    check_len(out.len())?;
    Ok(out)
}

/// Decodes a frame (without its length prefix).
pub fn decode_frame(frame: &[u8]) -> Result<Frame<'_>, WireError> {
    check_len(frame.len())?;
    let packet = decode_datagram(frame)?;
    let (&kind, body) = packet.split_first().ok_or(WireError::Truncated)?;
    match kind {
        KIND_SWIM => Ok(Frame::Swim(body)),
        KIND_MESSAGE => {
            // Membership syncs carry whole member lists: read them directly
            // when they are encoded as this crate encodes them.
            let message = match fast::message(body) {
                Some(message) => message,
                None => {
                    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(body));
                    let message = Message::deserialize(&mut de).map_err(|e| WireError::Malformed(e.to_string()))?;
                    if de.position() != body.len() as u64 {
                        return Err(WireError::Malformed(format!(
                            "{} trailing bytes after the message",
                            body.len() as u64 - de.position()
                        )));
                    }
                    message
                }
            };
            message.validate()?;
            Ok(Frame::Message(message))
        }
        other => Err(WireError::UnknownKind(other)),
    }
}

/// A direct reader of the messages that carry every member:
/// [`Message::SyncRequest`], [`Message::SyncResponse`] and
/// [`EpochMsg::Config`]. rmp-serde takes about 190 ns per member; this
/// takes a fraction of it.
///
/// It reads only the encoding rmp-serde writes (a one-entry map for the
/// variant, arrays for structs and tuples, the shortest unsigned integer
/// markers, `str` markers for names and unit variants) and gives up, with
/// `None`, on anything else: the caller then decodes with rmp-serde as
/// before, which accepts (or rejects, with its own error) every other
/// spelling. Whatever it accepts decodes to what rmp-serde would give.
mod fast {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::sync::Arc;

    use super::super::epoch::{ConfigMember, Configuration, MemberStatus};
    use super::{EpochMsg, MemberState, Message, NodeId, SyncMember};

    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn byte(&mut self) -> Option<u8> {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            Some(b)
        }

        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            if self.0.len() < n {
                return None;
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Some(head)
        }

        fn be(&mut self, n: usize) -> Option<u64> {
            Some(self.take(n)?.iter().fold(0, |acc, &b| acc << 8 | u64::from(b)))
        }

        fn array(&mut self) -> Option<usize> {
            match self.byte()? {
                b @ 0x90..=0x9f => Some(usize::from(b & 0x0f)),
                0xdc => self.be(2).map(|n| n as usize),
                0xdd => self.be(4).and_then(|n| usize::try_from(n).ok()),
                _ => None,
            }
        }

        fn uint(&mut self) -> Option<u64> {
            match self.byte()? {
                b @ 0x00..=0x7f => Some(u64::from(b)),
                0xcc => self.be(1),
                0xcd => self.be(2),
                0xce => self.be(4),
                0xcf => self.be(8),
                _ => None,
            }
        }

        fn str(&mut self) -> Option<&'a str> {
            let len = match self.byte()? {
                b @ 0xa0..=0xbf => usize::from(b & 0x1f),
                0xd9 => self.be(1)? as usize,
                0xda => self.be(2)? as usize,
                0xdb => usize::try_from(self.be(4)?).ok()?,
                _ => return None,
            };
            std::str::from_utf8(self.take(len)?).ok()
        }

        /// A one-entry map's key: an enum variant with data.
        fn variant(&mut self) -> Option<&'a str> {
            if self.byte()? != 0x81 {
                return None;
            }
            self.str()
        }

        fn octets<const N: usize>(&mut self) -> Option<[u8; N]> {
            if self.array()? != N {
                return None;
            }
            let mut out = [0; N];
            for o in &mut out {
                *o = u8::try_from(self.uint()?).ok()?;
            }
            Some(out)
        }

        /// `SocketAddr`: `{"V4": [[a, b, c, d], port]}` or `{"V6": [[16
        /// octets], port]}` (serde's compact form, which carries no flow
        /// info or scope id).
        fn addr(&mut self) -> Option<SocketAddr> {
            let v6 = match self.variant()? {
                "V4" => false,
                "V6" => true,
                _ => return None,
            };
            if self.array()? != 2 {
                return None;
            }
            Some(if v6 {
                let ip = Ipv6Addr::from(self.octets::<16>()?);
                SocketAddr::V6(SocketAddrV6::new(ip, u16::try_from(self.uint()?).ok()?, 0, 0))
            } else {
                let ip = Ipv4Addr::from(self.octets::<4>()?);
                SocketAddr::V4(SocketAddrV4::new(ip, u16::try_from(self.uint()?).ok()?))
            })
        }

        /// `NodeId`: `[addr, incarnation, generation, name]`.
        fn node_id(&mut self) -> Option<NodeId> {
            if self.array()? != 4 {
                return None;
            }
            let addr = self.addr()?;
            let incarnation = self.uint()?;
            let generation = u32::try_from(self.uint()?).ok()?;
            let name = self.str()?;
            // A name past the bound: the full decoder refuses it.
            NodeId::validate_name(name).ok()?;
            Some(NodeId { addr, incarnation, generation, name: Arc::from(name) })
        }

        /// `SyncMember`: `[id, incarnation, state]`.
        fn sync_member(&mut self) -> Option<SyncMember> {
            if self.array()? != 3 {
                return None;
            }
            let id = self.node_id()?;
            let incarnation = u16::try_from(self.uint()?).ok()?;
            let state = match self.str()? {
                "alive" => MemberState::Alive,
                "suspect" => MemberState::Suspect,
                "down" => MemberState::Down,
                _ => return None,
            };
            Some(SyncMember { id, incarnation, state })
        }
    }

    impl Reader<'_> {
        /// An array of `item`s. Every item this reads takes more than 16
        /// bytes: a longer count is a lie, left to rmp-serde to reject.
        fn list<T>(&mut self, item: impl Fn(&mut Self) -> Option<T>) -> Option<Vec<T>> {
            let len = self.array()?;
            if len > self.0.len() / 16 {
                return None;
            }
            let mut out = Vec::with_capacity(len);
            for _ in 0..len {
                out.push(item(self)?);
            }
            Some(out)
        }

        /// `ConfigMember`: `[id, status]`.
        fn config_member(&mut self) -> Option<ConfigMember> {
            if self.array()? != 2 {
                return None;
            }
            let id = self.node_id()?;
            let status = match self.str()? {
                "active" => MemberStatus::Active,
                "leaving" => MemberStatus::Leaving,
                _ => return None,
            };
            Some(ConfigMember { id, status })
        }

        /// `Configuration`: `[group, epoch, members, vnodes, replication]`.
        fn configuration(&mut self) -> Option<Configuration> {
            if self.array()? != 5 {
                return None;
            }
            let group = self.uint()?;
            let epoch = self.uint()?;
            let members = self.list(Self::config_member)?;
            let vnodes = u32::try_from(self.uint()?).ok()?;
            let replication = u8::try_from(self.uint()?).ok()?;
            Some(Configuration { group, epoch, members, vnodes, replication })
        }
    }

    /// A whole body holding a sync request or response or a configuration,
    /// or `None`.
    pub(super) fn message(body: &[u8]) -> Option<Message> {
        let mut r = Reader(body);
        let message = match r.variant()? {
            "SyncRequest" => Message::SyncRequest(r.list(Reader::sync_member)?),
            "SyncResponse" => Message::SyncResponse(r.list(Reader::sync_member)?),
            "Epoch" if r.variant()? == "Config" => Message::Epoch(EpochMsg::Config(r.configuration()?)),
            _ => return None,
        };
        r.0.is_empty().then_some(message)
    }
}

/// The length prefix for a frame of `frame_len` bytes.
///
/// # Panics
/// If `frame_len` exceeds [`FRAME_LEN_MAX`]: encoders check the limit first.
pub fn len_prefix(frame_len: usize) -> [u8; LEN_PREFIX_LEN] {
    assert!(frame_len <= FRAME_LEN_MAX, "frame of {frame_len} bytes passed the encoder");
    u32::try_from(frame_len).expect("FRAME_LEN_MAX fits u32").to_be_bytes()
}

/// Reads a length prefix, rejecting frames longer than [`FRAME_LEN_MAX`]
/// before anything is buffered.
pub fn decode_len_prefix(prefix: [u8; LEN_PREFIX_LEN]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(prefix) as usize;
    check_len(len)?;
    Ok(len)
}

fn check_len(len: usize) -> Result<(), WireError> {
    if len > FRAME_LEN_MAX {
        return Err(WireError::FrameTooBig { len });
    }
    Ok(())
}

/// Parses a protobuf message from a peer (a Raft message), reserving no
/// more than the input holds.
///
/// protobuf's own `parse_from_bytes` sets no limit on its input, and checks
/// a claimed length against the limit before reading: an unknown field
/// claiming 10 MB reserves 10 MB, and its reader of a plain slice reserves a
/// `bytes` field's claimed length (up to 10 MB) before anything else. Here
/// the input is a shared buffer (a `bytes` field is checked, then shares
/// it, uncopied) and the limit is the input's length.
pub fn decode_protobuf<M: protobuf::Message>(bytes: &[u8]) -> protobuf::ProtobufResult<M> {
    let shared = bytes::Bytes::copy_from_slice(bytes);
    let mut input = protobuf::CodedInputStream::from_carllerche_bytes(&shared);
    input.push_limit(bytes.len() as u64)?;
    let message = M::parse_from(&mut input)?;
    input.check_eof()?;
    Ok(message)
}

/// Most bytes a list decoded from a peer reserves before its items arrive.
pub const LIST_PREALLOC_BYTES_MAX: usize = 4096;

/// Decodes a list from a peer as its items arrive: whatever count the peer
/// claims, at most [`LIST_PREALLOC_BYTES_MAX`] bytes are reserved up front
/// (serde's own `Vec` reserves up to 1 MiB per list from the claim, so a
/// few bytes claiming long nested lists would take megabytes). The heap a
/// message takes thus follows what it holds, not what it says it holds.
pub(crate) fn bounded_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Items<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Items<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let fits = LIST_PREALLOC_BYTES_MAX / std::mem::size_of::<T>().max(1);
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(fits));
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(items)
        }
    }

    d.deserialize_seq(Items(std::marker::PhantomData))
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member_strategy() -> impl Strategy<Value = MemberInfo> {
        (
            ".{0,64}",
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<u64>(),
            prop_oneof![Just(MemberState::Alive), Just(MemberState::Suspect), Just(MemberState::Down)],
        )
            .prop_map(|(name, ip, port, incarnation, state)| MemberInfo {
                name,
                addr: SocketAddr::from((ip, port)),
                incarnation,
                state,
            })
    }

    fn sync_member_strategy() -> impl Strategy<Value = SyncMember> {
        (member_strategy(), any::<u16>(), "[a-z0-9]{0,64}").prop_map(|(m, incarnation, name)| SyncMember {
            id: NodeId::new(m.addr, m.incarnation, &name),
            incarnation,
            state: m.state,
        })
    }

    fn message_strategy() -> impl Strategy<Value = Message> {
        prop_oneof![
            Just(Message::Request(Request::Members)),
            Just(Message::Request(Request::Leave)),
            Just(Message::Response(Response::Leaving)),
            Just(Message::Response(Response::Busy)),
            ".{0,100}".prop_map(|s| Message::Response(Response::Error(s))),
            proptest::collection::vec(member_strategy(), 0..50).prop_map(|m| Message::Response(Response::Members(m))),
            proptest::collection::vec(sync_member_strategy(), 0..50).prop_map(Message::SyncRequest),
            proptest::collection::vec(sync_member_strategy(), 0..50).prop_map(Message::SyncResponse),
        ]
    }

    proptest! {
        #[test]
        fn messages_round_trip(message in message_strategy()) {
            let frame = encode_message(&message).unwrap();
            prop_assert_eq!(decode_frame(&frame).unwrap(), Frame::Message(message));
        }

        #[test]
        fn swim_packets_round_trip(packet in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let datagram = encode_datagram(&packet);
            prop_assert_eq!(decode_datagram(&datagram).unwrap(), &packet[..]);
            let frame = datagram_to_frame(&datagram).unwrap();
            prop_assert_eq!(decode_frame(&frame).unwrap(), Frame::Swim(&packet[..]));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame(&bytes);
            let _ = decode_datagram(&bytes);
            if bytes.len() >= LEN_PREFIX_LEN {
                let _ = decode_len_prefix(bytes[..LEN_PREFIX_LEN].try_into().unwrap());
            }
        }

        #[test]
        fn random_bodies_behind_a_valid_header_are_errors_or_messages(
            body in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            let mut frame = vec![PROTOCOL_VERSION, KIND_MESSAGE];
            frame.extend_from_slice(&body);
            match decode_frame(&frame) {
                Ok(Frame::Message(m)) => {
                    // Whatever decoded must encode back to the same bytes.
                    prop_assert_eq!(encode_message(&m).unwrap(), frame);
                }
                Ok(other) => prop_assert!(false, "a message frame decoded as {:?}", other),
                Err(WireError::Malformed(_) | WireError::Invalid(_)) => {}
                Err(e) => prop_assert!(false, "unexpected error {:?}", e),
            }
        }

        #[test]
        fn every_truncation_of_a_frame_is_an_error(message in message_strategy()) {
            let frame = encode_message(&message).unwrap();
            for cut in 0..frame.len() {
                prop_assert!(decode_frame(&frame[..cut]).is_err(), "prefix of {} bytes decoded", cut);
            }
        }
    }

    /// A body decoded by rmp-serde alone, as every message but a sync is.
    fn rmp_serde_body(body: &[u8]) -> Option<Message> {
        let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(body));
        let message = Message::deserialize(&mut de).ok()?;
        (de.position() == body.len() as u64).then_some(message)
    }

    fn any_sync_member() -> impl Strategy<Value = SyncMember> {
        (
            prop_oneof![
                any::<[u8; 4]>().prop_map(std::net::IpAddr::from),
                any::<[u8; 16]>().prop_map(std::net::IpAddr::from)
            ],
            any::<u16>(),
            any::<u64>(),
            any::<u32>(),
            // Up to 16 characters of up to 4 bytes: always within
            // NODE_NAME_LEN_MAX (longer names are refused by both decoders).
            ".{0,16}",
            any::<u16>(),
            prop_oneof![Just(MemberState::Alive), Just(MemberState::Suspect), Just(MemberState::Down)],
        )
            .prop_map(|(ip, port, incarnation, generation, name, swim_incarnation, state)| SyncMember {
                id: NodeId { addr: SocketAddr::new(ip, port), incarnation, generation, name: name.into() },
                incarnation: swim_incarnation,
                state,
            })
    }

    /// A sync request or response, or a configuration, of `members`.
    fn any_sync(members: std::ops::Range<usize>) -> impl Strategy<Value = Message> {
        use super::super::epoch::{ConfigMember, Configuration, MemberStatus};
        let config = (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec((any_sync_member(), any::<bool>()), members.clone()),
            any::<u32>(),
            any::<u8>(),
        )
            .prop_map(|(group, epoch, members, vnodes, replication)| {
                let members = members
                    .into_iter()
                    .map(|(m, active)| ConfigMember {
                        id: m.id,
                        status: if active { MemberStatus::Active } else { MemberStatus::Leaving },
                    })
                    .collect();
                Message::Epoch(EpochMsg::Config(Configuration { group, epoch, members, vnodes, replication }))
            });
        let sync = (proptest::collection::vec(any_sync_member(), members), any::<bool>())
            .prop_map(|(m, request)| if request { Message::SyncRequest(m) } else { Message::SyncResponse(m) });
        prop_oneof![sync, config]
    }

    proptest! {
        #[test]
        fn the_fast_path_reads_what_rmp_serde_reads(message in any_sync(0..40)) {
            let frame = encode_message(&message).unwrap();
            prop_assert_eq!(rmp_serde_body(&frame[2..]), Some(message.clone()));
            prop_assert_eq!(fast::message(&frame[2..]), Some(message));
        }

        #[test]
        fn the_fast_path_never_disagrees_with_rmp_serde(
            message in any_sync(0..6),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
            cut in any::<usize>(),
            extra in proptest::collection::vec(any::<u8>(), 0..3),
        ) {
            let mut body = encode_message(&message).unwrap()[2..].to_vec();
            for (at, byte) in edits {
                let at = at % body.len();
                body[at] = byte;
            }
            body.truncate(body.len() - cut % 3);
            body.extend_from_slice(&extra);
            if let Some(fast) = fast::message(&body) {
                prop_assert_eq!(rmp_serde_body(&body), Some(fast));
            }
        }
    }

    #[test]
    fn other_messages_are_left_to_rmp_serde() {
        for other in [Message::Request(Request::Members), Message::Epoch(EpochMsg::Fetch { epoch: 3 })] {
            let frame = encode_message(&other).unwrap();
            assert_eq!(fast::message(&frame[2..]), None);
            assert_eq!(decode_frame(&frame), Ok(Frame::Message(other)));
        }
        // A sync spelled otherwise (its variant by index) is left to
        // rmp-serde, which reads it.
        let body = [0x81, 0x02, 0x90];
        assert_eq!(fast::message(&body), None);
        let frame = [PROTOCOL_VERSION, KIND_MESSAGE, 0x81, 0x02, 0x90];
        assert_eq!(decode_frame(&frame), Ok(Frame::Message(Message::SyncRequest(Vec::new()))));
    }

    #[test]
    fn unknown_version_is_rejected() {
        let mut frame = encode_message(&Message::Request(Request::Members)).unwrap();
        frame[0] = 99;
        assert_eq!(decode_frame(&frame), Err(WireError::UnknownVersion { got: 99 }));
        assert_eq!(decode_datagram(&[99, 1, 2]), Err(WireError::UnknownVersion { got: 99 }));
        assert_eq!(decode_datagram(&[]), Err(WireError::Empty));
    }

    #[test]
    fn oversized_frames_are_rejected() {
        let too_big = u32::try_from(FRAME_LEN_MAX + 1).unwrap().to_be_bytes();
        assert_eq!(decode_len_prefix(too_big), Err(WireError::FrameTooBig { len: FRAME_LEN_MAX + 1 }));
        assert_eq!(decode_len_prefix(len_prefix(FRAME_LEN_MAX)), Ok(FRAME_LEN_MAX));
        let huge = Message::Response(Response::Error("x".repeat(FRAME_LEN_MAX)));
        assert!(matches!(encode_message(&huge), Err(WireError::FrameTooBig { .. })));
        let datagram = encode_datagram(&vec![0; FRAME_LEN_MAX]);
        assert!(matches!(datagram_to_frame(&datagram), Err(WireError::FrameTooBig { .. })));
    }

    #[test]
    fn unknown_kind_and_empty_frames_are_rejected() {
        assert_eq!(decode_frame(&[PROTOCOL_VERSION, 77, 0]), Err(WireError::UnknownKind(77)));
        assert_eq!(decode_frame(&[PROTOCOL_VERSION]), Err(WireError::Truncated));
        assert_eq!(decode_frame(&[]), Err(WireError::Empty));
    }

    fn resource(name: &str, executed: u64, pending: u64) -> ResourceState {
        let pending = (executed + 1..=executed + pending)
            .map(|seq| PendingTask {
                seq,
                task: Task { id: format!("t{seq}"), resource: name.into(), payload: vec![1, 2] },
                attempts: 0,
                waiters: vec![Waiter { gateway: "127.0.0.1:7001".parse().unwrap(), req: seq }],
            })
            .collect::<Vec<_>>();
        let last_seq = executed + pending.len() as u64;
        ResourceState {
            resource: name.into(),
            last_seq,
            executed,
            token_floor: 3,
            dedup: (1..=last_seq).map(|seq| (format!("t{seq}"), seq, if seq <= executed { 3 } else { 0 })).collect(),
            pending,
            token_epochs: vec![(1, 2), (4, 3)],
            forgotten: vec![(99, 1)],
        }
    }

    fn transfer(spans: Vec<Span>, resources: Vec<ResourceState>) -> Transfer {
        Transfer { id: 7, from_incarnation: 1, to_incarnation: 1, epoch: 4, spans, resources }
    }

    fn transfer_frame(t: Transfer) -> Vec<u8> {
        encode_message(&Message::Task(TaskMsg::Transfer(t))).unwrap()
    }

    #[test]
    fn a_transfer_as_a_sender_makes_it_decodes() {
        let spans =
            vec![Span { start: 10, end: 20 }, Span { start: u64::MAX - 5, end: 3 }, Span { start: 20, end: 30 }];
        let t = transfer(spans, vec![resource("a", 5, 3), resource("b", 0, 0), resource("c", 2, 0)]);
        assert_eq!(t.validate(), Ok(()));
        let frame = transfer_frame(t.clone());
        assert_eq!(decode_frame(&frame), Ok(Frame::Message(Message::Task(TaskMsg::Transfer(t)))));
        // The whole circle alone.
        assert_eq!(transfer(vec![Span { start: 9, end: 9 }], vec![]).validate(), Ok(()));
    }

    #[test]
    fn a_transfer_past_its_bounds_or_out_of_order_is_refused_at_decode() {
        let ok = || transfer(vec![Span { start: 10, end: 20 }], vec![resource("a", 5, 3)]);
        let with = |edit: &dyn Fn(&mut ResourceState)| {
            let mut t = ok();
            edit(&mut t.resources[0]);
            t
        };
        let cases: Vec<(&str, Transfer)> = vec![
            ("overlap", transfer(vec![Span { start: 10, end: 20 }, Span { start: 15, end: 25 }], vec![])),
            ("overlap", transfer(vec![Span { start: 10, end: 20 }, Span { start: 10, end: 20 }], vec![])),
            ("overlap", transfer(vec![Span { start: 5, end: 5 }, Span { start: 10, end: 20 }], vec![])),
            ("overlap", transfer(vec![Span { start: 30, end: 15 }, Span { start: 10, end: 20 }], vec![])),
            ("twice", transfer(vec![Span { start: 10, end: 20 }], vec![resource("a", 0, 0), resource("a", 0, 0)])),
            ("resource name", with(&|r| r.resource.clear())),
            ("resource name", with(&|r| r.resource = "r".repeat(RESOURCE_LEN_MAX + 1))),
            ("executed", with(&|r| r.executed = r.last_seq + 1)),
            ("out of order", with(&|r| r.pending.swap(0, 1))),
            ("out of order", with(&|r| r.pending[0].seq = r.executed)),
            ("out of order", with(&|r| r.last_seq -= 1)),
            ("is of", with(&|r| r.pending[0].task.resource = "b".into())),
            ("task id", with(&|r| r.pending[0].task.id.clear())),
            ("waiters", with(&|r| r.pending[0].waiters = vec![r.pending[0].waiters[0]; WAITERS_PER_TASK_MAX + 1])),
            ("pending tasks", with(&|r| r.pending = vec![r.pending[0].clone(); QUEUED_PER_RESOURCE_MAX + 1])),
            ("bytes pending", {
                let mut t = transfer(vec![Span { start: 10, end: 20 }], vec![resource("a", 5, 9)]);
                for p in &mut t.resources[0].pending {
                    p.task.payload = vec![0; crate::engine::task::PAYLOAD_LEN_MAX];
                }
                t
            }),
            (
                "task ids",
                with(&|r| r.dedup = vec![("t".into(), 1, 0); DEDUP_PER_RESOURCE_MAX + QUEUED_PER_RESOURCE_MAX + 1]),
            ),
            ("task id of", with(&|r| r.dedup[0].0 = "x".repeat(TASK_ID_LEN_MAX + 1))),
            ("sequence order", with(&|r| r.dedup.swap(0, 1))),
            ("sequence order", with(&|r| r.dedup.push(("late".into(), r.last_seq + 1, 0)))),
            ("token epochs", with(&|r| r.token_epochs = vec![(1, 1); TOKEN_EPOCHS_PER_RESOURCE_MAX + 1])),
            ("token epochs out", with(&|r| r.token_epochs.swap(0, 1))),
            ("forgotten", with(&|r| r.forgotten = vec![(1, 1); FORGOTTEN_PER_RESOURCE_MAX + 1])),
        ];
        assert_eq!(ok().validate(), Ok(()));
        for (what, t) in cases {
            let err = t.validate().unwrap_err();
            assert!(err.contains(what), "{what}: {err}");
            match decode_frame(&transfer_frame(t)) {
                Err(WireError::Invalid(e)) => assert_eq!(e, err),
                other => panic!("{what}: decoded as {other:?}"),
            }
        }
    }

    #[test]
    fn a_configuration_out_of_range_is_refused_at_decode() {
        use super::super::epoch::Configuration;
        let id = NodeId::new("127.0.0.1:7001".parse().unwrap(), 1, "a");
        let good = Configuration::first(1, id, 128, 3);
        let frame = encode_message(&Message::Epoch(EpochMsg::Config(good.clone()))).unwrap();
        assert_eq!(decode_frame(&frame), Ok(Frame::Message(Message::Epoch(EpochMsg::Config(good.clone())))));
        for bad in [Configuration { vnodes: 0, ..good.clone() }, Configuration { epoch: 0, ..good.clone() }] {
            // Through the direct reader and through rmp-serde alike.
            let frame = encode_message(&Message::Epoch(EpochMsg::Config(bad.clone()))).unwrap();
            assert!(fast::message(&frame[2..]).is_some());
            assert!(matches!(decode_frame(&frame), Err(WireError::Invalid(_))), "{bad:?}");
        }
    }

    #[test]
    fn member_state_serializes_lowercase() {
        assert_eq!(MemberState::Suspect.as_str(), "suspect");
        let json = serde_json::to_string(&MemberState::Down).unwrap();
        assert_eq!(json, "\"down\"");
    }
}
