//! The epoch store: an embedded Raft group of voters that commits ring
//! configurations, suspicion votes and answers lease renewals.
//!
//! raft-rs is sans-IO (tick / step / ready / advance), so it runs inside the
//! engine unchanged, driven by the engine's clock and timers. Its election
//! timeout is not drawn from raft-rs's thread-local generator: the election
//! tick range holds a single value, and the randomness comes from this
//! node's seeded tick jitter instead.
//!
//! Every node (voter or not) keeps what it has learned — the latest
//! configuration, the leader, its lease — and renews its lease with the
//! leader every `lease_renew`. The leader batches membership evidence (SWIM
//! joins and restarts, leave requests, suspicion votes, lapsed leases) into
//! one epoch once nothing new has happened for `stable_after`, and keeps the
//! number of voters at `voters` among the active members.
//!
//! raft-rs logs through `slog`; the store forwards its records to `tracing`
//! (target `custody::engine::store::raft`).
//!
//! The Raft log and state live in memory: a restarted node is a new Raft
//! peer (its Raft id includes its incarnation) and the old one is removed
//! with its old life. Losing a majority of the voters at once loses the
//! store.
//!
//! The parts, one file each: `consensus` drives this node's Raft peers
//! (start, step, ready, apply) and holds the replicated state the committed
//! log built; `lease` renews this node's lease and, at the leader, answers
//! renewals; `leader` holds what only the leader keeps and decides (the next
//! epoch's changes, proposals, the voter set); `chain` holds the latest
//! configuration learned (heard, fetched, learned); `slog_bridge` forwards
//! raft-rs's logs.
//!
//! A message this node addresses to itself (its own lease request, when it
//! leads or thinks it does, and the answer to it) does not re-enter the
//! store: it waits in a small queue, handled once the input that raised it
//! is done (after each timer's work, for a timeout), so no handler runs
//! inside another.

mod chain;
mod consensus;
mod leader;
mod lease;
mod slog_bridge;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use super::config::Config;
use super::epoch::Configuration;
use super::id::{NodeId, write_addr_bytes};
use super::time::Instant;
use super::wire::{EpochMsg, Message};
use chain::Learned;
use consensus::{Applied, Consensus, Raft};
use leader::Leadership;
use lease::Lease;

pub use lease::LEASE_READS_MAX;

/// Configurations a voter keeps for answering fetches and checks.
pub const CHAIN_KEPT_MAX: usize = 64;
/// Messages to this node itself waiting for the end of an input. One input
/// raises a few (a lease request and its answer, the answers of a deposed
/// leader to its own pending reads); past it, more are dropped (a lease
/// request without an answer is retried at the next renewal).
const SELF_MESSAGES_MAX: usize = 64;

/// What the store asks the node to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreOutput {
    /// Send a message to a peer.
    Send(SocketAddr, Message),
    /// Spread `(epoch, hash)` by SWIM gossip.
    Announce(u64, u64),
    /// Tell the host.
    Event(StoreEvent),
    /// A configuration older than the latest, asked for with
    /// [`EpochStore::fetch_past`].
    Past(Configuration),
}

/// Epoch-store events, for the host and for netsim's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// This node learned a newer configuration.
    EpochLearned {
        /// Its epoch.
        epoch: u64,
        /// Its hash.
        hash: u64,
    },
    /// This voter applied a committed configuration (every voter reports
    /// each one).
    EpochCommitted {
        /// Its epoch.
        epoch: u64,
        /// Its hash.
        hash: u64,
    },
    /// This voter applied a committed suspicion vote.
    VoteCommitted {
        /// The suspected life.
        target: NodeId,
        /// Who suspects it.
        by: NodeId,
    },
    /// The leader granted this node's lease, until `lease_end` on its clock.
    LeaseRenewed {
        /// The new end of the lease.
        lease_end: Instant,
    },
    /// The store says this life was removed from the configuration: stop and
    /// rejoin as a new life.
    Removed,
}

/// A committed log entry's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum StoreEntry {
    Epoch(Configuration),
    Vote { target: NodeId, by: NodeId },
}

/// The Raft id of one life of a node: a stable hash of its address and
/// incarnation, never zero (Raft's "none").
pub fn raft_id(id: &NodeId) -> u64 {
    let mut bytes = Vec::with_capacity(32);
    write_addr_bytes(&id.addr, &mut bytes);
    bytes.extend_from_slice(&id.incarnation.to_be_bytes());
    let mut h = hashring::DefaultHashBuilder.build_hasher();
    h.write(&bytes);
    h.finish() | 1
}

