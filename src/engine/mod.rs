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
mod io;
mod leave;
pub mod membership;
pub mod ring;
pub mod store;
mod swim;
mod sync;
pub mod task;
pub mod time;
mod view;
pub mod wire;

use std::collections::VecDeque;
use std::net::SocketAddr;

use foca::OwnedNotification;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

pub use config::{Config, ConfigError};
pub use custody::{CustodyStats, Execution};
pub use epoch::{Configuration, MemberStatus};
pub use id::NodeId;
pub use io::{ClientId, Command, Event, Input, InputError, Output, Stats};
pub use store::{StoreEvent as EpochEvent, StoreStats};
pub use task::{Outcome, Task, Token};
pub use time::Instant;
pub use wire::{MemberInfo, MemberState, WireError};

use custody::{Custody, CustodyOutput};
use membership::{EpochGossip, Heard, Swim, SwimCodec, Timers};
use store::{EpochStore, StoreOutput};
use wire::{Frame, Message, Request, Response, TaskMsg};

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

/// Most rounds of the engine's drain loop in one input. A round's work
/// queues the next round's (a removal learned, a rejoin, its notifications);
/// such chains are a few rounds long.
pub const DRAIN_ROUNDS_MAX: usize = 64;

/// Most foca notifications queued in one input: one per member change, and
/// an input changes at most [`LEARN_MEMBERS_MAX`] members.
pub const NOTIFICATIONS_MAX: usize = 2 * LEARN_MEMBERS_MAX;

/// Largest capacity a scratch buffer of foca's callbacks keeps between
/// calls; a larger one (after a burst) is freed.
const SCRATCH_KEPT_MAX: usize = 64;

/// Most members one [`Command::LearnMembers`] may carry.
pub const LEARN_MEMBERS_MAX: usize = 65_536;

/// Most members one membership sync carries or accepts; a larger view is
/// sent in part (a different part each time), which keeps a sync frame well
/// under [`wire::FRAME_LEN_MAX`].
pub const SYNC_MEMBERS_MAX: usize = 4096;

/// One node's protocol state. See the module docs for the driving contract.
pub struct Node {
    config: Config,
    now: Instant,
    swim: Swim,
    timers: Timers,
    outputs: VecDeque<Output>,
    /// What foca's callbacks send during one call: outputs right after it.
    sends: Vec<(SocketAddr, Vec<u8>)>,
    /// foca's notifications, queued for the drain loop (at most
    /// [`NOTIFICATIONS_MAX`]).
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
    /// The end of the lease the running executions run under: this life's
    /// lease, followed as it is renewed; but once a removal withdraws it
    /// while executions run, the removed life's last lease, until they have
    /// all ended (a later life's lease does not cover what an earlier life
    /// started). They are cancelled `cancel_margin` before it ends.
    run_lease_end: Option<Instant>,
    /// `run_lease_end` stays at a removed life's lease until the executions
    /// it covers have ended.
    run_lease_frozen: bool,
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
        let mut custody = Custody::new(id.clone(), config.d_max, config.workers);
        custody.set_recovery_wait(config.recovery_wait());
        custody.set_recovery(config.recovery);
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
            run_lease_end: None,
            run_lease_frozen: false,
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

    /// Whether the node may act as custodian at `now`: accept tasks and
    /// start them. It holds a lease that outlasts the cancel margin by the
    /// task deadline, or by half a lease for tasks longer than that (`now +
    /// min(d_max, lease/2) + cancel_margin ≤ lease_end`). A task need not
    /// end within this lease: renewals go on while it runs, and if they
    /// stop, the node cancels it `cancel_margin` before the lease ends. A
    /// task that keeps its deadline and is shorter than half a lease
    /// therefore ends before that, and is never cancelled.
    pub fn may_act_as_custodian(&self, now: Instant) -> bool {
        let need = self.config.d_max.min(self.config.lease / 2) + self.config.cancel_margin;
        !self.left && self.store.lease_end().is_some_and(|end| now + need <= end)
    }

