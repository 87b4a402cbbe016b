//! Custody: which node runs a resource's tasks, and how that moves.
//!
//! Every resource is a point on the ring ([`Ring::key_hash`]). A node holds
//! **pieces**: arcs of the hash space for which it has the authoritative
//! state of every resource (sequence numbers, executed watermark, pending
//! tasks, recent task ids). Exactly one node holds each part of the hash
//! space, or none while it travels or after its holder crashed; custody moves
//! only by a sealed [`Transfer`], so two nodes never run tasks of one
//! resource at once, without any clock assumption.
//!
//! When a node learns a committed epoch, it cuts every piece it holds along
//! the new ring's owners. The parts it still owns stay **active**; the parts
//! that moved are **sealing**: no task of theirs starts any more, and once
//! the running ones finished the node sends their state to the new
//! custodian, which takes custody (**active** there) and acknowledges. The
//! sender keeps the sealed state until the acknowledgement comes, resending
//! it; a receiver takes each transfer once, for as long as it lives:
//! custody of a point moves along strictly increasing epochs, so a copy of
//! a transfer, however late and from whichever life, is told apart from a
//! new one by the epoch this node last took that point at (`marks`). A
//! range the node owns but holds no piece of is **acquiring**: its tasks
//! are refused as not ready until the state arrives, and, when the
//! previous custodian crashed, until
//! recovery (a later step) rebuilds it. Nothing is ever taken over without a
//! transfer.
//!
//! A node runs a task only if it holds the resource's piece, owns it in its
//! latest epoch, and holds a lease for more than the cancel margin
//! (`now + cancel_margin < lease_end`). A task may run longer than a lease:
//! the node renews while it runs, and when it cannot, cancels it
//! `cancel_margin` before the lease ends (`Custody::cancel_running`); a
//! cancelled task did not complete, and runs again from the head of its
//! resource's queue once its execution has ended. Per resource the tasks
//! run one at a time in sequence order; a pool of `workers` is shared
//! round-robin over the resources with work, so a hot resource takes one
//! worker, never all.
//!
//! A task submitted anywhere goes through that node (its **gateway**), which
//! routes it to the custodian of its latest epoch, follows one redirect to a
//! newer epoch, retries while the custodian is not ready, and answers the
//! client.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::ClientId;
use super::epoch::{Configuration, RingCache};
use super::id::NodeId;
use super::ring::{RangeId, Ring, Span};
use super::task::{
    DEDUP_PER_RESOURCE_MAX, FORGOTTEN_PER_RESOURCE_MAX, Outcome, QUEUED_BYTES_PER_RESOURCE_MAX, QUEUED_BYTES_TOTAL_MAX,
    QUEUED_PER_RESOURCE_MAX, QUEUED_TOTAL_MAX, RESOURCES_MAX, TOKEN_EPOCHS_PER_RESOURCE_MAX, Task, Token,
    WAITERS_PER_TASK_MAX,
};
use super::time::Instant;
use super::wire::{Completed, CustodyInfo, PendingTask, ResourceState, Response, Submitted, TaskMsg, Transfer, Waiter};
use marks::Marks;
use recovery::Recovery;
use replica::Replicas;
use replication::{OWED_PER_RESOURCE_MAX, Owed, Peer, SyncRound};

/// Submits a gateway tracks at once (waiting for acceptance or an outcome);
/// past it, new submits get `Busy`.
pub const GATEWAY_PENDING_MAX: usize = 65_536;
/// How long a gateway keeps retrying a submit the custodian is not ready
/// for, before answering "unavailable".
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a gateway waits for the outcome of an accepted task before
/// answering that it is unknown (its custodian was lost).
pub const OUTCOME_TIMEOUT: Duration = Duration::from_secs(600);
/// First retry delay of a submit; doubles up to [`SUBMIT_RETRY_MAX`].
pub const SUBMIT_RETRY_MIN: Duration = Duration::from_millis(20);
/// Longest retry delay of a submit.
pub const SUBMIT_RETRY_MAX: Duration = Duration::from_millis(500);
/// A gateway waiting for an accepted task's outcome asks its custodian
/// again after this (doubling up to [`OUTCOME_POLL_MAX`]): an answer lost
/// with a connection is sent again, and a task whose custodian moved is
/// followed.
pub const OUTCOME_POLL_MIN: Duration = Duration::from_secs(1);
/// Longest interval between two asks for an outcome.
pub const OUTCOME_POLL_MAX: Duration = Duration::from_secs(30);
/// Redirects one submit follows before it waits for its gateway to learn
/// the newer epoch.
pub const REDIRECTS_MAX: u32 = 2;
/// How often an unacknowledged transfer is sent again.
pub const TRANSFER_RETRY: Duration = Duration::from_secs(1);
/// Bytes of resource state per transfer message, roughly; the state of one
/// resource is never split (it is bounded well below the frame limit).
pub const TRANSFER_CHUNK_BYTES: usize = 256 * 1024;
/// Epochs whose rings a node keeps for recovery (see `recovery.rs`).
pub const RING_HISTORY_MAX: usize = 32;
/// Transfers sent and not acknowledged yet, at one node. Sealed parts wait
/// while it is reached.
pub const TRANSFERS_OUTSTANDING_MAX: usize = 4096;

/// A resource's key: its point on the ring, then its name.
type Key = (u64, String);

/// What custody asks the node to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustodyOutput {
    /// Send a message to a peer.
    Send(SocketAddr, TaskMsg),
    /// Answer a client.
    Reply(ClientId, Response),
    /// Run a task.
    Execute(Execution),
    /// Stop a running execution: the lease it runs under is about to end.
    Cancel {
        /// Its resource.
        resource: String,
        /// Its sequence number.
        seq: u64,
    },
    /// Fetch the committed configuration of this epoch (skipped here): its
    /// ring names the replicas a recovery reads.
    FetchEpoch(u64),
}

/// How a gateway asks a custodian to take a task (a [`TaskMsg::Submit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ask {
    /// The gateway's request number.
    pub req: u64,
    /// Whether the gateway waits for the outcome.
    pub wait: bool,
    /// The sequence number a custodian gave the task, when this is a
    /// reminder about an accepted task.
    pub seq: Option<u64>,
}

/// A task to run now, with everything the handler is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// The task.
    pub task: Task,
    /// Its fencing token.
    pub token: Token,
    /// 1 on the first execution; higher if it runs again after its
    /// custodian was lost mid-execution.
    pub attempt: u32,
    /// The handler must be done by then (start + `d_max`).
    pub deadline: Instant,
}

/// Custody counters, for status, tests and netsim.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CustodyStats {
    /// Tasks accepted (new, not retries).
    pub tasks_accepted: u64,
    /// Task executions started.
    pub tasks_started: u64,
    /// Task executions finished.
    pub tasks_executed: u64,
    /// Executions cancelled because the lease they ran under was about to
    /// end without a renewal.
    pub tasks_cancelled: u64,
    /// Ends of cancelled executions reported (a `TaskDone` after the
    /// cancel): their outcome was ignored and the task queued again.
    pub cancelled_ends: u64,
    /// Transfers sent and acknowledged.
    pub transfers_sent: u64,
    /// Transfers received (first copies).
    pub transfers_received: u64,
    /// Copies of transfers refused, in whole or in part: a part they carry
    /// was taken by this node at their epoch or later.
    pub transfers_refused: u64,
    /// Parts of the ring received by transfers.
    pub ranges_received: u64,
    /// Resources received by transfers.
    pub resources_received: u64,
    /// Pending tasks received by transfers.
    pub tasks_received: u64,
    /// Transfers whose receiver was removed before acknowledging.
    pub transfers_in_doubt: u64,
    /// Submits sent on to a custodian.
    pub submits_forwarded: u64,
    /// Submits answered `Busy`.
    pub submits_busy: u64,
    /// Submits answered "not ready" by a custodian (retried).
    pub submits_not_ready: u64,
    /// Submits answered "unavailable" after the retries ran out.
    pub submits_unavailable: u64,
    /// Replication messages sent (to replicas).
    pub replicate_sent: u64,
    /// Writes this node refused as a replica, past its bounds.
    pub replica_busy: u64,
    /// Writes this node refused as a replica, older than what it holds.
    pub replica_stale: u64,
    /// Writes this node's replicas refused, past their bounds.
    pub replica_refusals: u64,
    /// Parts whose recovery started (their custodian was removed).
    pub recoveries_started: u64,
    /// Parts whose recovery cannot complete: every replica answered and
    /// none held the previous custodian's complete copy.
    pub recoveries_stuck: u64,
    /// Parts taken by recovery.
    pub ranges_recovered: u64,
    /// Resources taken by recovery.
    pub resources_recovered: u64,
    /// Tasks not run yet taken by recovery.
    pub tasks_recovered: u64,
    /// Parts given up because an epoch removed the life holding them
    /// (their new owners recover them).
    pub parts_forfeited: u64,
}

