//! The tokio + quinn driver and the public [`Cluster`] handle.
//!
//! One driver task owns the engine's [`Node`] and the `Transport`: it
//! feeds the node what the network and the host bring, with the time since
//! the node started as `now`, and carries out what the node outputs. No lock
//! guards the node; everything reaches it through the driver's channels.

// The runtime is the part of custody that touches the outside world: it
// reads the clock and keys its connection cache by address in a HashMap.
// clippy.toml forbids both in the deterministic engine.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod handler;
mod tls;
pub mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::Instrument;

use crate::engine::id::NameTooLong;
use crate::engine::wire::{self, Completed, Message, OwnerInfo, Request, Response, StatusInfo, Submitted};
use crate::engine::{
    ClientId, Command, Config, ConfigError, EpochEvent, Event, Execution, Input, Instant, MemberInfo, Node, NodeId,
    Outcome, Output, Task, WireError,
};
use handler::DynHandler;
pub use handler::{Cancellation, ExecCtx, FnHandler, Handler, NoopHandler, handler_fn};
pub use transport::{Client, TransportStats, request};
use transport::{Counters, Inbound, Transport};

/// Inputs from the network waiting for the driver. Datagrams past it are
/// dropped (SWIM tolerates loss); frames wait (back-pressure).
pub const INBOX_MAX: usize = 4096;
/// Commands from [`Cluster`] handles waiting for the driver.
pub const COMMANDS_MAX: usize = 64;
/// Events buffered per [`Cluster::events`] receiver; a receiver that falls
/// further behind misses the oldest ones and is told how many.
pub const EVENTS_MAX: usize = 1024;
/// Client requests the engine has not answered yet. Past it, new ones are
/// refused as busy.
pub const CLIENT_REQUESTS_MAX: usize = 16_384;

/// What went wrong in the runtime or the client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range. Nothing was started.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The node name is too long. Nothing was started.
    #[error(transparent)]
    Name(#[from] NameTooLong),
    /// The listen address is a wildcard; peers need a concrete address to
    /// reach the node. Nothing was started.
    #[error("{0} is a wildcard address: give a concrete address to advertise (e.g. the host's LAN address)")]
    UnspecifiedAddress(SocketAddr),
    /// The UDP socket could not be bound. Nothing was started.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS set-up failed. Nothing was started.
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    /// An I/O error.
    #[error("I/O error: {0}")]
    Io(String),
    /// Could not reach a node.
    #[error("cannot reach the node at {addr}: {reason}")]
    Connect {
        /// The node's address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A node did not answer in time.
    #[error("the node at {addr} did not answer within {after:?}; is it running?")]
    Timeout {
        /// The node's address.
        addr: SocketAddr,
        /// The time waited.
        after: Duration,
    },
    /// An answer did not decode.
    #[error("bad answer: {0}")]
    Wire(#[from] WireError),
    /// An answer of the wrong kind.
    #[error("the node answered with something other than a response")]
    UnexpectedAnswer,
    /// The node has stopped (it left, or its driver ended).
    #[error("the node has stopped")]
    Stopped,
    /// A bound is reached (the node's or the custodian's queues); nothing was
    /// accepted. Retry later.
    #[error("busy: the task queues are full; retry later")]
    Busy,
    /// No custodian could take the task now (a handoff is in progress, its
    /// custodian was lost, or the node has no lease); nothing was accepted.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The node refused the request.
    #[error("refused: {0}")]
    Refused(String),
    /// The node did not join: a live member at another address already
    /// has its name. It has stopped.
    #[error(
        "the name {name:?} is already used by the live member at {holder}: \
         give this node another name (--name), or stop that member first"
    )]
    NameInUse {
        /// The name.
        name: String,
        /// The address of the member that holds it.
        holder: SocketAddr,
    },
}

/// Counters of one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// The engine's counters.
    pub engine: crate::engine::Stats,
    /// The transport's counters.
    pub transport: TransportStats,
}

