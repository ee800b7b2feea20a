//! QUIC (`zap+quic://`): quinn with the rustls ring provider.
//!
//! Unlike the byte-stream transports, a QUIC connection multiplexes by
//! itself: the RPC layer opens one bidirectional stream per call
//! (on [`QuicConn::connection`]) and can send
//! unreliable messages as DATAGRAM frames ([`QuicConn::send_datagram`]).
//!
//! TLS is the same as for `zaps://` ([`ServerTls`], [`ClientTls`]): TLS 1.3
//! only, ALPN `zap/1`, hostname verification, optional or required mTLS and
//! optional certificate pinning. 0-RTT is off on both sides (rustls' defaults,
//! checked by a test): early data can be replayed, and calls are not
//! idempotent in general.
//!
//! [`Limits`] map onto QUIC as follows:
//! - `handshake_timeout` bounds connect and the server-side handshake;
//! - `max_concurrent_streams` is the peer's QUIC stream limit for calls
//!   (bidirectional streams; a client that opens more waits for one to end,
//!   QUIC's own flow control for streams);
//! - `keepalive_interval` sends QUIC PINGs, and the QUIC idle timeout (no
//!   packet from the peer) is `keepalive_interval + keepalive_timeout`, so a
//!   dead peer is detected like a missed keepalive answer over TCP (without
//!   keepalive it is `idle_timeout`, or none). `idle_timeout` in the RPC
//!   sense (no calls open) is enforced by the RPC layer;
//! - `max_connections`: a listener over its limit refuses new connections
//!   at once (a QUIC `CONNECTION_REFUSED`), it does not queue them;
//! - `max_frame` is enforced by the RPC layer on each stream.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::{HandshakeData, QuicClientConfig, QuicServerConfig};
use quinn::{Endpoint, IdleTimeout, TransportConfig};
use rustls_pki_types::{CertificateDer, ServerName};

use crate::admission::{Admission, ConnSlots};
use crate::connect::ConnectError;
use crate::limits::Limits;
use crate::stream::{ConnGuard, PeerInfo};
use crate::tls::{ALPN, ClientTls, ServerTls};
use crate::url::{Scheme, Url};

/// Bring-your-own UDP sockets ([`QuicConnector::with_socket`],
/// [`QuicListener::from_socket`]): quinn's socket abstraction and its
/// tokio implementation.
pub use quinn::{AsyncUdpSocket, Runtime, TokioRuntime, UdpPoller, udp};
pub use quinn::{
    Connection as QuicConnection, ConnectionError as QuicConnectionError, ReadError, RecvStream,
    SendDatagramError, SendStream, StoppedError, VarInt, WriteError,
};

/// Per-stream receive window: as a ZAP-RPC stream window over TCP.
const STREAM_WINDOW: u32 = 1 << 20;
/// Per-connection receive window: as a ZAP-RPC connection window.
const CONNECTION_WINDOW: u32 = 16 << 20;

/// QUIC transport parameters from [`Limits`] (see the module docs).
fn transport_config(limits: &Limits) -> TransportConfig {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(limits.max_concurrent_streams));
    // Calls use bidirectional streams; each side opens one unidirectional
    // control stream (docs/PROTOCOL.md §11).
    t.max_concurrent_uni_streams(VarInt::from_u32(1));
    // The ZAP-RPC windows (§7): what one call, and all calls together, may
    // have in flight unread.
    t.stream_receive_window(VarInt::from_u32(STREAM_WINDOW));
    t.receive_window(VarInt::from_u32(CONNECTION_WINDOW));
    let idle = match limits.keepalive_interval {
        Some(every) => Some(every + limits.keepalive_timeout),
        None => limits.idle_timeout,
    };
    t.max_idle_timeout(idle.and_then(|d| IdleTimeout::try_from(d).ok()));
    t.keep_alive_interval(limits.keepalive_interval);
    t
}

/// Opens QUIC connections to `zap+quic://` URLs.
///
/// One UDP socket per address family is bound on first use and shared by
/// every connection this connector (and its clones) makes.
#[derive(Clone)]
pub struct QuicConnector {
    limits: Limits,
    tls: ClientTls,
    config: quinn::ClientConfig,
    endpoints: Arc<Mutex<[Option<Endpoint>; 2]>>,
}