/// The custody role of a piece.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// Owned in the latest epoch: its tasks may run.
    Active,
    /// Received for an epoch this node has not learned yet: held, idle
    /// until that epoch arrives.
    Waiting,
    /// Moved away in `epoch` to `to`: nothing starts; sent once nothing
    /// runs.
    Sealing { to: NodeId, epoch: u64 },
    /// Owned by nobody (the ring is empty): held, idle.
    Idle,
    /// Held by a life of this process that a committed epoch removed while
    /// it owned the part: the part's owner in that epoch recovers it from
    /// the replicas, so this copy is never handed to anyone (a late copy
    /// could otherwise win over the recovered one). Its resources are
    /// dropped once nothing of them runs.
    Forfeited,
}

#[derive(Debug, Clone)]
struct Piece {
    span: Span,
    /// The epoch in which this node took custody of it (the tokens' epoch).
    act_epoch: u64,
    /// The epoch whose ring gave it to this node.
    epoch: u64,
    role: Role,
}

/// A task that has been started and not finished.
#[derive(Debug, Clone)]
struct Running {
    seq: u64,
    task_id: String,
    waiters: Vec<Waiter>,
    /// The task and its executions so far: for a replica's whole state,
    /// and to queue it again if this execution is cancelled.
    task: Task,
    attempts: u32,
    /// Cancelled (its lease was about to end): its end, when reported,
    /// completes nothing.
    cancelled: bool,
}

#[derive(Debug, Default)]
struct Res {
    queue: VecDeque<PendingTask>,
    queued_bytes: usize,
    running: Option<Running>,
    last_seq: u64,
    executed: u64,
    token_floor: u64,
    /// Recent task ids: `(id, seq, epoch of the token it ran with, 0 until
    /// it ran)`, in sequence order.
    dedup: VecDeque<(String, u64, u64)>,
    /// Token epochs as steps `(first seq, epoch)`, oldest first.
    token_epochs: VecDeque<(u64, u64)>,
    /// Executed tasks trimmed from `dedup`: `(id hash, seq)`, oldest first.
    forgotten: VecDeque<(u64, u64)>,
    /// `forgotten` by id hash: the seq.
    forgotten_by_hash: BTreeMap<u64, u64>,
    /// Whether the key is in the runnable queue.
    scheduled: bool,
    /// Every task up to this number is held by a write quorum of the
    /// resource's replicas: it may run, and its submitters are answered.
    durable: u64,
    /// Answers owed to gateways once a task is durable: `(seq, gateway,
    /// duplicate)`, in sequence order.
    owed: VecDeque<Owed>,
    /// The resource's replica peers in `peers_epoch`, and what each holds.
    peers: Vec<Peer>,
    peers_epoch: u64,
    /// Peers that must hold a task besides this node (write quorum − 1).
    needed: usize,
}

impl Res {
    /// The epoch of the token task `seq` ran with, if it ran and its step
    /// is still kept.
    fn token_epoch(&self, seq: u64) -> Option<u64> {
        if seq > self.executed {
            return None;
        }
        self.token_epochs.iter().rev().find(|&&(first, _)| first <= seq).map(|&(_, epoch)| epoch)
    }

    /// Forgets the oldest task ids past [`DEDUP_PER_RESOURCE_MAX`], but only
    /// of tasks that ran: the id of a task still queued or running is kept
    /// (so a reminder from its gateway, however late, never queues it a
    /// second time), which bounds the table by the queue's bound plus
    /// [`DEDUP_PER_RESOURCE_MAX`].
    fn trim_dedup(&mut self) {
        while self.dedup.len() > DEDUP_PER_RESOURCE_MAX
            && self.dedup.front().is_some_and(|&(_, seq, _)| seq <= self.executed)
        {
            if let Some((id, seq, _)) = self.dedup.pop_front() {
                self.remember_forgotten(task_id_hash(&id), seq);
            }
        }
    }

    /// Keeps `(hash, seq)` of an executed task whose id left `dedup`, up to
    /// [`FORGOTTEN_PER_RESOURCE_MAX`] (the oldest go first).
    fn remember_forgotten(&mut self, hash: u64, seq: u64) {
        self.forgotten.push_back((hash, seq));
        self.forgotten_by_hash.insert(hash, seq);
        while self.forgotten.len() > FORGOTTEN_PER_RESOURCE_MAX {
            if let Some((old, old_seq)) = self.forgotten.pop_front()
                && self.forgotten_by_hash.get(&old) == Some(&old_seq)
            {
                self.forgotten_by_hash.remove(&old);
            }
        }
    }

    /// The seq of an executed task with this id among the forgotten ones.
    fn forgotten_seq(&self, id: &str) -> Option<u64> {
        self.forgotten_by_hash.get(&task_id_hash(id)).copied()
    }
}

/// The hash a forgotten task id is kept as (SipHash-2-4 with fixed keys,
/// the ring's: every node computes the same).
fn task_id_hash(id: &str) -> u64 {
    Ring::key_hash(id)
}

/// A transfer sent and not acknowledged.
#[derive(Debug)]
struct Outgoing {
    to: NodeId,
    message: Transfer,
    sent_at: Instant,
    in_doubt: bool,
}

/// A submit a gateway is carrying.
#[derive(Debug)]
struct Pending {
    client: ClientId,
    task: Task,
    wait: bool,
    /// Answer "unavailable" (not yet accepted) or "unknown" (accepted) then.
    deadline: Instant,
    /// Send the submit (again) then: a retry before it is accepted, a
    /// reminder after.
    retry_at: Instant,
    backoff: Duration,
    redirects: u32,
    /// The sequence number, once a custodian accepted it.
    accepted: Option<u64>,
}

/// One node's custody state. See the module docs.
pub(crate) struct Custody {
    me: NodeId,
    d_max: Duration,
    workers: usize,
    /// The latest configuration's epoch and ring.
    epoch: u64,
    ring: Option<Arc<Ring>>,
    /// Where rings come from: this node's own cache, or one shared with
    /// other nodes of the process.
    rings: RingCache,
    /// Pieces held, by the end point of their span.
    pieces: BTreeMap<u64, Piece>,
    resources: BTreeMap<Key, Res>,
    queued_total: usize,
    queued_bytes_total: usize,
    runnable: VecDeque<Key>,
    running: usize,
    /// Of the `running`, those cancelled whose end is not reported yet.
    cancelled: usize,
    outgoing: BTreeMap<u64, Outgoing>,
    /// Sealed parts wait for room among the outgoing transfers.
    held_back: bool,
    next_transfer: u64,
    /// The highest epoch at which this node took each point of the hash
    /// space: what a transfer must exceed to be taken.
    marks: Marks,
    gateway: BTreeMap<u64, Pending>,
    next_req: u64,
    /// Replicas per range in the latest configuration (k).
    k: usize,
    /// Resources whose changes go to their replicas with the next batch.
    dirty: BTreeSet<Key>,
    /// When the next batch goes.
    flush_at: Option<Instant>,
    last_flush: Instant,
    /// Resources with writes not acknowledged yet, and since when the
    /// oldest of them waits.
    unacked: BTreeSet<Key>,
    unacked_since: Option<Instant>,
    /// Copies this node holds as a replica of other custodians.
    replicas: Replicas,
    /// This node's marks for its latest epoch (`replication.rs`).
    sync: Option<SyncRound>,
    next_sync: u64,
    /// The rings (with their k) of the last [`RING_HISTORY_MAX`] epochs this
    /// node learned, the latest included: where a recovery finds the
    /// previous replicas, and checks they did not change.
    history: BTreeMap<u64, (Arc<Ring>, usize)>,
    /// The latest configuration learned (its members decide what is
    /// recovered).
    latest: Option<Configuration>,
    /// The epoch before the latest, skipped here and asked for, since when.
    past_wanted: Option<(u64, Instant)>,
    /// This life asked to leave while a member (see [`Custody::set_leaving`]).
    leaving: bool,
    recoveries: BTreeMap<u64, Recovery>,
    next_recovery: u64,
    /// When the next recovered part's wait ends.
    recovery_due: Option<Instant>,
    /// `W`: how long a recovering node waits, from learning the epoch,
    /// before it takes custody ([`super::Config::recovery_wait`]).
    recovery_wait: Duration,
    /// The incarnation this process started with: copies held since.
    born: u64,
    /// Whether this node recovers removed custodians' parts
    /// ([`super::Config::recovery`]).
    recovery: bool,
    outputs: Vec<CustodyOutput>,
    stats: CustodyStats,
}

