//! The custodian side of replication: a task is answered, and may run, only
//! once a write quorum of its resource's replicas holds it.
//!
//! The replicas of a resource are the members the latest epoch's ring names
//! for its range ([`Ring::replicas`]: the custodian and the next `k − 1`
//! distinct members clockwise; fewer when the ring has fewer). Of those `n`,
//! a write quorum is `n / 2 + 1`, the custodian counting itself: with the
//! default `k = 3`, the custodian and one replica.
//!
//! Writes are batched: changed resources are marked dirty, and at most every
//! [`REPLICATE_INTERVAL`] one [`Replicate`] message per replica peer carries
//! every change since (cut into chunks of about [`REPLICATE_CHUNK_BYTES`]);
//! a replica answers each with one [`ReplicateAck`]. A write is a delta (the
//! tasks the peer has not been sent, and the executed watermark), or the
//! whole state for a peer that is new to the resource or lost a delta. The
//! watermark rides on the next delta, and goes on its own when the resource
//! is otherwise idle, so a replica's copy shrinks as tasks run. A write not
//! acknowledged within [`REPLICATE_RETRY`] is sent again (replicas take a
//! copy of a delta they hold already without change).
//!
//! A task is **durable** once the custodian and `quorum − 1` peers hold it.
//! Only durable tasks run (in sequence order, so the queue waits at the
//! first one that is not), and a gateway gets `Accepted` for a task only
//! when it is durable (`owed`). A task received by a transfer is durable
//! again only once this node's own replicas hold it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::super::ring::{Ring, Span};
use super::super::time::Instant;
use super::super::wire::{
    PendingTask, ReplicaWrite, Replicate, ReplicateAck, ResourceState, SyncMark, TaskMsg, Waiter,
};
use super::replica::Refusal;
use super::{Custody, CustodyOutput, Key, Res, Role};

/// Changes wait at most this long to go out in one batch per peer.
pub const REPLICATE_INTERVAL: Duration = Duration::from_millis(1);
/// A write not acknowledged within this is sent again.
pub const REPLICATE_RETRY: Duration = Duration::from_millis(500);
/// Bytes of writes per replication message, roughly; one resource's write
/// is never split (it is bounded well below the frame limit).
pub const REPLICATE_CHUNK_BYTES: usize = 256 * 1024;
/// Answers a resource owes to gateways for tasks not durable yet; past it,
/// a submit is answered `Busy`.
pub const OWED_PER_RESOURCE_MAX: usize = 4096;

/// One replica peer of a resource, and what it was sent and holds.
#[derive(Debug, Clone)]
pub(super) struct Peer {
    pub(super) addr: SocketAddr,
    /// The last task number sent to it.
    sent: u64,
    /// The executed watermark sent to it.
    executed_sent: u64,
    /// It holds every task up to this number (its acknowledgement).
    held: u64,
    /// Its next write is the whole state.
    full: bool,
    /// When the oldest write it has not acknowledged went.
    since: Option<Instant>,
}

impl Peer {
    fn new(addr: SocketAddr) -> Peer {
        Peer { addr, sent: 0, executed_sent: 0, held: 0, full: true, since: None }
    }
}

impl Custody {
    /// Recomputes a resource's replica peers and quorum for the latest
    /// epoch, keeping what is known of peers that stay.
    pub(super) fn refresh_peers(&mut self, key: &Key) {
        let Some(ring) = &self.ring else { return };
        let Some(res) = self.resources.get_mut(key) else { return };
        if res.peers_epoch == self.epoch {
            return;
        }
        res.peers_epoch = self.epoch;
        let members = ring.locate_point(key.0).map(|(range, _)| ring.replicas(range, self.k)).unwrap_or_default();
        res.needed = members.len() / 2;
        let old = std::mem::take(&mut res.peers);
        res.peers = members
            .iter()
            .filter(|m| m.addr != self.me.addr)
            .map(|m| old.iter().find(|p| p.addr == m.addr).cloned().unwrap_or_else(|| Peer::new(m.addr)))
            .collect();
    }

