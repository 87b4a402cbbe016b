//! What the simulator records of the nodes' outputs: the trace hash over
//! every output, the membership events and each node's view (against the
//! truth: convergence, false suspicions), what the epoch store committed
//! and each node learned (one chain, never backwards), the frames a
//! gateway's submit and a transfer ride on, and whether a cut-off side
//! stopped acting within a lease.

use std::collections::{BTreeMap, BTreeSet};

use custody::engine::wire::{self, Frame, Message, TaskMsg};
use custody::engine::{EpochEvent, Event, Instant, NodeId};

use super::custody_watch::TransferRec;
use super::queue::Ev;
use super::{SAMPLE_PERIOD_US, Sim, node_index};
use crate::checker;
use crate::trace::parse_index;

/// FNV-1a, 64 bits: a stable hash of the trace (no std hasher, whose output
/// may change between Rust versions).
#[derive(Debug, Clone, Copy)]
pub(super) struct TraceHash(u64);

impl TraceHash {
    /// The hash of nothing.
    pub(super) fn new() -> TraceHash {
        TraceHash(0xcbf2_9ce4_8422_2325)
    }

    /// Hashes bytes.
    pub(super) fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Hashes a number (little-endian).
    pub(super) fn u64(&mut self, x: u64) {
        self.bytes(&x.to_le_bytes());
    }

    /// The hash so far.
    pub(super) fn value(self) -> u64 {
        self.0
    }
}

/// What the checker follows of the epoch store.
#[derive(Default)]
pub(super) struct EpochWatch {
    /// Every epoch any node committed or learned, with its hash; a second
    /// hash for one number breaks the chain.
    pub(super) chain: BTreeMap<u64, u64>,
    pub(super) committed: BTreeSet<u64>,
    pub(super) votes: BTreeSet<(NodeId, NodeId)>,
    pub(super) lease_renewals: u64,
    /// Per epoch, when it was first committed (true time, µs).
    pub(super) committed_at: BTreeMap<u64, u64>,
    pub(super) violations: Vec<String>,
    /// Minority-side nodes that could still act as custodian one lease after
    /// the cut, and the number checked.
    pub(super) lease_checks: Vec<(u64, usize, Vec<usize>)>,
}

/// The variant name of a `Message::Task` frame's task message (empty for
/// other frames), read from its first bytes as [`crate::trace::FrameCounts::count`] does.
fn task_variant(bytes: &[u8]) -> &[u8] {
    let name = |at: usize| -> &[u8] {
        match bytes.get(at) {
            Some(&h) if h & 0xe0 == 0xa0 => bytes.get(at + 1..at + 1 + usize::from(h & 0x1f)).unwrap_or(&[]),
            _ => &[],
        }
    };
    if bytes.get(1) != Some(&wire::KIND_MESSAGE) || bytes.get(2) != Some(&0x81) || name(3) != b"Task" {
        return &[];
    }
    match bytes.get(8) {
        Some(&0x81) => name(9),
        // A unit variant is its name alone.
        _ => name(8),
    }
}

/// The task message in a frame, if it is one.
fn task_msg(bytes: &[u8]) -> Option<TaskMsg> {
    match wire::decode_frame(bytes) {
        Ok(Frame::Message(Message::Task(m))) => Some(m),
        _ => None,
    }
}

