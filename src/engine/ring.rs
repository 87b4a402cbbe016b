//! The consistent-hash ring: which member owns which part of the hash space.
//!
//! Every member places [`Ring::vnodes`] points on a 64-bit circle. A **range**
//! is the arc that ends at one point (inclusive) and starts after the previous
//! point (exclusive); it is named by its end point ([`RangeId`]) and owned by
//! the member that placed that point. A resource falls on the point
//! [`Ring::key_hash`] of its name and belongs to the range whose arc contains
//! that point.
//!
//! The ring is built on the `hashring` crate: each [`Ring`] is built with one
//! `batch_add` and answers owner and range lookups with `get`, the virtual
//! node it returns being the range. The replica table (the distinct members
//! clockwise from every range) is computed once per ring from the ring order,
//! never with `get_with_replicas`.
//!
//! # Stability
//!
//! Every node must agree on owners, whatever its process, platform or Rust
//! version. The hash is `hashring`'s default, SipHash-2-4 with keys (0, 0), and
//! what it hashes is explicit bytes only:
//!
//! * a virtual node hashes [`NodeId::ring_key`] (the address bytes) followed
//!   by its replica number as 4 big-endian bytes, so a node restarted on the
//!   same address (higher incarnation) takes back the same points;
//! * a resource hashes the UTF-8 bytes of its name, nothing else.
//!
//! No derived `Hash` (whose `usize` and enum discriminants are
//! platform-dependent, and whose output std does not promise to keep) is ever
//! fed to the hasher. The golden test at the bottom of this file pins hash
//! values and owners, so a change of hash or encoding fails it.
//!
//! # Collisions
//!
//! Two virtual nodes whose points are equal (a 64-bit collision: astronomically
//! unlikely, but it must not panic or disagree between nodes) are resolved
//! before the ring is built: the one of the member with the lowest address
//! keeps the point (then the lowest replica number), the other is dropped.
//! Every point of a ring is therefore unique, and a [`RangeId`] names exactly
//! one range.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use hashring::{DefaultHashBuilder, HashRing};
use serde::{Deserialize, Serialize};

use super::id::NodeId;

/// Points each member places on the ring unless configured otherwise. With
/// 128 points the share of the hash space per member varies by 6–9%
/// (coefficient of variation; 1/√128 in theory).
pub const VNODES_DEFAULT: u32 = 128;

/// How many distinct members the replica table holds per range: the owner
/// and the next `REPLICAS_MAX - 1` distinct members clockwise. Asking
/// [`Ring::replicas`] for more still works, by walking the ring.
pub const REPLICAS_MAX: usize = 7;

/// 2^64: the number of points on the circle, as an `f64`.
const CIRCLE: f64 = 18_446_744_073_709_551_616.0;

/// A range of the ring, named by the point that ends it (inclusive).
///
/// A range id is meaningful only together with the ring it came from: another
/// membership has other points.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct RangeId(pub u64);

impl fmt::Display for RangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// An arc of the hash space: the points after `start` up to and including
/// `end`, clockwise.
///
/// It wraps past `u64::MAX` to 0 when `start >= end`; `start == end` is the
/// whole circle (a ring with a single point).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Span {
    /// The point just before the arc (exclusive).
    pub start: u64,
    /// The last point of the arc (inclusive).
    pub end: u64,
}

impl Span {
    /// Whether `point` lies on this arc.
    pub fn contains(&self, point: u64) -> bool {
        if self.start < self.end {
            self.start < point && point <= self.end
        } else {
            // Wraps (or is the whole circle when start == end).
            point > self.start || point <= self.end
        }
    }

    /// How many points the arc covers, from 1 to 2^64.
    pub fn width(&self) -> u128 {
        let w = self.end.wrapping_sub(self.start);
        if w == 0 { 1u128 << 64 } else { u128::from(w) }
    }

    /// The fraction of the hash space the arc covers, in (0, 1].
    pub fn fraction(&self) -> f64 {
        self.width() as f64 / CIRCLE
    }

    /// Whether the arc is the whole circle.
    pub fn is_full(&self) -> bool {
        self.start == self.end
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:016x}, {:016x}]", self.start, self.end)
    }
}

/// A part of the hash space whose owner changes from one ring to the next.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Move {
    /// The part of the hash space that changes owner.
    pub span: Span,
    /// Its owner in the older ring.
    pub from: NodeId,
    /// Its owner in the newer ring.
    pub to: NodeId,
}

/// One point of one member: what the `hashring` ring stores.
///
/// Its hash (explicit bytes: the member's ring key, then the replica number
/// big-endian) is its point; `point` caches that value so that the virtual
/// node `get` returns names its range without hashing again.
#[derive(Clone, Debug)]
struct VNode {
    /// The point, `DefaultHashBuilder.hash_one(self)`. Not hashed.
    point: u64,
    /// Index into `Ring::members`. Not hashed.
    member: u32,
    /// Which of the member's points this is.
    replica: u32,
    /// The member's [`NodeId::ring_key`], shared by its virtual nodes.
    ring_key: Arc<[u8]>,
}

