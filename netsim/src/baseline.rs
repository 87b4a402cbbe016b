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

use std::collections::VecDeque;

use custody::engine::Token;
use serde::{Deserialize, Serialize};

use crate::checker::ExecRecord;

/// The endpoint of the simulated clients: off the cluster, never cut off.
pub const CLIENT: u32 = u32::MAX;

/// A worker, by index over every worker of the run.
pub type WorkerId = u32;

/// A session, by index over every session of the run.
pub type SessionId = u32;

/// One operation in flight: its slot and the slot's generation (a reused
/// slot's late messages are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpRef {
    idx: u32,
    generation: u32,
}

/// What an operation asks of the lock service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Put a task in the durable queue (committed).
    Enqueue {
        /// The task.
        task: u64,
    },
    /// Open a session (committed).
    Open {
        /// Its node.
        node: u32,
    },
    /// Close a session of a node leaving gracefully (committed).
    Close,
    /// Expire a session not kept alive (committed; issued by the leader).
    Expire {
        /// The session.
        session: SessionId,
    },
    /// Lock a resource (committed).
    Acquire {
        /// The worker.
        worker: WorkerId,
        /// The resource.
        resource: u64,
    },
    /// Mark a task executed (committed).
    Mark {
        /// The worker.
        worker: WorkerId,
        /// The task.
        task: u64,
        /// The revision it ran with.
        rev: u64,
    },
    /// Unlock a resource (committed).
    Release {
        /// The worker.
        worker: WorkerId,
        /// The resource.
        resource: u64,
    },
    /// The next task from the queue (a read at the leader).
    Pick {
        /// The worker.
        worker: WorkerId,
    },
    /// Whether a task was executed (a read at the leader).
    Check {
        /// The task.
        task: u64,
    },
    /// Keep a session alive (a read at the leader).
    KeepAlive,
}

impl OpKind {
    /// Whether the operation is a committed entry (a consensus instance).
    pub fn is_write(self) -> bool {
        !matches!(self, OpKind::Pick { .. } | OpKind::Check { .. } | OpKind::KeepAlive)
    }
}

/// The service's answer to an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Applied.
    Done,
    /// The lock is yours, with this revision.
    Granted(u64),
    /// You wait in the lock's queue; a grant will follow.
    Queued,
    /// Your task.
    Task(u64),
    /// No task now; one will be handed out.
    Parked,
    /// The task has not been executed.
    NotExecuted,
    /// The task has been executed.
    Executed,
    /// I am not the leader: ask again.
    NotLeader,
    /// Your session expired.
    Expired,
}

/// One message leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    /// Requester → leader.
    Request(OpRef),
    /// Leader → voter: replicate the operation's entry.
    Append {
        /// The operation.
        op: OpRef,
        /// The replication round.
        round: u32,
    },
    /// Voter → leader: the entry is stored.
    Ack {
        /// The operation.
        op: OpRef,
        /// The replication round.
        round: u32,
    },
    /// Leader → requester.
    Reply {
        /// The operation.
        op: OpRef,
        /// The answer.
        answer: Answer,
    },
    /// Leader → a waiter: the lock it waited for is its now.
    Grant {
        /// The waiter.
        worker: WorkerId,
        /// Its session.
        session: SessionId,
        /// The resource.
        resource: u64,
        /// The fencing revision.
        rev: u64,
    },
    /// Leader → a parked worker: a task for it.
    Handout {
        /// The worker.
        worker: WorkerId,
        /// Its session.
        session: SessionId,
        /// The task.
        task: u64,
    },
}

/// A baseline event in the simulator's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockEv {
    /// A message leg arrives at `to` (a node, or [`CLIENT`]).
    Leg {
        /// Sender.
        from: u32,
        /// Receiver.
        to: u32,
        /// What.
        msg: Msg,
    },
    /// An operation's answer is overdue: ask the leader again.
    Retry {
        /// The operation.
        op: OpRef,
        /// Which send this timer belongs to.
        attempt: u32,
    },
    /// A node's worker process keeps its session alive.
    Renew {
        /// The node.
        node: u32,
        /// Its process's life.
        life: u32,
    },
    /// The leader checks whether a session has expired.
    SessionCheck {
        /// The session.
        session: SessionId,
    },
    /// An execution ends.
    ExecDone {
        /// The worker.
        worker: WorkerId,
        /// Its place in the trace.
        exec: usize,
    },
}

/// The simulator, as the baseline sees it.
pub trait Io {
    /// True time, µs.
    fn now(&self) -> u64;
    /// Nodes in the plan.
    fn node_count(&self) -> usize;
    /// Whether the node's engine runs.
    fn engine_running(&self, node: u32) -> bool;
    /// Whether the node is paused.
    fn paused(&self, node: u32) -> bool;
    /// Whether the node's engine leads the epoch store's Raft group.
    fn is_leader(&self, node: u32) -> bool;
    /// Whether the node's engine is a voter of the epoch store.
    fn is_voter(&self, node: u32) -> bool;
    /// Sends one leg between two different endpoints: the simulator delivers
    /// [`LockEv::Leg`] after the link's delay (lost copies retransmitted), or
    /// drops it at a partition.
    fn send(&mut self, from: u32, to: u32, msg: Msg);
    /// Schedules an event.
    fn schedule(&mut self, at: u64, ev: LockEv);
    /// Task `task`'s resource.
    fn resource_of(&self, task: u64) -> u64;
    /// How long task `task` runs, true µs.
    fn exec_us(&self, task: u64) -> u64;
    /// Task `task`'s enqueue committed: it is acknowledged.
    fn acknowledge(&mut self, task: u64);
    /// Task `task`'s executed mark committed, naming `token`.
    fn complete(&mut self, task: u64, token: Token);
    /// An execution starts: its place in the trace.
    fn exec_start(&mut self, record: ExecRecord) -> usize;
    /// An execution ends now.
    fn exec_end(&mut self, exec: usize);
    /// An entry committed: the service's consensus instances so far.
    fn committed(&mut self, instances: u64);
}

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