    /// Whether the running executions may go on at `now`: the lease they run
    /// under (see [`Node::track_run_lease`]) lasts beyond the cancel margin.
    fn run_lease_holds(&self, now: Instant) -> bool {
        self.run_lease_end.is_some_and(|end| now + self.config.cancel_margin < end)
    }

    /// Follows the lease the running executions run under: this life's, as
    /// it is renewed; once a removal withdraws it while executions run, the
    /// removed life's last one, until they have all ended.
    fn track_run_lease(&mut self) {
        let current = self.store.lease_end();
        if self.custody.running() == 0 {
            self.run_lease_end = current;
            self.run_lease_frozen = false;
        } else if current.is_none() {
            self.run_lease_frozen = true;
        } else if !self.run_lease_frozen {
            self.run_lease_end = current;
        }
    }

    /// When the running executions must be cancelled: `cancel_margin`
    /// before the lease they run under ends, if it is not renewed by then.
    fn cancel_at(&self) -> Option<Instant> {
        if self.custody.running_uncancelled() == 0 {
            return None;
        }
        let margin = u64::try_from(self.config.cancel_margin.as_micros()).unwrap_or(u64::MAX);
        Some(self.run_lease_end.map_or(self.now, |end| Instant::from_micros(end.as_micros().saturating_sub(margin))))
    }

    /// Custody's counters.
    pub fn custody_stats(&self) -> CustodyStats {
        self.custody.stats()
    }

    /// Live members other than this node.
    pub fn num_members(&self) -> usize {
        self.swim.num_members()
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
        self.drain();
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
            self.cancel_at(),
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
        let result = self.with_swim(|swim, effects| swim.handle_data(packet, effects));
        result.map_err(|e| InputError::Swim(e.to_string()))
    }

