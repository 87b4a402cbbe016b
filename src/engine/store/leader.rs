//! Leadership: what only the leader keeps and decides. It batches membership
//! evidence (SWIM joins and restarts, leave requests, suspicion votes,
//! lapsed leases) into the next epoch once nothing new has happened for
//! `stable_after`, proposes it, and keeps `voters` voters among the active
//! members.
//!
//! The decisions are pure functions of plain inputs
//! ([`Leadership::wanted_changes`], [`voter_change`]) so that they can be
//! checked case by case; the store's methods gather the inputs and carry the
//! decisions out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use raft::eraftpb::{ConfChange, ConfChangeType};

use super::consensus::Applied;
use super::lease::{LeaseReads, PendingRead};
use super::{EpochStore, StoreEntry, SwimView, raft_id};
use crate::engine::config::Config;
use crate::engine::epoch::{Changes, Configuration, MemberStatus};
use crate::engine::id::NodeId;
use crate::engine::time::Instant;
use crate::engine::wire::EpochMsg;

/// How long a proposed epoch (or voter change) may stay uncommitted before
/// the leader proposes again.
const PROPOSAL_RETRY: Duration = Duration::from_secs(5);

/// What only the leader keeps; reset when leadership begins or ends.
#[derive(Default)]
pub(super) struct Leadership {
    /// When this node became leader; `None` while it does not lead.
    pub(super) since: Option<Instant>,
    /// When each member's lease was last granted (or it was admitted).
    pub(super) last_renewal: BTreeMap<SocketAddr, Instant>,
    /// Members that asked to leave.
    pub(super) leave_requests: BTreeSet<NodeId>,
    /// Leaving members that reported their handoffs done.
    pub(super) handed_off: BTreeSet<NodeId>,
    /// When this leader first saw each member as leaving: its removal waits
    /// for its handoffs until `handoff_timeout` after that.
    pub(super) leaving_since: BTreeMap<NodeId, Instant>,
    /// The changes the evidence asked for at the last look.
    wanted: Changes,
    /// Since when `wanted` has not changed.
    wanted_since: Option<Instant>,
    /// The epoch proposed last and when, until it applies.
    proposed: Option<(u64, Instant)>,
    /// Suspicion votes proposed and not applied yet.
    pub(super) proposed_votes: BTreeSet<(NodeId, NodeId)>,
    /// When the last voter change was proposed (or leadership handed over),
    /// until it applies.
    pub(super) conf_change_at: Option<Instant>,
    /// Lease requests waiting for a read.
    pub(super) reads: LeaseReads,
}

/// What the leader weighs besides its own bookkeeping, borrowed from the
/// store for one decision.
pub(super) struct Evidence<'a> {
    /// This life (the leader).
    pub(super) me: &'a NodeId,
    /// The timings and thresholds.
    pub(super) cfg: &'a Config,
    /// The leader's SWIM view.
    pub(super) view: &'a SwimView,
    /// The committed votes and retired lives.
    pub(super) applied: &'a Applied,
}