/// Starts a [`Cluster`] node.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    listen: SocketAddr,
    advertise: Option<SocketAddr>,
    name: Option<String>,
    seeds: Vec<SocketAddr>,
    config: Config,
    incarnation: Option<u64>,
    rng_seed: Option<u64>,
    handler: Arc<dyn DynHandler>,
}

impl std::fmt::Debug for dyn DynHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handler")
    }
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            name: None,
            seeds: Vec::new(),
            config: Config::default(),
            incarnation: None,
            rng_seed: None,
            handler: Arc::new(NoopHandler),
        }
    }
}

impl ClusterBuilder {
    /// The UDP address to listen on. Default `127.0.0.1:0` (any free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The address peers reach this node at, when it differs from `listen`
    /// (e.g. listening on `0.0.0.0`). Its port must be the listening port.
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// The node's name. Default: its address. A name names one live node:
    /// a node joining under the name of a live member at another address
    /// is refused ([`Cluster::ready`] returns [`Error::NameInUse`]); a
    /// restart on the same address keeps its name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Nodes to join through. None: this node starts a new cluster.
    pub fn join(mut self, seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.seeds = seeds.into_iter().collect();
        self
    }

    /// Engine configuration. Default [`Config::lan`].
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// This life's incarnation. Default: milliseconds since the Unix epoch,
    /// so a restarted node always comes back higher.
    pub fn incarnation(mut self, incarnation: u64) -> Self {
        self.incarnation = Some(incarnation);
        self
    }

    /// Seed of the node's random choices. Default: derived from the
    /// incarnation and address.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// The handler that runs this node's tasks (default: [`NoopHandler`],
    /// which succeeds at once).
    pub fn handler(mut self, handler: impl Handler) -> Self {
        self.handler = Arc::new(handler);
        self
    }

    /// Binds the port, starts the node, and starts joining. Returns once the
    /// node listens; joining goes on in the background (watch
    /// [`Cluster::events`] for [`Event::Joined`]).
    pub async fn start(self) -> Result<Cluster, Error> {
        self.config.validate()?;
        if let Some(name) = &self.name {
            NodeId::validate_name(name)?;
        }
        if self.seeds.len() > crate::engine::SEEDS_MAX {
            return Err(Error::Config(ConfigError {
                field: "join",
                reason: format!("{} seeds given; at most {} are accepted", self.seeds.len(), crate::engine::SEEDS_MAX),
            }));
        }
        let (inbox_tx, inbox) = mpsc::channel(INBOX_MAX);
        let counters = Arc::new(Counters::default());
        let provisional_name = self.name.clone().unwrap_or_default();
        let transport = Transport::bind(self.listen, &provisional_name, inbox_tx, counters.clone())?;
        let bound = transport.local_addr()?;
        let addr = match self.advertise {
            Some(advertise) => advertise,
            None if bound.ip().is_unspecified() => return Err(Error::UnspecifiedAddress(bound)),
            None => bound,
        };
        let name = self.name.unwrap_or_else(|| addr.to_string());
        NodeId::validate_name(&name)?;
        let incarnation = self.incarnation.unwrap_or_else(unix_millis);
        let id = NodeId::new(addr, incarnation, &name);
        let rng_seed = self.rng_seed.unwrap_or_else(|| incarnation ^ u64::from(addr.port()).rotate_left(48));

        let clock = tokio::time::Instant::now();
        let mut node = Node::new(id.clone(), self.config, rng_seed, Instant::ZERO);
        if self.seeds.is_empty() {
            node.handle(Instant::ZERO, Input::Command(Command::Bootstrap)).expect("bootstrap takes no input");
        } else {
            node.handle(Instant::ZERO, Input::Command(Command::Join(self.seeds))).expect("seed count checked above");
        }
        let (commands_tx, commands) = mpsc::channel(COMMANDS_MAX);
        let (events, _) = broadcast::channel(EVENTS_MAX);
        let (stopped_tx, stopped) = watch::channel(false);
        let refused = Arc::new(std::sync::OnceLock::new());
        let (done_tx, done) = mpsc::unbounded_channel();
        let driver = Driver {
            handler: self.handler,
            name: id.name.clone(),
            done_tx,
            done,
            running: HashMap::new(),
            node,
            clock,
            transport,
            inbox,
            commands,
            events: events.clone(),
            clients: HashMap::new(),
            next_client: 0,
            counters,
            refused: refused.clone(),
        };
        let span = tracing::info_span!("node", name = %id.name);
        tokio::spawn(
            async move {
                driver.run().await;
                let _ = stopped_tx.send(true);
            }
            .instrument(span),
        );
        tracing::info!(node = %id, "started");
        Ok(Cluster { id, commands: commands_tx, events, stopped, refused })
    }
}

