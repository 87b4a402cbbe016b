//! Speed of the simulator: `steady` at 1,000 nodes for 120 simulated
//! seconds. The bar (from the netsim issue) is under 10 s of wall time in
//! release on a 2-core machine.
//!
//! ```text
//! cargo bench -p netsim --bench steady            # 3 runs, seed 1
//! cargo bench -p netsim --bench steady -- 5 42    # 5 runs, seed 42
//! ```

use custody::Config;
use netsim::scenario::{self, Params};

/// The speed bar: wall time for `steady`, 1,000 nodes, 120 s.
const BAR_MS: u64 = 10_000;

fn main() {
    // `cargo bench` passes `--bench`; take the first two numbers given.
    let numbers: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let runs = numbers.first().copied().unwrap_or(3);
    let seed = numbers.get(1).copied().unwrap_or(1);
    let steady = scenario::find("steady").expect("steady exists");
    let params = Params { nodes: 1000, seed, duration_s: 120, config: Config::lan() };
    let mut walls = Vec::new();
    for run in 1..=runs {
        let plan = steady.plan(&params).expect("valid plan");
        let report = netsim::run_plan(plan);
        println!(
            "run {run}: steady n=1000 120 s: {} ms wall, {} events, {:.0} events/s, {} datagrams, result {}",
            report.wall_ms, report.events, report.events_per_sec, report.traffic.datagrams, report.result
        );
        walls.push(report.wall_ms);
    }
    walls.sort_unstable();
    let median = walls[walls.len() / 2];
    let verdict = if median < BAR_MS { "under" } else { "OVER" };
    println!("median {median} ms wall: {verdict} the {BAR_MS} ms bar");
}
