//! A run's plan: everything that decides it, as explicit data.
//!
//! A scenario and a seed expand into a [`Plan`] (see [`crate::scenario`]); the
//! plan alone then decides the run, byte for byte: `netsim replay PLAN.json`
//! re-runs exactly what `netsim run --json` printed.

use custody::Config;
use serde::{Deserialize, Serialize};

/// Everything a run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The scenario this plan was made from (informative).
    pub scenario: String,
    /// Seeds the network model and every node's random choices.
    pub seed: u64,
    /// Nodes in the run, started or not.
    pub nodes: usize,
    /// Simulated time the run lasts, in milliseconds.
    pub duration_ms: u64,
    /// Engine configuration of every node.
    pub config: Config,
    /// The network, until a [`Fault::SetNet`] changes it.
    pub net: NetModel,
    /// Nodes `0..formed` start at time 0 as a formed cluster (each knows the
    /// others); the rest start only when a [`Fault::Join`] starts them.
    pub formed: usize,
    /// Each node's clock.
    pub clocks: Vec<ClockSpec>,
    /// Faults, in time order.
    pub faults: Vec<TimedFault>,
    /// Tasks the simulated clients submit; `None`: no tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Workload>,
    /// What must hold.
    pub expect: Expect,
    /// Which system runs the workload: custody, or the per-task-locking
    /// baseline ([`crate::baseline`]).
    #[serde(default)]
    pub mode: Mode,
}

/// Which system runs a plan's workload. Both run over the same cluster
/// (SWIM and the epoch store run in either), the same network and faults,
/// and the same tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Ring custody: tasks go to their resource's custodian, which runs them
    /// one at a time per resource; coordination only on membership change.
    #[default]
    Custody,
    /// The per-task-locking baseline: workers take tasks from a durable
    /// queue and lock each task's resource at a lock service played by the
    /// epoch store's Raft group.
    Lock,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Custody => "custody",
            Mode::Lock => "lock",
        }
    }
}

/// Tasks submitted by simulated clients, generated as they arrive (never
/// all up front).
///
/// Task `k` is named `t{k}` and targets a resource `r{j}` drawn from
/// `0..resources` by the [`Distribution`]; its resource, its execution time
/// and its arrival gap are functions of the run's seed and `k` alone (see
/// [`crate::workload::TaskGen`]), so every mode of a run (custody, the lock
/// baseline) sees the very same work. Each goes, with `wait`, to a random
/// running node that knows a configuration. A client answered `Busy` or
/// `Unavailable` retries after `retry_ms` with the same task id (submits are
/// idempotent), and so does a client whose node stopped before answering;
/// past `max_attempts` submits it gives up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Tasks in all.
    pub count: u64,
    /// Resources they spread over.
    pub resources: u64,
    /// How tasks spread over the resources (default uniform).
    #[serde(default)]
    pub distribution: Distribution,
    /// Arrivals per simulated second (unused by a backlog).
    pub rate: f64,
    /// How arrivals are spaced.
    pub arrivals: Arrivals,
    /// How long a task runs, in milliseconds of true time: every task (fixed
    /// execution times), or on average (exponential ones). The longest (see
    /// [`ExecTime::max_ms`]) at most the configuration's `d_max`, which may
    /// be far longer than a lease (tasks of 30 s on average: `--exec exp
    /// --task-ms 30000 --set d_max_ms=300000`).
    pub task_ms: u64,
    /// Whether execution times are fixed or exponential (default fixed).
    #[serde(default)]
    pub exec: ExecTime,
    /// When the first task arrives, in simulated milliseconds.
    pub start_at_ms: u64,
    /// How long a client waits before submitting again, in milliseconds.
    pub retry_ms: u64,
    /// Submits of one task at most, the first included.
    pub max_attempts: u32,
}

/// How a workload's arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arrivals {
    /// Exactly `1/rate` apart.
    Even,
    /// A Poisson process: exponential gaps of mean `1/rate`, drawn from the
    /// run's seed.
    Poisson,
    /// A fixed backlog: every task is there at `start_at_ms`. The clients
    /// hand them out [`BACKLOG_BATCH`] per simulated millisecond, in order,
    /// so the event queue never holds the whole backlog; a task's arrival
    /// is when it is handed out.
    Backlog,
}

/// Arrivals end at least this long before the run does (simulated
/// milliseconds; see [`Workload::arrivals_end_ms`]).
pub const DRAIN_MARGIN_MS: u64 = 5_000;

/// Tasks of a backlog handed out per simulated millisecond.
pub const BACKLOG_BATCH: u64 = 1_000;

