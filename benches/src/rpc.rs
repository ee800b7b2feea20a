//! The RPC workloads: a unary echo of a `Block`-shaped message, served and
//! called by ZAP and by three anchors, all in one process over loopback.
//!
//! - [`Impl::Raw`], the floor: u32-LE-length-prefixed frames over a plain
//!   tokio socket. The server reads through a 64 KB `BufReader`, batches
//!   small replies (≤ 16 KB) into one write flushed when no more input is
//!   buffered, and writes large replies straight from the frame buffer.
//!   One call in flight: the client writes a frame and reads the reply.
//!   64 in flight: the pipelined client of [`throughput`] (one writer task
//!   holding a 64-permit semaphore, batching frames per syscall, and one
//!   reader task), with no per-request task.
//! - [`Impl::Mux`]: a minimal task-per-request multiplexed client on the
//!   same raw server: an 8-byte request id leads each frame's payload, the
//!   callers' oneshots wait in a `Mutex<HashMap<id, oneshot>>`, requests go
//!   to a writer task through an mpsc (the writer batches whatever is
//!   queued), and a reader task reads each reply into `BytesMut` → `Bytes`
//!   and completes its oneshot. Roughly the skeleton of an RPC client before
//!   codec and protocol work.
//! - [`Impl::Tonic`]: `Echo(Block) returns (Block)` from `proto/bench.proto`
//!   over plaintext h2 (TCP only), TCP_NODELAY on both ends, max message
//!   16 MiB, default h2 settings.
//! - [`Impl::Zap`]: [`zap::Server`] with a [`zap::Router::unary`] handler
//!   that validates the request as a ZAP [`Block`] (zero-copy) and returns
//!   the request bytes; the client is a [`zap::Channel`] sending a `Block`
//!   encoded once per size and validating the response as a `Block`.
//!
//! Over QUIC (`Transport::Quic`, TLS 1.3 on loopback UDP, certificates
//! made at start-up) the floor is [`Impl::Raw`] as a stream-per-request
//! echo written directly on quinn: the client opens a bidirectional
//! stream, writes the body and finishes, the server reads to the end and
//! writes it back; every call is its own task, 64 in flight for
//! throughput. ZAP runs `zap+quic://`, its own stream-per-call mapping.
//!
//! The payload size is the body size: the raw and mux frames carry exactly
//! the body; the tonic and ZAP messages are the whole `Block` (~80 bytes
//! more, which only matters at 64 B).
//!
//! Every measurement ([`measure_latency`], [`measure_throughput`]) builds a
//! fresh tokio multi-thread runtime, server and connection, and runs its
//! clients as spawned tasks, never from `block_on` (on a VM, a client on the
//! `block_on` thread measures thread wake-ups rather than the RPC).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::runtime::Runtime;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use zap::Message as _;
use zap::transport::quic::{QuicConnection, QuicConnector, QuicListener};
use zap::transport::test_certs::TestPki;
use zap::transport::{ClientTls, Connector, Limits, Listener, ServerTls, Url};

use crate::pb::echo_client::EchoClient;
use crate::pb::echo_server::{Echo, EchoServer};
use crate::{Block, block, pb, pb_block};

/// Any error of a benchmark run (I/O, tonic, ZAP, a bad echo).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Payload (body) sizes of the RPC comparison: 64 B, 1 KB, 64 KB, 1 MB.
pub const SIZES: [usize; 4] = [64, 1024, 64 * 1024, 1024 * 1024];

/// Calls in flight on one connection in the throughput case.
pub const INFLIGHT: usize = 64;

/// Most latency samples kept per measurement.
pub const MAX_SAMPLES: usize = 200_000;

/// Sequential calls over which allocations are counted, after timing.
pub const ALLOC_CALLS: u64 = 200;

/// The ZAP method path of the echo.
pub const METHOD: &str = "/zap.bench.Echo/Echo";

/// How long calls may take to finish after a measurement should have ended
/// before it is reported as stalled (instead of waiting for the keepalive
/// to fail the connection).
pub const STALL_LIMIT: Duration = Duration::from_secs(5);

/// Read buffer of the raw server and clients.
const BUF: usize = 64 * 1024;
/// Largest reply the raw server (and the raw clients' requests) batch into
/// one write; larger frames are written straight.
const SMALL: usize = 16 * 1024;
/// tonic's max message, both ends.
const MAX_MESSAGE: usize = 16 << 20;

/// Which implementation serves and calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// This crate: `zap::Server` and `zap::Channel`.
    Zap,
    /// Length-prefixed frames on a plain socket, the floor.
    Raw,
    /// A task-per-request multiplexed client on the raw server.
    Mux,
    /// tonic 0.14 over plaintext h2 (TCP only).
    Tonic,
}

