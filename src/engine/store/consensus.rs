//! The Raft driving: this life's Raft peer (started by a bootstrap or by the
//! first message of the group), the earlier lives' peers still in the group,
//! stepping messages, the ready loop, and applying committed entries to the
//! replicated state every voter builds alike.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, Entry, EntryType, Message as RaftMessage, MessageType};
use raft::{RawNode, StateRole, storage::MemStorage};
use rand::RngExt;

use super::slog_bridge::RaftLog;
use super::{CHAIN_KEPT_MAX, EpochStore, StoreEntry, StoreEvent, StoreOutput, raft_id};
use crate::engine::epoch::Configuration;
use crate::engine::id::NodeId;
use crate::engine::time::Instant;
use crate::engine::wire::{self, Message};

/// Least Raft ticks per election timeout; each node draws its own between
/// this and twice this (see the module docs of the store).
const ELECTION_TICKS: usize = 10;
/// Raft ticks per leader heartbeat.
const HEARTBEAT_TICKS: usize = 2;
/// Raft peers of earlier lives kept running until the group removes them
/// (see [`Consensus::retiring`]); past it, the oldest stops.
const RETIRING_MAX: usize = 4;
/// Passes of one peer's ready loop per input: each pass sends, persists and
/// applies what the previous one produced.
const READY_PASSES_MAX: usize = 16;

/// This node's Raft peers and where the group's peers are.
#[derive(Default)]
pub(super) struct Consensus {
    /// This life's Raft peer, once started.
    pub(super) raft: Option<Raft>,
    /// Raft peers of this node's earlier lives that the group still counts
    /// as voters. A node leaves the Raft group only through a committed
    /// change: a removed life's peer keeps voting and acknowledging (it
    /// never campaigns for long: as leader it hands leadership over) until
    /// it applies the change that removes it, or the leader reports no
    /// voter at this address.
    pub(super) retiring: Vec<Raft>,
    /// When the Raft peers tick next.
    pub(super) next_tick: Option<Instant>,
    /// The addresses of Raft peers, by Raft id: the latest configuration's
    /// members, plus whoever the group still counts and whoever sent a Raft
    /// message.
    pub(super) peers: BTreeMap<u64, SocketAddr>,
}

impl Consensus {
    /// Whether this life's peer is the group's leader.
    pub(super) fn is_leader(&self) -> bool {
        self.raft.as_ref().is_some_and(|r| r.node.raft.state == StateRole::Leader)
    }

    /// The group's voters' addresses as this life's peer counts them,
    /// sorted.
    pub(super) fn voter_addrs(&self) -> Vec<SocketAddr> {
        let Some(raft) = &self.raft else { return Vec::new() };
        let mut out: Vec<SocketAddr> =
            raft.node.raft.prs().conf().voters().ids().iter().filter_map(|id| self.peers.get(&id).copied()).collect();
        out.sort();
        out
    }

    /// A new life: this life's peer is gone, and the old one keeps running
    /// if the group counts it as a voter (see [`Consensus::retiring`]).
    pub(super) fn retire(&mut self) {
        if let Some(old) = self.raft.take()
            && old.is_voter_here()
        {
            self.retiring.push(old);
            while self.retiring.len() > RETIRING_MAX {
                self.retiring.remove(0);
            }
        }
        if self.retiring.is_empty() {
            self.next_tick = None;
        }
    }
}

/// What the committed log built: the same on every voter.
#[derive(Default)]
pub(super) struct Applied {
    /// The configurations applied, by epoch: the last [`CHAIN_KEPT_MAX`],
    /// for answering fetches and checks.
    pub(super) chain: BTreeMap<u64, Configuration>,
    /// Committed suspicion votes: who suspects each life.
    pub(super) votes: BTreeMap<NodeId, BTreeSet<NodeId>>,
    /// Per address, the highest incarnation a committed epoch removed: that
    /// life (and older ones) may never be admitted again. Bounded by the
    /// number of addresses ever in the cluster.
    pub(super) retired: BTreeMap<SocketAddr, u64>,
}

/// One Raft peer of this node.
pub(super) struct Raft {
    pub(super) node: RawNode<MemStorage>,
    /// The founding voter's Raft id: every member of the group starts from
    /// the same initial state, a configuration of that one voter.
    pub(super) origin: u64,
    /// The index of the last entry applied.
    applied: u64,
}

