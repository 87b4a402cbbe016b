//! Tracing faults to the resources whose custody they touched: each
//! committed epoch's ring and members, the transfers and their
//! acknowledgements, and when each node crashed, was paused or was cut off;
//! at the end, every window in which a fault touched a resource the tasks
//! use ([`Exposure`]), which the checker reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use custody::engine::ring::{Ring, Span};
use custody::engine::{MemberStatus, Node};

use super::{Sim, node_index};
use crate::checker::{Exposure, Touch};
use crate::trace::{TaskRecord, resource_name};

/// What the checker needs to trace faults to the resources whose custody
/// they touched (see [`Exposure`]): each committed epoch's ring,
/// the transfers and their acknowledgements, and when each node crashed,
/// was paused or was cut off.
pub(super) struct CustodyWatch {
    /// Per committed epoch: when it was first committed, its ring, and its
    /// members (node index and status).
    pub(super) rings: BTreeMap<u64, EpochRing>,
    /// Submits gateways forwarded: (gateway, request number) → task.
    pub(super) submits: BTreeMap<(usize, u64), u64>,
    /// Transfers sent, by (sender, its incarnation, transfer id).
    pub(super) transfers: BTreeMap<(usize, u64, u64), TransferRec>,
    /// (node, true µs) of each crash of a running node.
    pub(super) crashes: Vec<(usize, u64)>,
    /// (node, from, to) of each pause; `to` is `u64::MAX` if it lasted
    /// to the end.
    pub(super) pauses: Vec<(usize, u64, u64)>,
    /// Per node paused now: since when.
    pub(super) paused_since: Vec<Option<u64>>,
    /// (node, from, to) during which the node could not reach a majority of
    /// the voters committed at the cut, both ways (partitions).
    pub(super) cutoffs: Vec<(usize, u64, u64)>,
    /// Per node cut off now: since when, and the latest epoch committed then.
    pub(super) cut_since: Vec<Option<(u64, u64)>>,
    /// Per node that cannot learn of a commit now (no voter that reaches a
    /// majority of the voters both ways can reach it): since when, and the
    /// latest epoch committed then. Such a node must commit nothing newer.
    pub(super) blind_since: Vec<Option<(u64, u64)>>,
    /// When a majority of the committed voters had crashed, if it happened:
    /// a crashed voter's Raft state is gone, so the store never commits
    /// again.
    pub(super) store_lost_at: Option<u64>,
}

/// A committed epoch's ring and members.
pub(super) struct EpochRing {
    /// When the epoch was first committed, true µs.
    pub(super) at: u64,
    pub(super) ring: Arc<Ring>,
    pub(super) members: Vec<(usize, MemberStatus)>,
    /// Every member's life: (node, incarnation).
    pub(super) lives: Vec<(usize, u64)>,
}

/// A transfer a node sent, and when it was acknowledged.
pub(super) struct TransferRec {
    /// The receiver.
    pub(super) to: usize,
    /// The receiver's life the transfer is for.
    pub(super) to_incarnation: u64,
    /// The epoch it was sent for.
    pub(super) epoch: u64,
    /// The parts of the ring it hands over.
    pub(super) spans: Vec<Span>,
    /// When it was first sent, true µs.
    pub(super) sent: u64,
    /// When its acknowledgement reached the sender, true µs.
    pub(super) acked: Option<u64>,
}

impl CustodyWatch {
    /// Nothing watched yet, in a run of `nodes` nodes.
    pub(super) fn new(nodes: usize) -> CustodyWatch {
        CustodyWatch {
            rings: BTreeMap::new(),
            submits: BTreeMap::new(),
            transfers: BTreeMap::new(),
            crashes: Vec::new(),
            pauses: Vec::new(),
            paused_since: vec![None; nodes],
            cutoffs: Vec::new(),
            cut_since: vec![None; nodes],
            blind_since: vec![None; nodes],
            store_lost_at: None,
        }
    }
}

impl Sim {
    /// Keeps epoch `epoch`'s ring, from node `node`'s configuration, the
    /// first time it is seen.
    pub(super) fn record_ring(&mut self, node: usize, epoch: u64) {
        if self.watch.rings.contains_key(&epoch) {
            return;
        }
        let Some(c) = self.nodes[node].engine.as_ref().and_then(Node::configuration).filter(|c| c.epoch == epoch)
        else {
            return;
        };
        let members = c.members.iter().filter_map(|m| Some((node_index(m.id.addr)?, m.status))).collect();
        let lives = c.members.iter().filter_map(|m| Some((node_index(m.id.addr)?, m.id.incarnation))).collect();
        let at = self.epochs.committed_at.get(&epoch).copied().unwrap_or(self.now);
        self.watch.rings.insert(epoch, EpochRing { at, ring: self.rings.ring(c), members, lives });
    }

    /// The node whose committed ring of `epoch` gives it resource `r`.
    pub(super) fn owner_of(&self, epoch: u64, r: u64) -> Option<usize> {
        let ring = &self.watch.rings.get(&epoch)?.ring;
        node_index(ring.owner(&resource_name(r))?.addr)
    }