impl Leadership {
    /// The changes the evidence asks for against `latest`, for a leader
    /// since `since`:
    ///
    /// - a life alive in SWIM and newer than the member at its address (or
    ///   at a new address) joins, unless it was retired, asked to leave, or
    ///   its name is held by another live member or an earlier join;
    /// - a member goes once it left (handoffs done, or `handoff_timeout`
    ///   after it was first seen leaving), enough votes suspect it and SWIM
    ///   does not see it alive here, or its lease lapsed (no renewal for two
    ///   leases, counted from `since` at the earliest); never the leader
    ///   itself;
    /// - a member that asked to leave and does not go is marked leaving.
    pub(super) fn wanted_changes(
        &self,
        latest: &Configuration,
        evidence: &Evidence<'_>,
        since: Instant,
        now: Instant,
    ) -> Changes {
        let Evidence { me, cfg, view, applied } = *evidence;
        let mut changes = Changes::default();
        // This runs at every tick of the leader, over every member: the
        // lookups by address walk the sorted lists side by side (the
        // configuration is sorted by address, the maps are keyed by it)
        // instead of searching each.
        let mut members = latest.members.iter().peekable();
        for (&addr, id) in &view.alive {
            debug_assert_eq!(addr, id.addr);
            while members.next_if(|m| m.id.addr < addr).is_some() {}
            let member = members.peek().filter(|m| m.id.addr == addr);
            // A life has its identity's incarnation: clone it only to join.
            let newer = member.is_none_or(|m| m.id.incarnation < id.incarnation);
            let retired = applied.retired.get(&id.addr).is_some_and(|&inc| id.incarnation <= inc);
            if newer && !retired {
                // A name names one live node: a join under the name of a
                // live member at another address is not admitted (the
                // joining node sees the clash and gives up, see
                // `Node::name_clash`), nor the second of two joins under one
                // name.
                let clash = || {
                    latest.members.iter().any(|m| m.id.name == id.name && m.id.addr != addr && view.sees_alive(&m.id))
                        || changes.joins.iter().any(|j| j.name == id.name)
                };
                let life = id.life();
                if !self.leave_requests.contains(&life) && !clash() {
                    changes.joins.push(life);
                }
            }
        }
        let expiry = cfg.lease * 2;
        let mut renewals = self.last_renewal.iter().peekable();
        for m in &latest.members {
            let id = &m.id;
            while renewals.next_if(|&(&addr, _)| addr < id.addr).is_some() {}
            let renewed = renewals.peek().filter(|(addr, _)| **addr == id.addr).map(|(_, t)| **t);
            // Votes remove a life only while the leader does not see it alive
            // itself: a member that came back (a new SWIM generation after a
            // false suspicion) keeps its place.
            let voted = applied.votes.get(id).is_some_and(|v| v.len() >= usize::from(cfg.suspicion_votes))
                && !view.sees_alive(id);
            let lapsed = id != me && now >= since + expiry && renewed.is_none_or(|t| now >= t + expiry);
            // A leader never removes itself: it hands leadership over first
            // (see `voter_change`), and the next leader removes it.
            let removable = id != me;
            // A leaving member goes once its handoffs are done, or once they
            // have had `handoff_timeout` (then it is treated like a crash).
            let left = m.status == MemberStatus::Leaving
                && (self.handed_off.contains(id)
                    || self.leaving_since.get(id).is_some_and(|&t| now >= t + cfg.handoff_timeout));
            if removable && (left || voted || lapsed) {
                changes.removals.push(id.clone());
            } else if self.leave_requests.contains(id) {
                changes.leaving.push(id.clone());
            }
        }
        changes
    }

    /// A configuration applied: the proposal it answers is done, and the
    /// bookkeeping about lives no longer in it is moot (this keeps the maps
    /// bounded by the membership).
    pub(super) fn applied(&mut self, config: &Configuration) {
        if self.proposed.is_some_and(|(e, _)| e <= config.epoch) {
            self.proposed = None;
        }
        self.leave_requests.retain(|id| config.contains(id));
        self.handed_off.retain(|id| config.contains(id));
        self.leaving_since.retain(|id, _| config.contains(id));
        self.last_renewal.retain(|addr, _| config.member(*addr).is_some());
    }
}

/// The Raft group as the leader sees it, for one voter decision.
#[derive(Debug, Clone, Copy)]
pub(super) struct VoterGroup<'a> {
    /// The leader's Raft id.
    pub(super) me: u64,
    /// The voters of the leader's applied configuration.
    pub(super) voters: &'a BTreeSet<u64>,
    /// Its learners.
    pub(super) learners: &'a BTreeSet<u64>,
    /// Raft ids of the latest configuration's active members, in address
    /// order.
    pub(super) active: &'a [u64],
    /// Voters wanted (`voters` in the configuration).
    pub(super) wanted: u8,
}