    /// Raises a resource's durable mark from its peers' acknowledgements;
    /// answers the gateways owed and lets the newly durable tasks run.
    pub(super) fn settle_durable(&mut self, key: &Key, now: Instant) {
        self.refresh_peers(key);
        let epoch = self.epoch;
        let Some(res) = self.resources.get_mut(key) else { return };
        let quorum_held = if res.needed == 0 {
            res.last_seq
        } else {
            let mut held: Vec<u64> = res.peers.iter().map(|p| p.held).collect();
            held.sort_unstable_by(|a, b| b.cmp(a));
            held.get(res.needed - 1).copied().unwrap_or(0)
        };
        let durable = quorum_held.min(res.last_seq).max(res.executed);
        if durable <= res.durable {
            return;
        }
        res.durable = durable;
        let mut answers = Vec::new();
        while res.owed.front().is_some_and(|o| o.0 <= durable) {
            let (seq, to, duplicate) = res.owed.pop_front().expect("checked");
            answers.push((to, TaskMsg::Accepted { req: to.req, seq, epoch, duplicate }));
        }
        for (to, answer) in answers {
            self.deliver(to, answer, now);
        }
        self.schedule(key);
    }

    /// Marks a resource's state changed: it goes to its replicas with the
    /// next batch.
    pub(super) fn touch(&mut self, key: &Key, now: Instant) {
        if self.k > 1 {
            self.dirty.insert(key.clone());
            if self.flush_at.is_none() {
                self.flush_at = Some(now.max(self.last_flush + REPLICATE_INTERVAL));
            }
        } else {
            self.settle_durable(key, now);
        }
    }

    /// When replication has work: a batch to send, or writes to send again.
    pub(super) fn replication_deadline(&self) -> Option<Instant> {
        let resend = self.unacked_since.map(|at| at + REPLICATE_RETRY);
        self.flush_at.into_iter().chain(resend).min()
    }

    /// Sends the batch if it is due, and writes unacknowledged for too long
    /// again.
    pub(crate) fn replication_timeout(&mut self, now: Instant) {
        if self.unacked_since.is_some_and(|at| now >= at + REPLICATE_RETRY) {
            self.unacked_since = None;
            let keys: Vec<Key> = self.unacked.iter().cloned().collect();
            for key in keys {
                let Some(res) = self.resources.get_mut(&key) else {
                    self.unacked.remove(&key);
                    continue;
                };
                let mut waiting = false;
                for p in &mut res.peers {
                    match p.since {
                        Some(at) if now >= at + REPLICATE_RETRY => {
                            // Go back to what it acknowledged; a delta it holds
                            // part of already is taken without change.
                            p.sent = p.held;
                            p.executed_sent = 0;
                            p.since = None;
                            self.dirty.insert(key.clone());
                        }
                        Some(at) => {
                            waiting = true;
                            self.unacked_since = Some(self.unacked_since.map_or(at, |u| u.min(at)));
                        }
                        None => {}
                    }
                }
                if !waiting {
                    self.unacked.remove(&key);
                }
            }
            if !self.dirty.is_empty() && self.flush_at.is_none() {
                self.flush_at = Some(now);
            }
        }
        if self.flush_at.is_some_and(|at| now >= at) {
            self.flush(now);
        }
    }

