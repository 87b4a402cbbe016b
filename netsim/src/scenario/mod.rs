//! The scenario catalogue: each scenario and seed expand into a [`Plan`].
//!
//! Random choices (which nodes crash, clock offsets and drifts) are drawn
//! here, once, into the plan; the plan is printed with the report and
//! replays exactly.
//!
//! This file holds the catalogue and the fixed scenarios; `random.rs` holds
//! `random`, the swarm-testing scenario that draws a whole plan from the
//! seed.

mod random;

use custody::Config;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::plan::{
    Arrivals, ClockSpec, Distribution, ExecTime, Expect, Fault, Latency, LinkModel, NetModel, Plan, TaskExpect,
    TimedFault, Workload,
};

pub use random::{
    CRASH_SHADOW_MS, DRIFT_PPM_MAX, HOT_LOAD_MAX, RANDOM_DRAIN_MS, RANDOM_FAULTS, RANDOM_NODES, RANDOM_SETTLE_MS,
};

/// A scenario in the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// The name used on the command line.
    pub name: &'static str,
    /// One line for `netsim list`.
    pub about: &'static str,
    /// The shortest run, in seconds, that holds its faults and the time to
    /// converge after them.
    pub min_duration_s: u64,
    /// Nodes when the command line names none; 0: drawn from the seed
    /// (`random`: [`RANDOM_NODES`]).
    pub nodes: usize,
    /// Too big to run at full size in the per-scenario test loop: tests run
    /// it scaled down ([`Params::task_scale`]).
    pub heavy: bool,
    build: fn(&mut Builder),
}

/// Nodes of a scenario that names no other number.
pub const DEFAULT_NODES: usize = 50;

/// Every scenario.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "steady",
        about: "a formed cluster, no faults: nothing may change",
        min_duration_s: 10,
        nodes: DEFAULT_NODES,
        heavy: false,
        build: steady,
    },
    Scenario {
        name: "join-wave",
        about: "10% formed; the rest join in waves of 1 node, 10%, then all the others at once; tasks flow \
                throughout",
        min_duration_s: 40,
        nodes: DEFAULT_NODES,
        heavy: false,
        build: join_wave,
    },
    Scenario {
        name: "join-storm",
        about: "one node; every other node joins through it at the same instant",
        min_duration_s: 15,
        nodes: DEFAULT_NODES,
        heavy: false,
        build: join_storm,
    },
    Scenario {
        name: "join-batch",
        about: "a formed cluster; 10 nodes join within 1 s (inside one batching window) at 20 s",
        min_duration_s: 40,
        nodes: DEFAULT_NODES,
        heavy: false,
        build: join_batch,
    },
    Scenario {
        name: "crash",
        about: "10% of the nodes crash at once at 20 s",
        min_duration_s: 60,
        nodes: DEFAULT_NODES,
        heavy: false,
        build: crash,
    },
    Scenario {
        name: "crash-restart",
        about: "10% crash at 20 s; half restart before detection, half after, with higher incarnations",
        min_duration_s: 70,
        nodes: DEFAULT_NODES,
        heavy: false,
        build: crash_restart,
    },
    Scenario {
        name: "double-crash",
        about: "recovery on; a resource's custodian and its first replica crash at once at 20 s: ranges \
                replicated on both lose their read quorum and stay unavailable (never lossy); the rest are recovered",
        min_duration_s: 60,
        nodes: DEFAULT_NODES,
        heavy: false,
        build: double_crash,
    },
    Scenario {
        name: "crash-leader",
        about: "the founder (the epoch store's first leader) crashes at 20 s and restarts at 40 s",
        min_duration_s: 70,
        nodes: DEFAULT_NODES,
        heavy: false,
        build: crash_leader,
    },
    Scenario {
        name: "graceful-leave",
        about: "10% of the nodes leave one after another from 20 s; tasks flow throughout",
        min_duration_s: 40,
        nodes: DEFAULT_NODES,
        heavy: false,
        build: graceful_leave,
    },
    Scenario {
        name: "partition-halves",
        about: "a symmetric split into two halves from 20 s to 60 s, then heal",
        min_duration_s: 90,
        nodes: DEFAULT_NODES,
        heavy: false,
        build: partition_halves,
    },
    Scenario {
        name: "partition-oneway",
        about: "the first quarter cannot reach the second (one way) from 20 s to 50 s, then heal",
        min_duration_s: 80,
        nodes: DEFAULT_NODES,
        heavy: false,
        build: partition_oneway,
    },
    Scenario {
        name: "flapping",
        about: "one node's links go down and up around the suspicion timeout from 20 s to 80 s",
        min_duration_s: 110,
        nodes: DEFAULT_NODES,
        heavy: false,
        build: flapping,
    },
    Scenario {
        name: "pause",
        about: "one node stops the world for 10 s (declared down, then rejoins), another for 1 s",
        min_duration_s: 60,
        nodes: DEFAULT_NODES,
        heavy: false,
        build: pause,
    },
    Scenario {
        name: "lossy-net",
        about: "1% loss for 30 s, then 5%, then 20% (with duplicates and latency spikes), then a clean network",
        min_duration_s: 120,
        nodes: DEFAULT_NODES,
        heavy: false,
        build: lossy_net,
    },
    Scenario {
        name: "random",
        about: "swarm testing: from the seed, 8–50 nodes, a workload (uniform, Zipf or hot) and 3–12 mixed faults \
                (joins, leaves, crashes, restarts, pauses, cuts both ways, isolations, loss, clock drift), often \
                overlapping, all over 45 s before the end; tasks throughout",
        min_duration_s: 90,
        nodes: 0,
        // A run whose cluster a bug wedges spins on retried submits: the
        // per-scenario test loop runs it with a fiftieth of its tasks.
        heavy: true,
        build: random::random,
    },
    Scenario {
        name: "seed-claim",
        about: "100 nodes, 1,000,000 tasks over 100,000 resources at 20,000/s for 50 s, while 5 nodes join and 5 \
                leave gracefully, one change every 4 s",
        min_duration_s: 70,
        nodes: 100,
        heavy: true,
        build: seed_claim,
    },
    Scenario {
        name: "hot-resource",
        about: "20 nodes, 100,000 tasks of 1 ms at 1,000/s for 100 s, 90% of them on one resource, the rest over \
                999 others",
        min_duration_s: 115,
        nodes: 20,
        heavy: true,
        build: hot_resource,
    },
];

