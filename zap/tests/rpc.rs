//! The runtime over real loopback sockets. Every behaviour test is written
//! once and run for each transport (`tcp`, `tls`, `unix`, and `quic` with
//! the `quic` feature) by `for_each_transport!`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use zap::transport::test_certs::TestPki;
use zap::transport::{ClientTls, Connector, Limits, Listener, ServerTls, Url};
use zap::{AnyListener, Channel, Code, Request, Response, Router, Server, Status, Streaming};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Tcp,
    Tls,
    Unix,
    #[cfg(feature = "quic")]
    Quic,
}

impl Transport {
    /// Whether the client needs TLS roots.
    fn tls(self) -> bool {
        match self {
            Transport::Tcp | Transport::Unix => false,
            Transport::Tls => true,
            #[cfg(feature = "quic")]
            Transport::Quic => true,
        }
    }

    /// The URL naming the server by its certificate's DNS name.
    fn client_url(self, local: &Url) -> Url {
        let port = local.port().unwrap_or(0);
        match self {
            Transport::Tls => Url::parse(&format!("zaps://localhost:{port}")).unwrap(),
            #[cfg(feature = "quic")]
            Transport::Quic => Url::parse(&format!("zap+quic://localhost:{port}")).unwrap(),
            Transport::Tcp | Transport::Unix => local.clone(),
        }
    }
}

/// A running server and what a client needs to reach it.
struct Env {
    url: Url,
    pki: Arc<TestPki>,
    transport: Transport,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

fn pki() -> Arc<TestPki> {
    static PKI: std::sync::OnceLock<Arc<TestPki>> = std::sync::OnceLock::new();
    PKI.get_or_init(|| Arc::new(TestPki::generate())).clone()
}

fn unique_socket() -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "zap-rpc-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

async fn listener(t: Transport, limits: Limits, client_ca: bool) -> AnyListener {
    let pki = pki();
    let server_tls = || {
        if client_ca {
            ServerTls::with_client_auth(
                pki.server_cert_pem.as_bytes(),
                pki.server_key_pem.as_bytes(),
                pki.ca_pem.as_bytes(),
                true,
            )
        } else {
            ServerTls::from_pem(
                pki.server_cert_pem.as_bytes(),
                pki.server_key_pem.as_bytes(),
            )
        }
        .unwrap()
    };
    match t {
        Transport::Tcp => {
            let url = Url::parse("zap://127.0.0.1:0").unwrap();
            Listener::bind(&url, None, limits).await.unwrap().into()
        }
        Transport::Unix => {
            let url = Url::parse(&format!("zap+unix://{}", unique_socket().display())).unwrap();
            Listener::bind(&url, None, limits).await.unwrap().into()
        }
        Transport::Tls => {
            let url = Url::parse("zaps://127.0.0.1:0").unwrap();
            Listener::bind(&url, Some(server_tls()), limits)
                .await
                .unwrap()
                .into()
        }
        #[cfg(feature = "quic")]
        Transport::Quic => {
            let url = Url::parse("zap+quic://127.0.0.1:0").unwrap();
            zap::transport::quic::QuicListener::bind(&url, server_tls(), limits)
                .await
                .unwrap()
                .into()
        }
    }
}

/// A server whose listener and connections both run under `limits`.
async fn start_limited(t: Transport, router: Router, limits: Limits) -> Env {
    start_with(t, router, Server::builder().limits(limits.clone()), limits).await
}

async fn start_with(t: Transport, router: Router, server: Server, limits: Limits) -> Env {
    let l = listener(t, limits, false).await;
    let url = t.client_url(&l.local_url());
    let (tx, rx) = oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        server
            .serve_with_shutdown(l, router, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Env {
        url,
        pki: pki(),
        transport: t,
        shutdown: Some(tx),
        served: Some(served),
    }
}

async fn start(t: Transport, router: Router) -> Env {
    start_with(t, router, Server::builder(), Limits::default()).await
}

impl Env {
    fn client_tls(&self) -> ClientTls {
        ClientTls::with_roots_pem(self.pki.ca_pem.as_bytes()).unwrap()
    }

    fn channel(&self) -> Channel {
        self.channel_with(Limits::default())
    }

    fn channel_with(&self, limits: Limits) -> Channel {
        let mut b = Channel::builder(self.url.clone()).limits(limits);
        if self.transport.tls() {
            b = b.tls(self.client_tls());
        }
        b.connect_lazy()
    }

    /// A raw connection to the server (TLS done), for hostile bytes. Over
    /// QUIC, `settings` sends the client's SETTINGS first, so what follows
    /// reaches a call stream.
    async fn raw(&self, settings: bool) -> Raw {
        self.raw_with(settings, Limits::default()).await
    }

    /// [`raw`](Self::raw) with the client's own limits.
    async fn raw_with(&self, settings: bool, limits: Limits) -> Raw {
        #[cfg(feature = "quic")]
        if self.transport == Transport::Quic {
            let c = zap::transport::quic::QuicConnector::new(limits, self.client_tls()).unwrap();
            let conn = c.connect(&self.url).await.unwrap();
            if settings {
                let mut control = conn.connection.open_uni().await.unwrap();
                control
                    .write_all(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                    .await
                    .unwrap();
                return Raw::Quic(conn, Some(control), Vec::new());
            }
            return Raw::Quic(conn, None, Vec::new());
        }
        let _ = settings;
        let mut c = Connector::new(limits);
        if self.transport == Transport::Tls {
            c = c.with_tls(self.client_tls());
        }
        Raw::Stream(c.connect(&self.url).await.unwrap().stream)
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.served.take() {
            tokio::time::timeout(Duration::from_secs(20), h)
                .await
                .expect("server did not stop")
                .unwrap();
        }
    }
}

/// A raw client connection for hostile-input tests.
enum Raw {
    Stream(zap::transport::Stream),
    /// The connection, its control stream and the call streams opened,
    /// kept open (dropping them would end them).
    #[cfg(feature = "quic")]
    Quic(
        zap::transport::quic::QuicConn,
        #[allow(dead_code)] Option<zap::transport::quic::SendStream>,
        Vec<(
            zap::transport::quic::SendStream,
            zap::transport::quic::RecvStream,
        )>,
    ),
}

impl Raw {
    /// Sends `bytes` (on a new call stream over QUIC), then ends the
    /// sending side if `end`.
    async fn send(&mut self, bytes: &[u8], end: bool) {
        match self {
            Raw::Stream(s) => {
                s.write_all(bytes).await.unwrap();
                if end {
                    s.shutdown().await.unwrap();
                }
            }
            #[cfg(feature = "quic")]
            Raw::Quic(conn, _, calls) => {
                let (mut send, recv) = conn.connection.open_bi().await.unwrap();
                send.write_all(bytes).await.unwrap();
                if end {
                    send.finish().unwrap();
                }
                calls.push((send, recv));
            }
        }
    }

    /// Why the server closed the connection (within 5 s): the code of its
    /// GOAWAY (byte streams) or of its CONNECTION_CLOSE (QUIC).
    async fn close_reason(&mut self) -> Option<zap::proto::Reason> {
        match self {
            Raw::Stream(s) => {
                let mut got = Vec::new();
                let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got));
                read.await.ok()?.ok()?;
                goaway_code(&got).map(zap::proto::Reason)
            }
            #[cfg(feature = "quic")]
            Raw::Quic(conn, ..) => {
                let e = tokio::time::timeout(Duration::from_secs(5), conn.connection.closed())
                    .await
                    .ok()?;
                match e {
                    zap::transport::quic::QuicConnectionError::ApplicationClosed(c) => {
                        u32::try_from(c.error_code.into_inner())
                            .ok()
                            .map(zap::proto::Reason)
                    }
                    _ => None,
                }
            }
        }
    }

    /// Whether the server closed the connection within 5 s.
    async fn closed_by_server(&mut self) -> bool {
        match self {
            Raw::Stream(s) => closed_by_server(s).await,
            #[cfg(feature = "quic")]
            Raw::Quic(conn, ..) => {
                tokio::time::timeout(Duration::from_secs(5), conn.connection.closed())
                    .await
                    .is_ok()
            }
        }
    }
}

/// The code of the GOAWAY among a server's frames (u32-LE length, kind,
/// flags, u32 stream; GOAWAY is kind 8 with last stream, code, ...).
fn goaway_code(bytes: &[u8]) -> Option<u32> {
    let mut rest = bytes;
    while rest.len() >= zap::proto::FRAME_HEADER_LEN {
        let len = u32::from_le_bytes(rest[..4].try_into().ok()?) as usize;
        let frame = rest.get(..zap::proto::FRAME_HEADER_LEN + len)?;
        if frame[4] == 8 && len >= 8 {
            return Some(u32::from_le_bytes(frame[14..18].try_into().ok()?));
        }
        rest = &rest[frame.len()..];
    }
    None
}

#[cfg(feature = "quic")]
macro_rules! quic_case {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn quic() {
            super::$name(Transport::Quic).await
        }
    };
}
#[cfg(not(feature = "quic"))]
macro_rules! quic_case {
    ($name:ident) => {};
}