/// One Raft peer as the leader sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct PeerHealth {
    /// Alive in the leader's SWIM view under the life the Raft id belongs
    /// to.
    pub(super) alive: bool,
    /// Alive, and renewed its lease here recently (the leader always has).
    pub(super) healthy: bool,
    /// Its log matches the leader's up to the commit index.
    pub(super) caught_up: bool,
    /// Answered Raft within the last election timeout.
    pub(super) recent_active: bool,
}

/// One step of voter management.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VoterChange {
    /// The leader is leaving: hand leadership to this voter.
    TransferLeadership(u64),
    /// Add this member as a Raft learner (it catches up, then is promoted).
    AddLearner(u64),
    /// Make this caught-up learner a voter.
    Promote(u64),
    /// Remove this voter or learner from the group.
    Remove(u64),
}

/// Keeps `wanted` voters among the active members, one change at a time,
/// never reducing the live quorum:
///
/// 1. learners whose life left the configuration go (they do not vote);
/// 2. learners that are not healthy (and not caught up) go (they would block
///    the replacement);
/// 3. while fewer voters than the target stay in the configuration, a
///    caught-up healthy learner is promoted, or a healthy active member is
///    added as a Raft learner (a replacement comes before a removal), or
///    nothing happens while one is catching up or only alive (not renewed
///    here yet);
/// 4. then a voter whose life left (or is leaving) goes, an unreachable one
///    (not healthy here: unreachable, or its node is a new life now) before
///    any other, only if the voters left after it still hold a live
///    majority (an earlier life's peer may still be voting).
///
/// The target is `wanted` but at most the active members and at least one,
/// made odd: an even number of voters tolerates no more failures than one
/// fewer, and has one more voter that can fail. A leader that is not active
/// any more (leaving) hands leadership to a caught-up voter that stays.
///
/// Live (for the quorum): the leader, a healthy peer, or one that answered
/// Raft lately. A dead node made a voter could take the quorum with it; a
/// live voter removed while another is unreachable could leave a group that
/// never reaches quorum again.
pub(super) fn voter_change(group: VoterGroup<'_>, peer: impl Fn(u64) -> PeerHealth) -> Option<VoterChange> {
    let VoterGroup { me, voters, learners, active, wanted } = group;
    let caught_up = |id: u64| peer(id).caught_up;
    let alive = |id: u64| peer(id).alive;
    let healthy = |id: u64| peer(id).healthy;
    if !active.contains(&me) {
        // Leaving: hand leadership to a caught-up voter that stays.
        return voters
            .iter()
            .find(|&&v| v != me && active.contains(&v) && caught_up(v))
            .map(|&next| VoterChange::TransferLeadership(next));
    }
    let stale = |v: &u64| !active.contains(v) && *v != me;
    let mut target = usize::from(wanted).min(active.len()).max(1);
    if target.is_multiple_of(2) {
        target -= 1;
    }
    let staying = voters.iter().filter(|v| !stale(v)).count();
    let live = |id: u64| id == me || healthy(id) || peer(id).recent_active;
    // Whether the voters left after removing `v` hold a live majority.
    let keeps_quorum = |v: u64| {
        let rest = voters.len() - 1;
        voters.iter().filter(|&&o| o != v && live(o)).count() > rest / 2
    };
    // A replacement comes before a removal: a stale voter that is only
    // paused or cut off still counts for the quorum if it comes back, and
    // removing it first would leave every voter that stays needed.
    if let Some(&l) = learners.iter().find(|l| stale(l)) {
        Some(VoterChange::Remove(l))
    } else if let Some(&l) = learners.iter().find(|&&l| !healthy(l) && !caught_up(l)) {
        Some(VoterChange::Remove(l))
    } else if staying < target
        && let Some(&ready) = learners.iter().find(|&&l| caught_up(l) && healthy(l))
    {
        Some(VoterChange::Promote(ready))
    } else if staying < target && !learners.is_empty() {
        // A replacement is catching up: it comes first.
        None
    } else if let Some(add) =
        (staying < target).then(|| active.iter().copied().find(|&a| !voters.contains(&a) && healthy(a))).flatten()
    {
        Some(VoterChange::AddLearner(add))
    } else if staying < target && active.iter().any(|&a| !voters.contains(&a) && alive(a)) {
        // A replacement is alive but has not renewed here yet (a new
        // leader has heard from no one): wait for it.
        None
    } else {
        // A voter whose life left or is leaving, an unreachable one
        // first: only if the voters after it still hold a live majority.
        let removable = |v: &u64| stale(v) && keeps_quorum(*v);
        let unreachable = voters.iter().copied().find(|v| removable(v) && !healthy(*v));
        unreachable.or_else(|| voters.iter().copied().find(removable)).map(VoterChange::Remove)
    }
}

