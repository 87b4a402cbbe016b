//! The sans-IO engine: the whole protocol as a deterministic state machine.
//!
//! A [`Node`] never reads a clock, opens a socket, spawns a thread or draws
//! ambient randomness. A driver (the tokio + quinn runtime, or netsim) feeds
//! it [`Input`]s with the current [`Instant`], drains [`Output`]s with
//! [`Node::poll_output`], and calls [`Node::handle`] with [`Input::Timeout`]
//! once [`Node::poll_timeout`] has passed. The same seed and the same inputs
//! give the same outputs, byte for byte; clippy's disallowed lists
//! (`clippy.toml`) keep it that way.
//!
//! Call order, as in quinn-proto: after every `handle`, drain `poll_output`
//! until it returns `None`, then re-read `poll_timeout`.

pub mod config;
pub mod custody;
pub mod epoch;
pub mod id;
pub mod membership;
pub mod ring;
pub mod store;
pub mod task;
pub mod time;
pub mod wire;

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;

use foca::OwnedNotification;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

pub use config::{Config, ConfigError};
pub use custody::{CustodyStats, Execution};
pub use epoch::{Configuration, MemberStatus};
pub use id::NodeId;
pub use store::{StoreEvent as EpochEvent, StoreStats};
pub use task::{Outcome, Task, Token};
pub use time::Instant;
pub use wire::{MemberInfo, MemberState, WireError};

use custody::{Custody, CustodyOutput};
use membership::{Effects, EpochGossip, Heard, Swim, SwimCodec, Timers};
use store::{EpochStore, StoreOutput};
use wire::{Frame, Message, OwnerInfo, Request, Response, StatusInfo, StatusMember, SyncMember, TaskMsg};

/// Most seeds a node announces to. More would only multiply join traffic.
pub const SEEDS_MAX: usize = 16;

/// Most outputs waiting to be polled. The driver drains after every input,
/// so reaching this is a driver bug, not load.
pub const OUTPUTS_MAX: usize = 65_536;

/// Most foca timers expected pending at once. foca keeps a handful per
/// member; this bound is far above what a 10,000-member cluster schedules.
/// Past it the node logs an error and goes on.
pub const TIMERS_MAX: usize = 1 << 20;

/// Most due foca timers handled in one `Timeout` input. Timers scheduled
/// with a zero delay are handled in the same input, up to this bound.
pub const TIMERS_PER_TIMEOUT_MAX: usize = 4096;

/// Largest capacity a scratch buffer of foca's callbacks keeps between
/// calls; a larger one (after a burst) is freed.
const SCRATCH_KEPT_MAX: usize = 64;

/// Most members one [`Command::LearnMembers`] may carry.
pub const LEARN_MEMBERS_MAX: usize = 65_536;

/// Most members one membership sync carries or accepts; a larger view is
/// sent in part (a different part each time), which keeps a sync frame well
/// under [`wire::FRAME_LEN_MAX`].
pub const SYNC_MEMBERS_MAX: usize = 4096;

/// A client connection's request, identified by the driver. The driver maps
/// it back to the stream the request came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u64);

/// Something that happened to the node, for the engine to react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A datagram from the peer at `from`.
    Datagram {
        /// The sender's address.
        from: SocketAddr,
        /// The datagram as received.
        bytes: Vec<u8>,
    },
    /// A frame (without its length prefix) from a peer's stream.
    PeerFrame {
        /// The sender's address.
        from: SocketAddr,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// A request frame (without its length prefix) from a client stream.
    ClientFrame {
        /// Where the answer goes.
        client: ClientId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// An order from the host.
    Command(Command),
    /// [`Node::poll_timeout`] has passed.
    Timeout,
    /// A task started by [`Output::Execute`] finished.
    TaskDone {
        /// Its resource.
        resource: String,
        /// Its sequence number (the token's `seq`).
        seq: u64,
        /// What the handler returned.
        outcome: Outcome,
    },
}

/// An order from the host application or the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Join the cluster through these seeds (at most [`SEEDS_MAX`]). The node
    /// re-announces every `join_retry` for as long as it knows no member.
    Join(Vec<SocketAddr>),
    /// Leave the cluster gracefully: tell the members, then stop.
    Leave,
    /// Start a new cluster: this node becomes the epoch store's only voter
    /// and commits epoch 1 with itself. A node started without seeds does
    /// this; a joining node is admitted by the existing store instead.
    Bootstrap,
    /// Take these nodes as alive members without hearing from them first
    /// (at most [`LEARN_MEMBERS_MAX`]): a member list from a state sync, or a
    /// simulator starting a cluster that has already formed. Nothing is
    /// gossiped about them; SWIM probes them from now on like any member.
    LearnMembers(Vec<NodeId>),
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a datagram (a SWIM packet). If it is larger than the
    /// connection's datagram limit, send it as a stream frame made by
    /// [`wire::datagram_to_frame`].
    Datagram {
        /// The peer's address.
        to: SocketAddr,
        /// The datagram.
        bytes: Vec<u8>,
    },
    /// Send a frame on the ordered stream to a peer.
    PeerFrame {
        /// The peer's address.
        to: SocketAddr,
        /// The frame, without its length prefix.
        bytes: Vec<u8>,
    },
    /// Answer a client request.
    Reply {
        /// Whose request this answers.
        client: ClientId,
        /// The frame, without its length prefix.
        bytes: Vec<u8>,
    },
    /// Close the connection to this peer: it was declared down, and a later
    /// life of it must get a fresh connection.
    ClosePeer(SocketAddr),
    /// Run a task now and report its end with [`Input::TaskDone`]. The
    /// engine never has two tasks of one resource out at once, nor more
    /// than `workers` in all.
    Execute(Execution),
    /// Tell the host.
    Event(Event),
}

/// A change the host may want to know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A member became reachable.
    MemberUp(NodeId),
    /// A member was declared down (crashed, unreachable, or left).
    MemberDown(NodeId),
    /// A later life of a member replaced an earlier one.
    MemberRenamed {
        /// The identity that was replaced.
        old: NodeId,
        /// The identity that replaced it.
        new: NodeId,
    },
    /// This node is known to at least one member: it joined.
    Joined,
    /// This node knows no live member any more. It keeps re-announcing to
    /// its seeds.
    Isolated,
    /// This node was declared down, and came back with a new incarnation.
    Rejoined(NodeId),
    /// This node left the cluster. The driver should flush its outputs and
    /// stop.
    Left,
    /// Something happened in the epoch store (an epoch learned or
    /// committed, a vote, a lease renewal, a removal).
    Epoch(EpochEvent),
}

