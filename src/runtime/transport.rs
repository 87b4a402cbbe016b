//! QUIC transport: one endpoint (one UDP port) per node, serving peers and
//! clients.
//!
//! * SWIM packets travel as QUIC datagrams; a packet larger than the
//!   connection's datagram limit goes as a frame on the ordered stream
//!   instead.
//! * Peer frames travel on one unidirectional stream per connection and
//!   direction, each frame behind a 4-byte length.
//! * Clients (the CLI) connect with their own ALPN and send one request per
//!   bidirectional stream.
//!
//! Connections are opened on demand and cached per peer address. The newest
//! established connection to an address wins (a restarted peer cannot reset
//! the old one: its reset key is new); the older one serves reads until its
//! idle timeout. A connection to a member that went down is closed.
//!
//! The `Transport` is owned by the driver task; the tasks it spawns report
//! back through the driver's inbox.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, Endpoint, RecvStream, SendDatagramError, SendStream};
use tokio::sync::{mpsc, oneshot};

use super::Error;
use super::tls::{self, ALPN_CLIENT, ALPN_PEER, SERVER_NAME};
use crate::engine::wire::{self, LEN_PREFIX_LEN, Message, Response};

/// Longest a QUIC handshake may take before the attempt is given up. A dead
/// or not-yet-started peer never answers; quinn would retry for the whole
/// idle timeout.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Packets and frames queued for a peer while its connection is being set
/// up. Past it, new ones are dropped (SWIM tolerates loss; peer messages are
/// retried by their senders).
pub const PENDING_PER_PEER_MAX: usize = 32;

/// Frames queued for one peer's stream writer. Past it, new frames are
/// dropped and counted.
pub const FRAMES_QUEUED_PER_PEER_MAX: usize = 1024;

/// Connections the endpoint holds at once; more incoming ones are refused.
pub const CONNECTIONS_MAX: usize = 4096;

/// How long a client's request may take to arrive, and its answer to come.
pub const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client stream waits for the node's answer once the request
/// is in: a submit that waits for its task's outcome can take long (the
/// engine itself gives up after [`crate::engine::custody::OUTCOME_TIMEOUT`]).
pub const CLIENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(crate::engine::custody::OUTCOME_TIMEOUT.as_secs() + 60);

/// What the transport's tasks report to the driver.
#[derive(Debug)]
pub(crate) enum Inbound {
    Datagram { from: SocketAddr, bytes: Bytes },
    PeerFrame { from: SocketAddr, bytes: Vec<u8> },
    ClientFrame { reply: oneshot::Sender<Vec<u8>>, bytes: Vec<u8> },
    Connected { addr: SocketAddr, conn: Connection },
    ConnectFailed { addr: SocketAddr, error: String },
    Closed { addr: SocketAddr, stable_id: usize },
}

/// Counters of what the transport dropped or worked around.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    datagrams_dropped: AtomicU64,
    frames_dropped: AtomicU64,
    frames_rejected: AtomicU64,
    stream_fallbacks: AtomicU64,
    handshakes_failed: AtomicU64,
}

/// A snapshot of the transport's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Datagrams dropped: inbox full, peer unreachable or queue full.
    pub datagrams_dropped: u64,
    /// Outgoing frames dropped because a peer's queue was full.
    pub frames_dropped: u64,
    /// Incoming frames rejected before reaching the engine (oversized or cut
    /// short).
    pub frames_rejected: u64,
    /// SWIM packets sent on a stream because they exceeded the datagram
    /// limit.
    pub stream_fallbacks: u64,
    /// Handshakes that failed or timed out.
    pub handshakes_failed: u64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> TransportStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStats {
            datagrams_dropped: get(&self.datagrams_dropped),
            frames_dropped: get(&self.frames_dropped),
            frames_rejected: get(&self.frames_rejected),
            stream_fallbacks: get(&self.stream_fallbacks),
            handshakes_failed: get(&self.handshakes_failed),
        }
    }
}

enum Pending {
    Datagram(Vec<u8>),
    Frame(Vec<u8>),
}

enum Slot {
    Connecting(Vec<Pending>),
    Ready(Peer),
}

/// An established connection to a peer and the queue of its frame writer.
struct Peer {
    conn: Connection,
    frames: mpsc::Sender<Vec<u8>>,
}

