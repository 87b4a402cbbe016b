//! `custody local-cluster`: several nodes on 127.0.0.1 in this process, until
//! a signal; the quick way to a cluster the other commands can ask.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use custody::{Cluster, Config, StatusInfo};

use super::args::LocalClusterArgs;
use super::exec::CliHandler;
use super::node::{Signals, init_logging};

pub(crate) async fn run_local_cluster(args: LocalClusterArgs) -> Result<()> {
    // The nodes' routine logs would bury the lines below; RUST_LOG shows them.
    init_logging("warn");
    if args.port != 0 && u32::from(args.port) + u32::from(args.nodes) - 1 > u32::from(u16::MAX) {
        bail!("--port {} leaves no room for {} nodes below port 65536", args.port, args.nodes);
    }
    let config = args.tasks.config(args.profile).map_err(anyhow::Error::msg)?;
    let handler = CliHandler::new(&args.tasks)?;
    // Installed before anything starts: a signal while the nodes start stops
    // them at once, there is nothing to hand over yet.
    let mut signals = Signals::install()?;
    let (nodes, status) = tokio::select! {
        started = start(&args, &config, &handler) => started?,
        signal = signals.next() => {
            tracing::warn!("{} before every node was ready: stopping at once", signal.name());
            std::process::exit(signal.exit_code());
        }
    };
    print_usage(&nodes, &status)?;

    let deadline = async {
        match args.seconds {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            None => std::future::pending().await,
        }
    };
    let every_node_stopped = async {
        for node in &nodes {
            node.stopped().await;
        }
    };
    tokio::select! {
        signal = signals.next() => println!(
            "{}: every node leaves the cluster gracefully, the last started first; send SIGINT or SIGTERM again \
             to stop at once, without handing over",
            signal.name()
        ),
        () = deadline => println!("{} s are up: every node leaves the cluster gracefully", args.seconds.unwrap_or(0)),
        // Each told to leave by a client (`custody leave`).
        () = every_node_stopped => return Ok(()),
    }
    // One at a time: each leave is two epochs the store commits (leaving,
    // then removed), and the others take the leaver's resources over.
    for node in nodes.iter().rev() {
        tokio::select! {
            left = node.leave() => match left {
                Ok(()) => println!("custody node {} left", node.id().name),
                // Told to leave by a client before: gone already.
                Err(custody::Error::Stopped) => {}
                Err(e) => return Err(e).with_context(|| format!("{} leaving the cluster", node.id().name)),
            },
            signal = signals.next() => {
                tracing::warn!("second {}: stopping at once, without handing over", signal.name());
                std::process::exit(signal.exit_code());
            }
        }
    }
    Ok(())
}

/// Starts the nodes, the first a new cluster and the others joining through
/// it, then prints a line for each once it is ready. Returns them and the
/// last one's status.
async fn start(args: &LocalClusterArgs, config: &Config, handler: &CliHandler) -> Result<(Vec<Cluster>, StatusInfo)> {
    let mut nodes: Vec<Cluster> = Vec::with_capacity(args.nodes.into());
    for i in 0..args.nodes {
        let name = format!("node-{}", i + 1);
        let addr = SocketAddr::from(([127, 0, 0, 1], if args.port == 0 { 0 } else { args.port + i }));
        let seed = nodes.first().map(Cluster::local_addr);
        let node = Cluster::builder()
            .listen(addr)
            .name(name.as_str())
            .join(seed)
            .config(config.clone())
            .handler(handler.clone())
            .start()
            .await
            .with_context(|| format!("cannot start {name} on {addr} (is the port taken? try another --port)"))?;
        nodes.push(node);
    }
    // All started before any is waited for: the epoch store admits the
    // joiners together.
    let limit = ready_limit(config, nodes.len());
    let mut status = None;
    for node in &nodes {
        let (name, addr) = (&node.id().name, node.local_addr());
        status = Some(match node.ready(limit).await {
            Ok(status) => status,
            Err(custody::Error::Timeout { .. }) => {
                bail!("{name} on {addr} was not ready (a member with a lease and its ranges) within {limit:?}")
            }
            Err(e) => return Err(e).with_context(|| format!("{name} on {addr} did not become ready")),
        });
        let mut out = std::io::stdout().lock();
        writeln!(out, "custody node {name} ready on {addr}")?;
        out.flush()?;
    }
    Ok((nodes, status.context("no node was started")?))
}

/// How long `n` nodes started together may take to be ready before the
/// command gives up: a join retry, the failure detector's bound for the news
/// to spread, two batching windows of the epoch store and a lease, four
/// times over for a busy machine.
fn ready_limit(config: &Config, n: usize) -> Duration {
    (config.join_retry + config.failure_detection_bound(n) + config.stable_after * 2 + config.lease) * 4
}

/// The commands that use the cluster from another terminal.
fn print_usage(nodes: &[Cluster], status: &StatusInfo) -> Result<()> {
    let first = nodes[0].local_addr();
    let other = nodes.get(1).unwrap_or(&nodes[0]).local_addr();
    let bin = this_binary();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\n{} nodes ready: epoch {}, leader {}, voters {}.\nFrom another terminal:\n  \
         {bin} members --node {first}\n  \
         {bin} status --node {first}\n  \
         {bin} submit --node {other} --resource account-42 --payload hello --wait\n  \
         {bin} submit --node {first} --count 20000 --resources 1000 --hot-fraction 0.9\n\
         Stop: Ctrl-C or SIGTERM (every node leaves gracefully).",
        nodes.len(),
        status.epoch,
        status.leader.as_deref().unwrap_or("unknown"),
        status.voters.join(", "),
    )?;
    out.flush()?;
    Ok(())
}

/// This binary as the current directory reaches it (`./target/release/custody`
/// after `cargo run --release`), else its full path.
fn this_binary() -> String {
    let Ok(exe) = std::env::current_exe() else { return "custody".into() };
    match std::env::current_dir().ok().and_then(|dir| exe.strip_prefix(dir).ok().map(|p| p.to_path_buf())) {
        Some(relative) => format!("./{}", relative.display()),
        None => exe.display().to_string(),
    }
}
