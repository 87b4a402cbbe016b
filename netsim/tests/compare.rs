//! `netsim compare` on a small hot workload: custody pays consensus only on
//! membership change, the per-task-locking baseline pays it for every task,
//! cold tasks wait longer behind the baseline's hot lock, and every
//! invariant holds in both modes.

use netsim::plan::Mode;
use netsim::report::Report;

#[test]
fn compare_on_a_small_hot_workload() {
    let dir = std::env::temp_dir().join(format!("netsim-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let plot = dir.join("plot.svg");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netsim"))
        .args(["compare", "--scenario", "hot-resource", "--seed", "1", "--nodes", "20"])
        .args(["--tasks", "2000", "--hot-fraction", "0.9"])
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&plot)
        .output()
        .expect("netsim runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    for row in ["consensus instances", "coordination messages", "cold p99 latency (ms)", "unavailable resource-seconds"]
    {
        assert!(stdout.contains(row), "the table has a row {row:?}:\n{stdout}");
    }
    let report: Report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("lock baseline"), "{}", &svg[..svg.len().min(200)]);

    let custody = report.custody.as_ref().expect("custody ran");
    let lock = report.lock_baseline.as_ref().expect("the baseline ran");
    assert_eq!((custody.tasks_executed, lock.tasks_executed), (2000, 2000), "{stdout}");

    // Custody: consensus only for epochs and votes, none per task.
    let k = custody.consensus_by_kind;
    assert!(custody.consensus_instances <= k.epochs + k.suspicion_votes, "{custody:?}");
    assert_eq!(k.enqueue + k.acquire + k.mark + k.release + k.session, 0);
    assert!(custody.consensus_instances < 20, "a handful of epochs, not per task: {custody:?}");

    // The baseline: at least acquire + mark + release per task (and the
    // enqueue: four).
    assert!(lock.consensus_per_task >= 3.0, "{lock:?}");
    let l = lock.consensus_by_kind;
    assert_eq!((l.enqueue, l.acquire, l.mark, l.release), (2000, 2000, 2000, 2000), "{l:?}");
    assert!(lock.coordination_messages > 2000 * 20, "every entry costs a round: {lock:?}");

    // Cold tasks wait longer behind the baseline's locking.
    let ratios = report.ratios.expect("both ran");
    assert!(ratios.cold_p99_lock_over_custody.is_some_and(|r| r > 1.0), "{ratios:?}");
    assert!(ratios.consensus_per_task_lock_over_custody.is_some_and(|r| r > 100.0), "{ratios:?}");

    // Every invariant, in both modes.
    for mode in [Mode::Custody, Mode::Lock] {
        let mine: Vec<_> = report.invariants.iter().filter(|i| i.mode == mode).collect();
        assert_eq!(mine.len(), 9, "{mode:?}: {mine:#?}");
        assert!(mine.iter().all(|i| i.ok), "{mode:?}: {mine:#?}");
    }
    assert_eq!(report.result, "pass");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn both_modes_see_the_same_tasks_and_faults_and_replay_alike() {
    use netsim::scenario::{Params, WorkloadOverrides, find};
    let params = Params {
        workload: WorkloadOverrides { tasks: Some(600), ..WorkloadOverrides::default() },
        ..Params::new(12, 5, 80, custody::Config::lan())
    };
    let plan = find("crash-leader").unwrap().plan(&params).unwrap();
    let first = netsim::run_modes(plan.clone(), netsim::Modes::Both);
    let again = netsim::run_modes(plan, netsim::Modes::Both);
    assert_eq!(first.trace_hash, again.trace_hash, "deterministic in both modes");
    let lock = first.lock_baseline.as_ref().unwrap();
    // The founder, the lock service's first leader, crashed: the baseline
    // moved to the new leader and finished every task, once each.
    assert_eq!(lock.tasks_executed, 600, "{lock:?}");
    assert_eq!(lock.duplicate_executions, 0);
    let counts = lock.lock.unwrap();
    assert!(counts.retries > 0 || counts.not_leader > 0, "{counts:?}");
    let failed: Vec<_> = first.invariants.iter().filter(|i| i.mode == netsim::plan::Mode::Lock && !i.ok).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