impl EpochStore {
    /// Follows this life's Raft peer: the leader and voters it knows, and
    /// leadership beginning or ending here.
    pub(super) fn refresh_leader(&mut self, now: Instant) {
        let Some(raft) = &self.consensus.raft else { return };
        let leader_id = raft.node.raft.leader_id;
        let is_leader = self.consensus.is_leader();
        if leader_id != 0
            && let Some(&addr) = self.consensus.peers.get(&leader_id)
        {
            self.lease.leader = Some(addr);
        }
        self.lease.voters = self.consensus.voter_addrs();
        if is_leader && self.leadership.since.is_none() {
            self.leadership = Leadership { since: Some(now), ..Leadership::default() };
        } else if !is_leader && self.leadership.since.is_some() {
            // Deposed: pending lease reads will never be answered here.
            for read in self.leadership.reads.take_all() {
                let PendingRead { from, seq, .. } = read;
                let leader = self.lease.leader;
                self.reply(from, EpochMsg::NotLeader { seq, leader });
            }
            self.leadership = Leadership::default();
        }
    }

    /// The leader's work: batch membership evidence into the next epoch, and
    /// keep the voter set.
    pub(super) fn lead(&mut self, now: Instant) {
        if !self.is_leader() {
            return;
        }
        let Some(since) = self.leadership.since else { return };
        // Borrowed, not cloned: this runs at every tick of the leader.
        let Some(latest) = self.applied.chain.values().next_back() else {
            // A fresh group: commit the first configuration at once.
            if self.leadership.proposed.is_none_or(|(_, at)| now >= at + PROPOSAL_RETRY) {
                let group = self.consensus.raft.as_ref().map_or(0, |r| r.origin);
                let first = Configuration::first(group, self.me.clone(), self.cfg.vnodes, self.cfg.replication);
                self.propose_epoch(first, now);
            }
            return;
        };
        for m in latest.members.iter().filter(|m| m.status == MemberStatus::Leaving) {
            self.leadership.leaving_since.entry(m.id.clone()).or_insert(now);
        }
        let evidence = Evidence { me: &self.me, cfg: &self.cfg, view: &self.view, applied: &self.applied };
        let wanted = self.leadership.wanted_changes(latest, &evidence, since, now);
        if wanted != self.leadership.wanted {
            self.leadership.wanted = wanted.clone();
            self.leadership.wanted_since = Some(now);
        }
        let stable = self.leadership.wanted_since.is_some_and(|t| now >= t + self.cfg.stable_after);
        let free = self.leadership.proposed.is_none_or(|(_, at)| now >= at + PROPOSAL_RETRY);
        let next = if !wanted.is_empty() && stable && free { latest.next(&wanted) } else { None };
        if let Some(next) = next {
            self.propose_epoch(next, now);
        }
        self.manage_voters(now);
    }

    fn propose_epoch(&mut self, config: Configuration, now: Instant) {
        let epoch = config.epoch;
        let data = rmp_serde::to_vec(&StoreEntry::Epoch(config)).expect("a configuration encodes");
        if let Some(raft) = &mut self.consensus.raft
            && raft.node.propose(vec![], data).is_ok()
        {
            self.leadership.proposed = Some((epoch, now));
            tracing::debug!(epoch, "proposed");
        }
        self.process_ready(now);
    }

