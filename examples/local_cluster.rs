//! A 3-node custody cluster in one process, on 127.0.0.1.
//!
//! ```text
//! cargo run --release --example local_cluster              # until Ctrl-C
//! cargo run --release --example local_cluster -- --seconds 10
//! ```
//!
//! While it runs, ask any node from another terminal:
//!
//! ```text
//! ./target/release/custody members --node 127.0.0.1:7001   # after `cargo build --release`
//! ```
//!
//! It starts three nodes, the second and third joining through the first,
//! waits until every node sees all three alive and the epoch store has
//! committed a configuration with all three, prints each node's view, the
//! epoch, and which node is custodian of a few resources on that
//! configuration's ring, then prints membership events until it is stopped;
//! on Ctrl-C (or after `--seconds`) every node leaves the cluster gracefully.
//! It shows the library's API top to bottom; `custody local-cluster` runs
//! such a cluster from the binary.

// An example drives real time.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::error::Error;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use custody::engine::ring::Ring;
use custody::{Cluster, Config, MemberState, NodeId};

#[derive(Parser)]
#[command(about = "Run a 3-node custody cluster on 127.0.0.1")]
struct Args {
    /// Port of the first node; the others take the next two.
    #[arg(long, default_value_t = 7001)]
    base_port: u16,
    /// Stop (gracefully) after this many seconds instead of waiting for Ctrl-C.
    #[arg(long)]
    seconds: Option<u64>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();

    let mut nodes: Vec<Cluster> = Vec::new();
    for i in 0..3u16 {
        let addr = SocketAddr::from(([127, 0, 0, 1], args.base_port + i));
        let seeds: Vec<SocketAddr> = nodes.first().map(|n| n.local_addr()).into_iter().collect();
        let node = Cluster::builder()
            .listen(addr)
            .name(format!("node-{}", i + 1))
            .join(seeds)
            .config(Config::lan())
            .start()
            .await
            .map_err(|e| format!("cannot start node-{} on {addr}: {e} (is the port taken? try --base-port)", i + 1))?;
        println!("custody node {} listening on {}", node.id().name, node.local_addr());
        nodes.push(node);
    }

    let start = Instant::now();
    loop {
        let mut converged = true;
        for node in &nodes {
            let alive = node.members().await?.iter().filter(|m| m.state == MemberState::Alive).count();
            converged &= alive == nodes.len();
        }
        if converged {
            break;
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err("the nodes did not see each other within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("\nall {} nodes see each other alive after {:?}\n", nodes.len(), start.elapsed());

    for node in &nodes {
        let view: Vec<String> =
            node.members().await?.iter().map(|m| format!("{} ({})", m.name, m.state.as_str())).collect();
        println!("{} sees: {}", node.id().name, view.join(", "));
    }

    // Custody comes from the ring of the committed configuration, the same
    // on every node, not from any node's own SWIM view.
    let status = loop {
        let status = nodes[0].status().await?;
        if status.members.len() == nodes.len() && status.leader.is_some() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(15) {
            return Err("no committed configuration with all three nodes within 15 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "\nepoch {} (hash {}): leader {}, voters {}",
        status.epoch,
        status.epoch_hash,
        status.leader.as_deref().unwrap_or("?"),
        status.voters.join(", ")
    );
    let members: Vec<NodeId> = status
        .members
        .iter()
        .filter(|m| m.status == custody::MemberStatus::Active)
        .map(|m| NodeId::new(m.addr, m.incarnation, &m.name))
        .collect();
    let ring = Ring::new(members, Config::lan().vnodes);
    println!();
    for resource in ["account-1", "account-2", "account-3", "orders/eu", "orders/us"] {
        let owner = ring.owner(resource).expect("a non-empty ring");
        println!("custodian of {resource:<10} is {}", owner.name);
    }
    for (addr, share) in ring.load() {
        println!("{addr} owns {:.1}% of the ring", share * 100.0);
    }

    println!("\nask a node: cargo run --release -- members --node {}", nodes[0].local_addr());
    println!("stop: Ctrl-C\n");
    let mut events = nodes[0].events();
    let stop = async {
        match args.seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            event = events.recv() => match event {
                // Lease renewals come every second; commits repeat learnings.
                Ok(custody::Event::Epoch(
                    custody::engine::EpochEvent::LeaseRenewed { .. } | custody::engine::EpochEvent::EpochCommitted { .. },
                )) => {}
                Ok(event) => println!("{} saw {event:?}", nodes[0].id().name),
                Err(e) => println!("{} event stream: {e}", nodes[0].id().name),
            },
        }
    }

    // Leave one at a time, the last joined first: each leave is two epochs
    // (leaving, then removed) committed by the epoch store.
    println!("leaving");
    for node in nodes.iter().rev() {
        node.leave().await?;
        println!("{} left", node.id().name);
    }
    Ok(())
}
