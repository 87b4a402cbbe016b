//! SWIM membership: the foca instance, its wire codec, and the glue that
//! turns foca's callbacks into engine outputs and timers.
//!
//! foca is sans-IO already: it calls a [`foca::Runtime`] to send packets,
//! schedule timers and report changes. `Effects` is that runtime: it only
//! records, and [`crate::engine::Node`] turns the records into outputs after
//! each call into foca returns.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut};
use foca::{Header, Member, Message, State};
use rand::rngs::Xoshiro256PlusPlus;

use super::id::{NODE_NAME_LEN_MAX, NodeId, write_addr_bytes};
use super::time::Instant;

/// The foca instance the engine runs.
pub(crate) type Swim = foca::Foca<NodeId, SwimCodec, Xoshiro256PlusPlus, EpochGossip>;

/// `(epoch, hash, sender)` items heard by gossip, for the engine to drain.
pub(crate) type Heard = Arc<Mutex<Vec<(u64, u64, Option<SocketAddr>)>>>;

/// Tag byte of an epoch announcement in a SWIM custom broadcast.
const EPOCH_ITEM_TAG: u8 = b'E';

/// Encodes `(epoch, hash)` as a SWIM custom broadcast item (17 bytes).
pub(crate) fn epoch_item(epoch: u64, hash: u64) -> Vec<u8> {
    let mut item = Vec::with_capacity(17);
    item.push(EPOCH_ITEM_TAG);
    item.extend_from_slice(&epoch.to_be_bytes());
    item.extend_from_slice(&hash.to_be_bytes());
    item
}

/// Spreads committed epochs `(epoch, hash)` with SWIM's gossip. An item
/// keeps circulating only while it is the newest epoch this node has heard
/// of; an older or repeated one is dropped at once.
#[derive(Debug)]
pub(crate) struct EpochGossip {
    latest: u64,
    heard: Heard,
}

impl EpochGossip {
    pub(crate) fn new(heard: Heard) -> EpochGossip {
        EpochGossip { latest: 0, heard }
    }
}

/// Dissemination key of an epoch item: a newer epoch replaces an older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EpochKey(u64);

impl foca::Invalidates for EpochKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.0 >= other.0
    }
}

impl foca::BroadcastHandler<NodeId> for EpochGossip {
    type Key = EpochKey;
    type Error = CodecError;

    fn receive_item(&mut self, data: &[u8], sender: Option<&NodeId>) -> Result<Option<EpochKey>, CodecError> {
        let (&tag, rest) = data.split_first().ok_or(CodecError::Truncated)?;
        if tag != EPOCH_ITEM_TAG {
            return Err(CodecError::BadTag { what: "broadcast item", tag });
        }
        let epoch = u64::from_be_bytes(rest.get(..8).ok_or(CodecError::Truncated)?.try_into().expect("8 bytes"));
        let hash = u64::from_be_bytes(rest.get(8..16).ok_or(CodecError::Truncated)?.try_into().expect("8 bytes"));
        if epoch <= self.latest {
            return Ok(None);
        }
        self.latest = epoch;
        self.heard.lock().expect("the engine never panics holding this lock").push((
            epoch,
            hash,
            sender.map(|s| s.addr),
        ));
        Ok(Some(EpochKey(epoch)))
    }
}

/// foca timers, ordered by deadline and then by the order they were
/// scheduled. (`foca::Timer`'s own `Ord` compares only the variant, so it
/// must never be a heap key.)
#[derive(Debug, Default)]
pub(crate) struct Timers {
    queue: BTreeMap<(Instant, u64), foca::Timer<NodeId>>,
    next_seq: u64,
}

impl Timers {
    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.queue.keys().next().map(|&(at, _)| at)
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<foca::Timer<NodeId>> {
        let entry = self.queue.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        Some(entry.remove())
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

/// What foca asked for during one call: packets, timers, notifications.
pub(crate) struct Effects<'a> {
    pub(crate) now: Instant,
    pub(crate) timers: &'a mut Timers,
    pub(crate) sends: &'a mut Vec<(SocketAddr, Vec<u8>)>,
    pub(crate) notifications: &'a mut Vec<foca::OwnedNotification<NodeId>>,
}

impl foca::Runtime<NodeId> for Effects<'_> {
    fn notify(&mut self, notification: foca::Notification<'_, NodeId>) {
        self.notifications.push(notification.to_owned());
    }

    fn send_to(&mut self, to: NodeId, data: &[u8]) {
        self.sends.push((to.addr, super::wire::encode_datagram(data)));
    }

