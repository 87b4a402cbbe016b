//! Committed ring configurations: the chain of epochs.
//!
//! The ring that decides custody is not a node's own SWIM view: it is a
//! configuration `C_e` committed by the epoch store (an embedded Raft group).
//! Configurations form a chain `C_1, C_2, …`; every node learns them by
//! gossip and fetches the ones it lacks, and a node's learned epoch never goes
//! backwards.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Serialize};

use super::id::{NodeId, write_addr_bytes};
use super::ring::{REPLICAS_MAX, Ring, dedupe_members};

/// A member's standing in a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    /// Owns ranges.
    Active,
    /// Leaving: owns nothing, hands off, then is removed by a later epoch.
    Leaving,
}

impl MemberStatus {
    /// The lowercase name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Active => "active",
            MemberStatus::Leaving => "leaving",
        }
    }
}

/// One member of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigMember {
    /// Which life of which node.
    pub id: NodeId,
    /// Its standing.
    pub status: MemberStatus,
}

/// A committed configuration `C_e`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configuration {
    /// Which cluster this chain belongs to: the Raft id of the node that
    /// bootstrapped it. Two clusters started apart never mix their chains.
    pub group: u64,
    /// The epoch number: 1 for the first, then one more per commit.
    pub epoch: u64,
    /// Members, sorted by address, one per address.
    #[serde(deserialize_with = "super::wire::bounded_list")]
    pub members: Vec<ConfigMember>,
    /// Ring points per member.
    pub vnodes: u32,
    /// Replicas per range (k).
    pub replication: u8,
}

/// Replicas per range unless configured otherwise.
pub const REPLICATION_DEFAULT: u8 = 3;
/// Members one configuration may have (a membership sync carries at most
/// as many).
pub const MEMBERS_MAX: usize = 4096;
/// Ring points per member.
pub const VNODES_MAX: u32 = 4096;
/// Ring points in all (members × vnodes): bounds the memory a configuration
/// from a peer can ask for.
pub const RING_POINTS_MAX: usize = 1 << 21;

impl Configuration {
    /// The first configuration of cluster `group`: the bootstrapping node
    /// alone.
    pub fn first(group: u64, founder: NodeId, vnodes: u32, replication: u8) -> Configuration {
        Configuration {
            group,
            epoch: 1,
            members: vec![ConfigMember { id: founder, status: MemberStatus::Active }],
            vnodes,
            replication,
        }
    }

    /// A stable 64-bit digest of the configuration (SipHash-2-4 with fixed
    /// keys over explicit bytes), the `hash` gossiped with the epoch number.
    pub fn hash(&self) -> u64 {
        let mut h = hashring::DefaultHashBuilder.build_hasher();
        let mut bytes = Vec::with_capacity(32 + self.members.len() * 32);
        bytes.extend_from_slice(&self.group.to_be_bytes());
        bytes.extend_from_slice(&self.epoch.to_be_bytes());
        bytes.extend_from_slice(&self.vnodes.to_be_bytes());
        bytes.push(self.replication);
        bytes.extend_from_slice(&(self.members.len() as u64).to_be_bytes());
        for m in &self.members {
            write_addr_bytes(&m.id.addr, &mut bytes);
            bytes.extend_from_slice(&m.id.incarnation.to_be_bytes());
            bytes.extend_from_slice(&(m.id.name.len() as u64).to_be_bytes());
            bytes.extend_from_slice(m.id.name.as_bytes());
            bytes.push(m.status as u8);
        }
        h.write(&bytes);
        h.finish()
    }

    /// The member at `addr`, if any.
    pub fn member(&self, addr: SocketAddr) -> Option<&ConfigMember> {
        self.members.binary_search_by_key(&addr, |m| m.id.addr).ok().map(|i| &self.members[i])
    }

    /// Whether this exact life is a member.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.member(id.addr).is_some_and(|m| &m.id == id)
    }

    /// The ring over the active members.
    pub fn ring(&self) -> Ring {
        let active = self.members.iter().filter(|m| m.status == MemberStatus::Active).map(|m| m.id.clone());
        Ring::new(active, self.vnodes)
    }

    /// Checks the invariants a committed configuration must keep: sorted,
    /// one member per address.
    ///
    /// Also in range, since a configuration may come from a peer: at most
    /// [`MEMBERS_MAX`] members, 1 ..= [`VNODES_MAX`] ring points each, at
    /// most [`RING_POINTS_MAX`] in all, and 1 ..= [`REPLICAS_MAX`] replicas.
    pub fn is_well_formed(&self) -> bool {
        let points = self.members.len().saturating_mul(self.vnodes as usize);
        self.epoch >= 1
            && self.members.len() <= MEMBERS_MAX
            && (1..=VNODES_MAX).contains(&self.vnodes)
            && points <= RING_POINTS_MAX
            && (1..=REPLICAS_MAX).contains(&usize::from(self.replication))
            && self.members.windows(2).all(|w| w[0].id.addr < w[1].id.addr)
    }
}

