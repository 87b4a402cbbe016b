//! The scenario catalogue: each scenario and seed expand into a [`Plan`].
//!
//! Random choices (which nodes crash, clock offsets and drifts) are drawn
//! here, once, into the plan; the plan is printed with the report and
//! replays exactly.

use custody::Config;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::plan::{
    Arrivals, ClockSpec, Expect, Fault, Latency, LinkModel, NetModel, Plan, TaskExpect, TimedFault, Workload,
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
    build: fn(&mut Builder),
}

/// Every scenario.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "steady",
        about: "a formed cluster, no faults: nothing may change",
        min_duration_s: 10,
        build: steady,
    },
    Scenario {
        name: "join-wave",
        about: "10% formed; the rest join in waves of 1 node, 10%, then all the others at once; tasks flow \
                throughout",
        min_duration_s: 40,
        build: join_wave,
    },
    Scenario {
        name: "join-storm",
        about: "one node; every other node joins through it at the same instant",
        min_duration_s: 15,
        build: join_storm,
    },
    Scenario {
        name: "join-batch",
        about: "a formed cluster; 10 nodes join within 1 s (inside one batching window) at 20 s",
        min_duration_s: 40,
        build: join_batch,
    },
    Scenario { name: "crash", about: "10% of the nodes crash at once at 20 s", min_duration_s: 60, build: crash },
    Scenario {
        name: "crash-restart",
        about: "10% crash at 20 s; half restart before detection, half after, with higher incarnations",
        min_duration_s: 70,
        build: crash_restart,
    },
    Scenario {
        name: "crash-leader",
        about: "the founder (the epoch store's first leader) crashes at 20 s and restarts at 40 s",
        min_duration_s: 70,
        build: crash_leader,
    },
    Scenario {
        name: "graceful-leave",
        about: "10% of the nodes leave one after another from 20 s; tasks flow throughout",
        min_duration_s: 40,
        build: graceful_leave,
    },
    Scenario {
        name: "partition-halves",
        about: "a symmetric split into two halves from 20 s to 60 s, then heal",
        min_duration_s: 90,
        build: partition_halves,
    },
    Scenario {
        name: "partition-oneway",
        about: "the first quarter cannot reach the second (one way) from 20 s to 50 s, then heal",
        min_duration_s: 80,
        build: partition_oneway,
    },
    Scenario {
        name: "flapping",
        about: "one node's links go down and up around the suspicion timeout from 20 s to 80 s",
        min_duration_s: 110,
        build: flapping,
    },
    Scenario {
        name: "pause",
        about: "one node stops the world for 10 s (declared down, then rejoins), another for 1 s",
        min_duration_s: 60,
        build: pause,
    },
    Scenario {
        name: "lossy-net",
        about: "1% loss for 30 s, then 5%, then 20% (with duplicates and latency spikes), then a clean network",
        min_duration_s: 120,
        build: lossy_net,
    },
];

/// Finds a scenario by name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// What a plan is made from.
#[derive(Debug, Clone)]
pub struct Params {
    /// Nodes.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Simulated seconds.
    pub duration_s: u64,
    /// Engine configuration.
    pub config: Config,
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
        let min_nodes = if self.name == "steady" || self.name == "join-storm" { 1 } else { 4 };
        if params.nodes < min_nodes {
            return Err(format!("scenario {} needs at least {min_nodes} nodes", self.name));
        }
        let name_hash = self.name.bytes().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b));
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(params.seed ^ name_hash.rotate_left(17));
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
            },
        };
        (self.build)(&mut b);
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
            rate: TASKS as f64 * 1000.0 / (until_ms - from_ms) as f64,
            arrivals: Arrivals::Poisson,
            task_ms: 50,
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
}

fn join_batch(b: &mut Builder) {
    let joiners = 10.min(b.n - 1);
    b.plan.formed = b.n - joiners;
    for (k, node) in (b.n - joiners..b.n).enumerate() {
        b.at(20_000 + 100 * k as u64, Fault::Join { node, seeds: vec![0] });
    }
    b.plan.expect.converge_within_ms = 10_000;
    b.plan.expect.epochs_after = Some((20_000, 2));
}

fn crash(b: &mut Builder) {
    let victims = b.pick(b.tenth());
    for node in victims {
        b.at(20_000, Fault::Crash { node });
    }
    b.plan.expect.converge_within_ms = 30_000;
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
}

fn crash_leader(b: &mut Builder) {
    b.at(20_000, Fault::Crash { node: 0 });
    b.at(40_000, Fault::Restart { node: 0, seeds: vec![1, 2] });
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

fn partition_halves(b: &mut Builder) {
    let half = b.n / 2;
    b.at(20_000, Fault::Partition { a: (0..half).collect(), b: (half..b.n).collect(), oneway: false });
    b.at(60_000, Fault::Heal);
}

fn partition_oneway(b: &mut Builder) {
    let q = (b.n / 4).max(1);
    b.at(20_000, Fault::Partition { a: (0..q).collect(), b: (q..2 * q).collect(), oneway: true });
    b.at(50_000, Fault::Heal);
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
}

fn pause(b: &mut Builder) {
    let picked = b.pick(2);
    let (long, short) = (picked[0], picked[1]);
    b.at(20_000, Fault::Pause { node: long });
    b.at(30_000, Fault::Resume { node: long });
    b.at(35_000, Fault::Pause { node: short });
    b.at(36_000, Fault::Resume { node: short });
}

fn lossy_net(b: &mut Builder) {
    let latency = Latency::LogNormal { median_us: 1_000, sigma: 0.5, spike_prob: 0.01, spike_factor: 20.0 };
    let net = |loss| LinkModel { latency, loss, duplicate: 0.01, reorder: 0.01 };
    b.plan.net.default = net(0.01);
    b.at(30_000, Fault::SetNet { net: net(0.05) });
    b.at(60_000, Fault::SetNet { net: net(0.20) });
    b.at(90_000, Fault::SetNet { net: LinkModel::lan() });
    b.plan.expect.converge_within_ms = 25_000;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(nodes: usize, seed: u64) -> Params {
        Params { nodes, seed, duration_s: 120, config: Config::lan() }
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
}
