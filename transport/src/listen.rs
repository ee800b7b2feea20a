//! The server side: bind a URL, accept sockets, hand out handshakes.

use std::fmt;
use std::io;
use std::net::SocketAddr;
#[cfg(unix)]
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::admission::{Admission, ConnSlots};
use crate::connect::ConnectError;
use crate::limits::Limits;
use crate::stream::{Conn, PeerInfo, Stream};
use crate::tls::ServerTls;
use crate::url::{Scheme, Url};

/// A bound zap endpoint.
///
/// [`accept`](Self::accept) only takes sockets off the queue; the TLS
/// handshake happens in [`Incoming::handshake`], which the caller runs on its
/// own task so one slow client never holds up the next accept.
///
/// At most [`Limits::max_connections`] connections are held at once (an
/// [`Incoming`] or a [`Conn`] / [`ConnGuard`](crate::ConnGuard) holds a slot
/// until dropped). Past that, new sockets are accepted and closed at once,
/// and counted in [`refused_connections`](Self::refused_connections).
///
/// A Unix socket file created by `bind` is removed when the listener is
/// dropped (if it is still the same file).
pub struct Listener {
    inner: Inner,
    local_url: Url,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    slots: ConnSlots,
}

enum Inner {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(UnixInner),
}

#[cfg(unix)]
struct UnixInner {
    listener: tokio::net::UnixListener,
    path: PathBuf,
    /// `(device, inode)` of the socket file we created.
    file_id: Option<(u64, u64)>,
}

impl Listener {
    /// Binds `url`. `zaps://` needs `tls`; `zap://` and `zap+unix://` must
    /// not have it. Port 0 picks a free port (see [`local_url`](Self::local_url)).
    ///
    /// For `zap+unix://`, an existing socket file that no process listens on
    /// any more is removed first; any other existing file is left alone and
    /// the bind fails.
    pub async fn bind(url: &Url, tls: Option<ServerTls>, limits: Limits) -> io::Result<Self> {
        let tls = match (url.scheme(), tls) {
            (Scheme::Tls, Some(tls)) => Some(TlsAcceptor::from(tls.config())),
            (Scheme::Tls, None) => {
                return Err(invalid_input("zaps:// needs a ServerTls to listen"));
            }
            (Scheme::Tcp | Scheme::Unix, Some(_)) => {
                return Err(invalid_input(
                    "zap:// and zap+unix:// are plaintext; listen on zaps:// to serve TLS",
                ));
            }
            (Scheme::Tcp | Scheme::Unix, None) => None,
            (Scheme::Quic, _) => {
                return Err(invalid_input(
                    "zap+quic:// is served by QuicListener (feature `quic`)",
                ));
            }
        };
        let (inner, local_url) = match url.scheme() {
            Scheme::Tcp | Scheme::Tls | Scheme::Quic => {
                let (Some(host), Some(port)) = (url.host(), url.port()) else {
                    return Err(invalid_input("URL has no host and port"));
                };
                let listener = bind_tcp(host, port, limits.listen_backlog).await?;
                let local = Url::from_socket_addr(url.scheme(), listener.local_addr()?);
                (Inner::Tcp(listener), local)
            }
            Scheme::Unix => bind_unix(url, &limits).await?,
        };
        Ok(Self {
            inner,
            local_url,
            tls,
            slots: ConnSlots::new(&limits),
            limits,
        })
    }

    /// The address actually bound, with the port resolved:
    /// `zap://127.0.0.1:54321`, `zaps://[::1]:9000`, `zap+unix:///run/zap.sock`.
    pub fn local_url(&self) -> Url {
        self.local_url.clone()
    }

    /// The limits this listener applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many sockets were closed unserved because
    /// [`Limits::max_connections`] were already open, or their address was
    /// over [`Limits::max_connections_per_ip`] or
    /// [`Limits::connection_rate_per_ip`].
    pub fn refused_connections(&self) -> u64 {
        self.slots.refused()
    }

    /// Waits for the next connection that fits within
    /// [`Limits::max_connections`] and returns it without handshaking.
    ///
    /// Sockets over the limit are closed here and never returned.
    ///
    /// # Errors
    ///
    /// An error is about one `accept(2)` call, not the listener: connection
    /// aborted before accept, out of file descriptors (`EMFILE`/`ENFILE`),
    /// out of memory. Callers should log it and call `accept` again, after a
    /// short pause for resource exhaustion, rather than stop serving:
    ///
    /// ```no_run
    /// # async fn serve(listener: zap_transport::Listener) {
    /// loop {
    ///     let incoming = match listener.accept().await {
    ///         Ok(incoming) => incoming,
    ///         Err(err) => {
    ///             eprintln!("accept: {err}");
    ///             tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    ///             continue;
    ///         }
    ///     };
    ///     tokio::spawn(async move {
    ///         if let Ok(conn) = incoming.handshake().await {
    ///             // serve `conn`
    ///             # drop(conn);
    ///         }
    ///     });
    /// }
    /// # }
    /// ```
    pub async fn accept(&self) -> io::Result<Incoming> {
        loop {
            let (raw, addr) = match &self.inner {
                Inner::Tcp(listener) => {
                    let (tcp, addr) = listener.accept().await?;
                    (Raw::Tcp(tcp), Some(addr))
                }
                #[cfg(unix)]
                Inner::Unix(unix) => {
                    let (stream, _) = unix.listener.accept().await?;
                    (Raw::Unix(stream), None)
                }
            };
            let Some(permit) = self.slots.take(addr.map(|a| a.ip())) else {
                drop(raw);
                continue;
            };
            if let Raw::Tcp(tcp) = &raw {
                tcp.set_nodelay(true)?;
            }
            return Ok(Incoming {
                raw,
                addr,
                unix_path: self.unix_path(),
                permit,
                tls: self.tls.clone(),
                handshake_timeout: self.limits.handshake_timeout,
                accepted_at: std::time::Instant::now(),
            });
        }
    }