/// How a workload's tasks spread over its resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Distribution {
    /// Every resource equally likely.
    #[default]
    Uniform,
    /// Zipf: resource `j` (the `j+1`-th most popular) with probability
    /// proportional to `1/(j+1)^s`; resource 0 is the hottest.
    Zipf {
        /// The exponent (1.1 is a realistic skew).
        s: f64,
    },
    /// A share of the tasks on resource 0, the rest uniform over the others.
    Hot {
        /// The share on resource 0, in [0, 1] (0.9: the seed's scenario).
        fraction: f64,
    },
}

impl Distribution {
    /// The usual Zipf exponent.
    pub const ZIPF_S: f64 = 1.1;
    /// Most resources a Zipf distribution may spread over (its table holds
    /// one number per resource).
    pub const ZIPF_RESOURCES_MAX: u64 = 10_000_000;

    /// The resource that takes the hot share, if there is one: resource 0
    /// of a hot workload.
    pub fn hot_resource(&self) -> Option<u64> {
        matches!(self, Distribution::Hot { .. }).then_some(0)
    }
}

/// How long each task runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecTime {
    /// Every task runs exactly `task_ms`.
    #[default]
    Fixed,
    /// Exponential with mean `task_ms`, cut at [`ExecTime::EXP_CAP`] times
    /// the mean (a task must end by `d_max`).
    Exponential,
}

impl ExecTime {
    /// An exponential execution time is cut at this many times its mean
    /// (the chance of reaching it is e⁻¹⁰ ≈ 4.5·10⁻⁵).
    pub const EXP_CAP: u64 = 10;

    /// The longest a task of mean `task_ms` may run, in milliseconds.
    pub fn max_ms(self, task_ms: u64) -> u64 {
        match self {
            ExecTime::Fixed => task_ms,
            ExecTime::Exponential => task_ms.saturating_mul(ExecTime::EXP_CAP),
        }
    }
}

impl Workload {
    /// When the last arrival is due (even spacing; the Poisson process ends
    /// around then), in simulated milliseconds.
    pub fn nominal_end_ms(&self) -> u64 {
        match self.arrivals {
            Arrivals::Backlog => self.start_at_ms + self.count / BACKLOG_BATCH,
            Arrivals::Even | Arrivals::Poisson => self.start_at_ms + (self.count as f64 * 1000.0 / self.rate) as u64,
        }
    }

    /// When arrivals end at the latest, in simulated milliseconds, in a run
    /// of `duration_ms`: the task window (up to [`Workload::nominal_end_ms`],
    /// which a Poisson process may overrun by chance), and never within
    /// [`DRAIN_MARGIN_MS`] of the end, so every task has time to run before
    /// the checker asks whether it did. A later arrival is moved to this
    /// time; none is dropped.
    pub fn arrivals_end_ms(&self, duration_ms: u64) -> u64 {
        self.nominal_end_ms().min(duration_ms.saturating_sub(DRAIN_MARGIN_MS)).max(self.start_at_ms)
    }

    /// Checks counts, rate and timings against the run.
    pub fn validate(&self, config: &Config, duration_ms: u64) -> Result<(), String> {
        if self.resources == 0 {
            return Err("a workload needs at least one resource".into());
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 1e6) {
            return Err(format!("task rate {} per second is outside (0, 10⁶]", self.rate));
        }
        let d_max_ms = u64::try_from(config.d_max.as_millis()).unwrap_or(u64::MAX);
        let longest = self.exec.max_ms(self.task_ms);
        if longest > d_max_ms {
            let what = match self.exec {
                ExecTime::Fixed => format!("tasks of {} ms outlast d_max ({d_max_ms} ms)", self.task_ms),
                ExecTime::Exponential => format!(
                    "exponential tasks of mean {} ms run up to {longest} ms ({}× the mean), beyond d_max ({d_max_ms} ms)",
                    self.task_ms,
                    ExecTime::EXP_CAP
                ),
            };
            return Err(format!("{what}; raise it with --set d_max_ms={longest}"));
        }
        match self.distribution {
            Distribution::Uniform => {}
            Distribution::Zipf { s } => {
                if !(s.is_finite() && s > 0.0 && s <= 100.0) {
                    return Err(format!("Zipf exponent {s} is outside (0, 100]"));
                }
                if self.resources > Distribution::ZIPF_RESOURCES_MAX {
                    return Err(format!(
                        "a Zipf workload spreads over at most {} resources (got {})",
                        Distribution::ZIPF_RESOURCES_MAX,
                        self.resources
                    ));
                }
            }
            Distribution::Hot { fraction } => {
                if !(0.0..=1.0).contains(&fraction) {
                    return Err(format!("hot fraction {fraction} is outside [0, 1]"));
                }
                if fraction < 1.0 && self.resources < 2 {
                    return Err("a hot workload with cold tasks needs at least two resources".into());
                }
            }
        }
        if self.start_at_ms > duration_ms {
            return Err(format!("the workload starts at {} ms, after the end ({duration_ms} ms)", self.start_at_ms));
        }
        if self.retry_ms == 0 || self.max_attempts == 0 {
            return Err("a workload needs retry_ms ≥ 1 and max_attempts ≥ 1".into());
        }
        Ok(())
    }
}

