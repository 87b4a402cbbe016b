//! The per-task-locking baseline: the seed's loop, simulated inside the same
//! simulation as custody (same nodes, links, faults and epoch store).
//!
//! # What runs
//!
//! `workers` worker processes per running node ([`custody::Config::workers`],
//! the same pool size custody's nodes get; `--set workers=N` changes both)
//! each loop:
//!
//! 1. **pick** the next not-yet-picked task from the durable queue (a read
//!    at the lock service's leader; an idle worker's pick waits there until a
//!    task is enqueued, as a long poll);
//! 2. **acquire** the lock of the task's resource (a committed entry; a busy
//!    lock queues the worker FIFO, and the release that frees the lock grants
//!    it to the first waiter, whose grant notification travels from the
//!    leader to the waiter); a grant carries the resource's **fencing
//!    revision** (1, 2, 3, … per resource), which becomes the execution's
//!    token `Token { epoch: 1, seq: revision }`;
//! 3. **re-check** the task's state (a linearizable read at the leader: one
//!    round trip, no consensus instance); an executed task is only released;
//! 4. **execute** for the workload's `exec_us(task)` of true time, only if
//!    its session lease (below) covers the whole execution;
//! 5. **mark** the task executed (a committed entry: the task completes);
//! 6. **release** the lock (a committed entry; grants the next waiter).
//!
//! Tasks enter the queue by a committed **enqueue** when they arrive (the
//! client sends it to the leader; the task is acknowledged when it commits).
//!
//! # The lock service
//!
//! The lock service is played by the epoch store's Raft group: it runs at
//! the node whose engine is the Raft leader ([`custody::engine::Node::is_leader`];
//! a paused leader is not used) and replicates to the nodes whose engines are
//! voters ([`custody::engine::Node::is_voter`]). Every write (enqueue,
//! acquire, mark, release, and session open, close and expiry) is **one
//! consensus instance**, charged a real round over the simulated links:
//! requester → leader, leader → each other voter, each voter → leader, and
//! the answer leader → requester, each leg one message through the
//! simulator's network model (latency, loss with retransmission, partitions,
//! crashed and paused receivers). The entry commits when a majority of the
//! running voters (the leader included) has acknowledged it; only then does
//! the service state change. A round whose leader lost leadership or crashed
//! before committing is abandoned and the requester retries against the new
//! leader; a retried request that had committed is answered from the state
//! (no second instance). The committed state (queue, locks, revisions,
//! sessions) is one logical replicated state machine, so it survives leader
//! changes.
//!
//! Reads (pick, re-check, session keepalive) are answered by the leader
//! alone: two legs, no consensus instance.
//!
//! **Sessions** (etcd-style leases): each node's worker process opens a
//! session (a committed entry) and keeps it alive with a keepalive round trip
//! to the leader every `lease_renew`; the leader expires a session not kept
//! alive for `lease` (a committed entry), which releases its locks (granting
//! the next waiters), drops its waiters and parked picks, and puts its picked,
//! unexecuted tasks back at the head of the queue. A new leader extends every
//! session by one `lease` (as etcd does). A worker starts an execution only if
//! its session's lease, counted from the send of the last answered keepalive,
//! outlasts it, so a worker cut off from the leader finishes before its locks
//! can pass on. A worker process that leaves gracefully stops picking, lets
//! running executions finish, mark and release, then closes its session (a
//! committed entry). A crash ends its executions at once; its locks pass on
//! when its session expires.
//!
//! # What is not modelled
//!
//! * No raft-rs log holds lock entries: each entry is charged a real
//!   replication round over the real links, but the Raft group's own
//!   messages are not extended by them, there is no batching of entries into
//!   one append (as a per-operation cost count assumes), and an entry
//!   that reached a minority before its leader failed is dropped and retried
//!   rather than possibly committed by the next leader.
//! * The leader has no service time: any number of operations commit in
//!   parallel (the baseline's leader ceiling `C_leader / a` is not modelled,
//!   in the baseline's favour).
//! * Requesters know the current leader (no redirect hop, except a
//!   `NotLeader` answer when leadership moved while a request travelled).
//! * The queue cursor (which tasks are picked) is part of the replicated
//!   state without costing an entry (in the baseline's favour).
//! * Links between nodes behave as reliable streams: a lost copy is
//!   retransmitted after a timeout (counted), duplicates and reordering of
//!   datagrams do not apply; a partition drops the leg, and the requester
//!   retries after the election timeout (`10 × raft_tick`). Simulated
//!   clients are never partitioned off (as in custody mode).
//! * Worker processes share their node's fate (crash, pause, leave) but not
//!   its engine's: a leaving node's workers drain on their own schedule.
//!
//! # Where it lives
//!
//! * `io.rs`: the legs and timers it schedules ([`LockEv`], [`Msg`]) and
//!   what it asks of the simulator ([`Io`]);
//! * `service.rs`: the replicated state ([`LockService`]) and its
//!   operations ([`OpKind`], [`Answer`]);
//! * `process.rs`: the nodes' worker processes and their workers' loop;
//! * `replication.rs`: the service at the leader: requests, replication
//!   rounds, commits, answers and session expiry;
//! * here: the settings ([`LockConfig`]), the operations in flight, and
//!   [`Baseline`], which holds it all.

