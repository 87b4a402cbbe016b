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
//! raft-rs logs through `slog`; `RaftLog` forwards its records to
//! `tracing` (target `custody::engine::store::raft`).
//!
//! The Raft log and state live in memory: a restarted node is a new Raft
//! peer (its Raft id includes its incarnation) and the old one is removed
//! with its old life. Losing a majority of the voters at once loses the
//! store.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, Message as RaftMessage, MessageType};
use raft::{RawNode, StateRole, storage::MemStorage};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::config::Config;
use super::epoch::{Changes, Configuration, MemberStatus};
use super::id::{NodeId, write_addr_bytes};
use super::time::Instant;
use super::wire::{EpochMsg, LeaseStatus, Message};

/// Lease requests the leader has taken but not answered yet; past it, new
/// ones are refused (the requester retries at its next renewal).
pub const LEASE_READS_MAX: usize = 4096;
/// Configurations a voter keeps for answering fetches and checks.
pub const CHAIN_KEPT_MAX: usize = 64;
/// Least Raft ticks per election timeout; each node draws its own between
/// this and twice this (see the module docs).
const ELECTION_TICKS: usize = 10;
/// Raft ticks per leader heartbeat.
const HEARTBEAT_TICKS: usize = 2;
/// How long a proposed epoch may stay uncommitted before the leader proposes
/// again.
const PROPOSAL_RETRY: Duration = Duration::from_secs(5);
/// How long a fetch of a configuration may stay unanswered before another.
const FETCH_RETRY: Duration = Duration::from_secs(1);
/// Lease requests remembered (by sequence number) for their send times.
const LEASE_SENT_KEPT: usize = 16;
/// Raft peers of earlier lives kept running until the group removes them
/// (see [`EpochStore::renew_identity`]); past it, the oldest stops.
const RETIRING_MAX: usize = 4;

/// What the store asks the node to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreOutput {
    /// Send a message to a peer.
    Send(SocketAddr, Message),
    /// Spread `(epoch, hash)` by SWIM gossip.
    Announce(u64, u64),
    /// Tell the host.
    Event(StoreEvent),
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

/// Forwards raft-rs's `slog` records to `tracing` (target
/// `custody::engine::store::raft`), one level quieter than raft-rs uses:
/// its info (elections, configuration changes) is our debug.
struct RaftLog;

impl slog::Drain for RaftLog {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        use slog::KV;
        // Formatting costs: skip records nobody will see.
        let enabled = match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::enabled!(target: "custody::engine::store::raft", tracing::Level::ERROR)
            }
            slog::Level::Warning => tracing::enabled!(target: "custody::engine::store::raft", tracing::Level::WARN),
            slog::Level::Info => tracing::enabled!(target: "custody::engine::store::raft", tracing::Level::DEBUG),
            slog::Level::Debug | slog::Level::Trace => {
                tracing::enabled!(target: "custody::engine::store::raft", tracing::Level::TRACE)
            }
        };
        if !enabled {
            return Ok(());
        }
        let mut fields = KvText(String::new());
        let _ = values.serialize(record, &mut fields);
        let _ = record.kv().serialize(record, &mut fields);
        let message = record.msg();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "custody::engine::store::raft", "{message}{}", fields.0)
            }
            slog::Level::Warning => tracing::warn!(target: "custody::engine::store::raft", "{message}{}", fields.0),
            slog::Level::Info => tracing::debug!(target: "custody::engine::store::raft", "{message}{}", fields.0),
            slog::Level::Debug | slog::Level::Trace => {
                tracing::trace!(target: "custody::engine::store::raft", "{message}{}", fields.0)
            }
        }
        Ok(())
    }
}

/// Collects slog key-values as ` key=value` text.
struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments<'_>) -> slog::Result {
        use std::fmt::Write;
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

struct Raft {
    node: RawNode<MemStorage>,
    /// The founding voter's Raft id: every member of the group starts from
    /// the same initial state, a configuration of that one voter.
    origin: u64,
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
    fn id(&self) -> u64 {
        self.node.raft.id
    }

    /// Whether the configuration this peer applied counts it as a voter.
    fn is_voter_here(&self) -> bool {
        self.node.raft.prs().conf().voters().contains(self.id())
    }

    /// The Raft ids this peer's applied configuration counts, voters and
    /// learners.
    fn group(&self) -> Vec<u64> {
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
        let mut cc = ConfChange::default();
        if cc.merge_from_bytes(&entry.data).is_err() {
            return;
        }
        match self.node.apply_conf_change(&cc) {
            Ok(cs) => self.node.raft.raft_log.store.wl().set_conf_state(cs),
            Err(e) => tracing::warn!(error = %e, "conf change"),
        }
    }
}

struct PendingRead {
    from: SocketAddr,
    id: NodeId,
    seq: u64,
    member_of: Option<u64>,
}