/// What one pass of raft-rs's ready loop left to do: send, apply, answer.
struct Readied {
    messages: Vec<RaftMessage>,
    committed: Vec<Entry>,
    read_states: Vec<raft::ReadState>,
}

impl Raft {
    /// This peer's Raft id.
    pub(super) fn id(&self) -> u64 {
        self.node.raft.id
    }

    /// Whether the configuration this peer applied counts it as a voter.
    pub(super) fn is_voter_here(&self) -> bool {
        self.node.raft.prs().conf().voters().contains(self.id())
    }

    /// The Raft ids this peer's applied configuration counts, voters and
    /// learners.
    pub(super) fn group(&self) -> Vec<u64> {
        let conf = self.node.raft.prs().conf();
        conf.voters().ids().iter().chain(conf.learners().iter().copied()).collect()
    }

    /// One pass of the ready loop: persist (in memory) and advance. The
    /// caller sends the messages, applies the entries and then calls
    /// `advance_apply`.
    fn ready(&mut self) -> Option<Readied> {
        if !self.node.has_ready() {
            return None;
        }
        let mut ready = self.node.ready();
        let mut messages = ready.take_messages();
        let store = self.node.raft.raft_log.store.clone();
        if *ready.snapshot() != raft::eraftpb::Snapshot::default() {
            let _ = store.wl().apply_snapshot(ready.snapshot().clone());
        }
        let mut committed = ready.take_committed_entries();
        let read_states = ready.take_read_states();
        if let Err(e) = store.wl().append(ready.entries()) {
            tracing::error!(error = %e, "Raft log append");
        }
        if let Some(hs) = ready.hs() {
            store.wl().set_hardstate(hs.clone());
        }
        messages.extend(ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            store.wl().mut_hard_state().set_commit(commit);
        }
        messages.extend(light.take_messages());
        committed.extend(light.take_committed_entries());
        Some(Readied { messages, committed, read_states })
    }

    /// Applies a committed configuration change to this peer.
    fn apply_conf_change(&mut self, entry: &Entry) {
        // Through the bounded decoder: an entry's bytes came from a peer.
        let Ok(cc) = wire::decode_protobuf::<ConfChange>(&entry.data) else { return };
        match self.node.apply_conf_change(&cc) {
            Ok(cs) => self.node.raft.raft_log.store.wl().set_conf_state(cs),
            Err(e) => tracing::warn!(error = %e, "conf change"),
        }
    }
}

impl EpochStore {
    /// Starts this life's Raft peer in the group founded by `origin`.
    pub(super) fn start_raft(&mut self, origin: u64, now: Instant) {
        let id = raft_id(&self.me);
        // Each node draws its own election timeout once, from its seeded
        // generator: raft-rs then has a single value to pick from.
        let election = ELECTION_TICKS + self.rng.random_range(0..ELECTION_TICKS);
        let config = raft::Config {
            id,
            election_tick: election,
            heartbeat_tick: HEARTBEAT_TICKS,
            min_election_tick: election,
            max_election_tick: election + 1,
            pre_vote: true,
            check_quorum: true,
            ..raft::Config::default()
        };
        let storage = MemStorage::new();
        storage.initialize_with_conf_state((vec![origin], vec![]));
        let logger = slog::Logger::root(RaftLog, slog::o!());
        match RawNode::new(&config, storage, &logger) {
            Ok(node) => {
                self.consensus.raft = Some(Raft { node, origin, applied: 0 });
                self.consensus.peers.insert(id, self.me.addr);
                self.schedule_tick(now);
            }
            Err(e) => tracing::error!(error = %e, "cannot start the Raft node"),
        }
    }

    /// Arms the next Raft tick.
    pub(super) fn schedule_tick(&mut self, now: Instant) {
        // ±20% jitter per tick: this is where elections desynchronize.
        let base = self.cfg.raft_tick.as_micros() as u64;
        let jitter = self.rng.random_range(base * 8 / 10..=base * 12 / 10);
        self.consensus.next_tick = Some(now + Duration::from_micros(jitter));
    }

    /// Ticks every Raft peer of this node once, and arms the next tick.
    pub(super) fn tick_raft(&mut self, now: Instant) {
        if let Some(raft) = &mut self.consensus.raft {
            raft.node.tick();
        }
        for raft in &mut self.consensus.retiring {
            raft.node.tick();
        }
        self.schedule_tick(now);
        self.process_ready(now);
    }