mod io;
mod process;
mod replication;
mod service;

pub use io::{CLIENT, Io, LockEv, Msg, OpRef};
use process::{Proc, Worker};
pub use service::{Answer, Effect, LockService, OpKind, SessionId, WorkerId};

use crate::trace::LockCounts;

/// The baseline's timings and sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockConfig {
    /// Worker processes per running node.
    pub workers_per_node: usize,
    /// A session lasts this long without a keepalive, µs.
    pub session_ttl_us: u64,
    /// Keepalive period, µs.
    pub keepalive_us: u64,
    /// An operation unanswered this long is sent again, µs.
    pub op_timeout_us: u64,
}

impl LockConfig {
    /// The baseline's settings from the engine configuration every node
    /// runs: the worker pool, `lease` as session lifetime, `lease_renew` as
    /// keepalive period, and the Raft election timeout (`10 × raft_tick`)
    /// as request timeout.
    pub fn from_config(config: &custody::Config) -> LockConfig {
        let us = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        LockConfig {
            workers_per_node: config.workers,
            session_ttl_us: us(config.lease),
            keepalive_us: us(config.lease_renew).max(1),
            op_timeout_us: us(config.raft_tick * 10).max(1),
        }
    }
}

/// Who an operation answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Client(u64),
    Worker(WorkerId),
    Proc { node: u32, life: u32 },
    Leader,
}

/// An operation in flight: what it asks, who waits for it, and its
/// replication round at the leader.
#[derive(Debug, Clone, Copy)]
struct Op {
    generation: u32,
    live: bool,
    kind: OpKind,
    origin: Origin,
    /// The node requests go from ([`CLIENT`] for a client).
    from: u32,
    session: SessionId,
    /// When the latest request was sent.
    sent_at: u64,
    /// Sends so far (the retry timer of an older send is stale).
    attempt: u32,
    // Replication at a leader.
    replicating: bool,
    round: u32,
    term: u64,
    leader: u32,
    acks: u16,
    need: u16,
}

/// The operations in flight, in slots reused once released.
#[derive(Debug, Default)]
struct Ops {
    slots: Vec<Op>,
    free: Vec<u32>,
}

impl Ops {
    fn alloc(&mut self, kind: OpKind, origin: Origin, from: u32, session: SessionId) -> OpRef {
        let fresh = |generation| Op {
            generation,
            live: true,
            kind,
            origin,
            from,
            session,
            sent_at: 0,
            attempt: 0,
            replicating: false,
            round: 0,
            term: 0,
            leader: 0,
            acks: 0,
            need: 0,
        };
        match self.free.pop() {
            Some(idx) => {
                let slot = &mut self.slots[idx as usize];
                let generation = slot.generation.wrapping_add(1);
                *slot = fresh(generation);
                OpRef { idx, generation }
            }
            None => {
                self.slots.push(fresh(0));
                OpRef { idx: (self.slots.len() - 1) as u32, generation: 0 }
            }
        }
    }

    fn get(&self, r: OpRef) -> Option<&Op> {
        self.slots.get(r.idx as usize).filter(|o| o.live && o.generation == r.generation)
    }

    fn get_mut(&mut self, r: OpRef) -> Option<&mut Op> {
        self.slots.get_mut(r.idx as usize).filter(|o| o.live && o.generation == r.generation)
    }

    fn release(&mut self, r: OpRef) {
        if let Some(op) = self.get_mut(r) {
            op.live = false;
            self.free.push(r.idx);
        }
    }
}

/// The baseline of one run: the lock service, the worker processes, the
/// operations in flight and the counters.
pub struct Baseline {
    cfg: LockConfig,
    svc: LockService,
    procs: Vec<Proc>,
    workers: Vec<Worker>,
    ops: Ops,
    /// Executions per task so far (the next one's attempt number).
    executions: Vec<u32>,
    /// The leader the service runs at, as last resolved.
    leader: Option<u32>,
    /// Bumped whenever the service moves to another leader; a round of an
    /// older term never commits.
    term: u64,
    voters: Vec<u32>,
    voters_dirty: bool,
    /// Expiry in flight per session.
    expiring: Vec<Option<OpRef>>,
    effects: Vec<Effect>,
    counts: LockCounts,
}