/// What only the leader keeps.
#[derive(Default)]
struct Leadership {
    since: Option<Instant>,
    last_renewal: BTreeMap<SocketAddr, Instant>,
    leave_requests: BTreeSet<NodeId>,
    /// Leaving members that reported their handoffs done.
    handed_off: BTreeSet<NodeId>,
    /// When this leader first saw each member as leaving: its removal waits
    /// for its handoffs until `handoff_timeout` after that.
    leaving_since: BTreeMap<NodeId, Instant>,
    wanted: Changes,
    wanted_since: Option<Instant>,
    proposed: Option<(u64, Instant)>,
    proposed_votes: BTreeSet<(NodeId, NodeId)>,
    conf_change_at: Option<Instant>,
    /// Lease requests waiting for the next read; one linearizable read per
    /// Raft tick answers all of them.
    queued: Vec<PendingRead>,
    /// Reads in flight, by context, with the requests they answer.
    reads: BTreeMap<u64, Vec<PendingRead>>,
    next_read: u64,
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

/// One node's part of the epoch store.
pub(crate) struct EpochStore {
    cfg: Config,
    me: NodeId,
    raft: Option<Raft>,
    /// Raft peers of this node's earlier lives that the group still counts
    /// as voters. A node leaves the Raft group only through a committed
    /// change: a removed life's peer keeps voting and acknowledging (it
    /// never campaigns for long: as leader it hands leadership over) until
    /// it applies the change that removes it, or the leader reports no
    /// voter at this address.
    retiring: Vec<Raft>,
    next_tick: Option<Instant>,
    rng: Xoshiro256PlusPlus,
    latest: Option<Configuration>,
    /// The hash of `latest`, computed once.
    latest_hash: u64,
    /// Raft ids of `latest`'s active members, in address order, computed once.
    active_raft_ids: Vec<u64>,
    chain: BTreeMap<u64, Configuration>,
    announced: BTreeMap<u64, u64>,
    fetch: Option<(SocketAddr, u64, Instant)>,
    leader: Option<SocketAddr>,
    voters: Vec<SocketAddr>,
    peers: BTreeMap<u64, SocketAddr>,
    lease_end: Option<Instant>,
    lease_seq: u64,
    lease_sent: BTreeMap<u64, Instant>,
    /// The latest lease request that got an answer (grant or redirect).
    lease_answered: u64,
    /// When to renew the lease next; armed once there is someone to ask.
    next_renew: Option<Instant>,
    member_of: Option<u64>,
    seeds: Vec<SocketAddr>,
    swim_alive: BTreeMap<SocketAddr, NodeId>,
    swim_down: BTreeSet<NodeId>,
    leaving: bool,
    /// This leaving node reported its handoffs done.
    handed_off: bool,
    votes: BTreeMap<NodeId, BTreeSet<NodeId>>,
    /// Per address, the highest incarnation a committed epoch removed: that
    /// life (and older ones) may never be admitted again. Part of the
    /// replicated state (built from applied epochs), bounded by the number of
    /// addresses ever in the cluster.
    retired: BTreeMap<SocketAddr, u64>,
    /// Whether `Removed` was reported for this life already.
    removed_reported: bool,
    leadership: Leadership,
    outputs: Vec<StoreOutput>,
    stats: StoreStats,
}

impl EpochStore {
    pub(crate) fn new(me: NodeId, cfg: Config, seed: u64) -> EpochStore {
        let me = me.life();
        let mut swim_alive = BTreeMap::new();
        swim_alive.insert(me.addr, me.clone());
        EpochStore {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            next_renew: None,
            me,
            cfg,
            raft: None,
            retiring: Vec::new(),
            next_tick: None,
            latest: None,
            latest_hash: 0,
            active_raft_ids: Vec::new(),
            chain: BTreeMap::new(),
            announced: BTreeMap::new(),
            fetch: None,
            leader: None,
            voters: Vec::new(),
            peers: BTreeMap::new(),
            lease_end: None,
            lease_seq: 0,
            lease_sent: BTreeMap::new(),
            lease_answered: 0,
            member_of: None,
            seeds: Vec::new(),
            swim_alive,
            swim_down: BTreeSet::new(),
            leaving: false,
            handed_off: false,
            votes: BTreeMap::new(),
            retired: BTreeMap::new(),
            removed_reported: false,
            leadership: Leadership::default(),
            outputs: Vec::new(),
            stats: StoreStats::default(),
        }
    }

    pub(crate) fn drain(&mut self) -> std::vec::Drain<'_, StoreOutput> {
        self.outputs.drain(..)
    }

    pub(crate) fn stats(&self) -> StoreStats {
        self.stats
    }

    /// The latest configuration this node knows.
    pub(crate) fn latest(&self) -> Option<&Configuration> {
        self.latest.as_ref()
    }

    pub(crate) fn leader(&self) -> Option<SocketAddr> {
        self.leader
    }

    pub(crate) fn voters(&self) -> &[SocketAddr] {
        &self.voters
    }

    pub(crate) fn lease_end(&self) -> Option<Instant> {
        self.lease_end
    }

    pub(crate) fn is_voter(&self) -> bool {
        self.raft.is_some()
    }

    /// How many Raft peers of earlier lives this node still runs.
    #[cfg(test)]
    pub(crate) fn earlier_peers(&self) -> usize {
        self.retiring.len()
    }

    /// Whether the Raft group may still count a peer of this node (this
    /// life's or an earlier one's) as a voter: as long as it does, stopping
    /// the node would take a live voter from the group's quorum.
    pub(crate) fn holds_vote(&self) -> bool {
        !self.retiring.is_empty() || self.raft.as_ref().is_some_and(Raft::is_voter_here)
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.raft.as_ref().is_some_and(|r| r.node.raft.state == StateRole::Leader)
    }

    pub(crate) fn set_seeds(&mut self, seeds: &[SocketAddr], now: Instant) {
        self.seeds = seeds.to_vec();
        self.arm_renewal(now + self.cfg.lease_renew);
    }

    /// Starts lease renewals (at `at`) if they are not running yet.
    fn arm_renewal(&mut self, at: Instant) {
        if self.next_renew.is_none() {
            self.next_renew = Some(at);
        }
    }

    /// Whether this life is a member of the latest configuration.
    pub(crate) fn is_member(&self) -> bool {
        self.latest.as_ref().is_some_and(|c| c.contains(&self.me))
    }

