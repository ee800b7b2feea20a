//! ZAP-RPC over QUIC on a lossy network: both endpoints send through a UDP
//! socket wrapper that drops 5 % of datagrams, chosen by a seeded
//! generator (xorshift64*), so each direction loses about one datagram in
//! twenty. QUIC's loss recovery must deliver every call and every stream
//! message, in order; the latencies seen are printed (`--no-capture`).
#![allow(clippy::unwrap_used)]

use std::fmt;
use std::io::{self, IoSliceMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use zap::transport::quic::udp::{RecvMeta, Transmit};
use zap::transport::quic::{
    AsyncUdpSocket, QuicConnector, QuicListener, Runtime, TokioRuntime, UdpPoller,
};
use zap::transport::test_certs::TestPki;
use zap::transport::{ClientTls, Limits, ServerTls, Url};
use zap::{Channel, Request, Response, Router, Server, Status, Streaming};

/// Drops outgoing datagrams with probability `loss_ppm` / 1,000,000.
struct LossySocket {
    inner: Arc<dyn AsyncUdpSocket>,
    rng: Mutex<u64>,
    loss_ppm: u64,
    sent: AtomicU64,
    dropped: AtomicU64,
}

impl fmt::Debug for LossySocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LossySocket")
            .field("loss_ppm", &self.loss_ppm)
            .finish_non_exhaustive()
    }
}

impl LossySocket {
    fn bind(seed: u64, loss_ppm: u64) -> Arc<LossySocket> {
        let std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        std.set_nonblocking(true).unwrap();
        let inner = TokioRuntime.wrap_udp_socket(std).unwrap();
        Arc::new(LossySocket {
            inner,
            rng: Mutex::new(seed | 1),
            loss_ppm,
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    /// xorshift64*: the next draw, uniform in 0..1,000,000.
    fn draw(&self) -> u64 {
        let mut x = self.rng.lock().unwrap();
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % 1_000_000
    }
}

impl AsyncUdpSocket for LossySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if self.draw() < self.loss_ppm {
            // Lost on the way: the sender cannot tell.
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }

    /// One datagram per transmit, so each is lost or not on its own.
    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

const LOSS_PPM: u64 = 50_000; // 5 %

struct Lossy {
    channel: Channel,
    client: Arc<LossySocket>,
    server: Arc<LossySocket>,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<()>,
}

async fn start(seed: u64, router: Router) -> Lossy {
    let pki = TestPki::generate();
    let limits = Limits::default();
    let server = LossySocket::bind(seed, LOSS_PPM);
    let tls = ServerTls::from_pem(
        pki.server_cert_pem.as_bytes(),
        pki.server_key_pem.as_bytes(),
    )
    .unwrap();
    let listener = QuicListener::from_socket(server.clone(), tls, limits.clone()).unwrap();
    let port = listener.local_url().port().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        Server::builder()
            .serve_with_shutdown(listener, router, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    let client = LossySocket::bind(seed.rotate_left(17) ^ 0x9E37_79B9, LOSS_PPM);
    let roots = ClientTls::with_roots_pem(pki.ca_pem.as_bytes()).unwrap();
    let connector = QuicConnector::new(limits, roots)
        .unwrap()
        .with_socket(client.clone())
        .unwrap();
    let url = Url::parse(&format!("zap+quic://localhost:{port}")).unwrap();
    let channel = Channel::builder(url)
        .quic_connector(connector)
        .connect_lazy();
    Lossy {
        channel,
        client,
        server,
        stop,
        served,
    }
}

impl Lossy {
    /// Stops the server and checks that both directions really lost
    /// datagrams.
    async fn finish(self, what: &str) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(20), self.served)
            .await
            .expect("server did not stop")
            .unwrap();
        for (side, s) in [("client", &self.client), ("server", &self.server)] {
            let (sent, dropped) = (
                s.sent.load(Ordering::Relaxed),
                s.dropped.load(Ordering::Relaxed),
            );
            println!("{what}: {side} sent {sent} datagrams, dropped {dropped}");
            assert!(
                dropped > 0,
                "{side} lost nothing: the loss is not simulated"
            );
        }
    }
}

fn echo_router() -> Router {
    Router::new()
        .unary("/test.Echo/Unary", |req: Request<Bytes>| async move {
            Ok(Response::new(req.into_inner()))
        })
        .streaming("/test.Echo/Bidi", |req: Request<Streaming>| async move {
            let s = futures_util::stream::unfold(req.into_inner(), |mut s| async move {
                match s.message().await {
                    Ok(Some(m)) => Some((Ok::<_, Status>(m), s)),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), s)),
                }
            });
            Ok(Response::new(s))
        })
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_unary_calls_under_five_percent_loss() {
    let env = start(0x5EED_0001, echo_router()).await;
    let ch = env.channel.clone();
    // 16 callers, 1,000 calls, each checked against what it sent.
    let callers = (0..16u32).map(|c| {
        let ch = ch.clone();
        tokio::spawn(async move {
            let mut took = Vec::new();
            for i in 0..1000u32 / 16 + u32::from(c < 1000 % 16) {
                let body = Bytes::from([c.to_le_bytes(), i.to_le_bytes()].concat());
                let t = Instant::now();
                let r = ch
                    .unary("/test.Echo/Unary", Request::new(body.clone()))
                    .await
                    .unwrap();
                took.push(t.elapsed());
                assert_eq!(r.into_inner(), body);
            }
            took
        })
    });
    let all = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::join_all(callers),
    )
    .await
    .expect("calls stalled under loss");
    let mut took: Vec<Duration> = all.into_iter().flat_map(|r| r.unwrap()).collect();
    assert_eq!(took.len(), 1000);
    took.sort();
    println!(
        "1,000 unary calls, 16 in flight, 5% loss each way: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&took, 50),
        percentile(&took, 99),
        took[took.len() - 1]
    );
    env.finish("unary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_message_bidi_stream_under_five_percent_loss() {
    const N: u64 = 10_000;
    let env = start(0x5EED_0002, echo_router()).await;
    let started = Instant::now();
    let messages = futures_util::stream::iter(0..N).map(|i| {
        let mut m = vec![0u8; 64];
        m[..8].copy_from_slice(&i.to_le_bytes());
        Bytes::from(m)
    });
    let r = env
        .channel
        .streaming("/test.Echo/Bidi", Request::new(messages))
        .await
        .unwrap();
    let mut stream = r.into_inner();
    let mut gaps = Vec::with_capacity(N as usize);
    let mut last = Instant::now();
    let mut next = 0u64;
    let read = async {
        while let Some(m) = stream.message().await.unwrap() {
            assert_eq!(m.len(), 64);
            let i = u64::from_le_bytes(m[..8].try_into().unwrap());
            assert_eq!(i, next, "message out of order");
            next += 1;
            gaps.push(last.elapsed());
            last = Instant::now();
        }
    };
    tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .expect("stream stalled under loss");
    assert_eq!(next, N, "messages lost");
    gaps.sort();
    println!(
        "10,000-message bidi echo, 5% loss each way: {:?} in all; gap between messages p50 {:?}, p99 {:?}, max {:?}",
        started.elapsed(),
        percentile(&gaps, 50),
        percentile(&gaps, 99),
        gaps[gaps.len() - 1]
    );
    env.finish("bidi").await;
}
