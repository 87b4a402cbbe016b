//! The lock baseline's worker processes: one per running node, with
//! `workers_per_node` workers each looping pick → acquire → re-check →
//! execute → mark → release against the lock service, under the process's
//! session (opened, kept alive, closed when it leaves, replaced when it
//! expires).

use custody::engine::Token;

use super::{Answer, Baseline, Io, LockEv, OpKind, OpRef, Origin, SessionId, WorkerId};
use crate::trace::ExecRecord;

/// Where a worker is in its loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WState {
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

/// A worker of a node's process.
#[derive(Debug, Clone, Copy)]
pub(super) struct Worker {
    /// Its node.
    pub(super) node: u32,
    /// Its process's life.
    life: u32,
    session: SessionId,
    state: WState,
    /// The operation it waits on.
    pub(super) pending: Option<OpRef>,
}

/// A node's worker process.
#[derive(Debug, Clone, Default)]
pub(super) struct Proc {
    /// Bumped at each start of the node: a timer of an older life is stale.
    pub(super) life: u32,
    /// It runs (it has not crashed, nor finished closing after a leave).
    pub(super) alive: bool,
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
    pub(super) keepalive_failed: bool,
    /// The leader that answered the last keepalive.
    keepalive_leader: Option<u32>,
}

impl Baseline {
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

    pub(super) fn on_renew(&mut self, node: u32, life: u32, io: &mut dyn Io) {
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

    pub(super) fn proc_answer(&mut self, node: u32, leader: u32, r: OpRef, answer: Answer, io: &mut dyn Io) {
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
    pub(super) fn worker_alive(&self, w: WorkerId) -> bool {
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
            cancelled: false,
        };
        let exec = io.exec_start(record);
        self.workers[w as usize].state = WState::Executing { task, rev, exec };
        io.schedule(now + exec_us, LockEv::ExecDone { worker: w, exec });
    }

    pub(super) fn on_exec_done(&mut self, w: WorkerId, exec: usize, io: &mut dyn Io) {
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

    pub(super) fn worker_answer(&mut self, w: WorkerId, r: OpRef, answer: Answer, io: &mut dyn Io) {
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

    pub(super) fn on_grant(&mut self, w: WorkerId, session: SessionId, resource: u64, rev: u64, io: &mut dyn Io) {
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

    pub(super) fn on_handout(&mut self, w: WorkerId, session: SessionId, task: u64, io: &mut dyn Io) {
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
}