    /// Sends every dirty resource's writes: one message (or a few chunks)
    /// per peer.
    fn flush(&mut self, now: Instant) {
        self.flush_at = None;
        self.last_flush = now;
        let mut batches: BTreeMap<SocketAddr, Vec<(ReplicaWrite, usize)>> = BTreeMap::new();
        for key in std::mem::take(&mut self.dirty) {
            if !self.piece_of(key.0).is_some_and(|p| p.role == Role::Active) {
                continue;
            }
            // A quorum may be reached already (a smaller replica set) or
            // need nobody else (a single member).
            self.settle_durable(&key, now);
            let Some(res) = self.resources.get_mut(&key) else { continue };
            let mut waiting = false;
            for i in 0..res.peers.len() {
                let p = &res.peers[i];
                // A peer that holds nothing yet gets the whole state: the ids
                // of tasks that ran, and their tokens, are in no delta.
                let write = if p.full || p.sent == 0 {
                    let state = full_state(&key.1, res);
                    Some(ReplicaWrite::Full(state))
                } else if p.sent < res.last_seq || p.executed_sent < res.executed {
                    let from = p.sent.max(res.executed);
                    let tasks = pending_after(res, from);
                    let step = res.token_epochs.back().copied();
                    Some(ReplicaWrite::Delta {
                        resource: key.1.clone(),
                        base: p.sent,
                        executed: res.executed,
                        tasks,
                        step,
                    })
                } else {
                    None
                };
                let Some(write) = write else { continue };
                let bytes = write_bytes(&write);
                let p = &mut res.peers[i];
                p.full = false;
                p.sent = res.last_seq;
                p.executed_sent = res.executed;
                p.since.get_or_insert(now);
                waiting = true;
                batches.entry(p.addr).or_default().push((write, bytes));
            }
            if waiting {
                self.unacked.insert(key);
                self.unacked_since.get_or_insert(now);
            }
        }
        for (addr, writes) in batches {
            let mut chunk = Vec::new();
            let mut bytes = 0usize;
            for (write, size) in writes {
                if bytes + size > REPLICATE_CHUNK_BYTES && !chunk.is_empty() {
                    self.send_writes(addr, std::mem::take(&mut chunk));
                    bytes = 0;
                }
                bytes += size;
                chunk.push(write);
            }
            if !chunk.is_empty() {
                self.send_writes(addr, chunk);
            }
        }
    }

    fn send_writes(&mut self, addr: SocketAddr, writes: Vec<ReplicaWrite>) {
        self.stats.replicate_sent += 1;
        let msg = TaskMsg::Replicate(Replicate { epoch: self.epoch, writes });
        self.outputs.push(CustodyOutput::Send(addr, msg));
    }

    /// Writes from a custodian: keep them, say what is held.
    pub(crate) fn on_replicate(&mut self, from: SocketAddr, r: Replicate) {
        let mut ack = ReplicateAck { epoch: r.epoch, held: Vec::new(), need_full: Vec::new(), busy: Vec::new() };
        for write in r.writes {
            let name = write.resource().to_string();
            match self.replicas.apply(r.epoch, write) {
                Ok(n) => ack.held.push((name, n)),
                Err(Refusal::NeedFull) => ack.need_full.push(name),
                Err(Refusal::Busy) => {
                    self.stats.replica_busy += 1;
                    ack.busy.push(name);
                }
                Err(Refusal::Stale) => self.stats.replica_stale += 1,
            }
        }
        self.outputs.push(CustodyOutput::Send(from, TaskMsg::ReplicateAck(ack)));
    }

    /// A replica's answer: count what it holds towards the quorum.
    pub(crate) fn on_replicate_ack(&mut self, from: SocketAddr, ack: ReplicateAck, now: Instant) {
        for (name, n) in ack.held {
            let key: Key = (Ring::key_hash(&name), name);
            let Some(res) = self.resources.get_mut(&key) else { continue };
            let last = res.last_seq;
            let Some(p) = res.peers.iter_mut().find(|p| p.addr == from) else { continue };
            p.held = p.held.max(n.min(last));
            if p.held >= p.sent {
                p.since = None;
            }
            self.settle_durable(&key, now);
        }
        for name in ack.need_full {
            let key: Key = (Ring::key_hash(&name), name);
            if let Some(p) = self.resources.get_mut(&key).and_then(|res| res.peers.iter_mut().find(|p| p.addr == from))
            {
                p.full = true;
                p.since = None;
                self.touch(&key, now);
            }
        }
        // A replica without room holds nothing of these: its quorum may
        // come from another replica; else the tasks wait, unanswered.
        self.stats.replica_refusals += ack.busy.len() as u64;
    }
}

/// A resource's whole state for a replica: the running task counts as
/// pending (it has not run yet, as far as a successor could know).
fn full_state(name: &str, res: &Res) -> ResourceState {
    ResourceState {
        resource: name.to_string(),
        last_seq: res.last_seq,
        executed: res.executed,
        token_floor: res.token_floor,
        pending: pending_after(res, res.executed),
        dedup: res.dedup.iter().cloned().collect(),
        token_epochs: res.token_epochs.iter().copied().collect(),
        forgotten: res.forgotten.iter().copied().collect(),
    }
}

