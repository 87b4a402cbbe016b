//! `random`: swarm testing. The seed draws the cluster's size, its clocks,
//! a workload and a schedule of fault episodes of every kind the simulator
//! has, often overlapping, all over before the end.

use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;

use super::Builder;
use crate::plan::{Arrivals, Distribution, ExecTime, Fault, Latency, LinkModel, TaskExpect, Workload};

/// Nodes of a `random` plan whose command line names none, drawn from the
/// seed.
pub const RANDOM_NODES: std::ops::RangeInclusive<usize> = 8..=50;
/// Fault episodes of a `random` plan. An episode is one fault or a few that
/// belong together: a pause and its resume, a cut and its heal, a join during
/// a one-way cut, a leave while a voter is cut off.
pub const RANDOM_FAULTS: std::ops::RangeInclusive<usize> = 3..=12;
/// The largest clock drift a `random` plan draws, in ppm: ρ = 10⁻³, the
/// drift bound the design assumes (docs/design.md, section 14.2; the engine's
/// configuration has no drift setting of its own). A run draws its own bound
/// (none, 100 ppm or this) and each node a drift within it.
pub const DRIFT_PPM_MAX: i32 = 1_000;
/// Every fault of a `random` plan is over this long before the run ends:
/// partitions healed, pauses resumed, the network clean, crashed nodes
/// restarted or gone for good. The cluster converges and drains its tasks
/// meanwhile (within [`RANDOM_SETTLE_MS`] − 10 s).
pub const RANDOM_SETTLE_MS: u64 = 45_000;
/// A `random` plan's tasks arrive from 2 s until this long before the end.
pub const RANDOM_DRAIN_MS: u64 = 20_000;
/// A crash counts against the voters' quorum this long, restarted or not:
/// time to detect it, remove the old life and replace it as a voter. At
/// most `(voters − 1) / 2` crashes fall within one such window.
pub const CRASH_SHADOW_MS: u64 = 30_000;
/// The hottest resource of a `random` workload is busy at most this share
/// of the time, so its queue drains after an outage.
pub const HOT_LOAD_MAX: f64 = 0.5;

/// The kinds of fault episode a `random` plan draws from, with weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Episode {
    /// A new node joins.
    Join,
    /// A new node joins while a one-way cut separates it from a member,
    /// which is then sometimes paused or isolated (transfers resent under
    /// an old identity).
    JoinDuringCut,
    /// A member leaves gracefully (sometimes to restart later).
    Leave,
    /// A likely voter is cut off, and meanwhile another member leaves.
    LeaveWhileVoterCut,
    /// A member is isolated long enough to be removed, and asked to leave
    /// right after the heal.
    RemovedThenLeave,
    /// A member leaves and is paused while it hands off.
    LeaveThenPause,
    /// A member crashes for good.
    Crash,
    /// A member crashes and restarts, before or after its crash is detected.
    CrashRestart,
    /// A stop-the-world pause: short, about the lease, or longer.
    Pause,
    /// A symmetric split of the nodes.
    Split,
    /// One set of nodes cannot reach another.
    OneWay,
    /// One node (often the founder, the likely leader, or a likely voter) cut
    /// off both ways, or only its sending or its receiving side.
    Isolate,
    /// One node's links go down and up around the suspicion timeout.
    Flap,
    /// A spell of loss, duplicates, reordering and slower links.
    Loss,
}

const EPISODES: &[(Episode, u32)] = &[
    (Episode::Join, 6),
    (Episode::JoinDuringCut, 4),
    (Episode::Leave, 5),
    (Episode::LeaveWhileVoterCut, 3),
    (Episode::RemovedThenLeave, 2),
    (Episode::LeaveThenPause, 2),
    (Episode::Crash, 3),
    (Episode::CrashRestart, 4),
    (Episode::Pause, 7),
    (Episode::Split, 4),
    (Episode::OneWay, 4),
    (Episode::Isolate, 6),
    (Episode::Flap, 2),
    (Episode::Loss, 4),
];

