//! `custody node`: one node until a signal or a leave request, and what
//! `custody local-cluster` shares with it (logging, signals).

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result};
use custody::{Cluster, Config};

use super::args::NodeArgs;
use super::exec::CliHandler;

/// Logs to stderr, filtered by `RUST_LOG`, else at `default_level`.
pub(crate) fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

pub(crate) async fn run_node(args: NodeArgs) -> Result<()> {
    init_logging("info");
    let config = Config {
        voters: args.voters,
        replication: args.replicas,
        recovery: args.recovery,
        ..args.tasks.config(args.profile).map_err(anyhow::Error::msg)?
    };
    let handler = CliHandler::new(&args.tasks)?;
    let mut builder = Cluster::builder().listen(args.listen).join(args.join).config(config).handler(handler);
    if let Some(name) = args.name {
        builder = builder.name(name);
    }
    if let Some(advertise) = args.advertise {
        builder = builder.advertise(advertise);
    }
    let cluster = builder.start().await.with_context(|| format!("cannot start a node on {}", args.listen))?;
    // Installed before the ready line, so a signal sent once it is printed
    // is handled; both streams live for the whole run, so a signal that
    // comes between the two waits below is kept, not lost.
    let mut signals = Signals::install()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "custody node {} listening on {}", cluster.id().name, cluster.local_addr())?;
        out.flush()?;
    }
    let signal = tokio::select! {
        signal = signals.next() => signal,
        // Stopped by itself: a client's leave request, or a refused join.
        () = cluster.stopped() => return cluster.refusal().map_or(Ok(()), |e| Err(e.into())),
    };
    tracing::info!(
        "{}: leaving the cluster (the epoch store removes this node and its resources are handed over first); \
         send SIGINT or SIGTERM again to stop at once, without handing over",
        signal.name()
    );
    tokio::select! {
        left = cluster.leave() => left.context("leaving the cluster")?,
        signal = signals.next() => {
            tracing::warn!(
                "second {}: stopping at once, without handing over; the others take this node's resources \
                 over as after a crash",
                signal.name()
            );
            std::process::exit(signal.exit_code());
        }
    }
    Ok(())
}

/// The signals that stop `custody node` and `custody local-cluster`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopSignal {
    Interrupt,
    Terminate,
}

impl StopSignal {
    pub(crate) fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
        }
    }

    /// The shell's convention for a process ended by this signal: 128 + its
    /// number.
    pub(crate) fn exit_code(self) -> i32 {
        match self {
            StopSignal::Interrupt => 130,
            StopSignal::Terminate => 143,
        }
    }
}

/// SIGINT and SIGTERM, listened for from installation on.
pub(crate) struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn install() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
        })
    }

    /// The next SIGINT or SIGTERM.
    pub(crate) async fn next(&mut self) -> StopSignal {
        tokio::select! {
            Some(()) = self.interrupt.recv() => StopSignal::Interrupt,
            Some(()) = self.terminate.recv() => StopSignal::Terminate,
            // The streams never end while the runtime runs; should they,
            // the node still stops when it is told to leave.
            else => std::future::pending().await,
        }
    }
}