macro_rules! for_each_transport {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tcp() { super::$name(Transport::Tcp).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tls() { super::$name(Transport::Tls).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unix() { super::$name(Transport::Unix).await }
            quic_case!($name);
        }
    )*};
}

for_each_transport!(
    all_call_kinds,
    more_than_a_connection_window,
    large_messages_both_ways_concurrently,
    message_sizes_vary_alone_and_together,
    bidi_flow_control_bounds_buffering,
    stalled_large_response_does_not_delay_others,
    concurrent_calls_and_slow_handler,
    deadline_exceeded_and_propagation,
    dropping_a_call_cancels_the_handler,
    metadata_round_trips,
    errors_and_unimplemented,
    responses_beyond_the_clients_limit_are_refused,
    a_panicking_handler_fails_only_its_call,
    a_panicking_request_stream_cancels_its_call,
    hostile_bytes_close_only_that_connection,
    max_concurrent_streams_refused,
    silent_client_is_closed,
    idle_connection_is_closed,
    graceful_shutdown,
    shutdown_ends_with_the_last_call,
    tower_layers_on_both_sides,
);

/// A `Stream` of a `Streaming`'s messages, ending at the first error.
fn echo_stream(s: Streaming) -> impl futures_util::Stream<Item = Result<Bytes, Status>> + Send {
    futures_util::stream::unfold(s, |mut s| async move {
        match s.message().await {
            Ok(Some(m)) => Some((Ok(m), s)),
            Ok(None) => None,
            Err(e) => Some((Err(e), s)),
        }
    })
}

fn echo_router() -> Router {
    Router::new()
        .unary("/test.Echo/Unary", |req: Request<Bytes>| async move {
            Ok(Response::new(req.into_inner()))
        })
        .server_streaming("/test.Echo/Split", |req: Request<Bytes>| async move {
            let parts: Vec<Result<Bytes, Status>> = req
                .into_inner()
                .chunks(1)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            Ok(Response::new(futures_util::stream::iter(parts)))
        })
        .client_streaming("/test.Echo/Concat", |req: Request<Streaming>| async move {
            let mut s = req.into_inner();
            let mut all = Vec::new();
            while let Some(m) = s.message().await? {
                all.extend_from_slice(&m);
            }
            Ok(Response::new(Bytes::from(all)))
        })
        .streaming("/test.Echo/Bidi", |req: Request<Streaming>| async move {
            Ok(Response::new(echo_stream(req.into_inner())))
        })
}

async fn all_call_kinds(t: Transport) {
    let env = start(t, echo_router()).await;
    let ch = env.channel();
    let r = ch
        .unary(
            "/test.Echo/Unary",
            Request::new(Bytes::from_static(b"hello")),
        )
        .await
        .unwrap();
    assert_eq!(r.get_ref(), &Bytes::from_static(b"hello"));

    let r = ch
        .server_streaming("/test.Echo/Split", Request::new(Bytes::from_static(b"abc")))
        .await
        .unwrap();
    let parts: Vec<Bytes> = r.into_inner().map(|m| m.unwrap()).collect::<Vec<_>>().await;
    assert_eq!(parts, [&b"a"[..], b"b", b"c"]);

    let msgs = futures_util::stream::iter([&b"x"[..], b"y", b"z"].map(Bytes::from_static));
    let r = ch
        .client_streaming("/test.Echo/Concat", Request::new(msgs))
        .await
        .unwrap();
    assert_eq!(r.get_ref(), &Bytes::from_static(b"xyz"));

    let msgs = futures_util::stream::iter((0..5u8).map(|i| Bytes::from(vec![i])));
    let r = ch
        .streaming("/test.Echo/Bidi", Request::new(msgs))
        .await
        .unwrap();
    let back: Vec<Bytes> = r.into_inner().map(|m| m.unwrap()).collect().await;
    assert_eq!(
        back,
        (0..5u8).map(|i| Bytes::from(vec![i])).collect::<Vec<_>>()
    );

    // Whole requests to different methods, one after the other on one
    // connection, each reach their own route (the server remembers the
    // last route it looked up).
    for round in 0..2u8 {
        let body = Bytes::from(vec![b'a' + round, b'b' + round]);
        let r = ch
            .unary("/test.Echo/Unary", Request::new(body.clone()))
            .await
            .unwrap();
        assert_eq!(r.get_ref(), &body);
        let r = ch
            .server_streaming("/test.Echo/Split", Request::new(body.clone()))
            .await
            .unwrap();
        let parts: Vec<Bytes> = r.into_inner().map(|m| m.unwrap()).collect().await;
        assert_eq!(parts.len(), 2, "round {round}");
        let e = ch
            .unary("/test.Echo/Missing", Request::new(body))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::UNIMPLEMENTED);
    }
    env.stop().await;
}

