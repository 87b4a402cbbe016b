//! What a node tells about itself: its membership view, the epoch store
//! as `custody status` shows it, and a resource's custodian.

use std::net::SocketAddr;

use super::wire::{MemberInfo, MemberState, OwnerInfo, StatusInfo, StatusMember};
use super::{Node, NodeId, swim_state};

impl Node {
    /// Who is custodian of `resource` in the latest configuration this node
    /// knows: every node that knows the same epoch answers the same.
    pub fn owner(&self, resource: &str) -> Option<OwnerInfo> {
        let config = self.store.latest()?;
        let ring = self.custody.ring()?;
        let (range, owner) = ring.locate(resource)?;
        let k = usize::from(config.replication);
        Some(OwnerInfo {
            resource: resource.to_string(),
            epoch: self.custody.epoch(),
            range: range.to_string(),
            custodian: owner.name.to_string(),
            addr: owner.addr,
            replicas: ring.replicas(range, k).into_iter().map(|m| m.name.to_string()).collect(),
        })
    }

    /// The node's view of the epoch store, as `custody status` shows it.
    pub fn status(&self) -> StatusInfo {
        let config = self.store.latest();
        let name_of = |addr: SocketAddr| {
            config.and_then(|c| c.member(addr)).map(|m| m.id.name.to_string()).unwrap_or_else(|| addr.to_string())
        };
        let lease_remaining_ms = self
            .store
            .lease_end()
            .map(|end| end.saturating_since(self.now + self.config.cancel_margin).as_millis() as u64)
            .unwrap_or(0);
        StatusInfo {
            name: self.swim.identity().name.to_string(),
            epoch: config.map_or(0, |c| c.epoch),
            epoch_hash: config.map(|c| format!("{:016x}", c.hash())).unwrap_or_default(),
            leader: self.store.leader().map(name_of),
            voters: self.store.voters().iter().map(|&a| name_of(a)).collect(),
            lease_remaining_ms,
            members: config
                .map(|c| {
                    c.members
                        .iter()
                        .map(|m| StatusMember {
                            name: m.id.name.to_string(),
                            addr: m.id.addr,
                            incarnation: m.id.incarnation,
                            status: m.status,
                            voter: self.store.voters().contains(&m.id.addr),
                            leader: self.store.leader() == Some(m.id.addr),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            custody: self.custody.info(),
        }
    }

    /// The membership view: this node and every member foca knows (alive,
    /// suspect, or down and not yet forgotten), sorted by address.
    pub fn members(&self) -> Vec<MemberInfo> {
        let me = self.swim.identity();
        let mut out: Vec<MemberInfo> = self
            .swim
            .iter_membership_state()
            .filter(|m| m.id().addr != me.addr)
            .map(|m| member_info(m.id(), swim_state(m.state())))
            .collect();
        let own_state = if self.left { MemberState::Down } else { MemberState::Alive };
        out.push(member_info(me, own_state));
        out.sort_by_key(|m| m.addr);
        out
    }
}

fn member_info(id: &NodeId, state: MemberState) -> MemberInfo {
    MemberInfo { name: id.name.to_string(), addr: id.addr, incarnation: id.incarnation, state }
}