/// Finds a scenario by name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// What a plan is made from.
#[derive(Debug, Clone)]
pub struct Params {
    /// Nodes; 0: the scenario's own number ([`Scenario::nodes`]).
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Simulated seconds.
    pub duration_s: u64,
    /// Engine configuration.
    pub config: Config,
    /// Scales the scenario's task count and arrival rate (the arrivals keep
    /// their time span): 1 runs it as designed, 0.01 with a hundredth of
    /// the tasks.
    pub task_scale: f64,
    /// Workload settings that override the scenario's (or add a workload
    /// to a scenario without one), applied after `task_scale`.
    pub workload: WorkloadOverrides,
}

impl Params {
    /// Parameters with the scenario's workload as designed.
    pub fn new(nodes: usize, seed: u64, duration_s: u64, config: Config) -> Params {
        Params { nodes, seed, duration_s, config, task_scale: 1.0, workload: WorkloadOverrides::default() }
    }
}

/// Workload settings from the command line; each set one overrides the
/// scenario's. A scenario without a workload gets one ([`TASKS`] tasks over
/// [`TASK_RESOURCES`] resources, Poisson arrivals from 2 s until 5 s before
/// the end, 50 ms tasks) with these applied, expected to complete exactly
/// once unless the plan may lose custody.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WorkloadOverrides {
    /// Tasks in all. Without `rate`, the arrival rate scales with them (the
    /// arrivals keep their time span).
    pub tasks: Option<u64>,
    /// Resources.
    pub resources: Option<u64>,
    /// Milliseconds per task (the mean, with exponential execution times).
    pub task_ms: Option<u64>,
    /// Arrivals per second.
    pub rate: Option<f64>,
    /// How tasks spread over resources.
    pub distribution: Option<Distribution>,
    /// How arrivals are spaced.
    pub arrivals: Option<Arrivals>,
    /// Fixed or exponential execution times.
    pub exec: Option<ExecTime>,
}