/// What the baseline counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockCounts {
    /// Committed enqueues (consensus instances).
    pub enqueue: u64,
    /// Committed lock acquisitions (consensus instances).
    pub acquire: u64,
    /// Committed "executed" marks (consensus instances).
    pub mark: u64,
    /// Committed lock releases (consensus instances).
    pub release: u64,
    /// Committed session opens, closes and expiries (consensus instances).
    pub session: u64,
    /// Picks answered by the leader (reads).
    pub picks: u64,
    /// Task-state re-checks answered by the leader (reads).
    pub rechecks: u64,
    /// Session keepalives answered by the leader (reads).
    pub keepalives: u64,
    /// Message legs between distinct endpoints: requests, appends, acks,
    /// answers, grant and hand-out notifications.
    pub messages: u64,
    /// Requests answered `NotLeader`.
    pub not_leader: u64,
    /// Requests sent again after the timeout.
    pub retries: u64,
    /// Replication rounds abandoned (leadership moved before commit).
    pub rounds_abandoned: u64,
    /// Sessions expired by the leader.
    pub sessions_expired: u64,
    /// Locks passed to a waiter by a release or an expiry.
    pub handovers: u64,
    /// Waiting workers that asked again after their process's connection
    /// to the leader broke or the leader changed (a watch resuming).
    pub resyncs: u64,
}

impl LockCounts {
    /// Committed entries of the lock service: its consensus instances.
    pub fn consensus(&self) -> u64 {
        self.enqueue + self.acquire + self.mark + self.release + self.session
    }
}

// ---- the replicated state -------------------------------------------------

/// A task's state at the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Unknown,
    Queued,
    Picked(WorkerId),
    Executed,
}

/// A resource's lock.
#[derive(Debug, Clone, Default)]
struct Lock {
    holder: Option<WorkerId>,
    /// The last revision granted.
    rev: u64,
    waiters: VecDeque<WorkerId>,
}

/// A worker, as the service knows it.
#[derive(Debug, Clone, Copy)]
struct SvcWorker {
    /// The session of its latest operation.
    session: SessionId,
    holding: Option<u64>,
    waiting: Option<u64>,
    parked: bool,
    picked: Option<u64>,
}

/// A session at the service.
#[derive(Debug, Clone, Copy)]
struct Session {
    node: u32,
    /// Its open entry applied (a retried open does not reopen it).
    opened: bool,
    alive: bool,
    /// Expires at (true µs) unless kept alive.
    deadline: u64,
}

/// A consequence of applying an entry: a notification from the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The lock of `resource` passed to `worker`.
    Grant {
        /// The new holder.
        worker: WorkerId,
        /// Its session.
        session: SessionId,
        /// The resource.
        resource: u64,
        /// The revision.
        rev: u64,
    },
    /// `task` was handed to the parked `worker`.
    Handout {
        /// The worker.
        worker: WorkerId,
        /// Its session.
        session: SessionId,
        /// The task.
        task: u64,
    },
}

/// The lock service's replicated state: the durable queue, the locks with
/// their FIFO waiters and fencing revisions, the sessions. Applying an
/// operation is deterministic; [`Baseline`] decides when an entry commits.
#[derive(Debug, Default)]
pub struct LockService {
    queue: VecDeque<u64>,
    tasks: Vec<TaskState>,
    locks: Vec<Lock>,
    workers: Vec<SvcWorker>,
    /// Workers by node, over every life.
    node_workers: Vec<Vec<WorkerId>>,
    parked: VecDeque<WorkerId>,
    sessions: Vec<Session>,
    ttl_us: u64,
}

impl LockService {
    /// An empty service whose sessions last `ttl_us` without a keepalive.
    pub fn new(ttl_us: u64) -> LockService {
        LockService { ttl_us, ..LockService::default() }
    }

    /// Registers a worker of `node`.
    pub fn add_worker(&mut self, node: u32) -> WorkerId {
        let id = self.workers.len() as WorkerId;
        self.workers.push(SvcWorker { session: u32::MAX, holding: None, waiting: None, parked: false, picked: None });
        let n = node as usize;
        if self.node_workers.len() <= n {
            self.node_workers.resize_with(n + 1, Vec::new);
        }
        self.node_workers[n].push(id);
        id
    }

    /// Registers a session of `node` (not open until its entry applies).
    pub fn add_session(&mut self, node: u32) -> SessionId {
        self.sessions.push(Session { node, opened: false, alive: false, deadline: 0 });
        (self.sessions.len() - 1) as SessionId
    }

    /// Whether `session` is open.
    pub fn session_alive(&self, session: SessionId) -> bool {
        self.sessions.get(session as usize).is_some_and(|s| s.alive)
    }

    /// When `session` expires unless kept alive.
    pub fn session_deadline(&self, session: SessionId) -> Option<u64> {
        self.sessions.get(session as usize).filter(|s| s.alive).map(|s| s.deadline)
    }

    /// A new leader gives every open session one more lifetime.
    pub fn extend_sessions(&mut self, now: u64) {
        let ttl = self.ttl_us;
        for s in self.sessions.iter_mut().filter(|s| s.alive) {
            s.deadline = s.deadline.max(now + ttl);
        }
    }

    /// The lock's last revision and holder.
    pub fn lock(&self, resource: u64) -> (u64, Option<WorkerId>) {
        self.locks.get(resource as usize).map_or((0, None), |l| (l.rev, l.holder))
    }

    /// The lock's waiters, in grant order.
    pub fn waiters(&self, resource: u64) -> Vec<WorkerId> {
        self.locks.get(resource as usize).map_or(Vec::new(), |l| l.waiters.iter().copied().collect())
    }