    fn handle_peer_frame(&mut self, from: SocketAddr, bytes: &[u8]) -> Result<(), InputError> {
        match wire::decode_frame(bytes)? {
            Frame::Swim(packet) => self.handle_swim(from, packet),
            Frame::Message(Message::SyncRequest(theirs)) => self.handle_sync_request(from, theirs),
            Frame::Message(Message::SyncResponse(theirs)) => self.handle_sync_response(theirs),
            Frame::Message(Message::Raft { origin, bytes }) => {
                self.store.handle_raft(from, origin, &bytes, self.now).map_err(InputError::Epoch)
            }
            Frame::Message(Message::Epoch(msg)) => {
                self.store.handle_message(from, msg, self.now);
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

    /// Carries out, after every input, what its handling queued: foca's
    /// notifications, epoch announcements heard by gossip, the epoch store's
    /// outputs, then custody's. Handlers only queue (the quinn-proto shape),
    /// so nothing here runs inside another handler: this loop is the one
    /// place where one part's output becomes another part's input. It runs
    /// until nothing is left, within [`DRAIN_ROUNDS_MAX`] rounds.
    fn drain(&mut self) {
        self.settle();
        if self.left {
            return;
        }
        // Only a leave in progress has anything to report: the member
        // lookup below is skipped on every other input.
        if self.leave_deadline.is_some() && self.leaving_in_latest() && self.custody.handed_off() {
            self.store.handed_off(self.now);
            self.settle();
        }
        // No execution outlasts its lease: when it is about to end without a
        // renewal, the running ones are cancelled (they stop within the
        // margin, assumption A2), and nothing starts.
        self.track_run_lease();
        let runs_on = self.run_lease_holds(self.now);
        if !runs_on && self.custody.running_uncancelled() > 0 {
            self.custody.cancel_running();
        }
        let lease_ok = runs_on && self.may_act_as_custodian(self.now);
        self.custody.pump(self.now, lease_ok);
        // A batch of writes due now goes with this input's outputs.
        self.custody.replication_timeout(self.now);
        let outputs: Vec<CustodyOutput> = self.custody.drain().collect();
        for output in outputs {
            match output {
                CustodyOutput::Send(to, msg) => self.send_message(to, &Message::Task(msg)),
                CustodyOutput::Reply(client, response) => self.reply(client, response),
                CustodyOutput::Execute(execution) => self.push(Output::Execute(execution)),
                CustodyOutput::Cancel { resource, seq } => self.push(Output::Cancel { resource, seq }),
                CustodyOutput::FetchEpoch(epoch) => self.store.fetch_past(epoch),
            }
        }
        // A handoff finished (or a transfer went out): a leave may end now.
        self.try_finish_leave();
        self.settle();
    }

    /// Passes membership and epoch-store work along until none is left.
    /// Each round takes what is queued, then carries it out (which may queue
    /// more for the next round); once a round finds nothing, the checks that
    /// may end this life's membership (a name clash, a finished leave) run,
    /// and whatever they queue is carried out too.
    fn settle(&mut self) {
        let mut checked = false;
        for _ in 0..DRAIN_ROUNDS_MAX {
            let notifications = std::mem::take(&mut self.notifications);
            let heard = std::mem::take(&mut *self.heard.lock().expect("the engine never panics holding this lock"));
            let store: Vec<StoreOutput> = self.store.drain().collect();
            if notifications.is_empty() && heard.is_empty() && store.is_empty() {
                if checked {
                    return;
                }
                self.check_name();
                self.try_finish_leave();
                checked = true;
                continue;
            }
            checked = false;
            for notification in notifications {
                self.handle_notification(notification);
            }
            for (epoch, hash, from) in heard {
                self.store.heard(epoch, hash, from, self.now);
            }
            for output in store {
                self.carry_out(output);
            }
        }
        tracing::error!(rounds = DRAIN_ROUNDS_MAX, "the engine's queues did not settle: left for the next input");
    }

    /// Does one thing the epoch store asked for.
    fn carry_out(&mut self, output: StoreOutput) {
        match output {
            StoreOutput::Send(to, message) => self.send_message(to, &message),
            StoreOutput::Past(config) => self.custody.on_past_epoch(&config, self.now),
            StoreOutput::Announce(epoch, hash) => {
                // Our own announcement is heard like any other (see
                // `EpochGossip`): the store takes it in the next round.
                if let Err(e) = self.swim.add_broadcast(&membership::epoch_item(epoch, hash)) {
                    tracing::warn!(error = %e, "cannot gossip an epoch");
                }
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
            TaskMsg::Replicate(r) => self.custody.on_replicate(from, r),
            TaskMsg::ReplicateAck(ack) => self.custody.on_replicate_ack(from, ack, self.now),
            TaskMsg::SyncMark(mark) => self.custody.on_sync_mark(from, mark),
            TaskMsg::SyncAck { id, ok } => self.custody.on_sync_ack(from, id, ok),
            TaskMsg::Recover { id, epoch, span } => self.custody.on_recover(from, id, epoch, span),
            TaskMsg::RecoverReply(reply) => self.custody.on_recover_reply(from, reply, self.now),
            answer => self.custody.on_answer(from, answer, self.now, lease_ok),
        }
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
            Command::Bootstrap => self.store.bootstrap(self.now),
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

    fn push(&mut self, output: Output) {
        assert!(
            self.outputs.len() < OUTPUTS_MAX,
            "{OUTPUTS_MAX} outputs not polled: the driver must drain poll_output after every handle"
        );
        self.outputs.push_back(output);
    }
}

fn swim_state(state: foca::State) -> MemberState {
    match state {
        foca::State::Alive => MemberState::Alive,
        foca::State::Suspect => MemberState::Suspect,
        foca::State::Down => MemberState::Down,
    }
}

#[cfg(test)]
mod tests;