/// Why an input was rejected. In every case the input was dropped and the
/// node's state did not change, beyond counting it in [`Stats`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The bytes did not decode.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// foca rejected a SWIM packet.
    #[error("SWIM packet rejected: {0}")]
    Swim(String),
    /// A message arrived where it has no meaning (e.g. a response sent to a
    /// node).
    #[error("unexpected {0} message")]
    Unexpected(&'static str),
    /// Too many seeds were given.
    #[error("{0} seeds given; at most {SEEDS_MAX} are accepted")]
    TooManySeeds(usize),
    /// The epoch store rejected a message.
    #[error("epoch store: {0}")]
    Epoch(String),
    /// Too many members were given to learn.
    #[error("{0} members given; at most {LEARN_MEMBERS_MAX} are accepted")]
    TooManyMembers(usize),
    /// The node has left the cluster and takes no more input.
    #[error("the node has left the cluster")]
    Left,
}

/// Counters of what the node saw, for tests, status and netsim.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams (and stream-carried SWIM packets) handled.
    pub swim_packets_received: u64,
    /// Datagrams sent.
    pub swim_packets_sent: u64,
    /// Inputs rejected with an [`InputError`].
    pub inputs_rejected: u64,
    /// Announces sent to seeds.
    pub announces_sent: u64,
    /// `TurnUndead` messages foca wanted to send to members held alive,
    /// which were dropped (see the engine's notes on foca's suspicion timer).
    pub turn_undead_suppressed: u64,
}

/// One node's protocol state. See the module docs for the driving contract.
pub struct Node {
    config: Config,
    now: Instant,
    swim: Swim,
    timers: Timers,
    outputs: VecDeque<Output>,
    /// Scratch buffers that foca's callbacks fill during one call.
    sends: Vec<(SocketAddr, Vec<u8>)>,
    notifications: Vec<OwnedNotification<NodeId>>,
    seeds: Vec<SocketAddr>,
    /// When to re-announce to the seeds, while the node knows no member.
    join_retry_at: Option<Instant>,
    /// When to sync membership with a random member next.
    sync_at: Option<Instant>,
    /// When to announce to a random member next.
    announce_at: Option<Instant>,
    /// When this node last saw membership change.
    changed_at: Instant,
    /// The next sync is the second one after joining: the first, at the
    /// moment of joining, may come too early to see the nodes that joined
    /// at the same time.
    resync_after_join: bool,
    /// The engine's own random choices (foca has its own generator).
    rng: Xoshiro256PlusPlus,
    /// The epoch store: this node's part of it.
    store: EpochStore,
    /// Epoch announcements heard by SWIM gossip, not yet handed to the store.
    heard: Heard,
    /// A leave in progress waits for the removal epoch until then.
    leave_deadline: Option<Instant>,
    /// Custody of resources: tasks, their execution, handoffs.
    custody: Custody,
    /// The live member, at another address, that holds this node's name:
    /// this node refused to join under it, and left.
    name_clash: Option<NodeId>,
    left: bool,
    stats: Stats,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", self.swim.identity())
            .field("now", &self.now)
            .field("members", &self.swim.num_members())
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node with identity `id`, alone until it joins (or is joined).
    /// `rng_seed` seeds every random choice the node makes.
    ///
    /// # Panics
    /// If `config` is invalid: check it with [`Config::validate`] first.
    pub fn new(id: NodeId, config: Config, rng_seed: u64, now: Instant) -> Node {
        if let Err(e) = config.validate() {
            panic!("Node::new with an invalid config: {e}");
        }
        let swim_rng = Xoshiro256PlusPlus::seed_from_u64(rng_seed);
        let heard = Heard::default();
        let gossip = EpochGossip::new(heard.clone());
        let store = EpochStore::new(id.clone(), config.clone(), rng_seed ^ 0x2545_f491_4f6c_dd1d);
        let custody = Custody::new(id.clone(), config.d_max, config.workers);
        let swim = Swim::with_custom_broadcast(id, config.to_foca(), swim_rng, SwimCodec, gossip);
        // A second stream from the same seed, for the engine's own choices.
        let rng = Xoshiro256PlusPlus::seed_from_u64(rng_seed.rotate_left(32) ^ 0x5bd1_e995_6c07_8965);
        Node {
            config,
            now,
            swim,
            timers: Timers::default(),
            outputs: VecDeque::new(),
            sends: Vec::new(),
            notifications: Vec::new(),
            seeds: Vec::new(),
            join_retry_at: None,
            sync_at: None,
            announce_at: None,
            changed_at: now,
            resync_after_join: false,
            rng,
            store,
            heard,
            leave_deadline: None,
            custody,
            name_clash: None,
            left: false,
            stats: Stats::default(),
        }
    }

