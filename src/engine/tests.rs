//! Engine tests: feed inputs, assert the exact outputs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use foca::Codec;

use super::membership::SwimCodec;
use super::wire::{self, Message, OwnerInfo, Request, Response};
use super::*;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn node(port: u16, incarnation: u64, seed: u64) -> Node {
    let id = NodeId::new(addr(port), incarnation, &format!("n{port}"));
    Node::new(id, Config::lan(), seed, Instant::ZERO)
}

fn drain(node: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

fn swim_header(datagram: &[u8]) -> foca::Header<NodeId> {
    let packet = wire::decode_datagram(datagram).unwrap();
    SwimCodec.decode_header(packet).unwrap()
}

/// A lossless network with a fixed 1 ms latency (so frames between two nodes
/// stay in order) that drives nodes in virtual time and records every
/// output.
struct Net {
    nodes: BTreeMap<SocketAddr, Node>,
    in_flight: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Packet)>,
    seq: u64,
    now: Instant,
    trace: Vec<(Instant, SocketAddr, Output)>,
    /// How long every task runs.
    task_time: Duration,
    /// Every execution: where, what, and when it started and ended.
    executions: Vec<Run>,
    /// Directed links that drop everything sent on them (a partition).
    cut: BTreeSet<(SocketAddr, SocketAddr)>,
}

/// One task execution seen by [`Net`].
#[derive(Debug, Clone)]
struct Run {
    node: SocketAddr,
    task_id: String,
    resource: String,
    token: Token,
    start: Instant,
    end: Instant,
    /// Cancelled by its node (its end is the cancel's time).
    cancelled: bool,
}

impl Net {
    fn new(nodes: impl IntoIterator<Item = Node>) -> Net {
        Net {
            nodes: nodes.into_iter().map(|n| (n.id().addr, n)).collect(),
            in_flight: BTreeMap::new(),
            seq: 0,
            now: Instant::ZERO,
            trace: Vec::new(),
            task_time: Duration::from_millis(3),
            executions: Vec::new(),
            cut: BTreeSet::new(),
        }
    }

    /// Cuts `node` off from every other node, both ways.
    fn isolate(&mut self, node: SocketAddr) {
        for &other in self.nodes.keys() {
            if other != node {
                self.cut.insert((node, other));
                self.cut.insert((other, node));
            }
        }
    }

    fn input(&mut self, at: SocketAddr, input: Input) {
        let now = self.now;
        let node = self.nodes.get_mut(&at).unwrap();
        let _ = node.handle(now, input);
        self.collect(at);
    }

    fn collect(&mut self, at: SocketAddr) {
        let node = self.nodes.get_mut(&at).unwrap();
        let outputs = drain(node);
        for output in outputs {
            let (to, packet, delay) = match &output {
                Output::Datagram { to, bytes } => (*to, Packet::Datagram(bytes.clone()), Duration::from_millis(1)),
                Output::PeerFrame { to, bytes } => (*to, Packet::Frame(bytes.clone()), Duration::from_millis(1)),
                Output::Execute(e) => {
                    let end = self.now + self.task_time;
                    self.executions.push(Run {
                        node: at,
                        task_id: e.task.id.clone(),
                        resource: e.task.resource.clone(),
                        token: e.token,
                        start: self.now,
                        end,
                        cancelled: false,
                    });
                    (at, Packet::Done(e.task.resource.clone(), e.token.seq), self.task_time)
                }
                Output::Cancel { resource, seq } => {
                    // The handler stops at once: its end is reported now,
                    // instead of when it would have finished.
                    let done = |p: &Packet| matches!(p, Packet::Done(r, s) if r == resource && s == seq);
                    self.in_flight.retain(|_, (from, _, p)| !(*from == at && done(p)));
                    let now = self.now;
                    let run = self
                        .executions
                        .iter_mut()
                        .rfind(|r| r.node == at && r.resource == *resource && r.token.seq == *seq)
                        .expect("a cancel of an execution that was started");
                    assert!(!run.cancelled && run.end > now, "cancelled twice, or after its end: {run:?}");
                    run.end = now;
                    run.cancelled = true;
                    (at, Packet::Done(resource.clone(), *seq), Duration::ZERO)
                }
                _ => {
                    self.trace.push((self.now, at, output));
                    continue;
                }
            };
            self.seq += 1;
            self.in_flight.insert((self.now + delay, self.seq), (at, to, packet));
            self.trace.push((self.now, at, output));
        }
    }

    /// Runs until virtual time `until`.
    fn run_until(&mut self, until: Instant) {
        loop {
            let next_delivery = self.in_flight.keys().next().map(|&(t, _)| t);
            let next_timer = self.nodes.iter().filter_map(|(&a, n)| n.poll_timeout().map(|t| (t, a))).min();
            let next = match (next_delivery, next_timer) {
                (Some(d), Some((t, _))) => d.min(t),
                (Some(d), None) => d,
                (None, Some((t, _))) => t,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = next;
            if next_delivery == Some(next) {
                let (_, (from, to, packet)) = self.in_flight.pop_first().unwrap();
                if self.nodes.contains_key(&to) && !self.cut.contains(&(from, to)) {
                    let input = match packet {
                        Packet::Datagram(bytes) => Input::Datagram { from, bytes },
                        Packet::Frame(bytes) => Input::PeerFrame { from, bytes },
                        Packet::Done(resource, seq) => {
                            Input::TaskDone { resource, seq, outcome: Outcome::Ok(Vec::new()) }
                        }
                    };
                    self.input(to, input);
                }
            } else {
                let (_, at) = next_timer.unwrap();
                self.input(at, Input::Timeout);
            }
        }
        self.now = until;
    }

    fn alive_view(&self, at: SocketAddr) -> Vec<(SocketAddr, u64)> {
        self.nodes[&at]
            .members()
            .into_iter()
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| (m.addr, m.incarnation))
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Packet {
    Datagram(Vec<u8>),
    Frame(Vec<u8>),
    /// A task's end, reported to the node that ran it.
    Done(String, u64),
}

fn three_node_run(seed: u64) -> Vec<(Instant, SocketAddr, Output)> {
    let mut net = Net::new((1..=3).map(|i| node(7000 + i, 1, seed.wrapping_mul(31).wrapping_add(u64::from(i)))));
    net.input(addr(7002), Input::Command(Command::Join(vec![addr(7001)])));
    net.input(addr(7003), Input::Command(Command::Join(vec![addr(7001)])));
    net.run_until(Instant::from_micros(20_000_000));
    for port in 7001..=7003 {
        assert_eq!(net.alive_view(addr(port)).len(), 3, "node {port} did not converge");
    }
    net.trace
}

#[test]
fn same_seed_same_inputs_same_outputs_byte_for_byte() {
    let a = three_node_run(42);
    let b = three_node_run(42);
    assert!(a.len() > 50, "too little traffic to compare: {}", a.len());
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "outputs differ at #{i}");
    }
    // The seed matters: another seed makes other random choices.
    assert_ne!(a, three_node_run(43));
}

