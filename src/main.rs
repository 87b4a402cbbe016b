//! The `custody` command line: run a node, or ask a running node.

// The CLI is a driver: it reads the clock and waits in real time.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use custody::engine::wire::{MemberInfo, Request, Response};
use custody::{Cluster, Config};

/// How long the CLI waits for a node's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Parser, Debug)]
#[command(
    name = "custody",
    version,
    about = "An embeddable cluster: each resource's tasks run at its consistent-hash-ring custodian, with no per-task lock.",
    long_about = None,
    after_help = "Start a 3-node cluster on this machine, in three terminals:\n  \
        custody node --listen 127.0.0.1:7001\n  \
        custody node --listen 127.0.0.1:7002 --join 127.0.0.1:7001\n  \
        custody node --listen 127.0.0.1:7003 --join 127.0.0.1:7001\n\
        Then: custody members --node 127.0.0.1:7001\n\n\
        Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=custody=debug,foca=debug) for more."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a node until SIGINT/SIGTERM (it then leaves the cluster gracefully) or until it is told to leave.
    Node(NodeArgs),
    /// Show a node's view of the cluster's members.
    Members {
        /// The node to ask (its listen address).
        #[arg(long, value_name = "ADDR")]
        node: SocketAddr,
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a node's view of the committed configuration: epoch, leader, voters, lease, members.
    Status {
        /// The node to ask (its listen address).
        #[arg(long, value_name = "ADDR")]
        node: SocketAddr,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show which node is custodian of a resource in the latest committed configuration.
    Owner {
        /// The node to ask (its listen address).
        #[arg(long, value_name = "ADDR")]
        node: SocketAddr,
        /// The resource.
        resource: String,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Tell a node to leave the cluster gracefully and stop.
    Leave {
        /// The node to stop (its listen address).
        #[arg(long, value_name = "ADDR")]
        node: SocketAddr,
    },
}

#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// UDP address to listen on: one port serves peers (QUIC datagrams and streams) and clients.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Nodes of an existing cluster to join through, comma-separated. Without it, this node starts a new cluster.
    #[arg(long, value_name = "ADDR[,ADDR...]", value_delimiter = ',')]
    join: Vec<SocketAddr>,
    /// The node's name (default: its address). At most 64 bytes.
    #[arg(long)]
    name: Option<String>,
    /// Address peers reach this node at, if --listen is a wildcard like 0.0.0.0:7001.
    #[arg(long, value_name = "ADDR")]
    advertise: Option<SocketAddr>,
    /// Voters of the epoch store (the embedded Raft group that commits ring configurations): odd, 1 to 7.
    /// More survive more failures; each commit and lease read costs more messages.
    #[arg(long, default_value_t = 3)]
    voters: u8,
    /// Failure-detection timings: `lan` (probe 1 s, down after 4 s of suspicion) or `fast` (300 ms / 1 s; quiet networks and tests).
    #[arg(long, value_enum, default_value_t = Profile::Lan)]
    profile: Profile,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Profile {
    Lan,
    Fast,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Node(args) => run_node(args).await,
        Cmd::Members { node, json } => members(node, json).await,
        Cmd::Leave { node } => leave(node).await,
        Cmd::Status { node, json } => status(node, json).await,
        Cmd::Owner { node, resource, json } => owner(node, resource, json).await,
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn run_node(args: NodeArgs) -> Result<()> {
    init_logging();
    let config = match args.profile {
        Profile::Lan => Config::lan(),
        Profile::Fast => Config::fast(),
    };
    let config = Config { voters: args.voters, ..config };
    let mut builder = Cluster::builder().listen(args.listen).join(args.join).config(config);
    if let Some(name) = args.name {
        builder = builder.name(name);
    }
    if let Some(advertise) = args.advertise {
        builder = builder.advertise(advertise);
    }
    let cluster = builder.start().await.with_context(|| format!("cannot start a node on {}", args.listen))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "custody node {} listening on {}", cluster.id().name, cluster.local_addr())?;
        out.flush()?;
    }
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    let signal = tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
        () = cluster.stopped() => return Ok(()),
    };
    tracing::info!(
        "{signal}: leaving the cluster (the epoch store removes this node first; interrupt again to stop at once)"
    );
    tokio::select! {
        left = cluster.leave() => left.context("leaving the cluster")?,
        _ = tokio::signal::ctrl_c() => {
            tracing::warn!("second interrupt: stopping without waiting for the removal epoch");
            std::process::exit(130);
        }
    }
    Ok(())
}