    /// Proposes a suspicion vote, unless it is known or enough votes about
    /// the same life are committed or on their way.
    pub(super) fn propose_vote(&mut self, target: NodeId, by: NodeId, now: Instant) {
        let known = self.applied.votes.get(&target).is_some_and(|v| v.contains(&by));
        let key = (target.clone(), by.clone());
        if known || self.leadership.proposed_votes.contains(&key) {
            return;
        }
        // Enough evidence is on its way already: more votes about the same
        // life would only cost consensus instances.
        let committed = self.applied.votes.get(&target).map_or(0, BTreeSet::len);
        let in_flight = self.leadership.proposed_votes.iter().filter(|(t, _)| *t == target).count();
        if committed + in_flight >= usize::from(self.cfg.suspicion_votes) {
            return;
        }
        if let Some(raft) = &mut self.consensus.raft {
            let data = rmp_serde::to_vec(&StoreEntry::Vote { target, by }).expect("a vote encodes");
            if raft.node.propose(vec![], data).is_ok() {
                self.leadership.proposed_votes.insert(key);
            }
        }
        self.process_ready(now);
    }

    /// A leave request (or a report of handoffs done), at the leader.
    pub(super) fn take_leave(&mut self, id: NodeId, handed_off: bool, now: Instant) {
        if handed_off {
            self.leadership.handed_off.insert(id.clone());
        }
        self.leadership.leave_requests.insert(id);
        self.lead(now);
    }

    /// Carries out [`voter_change`]'s decision, one change at a time.
    fn manage_voters(&mut self, now: Instant) {
        if self.leadership.conf_change_at.is_some_and(|at| now < at + PROPOSAL_RETRY) {
            return;
        }
        let Some(raft) = &self.consensus.raft else { return };
        let r = &raft.node.raft;
        if r.has_pending_conf() {
            return;
        }
        let conf = r.prs().conf();
        let voters: BTreeSet<u64> = conf.voters().ids().iter().collect();
        let learners: BTreeSet<u64> = conf.learners().iter().copied().collect();
        let group = VoterGroup {
            me: raft_id(&self.me),
            voters: &voters,
            learners: &learners,
            active: &self.learned.active_raft_ids,
            wanted: self.cfg.voters,
        };
        let committed = r.raft_log.committed;
        let fresh = self.cfg.lease_renew * 3;
        let peer = |id: u64| {
            let addr = self.consensus.peers.get(&id);
            let alive = addr.is_some_and(|addr| self.view.alive.get(addr).is_some_and(|a| raft_id(&a.life()) == id));
            let progress = r.prs().get(id);
            PeerHealth {
                alive,
                healthy: alive
                    && addr.is_some_and(|addr| {
                        *addr == self.me.addr
                            || self.leadership.last_renewal.get(addr).is_some_and(|&t| now < t + fresh)
                    }),
                caught_up: progress.is_some_and(|p| p.matched >= committed),
                recent_active: progress.is_some_and(|p| p.recent_active),
            }
        };
        let Some(change) = voter_change(group, peer) else { return };
        let (kind, node_id) = match change {
            VoterChange::TransferLeadership(next) => {
                tracing::debug!(next, "leaving: transferring leadership");
                if let Some(raft) = &mut self.consensus.raft {
                    raft.node.transfer_leader(next);
                }
                self.leadership.conf_change_at = Some(now);
                return;
            }
            VoterChange::AddLearner(id) => (ConfChangeType::AddLearnerNode, id),
            VoterChange::Promote(id) => (ConfChangeType::AddNode, id),
            VoterChange::Remove(id) => (ConfChangeType::RemoveNode, id),
        };
        let Some(raft) = &mut self.consensus.raft else { return };
        let mut cc = ConfChange::default();
        cc.set_change_type(kind);
        cc.node_id = node_id;
        if raft.node.propose_conf_change(vec![], cc).is_ok() {
            self.leadership.conf_change_at = Some(now);
            tracing::debug!(?kind, node_id, "proposed a voter change");
        }
        self.process_ready(now);
    }
}
