//! Membership sync (anti-entropy): every `sync_period` a node sends its
//! member list to a random member, which answers with what the sender lacks
//! or holds older and applies what the sender knows better. SWIM's gossip
//! alone leaves a tail after a heal or a join storm; syncs close it.
//!
//! Entries compare by SWIM's precedence ([`SyncRank`]); a sync carries at
//! most [`SYNC_MEMBERS_MAX`] entries, a different window each time when the
//! view is larger.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use rand::RngExt;

use super::wire::{Message, SyncMember};
use super::{InputError, MemberState, Node, NodeId, SYNC_MEMBERS_MAX, epoch, swim_state};

impl Node {
    /// A peer's sync request: answer with what it lacks or holds older,
    /// computed before applying what it knows better.
    pub(super) fn handle_sync_request(&mut self, from: SocketAddr, theirs: Vec<SyncMember>) -> Result<(), InputError> {
        if theirs.len() > SYNC_MEMBERS_MAX {
            return Err(InputError::TooManyMembers(theirs.len()));
        }
        let window = self.sync_window();
        let ours = self.sync_ranks(window);
        let theirs_ranks: Vec<SyncRank> = theirs.iter().map(SyncRank::of).collect();
        let answer = self.sync_members(window, Some(&newer_than(&ours, &theirs_ranks)));
        let learn = newer_than(&theirs_ranks, &ours);
        self.apply_sync(pick(theirs, &learn))?;
        self.send_message(from, &Message::SyncResponse(answer));
        Ok(())
    }

    /// A peer's answer to this node's sync: apply what it knows better.
    pub(super) fn handle_sync_response(&mut self, theirs: Vec<SyncMember>) -> Result<(), InputError> {
        if theirs.len() > SYNC_MEMBERS_MAX {
            return Err(InputError::TooManyMembers(theirs.len()));
        }
        // Drawn even for an empty answer: the window's draw is part of the
        // engine's random sequence.
        let window = self.sync_window();
        if theirs.is_empty() {
            return Ok(());
        }
        let ours = self.sync_ranks(window);
        let theirs_ranks: Vec<SyncRank> = theirs.iter().map(SyncRank::of).collect();
        let learn = newer_than(&theirs_ranks, &ours);
        self.apply_sync(pick(theirs, &learn))
    }

    /// This node's membership state for a sync: itself and what foca holds,
    /// at most [`SYNC_MEMBERS_MAX`] (starting at a random member when there
    /// are more, so repeated syncs cover everyone).
    fn sync_state(&mut self) -> Vec<SyncMember> {
        let window = self.sync_window();
        self.sync_members(window, None)
    }

    /// Which of foca's members a sync carries: `(skip, take)` over foca's
    /// list read twice round. Draws from the engine's generator only when
    /// there are more members than a sync carries.
    fn sync_window(&mut self) -> (usize, usize) {
        let total = self.swim.iter_membership_state().len();
        let skip = if total > SYNC_MEMBERS_MAX - 1 { self.rng.random_range(0..total) } else { 0 };
        (skip, total.min(SYNC_MEMBERS_MAX - 1))
    }

    /// The sync state of `window` (this node first): whole, or only the
    /// entries at `only` (ascending places in it).
    fn sync_members(&self, (skip, take): (usize, usize), only: Option<&[usize]>) -> Vec<SyncMember> {
        let members = self.swim.iter_membership_state().chain(self.swim.iter_membership_state()).skip(skip).take(take);
        let entries = std::iter::once(None).chain(members.map(Some));
        let entry = |m: Option<&foca::Member<NodeId>>| match m {
            None => SyncMember { id: self.swim.identity().clone(), incarnation: 0, state: MemberState::Alive },
            Some(m) => SyncMember { id: m.id().clone(), incarnation: m.incarnation(), state: swim_state(m.state()) },
        };
        let Some(only) = only else { return entries.map(entry).collect() };
        // Clone only the identities asked for.
        let mut wanted = only.iter().copied().peekable();
        entries.enumerate().filter(|&(place, _)| wanted.next_if_eq(&place).is_some()).map(|(_, m)| entry(m)).collect()
    }

    /// The ranks of the sync state of `window`, in its order, without
    /// cloning an identity.
    fn sync_ranks(&self, (skip, take): (usize, usize)) -> Vec<SyncRank> {
        let me = self.swim.identity();
        let members = self.swim.iter_membership_state().chain(self.swim.iter_membership_state()).skip(skip).take(take);
        std::iter::once(SyncRank::new(me, 0, MemberState::Alive))
            .chain(members.map(|m| SyncRank::new(m.id(), m.incarnation(), swim_state(m.state()))))
            .collect()
    }