async fn ask(node: SocketAddr, request: Request) -> Result<Response> {
    let response = custody::runtime::request(node, request, REQUEST_TIMEOUT)
        .await
        .with_context(|| format!("asking the node at {node}"))?;
    match response {
        Response::Error(reason) => bail!("the node at {node} refused: {reason}"),
        Response::Busy => bail!("the node at {node} is busy; retry in a moment"),
        response => Ok(response),
    }
}

async fn members(node: SocketAddr, json: bool) -> Result<()> {
    let Response::Members(members) = ask(node, Request::Members).await? else {
        bail!("the node at {node} answered with something other than a member list");
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &serde_json::json!({ "members": members }))?;
        writeln!(out)?;
    } else {
        let voters = match ask(node, Request::Status).await? {
            Response::Status(status) => status.voters,
            _ => Vec::new(),
        };
        write!(out, "{}", members_table(&members, &voters))?;
    }
    Ok(())
}

fn members_table(members: &[MemberInfo], voters: &[String]) -> String {
    let name_width = members.iter().map(|m| m.name.len()).max().unwrap_or(0).max(4);
    let addr_width = members.iter().map(|m| m.addr.to_string().len()).max().unwrap_or(0).max(7);
    let mut out =
        format!("{:<name_width$}  {:<addr_width$}  {:>13}  STATE    VOTER\n", "NAME", "ADDRESS", "INCARNATION");
    for m in members {
        let voter = if voters.contains(&m.name) { "voter" } else { "" };
        out.push_str(&format!(
            "{:<name_width$}  {:<addr_width$}  {:>13}  {:<7}  {voter}\n",
            m.name,
            m.addr.to_string(),
            m.incarnation,
            m.state.as_str()
        ));
    }
    out
}

async fn status(node: SocketAddr, json: bool) -> Result<()> {
    let Response::Status(status) = ask(node, Request::Status).await? else {
        bail!("the node at {node} answered with something other than a status");
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &status)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "node:    {}", status.name)?;
    if status.epoch == 0 {
        writeln!(out, "epoch:   none yet (not admitted to a committed configuration)")?;
    } else {
        writeln!(out, "epoch:   {} (hash {})", status.epoch, status.epoch_hash)?;
    }
    writeln!(out, "leader:  {}", status.leader.as_deref().unwrap_or("unknown"))?;
    writeln!(out, "voters:  {}", status.voters.join(", "))?;
    writeln!(out, "lease:   {} ms left to act as custodian", status.lease_remaining_ms)?;
    writeln!(out, "members: {}", status.members.len())?;
    for m in &status.members {
        let voter = if status.voters.contains(&m.name) { " (voter)" } else { "" };
        writeln!(out, "  {:<20} {:<22} #{:<14} {}{voter}", m.name, m.addr, m.incarnation, m.status.as_str())?;
    }
    Ok(())
}

async fn owner(node: SocketAddr, resource: String, json: bool) -> Result<()> {
    let Response::Owner(owner) = ask(node, Request::Owner { resource: resource.clone() }).await? else {
        bail!("the node at {node} answered with something other than an owner");
    };
    let Some(owner) = owner else {
        bail!("the node at {node} knows no committed configuration yet; retry once it has joined");
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &owner)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{resource}: custodian {} ({}) at epoch {}, range {}, replicas {}",
            owner.custodian,
            owner.addr,
            owner.epoch,
            owner.range,
            owner.replicas.join(", ")
        )?;
    }
    Ok(())
}

async fn leave(node: SocketAddr) -> Result<()> {
    match ask(node, Request::Leave).await? {
        Response::Leaving => {
            println!("the node at {node} is leaving the cluster");
            Ok(())
        }
        _ => bail!("the node at {node} answered with something other than a leave acknowledgement"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use custody::MemberState;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn join_takes_a_comma_separated_list() {
        let cli =
            Cli::try_parse_from(["custody", "node", "--listen", "127.0.0.1:1", "--join", "127.0.0.1:2,127.0.0.1:3"])
                .unwrap();
        let Cmd::Node(args) = cli.command else { panic!("parsed as {:?}", cli.command) };
        assert_eq!(args.join, vec!["127.0.0.1:2".parse::<SocketAddr>().unwrap(), "127.0.0.1:3".parse().unwrap()]);
    }

    #[test]
    fn table_has_a_row_per_member() {
        let member = |name: &str, port: u16| MemberInfo {
            name: name.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            incarnation: 7,
            state: MemberState::Suspect,
        };
        let table = members_table(&[member("a", 7001), member("b", 7002)], &["b".to_string()]);
        assert_eq!(
            table,
            "NAME  ADDRESS           INCARNATION  STATE    VOTER\n\
             a     127.0.0.1:7001              7  suspect  \n\
             b     127.0.0.1:7002              7  suspect  voter\n"
        );
    }
}