/// The nodes most likely to be the epoch store's first voters: the founder
/// (node 0, which bootstraps the store and leads it first) and the formed
/// nodes the leader adds first, the lowest Raft ids. A guess only: who
/// votes later depends on the run.
fn likely_voters(formed: usize, voters: usize) -> Vec<usize> {
    let mut others: Vec<(u64, usize)> = (1..formed)
        .map(|i| {
            let id = custody::NodeId::new(crate::sim::node_addr(i), 1, &format!("n{i}"));
            (custody::engine::store::raft_id(&id), i)
        })
        .collect();
    others.sort_unstable();
    std::iter::once(0).chain(others.into_iter().take(voters.saturating_sub(1)).map(|(_, i)| i)).collect()
}

/// What a `random` plan knows of its nodes while it draws the faults.
struct Swarm<'a> {
    b: &'a mut Builder,
    /// The first fault's earliest time.
    start: u64,
    /// Every fault is over by then.
    end: u64,
    /// When each node is running (formed: 0), if ever.
    joined: Vec<Option<u64>>,
    /// Per node, the spans a fault on that node holds it (crash to
    /// restart, pause to resume, leave or crash for good to the end): no
    /// other fault on that node overlaps.
    held: Vec<Vec<(u64, u64)>>,
    /// Crash times (each shadows [`CRASH_SHADOW_MS`]).
    crashes: Vec<u64>,
    /// Crashes that may overlap in one shadow.
    crashes_tolerated: usize,
    /// Nodes that left or crashed for good, and how many may.
    lost: usize,
    lost_max: usize,
    /// Times at which other episodes begin or end: a new episode often
    /// starts near one, so that faults combine.
    anchors: Vec<u64>,
    voters: Vec<usize>,
}