/// The resource's tasks numbered after `from`: the running one, then the
/// queue.
fn pending_after(res: &Res, from: u64) -> Vec<PendingTask> {
    let running = res.running.as_ref().map(|r| PendingTask {
        seq: r.seq,
        task: r.task.clone(),
        attempts: r.attempts,
        waiters: r.waiters.clone(),
    });
    running.into_iter().chain(res.queue.iter().cloned()).filter(|t| t.seq > from).collect()
}

/// Roughly the bytes a write takes on the wire.
fn write_bytes(write: &ReplicaWrite) -> usize {
    match write {
        ReplicaWrite::Delta { resource, tasks, .. } => {
            resource.len() + 24 + tasks.iter().map(|t| t.task.weight() + 16).sum::<usize>()
        }
        ReplicaWrite::Full(s) => state_bytes(s),
    }
}

/// Roughly the bytes a resource's whole state takes on the wire.
pub(super) fn state_bytes(s: &ResourceState) -> usize {
    s.resource.len()
        + 32
        + s.pending.iter().map(|t| t.task.weight() + 16 + t.waiters.len() * 24).sum::<usize>()
        + s.dedup.iter().map(|(id, _, _)| id.len() + 24).sum::<usize>()
        + s.forgotten.len() * 18
        + s.token_epochs.len() * 16
}

/// The waiter a gateway's answer goes to.
pub(super) type Owed = (u64, Waiter, bool);

/// What one replica's mark will say: its parts, their resources with the
/// last number assigned, and whether it holds them all up to it.
type MarkDraft = (Vec<Span>, Vec<(String, u64)>, bool);

/// How often a custodian whose sync of the latest epoch is not complete
/// checks again which replicas are ready for their mark.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(50);

/// A custodian's marks for its latest epoch: once a replica holds every
/// resource of the parts it replicates up to the number the custodian
/// assigned last, the custodian sends it a [`SyncMark`] naming them. A
/// replica that checks it marks the parts complete as of the epoch, which
/// is what a recovery needs to find in a read quorum (see `recovery.rs`).
#[derive(Debug)]
pub(super) struct SyncRound {
    epoch: u64,
    /// Replicas every mark of which went out (acknowledged or not yet).
    covered: BTreeSet<SocketAddr>,
    /// Marks sent and not acknowledged: id → (replica, mark, sent at).
    outstanding: BTreeMap<u64, (SocketAddr, SyncMark, Instant)>,
    /// Per replica not covered yet: the numbers its mark will name, taken
    /// the first time it was looked at in this round. A task accepted
    /// later is acknowledged only once a write quorum of this epoch's
    /// replicas holds it, which a read quorum meets; so the mark need not
    /// wait for it, and a replica of resources that never go quiet still
    /// gets its mark.
    drafts: BTreeMap<SocketAddr, BTreeMap<String, u64>>,
    next_try: Instant,
    complete: bool,
}

impl Custody {
    /// The pieces changed (a new epoch, a part taken): every replica needs
    /// a new mark for this epoch.
    pub(super) fn restart_sync(&mut self) {
        // A ring of one member (or k = 1) has no replicas to mark.
        let alone = self.ring.as_ref().is_none_or(|ring| {
            ring.ranges().next().is_none_or(|(range, _, _)| ring.replicas(range, self.k).len() <= 1)
        });
        self.sync = Some(SyncRound {
            epoch: self.epoch,
            covered: BTreeSet::new(),
            outstanding: BTreeMap::new(),
            drafts: BTreeMap::new(),
            next_try: Instant::ZERO,
            complete: alone,
        });
    }

    pub(super) fn sync_deadline(&self) -> Option<Instant> {
        let s = self.sync.as_ref()?;
        let resend = s.outstanding.values().map(|(_, _, at)| *at + REPLICATE_RETRY).min();
        let retry = (!s.complete).then_some(s.next_try);
        resend.into_iter().chain(retry).min()
    }