    /// Steps a Raft message from the peer at `from` into the peer it is for:
    /// this life's (started by the group's first message), or an earlier
    /// life's still in the group.
    pub(super) fn step_raft(
        &mut self,
        from: SocketAddr,
        origin: u64,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), String> {
        let msg: RaftMessage = wire::decode_protobuf(bytes).map_err(|e| format!("bad Raft message: {e}"))?;
        if msg.to != raft_id(&self.me) {
            let Some(raft) = self.consensus.retiring.iter_mut().find(|r| r.id() == msg.to) else {
                return Err(format!("Raft message for peer {:x}, not this life", msg.to));
            };
            if raft.origin != origin {
                return Err(format!("Raft message of another group (origin {origin:x})"));
            }
            self.consensus.peers.insert(msg.from, from);
            match raft.node.step(msg) {
                Ok(()) | Err(raft::Error::StepPeerNotFound) => {}
                Err(e) => return Err(format!("Raft rejected a message: {e}")),
            }
            self.process_ready(now);
            return Ok(());
        }
        self.consensus.peers.insert(msg.from, from);
        if self.consensus.raft.is_none() {
            let initial = matches!(
                msg.get_msg_type(),
                MessageType::MsgAppend
                    | MessageType::MsgHeartbeat
                    | MessageType::MsgSnapshot
                    | MessageType::MsgRequestVote
                    | MessageType::MsgRequestPreVote
            );
            if !initial {
                return Ok(());
            }
            self.start_raft(origin, now);
        }
        let raft = self.consensus.raft.as_mut().expect("started above");
        if raft.origin != origin {
            return Err(format!("Raft message of another group (origin {origin:x})"));
        }
        match raft.node.step(msg) {
            Ok(()) => {}
            // From a peer the group has removed (or not added yet): routine
            // while the voter set changes.
            Err(raft::Error::StepPeerNotFound) => {
                tracing::debug!(peer = %from, "Raft message from a peer outside the group");
                return Ok(());
            }
            Err(e) => return Err(format!("Raft rejected a message: {e}")),
        }
        self.process_ready(now);
        Ok(())
    }

    /// Runs Raft's ready loop: send, persist (in memory), apply; for this
    /// life's peer, then for the earlier lives' peers still in the group.
    pub(super) fn process_ready(&mut self, now: Instant) {
        self.process_retiring();
        for _ in 0..READY_PASSES_MAX {
            let Some(raft) = &mut self.consensus.raft else { break };
            let origin = raft.origin;
            let Some(Readied { messages, committed, read_states }) = raft.ready() else { break };
            self.send_raft(origin, messages);
            self.apply(committed, now);
            if let Some(raft) = &mut self.consensus.raft {
                raft.node.advance_apply();
            }
            self.answer_reads(read_states, now);
        }
        self.refresh_leader(now);
    }

    /// The ready loop of the earlier lives' peers ([`Consensus::retiring`]):
    /// they only vote, acknowledge and apply configuration changes (the
    /// epochs are this life's business). A peer whose applied configuration
    /// no longer counts it as a voter was removed by a committed change and
    /// stops; one that became leader hands leadership to a voter that stays.
    fn process_retiring(&mut self) {
        if self.consensus.retiring.is_empty() {
            return;
        }
        let mut sends = Vec::new();
        let active = &self.learned.active_raft_ids;
        for raft in &mut self.consensus.retiring {
            if raft.node.raft.state == StateRole::Leader && raft.is_voter_here() {
                let id = raft.id();
                let r = &raft.node.raft;
                let committed = r.raft_log.committed;
                let stays = |v: u64| v != id && active.contains(&v);
                let caught_up = |v: u64| r.prs().get(v).is_some_and(|p| p.matched >= committed);
                let voters = r.prs().conf().voters().ids();
                let next = voters
                    .iter()
                    .find(|&v| stays(v) && caught_up(v))
                    .or_else(|| voters.iter().find(|&v| stays(v)))
                    .or_else(|| voters.iter().find(|&v| v != id));
                if let Some(next) = next
                    && r.lead_transferee != Some(next)
                {
                    tracing::debug!(next, "an earlier life's Raft peer leads: transferring leadership");
                    raft.node.transfer_leader(next);
                }
            }
            for _ in 0..READY_PASSES_MAX {
                let Some(Readied { messages, committed, .. }) = raft.ready() else { break };
                sends.push((raft.origin, messages));
                for entry in &committed {
                    raft.applied = raft.applied.max(entry.index);
                    if entry.get_entry_type() == EntryType::EntryConfChange && !entry.data.is_empty() {
                        raft.apply_conf_change(entry);
                    }
                }
                raft.node.advance_apply();
            }
        }
        self.consensus.retiring.retain(|raft| {
            let stays = raft.is_voter_here();
            if !stays {
                tracing::debug!(peer = raft.id(), "an earlier life's Raft peer was removed from the group");
            }
            stays
        });
        for (origin, messages) in sends {
            self.send_raft(origin, messages);
        }
        if self.consensus.raft.is_none() && self.consensus.retiring.is_empty() {
            self.consensus.next_tick = None;
        }
    }