impl Swarm<'_> {
    fn rng(&mut self) -> &mut Xoshiro256PlusPlus {
        &mut self.b.rng
    }

    /// A start time for an episode that lasts at least `room` ms: often near
    /// another episode's start or end.
    fn time(&mut self, room: u64) -> Option<u64> {
        let latest = self.end.checked_sub(room)?;
        if latest < self.start {
            return None;
        }
        let (start, anchors) = (self.start, self.anchors.len());
        let anchor = if anchors > 0 && self.rng().random_bool(0.5) {
            let i = self.rng().random_range(0..anchors);
            Some(self.anchors[i] + self.rng().random_range(0..3_000))
        } else {
            None
        };
        let t = match anchor {
            Some(t) if (start..=latest).contains(&t) => t,
            _ => self.rng().random_range(start..=latest),
        };
        Some(t)
    }

    /// Whether `node` is running and free of node faults over `[from, to]`.
    fn free(&self, node: usize, from: u64, to: u64) -> bool {
        self.joined[node].is_some_and(|j| j + 1_000 <= from) && self.held[node].iter().all(|&(a, z)| z < from || a > to)
    }

    fn hold(&mut self, node: usize, from: u64, to: u64) {
        self.held[node].push((from, to));
        self.anchors.push(from);
        if to != u64::MAX {
            self.anchors.push(to);
        }
    }

    /// A node free over `[from, to]`: the founder with probability
    /// `founder`, else a likely voter with probability `voter`, else any.
    fn pick(&mut self, from: u64, to: u64, founder: f64, voter: f64) -> Option<usize> {
        let free: Vec<usize> = (0..self.b.n).filter(|&n| self.free(n, from, to)).collect();
        if free.is_empty() {
            return None;
        }
        if free.contains(&0) && self.rng().random_bool(founder) {
            return Some(0);
        }
        let voters: Vec<usize> = self.voters.iter().copied().filter(|v| free.contains(v)).collect();
        if !voters.is_empty() && self.rng().random_bool(voter) {
            let i = self.rng().random_range(0..voters.len());
            return Some(voters[i]);
        }
        let i = self.rng().random_range(0..free.len());
        Some(free[i])
    }

    /// A node free from `at` on for good, to leave or crash for good.
    fn pick_loss(&mut self, at: u64, founder: f64) -> Option<usize> {
        if self.lost >= self.lost_max {
            return None;
        }
        self.pick(at, u64::MAX, founder, 0.2)
    }

    fn crash_allowed(&self, at: u64) -> bool {
        self.crashes.iter().filter(|&&c| c.abs_diff(at) < CRASH_SHADOW_MS).count() < self.crashes_tolerated
    }

    /// Up to two running nodes to join or restart through (the founder
    /// first when it is up).
    fn seeds(&mut self, at: u64, not: usize) -> Vec<usize> {
        let mut up: Vec<usize> = (0..self.b.n).filter(|&n| n != not && self.free(n, at, at)).collect();
        let mut seeds = Vec::new();
        if let Some(i) = up.iter().position(|&n| n == 0) {
            seeds.push(up.remove(i));
        }
        while seeds.len() < 2 && !up.is_empty() {
            let i = self.rng().random_range(0..up.len());
            seeds.push(up.remove(i));
        }
        if seeds.is_empty() {
            seeds.push(0);
        }
        seeds
    }

    fn span(&mut self, range: std::ops::RangeInclusive<u64>) -> u64 {
        self.rng().random_range(range)
    }

    /// A cut from `at` for `len` ms (ended early by the run's end), then a
    /// heal (which ends every cut).
    fn cut(&mut self, at: u64, len: u64, a: Vec<usize>, b: Vec<usize>, oneway: bool) -> u64 {
        let heal = (at + len).min(self.end);
        self.b.at(at, Fault::Partition { a, b, oneway });
        self.b.at(heal, Fault::Heal);
        self.anchors.extend([at, heal]);
        heal
    }

    /// `node` cut off from every other node: both ways, or only what it
    /// sends, or only what it receives.
    fn isolate(&mut self, at: u64, len: u64, node: usize) -> u64 {
        let others: Vec<usize> = (0..self.b.n).filter(|&o| o != node).collect();
        match self.rng().random_range(0..4) {
            0 => self.cut(at, len, vec![node], others, true),
            1 => self.cut(at, len, others, vec![node], true),
            _ => self.cut(at, len, vec![node], others, false),
        }
    }

    fn pause(&mut self, at: u64, len: u64, node: usize) {
        let resume = (at + len).min(self.end).max(at + 1);
        self.b.at(at, Fault::Pause { node });
        self.b.at(resume, Fault::Resume { node });
        self.hold(node, at, resume);
    }

    /// A pause length: short, about the lease, or well beyond it (the node
    /// is declared down and removed, and comes back as a new life).
    fn pause_len(&mut self) -> u64 {
        let lease = u64::try_from(self.b.plan.config.lease.as_millis()).unwrap_or(5_000);
        match self.rng().random_range(0..3) {
            0 => self.span(100..=2_000),
            1 => self.span(lease * 2 / 5..=lease),
            _ => self.span(lease + 1_000..=lease * 4),
        }
    }

    /// `count` distinct nodes of `pool`, in order.
    fn subset(&mut self, pool: &[usize], count: usize) -> Vec<usize> {
        let mut pool = pool.to_vec();
        let count = count.min(pool.len());
        for i in 0..count {
            let j = self.rng().random_range(i..pool.len());
            pool.swap(i, j);
        }
        pool.truncate(count);
        pool.sort_unstable();
        pool
    }

    fn join(&mut self, at: u64, node: usize) {
        let seeds = self.seeds(at, node);
        self.b.at(at, Fault::Join { node, seeds });
        self.anchors.push(at);
    }

    /// Places one episode; `false` if it does not fit the schedule as it
    /// stands (no free node, no room before the end, the crash or loss
    /// budget spent).
    fn place(&mut self, episode: Episode) -> bool {
        let n = self.b.n;
        let lease = u64::try_from(self.b.plan.config.lease.as_millis()).unwrap_or(5_000);
        match episode {
            Episode::Join | Episode::JoinDuringCut => unreachable!("joins are placed first"),
            Episode::Leave => {
                let Some(at) = self.time(1_000) else { return false };
                let Some(node) = self.pick_loss(at, 0.1) else { return false };
                self.b.at(at, Fault::Leave { node });
                // Sometimes the node comes back later as a new life.
                let back = at + self.span(12_000..=25_000);
                if back <= self.end && self.rng().random_bool(0.25) {
                    let seeds = self.seeds(back, node);
                    self.b.at(back, Fault::Restart { node, seeds });
                    self.hold(node, at, back);
                } else {
                    self.hold(node, at, u64::MAX);
                    self.lost += 1;
                }
                true
            }
            Episode::LeaveWhileVoterCut => {
                let len = self.span(8_000..=25_000);
                let Some(at) = self.time(4_000) else { return false };
                let Some(voter) = self.pick(at, at + len, 0.3, 1.0) else { return false };
                let leave_at = at + self.span(1_000..=7_000);
                if leave_at > self.end {
                    return false;
                }
                self.hold(voter, at, at + len);
                let Some(leaver) = self.pick_loss(leave_at, 0.0) else { return false };
                self.isolate(at, len, voter);
                self.b.at(leave_at, Fault::Leave { node: leaver });
                self.hold(leaver, leave_at, u64::MAX);
                self.lost += 1;
                true
            }
            Episode::RemovedThenLeave => {
                let len = self.span(lease * 2..=25_000);
                let Some(at) = self.time(len + 2_000) else { return false };
                let Some(node) = self.pick_loss(at, 0.1) else { return false };
                let others: Vec<usize> = (0..n).filter(|&o| o != node).collect();
                let heal = self.cut(at, len, vec![node], others, false);
                let leave_at = heal + self.span(0..=2_000);
                self.b.at(leave_at, Fault::Leave { node });
                self.hold(node, at, u64::MAX);
                self.lost += 1;
                true
            }
            Episode::LeaveThenPause => {
                let Some(at) = self.time(3_000) else { return false };
                let Some(node) = self.pick_loss(at, 0.1) else { return false };
                self.b.at(at, Fault::Leave { node });
                let pause_at = at + self.span(0..=1_500);
                let len = self.pause_len();
                self.pause(pause_at, len, node);
                self.held[node].push((at, u64::MAX));
                self.lost += 1;
                true
            }
            Episode::Crash => {
                let Some(at) = self.time(1_000) else { return false };
                if !self.crash_allowed(at) {
                    return false;
                }
                let Some(node) = self.pick_loss(at, 0.15) else { return false };
                self.b.at(at, Fault::Crash { node });
                self.hold(node, at, u64::MAX);
                self.crashes.push(at);
                self.lost += 1;
                true
            }
            Episode::CrashRestart => {
                // Before the crash is detected, or well after.
                let down = if self.rng().random_bool(0.5) { self.span(300..=3_000) } else { self.span(6_000..=20_000) };
                let Some(at) = self.time(down) else { return false };
                if !self.crash_allowed(at) {
                    return false;
                }
                let Some(node) = self.pick(at, at + down, 0.2, 0.3) else { return false };
                self.b.at(at, Fault::Crash { node });
                let seeds = self.seeds(at + down, node);
                self.b.at(at + down, Fault::Restart { node, seeds });
                self.hold(node, at, at + down);
                self.crashes.push(at);
                true
            }
            Episode::Pause => {
                let len = self.pause_len();
                let Some(at) = self.time(len.min(5_000)) else { return false };
                let Some(node) = self.pick(at, at + len, 0.2, 0.3) else { return false };
                self.pause(at, len, node);
                true
            }
            Episode::Split => {
                let len = self.span(3_000..=25_000);
                let Some(at) = self.time(3_000) else { return false };
                let all: Vec<usize> = (0..n).collect();
                let size = self.rng().random_range(1..=n / 2);
                let a = self.subset(&all, size);
                let b = all.into_iter().filter(|x| !a.contains(x)).collect();
                self.cut(at, len, a, b, false);
                true
            }
            Episode::OneWay => {
                let len = self.span(3_000..=25_000);
                let Some(at) = self.time(3_000) else { return false };
                let all: Vec<usize> = (0..n).collect();
                let size = self.rng().random_range(1..=(n / 3).max(1));
                let a = self.subset(&all, size);
                let rest: Vec<usize> = all.into_iter().filter(|x| !a.contains(x)).collect();
                let size = self.rng().random_range(1..=rest.len());
                let b = self.subset(&rest, size);
                self.cut(at, len, a, b, true);
                true
            }
            Episode::Isolate => {
                let len = self.span(2_000..=25_000);
                let Some(at) = self.time(2_000) else { return false };
                let Some(node) = self.pick(at, at, 0.3, 0.5) else { return false };
                self.isolate(at, len, node);
                true
            }
            Episode::Flap => {
                let suspect = u64::try_from(self.b.plan.config.suspect_to_down_after.as_millis()).unwrap_or(4_000);
                let len = self.span(10_000..=25_000);
                let Some(at) = self.time(len) else { return false };
                let Some(node) = self.pick(at, at, 0.2, 0.3) else { return false };
                let others: Vec<usize> = (0..n).filter(|&o| o != node).collect();
                let mut t = at;
                while t < at + len {
                    let down = suspect * self.rng().random_range(50..=200) / 100;
                    let up = suspect * self.rng().random_range(50..=200) / 100;
                    t = self.cut(t, down, vec![node], others.clone(), false) + up;
                }
                true
            }
            Episode::Loss => {
                let len = self.span(5_000..=30_000);
                let Some(at) = self.time(5_000) else { return false };
                let loss = [0.01, 0.02, 0.05, 0.1, 0.2][self.rng().random_range(0..5)];
                let latency = if self.rng().random_bool(0.5) {
                    Latency::Uniform { min_us: 200, max_us: self.span(2_000..=20_000) }
                } else {
                    Latency::LogNormal {
                        median_us: self.span(500..=5_000),
                        sigma: 0.5,
                        spike_prob: 0.01,
                        spike_factor: 20.0,
                    }
                };
                let net = LinkModel {
                    latency,
                    loss,
                    duplicate: [0.0, 0.01, 0.02][self.rng().random_range(0..3)],
                    reorder: [0.0, 0.01, 0.05][self.rng().random_range(0..3)],
                };
                let clean = (at + len).min(self.end);
                self.b.at(at, Fault::SetNet { net });
                self.b.at(clean, Fault::SetNet { net: LinkModel::lan() });
                self.anchors.extend([at, clean]);
                true
            }
        }
    }
}