impl WorkloadOverrides {
    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == WorkloadOverrides::default()
    }

    /// Applies the overrides to a plan's workload, adding one if it has
    /// none.
    pub fn apply(&self, plan: &mut Plan) {
        if self.is_empty() {
            return;
        }
        let added = plan.tasks.is_none();
        let mut w = plan.tasks.unwrap_or(Workload {
            count: TASKS,
            resources: TASK_RESOURCES,
            distribution: Distribution::Uniform,
            rate: 1.0,
            arrivals: Arrivals::Poisson,
            task_ms: 50,
            exec: ExecTime::Fixed,
            start_at_ms: 2_000,
            retry_ms: 200,
            max_attempts: 20,
        });
        if let Some(count) = self.tasks {
            if !added && w.count > 0 {
                w.rate *= count as f64 / w.count as f64;
            }
            w.count = count;
        }
        if added {
            let span_ms = plan.duration_ms.saturating_sub(5_000).saturating_sub(w.start_at_ms).max(1_000);
            w.rate = w.count.max(1) as f64 * 1000.0 / span_ms as f64;
        }
        w.resources = self.resources.unwrap_or(w.resources);
        w.task_ms = self.task_ms.unwrap_or(w.task_ms);
        w.rate = self.rate.unwrap_or(w.rate);
        w.distribution = self.distribution.unwrap_or(w.distribution);
        w.arrivals = self.arrivals.unwrap_or(w.arrivals);
        w.exec = self.exec.unwrap_or(w.exec);
        plan.tasks = Some(w);
        if plan.expect.tasks.is_none() {
            let safe = !plan.may_lose_custody();
            plan.expect.tasks = Some(TaskExpect { all_complete: safe, exactly_once: safe });
        }
    }
}

impl Scenario {
    /// Expands the scenario into a plan.
    pub fn plan(&self, params: &Params) -> Result<Plan, String> {
        if params.duration_s < self.min_duration_s {
            return Err(format!(
                "scenario {} needs at least {} s of simulated time (got {} s)",
                self.name, self.min_duration_s, params.duration_s
            ));
        }
        let name_hash = self.name.bytes().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b));
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(params.seed ^ name_hash.rotate_left(17));
        let nodes = match (params.nodes, self.nodes) {
            (0, 0) => rng.random_range(RANDOM_NODES),
            (0, own) => own,
            (given, _) => given,
        };
        let params = &Params { nodes, ..params.clone() };
        let min_nodes = if self.name == "steady" || self.name == "join-storm" { 1 } else { 4 };
        if params.nodes < min_nodes {
            return Err(format!("scenario {} needs at least {min_nodes} nodes", self.name));
        }
        let clocks = (0..params.nodes)
            .map(|_| ClockSpec { offset_us: rng.random_range(0..10_000_000), drift_ppm: rng.random_range(-100..=100) })
            .collect();
        let mut b = Builder {
            n: params.nodes,
            rng,
            plan: Plan {
                scenario: self.name.into(),
                seed: params.seed,
                nodes: params.nodes,
                duration_ms: params.duration_s * 1000,
                config: params.config.clone(),
                net: NetModel { default: LinkModel::lan(), links: Vec::new() },
                formed: params.nodes,
                clocks,
                faults: Vec::new(),
                tasks: None,
                expect: Expect {
                    converge_within_ms: 15_000,
                    no_false_down_at_loss_max: 0.05,
                    epochs_after: None,
                    tasks: None,
                },
                mode: crate::plan::Mode::default(),
            },
        };
        (self.build)(&mut b);
        let scale = params.task_scale;
        if !(scale.is_finite() && scale > 0.0) {
            return Err(format!("task scale {scale} must be above 0"));
        }
        if let Some(w) = b.plan.tasks.as_mut().filter(|_| scale != 1.0) {
            w.count = ((w.count as f64 * scale).round() as u64).max(1);
            w.rate *= scale;
        }
        params.workload.apply(&mut b.plan);
        b.plan.validate()?;
        Ok(b.plan)
    }
}

/// Helps a scenario fill in its plan.
struct Builder {
    n: usize,
    rng: Xoshiro256PlusPlus,
    plan: Plan,
}