impl fmt::Debug for QuicConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicConnector")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl QuicConnector {
    /// A connector trusting `tls`'s roots (QUIC always runs TLS).
    pub fn new(limits: Limits, tls: ClientTls) -> Result<Self, ConnectError> {
        let crypto = QuicClientConfig::try_from(tls.config())
            .map_err(|e| ConnectError::Quic(format!("TLS config unusable for QUIC: {e}")))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(Arc::new(transport_config(&limits)));
        Ok(Self {
            limits,
            tls,
            config,
            endpoints: Arc::new(Mutex::new([None, None])),
        })
    }

    /// Uses `socket` for connections to its address family instead of
    /// binding one: a socket with options of its own, or one that
    /// simulates a network (the loss tests wrap a UDP socket that drops
    /// datagrams).
    pub fn with_socket(self, socket: Arc<dyn AsyncUdpSocket>) -> io::Result<Self> {
        let v4 = socket.local_addr()?.is_ipv4();
        let endpoint = Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        {
            let mut eps = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
            eps[usize::from(!v4)] = Some(endpoint);
        }
        Ok(self)
    }

    /// The limits this connector applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Connects and completes the handshake within
    /// [`Limits::handshake_timeout`].
    pub async fn connect(&self, url: &Url) -> Result<QuicConn, ConnectError> {
        if url.scheme() != Scheme::Quic {
            return Err(ConnectError::Unsupported(
                "QuicConnector connects zap+quic:// URLs only",
            ));
        }
        tokio::time::timeout(self.limits.handshake_timeout, self.connect_unbounded(url))
            .await
            .unwrap_or(Err(ConnectError::Timeout))
    }

    async fn connect_unbounded(&self, url: &Url) -> Result<QuicConn, ConnectError> {
        let (Some(host), Some(port)) = (url.host(), url.port()) else {
            return Err(ConnectError::Io(io::ErrorKind::InvalidInput.into()));
        };
        let name = match self.tls.server_name_override() {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_owned())
                .map_err(|_| ConnectError::InvalidServerName(host.to_owned()))?,
        };
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(ConnectError::Io)?
            .next()
            .ok_or_else(|| {
                ConnectError::Io(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("`{host}` resolved to no address"),
                ))
            })?;
        let endpoint = self.endpoint(addr)?;
        let name_str = name.to_str();
        let connection = endpoint
            .connect_with(self.config.clone(), addr, &name_str)
            .map_err(|e| ConnectError::Quic(e.to_string()))?
            .await
            .map_err(connection_error)?;
        let mut peer = PeerInfo {
            addr: Some(addr),
            server_name: Some(name_str.into_owned()),
            ..PeerInfo::default()
        };
        check_connection(&connection, &mut peer)?;
        self.tls.check_pins(&peer)?;
        Ok(QuicConn {
            connection,
            peer,
            guard: ConnGuard::new(None),
            accepted_at: None,
        })
    }

    /// The client endpoint for `addr`'s family, bound on first use.
    fn endpoint(&self, addr: SocketAddr) -> Result<Endpoint, ConnectError> {
        let mut eps = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let (slot, bind) = if addr.is_ipv4() {
            (0, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
        } else {
            (1, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
        };
        if let Some(ep) = &eps[slot] {
            return Ok(ep.clone());
        }
        let ep = Endpoint::client(bind).map_err(ConnectError::Io)?;
        eps[slot] = Some(ep.clone());
        Ok(ep)
    }
}

/// The server side's QUIC configuration.
fn server_config(tls: &ServerTls, limits: &Limits) -> io::Result<quinn::ServerConfig> {
    let crypto = QuicServerConfig::try_from(tls.config())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config(limits)));
    // Handshakes not yet taken by `accept` are bounded too.
    config.max_incoming(limits.max_connections.clamp(1, 1 << 16));
    Ok(config)
}

/// A bound `zap+quic://` endpoint taking connections.
pub struct QuicListener {
    endpoint: Endpoint,
    local_url: Url,
    limits: Limits,
    slots: ConnSlots,
}

impl fmt::Debug for QuicListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicListener")
            .field("local_url", &self.local_url)
            .finish_non_exhaustive()
    }
}