    /// Every window in which a fault touched the custody of a resource the
    /// tasks use (see [`Exposure`]), sorted by resource and start.
    ///
    /// A node holds a resource from the commit of an epoch whose ring gives
    /// it the resource until a transfer of the resource away from it (sent
    /// for the epoch that moved it, or a later one) is acknowledged; never
    /// acknowledged: to the end. A crash while holding touches the resource
    /// for good; a pause or a cut (unable to reach a majority of the voters
    /// both ways) while holding, from its start to its end, or to the
    /// handoff's acknowledgement if the resource moved away meanwhile; a
    /// removal not by a graceful leave (the member was active in the epoch
    /// before), from the removal to the handoff's acknowledgement; an
    /// unacknowledged transfer whose receiver was removed, from the removal
    /// to the end, for every resource in its spans.
    pub(super) fn exposures(&self, tasks: &[TaskRecord]) -> Vec<Exposure> {
        let w = &self.watch;
        let end = self.end;
        let close = |to: u64| if to >= end { u64::MAX } else { to };
        let pauses: Vec<(usize, u64, u64)> = w
            .pauses
            .iter()
            .copied()
            .chain(w.paused_since.iter().enumerate().filter_map(|(n, s)| s.map(|since| (n, since, u64::MAX))))
            .collect();
        let cutoffs: Vec<(usize, u64, u64)> = w
            .cutoffs
            .iter()
            .copied()
            .chain(w.cut_since.iter().enumerate().filter_map(|(n, s)| s.map(|(since, _)| (n, since, u64::MAX))))
            .collect();
        // Removals not by a graceful leave: (node, epoch, when).
        let mut removals: Vec<(usize, u64, u64)> = Vec::new();
        let epochs: Vec<(u64, &EpochRing)> = w.rings.iter().map(|(&e, r)| (e, r)).collect();
        for pair in epochs.windows(2) {
            let ((_, before), (e, after)) = (pair[0], pair[1]);
            for &(n, status) in &before.members {
                if status == MemberStatus::Active && !after.members.iter().any(|&(m, _)| m == n) {
                    removals.push((n, e, after.at));
                }
            }
        }
        // Unacknowledged transfers whose receiver's life left the
        // configuration (removed, or restarted as a new life): the sender
        // holds them in doubt from the epoch without it.
        let in_doubt: Vec<(&TransferRec, usize, u64)> = w
            .transfers
            .iter()
            .filter(|(_, t)| t.acked.is_none())
            .filter_map(|(&(from, _, _), t)| {
                let life = (t.to, t.to_incarnation);
                let (_, without) = w.rings.range(t.epoch + 1..).find(|(_, r)| !r.lives.contains(&life))?;
                Some((t, from, without.at.max(t.sent)))
            })
            .collect();
        if w.crashes.is_empty() && pauses.is_empty() && cutoffs.is_empty() && removals.is_empty() && in_doubt.is_empty()
        {
            return Vec::new();
        }
        // Pauses and cuts: a custodian stopped by one writes nothing.
        let stops: Vec<(usize, u64, u64)> = pauses.iter().chain(&cutoffs).copied().collect();
        let mut resources: Vec<u64> = tasks.iter().map(|t| t.resource).collect();
        resources.sort_unstable();
        resources.dedup();
        let mut out = Vec::new();
        for &r in &resources {
            let point = Ring::key_hash(&resource_name(r));
            // (node, from, moved away at, the epoch that moved it).
            let mut held: Vec<(usize, u64, u64, u64)> = Vec::new();
            for &(e, er) in &epochs {
                let owner = er.ring.locate_point(point).and_then(|(_, id)| node_index(id.addr));
                match held.last_mut() {
                    Some(last) if Some(last.0) == owner && last.2 == u64::MAX => {}
                    _ => {
                        if let Some(last) = held.last_mut().filter(|l| l.2 == u64::MAX) {
                            last.2 = er.at;
                            last.3 = e;
                        }
                        if let Some(o) = owner {
                            held.push((o, er.at, u64::MAX, u64::MAX));
                        }
                    }
                }
            }
            // Each holding with its release: the acknowledgement of the
            // first transfer of `r` away from the holder.
            let holdings: Vec<(usize, u64, u64, u64)> = held
                .iter()
                .map(|&(n, from, moved, epoch)| {
                    let release = if moved == u64::MAX {
                        u64::MAX
                    } else {
                        w.transfers
                            .range((n, 0, 0)..(n + 1, 0, 0))
                            .map(|(_, t)| t)
                            .filter(|t| {
                                t.epoch >= epoch && t.sent >= moved && t.spans.iter().any(|s| s.contains(point))
                            })
                            .filter_map(|t| t.acked)
                            .min()
                            .unwrap_or(u64::MAX)
                    };
                    (n, from, moved, release)
                })
                .collect();
            let mut add = |touch: Touch, node: usize, from: u64, to: u64, unhealed: bool| {
                out.push(Exposure { resource: r, touch, node, from, to: close(to), unhealed });
            };
            for &(n, at) in &w.crashes {
                if holdings.iter().any(|&(h, from, _, release)| h == n && from <= at && at < release) {
                    add(Touch::Crashed, n, at, u64::MAX, false);
                }
            }
            for (touch, windows) in [(Touch::Paused, &pauses), (Touch::CutOff, &cutoffs)] {
                for &(n, f0, f1) in windows.iter() {
                    for &(h, from, moved, release) in &holdings {
                        if h == n && from <= f1 && release >= f0 {
                            let to = if moved <= f1 { release } else { f1 };
                            add(touch, n, f0.max(from), to, f1 == u64::MAX);
                        }
                    }
                }
            }
            for &(n, _, at) in &removals {
                for &(h, from, _, release) in &holdings {
                    if h == n && from <= at && release > at {
                        add(Touch::Removed, n, at, release, false);
                    }
                }
            }
            for &(t, from, at) in &in_doubt {
                if t.spans.iter().any(|s| s.contains(point)) {
                    add(Touch::InDoubt, from, at, u64::MAX, false);
                }
            }
            for (node, at) in self.quorum_losses(point, &stops) {
                add(Touch::QuorumLost, node, at, u64::MAX, false);
            }
        }
        out.sort_by_key(|e| (e.resource, e.from, e.touch, e.node, e.to));
        out
    }

