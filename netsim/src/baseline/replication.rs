//! The lock service at the leader: which node leads it, requests and their
//! retries, one replication round per committed entry (a majority of the
//! running voters acknowledges it), the commit that applies it and sends its
//! answer and notifications, and the expiry of sessions not kept alive.

use custody::engine::Token;

use super::{Answer, Baseline, Effect, Io, LockEv, Msg, OpKind, OpRef, Origin, SessionId};

impl Baseline {
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
    pub(super) fn send_request(&mut self, r: OpRef, force: bool, io: &mut dyn Io) {
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

    pub(super) fn on_retry(&mut self, r: OpRef, attempt: u32, io: &mut dyn Io) {
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

    pub(super) fn on_msg(&mut self, from: u32, to: u32, msg: Msg, io: &mut dyn Io) {
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

    pub(super) fn on_session_check(&mut self, session: SessionId, io: &mut dyn Io) {
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
