//! netsim: a deterministic discrete-event simulator that drives custody's
//! real engine ([`custody::engine::Node`]) over a faulty virtual network.
//!
//! * [`plan`]: a run as explicit data — nodes, network, clocks, faults,
//!   expectations. `netsim replay PLAN.json` re-runs a plan exactly.
//! * [`scenario`]: the catalogue; a scenario and a seed expand into a plan.
//! * [`sim`]: the event loop, the network and clock models, the faults,
//!   what it observes, and the report it assembles.
//! * [`workload`]: the simulated clients and their tasks.
//! * [`baseline`]: the per-task-locking baseline (`--mode lock`).
//! * [`trace`]: what a run records (executions, tasks, frame and lock
//!   counts), as plain data every other module reads; it depends on none.
//! * [`checker`]: what the execution trace must show.
//! * [`report`]: what a run measured and checked, as JSON.
//! * [`metrics`]: custody against the baseline, measured alike; `compare`'s table and plot.
//!
//! Nothing in the simulation reads a clock, spawns a thread or draws
//! unseeded randomness: one plan, one trace hash. (`run_modes` with both
//! modes runs the two simulations of a plan side by side on two threads;
//! each stays single-threaded.)

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod baseline;
pub mod checker;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod trace;
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

/// Which systems a run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modes {
    /// One mode (the plan's own is overridden).
    One(plan::Mode),
    /// Custody and the lock baseline on the same plan (same faults, same
    /// workload), merged into one report with both sections and the ratios.
    Both,
}

/// Runs a plan in one mode or both. Both: the plan runs twice, once per
/// mode, at once on two threads (each simulation stays single-threaded and
/// deterministic); the report is custody's with the baseline's section,
/// checks and invariants added ([`metrics::merge`]), and the wall time of
/// the pair.
///
/// # Panics
/// If the plan is invalid: check it with [`Plan::validate`] first.
pub fn run_modes(plan: Plan, modes: Modes) -> Report {
    let with = |mode| Plan { mode, ..plan.clone() };
    match modes {
        Modes::One(mode) => run_plan(with(mode)),
        Modes::Both => {
            #[allow(clippy::disallowed_methods, clippy::disallowed_types)]
            let started = std::time::Instant::now();
            let (custody, lock) = (with(plan::Mode::Custody), with(plan::Mode::Lock));
            let (custody, lock) = std::thread::scope(|s| {
                let lock = s.spawn(|| run_plan(lock));
                let custody = run_plan(custody);
                (custody, lock.join().expect("the lock baseline's run panicked"))
            });
            let mut report = metrics::merge(custody, lock);
            report.wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            report.events_per_sec = report.events as f64 / (report.wall_ms.max(1) as f64 / 1000.0);
            report
        }
    }
}