impl Custody {
    pub(crate) fn new(me: NodeId, d_max: Duration, workers: usize) -> Custody {
        Custody {
            me: me.life(),
            d_max,
            workers,
            epoch: 0,
            ring: None,
            rings: RingCache::default(),
            pieces: BTreeMap::new(),
            resources: BTreeMap::new(),
            queued_total: 0,
            queued_bytes_total: 0,
            runnable: VecDeque::new(),
            running: 0,
            cancelled: 0,
            outgoing: BTreeMap::new(),
            held_back: false,
            next_transfer: 1,
            marks: Marks::default(),
            gateway: BTreeMap::new(),
            next_req: 1,
            k: 1,
            dirty: BTreeSet::new(),
            flush_at: None,
            last_flush: Instant::ZERO,
            unacked: BTreeSet::new(),
            unacked_since: None,
            replicas: Replicas::default(),
            sync: None,
            next_sync: 1,
            history: BTreeMap::new(),
            latest: None,
            past_wanted: None,
            leaving: false,
            recoveries: BTreeMap::new(),
            next_recovery: 1,
            recovery_due: None,
            recovery_wait: super::Config::lan().recovery_wait(),
            born: me.incarnation,
            recovery: true,
            outputs: Vec::new(),
            stats: CustodyStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> CustodyStats {
        self.stats
    }

    pub(crate) fn drain(&mut self) -> std::vec::Drain<'_, CustodyOutput> {
        self.outputs.drain(..)
    }

    /// The latest epoch custody acts on.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// This life asked to leave, as a member: it hands off what it holds.
    pub(crate) fn set_leaving(&mut self) {
        self.leaving = true;
    }

    /// Turns recovery of removed custodians' parts on or off.
    pub(crate) fn set_recovery(&mut self, on: bool) {
        self.recovery = on;
    }

    /// Sets the wait before a recovered part is taken (`W`).
    pub(crate) fn set_recovery_wait(&mut self, wait: Duration) {
        self.recovery_wait = wait;
    }

    /// Builds rings through `rings` from now on.
    pub(crate) fn share_rings(&mut self, rings: RingCache) {
        self.rings = rings;
    }

    /// The ring of the latest epoch.
    pub(crate) fn ring(&self) -> Option<&Ring> {
        self.ring.as_deref()
    }

    /// Whether this node holds nothing and owes nothing: every piece it
    /// held has been handed off and acknowledged (or is in doubt).
    /// Parts nobody owns (every member is leaving) count as handed off:
    /// there is nobody to hand them to.
    pub(crate) fn handed_off(&self) -> bool {
        // A forfeited part is kept only while a cancelled task of it runs.
        self.pieces.values().all(|p| p.role == Role::Idle) && self.outgoing.values().all(|o| o.in_doubt)
    }

    /// When [`Custody::handle_timeout`] has work.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let transfers = self.outgoing.values().filter(|o| !o.in_doubt).map(|o| o.sent_at + TRANSFER_RETRY).min();
        let gateway = self.gateway.values().map(|p| p.retry_at.min(p.deadline)).min();
        transfers
            .into_iter()
            .chain(gateway)
            .chain(self.replication_deadline())
            .chain(self.sync_deadline())
            .chain(self.recovery_deadline())
            .min()
    }

    // ---- epochs -------------------------------------------------------------

    /// A newer committed configuration: cut the pieces along its ring.
    pub(crate) fn on_epoch(&mut self, config: &Configuration, now: Instant) {
        if config.epoch <= self.epoch {
            return;
        }
        let first = self.epoch == 0;
        // The ring of the epoch before, or (skipped here) the last one known.
        let before = match self.history.get(&(config.epoch - 1)) {
            Some((ring, _)) => Some((ring.clone(), true)),
            None => self.ring.clone().map(|ring| (ring, false)),
        };
        self.epoch = config.epoch;
        self.latest = Some(config.clone());
        self.k = usize::from(config.replication);
        let ring = self.rings.ring(config);
        self.history.insert(config.epoch, (ring.clone(), self.k));
        while self.history.len() > RING_HISTORY_MAX {
            self.history.pop_first();
        }
        self.ring = Some(ring);
        // The founder's first configuration: custody of the whole circle.
        if first && config.epoch == 1 && config.contains(&self.me) && self.pieces.is_empty() {
            let span = Span { start: 0, end: 0 };
            self.marks.raise(span, 1);
            self.pieces.insert(0, Piece { span, act_epoch: 1, epoch: 1, role: Role::Active });
        }
        // Receivers removed from the configuration never acknowledge: their
        // transfers are in doubt (the recovery step decides their fate).
        for o in self.outgoing.values_mut() {
            if !o.in_doubt && !config.contains(&o.to) {
                o.in_doubt = true;
                self.stats.transfers_in_doubt += 1;
                tracing::warn!(to = %o.to, parts = o.message.spans.len(), "handoff receiver removed before acknowledging");
            }
        }
        if let (Some((before, exact)), Some(ring)) = (before, self.ring.clone()) {
            // A leaving life that skipped epochs cannot tell a removal while
            // it owned a part from a removal after it was marked leaving
            // (the part moved off it, its new owner awaits the handoff):
            // it hands off, as it set out to.
            if exact || !self.leaving {
                self.forfeit_removed(&before, config, &ring);
            }
        }
        self.recut(now);
        self.drop_forfeited();
        self.restart_sync();
        self.start_recoveries(config, now);
    }

    /// With recovery: gives up the parts a life of this process owned in
    /// the epoch before `config` (ring `before`) and `config` removed,
    /// unless the current life owns them in `config` (then they are its
    /// own state, kept). Exactly the parts their new owners recover (see
    /// `start_recoveries`): handing them over as well would let a copy
    /// that is older than the recovered state, or re-addressed to a later
    /// owner, replace it.
    fn forfeit_removed(&mut self, before: &Ring, config: &Configuration, ring: &Ring) {
        if !self.recovery {
            return;
        }
        let old = std::mem::take(&mut self.pieces);
        let mut kept: Vec<Piece> = Vec::with_capacity(old.len());
        for (_, piece) in old {
            if !matches!(piece.role, Role::Active | Role::Idle) {
                kept.push(piece);
                continue;
            }
            for (_, part, owner) in before.cut(piece.span) {
                let removed = owner.addr == self.me.addr && !config.contains(owner);
                let mine_now = ring.locate_point(part.end).is_some_and(|(_, o)| is_life(o, &self.me));
                if removed && !mine_now {
                    self.stats.parts_forfeited += 1;
                    tracing::warn!(part = %part, epoch = config.epoch, "this life was removed while holding the part: its new owner recovers it");
                    kept.push(Piece { span: part, role: Role::Forfeited, ..piece.clone() });
                } else {
                    kept.push(Piece { span: part, ..piece.clone() });
                }
            }
        }
        self.pieces = merge(kept);
    }

