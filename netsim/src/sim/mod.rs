//! The discrete-event simulator: engine nodes over a virtual network and
//! virtual clocks.
//!
//! One thread, one heap of events ordered by (true time, sequence number).
//! Events are deliveries, node wake-ups at the node's `poll_timeout`, the
//! plan's faults and convergence samples. Each node sees its own clock
//! (`offset + t·(1 + drift)`); the heap runs on true time. Every random draw
//! comes from one generator seeded by the plan, so a plan decides its run.
//!
//! The network models the transport contract of the real runtime:
//! datagrams (SWIM) are lossy, duplicated, delayed and reordered per link;
//! stream frames are ordered per directed connection and lost as a whole
//! when the connection resets (a crash of either end, a partition between
//! them, or the engine closing it).
//!
//! With a workload ([`crate::plan::Workload`]) the simulator also plays the
//! clients ([`crate::workload`]) and the task handlers: an
//! [`Output::Execute`] runs for the workload's `task_ms` of true time, then
//! its end is fed back to the same node as [`Input::TaskDone`], unless the
//! node stopped meanwhile (its engine, and the handler with it, are gone).
//! Every execution goes into the trace with true start and end times, which
//! the checker ([`crate::checker`]) reads at the end.
//!
//! This file is the loop: the run's state, setting it up, popping events,
//! feeding inputs to the engines and carrying out their outputs. The rest
//! is in its own files:
//!
//! * `queue.rs`: the events and their queue;
//! * `clock.rs`: a node's clock against true time;
//! * `network.rs`: links, delays, loss, partitions and stream connections;
//! * `faults.rs`: the plan's fault schedule applied, and who a cut cuts off;
//! * `observe.rs`: what the simulator records of the nodes' outputs (the
//!   trace hash, membership views, the epoch store);
//! * `custody_watch.rs`: rings, transfers and faults, traced to the
//!   resources whose custody they touched;
//! * `tasks.rs`: the workload's clients and the task handlers;
//! * `lock_io.rs`: the simulator as the lock baseline's I/O;
//! * `assemble.rs`: the [`Report`](crate::report::Report) of a finished run.

mod assemble;
mod clock;
mod custody_watch;
mod faults;
mod lock_io;
mod network;
mod observe;
mod queue;
mod tasks;

use std::collections::{BTreeMap, BTreeSet};

use custody::engine::epoch::RingCache;
use custody::engine::{Command, Event, Input, Instant, Node, NodeId, Output};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

pub use assemble::Finished;
use assemble::add_custody;
use clock::Clock;
use custody_watch::CustodyWatch;
use network::Network;
pub use network::{node_addr, node_index};
use observe::{EpochWatch, TraceHash};
use queue::{Entry, Ev, EventQueue};

use crate::baseline::{Baseline, LockConfig};
use crate::plan::{Mode, Plan};
use crate::report::{FaultsInjected, Handoffs, Membership, Traffic};
use crate::trace::{ExecRecord, FrameCounts};
use crate::workload::{ClientAction, Clients, mix};

/// How often, in simulated time, convergence is checked after the last
/// fault.
pub const SAMPLE_PERIOD_US: u64 = 100_000;

/// A simulated node: its engine (while it runs) and what the loop keeps
/// of it.
struct SimNode {
    engine: Option<Node>,
    /// The incarnation of the running life (or of the last one).
    incarnation: u64,
    /// Its current SWIM generation.
    generation: u32,
    clock: Clock,
    paused: bool,
    held: Vec<Ev>,
    wake_gen: u64,
    wake_at: Option<u64>,
    /// The node's view: live members other than itself, by index, with the
    /// incarnation and generation it knows.
    view: BTreeMap<usize, (u64, u32)>,
    /// The latest epoch this life has learned.
    learned: u64,
    /// When this life started (true µs).
    started_at: u64,
    /// Bumped whenever the engine stops: a handler's end reported for an
    /// older boot has nobody to go to.
    boot: u64,
    /// Executions running here, by place in the trace.
    executing: BTreeSet<usize>,
}