/// A running node: the handle a host service keeps.
///
/// Dropping every handle stops the node abruptly, without telling the
/// cluster (as a crash would); call [`Cluster::leave`] to stop gracefully.
#[derive(Debug, Clone)]
pub struct Cluster {
    id: NodeId,
    commands: mpsc::Sender<DriverCommand>,
    events: broadcast::Sender<Event>,
    stopped: watch::Receiver<bool>,
    /// Set when the node refused to join (its name is taken), before it
    /// stops.
    refused: Arc<std::sync::OnceLock<SocketAddr>>,
}

#[derive(Debug)]
enum DriverCommand {
    Members(oneshot::Sender<Vec<MemberInfo>>),
    Status(oneshot::Sender<StatusInfo>),
    Owner(String, oneshot::Sender<Option<OwnerInfo>>),
    Stats(oneshot::Sender<Stats>),
    Leave,
    /// A request as a client would send it; the answer frame comes back.
    Request(Vec<u8>, oneshot::Sender<Vec<u8>>),
}

impl Cluster {
    /// Starts building a node.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// This node's identity as it started (address, incarnation, name).
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// The address peers and clients reach this node at.
    pub fn local_addr(&self) -> SocketAddr {
        self.id.addr
    }

    /// The node's membership view: itself and every member it knows, alive,
    /// suspect or down, sorted by address.
    pub async fn members(&self) -> Result<Vec<MemberInfo>, Error> {
        self.ask(DriverCommand::Members).await
    }

    /// The committed configuration as this node knows it: epoch and hash,
    /// leader, voters, lease left, members.
    pub async fn status(&self) -> Result<StatusInfo, Error> {
        self.ask(DriverCommand::Status).await
    }

    /// Who is custodian of `resource` in the latest committed configuration
    /// this node knows (custodian, range, replicas, epoch); `None` before the
    /// node knows any configuration.
    pub async fn owner(&self, resource: &str) -> Result<Option<OwnerInfo>, Error> {
        let resource = resource.to_string();
        self.ask(|reply| DriverCommand::Owner(resource, reply)).await
    }