    fn submit_after(&mut self, event: foca::Timer<NodeId>, after: Duration) {
        let seq = self.timers.next_seq;
        self.timers.next_seq += 1;
        self.timers.queue.insert((self.now + after, seq), event);
    }
}

/// Why a SWIM packet did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The packet ended inside an item.
    #[error("truncated SWIM packet")]
    Truncated,
    /// A tag byte has no meaning.
    #[error("invalid {what} tag {tag}")]
    BadTag {
        /// Which field.
        what: &'static str,
        /// The byte seen.
        tag: u8,
    },
    /// A node name is too long or not UTF-8.
    #[error("invalid node name")]
    BadName,
    /// The buffer has no room for the item.
    #[error("no room in the packet")]
    NoRoom,
}

/// A compact, explicit binary codec for foca's headers and member updates.
///
/// Identities: `[family 4|6][ip octets][port u16 BE][incarnation u64 BE]
/// [generation u32 BE][name len u8][name]`. Every multi-byte integer is big-endian. Decoding
/// checks every length before reading, so no input panics.
#[derive(Debug, Default, Clone, Copy)]
pub struct SwimCodec;

const MSG_PING: u8 = 0;
const MSG_ACK: u8 = 1;
const MSG_PING_REQ: u8 = 2;
const MSG_INDIRECT_PING: u8 = 3;
const MSG_INDIRECT_ACK: u8 = 4;
const MSG_FORWARDED_ACK: u8 = 5;
const MSG_ANNOUNCE: u8 = 6;
const MSG_FEED: u8 = 7;
const MSG_GOSSIP: u8 = 8;
const MSG_BROADCAST: u8 = 9;
const MSG_TURN_UNDEAD: u8 = 10;

/// Encodes an identity; a name past [`NODE_NAME_LEN_MAX`] (only a
/// hand-built `NodeId` can carry one) is an error, never a wrapped length.
fn put_id(out: &mut Vec<u8>, id: &NodeId) -> Result<(), CodecError> {
    let name = id.name.as_bytes();
    let len =
        u8::try_from(name.len()).ok().filter(|&l| usize::from(l) <= NODE_NAME_LEN_MAX).ok_or(CodecError::BadName)?;
    write_addr_bytes(&id.addr, out);
    out.extend_from_slice(&id.incarnation.to_be_bytes());
    out.extend_from_slice(&id.generation.to_be_bytes());
    out.push(len);
    out.extend_from_slice(name);
    Ok(())
}

/// The message tag of an encoded header, found without decoding (or
/// allocating) the identities in front of it. `None` if malformed.
pub(crate) fn peek_message_tag(packet: &[u8]) -> Option<u8> {
    fn skip_id(p: &[u8]) -> Option<&[u8]> {
        let ip_len = match *p.first()? {
            4 => 4,
            6 => 16,
            _ => return None,
        };
        // family, ip, port, incarnation, generation, then the name.
        let fixed = 1 + ip_len + 2 + 8 + 4;
        let name_len = usize::from(*p.get(fixed)?);
        p.get(fixed + 1 + name_len..)
    }
    let rest = skip_id(packet)?;
    let rest = skip_id(rest.get(2..)?)?;
    rest.first().copied()
}

/// The tag of a `TurnUndead` message.
pub(crate) const TAG_TURN_UNDEAD: u8 = MSG_TURN_UNDEAD;

fn take<const N: usize>(buf: &mut impl Buf) -> Result<[u8; N], CodecError> {
    if buf.remaining() < N {
        return Err(CodecError::Truncated);
    }
    let mut out = [0; N];
    buf.copy_to_slice(&mut out);
    Ok(out)
}

fn get_id(buf: &mut impl Buf) -> Result<NodeId, CodecError> {
    let [family] = take::<1>(buf)?;
    let ip = match family {
        4 => IpAddr::V4(Ipv4Addr::from(take::<4>(buf)?)),
        6 => IpAddr::V6(Ipv6Addr::from(take::<16>(buf)?)),
        tag => return Err(CodecError::BadTag { what: "address family", tag }),
    };
    let port = u16::from_be_bytes(take::<2>(buf)?);
    let incarnation = u64::from_be_bytes(take::<8>(buf)?);
    let generation = u32::from_be_bytes(take::<4>(buf)?);
    let [len] = take::<1>(buf)?;
    let len = len as usize;
    if len > NODE_NAME_LEN_MAX {
        return Err(CodecError::BadName);
    }
    if buf.remaining() < len {
        return Err(CodecError::Truncated);
    }
    let mut name = vec![0; len];
    buf.copy_to_slice(&mut name);
    let name = String::from_utf8(name).map_err(|_| CodecError::BadName)?;
    Ok(NodeId { addr: SocketAddr::new(ip, port), incarnation, generation, name: Arc::from(name) })
}

