//! Every decoder fed generated and mutated inputs.
//!
//! The decoders: [`wire::decode_frame`] for every [`Message`] (member lists
//! and configurations through its direct reader and through rmp-serde,
//! handoffs, Raft, client requests and responses), [`wire::decode_datagram`]
//! with [`wire::datagram_to_frame`], [`wire::decode_len_prefix`], SWIM
//! headers and member updates ([`SwimCodec`]), Raft's protobuf messages
//! ([`wire::decode_protobuf`], as the epoch store parses them), and whole inputs through an engine
//! [`Node`]: SWIM packets (foca's framing of updates and epoch items),
//! peer frames and client frames.
//!
//! Inputs are made by a seeded generator: valid values of every kind,
//! encoded, then mutated (bit flips, byte changes, insertions of random
//! bytes and of length markers claiming huge sizes, deletions, truncations,
//! duplications, splices of another input). Each input is decoded under
//! `catch_unwind`: a panic is counted, never fatal. What decodes is checked:
//! names within [`NODE_NAME_LEN_MAX`], configurations well formed,
//! transfers valid, a re-encoding that decodes to the same value and fits
//! the frame bound (or an error, never a panic), and for an input left
//! unmutated the very value encoded. A [`Meter`] may measure the heap each
//! input takes at its peak.
//!
//! Built twice: as a unit test of this crate (a quick run), and by
//! `examples/fuzz_decoders.rs` (millions of inputs, with a counting global
//! allocator), which includes this file. It uses only the public API, named
//! through `crate::engine`, which the example re-exports.

use std::net::{IpAddr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use foca::{Codec, Header, Member, State};
use protobuf::Message as _;
use raft::eraftpb;

use crate::engine::epoch::{ConfigMember, Configuration, MemberStatus};
use crate::engine::id::{NODE_NAME_LEN_MAX, NodeId};
use crate::engine::membership::SwimCodec;
use crate::engine::ring::Span;
use crate::engine::task::{Outcome, Task, Token};
use crate::engine::wire::{
    self, Completed, CustodyInfo, EpochMsg, FRAME_LEN_MAX, Frame, LeaseStatus, MemberInfo, MemberState, Message,
    OwnerInfo, PendingTask, RECOVER_CHUNKS_MAX, RecoverReply, ReplicaWrite, Replicate, ReplicateAck, Request,
    ResourceState, Response, StatusInfo, StatusMember, Submitted, SyncMark, SyncMember, TaskMsg, Transfer, Waiter,
    WireError,
};
use crate::engine::{ClientId, Config, Input, Instant, Node, Output};

/// Measures the heap one input takes.
pub(crate) trait Meter {
    /// Called just before an input is decoded.
    fn start(&self);
    /// Bytes allocated above the level at [`Meter::start`], at the peak
    /// since.
    fn peak(&self) -> usize;
}

/// No measurement: every peak reads 0.
pub(crate) struct NoMeter;

impl Meter for NoMeter {
    fn start(&self) {}
    fn peak(&self) -> usize {
        0
    }
}

/// What is fed, and to which decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Target {
    FrameRequest,
    FrameResponse,
    FrameSync,
    FrameEpoch,
    FrameConfig,
    FrameTask,
    FrameTransfer,
    FrameRaft,
    FrameSwim,
    Datagram,
    LenPrefix,
    SwimHeader,
    SwimMember,
    RaftProtobuf,
    NodeDatagram,
    NodePeerFrame,
    NodeClientFrame,
}

impl Target {
    pub(crate) const ALL: [Target; 17] = [
        Target::FrameRequest,
        Target::FrameResponse,
        Target::FrameSync,
        Target::FrameEpoch,
        Target::FrameConfig,
        Target::FrameTask,
        Target::FrameTransfer,
        Target::FrameRaft,
        Target::FrameSwim,
        Target::Datagram,
        Target::LenPrefix,
        Target::SwimHeader,
        Target::SwimMember,
        Target::RaftProtobuf,
        Target::NodeDatagram,
        Target::NodePeerFrame,
        Target::NodeClientFrame,
    ];

    /// The decoder and what it is fed.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::FrameRequest => "decode_frame: Request",
            Target::FrameResponse => "decode_frame: Response",
            Target::FrameSync => "decode_frame: SyncRequest/SyncResponse",
            Target::FrameEpoch => "decode_frame: Epoch (lease, vote, leave, fetch)",
            Target::FrameConfig => "decode_frame: Epoch::Config",
            Target::FrameTask => "decode_frame: Task (submit and answers)",
            Target::FrameTransfer => "decode_frame: Task::Transfer (ResourceState)",
            Target::FrameRaft => "decode_frame: Raft",
            Target::FrameSwim => "decode_frame: SWIM frame",
            Target::Datagram => "decode_datagram + datagram_to_frame",
            Target::LenPrefix => "decode_len_prefix",
            Target::SwimHeader => "SwimCodec::decode_header",
            Target::SwimMember => "SwimCodec::decode_member",
            Target::RaftProtobuf => "decode_protobuf: Raft message",
            Target::NodeDatagram => "Node::handle Datagram (whole SWIM packet)",
            Target::NodePeerFrame => "Node::handle PeerFrame",
            Target::NodeClientFrame => "Node::handle ClientFrame",
        }
    }

    /// Inputs of this target per round of [`Target::ALL`]: feeding a node
    /// costs more than decoding alone.
    fn weight(self) -> u32 {
        match self {
            Target::FrameTransfer | Target::FrameConfig | Target::FrameSync | Target::FrameResponse => 8,
            Target::FrameTask | Target::FrameEpoch | Target::FrameRequest | Target::SwimHeader => 6,
            Target::RaftProtobuf | Target::FrameRaft | Target::SwimMember => 5,
            Target::FrameSwim | Target::Datagram | Target::LenPrefix => 3,
            Target::NodeDatagram | Target::NodePeerFrame => 8,
            Target::NodeClientFrame => 4,
        }
    }

    /// Whether this is a decoder alone, whose heap must stay within the
    /// frame bound; a node also keeps what it learns (a ring, members).
    pub(crate) fn is_decoder(self) -> bool {
        !matches!(self, Target::NodeDatagram | Target::NodePeerFrame | Target::NodeClientFrame)
    }
}

