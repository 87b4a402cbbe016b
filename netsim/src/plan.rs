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
    /// What must hold.
    pub expect: Expect,
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
}

impl Plan {
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
        Ok(())
    }

    /// When the last fault happens: from then on the run must converge.
    pub fn settle_at_ms(&self) -> u64 {
        self.faults.last().map_or(0, |f| f.at_ms)
    }
}