fn put_all(buf: &mut impl BufMut, scratch: &[u8]) -> Result<(), CodecError> {
    if buf.remaining_mut() < scratch.len() {
        return Err(CodecError::NoRoom);
    }
    buf.put_slice(scratch);
    Ok(())
}

impl foca::Codec<NodeId> for SwimCodec {
    type Error = CodecError;

    fn encode_header(&mut self, header: &Header<NodeId>, mut buf: impl BufMut) -> Result<(), CodecError> {
        let mut out = Vec::with_capacity(96);
        put_id(&mut out, &header.src)?;
        out.extend_from_slice(&header.src_incarnation.to_be_bytes());
        put_id(&mut out, &header.dst)?;
        match &header.message {
            Message::Ping(n) => out.extend_from_slice(&[MSG_PING, *n]),
            Message::Ack(n) => out.extend_from_slice(&[MSG_ACK, *n]),
            Message::PingReq { target, probe_number } => {
                out.push(MSG_PING_REQ);
                put_id(&mut out, target)?;
                out.push(*probe_number);
            }
            Message::IndirectPing { origin, probe_number } => {
                out.push(MSG_INDIRECT_PING);
                put_id(&mut out, origin)?;
                out.push(*probe_number);
            }
            Message::IndirectAck { target, probe_number } => {
                out.push(MSG_INDIRECT_ACK);
                put_id(&mut out, target)?;
                out.push(*probe_number);
            }
            Message::ForwardedAck { origin, probe_number } => {
                out.push(MSG_FORWARDED_ACK);
                put_id(&mut out, origin)?;
                out.push(*probe_number);
            }
            Message::Announce => out.push(MSG_ANNOUNCE),
            Message::Feed => out.push(MSG_FEED),
            Message::Gossip => out.push(MSG_GOSSIP),
            Message::Broadcast => out.push(MSG_BROADCAST),
            Message::TurnUndead => out.push(MSG_TURN_UNDEAD),
        }
        put_all(&mut buf, &out)
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<NodeId>, CodecError> {
        let src = get_id(&mut buf)?;
        let src_incarnation = u16::from_be_bytes(take::<2>(&mut buf)?);
        let dst = get_id(&mut buf)?;
        let [tag] = take::<1>(&mut buf)?;
        let message = match tag {
            MSG_PING => Message::Ping(take::<1>(&mut buf)?[0]),
            MSG_ACK => Message::Ack(take::<1>(&mut buf)?[0]),
            MSG_PING_REQ | MSG_INDIRECT_PING | MSG_INDIRECT_ACK | MSG_FORWARDED_ACK => {
                let id = get_id(&mut buf)?;
                let [probe_number] = take::<1>(&mut buf)?;
                match tag {
                    MSG_PING_REQ => Message::PingReq { target: id, probe_number },
                    MSG_INDIRECT_PING => Message::IndirectPing { origin: id, probe_number },
                    MSG_INDIRECT_ACK => Message::IndirectAck { target: id, probe_number },
                    _ => Message::ForwardedAck { origin: id, probe_number },
                }
            }
            MSG_ANNOUNCE => Message::Announce,
            MSG_FEED => Message::Feed,
            MSG_GOSSIP => Message::Gossip,
            MSG_BROADCAST => Message::Broadcast,
            MSG_TURN_UNDEAD => Message::TurnUndead,
            tag => return Err(CodecError::BadTag { what: "message", tag }),
        };
        Ok(Header { src, src_incarnation, dst, message })
    }

    fn encode_member(&mut self, member: &Member<NodeId>, mut buf: impl BufMut) -> Result<(), CodecError> {
        let mut out = Vec::with_capacity(48);
        put_id(&mut out, member.id())?;
        out.extend_from_slice(&member.incarnation().to_be_bytes());
        out.push(match member.state() {
            State::Alive => 0,
            State::Suspect => 1,
            State::Down => 2,
        });
        put_all(&mut buf, &out)
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<NodeId>, CodecError> {
        let id = get_id(&mut buf)?;
        let incarnation = u16::from_be_bytes(take::<2>(&mut buf)?);
        let state = match take::<1>(&mut buf)?[0] {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Down,
            tag => return Err(CodecError::BadTag { what: "member state", tag }),
        };
        Ok(Member::new(id, incarnation, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Codec;
    use proptest::prelude::*;

    fn id_strategy() -> impl Strategy<Value = NodeId> {
        (
            prop_oneof![any::<[u8; 4]>().prop_map(IpAddr::from), any::<[u8; 16]>().prop_map(IpAddr::from),],
            any::<u16>(),
            any::<u64>(),
            any::<u32>(),
            "[a-z0-9-]{0,64}",
        )
            .prop_map(|(ip, port, inc, generation, name)| NodeId {
                generation,
                ..NodeId::new(SocketAddr::new(ip, port), inc, &name)
            })
    }

    fn message_strategy() -> impl Strategy<Value = Message<NodeId>> {
        prop_oneof![
            any::<u8>().prop_map(Message::Ping),
            any::<u8>().prop_map(Message::Ack),
            (id_strategy(), any::<u8>()).prop_map(|(target, probe_number)| Message::PingReq { target, probe_number }),
            (id_strategy(), any::<u8>())
                .prop_map(|(origin, probe_number)| Message::IndirectPing { origin, probe_number }),
            (id_strategy(), any::<u8>())
                .prop_map(|(target, probe_number)| Message::IndirectAck { target, probe_number }),
            (id_strategy(), any::<u8>())
                .prop_map(|(origin, probe_number)| Message::ForwardedAck { origin, probe_number }),
            Just(Message::Announce),
            Just(Message::Feed),
            Just(Message::Gossip),
            Just(Message::Broadcast),
            Just(Message::TurnUndead),
        ]
    }

    proptest! {
        #[test]
        fn headers_round_trip(src in id_strategy(), dst in id_strategy(), inc in any::<u16>(), message in message_strategy()) {
            let header = Header { src, src_incarnation: inc, dst, message };
            let mut buf = Vec::new();
            SwimCodec.encode_header(&header, &mut buf).unwrap();
            let mut read = &buf[..];
            prop_assert_eq!(SwimCodec.decode_header(&mut read).unwrap(), header);
            prop_assert!(read.is_empty());
            for cut in 0..buf.len() {
                prop_assert!(SwimCodec.decode_header(&buf[..cut]).is_err());
            }
        }

        #[test]
        fn members_round_trip(id in id_strategy(), inc in any::<u16>(), state in 0u8..3) {
            let state = [State::Alive, State::Suspect, State::Down][state as usize];
            let member = Member::new(id, inc, state);
            let mut buf = Vec::new();
            SwimCodec.encode_member(&member, &mut buf).unwrap();
            let mut read = &buf[..];
            prop_assert_eq!(SwimCodec.decode_member(&mut read).unwrap(), member);
            prop_assert!(read.is_empty());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SwimCodec.decode_header(&bytes[..]);
            let _ = SwimCodec.decode_member(&bytes[..]);
        }
    }

    proptest! {
        #[test]
        fn the_tag_peek_agrees_with_the_decoder(src in id_strategy(), dst in id_strategy(), message in message_strategy()) {
            let header = Header { src, src_incarnation: 3, dst, message };
            let mut buf = Vec::new();
            SwimCodec.encode_header(&header, &mut buf).unwrap();
            let tag = peek_message_tag(&buf).unwrap();
            let turn_undead = header.message == Message::TurnUndead;
            prop_assert_eq!(tag == TAG_TURN_UNDEAD, turn_undead);
        }
    }

    #[test]
    fn a_full_buffer_stays_clean() {
        let member = Member::alive(NodeId::new(SocketAddr::from(([10, 0, 0, 1], 1)), 1, "n"));
        let mut buf = Vec::new();
        let mut limited = (&mut buf).limit(5);
        assert_eq!(SwimCodec.encode_member(&member, &mut limited), Err(CodecError::NoRoom));
        assert!(buf.is_empty());
    }

    #[test]
    fn an_identity_with_a_name_past_the_bound_does_not_encode() {
        let ok = NodeId::new("127.0.0.1:7000".parse().unwrap(), 1, "n");
        let long = NodeId { name: Arc::from("x".repeat(NODE_NAME_LEN_MAX + 1)), ..ok.clone() };
        let mut buf = Vec::new();
        let header = Header { src: ok.clone(), src_incarnation: 0, dst: long.clone(), message: Message::Ping(1) };
        assert!(matches!(SwimCodec.encode_header(&header, &mut buf), Err(CodecError::BadName)));
        let member = Member::new(long, 0, State::Alive);
        assert!(matches!(SwimCodec.encode_member(&member, &mut buf), Err(CodecError::BadName)));
        assert!(buf.is_empty(), "nothing half-written");
    }
}