/// Counts for one target.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Row {
    /// Inputs fed.
    pub(crate) inputs: u64,
    /// Of those, left as generated.
    pub(crate) unmutated: u64,
    /// Inputs the decoder accepted.
    pub(crate) decoded: u64,
    /// Inputs the decoder refused with an error.
    pub(crate) rejected: u64,
    /// Inputs whose decoding (or checking) panicked.
    pub(crate) panics: u64,
    /// Inputs that decoded to something a check refused.
    pub(crate) failures: u64,
    /// The longest input, in bytes.
    pub(crate) max_len: usize,
    /// The most heap one input took at its peak, in bytes.
    pub(crate) max_peak: usize,
}

/// The result of a run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Report {
    /// One row per target, in [`Target::ALL`] order.
    pub(crate) rows: Vec<(Target, Row)>,
    /// The first panics and check failures, with their input in hex.
    pub(crate) problems: Vec<String>,
    /// Per target, the input that took the most heap.
    pub(crate) heaviest: Vec<Vec<u8>>,
}

/// Problems kept in a report (the counts go on).
const PROBLEMS_KEPT_MAX: usize = 20;

impl Report {
    pub(crate) fn inputs(&self) -> u64 {
        self.rows.iter().map(|(_, r)| r.inputs).sum()
    }
    pub(crate) fn panics(&self) -> u64 {
        self.rows.iter().map(|(_, r)| r.panics).sum()
    }
    pub(crate) fn failures(&self) -> u64 {
        self.rows.iter().map(|(_, r)| r.failures).sum()
    }
    /// The counts as a table, one line per target, then the totals.
    pub(crate) fn table(&self) -> String {
        let mut out = format!(
            "{:<48} {:>11} {:>10} {:>10} {:>11} {:>6} {:>6} {:>8} {:>11}\n",
            "decoder: input", "inputs", "unmutated", "decoded", "rejected", "panics", "fails", "max len", "max heap"
        );
        for (target, r) in &self.rows {
            let heap = if target.is_decoder() { r.max_peak.to_string() } else { format!("({})", r.max_peak) };
            out += &format!(
                "{:<48} {:>11} {:>10} {:>10} {:>11} {:>6} {:>6} {:>8} {:>11}\n",
                target.name(),
                r.inputs,
                r.unmutated,
                r.decoded,
                r.rejected,
                r.panics,
                r.failures,
                r.max_len,
                heap
            );
        }
        out += &format!(
            "total: {} inputs, {} panics, {} failed checks; most heap one decode took: {} bytes (frame bound {FRAME_LEN_MAX})\n",
            self.inputs(),
            self.panics(),
            self.failures(),
            self.max_decoder_peak()
        );
        out
    }

    /// The inputs that took more heap than `bound` in a decoder alone, in
    /// hex, one line each.
    pub(crate) fn heavier_than(&self, bound: usize) -> Vec<String> {
        let rows = self.rows.iter().zip(&self.heaviest);
        rows.filter(|((t, r), _)| t.is_decoder() && r.max_peak > bound)
            .map(|((t, r), input)| format!("{}: {} bytes of heap for input {}", t.name(), r.max_peak, hex(input)))
            .collect()
    }

    /// The most heap one input took in a decoder alone.
    pub(crate) fn max_decoder_peak(&self) -> usize {
        self.rows.iter().filter(|(t, _)| t.is_decoder()).map(|(_, r)| r.max_peak).max().unwrap_or(0)
    }
}

/// Runs `inputs` inputs from `seed`, calling `progress` with the count every
/// 65,536 inputs.
pub(crate) fn run(seed: u64, inputs: u64, meter: &dyn Meter, mut progress: impl FnMut(u64)) -> Report {
    let mut fuzz = Fuzzer::new(seed);
    let schedule: Vec<Target> = Target::ALL.iter().flat_map(|&t| std::iter::repeat_n(t, t.weight() as usize)).collect();
    let mut rows = [Row::default(); Target::ALL.len()];
    let mut problems = Vec::new();
    let mut heaviest = vec![Vec::new(); Target::ALL.len()];
    for i in 0..inputs {
        let target = schedule[(i % schedule.len() as u64) as usize];
        let row = &mut rows[target as usize];
        let (bytes, original) = fuzz.input(target);
        row.inputs += 1;
        row.unmutated += u64::from(original.is_some());
        row.max_len = row.max_len.max(bytes.len());
        fuzz.refresh_node();
        meter.start();
        let outcome = catch_unwind(AssertUnwindSafe(|| fuzz.feed(target, &bytes, original.as_ref())));
        let peak = meter.peak();
        if peak > row.max_peak {
            row.max_peak = peak;
            heaviest[target as usize] = bytes.clone();
        }
        let problem = match outcome {
            Ok(Ok(true)) => {
                row.decoded += 1;
                None
            }
            Ok(Ok(false)) => {
                row.rejected += 1;
                None
            }
            Ok(Err(check)) => {
                row.failures += 1;
                Some(check)
            }
            Err(panic) => {
                row.panics += 1;
                fuzz.node = None;
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                Some(format!("panic: {what}"))
            }
        };
        if let Some(problem) = problem
            && problems.len() < PROBLEMS_KEPT_MAX
        {
            problems.push(format!("{}: {problem}; input {}", target.name(), hex(&bytes)));
        }
        if (i + 1) % 65_536 == 0 {
            progress(i + 1);
        }
    }
    Report { rows: Target::ALL.iter().map(|&t| (t, rows[t as usize])).collect(), problems, heaviest }
}

fn hex(bytes: &[u8]) -> String {
    let shown: String = bytes.iter().take(512).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 512 { format!("{shown}… ({} bytes)", bytes.len()) } else { shown }
}

// ---- generation ---------------------------------------------------------------

