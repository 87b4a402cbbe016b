//! The simulated network: every node's address, the link models (latency,
//! loss, duplication, reordering; a default and per-link overrides), the
//! partitions in force, and the stream connections between nodes.
//!
//! It models the transport contract of the real runtime: datagrams (SWIM)
//! are lossy, duplicated, delayed and reordered per link; stream frames are
//! ordered per directed connection and lost as a whole when the connection
//! resets (a crash of either end, a partition between them, or the engine
//! closing it). A partition drops what crosses it when it arrives.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use custody::engine::Input;
use rand::RngExt;

use super::{Ev, Sim};
use crate::plan::{Latency, LinkModel, NetModel};

/// Port every simulated node listens on; node `i` is `127.1.(i/256).(i%256)`.
const SIM_PORT: u16 = 7000;

/// The address of simulated node `i`.
pub fn node_addr(i: usize) -> SocketAddr {
    assert!(i < 65_536, "node index {i} out of range");
    SocketAddr::from((Ipv4Addr::new(127, 1, (i >> 8) as u8, (i & 0xff) as u8), SIM_PORT))
}

/// The index of the simulated node at `addr`, if it is one.
pub fn node_index(addr: SocketAddr) -> Option<usize> {
    match addr {
        SocketAddr::V4(v4) if v4.port() == SIM_PORT && v4.ip().octets()[..2] == [127, 1] => {
            let [_, _, hi, lo] = v4.ip().octets();
            Some(usize::from(hi) << 8 | usize::from(lo))
        }
        _ => None,
    }
}

/// A directed stream connection's state.
#[derive(Debug, Default, Clone, Copy)]
struct Conn {
    /// Bumped when the connection resets; frames of an older one are lost.
    generation: u64,
    /// When the last frame sent on it arrives (frames arrive in order).
    last_arrival: u64,
}

struct Partition {
    /// Per node: 0 not involved, 1 side a, 2 side b.
    side: Vec<u8>,
    oneway: bool,
}

/// The network between the nodes.
pub(super) struct Network {
    /// The model of every link without an override (the plan's, until a
    /// `SetNet` fault replaces it).
    pub(super) default: LinkModel,
    /// Per directed link `(from, to)`: its own model.
    links: BTreeMap<(usize, usize), LinkModel>,
    /// The partitions in force.
    partitions: Vec<Partition>,
    /// Per directed stream connection `(from, to)`: its state.
    conns: BTreeMap<(usize, usize), Conn>,
}

impl Network {
    /// The plan's network, with no partition and no connection yet.
    pub(super) fn new(net: &NetModel) -> Network {
        Network {
            default: net.default,
            links: net.links.iter().map(|l| ((l.from, l.to), l.model)).collect(),
            partitions: Vec::new(),
            conns: BTreeMap::new(),
        }
    }

    /// The model of the link from `from` to `to`.
    pub(super) fn link(&self, from: usize, to: usize) -> LinkModel {
        self.links.get(&(from, to)).copied().unwrap_or(self.default)
    }

    /// Whether a partition is in force.
    pub(super) fn partitioned(&self) -> bool {
        !self.partitions.is_empty()
    }

    /// Whether node `n` is on a side of a partition in force.
    pub(super) fn in_cut(&self, n: usize) -> bool {
        self.partitions.iter().any(|p| p.side[n] != 0)
    }

    /// Whether a partition in force drops what `from` sends to `to`.
    pub(super) fn blocked(&self, from: usize, to: usize) -> bool {
        self.partitions.iter().any(|p| {
            let (s, d) = (p.side[from], p.side[to]);
            (s == 1 && d == 2) || (!p.oneway && s == 2 && d == 1)
        })
    }

    /// A partition between `a` and `b` (of `nodes` nodes) comes into force;
    /// only `a → b` is cut if `oneway`.
    pub(super) fn cut(&mut self, nodes: usize, a: &[usize], b: &[usize], oneway: bool) {
        let mut side = vec![0u8; nodes];
        for &n in a {
            side[n] = 1;
        }
        for &n in b {
            side[n] = 2;
        }
        self.partitions.push(Partition { side, oneway });
    }

    /// Resets every connection a partition in force cuts.
    pub(super) fn reset_cut_conns(&mut self) {
        let cut: Vec<(usize, usize)> = self.conns.keys().copied().filter(|&(s, d)| self.blocked(s, d)).collect();
        for (s, d) in cut {
            self.reset_conn(s, d);
        }
    }

    /// Every partition heals.
    pub(super) fn heal(&mut self) {
        self.partitions.clear();
    }

    /// Resets the stream connections between two nodes, both directions.
    pub(super) fn reset_conn(&mut self, a: usize, b: usize) {
        for key in [(a, b), (b, a)] {
            if let Some(conn) = self.conns.get_mut(&key) {
                conn.generation += 1;
                conn.last_arrival = 0;
            }
        }
    }

    /// Resets every connection of node `i` (it stopped).
    pub(super) fn reset_conns_of(&mut self, i: usize) {
        let peers: Vec<usize> =
            self.conns.keys().filter(|&&(a, b)| a == i || b == i).map(|&(a, b)| a + b - i).collect();
        for peer in peers {
            self.reset_conn(i, peer);
        }
    }
}

impl Sim {
    /// The index of the simulated node at `addr`, if it is one of this run.
    pub(super) fn peer(&self, addr: SocketAddr) -> Option<usize> {
        node_index(addr).filter(|&p| p < self.nodes.len())
    }

