//! Recovery: rebuilding a part whose previous custodian was removed without
//! handing it off.
//!
//! When a node learns epoch `E` and owns a part that nobody hands to it
//! because its custodian in epoch `E − 1` is not a member of `E` any more
//! (crashed, or cut off and removed by votes or by its lapsed lease), it
//! recovers the part:
//!
//! 1. It asks the part's replicas in `E − 1` (the previous ring's
//!    `replicas`, custodian included) to **seal** the part at `E` and send
//!    what they hold of it. A sealed replica refuses every write of an older
//!    epoch, so a custodian cut off before `E` can no longer reach a write
//!    quorum: it can acknowledge nothing more.
//! 2. It waits for a **read quorum** of them, `n − (n/2 + 1) + 1` of the
//!    `n` replicas, from processes that held the copies in `E − 1` (a
//!    restarted process lost them). A write quorum and a read quorum
//!    intersect, so every task the previous custodian acknowledged in
//!    `E − 1` is in some reply; and at least one reply must carry the
//!    previous custodian's sync mark of `E − 1` (its copies were complete
//!    when that epoch began), so every task acknowledged before is in it.
//!    Without such a reply the part stays unavailable (never taken without
//!    the quorum), and is reported.
//! 3. It merges the replies: per resource the highest watermark, the tasks
//!    after it by sequence number, the dedup windows together.
//! 4. It waits `W = lease·(1 + ρ)/(1 − ρ)` from when it learned `E`: the
//!    previous custodian's last lease, granted before `E` was committed,
//!    has run out by then even with drifting clocks, so it starts nothing
//!    more.
//! 5. It takes the part as custodian at epoch `E` (tokens of `E`, above the
//!    previous custodian's), raises its marks (a late transfer of the part
//!    is refused), and replicates the merged state to its own replicas
//!    before any task runs.
//!
//! The task the previous custodian was running, and tasks it ran whose
//! watermark had not reached the replicas, run again (attempt > 1): at
//! least once, with the token telling the resource which effect is newer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::super::epoch::Configuration;
use super::super::id::NodeId;
use super::super::ring::{RangeId, Ring, Span};
use super::super::task::{DEDUP_PER_RESOURCE_MAX, TOKEN_EPOCHS_PER_RESOURCE_MAX};
use super::super::time::Instant;
use super::super::wire::{PendingTask, RECOVER_CHUNKS_MAX, RecoverReply, ResourceState, TaskMsg};
use super::marks::{Marks, joined};
use super::replication::state_bytes;
use super::{Custody, CustodyOutput, Piece, RING_HISTORY_MAX, Role, is_life, overlaps};

/// How often a recovering node asks again the replicas that have not
/// answered.
pub const RECOVER_RETRY: Duration = Duration::from_secs(1);
/// How often a recovering node asks every replica anew once their answers
/// did not cover the part (a mark may come later).
pub const RECOVER_STUCK_RETRY: Duration = Duration::from_secs(5);
/// Parts a node recovers at once; past it, more wait for a later epoch.
pub const RECOVERIES_MAX: usize = 65_536;
/// Bytes of resource state per reply chunk, roughly.
pub const RECOVER_CHUNK_BYTES: usize = 256 * 1024;

/// A reply being assembled from its chunks.
#[derive(Debug, Default)]
struct Reply {
    /// The incarnation the replica's process started with.
    born: u64,
    /// The replica's marks along the part, in runs.
    synced: Vec<(Span, u64)>,
    chunks: u32,
    got: BTreeSet<u32>,
    /// `(epoch of the copy's last write, state)`.
    resources: Vec<(u64, ResourceState)>,
}

impl Reply {
    fn complete(&self) -> bool {
        self.chunks > 0 && self.got.len() == self.chunks as usize
    }
}

/// One part being recovered.
#[derive(Debug)]
pub(super) struct Recovery {
    span: Span,
    /// The epoch this node owns the part in.
    epoch: u64,
    /// The last epoch in which `previous` held the part: its replicas then
    /// are read (the epoch before `epoch`, or older when this node owned
    /// the part in between and never got it).
    from: u64,
    /// When this node learned `epoch`: the wait counts from there.
    learned_at: Instant,
    /// The replicas asked: those of the part in `from`, and of older
    /// epochs when a mark reaches back (see `marked_runs`).
    members: Vec<NodeId>,
    /// Its custodian in the epoch before.
    previous: NodeId,
    replies: BTreeMap<SocketAddr, Reply>,
    asked_at: Instant,
    /// The merged state, once a read quorum answered.
    merged: Option<Vec<ResourceState>>,
    /// Whether the part was reported as unrecoverable (every replica that
    /// could answer did, and none had the previous custodian's mark).
    stuck: bool,
}

impl Recovery {
    /// Whether the part being recovered overlaps `span`.
    pub(super) fn overlaps(&self, span: Span) -> bool {
        overlaps(self.span, span)
    }

    /// When to ask the replicas again: those that have not answered, or,
    /// once the part is reported unrecoverable, all of them, less often.
    fn ask_at(&self) -> Instant {
        self.asked_at + if self.stuck { RECOVER_STUCK_RETRY } else { RECOVER_RETRY }
    }
}