#[test]
fn join_announces_to_every_seed_then_retries() {
    let mut n = node(7001, 1, 7);
    n.handle(Instant::ZERO, Input::Command(Command::Join(vec![addr(7002), addr(7003), addr(7001)]))).unwrap();
    let outputs = drain(&mut n);
    // Our own address is not a seed; one Announce per other seed.
    assert_eq!(outputs.len(), 2);
    for (output, seed) in outputs.iter().zip([addr(7002), addr(7003)]) {
        let Output::Datagram { to, bytes } = output else { panic!("expected a datagram, got {output:?}") };
        assert_eq!(*to, seed);
        let header = swim_header(bytes);
        assert_eq!(header.message, foca::Message::Announce);
        assert_eq!(header.dst, NodeId::seed(seed));
        assert_eq!(&header.src, n.id());
    }
    // Nobody answered: at join_retry it announces again, and keeps doing so.
    let retry = n.poll_timeout().unwrap();
    assert_eq!(retry, Instant::ZERO + Config::lan().join_retry);
    n.handle(retry, Input::Timeout).unwrap();
    let outputs = drain(&mut n);
    let announces = outputs.iter().filter(|o| matches!(o, Output::Datagram { .. })).count();
    assert_eq!(announces, 2);
    // The first lease request goes to a seed too (nobody else is known).
    let lease_requests: Vec<SocketAddr> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::PeerFrame { to, bytes } => match wire::decode_frame(bytes) {
                Ok(wire::Frame::Message(Message::Epoch(wire::EpochMsg::LeaseRequest { .. }))) => Some(*to),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(lease_requests.len(), 1);
    assert!([addr(7002), addr(7003)].contains(&lease_requests[0]));
    assert_eq!(n.stats().announces_sent, 4);
    assert_eq!(n.poll_timeout(), Some(retry + Config::lan().join_retry));
}

#[test]
fn too_many_seeds_is_an_error_and_sends_nothing() {
    let mut n = node(7001, 1, 7);
    let seeds = (0..=SEEDS_MAX as u16).map(|i| addr(8000 + i)).collect();
    assert_eq!(
        n.handle(Instant::ZERO, Input::Command(Command::Join(seeds))),
        Err(InputError::TooManySeeds(SEEDS_MAX + 1))
    );
    assert_eq!(drain(&mut n), vec![]);
    assert_eq!(n.poll_timeout(), None);
}

#[test]
fn bad_input_is_an_error_value_and_nothing_else() {
    let mut n = node(7001, 1, 7);
    let from = addr(9999);
    let cases: Vec<(Input, &str)> = vec![
        (Input::Datagram { from, bytes: vec![] }, "empty"),
        (Input::Datagram { from, bytes: vec![99, 1, 2, 3] }, "unknown protocol version 99"),
        (Input::Datagram { from, bytes: vec![wire::PROTOCOL_VERSION, 0xff, 0xff] }, "SWIM packet rejected"),
        (Input::PeerFrame { from, bytes: vec![wire::PROTOCOL_VERSION, 200] }, "unknown frame kind"),
        (
            Input::PeerFrame { from, bytes: wire::encode_message(&Message::Request(Request::Members)).unwrap() },
            "unexpected",
        ),
        (
            Input::ClientFrame { client: ClientId(1), bytes: vec![wire::PROTOCOL_VERSION, wire::KIND_MESSAGE, 0xc1] },
            "malformed",
        ),
    ];
    let count = cases.len() as u64;
    for (input, expected) in cases {
        let err = n.handle(Instant::ZERO, input).unwrap_err();
        assert!(err.to_string().contains(expected), "{err} does not say {expected:?}");
        assert_eq!(drain(&mut n), vec![]);
    }
    assert_eq!(n.stats().inputs_rejected, count);
    assert_eq!(n.poll_timeout(), None);
    assert_eq!(n.members().len(), 1);
}

#[test]
fn members_request_gets_one_reply_with_the_view() {
    let mut n = node(7001, 5, 7);
    let request = wire::encode_message(&Message::Request(Request::Members)).unwrap();
    n.handle(Instant::ZERO, Input::ClientFrame { client: ClientId(3), bytes: request }).unwrap();
    let expected = wire::encode_message(&Message::Response(Response::Members(vec![MemberInfo {
        name: "n7001".into(),
        addr: addr(7001),
        incarnation: 5,
        state: MemberState::Alive,
    }])))
    .unwrap();
    assert_eq!(drain(&mut n), vec![Output::Reply { client: ClientId(3), bytes: expected }]);
}

#[test]
fn leave_answers_tells_the_host_and_takes_no_more_input() {
    let mut net = Net::new([node(7001, 1, 1), node(7002, 1, 2)]);
    net.input(addr(7002), Input::Command(Command::Join(vec![addr(7001)])));
    net.run_until(Instant::from_micros(2_000_000));
    assert_eq!(net.alive_view(addr(7001)).len(), 2);

    let request = wire::encode_message(&Message::Request(Request::Leave)).unwrap();
    let n = net.nodes.get_mut(&addr(7002)).unwrap();
    n.handle(net.now, Input::ClientFrame { client: ClientId(9), bytes: request }).unwrap();
    let outputs = drain(n);
    let leaving = wire::encode_message(&Message::Response(Response::Leaving)).unwrap();
    assert_eq!(outputs[0], Output::Reply { client: ClientId(9), bytes: leaving });
    assert_eq!(outputs.last(), Some(&Output::Event(Event::Left)));
    // Between them: the gossip that tells the other member we are down.
    let gossip: Vec<_> = outputs[1..outputs.len() - 1]
        .iter()
        .map(|o| match o {
            Output::Datagram { to, bytes } => (*to, swim_header(bytes).message),
            other => panic!("unexpected output {other:?}"),
        })
        .collect();
    assert_eq!(gossip, vec![(addr(7001), foca::Message::Gossip)]);
    assert!(n.has_left());
    assert_eq!(n.poll_timeout(), None);
    assert_eq!(n.handle(net.now, Input::Timeout), Err(InputError::Left));

    // Deliver the gossip: the other node sees the leave at once.
    for output in outputs {
        if let Output::Datagram { to, bytes } = output {
            net.input(to, Input::Datagram { from: addr(7002), bytes });
        }
    }
    net.nodes.remove(&addr(7002));
    let events: Vec<_> = net.trace.iter().filter(|(_, at, _)| *at == addr(7001)).map(|(_, _, o)| o.clone()).collect();
    assert!(events.contains(&Output::Event(Event::MemberDown(NodeId::new(addr(7002), 1, "n7002")))));
    assert!(events.contains(&Output::ClosePeer(addr(7002))));
    assert_eq!(net.alive_view(addr(7001)), vec![(addr(7001), 1)]);
}

#[test]
fn a_restarted_node_with_a_higher_incarnation_is_accepted() {
    let mut net = Net::new([node(7001, 1, 1), node(7002, 1, 2), node(7003, 1, 3)]);
    net.input(addr(7002), Input::Command(Command::Join(vec![addr(7001)])));
    net.input(addr(7003), Input::Command(Command::Join(vec![addr(7001)])));
    net.run_until(Instant::from_micros(3_000_000));
    assert_eq!(net.alive_view(addr(7001)).len(), 3);

    // 7003 crashes and comes straight back, before anyone noticed, as a new
    // life: same address, higher incarnation, fresh state.
    let restarted = node(7003, 2, 99);
    net.nodes.insert(addr(7003), restarted);
    net.input(addr(7003), Input::Command(Command::Join(vec![addr(7001)])));
    net.run_until(Instant::from_micros(6_000_000));

    let expected = vec![(addr(7001), 1), (addr(7002), 1), (addr(7003), 2)];
    for port in 7001..=7003 {
        assert_eq!(net.alive_view(addr(port)), expected, "view of {port}");
    }
    let renamed = Output::Event(Event::MemberRenamed {
        old: NodeId::new(addr(7003), 1, "n7003"),
        new: NodeId::new(addr(7003), 2, "n7003"),
    });
    assert!(net.trace.iter().any(|(_, at, o)| *at == addr(7001) && *o == renamed));
}

#[test]
fn a_crashed_node_is_declared_down_within_the_bound() {
    let mut net = Net::new([node(7001, 1, 1), node(7002, 1, 2), node(7003, 1, 3)]);
    net.input(addr(7002), Input::Command(Command::Join(vec![addr(7001)])));
    net.input(addr(7003), Input::Command(Command::Join(vec![addr(7001)])));
    net.run_until(Instant::from_micros(3_000_000));
    let crashed_at = net.now;
    net.nodes.remove(&addr(7003));
    let bound = Config::lan().failure_detection_bound(3);
    net.run_until(crashed_at + bound);
    for port in [7001, 7002] {
        let down = net.trace.iter().find(|(_, at, o)| {
            *at == addr(port) && matches!(o, Output::Event(Event::MemberDown(id)) if id.addr == addr(7003))
        });
        let (when, _, _) = down.unwrap_or_else(|| panic!("{port} did not mark 7003 down within {bound:?}"));
        assert!(*when - crashed_at >= Config::lan().suspect_to_down_after);
    }
}

/// The engine must stay sans-IO: no runtime crates, no threads, and no opting
/// out of the clippy lists that forbid clocks, ambient randomness and hash
/// maps (see clippy.toml).
#[test]
fn engine_sources_stay_sans_io() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    let forbidden = ["tokio", "quinn", "std::thread", "allow(clippy::disallowed", "std::fs", "std::net::UdpSocket"];
    let mut checked = 0;
    // Every file under src/engine, its subfolders included; tests may
    // read files.
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_some_and(|e| e == "rs") && path.file_name() != Some("tests.rs".as_ref()) {
                let text = std::fs::read_to_string(&path).unwrap();
                // Prose may name the runtime; code may not.
                let code = text.lines().filter(|l| !l.trim_start().starts_with("//"));
                for (line, word) in code.flat_map(|l| forbidden.iter().map(move |w| (l, w))) {
                    assert!(!line.contains(word), "{} uses {word}: {line}", path.display());
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} engine files found");
}

fn sync_member(port: u16, incarnation: u64, swim_incarnation: u16, state: MemberState) -> wire::SyncMember {
    wire::SyncMember {
        id: NodeId::new(addr(port), incarnation, &format!("n{port}")),
        incarnation: swim_incarnation,
        state,
    }
}

#[test]
fn a_sync_request_teaches_what_we_lack_and_answers_with_what_they_lack() {
    let mut a = node(7001, 1, 1);
    let b = NodeId::new(addr(7002), 1, "n7002");
    a.handle(Instant::ZERO, Input::Command(Command::LearnMembers(vec![b.clone()]))).unwrap();
    assert_eq!(drain(&mut a), vec![Output::Event(Event::MemberUp(b.clone())), Output::Event(Event::Joined)]);
    // Knowing a member for the first time schedules a sync at once.
    assert_eq!(a.poll_timeout(), Some(Instant::ZERO));

    // b knows itself and c; it does not know a.
    let request = Message::SyncRequest(vec![
        sync_member(7002, 1, 0, MemberState::Alive),
        sync_member(7003, 4, 2, MemberState::Alive),
    ]);
    let bytes = wire::encode_message(&request).unwrap();
    a.handle(Instant::from_micros(10), Input::PeerFrame { from: addr(7002), bytes }).unwrap();
    let answer =
        wire::encode_message(&Message::SyncResponse(vec![sync_member(7001, 1, 0, MemberState::Alive)])).unwrap();
    // The answer is the handler's own output; the member it learned is
    // reported by the drain loop after it.
    assert_eq!(
        drain(&mut a),
        vec![
            Output::PeerFrame { to: addr(7002), bytes: answer },
            Output::Event(Event::MemberUp(NodeId::new(addr(7003), 4, "n7003"))),
        ]
    );

    // Telling it again changes nothing and the answer is the same.
    let bytes = wire::encode_message(&request).unwrap();
    a.handle(Instant::from_micros(20), Input::PeerFrame { from: addr(7002), bytes }).unwrap();
    let outputs = drain(&mut a);
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    assert!(matches!(&outputs[0], Output::PeerFrame { to, .. } if *to == addr(7002)));
}

/// Syncs carry up to `SYNC_MEMBERS_MAX` members each, but many of them
/// must not grow the member list (and foca's timers) without bound: past
/// `epoch::MEMBERS_MAX`, only known members are updated.
#[test]
fn syncs_never_grow_the_member_list_past_its_bound() {
    let mut a = node(7001, 1, 1);
    let member = |i: usize| wire::SyncMember {
        id: NodeId::new(SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7000)), 1, "m"),
        incarnation: 0,
        state: MemberState::Alive,
    };
    let batch = SYNC_MEMBERS_MAX - 1;
    for round in 0..3 {
        let request = Message::SyncRequest((round * batch..(round + 1) * batch).map(member).collect());
        let bytes = wire::encode_message(&request).unwrap();
        a.handle(Instant::from_micros(round as u64 * 10), Input::PeerFrame { from: addr(7002), bytes }).unwrap();
        drain(&mut a);
    }
    assert_eq!(a.swim.num_members(), epoch::MEMBERS_MAX);
}

