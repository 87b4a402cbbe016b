//! Wall time of `seed-claim` in both modes, against the bar of 60 s on a
//! 2-core machine in release (from the netsim issues): 100 nodes,
//! 1,000,000 tasks over 100,000 resources, 10 membership changes, custody
//! and the per-task-locking baseline on the same plan (two threads, one
//! simulation each).
//!
//! ```text
//! cargo bench -p netsim --bench seed_claim            # seed 1, one round
//! cargo bench -p netsim --bench seed_claim -- 3 7     # 3 rounds, seed 7
//! ```

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use custody::Config;
use netsim::scenario::{self, Params};
use netsim::{Modes, run_modes};

/// The bar, seconds of wall time for both modes.
const BAR_S: f64 = 60.0;

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rounds = args.first().copied().unwrap_or(1).max(1);
    let seed = args.get(1).copied().unwrap_or(1);
    let seed_claim = scenario::find("seed-claim").expect("seed-claim exists");
    for round in 1..=rounds {
        let plan = seed_claim.plan(&Params::new(seed_claim.nodes, seed, 120, Config::lan())).expect("a valid plan");
        let started = std::time::Instant::now();
        let report = run_modes(plan, Modes::Both);
        let wall = started.elapsed().as_secs_f64();
        let custody = report.custody.as_ref().expect("custody ran");
        let lock = report.lock_baseline.as_ref().expect("the baseline ran");
        println!(
            "round {round}: both modes in {wall:.1} s wall (bar {BAR_S} s: {}); {} and {} tasks executed; \
             consensus instances {} vs {}; verdict {}",
            if wall <= BAR_S { "met" } else { "MISSED" },
            custody.tasks_executed,
            lock.tasks_executed,
            custody.consensus_instances,
            lock.consensus_instances,
            report.result,
        );
    }
}