impl Hash for VNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.ring_key);
        state.write(&self.replica.to_be_bytes());
    }
}

/// A resource name as the ring hashes it: its UTF-8 bytes only (not `str`'s
/// own `Hash`, which appends a terminator std does not promise to keep).
struct ResourceKey<'a>(&'a str);

impl Hash for ResourceKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0.as_bytes());
    }
}

/// One point of the ring in ring order.
#[derive(Clone, Copy, Debug)]
struct Slot {
    point: u64,
    member: u32,
}

/// A consistent-hash ring over a set of members, immutable once built.
///
/// Build a new ring for every new membership; compare two rings with
/// [`Ring::diff`].
#[derive(Clone)]
pub struct Ring {
    /// One identity per address, sorted by address.
    members: Vec<NodeId>,
    /// Points per member asked for.
    vnodes: u32,
    /// The lookup structure: `get` gives the virtual node ending a key's range.
    ring: HashRing<VNode, DefaultHashBuilder>,
    /// Every point in ring order (ascending), from the ring's own iteration.
    slots: Vec<Slot>,
    /// How many distinct members own at least one point.
    owners: usize,
    /// Row length of `table`: `min(REPLICAS_MAX, owners)`.
    stride: usize,
    /// For slot `i`, `table[i * stride..][..stride]` are the distinct members
    /// clockwise from it, its owner first.
    table: Vec<u32>,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("members", &self.members)
            .field("vnodes", &self.vnodes)
            .field("points", &self.slots.len())
            .finish()
    }
}

impl Ring {
    /// Builds the ring of `members`, each placing `vnodes` points.
    ///
    /// Members are deduplicated by address, keeping the highest incarnation
    /// (foca's rule: a restarted node wins over its old life). The order of
    /// `members` does not matter. With no members or `vnodes == 0` the ring
    /// has no points: [`Ring::is_empty`] is true and every lookup answers
    /// `None`. Building costs `members × vnodes` hashes and one sort.
    ///
    /// # Panics
    /// If there are more than `u32::MAX` members.
    pub fn new(members: impl IntoIterator<Item = NodeId>, vnodes: u32) -> Ring {
        let members = dedupe_members(members);
        let mut virtuals = Vec::with_capacity(members.len().saturating_mul(vnodes as usize));
        for (index, member) in members.iter().enumerate() {
            let index = u32::try_from(index).expect("more than u32::MAX members");
            let ring_key: Arc<[u8]> = member.ring_key().into();
            for replica in 0..vnodes {
                let mut vnode = VNode { point: 0, member: index, replica, ring_key: Arc::clone(&ring_key) };
                vnode.point = DefaultHashBuilder.hash_one(&vnode);
                virtuals.push(vnode);
            }
        }
        resolve_collisions(&mut virtuals);

        let mut ring = HashRing::with_hasher(DefaultHashBuilder);
        ring.batch_add(virtuals);

        // `into_iter` yields the virtual nodes in ring order.
        let slots: Vec<Slot> = ring.clone().into_iter().map(|v| Slot { point: v.point, member: v.member }).collect();
        debug_assert!(slots.windows(2).all(|w| w[0].point < w[1].point));

        let mut owned = vec![false; members.len()];
        for slot in &slots {
            owned[slot.member as usize] = true;
        }
        let owners = owned.iter().filter(|&&o| o).count();
        let stride = owners.min(REPLICAS_MAX);
        let table = replica_table(&slots, stride, members.len());

        Ring { members, vnodes, ring, slots, owners, stride, table }
    }

    /// The members, one per address, sorted by address.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// Points per member this ring was built with.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// Whether the ring has no points (no members, or `vnodes == 0`), in which
    /// case nothing has an owner.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// How many ranges (points) the ring has: `members × vnodes` unless two
    /// points collided.
    pub fn range_count(&self) -> usize {
        self.slots.len()
    }

    /// The point `resource` falls on, with the ring's own hasher. Stable across
    /// processes, platforms and Rust versions.
    pub fn key_hash(resource: &str) -> u64 {
        DefaultHashBuilder.hash_one(ResourceKey(resource))
    }

    /// The member that owns `resource`, or `None` if the ring is empty.
    pub fn owner(&self, resource: &str) -> Option<&NodeId> {
        self.locate(resource).map(|(_, owner)| owner)
    }

    /// The range `resource` falls in, or `None` if the ring is empty.
    pub fn range_of(&self, resource: &str) -> Option<RangeId> {
        self.locate(resource).map(|(range, _)| range)
    }

    /// The range `resource` falls in and its owner, with a single lookup.
    pub fn locate(&self, resource: &str) -> Option<(RangeId, &NodeId)> {
        let vnode = self.ring.get(&ResourceKey(resource))?;
        Some((RangeId(vnode.point), &self.members[vnode.member as usize]))
    }