impl Custody {
    /// After learning `config` (the latest epoch, one after the previous
    /// ring's): starts recovering the parts this node owns, holds nothing
    /// of, and whose previous custodian is not a member any more.
    pub(super) fn start_recoveries(&mut self, config: &Configuration, now: Instant) {
        if !self.recovery {
            return;
        }
        let Some(ring) = self.ring.clone() else { return };
        if !ring.ranges().any(|(_, _, owner)| is_life(owner, &self.me)) {
            return;
        }
        let prev = self.epoch.saturating_sub(1);
        let Some((prev_ring, prev_k)) = self.history.get(&prev).cloned() else {
            // The epoch before was skipped here (a restart, a cut): its
            // replicas are unknown until its configuration comes.
            if prev > 0 && self.past_wanted.is_none_or(|(e, _)| e != prev) {
                self.past_wanted = Some((prev, now));
                self.outputs.push(CustodyOutput::FetchEpoch(prev));
            }
            return;
        };
        for (_, span, owner) in ring.ranges() {
            if !is_life(owner, &self.me) {
                continue;
            }
            let mut candidates: Vec<(RangeId, Span, NodeId, u64, Arc<Ring>, usize)> = Vec::new();
            for (range, part, before) in prev_ring.cut(span) {
                if is_life(before, &self.me)
                    && !self.pieces.values().any(|p| overlaps(p.span, part))
                    && !self.recoveries.values().any(|r| overlaps(r.span, part))
                {
                    // This life owned it in the epoch before too, and never
                    // got it: follow it back to the holder before.
                    candidates.extend(self.holder_before(part, prev));
                } else {
                    candidates.push((range, part, before.clone(), prev, prev_ring.clone(), prev_k));
                }
            }
            for (range, part, before, from, from_ring, from_k) in candidates {
                let before = &before;
                // An earlier life of this process held it: its state is
                // here, recut like any other. An earlier life of another
                // process at this address (a restart) lost it: recover.
                let held_here = before.addr == self.me.addr && self.born <= before.incarnation;
                if held_here
                    || config.contains(before)
                    || self.pieces.values().any(|p| overlaps(p.span, part))
                    || self.recoveries.values().any(|r| overlaps(r.span, part))
                {
                    // Held here, handed off by a member, or being recovered
                    // already.
                    continue;
                }
                if self.recoveries.len() >= RECOVERIES_MAX {
                    tracing::warn!("{RECOVERIES_MAX} parts recovering; more wait");
                    return;
                }
                let members: Vec<NodeId> = from_ring.replicas(range, from_k).into_iter().cloned().collect();
                tracing::info!(part = %part, epoch = self.epoch, previous = %before, of_epoch = from, replicas = members.len(), "recovering a part whose custodian was removed");
                self.stats.recoveries_started += 1;
                let id = self.add_recovery(Recovery {
                    span: part,
                    epoch: self.epoch,
                    from,
                    learned_at: now,
                    members,
                    previous: before.clone(),
                    replies: BTreeMap::new(),
                    asked_at: now,
                    merged: None,
                    stuck: false,
                });
                self.ask(id, now);
            }
        }
    }

    /// Keeps a recovery under the next number, which it returns.
    fn add_recovery(&mut self, r: Recovery) -> u64 {
        let id = self.next_recovery;
        self.next_recovery += 1;
        self.recoveries.insert(id, r);
        id
    }

    /// Where `part`, owned by this life in `epoch` and never received,
    /// was before: going back epoch by epoch through the rings kept, each
    /// piece of it with the first other owner found, that epoch, its ring
    /// and k. Pieces whose history runs out are left out (not recovered).
    fn holder_before(&self, part: Span, epoch: u64) -> Vec<(RangeId, Span, NodeId, u64, Arc<Ring>, usize)> {
        let mut out = Vec::new();
        let mut work = vec![(part, epoch.saturating_sub(1))];
        while let Some((span, e)) = work.pop() {
            let Some((ring, k)) = self.history.get(&e) else { continue };
            for (range, piece, owner) in ring.cut(span) {
                if is_life(owner, &self.me) {
                    work.push((piece, e.saturating_sub(1)));
                } else {
                    out.push((range, piece, owner.clone(), e, ring.clone(), *k));
                }
            }
        }
        out
    }

    /// A configuration fetched from a voter: the epoch before the latest,
    /// skipped here, starts the recoveries it was missing for.
    pub(crate) fn on_past_epoch(&mut self, config: &Configuration, now: Instant) {
        if self.past_wanted.is_none_or(|(e, _)| e != config.epoch) || self.history.contains_key(&config.epoch) {
            return;
        }
        self.past_wanted = None;
        let ring = self.rings.ring(config);
        self.history.insert(config.epoch, (ring, usize::from(config.replication)));
        while self.history.len() > RING_HISTORY_MAX {
            self.history.pop_first();
        }
        tracing::debug!(
            epoch = config.epoch,
            "learned a skipped epoch's ring: recovering what it gave a removed custodian"
        );
        if let Some(latest) = self.latest.clone() {
            self.start_recoveries(&latest, now);
        }
    }

    /// Asks the replicas that have not answered.
    fn ask(&mut self, id: u64, now: Instant) {
        let Some(r) = self.recoveries.get_mut(&id) else { return };
        r.asked_at = now;
        let (span, epoch) = (r.span, r.epoch);
        let targets: Vec<NodeId> = r.members.iter().filter(|m| !r.replies.contains_key(&m.addr)).cloned().collect();
        for m in targets {
            if m.addr == self.me.addr {
                // This node was a replica too: its own copies, sealed.
                for reply in self.seal_and_read(id, epoch, span) {
                    self.take_reply(self.me.addr, reply, now);
                }
            } else {
                self.outputs.push(CustodyOutput::Send(m.addr, TaskMsg::Recover { id, epoch, span }));
            }
        }
    }