    /// Whether this life was a member and a later configuration no longer
    /// has it.
    pub(crate) fn was_removed(&self) -> bool {
        match (self.member_of, &self.latest) {
            (Some(e), Some(c)) => c.epoch > e && !c.contains(&self.me),
            _ => false,
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let fetch_retry = self.fetch.map(|(_, _, at)| at + FETCH_RETRY);
        [self.next_tick, self.next_renew, fetch_retry].into_iter().flatten().min()
    }

    /// Starts a new cluster: this node is the only voter and commits epoch 1
    /// with itself.
    pub(crate) fn bootstrap(&mut self, now: Instant) {
        if self.raft.is_some() {
            return;
        }
        let origin = raft_id(&self.me);
        self.start_raft(origin, now);
        self.arm_renewal(now);
        if let Some(raft) = &mut self.raft
            && let Err(e) = raft.node.campaign()
        {
            tracing::warn!(error = %e, "bootstrap campaign");
        }
        self.process_ready(now);
        self.lead(now);
        self.process_ready(now);
    }

    fn start_raft(&mut self, origin: u64, now: Instant) {
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
                self.raft = Some(Raft { node, origin, applied: 0 });
                self.peers.insert(id, self.me.addr);
                self.schedule_tick(now);
            }
            Err(e) => tracing::error!(error = %e, "cannot start the Raft node"),
        }
    }

    fn schedule_tick(&mut self, now: Instant) {
        // ±20% jitter per tick: this is where elections desynchronize.
        let base = self.cfg.raft_tick.as_micros() as u64;
        let jitter = self.rng.random_range(base * 8 / 10..=base * 12 / 10);
        self.next_tick = Some(now + Duration::from_micros(jitter));
    }

    /// A change in this node's SWIM view. SWIM identities carry a
    /// generation; the store deals in lives (see [`NodeId::life`]).
    pub(crate) fn member_up(&mut self, id: &NodeId, now: Instant) {
        self.arm_renewal(now + self.cfg.lease_renew);
        self.swim_down.remove(&id.life());
        let newer = |known: &NodeId| (known.incarnation, known.generation) <= (id.incarnation, id.generation);
        if self.swim_alive.get(&id.addr).is_none_or(newer) {
            self.swim_alive.insert(id.addr, id.clone());
        }
    }

    pub(crate) fn member_down(&mut self, id: &NodeId, now: Instant) {
        if self.swim_alive.get(&id.addr) == Some(id) {
            self.swim_alive.remove(&id.addr);
        }
        let life = id.life();
        if self.latest.as_ref().is_some_and(|c| c.contains(&life)) {
            self.swim_down.insert(life);
            self.send_votes(now);
        }
    }

    /// Whether this node's SWIM view holds `life` alive (at any generation).
    fn sees_alive(&self, life: &NodeId) -> bool {
        self.swim_alive.get(&life.addr).is_some_and(|id| id.life() == *life)
    }

    /// This node starts a new life (the store removed the old one): it is a
    /// new Raft peer, with no lease and no membership yet.
    ///
    /// The old life's Raft peer, if its group counts it as a voter, keeps
    /// running ([`EpochStore::retiring`]): the group removes it by a
    /// committed change (the leader removes a voter whose life is gone
    /// before any other), and until then it is part of the quorum. Dropping
    /// it here would take a live voter from the group without telling it.
    pub(crate) fn renew_identity(&mut self, new: NodeId) {
        self.swim_alive.remove(&self.me.addr);
        self.me = new.life();
        self.swim_alive.insert(self.me.addr, self.me.clone());
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
        self.leadership = Leadership::default();
        self.lease_end = None;
        self.member_of = None;
        self.leaving = false;
        self.handed_off = false;
        self.removed_reported = false;
        // Grants still on their way were for the old life.
        self.lease_sent.clear();
        self.lease_answered = self.lease_seq;
    }

    /// Ask the leader to mark this node leaving; it is removed once it
    /// reports its handoffs done ([`EpochStore::handed_off`]) or after
    /// `handoff_timeout`.
    pub(crate) fn request_leave(&mut self, now: Instant) {
        self.leaving = true;
        self.send_leave(now);
    }

    /// This leaving node handed off everything it held: ask for its removal.
    pub(crate) fn handed_off(&mut self, now: Instant) {
        if self.leaving && !self.handed_off {
            self.handed_off = true;
            self.send_leave(now);
        }
    }

    fn send_leave(&mut self, now: Instant) {
        let msg = EpochMsg::Leave { id: self.me.clone(), handed_off: self.handed_off };
        if self.is_leader() {
            self.leadership.leave_requests.insert(self.me.clone());
            if self.handed_off {
                self.leadership.handed_off.insert(self.me.clone());
            }
            self.lead(now);
        } else if let Some(leader) = self.leader {
            self.send(leader, msg);
        }
    }

    fn send_votes(&mut self, now: Instant) {
        // Nothing suspected (the usual case): no need to look this node up
        // in the configuration.
        if self.swim_down.is_empty() || !self.is_member() {
            return;
        }
        let votes: Vec<NodeId> = self
            .swim_down
            .iter()
            .filter(|t| self.latest.as_ref().is_some_and(|c| c.contains(t)))
            .filter(|t| !self.votes.get(*t).is_some_and(|by| by.contains(&self.me)))
            .cloned()
            .collect();
        for target in votes {
            if self.is_leader() {
                self.propose_vote(target, self.me.clone(), now);
            } else if let Some(leader) = self.leader {
                self.send(leader, EpochMsg::Vote { target, by: self.me.clone() });
            }
        }
    }

    /// `(epoch, hash)` heard by gossip from `from`.
    pub(crate) fn heard(&mut self, epoch: u64, hash: u64, from: Option<SocketAddr>, now: Instant) {
        let known = self.latest.as_ref().map_or(0, |c| c.epoch);
        if epoch <= known {
            return;
        }
        self.announced.insert(epoch, hash);
        while self.announced.len() > CHAIN_KEPT_MAX {
            self.announced.pop_first();
        }
        if let Some(from) = from.or(self.leader) {
            self.fetch_from(from, epoch, now);
        }
    }

    fn fetch_from(&mut self, from: SocketAddr, epoch: u64, now: Instant) {
        if self.fetch.is_some_and(|(_, e, at)| e >= epoch && now < at + FETCH_RETRY) {
            return;
        }
        self.fetch = Some((from, epoch, now));
        self.send(from, EpochMsg::Fetch { epoch });
    }

    /// Takes a configuration as learned, if it is newer than what this node
    /// knows and belongs to its cluster.
    fn learn(&mut self, config: Configuration) {
        let known = self.latest.as_ref().map_or(0, |c| c.epoch);
        if config.epoch <= known || !config.is_well_formed() {
            return;
        }
        let group = self.latest.as_ref().map(|c| c.group).or(self.raft.as_ref().map(|r| r.origin));
        if group.is_some_and(|g| g != config.group) {
            tracing::warn!(
                group = %format!("{:016x}", config.group),
                "a configuration of another cluster (bootstrapped elsewhere); ignored"
            );
            return;
        }
        let hash = config.hash();
        if self.announced.get(&config.epoch).is_some_and(|&h| h != hash) {
            tracing::warn!(epoch = config.epoch, "a configuration does not match its announced hash; ignored");
            return;
        }
        if self.fetch.is_some_and(|(_, e, _)| e <= config.epoch) {
            self.fetch = None;
        }
        if config.contains(&self.me) {
            self.member_of = Some(config.epoch);
        }
        // Raft peers: the configuration's members, plus whoever the Raft
        // group still counts (a removed voter until its removal applies).
        let group: BTreeSet<u64> = self.raft.iter().chain(&self.retiring).flat_map(Raft::group).collect();
        let members: BTreeMap<u64, SocketAddr> = config.members.iter().map(|m| (raft_id(&m.id), m.id.addr)).collect();
        self.peers.retain(|id, _| group.contains(id) || members.contains_key(id));
        self.peers.extend(members);
        // Votes about lives no longer in the configuration are moot.
        self.swim_down.retain(|t| config.contains(t));
        self.outputs.push(StoreOutput::Event(StoreEvent::EpochLearned { epoch: config.epoch, hash }));
        self.outputs.push(StoreOutput::Announce(config.epoch, hash));
        self.active_raft_ids =
            config.members.iter().filter(|m| m.status == MemberStatus::Active).map(|m| raft_id(&m.id)).collect();
        self.latest_hash = hash;
        self.latest = Some(config);
        if self.was_removed() && !self.removed_reported {
            self.removed_reported = true;
            self.outputs.push(StoreOutput::Event(StoreEvent::Removed));
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.next_tick.is_some_and(|t| t <= now) {
            if let Some(raft) = &mut self.raft {
                raft.node.tick();
            }
            for raft in &mut self.retiring {
                raft.node.tick();
            }
            self.schedule_tick(now);
            self.process_ready(now);
            self.lead(now);
            if self.is_leader() {
                self.start_read(now);
            }
            self.process_ready(now);
        }
        if self.next_renew.is_some_and(|at| at <= now) {
            self.next_renew = Some(now + self.cfg.lease_renew);
            self.renew_lease(now);
            self.send_votes(now);
            if self.leaving {
                self.send_leave(now);
            }
        }
        if let Some((from, epoch, at)) = self.fetch
            && now >= at + FETCH_RETRY
        {
            // Ask someone else: the leader if known, else the same node.
            let target = self.leader.unwrap_or(from);
            self.fetch = None;
            self.fetch_from(target, epoch, now);
        }
    }

    fn renew_lease(&mut self, now: Instant) {
        // The last request went unanswered: the leader we know of may be
        // gone. Ask around instead.
        if self.lease_seq > self.lease_answered {
            self.leader = None;
        }
        let target = self.leader.or_else(|| {
            let candidates: Vec<SocketAddr> = if !self.voters.is_empty() {
                self.voters.clone()
            } else if let Some(c) = &self.latest {
                c.members.iter().map(|m| m.id.addr).collect()
            } else if !self.seeds.is_empty() {
                self.seeds.clone()
            } else {
                self.swim_alive.keys().copied().collect()
            };
            if candidates.is_empty() { None } else { Some(candidates[self.rng.random_range(0..candidates.len())]) }
        });
        let Some(target) = target else { return };
        self.lease_seq += 1;
        self.lease_sent.insert(self.lease_seq, now);
        while self.lease_sent.len() > LEASE_SENT_KEPT {
            self.lease_sent.pop_first();
        }
        self.stats.lease_requests += 1;
        let msg = EpochMsg::LeaseRequest { id: self.me.clone(), seq: self.lease_seq, member_of: self.member_of };
        if target == self.me.addr {
            self.handle_message(self.me.addr, msg, now);
        } else {
            self.send(target, msg);
        }
    }

    fn send(&mut self, to: SocketAddr, msg: EpochMsg) {
        self.outputs.push(StoreOutput::Send(to, Message::Epoch(msg)));
    }

    /// A Raft message from a peer.
    pub(crate) fn handle_raft(
        &mut self,
        from: SocketAddr,
        origin: u64,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), String> {
        let msg: RaftMessage = super::wire::decode_protobuf(bytes).map_err(|e| format!("bad Raft message: {e}"))?;
        if msg.to != raft_id(&self.me) {
            let Some(raft) = self.retiring.iter_mut().find(|r| r.id() == msg.to) else {
                return Err(format!("Raft message for peer {:x}, not this life", msg.to));
            };
            if raft.origin != origin {
                return Err(format!("Raft message of another group (origin {origin:x})"));
            }
            self.peers.insert(msg.from, from);
            match raft.node.step(msg) {
                Ok(()) | Err(raft::Error::StepPeerNotFound) => {}
                Err(e) => return Err(format!("Raft rejected a message: {e}")),
            }
            self.process_ready(now);
            return Ok(());
        }
        self.peers.insert(msg.from, from);
        if self.raft.is_none() {
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
        let raft = self.raft.as_mut().expect("started above");
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

    /// An epoch-store message from a peer (or from this node to itself).
    pub(crate) fn handle_message(&mut self, from: SocketAddr, msg: EpochMsg, now: Instant) {
        match msg {
            EpochMsg::LeaseRequest { id, seq, member_of } => {
                if !self.is_leader() {
                    // Forward once, straight from the requester, to the leader
                    // this node knows; the leader answers the requester's
                    // own address. Otherwise point the requester elsewhere.
                    match self.leader {
                        Some(leader) if from == id.addr && leader != from && leader != self.me.addr => {
                            self.send(leader, EpochMsg::LeaseRequest { id, seq, member_of });
                        }
                        leader => self.reply(from, EpochMsg::NotLeader { seq, leader }, now),
                    }
                    return;
                }
                let l = &mut self.leadership;
                let waiting = l.queued.len() + l.reads.values().map(Vec::len).sum::<usize>();
                if waiting >= LEASE_READS_MAX {
                    let leader = self.leader;
                    self.reply(from, EpochMsg::NotLeader { seq, leader }, now);
                    return;
                }
                l.queued.push(PendingRead { from, id, seq, member_of });
                if self.raft.as_ref().is_some_and(|r| r.node.raft.prs().conf().voters().ids().len() == 1) {
                    // A lone voter needs no round trip: read at once.
                    self.start_read(now);
                }
            }
            EpochMsg::LeaseGrant { seq, status, epoch, hash, leader, voters } => {
                self.lease_answered = self.lease_answered.max(seq);
                self.leader = Some(leader);
                if !self.retiring.is_empty() && !voters.contains(&self.me.addr) {
                    // No voter at this address: the group removed the earlier
                    // lives' peers (a removed life is never added again),
                    // perhaps while they could not hear of it.
                    tracing::debug!("the group removed this node's earlier Raft peers");
                    self.retiring.clear();
                    if self.raft.is_none() {
                        self.next_tick = None;
                    }
                }
                self.voters = voters;
                let known = self.latest.as_ref().map_or(0, |c| c.epoch);
                if epoch > known {
                    self.heard(epoch, hash, Some(leader), now);
                }
                match status {
                    // A grant covers what this node owns in the grant's epoch:
                    // one it has not learned yet extends nothing (its ranges
                    // may have moved away in it); the next renewal will.
                    LeaseStatus::Granted if epoch > known => {}
                    LeaseStatus::Granted => {
                        if let Some(&sent) = self.lease_sent.get(&seq) {
                            let end = sent + self.cfg.lease;
                            if self.lease_end.is_none_or(|e| e < end) {
                                self.lease_end = Some(end);
                                self.stats.lease_renewals += 1;
                                self.outputs.push(StoreOutput::Event(StoreEvent::LeaseRenewed { lease_end: end }));
                            }
                        }
                    }
                    LeaseStatus::Removed => {
                        if self.member_of.is_some() && !self.removed_reported {
                            self.removed_reported = true;
                            self.lease_end = None;
                            self.outputs.push(StoreOutput::Event(StoreEvent::Removed));
                        }
                    }
                    LeaseStatus::NotMember => {}
                }
            }
            EpochMsg::NotLeader { seq, leader } => {
                // A hint; with none, the next renewal tries another node.
                self.lease_answered = self.lease_answered.max(seq);
                self.leader = leader.filter(|&l| l != from);
            }
            EpochMsg::Vote { target, by } => {
                if self.is_leader() {
                    self.propose_vote(target, by, now);
                }
            }
            EpochMsg::Leave { id, handed_off } => {
                if self.is_leader() {
                    if handed_off {
                        self.leadership.handed_off.insert(id.clone());
                    }
                    self.leadership.leave_requests.insert(id);
                    self.lead(now);
                }
            }
            EpochMsg::Fetch { epoch } => {
                let answer = self
                    .latest
                    .as_ref()
                    .filter(|c| c.epoch >= epoch)
                    .cloned()
                    .or_else(|| self.chain.get(&epoch).cloned());
                if let Some(config) = answer {
                    self.send(from, EpochMsg::Config(config));
                }
            }
            EpochMsg::Config(config) => {
                self.learn(config);
            }
        }
    }

    /// Starts one linearizable read for every queued lease request.
    fn start_read(&mut self, now: Instant) {
        // raft-rs drops a read until the leader has committed an entry of its
        // own term: keep the requests queued until then.
        let ready = self.raft.as_ref().is_some_and(|r| r.node.raft.commit_to_current_term());
        if self.leadership.queued.is_empty() || !ready {
            return;
        }
        let batch = std::mem::take(&mut self.leadership.queued);
        let ctx = self.leadership.next_read;
        self.leadership.next_read += 1;
        self.leadership.reads.insert(ctx, batch);
        if let Some(raft) = &mut self.raft {
            raft.node.read_index(ctx.to_be_bytes().to_vec());
        }
        self.process_ready(now);
    }

    fn reply(&mut self, to: SocketAddr, msg: EpochMsg, now: Instant) {
        if to == self.me.addr {
            self.handle_message(to, msg, now);
        } else {
            self.send(to, msg);
        }
    }

    fn propose_vote(&mut self, target: NodeId, by: NodeId, now: Instant) {
        let known = self.votes.get(&target).is_some_and(|v| v.contains(&by));
        let key = (target.clone(), by.clone());
        if known || self.leadership.proposed_votes.contains(&key) {
            return;
        }
        // Enough evidence is on its way already: more votes about the same
        // life would only cost consensus instances.
        let committed = self.votes.get(&target).map_or(0, BTreeSet::len);
        let in_flight = self.leadership.proposed_votes.iter().filter(|(t, _)| *t == target).count();
        if committed + in_flight >= usize::from(self.cfg.suspicion_votes) {
            return;
        }
        if let Some(raft) = &mut self.raft {
            let data = rmp_serde::to_vec(&StoreEntry::Vote { target, by }).expect("a vote encodes");
            if raft.node.propose(vec![], data).is_ok() {
                self.leadership.proposed_votes.insert(key);
            }
        }
        self.process_ready(now);
    }

    /// Runs Raft's ready loop: send, persist (in memory), apply; for this
    /// life's peer, then for the earlier lives' peers still in the group.
    fn process_ready(&mut self, now: Instant) {
        self.process_retiring();
        for _ in 0..16 {
            let Some(raft) = &mut self.raft else { break };
            let origin = raft.origin;
            let Some(Readied { messages, committed, read_states }) = raft.ready() else { break };
            self.send_raft(origin, messages);
            self.apply(committed, now);
            if let Some(raft) = &mut self.raft {
                raft.node.advance_apply();
            }
            self.answer_reads(read_states, now);
        }
        self.refresh_leader(now);
    }

    /// The ready loop of the earlier lives' peers ([`EpochStore::retiring`]):
    /// they only vote, acknowledge and apply configuration changes (the
    /// epochs are this life's business). A peer whose applied configuration
    /// no longer counts it as a voter was removed by a committed change and
    /// stops; one that became leader hands leadership to a voter that stays.
    fn process_retiring(&mut self) {
        if self.retiring.is_empty() {
            return;
        }
        let mut sends = Vec::new();
        for raft in &mut self.retiring {
            if raft.node.raft.state == StateRole::Leader && raft.is_voter_here() {
                let id = raft.id();
                let r = &raft.node.raft;
                let committed = r.raft_log.committed;
                let stays = |v: u64| v != id && self.active_raft_ids.contains(&v);
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
            for _ in 0..16 {
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
        self.retiring.retain(|raft| {
            let stays = raft.is_voter_here();
            if !stays {
                tracing::debug!(peer = raft.id(), "an earlier life's Raft peer was removed from the group");
            }
            stays
        });
        for (origin, messages) in sends {
            self.send_raft(origin, messages);
        }
        if self.raft.is_none() && self.retiring.is_empty() {
            self.next_tick = None;
        }
    }

    fn send_raft(&mut self, origin: u64, messages: Vec<RaftMessage>) {
        for msg in messages {
            let Some(&to) = self.peers.get(&msg.to) else {
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
            if let Some(raft) = &mut self.raft {
                raft.applied = raft.applied.max(entry.index);
            }
            if entry.data.is_empty() {
                continue;
            }
            match entry.get_entry_type() {
                EntryType::EntryConfChange => {
                    if let Some(raft) = &mut self.raft {
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
                        let applied = self.chain.last_key_value().map(|(_, c)| c);
                        let valid = applied.is_some_and(|c| c.contains(&target) && c.contains(&by));
                        if valid && self.votes.entry(target.clone()).or_default().insert(by.clone()) {
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
        let applied = self.chain.last_key_value().map_or(0, |(&e, _)| e);
        // The chain is one chain: only the next epoch applies; a proposal
        // that lost a race is dropped the same way on every voter.
        let origin = self.raft.as_ref().map(|r| r.origin);
        if config.epoch != applied + 1 || !config.is_well_formed() || origin != Some(config.group) {
            return;
        }
        let hash = config.hash();
        self.stats.epochs_applied += 1;
        if let Some((_, previous)) = self.chain.last_key_value() {
            for m in &previous.members {
                if config.member(m.id.addr).is_none_or(|now_member| now_member.id.incarnation > m.id.incarnation) {
                    let retired = self.retired.entry(m.id.addr).or_insert(0);
                    *retired = (*retired).max(m.id.incarnation);
                }
                // 5: admission counts as a renewal, or a new member would be
                // taken for lapsed before its first grant.
            }
            if self.leadership.since.is_some() {
                for m in &config.members {
                    if previous.member(m.id.addr).is_none_or(|p| p.id != m.id) {
                        self.leadership.last_renewal.insert(m.id.addr, now);
                    }
                }
            }
        }
        self.outputs.push(StoreOutput::Event(StoreEvent::EpochCommitted { epoch: config.epoch, hash }));
        self.votes.retain(|target, _| config.contains(target));
        if self.leadership.proposed.is_some_and(|(e, _)| e <= config.epoch) {
            self.leadership.proposed = None;
        }
        // Leader bookkeeping about lives no longer in the configuration is
        // moot: keep the maps bounded by the membership.
        self.leadership.leave_requests.retain(|id| config.contains(id));
        self.leadership.handed_off.retain(|id| config.contains(id));
        self.leadership.leaving_since.retain(|id, _| config.contains(id));
        self.leadership.last_renewal.retain(|addr, _| config.member(*addr).is_some());
        self.chain.insert(config.epoch, config.clone());
        while self.chain.len() > CHAIN_KEPT_MAX {
            self.chain.pop_first();
        }
        self.learn(config);
    }

    fn answer_reads(&mut self, states: Vec<raft::ReadState>, now: Instant) {
        for state in states {
            let Ok(ctx) = <[u8; 8]>::try_from(state.request_ctx.as_slice()) else { continue };
            let Some(batch) = self.leadership.reads.remove(&u64::from_be_bytes(ctx)) else { continue };
            let voters = self.voter_addrs();
            for read in batch {
                let Some((epoch, hash, contains)) =
                    self.latest.as_ref().map(|c| (c.epoch, self.latest_hash, c.contains(&read.id)))
                else {
                    let leader = self.leader;
                    self.reply(read.from, EpochMsg::NotLeader { seq: read.seq, leader }, now);
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
                self.reply(read.id.addr, grant, now);
            }
        }
    }

    fn voter_addrs(&self) -> Vec<SocketAddr> {
        let Some(raft) = &self.raft else { return Vec::new() };
        let mut out: Vec<SocketAddr> =
            raft.node.raft.prs().conf().voters().ids().iter().filter_map(|id| self.peers.get(&id).copied()).collect();
        out.sort();
        out
    }

    fn refresh_leader(&mut self, now: Instant) {
        let Some(raft) = &self.raft else { return };
        let leader_id = raft.node.raft.leader_id;
        let is_leader = raft.node.raft.state == StateRole::Leader;
        if leader_id != 0
            && let Some(&addr) = self.peers.get(&leader_id)
        {
            self.leader = Some(addr);
        }
        self.voters = self.voter_addrs();
        if is_leader && self.leadership.since.is_none() {
            self.leadership = Leadership { since: Some(now), ..Leadership::default() };
        } else if !is_leader && self.leadership.since.is_some() {
            // Deposed: pending lease reads will never be answered here.
            let mut reads: Vec<PendingRead> =
                std::mem::take(&mut self.leadership.reads).into_values().flatten().collect();
            reads.append(&mut self.leadership.queued);
            for read in reads {
                let leader = self.leader;
                self.reply(read.from, EpochMsg::NotLeader { seq: read.seq, leader }, now);
            }
            self.leadership = Leadership::default();
        }
    }

    /// The leader's work: batch membership evidence into the next epoch, and
    /// keep the voter set.
    fn lead(&mut self, now: Instant) {
        if !self.is_leader() {
            return;
        }
        let Some(since) = self.leadership.since else { return };
        // Borrowed, not cloned: this runs at every tick of the leader.
        let Some(latest) = self.chain.values().next_back() else {
            // A fresh group: commit the first configuration at once.
            if self.leadership.proposed.is_none_or(|(_, at)| now >= at + PROPOSAL_RETRY) {
                let group = self.raft.as_ref().map_or(0, |r| r.origin);
                let first = Configuration::first(group, self.me.clone(), self.cfg.vnodes, self.cfg.replication);
                self.propose_epoch(first, now);
            }
            return;
        };
        for m in latest.members.iter().filter(|m| m.status == MemberStatus::Leaving) {
            self.leadership.leaving_since.entry(m.id.clone()).or_insert(now);
        }
        let wanted = self.wanted_changes(latest, since, now);
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

    fn wanted_changes(&self, latest: &Configuration, since: Instant, now: Instant) -> Changes {
        let mut changes = Changes::default();
        // This runs at every tick of the leader, over every member: the
        // lookups by address walk the sorted lists side by side (the
        // configuration is sorted by address, the maps are keyed by it)
        // instead of searching each.
        let mut members = latest.members.iter().peekable();
        for (&addr, id) in &self.swim_alive {
            debug_assert_eq!(addr, id.addr);
            while members.next_if(|m| m.id.addr < addr).is_some() {}
            let member = members.peek().filter(|m| m.id.addr == addr);
            // A life has its identity's incarnation: clone it only to join.
            let newer = member.is_none_or(|m| m.id.incarnation < id.incarnation);
            let retired = self.retired.get(&id.addr).is_some_and(|&inc| id.incarnation <= inc);
            if newer && !retired {
                // A name names one live node: a join under the name of a
                // live member at another address is not admitted (the
                // joining node sees the clash and gives up, see
                // `Node::name_clash`), nor the second of two joins under one
                // name.
                let clash = || {
                    latest.members.iter().any(|m| m.id.name == id.name && m.id.addr != addr && self.sees_alive(&m.id))
                        || changes.joins.iter().any(|j| j.name == id.name)
                };
                let life = id.life();
                if !self.leadership.leave_requests.contains(&life) && !clash() {
                    changes.joins.push(life);
                }
            }
        }
        let expiry = self.cfg.lease * 2;
        let mut renewals = self.leadership.last_renewal.iter().peekable();
        for m in &latest.members {
            let id = &m.id;
            while renewals.next_if(|&(&addr, _)| addr < id.addr).is_some() {}
            let renewed = renewals.peek().filter(|(addr, _)| **addr == id.addr).map(|(_, t)| **t);
            // Votes remove a life only while the leader does not see it alive
            // itself: a member that came back (a new SWIM generation after a
            // false suspicion) keeps its place.
            let voted = self.votes.get(id).is_some_and(|v| v.len() >= usize::from(self.cfg.suspicion_votes))
                && !self.sees_alive(id);
            let lapsed = id != &self.me && now >= since + expiry && renewed.is_none_or(|t| now >= t + expiry);
            // A leader never removes itself: it hands leadership over first
            // (see `manage_voters`), and the next leader removes it.
            let removable = id != &self.me;
            // A leaving member goes once its handoffs are done, or once they
            // have had `handoff_timeout` (then it is treated like a crash).
            let left = m.status == MemberStatus::Leaving
                && (self.leadership.handed_off.contains(id)
                    || self.leadership.leaving_since.get(id).is_some_and(|&t| now >= t + self.cfg.handoff_timeout));
            if removable && (left || voted || lapsed) {
                changes.removals.push(id.clone());
            } else if self.leadership.leave_requests.contains(id) {
                changes.leaving.push(id.clone());
            }
        }
        changes
    }

    fn propose_epoch(&mut self, config: Configuration, now: Instant) {
        let epoch = config.epoch;
        let data = rmp_serde::to_vec(&StoreEntry::Epoch(config)).expect("a configuration encodes");
        if let Some(raft) = &mut self.raft
            && raft.node.propose(vec![], data).is_ok()
        {
            self.leadership.proposed = Some((epoch, now));
            tracing::debug!(epoch, "proposed");
        }
        self.process_ready(now);
    }

    /// Keeps `voters` voters among the active members, one change at a time,
    /// never reducing the live quorum:
    ///
    /// 1. learners whose life left the configuration go (they do not vote);
    /// 2. voters whose life left the configuration and that are not
    ///    healthy here (unreachable, or their node is a new life now) go
    ///    before any other, if the voters after it hold a live majority
    ///    (an earlier life's peer may still be voting, see
    ///    [`EpochStore::retiring`]);
    /// 3. learners that are not healthy go (they would block the
    ///    replacement);
    /// 4. while fewer than `voters` voters stay in the configuration, a
    ///    live member is added as a Raft learner and promoted once its log
    ///    has caught up (a replacement comes before a removal);
    /// 5. then a voter whose life left (or is leaving) goes, only if the
    ///    voters left after it still hold a live majority.
    ///
    /// Healthy: alive in this node's SWIM view under the life the Raft id
    /// belongs to, and renewed its lease here recently. Live (for the
    /// quorum): healthy, or it answered Raft within the last election
    /// timeout. A dead node made a
    /// voter could take the quorum with it; a live voter removed while
    /// another is unreachable could leave a group that never reaches
    /// quorum again.
    fn manage_voters(&mut self, now: Instant) {
        if self.leadership.conf_change_at.is_some_and(|at| now < at + PROPOSAL_RETRY) {
            return;
        }
        let Some(raft) = &self.raft else { return };
        if raft.node.raft.has_pending_conf() {
            return;
        }
        let conf = raft.node.raft.prs().conf();
        let voters: BTreeSet<u64> = conf.voters().ids().iter().collect();
        let learners: BTreeSet<u64> = conf.learners().iter().copied().collect();
        let committed = raft.node.raft.raft_log.committed;
        let caught_up = |id: u64| raft.node.raft.prs().get(id).is_some_and(|p| p.matched >= committed);
        let active = &self.active_raft_ids;
        let me = raft_id(&self.me);
        let fresh = self.cfg.lease_renew * 3;
        let alive = |id: u64| {
            self.peers.get(&id).is_some_and(|addr| self.swim_alive.get(addr).is_some_and(|a| raft_id(&a.life()) == id))
        };
        let healthy = |id: u64| {
            alive(id)
                && self.peers.get(&id).is_some_and(|addr| {
                    *addr == self.me.addr || self.leadership.last_renewal.get(addr).is_some_and(|&t| now < t + fresh)
                })
        };
        if !active.contains(&me) {
            // Leaving: hand leadership to a caught-up voter that stays.
            if let Some(&next) = voters.iter().find(|&&v| v != me && active.contains(&v) && caught_up(v)) {
                tracing::debug!(next, "leaving: transferring leadership");
                if let Some(raft) = &mut self.raft {
                    raft.node.transfer_leader(next);
                }
                self.leadership.conf_change_at = Some(now);
            }
            return;
        }
        let stale = |v: &u64| !active.contains(v) && *v != me;
        // An odd number of voters: an even one tolerates no more failures
        // than one fewer, and has one more voter that can fail.
        let mut target = usize::from(self.cfg.voters).min(active.len()).max(1);
        if target.is_multiple_of(2) {
            target -= 1;
        }
        let staying = voters.iter().filter(|v| !stale(v)).count();
        // Live for the quorum: healthy, or answering Raft lately (an
        // earlier life's peer still votes though its node is a new life).
        let live = |id: u64| id == me || healthy(id) || raft.node.raft.prs().get(id).is_some_and(|p| p.recent_active);
        // Whether the voters left after removing `v` hold a live majority.
        let keeps_quorum = |v: u64| {
            let rest = voters.len() - 1;
            voters.iter().filter(|&&o| o != v && live(o)).count() > rest / 2
        };
        let remove = |id: u64| Some((ConfChangeType::RemoveNode, id));
        // A replacement comes before a removal: a stale voter that is only
        // paused or cut off still counts for the quorum if it comes back,
        // and removing it first would leave every voter that stays needed.
        let change = if let Some(&l) = learners.iter().find(|l| stale(l)) {
            remove(l)
        } else if let Some(&l) = learners.iter().find(|&&l| !healthy(l) && !caught_up(l)) {
            remove(l)
        } else if staying < target
            && let Some(&ready) = learners.iter().find(|&&l| caught_up(l) && healthy(l))
        {
            Some((ConfChangeType::AddNode, ready))
        } else if staying < target && !learners.is_empty() {
            // A replacement is catching up: it comes first.
            None
        } else if let Some(add) =
            (staying < target).then(|| active.iter().copied().find(|&a| !voters.contains(&a) && healthy(a))).flatten()
        {
            Some((ConfChangeType::AddLearnerNode, add))
        } else if staying < target && active.iter().any(|&a| !voters.contains(&a) && alive(a)) {
            // A replacement is alive but has not renewed here yet (a new
            // leader has heard from no one): wait for it.
            None
        } else {
            // A voter whose life left or is leaving, an unreachable one
            // first: only if the voters after it still hold a live majority.
            let removable = |v: &u64| stale(v) && keeps_quorum(*v);
            let unreachable = voters.iter().copied().find(|v| removable(v) && !healthy(*v));
            unreachable.or_else(|| voters.iter().copied().find(removable)).map(|v| (ConfChangeType::RemoveNode, v))
        };
        let Some((kind, node_id)) = change else { return };
        let Some(raft) = &mut self.raft else { return };
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