#[test]
fn a_joining_node_pulls_the_full_member_list_at_once() {
    let mut net = Net::new([node(7001, 1, 1), node(7002, 1, 2)]);
    net.input(addr(7002), Input::Command(Command::Join(vec![addr(7001)])));
    net.run_until(Instant::from_micros(50_000));
    let joined_at = net
        .trace
        .iter()
        .find(|(_, at, o)| *at == addr(7002) && *o == Output::Event(Event::Joined))
        .map(|(t, _, _)| *t)
        .expect("joined");
    // The sync leaves at the moment of joining, to the member it joined
    // through.
    let sync = net.trace.iter().find(|(t, at, o)| {
        *at == addr(7002)
            && *t == joined_at
            && matches!(o, Output::PeerFrame { to, bytes } if *to == addr(7001)
                && matches!(wire::decode_frame(bytes), Ok(wire::Frame::Message(Message::SyncRequest(_)))))
    });
    assert!(sync.is_some(), "no sync request when joining: {:?}", net.trace);
}

#[test]
fn an_oversized_sync_is_refused_whole() {
    let mut a = node(7001, 1, 1);
    let members = (0..=SYNC_MEMBERS_MAX as u16).map(|i| sync_member(10_000 + i, 1, 0, MemberState::Alive)).collect();
    let bytes = wire::encode_message(&Message::SyncResponse(members)).unwrap();
    assert_eq!(
        a.handle(Instant::ZERO, Input::PeerFrame { from: addr(7002), bytes }),
        Err(InputError::TooManyMembers(SYNC_MEMBERS_MAX + 1))
    );
    assert_eq!(drain(&mut a), vec![]);
    assert_eq!(a.members().len(), 1);
}

#[test]
fn bootstrap_commits_epoch_one_with_itself() {
    let mut n = node(7001, 1, 1);
    n.handle(Instant::ZERO, Input::Command(Command::Bootstrap)).unwrap();
    let outputs = drain(&mut n);
    eprintln!("{outputs:#?}");
    let config = n.configuration().expect("epoch 1 committed at once");
    assert_eq!(config.epoch, 1);
    assert!(n.is_leader());
}

/// Five nodes: 7001 bootstraps the epoch store, the others join through it.
fn formed_five() -> Net {
    formed_five_with(&Config::lan())
}

/// [`formed_five`] with `config` on every node.
fn formed_five_with(config: &Config) -> Net {
    let mut net = Net::new((1..=5).map(|i| {
        let id = NodeId::new(addr(7000 + i), 1, &format!("n{}", 7000 + i));
        Node::new(id, config.clone(), u64::from(i), Instant::ZERO)
    }));
    net.input(addr(7001), Input::Command(Command::Bootstrap));
    for port in 7002..=7005 {
        net.input(addr(port), Input::Command(Command::Join(vec![addr(7001)])));
    }
    net.run_until(Instant::from_micros(8_000_000));
    net
}

fn committed_epochs(net: &Net, at: SocketAddr) -> Vec<u64> {
    net.trace
        .iter()
        .filter_map(|(_, node, o)| match o {
            Output::Event(Event::Epoch(EpochEvent::EpochLearned { epoch, .. })) if *node == at => Some(*epoch),
            _ => None,
        })
        .collect()
}

#[test]
fn five_nodes_form_one_batched_epoch_with_three_voters_and_leases() {
    let net = formed_five();
    let first = net.nodes[&addr(7001)].configuration().cloned().expect("a configuration");
    // Epoch 1 is the founder alone; the four joins, seen within one
    // batching window, are one epoch.
    assert_eq!(first.epoch, 2);
    assert_eq!(first.members.len(), 5);
    assert!(first.members.iter().all(|m| m.status == MemberStatus::Active));
    for (a, n) in &net.nodes {
        assert_eq!(n.configuration(), Some(&first), "{a} disagrees");
        assert_eq!(committed_epochs(&net, *a), vec![1, 2], "{a} learned epochs out of order");
        assert!(n.may_act_as_custodian(net.now), "{a} holds no lease");
    }
    assert_eq!(net.nodes.values().filter(|n| n.is_voter()).count(), 3);
    assert_eq!(net.nodes.values().filter(|n| n.is_leader()).count(), 1);
    let status = net.nodes[&addr(7004)].status();
    assert_eq!(status.epoch, 2);
    assert_eq!(status.voters.len(), 3);
    assert!(status.leader.is_some());
    assert!(status.lease_remaining_ms > 0);
}