impl Builder {
    fn at(&mut self, at_ms: u64, fault: Fault) {
        self.plan.faults.push(TimedFault { at_ms, fault });
    }

    /// `count` distinct nodes drawn from `1..n` (node 0, the seed, is kept).
    fn pick(&mut self, count: usize) -> Vec<usize> {
        let mut pool: Vec<usize> = (1..self.n).collect();
        let count = count.min(pool.len());
        for i in 0..count {
            let j = self.rng.random_range(i..pool.len());
            pool.swap(i, j);
        }
        pool.truncate(count);
        pool.sort_unstable();
        pool
    }

    /// A tenth of the nodes, at least one.
    fn tenth(&self) -> usize {
        (self.n / 10).max(1)
    }

    /// A steady stream of tasks ([`TASKS`] over [`TASK_RESOURCES`]
    /// resources, Poisson arrivals) from `from_ms` to `until_ms` (kept 5 s
    /// before the end), which must all complete, and each run once unless
    /// the plan may lose custody. Call it after the faults are in.
    fn steady_tasks(&mut self, from_ms: u64, until_ms: u64) {
        let until_ms = until_ms.min(self.plan.duration_ms.saturating_sub(5_000)).max(from_ms + 1_000);
        self.plan.tasks = Some(Workload {
            count: TASKS,
            resources: TASK_RESOURCES,
            distribution: Distribution::Uniform,
            // Rounded to a short decimal, which reads back from JSON exactly.
            rate: (TASKS as f64 * 1_000_000.0 / (until_ms - from_ms) as f64).round() / 1000.0,
            arrivals: Arrivals::Poisson,
            task_ms: 50,
            exec: ExecTime::Fixed,
            start_at_ms: from_ms,
            retry_ms: 200,
            max_attempts: 20,
        });
        let exactly_once = !self.plan.may_lose_custody();
        self.plan.expect.tasks = Some(TaskExpect { all_complete: true, exactly_once });
    }
}

/// Tasks of the scenarios that run a workload.
pub const TASKS: u64 = 3_000;
/// Resources those tasks spread over.
pub const TASK_RESOURCES: u64 = 300;

fn steady(b: &mut Builder) {
    b.plan.expect.converge_within_ms = 0;
}

fn join_wave(b: &mut Builder) {
    let formed = b.tenth();
    b.plan.formed = formed;
    let mut next = formed;
    let waves = [1, b.tenth(), b.n];
    for (wave, size) in waves.into_iter().enumerate() {
        let at = 5_000 + 10_000 * wave as u64;
        for node in next..(next + size).min(b.n) {
            let seeds = vec![0, b.rng.random_range(0..formed)];
            b.at(at, Fault::Join { node, seeds });
        }
        next = (next + size).min(b.n);
    }
    b.plan.expect.converge_within_ms = 10_000;
    // From before the first wave until well after the last.
    b.steady_tasks(2_000, 35_000);
}

fn join_storm(b: &mut Builder) {
    b.plan.formed = 1;
    for node in 1..b.n {
        b.at(1_000, Fault::Join { node, seeds: vec![0] });
    }
    b.plan.expect.converge_within_ms = 10_000;
    // Through the storm and after it (the shortest run lasts 15 s).
    b.steady_tasks(2_000, 60_000);
}

fn join_batch(b: &mut Builder) {
    let joiners = 10.min(b.n - 1);
    b.plan.formed = b.n - joiners;
    for (k, node) in (b.n - joiners..b.n).enumerate() {
        b.at(20_000 + 100 * k as u64, Fault::Join { node, seeds: vec![0] });
    }
    b.plan.expect.converge_within_ms = 10_000;
    b.plan.expect.epochs_after = Some((20_000, 2));
    b.steady_tasks(5_000, 35_000);
}

fn crash(b: &mut Builder) {
    let victims = b.pick(b.tenth());
    for node in victims {
        b.at(20_000, Fault::Crash { node });
    }
    b.plan.expect.converge_within_ms = 30_000;
    b.steady_tasks(5_000, 45_000);
}