/// Swarm testing, as FoundationDB does it: the seed draws the cluster's
/// size (unless the command line gives one), its clocks, a workload and a
/// schedule of 3–12 fault episodes of every kind the simulator has, often
/// overlapping (a join during a one-way cut, a leave while a voter is cut
/// off, a pause of a node handing off). Every fault is over
/// [`RANDOM_SETTLE_MS`] before the end; at most `(voters − 1) / 2` crashes
/// fall within [`CRASH_SHADOW_MS`] of each other, and at most a third of the
/// nodes leave or crash for good, so the run should stay live but for the
/// documented limitation (a crashed custodian's tasks are lost until crash
/// recovery exists). Tasks arrive throughout.
pub(super) fn random(b: &mut Builder) {
    let n = b.n;
    let duration = b.plan.duration_ms;
    // Clocks: a drift bound for the run, each node's drift within it.
    let bound = [0, 100, DRIFT_PPM_MAX][b.rng.random_range(0..3)];
    for clock in &mut b.plan.clocks {
        clock.drift_ppm = b.rng.random_range(-bound..=bound);
    }
    // The episodes, joins first: they decide which nodes start formed.
    let count = b.rng.random_range(RANDOM_FAULTS);
    let total: u32 = EPISODES.iter().map(|&(_, w)| w).sum();
    let mut episodes: Vec<Episode> = (0..count)
        .map(|_| {
            let mut x = b.rng.random_range(0..total);
            EPISODES
                .iter()
                .find(|&&(_, w)| {
                    let hit = x < w;
                    x = x.saturating_sub(w);
                    hit
                })
                .map_or(Episode::Pause, |&(e, _)| e)
        })
        .collect();
    // At least five nodes start formed.
    let joins_max = n.saturating_sub(5);
    let mut joins = 0;
    for e in &mut episodes {
        if matches!(e, Episode::Join | Episode::JoinDuringCut) {
            if joins < joins_max {
                joins += 1;
            } else {
                *e = Episode::Pause;
            }
        }
    }
    let formed = n - joins;
    b.plan.formed = formed;
    let voters = usize::from(b.plan.config.voters);
    let start = 5_000;
    let end = duration.saturating_sub(RANDOM_SETTLE_MS).max(start + 10_000);
    let mut joined = vec![None; n];
    for j in joined.iter_mut().take(formed) {
        *j = Some(0);
    }
    let mut swarm = Swarm {
        b,
        start,
        end,
        joined,
        held: vec![Vec::new(); n],
        crashes: Vec::new(),
        crashes_tolerated: (voters.saturating_sub(1)) / 2,
        lost: 0,
        lost_max: (n / 3).min(n.saturating_sub(5)),
        anchors: Vec::new(),
        voters: likely_voters(formed, voters),
    };
    let mut join_times: Vec<u64> =
        (0..joins).map(|_| swarm.b.rng.random_range(start..=end.saturating_sub(10_000).max(start))).collect();
    join_times.sort_unstable();
    let joiners = episodes.iter().filter(|e| matches!(e, Episode::Join | Episode::JoinDuringCut));
    for ((node, at), e) in (formed..).zip(join_times).zip(joiners) {
        swarm.joined[node] = Some(at);
        if *e == Episode::Join {
            swarm.join(at, node);
            continue;
        }
        // Cut one way between the joiner and a member a little before the
        // join, healed 8–40 s after it; mostly that member is then paused
        // or cut off from everyone (until the same heal) while its
        // transfers to the joiner are outstanding, often long enough to be
        // removed.
        let cut_at = at.saturating_sub(swarm.span(1_000..=5_000)).max(1_000);
        let member = swarm.pick(at, at, 0.2, 0.4).unwrap_or(0);
        let (a, b) = if swarm.rng().random_bool(0.7) { (vec![node], vec![member]) } else { (vec![member], vec![node]) };
        let len = at - cut_at + swarm.span(8_000..=40_000);
        swarm.join(at, node);
        let heal = swarm.cut(cut_at, len, a, b, true);
        let later = at + swarm.span(1_000..=8_000);
        if later + 1_000 < heal {
            let lease = u64::try_from(swarm.b.plan.config.lease.as_millis()).unwrap_or(5_000);
            match swarm.rng().random_range(0..5) {
                0 | 1 => {
                    let len = if swarm.rng().random_bool(0.7) {
                        swarm.span(lease * 2..=lease * 5)
                    } else {
                        swarm.pause_len()
                    };
                    if swarm.free(member, later, later + len) {
                        swarm.pause(later, len, member);
                    }
                }
                2 | 3 => {
                    let others: Vec<usize> = (0..n).filter(|&o| o != member).collect();
                    swarm.b.at(later, Fault::Partition { a: vec![member], b: others, oneway: false });
                }
                _ => {}
            }
        }
    }
    for e in episodes.into_iter().filter(|e| !matches!(e, Episode::Join | Episode::JoinDuringCut)) {
        // Another time or node when it does not fit; past a few tries, a
        // short pause or an isolation instead.
        let placed = (0..8).any(|_| swarm.place(e));
        if !placed {
            let _ = (0..8).any(|_| swarm.place(Episode::Isolate));
        }
    }
    // Seeds were drawn before later episodes took nodes away: a seed that
    // is down, gone or not started at the join or restart gives way to
    // nodes that are up then.
    let mut faults = std::mem::take(&mut swarm.b.plan.faults);
    for f in &mut faults {
        if let Fault::Join { node, seeds } | Fault::Restart { node, seeds } = &mut f.fault {
            seeds.retain(|&s| swarm.free(s, f.at_ms, f.at_ms));
            if seeds.is_empty() {
                *seeds = swarm.seeds(f.at_ms, *node);
            }
        }
    }
    let b = swarm.b;
    b.plan.faults = faults;
    b.plan.faults.sort_by_key(|f| f.at_ms);
    // Every cut healed, the network clean, by `end`.
    let last = |pred: &dyn Fn(&Fault) -> bool| b.plan.faults.iter().rposition(|f| pred(&f.fault));
    let cut = last(&|f| matches!(f, Fault::Partition { .. }));
    let heal = last(&|f| matches!(f, Fault::Heal));
    if cut > heal {
        b.at(end, Fault::Heal);
    }
    if b.plan.faults.iter().rev().find_map(|f| match &f.fault {
        Fault::SetNet { net } => Some(*net != LinkModel::lan()),
        _ => None,
    }) == Some(true)
    {
        b.at(end, Fault::SetNet { net: LinkModel::lan() });
    }
    b.plan.expect.converge_within_ms = RANDOM_SETTLE_MS - 10_000;
    random_workload(b, 2_000, duration.saturating_sub(RANDOM_DRAIN_MS));
}