/// SplitMix64: small, fast, and the same everywhere.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 if `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    /// A count up to `max`, mostly small.
    fn size(&mut self, max: usize) -> usize {
        match self.below(20) {
            0..=9 => self.index(max.min(3) + 1),
            10..=17 => self.index(max.min(16) + 1),
            _ => self.index(max + 1),
        }
    }

    /// A number, often at an edge.
    fn u64(&mut self) -> u64 {
        match self.below(8) {
            0 => 0,
            1 => u64::MAX,
            2 => self.below(128),
            3 => 1 << self.below(64),
            4 => self.below(1 << 16),
            _ => self.next(),
        }
    }

    fn u32(&mut self) -> u32 {
        self.u64() as u32
    }

    fn u16(&mut self) -> u16 {
        self.u64() as u16
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.size(max);
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Text of at most `max` bytes, ASCII and wider characters.
    fn text(&mut self, max: usize) -> String {
        let chars = self.size(max);
        let mut out = String::new();
        for _ in 0..chars {
            let c = match self.below(10) {
                0 => self.pick(&['é', '€', 'ß', '😀', '\u{0}', '\u{7f}', 'Ω']),
                _ => char::from(b' ' + self.below(95) as u8),
            };
            if out.len() + c.len_utf8() > max {
                break;
            }
            out.push(c);
        }
        out
    }

    /// Text of 1 to `max` bytes.
    fn nonempty_text(&mut self, max: usize) -> String {
        let text = self.text(max);
        if text.is_empty() { "x".into() } else { text }
    }

    fn addr(&mut self) -> SocketAddr {
        let ip = if self.one_in(4) {
            IpAddr::from(((self.next() as u128) << 64 | self.next() as u128).to_be_bytes())
        } else if self.bool() {
            IpAddr::from([127, 0, 0, self.below(4) as u8])
        } else {
            IpAddr::from((self.next() as u32).to_be_bytes())
        };
        SocketAddr::new(ip, if self.bool() { 7000 + self.below(8) as u16 } else { self.u16() })
    }

    fn node_id(&mut self) -> NodeId {
        let max = if self.one_in(8) { NODE_NAME_LEN_MAX } else { 12 };
        let name = self.text(max);
        NodeId { addr: self.addr(), incarnation: self.u64(), generation: self.u32(), name: Arc::from(name) }
    }

    fn task(&mut self) -> Task {
        let payload_max = if self.one_in(16) { 4096 } else { 48 };
        Task { id: self.nonempty_text(128), resource: self.nonempty_text(256), payload: self.bytes(payload_max) }
    }

    fn outcome(&mut self) -> Outcome {
        if self.bool() { Outcome::Ok(self.bytes(64)) } else { Outcome::Failed(self.text(64)) }
    }

    fn token(&mut self) -> Token {
        Token { epoch: self.u64(), seq: self.u64() }
    }

    fn member_state(&mut self) -> MemberState {
        self.pick(&[MemberState::Alive, MemberState::Suspect, MemberState::Down])
    }

    fn member_status(&mut self) -> MemberStatus {
        self.pick(&[MemberStatus::Active, MemberStatus::Leaving])
    }

    fn request(&mut self) -> Request {
        match self.below(5) {
            0 => Request::Members,
            1 => Request::Leave,
            2 => Request::Status,
            3 => Request::Owner { resource: self.text(256) },
            _ => Request::Submit { task: self.task(), wait: self.bool() },
        }
    }

    fn response(&mut self) -> Response {
        match self.below(9) {
            0 => Response::Members(
                (0..self.size(24))
                    .map(|_| MemberInfo {
                        name: self.text(64),
                        addr: self.addr(),
                        incarnation: self.u64(),
                        state: self.member_state(),
                    })
                    .collect(),
            ),
            1 => Response::Leaving,
            2 => Response::Status(StatusInfo {
                name: self.text(64),
                epoch: self.u64(),
                epoch_hash: format!("{:016x}", self.next()),
                leader: self.bool().then(|| self.text(64)),
                voters: (0..self.size(7)).map(|_| self.text(64)).collect(),
                lease_remaining_ms: self.u64(),
                members: (0..self.size(16))
                    .map(|_| StatusMember {
                        name: self.text(64),
                        addr: self.addr(),
                        incarnation: self.u64(),
                        status: self.member_status(),
                        voter: self.bool(),
                        leader: self.bool(),
                    })
                    .collect(),
                custody: CustodyInfo {
                    ranges_owned: self.u64(),
                    ranges_unavailable: self.u64(),
                    ranges_sealing: self.u64(),
                    resources: self.u64(),
                    tasks_queued: self.u64(),
                    tasks_running: self.u64(),
                    tasks_executed: self.u64(),
                    handoffs_sent: self.u64(),
                    handoffs_received: self.u64(),
                    handoffs_in_doubt: self.u64(),
                    replica_resources: self.u64(),
                    replica_tasks: self.u64(),
                    ranges_recovering: self.u64(),
                    ranges_unrecoverable: self.u64(),
                },
            }),
            3 => Response::Owner(self.bool().then(|| OwnerInfo {
                resource: self.text(256),
                epoch: self.u64(),
                range: format!("{:016x}", self.next()),
                custodian: self.text(64),
                addr: self.addr(),
                replicas: (0..self.size(7)).map(|_| self.text(64)).collect(),
            })),
            4 => Response::Busy,
            5 => Response::Error(self.text(200)),
            6 => Response::Submitted(Submitted {
                task_id: self.nonempty_text(128),
                resource: self.nonempty_text(256),
                seq: self.u64(),
                custodian: self.addr(),
                epoch: self.u64(),
                duplicate: self.bool(),
            }),
            7 => Response::Completed(Completed {
                task_id: self.nonempty_text(128),
                resource: self.nonempty_text(256),
                token: self.token(),
                custodian: self.addr(),
                outcome: self.bool().then(|| self.outcome()),
            }),
            _ => Response::Unavailable(self.text(200)),
        }
    }

    fn sync(&mut self) -> Message {
        let members = (0..self.size(24))
            .map(|_| SyncMember { id: self.node_id(), incarnation: self.u16(), state: self.member_state() })
            .collect();
        if self.bool() { Message::SyncRequest(members) } else { Message::SyncResponse(members) }
    }

    /// A well-formed configuration, small enough that a node builds its
    /// ring quickly.
    fn configuration(&mut self) -> Configuration {
        let mut members: Vec<ConfigMember> =
            (0..self.size(10)).map(|_| ConfigMember { id: self.node_id(), status: self.member_status() }).collect();
        members.sort_by_key(|m| m.id.addr);
        members.dedup_by_key(|m| m.id.addr);
        Configuration {
            group: self.u64(),
            epoch: 1 + self.u64() % (u64::MAX - 1),
            members,
            vnodes: if self.one_in(8) { 1 + self.below(256) as u32 } else { 1 + self.below(16) as u32 },
            replication: 1 + self.below(7) as u8,
        }
    }

    fn epoch_msg(&mut self) -> EpochMsg {
        match self.below(6) {
            0 => EpochMsg::LeaseRequest {
                id: self.node_id(),
                seq: self.u64(),
                member_of: self.bool().then(|| self.u64()),
            },
            1 => EpochMsg::LeaseGrant {
                seq: self.u64(),
                status: self.pick(&[LeaseStatus::Granted, LeaseStatus::NotMember, LeaseStatus::Removed]),
                epoch: self.u64(),
                hash: self.next(),
                leader: self.addr(),
                voters: (0..self.size(7)).map(|_| self.addr()).collect(),
            },
            2 => EpochMsg::NotLeader { seq: self.u64(), leader: self.bool().then(|| self.addr()) },
            3 => EpochMsg::Vote { target: self.node_id(), by: self.node_id() },
            4 => EpochMsg::Leave { id: self.node_id(), handed_off: self.bool() },
            _ => EpochMsg::Fetch { epoch: self.u64() },
        }
    }

    fn task_msg(&mut self) -> TaskMsg {
        match self.below(14) {
            0 => TaskMsg::Submit {
                req: self.u64(),
                task: self.task(),
                wait: self.bool(),
                epoch: self.u64(),
                seq: self.bool().then(|| self.u64()),
            },
            1 => TaskMsg::Accepted { req: self.u64(), seq: self.u64(), epoch: self.u64(), duplicate: self.bool() },
            2 => TaskMsg::Redirect { req: self.u64(), epoch: self.u64(), owner: self.addr() },
            3 => TaskMsg::NotReady { req: self.u64() },
            4 => TaskMsg::Busy { req: self.u64() },
            5 => TaskMsg::Rejected { req: self.u64(), reason: self.text(200) },
            6 => TaskMsg::Done {
                req: self.u64(),
                task_id: self.nonempty_text(128),
                token: self.token(),
                outcome: self.bool().then(|| self.outcome()),
            },
            7 => TaskMsg::TransferAck { id: self.u64() },
            8 => TaskMsg::Replicate(self.replicate()),
            9 => TaskMsg::SyncMark(SyncMark {
                id: self.u64(),
                epoch: self.u64(),
                spans: self.disjoint_spans(),
                resources: self.distinct_names().into_iter().map(|n| (n, self.u64())).collect(),
            }),
            10 => TaskMsg::SyncAck { id: self.u64(), ok: self.bool() },
            11 => TaskMsg::Recover {
                id: self.u64(),
                epoch: self.u64(),
                span: Span { start: self.u64(), end: self.u64() },
            },
            12 => {
                let chunks = 1 + self.below(u64::from(RECOVER_CHUNKS_MAX)) as u32;
                let mut resources: Vec<(u64, ResourceState)> = Vec::new();
                for _ in 0..self.size(3) {
                    let state = self.resource_state();
                    if resources.iter().all(|(_, r)| r.resource != state.resource) {
                        resources.push((self.u64(), state));
                    }
                }
                TaskMsg::RecoverReply(RecoverReply {
                    id: self.u64(),
                    epoch: self.u64(),
                    born: self.u64(),
                    synced: (0..self.size(3))
                        .map(|_| (Span { start: self.u64(), end: self.u64() }, self.u64()))
                        .collect(),
                    chunk: self.below(u64::from(chunks)) as u32,
                    chunks,
                    resources,
                })
            }
            _ => TaskMsg::ReplicateAck(ReplicateAck {
                epoch: self.u64(),
                held: self.distinct_names().into_iter().map(|n| (n, self.u64())).collect(),
                need_full: self.distinct_names(),
                busy: self.distinct_names(),
            }),
        }
    }

    /// Distinct resource names, a few.
    fn distinct_names(&mut self) -> Vec<String> {
        let mut names: Vec<String> = (0..self.size(4)).map(|_| self.nonempty_text(64)).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Replication as a custodian writes it: distinct resources, deltas
    /// numbered on from their base, full states within their bounds.
    fn replicate(&mut self) -> Replicate {
        let mut writes: Vec<ReplicaWrite> = Vec::new();
        for _ in 0..self.size(4) {
            let write = if self.bool() {
                ReplicaWrite::Full(self.resource_state())
            } else {
                let state = self.resource_state();
                let base = state.executed;
                ReplicaWrite::Delta {
                    resource: state.resource,
                    base,
                    executed: state.executed,
                    tasks: state.pending,
                    step: self.bool().then(|| (self.u64(), self.u64())),
                }
            };
            if writes.iter().all(|w| w.resource() != write.resource()) {
                writes.push(write);
            }
        }
        Replicate { epoch: self.u64(), writes }
    }

    /// Disjoint arcs as a sender cuts them: the whole circle, or arcs
    /// between sorted points (one of them may wrap past the top).
    fn disjoint_spans(&mut self) -> Vec<Span> {
        if self.one_in(8) {
            let at = self.u64();
            vec![Span { start: at, end: at }]
        } else {
            let mut points: Vec<u64> = (0..self.size(8) + 1).map(|_| self.u64()).collect();
            points.sort_unstable();
            points.dedup();
            let mut spans: Vec<Span> =
                points.windows(2).filter(|_| self.below(3) > 0).map(|w| Span { start: w[0], end: w[1] }).collect();
            if points.len() > 1 && self.bool() {
                // The arc that wraps past the top.
                spans.push(Span { start: points[points.len() - 1], end: points[0] });
            }
            spans
        }
    }

    /// A transfer as a sender makes one: disjoint parts, distinct resources,
    /// each within its bounds.
    fn transfer(&mut self) -> Transfer {
        let spans = self.disjoint_spans();
        let mut resources: Vec<ResourceState> = (0..self.size(6)).map(|_| self.resource_state()).collect();
        resources.sort_by(|a, b| a.resource.cmp(&b.resource));
        resources.dedup_by(|a, b| a.resource == b.resource);
        Transfer {
            id: self.u64(),
            from_incarnation: self.u64(),
            to_incarnation: self.u64(),
            epoch: self.u64(),
            spans,
            resources,
        }
    }

    fn resource_state(&mut self) -> ResourceState {
        let max = if self.one_in(8) { 256 } else { 16 };
        let resource = self.nonempty_text(max);
        let executed = if self.bool() { self.below(1000) } else { self.below(u64::MAX / 2) };
        let pending: Vec<PendingTask> = (0..self.size(6) as u64)
            .map(|i| PendingTask {
                seq: executed + 1 + i,
                task: Task { resource: resource.clone(), ..self.task() },
                attempts: self.u32(),
                waiters: (0..self.size(8)).map(|_| Waiter { gateway: self.addr(), req: self.u64() }).collect(),
            })
            .collect();
        let last_seq = executed + pending.len() as u64;
        let mut seqs: Vec<u64> = (0..self.size(8)).map(|_| self.below(last_seq + 1)).collect();
        seqs.sort_unstable();
        seqs.dedup();
        let dedup = seqs.into_iter().map(|seq| (self.nonempty_text(128), seq, self.u64())).collect();
        let mut token_epochs: Vec<(u64, u64)> = (0..self.size(6)).map(|_| (self.u64(), self.u64())).collect();
        token_epochs.sort_unstable();
        ResourceState {
            resource,
            last_seq,
            executed,
            token_floor: self.u64(),
            pending,
            dedup,
            token_epochs,
            forgotten: (0..self.size(12)).map(|_| (self.next(), self.u64())).collect(),
        }
    }

    fn raft_message(&mut self) -> eraftpb::Message {
        use eraftpb::MessageType::*;
        let mut m = eraftpb::Message::default();
        m.set_msg_type(self.pick(&[
            MsgHup,
            MsgBeat,
            MsgPropose,
            MsgAppend,
            MsgAppendResponse,
            MsgRequestVote,
            MsgRequestVoteResponse,
            MsgSnapshot,
            MsgHeartbeat,
            MsgHeartbeatResponse,
            MsgUnreachable,
            MsgSnapStatus,
            MsgCheckQuorum,
            MsgTransferLeader,
            MsgTimeoutNow,
            MsgReadIndex,
            MsgReadIndexResp,
            MsgRequestPreVote,
            MsgRequestPreVoteResponse,
        ]));
        m.set_to(self.u64());
        m.set_from(self.u64());
        m.set_term(self.u64());
        m.set_log_term(self.u64());
        m.set_index(self.u64());
        m.set_commit(self.u64());
        m.set_commit_term(self.u64());
        m.set_reject(self.bool());
        m.set_reject_hint(self.u64());
        m.set_request_snapshot(self.u64());
        m.set_priority(self.u64() as i64);
        for _ in 0..self.size(4) {
            let mut e = eraftpb::Entry::default();
            e.set_entry_type(self.pick(&[
                eraftpb::EntryType::EntryNormal,
                eraftpb::EntryType::EntryConfChange,
                eraftpb::EntryType::EntryConfChangeV2,
            ]));
            e.set_term(self.u64());
            e.set_index(self.u64());
            e.set_data(self.bytes(96).into());
            e.set_context(self.bytes(8).into());
            m.mut_entries().push(e);
        }
        if self.one_in(4) {
            let snapshot = m.mut_snapshot();
            snapshot.set_data(self.bytes(64).into());
            let meta = snapshot.mut_metadata();
            meta.set_index(self.u64());
            meta.set_term(self.u64());
            for _ in 0..self.size(5) {
                meta.mut_conf_state().mut_voters().push(self.u64());
            }
        }
        m.set_context(self.bytes(8).into());
        m
    }

    fn swim_message(&mut self) -> foca::Message<NodeId> {
        use foca::Message as M;
        let n = self.next() as u8;
        match self.below(11) {
            0 => M::Ping(n),
            1 => M::Ack(n),
            2 => M::PingReq { target: self.node_id(), probe_number: n },
            3 => M::IndirectPing { origin: self.node_id(), probe_number: n },
            4 => M::IndirectAck { target: self.node_id(), probe_number: n },
            5 => M::ForwardedAck { origin: self.node_id(), probe_number: n },
            6 => M::Announce,
            7 => M::Feed,
            8 => M::Gossip,
            9 => M::Broadcast,
            _ => M::TurnUndead,
        }
    }

    fn swim_member(&mut self) -> Member<NodeId> {
        let state = self.pick(&[State::Alive, State::Suspect, State::Down]);
        Member::new(self.node_id(), self.u16(), state)
    }

    /// A SWIM packet as foca frames one: a header, then (unless an announce)
    /// a count of member updates and the updates, then epoch items, each
    /// behind its 2-byte length. Addressed to `to` half the time.
    fn swim_packet(&mut self, to: &NodeId) -> Vec<u8> {
        let dst = if self.bool() { to.clone() } else { self.node_id() };
        let header = Header { src: self.node_id(), src_incarnation: self.u16(), dst, message: self.swim_message() };
        let mut out = Vec::new();
        SwimCodec.encode_header(&header, &mut out).expect("generated names are within the bound");
        if header.message == foca::Message::Announce {
            return out;
        }
        if header.message != foca::Message::Broadcast {
            let updates = self.size(6);
            out.extend_from_slice(&(updates as u16).to_be_bytes());
            for _ in 0..updates {
                SwimCodec.encode_member(&self.swim_member(), &mut out).expect("generated names are within the bound");
            }
        }
        for _ in 0..self.size(3) {
            out.extend_from_slice(&17u16.to_be_bytes());
            out.push(b'E');
            out.extend_from_slice(&self.u64().to_be_bytes());
            out.extend_from_slice(&self.next().to_be_bytes());
        }
        out
    }
}

// ---- mutation ------------------------------------------------------------------

/// Byte strings that make decoders take a wrong turn: msgpack markers
/// claiming huge arrays, maps, strings and binaries, extreme integers,
/// protobuf varints past their width, SWIM lengths at and past the name
/// bound.
const TOKENS: &[&[u8]] = &[
    &[0xdd, 0xff, 0xff, 0xff, 0xff],
    &[0xdc, 0xff, 0xff],
    &[0xdf, 0xff, 0xff, 0xff, 0xff],
    &[0xde, 0xff, 0xff],
    &[0xdb, 0xff, 0xff, 0xff, 0xff],
    &[0xda, 0xff, 0xff],
    &[0xd9, 0xff],
    &[0xc6, 0xff, 0xff, 0xff, 0xff],
    &[0xc5, 0xff, 0xff],
    &[0xdd, 0x00, 0x10, 0x00, 0x00],
    &[0xdb, 0x00, 0x0f, 0xff, 0xff],
    &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0xce, 0xff, 0xff, 0xff, 0xff],
    &[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0],
    &[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
    &[0xc0],
    &[0xc2],
    &[0xc3],
    &[0x9f],
    &[0x8f],
    &[0xbf],
    &[0x90],
    &[0x80],
    &[0xa2, b'V', b'6'],
    &[0xa2, b'V', b'4'],
    &[0x81, 0xa4, b'T', b'a', b's', b'k'],
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    &[0xfe, 0xff, 0xff, 0xff, 0x07],
    &[0x0a, 0xfe, 0xff, 0xff, 0x04],
    &[0x32, 0xff, 0xff, 0xff, 0x0f],
    &[0xff, 0xff],
    &[0x40],
    &[0x41],
    &[0x00],
    &[0x06],
    &[0x04],
];

fn mutate(rng: &mut Gen, bytes: &mut Vec<u8>, other: &[u8]) {
    let rounds = 1 + [0, 0, 0, 1, 1, 2, 3][rng.index(7)];
    for _ in 0..rounds {
        let len = bytes.len();
        let at = rng.index(len + 1);
        match rng.below(10) {
            0 if len > 0 => bytes[at.min(len - 1)] ^= 1 << rng.below(8),
            1 if len > 0 => bytes[at.min(len - 1)] = rng.next() as u8,
            2 if len > 0 => bytes[at.min(len - 1)] = rng.pick(&[0, 1, 0x7f, 0x80, 0xff, 0xc0, 0xcc, 0xcd, 0xdc, 0xdd]),
            3 => {
                let extra = rng.bytes(8);
                bytes.splice(at..at, extra);
            }
            4 => {
                let token = rng.pick(TOKENS);
                if rng.bool() {
                    bytes.splice(at..at, token.iter().copied());
                } else {
                    let end = (at + token.len()).min(len);
                    bytes.splice(at..end, token.iter().copied());
                }
            }
            5 if len > 0 => {
                let end = (at + 1 + rng.index(16)).min(len);
                bytes.drain(at.min(len - 1)..end);
            }
            6 => bytes.truncate(at),
            7 if len > 0 => {
                let from = rng.index(len);
                let chunk: Vec<u8> = bytes[from..(from + 1 + rng.index(32)).min(len)].to_vec();
                bytes.splice(at..at, chunk);
            }
            _ if !other.is_empty() => {
                let from = rng.index(other.len());
                let chunk = &other[from..(from + 1 + rng.index(64)).min(other.len())];
                if rng.bool() {
                    bytes.splice(at..at, chunk.iter().copied());
                } else {
                    let end = (at + chunk.len()).min(len);
                    bytes.splice(at..end, chunk.iter().copied());
                }
            }
            _ => bytes.push(rng.next() as u8),
        }
    }
}

// ---- feeding and checking --------------------------------------------------------

/// What an input was generated from.
#[derive(Clone)]
enum Value {
    Message(Message),
    Swim(Vec<u8>),
    Len(usize),
    Header(Header<NodeId>),
    Member(Member<NodeId>),
    Raft(eraftpb::Message),
    /// Fed to a node: nothing to compare.
    Any,
}

/// Inputs kept per target, mutated and spliced from.
const POOL_LEN: usize = 16;
/// Inputs one node takes before a fresh one replaces it (its state grows
/// with what it learns).
const NODE_INPUTS_MAX: u32 = 256;

struct Fuzzer {
    rng: Gen,
    pools: Vec<Vec<(Vec<u8>, Value)>>,
    node: Option<Node>,
    node_id: NodeId,
    node_inputs: u32,
    nodes_made: u64,
    now: u64,
}

impl Fuzzer {
    fn new(seed: u64) -> Fuzzer {
        let node_id = NodeId::new(SocketAddr::from(([127, 0, 0, 1], 7000)), 1, "fuzz");
        Fuzzer {
            rng: Gen(seed),
            pools: vec![Vec::new(); Target::ALL.len()],
            node: None,
            node_id,
            node_inputs: 0,
            nodes_made: 0,
            now: 0,
        }
    }

    /// A fresh value of `target`'s kind, encoded.
    fn generate(&mut self, target: Target) -> (Vec<u8>, Value) {
        let g = &mut self.rng;
        let message =
            |m: Message| (wire::encode_message(&m).expect("generated messages fit a frame"), Value::Message(m));
        match target {
            Target::FrameRequest => message(Message::Request(g.request())),
            Target::FrameResponse => message(Message::Response(g.response())),
            Target::FrameSync => message(g.sync()),
            Target::FrameEpoch => message(Message::Epoch(g.epoch_msg())),
            Target::FrameConfig => message(Message::Epoch(EpochMsg::Config(g.configuration()))),
            Target::FrameTask => message(Message::Task(g.task_msg())),
            Target::FrameTransfer => message(Message::Task(TaskMsg::Transfer(g.transfer()))),
            Target::FrameRaft => {
                let bytes = g.raft_message().write_to_bytes().expect("a Raft message encodes");
                message(Message::Raft { origin: g.u64(), bytes })
            }
            Target::FrameSwim => {
                let packet = g.swim_packet(&self.node_id);
                let frame = wire::datagram_to_frame(&wire::encode_datagram(&packet)).expect("a small packet");
                (frame, Value::Swim(packet))
            }
            Target::Datagram => {
                let packet = g.swim_packet(&self.node_id);
                (wire::encode_datagram(&packet), Value::Swim(packet))
            }
            Target::LenPrefix => {
                let len = match g.below(4) {
                    0 => FRAME_LEN_MAX,
                    1 => g.index(FRAME_LEN_MAX + 1),
                    _ => g.index(4096),
                };
                (wire::len_prefix(len).to_vec(), Value::Len(len))
            }
            Target::SwimHeader => {
                let header =
                    Header { src: g.node_id(), src_incarnation: g.u16(), dst: g.node_id(), message: g.swim_message() };
                let mut out = Vec::new();
                SwimCodec.encode_header(&header, &mut out).expect("generated names are within the bound");
                (out, Value::Header(header))
            }
            Target::SwimMember => {
                let member = g.swim_member();
                let mut out = Vec::new();
                SwimCodec.encode_member(&member, &mut out).expect("generated names are within the bound");
                (out, Value::Member(member))
            }
            Target::RaftProtobuf => {
                let m = g.raft_message();
                (m.write_to_bytes().expect("a Raft message encodes"), Value::Raft(m))
            }
            Target::NodeDatagram => (wire::encode_datagram(&g.swim_packet(&self.node_id)), Value::Any),
            Target::NodePeerFrame => {
                let m = match g.below(8) {
                    0 => g.sync(),
                    1 => Message::Epoch(g.epoch_msg()),
                    2 => Message::Epoch(EpochMsg::Config(g.configuration())),
                    3 => Message::Task(g.task_msg()),
                    4 => Message::Task(TaskMsg::Transfer(g.transfer())),
                    5 => Message::Raft {
                        origin: g.u64(),
                        bytes: g.raft_message().write_to_bytes().expect("a Raft message encodes"),
                    },
                    6 => Message::Request(g.request()),
                    _ => Message::Response(g.response()),
                };
                (wire::encode_message(&m).expect("generated messages fit a frame"), Value::Any)
            }
            Target::NodeClientFrame => {
                let m = if g.one_in(8) { Message::Response(g.response()) } else { Message::Request(g.request()) };
                (wire::encode_message(&m).expect("generated messages fit a frame"), Value::Any)
            }
        }
    }

    /// The next input of `target`: one of its pool as generated (an eighth
    /// of the time) or mutated, with the value it was generated from when it
    /// is left as generated.
    fn input(&mut self, target: Target) -> (Vec<u8>, Option<Value>) {
        let pool_len = self.pools[target as usize].len();
        if pool_len < POOL_LEN || self.rng.one_in(4) {
            let fresh = self.generate(target);
            let pool = &mut self.pools[target as usize];
            if pool.len() < POOL_LEN {
                pool.push(fresh);
            } else {
                let at = self.rng.index(POOL_LEN);
                pool[at] = fresh;
            }
        }
        let pool = &self.pools[target as usize];
        let (bytes, value) = &pool[self.rng.index(pool.len())];
        if self.rng.one_in(8) {
            return (bytes.clone(), Some(value.clone()));
        }
        let mut bytes = bytes.clone();
        let other = &pool[self.rng.index(pool.len())].0;
        mutate(&mut self.rng, &mut bytes, other);
        bytes.truncate(FRAME_LEN_MAX + 8);
        (bytes, None)
    }

    /// A fresh node when there is none, or the one there has had its share
    /// of inputs or has left.
    fn refresh_node(&mut self) {
        let stale = self.node.as_ref().is_none_or(|n| n.has_left() || self.node_inputs >= NODE_INPUTS_MAX);
        if stale {
            self.nodes_made += 1;
            self.node =
                Some(Node::new(self.node_id.clone(), Config::lan(), self.nodes_made, Instant::from_micros(self.now)));
            self.node_inputs = 0;
        }
    }

    /// Feeds one input: `Ok(true)` if it decoded, `Ok(false)` if it was
    /// refused, `Err` if what decoded fails a check.
    fn feed(&mut self, target: Target, bytes: &[u8], original: Option<&Value>) -> Result<bool, String> {
        match target {
            Target::FrameRequest
            | Target::FrameResponse
            | Target::FrameSync
            | Target::FrameEpoch
            | Target::FrameConfig
            | Target::FrameTask
            | Target::FrameTransfer
            | Target::FrameRaft
            | Target::FrameSwim => {
                let frame = wire::decode_frame(bytes);
                match (original, &frame) {
                    (Some(Value::Message(m)), Ok(Frame::Message(got))) if got == m => {}
                    (Some(Value::Swim(p)), Ok(Frame::Swim(got))) if got == p => {}
                    (Some(_), _) => return Err(format!("a generated input decoded as {frame:?}")),
                    (None, _) => {}
                }
                match frame {
                    Ok(Frame::Message(m)) => check_message(&m).map(|()| true),
                    Ok(Frame::Swim(_)) => Ok(true),
                    Err(_) => Ok(false),
                }
            }
            Target::Datagram => {
                let Ok(packet) = wire::decode_datagram(bytes) else { return Ok(false) };
                if packet != &bytes[1..] || original.is_some_and(|v| !matches!(v, Value::Swim(p) if p == packet)) {
                    return Err("the packet is not the datagram's body".into());
                }
                match wire::datagram_to_frame(bytes) {
                    Ok(frame) if wire::decode_frame(&frame) == Ok(Frame::Swim(packet)) => Ok(true),
                    Ok(frame) => Err(format!("its frame decodes as {:?}", wire::decode_frame(&frame))),
                    Err(WireError::FrameTooBig { .. }) => Ok(true),
                    Err(e) => Err(format!("a valid datagram makes no frame: {e}")),
                }
            }
            Target::LenPrefix => {
                let mut prefix = [0; wire::LEN_PREFIX_LEN];
                for (p, b) in prefix.iter_mut().zip(bytes) {
                    *p = *b;
                }
                let Ok(len) = wire::decode_len_prefix(prefix) else { return Ok(false) };
                if len > FRAME_LEN_MAX || wire::len_prefix(len) != prefix {
                    return Err(format!("length {len} read from {prefix:?}"));
                }
                if original.is_some_and(|v| !matches!(v, Value::Len(l) if *l == len)) {
                    return Err(format!("a generated prefix read as {len}"));
                }
                Ok(true)
            }
            Target::SwimHeader => {
                let mut read = bytes;
                let Ok(header) = SwimCodec.decode_header(&mut read) else { return Ok(false) };
                if let Some(v) = original
                    && !(matches!(v, Value::Header(h) if *h == header) && read.is_empty())
                {
                    return Err(format!("a generated header decoded as {header:?}"));
                }
                let ids = [Some(&header.src), Some(&header.dst), message_id(&header.message)];
                ids.into_iter().flatten().try_for_each(check_name)?;
                let mut again = Vec::new();
                SwimCodec.encode_header(&header, &mut again).map_err(|e| format!("re-encoding: {e}"))?;
                match SwimCodec.decode_header(&again[..]) {
                    Ok(h) if h == header => Ok(true),
                    other => Err(format!("re-encoded, it decodes as {other:?}")),
                }
            }
            Target::SwimMember => {
                let mut read = bytes;
                let Ok(member) = SwimCodec.decode_member(&mut read) else { return Ok(false) };
                if let Some(v) = original
                    && !(matches!(v, Value::Member(m) if *m == member) && read.is_empty())
                {
                    return Err(format!("a generated member decoded as {member:?}"));
                }
                check_name(member.id())?;
                let mut again = Vec::new();
                SwimCodec.encode_member(&member, &mut again).map_err(|e| format!("re-encoding: {e}"))?;
                match SwimCodec.decode_member(&again[..]) {
                    Ok(m) if m == member => Ok(true),
                    other => Err(format!("re-encoded, it decodes as {other:?}")),
                }
            }
            Target::RaftProtobuf => {
                let Ok(m) = wire::decode_protobuf::<eraftpb::Message>(bytes) else { return Ok(false) };
                if original.is_some_and(|v| !matches!(v, Value::Raft(r) if *r == m)) {
                    return Err(format!("a generated Raft message decoded as {m:?}"));
                }
                // Re-encoded, it decodes; and that, re-encoded, decodes to
                // itself. (The first re-encoding does not always give `m`
                // back: protobuf merges an embedded message sent twice and
                // drops the unknown fields it merged; and it writes unknown
                // fields in no fixed order, so bytes are not compared.)
                let reparse = |m: &eraftpb::Message| {
                    let bytes = m.write_to_bytes().map_err(|e| format!("re-encoding: {e}"))?;
                    wire::decode_protobuf::<eraftpb::Message>(&bytes).map_err(|e| format!("re-encoded: {e}"))
                };
                let once = reparse(&m)?;
                match reparse(&once)? {
                    twice if twice == once => Ok(true),
                    twice => Err(format!("re-encoded twice, it decodes as {twice:?}, not {once:?}")),
                }
            }
            Target::NodeDatagram | Target::NodePeerFrame | Target::NodeClientFrame => {
                self.now += 1000;
                self.node_inputs += 1;
                let from = self.rng.addr();
                let input = match target {
                    Target::NodeDatagram => Input::Datagram { from, bytes: bytes.to_vec() },
                    Target::NodePeerFrame => Input::PeerFrame { from, bytes: bytes.to_vec() },
                    _ => Input::ClientFrame { client: ClientId(self.rng.next()), bytes: bytes.to_vec() },
                };
                let node = self.node.as_mut().expect("made before feeding");
                let accepted = node.handle(Instant::from_micros(self.now), input).is_ok();
                // Whatever a node sends decodes.
                while let Some(output) = node.poll_output() {
                    match output {
                        Output::PeerFrame { bytes, .. } | Output::Reply { bytes, .. } => {
                            wire::decode_frame(&bytes).map_err(|e| format!("the node sent a frame that fails: {e}"))?;
                        }
                        Output::Datagram { bytes, .. } => {
                            wire::decode_datagram(&bytes).map_err(|e| format!("the node sent a bad datagram: {e}"))?;
                        }
                        _ => {}
                    }
                }
                Ok(accepted)
            }
        }
    }
}

/// The identity a SWIM message names, if any.
fn message_id(message: &foca::Message<NodeId>) -> Option<&NodeId> {
    use foca::Message as M;
    match message {
        M::PingReq { target: id, .. }
        | M::IndirectPing { origin: id, .. }
        | M::IndirectAck { target: id, .. }
        | M::ForwardedAck { origin: id, .. } => Some(id),
        _ => None,
    }
}

fn check_name(id: &NodeId) -> Result<(), String> {
    if id.name.len() > NODE_NAME_LEN_MAX {
        return Err(format!("a name of {} bytes decoded", id.name.len()));
    }
    Ok(())
}

/// Checks a decoded message: its names, configuration and transfer within
/// their bounds, and a re-encoding that decodes to it again (or that is
/// refused as too big).
fn check_message(m: &Message) -> Result<(), String> {
    let ids: Vec<&NodeId> = match m {
        Message::SyncRequest(members) | Message::SyncResponse(members) => members.iter().map(|s| &s.id).collect(),
        Message::Epoch(EpochMsg::LeaseRequest { id, .. } | EpochMsg::Leave { id, .. }) => vec![id],
        Message::Epoch(EpochMsg::Vote { target, by }) => vec![target, by],
        Message::Epoch(EpochMsg::Config(c)) => c.members.iter().map(|m| &m.id).collect(),
        _ => Vec::new(),
    };
    ids.into_iter().try_for_each(check_name)?;
    if let Message::Epoch(EpochMsg::Config(c)) = m
        && !c.is_well_formed()
    {
        return Err("a configuration that is not well formed decoded".into());
    }
    if let Message::Task(TaskMsg::Transfer(t)) = m {
        t.validate().map_err(|e| format!("an invalid transfer decoded: {e}"))?;
    }
    match wire::encode_message(m) {
        Ok(frame) if frame.len() > FRAME_LEN_MAX => Err(format!("re-encoded in {} bytes", frame.len())),
        Ok(frame) => match wire::decode_frame(&frame) {
            Ok(Frame::Message(again)) if again == *m => Ok(()),
            other => Err(format!("re-encoded, it decodes as {other:?}")),
        },
        Err(WireError::FrameTooBig { .. }) => Ok(()),
        Err(e) => Err(format!("re-encoding: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quick run: every decoder, a few thousand inputs each.
    #[test]
    fn every_decoder_takes_generated_and_mutated_inputs_without_panicking() {
        let inputs = 40_000;
        let report = run(0x5eed_f00d, inputs, &NoMeter, |_| {});
        println!("{}", report.table());
        assert_eq!(report.inputs(), inputs);
        assert!(report.heavier_than(FRAME_LEN_MAX).is_empty());
        assert!(report.problems.is_empty(), "{:#?}", report.problems);
        assert_eq!((report.panics(), report.failures()), (0, 0));
        for (target, row) in &report.rows {
            // Every decoder saw inputs, decoded some and refused some.
            assert!(row.inputs > 1000 && row.unmutated > 0, "{}: {row:?}", target.name());
            assert!(row.decoded > 0, "{}: {row:?}", target.name());
            if *target != Target::FrameSwim {
                assert!(row.rejected > 0, "{}: {row:?}", target.name());
            }
        }
    }

    #[test]
    fn mutations_vary() {
        let mut g = Gen(1);
        let base: Vec<u8> = (0..64).collect();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            let mut bytes = base.clone();
            mutate(&mut g, &mut bytes, &base);
            seen.insert(bytes);
        }
        assert!(seen.len() > 900, "{} distinct mutations of 1000", seen.len());
    }
}