impl Impl {
    /// Every implementation, in report order.
    pub const ALL: [Impl; 4] = [Impl::Zap, Impl::Raw, Impl::Mux, Impl::Tonic];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Zap => "zap",
            Impl::Raw => "raw",
            Impl::Mux => "mux",
            Impl::Tonic => "tonic",
        }
    }

    /// Whether this implementation is measured over `transport` (tonic
    /// runs over TCP only; over QUIC the floor is the raw stream-per-request
    /// echo, and there is no mux client).
    pub fn supports(self, transport: Transport) -> bool {
        match transport {
            Transport::Tcp => true,
            Transport::Unix | Transport::Tls => self != Impl::Tonic,
            Transport::Quic => matches!(self, Impl::Zap | Impl::Raw),
        }
    }
}

/// The byte stream under the calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP over 127.0.0.1, TCP_NODELAY on both ends.
    Tcp,
    /// A Unix domain socket in the temp dir.
    Unix,
    /// TLS 1.3 over TCP on 127.0.0.1 (zap-transport's rustls streams for
    /// every implementation, certificates made at start-up).
    Tls,
    /// QUIC over 127.0.0.1 (quinn, TLS 1.3), one stream per call.
    Quic,
}

impl Transport {
    /// Every transport, in report order.
    pub const ALL: [Transport; 4] = [
        Transport::Tcp,
        Transport::Tls,
        Transport::Unix,
        Transport::Quic,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Unix => "unix",
            Transport::Tls => "tls",
            Transport::Quic => "quic",
        }
    }
}

/// Warm-up and measuring window of one measurement.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Calls made before measuring.
    pub warmup: Duration,
    /// How long calls are measured.
    pub window: Duration,
}

impl Timing {
    /// 300 ms warm-up, 1.5 s window.
    pub const FULL: Timing = Timing {
        warmup: Duration::from_millis(300),
        window: Duration::from_millis(1500),
    };
    /// 100 ms warm-up, 0.4 s window (`--quick`).
    pub const QUICK: Timing = Timing {
        warmup: Duration::from_millis(100),
        window: Duration::from_millis(400),
    };
}

/// The request of one payload size, in each implementation's form.
#[derive(Clone, Debug)]
pub struct Payload {
    size: usize,
    height: u64,
    /// Raw and mux frames: the body bytes.
    body: Bytes,
    /// ZAP: the `Block`, encoded once.
    zap: Bytes,
    /// tonic: the prost `Block` (its `bytes` fields share buffers).
    pb: pb::Block,
}

impl Payload {
    /// The request for a `size`-byte body ([`crate::block`]).
    pub fn new(size: usize) -> Self {
        let b = block(size);
        Payload {
            size,
            height: b.height,
            zap: b.to_bytes().expect("a Block encodes"),
            pb: pb_block(&b),
            body: b.body,
        }
    }

    /// The body size.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether `body` is this payload's body (length, first, middle and
    /// last byte: cheap enough for every call).
    fn check(&self, body: &[u8]) -> Result<(), Error> {
        let ok = body.len() == self.size
            && (self.size == 0
                || (body[0] == self.body[0]
                    && body[self.size / 2] == self.body[self.size / 2]
                    && body[self.size - 1] == self.body[self.size - 1]));
        if ok {
            Ok(())
        } else {
            Err(format!("bad echo: {} bytes, expected {}", body.len(), self.size).into())
        }
    }
}

/// A multi-thread tokio runtime with `workers` worker threads.
pub fn runtime(workers: usize) -> io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
}

/// tokio's default worker count: the available parallelism.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

// ---------------------------------------------------------------- servers

#[derive(Clone, Debug)]
enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Tls(SocketAddr),
    Quic(SocketAddr),
}

/// The certificates of the QUIC rows, made once per process.
fn pki() -> &'static TestPki {
    static PKI: std::sync::OnceLock<TestPki> = std::sync::OnceLock::new();
    PKI.get_or_init(TestPki::generate)
}

fn quic_server_tls() -> Result<ServerTls, Error> {
    let pki = pki();
    Ok(ServerTls::from_pem(
        pki.server_cert_pem.as_bytes(),
        pki.server_key_pem.as_bytes(),
    )?)
}

fn quic_client_tls() -> Result<ClientTls, Error> {
    Ok(ClientTls::with_roots_pem(pki().ca_pem.as_bytes())?)
}