    /// This node's current identity (it changes when the node rejoins with a
    /// new incarnation).
    pub fn id(&self) -> &NodeId {
        self.swim.identity()
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What the node has counted.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether the node has left the cluster.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Set when this node refused to join because a live member at another
    /// address already holds its name: that member's identity. The node
    /// has left then (names identify nodes to people; two live nodes under
    /// one name make `members`, `status` and `owner` ambiguous). A node
    /// restarted on its own address is never a clash.
    pub fn name_clash(&self) -> Option<&NodeId> {
        self.name_clash.as_ref()
    }

    /// The latest committed configuration this node knows.
    pub fn configuration(&self) -> Option<&Configuration> {
        self.store.latest()
    }

    /// The epoch store's counters at this node.
    pub fn store_stats(&self) -> StoreStats {
        self.store.stats()
    }

    /// Whether this node is a voter of the epoch store.
    pub fn is_voter(&self) -> bool {
        self.store.is_voter()
    }

    /// Whether this node leads the epoch store.
    pub fn is_leader(&self) -> bool {
        self.store.is_leader()
    }

    /// When this node's lease ends, on its own clock.
    pub fn lease_end(&self) -> Option<Instant> {
        self.store.lease_end()
    }

    /// Whether the node may act as custodian at `now`: it holds a lease
    /// that outlasts the longest task (`now + d_max ≤ lease_end`).
    pub fn may_act_as_custodian(&self, now: Instant) -> bool {
        !self.left && self.store.lease_end().is_some_and(|end| now + self.config.d_max <= end)
    }

    /// Custody's counters.
    pub fn custody_stats(&self) -> CustodyStats {
        self.custody.stats()
    }

    /// Who is custodian of `resource` in the latest configuration this node
    /// knows: every node that knows the same epoch answers the same.
    pub fn owner(&self, resource: &str) -> Option<OwnerInfo> {
        let config = self.store.latest()?;
        let ring = self.custody.ring()?;
        let (range, owner) = ring.locate(resource)?;
        let k = usize::from(config.replication);
        Some(OwnerInfo {
            resource: resource.to_string(),
            epoch: self.custody.epoch(),
            range: range.to_string(),
            custodian: owner.name.to_string(),
            addr: owner.addr,
            replicas: ring.replicas(range, k).into_iter().map(|m| m.name.to_string()).collect(),
        })
    }

    /// The node's view of the epoch store, as `custody status` shows it.
    pub fn status(&self) -> StatusInfo {
        let config = self.store.latest();
        let name_of = |addr: SocketAddr| {
            config.and_then(|c| c.member(addr)).map(|m| m.id.name.to_string()).unwrap_or_else(|| addr.to_string())
        };
        let lease_remaining_ms = self
            .store
            .lease_end()
            .map(|end| end.saturating_since(self.now + self.config.d_max).as_millis() as u64)
            .unwrap_or(0);
        StatusInfo {
            name: self.swim.identity().name.to_string(),
            epoch: config.map_or(0, |c| c.epoch),
            epoch_hash: config.map(|c| format!("{:016x}", c.hash())).unwrap_or_default(),
            leader: self.store.leader().map(name_of),
            voters: self.store.voters().iter().map(|&a| name_of(a)).collect(),
            lease_remaining_ms,
            members: config
                .map(|c| {
                    c.members
                        .iter()
                        .map(|m| StatusMember {
                            name: m.id.name.to_string(),
                            addr: m.id.addr,
                            incarnation: m.id.incarnation,
                            status: m.status,
                            voter: self.store.voters().contains(&m.id.addr),
                            leader: self.store.leader() == Some(m.id.addr),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            custody: self.custody.info(),
        }
    }

    /// Live members other than this node.
    pub fn num_members(&self) -> usize {
        self.swim.num_members()
    }

    /// The membership view: this node and every member foca knows (alive,
    /// suspect, or down and not yet forgotten), sorted by address.
    pub fn members(&self) -> Vec<MemberInfo> {
        let me = self.swim.identity();
        let mut out: Vec<MemberInfo> = self
            .swim
            .iter_membership_state()
            .filter(|m| m.id().addr != me.addr)
            .map(|m| member_info(m.id(), swim_state(m.state())))
            .collect();
        let own_state = if self.left { MemberState::Down } else { MemberState::Alive };
        out.push(member_info(me, own_state));
        out.sort_by_key(|m| m.addr);
        out
    }

    /// Feeds one input. On error, nothing changed but a counter.
    pub fn handle(&mut self, now: Instant, input: Input) -> Result<(), InputError> {
        // A driver's clock never goes back; tolerate one that stutters.
        self.now = self.now.max(now);
        let result = if self.left {
            Err(InputError::Left)
        } else {
            match input {
                Input::Datagram { from, bytes } => self.handle_datagram(from, &bytes),
                Input::PeerFrame { from, bytes } => self.handle_peer_frame(from, &bytes),
                Input::ClientFrame { client, bytes } => self.handle_client_frame(client, &bytes),
                Input::Command(command) => self.handle_command(command),
                Input::Timeout => {
                    self.handle_timeout();
                    Ok(())
                }
                Input::TaskDone { resource, seq, outcome } => {
                    self.custody.finished(&resource, seq, outcome, self.now);
                    Ok(())
                }
            }
        };
        if !self.left {
            self.custody_step();
        }
        if result.is_err() {
            self.stats.inputs_rejected += 1;
        }
        result
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to feed [`Input::Timeout`] next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.left {
            return None;
        }
        [
            self.timers.next_deadline(),
            self.join_retry_at,
            self.sync_at,
            self.announce_at,
            self.store.next_deadline(),
            self.leave_deadline,
            self.custody.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle_datagram(&mut self, from: SocketAddr, bytes: &[u8]) -> Result<(), InputError> {
        let packet = wire::decode_datagram(bytes)?;
        self.handle_swim(from, packet)
    }

    fn handle_swim(&mut self, _from: SocketAddr, packet: &[u8]) -> Result<(), InputError> {
        self.stats.swim_packets_received += 1;
        // The one foca call that may hand gossip to `EpochGossip`.
        let result = self.swim_call(true, |swim, effects| swim.handle_data(packet, effects));
        result.map_err(|e| InputError::Swim(e.to_string()))
    }

    fn handle_peer_frame(&mut self, from: SocketAddr, bytes: &[u8]) -> Result<(), InputError> {
        match wire::decode_frame(bytes)? {
            Frame::Swim(packet) => self.handle_swim(from, packet),
            Frame::Message(Message::SyncRequest(theirs)) => {
                if theirs.len() > SYNC_MEMBERS_MAX {
                    return Err(InputError::TooManyMembers(theirs.len()));
                }
                let window = self.sync_window();
                let ours = self.sync_ranks(window);
                let theirs_ranks: Vec<SyncRank> = theirs.iter().map(SyncRank::of).collect();
                // Answer with what they lack or hold older, before applying
                // what they know better.
                let answer = self.sync_members(window, Some(&newer_than(&ours, &theirs_ranks)));
                let learn = newer_than(&theirs_ranks, &ours);
                self.apply_sync(pick(theirs, &learn))?;
                self.send_message(from, &Message::SyncResponse(answer));
                Ok(())
            }
            Frame::Message(Message::SyncResponse(theirs)) => {
                if theirs.len() > SYNC_MEMBERS_MAX {
                    return Err(InputError::TooManyMembers(theirs.len()));
                }
                let window = self.sync_window();
                if theirs.is_empty() {
                    return Ok(());
                }
                let ours = self.sync_ranks(window);
                let theirs_ranks: Vec<SyncRank> = theirs.iter().map(SyncRank::of).collect();
                let learn = newer_than(&theirs_ranks, &ours);
                self.apply_sync(pick(theirs, &learn))
            }
            Frame::Message(Message::Raft { origin, bytes }) => {
                let result = self.store.handle_raft(from, origin, &bytes, self.now);
                self.flush_store();
                result.map_err(InputError::Epoch)
            }
            Frame::Message(Message::Epoch(msg)) => {
                self.store.handle_message(from, msg, self.now);
                self.flush_store();
                Ok(())
            }
            Frame::Message(Message::Task(msg)) => {
                self.handle_task_message(from, msg);
                Ok(())
            }
            Frame::Message(Message::Request(_)) => Err(InputError::Unexpected("client request on a peer stream")),
            Frame::Message(Message::Response(_)) => Err(InputError::Unexpected("response")),
        }
    }

    /// Carries out what the epoch store asked for.
    fn flush_store(&mut self) {
        let outputs: Vec<StoreOutput> = self.store.drain().collect();
        for output in outputs {
            match output {
                StoreOutput::Send(to, message) => self.send_message(to, &message),
                StoreOutput::Announce(epoch, hash) => {
                    if let Err(e) = self.swim.add_broadcast(&membership::epoch_item(epoch, hash)) {
                        tracing::warn!(error = %e, "cannot gossip an epoch");
                    }
                    self.drain_heard();
                }
                StoreOutput::Event(event) => {
                    if matches!(event, EpochEvent::EpochLearned { .. })
                        && let Some(config) = self.store.latest()
                    {
                        self.custody.on_epoch(config, self.now);
                    }
                    let removed = event == EpochEvent::Removed;
                    self.push(Output::Event(Event::Epoch(event)));
                    if removed {
                        self.on_removed();
                    }
                }
            }
        }
        self.check_name();
        self.try_finish_leave();
    }

    /// A node that is not a member of the latest configuration it knows
    /// refuses to join if a member of it at another address holds its name
    /// and is alive in its SWIM view: it says so and leaves. (The leader
    /// does not admit such a join either.) A member never gives up its
    /// place this way.
    fn check_name(&mut self) {
        if self.left || self.name_clash.is_some() {
            return;
        }
        let me = self.swim.identity();
        let Some(config) = self.store.latest() else { return };
        if config.member(me.addr).is_some_and(|m| m.id.incarnation == me.incarnation) {
            return;
        }
        let alive = |id: &NodeId| {
            self.swim.iter_membership_state().any(|m| m.id().life() == *id && m.state() != foca::State::Down)
        };
        let Some(holder) = config.members.iter().find(|m| m.id.name == me.name && m.id.addr != me.addr && alive(&m.id))
        else {
            return;
        };
        let holder = holder.id.clone();
        tracing::error!(
            name = %me.name,
            holder = %holder.addr,
            "the name is held by a live member at another address: not joining under it"
        );
        self.name_clash = Some(holder);
        self.finish_leave();
    }

    /// Hands epoch announcements heard by gossip to the store.
    fn drain_heard(&mut self) {
        let heard: Vec<(u64, u64, Option<SocketAddr>)> =
            std::mem::take(&mut *self.heard.lock().expect("the engine never panics holding this lock"));
        for (epoch, hash, from) in heard {
            self.store.heard(epoch, hash, from, self.now);
        }
    }

    /// The store removed this life: stop acting, and come back as a new life
    /// (a higher incarnation), which the leader admits like any join.
    fn on_removed(&mut self) {
        if self.leave_deadline.is_some() {
            // Leaving anyway: no new life. What this life held was cut for
            // the new owners when the removal epoch was learned; the leave
            // ends once it is handed over, within `handoff_timeout` from now.
            self.leave_deadline = Some(self.now + self.config.handoff_timeout);
            return;
        }
        let new = self.swim.identity().next_life();
        tracing::warn!(new = %new, "removed from the configuration: rejoining as a new life");
        self.store.renew_identity(new.clone());
        self.custody.renew_identity(new.clone(), self.now);
        if let Err(e) = self.with_swim(|swim, effects| swim.change_identity(new.clone(), effects)) {
            tracing::warn!(error = %e, "change identity");
        }
        self.push(Output::Event(Event::Rejoined(new)));
    }

    /// This node's membership state for a sync: itself and what foca holds,
    /// at most [`SYNC_MEMBERS_MAX`] (starting at a random member when there
    /// are more, so repeated syncs cover everyone).
    fn sync_state(&mut self) -> Vec<SyncMember> {
        let window = self.sync_window();
        self.sync_members(window, None)
    }

    /// Which of foca's members a sync carries: `(skip, take)` over foca's
    /// list read twice round. Draws from the engine's generator only when
    /// there are more members than a sync carries.
    fn sync_window(&mut self) -> (usize, usize) {
        let total = self.swim.iter_membership_state().len();
        let skip = if total > SYNC_MEMBERS_MAX - 1 { self.rng.random_range(0..total) } else { 0 };
        (skip, total.min(SYNC_MEMBERS_MAX - 1))
    }

    /// The sync state of `window` (this node first): whole, or only the
    /// entries at `only` (ascending places in it).
    fn sync_members(&self, (skip, take): (usize, usize), only: Option<&[usize]>) -> Vec<SyncMember> {
        let members = self.swim.iter_membership_state().chain(self.swim.iter_membership_state()).skip(skip).take(take);
        let entries = std::iter::once(None).chain(members.map(Some));
        let entry = |m: Option<&foca::Member<NodeId>>| match m {
            None => SyncMember { id: self.swim.identity().clone(), incarnation: 0, state: MemberState::Alive },
            Some(m) => SyncMember { id: m.id().clone(), incarnation: m.incarnation(), state: swim_state(m.state()) },
        };
        let Some(only) = only else { return entries.map(entry).collect() };
        // Clone only the identities asked for.
        let mut wanted = only.iter().copied().peekable();
        entries.enumerate().filter(|&(place, _)| wanted.next_if_eq(&place).is_some()).map(|(_, m)| entry(m)).collect()
    }

    /// The ranks of the sync state of `window`, in its order, without
    /// cloning an identity.
    fn sync_ranks(&self, (skip, take): (usize, usize)) -> Vec<SyncRank> {
        let me = self.swim.identity();
        let members = self.swim.iter_membership_state().chain(self.swim.iter_membership_state()).skip(skip).take(take);
        std::iter::once(SyncRank::new(me, 0, MemberState::Alive))
            .chain(members.map(|m| SyncRank::new(m.id(), m.incarnation(), swim_state(m.state()))))
            .collect()
    }

    fn apply_sync(&mut self, members: Vec<SyncMember>) -> Result<(), InputError> {
        if members.is_empty() {
            return Ok(());
        }
        // Syncs add members a few thousand at a time, but many of them
        // would grow the member list (and foca's timers) without bound: past
        // [`MEMBERS_MAX`], only members already known are updated.
        let room = epoch::MEMBERS_MAX.saturating_sub(self.swim.num_members());
        let members: Vec<SyncMember> = if members.len() <= room {
            members
        } else {
            let known: BTreeSet<SocketAddr> = self.swim.iter_membership_state().map(|k| k.id().addr).collect();
            let mut new = 0usize;
            members
                .into_iter()
                .filter(|m| {
                    known.contains(&m.id.addr) || {
                        new += 1;
                        new <= room
                    }
                })
                .collect()
        };
        let updates = members.into_iter().map(|m| {
            let state = match m.state {
                MemberState::Alive => foca::State::Alive,
                MemberState::Suspect => foca::State::Suspect,
                MemberState::Down => foca::State::Down,
            };
            foca::Member::new(m.id, m.incarnation, state)
        });
        let result = self.with_swim(|swim, effects| swim.apply_many(updates, true, effects));
        result.map_err(|e| InputError::Swim(e.to_string()))
    }

    /// Starts a membership sync with a random live member.
    fn sync_with_random_member(&mut self) {
        let next = if std::mem::take(&mut self.resync_after_join) {
            (self.config.probe_period * 2).min(self.config.sync_period)
        } else {
            self.config.sync_period
        };
        self.sync_at = Some(self.now + next);
        let count = self.swim.num_members();
        if count == 0 {
            return;
        }
        let pick = self.rng.random_range(0..count);
        let Some(peer) = self.swim.iter_members().nth(pick).map(|m| m.id().addr) else { return };
        let state = self.sync_state();
        self.send_message(peer, &Message::SyncRequest(state));
    }

    /// Announces to one random live member: its feed in return repairs this
    /// node's view. Often while membership is changing, rarely otherwise.
    fn announce_to_random_member(&mut self) {
        let period = self.config.announce_period;
        let unsettled = self.now < self.changed_at + period * 10;
        self.announce_at = Some(self.now + if unsettled { period } else { period * 5 });
        let count = self.swim.num_members();
        if count == 0 {
            return;
        }
        let pick = self.rng.random_range(0..count);
        let Some(peer) = self.swim.iter_members().nth(pick).map(|m| m.id().clone()) else { return };
        if let Err(e) = self.with_swim(|swim, effects| swim.announce(peer, effects)) {
            tracing::debug!(error = %e, "announce");
        }
    }

    /// Membership changed: announce at the fast period again.
    fn membership_changed(&mut self) {
        self.changed_at = self.now;
        let soon = self.now + self.config.announce_period;
        if self.announce_at.is_none_or(|at| at > soon) {
            self.announce_at = Some(soon);
        }
    }

    fn send_message(&mut self, to: SocketAddr, message: &Message) {
        match wire::encode_message(message) {
            Ok(bytes) => self.push(Output::PeerFrame { to, bytes }),
            Err(e) => tracing::warn!(peer = %to, error = %e, "cannot encode a message"),
        }
    }

    fn handle_client_frame(&mut self, client: ClientId, bytes: &[u8]) -> Result<(), InputError> {
        let request = match wire::decode_frame(bytes)? {
            Frame::Message(Message::Request(request)) => request,
            Frame::Swim(_) => return Err(InputError::Unexpected("SWIM packet on a client stream")),
            Frame::Message(_) => return Err(InputError::Unexpected("peer message on a client stream")),
        };
        match request {
            Request::Members => {
                let members = self.members();
                self.reply(client, Response::Members(members));
            }
            Request::Leave => {
                self.reply(client, Response::Leaving);
                self.leave();
            }
            Request::Status => {
                let status = self.status();
                self.reply(client, Response::Status(status));
            }
            Request::Owner { resource } => {
                let owner = self.owner(&resource);
                self.reply(client, Response::Owner(owner));
            }
            Request::Submit { task, wait } => {
                let lease_ok = self.may_act_as_custodian(self.now);
                self.custody.submit(client, task, wait, self.now, lease_ok);
            }
        }
        Ok(())
    }

    fn handle_task_message(&mut self, from: SocketAddr, msg: TaskMsg) {
        let lease_ok = self.may_act_as_custodian(self.now);
        match msg {
            TaskMsg::Submit { req, task, wait, epoch, seq } => {
                if epoch > self.custody.epoch() {
                    tracing::debug!(epoch, "a submit routed by a newer epoch than this node knows");
                }
                self.custody.on_submit(from, custody::Ask { req, wait, seq }, task, lease_ok, self.now);
            }
            TaskMsg::Transfer(transfer) => self.custody.on_transfer(from, transfer, self.now),
            TaskMsg::TransferAck { id } => self.custody.on_transfer_ack(from, id, self.now),
            answer => self.custody.on_answer(from, answer, self.now, lease_ok),
        }
    }

    /// After every input: tell the store once a leaving node has handed
    /// off, start what may start, and carry out what custody asked for.
    fn custody_step(&mut self) {
        // Only a leave in progress has anything to report: the member
        // lookup below is skipped on every other input.
        if self.leave_deadline.is_some() && self.leaving_in_latest() && self.custody.handed_off() {
            self.store.handed_off(self.now);
            self.flush_store();
        }
        let lease_ok = self.may_act_as_custodian(self.now);
        self.custody.pump(self.now, lease_ok);
        let outputs: Vec<CustodyOutput> = self.custody.drain().collect();
        for output in outputs {
            match output {
                CustodyOutput::Send(to, msg) => self.send_message(to, &Message::Task(msg)),
                CustodyOutput::Reply(client, response) => self.reply(client, response),
                CustodyOutput::Execute(execution) => self.push(Output::Execute(execution)),
            }
        }
        // A handoff finished (or a transfer went out): a leave may end now.
        self.try_finish_leave();
    }

    /// Whether the latest configuration holds this life as leaving.
    fn leaving_in_latest(&self) -> bool {
        let me = self.swim.identity();
        // `m.id == me.life()`, without cloning the identity.
        self.store.latest().and_then(|c| c.member(me.addr)).is_some_and(|m| {
            m.status == MemberStatus::Leaving
                && m.id.incarnation == me.incarnation
                && m.id.generation == 0
                && m.id.name == me.name
        })
    }

    fn reply(&mut self, client: ClientId, response: Response) {
        let bytes = match wire::encode_message(&Message::Response(response)) {
            Ok(bytes) => bytes,
            Err(e) => wire::encode_message(&Message::Response(Response::Error(e.to_string())))
                .expect("a short error message encodes"),
        };
        self.push(Output::Reply { client, bytes });
    }

    fn handle_command(&mut self, command: Command) -> Result<(), InputError> {
        match command {
            Command::Join(seeds) => {
                if seeds.len() > SEEDS_MAX {
                    return Err(InputError::TooManySeeds(seeds.len()));
                }
                let own = self.swim.identity().addr;
                self.seeds = seeds.into_iter().filter(|&s| s != own).collect();
                self.seeds.sort();
                self.seeds.dedup();
                self.store.set_seeds(&self.seeds, self.now);
                self.announce_to_seeds();
            }
            Command::Leave => self.leave(),
            Command::Bootstrap => {
                self.store.bootstrap(self.now);
                self.flush_store();
            }
            Command::LearnMembers(members) => {
                if members.len() > LEARN_MEMBERS_MAX {
                    return Err(InputError::TooManyMembers(members.len()));
                }
                let updates = members.into_iter().map(foca::Member::alive);
                let result = self.with_swim(|swim, effects| swim.apply_many(updates, false, effects));
                result.map_err(|e| InputError::Swim(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// A graceful leave: if this life is a member of the committed
    /// configuration, ask the store to mark it leaving and remove it, and
    /// leave SWIM once the removal epoch is learned (or after a bounded
    /// wait, after which the others remove it by suspicion votes). A node
    /// that is no longer a member (removed before, or while, it leaves)
    /// still hands over what it holds first, within `handoff_timeout`.
    /// Either way it goes only once the Raft group no longer counts it as a
    /// voter (see [`Node::try_finish_leave`]).
    fn leave(&mut self) {
        if self.leave_deadline.is_some() {
            return;
        }
        // The last member has nobody to hand over to, nor anyone to tell.
        let others = self.store.latest().is_some_and(|c| c.members.len() > 1);
        if self.store.is_member() && !self.store.was_removed() && others {
            self.store.request_leave(self.now);
            self.leave_deadline = Some(self.now + self.leave_timeout());
            self.flush_store();
        } else {
            // Not a member: it hands over what an earlier life held, and
            // asks the leader not to admit it meanwhile (a leave request
            // keeps a join out of the next epoch).
            self.leave_deadline = Some(self.now + self.config.handoff_timeout);
            self.store.request_leave(self.now);
            self.flush_store();
        }
    }

    /// Ends a leave in progress once nothing keeps it: this life is no
    /// longer a member (removed, or never admitted) and custody handed off
    /// everything it held (the transfers cut when the removal was learned
    /// included), and no peer of this node is a voter of the Raft group any
    /// more (leaving would take a live voter from its quorum); or at once
    /// when it is the last member (nobody to hand over to).
    fn try_finish_leave(&mut self) {
        if self.leave_deadline.is_none() || self.left {
            return;
        }
        let member = self.store.is_member() && !self.store.was_removed();
        let alone = member && self.store.latest().is_some_and(|c| c.members.len() == 1);
        // A removal can be heard of (a lease answer) before its epoch is
        // learned: until then custody holds the earlier life's parts idle,
        // not handed off, and the leave waits for that epoch.
        let me = self.swim.identity();
        let earlier_life_listed =
            self.store.latest().and_then(|c| c.member(me.addr)).is_some_and(|m| m.id.incarnation < me.incarnation);
        let done = !earlier_life_listed && self.custody.handed_off() && !self.store.holds_vote();
        if alone || (!member && done) {
            self.finish_leave();
        }
    }

    /// How long a leave waits for its removal epoch: the handoffs' bound,
    /// two batching windows and a lease, enough for a leader change in
    /// between.
    fn leave_timeout(&self) -> std::time::Duration {
        self.config.stable_after * 2 + self.config.lease + self.config.handoff_timeout
    }

    fn finish_leave(&mut self) {
        if self.left {
            return;
        }
        // Set first: the SWIM call below flushes the store, which must not
        // come back here.
        self.left = true;
        self.join_retry_at = None;
        self.sync_at = None;
        self.announce_at = None;
        self.leave_deadline = None;
        // foca gossips our own Down to a few members and goes quiet.
        if let Err(e) = self.with_swim(|swim, effects| swim.leave_cluster(effects)) {
            tracing::debug!(error = %e, "leave_cluster");
        }
        self.push(Output::Event(Event::Left));
    }

    fn announce_to_seeds(&mut self) {
        if self.seeds.is_empty() {
            self.join_retry_at = None;
            return;
        }
        for i in 0..self.seeds.len() {
            let seed = NodeId::seed(self.seeds[i]);
            if let Err(e) = self.with_swim(|swim, effects| swim.announce(seed, effects)) {
                tracing::debug!(error = %e, "announce");
            }
            self.stats.announces_sent += 1;
        }
        self.join_retry_at = Some(self.now + self.config.join_retry);
    }

    fn handle_timeout(&mut self) {
        let now = self.now;
        for _ in 0..TIMERS_PER_TIMEOUT_MAX {
            let Some(timer) = self.timers.pop_due(now) else { break };
            if let Err(e) = self.with_swim(|swim, effects| swim.handle_timer(timer, effects)) {
                tracing::debug!(error = %e, "foca timer");
            }
        }
        if self.sync_at.is_some_and(|at| at <= now) {
            self.sync_with_random_member();
        }
        if self.announce_at.is_some_and(|at| at <= now) {
            self.announce_to_random_member();
        }
        if self.store.next_deadline().is_some_and(|at| at <= now) {
            self.store.handle_timeout(now);
            self.flush_store();
        }
        if self.custody.next_deadline().is_some_and(|at| at <= now) {
            let lease_ok = self.may_act_as_custodian(now);
            self.custody.handle_timeout(now, lease_ok);
        }
        if self.leave_deadline.is_some_and(|at| at <= now) {
            if self.store.is_member() && !self.store.was_removed() {
                tracing::warn!("the removal epoch did not come in time; leaving anyway");
            } else if !self.custody.handed_off() {
                tracing::warn!("the handoffs did not finish in time; leaving anyway");
            } else {
                tracing::warn!("the epoch store still counts this node as a voter; leaving anyway");
            }
            self.finish_leave();
        }
        if self.join_retry_at.is_some_and(|at| at <= now) {
            // Members alone are not the cluster: another joiner may have
            // joined through this node while its seeds were out of reach.
            // Until it has learned a configuration, it keeps asking them.
            if self.swim.num_members() == 0 || self.store.latest().is_none() {
                self.announce_to_seeds();
            } else {
                self.join_retry_at = None;
            }
        }
    }

    /// Runs one foca call, then turns what it asked for into outputs.
    fn with_swim<R>(&mut self, call: impl FnOnce(&mut Swim, &mut Effects<'_>) -> R) -> R {
        self.swim_call(false, call)
    }

    /// [`Node::with_swim`]; `gossip` says whether the call may have handed
    /// epoch announcements to [`EpochGossip`] (only received packets do:
    /// timers, announces and applied updates never carry custom
    /// broadcasts), which are then passed on to the store.
    fn swim_call<R>(&mut self, gossip: bool, call: impl FnOnce(&mut Swim, &mut Effects<'_>) -> R) -> R {
        let mut effects = Effects {
            now: self.now,
            timers: &mut self.timers,
            sends: &mut self.sends,
            notifications: &mut self.notifications,
        };
        let result = call(&mut self.swim, &mut effects);
        if self.timers.len() > TIMERS_MAX {
            // Members learned by gossip are not capped by foca; a peer that
            // floods made-up members must not stop the node. Logged, not a
            // panic: the timers are foca's and it needs them.
            tracing::error!(
                timers = self.timers.len(),
                bound = TIMERS_MAX,
                "foca scheduled more timers than the bound"
            );
        }
        // Drained, and put back: the buffers keep their capacity, unless a
        // burst (a thousand members learned at once) made it large.
        let mut sends = std::mem::take(&mut self.sends);
        for (to, bytes) in sends.drain(..) {
            if self.is_spurious_turn_undead(&bytes) {
                self.stats.turn_undead_suppressed += 1;
                continue;
            }
            self.stats.swim_packets_sent += 1;
            self.push(Output::Datagram { to, bytes });
        }
        if self.sends.is_empty() && sends.capacity() <= SCRATCH_KEPT_MAX {
            self.sends = sends;
        }
        let mut notifications = std::mem::take(&mut self.notifications);
        for notification in notifications.drain(..) {
            self.handle_notification(notification);
        }
        if self.notifications.is_empty() && notifications.capacity() <= SCRATCH_KEPT_MAX {
            self.notifications = notifications;
        }
        if gossip {
            self.drain_heard();
        }
        self.flush_store();
        result
    }

    /// Whether a packet foca wants to send is a `TurnUndead` ("the cluster
    /// thinks you are down") to a member this node holds as alive or
    /// suspect.
    ///
    /// foca 2.0 sends one when a suspicion timer fires for a member that has
    /// refuted the suspicion in the meantime: the timer's condition fails,
    /// nothing is declared down, but the courtesy message still goes out, and
    /// the member, told it is down, rejoins with a new incarnation. Under
    /// loss that is a stream of needless identity changes (each of which a
    /// committed ring would see as a restart). A `TurnUndead` after a real
    /// Down declaration, or to an identity that is not (or no longer) an
    /// active member here, still goes out.
    fn is_spurious_turn_undead(&self, datagram: &[u8]) -> bool {
        let Ok(packet) = wire::decode_datagram(datagram) else { return false };
        if membership::peek_message_tag(packet) != Some(membership::TAG_TURN_UNDEAD) {
            return false;
        }
        let Ok(header) = foca::Codec::decode_header(&mut SwimCodec, packet) else { return false };
        header.message == foca::Message::TurnUndead
            && self.swim.iter_membership_state().any(|m| m.id() == &header.dst && m.state() != foca::State::Down)
    }

    fn handle_notification(&mut self, notification: OwnedNotification<NodeId>) {
        if !matches!(notification, OwnedNotification::Defunct) {
            self.membership_changed();
        }
        let event = match notification {
            OwnedNotification::MemberUp(id) => {
                self.store.member_up(&id, self.now);
                Event::MemberUp(id)
            }
            OwnedNotification::MemberDown(id) => {
                self.store.member_down(&id, self.now);
                self.push(Output::ClosePeer(id.addr));
                Event::MemberDown(id)
            }
            OwnedNotification::Rename(old, new) => {
                self.store.member_up(&new, self.now);
                Event::MemberRenamed { old, new }
            }
            OwnedNotification::Active => {
                // Joined someone; the retries stop once a configuration is
                // learned (see `handle_timeout`).
                // Pull the full member list at once: the announce's answer
                // carries only what fits in one packet.
                self.sync_at = Some(self.now);
                self.resync_after_join = true;
                Event::Joined
            }
            OwnedNotification::Idle => {
                // foca stops every periodic task when it knows no live
                // member; only our own re-announce brings it back.
                if !self.seeds.is_empty() && !self.left {
                    self.join_retry_at = Some(self.now + self.config.join_retry);
                }
                Event::Isolated
            }
            // A new SWIM generation of the same life: the store's view of
            // this node (its life, lease and Raft peer) is unchanged.
            OwnedNotification::Rejoin(id) => {
                // Push the new identity and pull the member list at once, as
                // after a first join: after a healed partition everyone
                // renews at the same time, and gossip alone leaves a tail.
                self.sync_at = Some(self.now);
                self.resync_after_join = true;
                Event::Rejoined(id)
            }
            // After our own leave_cluster: `Left` is emitted by `leave`.
            OwnedNotification::Defunct => return,
        };
        self.push(Output::Event(event));
    }

    fn push(&mut self, output: Output) {
        assert!(
            self.outputs.len() < OUTPUTS_MAX,
            "{OUTPUTS_MAX} outputs not polled: the driver must drain poll_output after every handle"
        );
        self.outputs.push_back(output);
    }
}

/// The entries of `a` that `b` lacks or holds older, by SWIM's precedence: a
/// later life of an address wins; within one life a higher SWIM incarnation
/// wins; at equal incarnation Down beats Suspect beats Alive. Applying only
/// these keeps a sync between two converged nodes free of work (foca applies
/// each update with a linear search of its member list).
///
/// Returns the places in `a`, ascending. When `b` names an address twice,
/// its last entry counts.
fn newer_than(a: &[SyncRank], b: &[SyncRank]) -> Vec<usize> {
    let known = AddrIndex::new(b);
    a.iter().enumerate().filter(|(_, m)| known.get(m.addr).is_none_or(|k| m.rank > k.rank)).map(|(i, _)| i).collect()
}

/// The last entry of each address in a sync state, found by hashing: an
/// open-addressed table of places. Syncs carry whole member lists, so this
/// replaces a map of socket addresses per sync. It is only looked up, never
/// iterated: the hash decides no order.
struct AddrIndex<'a> {
    ranks: &'a [SyncRank],
    /// Places in `ranks`; `u32::MAX` is an empty slot.
    slots: Vec<u32>,
}

impl<'a> AddrIndex<'a> {
    fn new(ranks: &'a [SyncRank]) -> AddrIndex<'a> {
        let len = (ranks.len() * 2).next_power_of_two().max(8);
        let mut index = AddrIndex { ranks, slots: vec![u32::MAX; len] };
        for (place, rank) in ranks.iter().enumerate() {
            let place = u32::try_from(place).expect("a sync state is bounded by SYNC_MEMBERS_MAX");
            let slot = index.find(rank.addr);
            // A later entry of the same address replaces the earlier one.
            index.slots[slot] = place;
        }
        index
    }

    /// The slot holding `addr`, or the empty slot where it would go.
    fn find(&self, addr: AddrKey) -> usize {
        let mask = self.slots.len() - 1;
        let mut slot = addr.spread() as usize & mask;
        loop {
            match self.slots[slot] {
                u32::MAX => return slot,
                place if self.ranks[place as usize].addr == addr => return slot,
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    fn get(&self, addr: AddrKey) -> Option<&SyncRank> {
        match self.slots[self.find(addr)] {
            u32::MAX => None,
            place => Some(&self.ranks[place as usize]),
        }
    }
}

/// The entries of `members` at `places` (ascending).
fn pick(members: Vec<SyncMember>, places: &[usize]) -> Vec<SyncMember> {
    let mut wanted = places.iter().copied().peekable();
    let mut out = Vec::with_capacity(places.len());
    for (place, member) in members.into_iter().enumerate() {
        if wanted.peek().is_none() {
            break;
        }
        if wanted.peek() == Some(&place) {
            wanted.next();
            out.push(member);
        }
    }
    out
}

/// A socket address as a pair of integers, cheap to compare and to hash:
/// equal exactly when the addresses are equal. IPv4 `(0, 1 << 96 | ip << 16
/// | port)`; IPv6 `(ip, port << 64 | flowinfo << 32 | scope_id)`, whose
/// second half stays below 2^80.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AddrKey(u128, u128);

impl AddrKey {
    /// The key's bits, mixed (a table slot).
    fn spread(self) -> u64 {
        let folded = self.0 as u64 ^ (self.0 >> 64) as u64 ^ (self.1 as u64).rotate_left(29) ^ (self.1 >> 64) as u64;
        let x = (folded ^ (folded >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    }

    fn of(addr: &SocketAddr) -> AddrKey {
        match addr {
            SocketAddr::V4(a) => AddrKey(0, 1 << 96 | u128::from(a.ip().to_bits()) << 16 | u128::from(a.port())),
            SocketAddr::V6(a) => AddrKey(
                a.ip().to_bits(),
                u128::from(a.port()) << 64 | u128::from(a.flowinfo()) << 32 | u128::from(a.scope_id()),
            ),
        }
    }
}

/// What a sync compares of an entry: its address and its precedence
/// `(life's incarnation, SWIM generation, down, SWIM incarnation, state)`.
/// A newer life or generation is another identity and wins; within one
/// identity Down is final whatever the SWIM incarnation (as in SWIM), so a
/// member that left at incarnation 0 is not kept alive by a suspicion of it
/// at incarnation 1.
#[derive(Debug, Clone, Copy)]
struct SyncRank {
    addr: AddrKey,
    rank: (u64, u32, bool, u16, MemberState),
}

impl SyncRank {
    fn new(id: &NodeId, incarnation: u16, state: MemberState) -> SyncRank {
        let down = state == MemberState::Down;
        SyncRank { addr: AddrKey::of(&id.addr), rank: (id.incarnation, id.generation, down, incarnation, state) }
    }

    fn of(m: &SyncMember) -> SyncRank {
        SyncRank::new(&m.id, m.incarnation, m.state)
    }
}

fn swim_state(state: foca::State) -> MemberState {
    match state {
        foca::State::Alive => MemberState::Alive,
        foca::State::Suspect => MemberState::Suspect,
        foca::State::Down => MemberState::Down,
    }
}

fn member_info(id: &NodeId, state: MemberState) -> MemberInfo {
    MemberInfo { name: id.name.to_string(), addr: id.addr, incarnation: id.incarnation, state }
}

#[cfg(test)]
mod tests;