/// 64 callers each make `rounds` echo calls of `size` bytes on one
/// connection; all must complete (within 60 s) with the right length.
async fn concurrent_echoes(t: Transport, size: usize, rounds: usize, stalled: &str) {
    let env = start(t, echo_router()).await;
    let ch = env.channel();
    let body = Bytes::from(vec![7u8; size]);
    let calls = (0..64).map(|_| {
        let (ch, body) = (ch.clone(), body.clone());
        tokio::spawn(async move {
            for _ in 0..rounds {
                let r = ch
                    .unary("/test.Echo/Unary", Request::new(body.clone()))
                    .await;
                assert_eq!(r.unwrap().get_ref().len(), body.len());
            }
        })
    });
    let all = futures_util::future::join_all(calls);
    for r in tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect(stalled)
    {
        r.unwrap();
    }
    env.stop().await;
}

async fn more_than_a_connection_window(t: Transport) {
    // 64 callers move 40 MiB each way through 16 MiB connection windows:
    // credit must come back for messages in OPEN and CLOSE frames too.
    concurrent_echoes(t, 16 << 10, 40, "calls stalled: window credit lost").await;
}

async fn large_messages_both_ways_concurrently(t: Transport) {
    // 64 calls of 1 MiB in flight each way on one connection: both sides
    // have far more to write than the socket buffers hold, and must keep
    // reading while they write.
    concurrent_echoes(t, 1 << 20, 2, "large calls stalled").await;
}

