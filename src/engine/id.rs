//! Node identity: an address plus an incarnation, and a human name.
//!
//! The address is the cluster-unique key (one UDP port per node). The
//! incarnation tells two lives of the same address apart: a node restarted on
//! the same address comes back with a higher incarnation, and every member
//! keeps the identity with the higher one (foca's `win_addr_conflict`), so a
//! restart is a rename, never a rejected join.
//!
//! A life is `(address, incarnation)`: what the committed configuration,
//! the epoch store's Raft peer and the lease belong to. Within one life,
//! SWIM may have to take a new identity — a member declared down (falsely,
//! or across a healed partition) can only come back under a newer one — and
//! bumps the `generation` for that. A new generation is the same life; only
//! the epoch store removing a life makes the node start a new one.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest node name accepted, in bytes. Names travel in every SWIM packet,
/// so they are kept short.
pub const NODE_NAME_LEN_MAX: usize = 64;

/// The identity of one life of one node.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// The node's address: the UDP port its QUIC endpoint listens on, as
    /// peers reach it. Unique in the cluster.
    pub addr: SocketAddr,
    /// Which life of the node at `addr` this is. Higher wins.
    pub incarnation: u64,
    /// SWIM's rejoins within this life. Higher wins at equal incarnation.
    pub generation: u32,
    /// A human name, at most [`NODE_NAME_LEN_MAX`] bytes (checked when
    /// decoded from a peer).
    #[serde(deserialize_with = "bounded_name")]
    pub name: Arc<str>,
}

/// Decodes a node name, refusing one longer than [`NODE_NAME_LEN_MAX`]: a
/// peer's identity is validated where it enters.
fn bounded_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
    let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    NodeId::validate_name(&name).map_err(serde::de::Error::custom)?;
    Ok(Arc::from(name.as_ref()))
}

impl NodeId {
    /// Builds an identity.
    ///
    /// # Panics
    /// If `name` is longer than [`NODE_NAME_LEN_MAX`] bytes: validate names at
    /// the input boundary with [`NodeId::validate_name`].
    pub fn new(addr: SocketAddr, incarnation: u64, name: &str) -> NodeId {
        assert!(Self::validate_name(name).is_ok(), "node name too long: {name:?}");
        NodeId { addr, incarnation, generation: 0, name: Arc::from(name) }
    }

    /// An identity that names only an address, used to announce to a seed
    /// whose incarnation and name are not known yet: a seed accepts an
    /// announce addressed to its address whatever the rest says.
    pub fn seed(addr: SocketAddr) -> NodeId {
        NodeId { addr, incarnation: 0, generation: 0, name: Arc::from("") }
    }

    /// This identity's life: the same node and incarnation at generation 0.
    /// Configurations, leases and votes are about lives.
    pub fn life(&self) -> NodeId {
        NodeId { generation: 0, ..self.clone() }
    }

    /// The first identity of the next life: what a node removed from the
    /// configuration comes back as.
    pub fn next_life(&self) -> NodeId {
        NodeId { incarnation: self.incarnation + 1, generation: 0, ..self.clone() }
    }

    /// Checks a node name: non-empty is not required, length is.
    pub fn validate_name(name: &str) -> Result<(), NameTooLong> {
        if name.len() > NODE_NAME_LEN_MAX {
            return Err(NameTooLong { len: name.len() });
        }
        Ok(())
    }

    /// The bytes that place this node on the ring: the address only, so a
    /// restarted node (higher incarnation, same address) takes back the same
    /// points. IPv4 `[4, a, b, c, d, port_hi, port_lo]`, IPv6 `[6, 16 bytes,
    /// port_hi, port_lo]`. Stable across processes, platforms and versions.
    pub fn ring_key(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(19);
        write_addr_bytes(&self.addr, &mut out);
        out
    }
}

/// Appends a socket address as explicit bytes: a family tag (4 or 6), the IP
/// octets and the port in network order. Used wherever an address must hash
/// or encode the same on every platform.
pub fn write_addr_bytes(addr: &SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// A node name longer than [`NODE_NAME_LEN_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("node name is {len} bytes long; at most {NODE_NAME_LEN_MAX} are allowed")]
pub struct NameTooLong {
    /// The rejected name's length in bytes.
    pub len: usize,
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.addr, self.incarnation)?;
        if self.generation > 0 {
            write!(f, ".{}", self.generation)?;
        }
        Ok(())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    /// A node declared down comes back by itself with the next generation of
    /// the same life, which wins over the one the cluster declared down.
    fn renew(&self) -> Option<Self> {
        Some(NodeId { generation: self.generation.wrapping_add(1), ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.incarnation, self.generation) > (adversary.incarnation, adversary.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    fn id(port: u16, inc: u64) -> NodeId {
        NodeId::new(SocketAddr::from(([127, 0, 0, 1], port)), inc, "n")
    }

    #[test]
    fn restarted_node_wins_over_its_old_life() {
        let old = id(7001, 10);
        let new = id(7001, 11);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        let renewed = old.renew().unwrap();
        assert_eq!((renewed.incarnation, renewed.generation), (10, 1));
        assert!(renewed.win_addr_conflict(&old) && new.win_addr_conflict(&renewed));
        assert_eq!(renewed.life(), old);
        assert_eq!(renewed.next_life(), NodeId::new(old.addr, 11, "n"));
        assert_eq!(old.addr(), new.addr());
    }

    #[test]
    fn ring_key_ignores_incarnation_and_name() {
        let a = id(7001, 1);
        let b = NodeId::new(a.addr, 99, "other");
        assert_eq!(a.ring_key(), b.ring_key());
        assert_eq!(a.ring_key(), vec![4, 127, 0, 0, 1, 0x1b, 0x59]);
    }

    #[test]
    fn long_names_are_rejected() {
        assert!(NodeId::validate_name(&"x".repeat(NODE_NAME_LEN_MAX)).is_ok());
        assert_eq!(
            NodeId::validate_name(&"x".repeat(NODE_NAME_LEN_MAX + 1)),
            Err(NameTooLong { len: NODE_NAME_LEN_MAX + 1 })
        );
    }

    #[test]
    fn a_peer_s_name_past_the_bound_is_refused_at_decode() {
        let ok = NodeId::new("127.0.0.1:7000".parse().unwrap(), 1, &"x".repeat(NODE_NAME_LEN_MAX));
        let bytes = rmp_serde::to_vec(&ok).unwrap();
        assert_eq!(rmp_serde::from_slice::<NodeId>(&bytes).unwrap(), ok);
        let long = NodeId { name: Arc::from("x".repeat(NODE_NAME_LEN_MAX + 1)), ..ok };
        let bytes = rmp_serde::to_vec(&long).unwrap();
        let err = rmp_serde::from_slice::<NodeId>(&bytes).unwrap_err();
        assert!(err.to_string().contains("node name is 65 bytes long"), "{err}");
    }
}