impl Sim {
    /// Node `observer` reports an event: into the hash, and into its view
    /// of the membership or the epoch store's watch.
    pub(super) fn observe(&mut self, observer: usize, event: Event) {
        let hash_id = |hash: &mut TraceHash, id: &NodeId| {
            hash.u64(node_index(id.addr).unwrap_or(usize::MAX) as u64);
            hash.u64(id.incarnation);
        };
        match event {
            Event::MemberUp(id) => {
                self.hash.bytes(&[1]);
                hash_id(&mut self.hash, &id);
                self.membership.member_up += 1;
                if let Some(subject) = node_index(id.addr) {
                    self.nodes[observer].view.insert(subject, (id.incarnation, id.generation));
                }
            }
            Event::MemberDown(id) => {
                self.hash.bytes(&[2]);
                hash_id(&mut self.hash, &id);
                self.membership.member_down += 1;
                let Some(subject) = node_index(id.addr) else { return };
                let view = &mut self.nodes[observer].view;
                if view.get(&subject) == Some(&(id.incarnation, id.generation)) {
                    view.remove(&subject);
                }
                let this_life_is_up =
                    self.is_current(subject, (id.incarnation, id.generation)) && !self.nodes[subject].paused;
                let excused = self.now < self.excused_until[subject] || self.now < self.excused_until[observer];
                if this_life_is_up && !excused {
                    self.membership.false_suspicions += 1;
                    if self.now < self.high_loss_until {
                        self.membership.false_suspicions_at_high_loss += 1;
                    }
                }
            }
            Event::MemberRenamed { old, new } => {
                self.hash.bytes(&[3]);
                hash_id(&mut self.hash, &old);
                hash_id(&mut self.hash, &new);
                if let Some(subject) = node_index(new.addr) {
                    let view = &mut self.nodes[observer].view;
                    if view.get(&subject) == Some(&(old.incarnation, old.generation)) {
                        view.insert(subject, (new.incarnation, new.generation));
                    }
                }
            }
            Event::Rejoined(id) => {
                self.hash.bytes(&[4]);
                hash_id(&mut self.hash, &id);
                let node = &mut self.nodes[observer];
                if id.incarnation != node.incarnation {
                    // A new life: its learned epochs start over.
                    node.learned = 0;
                }
                node.incarnation = id.incarnation;
                node.generation = id.generation;
            }
            Event::Joined => self.hash.bytes(&[5]),
            Event::Isolated => self.hash.bytes(&[6]),
            Event::Left => self.hash.bytes(&[7]),
            Event::Epoch(event) => {
                self.hash.bytes(&[8]);
                self.observe_epoch(observer, event);
            }
        }
    }

    /// Node `node` reports an epoch store event: the chain, the commits,
    /// the votes and leases.
    fn observe_epoch(&mut self, node: usize, event: EpochEvent) {
        let now = self.now;
        let w = &mut self.epochs;
        let mut chain = |epoch: u64, hash: u64, violations: &mut Vec<String>| {
            let known = *w.chain.entry(epoch).or_insert(hash);
            if known != hash {
                violations.push(format!(
                    "epoch chain forked: epoch {epoch} has hashes {known:016x} and {hash:016x} (n{node} at {} ms)",
                    now / 1000
                ));
            }
        };
        match event {
            EpochEvent::EpochLearned { epoch, hash } => {
                self.hash.u64(epoch);
                chain(epoch, hash, &mut w.violations);
                let learned = &mut self.nodes[node].learned;
                if epoch <= *learned {
                    w.violations.push(format!(
                        "n{node} learned epoch {epoch} after epoch {} at {} ms: learned epochs went backwards",
                        *learned,
                        now / 1000
                    ));
                }
                *learned = epoch;
                self.record_ring(node, epoch);
            }
            EpochEvent::EpochCommitted { epoch, hash } => {
                if let Some(b) = self.baseline.as_mut() {
                    // The Raft group's voters may have changed with it.
                    b.voters_changed();
                }
                self.hash.u64(epoch);
                chain(epoch, hash, &mut w.violations);
                w.committed.insert(epoch);
                w.committed_at.entry(epoch).or_insert(now);
                if let Some((since, before)) = self.watch.blind_since[node]
                    && epoch > before
                {
                    w.violations.push(format!(
                        "n{node}, cut off from the voters' majority since {} ms, committed epoch {epoch} at {} ms",
                        since / 1000,
                        now / 1000
                    ));
                }
                self.record_ring(node, epoch);
            }
            EpochEvent::VoteCommitted { target, by } => {
                w.votes.insert((target, by));
            }
            EpochEvent::LeaseRenewed { .. } => w.lease_renewals += 1,
            EpochEvent::Removed => self.hash.bytes(b"removed"),
        }
        self.log_consensus();
    }

    /// Watches a stream frame node `from` sends: a gateway's submit, a
    /// transfer.
    pub(super) fn watch_sent(&mut self, from: usize, to: usize, bytes: &[u8]) {
        match task_variant(bytes) {
            b"Submit" | b"Transfer" => {}
            _ => return,
        }
        match task_msg(bytes) {
            Some(TaskMsg::Submit { req, task, .. }) => {
                if let Some(k) = parse_index(&task.id, 't') {
                    self.watch.submits.insert((from, req), k);
                }
            }
            Some(TaskMsg::Transfer(t)) => {
                let key = (from, self.nodes[from].incarnation, t.id);
                let now = self.now;
                self.watch.transfers.entry(key).or_insert(TransferRec {
                    to,
                    to_incarnation: t.to_incarnation,
                    epoch: t.epoch,
                    spans: t.spans,
                    sent: now,
                    acked: None,
                });
            }
            _ => {}
        }
    }

