//! Tasks longer than a lease: exponential task times of 30 s on average
//! (up to 300 s, sixty leases) under the pause and partition scenarios.
//! Custodians renew their leases while tasks run; a paused or cut-off one
//! cancels its running tasks before its lease ends, and they run again
//! after the fault. Every invariant must hold and every task complete.

use std::time::Duration;

use custody::Config;
use netsim::plan::ExecTime;
use netsim::report::Verdict;
use netsim::scenario::{Params, WorkloadOverrides};

const NODES: usize = 6;
const SEEDS: std::ops::RangeInclusive<u64> = 1..=3;
/// Mean task time.
const TASK_MS: u64 = 30_000;
/// Long enough for the longest task (ten times the mean) after the faults.
const DURATION_S: u64 = 600;

#[test]
fn thirty_second_tasks_survive_pauses_and_partitions_with_every_invariant() {
    // The longest task the workload draws: its deadline.
    let d_max = Duration::from_millis(ExecTime::Exponential.max_ms(TASK_MS));
    let config = Config { d_max, ..Config::lan() };
    assert!(config.d_max > config.lease * 50, "tasks far longer than a lease");
    let workload = WorkloadOverrides {
        tasks: Some(40),
        resources: Some(1_000),
        task_ms: Some(TASK_MS),
        exec: Some(ExecTime::Exponential),
        ..WorkloadOverrides::default()
    };
    let mut failures = Vec::new();
    let mut cancelled = 0;
    for name in ["pause", "partition-halves"] {
        let scenario = netsim::scenario::find(name).expect("exists");
        for seed in SEEDS {
            let params = Params { workload, ..Params::new(NODES, seed, DURATION_S, config.clone()) };
            let plan = scenario.plan(&params).expect("a valid plan");
            let report = netsim::run_plan(plan);
            let t = &report.tasks;
            let replay = format!(
                "netsim run --scenario {name} --seed {seed} --nodes {NODES} --duration {DURATION_S}s --tasks 40 \
                 --resources 1000 --exec exp --task-ms {TASK_MS} --set d_max_ms={}",
                d_max.as_millis()
            );
            if report.verdict() != Verdict::Pass
                || !report.invariants.iter().all(|i| i.ok)
                || t.completed != t.submitted
                || t.duplicate_executions != t.cancelled_executions
            {
                failures.push(format!("{replay}: {:?} {t:?}", report.first_failure()));
            }
            cancelled += t.cancelled_executions;
        }
    }
    assert!(failures.is_empty(), "failing runs:\n{}", failures.join("\n"));
    assert!(cancelled > 0, "some custodian cancelled a task as its lease ended");
}
