//! The client side: URL in, established [`Conn`] out.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::limits::Limits;
use crate::stream::{Conn, PeerInfo, Stream};
use crate::tls::ClientTls;
use crate::url::{Scheme, Url};

/// Opens connections to zap URLs.
///
/// `zap://` is plain TCP and never does TLS; `zaps://` requires a
/// [`ClientTls`] (see [`with_tls`](Self::with_tls)); `zap+unix://` connects
/// to a Unix socket. TCP sockets get `TCP_NODELAY`. The whole connect, TLS
/// handshake included, is bounded by [`Limits::handshake_timeout`].
///
/// A `Connector` is also a [`tower_service::Service<Url>`], so it can be
/// wrapped in tower layers (timeouts, retries, concurrency limits).
///
/// Under TLS 1.3 a client finishes its handshake before the server has
/// checked the client certificate: a server that refuses this client's
/// certificate shows up as an error on the first read, not from `connect`.
#[derive(Clone, Debug, Default)]
pub struct Connector {
    limits: Limits,
    tls: Option<ClientTls>,
}

impl Connector {
    /// A connector without TLS configuration (`zaps://` URLs fail with
    /// [`ConnectError::NoTlsConfig`] until [`with_tls`](Self::with_tls)).
    pub fn new(limits: Limits) -> Self {
        Self { limits, tls: None }
    }

    /// Uses `tls` for `zaps://` URLs.
    #[must_use]
    pub fn with_tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The limits this connector applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Connects to `url` and, for `zaps://`, completes the TLS handshake and
    /// checks that ALPN `zap/1` was negotiated.
    pub async fn connect(&self, url: &Url) -> Result<Conn, ConnectError> {
        if url.scheme() == Scheme::Tls && self.tls.is_none() {
            return Err(ConnectError::NoTlsConfig);
        }
        tokio::time::timeout(self.limits.handshake_timeout, self.connect_unbounded(url))
            .await
            .unwrap_or(Err(ConnectError::Timeout))
    }

    async fn connect_unbounded(&self, url: &Url) -> Result<Conn, ConnectError> {
        match url.scheme() {
            Scheme::Tcp => {
                let (tcp, peer) = connect_tcp(url).await?;
                Ok(Conn::new(Stream::Tcp(tcp), peer, None))
            }
            Scheme::Tls => {
                let tls = self.tls.as_ref().ok_or(ConnectError::NoTlsConfig)?;
                self.connect_tls(tls, url).await
            }
            Scheme::Unix => connect_unix(url).await,
            Scheme::Quic => Err(ConnectError::Unsupported(
                "zap+quic:// URLs are connected by QuicConnector (feature `quic`)",
            )),
        }
    }

    async fn connect_tls(&self, tls: &ClientTls, url: &Url) -> Result<Conn, ConnectError> {
        let name = match tls.server_name_override() {
            Some(name) => name.clone(),
            None => {
                let host = url.host().unwrap_or_default();
                ServerName::try_from(host.to_owned())
                    .map_err(|_| ConnectError::InvalidServerName(host.to_owned()))?
            }
        };
        let (tcp, mut peer) = connect_tcp(url).await?;
        let stream = TlsConnector::from(tls.config())
            .connect(name.clone(), tcp)
            .await
            .map_err(ConnectError::Tls)?;
        crate::tls::check_session(stream.get_ref().1, &mut peer, false)?;
        tls.check_pins(&peer)?;
        peer.server_name = Some(name.to_str().into_owned());
        Ok(Conn::new(Stream::TlsClient(Box::new(stream)), peer, None))
    }
}

async fn connect_tcp(url: &Url) -> Result<(TcpStream, PeerInfo), ConnectError> {
    let (Some(host), Some(port)) = (url.host(), url.port()) else {
        return Err(ConnectError::Io(io::ErrorKind::InvalidInput.into()));
    };
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(ConnectError::Io)?;
    tcp.set_nodelay(true).map_err(ConnectError::Io)?;
    let peer = PeerInfo {
        addr: Some(tcp.peer_addr().map_err(ConnectError::Io)?),
        ..PeerInfo::default()
    };
    Ok((tcp, peer))
}

#[cfg(unix)]
async fn connect_unix(url: &Url) -> Result<Conn, ConnectError> {
    let path = url
        .path()
        .ok_or_else(|| ConnectError::Io(io::ErrorKind::InvalidInput.into()))?;
    let stream = tokio::net::UnixStream::connect(path)
        .await
        .map_err(ConnectError::Io)?;
    let peer = PeerInfo {
        unix_path: Some(path.to_owned()),
        ..PeerInfo::default()
    };
    Ok(Conn::new(Stream::Unix(stream), peer, None))
}

#[cfg(not(unix))]
async fn connect_unix(_url: &Url) -> Result<Conn, ConnectError> {
    Err(ConnectError::Io(io::Error::new(
        io::ErrorKind::Unsupported,
        "zap+unix:// needs a Unix platform",
    )))
}

impl tower_service::Service<Url> for Connector {
    type Response = Conn;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, ConnectError>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, url: Url) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(&url).await })
    }
}

/// Why a connection could not be established (client side), or why an
/// [`Incoming`](crate::Incoming) handshake failed (server side).
#[non_exhaustive]
#[derive(Debug)]
pub enum ConnectError {
    /// Socket-level failure: resolve, connect, or socket options.
    Io(io::Error),
    /// The TLS handshake failed; [`tls_error`](Self::tls_error) gives the
    /// rustls reason (untrusted certificate, wrong name, alert...) when there
    /// is one.
    Tls(io::Error),
    /// Connect plus handshake took longer than [`Limits::handshake_timeout`].
    Timeout,
    /// A `zaps://` URL, but the [`Connector`] has no [`ClientTls`].
    NoTlsConfig,
    /// TLS succeeded but ALPN `zap/1` was not negotiated.
    Alpn,
    /// The URL host cannot be used as a TLS server name.
    InvalidServerName(String),
    /// The server certificate's SHA-256 matches none of the pins
    /// ([`ClientTls::with_pinned_sha256`](crate::ClientTls::with_pinned_sha256)).
    PinMismatch,
    /// This connector does not handle the URL's transport.
    Unsupported(&'static str),
    /// QUIC failed outside the TLS handshake (the message says how).
    Quic(String),
}

impl ConnectError {
    /// Whether this is [`ConnectError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    /// The rustls error behind a [`ConnectError::Tls`], if there is one.
    pub fn tls_error(&self) -> Option<&rustls::Error> {
        match self {
            Self::Tls(e) => e.get_ref()?.downcast_ref::<rustls::Error>(),
            _ => None,
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "connection failed: {e}"),
            Self::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            Self::Timeout => f.write_str("connection timed out during connect or handshake"),
            Self::NoTlsConfig => f.write_str(
                "zaps:// needs TLS roots: configure the Connector with `with_tls(ClientTls)`",
            ),
            Self::Alpn => f.write_str("peer did not negotiate ALPN protocol `zap/1`"),
            Self::InvalidServerName(name) => write!(f, "`{name}` is not a valid TLS server name"),
            Self::PinMismatch => {
                f.write_str("server certificate does not match any pinned SHA-256 digest")
            }
            Self::Unsupported(what) => f.write_str(what),
            Self::Quic(e) => write!(f, "QUIC connection failed: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) | Self::Tls(e) => Some(e),
            Self::Timeout
            | Self::NoTlsConfig
            | Self::Alpn
            | Self::InvalidServerName(_)
            | Self::PinMismatch
            | Self::Unsupported(_)
            | Self::Quic(_) => None,
        }
    }
}
