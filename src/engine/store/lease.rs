//! Leases: this node renews its lease with the leader every `lease_renew`;
//! the leader answers renewals with one linearizable read per Raft tick and
//! grants a lease to each member of the latest configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use rand::RngExt;

use super::{EpochStore, StoreEvent, StoreOutput};
use crate::engine::id::NodeId;
use crate::engine::time::Instant;
use crate::engine::wire::{EpochMsg, LeaseStatus};

/// Lease requests the leader has taken but not answered yet; past it, new
/// ones are refused (the requester retries at its next renewal).
pub const LEASE_READS_MAX: usize = 4096;
/// Lease requests remembered (by sequence number) for their send times.
const LEASE_SENT_KEPT: usize = 16;

/// This node's lease, and whom it asks to renew it.
#[derive(Default)]
pub(super) struct Lease {
    /// The leader, as this node last heard.
    pub(super) leader: Option<SocketAddr>,
    /// The voters' addresses, as this node last heard.
    pub(super) voters: Vec<SocketAddr>,
    /// Whom to ask before anything else is known.
    pub(super) seeds: Vec<SocketAddr>,
    /// The end of the lease granted, on this node's clock.
    pub(super) end: Option<Instant>,
    /// The latest request's sequence number.
    pub(super) seq: u64,
    /// When each of the last [`LEASE_SENT_KEPT`] requests was sent: a lease
    /// runs from its request's send time.
    pub(super) sent: BTreeMap<u64, Instant>,
    /// The latest lease request that got an answer (grant or redirect).
    pub(super) answered: u64,
    /// When to renew the lease next; armed once there is someone to ask.
    pub(super) next_renew: Option<Instant>,
}

impl Lease {
    /// Starts lease renewals (at `at`) if they are not running yet.
    pub(super) fn arm(&mut self, at: Instant) {
        if self.next_renew.is_none() {
            self.next_renew = Some(at);
        }
    }

    /// A new life: grants still on their way were for the old one.
    pub(super) fn renew_identity(&mut self) {
        self.end = None;
        self.sent.clear();
        self.answered = self.seq;
    }
}

/// A lease request the leader has taken.
pub(super) struct PendingRead {
    /// Where it came from (the requester, or a node that forwarded it).
    pub(super) from: SocketAddr,
    /// The requesting life.
    pub(super) id: NodeId,
    /// Its sequence number.
    pub(super) seq: u64,
    /// The latest epoch in which the requester knows it was a member.
    pub(super) member_of: Option<u64>,
}

/// The leader's lease requests waiting for a linearizable read.
#[derive(Default)]
pub(super) struct LeaseReads {
    /// Lease requests waiting for the next read; one linearizable read per
    /// Raft tick answers all of them.
    pub(super) queued: Vec<PendingRead>,
    /// Reads in flight, by context, with the requests they answer.
    pub(super) in_flight: BTreeMap<u64, Vec<PendingRead>>,
    /// The next read's context.
    next: u64,
}

impl LeaseReads {
    /// Requests taken and not answered yet.
    fn waiting(&self) -> usize {
        self.queued.len() + self.in_flight.values().map(Vec::len).sum::<usize>()
    }

    /// Every request taken and not answered yet, in flight first: a
    /// deposed leader answers them all with a redirect.
    pub(super) fn take_all(&mut self) -> Vec<PendingRead> {
        let mut reads: Vec<PendingRead> = std::mem::take(&mut self.in_flight).into_values().flatten().collect();
        reads.append(&mut self.queued);
        reads
    }
}

impl EpochStore {
    /// Asks the leader (or whoever may know it) to renew this node's lease.
    pub(super) fn renew_lease(&mut self, now: Instant) {
        // The last request went unanswered: the leader we know of may be
        // gone. Ask around instead.
        if self.lease.seq > self.lease.answered {
            self.lease.leader = None;
        }
        let target = self.lease.leader.or_else(|| {
            let candidates: Vec<SocketAddr> = if !self.lease.voters.is_empty() {
                self.lease.voters.clone()
            } else if let Some(c) = &self.learned.latest {
                c.members.iter().map(|m| m.id.addr).collect()
            } else if !self.lease.seeds.is_empty() {
                self.lease.seeds.clone()
            } else {
                self.view.alive.keys().copied().collect()
            };
            if candidates.is_empty() { None } else { Some(candidates[self.rng.random_range(0..candidates.len())]) }
        });
        let Some(target) = target else { return };
        self.lease.seq += 1;
        self.lease.sent.insert(self.lease.seq, now);
        while self.lease.sent.len() > LEASE_SENT_KEPT {
            self.lease.sent.pop_first();
        }
        self.stats.lease_requests += 1;
        let msg = EpochMsg::LeaseRequest { id: self.me.clone(), seq: self.lease.seq, member_of: self.life.member_of };
        self.reply(target, msg);
    }