/// The node's QUIC endpoint and its connection cache.
pub(crate) struct Transport {
    endpoint: Endpoint,
    peer_client: quinn::ClientConfig,
    peers: HashMap<SocketAddr, Slot>,
    inbox: mpsc::Sender<Inbound>,
    counters: Arc<Counters>,
}

impl Transport {
    /// Binds the endpoint and starts accepting connections.
    pub(crate) fn bind(
        listen: SocketAddr,
        node_name: &str,
        inbox: mpsc::Sender<Inbound>,
        counters: Arc<Counters>,
    ) -> Result<Transport, Error> {
        let server = tls::server_config(node_name)?;
        let endpoint = Endpoint::server(server, listen).map_err(|source| Error::Bind { addr: listen, source })?;
        tokio::spawn(accept_loop(endpoint.clone(), inbox.clone(), counters.clone()));
        Ok(Transport { endpoint, peer_client: tls::client_config(ALPN_PEER)?, peers: HashMap::new(), inbox, counters })
    }

    /// The address the endpoint is bound to.
    pub(crate) fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.endpoint.local_addr().map_err(|e| Error::Io(e.to_string()))
    }

    /// Sends a SWIM datagram, connecting first if needed.
    pub(crate) fn send_datagram(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        self.send(to, Pending::Datagram(bytes));
    }

    /// Sends a frame on the peer's ordered stream, connecting first if
    /// needed.
    pub(crate) fn send_frame(&mut self, to: SocketAddr, frame: Vec<u8>) {
        self.send(to, Pending::Frame(frame));
    }

    fn send(&mut self, to: SocketAddr, item: Pending) {
        match self.peers.get_mut(&to) {
            Some(Slot::Ready(peer)) => peer.send(item, &self.counters),
            Some(Slot::Connecting(queue)) => queue_pending(queue, item, &self.counters),
            None => {
                if self.connect(to) {
                    self.peers.insert(to, Slot::Connecting(vec![item]));
                } else {
                    Counters::bump(&self.counters.datagrams_dropped);
                }
            }
        }
    }

    fn connect(&self, addr: SocketAddr) -> bool {
        let connecting = match self.endpoint.connect_with(self.peer_client.clone(), addr, SERVER_NAME) {
            Ok(connecting) => connecting,
            Err(e) => {
                tracing::warn!(peer = %addr, error = %e, "cannot connect");
                return false;
            }
        };
        let inbox = self.inbox.clone();
        let counters = self.counters.clone();
        tokio::spawn(async move {
            let report = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
                Ok(Ok(conn)) => Inbound::Connected { addr, conn },
                Ok(Err(e)) => {
                    Counters::bump(&counters.handshakes_failed);
                    Inbound::ConnectFailed { addr, error: e.to_string() }
                }
                Err(_) => {
                    Counters::bump(&counters.handshakes_failed);
                    Inbound::ConnectFailed { addr, error: format!("no handshake within {HANDSHAKE_TIMEOUT:?}") }
                }
            };
            let _ = inbox.send(report).await;
        });
        true
    }

    /// An established connection, inbound or outbound, becomes the one used
    /// for `addr` (newest wins), and what was queued for it is sent.
    pub(crate) fn install(&mut self, addr: SocketAddr, conn: Connection) {
        tracing::debug!(peer = %addr, id = conn.stable_id(), "connection established");
        spawn_peer_readers(conn.clone(), addr, self.inbox.clone(), self.counters.clone());
        let mut peer = Peer::start(conn);
        if let Some(Slot::Connecting(queue)) = self.peers.remove(&addr) {
            for item in queue {
                peer.send(item, &self.counters);
            }
        }
        self.peers.insert(addr, Slot::Ready(peer));
    }

    /// A connection attempt failed: what was queued for it is dropped.
    pub(crate) fn connect_failed(&mut self, addr: SocketAddr, error: &str) {
        if let Some(Slot::Connecting(queue)) = self.peers.get(&addr) {
            tracing::debug!(peer = %addr, %error, dropped = queue.len(), "connection failed");
            self.peers.remove(&addr);
        }
    }

    /// A connection ended; forget it unless a newer one replaced it.
    pub(crate) fn closed(&mut self, addr: SocketAddr, stable_id: usize) {
        if let Some(Slot::Ready(peer)) = self.peers.get(&addr)
            && peer.conn.stable_id() == stable_id
        {
            self.peers.remove(&addr);
        }
    }

    /// Closes the connection to a member that went down.
    pub(crate) fn close_peer(&mut self, addr: SocketAddr) {
        if let Some(Slot::Ready(peer)) = self.peers.remove(&addr) {
            peer.conn.close(0u32.into(), b"member down");
        }
    }

    /// Closes every connection and waits (boundedly) for the close to reach
    /// the peers.
    pub(crate) async fn shutdown(self, reason: &'static str) {
        self.endpoint.close(0u32.into(), reason.as_bytes());
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    /// Waits until what was handed to QUIC has likely left: datagrams are
    /// sent on the endpoint's next transmit, so a short bounded pause is
    /// enough on any working network.
    pub(crate) async fn flush(&self) {
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn queue_pending(queue: &mut Vec<Pending>, item: Pending, counters: &Counters) {
    if queue.len() < PENDING_PER_PEER_MAX {
        queue.push(item);
    } else {
        match item {
            Pending::Datagram(_) => Counters::bump(&counters.datagrams_dropped),
            Pending::Frame(_) => Counters::bump(&counters.frames_dropped),
        }
    }
}

impl Peer {
    fn start(conn: Connection) -> Peer {
        let (frames, queue) = mpsc::channel(FRAMES_QUEUED_PER_PEER_MAX);
        tokio::spawn(write_frames(conn.clone(), queue));
        Peer { conn, frames }
    }

    fn send(&mut self, item: Pending, counters: &Counters) {
        match item {
            Pending::Datagram(bytes) => {
                let fits = self.conn.max_datagram_size().is_some_and(|max| bytes.len() <= max);
                if fits {
                    match self.conn.send_datagram(Bytes::from(bytes.clone())) {
                        Ok(()) => return,
                        Err(SendDatagramError::ConnectionLost(_)) => {
                            Counters::bump(&counters.datagrams_dropped);
                            return;
                        }
                        // The path MTU shrank under us: use the stream.
                        Err(_) => {}
                    }
                }
                match wire::datagram_to_frame(&bytes) {
                    Ok(frame) => {
                        Counters::bump(&counters.stream_fallbacks);
                        self.push_frame(frame, counters);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot send SWIM packet as a frame");
                        Counters::bump(&counters.datagrams_dropped);
                    }
                }
            }
            Pending::Frame(frame) => self.push_frame(frame, counters),
        }
    }

    fn push_frame(&mut self, frame: Vec<u8>, counters: &Counters) {
        if self.frames.try_send(frame).is_err() {
            Counters::bump(&counters.frames_dropped);
        }
    }
}

/// Writes queued frames, in order, on one unidirectional stream opened on
/// first use.
async fn write_frames(conn: Connection, mut queue: mpsc::Receiver<Vec<u8>>) {
    let mut stream: Option<SendStream> = None;
    while let Some(frame) = queue.recv().await {
        if stream.is_none() {
            match conn.open_uni().await {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot open frame stream");
                    return;
                }
            }
        }
        let s = stream.as_mut().expect("opened above");
        if let Err(e) = write_frame(s, &frame).await {
            tracing::debug!(error = %e, "frame stream closed");
            return;
        }
    }
    if let Some(mut s) = stream {
        let _ = s.finish();
    }
}

async fn write_frame(stream: &mut SendStream, frame: &[u8]) -> Result<(), quinn::WriteError> {
    stream.write_all(&wire::len_prefix(frame.len())).await?;
    stream.write_all(frame).await
}

/// Why reading a frame from a stream stopped.
enum ReadFrame {
    /// The stream ended cleanly between frames.
    End,
    /// The stream broke (reset, connection lost, ended inside a frame).
    Broken(String),
    /// The peer announced a frame over the limit.
    TooBig(wire::WireError),
}

/// Reads one length-prefixed frame. The length is checked before anything
/// is buffered.
async fn read_frame(stream: &mut RecvStream) -> Result<Vec<u8>, ReadFrame> {
    let mut prefix = [0u8; LEN_PREFIX_LEN];
    match stream.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Err(ReadFrame::End),
        Err(e) => return Err(ReadFrame::Broken(e.to_string())),
    }
    let len = wire::decode_len_prefix(prefix).map_err(ReadFrame::TooBig)?;
    let mut frame = vec![0u8; len];
    stream.read_exact(&mut frame).await.map_err(|e| ReadFrame::Broken(e.to_string()))?;
    Ok(frame)
}