    /// Tasks waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn task(&self, k: u64) -> TaskState {
        self.tasks.get(k as usize).copied().unwrap_or(TaskState::Unknown)
    }

    fn set_task(&mut self, k: u64, state: TaskState) {
        let i = k as usize;
        if self.tasks.len() <= i {
            self.tasks.resize(i + 1, TaskState::Unknown);
        }
        self.tasks[i] = state;
    }

    fn lock_mut(&mut self, resource: u64) -> &mut Lock {
        let i = resource as usize;
        if self.locks.len() <= i {
            self.locks.resize_with(i + 1, Lock::default);
        }
        &mut self.locks[i]
    }

    /// The answer an operation gets without a new entry: a read, a refusal
    /// (its session is gone), or a write that already applied (a retry);
    /// `None`: the write must be replicated. Reads change the cursor state
    /// (a pick takes a task), with effects into `effects`.
    pub fn answer_without_entry(&mut self, kind: OpKind, session: SessionId, now: u64) -> Option<Answer> {
        let needs_session = !matches!(kind, OpKind::Enqueue { .. } | OpKind::Open { .. } | OpKind::Expire { .. });
        if needs_session && !self.session_alive(session) {
            return Some(Answer::Expired);
        }
        match kind {
            OpKind::Enqueue { task } => (self.task(task) != TaskState::Unknown).then_some(Answer::Done),
            OpKind::Open { .. } => self.sessions.get(session as usize).filter(|s| s.opened).map(|_| Answer::Done),
            OpKind::Close => None,
            OpKind::Expire { session: s } => (!self.session_alive(s)).then_some(Answer::Done),
            OpKind::Acquire { worker, resource } => {
                let held = self.locks.get(resource as usize).and_then(|l| (l.holder == Some(worker)).then_some(l.rev));
                match held {
                    Some(rev) => Some(Answer::Granted(rev)),
                    None => (self.workers[worker as usize].waiting == Some(resource)).then_some(Answer::Queued),
                }
            }
            OpKind::Mark { task, .. } => (self.task(task) == TaskState::Executed).then_some(Answer::Done),
            OpKind::Release { worker, resource } => {
                (self.locks.get(resource as usize).is_none_or(|l| l.holder != Some(worker))).then_some(Answer::Done)
            }
            OpKind::Pick { worker } => Some(self.pick(worker, session)),
            OpKind::Check { task } => {
                Some(if self.task(task) == TaskState::Executed { Answer::Executed } else { Answer::NotExecuted })
            }
            OpKind::KeepAlive => {
                let s = &mut self.sessions[session as usize];
                s.deadline = s.deadline.max(now + self.ttl_us);
                Some(Answer::Done)
            }
        }
    }

    fn pick(&mut self, worker: WorkerId, session: SessionId) -> Answer {
        let i = worker as usize;
        self.workers[i].session = session;
        if let Some(k) = self.workers[i].picked
            && self.task(k) == TaskState::Picked(worker)
        {
            return Answer::Task(k);
        }
        if self.workers[i].parked {
            return Answer::Parked;
        }
        match self.queue.pop_front() {
            Some(k) => {
                self.workers[i].picked = Some(k);
                self.set_task(k, TaskState::Picked(worker));
                Answer::Task(k)
            }
            None => {
                self.workers[i].parked = true;
                self.parked.push_back(worker);
                Answer::Parked
            }
        }
    }

    /// Applies a committed entry at `now`: its answer, with notifications
    /// into `effects`.
    pub fn apply(&mut self, kind: OpKind, session: SessionId, now: u64, effects: &mut Vec<Effect>) -> Answer {
        let needs_session = !matches!(kind, OpKind::Enqueue { .. } | OpKind::Open { .. } | OpKind::Expire { .. });
        if needs_session && !self.session_alive(session) {
            return Answer::Expired;
        }
        match kind {
            OpKind::Enqueue { task } => {
                if self.task(task) == TaskState::Unknown {
                    self.set_task(task, TaskState::Queued);
                    self.queue.push_back(task);
                    self.dispatch(effects);
                }
                Answer::Done
            }
            OpKind::Open { .. } => {
                let ttl = self.ttl_us;
                let s = &mut self.sessions[session as usize];
                if !s.opened {
                    s.opened = true;
                    s.alive = true;
                    s.deadline = now + ttl;
                }
                Answer::Done
            }
            OpKind::Close => {
                self.end_session(session, effects);
                Answer::Done
            }
            OpKind::Expire { session: s } => {
                self.end_session(s, effects);
                Answer::Done
            }
            OpKind::Acquire { worker, resource } => {
                let i = worker as usize;
                self.workers[i].session = session;
                let lock = self.lock_mut(resource);
                let (holder, rev) = (lock.holder, lock.rev);
                if holder == Some(worker) {
                    return Answer::Granted(rev);
                }
                if holder.is_none() {
                    lock.holder = Some(worker);
                    lock.rev += 1;
                    self.workers[i].holding = Some(resource);
                    Answer::Granted(rev + 1)
                } else {
                    if self.workers[i].waiting != Some(resource) {
                        self.lock_mut(resource).waiters.push_back(worker);
                        self.workers[i].waiting = Some(resource);
                    }
                    Answer::Queued
                }
            }
            OpKind::Mark { worker, task, .. } => {
                self.set_task(task, TaskState::Executed);
                let w = &mut self.workers[worker as usize];
                if w.picked == Some(task) {
                    w.picked = None;
                }
                Answer::Done
            }
            OpKind::Release { worker, resource } => {
                let w = &mut self.workers[worker as usize];
                w.picked = None;
                if self.locks.get(resource as usize).is_some_and(|l| l.holder == Some(worker)) {
                    self.workers[worker as usize].holding = None;
                    self.lock_mut(resource).holder = None;
                    self.grant_next(resource, effects);
                }
                Answer::Done
            }
            OpKind::Pick { .. } | OpKind::Check { .. } | OpKind::KeepAlive => {
                self.answer_without_entry(kind, session, now).expect("a read answers")
            }
        }
    }

    /// Passes a free lock to its first waiter whose session is open.
    fn grant_next(&mut self, resource: u64, effects: &mut Vec<Effect>) {
        while let Some(w) = self.locks[resource as usize].waiters.pop_front() {
            let sw = &mut self.workers[w as usize];
            sw.waiting = None;
            let session = sw.session;
            if !self.session_alive(session) {
                continue;
            }
            self.workers[w as usize].holding = Some(resource);
            let lock = &mut self.locks[resource as usize];
            lock.holder = Some(w);
            lock.rev += 1;
            effects.push(Effect::Grant { worker: w, session, resource, rev: lock.rev });
            return;
        }
    }

    /// Hands queued tasks to parked workers, in order.
    fn dispatch(&mut self, effects: &mut Vec<Effect>) {
        while !self.queue.is_empty() {
            let Some(w) = self.parked.pop_front() else { return };
            let sw = &mut self.workers[w as usize];
            sw.parked = false;
            let session = sw.session;
            if !self.session_alive(session) {
                continue;
            }
            let k = self.queue.pop_front().expect("not empty");
            self.workers[w as usize].picked = Some(k);
            self.set_task(k, TaskState::Picked(w));
            effects.push(Effect::Handout { worker: w, session, task: k });
        }
    }

    /// A session ends (closed or expired): its locks pass on, its waits and
    /// parked picks go, its picked unexecuted tasks go back to the head of
    /// the queue.
    fn end_session(&mut self, session: SessionId, effects: &mut Vec<Effect>) {
        let Some(s) = self.sessions.get_mut(session as usize).filter(|s| s.alive) else { return };
        s.alive = false;
        let node = s.node as usize;
        let workers = std::mem::take(&mut self.node_workers[node]);
        let mut requeue = Vec::new();
        for &w in &workers {
            let sw = self.workers[w as usize];
            if sw.session != session {
                continue;
            }
            if let Some(r) = sw.waiting {
                self.locks[r as usize].waiters.retain(|&x| x != w);
                self.workers[w as usize].waiting = None;
            }
            if let Some(k) = sw.picked {
                if self.task(k) == TaskState::Picked(w) {
                    requeue.push(k);
                }
                self.workers[w as usize].picked = None;
            }
            if sw.parked {
                self.workers[w as usize].parked = false;
            }
        }
        for &w in &workers {
            let sw = self.workers[w as usize];
            if sw.session != session {
                continue;
            }
            if let Some(r) = sw.holding {
                self.workers[w as usize].holding = None;
                self.locks[r as usize].holder = None;
                self.grant_next(r, effects);
            }
        }
        self.node_workers[node] = workers;
        let sessions = &self.sessions;
        let workers = &self.workers;
        self.parked.retain(|&w| sessions[workers[w as usize].session as usize].alive);
        // Back at the head, in their original order.
        for &k in requeue.iter().rev() {
            self.set_task(k, TaskState::Queued);
            self.queue.push_front(k);
        }
        self.dispatch(effects);
    }
}