/// A workload drawn from the seed: uniform, Zipf or hot over 10–2,000
/// resources; fixed or exponential task times of 1–200 ms; Poisson or even
/// arrivals at 5–150 a second from `from_ms` to `until_ms`, fewer when the
/// hottest resource would be busy more than [`HOT_LOAD_MAX`] of the time.
fn random_workload(b: &mut Builder, from_ms: u64, until_ms: u64) {
    let until_ms = until_ms.max(from_ms + 1_000);
    let rng = &mut b.rng;
    let resources = (10.0 * 200f64.powf(rng.random_range(0.0..1.0))).round() as u64;
    let distribution = match rng.random_range(0..4) {
        0 | 1 => Distribution::Uniform,
        2 => Distribution::Zipf { s: (rng.random_range(0.6..1.4f64) * 100.0).round() / 100.0 },
        _ => Distribution::Hot { fraction: (rng.random_range(0.2..0.9f64) * 100.0).round() / 100.0 },
    };
    let exec = if rng.random_bool(0.4) { ExecTime::Exponential } else { ExecTime::Fixed };
    let d_max_ms = u64::try_from(b.plan.config.d_max.as_millis()).unwrap_or(u64::MAX);
    let times: Vec<u64> =
        [1, 2, 5, 10, 20, 50, 100, 200].into_iter().filter(|&t| exec.max_ms(t) * 2 <= d_max_ms).collect();
    let task_ms = times.get(rng.random_range(0..times.len().max(1))).copied().unwrap_or(1);
    let hottest = match distribution {
        Distribution::Uniform => 1.0 / resources as f64,
        Distribution::Zipf { s } => 1.0 / (1..=resources).map(|j| (j as f64).powf(-s)).sum::<f64>(),
        Distribution::Hot { fraction } => fraction.max((1.0 - fraction) / (resources - 1) as f64),
    };
    let rate =
        (5.0 * 30f64.powf(rng.random_range(0.0..1.0))).min(HOT_LOAD_MAX * 1000.0 / (hottest * task_ms as f64)).max(1.0);
    let rate = (rate * 100.0).round() / 100.0;
    let count = ((until_ms - from_ms) as f64 * rate / 1000.0).round().max(1.0) as u64;
    let arrivals = if rng.random_bool(0.8) { Arrivals::Poisson } else { Arrivals::Even };
    b.plan.tasks = Some(Workload {
        count,
        resources,
        distribution,
        rate,
        arrivals,
        task_ms,
        exec,
        start_at_ms: from_ms,
        retry_ms: 200,
        max_attempts: 20,
    });
    b.plan.expect.tasks = Some(TaskExpect { all_complete: true, exactly_once: !b.plan.may_lose_custody() });
}