    /// A recovering node asks for this node's copies of `span`: seal them
    /// at `epoch` and answer. A node that holds part of `span` as custodian
    /// (a removed custodian still running) does not answer: its state moves
    /// by a transfer, or not at all.
    pub(crate) fn on_recover(&mut self, from: SocketAddr, id: u64, epoch: u64, span: Span) {
        if self.pieces.values().any(|p| overlaps(p.span, span)) {
            tracing::warn!(from = %from, part = %span, "asked to recover a part this node holds; not answering");
            return;
        }
        for reply in self.seal_and_read(id, epoch, span) {
            self.outputs.push(CustodyOutput::Send(from, TaskMsg::RecoverReply(reply)));
        }
    }

    /// Seals this node's copies of `span` at `epoch` and reads them, in
    /// chunks.
    fn seal_and_read(&mut self, id: u64, epoch: u64, span: Span) -> Vec<RecoverReply> {
        self.replicas.seal(span, epoch);
        let synced = self.synced_through(span, epoch.saturating_sub(1));
        let mut chunks: Vec<Vec<(u64, ResourceState)>> = vec![Vec::new()];
        let mut bytes = 0usize;
        for copy in self.replicas.states_in(span) {
            let size = state_bytes(&copy.1);
            if bytes + size > RECOVER_CHUNK_BYTES && !chunks.last().expect("one").is_empty() {
                chunks.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            chunks.last_mut().expect("one").push(copy);
        }
        let n = u32::try_from(chunks.len()).unwrap_or(u32::MAX).min(RECOVER_CHUNKS_MAX);
        chunks
            .into_iter()
            .take(n as usize)
            .enumerate()
            .map(|(i, resources)| RecoverReply {
                id,
                epoch,
                born: self.born,
                synced: synced.clone(),
                chunk: i as u32,
                chunks: n,
                resources,
            })
            .collect()
    }

    /// Along `span`, in runs, the epoch this node's copies are complete as
    /// of: its marks, each carried forward to `upto` where by this node's
    /// own rings the run kept the custodian and replicas `upto` gives the
    /// span (a custodian that crashed before an epoch that changed nothing
    /// for it never marked it; and the asker, if it restarted since, lacks
    /// the rings to tell).
    fn synced_through(&self, span: Span, upto: u64) -> Vec<(Span, u64)> {
        let runs = self.replicas.synced_runs(span);
        let Some((ring, k)) = self.history.get(&upto) else { return runs };
        let Some((range, owner)) = ring.locate_point(span.end) else { return runs };
        let members: Vec<NodeId> = ring.replicas(range, *k).into_iter().cloned().collect();
        let mut out = Vec::with_capacity(runs.len());
        for (run, mark) in runs {
            if mark == 0 || mark >= upto {
                out.push((run, mark));
                continue;
            }
            match kept_since(&self.history, run, owner, &members, mark, upto) {
                kept if kept.is_empty() => out.push((run, mark)),
                kept => out.extend(kept.into_iter().map(|(s, same)| (s, if same { upto } else { mark }))),
            }
        }
        out
    }

    /// A chunk of a replica's answer.
    pub(crate) fn on_recover_reply(&mut self, from: SocketAddr, reply: RecoverReply, now: Instant) {
        self.take_reply(from, reply, now);
    }

    fn take_reply(&mut self, from: SocketAddr, reply: RecoverReply, now: Instant) {
        let id = reply.id;
        let Some(r) = self.recoveries.get_mut(&id) else { return };
        if reply.epoch != r.epoch || r.merged.is_some() {
            return;
        }
        // From the process that was the replica in the epoch before: one
        // started since lost those copies.
        let Some(life) = r.members.iter().filter(|m| m.addr == from).map(|m| m.incarnation).max() else { return };
        if reply.born > life {
            tracing::debug!(from = %from, "a replica restarted since; its answer does not count");
            return;
        }
        let span = r.span;
        let entry = r.replies.entry(from).or_default();
        if entry.complete() || (entry.chunks != 0 && entry.chunks != reply.chunks) || !entry.got.insert(reply.chunk) {
            return;
        }
        entry.chunks = reply.chunks;
        entry.born = reply.born;
        entry.synced = reply.synced;
        entry.resources.extend(reply.resources.into_iter().filter(|(_, s)| span.contains(Ring::key_hash(&s.resource))));
        self.check_quorum(id, now);
    }

    /// Merges once a read quorum answered and one of them has the previous
    /// custodian's mark; reports the part when that can no longer happen.
    fn check_quorum(&mut self, id: u64, now: Instant) {
        let Some(r) = self.recoveries.get_mut(&id) else { return };
        let mut wanted = Vec::new();
        let runs = marked_runs(&self.history, r, &mut wanted);
        if !wanted.is_empty() {
            // Older epochs' replicas are needed too: ask them.
            tracing::debug!(part = %r.span, more = wanted.len(), "asking the replicas of the epochs since the mark too");
            r.members.extend(wanted);
            r.stuck = false;
            self.ask(id, now);
            return;
        }
        let marked = !runs.is_empty() && runs.iter().all(|&(_, m)| m);
        if !marked && runs.len() > 1 && runs.iter().any(|&(_, m)| m) {
            // The marks cover some of the part: recover those apart.
            self.split_recovery(id, runs.into_iter().map(|(span, _)| span).collect(), now);
            return;
        }
        let Some(r) = self.recoveries.get_mut(&id) else { return };
        let done: Vec<&Reply> = r.replies.values().filter(|x| x.complete()).collect();
        if marked {
            let states: Vec<(u64, ResourceState)> = done.iter().flat_map(|x| x.resources.iter().cloned()).collect();
            r.merged = Some(merge(states));
            tracing::info!(part = %r.span, epoch = r.epoch, replies = done.len(), "read quorum reached; taking custody after the lease wait");
            let at = r.learned_at + self.recovery_wait;
            self.recovery_due = Some(self.recovery_due.map_or(at, |d| d.min(at)));
            if at <= now {
                self.activate_due(now);
            }
        } else if done.len() == r.members.iter().map(|m| m.addr).collect::<BTreeSet<_>>().len() && !r.stuck {
            r.stuck = true;
            self.stats.recoveries_stuck += 1;
            tracing::error!(part = %r.span, epoch = r.epoch, "every replica answered and none holds the previous custodian's complete copy: the part stays unavailable");
        }
    }

    /// Replaces recovery `id` by one per span of `spans` (which cover its
    /// part), each with the answers so far cut to its span.
    fn split_recovery(&mut self, id: u64, spans: Vec<Span>, now: Instant) {
        let Some(r) = self.recoveries.remove(&id) else { return };
        let mut ids = Vec::with_capacity(spans.len());
        for span in spans {
            let replies = r
                .replies
                .iter()
                .map(|(&from, x)| {
                    let resources = x
                        .resources
                        .iter()
                        .filter(|(_, s)| span.contains(Ring::key_hash(&s.resource)))
                        .cloned()
                        .collect();
                    (
                        from,
                        Reply {
                            born: x.born,
                            synced: x.synced.clone(),
                            chunks: x.chunks,
                            got: x.got.clone(),
                            resources,
                        },
                    )
                })
                .collect();
            ids.push(self.add_recovery(Recovery {
                span,
                epoch: r.epoch,
                from: r.from,
                learned_at: r.learned_at,
                members: r.members.clone(),
                previous: r.previous.clone(),
                replies,
                asked_at: r.asked_at,
                merged: None,
                stuck: false,
            }));
        }
        tracing::debug!(part = %r.span, pieces = ids.len(), "recovering the part in pieces: a mark covers some of them");
        for id in ids {
            self.check_quorum(id, now);
        }
    }

    /// When recovery has work: asking again, or taking custody.
    pub(super) fn recovery_deadline(&self) -> Option<Instant> {
        let ask = self.recoveries.values().filter(|r| r.merged.is_none()).map(Recovery::ask_at).min();
        let fetch = self.past_wanted.map(|(_, at)| at + RECOVER_RETRY);
        ask.into_iter().chain(self.recovery_due).chain(fetch).min()
    }

    pub(super) fn recovery_timeout(&mut self, now: Instant) {
        if let Some((epoch, at)) = self.past_wanted
            && now >= at + RECOVER_RETRY
        {
            if epoch + 1 == self.epoch {
                self.past_wanted = Some((epoch, now));
                self.outputs.push(CustodyOutput::FetchEpoch(epoch));
            } else {
                // A newer epoch came meanwhile: it asks for its own.
                self.past_wanted = None;
            }
        }
        let again: Vec<u64> = self
            .recoveries
            .iter()
            .filter(|(_, r)| r.merged.is_none() && now >= r.ask_at())
            .map(|(&id, _)| id)
            .collect();
        for id in again {
            let r = self.recoveries.get_mut(&id).expect("listed");
            if r.stuck {
                // Marks may have come since (a paused custodian that
                // resumed and marked its replicas before learning of its
                // removal): every replica is asked anew.
                r.replies.clear();
            }
            self.ask(id, now);
        }
        if self.recovery_due.is_some_and(|at| now >= at) {
            self.activate_due(now);
        }
    }

    /// Takes custody of every merged part whose wait is over.
    fn activate_due(&mut self, now: Instant) {
        self.recovery_due = None;
        let wait = self.recovery_wait;
        let due: Vec<u64> = self
            .recoveries
            .iter()
            .filter(|(_, r)| r.merged.is_some() && now >= r.learned_at + wait)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            let r = self.recoveries.remove(&id).expect("listed");
            if self.pieces.values().any(|p| overlaps(p.span, r.span)) {
                // A transfer brought it meanwhile: that state is the
                // custodian's own, sealed; keep it.
                tracing::info!(part = %r.span, "the part arrived by a transfer while recovering");
                continue;
            }
            let states = r.merged.expect("filtered");
            self.stats.ranges_recovered += 1;
            self.stats.resources_recovered += states.len() as u64;
            self.stats.tasks_recovered += states.iter().map(|s| s.pending.len() as u64).sum::<u64>();
            tracing::info!(part = %r.span, epoch = r.epoch, resources = states.len(), "took custody by recovery");
            for mut state in states {
                // The first task not known to have run may have been running
                // at the previous custodian: its next run is at least the
                // second (the handler sees attempt > 1).
                if let Some(head) = state.pending.first_mut() {
                    head.attempts = head.attempts.max(1);
                }
                self.take_resource(state);
            }
            self.marks.raise(r.span, r.epoch);
            self.pieces
                .insert(r.span.end, Piece { span: r.span, act_epoch: r.epoch, epoch: r.epoch, role: Role::Active });
            self.restart_sync();
        }
        let next = self.recoveries.values().filter(|r| r.merged.is_some()).map(|r| r.learned_at + wait).min();
        self.recovery_due = next;
        self.recut(now);
    }