/// A `zaps://` listener on a fresh port.
async fn tls_listener() -> Result<(Listener, Addr), Error> {
    let l = Listener::bind(
        &Url::parse("zaps://127.0.0.1:0")?,
        Some(quic_server_tls()?),
        Limits::default(),
    )
    .await?;
    let addr = Addr::Tls(socket_addr(&l.local_url())?);
    Ok((l, addr))
}

/// The raw echo behind TLS.
async fn raw_accept_tls(l: Listener) {
    loop {
        let Ok(incoming) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        tokio::spawn(async move {
            if let Ok(conn) = incoming.handshake().await {
                let (stream, _peer, _guard) = conn.into_parts();
                let _ = raw_echo(stream).await;
            }
        });
    }
}

async fn quic_listener() -> Result<(QuicListener, Addr), Error> {
    let l = QuicListener::bind(
        &Url::parse("zap+quic://127.0.0.1:0")?,
        quic_server_tls()?,
        Limits::default(),
    )
    .await?;
    let addr = Addr::Quic(socket_addr(&l.local_url())?);
    Ok((l, addr))
}

/// The IP address and port of a listener's URL.
fn socket_addr(url: &Url) -> Result<SocketAddr, Error> {
    let (Some(host), Some(port)) = (url.host(), url.port()) else {
        return Err(format!("{url} has no IP address").into());
    };
    Ok(SocketAddr::new(host.parse()?, port))
}

/// The ZAP echo server on `listener`.
fn serve_zap(listener: impl Into<zap::AnyListener> + Send + 'static) -> JoinHandle<()> {
    let router = zap::Router::new().unary(METHOD, zap_echo);
    tokio::spawn(async move {
        let _ = zap::Server::builder().serve(listener, router).await;
    })
}

/// A running echo server (on the runtime it was started on). Dropping it
/// stops accepting and removes its Unix socket file; its connections end
/// with the runtime.
#[derive(Debug)]
pub struct Server {
    imp: Impl,
    addr: Addr,
    accept: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
        if let Addr::Unix(path) = &self.addr {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A fresh socket path in the temp dir.
fn socket_path() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "zap-bench-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

impl Server {
    /// Starts the echo server of `imp` on a fresh address (`Raw` and `Mux`
    /// share the raw server). Call on a tokio runtime.
    pub async fn start(imp: Impl, transport: Transport) -> Result<Server, Error> {
        if !imp.supports(transport) {
            return Err(format!("{} does not run over {}", imp.name(), transport.name()).into());
        }
        let (addr, accept) = match (imp, transport) {
            (Impl::Raw, Transport::Quic) => {
                let (l, addr) = quic_listener().await?;
                (addr, tokio::spawn(raw_quic_accept(l)))
            }
            (Impl::Zap, Transport::Quic) => {
                let (l, addr) = quic_listener().await?;
                (addr, serve_zap(l))
            }
            (Impl::Raw | Impl::Mux, Transport::Tls) => {
                let (l, addr) = tls_listener().await?;
                (addr, tokio::spawn(raw_accept_tls(l)))
            }
            (Impl::Zap, Transport::Tls) => {
                let (l, addr) = tls_listener().await?;
                (addr, serve_zap(l))
            }
            (Impl::Raw | Impl::Mux, _) => match transport {
                Transport::Tcp => {
                    let l = TcpListener::bind("127.0.0.1:0").await?;
                    let addr = Addr::Tcp(l.local_addr()?);
                    (addr, tokio::spawn(raw_accept_tcp(l)))
                }
                Transport::Unix => {
                    let path = socket_path();
                    let _ = std::fs::remove_file(&path);
                    let l = UnixListener::bind(&path)?;
                    (Addr::Unix(path), tokio::spawn(raw_accept_unix(l)))
                }
                Transport::Tls | Transport::Quic => unreachable!("handled above"),
            },
            (Impl::Zap, _) => {
                let (url, addr) = match transport {
                    Transport::Tcp | Transport::Tls | Transport::Quic => {
                        (Url::parse("zap://127.0.0.1:0")?, None)
                    }
                    Transport::Unix => {
                        let path = socket_path();
                        let _ = std::fs::remove_file(&path);
                        let url = Url::parse(&format!("zap+unix://{}", path.display()))?;
                        (url, Some(Addr::Unix(path)))
                    }
                };
                let listener = Listener::bind(&url, None, Limits::default()).await?;
                let addr = match addr {
                    Some(a) => a,
                    None => Addr::Tcp(socket_addr(&listener.local_url())?),
                };
                (addr, serve_zap(listener))
            }
            (Impl::Tonic, _) => {
                let l = TcpListener::bind("127.0.0.1:0").await?;
                let addr = Addr::Tcp(l.local_addr()?);
                let incoming =
                    tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true));
                let svc = EchoServer::new(TonicEcho)
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE);
                let accept = tokio::spawn(async move {
                    let _ = tonic::transport::Server::builder()
                        .add_service(svc)
                        .serve_with_incoming(incoming)
                        .await;
                });
                (addr, accept)
            }
        };
        Ok(Server { imp, addr, accept })
    }

    /// The ZAP URL of this server.
    fn zap_url(&self) -> Result<Url, Error> {
        Ok(match &self.addr {
            Addr::Tcp(a) => Url::parse(&format!("zap://{a}"))?,
            Addr::Unix(p) => Url::parse(&format!("zap+unix://{}", p.display()))?,
            Addr::Tls(a) => Url::parse(&format!("zaps://localhost:{}", a.port()))?,
            Addr::Quic(a) => Url::parse(&format!("zap+quic://localhost:{}", a.port()))?,
        })
    }
}