#[test]
fn a_crashed_member_is_removed_by_suspicion_votes_in_one_epoch() {
    let mut net = formed_five();
    let victim = *net.nodes.iter().find(|(_, n)| !n.is_voter()).expect("two non-voters").0;
    net.nodes.remove(&victim);
    let crashed_at = net.now;
    let cfg = Config::lan();
    net.run_until(crashed_at + cfg.failure_detection_bound(5) + cfg.stable_after + Duration::from_secs(1));
    for (a, n) in &net.nodes {
        let config = n.configuration().expect("a configuration");
        assert_eq!(config.epoch, 3, "{a}");
        assert_eq!(config.members.len(), 4);
        assert!(config.member(victim).is_none());
    }
    let votes = net
        .trace
        .iter()
        .filter(|(_, _, o)| matches!(o, Output::Event(Event::Epoch(EpochEvent::VoteCommitted { target, .. })) if target.addr == victim))
        .count();
    assert!(votes >= 2 * 3, "at least two votes, applied by each of the three voters: {votes}");
}

#[test]
fn a_node_cut_off_from_the_store_stops_acting_within_one_lease() {
    let mut net = formed_five();
    let victim = *net.nodes.iter().find(|(_, n)| !n.is_leader()).expect("followers").0;
    let mut cut = net.nodes.remove(&victim).unwrap();
    let cut_at = net.now;
    assert!(cut.may_act_as_custodian(cut_at));
    // It keeps running alone: its renewals go nowhere.
    let lease = Config::lan().lease;
    let mut t = cut_at;
    while t < cut_at + lease {
        t = t + Duration::from_millis(100);
        let _ = cut.handle(t, Input::Timeout);
        drain(&mut cut);
    }
    assert!(!cut.may_act_as_custodian(t), "still acting {lease:?} after the cut");
    assert_eq!(cut.status().lease_remaining_ms, 0);
}

#[test]
fn a_graceful_leave_is_two_epochs_then_the_node_leaves() {
    let mut net = formed_five();
    let leaver = *net.nodes.iter().find(|(_, n)| !n.is_voter()).expect("non-voters").0;
    net.input(leaver, Input::Command(Command::Leave));
    net.run_until(net.now + Duration::from_secs(8));
    let last = net.nodes[&addr(7001)].configuration().expect("a configuration");
    assert!(last.member(leaver).is_none(), "still a member: {last:?}");
    let epochs = committed_epochs(&net, addr(7001));
    assert_eq!(epochs, vec![1, 2, 3, 4], "marked leaving in 3, removed in 4");
    assert!(net.nodes[&leaver].has_left());
    let left = net.trace.iter().any(|(_, at, o)| *at == leaver && *o == Output::Event(Event::Left));
    assert!(left);
}

#[test]
fn a_leaving_leader_hands_over_and_the_store_keeps_working() {
    let mut net = formed_five();
    let leader = *net.nodes.iter().find(|(_, n)| n.is_leader()).expect("a leader").0;
    net.input(leader, Input::Command(Command::Leave));
    net.run_until(net.now + Duration::from_secs(10));
    assert!(net.nodes[&leader].has_left());
    net.nodes.remove(&leader);
    let leaders = store_leaders(&net, None);
    assert_eq!(leaders.len(), 1, "one new leader: {leaders:?}");
    for n in net.nodes.values() {
        let config = n.configuration().expect("a configuration");
        assert!(config.member(leader).is_none());
        assert_eq!(config.members.len(), 4);
    }
    // The store still commits: a crash is removed.
    let victim = *net.nodes.iter().find(|(_, n)| !n.is_leader()).expect("followers").0;
    let before = net.nodes[&leaders[0]].configuration().expect("a configuration").epoch;
    net.nodes.remove(&victim);
    let cfg = Config::lan();
    net.run_until(net.now + cfg.failure_detection_bound(4) + cfg.stable_after + cfg.lease * 2);
    let after = net.nodes[&leaders[0]].configuration().expect("a configuration");
    assert!(after.epoch > before && after.member(victim).is_none(), "{after:?}");
}

#[test]
fn a_configuration_of_another_cluster_is_never_learned() {
    let mut a = formed_five();
    // A second cluster, bootstrapped apart, reaches epoch 1 with its founder.
    let mut other = node(8001, 1, 9);
    other.handle(Instant::ZERO, Input::Command(Command::Bootstrap)).unwrap();
    let foreign = other.configuration().cloned().expect("epoch 1");
    let foreign = foreign.next(&epoch::Changes { joins: vec![NodeId::new(addr(8002), 1, "x")], ..Default::default() });
    let mut foreign = foreign.expect("a change");
    foreign.epoch = 99;
    let before = a.nodes[&addr(7003)].configuration().cloned();
    let bytes = wire::encode_message(&Message::Epoch(wire::EpochMsg::Config(foreign))).unwrap();
    a.input(addr(7003), Input::PeerFrame { from: addr(8001), bytes });
    assert_eq!(a.nodes[&addr(7003)].configuration().cloned(), before);
}

#[test]
fn every_node_names_the_same_custodian_from_the_committed_ring() {
    let mut net = formed_five();
    for resource in ["account-1", "", "ünïcode"] {
        let owners: Vec<OwnerInfo> =
            net.nodes.values_mut().map(|n| n.owner(resource).expect("a configuration")).collect();
        assert!(owners.windows(2).all(|w| w[0] == w[1]), "{owners:?}");
        let config = net.nodes[&addr(7001)].configuration().expect("a configuration");
        let ring = config.ring();
        assert_eq!(owners[0].addr, ring.owner(resource).expect("a non-empty ring").addr);
        assert_eq!(owners[0].replicas.len(), 3);
        assert_eq!(owners[0].replicas[0], owners[0].custodian);
    }
    assert_eq!(node(7009, 1, 1).owner("x"), None, "no configuration, no owner");
}

/// A resource whose custodian is `owner` in `gateway`'s latest epoch.
fn resource_of(net: &Net, gateway: SocketAddr, owner: SocketAddr) -> String {
    (0..).map(|i| format!("r{i}")).find(|r| net.nodes[&gateway].owner(r).is_some_and(|o| o.addr == owner)).unwrap()
}

fn submit_frame(task_id: &str, resource: &str) -> Vec<u8> {
    let task = Task { id: task_id.into(), resource: resource.into(), payload: Vec::new() };
    wire::encode_message(&Message::Request(Request::Submit { task, wait: true })).unwrap()
}

/// The client replies in the trace, decoded, by client.
fn client_replies(net: &Net) -> BTreeMap<ClientId, Vec<Response>> {
    let mut out: BTreeMap<ClientId, Vec<Response>> = BTreeMap::new();
    for (_, _, o) in &net.trace {
        if let Output::Reply { client, bytes } = o {
            let wire::Frame::Message(Message::Response(r)) = wire::decode_frame(bytes).unwrap() else { panic!() };
            out.entry(*client).or_default().push(r);
        }
    }
    out
}

/// Checks the executions: each task once (not counting cancelled runs),
/// per resource no overlap, tokens strictly increasing and sequence numbers
/// consecutive in start order (after a cancelled run, the same task again,
/// with a token at least as high).
fn assert_custody_held(runs: &[Run], tasks: usize) {
    let mut by_task: BTreeMap<&str, usize> = BTreeMap::new();
    for r in runs {
        *by_task.entry(&r.task_id).or_default() += usize::from(!r.cancelled);
    }
    assert_eq!(by_task.len(), tasks, "every task ran");
    assert!(by_task.values().all(|&n| n == 1), "a task ran twice: {:?}", by_task.iter().find(|(_, n)| **n > 1));
    let mut by_resource: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for r in runs {
        by_resource.entry(&r.resource).or_default().push(r);
    }
    for (resource, mut rs) in by_resource {
        rs.sort_by_key(|r| (r.start, r.end));
        for w in rs.windows(2) {
            assert!(w[0].end <= w[1].start, "{resource}: overlapping executions {:?} and {:?}", w[0], w[1]);
            if w[0].cancelled {
                assert!(
                    w[0].task_id == w[1].task_id && w[0].token <= w[1].token,
                    "{resource}: {:?} then {:?}",
                    w[0],
                    w[1]
                );
                continue;
            }
            assert!(w[0].token < w[1].token, "{resource}: tokens out of order {:?} then {:?}", w[0], w[1]);
            assert_eq!(w[0].token.seq + 1, w[1].token.seq, "{resource}: sequence gap");
        }
    }
}