    /// Drops the resources of forfeited parts that have nothing running
    /// (a running task is cancelled; it is dropped at its end), and the
    /// parts once empty.
    fn drop_forfeited(&mut self) {
        let spans: Vec<(u64, Span)> =
            self.pieces.iter().filter(|(_, p)| p.role == Role::Forfeited).map(|(&end, p)| (end, p.span)).collect();
        for (end, span) in spans {
            let mut left = false;
            for key in keys_in(&self.resources, span) {
                let res = self.resources.get_mut(&key).expect("listed");
                if let Some(r) = res.running.as_mut() {
                    left = true;
                    if !r.cancelled {
                        r.cancelled = true;
                        self.cancelled += 1;
                        self.stats.tasks_cancelled += 1;
                        self.outputs.push(CustodyOutput::Cancel { resource: key.1.clone(), seq: r.seq });
                    }
                    continue;
                }
                let res = self.resources.remove(&key).expect("listed");
                self.queued_total -= res.queue.len();
                self.queued_bytes_total -= res.queued_bytes;
            }
            if !left {
                self.pieces.remove(&end);
            }
        }
    }

    /// Cuts every piece that may move along the latest ring.
    fn recut(&mut self, now: Instant) {
        let Some(ring) = self.ring.clone() else { return };
        let old = std::mem::take(&mut self.pieces);
        let mut cut: Vec<Piece> = Vec::with_capacity(old.len());
        for (_, piece) in old {
            if piece.role == Role::Forfeited {
                cut.push(piece);
                continue;
            }
            // Parts received for an epoch not learned yet wait for it.
            if piece.epoch > self.epoch {
                cut.push(Piece { role: Role::Waiting, ..piece });
                continue;
            }
            let parts = ring.split(piece.span);
            if parts.is_empty() {
                cut.push(Piece { role: Role::Idle, ..piece });
                continue;
            }
            for (span, owner) in parts {
                // A part sealed for an earlier epoch and not sent yet goes
                // to the latest owner instead. An earlier life of this node,
                // still in the ring, gets nothing: the part waits, idle, for
                // a newer epoch.
                let role = if is_life(owner, &self.me) {
                    Role::Active
                } else if owner.addr == self.me.addr {
                    Role::Idle
                } else {
                    Role::Sealing { to: owner.life(), epoch: self.epoch }
                };
                cut.push(Piece { span, act_epoch: piece.act_epoch, epoch: piece.epoch.max(self.epoch), role });
            }
        }
        self.pieces = merge(cut);
        // Resources of active pieces with work become runnable; sealing
        // pieces with nothing running go now.
        let active: Vec<Span> = self.pieces.values().filter(|p| p.role == Role::Active).map(|p| p.span).collect();
        for span in active {
            for key in keys_in(&self.resources, span) {
                self.schedule(&key);
                // The replicas may have changed with the ring: bring new
                // ones up to date (and count the quorum anew).
                self.touch(&key, now);
            }
        }
        self.send_sealed(now);
    }

    // ---- submits at the gateway ----------------------------------------------

    /// A client's submit at this node.
    pub(crate) fn submit(&mut self, client: ClientId, mut task: Task, wait: bool, now: Instant, lease_ok: bool) {
        if task.id.is_empty() {
            // Unique per gateway life: address, incarnation, request number.
            task.id = format!("{}-{}-{}", self.me.addr, self.me.incarnation, self.next_req);
        }
        if let Err(reason) = task.validate() {
            self.outputs.push(CustodyOutput::Reply(client, Response::Error(format!("invalid task: {reason}"))));
            return;
        }
        if self.gateway.len() >= GATEWAY_PENDING_MAX {
            self.stats.submits_busy += 1;
            self.outputs.push(CustodyOutput::Reply(client, Response::Busy));
            return;
        }
        let req = self.next_req;
        self.next_req += 1;
        self.gateway.insert(
            req,
            Pending {
                client,
                task,
                wait,
                deadline: now + SUBMIT_TIMEOUT,
                retry_at: now,
                backoff: SUBMIT_RETRY_MIN,
                redirects: 0,
                accepted: None,
            },
        );
        self.route(req, None, now, lease_ok);
    }

    /// Sends a pending submit to its custodian: `to`, or the owner in the
    /// latest epoch.
    fn route(&mut self, req: u64, to: Option<SocketAddr>, now: Instant, lease_ok: bool) {
        let Some(p) = self.gateway.get_mut(&req) else { return };
        let owner = to.or_else(|| self.ring.as_ref().and_then(|r| r.owner(&p.task.resource)).map(|o| o.addr));
        p.retry_at = now + p.backoff;
        let cap = if p.accepted.is_some() { OUTCOME_POLL_MAX } else { SUBMIT_RETRY_MAX };
        p.backoff = (p.backoff * 2).min(cap);
        let Some(owner) = owner else { return };
        if owner == self.me.addr {
            let (task, wait, seq) = (p.task.clone(), p.wait, p.accepted);
            let to = Waiter { gateway: self.me.addr, req };
            if let Some(answer) = self.accept(task, to, wait, seq, lease_ok, now) {
                self.on_answer(self.me.addr, answer, now, lease_ok);
            }
        } else {
            let msg = TaskMsg::Submit { req, task: p.task.clone(), wait: p.wait, epoch: self.epoch, seq: p.accepted };
            self.stats.submits_forwarded += 1;
            self.outputs.push(CustodyOutput::Send(owner, msg));
        }
    }

    /// A custodian's answer to one of this gateway's submits.
    pub(crate) fn on_answer(&mut self, from: SocketAddr, msg: TaskMsg, now: Instant, lease_ok: bool) {
        let req = match &msg {
            TaskMsg::Accepted { req, .. }
            | TaskMsg::Redirect { req, .. }
            | TaskMsg::NotReady { req }
            | TaskMsg::Busy { req }
            | TaskMsg::Rejected { req, .. }
            | TaskMsg::Done { req, .. } => *req,
            _ => return,
        };
        let Some(p) = self.gateway.get_mut(&req) else { return };
        let reply = match msg {
            TaskMsg::Accepted { seq, epoch, duplicate, .. } if !p.wait => Response::Submitted(Submitted {
                task_id: p.task.id.clone(),
                resource: p.task.resource.clone(),
                seq,
                custodian: from,
                epoch,
                duplicate,
            }),
            TaskMsg::Accepted { seq, .. } => {
                if p.accepted.is_none() {
                    p.deadline = now + OUTCOME_TIMEOUT;
                    p.retry_at = now + OUTCOME_POLL_MIN;
                    p.backoff = OUTCOME_POLL_MIN * 2;
                }
                p.accepted = Some(seq);
                return;
            }
            TaskMsg::Done { task_id, token, outcome, .. } => {
                if task_id != p.task.id {
                    return;
                }
                Response::Completed(Completed {
                    task_id,
                    resource: p.task.resource.clone(),
                    token,
                    custodian: from,
                    outcome,
                })
            }
            TaskMsg::Redirect { epoch, owner, .. } => {
                // Follow a redirect to a newer epoch's custodian, a bounded
                // number of times; otherwise the custodian is behind, or we
                // go round: retry at the backoff, by the latest epoch then.
                if epoch > self.epoch && p.redirects < REDIRECTS_MAX && owner != from {
                    p.redirects += 1;
                    self.route(req, Some(owner), now, lease_ok);
                }
                return;
            }
            TaskMsg::NotReady { .. } => {
                self.stats.submits_not_ready += 1;
                return;
            }
            // A reminder about an accepted task is answered "busy" only if
            // its custodian lost it and has no room: keep waiting.
            TaskMsg::Busy { .. } if p.accepted.is_some() => return,
            TaskMsg::Busy { .. } => {
                self.stats.submits_busy += 1;
                Response::Busy
            }
            TaskMsg::Rejected { reason, .. } => Response::Error(reason),
            _ => return,
        };
        let p = self.gateway.remove(&req).expect("present");
        self.outputs.push(CustodyOutput::Reply(p.client, reply));
    }