// ---- the processes --------------------------------------------------------

/// Who an operation answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Client(u64),
    Worker(WorkerId),
    Proc { node: u32, life: u32 },
    Leader,
}

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

/// Where a worker is in its loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WState {
    /// Its process is gone.
    Dead,
    /// Waits for a session (or has drained).
    Waiting,
    Picking,
    Parked,
    Acquiring {
        task: u64,
    },
    Queued {
        task: u64,
    },
    Checking {
        task: u64,
        rev: u64,
    },
    /// Holds the lock; waits for its lease to cover the execution.
    Holding {
        task: u64,
        rev: u64,
    },
    Executing {
        task: u64,
        rev: u64,
        exec: usize,
    },
    Marking {
        task: u64,
        rev: u64,
    },
    Releasing,
}

#[derive(Debug, Clone, Copy)]
struct Worker {
    node: u32,
    life: u32,
    session: SessionId,
    state: WState,
    pending: Option<OpRef>,
}

/// A node's worker process.
#[derive(Debug, Clone, Default)]
struct Proc {
    life: u32,
    alive: bool,
    draining: bool,
    closing: bool,
    session: SessionId,
    open: bool,
    /// Its lease, as it knows it: the send of the last answered keepalive
    /// plus the session lifetime (true µs).
    lease_end: u64,
    workers: Vec<WorkerId>,
    session_op: Option<OpRef>,
    keepalive: Option<OpRef>,
    /// A keepalive went unanswered (its connection to the leader broke).
    keepalive_failed: bool,
    /// The leader that answered the last keepalive.
    keepalive_leader: Option<u32>,
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

    // ---- node processes -----------------------------------------------------

    /// Node `node` starts (formed, joining or restarting): a new worker
    /// process, with `workers_per_node` workers, opens a session.
    pub fn node_started(&mut self, node: usize, io: &mut dyn Io) {
        if self.procs[node].alive {
            // A leaving process still draining is replaced, as if it crashed.
            self.node_crashed(node, io);
        }
        self.voters_dirty = true;
        let n = node as u32;
        let life = self.procs[node].life + 1;
        let session = self.svc.add_session(n);
        let mut ids = Vec::with_capacity(self.cfg.workers_per_node);
        for _ in 0..self.cfg.workers_per_node {
            let id = self.svc.add_worker(n);
            debug_assert_eq!(id as usize, self.workers.len());
            self.workers.push(Worker { node: n, life, session, state: WState::Waiting, pending: None });
            ids.push(id);
        }
        self.procs[node] = Proc {
            life,
            alive: true,
            draining: false,
            closing: false,
            session,
            open: false,
            lease_end: 0,
            workers: ids,
            session_op: None,
            keepalive: None,
            keepalive_failed: false,
            keepalive_leader: None,
        };
        let op = self.ops.alloc(OpKind::Open { node: n }, Origin::Proc { node: n, life }, n, session);
        self.procs[node].session_op = Some(op);
        self.send_request(op, false, io);
        io.schedule(io.now() + self.cfg.keepalive_us, LockEv::Renew { node: n, life });
    }

    /// Node `node` crashes: its workers die with their executions.
    pub fn node_crashed(&mut self, node: usize, io: &mut dyn Io) {
        self.voters_dirty = true;
        let p = &mut self.procs[node];
        if !p.alive {
            return;
        }
        p.alive = false;
        for op in [p.session_op.take(), p.keepalive.take()].into_iter().flatten() {
            self.ops.release(op);
        }
        let ids = std::mem::take(&mut self.procs[node].workers);
        for &w in &ids {
            let worker = &mut self.workers[w as usize];
            if let WState::Executing { exec, .. } = worker.state {
                io.exec_end(exec);
            }
            worker.state = WState::Dead;
            if let Some(op) = worker.pending.take() {
                self.ops.release(op);
            }
        }
        self.procs[node].workers = ids;
    }

    /// Node `node`'s engine stopped (it left, or crashed): the voters may
    /// have changed. Its worker process lives on while it drains.
    pub fn engine_stopped(&mut self) {
        self.voters_dirty = true;
    }

    /// Node `node` leaves gracefully: its workers stop picking; running
    /// executions finish, mark and release; then it closes its session.
    pub fn node_leaving(&mut self, node: usize, io: &mut dyn Io) {
        let p = &mut self.procs[node];
        if !p.alive || p.draining {
            return;
        }
        p.draining = true;
        let ids = std::mem::take(&mut self.procs[node].workers);
        for &w in &ids {
            match self.workers[w as usize].state {
                WState::Executing { .. } | WState::Marking { .. } | WState::Releasing => {}
                _ => self.abandon(w),
            }
        }
        self.procs[node].workers = ids;
        self.maybe_close(node, io);
    }

