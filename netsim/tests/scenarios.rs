//! Every scenario, a fixed range of seeds, 20 nodes: each must pass, and a
//! failure prints the command that replays it.

use custody::Config;
use netsim::plan::Plan;
use netsim::report::Verdict;
use netsim::scenario::{Params, SCENARIOS, TASK_RESOURCES, TASKS};

const NODES: usize = 20;
const SEEDS: std::ops::RangeInclusive<u64> = 1..=3;

fn params(seed: u64) -> Params {
    Params { nodes: NODES, seed, duration_s: 120, config: Config::lan() }
}

#[test]
fn every_scenario_passes_a_fixed_seed_range() {
    let mut failures = Vec::new();
    for scenario in SCENARIOS {
        for seed in SEEDS {
            let plan = scenario.plan(&params(seed)).expect("a valid plan");
            let report = netsim::run_plan(plan);
            if report.verdict() != Verdict::Pass {
                failures.push(format!(
                    "{} seed {seed}: {:?}\n  replay: netsim run --scenario {} --seed {seed} --nodes {NODES} --duration 120s",
                    scenario.name,
                    report.first_failure(),
                    scenario.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "failing runs:\n{}", failures.join("\n"));
}

#[test]
fn tasks_flow_through_leaves_and_joins_each_completed_exactly_once() {
    for name in ["graceful-leave", "join-wave"] {
        let scenario = netsim::scenario::find(name).expect("exists");
        for seed in SEEDS {
            let plan = scenario.plan(&params(seed)).expect("valid");
            let workload = plan.tasks.expect("a workload");
            assert_eq!((workload.count, workload.resources), (TASKS, TASK_RESOURCES));
            let expect = plan.expect.tasks.expect("task expectations");
            assert!(expect.all_complete && expect.exactly_once, "{name}: the verdict must demand both");
            let report = netsim::run_plan(plan);
            let replay = format!("netsim run --scenario {name} --seed {seed} --nodes {NODES} --duration 120s");
            let t = &report.tasks;
            assert_eq!(t.submitted, TASKS, "{replay}");
            assert_eq!(t.completed, TASKS, "{replay}: {t:?}");
            assert_eq!(t.executed, TASKS, "{replay}: {t:?}");
            assert_eq!(t.duplicate_executions, 0, "{replay}: {t:?}");
            assert_eq!(t.executions, TASKS, "{replay}: {t:?}");
            assert_eq!((t.gave_up, t.rejected), (0, 0), "{replay}: {t:?}");
            let h = &report.handoffs;
            assert!(h.range_transfers > 0 && h.resources_moved > 0, "{replay}: custody moved with tasks: {h:?}");
            assert_eq!(h.transfers_in_doubt, 0, "{replay}: graceful handoffs are never in doubt");
            for check in [
                "every submitted task ran at least once",
                "no task ran twice",
                "every task arrived and completed",
                "executions of one resource never overlap in true time",
                "tokens and sequence numbers of one resource strictly increase in start order",
            ] {
                let found = report.checks.iter().find(|c| c.name == check);
                assert!(found.is_some_and(|c| c.ok), "{replay}: {check}: {found:?}");
            }
            assert_eq!(report.verdict(), Verdict::Pass, "{replay}: {:?}", report.first_failure());
        }
    }
    // Without a workload nothing runs, and the report says so.
    let steady = netsim::run_plan(netsim::scenario::find("steady").expect("exists").plan(&params(1)).expect("valid"));
    assert_eq!(steady.tasks, Default::default());
    assert!(!steady.checks.iter().any(|c| c.name.contains("task")));
}

#[test]
fn faults_are_actually_injected() {
    let run = |name: &str| {
        let scenario = netsim::scenario::find(name).expect("exists");
        netsim::run_plan(scenario.plan(&params(1)).expect("valid"))
    };
    let crash = run("crash");
    assert_eq!(crash.faults_injected.crashes, 2, "10% of 20 nodes");
    assert!(crash.membership.member_down >= 2 * 17, "every survivor saw both crashes: {:?}", crash.membership);
    let partition = run("partition-halves");
    assert!(partition.faults_injected.partition_dropped > 0);
    let lossy = run("lossy-net");
    assert!(lossy.faults_injected.dropped > 0 && lossy.faults_injected.duplicated > 0);
    assert!(lossy.faults_injected.reordered > 0);
    let pause = run("pause");
    assert_eq!(pause.faults_injected.pauses, 2);
    assert!(pause.membership.member_down >= 1, "the 10 s pause is noticed: {:?}", pause.membership);
    let steady = run("steady");
    assert_eq!(steady.faults_injected, Default::default());
    assert_eq!(steady.membership.member_down, 0);
}

#[test]
fn the_same_plan_gives_the_same_trace_and_a_replayed_plan_too() {
    for name in ["crash-restart", "lossy-net", "flapping", "graceful-leave"] {
        let scenario = netsim::scenario::find(name).expect("exists");
        let plan = scenario.plan(&params(7)).expect("valid");
        let first = netsim::run_plan(plan.clone());
        let second = netsim::run_plan(plan.clone());
        assert_eq!(first.trace_hash, second.trace_hash, "{name}: nondeterministic");
        assert_eq!(first.events, second.events);
        // Through JSON, as `netsim replay` reads it.
        let replayed: Plan = serde_json::from_str(
            &serde_json::to_string(&first)
                .map(|report| {
                    let value: serde_json::Value = serde_json::from_str(&report).expect("JSON");
                    value["fault_plan"].to_string()
                })
                .expect("serializes"),
        )
        .expect("a plan");
        assert_eq!(netsim::run_plan(replayed).trace_hash, first.trace_hash, "{name}: replay differs");
        // Another seed is another run.
        let other = netsim::run_plan(scenario.plan(&params(8)).expect("valid"));
        assert_ne!(other.trace_hash, first.trace_hash);
    }
}

#[test]
fn the_report_has_the_documented_keys() {
    let scenario = netsim::scenario::find("graceful-leave").expect("exists");
    let report = netsim::run_plan(scenario.plan(&params(1)).expect("valid"));
    let json = serde_json::to_value(&report).expect("serializes");
    for key in [
        "scenario",
        "seed",
        "nodes",
        "sim_seconds",
        "wall_ms",
        "events",
        "events_per_sec",
        "fault_plan",
        "faults_injected",
        "membership",
        "checks",
        "result",
        "trace_hash",
        "tasks",
        "handoffs",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    for key in ["dropped", "duplicated", "partition_dropped", "crashes", "pauses"] {
        assert!(json["faults_injected"].get(key).is_some(), "missing faults_injected.{key}");
    }
    for key in ["member_down", "member_up", "false_suspicions", "converge_ms"] {
        assert!(json["membership"].get(key).is_some(), "missing membership.{key}");
    }
    for key in ["submitted", "completed", "executed", "duplicate_executions", "unavailable_retries"] {
        assert!(json["tasks"].get(key).is_some_and(|v| v.is_u64()), "missing tasks.{key}");
    }
    for key in ["range_transfers", "resources_moved", "tasks_moved"] {
        assert!(json["handoffs"].get(key).is_some_and(|v| v.is_u64()), "missing handoffs.{key}");
    }
    assert!(json["fault_plan"]["tasks"].is_object(), "graceful-leave runs a workload");
    assert_eq!(json["result"], "pass");
    assert!(json["checks"].as_array().is_some_and(|c| c.iter().all(|c| c["ok"] == true && c["name"].is_string())));
}

/// Plans that once failed, kept as they were saved (`netsim-failures/`):
/// each must pass now. Replay one with `netsim replay FILE`.
#[test]
fn saved_failures_stay_fixed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("the regressions folder").map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        let plan: Plan = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).expect("a plan");
        let report = netsim::run_plan(plan);
        assert_eq!(report.verdict(), Verdict::Pass, "netsim replay {}: {:?}", file.display(), report.first_failure());
    }
}