impl QuicListener {
    /// Binds the UDP socket of `url` (`zap+quic://host:port`; port 0 picks
    /// one, see [`local_url`](Self::local_url)).
    pub async fn bind(url: &Url, tls: ServerTls, limits: Limits) -> io::Result<Self> {
        if url.scheme() != Scheme::Quic {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "QuicListener binds zap+quic:// URLs only",
            ));
        }
        let (Some(host), Some(port)) = (url.host(), url.port()) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        let addr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host resolved to nothing"))?;
        let endpoint = Endpoint::server(server_config(&tls, &limits)?, addr)?;
        Self::with_endpoint(endpoint, limits)
    }

    /// Listens on `socket` (see [`QuicConnector::with_socket`]).
    pub fn from_socket(
        socket: Arc<dyn AsyncUdpSocket>,
        tls: ServerTls,
        limits: Limits,
    ) -> io::Result<Self> {
        let endpoint = Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            Some(server_config(&tls, &limits)?),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        Self::with_endpoint(endpoint, limits)
    }

    fn with_endpoint(endpoint: Endpoint, limits: Limits) -> io::Result<Self> {
        let local_url = Url::from_socket_addr(Scheme::Quic, endpoint.local_addr()?);
        Ok(Self {
            endpoint,
            local_url,
            slots: ConnSlots::new(&limits),
            limits,
        })
    }

    /// The bound address as a URL (with the real port when bound to 0).
    pub fn local_url(&self) -> Url {
        self.local_url.clone()
    }

    /// The limits this listener applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Connections refused because [`Limits::max_connections`] were open.
    pub fn refused_connections(&self) -> u64 {
        self.slots.refused()
    }

    /// The next connection attempt within the connection limit (attempts
    /// beyond it are refused here, at once). `None` once the endpoint is
    /// closed. Run [`QuicIncoming::handshake`] on a task of its own.
    pub async fn accept(&self) -> Option<QuicIncoming> {
        loop {
            let incoming = self.endpoint.accept().await?;
            let Some(permit) = self.slots.take(Some(incoming.remote_address().ip())) else {
                incoming.refuse();
                continue;
            };
            return Some(QuicIncoming {
                incoming,
                permit,
                handshake_timeout: self.limits.handshake_timeout,
                accepted_at: std::time::Instant::now(),
            });
        }
    }

    /// Closes every connection (with `code` and `reason`) and stops
    /// accepting.
    pub fn close(&self, code: u32, reason: &[u8]) {
        self.endpoint.close(VarInt::from_u32(code), reason);
    }
}

/// A connection attempt accepted by a [`QuicListener`], before its
/// handshake.
pub struct QuicIncoming {
    incoming: quinn::Incoming,
    permit: Admission,
    handshake_timeout: Duration,
    accepted_at: std::time::Instant,
}

impl fmt::Debug for QuicIncoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicIncoming")
            .field("remote", &self.incoming.remote_address())
            .finish_non_exhaustive()
    }
}

impl QuicIncoming {
    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.incoming.remote_address()
    }

    /// Runs the handshake within [`Limits::handshake_timeout`].
    pub async fn handshake(self) -> Result<QuicConn, ConnectError> {
        let addr = self.incoming.remote_address();
        let connecting = self.incoming.accept().map_err(connection_error)?;
        let deadline = self.accepted_at + self.handshake_timeout;
        let connection = tokio::time::timeout_at(deadline.into(), connecting)
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(connection_error)?;
        let mut peer = PeerInfo {
            addr: Some(addr),
            ..PeerInfo::default()
        };
        check_connection(&connection, &mut peer)?;
        Ok(QuicConn {
            connection,
            peer,
            guard: ConnGuard::new(Some(self.permit)),
            accepted_at: Some(self.accepted_at),
        })
    }
}

/// An established QUIC connection: streams for calls, datagrams for
/// unreliable messages.
#[derive(Debug)]
pub struct QuicConn {
    /// The quinn connection (cheap to clone).
    pub connection: QuicConnection,
    /// Who the peer is.
    pub peer: PeerInfo,
    guard: ConnGuard,
    accepted_at: Option<std::time::Instant>,
}

impl QuicConn {
    /// When the listener took the connection attempt (server side; `None`
    /// on a client): deadlines for the peer's first frames count from here.
    pub fn accepted_at(&self) -> Option<std::time::Instant> {
        self.accepted_at
    }

    /// Splits into the connection, the peer and the guard that holds the
    /// listener's connection slot until dropped.
    pub fn into_parts(self) -> (QuicConnection, PeerInfo, ConnGuard) {
        (self.connection, self.peer, self.guard)
    }

