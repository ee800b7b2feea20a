//! Hostile clients against a server on loopback: each test is one way a
//! peer can try to make the server hold memory, a connection slot or work
//! it should not, and checks the server's own accounting (`ServerStats`)
//! or its answers on the wire. Raw sockets, bounded in count and time.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use zap::proto::{Config, Connection, Event, OpenHead, Reason};
use zap::transport::{Limits, Listener, Url};
use zap::{Channel, Code, Metadata, Request, Response, Router, Server, ServerStats};

const MIB: usize = 1 << 20;

/// A server on `zap://127.0.0.1:0` with `limits`, stopped when dropped.
struct Running {
    url: Url,
    stats: ServerStats,
    _stop: oneshot::Sender<()>,
}

async fn serve(router: Router, limits: Limits, server: Server) -> Running {
    let url = Url::parse("zap://127.0.0.1:0").unwrap();
    let listener = Listener::bind(&url, None, limits.clone()).await.unwrap();
    let url = listener.local_url();
    let server = server.limits(limits);
    let stats = server.stats();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        server
            .serve_with_shutdown(listener, router, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Running {
        url,
        stats,
        _stop: tx,
    }
}

fn addr(url: &Url) -> String {
    format!("{}:{}", url.host().unwrap(), url.port().unwrap())
}

fn echo(router: Router) -> Router {
    router.unary("/t.Echo/Unary", |req: Request<Bytes>| async move {
        Ok(Response::new(req.into_inner()))
    })
}

/// An ordinary client's call still works.
async fn echo_works(url: &Url) {
    let ch = Channel::builder(url.clone()).connect().await.unwrap();
    let r = ch
        .unary("/t.Echo/Unary", Request::new(Bytes::from_static(b"hi")))
        .await
        .unwrap();
    assert_eq!(r.into_inner(), "hi");
}

/// Bounds a step of a test: a hang fails it instead of stalling the run.
async fn within<T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not within {secs} s"),
    }
}

/// Reads until the server closes: what it sent, or an I/O error's text.
async fn read_to_close(sock: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = sock.read_to_end(&mut got).await;
    got
}

/// A ZAP client built on the sans-IO core and driven by hand, so a test
/// chooses what it announces, when it reads and which timers it runs.
struct RawPeer {
    conn: Connection,
    sock: TcpStream,
    rbuf: BytesMut,
}

impl RawPeer {
    async fn connect(url: &Url, cfg: Config) -> RawPeer {
        let sock = TcpStream::connect(addr(url)).await.unwrap();
        let mut p = RawPeer {
            conn: Connection::client(cfg, Instant::now()),
            sock,
            rbuf: BytesMut::new(),
        };
        p.flush().await;
        p
    }

    async fn flush(&mut self) {
        let mut chunks = Vec::new();
        self.conn.poll_transmit(&mut chunks);
        for c in chunks {
            self.sock.write_all(&c).await.unwrap();
            self.conn.wrote(c.len());
        }
    }

    fn open(&mut self, method: &str, timeout: Option<Duration>, message: &[u8]) -> u32 {
        let head = OpenHead {
            method: Bytes::copy_from_slice(method.as_bytes()),
            timeout,
            metadata: Metadata::new(),
        };
        let m = Bytes::copy_from_slice(message);
        self.conn
            .open(&head, Some(&m), true, Instant::now())
            .unwrap()
    }

    /// Reads what is there within `wait` and returns the events (never
    /// runs timers: deadlines are the server's alone).
    async fn pump(&mut self, wait: Duration) -> Vec<Event> {
        let mut events = Vec::new();
        let end = tokio::time::Instant::now() + wait;
        loop {
            self.rbuf.reserve(64 << 10);
            match tokio::time::timeout_at(end, self.sock.read_buf(&mut self.rbuf)).await {
                Ok(Ok(n)) if n > 0 => self.conn.handle_input(&mut self.rbuf, Instant::now()),
                Ok(_) => self.conn.handle_eof("closed"),
                Err(_) => {}
            }
            while let Some(ev) = self.conn.poll_event() {
                events.push(ev);
            }
            self.flush().await;
            if self.conn.is_closed() || tokio::time::Instant::now() >= end {
                return events;
            }
        }
    }
}

