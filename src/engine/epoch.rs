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
use super::ring::{REPLICAS_MAX, Ring};

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

    /// The ring over the active members, built once per process for each
    /// configuration: every node of a simulation (and every caller in a
    /// process) that learns the same configuration shares one ring. A pure
    /// function of the configuration, memoised; rings nobody holds any more
    /// are forgotten.
    pub fn shared_ring(&self) -> Arc<Ring> {
        static RINGS: Mutex<BTreeMap<(u64, u64), Weak<Ring>>> = Mutex::new(BTreeMap::new());
        let key = (self.group, self.hash());
        let mut rings = RINGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(ring) = rings.get(&key).and_then(Weak::upgrade) {
            return ring;
        }
        rings.retain(|_, ring| ring.strong_count() > 0);
        let ring = Arc::new(self.ring());
        rings.insert(key, Arc::downgrade(&ring));
        ring
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