/// The raw QUIC echo: every bidirectional stream is one call.
async fn raw_quic_accept(l: QuicListener) {
    while let Some(incoming) = l.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.handshake().await else {
                return;
            };
            while let Ok((mut send, mut recv)) = conn.connection.accept_bi().await {
                tokio::spawn(async move {
                    let body = recv.read_to_end(MAX_MESSAGE).await?;
                    send.write_all(&body).await?;
                    send.finish()?;
                    Ok::<(), Error>(())
                });
            }
        });
    }
}

/// The ZAP handler: validate the request as a `Block`, return its bytes.
async fn zap_echo(req: zap::Request<Bytes>) -> Result<zap::Response<Bytes>, zap::Status> {
    req.decode::<Block>()?;
    Ok(zap::Response::new(req.into_inner()))
}

/// The tonic service: return the request message.
#[derive(Debug)]
struct TonicEcho;

#[tonic::async_trait]
impl Echo for TonicEcho {
    async fn echo(
        &self,
        request: tonic::Request<pb::Block>,
    ) -> Result<tonic::Response<pb::Block>, tonic::Status> {
        Ok(tonic::Response::new(request.into_inner()))
    }
}

async fn raw_accept_tcp(l: TcpListener) {
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                tokio::spawn(raw_echo(s));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

async fn raw_accept_unix(l: UnixListener) {
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                tokio::spawn(raw_echo(s));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// Reads one u32-LE length prefix; `None` at a clean end of stream.
async fn read_len<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<usize>> {
    let mut hdr = [0u8; 4];
    match r.read_exact(&mut hdr).await {
        Ok(_) => Ok(Some(u32::from_le_bytes(hdr) as usize)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

fn frame_len(len: usize) -> io::Result<[u8; 4]> {
    u32::try_from(len)
        .map(u32::to_le_bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))
}

/// The raw echo: see the module docs.
async fn raw_echo<S: AsyncRead + AsyncWrite + Unpin>(s: S) -> io::Result<()> {
    let mut r = BufReader::with_capacity(BUF, s);
    let mut frame = Vec::new();
    let mut out = Vec::with_capacity(BUF + SMALL);
    while let Some(len) = read_len(&mut r).await? {
        frame.resize(len, 0);
        r.read_exact(&mut frame).await?;
        let hdr = frame_len(len)?;
        if len <= SMALL {
            out.extend_from_slice(&hdr);
            out.extend_from_slice(&frame);
        } else {
            if !out.is_empty() {
                r.get_mut().write_all(&out).await?;
                out.clear();
            }
            let mut b = Buf::chain(&hdr[..], &frame[..]);
            r.get_mut().write_all_buf(&mut b).await?;
        }
        if !out.is_empty() && (r.buffer().is_empty() || out.len() >= BUF) {
            r.get_mut().write_all(&out).await?;
            out.clear();
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- clients

/// A TCP or Unix stream, for the raw sequential client.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<zap::transport::Stream>),
}

impl Stream {
    async fn connect(addr: &Addr) -> io::Result<Stream> {
        Ok(match addr {
            Addr::Tcp(a) => {
                let s = TcpStream::connect(a).await?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
            Addr::Unix(p) => Stream::Unix(UnixStream::connect(p).await?),
            Addr::Tls(a) => {
                let url = Url::parse(&format!("zaps://localhost:{}", a.port()))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let tls = quic_client_tls().map_err(io::Error::other)?;
                let conn = Connector::new(Limits::default())
                    .with_tls(tls)
                    .connect(&url)
                    .await
                    .map_err(io::Error::other)?;
                Stream::Tls(Box::new(conn.into_parts().0))
            }
            Addr::Quic(_) => return Err(io::ErrorKind::Unsupported.into()),
        })
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Writes one frame: small ones copied into `out` (one write), large ones
/// straight from `payload` with a vectored write.
async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut Vec<u8>,
    prefix: &[u8],
    payload: &[u8],
) -> io::Result<()> {
    let hdr = frame_len(prefix.len() + payload.len())?;
    if payload.len() <= SMALL {
        out.clear();
        out.extend_from_slice(&hdr);
        out.extend_from_slice(prefix);
        out.extend_from_slice(payload);
        w.write_all(out).await
    } else {
        let mut b = Buf::chain(&hdr[..], prefix).chain(payload);
        w.write_all_buf(&mut b).await
    }
}

/// The raw client with one call in flight: write a frame, read the reply.
#[derive(Debug)]
struct RawClient {
    r: BufReader<Stream>,
    frame: Vec<u8>,
    out: Vec<u8>,
}

impl RawClient {
    async fn call(&mut self, p: &Payload) -> Result<(), Error> {
        write_frame(self.r.get_mut(), &mut self.out, &[], &p.body).await?;
        let len = read_len(&mut self.r).await?.ok_or("raw server closed")?;
        self.frame.resize(len, 0);
        self.r.read_exact(&mut self.frame).await?;
        p.check(&self.frame)
    }
}

/// The task-per-request multiplexed client: see the module docs. Cheap to
/// clone; every clone shares one connection.
#[derive(Clone, Debug)]
pub struct MuxClient {
    inner: Arc<MuxInner>,
}

type Pending = Mutex<HashMap<u64, oneshot::Sender<Bytes>>>;

#[derive(Debug)]
struct MuxInner {
    pending: Arc<Pending>,
    next_id: AtomicU64,
    tx: mpsc::UnboundedSender<(u64, Bytes)>,
}

impl MuxClient {
    /// Connects to a raw server and starts the writer and reader tasks.
    async fn connect(addr: &Addr) -> io::Result<MuxClient> {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(Mutex::new(HashMap::with_capacity(4 * INFLIGHT)));
        match Stream::connect(addr).await? {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                tokio::spawn(mux_writer(w, rx));
                tokio::spawn(mux_reader(r, pending.clone()));
            }
            Stream::Unix(s) => {
                let (r, w) = s.into_split();
                tokio::spawn(mux_writer(w, rx));
                tokio::spawn(mux_reader(r, pending.clone()));
            }
            Stream::Tls(s) => {
                let (r, w) = tokio::io::split(s);
                tokio::spawn(mux_writer(w, rx));
                tokio::spawn(mux_reader(r, pending.clone()));
            }
        }
        Ok(MuxClient {
            inner: Arc::new(MuxInner {
                pending,
                next_id: AtomicU64::new(0),
                tx,
            }),
        })
    }

    /// One call: `payload` in a frame with a fresh id; the reply's payload.
    pub async fn call(&self, payload: Bytes) -> Result<Bytes, Error> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.pending).insert(id, tx);
        if self.inner.tx.send((id, payload)).is_err() {
            lock(&self.inner.pending).remove(&id);
            return Err("mux connection closed".into());
        }
        rx.await.map_err(|_| "mux connection closed".into())
    }
}

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Bytes>>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes every queued request; small frames batched into one write.
async fn mux_writer<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<(u64, Bytes)>,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(BUF + SMALL);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some((id, payload)) = next {
            let hdr = frame_len(8 + payload.len())?;
            if payload.len() <= SMALL {
                out.extend_from_slice(&hdr);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&payload);
                if out.len() >= BUF {
                    w.write_all(&out).await?;
                    out.clear();
                }
            } else {
                if !out.is_empty() {
                    w.write_all(&out).await?;
                    out.clear();
                }
                let id = id.to_le_bytes();
                let mut b = Buf::chain(&hdr[..], &id[..]).chain(&payload[..]);
                w.write_all_buf(&mut b).await?;
            }
            next = rx.try_recv().ok();
        }
        if !out.is_empty() {
            w.write_all(&out).await?;
            out.clear();
        }
    }
    Ok(())
}

/// Reads replies and completes their callers' oneshots; at the end of the
/// connection, fails every call still waiting.
async fn mux_reader<R: AsyncRead + Unpin>(r: R, pending: Arc<Pending>) -> io::Result<()> {
    let res = mux_read_loop(r, &pending).await;
    lock(&pending).clear();
    res
}

async fn mux_read_loop<R: AsyncRead + Unpin>(r: R, pending: &Pending) -> io::Result<()> {
    let mut r = BufReader::with_capacity(BUF, r);
    while let Some(len) = read_len(&mut r).await? {
        let n = len
            .checked_sub(8)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short mux frame"))?;
        let id = r.read_u64_le().await?;
        let mut body = BytesMut::with_capacity(n);
        while body.len() < n {
            let want = (n - body.len()) as u64;
            if (&mut r).take(want).read_buf(&mut body).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        let waiter = lock(pending).remove(&id);
        if let Some(tx) = waiter {
            let _ = tx.send(body.freeze());
        }
    }
    Ok(())
}

#[derive(Debug)]
enum Kind {
    Raw(RawClient),
    Mux(MuxClient),
    Tonic(EchoClient<tonic::transport::Channel>),
    Zap(zap::Channel),
    RawQuic(QuicConnection),
}

/// A client of one implementation, connected to its [`Server`], calling
/// with one [`Payload`]. Every call validates the echo.
#[derive(Debug)]
pub struct Client {
    kind: Kind,
    payload: Payload,
}

impl Client {
    /// Connects to `server` (one connection) to echo `payload`.
    pub async fn connect(server: &Server, payload: &Payload) -> Result<Client, Error> {
        let kind = match server.imp {
            Impl::Raw if matches!(server.addr, Addr::Quic(_)) => {
                let c = QuicConnector::new(Limits::default(), quic_client_tls()?)?;
                Kind::RawQuic(c.connect(&server.zap_url()?).await?.connection)
            }
            Impl::Raw => Kind::Raw(RawClient {
                r: BufReader::with_capacity(BUF, Stream::connect(&server.addr).await?),
                frame: Vec::new(),
                out: Vec::with_capacity(SMALL + 64),
            }),
            Impl::Mux => Kind::Mux(MuxClient::connect(&server.addr).await?),
            Impl::Tonic => {
                let Addr::Tcp(addr) = &server.addr else {
                    return Err("tonic runs over TCP only".into());
                };
                let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                    .tcp_nodelay(true)
                    .connect()
                    .await?;
                Kind::Tonic(
                    EchoClient::new(ch)
                        .max_decoding_message_size(MAX_MESSAGE)
                        .max_encoding_message_size(MAX_MESSAGE),
                )
            }
            Impl::Zap => {
                let mut b = zap::Channel::builder(server.zap_url()?);
                if matches!(server.addr, Addr::Quic(_) | Addr::Tls(_)) {
                    b = b.tls(quic_client_tls()?);
                }
                Kind::Zap(b.connect().await?)
            }
        };
        Ok(Client {
            kind,
            payload: payload.clone(),
        })
    }

    /// Another client on the same connection; `None` for [`Impl::Raw`],
    /// whose sequential client owns its connection.
    pub fn try_clone(&self) -> Option<Client> {
        let kind = match &self.kind {
            Kind::Raw(_) => return None,
            Kind::Mux(c) => Kind::Mux(c.clone()),
            Kind::Tonic(c) => Kind::Tonic(c.clone()),
            Kind::Zap(c) => Kind::Zap(c.clone()),
            Kind::RawQuic(c) => Kind::RawQuic(c.clone()),
        };
        Some(Client {
            kind,
            payload: self.payload.clone(),
        })
    }

    /// One unary echo, validated: the body (raw, mux) or the decoded
    /// `Block` (tonic, ZAP) must be the payload's.
    pub async fn call(&mut self) -> Result<(), Error> {
        let p = &self.payload;
        match &mut self.kind {
            Kind::Raw(c) => c.call(p).await,
            Kind::Mux(c) => p.check(&c.call(p.body.clone()).await?),
            Kind::Tonic(c) => {
                let resp = c.echo(tonic::Request::new(p.pb.clone())).await?;
                let b = resp.into_inner();
                if b.height != p.height {
                    return Err("bad echo: height".into());
                }
                p.check(&b.body)
            }
            Kind::Zap(c) => {
                let resp = c.unary(METHOD, zap::Request::new(p.zap.clone())).await?;
                let m = resp.decode::<Block>()?;
                let v = m.view();
                if v.height() != p.height {
                    return Err("bad echo: height".into());
                }
                p.check(v.body())
            }
            Kind::RawQuic(c) => {
                let (mut send, mut recv) = c.open_bi().await?;
                send.write_all(&p.body).await?;
                send.finish()?;
                p.check(&recv.read_to_end(MAX_MESSAGE).await?)
            }
        }
    }
}

// ------------------------------------------------------------ measurements

/// Result of a latency measurement (one call in flight).
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    /// Median round trip, µs.
    pub p50_us: f64,
    /// 99th percentile round trip, µs.
    pub p99_us: f64,
    /// Samples taken.
    pub samples: usize,
    /// Allocations per call, whole process (client + server), over
    /// [`ALLOC_CALLS`] sequential calls after timing; meaningful only with
    /// [`crate::alloc::Counting`] installed as the global allocator.
    pub allocs_per_call: f64,
}

/// Sequential calls on `client`: warm-up, then one sample per call for the
/// window (at most [`MAX_SAMPLES`]), then [`ALLOC_CALLS`] calls counting
/// allocations. Run it in a spawned task.
pub async fn latency(client: &mut Client, timing: Timing) -> Result<Latency, Error> {
    let warm_end = Instant::now() + timing.warmup;
    while Instant::now() < warm_end {
        client.call().await?;
    }
    let mut samples = Vec::with_capacity(MAX_SAMPLES);
    let end = Instant::now() + timing.window;
    while samples.len() < MAX_SAMPLES {
        let t = Instant::now();
        if t >= end {
            break;
        }
        client.call().await?;
        samples.push(t.elapsed().as_nanos() as u64);
    }
    let before = crate::alloc::allocations();
    for _ in 0..ALLOC_CALLS {
        client.call().await?;
    }
    let allocs = crate::alloc::allocations() - before;
    if samples.is_empty() {
        return Err("no latency sample".into());
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    Ok(Latency {
        p50_us: at(0.5),
        p99_us: at(0.99),
        samples: samples.len(),
        allocs_per_call: allocs as f64 / ALLOC_CALLS as f64,
    })
}

/// Completed calls per second with [`INFLIGHT`] calls in flight on one
/// connection to `server`: the pipelined raw client for [`Impl::Raw`] on
/// a byte stream, otherwise [`INFLIGHT`] tasks looping calls on clones of one client.
/// Counted over the window after the warm-up. Run it in a spawned task.
pub async fn throughput(server: &Server, payload: &Payload, timing: Timing) -> Result<f64, Error> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let pipelined_raw = server.imp == Impl::Raw && !matches!(server.addr, Addr::Quic(_));
    let tasks: Vec<JoinHandle<Result<(), Error>>> = if pipelined_raw {
        let p = payload.body.clone();
        match Stream::connect(&server.addr).await? {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                pipelined(r, w, p, done.clone())
            }
            Stream::Unix(s) => {
                let (r, w) = s.into_split();
                pipelined(r, w, p, done.clone())
            }
            Stream::Tls(s) => {
                let (r, w) = tokio::io::split(s);
                pipelined(r, w, p, done.clone())
            }
        }
    } else {
        let client = Client::connect(server, payload).await?;
        (0..INFLIGHT)
            .map(|_| {
                let mut c = client.try_clone().ok_or("client cannot be cloned")?;
                let (done, stop) = (done.clone(), stop.clone());
                Ok(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        c.call().await?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }))
            })
            .collect::<Result<_, Error>>()?
    };
    tokio::time::sleep(timing.warmup).await;
    let (c0, t0) = (done.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(timing.window).await;
    let (c1, elapsed) = (done.load(Ordering::Relaxed), t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    if pipelined_raw {
        for t in &tasks {
            t.abort();
        }
    } else {
        let join = async {
            for t in tasks {
                t.await??;
            }
            Ok::<(), Error>(())
        };
        match tokio::time::timeout(STALL_LIMIT, join).await {
            Ok(res) => res?,
            Err(_) => {
                return Err(format!(
                    "stalled: calls in flight did not complete within {STALL_LIMIT:?} \
                     after the window ({} calls completed in the window)",
                    c1 - c0
                )
                .into());
            }
        }
    }
    if c1 == c0 {
        return Err("no call completed in the window".into());
    }
    Ok((c1 - c0) as f64 / elapsed.as_secs_f64())
}

/// The pipelined raw client: a writer task holding up to [`INFLIGHT`]
/// permits, writing every frame it has permits for in one batch, and a
/// reader task counting replies and returning permits. Runs until aborted.
fn pipelined<R, W>(
    r: R,
    mut w: W,
    payload: Bytes,
    done: Arc<AtomicU64>,
) -> Vec<JoinHandle<Result<(), Error>>>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(INFLIGHT));
    let writer = {
        let sem = sem.clone();
        tokio::spawn(async move {
            let hdr = frame_len(payload.len())?;
            let mut out = Vec::with_capacity(INFLIGHT * (SMALL + 4));
            loop {
                sem.acquire().await?.forget();
                let n = 1 + sem.forget_permits(INFLIGHT);
                for _ in 0..n {
                    if payload.len() <= SMALL {
                        out.extend_from_slice(&hdr);
                        out.extend_from_slice(&payload);
                    } else {
                        let mut b = Buf::chain(&hdr[..], &payload[..]);
                        w.write_all_buf(&mut b).await?;
                    }
                }
                if !out.is_empty() {
                    w.write_all(&out).await?;
                    out.clear();
                }
            }
        })
    };
    let reader = tokio::spawn(async move {
        let mut r = BufReader::with_capacity(BUF, r);
        let mut frame = Vec::new();
        let mut got = 0;
        while let Some(len) = read_len(&mut r).await? {
            frame.resize(len, 0);
            r.read_exact(&mut frame).await?;
            got += 1;
            if r.buffer().is_empty() {
                sem.add_permits(got);
                done.fetch_add(got as u64, Ordering::Relaxed);
                got = 0;
            }
        }
        Ok(())
    });
    vec![writer, reader]
}