impl Baseline {
    /// The baseline of a run of `nodes` nodes.
    pub fn new(cfg: LockConfig, nodes: usize) -> Baseline {
        Baseline {
            cfg,
            svc: LockService::new(cfg.session_ttl_us),
            procs: vec![Proc::default(); nodes],
            workers: Vec::new(),
            ops: Ops::default(),
            executions: Vec::new(),
            leader: None,
            term: 0,
            voters: Vec::new(),
            voters_dirty: true,
            expiring: Vec::new(),
            effects: Vec::new(),
            counts: LockCounts::default(),
        }
    }

    /// The counters.
    pub fn counts(&self) -> LockCounts {
        self.counts
    }

    /// The lock service's state.
    pub fn service(&self) -> &LockService {
        &self.svc
    }

    /// The set of voters may have changed (an epoch committed, a node
    /// started or stopped).
    pub fn voters_changed(&mut self) {
        self.voters_dirty = true;
    }

    /// The node an event happens at, if it must wait while that node is
    /// paused.
    pub fn node_of(&self, ev: &LockEv) -> Option<usize> {
        match *ev {
            LockEv::Leg { to, .. } => (to != CLIENT).then_some(to as usize),
            LockEv::Retry { op, .. } => self.ops.get(op).and_then(|o| (o.from != CLIENT).then_some(o.from as usize)),
            LockEv::Renew { node, .. } => Some(node as usize),
            LockEv::SessionCheck { .. } => None,
            LockEv::ExecDone { worker, .. } => Some(self.workers[worker as usize].node as usize),
        }
    }

    /// Handles one baseline event.
    pub fn handle(&mut self, ev: LockEv, io: &mut dyn Io) {
        match ev {
            LockEv::Leg { from, to, msg } => self.on_msg(from, to, msg, io),
            LockEv::Retry { op, attempt } => self.on_retry(op, attempt, io),
            LockEv::Renew { node, life } => self.on_renew(node, life, io),
            LockEv::SessionCheck { session } => self.on_session_check(session, io),
            LockEv::ExecDone { worker, exec } => self.on_exec_done(worker, exec, io),
        }
    }

    // ---- the client side ----------------------------------------------------