    fn apply_sync(&mut self, members: Vec<SyncMember>) -> Result<(), InputError> {
        if members.is_empty() {
            return Ok(());
        }
        // Syncs add members a few thousand at a time, but many of them
        // would grow the member list (and foca's timers) without bound: past
        // [`MEMBERS_MAX`], only members already known are updated.
        let room = epoch::MEMBERS_MAX.saturating_sub(self.swim.num_members());
        let members: Vec<SyncMember> = if members.len() <= room {
            members
        } else {
            let known: BTreeSet<SocketAddr> = self.swim.iter_membership_state().map(|k| k.id().addr).collect();
            let mut new = 0usize;
            members
                .into_iter()
                .filter(|m| {
                    known.contains(&m.id.addr) || {
                        new += 1;
                        new <= room
                    }
                })
                .collect()
        };
        let updates = members.into_iter().map(|m| {
            let state = match m.state {
                MemberState::Alive => foca::State::Alive,
                MemberState::Suspect => foca::State::Suspect,
                MemberState::Down => foca::State::Down,
            };
            foca::Member::new(m.id, m.incarnation, state)
        });
        let result = self.with_swim(|swim, effects| swim.apply_many(updates, true, effects));
        result.map_err(|e| InputError::Swim(e.to_string()))
    }

    /// Starts a membership sync with a random live member.
    pub(super) fn sync_with_random_member(&mut self) {
        let next = if std::mem::take(&mut self.resync_after_join) {
            (self.config.probe_period * 2).min(self.config.sync_period)
        } else {
            self.config.sync_period
        };
        self.sync_at = Some(self.now + next);
        let count = self.swim.num_members();
        if count == 0 {
            return;
        }
        let pick = self.rng.random_range(0..count);
        let Some(peer) = self.swim.iter_members().nth(pick).map(|m| m.id().addr) else { return };
        let state = self.sync_state();
        self.send_message(peer, &Message::SyncRequest(state));
    }
}

/// The entries of `a` that `b` lacks or holds older, by SWIM's precedence: a
/// later life of an address wins; within one life a higher SWIM incarnation
/// wins; at equal incarnation Down beats Suspect beats Alive. Applying only
/// these keeps a sync between two converged nodes free of work (foca applies
/// each update with a linear search of its member list).
///
/// Returns the places in `a`, ascending. When `b` names an address twice,
/// its last entry counts.
fn newer_than(a: &[SyncRank], b: &[SyncRank]) -> Vec<usize> {
    let known = AddrIndex::new(b);
    a.iter().enumerate().filter(|(_, m)| known.get(m.addr).is_none_or(|k| m.rank > k.rank)).map(|(i, _)| i).collect()
}

/// The last entry of each address in a sync state, found by hashing: an
/// open-addressed table of places. Syncs carry whole member lists, so this
/// replaces a map of socket addresses per sync. It is only looked up, never
/// iterated: the hash decides no order.
struct AddrIndex<'a> {
    ranks: &'a [SyncRank],
    /// Places in `ranks`; `u32::MAX` is an empty slot.
    slots: Vec<u32>,
}