/// Counters for status and netsim.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Configurations this voter applied.
    pub epochs_applied: u64,
    /// Votes this voter applied.
    pub votes_applied: u64,
    /// Leases granted to this node.
    pub lease_renewals: u64,
    /// Lease requests this node sent.
    pub lease_requests: u64,
}

/// This node's SWIM view, as the store follows it. SWIM identities carry a
/// generation; the store deals in lives (see [`NodeId::life`]).
#[derive(Default)]
struct SwimView {
    /// The live identity at each address.
    alive: BTreeMap<SocketAddr, NodeId>,
    /// Lives of the latest configuration that SWIM reported down: this node
    /// votes to remove them.
    down: BTreeSet<NodeId>,
}

impl SwimView {
    /// Whether `life` is alive here (at any generation).
    fn sees_alive(&self, life: &NodeId) -> bool {
        self.alive.get(&life.addr).is_some_and(|id| id.life() == *life)
    }
}

/// This life's standing in the cluster.
#[derive(Default)]
struct Life {
    /// The latest epoch learned that has this life as a member.
    member_of: Option<u64>,
    /// This node asked to leave.
    leaving: bool,
    /// This leaving node reported its handoffs done.
    handed_off: bool,
    /// Whether `Removed` was reported for this life already.
    removed_reported: bool,
}

/// One node's part of the epoch store.
pub(crate) struct EpochStore {
    cfg: Config,
    /// This life.
    me: NodeId,
    /// This node's seeded generator: election timeouts, tick jitter, whom to
    /// ask for a lease.
    rng: Xoshiro256PlusPlus,
    consensus: Consensus,
    applied: Applied,
    learned: Learned,
    lease: Lease,
    life: Life,
    view: SwimView,
    leadership: Leadership,
    /// Messages to this node itself, handled at the end of the input that
    /// sent them (see [`EpochStore::settle`]).
    to_self: VecDeque<EpochMsg>,
    outputs: Vec<StoreOutput>,
    stats: StoreStats,
}

impl EpochStore {
    pub(crate) fn new(me: NodeId, cfg: Config, seed: u64) -> EpochStore {
        let me = me.life();
        let mut view = SwimView::default();
        view.alive.insert(me.addr, me.clone());
        EpochStore {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            me,
            cfg,
            consensus: Consensus::default(),
            applied: Applied::default(),
            learned: Learned::default(),
            lease: Lease::default(),
            life: Life::default(),
            view,
            leadership: Leadership::default(),
            to_self: VecDeque::new(),
            outputs: Vec::new(),
            stats: StoreStats::default(),
        }
    }

