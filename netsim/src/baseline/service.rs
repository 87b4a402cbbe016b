//! The lock service's replicated state: the durable queue, the locks with
//! their FIFO waiters and fencing revisions, and the sessions; the
//! operations it applies ([`OpKind`]) and its answers ([`Answer`]).
//!
//! Applying an operation is deterministic and takes no time; when an entry
//! commits, and at which leader, is the baseline's replication
//! ([`super::Baseline`]).

use std::collections::VecDeque;

/// A worker, by index over every worker of the run.
pub type WorkerId = u32;

/// A session, by index over every session of the run.
pub type SessionId = u32;

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
/// operation is deterministic; [`Baseline`](super::Baseline) decides when an entry commits.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