/// Checks the executions after `lost`'s custody was recovered by others:
/// every task ran; a task runs a second time only if its first run was at
/// `lost`, and then later, elsewhere, with a newer token; per resource no
/// two runs overlap and tokens rise in start order.
fn assert_custody_recovered(runs: &[Run], tasks: usize, lost: SocketAddr) {
    let mut by_task: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for r in runs.iter().filter(|r| !r.cancelled) {
        by_task.entry(&r.task_id).or_default().push(r);
    }
    assert_eq!(by_task.len(), tasks, "every task ran");
    for (task, rs) in by_task.iter().filter(|(_, rs)| rs.len() > 1) {
        assert_eq!(rs.len(), 2, "{task} ran more than twice: {rs:?}");
        assert!(rs[0].node == lost && rs[1].node != lost && rs[0].token < rs[1].token, "{task}: {rs:?}");
    }
    let mut by_resource: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for r in runs {
        by_resource.entry(&r.resource).or_default().push(r);
    }
    for (resource, mut rs) in by_resource {
        rs.sort_by_key(|r| (r.start, r.end));
        for w in rs.windows(2) {
            assert!(w[0].end <= w[1].start, "{resource}: overlapping executions {:?} and {:?}", w[0], w[1]);
            assert!(w[0].token <= w[1].token, "{resource}: tokens out of order {:?} then {:?}", w[0], w[1]);
        }
    }
}

#[test]
fn tasks_run_at_their_custodian_once_each_across_a_join_and_a_graceful_leave() {
    let mut net = formed_five();
    // Tasks long enough that queues build up and travel in the handoffs.
    net.task_time = Duration::from_millis(100);
    let mut six = node(7006, 1, 6);
    six.handle(net.now, Input::Command(Command::Join(vec![addr(7001)]))).unwrap();
    let leaver = *net.nodes.iter().find(|(_, n)| !n.is_voter()).expect("non-voters").0;
    let mut six = Some(six);
    let gateways: Vec<SocketAddr> = (7001..=7005).map(addr).filter(|&a| a != leaver).collect();
    let mut submitted = 0usize;
    for step in 0..300u64 {
        if step == 20 {
            net.input(leaver, Input::Command(Command::Leave));
        }
        if step == 40 {
            let six = six.take().unwrap();
            net.nodes.insert(six.id().addr, six);
            net.input(addr(7006), Input::Command(Command::Join(vec![addr(7001)])));
        }
        for i in 0..4u64 {
            let n = step * 4 + i;
            let gateway = gateways[(n % gateways.len() as u64) as usize];
            // Half the tasks on six busy resources (their queues build up),
            // half over forty quiet ones.
            let resource = if n % 2 == 0 { format!("busy{}", n % 6) } else { format!("quiet{}", n % 40) };
            let bytes = submit_frame(&format!("t{n}"), &resource);
            net.input(gateway, Input::ClientFrame { client: ClientId(n), bytes });
            submitted += 1;
        }
        net.run_until(net.now + Duration::from_millis(50));
    }
    net.run_until(net.now + Duration::from_secs(30));

    let replies = client_replies(&net);
    assert_eq!(replies.len(), submitted, "every submit answered");
    for (client, rs) in &replies {
        assert!(
            matches!(&rs[..], [Response::Completed(c)] if c.outcome == Some(Outcome::Ok(vec![]))),
            "{client:?}: {rs:?}"
        );
    }
    assert_custody_held(&net.executions, submitted);
    // Custody moved both ways: off the leaver, onto the newcomer.
    assert!(net.nodes[&leaver].has_left());
    assert!(net.nodes[&leaver].custody_stats().transfers_sent > 0);
    assert!(net.nodes[&addr(7006)].custody_stats().transfers_received > 0);
    let moved: u64 = net.nodes.values().map(|n| n.custody_stats().tasks_received).sum();
    assert!(moved > 0, "queued tasks travelled with custody");
    let runs_at = |a: SocketAddr| net.executions.iter().filter(|r| r.node == a).count();
    assert!(runs_at(leaver) > 0 && runs_at(addr(7006)) > 0);
    // Every range is held by its custodian in the end.
    for (a, n) in &net.nodes {
        if *a != leaver {
            assert_eq!(n.status().custody.ranges_unavailable, 0, "{a}");
        }
    }
}

/// The nodes that think they lead the epoch store, but `but`.
fn store_leaders(net: &Net, but: Option<SocketAddr>) -> Vec<SocketAddr> {
    net.nodes.iter().filter(|(a, n)| Some(**a) != but && n.is_leader()).map(|(a, _)| *a).collect()
}

/// The node that leads the epoch store now (exactly one).
fn store_leader(net: &Net) -> SocketAddr {
    store_leader_but(net, None)
}

/// The one leader among the nodes other than `but`.
fn store_leader_but(net: &Net, but: Option<SocketAddr>) -> SocketAddr {
    let leaders = store_leaders(net, but);
    assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");
    leaders[0]
}

/// Issue 10, bug 2 (`store-quorum-lost-leave.json`): one voter is cut off
/// and another leaves gracefully before the cut-off one is removed. The
/// leader must not remove the reachable leaving voter first (that left two
/// voters, one of them unreachable: no quorum, for good), and the cut-off
/// node, once it learns it was removed, must not take its Raft peer out of
/// the group behind its back.
#[test]
fn a_voter_cut_off_while_another_voter_leaves_keeps_the_store_working() {
    let mut net = formed_five();
    let leader = store_leader(&net);
    let others: Vec<SocketAddr> =
        net.nodes.iter().filter(|(a, n)| n.is_voter() && **a != leader).map(|(a, _)| *a).collect();
    let [cut, leaver] = others[..] else { panic!("three voters: {others:?}") };
    net.isolate(cut);
    net.run_until(net.now + Duration::from_millis(500));
    net.input(leaver, Input::Command(Command::Leave));
    net.run_until(net.now + Duration::from_secs(30));

    // Both changes committed: the store kept its quorum.
    let leader = store_leader(&net);
    let config = net.nodes[&leader].configuration().cloned().expect("a configuration");
    assert!(config.member(cut).is_none(), "the cut-off voter is still a member: {config:?}");
    assert!(config.member(leaver).is_none(), "the leaver is still a member: {config:?}");
    assert!(net.nodes[&leaver].has_left());
    // Three voters again, none of them gone.
    let voters = net.nodes[&leader].store.voters().to_vec();
    assert_eq!(voters.len(), 3, "{voters:?}");
    assert!(!voters.contains(&cut) && !voters.contains(&leaver), "{voters:?}");
    // The leaver went only once the group no longer counted it.
    assert!(!net.nodes[&leaver].store.holds_vote());

    // Heal: the cut-off node learns it was removed, comes back as a new life
    // and is admitted by a store that still commits.
    net.nodes.remove(&leaver);
    net.cut.clear();
    net.run_until(net.now + Duration::from_secs(20));
    let leader = store_leader(&net);
    let last = net.nodes[&leader].configuration().cloned().expect("a configuration");
    assert!(last.epoch > config.epoch);
    let back = last.member(cut).expect("the cut-off node is admitted again");
    assert_eq!(back.id.incarnation, 2, "as a new life");
    for (a, n) in &net.nodes {
        assert_eq!(n.configuration(), Some(&last), "{a} disagrees");
        assert!(n.may_act_as_custodian(net.now), "{a} holds no lease");
    }
    // Its old life's Raft peer is out of the group, by a committed change.
    assert!(!net.nodes[&cut].store.holds_vote());
    assert_eq!(net.nodes[&leader].store.voters().len(), 3);
}