/// One simulation run.
pub struct Sim {
    plan: Plan,
    now: u64,
    end: u64,
    seq: u64,
    queue: EventQueue,
    nodes: Vec<SimNode>,
    /// The network's random draws (delays, loss, duplicates, reordering),
    /// seeded by the plan.
    rng: Xoshiro256PlusPlus,
    network: Network,
    /// The voters committed at the latest cut: who can reach their majority
    /// is judged against them while the cut lasts.
    cut_voters: Vec<usize>,
    hash: TraceHash,
    events: u64,
    injected: FaultsInjected,
    membership: Membership,
    traffic: Traffic,
    /// Per node: until when Down declarations about it, or by it, are
    /// excused (it was paused or cut off, and suspicion takes a while to
    /// clear).
    excused_until: Vec<u64>,
    /// Per node: when a heal last released it from a cut.
    released_at: Vec<Option<u64>>,
    /// Until when the network counts as lossy beyond the no-false-down
    /// limit.
    high_loss_until: u64,
    grace_us: u64,
    converged_at: Option<u64>,
    outputs: Vec<Output>,
    epochs: EpochWatch,
    /// The simulated clients, with a workload.
    clients: Option<Clients>,
    /// Every execution, in start order.
    trace: Vec<ExecRecord>,
    /// How long a task runs, true µs.
    task_us: u64,
    /// Custody counters of engines that stopped.
    stopped_custody: Handoffs,
    /// Custody counters of every engine just before the first fault.
    at_first_fault: Option<Handoffs>,
    /// The lock baseline, in [`Mode::Lock`] with a workload.
    baseline: Option<Box<Baseline>>,
    /// Stream frames between nodes, by what they carry.
    frames: FrameCounts,
    /// The lock service's consensus instances so far.
    lock_consensus: u64,
    /// When a task last completed (the lock baseline's drain), true µs.
    last_completion: u64,
    /// `(true µs, cumulative consensus instances)`, one point per 10 ms
    /// with a commit (epochs, votes, lock entries): the compare plot's curve.
    consensus_log: Vec<(u64, u64)>,
    /// Rings, transfers and faults, for tracing faults to resources.
    watch: CustodyWatch,
    /// One ring per epoch for every node of the run (and the watch).
    rings: RingCache,
}

impl Sim {
    /// Sets up a run of `plan`.
    ///
    /// # Panics
    /// If the plan is invalid: check it with [`Plan::validate`] first.
    pub fn new(plan: Plan) -> Sim {
        if let Err(e) = plan.validate() {
            panic!("invalid plan: {e}");
        }
        let grace = plan.config.suspect_to_down_after + plan.config.probe_period * 4;
        let nodes = plan
            .clocks
            .iter()
            .map(|&spec| SimNode {
                engine: None,
                incarnation: 0,
                generation: 0,
                clock: Clock(spec),
                paused: false,
                held: Vec::new(),
                wake_gen: 0,
                wake_at: None,
                view: BTreeMap::new(),
                learned: 0,
                started_at: 0,
                boot: 0,
                executing: BTreeSet::new(),
            })
            .collect();
        let mut sim = Sim {
            now: 0,
            end: plan.duration_ms * 1000,
            seq: 0,
            queue: EventQueue::default(),
            nodes,
            rng: Xoshiro256PlusPlus::seed_from_u64(mix(plan.seed)),
            network: Network::new(&plan.net),
            cut_voters: Vec::new(),
            hash: TraceHash::new(),
            events: 0,
            injected: FaultsInjected::default(),
            membership: Membership::default(),
            traffic: Traffic::default(),
            excused_until: vec![0; plan.nodes],
            released_at: vec![None; plan.nodes],
            high_loss_until: 0,
            grace_us: u64::try_from(grace.as_micros()).unwrap_or(u64::MAX),
            converged_at: None,
            outputs: Vec::new(),
            epochs: EpochWatch::default(),
            clients: plan.tasks.map(|w| Clients::new(w, mix(plan.seed ^ 0x7461_736b_7320_2020), plan.duration_ms)),
            trace: Vec::new(),
            task_us: plan.tasks.map_or(0, |w| w.task_ms * 1000),
            stopped_custody: Handoffs::default(),
            at_first_fault: None,
            baseline: (plan.mode == Mode::Lock && plan.tasks.is_some())
                .then(|| Box::new(Baseline::new(LockConfig::from_config(&plan.config), plan.nodes))),
            frames: FrameCounts::default(),
            lock_consensus: 0,
            last_completion: 0,
            consensus_log: Vec::new(),
            watch: CustodyWatch::new(plan.nodes),
            rings: RingCache::new(),
            plan,
        };
        if sim.network.default.loss > sim.plan.expect.no_false_down_at_loss_max {
            sim.high_loss_until = u64::MAX;
        }
        sim
    }

