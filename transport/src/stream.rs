//! The byte stream a connection runs over, and what is known about its peer.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
#[cfg(unix)]
use tokio::net::UnixStream;

use crate::admission::Admission;

/// An established, authenticated (for TLS) byte stream.
///
/// Every variant is `Unpin`; reads and writes delegate to the inner stream.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP (`zap://`), `TCP_NODELAY` set.
    Tcp(TcpStream),
    /// A Unix domain socket (`zap+unix://`).
    #[cfg(unix)]
    Unix(UnixStream),
    /// The client side of TLS 1.3 over TCP (`zaps://`).
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// The server side of TLS 1.3 over TCP (`zaps://`).
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => $e,
            #[cfg(unix)]
            Stream::Unix($s) => $e,
            Stream::TlsClient($s) => $e,
            Stream::TlsServer($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            #[cfg(unix)]
            Self::Unix(s) => s.is_write_vectored(),
            Self::TlsClient(s) => s.is_write_vectored(),
            Self::TlsServer(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// What the transport knows about the other end of a [`Conn`].
#[derive(Clone, Debug, Default)]
pub struct PeerInfo {
    /// The peer's socket address (TCP and TLS).
    pub addr: Option<SocketAddr>,
    /// The socket file the connection runs over (Unix): the path connected
    /// to on the client, the listener's path on the server.
    pub unix_path: Option<PathBuf>,
    /// The peer's certificate chain, end-entity first, as presented and
    /// verified during the TLS handshake. Empty without TLS, and on a server
    /// whose client presented no certificate.
    pub certificates: Vec<CertificateDer<'static>>,
    /// The negotiated ALPN protocol under TLS: [`ALPN`](crate::ALPN), or
    /// [`ALPN_H2`](crate::ALPN_H2) on a server that offered it.
    pub alpn: Option<Vec<u8>>,
    /// The TLS server name: the name verified on the client, the SNI the
    /// client sent on the server (`None` when it connected by IP address).
    pub server_name: Option<String>,
}

impl PeerInfo {
    /// The peer's end-entity certificate, if it presented one.
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.certificates.first()
    }
}

/// An established connection: the stream, its peer, and (on a server) the
/// connection slot it holds.
#[derive(Debug)]
pub struct Conn {
    /// The byte stream.
    pub stream: Stream,
    /// Facts about the peer.
    pub peer: PeerInfo,
    guard: ConnGuard,
    accepted_at: Option<std::time::Instant>,
}

impl Conn {
    pub(crate) fn new(stream: Stream, peer: PeerInfo, admission: Option<Admission>) -> Self {
        Self {
            stream,
            peer,
            guard: ConnGuard {
                _admission: admission,
            },
            accepted_at: None,
        }
    }

    pub(crate) fn with_accepted_at(mut self, at: std::time::Instant) -> Self {
        self.accepted_at = Some(at);
        self
    }

    /// When the listener accepted the socket (server side; `None` on a
    /// client). Deadlines for what a new peer must send first, such as
    /// [`Limits::handshake_timeout`](crate::Limits::handshake_timeout),
    /// count from here, so time spent in the TLS handshake counts too.
    pub fn accepted_at(&self) -> Option<std::time::Instant> {
        self.accepted_at
    }

    /// Splits the connection; keep the [`ConnGuard`] alive as long as the
    /// stream is in use, so the listener counts the connection.
    pub fn into_parts(self) -> (Stream, PeerInfo, ConnGuard) {
        (self.stream, self.peer, self.guard)
    }
}

/// Holds a [`Listener`](crate::Listener) connection slot
/// ([`Limits::max_connections`](crate::Limits::max_connections)); dropping it
/// frees the slot. Client connections hold no slot.
#[derive(Debug)]
pub struct ConnGuard {
    _admission: Option<Admission>,
}

impl ConnGuard {
    #[cfg_attr(not(feature = "quic"), allow(dead_code))]
    pub(crate) fn new(admission: Option<Admission>) -> Self {
        Self {
            _admission: admission,
        }
    }
}