/// A node's clock: `local = offset + t·(1 + drift_ppm/10⁶)` for true time `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSpec {
    /// Local time at true time 0, in microseconds.
    pub offset_us: u64,
    /// Rate error in parts per million (positive: the clock runs fast).
    pub drift_ppm: i32,
}

/// A fault at a point in simulated time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimedFault {
    /// When, in simulated milliseconds since the start.
    pub at_ms: u64,
    /// What.
    #[serde(flatten)]
    pub fault: Fault,
}

/// Something done to the cluster or the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// The node stops at once, losing all state; its connections reset.
    Crash {
        /// The node.
        node: usize,
    },
    /// A crashed (or left) node starts again with a higher incarnation and
    /// joins through `seeds`.
    Restart {
        /// The node.
        node: usize,
        /// Nodes to announce to.
        seeds: Vec<usize>,
    },
    /// A node that has not run yet starts and joins through `seeds`.
    Join {
        /// The node.
        node: usize,
        /// Nodes to announce to.
        seeds: Vec<usize>,
    },
    /// The node leaves the cluster gracefully and stops.
    Leave {
        /// The node.
        node: usize,
    },
    /// The node stops taking steps (a stop-the-world pause); what arrives
    /// for it waits. Its clock keeps running.
    Pause {
        /// The node.
        node: usize,
    },
    /// A paused node takes steps again, starting with what waited.
    Resume {
        /// The node.
        node: usize,
    },
    /// Packets from side `a` to side `b` are dropped (and from `b` to `a`,
    /// unless `oneway`); stream connections across it reset.
    Partition {
        /// One side.
        a: Vec<usize>,
        /// The other side.
        b: Vec<usize>,
        /// Only `a → b` is cut.
        oneway: bool,
    },
    /// Every partition ends.
    Heal,
    /// The network's default link model changes.
    SetNet {
        /// The new model.
        net: LinkModel,
    },
}

impl Fault {
    /// The single node this fault acts on, if any.
    pub fn node(&self) -> Option<usize> {
        match *self {
            Fault::Crash { node }
            | Fault::Restart { node, .. }
            | Fault::Join { node, .. }
            | Fault::Leave { node }
            | Fault::Pause { node }
            | Fault::Resume { node } => Some(node),
            Fault::Partition { .. } | Fault::Heal | Fault::SetNet { .. } => None,
        }
    }
}

/// The network: a default link model and overrides for directed links.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetModel {
    /// Every directed link without an override.
    pub default: LinkModel,
    /// Directed links that behave differently.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkOverride>,
}

/// One directed link's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinkOverride {
    /// Sender.
    pub from: usize,
    /// Receiver.
    pub to: usize,
    /// How the link behaves.
    pub model: LinkModel,
}

/// How packets on a link behave.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinkModel {
    /// One-way delay.
    pub latency: Latency,
    /// Probability a datagram is lost, in [0, 1].
    pub loss: f64,
    /// Probability a datagram arrives twice, in [0, 1].
    pub duplicate: f64,
    /// Probability a datagram is held back by an extra delay of up to ten
    /// times the latency, so later ones overtake it, in [0, 1].
    pub reorder: f64,
}

impl LinkModel {
    /// A LAN: 0.2–2 ms uniform, no loss.
    pub fn lan() -> LinkModel {
        LinkModel { latency: Latency::Uniform { min_us: 200, max_us: 2_000 }, loss: 0.0, duplicate: 0.0, reorder: 0.0 }
    }

    /// Checks probabilities and latencies.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [("loss", self.loss), ("duplicate", self.duplicate), ("reorder", self.reorder)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} probability {p} is outside [0, 1]"));
            }
        }
        match self.latency {
            Latency::Uniform { min_us, max_us } if min_us > max_us => {
                Err(format!("uniform latency min {min_us} µs exceeds max {max_us} µs"))
            }
            Latency::LogNormal { sigma, spike_prob, spike_factor, .. }
                if !(0.0..=4.0).contains(&sigma) || !(0.0..=1.0).contains(&spike_prob) || spike_factor < 1.0 =>
            {
                Err("lognormal latency needs sigma in [0, 4], spike_prob in [0, 1], spike_factor ≥ 1".into())
            }
            _ => Ok(()),
        }
    }
}