    /// Task `task` arrives: its client enqueues it.
    pub fn arrive(&mut self, task: u64, io: &mut dyn Io) {
        let op = self.ops.alloc(OpKind::Enqueue { task }, Origin::Client(task), CLIENT, u32::MAX);
        self.send_request(op, false, io);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BinaryHeap;

    use custody::engine::Token;

    use super::*;
    use crate::trace::ExecRecord;

    /// Three nodes (all voters), fixed 1 ms legs, a scripted leader.
    struct TestIo {
        now: u64,
        seq: u64,
        queue: BinaryHeap<std::cmp::Reverse<(u64, u64, usize)>>,
        evs: Vec<Option<LockEv>>,
        leader: Option<u32>,
        down: Vec<bool>,
        trace: Vec<ExecRecord>,
        completed: Vec<(u64, Token)>,
        resources: Vec<u64>,
    }

    impl TestIo {
        fn new(resources: Vec<u64>) -> TestIo {
            TestIo {
                now: 0,
                seq: 0,
                queue: BinaryHeap::new(),
                evs: Vec::new(),
                leader: Some(0),
                down: vec![false; 3],
                trace: Vec::new(),
                completed: Vec::new(),
                resources,
            }
        }

        fn run_until(&mut self, b: &mut Baseline, until: u64) {
            while let Some(std::cmp::Reverse((at, _, i))) = self.queue.peek().copied() {
                if at > until {
                    break;
                }
                self.queue.pop();
                self.now = at;
                let ev = self.evs[i].take().expect("once");
                b.handle(ev, self);
            }
            self.now = until;
        }
    }

    impl Io for TestIo {
        fn now(&self) -> u64 {
            self.now
        }
        fn node_count(&self) -> usize {
            3
        }
        fn engine_running(&self, node: u32) -> bool {
            !self.down[node as usize]
        }
        fn paused(&self, _: u32) -> bool {
            false
        }
        fn is_leader(&self, node: u32) -> bool {
            self.leader == Some(node)
        }
        fn is_voter(&self, node: u32) -> bool {
            !self.down[node as usize]
        }
        fn send(&mut self, from: u32, to: u32, msg: Msg) {
            if to != CLIENT && self.down[to as usize] {
                return;
            }
            self.schedule(self.now + 1_000, LockEv::Leg { from, to, msg });
        }
        fn schedule(&mut self, at: u64, ev: LockEv) {
            self.seq += 1;
            self.evs.push(Some(ev));
            self.queue.push(std::cmp::Reverse((at, self.seq, self.evs.len() - 1)));
        }
        fn resource_of(&self, task: u64) -> u64 {
            self.resources[task as usize]
        }
        fn exec_us(&self, _: u64) -> u64 {
            2_000
        }
        fn acknowledge(&mut self, _: u64) {}
        fn complete(&mut self, task: u64, token: Token) {
            self.completed.push((task, token));
        }
        fn exec_start(&mut self, record: ExecRecord) -> usize {
            self.trace.push(record);
            self.trace.len() - 1
        }
        fn exec_end(&mut self, exec: usize) {
            self.trace[exec].end = Some(self.now);
        }
        fn committed(&mut self, _: u64) {}
    }

    fn config(workers: usize) -> LockConfig {
        LockConfig {
            workers_per_node: workers,
            session_ttl_us: 5_000_000,
            keepalive_us: 1_000_000,
            op_timeout_us: 1_000_000,
        }
    }

    #[test]
    fn each_operation_is_one_consensus_instance_and_costs_a_real_round() {
        // One worker on node 2 (not the leader), one task.
        let mut io = TestIo::new(vec![0]);
        let mut b = Baseline::new(config(1), 3);
        b.node_started(2, &mut io);
        io.run_until(&mut b, 100_000);
        let opened = b.counts();
        assert_eq!(opened.session, 1);
        let sent = opened.messages;
        b.arrive(0, &mut io);
        io.run_until(&mut b, 200_000);
        let c = b.counts();
        assert_eq!((c.enqueue, c.acquire, c.mark, c.release), (1, 1, 1, 1), "{c:?}");
        assert_eq!((c.picks, c.rechecks), (2, 1));
        assert_eq!(io.completed, vec![(0, Token { epoch: 1, seq: 1 })]);
        // Four writes of six legs (request, 2 appends, 2 acks, answer), two
        // reads of two; the pick was parked before the enqueue, so its
        // answer "parked" came back and the task followed as a hand-out.
        let keepalive_legs = 2 * c.keepalives;
        assert_eq!(c.messages - sent - keepalive_legs, 4 * 6 + 2 * 2 + 1, "{c:?}");
        let e = &io.trace[0];
        assert_eq!((e.node, e.task, e.token, e.attempt), (2, 0, Token { epoch: 1, seq: 1 }, 1));
        // Pick answered (2 legs after the enqueue's hand-out 1 leg), acquire
        // round (4 legs: the first ack completes the majority), check (2):
        // the execution starts 4 ms after the enqueue committed, at least.
        assert_eq!(e.end, Some(e.start + 2_000));
    }

    #[test]
    fn contending_workers_run_one_at_a_time_in_revision_order() {
        // Eight tasks of one resource, two workers on each of three nodes.
        let mut io = TestIo::new(vec![5; 8]);
        let mut b = Baseline::new(config(2), 3);
        for n in 0..3 {
            b.node_started(n, &mut io);
        }
        io.run_until(&mut b, 100_000);
        for k in 0..8 {
            b.arrive(k, &mut io);
        }
        io.run_until(&mut b, 2_000_000);
        assert_eq!(io.trace.len(), 8);
        let revs: Vec<u64> = io.trace.iter().map(|e| e.token.seq).collect();
        assert_eq!(revs, (1..=8).collect::<Vec<_>>());
        for pair in io.trace.windows(2) {
            assert!(pair[0].end.unwrap() <= pair[1].start, "{pair:?}");
        }
        let c = b.counts();
        assert_eq!((c.enqueue, c.acquire, c.mark, c.release), (8, 8, 8, 8));
        assert!(c.handovers >= 5, "most grants go to waiters: {c:?}");
    }

    #[test]
    fn a_leader_change_keeps_the_lock_state() {
        let mut io = TestIo::new(vec![1, 1, 1]);
        let mut b = Baseline::new(config(1), 3);
        b.node_started(1, &mut io);
        b.node_started(2, &mut io);
        io.run_until(&mut b, 100_000);
        for k in 0..3 {
            b.arrive(k, &mut io);
        }
        io.run_until(&mut b, 103_500);
        // Node 0 (the leader) crashes mid-run; node 1 leads after 300 ms.
        io.down[0] = true;
        io.leader = None;
        b.voters_changed();
        io.run_until(&mut b, 400_000);
        io.leader = Some(1);
        io.run_until(&mut b, 5_000_000);
        assert_eq!(io.completed.len(), 3, "{:?}", b.counts());
        let mut revs: Vec<u64> = io.trace.iter().map(|e| e.token.seq).collect();
        revs.dedup();
        assert_eq!(revs, vec![1, 2, 3], "revisions continue across the leader change");
        assert!(b.counts().retries > 0);
        assert_eq!(b.service().lock(1), (3, None));
    }
}