/// Random seed 987: the leader is cut off (paused, in that run) and
/// removed from the configuration; the new leader must bring in a
/// replacement before it takes the old one out of the voters. Taking it out
/// first left two voters, both needed, and a crash of either one right
/// after killed the store for good, though the cut-off voter came back.
#[test]
fn a_new_leader_replaces_a_cut_off_voter_before_removing_it() {
    let mut net = formed_five();
    let old = store_leader(&net);
    net.isolate(old);
    let mut fewest = usize::MAX;
    let end = net.now + Duration::from_secs(30);
    while net.now < end {
        net.run_until(net.now + Duration::from_millis(20));
        if let [leader] = store_leaders(&net, Some(old))[..] {
            fewest = fewest.min(net.nodes[&leader].store.voters().len());
        }
    }
    let leader = store_leader_but(&net, Some(old));
    let config = net.nodes[&leader].configuration().cloned().expect("a configuration");
    assert!(config.member(old).is_none(), "the cut-off leader was removed: {config:?}");
    let voters = net.nodes[&leader].store.voters().to_vec();
    assert_eq!(voters.len(), 3, "{voters:?}");
    assert!(!voters.contains(&old), "{voters:?}");
    assert!(fewest >= 3, "the voters went down to {fewest} before the replacement came in");
}

/// Random seed 1936: a joiner whose only seed is cut off, and a second
/// joiner that joins through the first, make an island of two that SWIM
/// alone calls joined. A node keeps asking its seeds until it has learned a
/// configuration: after the heal both are admitted.
#[test]
fn a_joiner_joined_only_by_another_joiner_keeps_asking_its_seeds() {
    let mut net = Net::new((1..=7).map(|i| node(7000 + i, 1, u64::from(i))));
    net.input(addr(7001), Input::Command(Command::Bootstrap));
    for port in 7002..=7005 {
        net.input(addr(port), Input::Command(Command::Join(vec![addr(7001)])));
    }
    net.run_until(Instant::from_micros(8_000_000));
    net.isolate(addr(7005));
    net.input(addr(7006), Input::Command(Command::Join(vec![addr(7005)])));
    net.run_until(net.now + Duration::from_secs(3));
    net.input(addr(7007), Input::Command(Command::Join(vec![addr(7006)])));
    net.run_until(net.now + Duration::from_secs(5));
    assert!(net.nodes[&addr(7006)].configuration().is_none(), "its seed is cut off: not admitted yet");
    net.cut.clear();
    net.run_until(net.now + Duration::from_secs(30));
    let leader = store_leader(&net);
    let config = net.nodes[&leader].configuration().cloned().expect("a configuration");
    for joiner in [7006, 7007] {
        assert!(config.member(addr(joiner)).is_some(), "{joiner} admitted: {config:?}");
        assert_eq!(net.nodes[&addr(joiner)].configuration(), Some(&config), "{joiner} on the latest epoch");
    }
}

/// Issue 10, bug 3 (`removed-node-leave.json`): a node holding queued tasks
/// is cut off and removed; right after the heal it is asked to leave, and
/// learns of its removal only then. It must hand over what it holds before
/// it goes: every task still runs, once.
#[test]
fn a_removed_node_asked_to_leave_hands_off_before_it_goes() {
    removed_node_leaves(true);
}

/// The other order: the node learns of its removal (and starts a new life)
/// first, and is asked to leave at that very moment, its handoffs not done.
#[test]
fn a_node_asked_to_leave_right_after_its_removal_hands_off_before_it_goes() {
    removed_node_leaves(false);
}

fn removed_node_leaves(leave_first: bool) {
    // With recovery: the part it held is rebuilt while it is cut off.
    let mut net = formed_five_with(&Config { recovery: true, ..Config::lan() });
    // Tasks long enough that a queue builds up at the custodian.
    net.task_time = Duration::from_millis(1000);
    let victim = *net.nodes.iter().find(|(_, n)| !n.is_voter()).expect("non-voters").0;
    let gateway = *net.nodes.keys().find(|&&a| a != victim).unwrap();
    let resource = resource_of(&net, gateway, victim);
    let tasks = 20;
    for i in 0..tasks {
        let bytes = submit_frame(&format!("t{i}"), &resource);
        net.input(gateway, Input::ClientFrame { client: ClientId(i), bytes });
    }
    net.run_until(net.now + Duration::from_millis(200));
    net.isolate(victim);
    net.run_until(net.now + Duration::from_secs(20));
    let removed_at = net.nodes[&gateway].configuration().cloned().expect("a configuration");
    assert!(removed_at.member(victim).is_none(), "removed while cut off: {removed_at:?}");
    assert!(
        net.executions.len() < tasks as usize,
        "tasks still queued at the cut-off node: {} ran",
        net.executions.len()
    );

    net.cut.clear();
    if leave_first {
        // Asked to leave before it hears of its removal.
        net.input(victim, Input::Command(Command::Leave));
    } else {
        // Asked to leave the moment it renews its identity.
        while net.nodes[&victim].id().incarnation == 1 {
            net.run_until(net.now + Duration::from_micros(100));
        }
        assert_eq!(net.nodes[&victim].custody_stats().transfers_sent, 0, "nothing handed off yet");
        net.input(victim, Input::Command(Command::Leave));
    }
    net.run_until(net.now + Duration::from_secs(40));

    assert!(net.nodes[&victim].has_left());
    // Its part was recovered from its replicas meanwhile: it gave up what
    // it held rather than hand it over, and what it ran without the
    // watermark reaching its replicas runs again.
    assert_eq!(net.nodes[&victim].custody_stats().transfers_sent, 0, "nothing handed off");
    assert!(net.nodes[&victim].custody_stats().parts_forfeited > 0);
    assert!(net.nodes[&victim].custody.handed_off());
    let recovered: u64 = net.nodes.values().map(|n| n.custody_stats().ranges_recovered).sum();
    assert!(recovered > 0);
    assert_custody_recovered(&net.executions, tasks as usize, victim);
    let left = net.trace.iter().position(|(_, at, o)| *at == victim && *o == Output::Event(Event::Left)).unwrap();
    let removed = net
        .trace
        .iter()
        .position(|(_, at, o)| *at == victim && *o == Output::Event(Event::Epoch(EpochEvent::Removed)))
        .unwrap();
    assert!(removed < left);
    // Never admitted again while it was leaving.
    let last = net.nodes[&gateway].configuration().expect("a configuration");
    assert!(last.member(victim).is_none(), "{last:?}");
    // Removed while leaving, it left as the same life: no rejoin.
    assert_eq!(net.nodes[&victim].id().incarnation, if leave_first { 1 } else { 2 });
}

fn named(port: u16, incarnation: u64, name: &str, seed: u64) -> Node {
    Node::new(NodeId::new(addr(port), incarnation, name), Config::lan(), seed, Instant::ZERO)
}

/// Issue 10, bug 5: a node joining under the name of a live member at
/// another address is refused (it says why and leaves), never admitted; a
/// restart of a member on its own address, same name, still is.
#[test]
fn a_join_under_a_live_members_name_is_refused_and_a_restart_is_not() {
    let mut net = formed_five();
    let twin = named(7006, 1, "n7002", 6);
    net.nodes.insert(addr(7006), twin);
    net.input(addr(7006), Input::Command(Command::Join(vec![addr(7001)])));
    net.run_until(net.now + Duration::from_secs(10));

    let twin = &net.nodes[&addr(7006)];
    assert!(twin.has_left(), "the clashing node gave up");
    let holder = twin.name_clash().expect("it says whose name it is");
    assert_eq!((holder.addr, &*holder.name), (addr(7002), "n7002"));
    let left = net.trace.iter().any(|(_, at, o)| *at == addr(7006) && *o == Output::Event(Event::Left));
    assert!(left);
    for (_, at, o) in &net.trace {
        if let Output::Event(Event::Epoch(EpochEvent::EpochLearned { .. })) = o {
            let config = net.nodes[at].configuration().expect("a configuration");
            assert!(config.member(addr(7006)).is_none(), "admitted at {at}: {config:?}");
        }
    }
    let status = net.nodes[&addr(7001)].status();
    assert_eq!(status.members.len(), 5);
    assert_eq!(status.voters.len(), 3);
    assert_eq!(status.members.iter().filter(|m| m.voter).count(), 3);
    assert_eq!(status.members.iter().filter(|m| m.leader && m.voter).count(), 1);
    for n in net.nodes.values() {
        if n.id().addr != addr(7006) {
            assert_eq!(n.name_clash(), None);
        }
    }

    // n7002 restarts on its own address: a new incarnation, the same name.
    net.nodes.remove(&addr(7006));
    net.nodes.remove(&addr(7002));
    net.nodes.insert(addr(7002), named(7002, 2, "n7002", 22));
    net.input(addr(7002), Input::Command(Command::Join(vec![addr(7001)])));
    net.run_until(net.now + Duration::from_secs(15));
    let restarted = &net.nodes[&addr(7002)];
    assert_eq!(restarted.name_clash(), None);
    assert!(!restarted.has_left());
    let config = net.nodes[&addr(7001)].configuration().expect("a configuration");
    assert_eq!(config.member(addr(7002)).map(|m| m.id.incarnation), Some(2), "{config:?}");
    assert!(restarted.may_act_as_custodian(net.now));
}