    /// Hands an outcome to a waiting gateway: this node's, or another's.
    fn deliver(&mut self, waiter: Waiter, done: TaskMsg, now: Instant) {
        if waiter.gateway == self.me.addr {
            self.on_answer(self.me.addr, done, now, true);
        } else {
            self.outputs.push(CustodyOutput::Send(waiter.gateway, done));
        }
    }

    // ---- acceptance at the custodian ------------------------------------------

    /// A gateway's submit at this node, as custodian.
    pub(crate) fn on_submit(&mut self, from: SocketAddr, ask: Ask, task: Task, lease_ok: bool, now: Instant) {
        let to = Waiter { gateway: from, req: ask.req };
        if let Some(answer) = self.accept(task, to, ask.wait, ask.seq, lease_ok, now) {
            self.outputs.push(CustodyOutput::Send(from, answer));
        }
    }

    /// Takes a task as its custodian, or says why not, to the gateway's
    /// request `to`. `None`: the task is not durable yet; `Accepted` goes to
    /// `to` once it is (see `replication.rs`). With `wait`, `to` also waits
    /// for the outcome. `known` is the sequence number a custodian gave the
    /// task before, when a gateway reminds about an accepted task.
    fn accept(
        &mut self,
        task: Task,
        to: Waiter,
        wait: bool,
        known: Option<u64>,
        lease_ok: bool,
        now: Instant,
    ) -> Option<TaskMsg> {
        let key: Key = (Ring::key_hash(&task.resource), task.resource.clone());
        match self.take_task(task, wait.then_some(to), known, lease_ok, now) {
            TaskMsg::Accepted { seq, duplicate, .. } => self.owe(&key, to, seq, duplicate, now),
            answer => Some(answer.with_req(to.req)),
        }
    }

    /// `Accepted` for task `seq` now if it is durable, or owed to `to` until
    /// it is (`Busy` past [`OWED_PER_RESOURCE_MAX`]).
    fn owe(&mut self, key: &Key, to: Waiter, seq: u64, duplicate: bool, now: Instant) -> Option<TaskMsg> {
        let accepted = TaskMsg::Accepted { req: to.req, seq, epoch: self.epoch, duplicate };
        self.settle_durable(key, now);
        let Some(res) = self.resources.get_mut(key).filter(|res| seq > res.durable) else {
            return Some(accepted);
        };
        if res.owed.iter().any(|o| o.1 == to) {
            return None;
        }
        if res.owed.len() >= OWED_PER_RESOURCE_MAX {
            self.stats.submits_busy += 1;
            return Some(TaskMsg::Busy { req: to.req });
        }
        // In sequence order: a retry of an older task goes before newer ones.
        let at = res.owed.partition_point(|o| o.0 <= seq);
        res.owed.insert(at, (seq, to, duplicate));
        None
    }

    /// Takes a task as its custodian, or says why not. The answer's `req`
    /// is filled in by the caller.
    fn take_task(
        &mut self,
        task: Task,
        waiter: Option<Waiter>,
        known: Option<u64>,
        lease_ok: bool,
        now: Instant,
    ) -> TaskMsg {
        if let Err(reason) = task.validate() {
            return TaskMsg::Rejected { req: 0, reason: format!("invalid task: {reason}") };
        }
        let point = Ring::key_hash(&task.resource);
        let Some(ring) = &self.ring else { return TaskMsg::NotReady { req: 0 } };
        match ring.locate_point(point) {
            Some((_, owner)) if !is_life(owner, &self.me) => {
                return TaskMsg::Redirect { req: 0, epoch: self.epoch, owner: owner.addr };
            }
            None => return TaskMsg::NotReady { req: 0 },
            Some(_) => {}
        }
        if !lease_ok || !self.piece_of(point).is_some_and(|p| p.role == Role::Active) {
            return TaskMsg::NotReady { req: 0 };
        }
        let key: Key = (point, task.resource.clone());
        let epoch = self.epoch;
        if let Some(res) = self.resources.get_mut(&key)
            && let Some(&(_, seq, ran_at)) = res.dedup.iter().rev().find(|(id, _, _)| *id == task.id)
        {
            // A retry: same sequence number, nothing queued again.
            if let Some(w) = waiter {
                if seq <= res.executed && res.running.as_ref().is_none_or(|r| r.seq != seq) {
                    // A recovered id may not carry its token's epoch: the
                    // steps do. Without either, no answer names a token.
                    let ran_at = Some(ran_at).filter(|&e| e > 0).or_else(|| res.token_epoch(seq));
                    if let Some(epoch) = ran_at {
                        let token = Token { epoch, seq };
                        let done = TaskMsg::Done { req: w.req, task_id: task.id, token, outcome: None };
                        self.deliver(w, done, now);
                    }
                } else if let Some(r) = res.running.as_mut().filter(|r| r.seq == seq) {
                    add_waiter(&mut r.waiters, w);
                } else if let Some(t) = res.queue.iter_mut().find(|t| t.seq == seq) {
                    add_waiter(&mut t.waiters, w);
                }
            }
            return TaskMsg::Accepted { req: 0, seq, epoch, duplicate: true };
        }
        // A retry through another node carries no seq: an executed task
        // whose id was trimmed is still known by its hash.
        let known = known.or_else(|| self.resources.get(&key).and_then(|res| res.forgotten_seq(&task.id)));
        if let Some(seq) = known
            && let Some(ran_at) =
                self.resources.get(&key).filter(|res| seq <= res.executed).map(|res| res.token_epoch(seq))
        {
            // Accepted under `seq` and forgotten since: only ids of tasks
            // that ran are forgotten, so it ran, long ago. Queueing it again
            // would run it twice under a new sequence number. (A state lost
            // with a crashed custodian is never rebuilt here, so `seq` is of
            // this resource's one chain of sequence numbers.) Its outcome is
            // not kept; its token is, while the epoch steps reach back.
            if let Some(token_epoch) = ran_at {
                if let Some(w) = waiter {
                    let token = Token { epoch: token_epoch, seq };
                    let done = TaskMsg::Done { req: w.req, task_id: task.id, token, outcome: None };
                    self.deliver(w, done, now);
                }
                return TaskMsg::Accepted { req: 0, seq, epoch, duplicate: true };
            }
            return TaskMsg::Rejected {
                req: 0,
                reason: format!(
                    "task {:?} ran as number {seq} of {:?}; its token and outcome are no longer kept",
                    task.id, task.resource
                ),
            };
        }
        let weight = task.weight();
        let res = self.resources.get(&key);
        let queued = res.map_or(0, |r| r.queue.len());
        let bytes = res.map_or(0, |r| r.queued_bytes);
        if queued >= QUEUED_PER_RESOURCE_MAX
            || bytes + weight > QUEUED_BYTES_PER_RESOURCE_MAX
            || self.queued_total >= QUEUED_TOTAL_MAX
            || self.queued_bytes_total + weight > QUEUED_BYTES_TOTAL_MAX
            || (res.is_none() && self.resources.len() >= RESOURCES_MAX)
        {
            self.stats.submits_busy += 1;
            return TaskMsg::Busy { req: 0 };
        }
        let res = self.resources.entry(key.clone()).or_default();
        res.last_seq += 1;
        let seq = res.last_seq;
        res.dedup.push_back((task.id.clone(), seq, 0));
        res.trim_dedup();
        res.queued_bytes += weight;
        res.queue.push_back(PendingTask { seq, task, attempts: 0, waiters: waiter.into_iter().collect() });
        self.queued_total += 1;
        self.queued_bytes_total += weight;
        self.stats.tasks_accepted += 1;
        // To the replicas; it runs, and is answered, once durable.
        self.touch(&key, now);
        TaskMsg::Accepted { req: 0, seq, epoch, duplicate: false }
    }

    // ---- execution --------------------------------------------------------------