    #[cfg(unix)]
    fn unix_path(&self) -> Option<std::path::PathBuf> {
        match &self.inner {
            Inner::Unix(unix) => Some(unix.path.clone()),
            Inner::Tcp(_) => None,
        }
    }

    #[cfg(not(unix))]
    fn unix_path(&self) -> Option<std::path::PathBuf> {
        None
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("local_url", &self.local_url)
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .field("available_slots", &self.slots.available())
            .field("refused", &self.refused_connections())
            .finish()
    }
}

#[cfg(unix)]
impl Drop for Listener {
    fn drop(&mut self) {
        if let Inner::Unix(UnixInner {
            path,
            file_id: Some(id),
            ..
        }) = &self.inner
            && socket_file_id(path) == Some(*id)
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(unix)]
async fn bind_unix(url: &Url, limits: &Limits) -> io::Result<(Inner, Url)> {
    let path = url
        .path()
        .ok_or_else(|| invalid_input("zap+unix URL has no path"))?;
    remove_stale_socket(path, limits.handshake_timeout).await?;
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    socket.listen(backlog(limits.listen_backlog))?;
    socket.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(socket.into())?;
    let inner = UnixInner {
        listener,
        path: path.to_owned(),
        file_id: socket_file_id(path),
    };
    Ok((Inner::Unix(inner), Url::from_unix_path(path.to_owned())))
}

#[cfg(not(unix))]
async fn bind_unix(_url: &Url, _limits: &Limits) -> io::Result<(Inner, Url)> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "zap+unix:// needs a Unix platform",
    ))
}

/// Removes `path` if it is a socket file that nobody accepts on.
#[cfg(unix)]
async fn remove_stale_socket(path: &Path, probe_timeout: Duration) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;

    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Ok(()); // bind reports "address in use"; never delete other files
    }
    let probe = tokio::time::timeout(probe_timeout, tokio::net::UnixStream::connect(path)).await;
    match probe {
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Ok(Err(_)) => Ok(()),
        Ok(Ok(_)) | Err(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} has a live listener", path.display()),
        )),
    }
}

#[cfg(unix)]
fn socket_file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.file_type()
        .is_socket()
        .then(|| (meta.dev(), meta.ino()))
}

/// Binds the first address `host` resolves to that takes the bind, with
/// `listen(2)`'s queue set to `backlog_len` (a plain `bind` takes the
/// standard library's fixed 128).
async fn bind_tcp(host: &str, port: u16, backlog_len: u32) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As std and tokio do on Unix: a restarted server rebinds its port
        // while old connections linger in TIME_WAIT.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(backlog_len.max(1)),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host resolved to no address")))
}

/// The backlog as `listen(2)` takes it (the kernel caps it further).
fn backlog(n: u32) -> i32 {
    n.clamp(1, i32::MAX as u32) as i32
}

fn invalid_input(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

enum Raw {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

/// An accepted socket that holds a connection slot but has not handshaken.
///
/// Dropping it closes the socket and frees the slot.
pub struct Incoming {
    raw: Raw,
    addr: Option<SocketAddr>,
    unix_path: Option<std::path::PathBuf>,
    permit: Admission,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    accepted_at: std::time::Instant,
}

impl Incoming {
    /// The peer's address (TCP and TLS).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// When the socket was accepted: the handshake deadline counts from here.
    pub fn accepted_at(&self) -> std::time::Instant {
        self.accepted_at
    }

    /// Completes the connection: for TLS, runs the handshake within
    /// [`Limits::handshake_timeout`] of the accept, checks that ALPN `zap/1` was
    /// negotiated, and records the client's certificates (mTLS) and SNI in
    /// [`PeerInfo`]. For plain TCP and Unix sockets it returns at once.
    pub async fn handshake(self) -> Result<Conn, ConnectError> {
        let mut peer = PeerInfo {
            addr: self.addr,
            unix_path: self.unix_path,
            ..PeerInfo::default()
        };
        let permit = Some(self.permit);
        let at = self.accepted_at;
        let tcp = match self.raw {
            #[cfg(unix)]
            Raw::Unix(stream) => {
                return Ok(Conn::new(Stream::Unix(stream), peer, permit).with_accepted_at(at));
            }
            Raw::Tcp(tcp) => tcp,
        };
        let Some(acceptor) = self.tls else {
            return Ok(Conn::new(Stream::Tcp(tcp), peer, permit).with_accepted_at(at));
        };
        let deadline = at + self.handshake_timeout;
        let stream = tokio::time::timeout_at(deadline.into(), acceptor.accept(tcp))
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(ConnectError::Tls)?;
        let session = stream.get_ref().1;
        crate::tls::check_session(session, &mut peer, true)?;
        peer.server_name = session.server_name().map(str::to_owned);
        Ok(Conn::new(Stream::TlsServer(Box::new(stream)), peer, permit).with_accepted_at(at))
    }
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("addr", &self.addr)
            .field("unix_path", &self.unix_path)
            .field("tls", &self.tls.is_some())
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}