/// Two new nodes join under one name at once: one is admitted, the other
/// refuses.
#[test]
fn of_two_joins_under_one_name_one_is_admitted() {
    let mut net = formed_five();
    for port in [7006, 7007] {
        net.nodes.insert(addr(port), named(port, 1, "x", u64::from(port)));
        net.input(addr(port), Input::Command(Command::Join(vec![addr(7001)])));
    }
    net.run_until(net.now + Duration::from_secs(15));
    let config = net.nodes[&addr(7001)].configuration().cloned().expect("a configuration");
    let xs: Vec<SocketAddr> = config.members.iter().filter(|m| &*m.id.name == "x").map(|m| m.id.addr).collect();
    assert_eq!(xs.len(), 1, "{config:?}");
    let refused = if xs[0] == addr(7006) { addr(7007) } else { addr(7006) };
    assert!(net.nodes[&refused].has_left());
    assert_eq!(net.nodes[&refused].name_clash().map(|h| h.addr), Some(xs[0]));
    assert!(!net.nodes[&xs[0]].has_left());
    assert!(net.nodes[&xs[0]].may_act_as_custodian(net.now));
}

/// A voter's node starts a new life (as when it learns it was removed) at
/// the moment another voter is cut off. Its old life's Raft peer keeps
/// voting until the group removes it by a committed change, and the leader
/// removes it only once that keeps a live majority: the store never loses
/// its quorum, though only one voter was lost.
#[test]
fn an_earlier_lifes_raft_peer_keeps_voting_until_the_group_removes_it() {
    let mut net = formed_five();
    let leader = store_leader(&net);
    let others: Vec<SocketAddr> =
        net.nodes.iter().filter(|(a, n)| n.is_voter() && **a != leader).map(|(a, _)| *a).collect();
    let [renewed, cut] = others[..] else { panic!("three voters: {others:?}") };
    net.isolate(cut);
    net.nodes.get_mut(&renewed).unwrap().on_removed();
    net.collect(renewed);
    assert_eq!(net.nodes[&renewed].id().incarnation, 2);
    assert!(!net.nodes[&renewed].is_voter(), "the new life is no voter");
    assert!(net.nodes[&renewed].store.holds_vote(), "the old life's peer still is");
    assert_eq!(net.nodes[&renewed].store.earlier_peers(), 1);
    net.run_until(net.now + Duration::from_secs(30));

    let leader = store_leader(&net);
    let config = net.nodes[&leader].configuration().cloned().expect("a configuration");
    assert!(config.member(cut).is_none(), "the cut-off voter was removed: {config:?}");
    assert_eq!(config.member(renewed).map(|m| m.id.incarnation), Some(2), "{config:?}");
    let voters = net.nodes[&leader].store.voters().to_vec();
    assert_eq!(voters.len(), 3, "{voters:?}");
    assert!(!voters.contains(&cut));
    // The old life's peer stopped once the group had removed it.
    assert_eq!(net.nodes[&renewed].store.earlier_peers(), 0);
    for (a, n) in &net.nodes {
        if *a != cut {
            assert_eq!(n.configuration(), Some(&config), "{a} disagrees");
            assert!(n.may_act_as_custodian(net.now), "{a} holds no lease");
        }
    }
}

#[test]
fn a_crashed_custodians_acknowledged_tasks_run_after_recovery() {
    let mut net = formed_five_with(&Config { recovery: true, ..Config::lan() });
    net.task_time = Duration::from_millis(100);
    let victim = *net.nodes.iter().find(|(_, n)| !n.is_voter()).expect("two non-voters").0;
    let gateways: Vec<SocketAddr> = net.nodes.keys().copied().filter(|&a| a != victim).collect();
    let mut submitted = 0usize;
    let mut crashed_at = None;
    let mut resource_of: BTreeMap<ClientId, String> = BTreeMap::new();
    let before = net.nodes[&victim].configuration().cloned().unwrap();
    for step in 0..100u64 {
        if step == 30 {
            net.nodes.remove(&victim);
            crashed_at = Some(net.now);
        }
        for i in 0..4u64 {
            let n = step * 4 + i;
            let gateway = gateways[(n % gateways.len() as u64) as usize];
            // Queues build up on a few busy resources; the rest are quiet.
            let resource = if n % 2 == 0 { format!("busy{}", n % 8) } else { format!("quiet{}", n % 40) };
            let bytes = submit_frame(&format!("t{n}"), &resource);
            net.input(gateway, Input::ClientFrame { client: ClientId(n), bytes });
            resource_of.insert(ClientId(n), resource);
            submitted += 1;
        }
        net.run_until(net.now + Duration::from_millis(50));
    }
    let cfg = Config::lan();
    let bound = cfg.failure_detection_bound(5) + cfg.stable_after + cfg.recovery_wait() + Duration::from_secs(20);
    net.run_until(crashed_at.unwrap() + bound);

    // Every submit through a live gateway completed (the tasks the victim
    // had acknowledged and not run included), except those its resources
    // could not take while they were dark: no custodian acknowledged them
    // within the gateway's timeout.
    let replies = client_replies(&net);
    assert_eq!(replies.len(), submitted, "every submit answered");
    let crash = crashed_at.unwrap();
    assert!(net.nodes[&gateways[0]].configuration().unwrap().member(victim).is_none(), "the victim was removed");
    let ring = before.ring();
    let mut dark = 0;
    for (client, rs) in &replies {
        match &rs[..] {
            [Response::Completed(_)] => {}
            [Response::Unavailable(_)] if ring.owner(&resource_of[client]).map(|o| o.addr) == Some(victim) => dark += 1,
            other => panic!("{client:?} ({}): {other:?}", resource_of[client]),
        }
    }
    let recovered: u64 = net.nodes.values().map(|n| n.custody_stats().ranges_recovered).sum();
    let tasks_recovered: u64 = net.nodes.values().map(|n| n.custody_stats().tasks_recovered).sum();
    assert!(recovered > 0 && tasks_recovered > 0, "{recovered} parts, {tasks_recovered} tasks recovered");
    // One execution at a time per resource, tokens increasing; a task runs
    // twice only if the victim was running it (or ran it, its watermark not
    // replicated yet) when it crashed, and the second run has a newer token.
    let mut by_resource: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for r in &net.executions {
        by_resource.entry(&r.resource).or_default().push(r);
    }
    for (resource, mut rs) in by_resource {
        rs.sort_by_key(|r| (r.start, r.end));
        for w in rs.windows(2) {
            assert!(w[0].end <= w[1].start, "{resource}: overlapping executions {:?} and {:?}", w[0], w[1]);
            assert!(w[0].token < w[1].token, "{resource}: tokens out of order {:?} then {:?}", w[0], w[1]);
        }
    }
    let mut runs: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for r in &net.executions {
        runs.entry(&r.task_id).or_default().push(r);
    }
    assert!(runs.len() + dark >= submitted);
    for (task, rs) in runs.iter().filter(|(_, rs)| rs.len() > 1) {
        assert_eq!(rs.len(), 2, "{task} ran more than twice: {rs:?}");
        assert!(rs[0].node == victim && rs[0].start <= crash && rs[1].start > crash, "{task}: {rs:?}");
    }
    for (a, n) in &net.nodes {
        assert_eq!(n.status().custody.ranges_unavailable, 0, "{a}");
    }
}