    /// Watches a stream frame reaching node `to`: a custodian's `Accepted`
    /// reaching the gateway (the client's acknowledgement), a transfer's
    /// acknowledgement reaching its sender.
    pub(super) fn watch_delivered(&mut self, to: usize, bytes: &[u8]) {
        match task_variant(bytes) {
            b"Accepted" | b"TransferAck" => {}
            _ => return,
        }
        let now = self.now;
        match task_msg(bytes) {
            Some(TaskMsg::Accepted { req, .. }) => {
                if let Some(k) = self.watch.submits.remove(&(to, req))
                    && let Some(c) = self.clients.as_mut()
                {
                    c.acknowledge(k, now);
                }
            }
            Some(TaskMsg::TransferAck { id }) => {
                if let Some(t) = self.watch.transfers.get_mut(&(to, self.nodes[to].incarnation, id)) {
                    t.acked.get_or_insert(now);
                }
            }
            _ => {}
        }
    }

    /// What the task checker needs of the epoch store (I8).
    pub(super) fn epoch_facts(&self) -> checker::EpochFacts<'_> {
        checker::EpochFacts { violations: &self.epochs.violations, committed_at: Some(&self.epochs.committed_at) }
    }

    /// Logs the cumulative consensus instances now (coalesced per 10 ms).
    pub(super) fn log_consensus(&mut self) {
        let total = self.epochs.committed.len() as u64 + self.epochs.votes.len() as u64 + self.lock_consensus;
        match self.consensus_log.last_mut() {
            Some(last) if last.0 / 10_000 == self.now / 10_000 => *last = (self.now, total),
            Some(last) if last.1 == total => {}
            _ => self.consensus_log.push((self.now, total)),
        }
    }

    /// Whether node `s` is running as exactly this (incarnation,
    /// generation): the truth a view entry is checked against.
    fn is_current(&self, s: usize, life: (u64, u32)) -> bool {
        self.running(s) && (self.nodes[s].incarnation, self.nodes[s].generation) == life
    }

    /// Whether every running node's view is the true membership: every
    /// other running node, at its current incarnation.
    pub(super) fn converged(&self) -> bool {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.running(i)).collect();
        running.iter().all(|&o| {
            let view = &self.nodes[o].view;
            view.len() + 1 == running.len() && view.iter().all(|(&s, &life)| self.is_current(s, life))
        })
    }

    /// Up to `max` running nodes whose view differs from the truth, with how.
    pub(super) fn divergence(&self, max: usize) -> Vec<String> {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.running(i)).collect();
        let mut out = Vec::new();
        for &o in &running {
            let view = &self.nodes[o].view;
            let missing: Vec<String> =
                running.iter().filter(|&&s| s != o && !view.contains_key(&s)).map(|s| format!("n{s}")).collect();
            let stale: Vec<String> = view
                .iter()
                .filter(|&(&s, &life)| !self.is_current(s, life))
                .map(|(s, (inc, generation))| format!("n{s}#{inc}.{generation}"))
                .collect();
            if !missing.is_empty() || !stale.is_empty() {
                out.push(format!("n{o} misses [{}] and holds stale [{}]", missing.join(" "), stale.join(" ")));
                if out.len() == max {
                    break;
                }
            }
        }
        out
    }

    /// One lease after the cut that started at `since`: which nodes of its
    /// side without the voters' majority could still act as custodian.
    pub(super) fn lease_check(&mut self, since: u64) {
        // Only while that same cut lasts (a heal, or a later cut, ends it).
        let side: Vec<usize> =
            (0..self.nodes.len()).filter(|&n| self.watch.cut_since[n].is_some_and(|(at, _)| at == since)).collect();
        if side.is_empty() {
            return;
        }
        let acting: Vec<usize> = side
            .iter()
            .copied()
            .filter(|&n| {
                let node = &self.nodes[n];
                let local = Instant::from_micros(node.clock.local(self.now));
                node.engine.as_ref().is_some_and(|e| e.may_act_as_custodian(local))
            })
            .collect();
        self.epochs.lease_checks.push((self.now, side.len(), acting));
    }

    /// A convergence sample: the first time every view is the truth after
    /// the last fault, or another sample later.
    pub(super) fn sample(&mut self) {
        if self.converged() {
            self.converged_at = Some(self.now);
        } else if self.now + SAMPLE_PERIOD_US <= self.end {
            self.push(self.now + SAMPLE_PERIOD_US, Ev::Sample);
        }
    }
}