#[cfg(test)]
mod tests {
    use custody::Config;

    use super::*;
    use crate::plan::Plan;
    use crate::scenario::{Params, find};

    fn params(nodes: usize, seed: u64) -> Params {
        Params::new(nodes, seed, 120, Config::lan())
    }

    /// What each node is doing along a plan's faults, to check a random plan.
    fn random_plans(seeds: std::ops::Range<u64>) -> Vec<Plan> {
        let s = find("random").unwrap();
        seeds.map(|seed| s.plan(&Params::new(0, seed, 120, Config::lan())).unwrap()).collect()
    }

    #[test]
    fn random_plans_are_diverse_and_end_their_faults_in_time() {
        let plans = random_plans(1..301);
        let mut kinds = std::collections::BTreeSet::new();
        let mut distributions = std::collections::BTreeSet::new();
        let (mut joins_in_cut, mut oneway, mut symmetric, mut drift_max) = (0, 0, 0, 0);
        for plan in &plans {
            let seed = plan.seed;
            assert!(RANDOM_NODES.contains(&plan.nodes), "seed {seed}: {} nodes", plan.nodes);
            assert!(plan.formed >= 5, "seed {seed}");
            assert!(plan.clocks.iter().all(|c| c.drift_ppm.abs() <= DRIFT_PPM_MAX), "seed {seed}");
            drift_max = drift_max.max(plan.clocks.iter().map(|c| c.drift_ppm.abs()).max().unwrap());
            let end = plan.duration_ms - RANDOM_SETTLE_MS;
            assert!(plan.faults.len() >= 3, "seed {seed}: {:?}", plan.faults);
            assert!(plan.faults.iter().all(|f| f.at_ms >= 1_000 && f.at_ms <= end), "seed {seed}: {:?}", plan.faults);
            // Pauses resumed, cuts healed, the network clean, by the end.
            let (mut paused, mut cut, mut lossy) = (std::collections::BTreeSet::new(), false, false);
            let (mut down, mut crashes) = (std::collections::BTreeSet::new(), Vec::new());
            let mut cut_joiners: std::collections::BTreeSet<usize> = std::collections::BTreeSet::new();
            for f in &plan.faults {
                kinds.insert(format!("{:?}", f.fault).split([' ', '{']).next().unwrap().to_string());
                match &f.fault {
                    Fault::Pause { node } => assert!(paused.insert(*node), "seed {seed}: paused twice"),
                    Fault::Resume { node } => assert!(paused.remove(node), "seed {seed}: resumed unpaused"),
                    Fault::Partition { a, b, oneway: one } => {
                        cut = true;
                        if *one {
                            oneway += 1;
                            cut_joiners.extend(a.iter().chain(b).filter(|&&x| x >= plan.formed));
                        } else {
                            symmetric += 1;
                        }
                    }
                    Fault::Heal => cut = false,
                    Fault::SetNet { net } => lossy = *net != LinkModel::lan(),
                    Fault::Crash { node } => {
                        assert!(down.insert(*node), "seed {seed}: crashed twice");
                        crashes.push(f.at_ms);
                    }
                    Fault::Restart { node, .. } => {
                        down.remove(node);
                    }
                    Fault::Join { node, seeds } => {
                        assert!(*node >= plan.formed, "seed {seed}: a formed node joins");
                        assert!(seeds.iter().all(|s| !down.contains(s) && !paused.contains(s)), "seed {seed}");
                        joins_in_cut += usize::from(cut && cut_joiners.contains(node));
                    }
                    Fault::Leave { .. } => {}
                }
            }
            assert!(paused.is_empty() && !cut && !lossy, "seed {seed}: a fault outlasts the run");
            // Crashes never overlap within a shadow (3 voters tolerate one).
            assert!(crashes.windows(2).all(|w| w[1] - w[0] >= CRASH_SHADOW_MS), "seed {seed}: {crashes:?}");
            // Tasks arrive from before the first fault until after the last.
            let w = plan.tasks.unwrap();
            assert!(w.start_at_ms <= 2_000 && w.nominal_end_ms() + 1_000 >= plan.duration_ms - RANDOM_DRAIN_MS);
            assert!(w.validate(&plan.config, plan.duration_ms).is_ok());
            distributions.insert(format!("{:?}", w.distribution).split([' ', '{']).next().unwrap().to_string());
            assert!(plan.expect.tasks.is_some_and(|t| t.all_complete));
        }
        for kind in ["Crash", "Restart", "Join", "Leave", "Pause", "Resume", "Partition", "Heal", "SetNet"] {
            assert!(kinds.contains(kind), "no {kind} in 300 seeds: {kinds:?}");
        }
        assert_eq!(distributions.len(), 3, "{distributions:?}");
        assert!(joins_in_cut > 10 && oneway > 50 && symmetric > 50, "{joins_in_cut} {oneway} {symmetric}");
        assert_eq!(drift_max, DRIFT_PPM_MAX);
        for plan in &plans[..50] {
            let back: Plan = serde_json::from_str(&serde_json::to_string(plan).unwrap()).unwrap();
            assert_eq!(&back, plan, "seed {} round-trips through JSON", plan.seed);
        }
        // The command line's node count wins; the seed decides the rest.
        let s = find("random").unwrap();
        assert_eq!(s.plan(&params(12, 5)).unwrap().nodes, 12);
        assert_eq!(random_plans(7..8), random_plans(7..8));
        assert_ne!(random_plans(7..8)[0].faults, random_plans(8..9)[0].faults);
    }
}