    /// Sends the marks of replicas that became ready, and again those not
    /// acknowledged for a while.
    pub(super) fn sync_timeout(&mut self, now: Instant) {
        let Some(s) = self.sync.as_mut() else { return };
        for (_, (to, mark, at)) in s.outstanding.iter_mut() {
            if now >= *at + REPLICATE_RETRY {
                *at = now;
                self.outputs.push(CustodyOutput::Send(*to, TaskMsg::SyncMark(mark.clone())));
            }
        }
        if s.complete || now < s.next_try {
            return;
        }
        s.next_try = now + SYNC_INTERVAL;
        let Some(ring) = self.ring.clone() else { return };
        // Per replica: the parts it replicates, and whether it holds all of
        // their resources up to date.
        let mut parts: BTreeMap<SocketAddr, MarkDraft> = BTreeMap::new();
        let active: Vec<Span> = self.pieces.values().filter(|p| p.role == Role::Active).map(|p| p.span).collect();
        let mut drafts = std::mem::take(&mut self.sync.as_mut().expect("checked").drafts);
        let drafted: BTreeSet<SocketAddr> = drafts.keys().copied().collect();
        for span in active {
            for (range, part, _) in ring.cut(span) {
                let keys = super::keys_in(&self.resources, part);
                for key in &keys {
                    self.refresh_peers(key);
                }
                for m in ring.replicas(range, self.k) {
                    if m.addr == self.me.addr {
                        continue;
                    }
                    let fresh = !drafted.contains(&m.addr);
                    let draft = drafts.entry(m.addr).or_default();
                    let entry = parts.entry(m.addr).or_insert_with(|| (Vec::new(), Vec::new(), true));
                    entry.0.push(part);
                    for key in &keys {
                        let res = &self.resources[key];
                        if fresh {
                            draft.insert(key.1.clone(), res.last_seq);
                        }
                        let Some(&n) = draft.get(&key.1) else { continue };
                        let held = res.peers.iter().find(|p| p.addr == m.addr).map_or(0, |p| p.held);
                        entry.2 &= held >= n;
                        entry.1.push((key.1.clone(), n));
                    }
                }
            }
        }
        let s = self.sync.as_mut().expect("checked");
        s.drafts = drafts;
        let mut all = true;
        for (addr, (spans, resources, ready)) in parts {
            if s.covered.contains(&addr) {
                continue;
            }
            if !ready {
                all = false;
                continue;
            }
            s.covered.insert(addr);
            s.drafts.remove(&addr);
            // Chunks by parts: a replica marks only what it checked.
            let (mut chunk_spans, mut chunk_res, mut bytes) = (Vec::new(), Vec::new(), 0usize);
            let mut by_span: BTreeMap<u64, Vec<(String, u64)>> = BTreeMap::new();
            for (name, n) in resources {
                by_span.entry(Ring::key_hash(&name)).or_default().push((name, n));
            }
            let mut marks = Vec::new();
            for span in spans {
                let names: Vec<(String, u64)> = by_span
                    .iter()
                    .filter(|(point, _)| span.contains(**point))
                    .flat_map(|(_, v)| v.iter().cloned())
                    .collect();
                bytes += 24 + names.iter().map(|(n, _)| n.len() + 10).sum::<usize>();
                chunk_spans.push(span);
                chunk_res.extend(names);
                if bytes >= REPLICATE_CHUNK_BYTES {
                    marks.push((std::mem::take(&mut chunk_spans), std::mem::take(&mut chunk_res)));
                    bytes = 0;
                }
            }
            if !chunk_spans.is_empty() {
                marks.push((chunk_spans, chunk_res));
            }
            for (spans, resources) in marks {
                let id = self.next_sync;
                self.next_sync += 1;
                let mark = SyncMark { id, epoch: s.epoch, spans, resources };
                self.outputs.push(CustodyOutput::Send(addr, TaskMsg::SyncMark(mark.clone())));
                s.outstanding.insert(id, (addr, mark, now));
            }
        }
        s.complete = all;
    }

    /// A custodian's mark: check it, answer.
    pub(crate) fn on_sync_mark(&mut self, from: SocketAddr, mark: SyncMark) {
        let ok = self.replicas.mark_synced(mark.epoch, &mark.spans, &mark.resources);
        if !ok {
            tracing::debug!(from = %from, id = mark.id, "a sync mark for copies not complete here");
        }
        self.outputs.push(CustodyOutput::Send(from, TaskMsg::SyncAck { id: mark.id, ok }));
    }