    /// Parts being recovered, and of those, reported unrecoverable.
    pub(crate) fn recovering(&self) -> (usize, usize) {
        (self.recoveries.len(), self.recoveries.values().filter(|r| r.stuck).count())
    }
}

/// The part of recovery `r` cut into runs, in order, each with whether the
/// complete answers cover it: some answer carries a mark there, of epoch
/// `y` (at most `r.from`), and in every epoch from `y` to `r.from` the
/// answers include a read quorum of the run's replicas then. The mark
/// covers every task acknowledged before it (its custodian's state held
/// them all); a task acknowledged after it, by that custodian or by one
/// that took the part from it later, was held by a write quorum of the
/// replicas of the epoch its custodian knew, which that epoch's read
/// quorum meets. Replicas of those epochs not asked yet are added to
/// `wanted`.
fn marked_runs(
    history: &BTreeMap<u64, (Arc<Ring>, usize)>,
    r: &Recovery,
    wanted: &mut Vec<NodeId>,
) -> Vec<(Span, bool)> {
    let prev = r.from;
    let done: Vec<(&SocketAddr, &Reply)> = r.replies.iter().filter(|(_, x)| x.complete()).collect();
    // A read quorum of `members` among the answers, each from the life
    // that held the copies (or an earlier life of its process). The
    // custodian counted itself in every write quorum with the state it
    // held as custodian, which its answer (replica copies only) does not
    // carry: it is never counted.
    let quorum = |members: &[NodeId], custodian: &NodeId| {
        let n = members.len();
        let answered = members
            .iter()
            .filter(|m| m.addr != custodian.addr)
            .filter(|m| done.iter().any(|(a, x)| **a == m.addr && x.born <= m.incarnation))
            .count();
        answered > n - (n / 2 + 1)
    };
    let mut best = Marks::default();
    for (_, x) in &done {
        for &(run, mark) in &x.synced {
            best.raise(run, mark);
        }
    }
    let mut runs: Vec<(Span, bool)> = Vec::new();
    for (run, mark) in best.runs(r.span) {
        if mark == 0 {
            runs.push((run, false));
            continue;
        }
        let since = mark.min(prev);
        let pieces = runs_where(history, run, since, prev, |ring, k, range, o| {
            let members: Vec<NodeId> = ring.replicas(range, k).into_iter().cloned().collect();
            if quorum(&members, o) {
                return true;
            }
            for m in members {
                if !r.members.contains(&m) && !wanted.contains(&m) {
                    wanted.push(m);
                }
            }
            false
        });
        if pieces.is_empty() {
            runs.push((run, false));
        }
        runs.extend(pieces);
    }
    joined(runs)
}

