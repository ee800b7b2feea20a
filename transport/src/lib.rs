//! Authenticated byte streams for the zap RPC framework.
//!
//! This crate turns a URL into a connected byte stream and nothing more: it
//! knows nothing of zap frames or calls. The RPC layer runs its protocol over
//! the [`Stream`] inside each [`Conn`].
//!
//! # Model
//!
//! - **URLs name the transport.** [`Url`] accepts `zap://host:port` (plain
//!   TCP), `zaps://host:port` (TLS 1.3 over TCP) and `zap+unix:///abs/path`
//!   (Unix domain socket). Nothing is implied: `zap://` never does TLS, and
//!   `zaps://` never falls back to plaintext.
//! - **Clients** use a [`Connector`]: `connect(&url)` resolves, connects, sets
//!   `TCP_NODELAY`, and for `zaps://` runs the TLS handshake, all within
//!   [`Limits::handshake_timeout`]. A `Connector` is a
//!   `tower_service::Service<Url>`, so tower layers stack on it.
//! - **Servers** use a [`Listener`]: [`Listener::accept`] only takes a socket
//!   off the queue and returns an [`Incoming`]; the caller spawns a task that
//!   runs [`Incoming::handshake`], which does the TLS handshake under the same
//!   timeout. A slow or silent client therefore never blocks the accept loop.
//!   Accept errors are about one socket, never the listener: log and loop.
//! - **TLS is rustls, TLS 1.3 only, with the ring provider passed explicitly**
//!   to every config, never the process default. Both sides require ALPN
//!   [`ALPN`] (`zap/1`). Server names are verified; mutual TLS is optional or
//!   required ([`ServerTls::with_client_auth`]). What was verified is exposed
//!   in [`PeerInfo`].
//! - **One [`Limits`] struct** configures an endpoint. The transport enforces
//!   the handshake timeout (counted from accept), the listen backlog,
//!   `max_connections` and the optional per-address count and rate (a
//!   listener over a limit accepts and closes new sockets at once instead of
//!   queueing them); the remaining fields are carried for the RPC layer.
//!
//! # Example
//!
//! ```no_run
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use zap_transport::{ClientTls, Connector, Limits, Listener, ServerTls, Url};
//!
//! # async fn run(cert: &[u8], key: &[u8], ca: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! // Server: bind, accept, handshake on a task of its own.
//! let url = Url::parse("zaps://127.0.0.1:0")?;
//! let tls = ServerTls::from_pem(cert, key)?;
//! let listener = Listener::bind(&url, Some(tls), Limits::default()).await?;
//! let addr = listener.local_url();
//! tokio::spawn(async move {
//!     loop {
//!         let Ok(incoming) = listener.accept().await else { continue };
//!         tokio::spawn(async move {
//!             let Ok(mut conn) = incoming.handshake().await else { return };
//!             let mut buf = [0; 5];
//!             if conn.stream.read_exact(&mut buf).await.is_ok() {
//!                 let _ = conn.stream.write_all(&buf).await;
//!             }
//!         });
//!     }
//! });
//!
//! // Client: trust the CA, connect, talk.
//! let connector = Connector::new(Limits::default()).with_tls(ClientTls::with_roots_pem(ca)?);
//! let mut conn = connector.connect(&addr).await?;
//! assert!(conn.peer.peer_certificate().is_some());
//! conn.stream.write_all(b"hello").await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! - `quic`: `zap+quic://` with quinn ([`quic`]): [`quic::QuicConnector`],
//!   [`quic::QuicListener`], one QUIC stream per call and DATAGRAM frames
//!   for unreliable messages.
//! - `test-certs`: [`test_certs::TestPki`], a CA with server and client
//!   certificates generated at run time by `rcgen`, for tests.

#![forbid(unsafe_code)]

mod admission;
mod connect;
mod limits;
mod listen;
#[cfg(feature = "quic")]
pub mod quic;
mod stream;
mod tls;
mod url;

#[cfg(feature = "test-certs")]
pub mod test_certs;

pub use crate::connect::{ConnectError, Connector};
pub use crate::limits::{ConnectionRate, Limits};
pub use crate::listen::{Incoming, Listener};
pub use crate::stream::{Conn, ConnGuard, PeerInfo, Stream};
pub use crate::tls::{ALPN, ALPN_H2, ClientTls, ServerTls, TlsError, certificate_sha256};
pub use crate::url::{Scheme, Url, UrlError};
