//! The command line, one module per concern:
//!
//! - [`args`]: the commands and flags, as clap parses them;
//! - [`node`]: `custody node`, one node until a signal or a leave request;
//! - [`local_cluster`]: `custody local-cluster`, several nodes in one process;
//! - [`exec`]: the handler nodes run tasks with (`--exec`, `--task-ms`,
//!   `--exec-log`);
//! - [`client`]: the requests to a running node (`members`, `status`,
//!   `owner`, `submit` of one task, `leave`);
//! - [`load`]: `custody submit --count`, the load generator;
//! - [`render`]: the tables, texts and JSON documents printed.

pub(crate) mod args;
mod client;
mod exec;
mod load;
mod local_cluster;
mod node;
mod render;

use anyhow::{Context, Result};

use args::{Cli, Cmd};

/// Runs one parsed command line to its end.
pub(crate) async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Node(args) => node::run_node(args).await,
        Cmd::LocalCluster(args) => local_cluster::run_local_cluster(args).await,
        Cmd::Members { node, json } => client::members(node, json).await,
        Cmd::Leave { node } => client::leave(node).await,
        Cmd::Status { node, json } => client::status(node, json).await,
        Cmd::Owner { node, resource, resource_pos, json } => {
            let resource = resource.or(resource_pos).context("give the resource (--resource NAME)")?;
            client::owner(node, resource, json).await
        }
        Cmd::Submit(args) if args.count.is_some() => load::load(args).await,
        Cmd::Submit(args) => client::submit(args).await,
    }
}
