//! netsim: a deterministic discrete-event simulator that drives custody's
//! real engine ([`custody::engine::Node`]) over a faulty virtual network.
//!
//! * [`plan`]: a run as explicit data — nodes, network, clocks, faults,
//!   expectations. `netsim replay PLAN.json` re-runs a plan exactly.
//! * [`scenario`]: the catalogue; a scenario and a seed expand into a plan.
//! * [`sim`]: the event loop, the network and clock models.
//! * [`workload`]: the simulated clients and their tasks.
//! * [`checker`]: what the execution trace must show.
//! * [`report`]: what a run measured and checked, as JSON.
//!
//! Nothing in the simulation reads a clock, spawns a thread or draws
//! unseeded randomness: one plan, one trace hash.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checker;
pub mod plan;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod workload;

use plan::Plan;
use report::Report;

/// Runs a plan and reports, with the wall time it took.
///
/// # Panics
/// If the plan is invalid: check it with [`Plan::validate`] first.
pub fn run_plan(plan: Plan) -> Report {
    // The wall clock only fills the report's timing fields; it never feeds
    // the simulation.
    #[allow(clippy::disallowed_methods, clippy::disallowed_types)]
    let started = std::time::Instant::now();
    let finished = sim::Sim::new(plan).run();
    let wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    finished.report(wall_ms)
}