    /// Puts a resource in the runnable queue if it has work, nothing running,
    /// and an active piece.
    fn schedule(&mut self, key: &Key) {
        let active = self.piece_of(key.0).is_some_and(|p| p.role == Role::Active);
        let Some(res) = self.resources.get_mut(key) else { return };
        let next_durable = res.queue.front().is_some_and(|t| t.seq <= res.durable);
        if active && !res.scheduled && res.running.is_none() && next_durable {
            res.scheduled = true;
            self.runnable.push_back(key.clone());
        }
    }

    /// Starts what may start: a free worker, a runnable resource, an active
    /// piece, and a lease beyond the cancel margin (`lease_ok`).
    pub(crate) fn pump(&mut self, now: Instant, lease_ok: bool) {
        if !lease_ok {
            return;
        }
        while self.running < self.workers {
            let Some(key) = self.runnable.pop_front() else { break };
            let active = self.piece_of(key.0).filter(|p| p.role == Role::Active).map(|p| p.act_epoch);
            let Some(res) = self.resources.get_mut(&key) else { continue };
            res.scheduled = false;
            let Some(act_epoch) = active else { continue };
            // One at a time, and only what a write quorum holds.
            if res.running.is_some() || res.queue.front().is_none_or(|t| t.seq > res.durable) {
                continue;
            }
            let Some(mut next) = res.queue.pop_front() else { continue };
            debug_assert_eq!(next.seq, res.executed + 1, "tasks run in sequence order");
            next.attempts += 1;
            let weight = next.task.weight();
            res.queued_bytes -= weight;
            self.queued_total -= 1;
            self.queued_bytes_total -= weight;
            let token = Token { epoch: act_epoch.max(res.token_floor), seq: next.seq };
            res.token_floor = token.epoch;
            if res.token_epochs.back().is_none_or(|&(_, epoch)| epoch != token.epoch) {
                res.token_epochs.push_back((next.seq, token.epoch));
                if res.token_epochs.len() > TOKEN_EPOCHS_PER_RESOURCE_MAX {
                    res.token_epochs.pop_front();
                }
            }
            debug_assert!(
                res.queue.front().is_none_or(|t| t.seq == next.seq + 1),
                "the queue holds the tasks after the one starting, in sequence order"
            );
            res.running = Some(Running {
                seq: next.seq,
                task_id: next.task.id.clone(),
                waiters: next.waiters,
                task: next.task.clone(),
                attempts: next.attempts,
                cancelled: false,
            });
            self.running += 1;
            self.stats.tasks_started += 1;
            let execution = Execution { task: next.task, token, attempt: next.attempts, deadline: now + self.d_max };
            self.outputs.push(CustodyOutput::Execute(execution));
        }
    }

    /// A started task finished. Unknown executions (of an earlier life, or
    /// reported twice) are ignored.
    pub(crate) fn finished(&mut self, resource: &str, seq: u64, outcome: Outcome, now: Instant) {
        let key: Key = (Ring::key_hash(resource), resource.to_string());
        if self.end_cancelled(&key, seq, now) {
            return;
        }
        let Some(running) = self.resources.get_mut(&key).and_then(|res| res.running.take_if(|r| r.seq == seq)) else {
            tracing::warn!(resource, seq, "the end of an execution that is not running here");
            return;
        };
        let res = self.resources.get_mut(&key).expect("just found");
        res.executed = res.executed.max(seq);
        res.trim_dedup();
        if let Ok(i) = res.dedup.binary_search_by_key(&seq, |&(_, s, _)| s) {
            res.dedup[i].2 = res.token_floor;
        }
        self.running -= 1;
        self.stats.tasks_executed += 1;
        let token = Token { epoch: res.token_floor, seq };
        // The watermark goes to the replicas with the next batch.
        self.touch(&key, now);
        let outcome = outcome.bounded();
        for w in running.waiters {
            let done =
                TaskMsg::Done { req: w.req, task_id: running.task_id.clone(), token, outcome: Some(outcome.clone()) };
            self.deliver(w, done, now);
        }
        self.schedule(&key);
        self.after_end(&key, now);
    }

    /// After a run of `key` ended: a sealing part may go now, a forfeited
    /// one is dropped.
    fn after_end(&mut self, key: &Key, now: Instant) {
        match self.piece_of(key.0).map(|p| &p.role) {
            Some(Role::Sealing { .. }) => self.send_sealed(now),
            Some(Role::Forfeited) => self.drop_forfeited(),
            _ => {}
        }
    }

    /// Executions running (cancelled ones included, until their end is
    /// reported).
    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// Executions running and not cancelled.
    pub(crate) fn running_uncancelled(&self) -> usize {
        self.running - self.cancelled
    }

    /// Cancels every running execution not cancelled yet: the lease they
    /// run under ends within the cancel margin. Each one's end, when the
    /// driver reports it, puts its task back at the head of its queue
    /// ([`Custody::end_cancelled`]); until then the resource counts as
    /// running, so nothing of it starts or moves.
    pub(crate) fn cancel_running(&mut self) {
        let mut left = self.running_uncancelled();
        // Only when a lease lapses: a walk over the resources is fine.
        for ((_, resource), res) in &mut self.resources {
            if left == 0 {
                break;
            }
            let Some(r) = res.running.as_mut().filter(|r| !r.cancelled) else { continue };
            r.cancelled = true;
            left -= 1;
            self.cancelled += 1;
            self.stats.tasks_cancelled += 1;
            tracing::warn!(resource, seq = r.seq, "the lease ends without a renewal: cancelling the execution");
            self.outputs.push(CustodyOutput::Cancel { resource: resource.clone(), seq: r.seq });
        }
    }

    /// The end of a cancelled execution of `key`'s task `seq`, if that is
    /// what is running: the task did not complete. It goes back to the head
    /// of its queue with its attempts and waiters (the watermark stays),
    /// to run again here once a lease allows, or to travel with the
    /// resource. The outcome reported is ignored, and counted.
    fn end_cancelled(&mut self, key: &Key, seq: u64, now: Instant) -> bool {
        let Some(res) = self.resources.get_mut(key) else { return false };
        let Some(r) = res.running.take_if(|r| r.seq == seq && r.cancelled) else { return false };
        let weight = r.task.weight();
        // Counted against the bounds when it was accepted: back in its
        // queue, it may hold one task past them (one accepted while it ran).
        res.queue.push_front(PendingTask { seq, task: r.task, attempts: r.attempts, waiters: r.waiters });
        res.queued_bytes += weight;
        self.queued_total += 1;
        self.queued_bytes_total += weight;
        self.running -= 1;
        self.cancelled -= 1;
        self.stats.cancelled_ends += 1;
        self.schedule(key);
        self.after_end(key, now);
        true
    }

    // ---- handoff ------------------------------------------------------------------

    /// Sends every sealing piece with nothing running: one transfer (cut
    /// into chunks by size) per receiver and epoch.
    fn send_sealed(&mut self, now: Instant) {
        if self.outgoing.len() >= TRANSFERS_OUTSTANDING_MAX {
            if !self.held_back {
                tracing::warn!("{TRANSFERS_OUTSTANDING_MAX} transfers unacknowledged; sealed parts wait");
            }
            self.held_back = true;
            return;
        }
        self.held_back = false;
        let mut ready: BTreeMap<(NodeId, u64), Vec<u64>> = BTreeMap::new();
        for (&end, p) in &self.pieces {
            if let Role::Sealing { to, epoch } = &p.role
                && keys_in(&self.resources, p.span).iter().all(|k| self.resources[k].running.is_none())
            {
                ready.entry((to.clone(), *epoch)).or_default().push(end);
            }
        }
        for ((to, epoch), ends) in ready {
            let spans: Vec<Span> = ends.iter().map(|end| self.pieces.remove(end).expect("listed").span).collect();
            self.send_spans(&spans, to, epoch, now);
        }
    }