    /// Submits a task through this node: it goes to its resource's
    /// custodian, which assigns its sequence number. Returns once the
    /// custodian accepted it (a retry of a known task id answers with the
    /// same number and queues nothing). An empty `task.id` is replaced by a
    /// generated one (see [`Submitted::task_id`]).
    ///
    /// Errors: [`Error::Busy`] (queues full), [`Error::Unavailable`] (no
    /// custodian could take it within the retry window), [`Error::Refused`]
    /// (malformed).
    pub async fn submit(&self, task: Task) -> Result<Submitted, Error> {
        match self.request(Request::Submit { task, wait: false }).await? {
            Response::Submitted(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// Submits a task like [`Cluster::submit`] and returns once it has run,
    /// with its fencing token and the handler's outcome.
    pub async fn submit_and_wait(&self, task: Task) -> Result<Completed, Error> {
        match self.request(Request::Submit { task, wait: true }).await? {
            Response::Completed(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    async fn request(&self, request: Request) -> Result<Response, Error> {
        let bytes = wire::encode_message(&Message::Request(request))?;
        let answer = self.ask(|reply| DriverCommand::Request(bytes, reply)).await?;
        match wire::decode_frame(&answer)? {
            wire::Frame::Message(Message::Response(response)) => Ok(response),
            _ => Err(Error::UnexpectedAnswer),
        }
    }

    /// Waits until this node can serve as a custodian: it is an active
    /// member of a committed configuration, holds a lease, and holds the
    /// state of every range it owns (no handoff to it is still on its way).
    /// Returns its status then, or [`Error::Timeout`] after `limit`.
    pub async fn ready(&self, limit: Duration) -> Result<StatusInfo, Error> {
        let give_up = tokio::time::Instant::now() + limit;
        loop {
            let status = self.status().await.map_err(|e| self.refusal().unwrap_or(e))?;
            let member = status.members.iter().any(|m| {
                m.addr == self.id.addr
                    && m.incarnation == self.id.incarnation
                    && m.status == crate::MemberStatus::Active
            });
            if member && status.lease_remaining_ms > 0 && status.custody.ranges_unavailable == 0 {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(Error::Timeout { addr: self.id.addr, after: limit });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The node's counters.
    pub async fn stats(&self) -> Result<Stats, Error> {
        self.ask(DriverCommand::Stats).await
    }

    /// Membership changes from now on. A receiver that falls more than
    /// [`EVENTS_MAX`] events behind loses the oldest.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Leaves the cluster gracefully: the epoch store marks this node leaving
    /// and then removes it (two epochs, about two `stable_after` windows),
    /// then the node leaves SWIM — the members see it at once, not after a
    /// failure timeout — and stops. If the store cannot commit, the node
    /// leaves after `2·stable_after + lease` anyway. Returns when it has
    /// stopped.
    pub async fn leave(&self) -> Result<(), Error> {
        if self.commands.send(DriverCommand::Leave).await.is_err() {
            return Err(Error::Stopped);
        }
        self.stopped().await;
        Ok(())
    }

    /// Why the node stopped by itself, if it refused to join:
    /// [`Error::NameInUse`] when a live member at another address already
    /// has its name.
    pub fn refusal(&self) -> Option<Error> {
        let holder = *self.refused.get()?;
        Some(Error::NameInUse { name: self.id.name.to_string(), holder })
    }

    /// Resolves when the node has stopped: it left (through
    /// [`Cluster::leave`] or a client's leave request) or its driver ended.
    pub async fn stopped(&self) {
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|&s| s).await;
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> DriverCommand) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }
}

/// The error for an answer that is not the one asked for.
fn unexpected(response: Response) -> Error {
    match response {
        Response::Busy => Error::Busy,
        Response::Unavailable(reason) => Error::Unavailable(reason),
        Response::Error(reason) => Error::Refused(reason),
        _ => Error::UnexpectedAnswer,
    }
}

fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(1)
}

struct Driver {
    node: Node,
    /// The engine's time origin.
    clock: tokio::time::Instant,
    transport: Transport,
    inbox: mpsc::Receiver<Inbound>,
    commands: mpsc::Receiver<DriverCommand>,
    events: broadcast::Sender<Event>,
    clients: HashMap<ClientId, oneshot::Sender<Vec<u8>>>,
    next_client: u64,
    counters: Arc<Counters>,
    handler: Arc<dyn DynHandler>,
    /// This node's name, for the handlers' context.
    name: Arc<str>,
    /// Executions report their end here. Unbounded in type, bounded in use:
    /// the engine never has more than `workers` executions out.
    done_tx: mpsc::UnboundedSender<(String, u64, Outcome)>,
    done: mpsc::UnboundedReceiver<(String, u64, Outcome)>,
    /// The cancellation signal of every execution out, by resource and
    /// sequence number (at most `workers`: one per execution the engine
    /// has out).
    running: HashMap<(String, u64), Cancellation>,
    /// Where a refused join is reported to the handles.
    refused: Arc<std::sync::OnceLock<SocketAddr>>,
}

impl Driver {
    fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.clock.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    async fn run(mut self) {
        self.carry_out();
        loop {
            let deadline = self.node.poll_timeout().map(|t| self.clock + Duration::from_micros(t.as_micros()));
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.handle_command(command),
                    None => {
                        tracing::info!(node = %self.node.id(), "every handle dropped: stopping without leaving");
                        self.transport.shutdown("stopped").await;
                        return;
                    }
                },
                Some(inbound) = self.inbox.recv() => self.handle_inbound(inbound),
                Some((resource, seq, outcome)) = self.done.recv() => {
                    self.running.remove(&(resource.clone(), seq));
                    self.feed(Input::TaskDone { resource, seq, outcome });
                }
                () = sleep_until(deadline) => {
                    self.feed(Input::Timeout);
                }
            }
            self.carry_out();
            if self.node.has_left() {
                if let Some(holder) = self.node.name_clash() {
                    let _ = self.refused.set(holder.addr);
                    tracing::error!(name = %holder.name, holder = %holder.addr, "the name is taken by a live member: not joining");
                }
                self.transport.flush().await;
                self.transport.shutdown("left the cluster").await;
                tracing::info!(node = %self.node.id(), "left the cluster");
                return;
            }
        }
    }

    /// Feeds one input; a rejected one is logged and otherwise ignored.
    fn feed(&mut self, input: Input) -> bool {
        let now = self.now();
        match self.node.handle(now, input) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "input rejected");
                false
            }
        }
    }

    fn handle_command(&mut self, command: DriverCommand) {
        match command {
            DriverCommand::Members(reply) => {
                let _ = reply.send(self.node.members());
            }
            DriverCommand::Owner(resource, reply) => {
                let _ = reply.send(self.node.owner(&resource));
            }
            DriverCommand::Status(reply) => {
                let _ = reply.send(self.node.status());
            }
            DriverCommand::Stats(reply) => {
                let _ = reply.send(Stats { engine: self.node.stats(), transport: self.counters.snapshot() });
            }
            DriverCommand::Leave => {
                self.feed(Input::Command(Command::Leave));
            }
            DriverCommand::Request(bytes, reply) => self.client_request(bytes, reply),
        }
    }

    /// A client request, from the network or from a [`Cluster`] handle.
    fn client_request(&mut self, bytes: Vec<u8>, reply: oneshot::Sender<Vec<u8>>) {
        self.clients.retain(|_, r| !r.is_closed());
        if self.clients.len() >= CLIENT_REQUESTS_MAX {
            let busy = Message::Response(Response::Busy);
            let _ = reply.send(wire::encode_message(&busy).expect("Busy encodes"));
            return;
        }
        let client = ClientId(self.next_client);
        self.next_client += 1;
        self.clients.insert(client, reply);
        if !self.feed(Input::ClientFrame { client, bytes }) {
            // Dropping the sender makes the stream task answer with an error.
            self.clients.remove(&client);
        }
    }

    /// Runs a task on its own tokio task; its end comes back through `done`.
    fn execute(&mut self, execution: Execution) {
        let Execution { task, token, attempt, deadline } = execution;
        let deadline = self.clock + Duration::from_micros(deadline.as_micros());
        let cancel = Cancellation::new();
        self.running.insert((task.resource.clone(), token.seq), cancel.clone());
        let ctx = ExecCtx {
            task_id: task.id,
            resource: task.resource.clone(),
            token,
            attempt,
            deadline,
            cancel,
            node: self.name.clone(),
        };
        let handler = self.handler.clone();
        let done = self.done_tx.clone();
        let resource = task.resource;
        let margin = self.node.config().cancel_margin;
        tokio::spawn(async move {
            // Always an outcome (a panic, the deadline or a cancellation
            // not honoured in time is a failure), so the end is always
            // reported and the worker freed.
            let outcome = handler::run_to_outcome(handler, ctx, task.payload, deadline, margin).await;
            let _ = done.send((resource, token.seq, outcome));
        });
    }

    /// The engine cancels an execution: its lease ends within the cancel
    /// margin. The handler sees the signal; `run_to_outcome` drops it if it
    /// has not returned within the margin, and its end is reported as
    /// usual.
    fn cancel(&mut self, resource: String, seq: u64) {
        match self.running.get(&(resource, seq)) {
            Some(cancel) => cancel.cancel(),
            None => tracing::debug!(seq, "a cancel for an execution that has ended"),
        }
    }

    fn handle_inbound(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Datagram { from, bytes } => {
                self.feed(Input::Datagram { from, bytes: bytes.to_vec() });
            }
            Inbound::PeerFrame { from, bytes } => {
                self.feed(Input::PeerFrame { from, bytes });
            }
            Inbound::ClientFrame { reply, bytes } => self.client_request(bytes, reply),
            Inbound::Connected { addr, conn } => self.transport.install(addr, conn),
            Inbound::ConnectFailed { addr, error } => self.transport.connect_failed(addr, &error),
            Inbound::Closed { addr, stable_id } => self.transport.closed(addr, stable_id),
        }
    }