/// Rings built from configurations, kept while someone holds them, so that
/// every holder of the cache that learns the same ring shares one copy.
///
/// Explicit and owned: each engine [`super::Node`] has its own, and a host
/// that runs many nodes in one process (a simulator) may hand them one
/// shared cache with [`super::Node::with_ring_cache`]. A clone shares the
/// cache it was cloned from.
///
/// A ring is a pure function of its input, the active members (one per
/// address) and the points per member; a lookup finds candidates by a 64-bit
/// digest of that input and takes one only if its input is equal, so a
/// digest collision costs a build, never a wrong ring. Entries are weak: a
/// ring nobody holds is forgotten at the next insertion, which bounds the
/// cache by the rings alive.
#[derive(Clone, Default)]
pub struct RingCache {
    rings: Arc<Mutex<BTreeMap<u64, Vec<Weak<Ring>>>>>,
}

impl std::fmt::Debug for RingCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rings = self.rings.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let alive = rings.values().flatten().filter(|r| r.strong_count() > 0).count();
        f.debug_struct("RingCache").field("alive", &alive).finish()
    }
}

impl RingCache {
    /// An empty cache, shared by nobody yet.
    pub fn new() -> RingCache {
        RingCache::default()
    }

    /// The ring over `config`'s active members: the one held already if its
    /// input is equal, otherwise a new one, kept for the next caller.
    pub fn ring(&self, config: &Configuration) -> Arc<Ring> {
        let active = config.members.iter().filter(|m| m.status == MemberStatus::Active).map(|m| m.id.clone());
        let members = dedupe_members(active);
        let key = ring_input_digest(&members, config.vnodes);
        let mut rings = self.rings.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let built_from_input =
            |ring: &Arc<Ring>| ring.vnodes() == config.vnodes && ring.members() == members.as_slice();
        if let Some(ring) = rings.get(&key).into_iter().flatten().filter_map(Weak::upgrade).find(built_from_input) {
            return ring;
        }
        let ring = Arc::new(Ring::new(members, config.vnodes));
        rings.retain(|_, bucket| {
            bucket.retain(|r| r.strong_count() > 0);
            !bucket.is_empty()
        });
        rings.entry(key).or_default().push(Arc::downgrade(&ring));
        ring
    }

    /// Rings held by someone, for tests.
    #[cfg(test)]
    fn alive(&self) -> usize {
        let rings = self.rings.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        rings.values().flatten().filter(|r| r.strong_count() > 0).count()
    }
}

/// A 64-bit digest of a ring's input (SipHash-2-4 with fixed keys over
/// explicit bytes): where a [`RingCache`] looks first.
fn ring_input_digest(members: &[NodeId], vnodes: u32) -> u64 {
    let mut bytes = Vec::with_capacity(8 + members.len() * 40);
    bytes.extend_from_slice(&vnodes.to_be_bytes());
    for id in members {
        write_addr_bytes(&id.addr, &mut bytes);
        bytes.extend_from_slice(&id.incarnation.to_be_bytes());
        bytes.extend_from_slice(&id.generation.to_be_bytes());
        bytes.extend_from_slice(&(id.name.len() as u64).to_be_bytes());
        bytes.extend_from_slice(id.name.as_bytes());
    }
    let mut h = hashring::DefaultHashBuilder.build_hasher();
    h.write(&bytes);
    h.finish()
}

impl super::Node {
    /// This node builds its rings through `rings`, shared with every other
    /// holder of it (by default a node has a cache of its own). For a host
    /// running many nodes in one process: they share one ring per epoch
    /// instead of one each. Changes nothing a node does.
    ///
    /// (Defined beside [`RingCache`], which it is about.)
    pub fn with_ring_cache(mut self, rings: RingCache) -> super::Node {
        self.custody.share_rings(rings);
        self
    }
}

/// The changes a leader batches into the next epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Lives to add (or to replace an earlier life at the same address).
    pub joins: Vec<NodeId>,
    /// Members to mark leaving.
    pub leaving: Vec<NodeId>,
    /// Members to remove.
    pub removals: Vec<NodeId>,
}