    fn abandon(&mut self, w: WorkerId) {
        let worker = &mut self.workers[w as usize];
        if matches!(worker.state, WState::Executing { .. } | WState::Dead) {
            return;
        }
        worker.state = WState::Waiting;
        if let Some(op) = worker.pending.take() {
            self.ops.release(op);
        }
    }

    fn maybe_close(&mut self, node: usize, io: &mut dyn Io) {
        let p = &self.procs[node];
        if !p.alive || !p.draining || p.closing {
            return;
        }
        if !p.workers.iter().all(|&w| self.workers[w as usize].state == WState::Waiting) {
            return;
        }
        if !p.open {
            // Its session is gone already: nothing to close.
            self.procs[node].alive = false;
            return;
        }
        let n = node as u32;
        let (life, session) = (p.life, p.session);
        if let Some(op) = self.procs[node].keepalive.take() {
            self.ops.release(op);
        }
        let op = self.ops.alloc(OpKind::Close, Origin::Proc { node: n, life }, n, session);
        let p = &mut self.procs[node];
        p.closing = true;
        p.session_op = Some(op);
        self.send_request(op, false, io);
    }

    /// The process lost its session: open a new one; every worker not
    /// executing starts over.
    fn new_session(&mut self, node: usize, io: &mut dyn Io) {
        let n = node as u32;
        let p = &mut self.procs[node];
        p.open = false;
        for op in [p.session_op.take(), p.keepalive.take()].into_iter().flatten() {
            self.ops.release(op);
        }
        let ids = std::mem::take(&mut self.procs[node].workers);
        for &w in &ids {
            self.abandon(w);
        }
        self.procs[node].workers = ids;
        if self.procs[node].draining {
            self.procs[node].closing = false;
            self.maybe_close(node, io);
            return;
        }
        let session = self.svc.add_session(n);
        let life = self.procs[node].life;
        self.procs[node].session = session;
        let op = self.ops.alloc(OpKind::Open { node: n }, Origin::Proc { node: n, life }, n, session);
        self.procs[node].session_op = Some(op);
        self.send_request(op, false, io);
    }

    fn on_renew(&mut self, node: u32, life: u32, io: &mut dyn Io) {
        let p = &self.procs[node as usize];
        if !p.alive || p.life != life {
            return;
        }
        if p.open && !p.closing && p.keepalive.is_none() {
            let op = self.ops.alloc(OpKind::KeepAlive, Origin::Proc { node, life }, node, p.session);
            self.procs[node as usize].keepalive = Some(op);
            self.send_request(op, false, io);
        }
        io.schedule(io.now() + self.cfg.keepalive_us, LockEv::Renew { node, life });
    }