    /// The owner of `range`, or `None` if no range of this ring ends there.
    pub fn range_owner(&self, range: RangeId) -> Option<&NodeId> {
        let pos = self.position(range)?;
        Some(self.member_at(pos))
    }

    /// The arc of `range`, or `None` if no range of this ring ends there.
    pub fn span(&self, range: RangeId) -> Option<Span> {
        self.position(range).map(|pos| self.span_at(pos))
    }

    /// The members that hold `range`: its owner first, then the next distinct
    /// members clockwise, `min(k, n)` of them, where `n` is the number of
    /// members owning a point (`members().len()`, unless all of a member's
    /// points collided, which is astronomically unlikely). Empty if no range
    /// of this ring ends at `range`, or if `k == 0`.
    ///
    /// Up to [`REPLICAS_MAX`] this reads a table computed when the ring was
    /// built; beyond it, it walks the ring.
    pub fn replicas(&self, range: RangeId, k: usize) -> Vec<&NodeId> {
        let Some(pos) = self.position(range) else {
            return Vec::new();
        };
        let ids = if k <= self.stride || self.stride == self.owners {
            let row = &self.table[pos * self.stride..][..self.stride];
            row[..k.min(self.stride)].to_vec()
        } else {
            walk_distinct(&self.slots, pos, k, self.members.len())
        };
        ids.into_iter().map(|m| &self.members[m as usize]).collect()
    }

    /// Every range in ring order (ascending end point): its id, arc and owner.
    /// The arcs cover the circle exactly once.
    pub fn ranges(&self) -> impl Iterator<Item = (RangeId, Span, &NodeId)> {
        (0..self.slots.len()).map(move |pos| (RangeId(self.slots[pos].point), self.span_at(pos), self.member_at(pos)))
    }

    /// The parts of the hash space whose owner differs between `self` (older)
    /// and `newer`, in ascending order of their end point.
    ///
    /// Owners are compared as whole identities, so a member that comes back at
    /// the same address with a new incarnation keeps its points but shows up
    /// as moves from its old life to its new one. Adjacent pieces with the same
    /// `(from, to)` are coalesced, across the wrap too. If either ring is
    /// empty nothing has an owner on one side, and the answer is empty.
    pub fn diff(&self, newer: &Ring) -> Vec<Move> {
        let (old, new) = (&self.slots, &newer.slots);
        if old.is_empty() || new.is_empty() {
            return Vec::new();
        }
        // Walk the union of both point sets. At each union point `u`, the
        // next unconsumed slot of each ring is the first one at or after `u`
        // (or wraps to slot 0): it owns the elementary piece that ends at `u`.
        let mut pieces: Vec<(u64, Option<(u32, u32)>)> = Vec::with_capacity(old.len() + new.len());
        let (mut i, mut j) = (0, 0);
        loop {
            let a = old.get(i).map(|s| s.point);
            let b = new.get(j).map(|s| s.point);
            let u = match (a, b) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            let from = old.get(i).unwrap_or(&old[0]).member;
            let to = new.get(j).unwrap_or(&new[0]).member;
            let changed = self.members[from as usize] != newer.members[to as usize];
            pieces.push((u, changed.then_some((from, to))));
            if a == Some(u) {
                i += 1;
            }
            if b == Some(u) {
                j += 1;
            }
        }

        // Coalesce runs of adjacent pieces with the same (from, to).
        let last_point = pieces[pieces.len() - 1].0;
        let mut runs: Vec<(Span, (u32, u32))> = Vec::new();
        for (n, &(end, pair)) in pieces.iter().enumerate() {
            let Some(pair) = pair else { continue };
            let start = if n == 0 { last_point } else { pieces[n - 1].0 };
            match runs.last_mut() {
                Some((span, p)) if span.end == start && *p == pair => span.end = end,
                _ => runs.push((Span { start, end }, pair)),
            }
        }
        // The last run may continue into the first one across the wrap.
        if runs.len() >= 2 {
            let (first, first_pair) = runs[0];
            let (last, last_pair) = runs[runs.len() - 1];
            if last.end == first.start && last_pair == first_pair {
                runs[0].0.start = last.start;
                runs.pop();
            }
        }

        runs.into_iter()
            .map(|(span, (from, to))| Move {
                span,
                from: self.members[from as usize].clone(),
                to: newer.members[to as usize].clone(),
            })
            .collect()
    }

    /// The fraction of the hash space each member owns, by address. Sums to 1
    /// unless the ring is empty (then every member has 0).
    pub fn load(&self) -> BTreeMap<SocketAddr, f64> {
        let mut widths = vec![0u128; self.members.len()];
        for (pos, slot) in self.slots.iter().enumerate() {
            widths[slot.member as usize] += self.span_at(pos).width();
        }
        self.members.iter().zip(widths).map(|(m, w)| (m.addr, w as f64 / CIRCLE)).collect()
    }