    /// The largest datagram [`send_datagram`](Self::send_datagram) takes
    /// now (it follows the path MTU); `None` if the peer does not accept
    /// datagrams.
    pub fn max_datagram_size(&self) -> Option<usize> {
        self.connection.max_datagram_size()
    }

    /// Sends `message` as one unreliable, unordered DATAGRAM frame. See
    /// [`send_datagram`] for what is guaranteed.
    pub fn send_datagram(&self, message: Bytes) -> Result<(), DatagramError> {
        send_datagram(&self.connection, message)
    }

    /// The next datagram from the peer.
    pub async fn read_datagram(&self) -> Result<Bytes, QuicConnectionError> {
        self.connection.read_datagram().await
    }
}

/// Sends `message` on `connection` as one DATAGRAM frame.
///
/// Guarantees: the message arrives whole or not at all, at most once, in
/// any order relative to other datagrams and to calls; datagrams are
/// congestion controlled with the connection, and when the send buffer is
/// full the *oldest* unsent datagrams are dropped. A message larger than
/// [`QuicConnection::max_datagram_size`] is refused here with
/// [`DatagramError::TooLarge`] (never fragmented).
pub fn send_datagram(connection: &QuicConnection, message: Bytes) -> Result<(), DatagramError> {
    let size = message.len();
    match connection.max_datagram_size() {
        None => return Err(DatagramError::Unsupported),
        Some(max) if size > max => return Err(DatagramError::TooLarge { size, max }),
        Some(_) => {}
    }
    connection.send_datagram(message).map_err(|e| match e {
        SendDatagramError::UnsupportedByPeer | SendDatagramError::Disabled => {
            DatagramError::Unsupported
        }
        SendDatagramError::TooLarge => DatagramError::TooLarge {
            size,
            max: connection.max_datagram_size().unwrap_or(0),
        },
        SendDatagramError::ConnectionLost(e) => DatagramError::Closed(e),
    })
}

/// Why a datagram was not sent.
#[non_exhaustive]
#[derive(Debug)]
pub enum DatagramError {
    /// The message is larger than the connection's current maximum.
    TooLarge {
        /// The message's size.
        size: usize,
        /// The largest datagram the connection takes now.
        max: usize,
    },
    /// The peer does not accept datagrams.
    Unsupported,
    /// The connection is closed.
    Closed(QuicConnectionError),
}

impl fmt::Display for DatagramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { size, max } => write!(
                f,
                "datagram of {size} bytes exceeds the connection's current maximum of {max} bytes"
            ),
            Self::Unsupported => f.write_str("the peer does not accept datagrams"),
            Self::Closed(e) => write!(f, "connection closed: {e}"),
        }
    }
}

impl std::error::Error for DatagramError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Closed(e) => Some(e),
            _ => None,
        }
    }
}

/// Checks ALPN and records the peer's certificates.
fn check_connection(c: &QuicConnection, peer: &mut PeerInfo) -> Result<(), ConnectError> {
    let alpn = c
        .handshake_data()
        .and_then(|d| d.downcast::<HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() != Some(ALPN) {
        c.close(VarInt::from_u32(0), b"ALPN zap/1 required");
        return Err(ConnectError::Alpn);
    }
    peer.alpn = alpn;
    peer.certificates = c
        .peer_identity()
        .and_then(|i| i.downcast::<Vec<CertificateDer<'static>>>().ok())
        .map(|certs| *certs)
        .unwrap_or_default();
    Ok(())
}

/// A failed QUIC handshake as a [`ConnectError`]: TLS alerts become
/// [`ConnectError::Tls`], the rest [`ConnectError::Quic`].
fn connection_error(e: QuicConnectionError) -> ConnectError {
    // QUIC carries TLS alerts as the transport error codes 0x100-0x1ff.
    let is_crypto = |code: quinn::TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
    match &e {
        QuicConnectionError::TransportError(t) if is_crypto(t.code) => {
            ConnectError::Tls(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
        }
        QuicConnectionError::ConnectionClosed(c) if is_crypto(c.error_code) => {
            ConnectError::Tls(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
        }
        QuicConnectionError::TimedOut => ConnectError::Timeout,
        _ => ConnectError::Quic(e.to_string()),
    }
}