    fn proc_answer(&mut self, node: u32, leader: u32, r: OpRef, answer: Answer, io: &mut dyn Io) {
        let op = *self.ops.get(r).expect("checked by the caller");
        let n = node as usize;
        self.ops.release(r);
        let p = &mut self.procs[n];
        match op.kind {
            OpKind::Open { .. } if p.session_op == Some(r) => {
                p.session_op = None;
                p.open = true;
                p.lease_end = op.sent_at + self.cfg.session_ttl_us;
                let ids = p.workers.clone();
                for w in ids {
                    if self.workers[w as usize].state == WState::Waiting {
                        self.next_loop(w, io);
                    }
                }
            }
            OpKind::Close if p.session_op == Some(r) => {
                p.session_op = None;
                p.alive = false;
                p.open = false;
            }
            OpKind::KeepAlive if p.keepalive == Some(r) => {
                p.keepalive = None;
                if answer == Answer::Expired {
                    if op.session == p.session {
                        self.new_session(n, io);
                    }
                    return;
                }
                p.lease_end = p.lease_end.max(op.sent_at + self.cfg.session_ttl_us);
                // Notifications (grants, hand-outs) travel on the connection
                // to the leader; when it broke, or the leader changed, the
                // process resyncs its waiting workers (as a watch resumes):
                // each asks again, and the service answers from its state.
                let resync = p.keepalive_failed || p.keepalive_leader.is_some_and(|l| l != leader);
                p.keepalive_failed = false;
                p.keepalive_leader = Some(leader);
                let ids = p.workers.clone();
                for w in ids {
                    match self.workers[w as usize].state {
                        WState::Holding { .. } => self.try_execute(w, io),
                        WState::Parked if resync => {
                            self.counts.resyncs += 1;
                            self.workers[w as usize].state = WState::Picking;
                            self.worker_op(w, OpKind::Pick { worker: w }, io);
                        }
                        WState::Queued { task } if resync => {
                            self.counts.resyncs += 1;
                            self.acquire(w, task, io);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    // ---- workers ------------------------------------------------------------

    /// The worker's process is the live one it belongs to.
    fn worker_alive(&self, w: WorkerId) -> bool {
        let worker = &self.workers[w as usize];
        let p = &self.procs[worker.node as usize];
        worker.state != WState::Dead && p.alive && p.life == worker.life
    }

    fn worker_op(&mut self, w: WorkerId, kind: OpKind, io: &mut dyn Io) {
        let worker = self.workers[w as usize];
        let op = self.ops.alloc(kind, Origin::Worker(w), worker.node, worker.session);
        self.workers[w as usize].pending = Some(op);
        self.send_request(op, false, io);
    }

    /// The worker starts its loop again: pick.
    fn next_loop(&mut self, w: WorkerId, io: &mut dyn Io) {
        let node = self.workers[w as usize].node as usize;
        let p = &self.procs[node];
        if p.draining || !p.open {
            self.workers[w as usize].state = WState::Waiting;
            self.maybe_close(node, io);
            return;
        }
        let session = p.session;
        let worker = &mut self.workers[w as usize];
        worker.session = session;
        worker.state = WState::Picking;
        self.worker_op(w, OpKind::Pick { worker: w }, io);
    }

    fn acquire(&mut self, w: WorkerId, task: u64, io: &mut dyn Io) {
        self.workers[w as usize].state = WState::Acquiring { task };
        let resource = io.resource_of(task);
        self.worker_op(w, OpKind::Acquire { worker: w, resource }, io);
    }

    fn check(&mut self, w: WorkerId, task: u64, rev: u64, io: &mut dyn Io) {
        self.workers[w as usize].state = WState::Checking { task, rev };
        self.worker_op(w, OpKind::Check { task }, io);
    }

    fn release(&mut self, w: WorkerId, task: u64, io: &mut dyn Io) {
        self.workers[w as usize].state = WState::Releasing;
        let resource = io.resource_of(task);
        self.worker_op(w, OpKind::Release { worker: w, resource }, io);
    }

    /// Executes the held task if the session's lease covers it.
    fn try_execute(&mut self, w: WorkerId, io: &mut dyn Io) {
        let WState::Holding { task, rev } = self.workers[w as usize].state else { return };
        let node = self.workers[w as usize].node;
        let now = io.now();
        let exec_us = io.exec_us(task);
        if now + exec_us > self.procs[node as usize].lease_end {
            // Waits for the next keepalive's answer.
            return;
        }
        let i = task as usize;
        if self.executions.len() <= i {
            self.executions.resize(i + 1, 0);
        }
        self.executions[i] += 1;
        let record = ExecRecord {
            node: node as usize,
            task,
            resource: io.resource_of(task),
            token: Token { epoch: 1, seq: rev },
            attempt: self.executions[i],
            start: now,
            end: None,
        };
        let exec = io.exec_start(record);
        self.workers[w as usize].state = WState::Executing { task, rev, exec };
        io.schedule(now + exec_us, LockEv::ExecDone { worker: w, exec });
    }

    fn on_exec_done(&mut self, w: WorkerId, exec: usize, io: &mut dyn Io) {
        if !self.worker_alive(w) {
            return;
        }
        let WState::Executing { task, rev, exec: e } = self.workers[w as usize].state else { return };
        if e != exec {
            return;
        }
        io.exec_end(exec);
        self.workers[w as usize].state = WState::Marking { task, rev };
        self.worker_op(w, OpKind::Mark { worker: w, task, rev }, io);
    }

    fn worker_answer(&mut self, w: WorkerId, r: OpRef, answer: Answer, io: &mut dyn Io) {
        self.ops.release(r);
        self.workers[w as usize].pending = None;
        if answer == Answer::Expired {
            let worker = self.workers[w as usize];
            let node = worker.node as usize;
            let p = &self.procs[node];
            if p.session == worker.session && p.open {
                self.new_session(node, io);
            } else {
                self.abandon(w);
                if self.procs[node].open {
                    self.next_loop(w, io);
                } else {
                    self.maybe_close(node, io);
                }
            }
            return;
        }
        match (self.workers[w as usize].state, answer) {
            (WState::Picking, Answer::Task(k)) => self.acquire(w, k, io),
            (WState::Picking, Answer::Parked) => self.workers[w as usize].state = WState::Parked,
            (WState::Acquiring { task }, Answer::Granted(rev)) => self.check(w, task, rev, io),
            (WState::Acquiring { task }, Answer::Queued) => self.workers[w as usize].state = WState::Queued { task },
            (WState::Checking { task, rev }, Answer::NotExecuted) => {
                self.workers[w as usize].state = WState::Holding { task, rev };
                self.try_execute(w, io);
            }
            (WState::Checking { task, .. }, Answer::Executed) => self.release(w, task, io),
            (WState::Marking { task, .. }, Answer::Done) => self.release(w, task, io),
            (WState::Releasing, Answer::Done) => self.next_loop(w, io),
            _ => {}
        }
    }

    fn on_grant(&mut self, w: WorkerId, session: SessionId, resource: u64, rev: u64, io: &mut dyn Io) {
        if !self.worker_alive(w) || self.workers[w as usize].session != session {
            return;
        }
        let task = match self.workers[w as usize].state {
            WState::Queued { task } | WState::Acquiring { task } => task,
            _ => return,
        };
        if io.resource_of(task) != resource {
            return;
        }
        // The grant may overtake the answer "queued".
        if let Some(op) = self.workers[w as usize].pending.take() {
            self.ops.release(op);
        }
        self.check(w, task, rev, io);
    }

    fn on_handout(&mut self, w: WorkerId, session: SessionId, task: u64, io: &mut dyn Io) {
        if !self.worker_alive(w) || self.workers[w as usize].session != session {
            return;
        }
        match self.workers[w as usize].state {
            WState::Parked => self.acquire(w, task, io),
            WState::Picking => {
                // The hand-out overtook the answer "parked".
                if let Some(op) = self.workers[w as usize].pending.take() {
                    self.ops.release(op);
                }
                self.acquire(w, task, io);
            }
            _ => {}
        }
    }

    // ---- the service --------------------------------------------------------

    /// The node the service runs at: the cached leader while its engine
    /// still leads, runs and is not paused; otherwise (or when `force`d by
    /// a timed-out request, which may have gone to a stale leader) the first
    /// such node other than the cached one. A new leader starts a new term.
    fn leader(&mut self, io: &dyn Io, force: bool) -> Option<u32> {
        let usable = |n: u32| io.engine_running(n) && !io.paused(n) && io.is_leader(n);
        if let Some(l) = self.leader
            && !force
            && usable(l)
        {
            return Some(l);
        }
        let mut other = None;
        let mut cached_ok = false;
        for n in 0..io.node_count() as u32 {
            if usable(n) {
                if Some(n) == self.leader {
                    cached_ok = true;
                } else if other.is_none() {
                    other = Some(n);
                }
            }
        }
        let chosen = if force { other.or(self.leader.filter(|_| cached_ok)) } else { other };
        let chosen = if !force && cached_ok { self.leader } else { chosen };
        if chosen != self.leader {
            self.leader = chosen;
            if chosen.is_some() {
                self.term += 1;
                self.voters_dirty = true;
                self.svc.extend_sessions(io.now());
            }
        }
        chosen
    }

    fn refresh_voters(&mut self, io: &dyn Io) {
        if self.voters_dirty {
            self.voters_dirty = false;
            self.voters.clear();
            self.voters.extend((0..io.node_count() as u32).filter(|&n| io.engine_running(n) && io.is_voter(n)));
        }
    }

    /// Sends one leg (a node's legs to itself are local: no message).
    fn leg(&mut self, from: u32, to: u32, msg: Msg, io: &mut dyn Io) {
        if from == to {
            io.schedule(io.now(), LockEv::Leg { from, to, msg });
        } else {
            self.counts.messages += 1;
            io.send(from, to, msg);
        }
    }

    /// Sends (or sends again) an operation's request to the leader, with a
    /// timer to retry.
    fn send_request(&mut self, r: OpRef, force: bool, io: &mut dyn Io) {
        let leader = self.leader(io, force);
        let now = io.now();
        let timeout = self.cfg.op_timeout_us;
        let Some(op) = self.ops.get_mut(r) else { return };
        op.attempt += 1;
        op.sent_at = now;
        let attempt = op.attempt;
        if op.origin == Origin::Leader {
            match leader {
                Some(l) => op.from = l,
                None => {
                    io.schedule(now + timeout, LockEv::Retry { op: r, attempt });
                    return;
                }
            }
        }
        let from = op.from;
        io.schedule(now + timeout, LockEv::Retry { op: r, attempt });
        if let Some(l) = leader {
            self.leg(from, l, Msg::Request(r), io);
        }
    }

    fn origin_alive(&self, origin: Origin) -> bool {
        match origin {
            Origin::Client(_) | Origin::Leader => true,
            Origin::Worker(w) => self.worker_alive(w),
            Origin::Proc { node, life } => {
                let p = &self.procs[node as usize];
                p.alive && p.life == life
            }
        }
    }

    fn on_retry(&mut self, r: OpRef, attempt: u32, io: &mut dyn Io) {
        let Some(op) = self.ops.get(r) else { return };
        if op.attempt != attempt {
            return;
        }
        if !self.origin_alive(op.origin) {
            self.ops.release(r);
            return;
        }
        self.counts.retries += 1;
        if let (OpKind::KeepAlive, Origin::Proc { node, .. }) = (op.kind, op.origin) {
            self.procs[node as usize].keepalive_failed = true;
        }
        self.send_request(r, true, io);
    }

    fn on_msg(&mut self, from: u32, to: u32, msg: Msg, io: &mut dyn Io) {
        match msg {
            Msg::Request(r) => self.on_request(to, r, io),
            Msg::Append { op, round } => {
                if io.engine_running(to) && io.is_voter(to) {
                    self.leg(to, from, Msg::Ack { op, round }, io);
                }
            }
            Msg::Ack { op, round } => self.on_ack(to, op, round, io),
            Msg::Reply { op, answer } => self.on_reply(from, to, op, answer, io),
            Msg::Grant { worker, session, resource, rev } => self.on_grant(worker, session, resource, rev, io),
            Msg::Handout { worker, session, task } => self.on_handout(worker, session, task, io),
        }
    }

    fn on_request(&mut self, at: u32, r: OpRef, io: &mut dyn Io) {
        let Some(&op) = self.ops.get(r) else { return };
        if !io.engine_running(at) {
            return;
        }
        if self.leader(io, false) != Some(at) {
            self.counts.not_leader += 1;
            self.leg(at, op.from, Msg::Reply { op: r, answer: Answer::NotLeader }, io);
            return;
        }
        if let Some(answer) = self.svc.answer_without_entry(op.kind, op.session, io.now()) {
            match op.kind {
                OpKind::Pick { .. } => self.counts.picks += 1,
                OpKind::Check { .. } => self.counts.rechecks += 1,
                OpKind::KeepAlive => self.counts.keepalives += 1,
                _ => {}
            }
            self.leg(at, op.from, Msg::Reply { op: r, answer }, io);
            return;
        }
        if op.replicating && op.term == self.term && op.leader == at {
            // A retry of an entry this leader is replicating.
            return;
        }
        self.refresh_voters(io);
        let majority = self.voters.len() / 2 + 1;
        let term = self.term;
        let op = self.ops.get_mut(r).expect("live");
        op.replicating = true;
        op.round += 1;
        op.term = term;
        op.leader = at;
        op.acks = 0;
        op.need = (majority - 1) as u16;
        let (round, need) = (op.round, op.need);
        for i in 0..self.voters.len() {
            let v = self.voters[i];
            if v != at {
                self.leg(at, v, Msg::Append { op: r, round }, io);
            }
        }
        if need == 0 {
            self.commit(at, r, io);
        }
    }

    fn on_ack(&mut self, at: u32, r: OpRef, round: u32, io: &mut dyn Io) {
        if !io.engine_running(at) {
            return;
        }
        let Some(op) = self.ops.get_mut(r) else { return };
        if !op.replicating || op.round != round || op.leader != at {
            return;
        }
        op.acks += 1;
        if op.acks >= op.need {
            self.commit(at, r, io);
        }
    }

    /// A majority stored the entry: it commits, applies, and its answer
    /// (and any grant or hand-out it causes) leaves the leader.
    fn commit(&mut self, at: u32, r: OpRef, io: &mut dyn Io) {
        let op = self.ops.get_mut(r).expect("live");
        op.replicating = false;
        let op = *op;
        if op.term != self.term || self.leader(io, false) != Some(at) {
            self.counts.rounds_abandoned += 1;
            return;
        }
        let now = io.now();
        let c = &mut self.counts;
        match op.kind {
            OpKind::Enqueue { .. } => c.enqueue += 1,
            OpKind::Acquire { .. } => c.acquire += 1,
            OpKind::Mark { .. } => c.mark += 1,
            OpKind::Release { .. } => c.release += 1,
            OpKind::Open { .. } | OpKind::Close | OpKind::Expire { .. } => c.session += 1,
            OpKind::Pick { .. } | OpKind::Check { .. } | OpKind::KeepAlive => {}
        }
        io.committed(self.counts.consensus());
        let mut effects = std::mem::take(&mut self.effects);
        let answer = self.svc.apply(op.kind, op.session, now, &mut effects);
        match (op.kind, answer) {
            (OpKind::Enqueue { task }, _) => io.acknowledge(task),
            (OpKind::Mark { task, rev, .. }, Answer::Done) => io.complete(task, Token { epoch: 1, seq: rev }),
            (OpKind::Open { .. }, Answer::Done) => {
                if let Some(deadline) = self.svc.session_deadline(op.session) {
                    io.schedule(deadline, LockEv::SessionCheck { session: op.session });
                }
            }
            (OpKind::Expire { .. }, _) => self.counts.sessions_expired += 1,
            _ => {}
        }
        for e in effects.drain(..) {
            match e {
                Effect::Grant { worker, session, resource, rev } => {
                    self.counts.handovers += 1;
                    let to = self.workers[worker as usize].node;
                    self.leg(at, to, Msg::Grant { worker, session, resource, rev }, io);
                }
                Effect::Handout { worker, session, task } => {
                    let to = self.workers[worker as usize].node;
                    self.leg(at, to, Msg::Handout { worker, session, task }, io);
                }
            }
        }
        self.effects = effects;
        let to = if op.origin == Origin::Leader { at } else { op.from };
        self.leg(at, to, Msg::Reply { op: r, answer }, io);
    }

    fn on_reply(&mut self, from: u32, at: u32, r: OpRef, answer: Answer, io: &mut dyn Io) {
        let Some(&op) = self.ops.get(r) else { return };
        if at != op.from {
            return;
        }
        if !self.origin_alive(op.origin) {
            self.ops.release(r);
            return;
        }
        if answer == Answer::NotLeader {
            self.send_request(r, false, io);
            return;
        }
        match op.origin {
            Origin::Client(_) | Origin::Leader => self.ops.release(r),
            Origin::Worker(w) => {
                if self.workers[w as usize].pending == Some(r) {
                    self.worker_answer(w, r, answer, io);
                } else {
                    self.ops.release(r);
                }
            }
            Origin::Proc { node, .. } => self.proc_answer(node, from, r, answer, io),
        }
    }

    fn on_session_check(&mut self, session: SessionId, io: &mut dyn Io) {
        let Some(deadline) = self.svc.session_deadline(session) else { return };
        let now = io.now();
        if deadline > now {
            io.schedule(deadline, LockEv::SessionCheck { session });
            return;
        }
        let i = session as usize;
        if self.expiring.len() <= i {
            self.expiring.resize(i + 1, None);
        }
        // One expiry in flight: an earlier one that has not committed by now
        // (its leader failed, its timer waited on a paused node) gives way.
        if let Some(old) = self.expiring[i].take() {
            self.ops.release(old);
        }
        let op = self.ops.alloc(OpKind::Expire { session }, Origin::Leader, 0, u32::MAX);
        self.expiring[i] = Some(op);
        self.send_request(op, false, io);
        // Checked again: the expiry may fail over a leader change, and a
        // new leader extends the session.
        io.schedule(now + self.cfg.op_timeout_us, LockEv::SessionCheck { session });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BinaryHeap;

    // ---- the replicated state alone ----------------------------------------

    fn service_with_session(workers: u32) -> (LockService, SessionId, Vec<WorkerId>) {
        let mut svc = LockService::new(5_000_000);
        let s = svc.add_session(0);
        let ids = (0..workers).map(|_| svc.add_worker(0)).collect();
        let mut fx = Vec::new();
        assert_eq!(svc.apply(OpKind::Open { node: 0 }, s, 0, &mut fx), Answer::Done);
        (svc, s, ids)
    }

    #[test]
    fn waiters_are_granted_in_fifo_order_with_increasing_revisions() {
        let (mut svc, s, w) = service_with_session(4);
        let mut fx = Vec::new();
        let acquire = |svc: &mut LockService, worker, fx: &mut Vec<Effect>| {
            svc.apply(OpKind::Acquire { worker, resource: 7 }, s, 0, fx)
        };
        assert_eq!(acquire(&mut svc, w[0], &mut fx), Answer::Granted(1));
        for &x in &w[1..] {
            assert_eq!(acquire(&mut svc, x, &mut fx), Answer::Queued);
        }
        assert_eq!(svc.waiters(7), vec![w[1], w[2], w[3]]);
        // A retried acquire is answered from the state.
        assert_eq!(svc.answer_without_entry(OpKind::Acquire { worker: w[2], resource: 7 }, s, 0), Some(Answer::Queued));
        let mut granted = Vec::new();
        for &holder in &w {
            fx.clear();
            svc.apply(OpKind::Release { worker: holder, resource: 7 }, s, 0, &mut fx);
            for e in &fx {
                if let Effect::Grant { worker, rev, resource, .. } = *e {
                    assert_eq!(resource, 7);
                    granted.push((worker, rev));
                }
            }
        }
        assert_eq!(granted, vec![(w[1], 2), (w[2], 3), (w[3], 4)]);
        assert_eq!(svc.lock(7), (4, None));
        // Another resource has its own revisions.
        assert_eq!(acquire(&mut svc, w[0], &mut fx), Answer::Granted(5));
        assert_eq!(svc.apply(OpKind::Acquire { worker: w[1], resource: 8 }, s, 0, &mut fx), Answer::Granted(1));
    }

    #[test]
    fn an_ended_session_passes_its_locks_on_and_requeues_its_picked_tasks() {
        let mut svc = LockService::new(5_000_000);
        let mut fx = Vec::new();
        let (a, b) = (svc.add_session(0), svc.add_session(1));
        let wa = svc.add_worker(0);
        let wb = svc.add_worker(1);
        svc.apply(OpKind::Open { node: 0 }, a, 0, &mut fx);
        svc.apply(OpKind::Open { node: 1 }, b, 0, &mut fx);
        for task in [10, 11] {
            svc.apply(OpKind::Enqueue { task }, u32::MAX, 0, &mut fx);
        }
        assert_eq!(svc.apply(OpKind::Pick { worker: wa }, a, 0, &mut fx), Answer::Task(10));
        assert_eq!(svc.apply(OpKind::Acquire { worker: wa, resource: 3 }, a, 0, &mut fx), Answer::Granted(1));
        assert_eq!(svc.apply(OpKind::Acquire { worker: wb, resource: 3 }, b, 0, &mut fx), Answer::Queued);
        fx.clear();
        svc.apply(OpKind::Expire { session: a }, u32::MAX, 0, &mut fx);
        assert_eq!(fx, vec![Effect::Grant { worker: wb, session: b, resource: 3, rev: 2 }]);
        // Its picked task is next again.
        assert_eq!(svc.apply(OpKind::Pick { worker: wb }, b, 0, &mut fx), Answer::Task(10));
        // Its later operations are refused.
        assert_eq!(svc.answer_without_entry(OpKind::Pick { worker: wa }, a, 0), Some(Answer::Expired));
    }

    // ---- the baseline over a tiny simulated network -------------------------

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
