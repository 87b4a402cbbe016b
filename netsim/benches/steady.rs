//! Speed of the simulator in events per second: `steady` for 120 simulated
//! seconds at 100 and at 1,000 nodes. The bar (from the netsim issues) is
//! 1,000,000 events/s.
//!
//! Each size is run twice per round, for 120 s and for the first 10 s: the
//! difference is the rate once the cluster has formed (the first seconds
//! apply every member at every node, which is quadratic in the nodes), the
//! whole run is the rate a user sees. An event is one simulator event
//! (a delivery, a wake-up, a fault or a sample), as `netsim run` counts them.
//!
//! ```text
//! cargo bench -p netsim --bench steady                      # 3 rounds, seed 1, 100 and 1000 nodes
//! cargo bench -p netsim --bench steady -- 5 42              # 5 rounds, seed 42
//! cargo bench -p netsim --bench steady -- --nodes 50,1000   # other sizes
//! ```

use custody::Config;
use netsim::report::Report;
use netsim::scenario::{self, Params};

/// The speed bar, events per second.
const BAR_EVENTS_PER_S: f64 = 1_000_000.0;
/// Simulated seconds of a run.
const DURATION_S: u64 = 120;
/// Simulated seconds of the start-up run subtracted for the steady rate.
const START_S: u64 = 10;

fn run(nodes: usize, seed: u64, duration_s: u64) -> Report {
    let steady = scenario::find("steady").expect("steady exists");
    let plan = steady.plan(&Params::new(nodes, seed, duration_s, Config::lan())).expect("valid plan");
    netsim::run_plan(plan)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; take `--nodes A,B` and then the first
    // two numbers given.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut sizes = vec![100, 1000];
    let mut numbers = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--nodes" && i + 1 < args.len() {
            sizes = args[i + 1].split(',').filter_map(|n| n.parse().ok()).collect();
            i += 1;
        } else if let Ok(n) = args[i].parse::<u64>() {
            numbers.push(n);
        }
        i += 1;
    }
    let rounds = numbers.first().copied().unwrap_or(3).max(1);
    let seed = numbers.get(1).copied().unwrap_or(1);
    for nodes in sizes {
        let (mut whole, mut steady) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            let full = run(nodes, seed, DURATION_S);
            let start = run(nodes, seed, START_S);
            let rate = full.events as f64 / (full.wall_ms.max(1) as f64 / 1000.0);
            let steady_ms = full.wall_ms.saturating_sub(start.wall_ms).max(1);
            let steady_rate = (full.events - start.events) as f64 / (steady_ms as f64 / 1000.0);
            println!(
                "round {round}: steady n={nodes} {DURATION_S} s: {} ms wall, {} events, {rate:.0} events/s; \
                 after the first {START_S} s ({} events, {} ms): {steady_rate:.0} events/s; result {}",
                full.wall_ms, full.events, start.events, start.wall_ms, full.result
            );
            whole.push(rate);
            steady.push(steady_rate);
        }
        let (whole, steady) = (median(whole), median(steady));
        let verdict = |rate: f64| if rate >= BAR_EVENTS_PER_S { "meets" } else { "BELOW" };
        println!(
            "n={nodes}: median {whole:.0} events/s over the whole run ({} the bar), {steady:.0} events/s once formed \
             ({} the bar of {BAR_EVENTS_PER_S:.0})",
            verdict(whole),
            verdict(steady)
        );
    }
}
