//! Certificates and TLS configuration: every piece of certificate handling
//! lives here.
//!
//! For now each node makes a self-signed certificate at start and peers do
//! not verify each other's certificates: the transport is encrypted but
//! **unauthenticated**, so anyone who can reach a node's port can join the
//! cluster. Handshake signatures are still checked. Mutual TLS from a
//! cluster CA replaces this in the security work; only this module changes.

use std::sync::{Arc, Once};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

use super::Error;

/// The TLS server name every node presents and every peer asks for.
pub(crate) const SERVER_NAME: &str = "custody.cluster";

/// ALPN of node-to-node connections: SWIM datagrams and peer frames.
pub(crate) const ALPN_PEER: &[u8] = b"custody-peer/1";
/// ALPN of client connections (the CLI): one request per bidirectional
/// stream.
pub(crate) const ALPN_CLIENT: &[u8] = b"custody-client/1";

/// How long a connection may stay silent before it is dropped. Short, so
/// connections to crashed peers and duplicate connections go away soon.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent unidirectional streams a peer may open (one ordered frame
/// stream per connection, plus stream-carried SWIM packets in flight).
pub(crate) const UNI_STREAMS_MAX: u32 = 64;
/// Concurrent bidirectional streams (client requests) per connection: a
/// load generator keeps many submits in flight on one connection.
pub(crate) const BIDI_STREAMS_MAX: u32 = 1024;
/// How often a client connection pings while it waits for answers (a
/// submit waiting for its task's outcome may be silent for long).
pub(crate) const CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(3);
/// Bytes of received datagrams a connection buffers before dropping.
pub(crate) const DATAGRAM_RECV_BUFFER: usize = 1 << 20;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport_config(keep_alive: Option<Duration>) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("10 s is a valid idle timeout")));
    // No keep-alive between nodes: SWIM traffic keeps live pairs warm, and
    // keep-alive would keep duplicate connections alive forever. Clients
    // keep theirs alive while they wait.
    t.keep_alive_interval(keep_alive);
    t.max_concurrent_uni_streams(UNI_STREAMS_MAX.into());
    t.max_concurrent_bidi_streams(BIDI_STREAMS_MAX.into());
    t.datagram_receive_buffer_size(Some(DATAGRAM_RECV_BUFFER));
    Arc::new(t)
}

fn warn_unauthenticated() {
    static WARN: Once = Once::new();
    WARN.call_once(|| {
        tracing::warn!(
            "the transport is encrypted but unauthenticated: peer certificates are self-signed \
             and not verified, so anyone who can reach this port can join. Run custody only on \
             a trusted network."
        );
    });
}

/// The server side: a fresh self-signed certificate, both ALPNs.
pub(crate) fn server_config(node_name: &str) -> Result<quinn::ServerConfig, Error> {
    warn_unauthenticated();
    let mut names = vec![SERVER_NAME.to_string()];
    if !node_name.is_empty() && node_name != SERVER_NAME {
        names.push(node_name.to_string());
    }
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| Error::Tls(e.to_string()))?;
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN_PEER.to_vec(), ALPN_CLIENT.to_vec()];
    tls.max_early_data_size = 0;
    let quic = QuicServerConfig::try_from(tls).map_err(|e| Error::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport_config(None));
    Ok(config)
}

/// The client side of a connection with the given ALPN.
pub(crate) fn client_config(alpn: &[u8]) -> Result<quinn::ClientConfig, Error> {
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| Error::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let keep_alive = (alpn == ALPN_CLIENT).then_some(CLIENT_KEEP_ALIVE);
    config.transport_config(transport_config(keep_alive));
    Ok(config)
}

/// The ALPN a connection negotiated.
pub(crate) fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    let data = conn.handshake_data()?;
    let data = data.downcast::<quinn::crypto::rustls::HandshakeData>().ok()?;
    data.protocol
}

/// Accepts any server certificate, but still checks that the server holds
/// the certificate's key (the handshake signature). Until the security
/// work: see the module docs.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
