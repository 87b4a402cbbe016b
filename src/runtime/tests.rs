//! Runtime tests over real sockets: what a node does with bad input.

use std::net::SocketAddr;
use std::time::Duration;

use crate::engine::wire::{self, FRAME_LEN_MAX, Message, Request, Response};
use crate::{Cluster, Config};

use super::tls::{self, ALPN_CLIENT, ALPN_PEER, SERVER_NAME};

/// How long a test waits for what needs no protocol timer (a counter, a
/// frame, an answer on localhost). Generous: the tests run in parallel on
/// few cores, and a check passes as soon as it holds; only a hang reaches
/// it.
const PROMPT: Duration = Duration::from_secs(30);

/// Connects to `node` as a raw QUIC peer or client with the given ALPN.
async fn raw_connection(node: SocketAddr, alpn: &[u8]) -> (quinn::Endpoint, quinn::Connection) {
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    endpoint.set_default_client_config(tls::client_config(alpn).unwrap());
    let conn = endpoint.connect(node, SERVER_NAME).unwrap().await.unwrap();
    (endpoint, conn)
}

async fn wait_for_stats(node: &Cluster, what: &str, check: impl Fn(&super::Stats) -> bool) -> super::Stats {
    let give_up = tokio::time::Instant::now() + PROMPT;
    loop {
        let stats = node.stats().await.unwrap();
        if check(&stats) {
            return stats;
        }
        assert!(tokio::time::Instant::now() < give_up, "{what}: not counted within {PROMPT:?}; stats {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn garbage_oversized_and_unknown_versions_are_dropped_and_the_node_keeps_serving() {
    let node = Cluster::builder().name("target").config(Config::fast()).start().await.unwrap();
    let addr = node.local_addr();
    let (_endpoint, conn) = raw_connection(addr, ALPN_PEER).await;

    // A datagram of garbage, then one with an unknown protocol version.
    conn.send_datagram(vec![0xde, 0xad, 0xbe, 0xef].into()).unwrap();
    conn.send_datagram(vec![99, 0, 0, 0].into()).unwrap();
    wait_for_stats(&node, "two rejected datagrams", |s| s.engine.inputs_rejected >= 2).await;

    // A frame announcing more than FRAME_LEN_MAX bytes: the stream is
    // stopped before anything is buffered; the connection stays.
    let mut stream = conn.open_uni().await.unwrap();
    let too_big = u32::try_from(FRAME_LEN_MAX + 1).unwrap().to_be_bytes();
    stream.write_all(&too_big).await.unwrap();
    stream.write_all(&[0; 64]).await.unwrap();
    wait_for_stats(&node, "the oversized frame", |s| s.transport.frames_rejected >= 1).await;

    // A well-sized frame of an unknown version on a fresh stream.
    let mut stream = conn.open_uni().await.unwrap();
    let frame = [99u8, wire::KIND_MESSAGE, 0x90];
    stream.write_all(&wire::len_prefix(frame.len())).await.unwrap();
    stream.write_all(&frame).await.unwrap();
    stream.finish().unwrap();
    let stats = wait_for_stats(&node, "the unknown-version frame", |s| s.engine.inputs_rejected >= 3).await;
    assert_eq!(stats.engine.inputs_rejected, 3, "{stats:?}");
    assert!(conn.close_reason().is_none(), "the node closed a connection over bad input");

    // A client that sends an oversized request gets an error answer.
    let (_client_endpoint, client) = raw_connection(addr, ALPN_CLIENT).await;
    let (mut send, mut recv) = client.open_bi().await.unwrap();
    send.write_all(&too_big).await.unwrap();
    let answer = read_answer(&mut recv).await;
    assert!(matches!(&answer, Response::Error(reason) if reason.contains("exceeds the limit")), "{answer:?}");

    // And the node keeps serving.
    let answer = super::request(addr, Request::Members, PROMPT).await.unwrap();
    let Response::Members(members) = answer else { panic!("{answer:?}") };
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].name, "target");
}

async fn read_answer(recv: &mut quinn::RecvStream) -> Response {
    let mut prefix = [0u8; wire::LEN_PREFIX_LEN];
    recv.read_exact(&mut prefix).await.unwrap();
    let mut frame = vec![0; wire::decode_len_prefix(prefix).unwrap()];
    recv.read_exact(&mut frame).await.unwrap();
    match wire::decode_frame(&frame).unwrap() {
        wire::Frame::Message(Message::Response(response)) => response,
        other => panic!("not a response: {other:?}"),
    }
}

#[tokio::test]
async fn a_swim_packet_too_big_for_a_datagram_takes_the_stream() {
    use super::transport::{Counters, Inbound, Transport};
    use std::sync::Arc;
    use tokio::sync::mpsc;

    let localhost = SocketAddr::from(([127, 0, 0, 1], 0));
    let (tx_a, mut inbox_a) = mpsc::channel(16);
    let (tx_b, mut inbox_b) = mpsc::channel(16);
    let counters_a = Arc::new(Counters::default());
    let mut a = Transport::bind(localhost, "a", tx_a, counters_a.clone()).unwrap();
    let b = Transport::bind(localhost, "b", tx_b, Arc::new(Counters::default())).unwrap();
    let b_addr = b.local_addr().unwrap();

    // Larger than any datagram right after a handshake (1162 bytes), within
    // the largest SWIM packet a node accepts.
    let packet = vec![7u8; 1300];
    a.send_datagram(b_addr, wire::encode_datagram(&packet));
    let connected = tokio::time::timeout(PROMPT, inbox_a.recv()).await.expect("a connects");
    let Some(Inbound::Connected { addr, conn }) = connected else { panic!("no connection: {connected:?}") };
    assert_eq!(addr, b_addr);
    assert!(conn.max_datagram_size().is_some_and(|max| max < packet.len() + 1));
    a.install(addr, conn);

    // b accepts the connection, then gets the packet as a SWIM frame.
    let mut b = b;
    loop {
        match tokio::time::timeout(PROMPT, inbox_b.recv()).await.expect("b receives").unwrap() {
            Inbound::Connected { addr, conn } => b.install(addr, conn),
            Inbound::PeerFrame { bytes, .. } => {
                assert_eq!(wire::decode_frame(&bytes).unwrap(), wire::Frame::Swim(&packet[..]));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(counters_a.snapshot().stream_fallbacks, 1);
}
