//! Fixtures of the checker's tests: tasks, executions and fault windows in
//! a line each, a run built from them, and the names the tests read.

pub(super) use std::collections::BTreeMap;

pub(super) use custody::engine::Token;

pub(super) use crate::checker::{
    Checked, EpochFacts, Exposure, FaultFacts, TaskRun, Touch, check, check_run, invariants,
};
pub(super) use crate::plan::{Arrivals, Distribution, ExecTime, Mode, TaskExpect, Workload};
pub(super) use crate::report::{CheckKind, Invariant, LivenessClass};
pub(super) use crate::trace::{ClientCounts, ExecRecord, TaskRecord, TaskStatus, task_id};

/// A workload of `count` tasks over two resources.
pub(super) fn workload(count: u64) -> Workload {
    Workload {
        count,
        resources: 2,
        distribution: Distribution::Uniform,
        rate: 10.0,
        arrivals: Arrivals::Even,
        task_ms: 10,
        exec: ExecTime::Fixed,
        start_at_ms: 0,
        retry_ms: 10,
        max_attempts: 3,
    }
}

/// A task of `resource` answered completed with `token` at 1 s.
pub(super) fn record(resource: u64, token: (u64, u64)) -> TaskRecord {
    let token = Token { epoch: token.0, seq: token.1 };
    let status = TaskStatus::Completed { token, task_id: String::new(), at: 1_000_000 };
    TaskRecord { resource, arrived: 0, acked: None, gateway_fault: None, attempts: 1, status }
}

pub(super) fn exec(node: usize, task: u64, resource: u64, token: (u64, u64), start: u64, end: u64) -> ExecRecord {
    let token = Token { epoch: token.0, seq: token.1 };
    ExecRecord { node, task, resource, token, attempt: 1, start, end: Some(end), cancelled: false }
}

pub(super) const STRICT: TaskExpect = TaskExpect { all_complete: true, exactly_once: true };
pub(super) const LOOSE: TaskExpect = TaskExpect { all_complete: false, exactly_once: false };

/// A run's facts beyond tasks and trace.
#[derive(Clone)]
pub(super) struct Facts {
    pub(super) expect: TaskExpect,
    /// Custody mode: the fault windows; lock mode: any makes the run's
    /// faults run-wide.
    pub(super) exposures: Vec<Exposure>,
    pub(super) chain: Vec<String>,
    pub(super) committed_at: BTreeMap<u64, u64>,
    /// (epoch, resource) → the ring's custodian; empty: rings unknown.
    pub(super) owners: BTreeMap<(u64, u64), usize>,
    /// Task `k` runs `exec_us[k]` µs; empty: every ended run was full.
    pub(super) exec_us: Vec<u64>,
    /// When the store's voters' majority crashed, if it did.
    pub(super) store_lost_at: Option<u64>,
    /// The engines recover crashed custodians' ranges.
    pub(super) recovery: bool,
}

/// A fault window on resource `r`.
pub(super) fn window(r: u64, touch: Touch, from: u64, to: u64) -> Exposure {
    Exposure { resource: r, touch, node: 9, from, to, unhealed: to == u64::MAX && touch == Touch::Paused }
}

/// `touched`: a pause of a holder of resources 0 and 1 for the whole
/// run (healed by the end).
pub(super) fn facts(expect: TaskExpect, touched: bool) -> Facts {
    let exposures =
        if touched { (0..2).map(|r| window(r, Touch::Paused, 0, u64::MAX - 1)).collect() } else { Vec::new() };
    // Epochs 1 to 3 committed at time 0.
    Facts {
        expect,
        exposures,
        chain: Vec::new(),
        committed_at: (1..=3).map(|e| (e, 0)).collect(),
        owners: BTreeMap::new(),
        exec_us: Vec::new(),
        store_lost_at: None,
        recovery: false,
    }
}

/// Names every answer after its own task, then runs `f` on the run.
pub(super) fn with_run<R>(
    tasks: &mut [TaskRecord],
    trace: &[ExecRecord],
    facts: &Facts,
    f: impl Fn(&TaskRun<'_>) -> R,
) -> R {
    for (k, t) in tasks.iter_mut().enumerate() {
        if let TaskStatus::Completed { task_id: id, .. } = &mut t.status
            && id.is_empty()
        {
            *id = task_id(k as u64);
        }
    }
    let w = workload(tasks.len() as u64);
    let completed = tasks.iter().filter(|t| matches!(t.status, TaskStatus::Completed { .. })).count() as u64;
    let counts = ClientCounts { submitted: tasks.len() as u64, completed, ..Default::default() };
    let tasks: &[TaskRecord] = tasks;
    let mut exposures = facts.exposures.clone();
    exposures.sort_by_key(|e| (e.resource, e.from));
    let owner = |epoch: u64, r: u64| facts.owners.get(&(epoch, r)).copied();
    let exec_us = |k: u64| facts.exec_us[k as usize];
    f(&TaskRun {
        workload: &w,
        expect: facts.expect,
        tasks,
        counts,
        trace,
        faults: FaultFacts {
            exposures: &exposures,
            run_wide: false,
            store_lost_at: facts.store_lost_at,
            owner: (!facts.owners.is_empty()).then_some(&owner as &dyn Fn(u64, u64) -> Option<usize>),
            recovery: facts.recovery,
        },
        exec_us: (!facts.exec_us.is_empty()).then_some(&exec_us as &dyn Fn(u64) -> u64),
        epochs: EpochFacts { violations: &facts.chain, committed_at: Some(&facts.committed_at) },
    })
}

/// In lock mode, the baseline's faults are run-wide.
pub(super) fn lock_run<R>(
    tasks: &mut [TaskRecord],
    trace: &[ExecRecord],
    facts: &Facts,
    f: impl Fn(&TaskRun<'_>) -> R,
) -> R {
    let run_wide = !facts.exposures.is_empty();
    with_run(tasks, trace, &Facts { exposures: Vec::new(), ..facts.clone() }, |run| {
        f(&TaskRun { faults: FaultFacts { run_wide, ..run.faults }, ..*run })
    })
}

pub(super) fn invs(mode: Mode, tasks: &mut [TaskRecord], trace: &[ExecRecord], facts: &Facts) -> Vec<Invariant> {
    let out = match mode {
        Mode::Custody => with_run(tasks, trace, facts, |run| invariants(mode, run)),
        Mode::Lock => lock_run(tasks, trace, facts, |run| invariants(mode, run)),
    };
    let names: Vec<&str> = out.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["I1", "I2", "I4", "I5", "I6", "I7", "I8", "I11", "I12"]);
    for i in &out {
        assert_eq!(i.mode, mode);
        assert_eq!(i.ok, i.violations == 0, "{i:?}");
    }
    out
}

pub(super) fn failed(invariants: &[Invariant]) -> Vec<&str> {
    invariants.iter().filter(|i| !i.ok).map(|i| i.name.as_str()).collect()
}

pub(super) fn get<'a>(invariants: &'a [Invariant], name: &str) -> &'a Invariant {
    invariants.iter().find(|i| i.name == name).expect("listed")
}