    fn send_raft(&mut self, origin: u64, messages: Vec<RaftMessage>) {
        for msg in messages {
            let Some(&to) = self.consensus.peers.get(&msg.to) else {
                tracing::debug!(peer = msg.to, "no address for a Raft peer");
                continue;
            };
            match msg.write_to_bytes() {
                Ok(bytes) => self.outputs.push(StoreOutput::Send(to, Message::Raft { origin, bytes })),
                Err(e) => tracing::error!(error = %e, "encoding a Raft message"),
            }
        }
    }

    fn apply(&mut self, entries: Vec<Entry>, now: Instant) {
        for entry in entries {
            if let Some(raft) = &mut self.consensus.raft {
                raft.applied = raft.applied.max(entry.index);
            }
            if entry.data.is_empty() {
                continue;
            }
            match entry.get_entry_type() {
                EntryType::EntryConfChange => {
                    if let Some(raft) = &mut self.consensus.raft {
                        raft.apply_conf_change(&entry);
                    }
                    self.leadership.conf_change_at = None;
                }
                EntryType::EntryNormal => match rmp_serde::from_slice::<StoreEntry>(&entry.data) {
                    Ok(StoreEntry::Epoch(config)) => self.apply_epoch(config, now),
                    Ok(StoreEntry::Vote { target, by }) => {
                        self.leadership.proposed_votes.remove(&(target.clone(), by.clone()));
                        // Against the applied chain, not what gossip taught:
                        // every voter must decide the same.
                        let applied = self.applied.chain.last_key_value().map(|(_, c)| c);
                        let valid = applied.is_some_and(|c| c.contains(&target) && c.contains(&by));
                        if valid && self.applied.votes.entry(target.clone()).or_default().insert(by.clone()) {
                            self.stats.votes_applied += 1;
                            self.outputs.push(StoreOutput::Event(StoreEvent::VoteCommitted { target, by }));
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "undecodable committed entry"),
                },
                EntryType::EntryConfChangeV2 => {}
            }
        }
    }

    fn apply_epoch(&mut self, config: Configuration, now: Instant) {
        let applied = self.applied.chain.last_key_value().map_or(0, |(&e, _)| e);
        // The chain is one chain: only the next epoch applies; a proposal
        // that lost a race is dropped the same way on every voter.
        let origin = self.consensus.raft.as_ref().map(|r| r.origin);
        if config.epoch != applied + 1 || !config.is_well_formed() || origin != Some(config.group) {
            return;
        }
        let hash = config.hash();
        self.stats.epochs_applied += 1;
        if let Some((_, previous)) = self.applied.chain.last_key_value() {
            for m in &previous.members {
                if config.member(m.id.addr).is_none_or(|now_member| now_member.id.incarnation > m.id.incarnation) {
                    let retired = self.applied.retired.entry(m.id.addr).or_insert(0);
                    *retired = (*retired).max(m.id.incarnation);
                }
            }
            // Admission counts as a renewal, or a new member would be taken
            // for lapsed before its first grant.
            if self.leadership.since.is_some() {
                for m in &config.members {
                    if previous.member(m.id.addr).is_none_or(|p| p.id != m.id) {
                        self.leadership.last_renewal.insert(m.id.addr, now);
                    }
                }
            }
        }
        self.outputs.push(StoreOutput::Event(StoreEvent::EpochCommitted { epoch: config.epoch, hash }));
        self.applied.votes.retain(|target, _| config.contains(target));
        self.leadership.applied(&config);
        self.applied.chain.insert(config.epoch, config.clone());
        while self.applied.chain.len() > CHAIN_KEPT_MAX {
            self.applied.chain.pop_first();
        }
        self.learn(config);
    }
}
