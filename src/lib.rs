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
//! use custody::{Cluster, Config, ExecCtx, Handler, Outcome, Task};
//!
//! struct Apply;
//!
//! impl Handler for Apply {
//!     // Called at the resource's custodian, one task of a resource at a time,
//!     // with its fencing token (epoch, seq), attempt and deadline.
//!     async fn execute(&self, ctx: ExecCtx, payload: Vec<u8>) -> Outcome {
//!         let _ = (ctx.resource, ctx.token, payload);
//!         Outcome::Ok(Vec::new())
//!     }
//! }
//!
//! # async fn run() -> Result<(), custody::Error> {
//! let node = Cluster::builder()
//!     .listen("10.0.0.5:7001".parse().unwrap())
//!     .name("billing-1")
//!     .join(["10.0.0.4:7001".parse().unwrap()])
//!     .config(Config::lan())
//!     .handler(Apply)
//!     .start()
//!     .await?;
//! node.ready(std::time::Duration::from_secs(30)).await?; // a member, with a lease and its ranges
//! let task = Task { id: "invoice-17".into(), resource: "account:alice".into(), payload: b"+10".to_vec() };
//! let accepted = node.submit(task.clone()).await?; // the custodian's sequence number
//! let done = node.submit_and_wait(task).await?; // the same id: the same task, run once
//! println!("seq {} ran with token {} at {}", accepted.seq, done.token, done.custodian);
//! let mut events = node.events(); // MemberUp / MemberDown / Joined / epochs learned ...
//! let owner = node.owner("account:alice").await?; // custodian, range, replicas, epoch
//! node.leave().await?; // graceful: hand off, tell the cluster, then stop
//! # let _ = (events.try_recv(), owner);
//! # Ok(()) }
//! ```
//!
//! ## Layers
//! - [`engine`]: the whole protocol as a deterministic state machine.
//! - [`runtime`]: the tokio + quinn driver and the public [`Cluster`] handle.
//!
//! ## Features
//! - `cli` (default): builds the `custody` binary, with the crates only it
//!   uses (clap, anyhow, serde_json, tracing-subscriber, indicatif, rustix).
//!   The library needs none of them; an application that embeds custody
//!   turns it off: `custody = { version = "0.1", default-features = false }`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod engine;
pub mod runtime;

pub use engine::wire::{Completed, OwnerInfo, StatusInfo, Submitted};
pub use engine::{Config, Configuration, Event, MemberInfo, MemberState, MemberStatus, NodeId, Outcome, Task, Token};
pub use runtime::{Cluster, ClusterBuilder, Error, ExecCtx, Handler, handler_fn};