/// A one-way delay distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Latency {
    /// Always the same.
    Fixed {
        /// Microseconds.
        us: u64,
    },
    /// Uniform between two bounds.
    Uniform {
        /// Least, microseconds.
        min_us: u64,
        /// Most, microseconds.
        max_us: u64,
    },
    /// Log-normal around a median, with rare spikes.
    LogNormal {
        /// Median, microseconds.
        median_us: u64,
        /// Standard deviation of the underlying normal.
        sigma: f64,
        /// Probability of a spike.
        spike_prob: f64,
        /// A spike multiplies the delay by this.
        spike_factor: f64,
    },
}

/// What a run must show to pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expect {
    /// Every running node's view must equal the true membership within this
    /// long after the last fault (milliseconds), and still at the end.
    pub converge_within_ms: u64,
    /// Down declarations about a member that was up and reachable are
    /// errors while the loss on the network is at most this (and reported
    /// above it).
    pub no_false_down_at_loss_max: f64,
    /// `(from_ms, max)`: at most `max` epochs may commit from `from_ms` on
    /// (the batching check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs_after: Option<(u64, u64)>,
    /// With a workload: what its tasks must show beyond the checks every
    /// run with tasks gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<TaskExpect>,
}

/// What a workload's tasks must show. Every run with tasks also checks that
/// every task ran at least once, that executions of one resource never
/// overlap in true time, that tokens and sequence numbers of one resource
/// increase in start order, and that every acknowledged task ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskExpect {
    /// Every submitted task completes: its client is answered `Completed`.
    pub all_complete: bool,
    /// No task runs twice. Duplicates are allowed only across a crash, so
    /// this holds in runs without one (otherwise they are reported only).
    pub exactly_once: bool,
}

impl Plan {
    /// Reads a plan from its JSON form, as saved by any version of netsim:
    /// every plan field added since has a default, and an engine
    /// configuration saved before some of its fields existed gets those
    /// fields from [`Config::lan`] (the profile every saved plan used unless
    /// it says otherwise in the fields it has).
    pub fn from_json(mut value: serde_json::Value) -> Result<Plan, serde_json::Error> {
        if let Some(config) = value.get_mut("config").and_then(serde_json::Value::as_object_mut)
            && let Ok(serde_json::Value::Object(defaults)) = serde_json::to_value(Config::lan())
        {
            for (field, default) in defaults {
                config.entry(field).or_insert(default);
            }
        }
        serde_json::from_value(value)
    }

    /// Checks that the plan is runnable: node indices, times, probabilities.
    pub fn validate(&self) -> Result<(), String> {
        self.config.validate().map_err(|e| e.to_string())?;
        if self.nodes == 0 || self.nodes > 65_536 {
            return Err(format!("{} nodes: between 1 and 65536 are supported", self.nodes));
        }
        if self.formed == 0 || self.formed > self.nodes {
            return Err(format!("formed = {} must be between 1 and nodes = {}", self.formed, self.nodes));
        }
        if self.clocks.len() != self.nodes {
            return Err(format!("{} clocks for {} nodes", self.clocks.len(), self.nodes));
        }
        self.net.default.validate()?;
        for link in &self.net.links {
            link.model.validate()?;
            if link.from >= self.nodes || link.to >= self.nodes {
                return Err(format!("link override {} → {} names a node out of range", link.from, link.to));
            }
        }
        let mut last = 0;
        for f in &self.faults {
            if f.at_ms < last {
                return Err(format!("faults are not in time order at {} ms", f.at_ms));
            }
            last = f.at_ms;
            let mut nodes: Vec<usize> = f.fault.node().into_iter().collect();
            match &f.fault {
                Fault::Restart { seeds, .. } | Fault::Join { seeds, .. } => nodes.extend(seeds),
                Fault::Partition { a, b, .. } => nodes.extend(a.iter().chain(b)),
                Fault::SetNet { net } => net.validate()?,
                _ => {}
            }
            if let Some(bad) = nodes.iter().find(|&&n| n >= self.nodes) {
                return Err(format!("fault at {} ms names node {bad}, but there are {} nodes", f.at_ms, self.nodes));
            }
        }
        if last > self.duration_ms {
            return Err(format!("a fault at {last} ms lies after the end ({} ms)", self.duration_ms));
        }
        if let Some(w) = &self.tasks {
            w.validate(&self.config, self.duration_ms)?;
        }
        Ok(())
    }

    /// When the last fault happens: from then on the run must converge.
    pub fn settle_at_ms(&self) -> u64 {
        self.faults.last().map_or(0, |f| f.at_ms)
    }

    /// Whether custody may be lost in this run: a node crashes, or a fault
    /// may get a live node removed as if it had crashed (a pause, a
    /// partition). Only then may a task run twice.
    pub fn may_lose_custody(&self) -> bool {
        self.faults.iter().any(|f| {
            matches!(
                f.fault,
                Fault::Crash { .. } | Fault::Restart { .. } | Fault::Pause { .. } | Fault::Partition { .. }
            )
        })
    }
}