/// Runs `f` (given a fresh server of `imp` over `transport`) as a spawned
/// task on a fresh runtime with `workers` worker threads; an error if it
/// takes longer than the timing plus [`STALL_LIMIT`] and 10 s of setup and
/// allocation counting.
fn run_fresh<T, F, Fut>(
    workers: usize,
    imp: Impl,
    transport: Transport,
    timing: Timing,
    f: F,
) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(Server) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, Error>> + Send + 'static,
{
    let limit = timing.warmup + timing.window + STALL_LIMIT + Duration::from_secs(10);
    let rt = runtime(workers)?;
    let res = rt.block_on(async move {
        let run = async move { f(Server::start(imp, transport).await?).await };
        tokio::spawn(async move {
            match tokio::time::timeout(limit, run).await {
                Ok(res) => res,
                Err(_) => Err(format!("stalled: no result within {limit:?}").into()),
            }
        })
        .await?
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    res
}

/// [`latency`] of `imp` over `transport` at `size`, on a fresh runtime with
/// `workers` worker threads, fresh server and connection.
pub fn measure_latency(
    imp: Impl,
    transport: Transport,
    size: usize,
    workers: usize,
    timing: Timing,
) -> Result<Latency, Error> {
    run_fresh(workers, imp, transport, timing, move |server| async move {
        let mut client = Client::connect(&server, &Payload::new(size)).await?;
        latency(&mut client, timing).await
    })
}

/// [`throughput`] of `imp` over `transport` at `size`, on a fresh runtime
/// with `workers` worker threads, fresh server and connection.
pub fn measure_throughput(
    imp: Impl,
    transport: Transport,
    size: usize,
    workers: usize,
    timing: Timing,
) -> Result<f64, Error> {
    run_fresh(workers, imp, transport, timing, move |server| async move {
        throughput(&server, &Payload::new(size), timing).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each implementation answers one 64 B echo over each transport it
    /// runs on, through the functions the benchmarks use.
    #[test]
    fn every_impl_echoes() {
        let rt = runtime(2).expect("runtime");
        let cases = Transport::ALL
            .into_iter()
            .flat_map(|t| Impl::ALL.into_iter().map(move |i| (i, t)))
            .filter(|(i, t)| i.supports(*t));
        for (imp, transport) in cases {
            let res: Result<(), Error> = rt.block_on(async move {
                tokio::spawn(async move {
                    let server = Server::start(imp, transport).await?;
                    let mut client = Client::connect(&server, &Payload::new(64)).await?;
                    client.call().await?;
                    if let Some(mut c) = client.try_clone() {
                        c.call().await?;
                    }
                    Ok(())
                })
                .await?
            });
            if let Err(e) = res {
                panic!("{} over {}: {e}", imp.name(), transport.name());
            }
        }
    }

    /// The throughput path (pipelined for raw, cloned clients otherwise)
    /// completes calls, and a short latency run yields ordered percentiles.
    #[test]
    fn short_measurements_run() {
        let t = Timing {
            warmup: Duration::from_millis(10),
            window: Duration::from_millis(30),
        };
        for imp in [Impl::Raw, Impl::Zap] {
            let rate = measure_throughput(imp, Transport::Tcp, 64, 2, t).expect("throughput");
            assert!(rate > 0.0, "{}", imp.name());
            let l = measure_latency(imp, Transport::Unix, 1024, 1, t).expect("latency");
            assert!(l.samples > 0 && l.p50_us > 0.0 && l.p99_us >= l.p50_us);
        }
    }

    #[test]
    fn payload_check_rejects_a_different_body() {
        let p = Payload::new(64);
        assert!(p.check(&p.body).is_ok());
        assert!(p.check(&p.body[1..]).is_err());
        let mut other = p.body.to_vec();
        other[63] ^= 1;
        assert!(p.check(&other).is_err());
    }
}