/// Code sent when a stream is stopped because a frame broke the rules.
const STOP_BAD_FRAME: u32 = 1;

fn spawn_peer_readers(conn: Connection, addr: SocketAddr, inbox: mpsc::Sender<Inbound>, counters: Arc<Counters>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                datagram = conn.read_datagram() => match datagram {
                    Ok(bytes) => {
                        // Datagrams are lossy anyway: drop rather than wait
                        // when the driver is behind.
                        if inbox.try_send(Inbound::Datagram { from: addr, bytes }).is_err() {
                            Counters::bump(&counters.datagrams_dropped);
                        }
                    }
                    Err(_) => break,
                },
                stream = conn.accept_uni() => match stream {
                    Ok(stream) => {
                        tokio::spawn(read_peer_frames(stream, addr, inbox.clone(), counters.clone()));
                    }
                    Err(_) => break,
                },
            }
        }
        let _ = inbox.send(Inbound::Closed { addr, stable_id: conn.stable_id() }).await;
    });
}

async fn read_peer_frames(
    mut stream: RecvStream,
    from: SocketAddr,
    inbox: mpsc::Sender<Inbound>,
    counters: Arc<Counters>,
) {
    loop {
        match read_frame(&mut stream).await {
            Ok(bytes) => {
                // Reliable frames wait for room: back-pressure flows to the
                // sender through QUIC flow control.
                if inbox.send(Inbound::PeerFrame { from, bytes }).await.is_err() {
                    return;
                }
            }
            Err(ReadFrame::End) => return,
            Err(ReadFrame::Broken(e)) => {
                tracing::debug!(peer = %from, error = %e, "peer stream ended");
                return;
            }
            Err(ReadFrame::TooBig(e)) => {
                Counters::bump(&counters.frames_rejected);
                tracing::warn!(peer = %from, error = %e, "rejected a frame; stopping that stream");
                let _ = stream.stop(STOP_BAD_FRAME.into());
                return;
            }
        }
    }
}