/// Per node, the lease end it held after each output of the trace, as the
/// trace tells (renewals; a removal withdraws it): `None` while it has none.
fn lease_ends(net: &Net) -> Vec<Option<Instant>> {
    let mut held: BTreeMap<SocketAddr, Instant> = BTreeMap::new();
    net.trace
        .iter()
        .map(|(_, at, o)| {
            match o {
                Output::Event(Event::Epoch(EpochEvent::LeaseRenewed { lease_end })) => {
                    held.insert(*at, *lease_end);
                }
                Output::Event(Event::Epoch(EpochEvent::Removed)) => {
                    held.remove(at);
                }
                _ => {}
            }
            held.get(at).copied()
        })
        .collect()
}

/// The counter-example to running past a lease: a custodian running a task
/// longer than a lease keeps renewing while it runs; cut off, it cancels the
/// task `cancel_margin` before its lease ends (never after), starts nothing
/// without the margin, and once custody is back the task runs again, first
/// in its resource's queue, as its next attempt, and its waiter gets the
/// outcome.
#[test]
fn a_lapsing_lease_cancels_a_long_task_before_it_ends_and_nothing_starts_without_the_margin() {
    let config = Config { d_max: Duration::from_secs(3600), ..Config::lan() };
    let margin = config.cancel_margin;
    let mut net = formed_five_with(&config);
    // Each task runs for longer than eight leases.
    net.task_time = Duration::from_secs(45);
    let victim = *net.nodes.iter().find(|(_, n)| !n.is_voter()).expect("non-voters").0;
    let gateway = *net.nodes.keys().find(|&&a| a != victim).unwrap();
    let resource = resource_of(&net, gateway, victim);
    for i in 0..2 {
        let bytes = submit_frame(&format!("t{i}"), &resource);
        net.input(gateway, Input::ClientFrame { client: ClientId(i), bytes });
    }
    net.run_until(net.now + Duration::from_secs(20));
    let started = net.executions.iter().filter(|r| r.node == victim).count();
    assert_eq!(started, 1, "t0 runs at its custodian");
    let renewed_while_running = net.trace.iter().filter(|(t, at, o)| {
        *at == victim
            && *t > net.executions[0].start
            && matches!(o, Output::Event(Event::Epoch(EpochEvent::LeaseRenewed { .. })))
    });
    assert!(renewed_while_running.count() >= 15, "the lease is renewed every second while the task runs");
    assert_eq!(net.nodes[&victim].custody_stats().tasks_cancelled, 0);

    net.isolate(victim);
    let cut_at = net.now;
    net.run_until(cut_at + config.lease * 2);
    let ends = lease_ends(&net);
    let cancels: Vec<(Instant, Option<Instant>)> = net
        .trace
        .iter()
        .zip(&ends)
        .filter(|((_, at, o), _)| *at == victim && matches!(o, Output::Cancel { .. }))
        .map(|((t, _, _), end)| (*t, *end))
        .collect();
    assert_eq!(cancels.len(), 1, "one cancel, of the one execution: {cancels:?}");
    let (cancelled_at, lease_end) = (cancels[0].0, cancels[0].1.expect("it held a lease"));
    assert!(cancelled_at > cut_at);
    // Exactly when the margin is reached: the engine woke up for it.
    assert_eq!(cancelled_at + margin, lease_end, "cancelled at {cancelled_at:?}, lease to {lease_end:?}");
    let stats = net.nodes[&victim].custody_stats();
    assert_eq!((stats.tasks_cancelled, stats.cancelled_ends, stats.tasks_executed), (1, 1, 0));
    assert!(!net.nodes[&victim].may_act_as_custodian(net.now));
    assert!(client_replies(&net).is_empty(), "nobody was told a cancelled task ran");

    net.cut.clear();
    net.run_until(net.now + Duration::from_secs(150));
    // No execution anywhere, ever, started with less than the margin left.
    let ends = lease_ends(&net);
    for ((t, at, o), end) in net.trace.iter().zip(&ends) {
        if let Output::Execute(e) = o {
            assert!(end.is_some_and(|end| *t + margin < end), "{at} started {} at {t:?} with lease {end:?}", e.task.id);
        }
    }
    // t0 ran again first, as its second attempt, with a token at least as
    // high; then t1.
    let runs: Vec<(String, u32, Token)> = net
        .trace
        .iter()
        .filter_map(|(_, _, o)| match o {
            Output::Execute(e) => Some((e.task.id.clone(), e.attempt, e.token)),
            _ => None,
        })
        .collect();
    assert_eq!(runs.iter().map(|(id, n, _)| (id.as_str(), *n)).collect::<Vec<_>>(), [("t0", 1), ("t0", 2), ("t1", 1)]);
    assert!(runs[0].2 <= runs[1].2 && runs[1].2 < runs[2].2, "{runs:?}");
    assert_custody_held(&net.executions, 2);
    let replies = client_replies(&net);
    for (client, rs) in &replies {
        assert!(
            matches!(&rs[..], [Response::Completed(c)] if c.outcome == Some(Outcome::Ok(vec![]))),
            "{client:?}: {rs:?}"
        );
    }
    assert_eq!(replies.len(), 2, "both waiters got their outcome");
}

/// A removal withdraws the lease, but what the removed life runs keeps the
/// lease it started under: a leaving node's long task is cancelled
/// `cancel_margin` before that lease ends (not at the removal), and runs
/// again at the resource's next custodian.
#[test]
fn a_removed_lifes_long_task_runs_on_under_its_last_lease_then_moves() {
    let config = Config { d_max: Duration::from_secs(3600), ..Config::lan() };
    let mut net = formed_five_with(&config);
    net.task_time = Duration::from_secs(45);
    let leaver = *net.nodes.iter().find(|(_, n)| !n.is_voter()).expect("non-voters").0;
    let gateway = *net.nodes.keys().find(|&&a| a != leaver).unwrap();
    let resource = resource_of(&net, gateway, leaver);
    net.input(gateway, Input::ClientFrame { client: ClientId(1), bytes: submit_frame("t0", &resource) });
    net.run_until(net.now + Duration::from_secs(2));
    net.input(leaver, Input::Command(Command::Leave));
    net.run_until(net.now + Duration::from_secs(120));

    let at_leaver = |want: fn(&Output) -> bool| -> Vec<Instant> {
        net.trace.iter().filter(|(_, at, o)| *at == leaver && want(o)).map(|(t, _, _)| *t).collect()
    };
    let removed = at_leaver(|o| *o == Output::Event(Event::Epoch(EpochEvent::Removed)));
    let cancels = at_leaver(|o| matches!(o, Output::Cancel { .. }));
    assert_eq!((removed.len(), cancels.len()), (1, 1), "removed {removed:?}, cancels {cancels:?}");
    let last_lease = net
        .trace
        .iter()
        .filter(|(t, at, _)| *at == leaver && *t <= removed[0])
        .filter_map(|(_, _, o)| match o {
            Output::Event(Event::Epoch(EpochEvent::LeaseRenewed { lease_end })) => Some(*lease_end),
            _ => None,
        })
        .next_back()
        .expect("a lease before the removal");
    assert!(cancels[0] > removed[0], "cancelled at the removal, not under its last lease");
    assert_eq!(cancels[0] + config.cancel_margin, last_lease);
    assert!(net.nodes[&leaver].has_left(), "the leave ended once the cancelled task went with its resource");
    let runs: Vec<(SocketAddr, bool)> = net.executions.iter().map(|r| (r.node, r.cancelled)).collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs[0] == (leaver, true) && runs[1].0 != leaver && !runs[1].1, "{runs:?}");
    assert_custody_held(&net.executions, 1);
    let replies = client_replies(&net);
    assert!(matches!(&replies[&ClientId(1)][..], [Response::Completed(_)]), "{replies:?}");
}