    /// Runs the plan to its end and reports. `wall_ms` is the caller's
    /// measurement of how long it took (the simulation reads no clock).
    pub fn run(mut self) -> Finished {
        let formed: Vec<NodeId> = (0..self.plan.formed).map(|i| self.identity(i, 1)).collect();
        for (i, id) in formed.iter().enumerate() {
            self.start_node(i, id.clone());
            let others = formed.iter().filter(|o| o.addr != id.addr).cloned().collect();
            self.input(i, Input::Command(Command::LearnMembers(others)));
        }
        // The first node starts the cluster's epoch store; the others are
        // admitted by it.
        self.input(0, Input::Command(Command::Bootstrap));
        for i in 0..self.plan.faults.len() {
            let at = self.plan.faults[i].at_ms * 1000;
            self.push(at, Ev::Fault(i));
        }
        self.push(self.plan.settle_at_ms() * 1000, Ev::Sample);
        if let Some(at) = self.clients.as_ref().and_then(Clients::next_arrival) {
            self.push(at, Ev::Arrival);
        }

        while let Some(entry) = self.queue.pop() {
            if entry.at > self.end && !self.drain_past_end(entry.at) {
                break;
            }
            self.now = entry.at;
            self.events += 1;
            match entry.ev {
                Ev::Datagram { from, to, bytes } => self.deliver_datagram(from, to, bytes),
                Ev::Frame { from, to, conn, bytes } => self.deliver_frame(from, to, conn, bytes),
                Ev::Wake { node, generation } => {
                    let n = &mut self.nodes[node];
                    if n.wake_gen == generation && !n.paused {
                        n.wake_at = None;
                        self.input(node, Input::Timeout);
                    }
                }
                Ev::Fault(i) => self.apply_fault(i),
                Ev::Sample => self.sample(),
                Ev::LeaseCheck(since) => self.lease_check(since),
                Ev::TaskDone { node, boot, exec, resource, seq } => {
                    self.deliver_task_done(node, boot, exec, resource, seq);
                }
                Ev::CancelDone { node, boot, resource, seq } => self.deliver_cancel_done(node, boot, resource, seq),
                Ev::Arrival => self.arrival(),
                Ev::ClientRetry { task } => {
                    if self.clients.as_mut().is_some_and(|c| c.may_retry(task)) {
                        self.submit_task(task);
                    }
                }
                Ev::ClientFrame { node, client, bytes } => self.deliver_client_frame(node, client, bytes),
                Ev::Lock(ev) => self.lock_event(ev),
            }
        }
        self.now = self.end;
        Finished { sim: self }
    }