/// `span` cut into runs, in order, each with whether every epoch from
/// `since` to `upto` gave all of it to `owner` with exactly `members` as
/// replicas. Empty when an epoch's ring is not in `history`.
fn kept_since(
    history: &BTreeMap<u64, (Arc<Ring>, usize)>,
    span: Span,
    owner: &NodeId,
    members: &[NodeId],
    since: u64,
    upto: u64,
) -> Vec<(Span, bool)> {
    runs_where(history, span, since, upto, |ring, k, range, o| {
        o == owner && ring.replicas(range, k).into_iter().eq(members.iter())
    })
}

/// `span` cut into runs, in order, each with whether `ok(ring, k, range,
/// owner)` held for every range over it in every epoch from `since` to
/// `upto`. Empty when an epoch's ring is not in `history`.
fn runs_where(
    history: &BTreeMap<u64, (Arc<Ring>, usize)>,
    span: Span,
    since: u64,
    upto: u64,
    mut ok: impl FnMut(&Ring, usize, RangeId, &NodeId) -> bool,
) -> Vec<(Span, bool)> {
    let mut runs: Vec<(Span, bool)> = vec![(span, true)];
    for epoch in since..=upto {
        let Some((ring, k)) = history.get(&epoch) else { return Vec::new() };
        let mut next: Vec<(Span, bool)> = Vec::new();
        for (s, kept) in runs {
            let cut = if kept { ring.cut(s) } else { Vec::new() };
            if cut.is_empty() {
                next.push((s, false));
            }
            for (range, piece, o) in cut {
                next.push((piece, ok(ring, *k, range, o)));
            }
        }
        runs = joined(next);
    }
    runs
}

/// Merges the states replicas hold of the same resources. Per resource only
/// the copies of the newest writer count: each write of a custodian holds
/// everything it held when sending, so a copy written in a later epoch
/// holds all a copy written earlier does, and a copy of an older epoch that
/// no later write replaced is a superseded custodian's (one that reached a
/// replica the recovery that replaced it never sealed): its tasks were
/// never acknowledged, and it may number tasks differently. Of those, the
/// highest watermark; the tasks after it by sequence number, up to the
/// first number nobody holds (every acknowledged task is held by some
/// replica of a read quorum, and only acknowledged tasks run, so a number
/// missing from all replies was neither: it is given out again); the ids
/// of what is kept; the newest token steps and forgotten ids.
pub(super) fn merge(states: Vec<(u64, ResourceState)>) -> Vec<ResourceState> {
    let mut by_name: BTreeMap<String, (u64, Vec<ResourceState>)> = BTreeMap::new();
    for (written, s) in states {
        let entry = by_name.entry(s.resource.clone()).or_default();
        if written > entry.0 {
            *entry = (written, Vec::new());
        }
        if written == entry.0 {
            entry.1.push(s);
        }
    }
    by_name.into_values().map(|(_, copies)| merge_one(copies)).collect()
}