    /// Moves the state of every resource in `spans` into transfers to `to`,
    /// cut into chunks of about [`TRANSFER_CHUNK_BYTES`] (a part is cut
    /// between two resource points when it does not fit one chunk).
    fn send_spans(&mut self, spans: &[Span], to: NodeId, epoch: u64, now: Instant) {
        let mut chunks: Vec<(Vec<Span>, Vec<ResourceState>)> = Vec::new();
        let (mut parts, mut states, mut bytes) = (Vec::new(), Vec::new(), 0usize);
        for &span in spans {
            let keys = keys_in(&self.resources, span);
            let mut start = span.start;
            for (i, key) in keys.iter().enumerate() {
                let res = self.resources.remove(key).expect("listed");
                self.queued_total -= res.queue.len();
                self.queued_bytes_total -= res.queued_bytes;
                bytes += res.queued_bytes
                    + res.dedup.iter().map(|(id, _, _)| id.len() + 24).sum::<usize>()
                    + res.forgotten.len() * 18
                    + key.1.len();
                states.push(ResourceState {
                    resource: key.1.clone(),
                    last_seq: res.last_seq,
                    executed: res.executed,
                    token_floor: res.token_floor,
                    pending: res.queue.into(),
                    dedup: res.dedup.into(),
                    token_epochs: res.token_epochs.into(),
                    forgotten: res.forgotten.into(),
                });
                // Full: cut after this resource, if the next one lies at
                // another point (one point's resources stay together).
                let next_point = keys.get(i + 1).map(|k| k.0);
                if bytes >= TRANSFER_CHUNK_BYTES && next_point.is_some_and(|p| p != key.0) {
                    parts.push(Span { start, end: key.0 });
                    chunks.push((std::mem::take(&mut parts), std::mem::take(&mut states)));
                    start = key.0;
                    bytes = 0;
                }
            }
            parts.push(Span { start, end: span.end });
            bytes += 24;
            if bytes >= TRANSFER_CHUNK_BYTES {
                chunks.push((std::mem::take(&mut parts), std::mem::take(&mut states)));
                bytes = 0;
            }
        }
        if !parts.is_empty() {
            chunks.push((parts, states));
        }
        for (spans, resources) in chunks {
            let id = self.next_transfer;
            self.next_transfer += 1;
            let message = Transfer {
                id,
                from_incarnation: self.me.incarnation,
                to_incarnation: to.incarnation,
                epoch,
                spans,
                resources,
            };
            tracing::debug!(to = %to, epoch, id, parts = message.spans.len(), resources = message.resources.len(), "handing off");
            self.outputs.push(CustodyOutput::Send(to.addr, TaskMsg::Transfer(message.clone())));
            self.outgoing.insert(id, Outgoing { to: to.clone(), message, sent_at: now, in_doubt: false });
        }
    }

    /// A transfer from `from`: take custody (once), acknowledge (always).
    ///
    /// A part is taken only if its epoch is above this node's mark for
    /// every point of it (`marks`) and no piece held here overlaps it.
    /// That makes "each transfer is taken once" hold for the life of the
    /// node by construction: a copy arriving after any delay, from a sender
    /// that is paused, cut off, removed or renamed, finds its parts marked
    /// and is acknowledged without being applied, so state taken earlier is
    /// never rolled back to its state at seal time.
    pub(crate) fn on_transfer(&mut self, from: SocketAddr, t: Transfer, now: Instant) {
        if t.to_incarnation != self.me.incarnation {
            // For an earlier (or later) life at this address: not ours to
            // take. The sender keeps it until that life is removed.
            tracing::debug!(from = %from, to_incarnation = t.to_incarnation, "a transfer for another life");
            return;
        }
        let ack = TaskMsg::TransferAck { id: t.id };
        // A part being recovered is rebuilt from its replicas; a copy from a
        // life that is not a member any more (its custodian, removed, or an
        // even older holder) may be older than what they hold.
        let sender_gone =
            self.latest.as_ref().is_some_and(|c| c.member(from).is_none_or(|m| m.id.incarnation != t.from_incarnation));
        let (fresh, stale): (Vec<Span>, Vec<Span>) = t.spans.iter().partition(|&&span| {
            self.may_take(span, t.epoch) && !(sender_gone && self.recoveries.values().any(|r| r.overlaps(span)))
        });
        if !stale.is_empty() {
            self.stats.transfers_refused += 1;
            tracing::debug!(from = %from, id = t.id, epoch = t.epoch, parts = stale.len(), "a copy of parts taken already: refused");
        }
        if !fresh.is_empty() {
            self.stats.transfers_received += 1;
            self.stats.ranges_received += fresh.len() as u64;
            for state in t.resources {
                let point = Ring::key_hash(&state.resource);
                if fresh.iter().any(|span| span.contains(point)) {
                    self.stats.resources_received += 1;
                    self.stats.tasks_received += state.pending.len() as u64;
                    self.take_resource(state);
                }
            }
            let role = if t.epoch > self.epoch { Role::Waiting } else { Role::Active };
            tracing::debug!(from = %from, parts = fresh.len(), epoch = t.epoch, "took custody");
            for span in fresh {
                self.marks.raise(span, t.epoch);
                self.pieces.insert(span.end, Piece { span, act_epoch: t.epoch, epoch: t.epoch, role: role.clone() });
            }
            self.recut(now);
            self.restart_sync();
        }
        self.outputs.push(CustodyOutput::Send(from, ack));
    }

    /// Whether a part carried by a transfer for `epoch` may be taken: no
    /// point of it was taken at `epoch` or later, and no piece held here
    /// overlaps it.
    fn may_take(&self, span: Span, epoch: u64) -> bool {
        if self.marks.highest(span) >= epoch {
            return false;
        }
        if let Some(clash) = self.pieces.values().find(|p| overlaps(p.span, span)) {
            // Two holders of one part: a protocol bug. What this node holds
            // stays as it is; the copy is refused and the clash said loudly.
            tracing::error!(held = %clash.span, received = %span, epoch, "received a part of the ring this node already holds");
            return false;
        }
        true
    }

    fn take_resource(&mut self, state: ResourceState) {
        let key: Key = (Ring::key_hash(&state.resource), state.resource);
        if let Some(held) = self.resources.get(&key) {
            // Only a held piece has resources, and no piece overlaps a part
            // taken (see `may_take`); never roll a resource back regardless.
            tracing::error!(resource = %key.1, held = held.last_seq, received = state.last_seq, "received a resource this node already holds; kept what it holds");
            return;
        }
        let bytes: usize = state.pending.iter().map(|t| t.task.weight()).sum();
        self.queued_total += state.pending.len();
        self.queued_bytes_total += bytes;
        let mut res = Res {
            queue: state.pending.into(),
            queued_bytes: bytes,
            running: None,
            last_seq: state.last_seq,
            executed: state.executed,
            token_floor: state.token_floor,
            dedup: state.dedup.into(),
            token_epochs: state.token_epochs.into_iter().rev().take(TOKEN_EPOCHS_PER_RESOURCE_MAX).rev().collect(),
            forgotten: VecDeque::new(),
            forgotten_by_hash: BTreeMap::new(),
            scheduled: false,
            // Durable again once this node's replicas hold it (the recut
            // that follows sends it to them).
            durable: state.executed,
            owed: VecDeque::new(),
            peers: Vec::new(),
            peers_epoch: 0,
            needed: 0,
        };
        // A peer's list is taken up to the bound, newest kept.
        let skip = state.forgotten.len().saturating_sub(FORGOTTEN_PER_RESOURCE_MAX);
        for (hash, seq) in state.forgotten.into_iter().skip(skip) {
            res.remember_forgotten(hash, seq);
        }
        self.resources.insert(key, res);
    }

    /// The receiver took a transfer.
    pub(crate) fn on_transfer_ack(&mut self, from: SocketAddr, id: u64, now: Instant) {
        if self.outgoing.get(&id).is_some_and(|o| o.to.addr == from) {
            let o = self.outgoing.remove(&id).expect("present");
            if !o.in_doubt {
                self.stats.transfers_sent += 1;
            }
            if self.held_back {
                self.send_sealed(now);
            }
        }
    }

