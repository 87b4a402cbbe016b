//! The lock baseline inside the simulation: the simulator as its I/O
//! ([`crate::baseline::Io`]: its legs travel the simulated links, its
//! executions go into the trace), its events held while their node is
//! paused, and its drain past the plan's end.

use custody::engine::Node;
use rand::RngExt;

use super::{Ev, Sim};
use crate::baseline::{self, Baseline, LockEv};
use crate::trace::ExecRecord;

/// The lock baseline's drain past the plan's end stops once no task has
/// completed for this long (µs).
const DRAIN_STALL_US: u64 = 60_000_000;

/// The lock baseline's drain goes at most this far past the plan's end (µs).
const DRAIN_MAX_US: u64 = 3_600_000_000;

/// A lost copy of a lock baseline leg is sent again after this plus twice
/// its one-way delay (a QUIC-like probe timeout: max_ack_delay 25 ms plus
/// a round trip).
const LOCK_RETRANSMIT_US: u64 = 25_000;

/// The simulator as the lock baseline's I/O ([`baseline::Io`]).
pub(super) struct SimIo<'a> {
    sim: &'a mut Sim,
}

impl baseline::Io for SimIo<'_> {
    fn now(&self) -> u64 {
        self.sim.now
    }

    fn node_count(&self) -> usize {
        self.sim.nodes.len()
    }

    fn engine_running(&self, node: u32) -> bool {
        self.sim.nodes[node as usize].engine.is_some()
    }

    fn paused(&self, node: u32) -> bool {
        self.sim.nodes[node as usize].paused
    }

    fn is_leader(&self, node: u32) -> bool {
        self.sim.nodes[node as usize].engine.as_ref().is_some_and(Node::is_leader)
    }

    fn is_voter(&self, node: u32) -> bool {
        self.sim.nodes[node as usize].engine.as_ref().is_some_and(Node::is_voter)
    }

    fn send(&mut self, from: u32, to: u32, msg: baseline::Msg) {
        let sim = &mut *self.sim;
        let client = from == baseline::CLIENT || to == baseline::CLIENT;
        // Clients sit on the default network, never cut off.
        let model = if client { sim.network.default } else { sim.network.link(from as usize, to as usize) };
        if !client && sim.network.blocked(from as usize, to as usize) {
            sim.frames.lock_partition_dropped += 1;
            return;
        }
        let mut delay = sim.latency(&model);
        // A reliable stream: each lost copy is sent again after a timeout.
        let mut copies = 1;
        while model.loss > 0.0 && copies < 64 && sim.rng.random_bool(model.loss) {
            copies += 1;
            sim.frames.lock_retransmissions += 1;
            delay += 2 * sim.latency(&model) + LOCK_RETRANSMIT_US;
        }
        let at = sim.now + delay;
        sim.push(at, Ev::Lock(LockEv::Leg { from, to, msg }));
    }

    fn schedule(&mut self, at: u64, ev: LockEv) {
        self.sim.push(at, Ev::Lock(ev));
    }

    fn resource_of(&self, task: u64) -> u64 {
        self.sim.clients.as_ref().map_or(0, |c| c.resource_of(task))
    }

    fn exec_us(&self, task: u64) -> u64 {
        self.sim.clients.as_ref().map_or(self.sim.task_us, |c| c.exec_us(task))
    }

    fn acknowledge(&mut self, task: u64) {
        let now = self.sim.now;
        if let Some(c) = self.sim.clients.as_mut() {
            c.acknowledge(task, now);
        }
    }

    fn complete(&mut self, task: u64, token: custody::engine::Token) {
        let now = self.sim.now;
        self.sim.last_completion = now;
        if let Some(c) = self.sim.clients.as_mut() {
            c.complete(task, token, now);
        }
    }

    fn exec_start(&mut self, record: ExecRecord) -> usize {
        let sim = &mut *self.sim;
        sim.hash.u64(sim.now);
        sim.hash.bytes(b"lock-exec");
        sim.hash.u64(record.node as u64);
        sim.hash.u64(record.task);
        sim.hash.u64(record.token.seq);
        sim.trace.push(record);
        sim.trace.len() - 1
    }

    fn exec_end(&mut self, exec: usize) {
        let sim = &mut *self.sim;
        sim.hash.u64(sim.now);
        sim.hash.u64(exec as u64);
        sim.trace[exec].end = Some(sim.now);
    }

    fn committed(&mut self, instances: u64) {
        self.sim.lock_consensus = instances;
        self.sim.log_consensus();
    }
}

impl Sim {
    /// Runs `f` on the lock baseline (if this run has one) with the
    /// simulator as its I/O.
    pub(super) fn with_baseline(&mut self, f: impl FnOnce(&mut Baseline, &mut SimIo<'_>)) {
        if let Some(mut b) = self.baseline.take() {
            f(&mut b, &mut SimIo { sim: self });
            self.baseline = Some(b);
        }
    }

    /// A baseline event: it waits while its node is paused; a leg between
    /// two nodes is dropped if a partition cuts them when it arrives.
    pub(super) fn lock_event(&mut self, ev: LockEv) {
        let Some(b) = self.baseline.as_ref() else { return };
        if let Some(node) = b.node_of(&ev)
            && self.nodes[node].paused
        {
            self.nodes[node].held.push(Ev::Lock(ev));
            return;
        }
        if let LockEv::Leg { from, to, .. } = ev
            && from != baseline::CLIENT
            && to != baseline::CLIENT
            && self.network.blocked(from as usize, to as usize)
        {
            self.frames.lock_partition_dropped += 1;
            return;
        }
        self.with_baseline(|b, io| b.handle(ev, io));
    }

    /// Whether the run goes on past its planned end to `at`: only the lock
    /// baseline's, while its durable queue still holds arrived tasks, a task
    /// completed within the last [`DRAIN_STALL_US`], and at most
    /// [`DRAIN_MAX_US`] past the plan's end. No arrival or fault comes after
    /// the end; the baseline just works off its backlog, so its latencies
    /// and throughput cover every task (custody's tasks complete within the
    /// plan in every scenario with a workload, and its run is not extended).
    pub(super) fn drain_past_end(&mut self, at: u64) -> bool {
        if self.baseline.is_none() {
            return false;
        }
        let Some(c) = self.clients.as_ref() else { return false };
        let plan_end = self.plan.duration_ms * 1000;
        let backlog = c.counts().completed < c.tasks().len() as u64;
        let progressing = at <= self.last_completion.max(plan_end) + DRAIN_STALL_US;
        // Once drained, a second more lets the last releases commit.
        let settling = self.end > plan_end && at <= self.last_completion + 1_000_000;
        if (backlog && progressing || settling) && at <= plan_end + DRAIN_MAX_US {
            self.end = at;
            true
        } else {
            false
        }
    }
}