    /// A replica checked a mark: done with it, or (not complete there) the
    /// replica gets a new one once it is.
    pub(crate) fn on_sync_ack(&mut self, from: SocketAddr, id: u64, ok: bool) {
        let Some(s) = self.sync.as_mut() else { return };
        if s.outstanding.get(&id).is_some_and(|(to, _, _)| *to == from) {
            s.outstanding.remove(&id);
            if !ok {
                s.covered.remove(&from);
                s.drafts.remove(&from);
                s.complete = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::Ask;
    use super::*;
    use crate::engine::epoch::{Changes, Configuration};
    use crate::engine::id::NodeId;
    use crate::engine::task::{Outcome, Task};

    fn id(port: u16) -> NodeId {
        NodeId::new(SocketAddr::from(([127, 0, 0, 1], port)), 1, &format!("n{port}"))
    }

    fn at(ms: u64) -> Instant {
        Instant::from_micros(ms * 1000)
    }

    /// Three members a, b, c with k = 3, every custody at the last epoch;
    /// `r` is a resource a owns.
    fn three() -> (Vec<NodeId>, Configuration, BTreeMap<SocketAddr, Custody>, String) {
        let ids = vec![id(1), id(2), id(3)];
        let first = Configuration::first(9, ids[0].clone(), 16, 3);
        let joins = Changes { joins: ids[1..].to_vec(), ..Changes::default() };
        let config = first.next(&joins).unwrap();
        let custodies = ids
            .iter()
            .map(|n| {
                let mut c = Custody::new(n.clone(), Duration::from_millis(100), 4);
                if n == &ids[0] {
                    // The founder: it holds the circle, and hands off what
                    // moves (those transfers are dropped here).
                    c.on_epoch(&first, Instant::ZERO);
                }
                c.on_epoch(&config, Instant::ZERO);
                c.drain().for_each(drop);
                (n.addr, c)
            })
            .collect();
        let ring = config.ring();
        let r = (0..10_000).map(|i| format!("r{i}")).find(|r| ring.owner(r) == Some(&ids[0])).unwrap();
        (ids, config, custodies, r)
    }

    fn submit(c: &mut Custody, gateway: SocketAddr, req: u64, tid: &str, r: &str, now: Instant) {
        let task = Task { id: tid.into(), resource: r.into(), payload: vec![1] };
        c.on_submit(gateway, Ask { req, wait: false, seq: None }, task, true, now);
    }

    /// Takes what a custody sent, split into replication messages (by
    /// receiver) and everything else.
    fn split(c: &mut Custody) -> (Vec<(SocketAddr, TaskMsg)>, Vec<CustodyOutput>) {
        let (mut repl, mut other) = (Vec::new(), Vec::new());
        for o in c.drain() {
            match o {
                CustodyOutput::Send(to, m @ (TaskMsg::Replicate(_) | TaskMsg::ReplicateAck(_))) => repl.push((to, m)),
                o => other.push(o),
            }
        }
        (repl, other)
    }

    fn deliver(nodes: &mut BTreeMap<SocketAddr, Custody>, from: SocketAddr, to: SocketAddr, m: TaskMsg, now: Instant) {
        let c = nodes.get_mut(&to).unwrap();
        match m {
            TaskMsg::Replicate(r) => c.on_replicate(from, r),
            TaskMsg::ReplicateAck(a) => c.on_replicate_ack(from, a, now),
            m => panic!("not replication: {m:?}"),
        }
    }

    fn accepted(outs: &[CustodyOutput]) -> Vec<u64> {
        outs.iter()
            .filter_map(|o| match o {
                CustodyOutput::Send(_, TaskMsg::Accepted { seq, .. }) => Some(*seq),
                _ => None,
            })
            .collect()
    }

    fn executed(outs: &[CustodyOutput]) -> Vec<u64> {
        outs.iter()
            .filter_map(|o| match o {
                CustodyOutput::Execute(e) => Some(e.token.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_task_is_answered_and_runs_only_once_a_replica_holds_it() {
        let (ids, _, mut nodes, r) = three();
        let (a, b, c, gw) = (ids[0].addr, ids[1].addr, ids[2].addr, id(9).addr);
        let t0 = at(10);
        let ca = nodes.get_mut(&a).unwrap();
        submit(ca, gw, 1, "t1", &r, t0);
        submit(ca, gw, 2, "t2", &r, t0);
        ca.pump(t0, true);
        let (repl, other) = split(ca);
        assert!(repl.is_empty(), "writes wait for the batch: {repl:?}");
        assert!(accepted(&other).is_empty() && executed(&other).is_empty(), "nothing before a replica holds it");
        // The batch: one message per replica peer, each with both tasks.
        let due = ca.replication_deadline().unwrap();
        assert!(due <= t0 + REPLICATE_INTERVAL);
        ca.replication_timeout(due);
        let (repl, _) = split(ca);
        assert_eq!(repl.iter().map(|(to, _)| *to).collect::<Vec<_>>(), vec![b, c]);
        for (to, m) in &repl {
            let TaskMsg::Replicate(rep) = m else { panic!() };
            assert_eq!(rep.writes.len(), 1, "to {to}");
            match &rep.writes[0] {
                ReplicaWrite::Full(s) => assert_eq!(s.pending.iter().map(|t| t.seq).collect::<Vec<_>>(), vec![1, 2]),
                w => panic!("a new replica gets the whole state: {w:?}"),
            }
        }
        // An answer from a member that is not a replica counts for nothing.
        let bogus = ReplicateAck { epoch: 3, held: vec![(r.clone(), 2)], need_full: vec![], busy: vec![] };
        let ca = nodes.get_mut(&a).unwrap();
        ca.on_replicate_ack(id(9).addr, bogus, due);
        ca.pump(due, true);
        assert!(accepted(&split(ca).1).is_empty());
        // b takes the write and answers; one replica is the quorum (2 of 3).
        let (to, m) = repl[0].clone();
        deliver(&mut nodes, a, to, m, due);
        let (acks, _) = split(nodes.get_mut(&b).unwrap());
        assert_eq!(acks.len(), 1);
        let (_, ack) = acks.into_iter().next().unwrap();
        deliver(&mut nodes, b, a, ack, due);
        let ca = nodes.get_mut(&a).unwrap();
        ca.pump(due, true);
        let (_, other) = split(ca);
        assert_eq!(accepted(&other), vec![1, 2]);
        assert_eq!(executed(&other), vec![1]);
        assert_eq!(nodes[&b].replicas.tasks(), 2);
    }

    #[test]
    fn the_watermark_follows_and_lost_writes_are_sent_again() {
        let (ids, _, mut nodes, r) = three();
        let (a, b, gw) = (ids[0].addr, ids[1].addr, id(9).addr);
        let t0 = at(10);
        let ca = nodes.get_mut(&a).unwrap();
        submit(ca, gw, 1, "t1", &r, t0);
        ca.replication_timeout(t0);
        let (repl, _) = split(ca);
        let to_b = repl.iter().find(|(to, _)| *to == b).unwrap().1.clone();
        deliver(&mut nodes, a, b, to_b, t0);
        let (acks, _) = split(nodes.get_mut(&b).unwrap());
        deliver(&mut nodes, b, a, acks[0].1.clone(), t0);
        let ca = nodes.get_mut(&a).unwrap();
        ca.pump(t0, true);
        let (_, other) = split(ca);
        assert_eq!(executed(&other), vec![1]);
        ca.finished(&r, 1, Outcome::Ok(vec![]), at(20));
        // The watermark goes in a delta to both (the write to c was lost
        // on the way, and so is this one).
        ca.replication_timeout(at(21));
        let (repl, _) = split(ca);
        assert_eq!(repl.len(), 2, "{repl:?}");
        for (_, m) in &repl {
            let TaskMsg::Replicate(rep) = m else { panic!() };
            assert!(
                matches!(&rep.writes[0], ReplicaWrite::Delta { base: 1, executed: 1, tasks, .. } if tasks.is_empty())
            );
        }
        deliver(&mut nodes, a, b, repl[0].1.clone(), at(21));
        assert_eq!(nodes[&b].replicas.tasks(), 0, "a copy drops what ran");
        let (acks, _) = split(nodes.get_mut(&b).unwrap());
        deliver(&mut nodes, b, a, acks[0].1.clone(), at(21));
        // Past the retry, c is sent its write again: the whole state, as it
        // never acknowledged any; b, up to date, is sent nothing.
        let ca = nodes.get_mut(&a).unwrap();
        let retry = t0 + REPLICATE_RETRY;
        assert_eq!(ca.replication_deadline(), Some(retry));
        ca.replication_timeout(retry);
        ca.replication_timeout(retry);
        let (repl, _) = split(ca);
        assert_eq!(repl.len(), 1, "{repl:?}");
        assert_eq!(repl[0].0, ids[2].addr);
        let TaskMsg::Replicate(rep) = &repl[0].1 else { panic!() };
        assert!(matches!(&rep.writes[0], ReplicaWrite::Full(s) if s.executed == 1 && s.dedup.len() == 1));
    }

    #[test]
    fn a_delta_a_replica_cannot_follow_brings_the_whole_state() {
        let (ids, _, mut nodes, r) = three();
        let (a, b, gw) = (ids[0].addr, ids[1].addr, id(9).addr);
        let ca = nodes.get_mut(&a).unwrap();
        submit(ca, gw, 1, "t1", &r, at(1));
        ca.replication_timeout(at(1));
        let _lost = split(ca);
        submit(ca, gw, 2, "t2", &r, at(5));
        ca.replication_timeout(at(5));
        let (repl, _) = split(ca);
        let to_b = repl.into_iter().find(|(to, _)| *to == b).unwrap().1;
        let TaskMsg::Replicate(rep) = &to_b else { panic!() };
        assert!(matches!(&rep.writes[0], ReplicaWrite::Delta { base: 1, .. }));
        deliver(&mut nodes, a, b, to_b, at(5));
        let (acks, _) = split(nodes.get_mut(&b).unwrap());
        let TaskMsg::ReplicateAck(ack) = &acks[0].1 else { panic!() };
        assert_eq!(ack.need_full, vec![r.clone()]);
        assert!(ack.held.is_empty());
        deliver(&mut nodes, b, a, acks[0].1.clone(), at(5));
        let ca = nodes.get_mut(&a).unwrap();
        ca.replication_timeout(at(7));
        let (repl, _) = split(ca);
        let to_b = repl.into_iter().find(|(to, _)| *to == b).unwrap().1;
        let TaskMsg::Replicate(rep) = &to_b else { panic!() };
        assert!(matches!(&rep.writes[0], ReplicaWrite::Full(s) if s.last_seq == 2));
        deliver(&mut nodes, a, b, to_b, at(7));
        let (acks, _) = split(nodes.get_mut(&b).unwrap());
        deliver(&mut nodes, b, a, acks[0].1.clone(), at(7));
        let ca = nodes.get_mut(&a).unwrap();
        let (_, other) = split(ca);
        assert_eq!(accepted(&other), vec![1, 2]);
    }

    #[test]
    fn a_retry_of_a_task_not_durable_yet_is_answered_with_it() {
        let (ids, _, mut nodes, r) = three();
        let (a, b, gw) = (ids[0].addr, ids[1].addr, id(9).addr);
        let ca = nodes.get_mut(&a).unwrap();
        submit(ca, gw, 1, "t1", &r, at(1));
        // The gateway asks again (same request): still one answer owed.
        submit(ca, gw, 1, "t1", &r, at(2));
        ca.replication_timeout(at(2));
        let (repl, other) = split(ca);
        assert!(accepted(&other).is_empty());
        let to_b = repl.into_iter().find(|(to, _)| *to == b).unwrap().1;
        deliver(&mut nodes, a, b, to_b, at(2));
        let (acks, _) = split(nodes.get_mut(&b).unwrap());
        deliver(&mut nodes, b, a, acks[0].1.clone(), at(2));
        let (_, other) = split(nodes.get_mut(&a).unwrap());
        assert_eq!(accepted(&other), vec![1], "one answer for the one request");
    }
}