fn merge_one(mut copies: Vec<ResourceState>) -> ResourceState {
    // The copy that saw the most run leads: its token steps and forgotten
    // ids are the newest.
    copies.sort_by_key(|s| (s.executed, s.last_seq));
    let lead = copies.last().expect("grouped").clone();
    let executed = lead.executed;
    let mut tasks: BTreeMap<u64, PendingTask> = BTreeMap::new();
    for s in &copies {
        for t in &s.pending {
            if t.seq > executed {
                tasks.entry(t.seq).or_insert_with(|| t.clone());
            }
        }
    }
    let mut pending = Vec::new();
    let mut last = executed;
    for (seq, t) in tasks {
        if seq != last + 1 {
            break;
        }
        last = seq;
        pending.push(t);
    }
    let highest = copies.iter().map(|s| s.last_seq).max().unwrap_or(0);
    if highest > last {
        tracing::debug!(resource = %lead.resource, held = last, highest, "numbers past the merged tasks were not acknowledged; given out again");
    }
    let mut dedup: BTreeMap<u64, (String, u64, u64)> = BTreeMap::new();
    for s in &copies {
        for d in &s.dedup {
            if d.1 <= last {
                let e = dedup.entry(d.1).or_insert_with(|| d.clone());
                e.2 = e.2.max(d.2);
            }
        }
    }
    let mut dedup: Vec<(String, u64, u64)> = dedup.into_values().collect();
    // The window: every id not run yet, and the last ones that ran.
    let ran = dedup.iter().filter(|d| d.1 <= executed).count();
    if ran > DEDUP_PER_RESOURCE_MAX {
        dedup.drain(..ran - DEDUP_PER_RESOURCE_MAX);
    }
    let mut seen = BTreeSet::new();
    dedup.retain(|d| seen.insert(d.0.clone()));
    let token_floor = copies.iter().map(|s| s.token_floor).max().unwrap_or(0);
    // Token steps of every copy together, rising in both number and epoch
    // (the newest custodian's step may be on one copy only).
    let mut steps: Vec<(u64, u64)> = copies.iter().flat_map(|s| s.token_epochs.iter().copied()).collect();
    steps.sort_unstable();
    let mut token_epochs: Vec<(u64, u64)> = Vec::new();
    for (first, epoch) in steps {
        match token_epochs.last_mut() {
            Some(last) if last.0 == first => last.1 = last.1.max(epoch),
            Some(&mut (_, e)) if epoch <= e => {}
            _ => token_epochs.push((first, epoch)),
        }
    }
    let skip = token_epochs.len().saturating_sub(TOKEN_EPOCHS_PER_RESOURCE_MAX);
    token_epochs.drain(..skip);
    // A replica learns a task's id when it is queued, before it runs: the
    // epoch of the token it ran with comes from the steps.
    for d in dedup.iter_mut().filter(|d| d.2 == 0 && d.1 <= executed) {
        d.2 = token_epochs.iter().rev().find(|&&(first, _)| first <= d.1).map_or(0, |&(_, e)| e);
    }
    ResourceState {
        resource: lead.resource.clone(),
        last_seq: last,
        executed,
        token_floor,
        pending,
        dedup,
        token_epochs,
        forgotten: lead.forgotten,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::task::Task;

    fn task(seq: u64) -> PendingTask {
        let task = Task { id: format!("t{seq}"), resource: "r".into(), payload: Vec::new() };
        PendingTask { seq, task, attempts: 0, waiters: Vec::new() }
    }

    fn state(executed: u64, last: u64, floor: u64) -> ResourceState {
        ResourceState {
            resource: "r".into(),
            last_seq: last,
            executed,
            token_floor: floor,
            pending: (executed + 1..=last).map(task).collect(),
            dedup: (1..=last).map(|s| (format!("t{s}"), s, 0)).collect(),
            token_epochs: vec![(1, floor)],
            forgotten: Vec::new(),
        }
    }

    #[test]
    fn merging_takes_the_highest_watermark_and_every_task_after_it() {
        // One replica saw tasks up to 10 with 3 run; another saw 8 run.
        let merged = merge(vec![(5, state(3, 10, 2)), (5, state(8, 9, 4))]);
        assert_eq!(merged.len(), 1);
        let m = &merged[0];
        assert_eq!((m.executed, m.last_seq, m.token_floor), (8, 10, 4));
        assert_eq!(m.pending.iter().map(|t| t.seq).collect::<Vec<_>>(), vec![9, 10]);
        assert_eq!(m.dedup.len(), 10);
        assert_eq!(m.token_epochs, vec![(1, 4)], "the leading copy's steps");
        m.validate().unwrap();
    }

    #[test]
    fn numbers_nobody_holds_are_given_out_again_and_their_ids_forgotten() {
        // Task 6 reached nobody of the quorum; 7 reached one (not
        // acknowledged either, since 6 was not durable before it).
        let mut with_gap = state(4, 7, 2);
        with_gap.pending.retain(|t| t.seq != 6);
        let merged = merge(vec![(5, with_gap.clone()), (5, state(4, 5, 2))]);
        let m = &merged[0];
        assert_eq!(m.last_seq, 5);
        assert_eq!(m.pending.iter().map(|t| t.seq).collect::<Vec<_>>(), vec![5]);
        assert!(m.dedup.iter().all(|d| d.1 <= 5), "{:?}", m.dedup);
        m.validate().unwrap();
    }

    #[test]
    fn a_superseded_custodians_copy_does_not_count() {
        // A custodian of epoch 2, cut off, numbered its tasks 1..=6; the
        // recovery at epoch 3 never sealed one replica, which took that
        // state late. The custodian of epoch 3 numbered others 1..=4 and ran
        // 2 of them: its copies, written later, are the resource.
        let mut zombie = state(0, 6, 2);
        for (t, d) in zombie.pending.iter_mut().zip(zombie.dedup.iter_mut()) {
            t.task.id = format!("z{}", t.seq);
            d.0 = t.task.id.clone();
        }
        let merged = merge(vec![(2, zombie), (3, state(2, 4, 3)), (4, state(2, 3, 3))]);
        let m = &merged[0];
        assert_eq!((m.executed, m.last_seq), (2, 3), "only the newest write's copy");
        assert!(m.dedup.iter().all(|d| d.0.starts_with('t')), "{:?}", m.dedup);
        let merged = merge(vec![(3, state(2, 4, 3)), (3, state(1, 3, 3)), (2, state(0, 9, 2))]);
        assert_eq!((merged[0].executed, merged[0].last_seq), (2, 4), "copies of the same epoch merge");
    }
}

#[cfg(test)]
mod quorum_tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::super::{Custody, CustodyOutput};
    use super::Recovery;
    use crate::engine::epoch::{Changes, Configuration};
    use crate::engine::id::NodeId;
    use crate::engine::ring::Span;
    use crate::engine::time::Instant;
    use crate::engine::wire::{RecoverReply, TaskMsg};

    fn id(port: u16, incarnation: u64) -> NodeId {
        NodeId::new(SocketAddr::from(([127, 0, 0, 1], port)), incarnation, &format!("n{port}"))
    }

    /// Epoch 2: a, b, c, d with k = 3; epoch 3 removes a. Returns the node
    /// that owns, in epoch 3, the most of a's points, its custody after
    /// learning both epochs, and the recoveries it asked for.
    fn removed_a() -> (Custody, Vec<(SocketAddr, u64, Span)>, NodeId) {
        let ids: Vec<NodeId> = (1..=4).map(|p| id(p, 1)).collect();
        let c1 = Configuration::first(9, ids[0].clone(), 16, 3);
        let c2 = c1.next(&Changes { joins: ids[1..].to_vec(), ..Changes::default() }).unwrap();
        let c3 = c2.next(&Changes { removals: vec![ids[0].clone()], ..Changes::default() }).unwrap();
        let ring3 = c3.ring();
        let heir = ids[1..].iter().max_by_key(|n| ring3.ranges().filter(|(_, _, o)| *o == *n).count()).unwrap();
        let mut c = Custody::new(heir.clone(), Duration::from_millis(100), 4);
        c.set_recovery_wait(Duration::from_secs(5));
        c.on_epoch(&c2, Instant::ZERO);
        c.drain().for_each(drop);
        c.on_epoch(&c3, Instant::ZERO);
        let asks = c
            .drain()
            .filter_map(|o| match o {
                CustodyOutput::Send(to, TaskMsg::Recover { id, epoch: 3, span }) => Some((to, id, span)),
                _ => None,
            })
            .collect();
        (c, asks, heir.clone())
    }

    fn reply(id: u64, born: u64, synced: u64) -> RecoverReply {
        let synced = vec![(Span { start: 0, end: 0 }, synced)];
        RecoverReply { id, epoch: 3, born, synced, chunk: 0, chunks: 1, resources: Vec::new() }
    }

    #[test]
    fn a_part_is_taken_only_after_a_marked_read_quorum_and_the_wait() {
        let (mut c, asks, heir) = removed_a();
        assert!(!asks.is_empty(), "the heir asks a's replicas");
        let mut by_id: BTreeMap<u64, Vec<SocketAddr>> = BTreeMap::new();
        for (to, id, _) in &asks {
            by_id.entry(*id).or_default().push(*to);
        }
        // A recovery the heir replicates itself answers itself; pick one
        // where two others are asked (it needs both: n = 3, quorum 2).
        let (&rid, targets) = by_id.iter().find(|(_, t)| t.len() == 2 && !t.contains(&heir.addr)).unwrap();
        let (x, y) = (targets[0], targets[1]);
        let t = Instant::from_micros(1000);
        // A restarted process's answer (it began after the life that held
        // the copies) does not count; an answer without a's mark does not
        // make the quorum usable.
        c.on_recover_reply(x, reply(rid, 2, 2), t);
        c.on_recover_reply(y, reply(rid, 1, 1), t);
        assert!(c.recoveries[&rid].merged.is_none(), "no quorum with a's mark yet");
        assert_eq!(c.recovering().1, 0);
        // The same replica from the right process, with a's mark of epoch 2.
        c.on_recover_reply(x, reply(rid, 1, 2), t);
        assert!(c.recoveries[&rid].merged.is_some());
        let span = c.recoveries[&rid].span;
        // Not before the wait.
        c.handle_timeout(Instant::from_micros(4_000_000), true);
        assert!(c.piece_of(span.end).is_none(), "taken before the old lease ran out");
        let wait = c.recovery_wait;
        c.handle_timeout(Instant::ZERO + wait, true);
        assert!(c.piece_of(span.end).is_some_and(|p| p.act_epoch == 3));
        assert_eq!(c.stats().ranges_recovered, 1);
        // And a late transfer of the part for epoch 3 or older is refused.
        assert_eq!(c.marks.highest(span), 3);
    }

    #[test]
    fn the_previous_custodians_own_answer_never_counts_towards_the_read_quorum() {
        // It counted itself in every write quorum with the state it held as
        // custodian, which its answer (replica copies) does not carry: with
        // it and one replica, a task acknowledged by it and the other
        // replica would be missed.
        let (mut c, asks, heir) = removed_a();
        let a = id(1, 1).addr;
        let (_, rid, _) = *asks.iter().find(|(to, _, _)| *to == a).unwrap();
        let others: Vec<SocketAddr> =
            c.recoveries[&rid].members.iter().map(|m| m.addr).filter(|&m| m != a && m != heir.addr).collect();
        let t = Instant::from_micros(1000);
        c.on_recover_reply(a, reply(rid, 1, 2), t);
        if let [only] = others[..] {
            // The heir answered itself: with a, two answers, one counting.
            assert!(c.recoveries[&rid].merged.is_none(), "a and the heir are not a read quorum");
            c.on_recover_reply(only, reply(rid, 1, 2), t);
        } else {
            c.on_recover_reply(others[0], reply(rid, 1, 2), t);
            assert!(c.recoveries[&rid].merged.is_none(), "a and one replica are not a read quorum");
            c.on_recover_reply(others[1], reply(rid, 1, 2), t);
        }
        assert!(c.recoveries[&rid].merged.is_some(), "the two other replicas are");
    }

    #[test]
    fn a_part_this_node_owned_but_never_got_is_followed_back_to_its_holder() {
        // Epoch 2: a, c, d. Epoch 3: b joins and owns some of a's points,
        // but a crashes before handing them over. Epoch 4 removes a: the
        // owner of those points in epoch 3 is b itself, which never got
        // them; b reads a's replicas of epoch 2.
        let (a, b, c, d) = (id(1, 1), id(2, 1), id(3, 1), id(4, 1));
        let c1 = Configuration::first(9, a.clone(), 16, 3);
        let c2 = c1.next(&Changes { joins: vec![c.clone(), d.clone()], ..Changes::default() }).unwrap();
        let c3 = c2.next(&Changes { joins: vec![b.clone()], ..Changes::default() }).unwrap();
        let c4 = c3.next(&Changes { removals: vec![a.clone()], ..Changes::default() }).unwrap();
        let mut cb = Custody::new(b.clone(), Duration::from_millis(100), 4);
        cb.on_epoch(&c2, Instant::ZERO);
        cb.on_epoch(&c3, Instant::ZERO);
        cb.drain().for_each(drop);
        cb.on_epoch(&c4, Instant::ZERO);
        cb.drain().for_each(drop);
        let (ring2, ring3) = (c2.ring(), c3.ring());
        let followed: Vec<&Recovery> = cb.recoveries.values().filter(|r| r.from == 2).collect();
        assert!(!followed.is_empty(), "b follows its never-received points back to epoch 2");
        for r in &followed {
            assert_eq!(r.previous, a);
            assert!(ring3.cut(r.span).iter().all(|(_, _, o)| **o == b), "b owned them in epoch 3");
            assert!(ring2.cut(r.span).iter().all(|(_, _, o)| **o == a), "a held them in epoch 2");
            let (range, _) = ring2.locate_point(r.span.end).unwrap();
            assert_eq!(r.members, ring2.replicas(range, 3).into_iter().cloned().collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_removed_lifes_transfer_of_a_part_being_recovered_is_refused() {
        // a, removed, hands the part over late (cut off, then healed): its
        // copy may be older than what the replicas hold; the recovery
        // decides.
        let (mut c, asks, heir) = removed_a();
        let (_, rid, span) = asks[0];
        let t = crate::engine::wire::Transfer {
            id: 7,
            from_incarnation: 1,
            to_incarnation: heir.incarnation,
            epoch: 3,
            spans: vec![span],
            resources: Vec::new(),
        };
        c.on_transfer(id(1, 1).addr, t, Instant::ZERO);
        assert!(c.piece_of(span.end).is_none(), "not taken");
        assert!(c.recoveries.contains_key(&rid), "still recovering");
        assert_eq!(c.stats().transfers_refused, 1);
    }

    #[test]
    fn replicas_that_all_answer_without_the_mark_leave_the_part_unavailable() {
        let (mut c, asks, heir) = removed_a();
        let (_, rid, _) = *asks.iter().find(|(to, _, _)| *to != heir.addr).unwrap();
        let members: Vec<SocketAddr> = c.recoveries[&rid].members.iter().map(|m| m.addr).collect();
        for m in members.iter().filter(|m| **m != heir.addr && **m != id(1, 1).addr) {
            c.on_recover_reply(*m, reply(rid, 1, 1), Instant::ZERO);
        }
        // a itself (crashed) never answers: not everyone answered yet.
        assert!(c.recoveries[&rid].merged.is_none());
        // a comes back and answers too, still without the mark of epoch 2
        // (its ring changed since epoch 1, so an older mark is no good).
        c.on_recover_reply(id(1, 1).addr, reply(rid, 1, 1), Instant::ZERO);
        assert!(c.recoveries[&rid].merged.is_none());
        assert!(c.recoveries[&rid].stuck, "every replica answered: reported");
        assert_eq!(c.info().ranges_unrecoverable, 1);
    }
}