fn crash_restart(b: &mut Builder) {
    let victims = b.pick(b.tenth());
    for &node in &victims {
        b.at(20_000, Fault::Crash { node });
    }
    let (fast, slow) = victims.split_at(victims.len() / 2);
    for &node in fast {
        b.at(20_500, Fault::Restart { node, seeds: vec![0] });
    }
    for &node in slow {
        b.at(40_000, Fault::Restart { node, seeds: vec![0] });
    }
    b.steady_tasks(5_000, 55_000);
}

fn double_crash(b: &mut Builder) {
    b.plan.config.recovery = true;
    // The custodian of a resource the tasks use and its first replica, on
    // the formed cluster's ring (voters spared: the store must live on).
    let ring = custody::engine::ring::Ring::new(
        (0..b.n).map(|i| custody::NodeId::new(crate::sim::node_addr(i), 1, &format!("n{i}"))),
        b.plan.config.vnodes,
    );
    let k = usize::from(b.plan.config.replication);
    let spared = usize::from(b.plan.config.voters) + 2;
    let start = b.rng.random_range(0..TASK_RESOURCES);
    let pair = (0..TASK_RESOURCES).find_map(|j| {
        let name = crate::trace::resource_name((start + j) % TASK_RESOURCES);
        let (range, _) = ring.locate_point(custody::engine::ring::Ring::key_hash(&name))?;
        let replicas: Vec<usize> =
            ring.replicas(range, k).iter().filter_map(|id| crate::sim::node_index(id.addr)).collect();
        (replicas.len() >= 2 && replicas[..2].iter().all(|&n| n >= spared)).then(|| (replicas[0], replicas[1]))
    });
    let victims = match pair {
        Some((a, c)) => vec![a, c],
        None => b.pick(2),
    };
    for node in victims {
        b.at(20_000, Fault::Crash { node });
    }
    b.plan.expect.converge_within_ms = 30_000;
    b.steady_tasks(5_000, 45_000);
}

fn crash_leader(b: &mut Builder) {
    b.at(20_000, Fault::Crash { node: 0 });
    b.at(40_000, Fault::Restart { node: 0, seeds: vec![1, 2] });
    b.steady_tasks(5_000, 55_000);
}

fn graceful_leave(b: &mut Builder) {
    let leavers = b.pick(b.tenth());
    let count = leavers.len() as u64;
    for (k, node) in leavers.into_iter().enumerate() {
        b.at(20_000 + 1_000 * k as u64, Fault::Leave { node });
    }
    b.plan.expect.converge_within_ms = 2_000;
    // From 10 s before the first leave until 10 s after the last.
    b.steady_tasks(10_000, 20_000 + 1_000 * count + 10_000);
}

/// Tasks of `seed-claim`.
pub const SEED_CLAIM_TASKS: u64 = 1_000_000;
/// Resources of `seed-claim`.
pub const SEED_CLAIM_RESOURCES: u64 = 100_000;

/// The seed's claim at scale: a million 1 ms tasks over 100,000 resources
/// (uniform, Poisson at 20,000/s from 5 s to 55 s) while membership changes
/// ten times — a join, then a graceful leave, and so on, 4 s apart from
/// 10 s (each its own epoch: further apart than `stable_after`).
fn seed_claim(b: &mut Builder) {
    let changes = (b.n / 4).clamp(1, 5);
    b.plan.formed = b.n - changes;
    let leavers = {
        // Drawn from the formed nodes other than node 0.
        let mut pool: Vec<usize> = (1..b.plan.formed).collect();
        for i in 0..changes {
            let j = b.rng.random_range(i..pool.len());
            pool.swap(i, j);
        }
        pool.truncate(changes);
        pool
    };
    for (i, leaver) in leavers.into_iter().enumerate() {
        let at = 10_000 + 8_000 * i as u64;
        let seeds = vec![0, b.rng.random_range(1..b.plan.formed)];
        b.at(at, Fault::Join { node: b.plan.formed + i, seeds });
        b.at(at + 4_000, Fault::Leave { node: leaver });
    }
    b.plan.expect.converge_within_ms = 10_000;
    let (start_ms, span_ms) = (5_000, 50_000);
    b.plan.tasks = Some(Workload {
        count: SEED_CLAIM_TASKS,
        resources: SEED_CLAIM_RESOURCES,
        distribution: Distribution::Uniform,
        rate: SEED_CLAIM_TASKS as f64 * 1000.0 / span_ms as f64,
        arrivals: Arrivals::Poisson,
        task_ms: 1,
        exec: ExecTime::Fixed,
        start_at_ms: start_ms,
        retry_ms: 200,
        max_attempts: 20,
    });
    b.plan.expect.tasks = Some(TaskExpect { all_complete: true, exactly_once: !b.plan.may_lose_custody() });
}

