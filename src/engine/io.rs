//! The engine's inputs and outputs: what a driver feeds a [`Node`](super::Node)
//! and what it carries out. Nothing here does I/O; the driver does.

use std::net::SocketAddr;

use super::custody::Execution;
use super::id::NodeId;
use super::store::StoreEvent as EpochEvent;
use super::task::Outcome;
use super::wire::WireError;
use super::{LEARN_MEMBERS_MAX, SEEDS_MAX};

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
    /// [`Node::poll_timeout`](super::Node::poll_timeout) has passed.
    Timeout,
    /// A task started by [`Output::Execute`] finished: its handler
    /// returned, failed or was stopped. After an [`Output::Cancel`] of it,
    /// this is how the driver says the execution has stopped; its outcome
    /// is then ignored (the task did not complete and runs again).
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
    /// [`wire::datagram_to_frame`](super::wire::datagram_to_frame).
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
    /// Stop an execution started by [`Output::Execute`] now: the lease it
    /// runs under ends within `cancel_margin`, and could not be renewed.
    /// Signal the handler, stop it if it has not returned within the
    /// margin (drop its future, kill its process group), and report its
    /// end with [`Input::TaskDone`]. The task did not complete: it stays
    /// first in its resource's queue, and runs again (attempt + 1) once
    /// that end is reported and a lease allows, here or at the resource's
    /// next custodian. Emitted once per execution.
    Cancel {
        /// The execution's resource.
        resource: String,
        /// Its sequence number (the token's `seq`).
        seq: u64,
    },
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