    /// The slot index of the range ending at `range`.
    /// The range containing hash-space `point`, with its owner, or `None` if
    /// the ring is empty.
    pub fn locate_point(&self, point: u64) -> Option<(RangeId, &NodeId)> {
        let pos = self.position_of_point(point)?;
        Some((RangeId(self.slots[pos].point), self.member_at(pos)))
    }

    /// Cuts `span` where this ring's owners change: the pieces, clockwise,
    /// each with its owner, covering `span` exactly. Adjacent pieces with the
    /// same owner are one piece. Empty if the ring is empty.
    pub fn split(&self, span: Span) -> Vec<(Span, &NodeId)> {
        let mut pieces: Vec<(Span, &NodeId)> = Vec::new();
        for (_, piece, owner) in self.cut(span) {
            match pieces.last_mut() {
                // The same member is the same reference, mostly: skip the
                // comparison of names then.
                Some((last, o)) if std::ptr::eq(*o, owner) || *o == owner => last.end = piece.end,
                _ => pieces.push((piece, owner)),
            }
        }
        pieces
    }

    /// Cuts `span` at every point of this ring: the pieces, clockwise, each
    /// with the range it lies in and its owner, covering `span` exactly.
    /// Empty if the ring is empty.
    pub fn cut(&self, span: Span) -> Vec<(RangeId, Span, &NodeId)> {
        let Some(first) = self.position_of_point(span.start.wrapping_add(1)) else { return Vec::new() };
        let mut pieces = Vec::new();
        let mut cursor = span.start;
        let n = self.slots.len();
        for step in 0..n {
            let pos = (first + step) % n;
            let point = self.slots[pos].point;
            // Stop at the slot that ends the span, or past it.
            if point == span.end || !span.contains(point) {
                break;
            }
            pieces.push((RangeId(point), Span { start: cursor, end: point }, self.member_at(pos)));
            cursor = point;
        }
        let (range, owner) = self.locate_point(span.end).expect("the ring is not empty");
        pieces.push((range, Span { start: cursor, end: span.end }, owner));
        pieces
    }

    /// The slot whose range contains `point`: the first at or after it,
    /// wrapping.
    fn position_of_point(&self, point: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let pos = self.slots.partition_point(|s| s.point < point);
        Some(if pos == self.slots.len() { 0 } else { pos })
    }

    fn position(&self, range: RangeId) -> Option<usize> {
        self.slots.binary_search_by_key(&range.0, |s| s.point).ok()
    }

    /// The arc of the range at slot `pos` (which must exist).
    fn span_at(&self, pos: usize) -> Span {
        let prev = if pos == 0 { self.slots.len() - 1 } else { pos - 1 };
        Span { start: self.slots[prev].point, end: self.slots[pos].point }
    }

    /// The owner of slot `pos` (which must exist).
    fn member_at(&self, pos: usize) -> &NodeId {
        &self.members[self.slots[pos].member as usize]
    }
}

/// One identity per address, the highest (incarnation, then name), sorted by
/// address.
pub(super) fn dedupe_members(members: impl IntoIterator<Item = NodeId>) -> Vec<NodeId> {
    let mut all: Vec<NodeId> = members.into_iter().collect();
    // NodeId orders by (addr, incarnation, name): the last of each address wins.
    all.sort();
    let mut out: Vec<NodeId> = Vec::with_capacity(all.len());
    for id in all {
        match out.last_mut() {
            Some(last) if last.addr == id.addr => *last = id,
            _ => out.push(id),
        }
    }
    out
}

/// Sorts virtual nodes by point and keeps one per point: on a collision the
/// lowest member index (lowest address) wins, then the lowest replica number.
fn resolve_collisions(virtuals: &mut Vec<VNode>) {
    virtuals.sort_unstable_by_key(|v| (v.point, v.member, v.replica));
    virtuals.dedup_by_key(|v| v.point);
}

/// The distinct owners clockwise from slot `start`, at most `want` of them,
/// after at most one turn of the ring.
fn walk_distinct(slots: &[Slot], start: usize, want: usize, members: usize) -> Vec<u32> {
    let mut seen = vec![false; members];
    let mut out = Vec::new();
    for step in 0..slots.len() {
        if out.len() >= want {
            break;
        }
        let member = slots[(start + step) % slots.len()].member;
        if !seen[member as usize] {
            seen[member as usize] = true;
            out.push(member);
        }
    }
    out
}