/// Tasks of `hot-resource`.
pub const HOT_TASKS: u64 = 100_000;
/// Resources of `hot-resource` (the hot one included).
pub const HOT_RESOURCES: u64 = 1_000;
/// The share of `hot-resource`'s tasks on the hot resource.
pub const HOT_FRACTION: f64 = 0.9;

/// The seed's hot resource: 100,000 tasks of 1 ms, 90% on resource 0, at
/// 1,000/s (Poisson, from 5 s to about 105 s) on a quiet cluster. The hot
/// resource gets 900 tasks/s and can run at most 1,000 (one at a time, 1 ms
/// each): loaded to 90%, yet its queue drains by the end. The tasks start
/// once the formed cluster's first handoffs are over (by about 4 s), so
/// they measure the steady state.
fn hot_resource(b: &mut Builder) {
    let (start_ms, span_ms) = (5_000, 100_000);
    b.plan.tasks = Some(Workload {
        count: HOT_TASKS,
        resources: HOT_RESOURCES,
        distribution: Distribution::Hot { fraction: HOT_FRACTION },
        rate: HOT_TASKS as f64 * 1000.0 / span_ms as f64,
        arrivals: Arrivals::Poisson,
        task_ms: 1,
        exec: ExecTime::Fixed,
        start_at_ms: start_ms,
        retry_ms: 200,
        max_attempts: 20,
    });
    b.plan.expect.tasks = Some(TaskExpect { all_complete: true, exactly_once: true });
}

fn partition_halves(b: &mut Builder) {
    let half = b.n / 2;
    b.at(20_000, Fault::Partition { a: (0..half).collect(), b: (half..b.n).collect(), oneway: false });
    b.at(60_000, Fault::Heal);
    b.steady_tasks(5_000, 75_000);
}

fn partition_oneway(b: &mut Builder) {
    let q = (b.n / 4).max(1);
    b.at(20_000, Fault::Partition { a: (0..q).collect(), b: (q..2 * q).collect(), oneway: true });
    b.at(50_000, Fault::Heal);
    b.steady_tasks(5_000, 65_000);
}

fn flapping(b: &mut Builder) {
    let node = b.pick(1)[0];
    let others: Vec<usize> = (0..b.n).filter(|&o| o != node).collect();
    let base = u64::try_from(b.plan.config.suspect_to_down_after.as_millis()).unwrap_or(4_000);
    let mut t = 20_000;
    while t < 80_000 {
        // Each half-period between 0.5× and 2× the suspicion timeout.
        let down = base * b.rng.random_range(50..=200) / 100;
        let up = base * b.rng.random_range(50..=200) / 100;
        b.at(t, Fault::Partition { a: vec![node], b: others.clone(), oneway: false });
        b.at(t + down, Fault::Heal);
        t += down + up;
    }
    b.steady_tasks(5_000, 95_000);
}

fn pause(b: &mut Builder) {
    let picked = b.pick(2);
    let (long, short) = (picked[0], picked[1]);
    b.at(20_000, Fault::Pause { node: long });
    b.at(30_000, Fault::Resume { node: long });
    b.at(35_000, Fault::Pause { node: short });
    b.at(36_000, Fault::Resume { node: short });
    b.steady_tasks(5_000, 50_000);
}