    /// A one-way delay drawn from `model`, µs.
    pub(super) fn latency(&mut self, model: &LinkModel) -> u64 {
        match model.latency {
            Latency::Fixed { us } => us,
            Latency::Uniform { min_us, max_us } => self.rng.random_range(min_us..=max_us),
            Latency::LogNormal { median_us, sigma, spike_prob, spike_factor } => {
                // Box–Muller for one standard normal draw.
                let u1: f64 = self.rng.random::<f64>().max(f64::MIN_POSITIVE);
                let u2: f64 = self.rng.random();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let mut us = median_us as f64 * (sigma * z).exp();
                if self.rng.random_bool(spike_prob) {
                    us *= spike_factor;
                }
                us.clamp(1.0, 60e6) as u64
            }
        }
    }

    /// Node `i` sends a datagram to node `to`: it may be lost, duplicated,
    /// delayed and reordered, as its link's model draws.
    pub(super) fn send_datagram(&mut self, i: usize, to: usize, bytes: Vec<u8>) {
        let model = self.network.link(i, to);
        if model.loss > 0.0 && self.rng.random_bool(model.loss) {
            self.injected.dropped += 1;
            return;
        }
        if model.duplicate > 0.0 && self.rng.random_bool(model.duplicate) {
            self.injected.duplicated += 1;
            let at = self.now + self.latency(&model);
            self.push(at, Ev::Datagram { from: i, to, bytes: bytes.clone() });
        }
        let mut delay = self.latency(&model);
        if model.reorder > 0.0 && self.rng.random_bool(model.reorder) {
            self.injected.reordered += 1;
            delay += self.rng.random_range(0..=delay.saturating_mul(10));
        }
        self.push(self.now + delay, Ev::Datagram { from: i, to, bytes });
    }

    /// Node `i` sends a stream frame to node `to`: it arrives after the
    /// link's delay, never before an earlier frame of the same connection;
    /// a partition resets the connection instead.
    pub(super) fn send_frame(&mut self, i: usize, to: usize, bytes: Vec<u8>) {
        if self.network.blocked(i, to) {
            self.network.reset_conn(i, to);
            self.injected.stream_reset_dropped += 1;
            return;
        }
        let model = self.network.link(i, to);
        let arrival = self.now + self.latency(&model);
        let conn = self.network.conns.entry((i, to)).or_default();
        conn.last_arrival = conn.last_arrival.max(arrival);
        let (at, generation) = (conn.last_arrival, conn.generation);
        self.push(at, Ev::Frame { from: i, to, conn: generation, bytes });
    }

    /// A datagram reaches node `to`: dropped if it is down or a partition
    /// cuts it off; held while it is paused.
    pub(super) fn deliver_datagram(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        if !self.running(to) {
            return;
        }
        if self.network.blocked(from, to) {
            self.injected.partition_dropped += 1;
            return;
        }
        if self.nodes[to].paused {
            self.nodes[to].held.push(Ev::Datagram { from, to, bytes });
            return;
        }
        self.input(to, Input::Datagram { from: node_addr(from), bytes });
    }

    /// A stream frame reaches node `to`: lost if its connection reset meanwhile
    /// or a partition cuts it (which resets the connection); held while the
    /// node is paused.
    pub(super) fn deliver_frame(&mut self, from: usize, to: usize, conn: u64, bytes: Vec<u8>) {
        if !self.running(to) || self.network.conns.get(&(from, to)).is_none_or(|c| c.generation != conn) {
            self.injected.stream_reset_dropped += 1;
            return;
        }
        if self.network.blocked(from, to) {
            self.network.reset_conn(from, to);
            self.injected.stream_reset_dropped += 1;
            return;
        }
        if self.nodes[to].paused {
            self.nodes[to].held.push(Ev::Frame { from, to, conn, bytes });
            return;
        }
        if self.clients.is_some() {
            self.watch_delivered(to, &bytes);
        }
        self.input(to, Input::PeerFrame { from: node_addr(from), bytes });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ClockSpec, Plan};

    #[test]
    fn addresses_round_trip() {
        for i in [0, 1, 255, 256, 4095, 65_535] {
            assert_eq!(node_index(node_addr(i)), Some(i));
        }
        assert_eq!(node_index("127.0.0.1:7000".parse().unwrap()), None);
        assert_eq!(node_index("127.1.0.1:7001".parse().unwrap()), None);
    }

    #[test]
    fn a_link_override_applies_to_its_direction_only() {
        use crate::plan::{Expect, LinkOverride, NetModel};
        let dead = LinkModel { loss: 1.0, ..LinkModel::lan() };
        let plan = Plan {
            scenario: "test".into(),
            seed: 3,
            nodes: 3,
            duration_ms: 30_000,
            config: custody::Config::lan(),
            net: NetModel {
                default: LinkModel::lan(),
                links: vec![LinkOverride { from: 2, to: 0, model: dead }, LinkOverride { from: 2, to: 1, model: dead }],
            },
            formed: 3,
            clocks: vec![ClockSpec { offset_us: 0, drift_ppm: 0 }; 3],
            faults: Vec::new(),
            tasks: None,
            expect: Expect { converge_within_ms: 0, no_false_down_at_loss_max: 0.05, epochs_after: None, tasks: None },
            mode: crate::plan::Mode::default(),
        };
        let report = Sim::new(plan).run().report(0);
        // Node 2 can hear but not speak: the others declare it down; it keeps
        // seeing them.
        assert!(report.faults_injected.dropped > 0);
        assert!(report.membership.member_down >= 2, "{:?}", report.membership);
        // It is up and not partitioned, so those declarations count as
        // false: the counter sees what a silent link does.
        assert!(report.membership.false_suspicions >= 2, "{:?}", report.membership);
    }
}