    fn identity(&self, i: usize, incarnation: u64) -> NodeId {
        NodeId::new(node_addr(i), incarnation, &format!("n{i}"))
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Entry { at, seq: self.seq, ev });
    }

    fn running(&self, i: usize) -> bool {
        self.nodes[i].engine.is_some()
    }

    fn start_node(&mut self, i: usize, id: NodeId) {
        let node = &mut self.nodes[i];
        let local = node.clock.local(self.now);
        node.incarnation = id.incarnation;
        node.generation = id.generation;
        let seed = mix(self.plan.seed ^ mix(i as u64) ^ mix(id.incarnation.rotate_left(32)));
        let engine = Node::new(id, self.plan.config.clone(), seed, Instant::from_micros(local));
        node.engine = Some(engine.with_ring_cache(self.rings.clone()));
        node.view.clear();
        node.learned = 0;
        node.started_at = self.now;
        node.paused = false;
        node.held.clear();
        // The baseline's worker process starts with the node.
        self.with_baseline(|b, io| b.node_started(i, io));
    }

    /// Feeds one input to node `i` and carries out its outputs.
    fn input(&mut self, i: usize, input: Input) {
        let node = &mut self.nodes[i];
        let Some(engine) = node.engine.as_mut() else { return };
        let local = Instant::from_micros(node.clock.local(self.now));
        let was_leader = engine.is_leader();
        // A rejected input is counted by the engine; the simulation goes on.
        let _ = engine.handle(local, input);
        // A new leader (or a deposed one) inside a cut changes who renews.
        let leadership_changed = engine.is_leader() != was_leader;
        while let Some(output) = engine.poll_output() {
            self.outputs.push(output);
        }
        let mut outputs = std::mem::take(&mut self.outputs);
        let mut left = false;
        for output in outputs.drain(..) {
            left |= output == Output::Event(Event::Left);
            self.carry_out(i, output);
        }
        self.outputs = outputs;
        if left {
            self.stop_node(i);
        }
        if leadership_changed && self.network.partitioned() {
            self.update_cut_off();
        }
        self.reschedule(i);
    }

    fn reschedule(&mut self, i: usize) {
        let now = self.now;
        let node = &mut self.nodes[i];
        let want = match &node.engine {
            Some(engine) if !node.paused => engine.poll_timeout().map(|t| node.clock.true_time(t.as_micros()).max(now)),
            _ => None,
        };
        if want != node.wake_at {
            node.wake_gen += 1;
            node.wake_at = want;
            if let Some(at) = want {
                let generation = node.wake_gen;
                self.push(at, Ev::Wake { node: i, generation });
            }
        }
    }

    fn carry_out(&mut self, i: usize, output: Output) {
        self.hash.u64(self.now);
        self.hash.u64(i as u64);
        match output {
            Output::Datagram { to, bytes } => {
                self.hash.bytes(&[1]);
                self.hash.bytes(&bytes);
                self.traffic.datagrams += 1;
                self.traffic.datagram_bytes += bytes.len() as u64;
                let Some(to) = self.peer(to) else { return };
                self.send_datagram(i, to, bytes);
            }
            Output::PeerFrame { to, bytes } => {
                self.hash.bytes(&[2]);
                self.hash.bytes(&bytes);
                self.traffic.frames += 1;
                self.frames.count(&bytes);
                let Some(to) = self.peer(to) else { return };
                if self.clients.is_some() {
                    self.watch_sent(i, to, &bytes);
                }
                self.send_frame(i, to, bytes);
            }
            Output::Reply { client, bytes } => {
                self.hash.bytes(&[3]);
                self.hash.u64(client.0);
                self.hash.bytes(&bytes);
                let now = self.now;
                let action = self.clients.as_mut().map_or(ClientAction::None, |c| c.on_reply(client, &bytes, now));
                self.client_action(action);
            }
            Output::Execute(execution) => {
                self.hash.bytes(&[6]);
                self.execute(i, execution);
            }
            Output::Cancel { resource, seq } => {
                self.hash.bytes(&[7]);
                self.hash.bytes(resource.as_bytes());
                self.hash.u64(seq);
                self.cancel(i, resource, seq);
            }
            Output::ClosePeer(addr) => {
                self.hash.bytes(&[4]);
                if let Some(peer) = self.peer(addr) {
                    self.hash.u64(peer as u64);
                    self.network.reset_conn(i, peer);
                }
            }
            Output::Event(event) => {
                self.hash.bytes(&[5]);
                self.observe(i, event);
            }
        }
    }

    fn stop_node(&mut self, i: usize) {
        if let Some(b) = self.baseline.as_mut() {
            b.engine_stopped();
        }
        let node = &mut self.nodes[i];
        if let Some(engine) = &node.engine {
            add_custody(&mut self.stopped_custody, engine.custody_stats());
        }
        // Its handlers die with it.
        for exec in std::mem::take(&mut node.executing) {
            self.trace[exec].end = Some(self.now);
        }
        node.boot += 1;
        node.engine = None;
        node.view.clear();
        node.held.clear();
        node.paused = false;
        node.wake_gen += 1;
        node.wake_at = None;
        self.network.reset_conns_of(i);
        // Its clients see their connections reset, and try elsewhere.
        let retry = self.clients.as_mut().map(|c| c.node_stopped(i)).unwrap_or_default();
        for task in retry {
            self.client_action(ClientAction::Retry(task));
        }
    }
}
