//! # custody
//!
//! An embeddable cluster in one binary. Every resource (a string key) has
//! exactly one **custodian** at a time: its owner on a consistent-hash ring.
//! Tasks that target a resource run at its custodian, one at a time per
//! resource, with no per-task distributed lock; custody moves (a
//! **handoff**) only when membership changes.
//!
//! ```text
//!            +------------------------- custody node ---------------------------+
//!  client -->| runtime: tokio + quinn (one UDP port: datagrams + streams)      |
//!  peers  <->|   | inputs (with `now`)                  ^ outputs               |
//!            |   v                                      |                       |
//!            | engine::Node (sans-IO): foca SWIM, ring, wire, timers          |
//!            +-----------------------------------------------------------------+
//!                       netsim drives the very same engine::Node
//! ```
//!
//! ## Glossary
//! - **node**: one custody process (or one embedded [`Cluster`]).
//! - **member**: a node as SWIM (foca) sees it: alive, suspect or down.
//! - **peer**: a node at the other end of a QUIC connection.
//! - **resource**: a string key that tasks target.
//! - **owner / custodian**: the node that owns a resource's ring range.
//! - **range**: the arc of the hash ring between two consecutive points.
//! - **handoff**: moving custody of a range from one node to another.
//! - **task**: a unit of work targeting one resource.
//!
//! ## Embedding
//!
//! ```no_run
//! use custody::{Cluster, Config};
//!
//! # async fn run() -> Result<(), custody::Error> {
//! let node = Cluster::builder()
//!     .listen("10.0.0.5:7001".parse().unwrap())
//!     .name("billing-1")
//!     .join(["10.0.0.4:7001".parse().unwrap()])
//!     .config(Config::lan())
//!     .start()
//!     .await?;
//! let mut events = node.events(); // MemberUp / MemberDown / MemberRenamed / Joined / ...
//! let members = node.members().await?; // this node's view, itself included
//! node.leave().await?; // graceful: tell the cluster, then stop
//! # let _ = (events.try_recv(), members);
//! # Ok(()) }
//! ```
//!
//! ## Layers
//! - [`engine`]: the whole protocol as a deterministic state machine.
//! - [`runtime`]: the tokio + quinn driver and the public [`Cluster`] handle.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod engine;
pub mod runtime;

pub use engine::wire::{Completed, OwnerInfo, StatusInfo, Submitted};
pub use engine::{Config, Configuration, Event, MemberInfo, MemberState, MemberStatus, NodeId, Outcome, Task, Token};
pub use runtime::{Cluster, ClusterBuilder, Error, ExecCtx, Handler, handler_fn};