    pub(crate) fn drain(&mut self) -> std::vec::Drain<'_, StoreOutput> {
        debug_assert!(self.to_self.is_empty(), "an input left messages to this node itself unhandled");
        self.outputs.drain(..)
    }

    pub(crate) fn stats(&self) -> StoreStats {
        self.stats
    }

    /// The latest configuration this node knows.
    pub(crate) fn latest(&self) -> Option<&Configuration> {
        self.learned.latest.as_ref()
    }

    pub(crate) fn leader(&self) -> Option<SocketAddr> {
        self.lease.leader
    }

    pub(crate) fn voters(&self) -> &[SocketAddr] {
        &self.lease.voters
    }

    pub(crate) fn lease_end(&self) -> Option<Instant> {
        self.lease.end
    }

    pub(crate) fn is_voter(&self) -> bool {
        self.consensus.raft.is_some()
    }

    /// How many Raft peers of earlier lives this node still runs.
    #[cfg(test)]
    pub(crate) fn earlier_peers(&self) -> usize {
        self.consensus.retiring.len()
    }

    /// Whether the Raft group may still count a peer of this node (this
    /// life's or an earlier one's) as a voter: as long as it does, stopping
    /// the node would take a live voter from the group's quorum.
    pub(crate) fn holds_vote(&self) -> bool {
        !self.consensus.retiring.is_empty() || self.consensus.raft.as_ref().is_some_and(Raft::is_voter_here)
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.consensus.is_leader()
    }

    pub(crate) fn set_seeds(&mut self, seeds: &[SocketAddr], now: Instant) {
        self.lease.seeds = seeds.to_vec();
        self.lease.arm(now + self.cfg.lease_renew);
    }

    /// Whether this life is a member of the latest configuration.
    pub(crate) fn is_member(&self) -> bool {
        self.learned.latest.as_ref().is_some_and(|c| c.contains(&self.me))
    }

    /// Whether this life was a member and a later configuration no longer
    /// has it.
    pub(crate) fn was_removed(&self) -> bool {
        match (self.life.member_of, &self.learned.latest) {
            (Some(e), Some(c)) => c.epoch > e && !c.contains(&self.me),
            _ => false,
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [self.consensus.next_tick, self.lease.next_renew, self.learned.fetch_retry_at()].into_iter().flatten().min()
    }

    /// Starts a new cluster: this node is the only voter and commits epoch 1
    /// with itself.
    pub(crate) fn bootstrap(&mut self, now: Instant) {
        if self.consensus.raft.is_some() {
            return;
        }
        let origin = raft_id(&self.me);
        self.start_raft(origin, now);
        self.lease.arm(now);
        if let Some(raft) = &mut self.consensus.raft
            && let Err(e) = raft.node.campaign()
        {
            tracing::warn!(error = %e, "bootstrap campaign");
        }
        self.process_ready(now);
        self.lead(now);
        self.process_ready(now);
        self.settle(now);
    }

    /// A change in this node's SWIM view. SWIM identities carry a
    /// generation; the store deals in lives (see [`NodeId::life`]).
    pub(crate) fn member_up(&mut self, id: &NodeId, now: Instant) {
        self.lease.arm(now + self.cfg.lease_renew);
        self.view.down.remove(&id.life());
        let newer = |known: &NodeId| (known.incarnation, known.generation) <= (id.incarnation, id.generation);
        if self.view.alive.get(&id.addr).is_none_or(newer) {
            self.view.alive.insert(id.addr, id.clone());
        }
    }

    pub(crate) fn member_down(&mut self, id: &NodeId, now: Instant) {
        if self.view.alive.get(&id.addr) == Some(id) {
            self.view.alive.remove(&id.addr);
        }
        let life = id.life();
        if self.learned.latest.as_ref().is_some_and(|c| c.contains(&life)) {
            self.view.down.insert(life);
            self.send_votes(now);
        }
        self.settle(now);
    }

    /// This node starts a new life (the store removed the old one): it is a
    /// new Raft peer, with no lease and no membership yet.
    ///
    /// The old life's Raft peer, if its group counts it as a voter, keeps
    /// running (see `Consensus::retiring`): the group removes it by a
    /// committed change (the leader removes a voter whose life is gone
    /// before any other), and until then it is part of the quorum. Dropping
    /// it here would take a live voter from the group without telling it.
    pub(crate) fn renew_identity(&mut self, new: NodeId) {
        self.view.alive.remove(&self.me.addr);
        self.me = new.life();
        self.view.alive.insert(self.me.addr, self.me.clone());
        self.consensus.retire();
        self.leadership = Leadership::default();
        self.life = Life::default();
        self.lease.renew_identity();
    }

    /// Ask the leader to mark this node leaving; it is removed once it
    /// reports its handoffs done ([`EpochStore::handed_off`]) or after
    /// `handoff_timeout`.
    pub(crate) fn request_leave(&mut self, now: Instant) {
        self.life.leaving = true;
        self.send_leave(now);
        self.settle(now);
    }

    /// This leaving node handed off everything it held: ask for its removal.
    pub(crate) fn handed_off(&mut self, now: Instant) {
        if self.life.leaving && !self.life.handed_off {
            self.life.handed_off = true;
            self.send_leave(now);
        }
        self.settle(now);
    }

    fn send_leave(&mut self, now: Instant) {
        if self.is_leader() {
            self.take_leave(self.me.clone(), self.life.handed_off, now);
        } else if let Some(leader) = self.lease.leader {
            self.send(leader, EpochMsg::Leave { id: self.me.clone(), handed_off: self.life.handed_off });
        }
    }

    fn send_votes(&mut self, now: Instant) {
        // Nothing suspected (the usual case): no need to look this node up
        // in the configuration.
        if self.view.down.is_empty() || !self.is_member() {
            return;
        }
        let latest = self.learned.latest.as_ref();
        let votes: Vec<NodeId> = self
            .view
            .down
            .iter()
            .filter(|t| latest.is_some_and(|c| c.contains(t)))
            .filter(|t| !self.applied.votes.get(*t).is_some_and(|by| by.contains(&self.me)))
            .cloned()
            .collect();
        for target in votes {
            if self.is_leader() {
                self.propose_vote(target, self.me.clone(), now);
            } else if let Some(leader) = self.lease.leader {
                self.send(leader, EpochMsg::Vote { target, by: self.me.clone() });
            }
        }
    }

    /// `(epoch, hash)` heard by gossip from `from`.
    pub(crate) fn heard(&mut self, epoch: u64, hash: u64, from: Option<SocketAddr>, now: Instant) {
        self.on_heard(epoch, hash, from, now);
    }

    /// The timers that are due. Each one's work is settled before the
    /// next's: a grant to this node's own request (answered at a tick)
    /// counts before the renewal decides whether its leader still answers,
    /// and the answer to its own renewal before it sends votes and leave
    /// requests (a redirect from itself clears a leader it only thought it
    /// was, so they do not go to its own address).
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.consensus.next_tick.is_some_and(|t| t <= now) {
            self.tick_raft(now);
            self.lead(now);
            if self.is_leader() {
                self.start_read(now);
            }
            self.process_ready(now);
            self.settle(now);
        }
        if self.lease.next_renew.is_some_and(|at| at <= now) {
            self.lease.next_renew = Some(now + self.cfg.lease_renew);
            self.renew_lease(now);
            self.settle(now);
            self.send_votes(now);
            if self.life.leaving {
                self.send_leave(now);
            }
            self.settle(now);
        }
        self.retry_fetch(now);
    }

    /// A Raft message from a peer.
    pub(crate) fn handle_raft(
        &mut self,
        from: SocketAddr,
        origin: u64,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), String> {
        let stepped = self.step_raft(from, origin, bytes, now);
        self.settle(now);
        stepped
    }

    /// An epoch-store message from a peer.
    pub(crate) fn handle_message(&mut self, from: SocketAddr, msg: EpochMsg, now: Instant) {
        self.on_message(from, msg, now);
        self.settle(now);
    }

    /// Handles the messages this node sent itself, and those they raise, in
    /// order: at the end of an input, never inside a handler.
    fn settle(&mut self, now: Instant) {
        // Ends: a lease request to itself raises at most an answer, and an
        // answer raises nothing; the queue is bounded besides.
        while let Some(msg) = self.to_self.pop_front() {
            self.on_message(self.me.addr, msg, now);
        }
    }

    /// An epoch-store message, from a peer or from this node to itself.
    fn on_message(&mut self, from: SocketAddr, msg: EpochMsg, now: Instant) {
        match msg {
            EpochMsg::LeaseRequest { id, seq, member_of } => self.on_lease_request(from, id, seq, member_of, now),
            EpochMsg::LeaseGrant { seq, status, epoch, hash, leader, voters } => {
                self.on_leader_heard(seq, leader, voters);
                self.on_grant(seq, status, epoch, hash, leader, now);
            }
            EpochMsg::NotLeader { seq, leader } => self.on_not_leader(from, seq, leader),
            EpochMsg::Vote { target, by } => {
                if self.is_leader() {
                    self.propose_vote(target, by, now);
                }
            }
            EpochMsg::Leave { id, handed_off } => {
                if self.is_leader() {
                    self.take_leave(id, handed_off, now);
                }
            }
            EpochMsg::Fetch { epoch } => self.answer_fetch(from, epoch),
            EpochMsg::Config(config) => self.learn(config),
            EpochMsg::FetchPast { epoch } => self.answer_fetch_past(from, epoch),
            EpochMsg::Past(config) => self.take_past(config),
        }
    }

    fn send(&mut self, to: SocketAddr, msg: EpochMsg) {
        self.outputs.push(StoreOutput::Send(to, Message::Epoch(msg)));
    }

    /// Sends `msg` to `to`, which may be this node itself: then it waits
    /// for the end of the input ([`EpochStore::settle`]).
    fn reply(&mut self, to: SocketAddr, msg: EpochMsg) {
        if to != self.me.addr {
            self.send(to, msg);
        } else if self.to_self.len() < SELF_MESSAGES_MAX {
            self.to_self.push_back(msg);
        } else {
            tracing::warn!(?msg, "too many messages to this node itself in one input; dropped");
        }
    }
}