async fn accept_loop(endpoint: Endpoint, inbox: mpsc::Sender<Inbound>, counters: Arc<Counters>) {
    while let Some(incoming) = endpoint.accept().await {
        if endpoint.open_connections() >= CONNECTIONS_MAX {
            tracing::warn!(remote = %incoming.remote_address(), "refusing a connection: {CONNECTIONS_MAX} open");
            incoming.refuse();
            continue;
        }
        let inbox = inbox.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.accept() {
                Ok(connecting) => tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await,
                Err(e) => Ok(Err(e)),
            };
            let conn = match conn {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    Counters::bump(&counters.handshakes_failed);
                    tracing::debug!(%remote, error = %e, "incoming handshake failed");
                    return;
                }
                Err(_) => {
                    Counters::bump(&counters.handshakes_failed);
                    tracing::debug!(%remote, "incoming handshake timed out");
                    return;
                }
            };
            match tls::negotiated_alpn(&conn).as_deref() {
                // With one socket per node, an accepted peer connection's
                // remote address is the peer's listening address.
                Some(ALPN_PEER) => {
                    let _ = inbox.send(Inbound::Connected { addr: remote, conn }).await;
                }
                Some(ALPN_CLIENT) => serve_client(conn, inbox, counters).await,
                _ => conn.close(0u32.into(), b"unknown protocol"),
            }
        });
    }
}

/// Serves a client connection: each bidirectional stream carries one
/// request frame and gets one answer frame.
async fn serve_client(conn: Connection, inbox: mpsc::Sender<Inbound>, counters: Arc<Counters>) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(serve_client_request(send, recv, inbox.clone(), counters.clone()));
    }
}

