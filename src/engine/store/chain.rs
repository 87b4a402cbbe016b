//! The learned chain: every node (voter or not) keeps the latest
//! configuration it learned. It hears of newer epochs by gossip (and in
//! lease grants), fetches them from whoever announced them, and learns a
//! configuration once it checks out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::consensus::Raft;
use super::{CHAIN_KEPT_MAX, EpochStore, StoreEvent, StoreOutput, raft_id};
use crate::engine::epoch::{Configuration, MemberStatus};
use crate::engine::time::Instant;
use crate::engine::wire::EpochMsg;

/// How long a fetch of a configuration may stay unanswered before another.
const FETCH_RETRY: Duration = Duration::from_secs(1);

/// The latest configuration this node learned, and what it heard of later
/// ones.
#[derive(Default)]
pub(super) struct Learned {
    /// The latest configuration.
    pub(super) latest: Option<Configuration>,
    /// The hash of `latest`, computed once.
    pub(super) latest_hash: u64,
    /// Raft ids of `latest`'s active members, in address order, computed once.
    pub(super) active_raft_ids: Vec<u64>,
    /// Hashes announced for epochs not learned yet (the last
    /// [`CHAIN_KEPT_MAX`]): a fetched configuration must match.
    announced: BTreeMap<u64, u64>,
    /// The fetch in flight: from whom, which epoch, since when.
    fetch: Option<(SocketAddr, u64, Instant)>,
}

impl Learned {
    /// The latest epoch learned, 0 before any.
    pub(super) fn epoch(&self) -> u64 {
        self.latest.as_ref().map_or(0, |c| c.epoch)
    }

    /// When the fetch in flight is due for a retry.
    pub(super) fn fetch_retry_at(&self) -> Option<Instant> {
        self.fetch.map(|(_, _, at)| at + FETCH_RETRY)
    }
}

impl EpochStore {
    /// `(epoch, hash)` heard from `from` (by gossip, or in a lease grant).
    pub(super) fn on_heard(&mut self, epoch: u64, hash: u64, from: Option<SocketAddr>, now: Instant) {
        if epoch <= self.learned.epoch() {
            return;
        }
        self.learned.announced.insert(epoch, hash);
        while self.learned.announced.len() > CHAIN_KEPT_MAX {
            self.learned.announced.pop_first();
        }
        if let Some(from) = from.or(self.lease.leader) {
            self.fetch_from(from, epoch, now);
        }
    }

    fn fetch_from(&mut self, from: SocketAddr, epoch: u64, now: Instant) {
        if self.learned.fetch.is_some_and(|(_, e, at)| e >= epoch && now < at + FETCH_RETRY) {
            return;
        }
        self.learned.fetch = Some((from, epoch, now));
        self.send(from, EpochMsg::Fetch { epoch });
    }

    /// A fetch went unanswered for [`FETCH_RETRY`]: ask again, the leader
    /// if known, else the same node.
    pub(super) fn retry_fetch(&mut self, now: Instant) {
        if let Some((from, epoch, at)) = self.learned.fetch
            && now >= at + FETCH_RETRY
        {
            let target = self.lease.leader.unwrap_or(from);
            self.learned.fetch = None;
            self.fetch_from(target, epoch, now);
        }
    }

    /// Answers a fetch with the latest configuration if it is recent
    /// enough, else with the one asked for if this voter still keeps it.
    pub(super) fn answer_fetch(&mut self, from: SocketAddr, epoch: u64) {
        let answer = self
            .learned
            .latest
            .as_ref()
            .filter(|c| c.epoch >= epoch)
            .cloned()
            .or_else(|| self.applied.chain.get(&epoch).cloned());
        if let Some(config) = answer {
            self.send(from, EpochMsg::Config(config));
        }
    }

    /// Asks the leader (or, without one, every voter known) for the
    /// configuration of `epoch`, which this node skipped.
    pub(crate) fn fetch_past(&mut self, epoch: u64) {
        let targets: Vec<SocketAddr> = match self.lease.leader {
            Some(leader) => vec![leader],
            None => self.lease.voters.clone(),
        };
        let me = self.me.addr;
        for to in targets.into_iter().filter(|&to| to != me) {
            self.send(to, EpochMsg::FetchPast { epoch });
        }
    }

    /// Answers a fetch of one past configuration, if this node keeps it.
    pub(super) fn answer_fetch_past(&mut self, from: SocketAddr, epoch: u64) {
        let answer = self
            .learned
            .latest
            .as_ref()
            .filter(|c| c.epoch == epoch)
            .or_else(|| self.applied.chain.get(&epoch))
            .cloned();
        if let Some(config) = answer {
            self.send(from, EpochMsg::Past(config));
        }
    }

    /// A past configuration from a peer: for the host, if it is of this
    /// cluster and older than the latest learned.
    pub(super) fn take_past(&mut self, config: Configuration) {
        let Some(latest) = self.learned.latest.as_ref() else { return };
        if config.group != latest.group || config.epoch >= latest.epoch || !config.is_well_formed() {
            return;
        }
        self.outputs.push(StoreOutput::Past(config));
    }

    /// Takes a configuration as learned, if it is newer than what this node
    /// knows and belongs to its cluster.
    pub(super) fn learn(&mut self, config: Configuration) {
        let known = self.learned.epoch();
        if config.epoch <= known || !config.is_well_formed() {
            return;
        }
        let group = self.learned.latest.as_ref().map(|c| c.group).or(self.consensus.raft.as_ref().map(|r| r.origin));
        if group.is_some_and(|g| g != config.group) {
            tracing::warn!(
                group = %format!("{:016x}", config.group),
                "a configuration of another cluster (bootstrapped elsewhere); ignored"
            );
            return;
        }
        let hash = config.hash();
        if self.learned.announced.get(&config.epoch).is_some_and(|&h| h != hash) {
            tracing::warn!(epoch = config.epoch, "a configuration does not match its announced hash; ignored");
            return;
        }
        if self.learned.fetch.is_some_and(|(_, e, _)| e <= config.epoch) {
            self.learned.fetch = None;
        }
        if config.contains(&self.me) {
            self.life.member_of = Some(config.epoch);
        }
        // Raft peers: the configuration's members, plus whoever the Raft
        // group still counts (a removed voter until its removal applies).
        let consensus = &mut self.consensus;
        let group: BTreeSet<u64> = consensus.raft.iter().chain(&consensus.retiring).flat_map(Raft::group).collect();
        let members: BTreeMap<u64, SocketAddr> = config.members.iter().map(|m| (raft_id(&m.id), m.id.addr)).collect();
        consensus.peers.retain(|id, _| group.contains(id) || members.contains_key(id));
        consensus.peers.extend(members);
        // Votes about lives no longer in the configuration are moot.
        self.view.down.retain(|t| config.contains(t));
        self.outputs.push(StoreOutput::Event(StoreEvent::EpochLearned { epoch: config.epoch, hash }));
        self.outputs.push(StoreOutput::Announce(config.epoch, hash));
        self.learned.active_raft_ids =
            config.members.iter().filter(|m| m.status == MemberStatus::Active).map(|m| raft_id(&m.id)).collect();
        self.learned.latest_hash = hash;
        self.learned.latest = Some(config);
        if self.was_removed() && !self.life.removed_reported {
            self.life.removed_reported = true;
            self.outputs.push(StoreOutput::Event(StoreEvent::Removed));
        }
    }
}