    /// A lease request, from the requester or forwarded by a node that is
    /// not the leader.
    pub(super) fn on_lease_request(
        &mut self,
        from: SocketAddr,
        id: NodeId,
        seq: u64,
        member_of: Option<u64>,
        now: Instant,
    ) {
        if !self.is_leader() {
            // Forward once, straight from the requester, to the leader
            // this node knows; the leader answers the requester's
            // own address. Otherwise point the requester elsewhere.
            match self.lease.leader {
                Some(leader) if from == id.addr && leader != from && leader != self.me.addr => {
                    self.send(leader, EpochMsg::LeaseRequest { id, seq, member_of });
                }
                leader => self.reply(from, EpochMsg::NotLeader { seq, leader }),
            }
            return;
        }
        if self.leadership.reads.waiting() >= LEASE_READS_MAX {
            let leader = self.lease.leader;
            self.reply(from, EpochMsg::NotLeader { seq, leader });
            return;
        }
        self.leadership.reads.queued.push(PendingRead { from, id, seq, member_of });
        if self.consensus.raft.as_ref().is_some_and(|r| r.node.raft.prs().conf().voters().ids().len() == 1) {
            // A lone voter needs no round trip: read at once.
            self.start_read(now);
        }
    }

    /// What a lease grant says about the group: who leads and who votes.
    pub(super) fn on_leader_heard(&mut self, seq: u64, leader: SocketAddr, voters: Vec<SocketAddr>) {
        self.lease.answered = self.lease.answered.max(seq);
        self.lease.leader = Some(leader);
        if !self.consensus.retiring.is_empty() && !voters.contains(&self.me.addr) {
            // No voter at this address: the group removed the earlier
            // lives' peers (a removed life is never added again),
            // perhaps while they could not hear of it.
            tracing::debug!("the group removed this node's earlier Raft peers");
            self.consensus.retiring.clear();
            if self.consensus.raft.is_none() {
                self.consensus.next_tick = None;
            }
        }
        self.lease.voters = voters;
    }

    /// What a lease grant says about this node: its lease, or its removal.
    pub(super) fn on_grant(
        &mut self,
        seq: u64,
        status: LeaseStatus,
        epoch: u64,
        hash: u64,
        leader: SocketAddr,
        now: Instant,
    ) {
        let known = self.learned.latest.as_ref().map_or(0, |c| c.epoch);
        if epoch > known {
            self.on_heard(epoch, hash, Some(leader), now);
        }
        match status {
            // A grant covers what this node owns in the grant's epoch:
            // one it has not learned yet extends nothing (its ranges
            // may have moved away in it); the next renewal will.
            LeaseStatus::Granted if epoch > known => {}
            LeaseStatus::Granted => {
                if let Some(&sent) = self.lease.sent.get(&seq) {
                    let end = sent + self.cfg.lease;
                    if self.lease.end.is_none_or(|e| e < end) {
                        self.lease.end = Some(end);
                        self.stats.lease_renewals += 1;
                        self.outputs.push(StoreOutput::Event(StoreEvent::LeaseRenewed { lease_end: end }));
                    }
                }
            }
            LeaseStatus::Removed => {
                if self.life.member_of.is_some() && !self.life.removed_reported {
                    self.life.removed_reported = true;
                    self.lease.end = None;
                    self.outputs.push(StoreOutput::Event(StoreEvent::Removed));
                }
            }
            LeaseStatus::NotMember => {}
        }
    }

    /// A redirect from a node that does not lead: a hint; with none, the
    /// next renewal tries another node.
    pub(super) fn on_not_leader(&mut self, from: SocketAddr, seq: u64, leader: Option<SocketAddr>) {
        self.lease.answered = self.lease.answered.max(seq);
        self.lease.leader = leader.filter(|&l| l != from);
    }

    /// Starts one linearizable read for every queued lease request.
    pub(super) fn start_read(&mut self, now: Instant) {
        // raft-rs drops a read until the leader has committed an entry of its
        // own term: keep the requests queued until then.
        let ready = self.consensus.raft.as_ref().is_some_and(|r| r.node.raft.commit_to_current_term());
        let reads = &mut self.leadership.reads;
        if reads.queued.is_empty() || !ready {
            return;
        }
        let batch = std::mem::take(&mut reads.queued);
        let ctx = reads.next;
        reads.next += 1;
        reads.in_flight.insert(ctx, batch);
        if let Some(raft) = &mut self.consensus.raft {
            raft.node.read_index(ctx.to_be_bytes().to_vec());
        }
        self.process_ready(now);
    }

    /// Answers the lease requests whose reads completed: a grant to each
    /// member of the latest configuration.
    pub(super) fn answer_reads(&mut self, states: Vec<raft::ReadState>, now: Instant) {
        for state in states {
            let Ok(ctx) = <[u8; 8]>::try_from(state.request_ctx.as_slice()) else { continue };
            let Some(batch) = self.leadership.reads.in_flight.remove(&u64::from_be_bytes(ctx)) else { continue };
            let voters = self.consensus.voter_addrs();
            for read in batch {
                let Some((epoch, hash, contains)) =
                    self.learned.latest.as_ref().map(|c| (c.epoch, self.learned.latest_hash, c.contains(&read.id)))
                else {
                    let leader = self.lease.leader;
                    self.reply(read.from, EpochMsg::NotLeader { seq: read.seq, leader });
                    continue;
                };
                let status = if contains {
                    self.leadership.last_renewal.insert(read.id.addr, now);
                    LeaseStatus::Granted
                } else if read.member_of.is_some_and(|e| epoch > e) {
                    LeaseStatus::Removed
                } else {
                    LeaseStatus::NotMember
                };
                let grant = EpochMsg::LeaseGrant {
                    seq: read.seq,
                    status,
                    epoch,
                    hash,
                    leader: self.me.addr,
                    voters: voters.clone(),
                };
                // To the requester itself, which may have come through another
                // node.
                self.reply(read.id.addr, grant);
            }
        }
    }
}