    // ---- timers, resets, reporting -------------------------------------------------

    pub(crate) fn handle_timeout(&mut self, now: Instant, lease_ok: bool) {
        self.replication_timeout(now);
        self.sync_timeout(now);
        self.recovery_timeout(now);
        let resend: Vec<u64> = self
            .outgoing
            .iter()
            .filter(|(_, o)| !o.in_doubt && now >= o.sent_at + TRANSFER_RETRY)
            .map(|(&id, _)| id)
            .collect();
        for id in resend {
            let o = self.outgoing.get_mut(&id).expect("listed");
            o.sent_at = now;
            self.outputs.push(CustodyOutput::Send(o.to.addr, TaskMsg::Transfer(o.message.clone())));
        }
        let due: Vec<u64> =
            self.gateway.iter().filter(|(_, p)| now >= p.retry_at.min(p.deadline)).map(|(&req, _)| req).collect();
        for req in due {
            let p = &self.gateway[&req];
            if now >= p.deadline {
                let p = self.gateway.remove(&req).expect("listed");
                let message = if p.accepted.is_some() {
                    format!(
                        "task {:?} was accepted, but its outcome did not come within {} s (its custodian may be lost)",
                        p.task.id,
                        OUTCOME_TIMEOUT.as_secs()
                    )
                } else {
                    self.stats.submits_unavailable += 1;
                    format!(
                        "no custodian of {:?} could take the task within {} s (a handoff is in progress or its custodian was lost); retry later",
                        p.task.resource,
                        SUBMIT_TIMEOUT.as_secs()
                    )
                };
                self.outputs.push(CustodyOutput::Reply(p.client, Response::Unavailable(message)));
            } else {
                self.gateway.get_mut(&req).expect("listed").redirects = 0;
                self.route(req, None, now, lease_ok);
            }
        }
    }

    /// This life was removed and the node goes on as `me`, a new life that
    /// owns nothing until admitted. What it holds is handed to the
    /// custodians of the latest epoch, like any moved part: nothing new
    /// starts, the running tasks finish first, and nothing is dropped.
    pub(crate) fn renew_identity(&mut self, me: NodeId, now: Instant) {
        self.me = me.life();
        self.recut(now);
    }

    /// Counters for `custody status`.
    pub(crate) fn info(&self) -> CustodyInfo {
        let mut owned = 0u64;
        let mut unavailable = 0u64;
        if let Some(ring) = &self.ring {
            // Width of active pieces per owned range: a range is available
            // once its whole arc is held.
            let mut covered: BTreeMap<RangeId, u128> = BTreeMap::new();
            for p in self.pieces.values().filter(|p| p.role == Role::Active) {
                for (range, span, _) in ring.cut(p.span) {
                    *covered.entry(range).or_default() += span.width();
                }
            }
            for (range, span, owner) in ring.ranges() {
                if is_life(owner, &self.me) {
                    owned += 1;
                    if covered.get(&range).copied().unwrap_or(0) < span.width() {
                        unavailable += 1;
                    }
                }
            }
        }
        let sealing = self.pieces.values().filter(|p| matches!(p.role, Role::Sealing { .. })).count()
            + self.outgoing.values().filter(|o| !o.in_doubt).map(|o| o.message.spans.len()).sum::<usize>();
        let (recovering, unrecoverable) = self.recovering();
        CustodyInfo {
            ranges_owned: owned,
            ranges_unavailable: unavailable,
            ranges_sealing: sealing as u64,
            resources: self.resources.len() as u64,
            tasks_queued: self.queued_total as u64,
            tasks_running: self.running as u64,
            tasks_executed: self.stats.tasks_executed,
            handoffs_sent: self.stats.transfers_sent,
            handoffs_received: self.stats.transfers_received,
            handoffs_in_doubt: self.stats.transfers_in_doubt,
            replica_resources: self.replicas.len() as u64,
            replica_tasks: self.replicas.tasks() as u64,
            ranges_recovering: recovering as u64,
            ranges_unrecoverable: unrecoverable as u64,
        }
    }

    /// The piece holding `point`, if any.
    fn piece_of(&self, point: u64) -> Option<&Piece> {
        let piece = self.pieces.range(point..).next().or_else(|| self.pieces.iter().next()).map(|(_, p)| p)?;
        piece.span.contains(point).then_some(piece)
    }
}

impl TaskMsg {
    /// Fills in the gateway's request number of an answer.
    fn with_req(mut self, number: u64) -> TaskMsg {
        match &mut self {
            TaskMsg::Accepted { req, .. }
            | TaskMsg::Redirect { req, .. }
            | TaskMsg::NotReady { req }
            | TaskMsg::Busy { req }
            | TaskMsg::Rejected { req, .. }
            | TaskMsg::Done { req, .. }
            | TaskMsg::Submit { req, .. } => *req = number,
            TaskMsg::Transfer(_)
            | TaskMsg::TransferAck { .. }
            | TaskMsg::Replicate(_)
            | TaskMsg::ReplicateAck(_)
            | TaskMsg::SyncMark(_)
            | TaskMsg::SyncAck { .. }
            | TaskMsg::Recover { .. }
            | TaskMsg::RecoverReply(_) => {}
        }
        self
    }
}

/// The keys of `resources` whose point lies in `span`, clockwise from its
/// start.
fn keys_in(resources: &BTreeMap<Key, Res>, span: Span) -> Vec<Key> {
    keys_in_map(resources, span)
}

/// The keys of a map by resource key whose point lies in `span`, clockwise
/// from its start.
fn keys_in_map<V>(resources: &BTreeMap<Key, V>, span: Span) -> Vec<Key> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let from = |start: u64| match start.checked_add(1) {
        Some(p) => Included((p, String::new())),
        None => Excluded((u64::MAX, String::new())),
    };
    let upto = |end: u64| match end.checked_add(1) {
        Some(p) => Excluded((p, String::new())),
        None => Unbounded,
    };
    let mut keys = Vec::new();
    if span.start < span.end {
        if span.start == u64::MAX {
            return keys;
        }
        keys.extend(resources.range((from(span.start), upto(span.end))).map(|(k, _)| k.clone()));
    } else {
        // Wraps (or is the whole circle): after start, then from zero.
        if span.start < u64::MAX {
            keys.extend(resources.range((from(span.start), Unbounded)).map(|(k, _)| k.clone()));
        }
        keys.extend(resources.range((Unbounded, upto(span.end))).map(|(k, _)| k.clone()));
    }
    keys
}

/// Whether `id` is of the life `life` (a generation-0 identity): `id.life()
/// == *life`, without cloning.
fn is_life(id: &NodeId, life: &NodeId) -> bool {
    life.generation == 0 && id.addr == life.addr && id.incarnation == life.incarnation && id.name == life.name
}

/// Adds a gateway to a task's waiters, once, within the bound.
fn add_waiter(waiters: &mut Vec<Waiter>, waiter: Waiter) {
    if !waiters.contains(&waiter) && waiters.len() < WAITERS_PER_TASK_MAX {
        waiters.push(waiter);
    }
}

/// Whether two arcs share a point.
fn overlaps(a: Span, b: Span) -> bool {
    a.contains(b.end) || b.contains(a.end)
}

/// Puts pieces in a map by end point, joining neighbours with the same role
/// and epochs.
fn merge(mut pieces: Vec<Piece>) -> BTreeMap<u64, Piece> {
    pieces.sort_by_key(|p| p.span.end);
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    for p in pieces {
        match out.last_mut() {
            Some(last)
                if last.span.end == p.span.start
                    && !last.span.is_full()
                    && last.role == p.role
                    && last.act_epoch == p.act_epoch
                    && last.epoch == p.epoch
                    && Span { start: last.span.start, end: p.span.end }.width()
                        == last.span.width() + p.span.width() =>
            {
                last.span.end = p.span.end;
            }
            _ => out.push(p),
        }
    }
    out.into_iter().map(|p| (p.span.end, p)).collect()
}

mod marks;
mod recovery;
mod replica;
mod replication;

#[cfg(test)]
mod tests;