impl<'a> AddrIndex<'a> {
    fn new(ranks: &'a [SyncRank]) -> AddrIndex<'a> {
        let len = (ranks.len() * 2).next_power_of_two().max(8);
        let mut index = AddrIndex { ranks, slots: vec![u32::MAX; len] };
        for (place, rank) in ranks.iter().enumerate() {
            let place = u32::try_from(place).expect("a sync state is bounded by SYNC_MEMBERS_MAX");
            let slot = index.find(rank.addr);
            // A later entry of the same address replaces the earlier one.
            index.slots[slot] = place;
        }
        index
    }

    /// The slot holding `addr`, or the empty slot where it would go.
    fn find(&self, addr: AddrKey) -> usize {
        let mask = self.slots.len() - 1;
        let mut slot = addr.spread() as usize & mask;
        loop {
            match self.slots[slot] {
                u32::MAX => return slot,
                place if self.ranks[place as usize].addr == addr => return slot,
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    fn get(&self, addr: AddrKey) -> Option<&SyncRank> {
        match self.slots[self.find(addr)] {
            u32::MAX => None,
            place => Some(&self.ranks[place as usize]),
        }
    }
}

/// The entries of `members` at `places` (ascending).
fn pick(members: Vec<SyncMember>, places: &[usize]) -> Vec<SyncMember> {
    let mut wanted = places.iter().copied().peekable();
    let mut out = Vec::with_capacity(places.len());
    for (place, member) in members.into_iter().enumerate() {
        if wanted.peek().is_none() {
            break;
        }
        if wanted.peek() == Some(&place) {
            wanted.next();
            out.push(member);
        }
    }
    out
}

/// A socket address as a pair of integers, cheap to compare and to hash:
/// equal exactly when the addresses are equal. IPv4 `(0, 1 << 96 | ip << 16
/// | port)`; IPv6 `(ip, port << 64 | flowinfo << 32 | scope_id)`, whose
/// second half stays below 2^80.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AddrKey(u128, u128);

impl AddrKey {
    /// The key's bits, mixed (a table slot).
    fn spread(self) -> u64 {
        let folded = self.0 as u64 ^ (self.0 >> 64) as u64 ^ (self.1 as u64).rotate_left(29) ^ (self.1 >> 64) as u64;
        let x = (folded ^ (folded >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    }

    fn of(addr: &SocketAddr) -> AddrKey {
        match addr {
            SocketAddr::V4(a) => AddrKey(0, 1 << 96 | u128::from(a.ip().to_bits()) << 16 | u128::from(a.port())),
            SocketAddr::V6(a) => AddrKey(
                a.ip().to_bits(),
                u128::from(a.port()) << 64 | u128::from(a.flowinfo()) << 32 | u128::from(a.scope_id()),
            ),
        }
    }
}

/// What a sync compares of an entry: its address and its precedence
/// `(life's incarnation, SWIM generation, down, SWIM incarnation, state)`.
/// A newer life or generation is another identity and wins; within one
/// identity Down is final whatever the SWIM incarnation (as in SWIM), so a
/// member that left at incarnation 0 is not kept alive by a suspicion of it
/// at incarnation 1.
#[derive(Debug, Clone, Copy)]
struct SyncRank {
    addr: AddrKey,
    rank: (u64, u32, bool, u16, MemberState),
}

impl SyncRank {
    fn new(id: &NodeId, incarnation: u16, state: MemberState) -> SyncRank {
        let down = state == MemberState::Down;
        SyncRank { addr: AddrKey::of(&id.addr), rank: (id.incarnation, id.generation, down, incarnation, state) }
    }

    fn of(m: &SyncMember) -> SyncRank {
        SyncRank::new(&m.id, m.incarnation, m.state)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// `newer_than` as it was: a map of the other side by address (its last
    /// entry per address), the entries of `a` it lacks or holds older.
    fn newer_than_by_map(a: &[SyncMember], b: &[SyncMember]) -> Vec<SyncMember> {
        let known: BTreeMap<SocketAddr, &SyncMember> = b.iter().map(|m| (m.id.addr, m)).collect();
        let rank =
            |m: &SyncMember| (m.id.incarnation, m.id.generation, m.state == MemberState::Down, m.incarnation, m.state);
        a.iter().filter(|m| known.get(&m.id.addr).is_none_or(|k| rank(m) > rank(k))).cloned().collect()
    }

    #[test]
    fn the_sync_comparison_agrees_with_a_map_of_addresses() {
        use rand::RngExt;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(17);
        let states = [MemberState::Alive, MemberState::Suspect, MemberState::Down];
        for round in 0..300 {
            // Few addresses, so lists share some and repeat some; v4 and v6.
            let mut list = |len: usize| -> Vec<SyncMember> {
                (0..len)
                    .map(|_| {
                        let port = 7000 + rng.random_range(0..12u16);
                        let addr = if rng.random_bool(0.2) {
                            SocketAddr::from(([0xfe80, 0, 0, 0, 0, 0, 0, 1], port))
                        } else {
                            SocketAddr::from(([127, 0, 0, rng.random_range(1..4u8)], port))
                        };
                        let id = NodeId::new(addr, rng.random_range(1..3u64), "n");
                        SyncMember {
                            id,
                            incarnation: rng.random_range(0..3u16),
                            state: states[rng.random_range(0..3usize)],
                        }
                    })
                    .collect()
            };
            let (a, b) = (list(round % 40), list((round * 7) % 45));
            let ranks = |l: &[SyncMember]| l.iter().map(SyncRank::of).collect::<Vec<_>>();
            let places = newer_than(&ranks(&a), &ranks(&b));
            assert_eq!(pick(a.clone(), &places), newer_than_by_map(&a, &b), "round {round}");
        }
    }

    /// Random seed 603: a member left (Down at SWIM incarnation 0) while a
    /// cut-off node suspected it at incarnation 1; the cut-off node's syncs
    /// after the heal never learned of the leave, since its suspicion ranked
    /// higher. Down is final within an identity; a newer generation is another
    /// identity and wins over it.
    #[test]
    fn a_sync_ranks_down_above_any_incarnation_of_the_same_identity() {
        let left = NodeId::new(addr(7042), 1, "n42");
        let entry = |id: &NodeId, incarnation, state| SyncMember { id: id.clone(), incarnation, state };
        let down = [entry(&left, 0, MemberState::Down)];
        let suspect = [entry(&left, 1, MemberState::Suspect)];
        let ranks = |l: &[SyncMember]| l.iter().map(SyncRank::of).collect::<Vec<_>>();
        assert_eq!(newer_than(&ranks(&down), &ranks(&suspect)), vec![0], "the leave is sent");
        assert!(newer_than(&ranks(&suspect), &ranks(&down)).is_empty(), "the suspicion is not");
        let rejoined = NodeId { generation: 1, ..left.clone() };
        let alive = [entry(&rejoined, 0, MemberState::Alive)];
        assert_eq!(newer_than(&ranks(&alive), &ranks(&down)), vec![0], "a newer generation wins");
        assert!(newer_than(&ranks(&down), &ranks(&alive)).is_empty());
    }
}