impl Changes {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaving.is_empty() && self.removals.is_empty()
    }
}

impl Configuration {
    /// The next configuration with `changes` applied, or `None` if they
    /// change nothing. Deterministic: the same configuration and changes give
    /// the same result on every node.
    pub fn next(&self, changes: &Changes) -> Option<Configuration> {
        let mut members: std::collections::BTreeMap<SocketAddr, ConfigMember> =
            self.members.iter().map(|m| (m.id.addr, m.clone())).collect();
        for id in &changes.removals {
            if members.get(&id.addr).is_some_and(|m| &m.id == id) {
                members.remove(&id.addr);
            }
        }
        for id in &changes.leaving {
            if let Some(m) = members.get_mut(&id.addr).filter(|m| &m.id == id) {
                m.status = MemberStatus::Leaving;
            }
        }
        // A join that would take the configuration past its bounds waits
        // (it would not be well formed, and every node would refuse it).
        let room = MEMBERS_MAX.min(RING_POINTS_MAX / (self.vnodes.max(1) as usize));
        for id in &changes.joins {
            let held = members.get(&id.addr).map(|m| m.id.incarnation);
            let newer = held.is_none_or(|incarnation| incarnation < id.incarnation);
            if newer && (held.is_some() || members.len() < room) {
                members.insert(id.addr, ConfigMember { id: id.clone(), status: MemberStatus::Active });
            }
        }
        let members: Vec<ConfigMember> = members.into_values().collect();
        if members == self.members || members.is_empty() {
            return None;
        }
        Some(Configuration {
            group: self.group,
            epoch: self.epoch + 1,
            members,
            vnodes: self.vnodes,
            replication: self.replication,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(port: u16, inc: u64) -> NodeId {
        NodeId::new(SocketAddr::from(([127, 0, 0, 1], port)), inc, &format!("n{port}"))
    }

    #[test]
    fn next_applies_joins_leaves_and_removals_in_one_epoch() {
        let c1 = Configuration::first(7, id(1, 1), 128, 3);
        let changes = Changes { joins: vec![id(3, 1), id(2, 1)], ..Changes::default() };
        let c2 = c1.next(&changes).unwrap();
        assert_eq!(c2.epoch, 2);
        assert_eq!(c2.members.iter().map(|m| m.id.addr.port()).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(c2.is_well_formed());
        let changes = Changes { leaving: vec![id(2, 1)], removals: vec![id(3, 1)], joins: vec![id(1, 2)] };
        let c3 = c2.next(&changes).unwrap();
        assert_eq!(
            c3.members,
            vec![
                ConfigMember { id: id(1, 2), status: MemberStatus::Active },
                ConfigMember { id: id(2, 1), status: MemberStatus::Leaving },
            ]
        );
        // Nothing new: no epoch.
        assert_eq!(c3.next(&Changes { joins: vec![id(1, 2), id(1, 1)], ..Changes::default() }), None);
        // Removing an older life than the member's is not removing the member.
        assert_eq!(c3.next(&Changes { removals: vec![id(1, 1)], ..Changes::default() }), None);
    }

    #[test]
    fn the_hash_is_stable_and_sees_every_field() {
        let c = Configuration::first(7, id(1, 1), 128, 3);
        assert_eq!(c.hash(), Configuration::first(7, id(1, 1), 128, 3).hash());
        // Pinned: a change of encoding would split a mixed-version cluster.
        assert_eq!(c.hash(), 0xb290_d9b8_227c_1f36);
        let mut other = c.clone();
        other.members[0].status = MemberStatus::Leaving;
        assert_ne!(other.hash(), c.hash());
        assert_ne!(Configuration::first(7, id(1, 2), 128, 3).hash(), c.hash());
        assert_ne!(Configuration::first(7, id(1, 1), 64, 3).hash(), c.hash());
        assert_ne!(Configuration::first(8, id(1, 1), 128, 3).hash(), c.hash());
    }

    #[test]
    fn lookups_by_address_and_identity() {
        let c =
            Configuration::first(7, id(1, 1), 128, 3).next(&Changes { joins: vec![id(5, 1)], ..Default::default() });
        let c = c.unwrap();
        assert!(c.contains(&id(5, 1)));
        assert!(!c.contains(&id(5, 2)));
        assert_eq!(c.member(id(1, 9).addr).map(|m| m.id.incarnation), Some(1));
        assert_eq!(c.ring().members().len(), 2);
    }

    #[test]
    fn a_ring_cache_shares_one_ring_per_input_among_its_holders() {
        let c1 = Configuration::first(7, id(1, 1), 16, 3);
        let c2 = c1.next(&Changes { joins: vec![id(2, 1)], ..Changes::default() }).unwrap();
        let cache = RingCache::new();
        let shared = cache.clone();
        let a = cache.ring(&c2);
        assert!(Arc::ptr_eq(&a, &shared.ring(&c2)), "a clone shares the cache");
        assert_eq!(a.members(), c2.ring().members());
        assert_eq!(a.ranges().collect::<Vec<_>>(), c2.ring().ranges().collect::<Vec<_>>());
        // Another cache builds its own.
        assert!(!Arc::ptr_eq(&a, &RingCache::new().ring(&c2)));
        // Another epoch with the same active members has the same ring.
        let c3 = c2.next(&Changes { joins: vec![id(3, 1)], ..Changes::default() }).unwrap();
        let c4 = c3.next(&Changes { leaving: vec![id(3, 1)], ..Changes::default() }).unwrap();
        assert!(Arc::ptr_eq(&a, &cache.ring(&c4)));
        // Other members, lives, names or points: other rings.
        let renamed = Configuration {
            members: vec![
                c2.members[0].clone(),
                ConfigMember { id: NodeId::new(id(2, 1).addr, 1, "x"), ..c2.members[1].clone() },
            ],
            ..c2.clone()
        };
        for other in [
            c3.clone(),
            Configuration { vnodes: 8, ..c2.clone() },
            renamed,
            c2.next(&Changes { joins: vec![id(2, 2)], ..Changes::default() }).unwrap(),
        ] {
            let ring = cache.ring(&other);
            assert!(!Arc::ptr_eq(&a, &ring), "{other:?}");
            assert_eq!(ring.members(), other.ring().members());
            assert_eq!(ring.vnodes(), other.vnodes);
        }
        // Rings nobody holds are forgotten.
        drop(a);
        let _kept = cache.ring(&c1);
        assert_eq!(cache.alive(), 1);
    }

    #[test]
    fn a_ring_cache_takes_a_ring_only_if_its_input_is_equal() {
        let c = Configuration::first(7, id(1, 1), 16, 3);
        let other = Configuration::first(7, id(2, 1), 16, 3);
        let cache = RingCache::new();
        let wrong = cache.ring(&other);
        // Plant the other ring under this configuration's digest, as a
        // digest collision would.
        let members = dedupe_members(c.members.iter().map(|m| m.id.clone()));
        let key = ring_input_digest(&members, c.vnodes);
        cache.rings.lock().unwrap().entry(key).or_default().insert(0, Arc::downgrade(&wrong));
        let ring = cache.ring(&c);
        assert!(!Arc::ptr_eq(&ring, &wrong));
        assert_eq!(ring.members(), [id(1, 1)]);
        // Both stay findable.
        assert!(Arc::ptr_eq(&ring, &cache.ring(&c)));
        assert!(Arc::ptr_eq(&wrong, &cache.ring(&other)));
    }

    #[test]
    fn a_configuration_out_of_range_is_not_well_formed() {
        let c = Configuration::first(1, id(1, 1), 128, 3);
        assert!(c.is_well_formed());
        for (vnodes, replication) in [(0, 3), (VNODES_MAX + 1, 3), (128, 0), (128, REPLICAS_MAX as u8 + 1)] {
            assert!(!Configuration { vnodes, replication, ..c.clone() }.is_well_formed(), "{vnodes} {replication}");
        }
        let many: Vec<ConfigMember> = (0..=MEMBERS_MAX as u16)
            .map(|i| ConfigMember { id: id(i.wrapping_add(1), 1), status: MemberStatus::Active })
            .collect();
        assert!(!Configuration { members: many.clone(), ..c.clone() }.is_well_formed(), "too many members");
        let members = RING_POINTS_MAX / VNODES_MAX as usize;
        let at_bound = Configuration { members: many[..members].to_vec(), vnodes: VNODES_MAX, ..c.clone() };
        assert!(at_bound.is_well_formed());
        let past = Configuration { members: many[..members + 1].to_vec(), ..at_bound };
        assert!(!past.is_well_formed(), "too many ring points");
        // The leader never builds one past the bounds: the extra join waits.
        let full = Configuration { members: many[..MEMBERS_MAX].to_vec(), ..c.clone() };
        assert!(full.is_well_formed());
        let join = Changes { joins: vec![id(60_000, 1)], ..Changes::default() };
        assert_eq!(full.next(&join), None);
    }
}