/// A client configuration announcing the largest windows and messages.
fn greedy() -> Config {
    let mut cfg = Config::default();
    cfg.settings.stream_window = i32::MAX as u32;
    cfg.settings.connection_window = i32::MAX as u32;
    cfg.settings.max_message = u32::MAX;
    cfg.settings.max_frame = u32::MAX;
    cfg.keepalive_interval = None;
    cfg
}

/// A server-streaming route that sends 1 MiB messages as fast as it may,
/// counting them.
fn flood_router(sent: Arc<AtomicUsize>) -> Router {
    echo(Router::new()).server_streaming("/t.Flood/Stream", move |_req: Request<Bytes>| {
        let sent = sent.clone();
        async move {
            let block = Bytes::from(vec![7u8; MIB]);
            let s = futures_util::stream::repeat(()).map(move |()| {
                sent.fetch_add(1, Ordering::Relaxed);
                Ok(block.clone())
            });
            Ok(Response::new(s))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_held_to_the_output_cap() {
    let sent = Arc::new(AtomicUsize::new(0));
    let limits = Limits::default()
        .with_max_queued_output(4 * MIB)
        .with_max_queued_output_per_call(MIB);
    let srv = serve(flood_router(sent.clone()), limits, Server::builder()).await;
    // Windows of 2^31 - 1 and 16 streaming calls, then no reading at all.
    let mut peer = RawPeer::connect(&srv.url, greedy()).await;
    for _ in 0..16 {
        peer.open("/t.Flood/Stream", None, b"go");
    }
    peer.flush().await;
    output_was_held(&srv, &sent).await;
    drop(peer);
}

/// After a client that does not read has had time to fill the queue: the
/// server held at most the cap (4 MiB) plus one message beyond it plus
/// control frames, its handlers were held back (what they made is the queue
/// plus what the kernel's socket buffers took), and others are served.
async fn output_was_held(srv: &Running, sent: &AtomicUsize) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let peak = srv.stats.peak_queued_output();
    assert!(peak > MIB, "the test did not fill the queue: {peak}");
    assert!(peak <= 4 * MIB + MIB + 64 * 1024, "queued {peak} bytes");
    let made = sent.load(Ordering::Relaxed);
    assert!(made < 64, "{made} messages of 1 MiB produced");
    within(10, "another client's call", echo_works(&srv.url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_calls_metadata_is_charged_as_stored() {
    let (release, released) = tokio::sync::watch::channel(false);
    let router = echo(Router::new()).unary("/t.Hold/Unary", move |_req: Request<Bytes>| {
        let mut released = released.clone();
        async move {
            let _ = released.wait_for(|r| *r).await;
            Ok(Response::new(Bytes::new()))
        }
    });
    let limits = Limits::default().with_max_metadata_memory(MIB);
    let srv = serve(router, limits, Server::builder()).await;
    let ch = Channel::builder(srv.url.clone()).connect().await.unwrap();
    // A legal 16 KiB block of 2,340 empty entries: small on the wire,
    // ~150 KiB of entries in memory.
    let mut md = Metadata::new();
    for _ in 0..2340 {
        md.insert("a", "").unwrap();
    }
    assert!(md.memory_size() > 100 * 1024);
    let mut calls = Vec::new();
    for _ in 0..32 {
        let ch = ch.clone();
        let mut req = Request::new(Bytes::new());
        *req.metadata_mut() = md.clone();
        calls.push(tokio::spawn(
            async move { ch.unary("/t.Hold/Unary", req).await },
        ));
    }
    // The calls the cap refused end at once; the others wait on the handler.
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        refused = calls.iter().filter(|c| c.is_finished()).count();
    }
    assert!(refused > 0, "no call was refused");
    let peak = srv.stats.peak_metadata_memory();
    assert!(peak > 0 && peak <= MIB, "metadata held: {peak}");
    // A call without metadata is not held up, and the held calls finish.
    within(10, "a plain call", echo_works(&srv.url)).await;
    release.send_replace(true);
    for c in calls {
        if let Err(s) = within(10, "a held call", c).await.unwrap() {
            assert_eq!(s.code(), Code::RESOURCE_EXHAUSTED, "{s:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_preface_is_closed_without_a_word() {
    let srv = serve(echo(Router::new()), Limits::default(), grpc_server()).await;
    for junk in [&b"GET / HTTP/1.1\r\n\r\n"[..], b"ZAP-RPC\x02", b"Z"] {
        let mut sock = TcpStream::connect(addr(&srv.url)).await.unwrap();
        sock.write_all(junk).await.unwrap();
        if junk.len() == 1 {
            // A partial preface, then silence: the handshake timeout.
            let _ = sock.shutdown().await;
        }
        let got = within(15, "the close", read_to_close(&mut sock)).await;
        assert!(got.is_empty(), "{junk:?} got an answer: {got:?}");
    }
    echo_works(&srv.url).await;
}

/// A server that also serves gRPC when the feature is on.
fn grpc_server() -> Server {
    #[cfg(feature = "grpc")]
    return Server::builder().grpc(Default::default());
    #[cfg(not(feature = "grpc"))]
    Server::builder()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_deadline_counts_from_accept() {
    let limits = Limits::default().with_handshake_timeout(Duration::from_secs(2));
    let srv = serve(echo(Router::new()), limits, grpc_server()).await;
    let mut sock = TcpStream::connect(addr(&srv.url)).await.unwrap();
    let start = Instant::now();
    // The first byte of the preface late, then nothing: closed at the
    // deadline from accept (2 s), not 2 s after the first byte (3.9 s).
    tokio::time::sleep(Duration::from_millis(1900)).await;
    sock.write_all(b"Z").await.unwrap();
    let got = within(15, "the close", read_to_close(&mut sock)).await;
    let took = start.elapsed();
    assert!(got.is_empty());
    assert!(took < Duration::from_millis(3300), "closed after {took:?}");
}

#[cfg(feature = "grpc")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_http2_byte_does_not_hold_a_slot() {
    // Three slots; the idle timeout (60 s) is not what frees them.
    let limits = Limits::default()
        .with_handshake_timeout(Duration::from_millis(500))
        .with_idle_timeout(Duration::from_secs(60))
        .with_max_connections(3);
    let srv = serve(echo(Router::new()), limits, grpc_server()).await;
    let mut socks = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr(&srv.url)).await.unwrap();
        s.write_all(b"P").await.unwrap();
        socks.push(s);
    }
    for s in &mut socks {
        let got = within(
            10,
            "the close of a one-byte HTTP/2 client",
            read_to_close(s),
        )
        .await;
        assert!(got.is_empty(), "{got:?}");
    }
    // The slots are free again.
    within(10, "a call after the slots freed", echo_works(&srv.url)).await;
    // A bad HTTP/2 start (HEADERS before SETTINGS) is closed at once too.
    let mut s = TcpStream::connect(addr(&srv.url)).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x01\x04\x00\x00\x00\x01")
        .await
        .unwrap();
    let got = within(5, "the close of a bad HTTP/2 start", read_to_close(&mut s)).await;
    assert!(got.is_empty(), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peers_max_frame_is_honoured() {
    let big = Bytes::from(vec![1u8; 20_000]);
    let b = big.clone();
    let router = echo(Router::new()).unary("/t.Big/Unary", move |_req: Request<Bytes>| {
        let b = b.clone();
        async move { Ok(Response::new(b)) }
    });
    let srv = serve(router, Limits::default(), Server::builder()).await;

    // Below the protocol's minimum: a connection error (GOAWAY with
    // PROTOCOL_ERROR), not frames that break the announced size.
    let mut sock = TcpStream::connect(addr(&srv.url)).await.unwrap();
    let mut hello = b"ZAP-RPC\x01".to_vec();
    hello.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // SETTINGS, 6 bytes
    hello.extend_from_slice(&[1, 0, 16, 0, 0, 0]); // MAX_FRAME 16
    sock.write_all(&hello).await.unwrap();
    let got = within(10, "the refusal", read_to_close(&mut sock)).await;
    let mut frames = Vec::new();
    let mut rest = &got[..];
    while rest.len() >= 10 {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        frames.push((rest[4], rest[10..10 + len].to_vec()));
        rest = &rest[10 + len..];
    }
    let goaway = frames
        .iter()
        .find(|(kind, _)| *kind == 8)
        .expect("no GOAWAY");
    let code = u32::from_le_bytes(goaway.1[4..8].try_into().unwrap());
    assert_eq!(Reason(code), Reason::PROTOCOL_ERROR);

    // At the minimum, with a large MAX_MESSAGE: a response that cannot fit
    // ends its call with RESOURCE_EXHAUSTED; the connection goes on.
    let mut cfg = greedy();
    cfg.settings.max_frame = 16_384;
    let mut peer = RawPeer::connect(&srv.url, cfg).await;
    let big_call = peer.open("/t.Big/Unary", None, b"");
    let small_call = peer.open("/t.Echo/Unary", None, b"ok");
    peer.flush().await;
    let mut closes = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while closes.len() < 2 && Instant::now() < end && !peer.conn.is_closed() {
        for e in peer.pump(Duration::from_millis(200)).await {
            if let Event::Close { id, head, .. } = e {
                closes.push((id, head.code));
            }
        }
    }
    assert!(!peer.conn.is_closed(), "the connection failed");
    closes.sort();
    assert_eq!(
        closes,
        vec![(big_call, Code::RESOURCE_EXHAUSTED), (small_call, Code::OK)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_expiries_count_toward_the_reset_rate() {
    let router = echo(Router::new()).unary("/t.Slow/Unary", |_req: Request<Bytes>| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(Response::new(Bytes::new()))
    });
    let srv = serve(router, Limits::default(), Server::builder()).await;
    let mut peer = RawPeer::connect(&srv.url, greedy()).await;
    // Calls with a 1 µs timeout, never cancelled by the client: each
    // starts a handler the server's deadline then stops.
    let mut opened = 0;
    let mut reason = None;
    while opened < 50_000 && reason.is_none() {
        for _ in 0..256 {
            if peer.conn.accepts_new_calls() && peer.conn.open_streams() < 512 {
                peer.open("/t.Slow/Unary", Some(Duration::from_micros(1)), b"");
                opened += 1;
            }
        }
        peer.flush().await;
        for e in peer.pump(Duration::from_millis(20)).await {
            if let Event::Closed(err) = e {
                reason = Some(err.reason);
            }
        }
    }
    assert_eq!(
        reason,
        Some(Reason::ENHANCE_YOUR_CALM),
        "{opened} expiring calls"
    );
    echo_works(&srv.url).await;
}

#[cfg(feature = "grpc")]
mod grpc {
    use super::*;

    /// A gRPC message frame: the 5-byte prefix, then `m`.
    fn grpc_frame(m: &[u8]) -> Bytes {
        let mut v = vec![0u8];
        v.extend_from_slice(&(m.len() as u32).to_be_bytes());
        v.extend_from_slice(m);
        Bytes::from(v)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_grpc_client_that_never_reads_is_held_to_the_output_cap() {
        let sent = Arc::new(AtomicUsize::new(0));
        let limits = Limits::default()
            .with_max_queued_output(4 * MIB)
            .with_max_queued_output_per_call(MIB);
        let srv = serve(flood_router(sent.clone()), limits, grpc_server()).await;
        let tcp = TcpStream::connect(addr(&srv.url)).await.unwrap();
        // HTTP/2's default windows, and no body ever read (so no window
        // is ever given back).
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let mut responses = Vec::new();
        for _ in 0..16 {
            let req = http::Request::post(format!("http://{}/t.Flood/Stream", addr(&srv.url)))
                .header("content-type", "application/grpc+zap")
                .header("te", "trailers")
                .body(())
                .unwrap();
            std::future::poll_fn(|cx| client.poll_ready(cx))
                .await
                .unwrap();
            let (resp, mut body) = client.send_request(req, false).unwrap();
            body.send_data(grpc_frame(b"go"), true).unwrap();
            responses.push(resp);
        }
        output_was_held(&srv, &sent).await;
        drop(responses);
    }
}