/// The replica table: for every slot, its `stride` distinct owners clockwise.
///
/// Row 0 is walked; every other row follows from its successor's, going
/// counter-clockwise: the distinct members from slot `i` are its owner, then
/// those from slot `i + 1` without it. Each row takes `O(stride)`.
fn replica_table(slots: &[Slot], stride: usize, members: usize) -> Vec<u32> {
    let n = slots.len();
    if n == 0 || stride == 0 {
        return Vec::new();
    }
    let mut table = vec![0u32; n * stride];
    let row0 = walk_distinct(slots, 0, stride, members);
    debug_assert_eq!(row0.len(), stride);
    table[..stride].copy_from_slice(&row0);
    let mut row = [0u32; REPLICAS_MAX];
    for i in (1..n).rev() {
        let next = (i + 1) % n;
        let owner = slots[i].member;
        row[0] = owner;
        let mut len = 1;
        for &m in &table[next * stride..][..stride] {
            if len == stride {
                break;
            }
            if m != owner {
                row[len] = m;
                len += 1;
            }
        }
        debug_assert_eq!(len, stride);
        table[i * stride..][..stride].copy_from_slice(&row[..stride]);
    }
    table
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed, TestRunner};

    use super::*;

    fn node(port: u16) -> NodeId {
        NodeId::new(SocketAddr::from(([127, 0, 0, 1], port)), 1, "n")
    }

    fn at(addr: SocketAddr) -> NodeId {
        NodeId::new(addr, 1, "n")
    }

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("key-{i}")).collect()
    }

    /// The owner of a point by binary search over the ring order: independent
    /// of `hashring::get`.
    fn owner_at(ring: &Ring, point: u64) -> &NodeId {
        let pos = ring.slots.partition_point(|s| s.point < point) % ring.slots.len();
        ring.member_at(pos)
    }

    fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            3 => (any::<[u8; 4]>(), any::<u16>()).prop_map(SocketAddr::from),
            1 => (any::<[u8; 16]>(), any::<u16>()).prop_map(SocketAddr::from),
        ]
    }

    fn addrs(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<SocketAddr>> {
        prop::collection::btree_set(addr(), len).prop_map(|s| s.into_iter().collect())
    }

    fn vnodes() -> impl Strategy<Value = u32> {
        prop_oneof![1 => 1u32..=16, 1 => Just(VNODES_DEFAULT)]
    }

    #[test]
    fn golden_owners_and_hashes() {
        // Pinned values: a change of hash function, of the vnode or key
        // encoding, or of the collision rule changes them and fails here.
        // Every node of a cluster must compute these same values. They were
        // cross-checked against an independent SipHash-2-4 implementation.
        assert_eq!(Ring::key_hash(""), 0x1e92_4b9d_7377_00d7);
        assert_eq!(Ring::key_hash("account-1"), 0x9a8f_82d0_e0eb_196a);
        assert_eq!(Ring::key_hash("resource-42"), 0xa89d_d4cf_d77f_6b37);
        assert_eq!(Ring::key_hash("ünïcode"), 0xd82a_7aa4_e504_dc17);

        let ring = Ring::new((7001..=7005).map(node), VNODES_DEFAULT);
        assert_eq!(ring.range_count(), 5 * 128);
        let locate = |k: &str| {
            let (range, owner) = ring.locate(k).unwrap();
            (range.0, owner.addr.port())
        };
        assert_eq!(locate("account-1"), (0x9ab4_0ef7_0f28_9cd5, 7002));
        assert_eq!(locate("resource-42"), (0xa8f3_0727_4d8c_7fad, 7002));
        assert_eq!(locate(""), (0x1f64_40a5_c3f2_90fc, 7005));
        assert_eq!(locate("ünïcode"), (0xd854_493c_6b3f_6cdf, 7004));
        let (range, span, owner) = ring.ranges().next().unwrap();
        assert_eq!(range, RangeId(0x0052_c1f1_2841_1700));
        assert_eq!(span.start, 0xff81_55e2_a22d_7748);
        assert_eq!(owner.addr.port(), 7002);
    }

    #[test]
    fn vnode_points_are_siphash_of_explicit_bytes() {
        // The point of a vnode is SipHash-2-4(keys 0, 0) of ring_key ++
        // replica_be; the same as a resource whose name is those bytes.
        let id = node(7001);
        let vnode = VNode { point: 0, member: 0, replica: 3, ring_key: id.ring_key().into() };
        let mut bytes = id.ring_key();
        bytes.extend_from_slice(&3u32.to_be_bytes());
        let as_key = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(DefaultHashBuilder.hash_one(&vnode), Ring::key_hash(as_key));
    }

    #[test]
    fn empty_rings_own_nothing() {
        for ring in [Ring::new([], VNODES_DEFAULT), Ring::new([node(7001)], 0)] {
            assert!(ring.is_empty());
            assert_eq!(ring.owner("x"), None);
            assert_eq!(ring.range_of("x"), None);
            assert_eq!(ring.range_owner(RangeId(0)), None);
            assert_eq!(ring.span(RangeId(0)), None);
            assert!(ring.replicas(RangeId(0), 3).is_empty());
            assert_eq!(ring.ranges().count(), 0);
            assert!(ring.load().values().all(|&l| l == 0.0));
            assert!(ring.diff(&Ring::new([node(7002)], 4)).is_empty());
            assert!(Ring::new([node(7002)], 4).diff(&ring).is_empty());
        }
        assert_eq!(Ring::new([node(7001)], 0).members().len(), 1);
    }

    #[test]
    fn one_point_owns_the_whole_circle() {
        let ring = Ring::new([node(7001)], 1);
        let (range, span, owner) = ring.ranges().next().unwrap();
        assert!(span.is_full());
        assert_eq!(span.width(), 1u128 << 64);
        assert_eq!(span.fraction(), 1.0);
        assert!(span.contains(0) && span.contains(u64::MAX) && span.contains(range.0));
        assert_eq!(owner, &node(7001));
        assert_eq!(ring.range_of("anything"), Some(range));
        assert_eq!(ring.replicas(range, 3), vec![&node(7001)]);
        assert_eq!(ring.load()[&node(7001).addr], 1.0);
    }

    #[test]
    fn spans_wrap_and_contain_their_end_only() {
        let s = Span { start: 10, end: 20 };
        assert!(!s.contains(10) && s.contains(11) && s.contains(20) && !s.contains(21));
        assert_eq!(s.width(), 10);
        let w = Span { start: u64::MAX - 1, end: 1 };
        assert!(w.contains(u64::MAX) && w.contains(0) && w.contains(1));
        assert!(!w.contains(u64::MAX - 1) && !w.contains(2));
        assert_eq!(w.width(), 3);
        assert!(!w.is_full());
    }

    #[test]
    fn dedupe_keeps_the_highest_incarnation() {
        let a = SocketAddr::from(([10, 0, 0, 1], 7000));
        let ring = Ring::new([NodeId::new(a, 3, "new"), node(7002), NodeId::new(a, 1, "old"), node(7002)], 8);
        assert_eq!(ring.members().len(), 2);
        let m = ring.members().iter().find(|m| m.addr == a).unwrap();
        assert_eq!((m.incarnation, &*m.name), (3, "new"));
        assert!(ring.members().windows(2).all(|w| w[0].addr < w[1].addr));
        assert_eq!(ring.range_count(), 16);
    }

    #[test]
    fn restart_keeps_points_and_moves_to_the_new_life() {
        let a = SocketAddr::from(([10, 0, 0, 1], 7000));
        let others: Vec<NodeId> = (7001..=7003).map(node).collect();
        let old = Ring::new(others.iter().cloned().chain([NodeId::new(a, 1, "a")]), 32);
        let new = Ring::new(others.iter().cloned().chain([NodeId::new(a, 2, "a")]), 32);
        let old_ranges: Vec<_> = old.ranges().map(|(r, s, _)| (r, s)).collect();
        let new_ranges: Vec<_> = new.ranges().map(|(r, s, _)| (r, s)).collect();
        assert_eq!(old_ranges, new_ranges);
        let moves = old.diff(&new);
        assert!(!moves.is_empty());
        assert!(moves.iter().all(|m| m.from.incarnation == 1 && m.to.incarnation == 2));
        let moved: f64 = moves.iter().map(|m| m.span.fraction()).sum();
        assert!((moved - old.load()[&a]).abs() < 1e-12);
        assert!(old.diff(&old).is_empty());
    }

    #[test]
    fn collisions_keep_the_lowest_member() {
        let key: Arc<[u8]> = Arc::from(&[0u8][..]);
        let v = |point, member, replica| VNode { point, member, replica, ring_key: Arc::clone(&key) };
        let mut vs = vec![v(5, 2, 0), v(9, 1, 0), v(5, 0, 7), v(5, 0, 3), v(1, 2, 1)];
        resolve_collisions(&mut vs);
        let got: Vec<_> = vs.iter().map(|v| (v.point, v.member, v.replica)).collect();
        assert_eq!(got, vec![(1, 2, 1), (5, 0, 3), (9, 1, 0)]);
    }

    #[test]
    fn replicas_beyond_the_table_walk_the_ring() {
        let ring = Ring::new((7001..=7012).map(node), 16);
        for (range, _, owner) in ring.ranges() {
            let all = ring.replicas(range, 100);
            assert_eq!(all.len(), 12);
            assert_eq!(all[0], owner);
            assert_eq!(ring.replicas(range, REPLICAS_MAX)[..], all[..REPLICAS_MAX]);
            assert_eq!(ring.replicas(range, 9)[..], all[..9]);
        }
        assert!(ring.replicas(RangeId(12345), 3).is_empty());
    }

    #[test]
    fn load_balance_spread() {
        let ring = Ring::new((7001..=7010).map(node), VNODES_DEFAULT);
        let load: Vec<f64> = ring.load().into_values().collect();
        let sum: f64 = load.iter().sum();
        let min = load.iter().copied().fold(f64::INFINITY, f64::min);
        let max = load.iter().copied().fold(0.0, f64::max);
        let mean = sum / load.len() as f64;
        let var = load.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / load.len() as f64;
        let cv = var.sqrt() / mean;
        println!("load, 10 nodes x 128 vnodes: min {min:.4} max {max:.4} max/min {:.3} cv {cv:.4}", max / min);
        assert!((sum - 1.0).abs() < 1e-9, "load sums to {sum}");
        assert!(max / min < 1.6, "max/min {}", max / min);
        assert!(cv < 0.15, "cv {cv}");
    }

    #[test]
    fn join_moves_about_one_share() {
        // Statistical: fixed seed, so the outcome is the same on every run.
        let mut config = Config::with_cases(24);
        config.rng_seed = RngSeed::Fixed(0x00c0_ffee);
        config.failure_persistence = None;
        let mut runner = TestRunner::new(config);
        let keys = keys(20_000);
        let hashes: Vec<u64> = keys.iter().map(|k| Ring::key_hash(k)).collect();
        let ratios = RefCell::new(Vec::new());
        let strategy = (addrs(4..=41), 1usize..1000);
        runner
            .run(&strategy, |(addrs, pick)| {
                let joiner = addrs[pick % addrs.len()];
                let before: Vec<NodeId> = addrs.iter().filter(|&&a| a != joiner).map(|&a| at(a)).collect();
                let n = before.len();
                let old = Ring::new(before.clone(), VNODES_DEFAULT);
                let new = Ring::new(before.into_iter().chain([at(joiner)]), VNODES_DEFAULT);
                let mut moved = 0usize;
                for &h in &hashes {
                    let (o, w) = (owner_at(&old, h), owner_at(&new, h));
                    if o != w {
                        prop_assert_eq!(w.addr, joiner);
                        moved += 1;
                    }
                }
                let by_keys = moved as f64 / hashes.len() as f64;
                let exact: f64 = old.diff(&new).iter().map(|m| m.span.fraction()).sum();
                let ideal = 1.0 / (n + 1) as f64;
                ratios.borrow_mut().push((n, by_keys / ideal, exact / ideal));
                prop_assert!((by_keys / ideal - 1.0).abs() <= 0.3, "n {} keys {}", n, by_keys);
                prop_assert!((exact / ideal - 1.0).abs() <= 0.3, "n {} exact {}", n, exact);
                Ok(())
            })
            .unwrap();
        let ratios = ratios.into_inner();
        let (mut lo, mut hi, mut elo, mut ehi) = (f64::MAX, 0.0f64, f64::MAX, 0.0f64);
        for &(_, k, e) in &ratios {
            (lo, hi, elo, ehi) = (lo.min(k), hi.max(k), elo.min(e), ehi.max(e));
        }
        println!(
            "join moved / ideal over {} cases (N in 3..=40): keys {lo:.3}..{hi:.3}, exact {elo:.3}..{ehi:.3}",
            ratios.len()
        );
        for (n, k, e) in ratios {
            println!("  N={n:2} keys {k:.3} exact {e:.3}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn owner_is_a_member(addrs in addrs(1..=12), vnodes in vnodes()) {
            let ring = Ring::new(addrs.iter().map(|&a| at(a)), vnodes);
            let members: BTreeSet<_> = ring.members().iter().collect();
            for key in keys(500) {
                let (range, owner) = ring.locate(&key).unwrap();
                prop_assert!(members.contains(owner));
                prop_assert_eq!(ring.owner(&key), Some(owner));
                prop_assert_eq!(ring.range_of(&key), Some(range));
                prop_assert_eq!(ring.range_owner(range), Some(owner));
                prop_assert_eq!(owner_at(&ring, Ring::key_hash(&key)), owner);
                prop_assert!(ring.span(range).unwrap().contains(Ring::key_hash(&key)));
            }
            let total: u128 = ring.ranges().map(|(_, s, _)| s.width()).sum();
            prop_assert_eq!(total, 1u128 << 64);
            let load: f64 = ring.load().values().sum();
            prop_assert!((load - 1.0).abs() < 1e-9);
        }

        #[test]
        fn owner_ignores_insertion_order(
            (addrs, shuffled) in addrs(1..=12).prop_flat_map(|a| (Just(a.clone()), Just(a).prop_shuffle())),
            vnodes in vnodes(),
        ) {
            let a = Ring::new(addrs.iter().map(|&a| at(a)), vnodes);
            // Same members in another order, plus stale lives to be deduplicated.
            let stale = shuffled.iter().map(|&a| NodeId::new(a, 0, "stale"));
            let b = Ring::new(shuffled.iter().map(|&a| at(a)).chain(stale), vnodes);
            prop_assert_eq!(a.members(), b.members());
            prop_assert!(a.ranges().eq(b.ranges()));
            for key in keys(500) {
                prop_assert_eq!(a.owner(&key), b.owner(&key));
            }
        }

        #[test]
        fn join_moves_keys_only_to_the_joiner(
            addrs in addrs(2..=12), pick in any::<prop::sample::Index>(), vnodes in vnodes(),
        ) {
            let joiner = addrs[pick.index(addrs.len())];
            let before = addrs.iter().filter(|&&a| a != joiner).map(|&a| at(a));
            let old = Ring::new(before.clone(), vnodes);
            let new = Ring::new(before.chain([at(joiner)]), vnodes);
            for key in keys(2000) {
                let (o, n) = (old.owner(&key).unwrap(), new.owner(&key).unwrap());
                if o != n {
                    prop_assert_eq!(n.addr, joiner);
                }
            }
            for m in old.diff(&new) {
                prop_assert_eq!(m.to.addr, joiner);
            }
        }

        #[test]
        fn leave_moves_only_the_leavers_keys(
            addrs in addrs(2..=12), pick in any::<prop::sample::Index>(), vnodes in vnodes(),
        ) {
            let leaver = addrs[pick.index(addrs.len())];
            let old = Ring::new(addrs.iter().map(|&a| at(a)), vnodes);
            let new = Ring::new(addrs.iter().filter(|&&a| a != leaver).map(|&a| at(a)), vnodes);
            for key in keys(2000) {
                let (o, n) = (old.owner(&key).unwrap(), new.owner(&key).unwrap());
                if o.addr == leaver {
                    prop_assert_ne!(n.addr, leaver);
                } else {
                    prop_assert_eq!(o, n);
                }
            }
            let moves = old.diff(&new);
            prop_assert!(moves.iter().all(|m| m.from.addr == leaver));
            let moved: f64 = moves.iter().map(|m| m.span.fraction()).sum();
            prop_assert!((moved - old.load()[&leaver]).abs() < 1e-9);
        }

        #[test]
        fn diff_agrees_with_per_point_owners(
            pool in addrs(1..=10),
            masks in prop::collection::vec((any::<bool>(), any::<bool>(), 0u64..4), 10),
            vnodes_old in vnodes(),
            same_vnodes in any::<bool>(),
            vnodes_new in vnodes(),
        ) {
            let pick = |new: bool| -> Vec<NodeId> {
                let mut out: Vec<NodeId> = pool
                    .iter()
                    .zip(&masks)
                    .filter(|(_, m)| if new { m.1 } else { m.0 })
                    .map(|(&a, m)| NodeId::new(a, if new { m.2 } else { 0 }, "n"))
                    .collect();
                if out.is_empty() {
                    out.push(NodeId::new(pool[0], 0, "n"));
                }
                out
            };
            let vnodes_new = if same_vnodes { vnodes_old } else { vnodes_new };
            let old = Ring::new(pick(false), vnodes_old);
            let new = Ring::new(pick(true), vnodes_new);
            let moves = old.diff(&new);

            // Sorted by end, disjoint, coalesced (also across the wrap).
            prop_assert!(moves.windows(2).all(|w| w[0].span.end < w[1].span.end));
            for (n, m) in moves.iter().enumerate() {
                prop_assert!(m.from != m.to);
                let next = &moves[(n + 1) % moves.len()];
                if moves.len() > 1 && m.span.end == next.span.start {
                    prop_assert!((&m.from, &m.to) != (&next.from, &next.to));
                }
            }

            // Every point: key hashes, both rings' boundaries and their neighbours.
            let mut points: Vec<u64> = keys(1000).iter().map(|k| Ring::key_hash(k)).collect();
            for s in old.slots.iter().chain(&new.slots) {
                points.extend([s.point, s.point.wrapping_add(1), s.point.wrapping_sub(1)]);
            }
            for p in points {
                let (o, n) = (owner_at(&old, p), owner_at(&new, p));
                let hits: Vec<&Move> = moves.iter().filter(|m| m.span.contains(p)).collect();
                if o == n {
                    prop_assert!(hits.is_empty(), "unchanged point {:x} in a move", p);
                } else {
                    prop_assert_eq!(hits.len(), 1, "changed point {:x}", p);
                    prop_assert_eq!(&hits[0].from, o);
                    prop_assert_eq!(&hits[0].to, n);
                }
            }
        }

        #[test]
        fn replicas_are_distinct_and_start_with_the_owner(
            addrs in addrs(1..=12), vnodes in vnodes(), k in 0usize..=14,
        ) {
            let ring = Ring::new(addrs.iter().map(|&a| at(a)), vnodes);
            let order: Vec<&NodeId> = ring.ranges().map(|(_, _, o)| o).collect();
            for (pos, (range, _, owner)) in ring.ranges().enumerate() {
                let reps = ring.replicas(range, k);
                prop_assert_eq!(reps.len(), k.min(ring.members().len()));
                if k > 0 {
                    prop_assert_eq!(reps[0], owner);
                }
                // Brute force: walk the ring order from this range.
                let mut expect: Vec<&NodeId> = Vec::new();
                for step in 0..order.len() {
                    let m = order[(pos + step) % order.len()];
                    if expect.len() < k && !expect.contains(&m) {
                        expect.push(m);
                    }
                }
                prop_assert_eq!(reps, expect);
            }
        }
    }
}