    /// Where the custodian of `point` left the configuration without a
    /// handoff (its life is missing from the next epoch) while too few of
    /// the replicas it could last write to were left for a read quorum
    /// (`n − (n/2 + 1) + 1` of `n`): (the custodian, the next epoch's
    /// commit). It could last write to the replicas of the latest epoch
    /// committed before it crashed, or was paused or cut off for good (until
    /// after that commit), in which the ring gave it the point. A replica's
    /// copies are gone once its node crashed, or its life left the
    /// configuration, by the next epoch's commit and a second after (when a
    /// recovery has asked them).
    fn quorum_losses(&self, point: u64, stops: &[(usize, u64, u64)]) -> Vec<(usize, u64)> {
        let w = &self.watch;
        let k = usize::from(self.plan.config.replication.max(1));
        let mut out = Vec::new();
        let epochs: Vec<&EpochRing> = w.rings.values().collect();
        for (i, pair) in epochs.windows(2).enumerate() {
            let (er, next) = (pair[0], pair[1]);
            let Some((_, owner)) = er.ring.locate_point(point) else { continue };
            let (Some(node), life) = (node_index(owner.addr), owner.incarnation) else { continue };
            if next.lives.contains(&(node, life)) {
                continue;
            }
            let born = self.life_born(node, life, er.at);
            let stopped = w
                .crashes
                .iter()
                .filter(|&&(n, at)| n == node && at >= born)
                .map(|&(_, at)| at)
                .chain(
                    stops.iter().filter(|&&(n, from, to)| n == node && from <= next.at && to >= next.at).map(|s| s.1),
                )
                .min()
                .unwrap_or(next.at);
            // The latest epoch before it stopped that gave it the point.
            let Some(last) = epochs[..=i].iter().rev().find(|e| {
                e.at <= stopped
                    && e.ring.locate_point(point).is_some_and(|(_, o)| o.addr == owner.addr && o.incarnation == life)
            }) else {
                continue;
            };
            let Some((range, _)) = last.ring.locate_point(point) else { continue };
            let deadline = next.at.saturating_add(1_000_000);
            let replicas: Vec<(usize, u64)> = last
                .ring
                .replicas(range, k)
                .into_iter()
                .filter_map(|id| Some((node_index(id.addr)?, id.incarnation)))
                .collect();
            let n = replicas.len();
            let read_quorum = n - (n / 2 + 1) + 1;
            let left = replicas.iter().filter(|&&(m, inc)| !self.life_gone(m, inc, last.at, deadline)).count();
            if left < read_quorum {
                out.push((node, next.at));
            }
        }
        out
    }

    /// When node `m`'s life `inc` first was a member (`or` if never).
    fn life_born(&self, m: usize, inc: u64, or: u64) -> u64 {
        self.watch.rings.values().filter(|r| r.lives.contains(&(m, inc))).map(|r| r.at).min().unwrap_or(or)
    }

    /// Whether node `m`'s life `inc`, a member at `since`, lost its copies
    /// by `deadline`: the node crashed after the life first was a member,
    /// or a configuration committed after `since` does not have the life.
    fn life_gone(&self, m: usize, inc: u64, since: u64, deadline: u64) -> bool {
        let w = &self.watch;
        let born = self.life_born(m, inc, since);
        w.crashes.iter().any(|&(n, at)| n == m && at >= born && at <= deadline)
            || w.rings.values().any(|r| r.at > since && r.at <= deadline && !r.lives.contains(&(m, inc)))
    }
}