/// Sizes that make the read buffer grow for large frames and shrink back,
/// first one call at a time (the caller writes its own frames on plain
/// sockets), then many at once (frames share reads and split across
/// them): every echo must come back whole and unchanged.
async fn message_sizes_vary_alone_and_together(t: Transport) {
    let env = start(t, echo_router()).await;
    let ch = env.channel();
    let sizes = [
        0,
        1,
        100,
        (1 << 20) + 3,
        64,
        65_536,
        65_536 + 7,
        10,
        3 << 20,
        1 << 16,
        5,
        (1 << 20) - 1,
        200_000,
        1,
    ];
    for (i, &size) in sizes.iter().enumerate() {
        echo_intact(&ch, size, i, &format!("call {i}")).await;
    }
    // Then 16 callers at once, each through the sizes in its own order,
    // so frames of every size share reads and split across them.
    let callers: Vec<_> = (0..16)
        .map(|c| {
            let ch = ch.clone();
            tokio::spawn(async move {
                for k in 0..sizes.len() {
                    let size = sizes[(k + c) % sizes.len()];
                    echo_intact(&ch, size, c + k, &format!("caller {c}")).await;
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    env.stop().await;
}

/// A unary echo of `size` bytes (a pattern seeded by `seed`) that must come
/// back unchanged.
async fn echo_intact(ch: &Channel, size: usize, seed: usize, what: &str) {
    let body: Vec<u8> = (0..size).map(|j| (j * 31 + seed) as u8).collect();
    let resp = ch
        .unary("/test.Echo/Unary", Request::new(Bytes::from(body.clone())))
        .await
        .unwrap_or_else(|e| panic!("{what} ({size} bytes): {e}"));
    assert!(
        resp.into_inner() == body,
        "{what}: {size} bytes came back changed"
    );
}

async fn bidi_flow_control_bounds_buffering(t: Transport) {
    let env = start(t, echo_router()).await;
    let ch = env.channel();
    const N: usize = 10_000;
    const SIZE: usize = 1024;
    let (mut tx, resp) = ch.open("/test.Echo/Bidi", Request::new(())).await.unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let sent2 = sent.clone();
    let sender = tokio::spawn(async move {
        for i in 0..N {
            let mut m = vec![0u8; SIZE];
            m[..8].copy_from_slice(&(i as u64).to_le_bytes());
            tx.send(Bytes::from(m)).await.unwrap();
            sent2.fetch_add(1, Ordering::SeqCst);
        }
        tx.finish().unwrap();
    });
    let mut stream = resp.into_stream().await.unwrap().into_inner();
    let mut received = 0usize;
    let mut max_ahead = 0usize;
    while let Some(m) = stream.message().await.unwrap() {
        assert_eq!(
            u64::from_le_bytes(m[..8].try_into().unwrap()),
            received as u64,
            "order"
        );
        received += 1;
        // The echo can arrive before its sender counts it (the sender's
        // task writes the frame itself and is then preempted).
        max_ahead = max_ahead.max(sent.load(Ordering::SeqCst).saturating_sub(received));
        if received.is_multiple_of(500) {
            // A slow consumer.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    sender.await.unwrap();
    assert_eq!(received, N);
    // Both directions' windows (1 MiB each) plus one message each: the
    // sender can be ahead by about 2 MiB / 1056 B ≈ 1986 messages, not 10k.
    // (A message is charged 32 bytes beyond its length on a byte stream,
    // §7; over QUIC the window counts its 10-byte frame header, and each
    // reader may hold one 16 KiB read ahead.)
    let (charge, slack) = match t {
        #[cfg(feature = "quic")]
        Transport::Quic => (SIZE + 10, 2 * (16 << 10) / (SIZE + 10)),
        _ => (SIZE + 32, 0),
    };
    let bound = 2 * ((1 << 20) / charge + 2) + 16 + slack;
    assert!(
        max_ahead <= bound,
        "sender ran {max_ahead} messages ahead (bound {bound}): flow control failed"
    );
    env.stop().await;
}

/// A 10 MB response nobody reads stalls on flow control; a small call on
/// the same connection goes through meanwhile (no head-of-line blocking),
/// and the big one still arrives whole once read.
async fn stalled_large_response_does_not_delay_others(t: Transport) {
    const BIG: usize = 10 << 20;
    let sent = Arc::new(AtomicBool::new(false));
    let s2 = sent.clone();
    let router = echo_router().client_streaming("/test.Big/Get", move |req: Request<Streaming>| {
        let sent = s2.clone();
        async move {
            let mut s = req.into_inner();
            while s.message().await?.is_some() {}
            sent.store(true, Ordering::SeqCst);
            Ok(Response::new(Bytes::from(vec![5u8; BIG])))
        }
    });
    let env = start(t, router).await;
    let ch = env.channel();
    let (mut tx, big) = ch.open("/test.Big/Get", Request::new(())).await.unwrap();
    tx.send(Bytes::from_static(b"go")).await.unwrap();
    tx.finish().unwrap();
    wait_flag(&sent).await;
    // The response is being written and is stuck behind the unread window.
    for i in 0..20u8 {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            ch.unary("/test.Echo/Unary", Request::new(Bytes::from(vec![i]))),
        )
        .await
        .expect("a small call waited for the stalled 10 MB response")
        .unwrap();
        assert_eq!(r.get_ref().as_ref(), &[i]);
    }
    let r = tokio::time::timeout(Duration::from_secs(20), big.into_unary())
        .await
        .expect("the stalled response never resumed")
        .unwrap();
    assert_eq!(r.get_ref().len(), BIG);
    assert!(r.get_ref().iter().all(|&b| b == 5));
    env.stop().await;
}

async fn concurrent_calls_and_slow_handler(t: Transport) {
    let router = echo_router().unary("/test.Slow/Sleep", |req: Request<Bytes>| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(Response::new(req.into_inner()))
    });
    let env = start(t, router).await;
    let ch = env.channel();
    let slow_done = Arc::new(AtomicBool::new(false));
    let sd = slow_done.clone();
    let ch2 = ch.clone();
    let slow = tokio::spawn(async move {
        ch2.unary("/test.Slow/Sleep", Request::new(Bytes::new()))
            .await
            .unwrap();
        sd.store(true, Ordering::SeqCst);
    });
    let calls = (0..1000u32).map(|i| {
        let ch = ch.clone();
        tokio::spawn(async move {
            let body = Bytes::from(i.to_le_bytes().to_vec());
            let r = ch
                .unary("/test.Echo/Unary", Request::new(body.clone()))
                .await;
            assert_eq!(r.unwrap().into_inner(), body);
        })
    });
    for c in futures_util::future::join_all(calls).await {
        c.unwrap();
    }
    assert!(
        !slow_done.load(Ordering::SeqCst),
        "1,000 fast calls waited for the slow handler"
    );
    slow.await.unwrap();
    env.stop().await;
}

/// Sets a flag when dropped: the handler observed its cancellation.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

async fn wait_flag(f: &AtomicBool) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !f.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("flag never set");
}

async fn deadline_exceeded_and_propagation(t: Transport) {
    let cancelled = Arc::new(AtomicBool::new(false));
    let remaining = Arc::new(std::sync::Mutex::new(None));
    let (c, r) = (cancelled.clone(), remaining.clone());
    let router = Router::new().unary("/test.Slow/Sleep", move |req: Request<Bytes>| {
        let (c, r) = (c.clone(), r.clone());
        async move {
            let _flag = DropFlag(c);
            *r.lock().unwrap() = req.remaining();
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(Response::new(Bytes::new()))
        }
    });
    let env = start(t, router).await;
    let ch = env.channel();
    let mut req = Request::new(Bytes::new());
    req.set_timeout(Duration::from_millis(50));
    let started = Instant::now();
    let err = ch.unary("/test.Slow/Sleep", req).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), Code::DEADLINE_EXCEEDED, "{err}");
    // Prompt: ended by the deadline, not by the 10 s handler.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    wait_flag(&cancelled).await;
    let left = remaining.lock().unwrap().expect("handler saw a deadline");
    assert!(left <= Duration::from_millis(50), "remaining {left:?}");
    // Propagation: a request built from the incoming one inherits it.
    let mut incoming = Request::new(());
    incoming.set_timeout(Duration::from_millis(30));
    let mut outgoing = Request::new(());
    outgoing.propagate_deadline(&incoming);
    assert_eq!(outgoing.deadline(), incoming.deadline());
    env.stop().await;
}

async fn dropping_a_call_cancels_the_handler(t: Transport) {
    let cancelled = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = tokio::sync::mpsc::channel::<()>(1);
    let c = cancelled.clone();
    let router = Router::new().unary("/test.Slow/Sleep", move |_req: Request<Bytes>| {
        let (c, tx) = (c.clone(), started_tx.clone());
        async move {
            let _flag = DropFlag(c);
            let _ = tx.send(()).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(Response::new(Bytes::new()))
        }
    });
    let env = start(t, router).await;
    let ch = env.channel();
    let mut started_rx = started_rx;
    let call = tokio::spawn({
        let ch = ch.clone();
        async move {
            ch.unary("/test.Slow/Sleep", Request::new(Bytes::new()))
                .await
        }
    });
    started_rx.recv().await.unwrap();
    call.abort(); // drops the call future
    wait_flag(&cancelled).await;
    // The connection is still good.
    let ok = ch
        .unary("/test.Slow/Missing", Request::new(Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(ok.code(), Code::UNIMPLEMENTED);
    env.stop().await;
}

async fn metadata_round_trips(t: Transport) {
    let router = Router::new()
        .unary("/test.Md/Unary", |req: Request<Bytes>| async move {
            let md = req.metadata();
            assert_eq!(md.get("x-user"), Some("alice"));
            let mut resp = Response::new(md.get_bin("trace-bin").unwrap().clone());
            resp.headers_mut().insert("x-server", "s1").unwrap();
            resp.headers_mut()
                .insert_bin("h-bin", vec![0u8, 255])
                .unwrap();
            resp.trailers_mut().insert("x-cost", "7").unwrap();
            resp.trailers_mut()
                .insert_bin("t-bin", vec![1u8, 2])
                .unwrap();
            Ok(resp)
        })
        .server_streaming("/test.Md/Stream", |_req: Request<Bytes>| async move {
            let mut resp =
                Response::new(futures_util::stream::iter([Ok(Bytes::from_static(b"1"))]));
            resp.headers_mut().insert("x-h", "v").unwrap();
            resp.trailers_mut()
                .insert_bin("end-bin", vec![9u8])
                .unwrap();
            Ok(resp)
        });
    let env = start(t, router).await;
    let ch = env.channel();
    let mut req = Request::new(Bytes::new());
    req.metadata_mut().insert("x-user", "alice").unwrap();
    req.metadata_mut()
        .insert_bin("trace-bin", vec![0xde, 0xad])
        .unwrap();
    let r = ch.unary("/test.Md/Unary", req).await.unwrap();
    assert_eq!(r.get_ref().as_ref(), &[0xde, 0xad]);
    assert_eq!(r.headers().get("x-server"), Some("s1"));
    assert_eq!(r.headers().get_bin("h-bin").unwrap().as_ref(), &[0, 255]);
    assert_eq!(r.trailers().get("x-cost"), Some("7"));
    assert_eq!(r.trailers().get_bin("t-bin").unwrap().as_ref(), &[1, 2]);

    let r = ch
        .server_streaming("/test.Md/Stream", Request::new(Bytes::new()))
        .await
        .unwrap();
    assert_eq!(r.headers().get("x-h"), Some("v"));
    let mut s = r.into_inner();
    assert_eq!(
        s.message().await.unwrap().unwrap(),
        Bytes::from_static(b"1")
    );
    assert!(s.message().await.unwrap().is_none());
    assert_eq!(
        s.trailers().unwrap().get_bin("end-bin").unwrap().as_ref(),
        &[9]
    );
    env.stop().await;
}

/// A response larger than the client's MAX_MESSAGE is not sent: the call
/// ends with `RESOURCE_EXHAUSTED` instead, whether the handler answered at
/// once (a unary call) or after reading a stream, and the connection
/// goes on serving.
async fn responses_beyond_the_clients_limit_are_refused(t: Transport) {
    let env = start(t, echo_router()).await;
    // A 70 KiB frame limit makes the client announce a 6 KiB MAX_MESSAGE.
    let ch = env.channel_with(Limits::default().with_max_frame(70 << 10));
    let big = Bytes::from(vec![1u8; 10_000]);
    let e = ch
        .unary("/test.Echo/Unary", Request::new(big.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::RESOURCE_EXHAUSTED, "{e}");
    let e = ch
        .client_streaming(
            "/test.Echo/Concat",
            Request::new(futures_util::stream::iter([big])),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::RESOURCE_EXHAUSTED, "{e}");
    let small = ch
        .unary("/test.Echo/Unary", Request::new(Bytes::from_static(b"ok")))
        .await
        .unwrap();
    assert_eq!(small.get_ref().as_ref(), b"ok");
    env.stop().await;
}

/// A handler that panics (in its first step, after waiting, or in the
/// middle of a response stream) fails its own call with `INTERNAL`; the
/// connection and its other calls go on, and the failed calls do not keep
/// holding their streams (the server allows 2 at a time here, and 3 rounds
/// of 3 panics go through it).
async fn a_panicking_handler_fails_only_its_call(t: Transport) {
    let router = echo_router()
        .unary("/test.Panic/Now", |_req: Request<Bytes>| async move {
            if true {
                panic!("test handler panics at once");
            }
            Ok(Response::new(Bytes::new()))
        })
        .unary("/test.Panic/Later", |_req: Request<Bytes>| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if true {
                panic!("test handler panics after waiting");
            }
            Ok(Response::new(Bytes::new()))
        })
        .server_streaming("/test.Panic/Stream", |_req: Request<Bytes>| async move {
            let first = futures_util::stream::iter([Ok(Bytes::from_static(b"one"))]);
            let then = futures_util::stream::once(async {
                if true {
                    panic!("test stream panics after one message");
                }
                Ok(Bytes::new())
            });
            Ok(Response::new(first.chain(then)))
        });
    let limits = Limits::default().with_max_concurrent_streams(2);
    let env = start_limited(t, router, limits).await;
    let ch = env.channel();
    for round in 0..3 {
        for method in ["/test.Panic/Now", "/test.Panic/Later"] {
            let e = ch
                .unary(method, Request::new(Bytes::new()))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::INTERNAL, "{method}, round {round}: {e}");
        }
        let mut s = ch
            .server_streaming("/test.Panic/Stream", Request::new(Bytes::new()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.message().await.unwrap().unwrap().as_ref(), b"one");
        let e = s.message().await.unwrap_err();
        assert_eq!(e.code(), Code::INTERNAL, "stream, round {round}: {e}");
    }
    echo_still_works(&ch).await;
    env.stop().await;
}

/// After a failed call, the same channel (and connection) still echoes.
async fn echo_still_works(ch: &Channel) {
    let ok = ch
        .unary(
            "/test.Echo/Unary",
            Request::new(Bytes::from_static(b"still")),
        )
        .await
        .unwrap();
    assert_eq!(ok.get_ref().as_ref(), b"still");
}

/// A request stream that panics midway (the panic reaches the caller's
/// task) cancels its call: the server's handler sees the cut, never an end
/// after the messages sent so far (which it would take for the whole
/// request), and the connection goes on.
async fn a_panicking_request_stream_cancels_its_call(t: Transport) {
    // Each handler reports the first message it got, then how its request
    // stream ended.
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let record = move |req: Request<Streaming>| {
        let seen_tx = seen_tx.clone();
        async move {
            let mut s = req.into_inner();
            let mut got = Vec::new();
            let outcome = loop {
                match s.message().await {
                    Ok(Some(m)) => {
                        let _ = seen_tx.send(Ok(m.to_vec()));
                        got.extend_from_slice(&m);
                    }
                    Ok(None) => break Ok(got),
                    Err(e) => break Err(e.code()),
                }
            };
            let _ = seen_tx.send(outcome);
            Ok::<_, Status>(Bytes::new())
        }
    };
    let r = record.clone();
    let router = echo_router()
        .client_streaming("/test.Record/Concat", move |req: Request<Streaming>| {
            let r = r.clone();
            async move { Ok(Response::new(r(req).await?)) }
        })
        .streaming("/test.Record/Bidi", move |req: Request<Streaming>| {
            let r = record.clone();
            async move {
                r(req).await?;
                Ok(Response::new(futures_util::stream::empty()))
            }
        });
    let env = start(t, router).await;
    let ch = env.channel();
    // One message, then a panic once the handler has that message: the
    // server has seen the call by then (a QUIC stream reset before its OPEN
    // arrived would start no handler at all).
    let (got_first_tx, got_first) = tokio::sync::watch::channel(false);
    let panicking = move || {
        let mut got_first = got_first.clone();
        let first = futures_util::stream::iter([Bytes::from_static(b"x")]);
        let then = futures_util::stream::once(async move {
            let _ = got_first.wait_for(|g| *g).await;
            if true {
                panic!("test request stream panics after one message");
            }
            Bytes::new()
        });
        first.chain(then)
    };
    let mut see = async |what: &str| {
        tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: the handler never saw it"))
            .unwrap()
    };

    // Client streaming: the stream panics on the caller's own task.
    let ch2 = ch.clone();
    let s = panicking.clone();
    let call = tokio::spawn(async move {
        ch2.client_streaming("/test.Record/Concat", Request::new(s()))
            .await
    });
    assert_eq!(see("client streaming").await, Ok(b"x".to_vec()));
    got_first_tx.send_replace(true);
    assert!(call.await.unwrap_err().is_panic());
    assert_eq!(see("client streaming").await, Err(Code::CANCELLED));

    // Bidi: the stream panics in the call's pump task; the caller reading
    // the responses learns the call ended, and so does the handler.
    got_first_tx.send_replace(false);
    let ch2 = ch.clone();
    let caller = tokio::spawn(async move {
        let resp = ch2.streaming("/test.Record/Bidi", Request::new(panicking()));
        let mut s = resp.await?.into_inner();
        while s.message().await?.is_some() {}
        Ok::<_, Status>(())
    });
    assert_eq!(see("bidi").await, Ok(b"x".to_vec()));
    got_first_tx.send_replace(true);
    let ended = tokio::time::timeout(Duration::from_secs(5), caller)
        .await
        .expect("the bidi caller never learned its call ended")
        .unwrap();
    assert_eq!(ended.unwrap_err().code(), Code::CANCELLED);
    assert_eq!(see("bidi").await, Err(Code::CANCELLED));

    echo_still_works(&ch).await;
    env.stop().await;
}

async fn errors_and_unimplemented(t: Transport) {
    let router = Router::new().unary("/test.Err/Fail", |_req: Request<Bytes>| async move {
        let mut s = Status::with_details(
            Code::FAILED_PRECONDITION,
            "balance too low",
            Bytes::from_static(b"\x08\x01details"),
        );
        s.metadata_mut().insert("retry-after", "5").unwrap();
        Err::<Response<Bytes>, _>(s)
    });
    let env = start(t, router).await;
    let ch = env.channel();
    let e = ch
        .unary("/test.Err/Fail", Request::new(Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION);
    assert_eq!(e.message(), "balance too low");
    assert_eq!(e.details().as_ref(), b"\x08\x01details");
    assert_eq!(e.metadata().get("retry-after"), Some("5"));
    let e = ch
        .unary("/test.Err/Nope", Request::new(Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::UNIMPLEMENTED);
    assert!(e.message().contains("/test.Err/Nope"));
    let e = ch
        .unary("/other.Service/Fail", Request::new(Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::UNIMPLEMENTED);
    env.stop().await;
}

/// Reads until EOF or error; returns whether it ended within 5 s.
async fn closed_by_server(s: &mut zap::transport::Stream) -> bool {
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn hostile_bytes_close_only_that_connection(t: Transport) {
    let env = start(t, echo_router()).await;
    let ch = env.channel();
    ch.unary(
        "/test.Echo/Unary",
        Request::new(Bytes::from_static(b"before")),
    )
    .await
    .unwrap();

    let settings = [10u8, 0, 0, 0, 0, 0, 0, 0, 0, 0].map(|_| 0u8); // empty SETTINGS
    let mut huge = zap::proto::PREFACE.to_vec();
    huge.extend_from_slice(&settings);
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 2, 0, 1, 0, 0, 0]); // 4 GiB MESSAGE
    let mut truncated = zap::proto::PREFACE.to_vec();
    truncated.extend_from_slice(&settings);
    truncated.extend_from_slice(&[100, 0, 0, 0, 2, 0]); // header cut short, then EOF
    let cases: [(&str, Vec<u8>); 4] = [
        ("4 GiB length prefix", huge),
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        ("truncated frame", truncated),
    ];
    for (name, bytes) in cases {
        let mut raw = env.raw(true).await;
        raw.send(&bytes, name == "truncated frame").await;
        assert!(
            raw.closed_by_server().await,
            "{name}: connection not closed"
        );
        // Others are still served.
        let r = ch
            .unary(
                "/test.Echo/Unary",
                Request::new(Bytes::from_static(b"after")),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: server stopped serving: {e}"));
        assert_eq!(r.get_ref(), &Bytes::from_static(b"after"));
    }
    env.stop().await;
}

async fn max_concurrent_streams_refused(t: Transport) {
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let entered = Arc::new(AtomicUsize::new(0));
    let e2 = entered.clone();
    let router = Router::new().unary("/test.Block/Wait", move |_req: Request<Bytes>| {
        let mut rx = release_rx.clone();
        e2.fetch_add(1, Ordering::SeqCst);
        async move {
            let _ = rx.wait_for(|r| *r).await;
            Ok(Response::new(Bytes::new()))
        }
    });
    let limits = Limits::default().with_max_concurrent_streams(2);
    let env = start_limited(t, router, limits).await;
    let ch = env.channel();
    let held: Vec<_> = (0..2)
        .map(|_| {
            let ch = ch.clone();
            tokio::spawn(async move {
                ch.unary("/test.Block/Wait", Request::new(Bytes::new()))
                    .await
            })
        })
        .collect();
    // Both slots are taken once both handlers have started.
    tokio::time::timeout(Duration::from_secs(5), async {
        while entered.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first two calls never started");
    let e = tokio::time::timeout(
        Duration::from_secs(5),
        ch.unary("/test.Block/Wait", Request::new(Bytes::new())),
    )
    .await
    .expect("the third call hung")
    .unwrap_err();
    assert_eq!(e.code(), Code::RESOURCE_EXHAUSTED, "{e}");
    release_tx.send(true).unwrap();
    for h in held {
        h.await.unwrap().unwrap();
    }

    // Max connections: a second connection is refused, never left hanging.
    let env2 = start_with(
        t,
        echo_router(),
        Server::builder(),
        Limits::default().with_max_connections(1),
    )
    .await;
    let first = env2.channel();
    first
        .unary("/test.Echo/Unary", Request::new(Bytes::new()))
        .await
        .unwrap();
    let second = env2.channel();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        second.unary("/test.Echo/Unary", Request::new(Bytes::new())),
    )
    .await
    .expect("call on a refused connection hung");
    assert_eq!(r.unwrap_err().code(), Code::UNAVAILABLE);
    env2.stop().await;
    env.stop().await;
}

async fn silent_client_is_closed(t: Transport) {
    let limits = Limits::default().with_handshake_timeout(Duration::from_millis(300));
    let env = start_limited(t, echo_router(), limits).await;
    // Connects (TLS done) and says nothing: closed after the handshake timeout.
    let mut raw = env.raw(false).await;
    assert!(raw.closed_by_server().await, "silent client kept open");
    env.stop().await;
}

async fn idle_connection_is_closed(t: Transport) {
    let limits = Limits::default().with_idle_timeout(Duration::from_millis(300));
    let env = start_limited(t, echo_router(), limits).await;
    // A connection past its SETTINGS that opens no call: closed as idle
    // (the handshake timeout, 10 s, is far off).
    let mut raw = env.raw(true).await;
    if let Raw::Stream(s) = &mut raw {
        let mut hello = zap::proto::PREFACE.to_vec();
        hello.extend_from_slice(&[0; zap::proto::FRAME_HEADER_LEN]); // empty SETTINGS
        s.write_all(&hello).await.unwrap();
    }
    assert_eq!(
        raw.close_reason().await,
        Some(zap::proto::Reason::IDLE_TIMEOUT),
        "idle connection not closed as idle"
    );
    // A channel whose connection idled out calls again on a new one.
    let ch = env.channel();
    for round in 0..2 {
        let r = ch
            .unary("/test.Echo/Unary", Request::new(Bytes::from_static(b"hi")))
            .await
            .unwrap_or_else(|e| panic!("call {round}: {e}"));
        assert_eq!(r.get_ref(), &Bytes::from_static(b"hi"));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    env.stop().await;
}

/// A `/test.Slow/Half` call in flight on its own task: its handler
/// echoes "done" after a while.
fn slow_echo_call(ch: &Channel) -> tokio::task::JoinHandle<Result<Response<Bytes>, Status>> {
    let ch = ch.clone();
    tokio::spawn(async move {
        ch.unary("/test.Slow/Half", Request::new(Bytes::from_static(b"done")))
            .await
    })
}

/// During shutdown: the slow call ends well, then the server's serving
/// ends (`why` says what a timeout means).
async fn slow_call_then_served(
    inflight: tokio::task::JoinHandle<Result<Response<Bytes>, Status>>,
    env: &mut Env,
    why: &str,
) {
    let r = inflight.await.unwrap().unwrap();
    assert_eq!(r.get_ref(), &Bytes::from_static(b"done"));
    tokio::time::timeout(Duration::from_secs(10), env.served.take().unwrap())
        .await
        .expect(why)
        .unwrap();
}

/// Routes `/test.Slow/Half`: echoes after `delay`.
fn with_slow_echo(router: Router, delay: Duration) -> Router {
    router.unary("/test.Slow/Half", move |req: Request<Bytes>| async move {
        tokio::time::sleep(delay).await;
        Ok(Response::new(req.into_inner()))
    })
}

async fn graceful_shutdown(t: Transport) {
    let router = with_slow_echo(echo_router(), Duration::from_millis(400)).unary(
        "/test.Slow/Hang",
        |_req: Request<Bytes>| async move {
            std::future::pending::<()>().await;
            Ok(Response::new(Bytes::new()))
        },
    );
    let server = Server::builder().drain_timeout(Duration::from_millis(1500));
    let mut env = start_with(t, router, server, Limits::default()).await;
    let ch = env.channel();
    ch.unary("/test.Echo/Unary", Request::new(Bytes::new()))
        .await
        .unwrap();
    let inflight = slow_echo_call(&ch);
    let hanging = tokio::spawn({
        let ch = ch.clone();
        async move {
            ch.unary("/test.Slow/Hang", Request::new(Bytes::new()))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let _ = env.shutdown.take().unwrap().send(());
    // New calls are refused once the GOAWAY has arrived (no sleep-based
    // guess: wait for it, boundedly).
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ch
                .unary("/test.Echo/Unary", Request::new(Bytes::new()))
                .await
            {
                Err(e) => return e,
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
    .await
    .expect("new calls were still accepted during shutdown");
    assert_eq!(refused.code(), Code::UNAVAILABLE, "{refused}");
    // The call in flight finishes, and shutdown completes by the drain
    // deadline although a handler hangs.
    slow_call_then_served(inflight, &mut env, "shutdown did not complete").await;
    assert!(started.elapsed() < Duration::from_secs(8));
    let e = hanging.await.unwrap().unwrap_err();
    assert_eq!(e.code(), Code::UNAVAILABLE, "{e}");
}

/// A draining connection closes as soon as its last call is done, not at
/// the drain deadline, and the server's shutdown completes then.
async fn shutdown_ends_with_the_last_call(t: Transport) {
    let router = with_slow_echo(echo_router(), Duration::from_millis(300));
    let server = Server::builder().drain_timeout(Duration::from_secs(60));
    let mut env = start_with(t, router, server, Limits::default()).await;
    let inflight = slow_echo_call(&env.channel());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = env.shutdown.take().unwrap().send(());
    // Far from the 60 s deadline: the connection closed with its call.
    slow_call_then_served(inflight, &mut env, "shutdown waited for the drain deadline").await;
}

async fn tower_layers_on_both_sides(t: Transport) {
    use tower::{Service, ServiceBuilder, ServiceExt};
    let router = echo_router().unary("/test.Slow/Sleep", |_req: Request<Bytes>| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(Response::new(Bytes::new()))
    });
    // Server: an interceptor that requires a token, and a timeout.
    let service = ServiceBuilder::new()
        .timeout(Duration::from_millis(200))
        .layer(tower::layer::layer_fn(|inner: Router| {
            let inner = inner.clone();
            tower::service_fn(move |call: zap::ServerCall| {
                let mut inner = inner.clone();
                async move {
                    if call.metadata().get("token") != Some("secret") {
                        return Err::<(), zap::BoxError>(Box::new(Status::unauthenticated(
                            "no token",
                        )));
                    }
                    inner
                        .call(call)
                        .await
                        .map_err(|e| -> zap::BoxError { match e {} })
                }
            })
        }))
        .service(router);
    let l = listener(t, Limits::default(), false).await;
    let url = t.client_url(&l.local_url());
    let (tx, rx) = oneshot::channel::<()>();
    let served = tokio::spawn(Server::builder().serve_service(l, service, async {
        let _ = rx.await;
    }));
    let env = Env {
        url,
        pki: pki(),
        transport: t,
        shutdown: Some(tx),
        served: Some(served),
    };
    let ch = env.channel();
    let authed = |body: &'static [u8]| {
        let mut r = Request::new(Bytes::from_static(body));
        r.metadata_mut().insert("token", "secret").unwrap();
        r
    };
    let e = ch
        .unary("/test.Echo/Unary", Request::new(Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::UNAUTHENTICATED);
    let ok = ch.unary("/test.Echo/Unary", authed(b"hi")).await.unwrap();
    assert_eq!(ok.get_ref(), &Bytes::from_static(b"hi"));
    let e = ch.unary("/test.Slow/Sleep", authed(b"")).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::DEADLINE_EXCEEDED,
        "server timeout layer: {e}"
    );

    // Client: tower layers stack on the channel.
    let mut client = ServiceBuilder::new()
        .concurrency_limit(4)
        .timeout(Duration::from_millis(100))
        .service(ch.clone());
    let call = zap::RawCall {
        method: "/test.Slow/Sleep".into(),
        request: authed(b""),
    };
    let e = client.ready().await.unwrap().call(call).await.unwrap_err();
    assert!(e.is::<tower::timeout::error::Elapsed>(), "{e}");
    let call = zap::RawCall {
        method: "/test.Echo/Unary".into(),
        request: authed(b"layered"),
    };
    let r = client.ready().await.unwrap().call(call).await.unwrap();
    assert_eq!(r.get_ref(), &Bytes::from_static(b"layered"));
    env.stop().await;
}

// TLS-specific behaviour.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_rejects_untrusted_and_wrong_hostname() {
    let env = start(Transport::Tls, echo_router()).await;
    let untrusted = Channel::builder(env.url.clone())
        .tls(ClientTls::with_roots_pem(env.pki.other_ca_pem.as_bytes()).unwrap())
        .connect_lazy();
    let e = untrusted
        .unary("/test.Echo/Unary", Request::new(Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::UNAVAILABLE);
    assert!(e.message().to_lowercase().contains("certificate"), "{e}");
    let wrong_name = Channel::builder(env.url.clone())
        .tls(
            ClientTls::with_roots_pem(env.pki.ca_pem.as_bytes())
                .unwrap()
                .with_server_name("not-localhost")
                .unwrap(),
        )
        .connect_lazy();
    let e = wrong_name
        .unary("/test.Echo/Unary", Request::new(Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::UNAVAILABLE);
    assert!(e.message().to_lowercase().contains("certificate"), "{e}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_required_and_peer_identity_tls() {
    mtls_required_and_peer_identity(Transport::Tls).await;
}

#[cfg(feature = "quic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_required_and_peer_identity_quic() {
    mtls_required_and_peer_identity(Transport::Quic).await;
}

async fn mtls_required_and_peer_identity(t: Transport) {
    let router = Router::new().unary("/test.Who/Am", |req: Request<Bytes>| async move {
        let cert = req
            .peer()
            .and_then(|p| p.peer_certificate())
            .map(|c| Bytes::copy_from_slice(c.as_ref()))
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        Ok(Response::new(cert))
    });
    let pki = pki();
    let l = listener(t, Limits::default(), true).await;
    let url = t.client_url(&l.local_url());
    let (tx, rx) = oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        Server::builder()
            .serve_with_shutdown(l, router, async {
                let _ = rx.await;
            })
            .await
            .unwrap()
    });
    let anonymous = Channel::builder(url.clone())
        .tls(ClientTls::with_roots_pem(pki.ca_pem.as_bytes()).unwrap())
        .connect_lazy();
    let e = anonymous
        .unary("/test.Who/Am", Request::new(Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::UNAVAILABLE, "{e}");
    let with_cert = Channel::builder(url)
        .tls(
            ClientTls::with_roots_pem(pki.ca_pem.as_bytes())
                .unwrap()
                .with_identity(
                    pki.client_cert_pem.as_bytes(),
                    pki.client_key_pem.as_bytes(),
                )
                .unwrap(),
        )
        .connect_lazy();
    let r = with_cert
        .unary("/test.Who/Am", Request::new(Bytes::new()))
        .await
        .unwrap();
    let der = pem_to_der(&pki.client_cert_pem);
    assert_eq!(
        r.get_ref().as_ref(),
        &der[..],
        "handler saw another identity"
    );
    let _ = tx.send(());
    served.await.unwrap();
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

/// Rapid reset over QUIC: a client that opens call streams and resets
/// them in a loop is closed with `ENHANCE_YOUR_CALM` once past §9's rate
/// (2048 a second); other clients are still served.
#[cfg(feature = "quic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_rapid_reset_closes_the_connection() {
    use zap::transport::quic::VarInt;
    let env = start(Transport::Quic, echo_router()).await;
    let ch = env.channel();
    // A client that pings when its streams are blocked, so a close the
    // network lost is answered (see below) within a second.
    let limits = Limits::default().with_keepalive_interval(Duration::from_millis(200));
    let mut raw = env.raw_with(true, limits).await;
    let Raw::Quic(conn, ..) = &raw else {
        unreachable!("a QUIC raw connection")
    };
    let connection = conn.connection.clone();
    let mut opened = 0u32;
    let closed = loop {
        match connection.open_bi().await {
            Ok((mut send, _recv)) => {
                let _ = send.reset(VarInt::from_u32(Code::CANCELLED.0));
                opened += 1;
                assert!(opened < 100_000, "not closed after {opened} reset streams");
            }
            Err(e) => break e,
        }
    };
    // The server's CONNECTION_CLOSE is one datagram: on a loaded machine
    // the flooding client's receive buffer can drop it, and the server,
    // done draining, then answers the client's next packet (a stream, or
    // a keepalive PING once blocked) with a stateless reset. Either way the
    // server closed the connection; when the close arrives it must say why.
    match closed {
        zap::transport::quic::QuicConnectionError::Reset => {}
        _ => assert_eq!(
            raw.close_reason().await,
            Some(zap::proto::Reason::ENHANCE_YOUR_CALM),
            "closed after {opened} reset streams: {closed:?}"
        ),
    }
    let r = ch
        .unary("/test.Echo/Unary", Request::new(Bytes::from_static(b"ok")))
        .await
        .expect("another client is still served");
    assert_eq!(r.get_ref(), &Bytes::from_static(b"ok"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_channel_closes_its_connection() {
    // With room for one connection, a second channel can only connect once
    // the first channel's connection has been closed.
    let env = start_with(
        Transport::Tcp,
        echo_router(),
        Server::builder(),
        Limits::default().with_max_connections(1),
    )
    .await;
    let first = env.channel();
    let stream = first
        .server_streaming("/test.Echo/Split", Request::new(Bytes::from_static(b"ab")))
        .await
        .unwrap()
        .into_inner();
    drop(first);
    // A call still held by the caller completes after the channel is gone.
    let parts: Vec<Bytes> = stream.map(|m| m.unwrap()).collect().await;
    assert_eq!(parts.len(), 2);
    let second = env.channel();
    let ok = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match second
                .unary("/test.Echo/Unary", Request::new(Bytes::from_static(b"x")))
                .await
            {
                Ok(r) => return r,
                Err(_) => tokio::time::sleep(Duration::from_millis(150)).await,
            }
        }
    })
    .await
    .expect("the dropped channel's connection was never closed");
    assert_eq!(ok.get_ref(), &Bytes::from_static(b"x"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_routes_are_an_error() {
    let router = echo_router().unary("/test.Echo/Unary", |r: Request<Bytes>| async move {
        Ok(Response::new(r.into_inner()))
    });
    let l = listener(Transport::Tcp, Limits::default(), false).await;
    let e = Server::builder().serve(l, router).await.unwrap_err();
    assert!(e.to_string().contains("/test.Echo/Unary"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_fails_fast_then_backs_off() {
    // A port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let ch =
        Channel::builder(Url::parse(&format!("zap://127.0.0.1:{port}")).unwrap()).connect_lazy();
    let e = ch
        .unary("/x.Y/Z", Request::new(Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::UNAVAILABLE);
    let e = ch
        .unary("/x.Y/Z", Request::new(Bytes::new()))
        .await
        .unwrap_err();
    assert!(e.message().contains("backoff"), "{e}");
}

/// A server that accepts, reads and never answers (not even its SETTINGS):
/// the client enforces its own deadline, also for a call that wrote its
/// frame itself (a lone call on a plain socket) and so never woke its
/// connection's driver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_deadline_holds_against_a_silent_server() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut sink = vec![0u8; 4096];
                while let Ok(n) = tokio::io::AsyncReadExt::read(&mut s, &mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    let ch =
        Channel::builder(Url::parse(&format!("zap://127.0.0.1:{port}")).unwrap()).connect_lazy();
    for _ in 0..3 {
        let mut req = Request::new(Bytes::from_static(b"hello"));
        req.set_deadline(Instant::now() + Duration::from_millis(100));
        // The guard only stops a hang (the handshake timeout is 10 s).
        let res = tokio::time::timeout(Duration::from_secs(5), ch.unary("/x.Y/Z", req))
            .await
            .expect("the client's deadline did not fire");
        assert_eq!(res.unwrap_err().code(), Code::DEADLINE_EXCEEDED);
    }
    server.abort();
}
