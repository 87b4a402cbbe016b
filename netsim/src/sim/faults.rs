//! The plan's faults, applied at their times: crashes, restarts and joins,
//! graceful leaves, pauses and resumes, partitions and heals, and changes
//! of the whole network's model; with what the checks need to know of
//! them: which nodes a cut leaves without the voters' majority (and so may
//! not act as custodian, nor commit), and which membership declarations
//! a fault excuses.

use std::net::SocketAddr;

use custody::engine::{Command, Input};

use super::{Ev, Sim, node_addr, node_index};
use crate::plan::{Fault, LinkModel};
use crate::trace::parse_index;

impl Sim {
    /// Applies the plan's fault `index`, now.
    pub(super) fn apply_fault(&mut self, index: usize) {
        if self.at_first_fault.is_none() {
            self.at_first_fault = Some(self.handoffs());
        }
        let fault = self.plan.faults[index].fault.clone();
        self.hash.u64(self.now);
        self.hash.bytes(b"fault");
        self.hash.u64(index as u64);
        match fault {
            Fault::Crash { node } => self.crash(node),
            Fault::Restart { node, seeds } | Fault::Join { node, seeds } => {
                if self.running(node) {
                    // Nothing starts, and nothing about the cuts changed.
                    return;
                }
                self.start_life(node, &seeds);
            }
            Fault::Leave { node } => {
                self.with_baseline(|b, io| b.node_leaving(node, io));
                self.input(node, Input::Command(Command::Leave));
            }
            Fault::Pause { node } => self.pause(node),
            Fault::Resume { node } => self.resume(node),
            Fault::Partition { a, b, oneway } => self.partition(&a, &b, oneway),
            Fault::Heal => self.heal(),
            Fault::SetNet { net } => self.set_net(net),
        }
        // A crash, pause or restart inside a cut can change who renews.
        if self.network.partitioned() {
            self.update_cut_off();
        }
    }

    /// Node `node` crashes: its engine, its handlers and the baseline's
    /// worker process with it.
    fn crash(&mut self, node: usize) {
        // The baseline's worker process dies with the node (even
        // one still draining after its engine left).
        self.with_baseline(|b, io| b.node_crashed(node, io));
        if self.running(node) {
            self.injected.crashes += 1;
            let now = self.now;
            self.watch.crashes.push((node, now));
            if let Some(since) = self.watch.paused_since[node].take() {
                self.watch.pauses.push((node, since, now));
            }
            self.released_at[node] = None;
            if let Some(c) = self.clients.as_mut() {
                c.gateway_fault(node, now);
            }
            // The voters as committed before the crash (the leader
            // may be the one crashing).
            let voters = self.committed_voters();
            self.stop_node(node);
            let gone = voters.iter().filter(|&&v| !self.running(v)).count();
            if !voters.is_empty() && gone > voters.len() / 2 && self.watch.store_lost_at.is_none() {
                self.watch.store_lost_at = Some(now);
            }
        }
    }

    /// Node `node`, not running, starts a new life and joins through
    /// `seeds`.
    fn start_life(&mut self, node: usize, seeds: &[usize]) {
        let id = self.identity(node, self.nodes[node].incarnation + 1);
        self.nodes[node].generation = 0;
        self.start_node(node, id);
        let seeds = seeds.iter().copied().map(node_addr).collect();
        self.input(node, Input::Command(Command::Join(seeds)));
    }

    /// Node `node` pauses: it hears, says and runs nothing until it
    /// resumes.
    fn pause(&mut self, node: usize) {
        if self.running(node) && !self.nodes[node].paused {
            self.injected.pauses += 1;
            self.nodes[node].paused = true;
            let now = self.now;
            self.watch.paused_since[node] = Some(now);
            if let Some(c) = self.clients.as_mut() {
                c.gateway_fault(node, now);
            }
            self.excused_until[node] = u64::MAX;
            self.reschedule(node);
        }
    }

    /// Node `node` resumes: what it was sent meanwhile reaches it now.
    fn resume(&mut self, node: usize) {
        if self.nodes[node].paused {
            self.nodes[node].paused = false;
            let paused_at = self.watch.paused_since[node].take();
            if let Some(since) = paused_at {
                self.watch.pauses.push((node, since, self.now));
            }
            // Still inside a cut: excused until its heal.
            let cut = self.network.in_cut(node);
            let until = self.now + self.grace_us;
            self.excused_until[node] = if cut { u64::MAX } else { until };
            let released = self.released_at[node].take();
            let unspoken = released.zip(paused_at).is_some_and(|(r, p)| r + self.grace_us > p);
            if unspoken && !cut {
                // A cut healed while it was paused, or just before:
                // the down notices it gathered in the cut reach the
                // others now, as they would have after the heal.
                for excused in &mut self.excused_until {
                    *excused = (*excused).max(until);
                }
            }
            let held = std::mem::take(&mut self.nodes[node].held);
            for ev in held {
                self.push(self.now, ev);
            }
            self.reschedule(node);
        }
    }