    /// Carries out everything the node has output.
    fn carry_out(&mut self) {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Datagram { to, bytes } => self.transport.send_datagram(to, bytes),
                Output::PeerFrame { to, bytes } => self.transport.send_frame(to, bytes),
                Output::Reply { client, bytes } => {
                    if let Some(reply) = self.clients.remove(&client) {
                        let _ = reply.send(bytes);
                    }
                }
                Output::ClosePeer(addr) => self.transport.close_peer(addr),
                Output::Execute(execution) => self.execute(execution),
                Output::Cancel { resource, seq } => self.cancel(resource, seq),
                Output::Event(event) => {
                    let alone = self.node.configuration().is_some_and(|c| c.members.len() == 1);
                    if event == Event::Isolated && alone {
                        // The others left: nobody to miss.
                        tracing::info!("no other member left in the configuration");
                    } else {
                        log_event(&event);
                    }
                    let _ = self.events.send(event);
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn log_event(event: &Event) {
    match event {
        Event::MemberUp(id) => tracing::info!(member = %id, "member up"),
        Event::MemberDown(id) => tracing::info!(member = %id, "member down"),
        Event::MemberRenamed { old, new } => tracing::info!(%old, %new, "member restarted"),
        Event::Joined => tracing::info!("joined the cluster"),
        Event::Isolated => tracing::warn!("no live member known (re-announcing to the seeds, if any)"),
        Event::Rejoined(id) => tracing::warn!(new_id = %id, "was declared down; rejoined with a new incarnation"),
        Event::Left => tracing::info!("leaving the cluster"),
        Event::Epoch(EpochEvent::EpochLearned { epoch, hash }) => {
            tracing::info!(epoch, hash = %format!("{hash:016x}"), "learned a committed configuration")
        }
        Event::Epoch(EpochEvent::EpochCommitted { epoch, .. }) => tracing::debug!(epoch, "committed"),
        Event::Epoch(EpochEvent::VoteCommitted { target, by }) => {
            tracing::info!(%target, %by, "suspicion vote committed")
        }
        Event::Epoch(EpochEvent::LeaseRenewed { .. }) => tracing::trace!("lease renewed"),
        Event::Epoch(EpochEvent::Removed) => tracing::info!("removed from the configuration"),
    }
}

#[cfg(test)]
mod tests;