async fn serve_client_request(
    mut send: SendStream,
    mut recv: RecvStream,
    inbox: mpsc::Sender<Inbound>,
    counters: Arc<Counters>,
) {
    let answer = match tokio::time::timeout(CLIENT_REQUEST_TIMEOUT, read_frame(&mut recv)).await {
        Ok(Ok(bytes)) => {
            let (reply, answer) = oneshot::channel();
            if inbox.send(Inbound::ClientFrame { reply, bytes }).await.is_err() {
                error_frame("the node is stopping")
            } else {
                match tokio::time::timeout(CLIENT_ANSWER_TIMEOUT, answer).await {
                    Ok(Ok(frame)) => frame,
                    Ok(Err(_)) => error_frame("the node rejected the request (see its log)"),
                    Err(_) => error_frame("the node did not answer in time"),
                }
            }
        }
        Ok(Err(ReadFrame::TooBig(e))) => {
            Counters::bump(&counters.frames_rejected);
            tracing::warn!(error = %e, "rejected a client frame");
            let _ = recv.stop(STOP_BAD_FRAME.into());
            error_frame(&e.to_string())
        }
        Ok(Err(ReadFrame::End | ReadFrame::Broken(_))) => {
            Counters::bump(&counters.frames_rejected);
            return;
        }
        Err(_) => error_frame("no request within the time limit"),
    };
    if write_frame(&mut send, &answer).await.is_ok() {
        let _ = send.finish();
        // Let the answer reach the client before the stream is dropped.
        let _ = tokio::time::timeout(CLIENT_REQUEST_TIMEOUT, send.stopped()).await;
    }
}

fn error_frame(reason: &str) -> Vec<u8> {
    wire::encode_message(&Message::Response(Response::Error(reason.to_string())))
        .expect("a short error message encodes")
}

/// Sends one request to the node at `node` and returns its answer. Opens a
/// connection for it; to send many, keep a [`Client`].
pub async fn request(node: SocketAddr, request: wire::Request, timeout: Duration) -> Result<Response, Error> {
    let client = tokio::time::timeout(timeout, Client::connect(node))
        .await
        .map_err(|_| Error::Timeout { addr: node, after: timeout })??;
    let answer = client.request(request, timeout).await;
    client.close().await;
    answer
}

/// A client connection to one node: requests go on it concurrently, one
/// stream each, and it stays open (with keep-alive) between them.
#[derive(Debug, Clone)]
pub struct Client {
    node: SocketAddr,
    endpoint: Endpoint,
    conn: Connection,
}

impl Client {
    /// Connects to the node at `node` (within [`HANDSHAKE_TIMEOUT`]).
    pub async fn connect(node: SocketAddr) -> Result<Client, Error> {
        let bind: SocketAddr = if node.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let mut endpoint = Endpoint::client(bind).map_err(|source| Error::Bind { addr: bind, source })?;
        endpoint.set_default_client_config(tls::client_config(ALPN_CLIENT)?);
        let connecting =
            endpoint.connect(node, SERVER_NAME).map_err(|e| Error::Connect { addr: node, reason: e.to_string() })?;
        let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(Error::Connect { addr: node, reason: e.to_string() }),
            Err(_) => return Err(Error::Timeout { addr: node, after: HANDSHAKE_TIMEOUT }),
        };
        Ok(Client { node, endpoint, conn })
    }

    /// The node's address.
    pub fn node(&self) -> SocketAddr {
        self.node
    }

    /// Sends one request and waits up to `timeout` for its answer.
    pub async fn request(&self, request: wire::Request, timeout: Duration) -> Result<Response, Error> {
        let node = self.node;
        let broken = |e: String| Error::Connect { addr: node, reason: e };
        let exchange = async {
            let (mut send, mut recv) = self.conn.open_bi().await.map_err(|e| broken(e.to_string()))?;
            let frame = wire::encode_message(&Message::Request(request))?;
            write_frame(&mut send, &frame).await.map_err(|e| broken(e.to_string()))?;
            let _ = send.finish();
            let answer = match read_frame(&mut recv).await {
                Ok(bytes) => bytes,
                Err(ReadFrame::TooBig(e)) => return Err(Error::Wire(e)),
                Err(ReadFrame::End | ReadFrame::Broken(_)) => {
                    return Err(broken("the node closed the stream without answering".into()));
                }
            };
            match wire::decode_frame(&answer)? {
                wire::Frame::Message(Message::Response(response)) => Ok(response),
                _ => Err(Error::UnexpectedAnswer),
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout { addr: node, after: timeout }),
        }
    }

    /// Closes the connection, telling the node.
    pub async fn close(&self) {
        self.conn.close(0u32.into(), b"done");
        self.endpoint.close(0u32.into(), b"done");
    }
}