    /// A partition between `a` and `b` (only `a → b` if `oneway`) comes into
    /// force.
    fn partition(&mut self, a: &[usize], b: &[usize], oneway: bool) {
        for &n in a.iter().chain(b) {
            self.excused_until[n] = u64::MAX;
        }
        // Who cannot reach the voters' majority is decided from the
        // voters committed at the cut, not from which nodes run a
        // Raft instance (a removed voter may keep one).
        self.cut_voters = self.committed_voters();
        self.network.cut(self.nodes.len(), a, b, oneway);
        self.update_cut_off();
        if !oneway {
            let lease_us = u64::try_from(self.plan.config.lease.as_micros()).unwrap_or(u64::MAX);
            self.push(self.now + lease_us, Ev::LeaseCheck(self.now));
        }
        self.network.reset_cut_conns();
    }

    /// Every partition heals.
    fn heal(&mut self) {
        let cut: Vec<bool> = (0..self.nodes.len()).map(|n| self.network.in_cut(n)).collect();
        self.network.heal();
        self.cut_voters.clear();
        self.update_cut_off();
        let until = self.now + self.grace_us;
        for (i, excused) in self.excused_until.iter_mut().enumerate() {
            if cut[i] {
                self.released_at[i] = Some(self.now);
            }
            if *excused == u64::MAX {
                // A paused node speaks again only at its resume,
                // with the view it had in the cut.
                if !self.nodes[i].paused {
                    *excused = until;
                }
            }
        }
    }

    /// The default link model changes.
    fn set_net(&mut self, net: LinkModel) {
        let limit = self.plan.expect.no_false_down_at_loss_max;
        let was_high = self.network.default.loss > limit;
        self.network.default = net;
        if net.loss > limit {
            self.high_loss_until = u64::MAX;
        } else if was_high {
            self.high_loss_until = self.now + self.grace_us;
        }
    }

    /// The voters of the epoch store as its leader knows them (its Raft
    /// group's committed voter configuration), by node index. Without a
    /// leader, the voters the most up-to-date voter knows.
    fn committed_voters(&self) -> Vec<usize> {
        let pick = |leaders_only: bool| {
            (0..self.nodes.len())
                .filter_map(|i| self.nodes[i].engine.as_ref().map(|e| (i, e)))
                .filter(|(_, e)| if leaders_only { e.is_leader() } else { e.is_voter() })
                .max_by_key(|&(i, _)| (self.nodes[i].learned, std::cmp::Reverse(i)))
                .map(|(_, e)| e.status().voters)
        };
        let names = pick(true).or_else(|| pick(false)).unwrap_or_default();
        let mut voters: Vec<usize> = names
            .iter()
            .filter_map(|name| {
                parse_index(name, 'n')
                    .map(|i| i as usize)
                    .or_else(|| name.parse::<SocketAddr>().ok().and_then(node_index))
            })
            .filter(|&i| i < self.nodes.len())
            .collect();
        voters.sort_unstable();
        voters.dedup();
        voters
    }

    /// After a partition or a heal: which nodes are cut off from a majority
    /// of `voters` (reachable both ways, themselves counted), opening and
    /// closing their cut-off windows.
    pub(super) fn update_cut_off(&mut self) {
        let voters = &self.cut_voters;
        let majority = voters.len() / 2 + 1;
        let latest = self.epochs.committed.last().copied().unwrap_or(0);
        let active = !voters.is_empty() && self.network.partitioned();
        let both_ways = |a: usize, b: usize| a == b || (!self.network.blocked(a, b) && !self.network.blocked(b, a));
        let quorate = |n: usize| voters.iter().filter(|&&v| both_ways(n, v)).count() >= majority;
        // Voters that can gather a quorum: a commit can come only from one.
        let leaders: Vec<usize> = voters.iter().copied().filter(|&v| quorate(v)).collect();
        // A node that is not quorate itself may still renew its lease: its
        // request reaches the leader directly or through one node (a
        // non-leader forwards it once), and the leader answers it directly.
        let leading: Vec<usize> = leaders
            .iter()
            .copied()
            .filter(|&l| {
                self.nodes[l].engine.as_ref().is_some_and(|e| e.is_leader()) && self.running(l) && !self.nodes[l].paused
            })
            .collect();
        let relays = |n: usize, l: usize| {
            (0..self.nodes.len()).any(|v| {
                v != n
                    && v != l
                    && self.running(v)
                    && !self.nodes[v].paused
                    && !self.network.blocked(n, v)
                    && !self.network.blocked(v, l)
            })
        };
        let renews = |n: usize| {
            leading
                .iter()
                .any(|&l| l == n || (!self.network.blocked(l, n) && (!self.network.blocked(n, l) || relays(n, l))))
        };
        let state: Vec<(bool, bool)> = (0..self.nodes.len())
            .map(|n| {
                (
                    active && !leaders.iter().any(|&l| l == n || !self.network.blocked(l, n)),
                    active && !quorate(n) && !renews(n),
                )
            })
            .collect();
        for (n, (blind, cut)) in state.into_iter().enumerate() {
            match (blind, self.watch.blind_since[n]) {
                (true, None) => self.watch.blind_since[n] = Some((self.now, latest)),
                (false, Some(_)) => self.watch.blind_since[n] = None,
                _ => {}
            }
            match (cut, self.watch.cut_since[n]) {
                (true, None) => {
                    self.watch.cut_since[n] = Some((self.now, latest));
                    let now = self.now;
                    if let Some(c) = self.clients.as_mut() {
                        c.gateway_fault(n, now);
                    }
                }
                (false, Some((since, _))) => {
                    self.watch.cut_since[n] = None;
                    self.watch.cutoffs.push((n, since, self.now));
                }
                _ => {}
            }
        }
    }
}