fn lossy_net(b: &mut Builder) {
    let latency = Latency::LogNormal { median_us: 1_000, sigma: 0.5, spike_prob: 0.01, spike_factor: 20.0 };
    let net = |loss| LinkModel { latency, loss, duplicate: 0.01, reorder: 0.01 };
    b.plan.net.default = net(0.01);
    b.at(30_000, Fault::SetNet { net: net(0.05) });
    b.at(60_000, Fault::SetNet { net: net(0.20) });
    b.at(90_000, Fault::SetNet { net: LinkModel::lan() });
    b.plan.expect.converge_within_ms = 25_000;
    b.steady_tasks(2_000, 105_000);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(nodes: usize, seed: u64) -> Params {
        Params::new(nodes, seed, 120, Config::lan())
    }

    #[test]
    fn every_scenario_makes_a_valid_plan_that_round_trips_through_json() {
        for s in SCENARIOS {
            let plan = s.plan(&params(20, 7)).unwrap();
            let json = serde_json::to_string(&plan).unwrap();
            let back: Plan = serde_json::from_str(&json).unwrap();
            assert_eq!(back, plan, "{}", s.name);
        }
    }

    #[test]
    fn the_seed_decides_the_plan() {
        let s = find("crash").unwrap();
        assert_eq!(s.plan(&params(50, 1)).unwrap(), s.plan(&params(50, 1)).unwrap());
        assert_ne!(s.plan(&params(50, 1)).unwrap().faults, s.plan(&params(50, 2)).unwrap().faults);
    }

    #[test]
    fn too_short_or_too_small_is_refused() {
        let s = find("partition-halves").unwrap();
        let err = s.plan(&Params { duration_s: 30, ..params(20, 1) }).unwrap_err();
        assert!(err.contains("at least 90 s"), "{err}");
        assert!(s.plan(&params(2, 1)).unwrap_err().contains("at least 4 nodes"));
    }

    #[test]
    fn seed_claim_and_hot_resource_are_as_the_issue_says() {
        let seed = find("seed-claim").unwrap().plan(&params(0, 1)).unwrap();
        assert_eq!(seed.nodes, 100, "the scenario's own node count");
        let w = seed.tasks.unwrap();
        assert_eq!((w.count, w.resources, w.task_ms), (1_000_000, 100_000, 1));
        assert_eq!(w.distribution, Distribution::Uniform);
        assert!(w.nominal_end_ms() + 10_000 <= 70_000, "arrivals end well before the shortest run does");
        let joins = seed.faults.iter().filter(|f| matches!(f.fault, Fault::Join { .. })).count();
        let leaves = seed.faults.iter().filter(|f| matches!(f.fault, Fault::Leave { .. })).count();
        assert_eq!((joins, leaves, seed.faults.len()), (5, 5, 10));
        // Spread over the arrivals, further apart than one batching window.
        let times: Vec<u64> = seed.faults.iter().map(|f| f.at_ms).collect();
        assert!(times.windows(2).all(|w| w[1] - w[0] >= 4_000), "{times:?}");
        assert!(w.start_at_ms < times[0] && *times.last().unwrap() < w.nominal_end_ms());
        assert!(!seed.may_lose_custody());
        assert_eq!(seed.expect.tasks, Some(TaskExpect { all_complete: true, exactly_once: true }));

        let hot = find("hot-resource").unwrap().plan(&params(0, 1)).unwrap();
        assert_eq!(hot.nodes, 20);
        let w = hot.tasks.unwrap();
        assert_eq!((w.count, w.task_ms), (100_000, 1));
        assert_eq!(w.distribution, Distribution::Hot { fraction: 0.9 });
        // The hot resource can run 1,000 tasks of 1 ms a second: it gets 900.
        assert!((w.rate * 0.9 - 900.0).abs() < 1e-6);
        assert!(w.nominal_end_ms() + 10_000 <= 115_000);
        assert_eq!(hot.expect.tasks, Some(TaskExpect { all_complete: true, exactly_once: true }));
        // A node count on the command line wins.
        assert_eq!(find("hot-resource").unwrap().plan(&params(7, 1)).unwrap().nodes, 7);
    }

    #[test]
    fn task_scale_keeps_the_span_and_overrides_apply_after_it() {
        let s = find("seed-claim").unwrap();
        let full = s.plan(&params(20, 1)).unwrap().tasks.unwrap();
        let small = s.plan(&Params { task_scale: 0.01, ..params(20, 1) }).unwrap().tasks.unwrap();
        assert_eq!(small.count, 10_000);
        assert_eq!(small.nominal_end_ms(), full.nominal_end_ms());
        assert!(s.plan(&Params { task_scale: 0.0, ..params(20, 1) }).is_err());
        let workload = WorkloadOverrides {
            tasks: Some(2_000),
            resources: Some(50),
            task_ms: Some(5),
            distribution: Some(Distribution::Zipf { s: 1.1 }),
            exec: Some(ExecTime::Exponential),
            ..Default::default()
        };
        let w = s.plan(&Params { task_scale: 0.01, workload, ..params(20, 1) }).unwrap().tasks.unwrap();
        assert_eq!((w.count, w.resources, w.task_ms), (2_000, 50, 5));
        assert_eq!(
            (w.distribution, w.exec, w.arrivals),
            (Distribution::Zipf { s: 1.1 }, ExecTime::Exponential, Arrivals::Poisson)
        );
        // Without a rate, more tasks arrive faster over the same span.
        assert_eq!(w.nominal_end_ms(), full.nominal_end_ms());
        let backlog = WorkloadOverrides { arrivals: Some(Arrivals::Backlog), rate: None, ..Default::default() };
        let w = s.plan(&Params { workload: backlog, ..params(20, 1) }).unwrap().tasks.unwrap();
        assert_eq!((w.arrivals, w.nominal_end_ms()), (Arrivals::Backlog, w.start_at_ms + 1_000));
        // Bad values are refused with the plan.
        let bad = WorkloadOverrides { distribution: Some(Distribution::Hot { fraction: 1.5 }), ..Default::default() };
        assert!(s.plan(&Params { workload: bad, ..params(20, 1) }).unwrap_err().contains("hot fraction"));
        let long = WorkloadOverrides { task_ms: Some(500), exec: Some(ExecTime::Exponential), ..Default::default() };
        assert!(s.plan(&Params { workload: long, ..params(20, 1) }).unwrap_err().contains("beyond d_max"));
    }

    #[test]
    fn an_override_adds_a_workload_to_a_scenario_without_one() {
        let steady = find("steady").unwrap();
        assert!(steady.plan(&params(5, 1)).unwrap().tasks.is_none());
        let workload = WorkloadOverrides { tasks: Some(500), ..Default::default() };
        let plan = steady.plan(&Params { workload, ..params(5, 1) }).unwrap();
        let w = plan.tasks.unwrap();
        assert_eq!((w.count, w.resources), (500, TASK_RESOURCES));
        assert!(w.nominal_end_ms() <= plan.duration_ms - 5_000);
        assert_eq!(plan.expect.tasks, Some(TaskExpect { all_complete: true, exactly_once: true }));
        // A fault scenario has a workload of its own: the override changes
        // it and keeps its expectations (no task may be run twice only
        // where custody cannot be lost).
        let plan = find("crash").unwrap().plan(&Params { workload, ..params(20, 1) }).unwrap();
        assert_eq!(plan.tasks.unwrap().count, 500);
        assert_eq!(plan.expect.tasks, Some(TaskExpect { all_complete: true, exactly_once: false }));
    }

    #[test]
    fn every_fault_scenario_carries_tasks() {
        for s in SCENARIOS.iter().filter(|s| s.name != "steady") {
            let plan = s.plan(&params(20, 1)).unwrap();
            let w = plan.tasks.unwrap_or_else(|| panic!("{} runs no tasks", s.name));
            assert!(w.count > 0 && plan.expect.tasks.is_some(), "{}", s.name);
            assert!(w.nominal_end_ms() <= plan.duration_ms - 5_000, "{}: arrivals end before the run", s.name);
            if let (Some(first), Some(last)) = (plan.faults.first(), plan.faults.last()) {
                assert!(w.start_at_ms <= first.at_ms.max(2_000), "{}: tasks flow before the first fault", s.name);
                assert!(w.nominal_end_ms() >= last.at_ms.min(plan.duration_ms - 20_000), "{}: and after it", s.name);
            }
        }
    }

    #[test]
    fn a_plan_saved_before_workload_kinds_existed_still_loads() {
        let plan = find("graceful-leave").unwrap().plan(&params(20, 1)).unwrap();
        let mut value = serde_json::to_value(&plan).unwrap();
        let tasks = value["tasks"].as_object_mut().unwrap();
        assert!(tasks.remove("distribution").is_some() && tasks.remove("exec").is_some());
        let back: Plan = serde_json::from_value(value).unwrap();
        assert_eq!(back, plan, "uniform resources and fixed execution times by default");
    }
}
