//! Soak: mixed calls against one in-process server for a given time, with
//! every answer checked, to show that nothing is lost, nothing is wrong and
//! memory stays flat.
//!
//! ```text
//! cargo run --release -p zap-benches --bin soak -- [--secs 600] [--workers 16]
//!     [--transport tcp|unix] [--seed N]
//! ```
//!
//! Each worker loops over a random mix: unary calls of 0 B to 1 MB, server-
//! and client-streaming and bidi calls of several messages, calls that hit
//! their deadline (and calls whose deadline is met), calls cancelled
//! midway by dropping them, and every 50 calls a fresh connection. Every
//! response is checked byte for byte (or by checksum for client
//! streaming). A call that should succeed and does not is *lost*; one that
//! answers with other bytes is *wrong*.
//!
//! A progress line every 10 s: calls, calls/s, outcomes, the process's RSS
//! and the server's peak queued output. At the end: RSS after warm-up (the
//! first fifth of the run, at least 30 s when the run is long enough)
//! against RSS at the end. Exit status 1 if a call was lost or wrong, or
//! RSS grew by more than 20% (+16 MB) after warm-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use zap::transport::{Limits, Listener, Url};
use zap::{Channel, Code, Request, Response, Router, Server, Status, Streaming};

const USAGE: &str = "usage: soak [--secs N] [--workers N] [--transport tcp|unix] [--seed N]";

struct Opts {
    secs: u64,
    workers: usize,
    unix: bool,
    seed: u64,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        secs: 600,
        workers: 16,
        unix: false,
        seed: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} takes a number"))
        };
        match a.as_str() {
            "--secs" => o.secs = num("--secs")?,
            "--workers" => o.workers = num("--workers")?.max(1) as usize,
            "--seed" => o.seed = num("--seed")?,
            "--transport" => match args.next().as_deref() {
                Some("tcp") => o.unix = false,
                Some("unix") => o.unix = true,
                _ => return Err("--transport takes tcp or unix".into()),
            },
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(o)
}

/// xorshift64*: the soak's only randomness, reproducible from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A size from 0 to `max`, log-uniform, so small and large both come up.
    fn size(&mut self, max: usize) -> usize {
        let bits = self.below(usize::BITS as u64 - max.leading_zeros() as u64 + 1);
        (self.next() as usize % (1usize << bits).max(1)).min(max)
    }
}

/// `len` bytes derived from `seed`: what the server must send back.
fn pattern(seed: u64, len: usize) -> Bytes {
    let mut r = Rng(seed | 1);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

/// FNV-1a over `parts` in order.
fn checksum<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for p in parts {
        for &b in p {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

/// A request for `Split`/`Slow`: three little-endian words.
fn words(a: u64, b: u64, c: u64) -> Bytes {
    let mut v = Vec::with_capacity(24);
    for w in [a, b, c] {
        v.extend_from_slice(&w.to_le_bytes());
    }
    Bytes::from(v)
}

fn read_words(b: &[u8]) -> Result<[u64; 3], Status> {
    let w = |i: usize| {
        b.get(i * 8..i * 8 + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    };
    match (w(0), w(1), w(2)) {
        (Some(a), Some(b), Some(c)) => Ok([a, b, c]),
        _ => Err(Status::invalid_argument("expected three words")),
    }
}

fn router() -> Router {
    Router::new()
        .unary("/soak.S/Unary", |req: Request<Bytes>| async move {
            Ok(Response::new(req.into_inner()))
        })
        // [count, seed, size]: `count` messages of `pattern(seed + i, size)`.
        .server_streaming("/soak.S/Split", |req: Request<Bytes>| async move {
            let [n, seed, size] = read_words(req.get_ref())?;
            let s = futures_util::stream::iter(0..n.min(64))
                .map(move |i| Ok(pattern(seed + i, size.min(1 << 20) as usize)));
            Ok(Response::new(s))
        })
        .client_streaming("/soak.S/Concat", |req: Request<Streaming>| async move {
            let mut s = req.into_inner();
            let mut all = Vec::new();
            while let Some(m) = s.message().await? {
                all.push(m);
            }
            let sum = checksum(all.iter().map(|m| &m[..]));
            Ok(Response::new(Bytes::copy_from_slice(&sum.to_le_bytes())))
        })
        .streaming("/soak.S/Bidi", |req: Request<Streaming>| async move {
            let s = futures_util::stream::unfold(req.into_inner(), |mut s| async move {
                match s.message().await {
                    Ok(Some(m)) => Some((Ok(m), s)),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), s)),
                }
            });
            Ok(Response::new(s))
        })
        // [sleep ms, seed, size]: waits, then answers the pattern.
        .unary("/soak.S/Slow", |req: Request<Bytes>| async move {
            let [ms, seed, size] = read_words(req.get_ref())?;
            tokio::time::sleep(Duration::from_millis(ms.min(10_000))).await;
            Ok(Response::new(pattern(seed, size.min(1 << 20) as usize)))
        })
}

#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    ok: AtomicU64,
    deadline: AtomicU64,
    cancelled: AtomicU64,
    reconnects: AtomicU64,
    lost: AtomicU64,
    wrong: AtomicU64,
    bytes: AtomicU64,
}

impl Counts {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// What one call came to.
enum Outcome {
    Ok(u64),
    Deadline,
    Cancelled,
    Lost(String),
    Wrong(String),
}

async fn one_call(ch: &Channel, rng: &mut Rng) -> Outcome {
    let seed = rng.next();
    match rng.below(100) {
        0..40 => {
            let body = pattern(seed, rng.size(1 << 20));
            let n = body.len() as u64;
            match ch.unary("/soak.S/Unary", Request::new(body.clone())).await {
                Ok(r) if r.get_ref() == &body => Outcome::Ok(2 * n),
                Ok(r) => Outcome::Wrong(format!("unary: {} bytes back for {n}", r.get_ref().len())),
                Err(s) => Outcome::Lost(format!("unary: {s}")),
            }
        }
        40..55 => {
            let (n, size) = (1 + rng.below(8), rng.size(256 << 10) as u64);
            let req = Request::new(words(n, seed, size));
            let s = match ch.server_streaming("/soak.S/Split", req).await {
                Ok(r) => r.into_inner(),
                Err(s) => return Outcome::Lost(format!("split: {s}")),
            };
            let got: Vec<Result<Bytes, Status>> = s.collect().await;
            if got.len() != n as usize {
                return Outcome::Wrong(format!("split: {} messages for {n}", got.len()));
            }
            for (i, m) in got.into_iter().enumerate() {
                match m {
                    Ok(m) if m == pattern(seed + i as u64, size as usize) => {}
                    Ok(_) => return Outcome::Wrong(format!("split: message {i} differs")),
                    Err(s) => return Outcome::Lost(format!("split: {s}")),
                }
            }
            Outcome::Ok(n * size)
        }
        55..70 => {
            let parts: Vec<Bytes> = (0..1 + rng.below(8))
                .map(|i| pattern(seed + i, rng.size(128 << 10)))
                .collect();
            let want = checksum(parts.iter().map(|m| &m[..]));
            let n: u64 = parts.iter().map(|p| p.len() as u64).sum();
            let req = Request::new(futures_util::stream::iter(parts));
            match ch.client_streaming("/soak.S/Concat", req).await {
                Ok(r) if r.get_ref()[..] == want.to_le_bytes() => Outcome::Ok(n),
                Ok(_) => Outcome::Wrong("concat: checksum differs".into()),
                Err(s) => Outcome::Lost(format!("concat: {s}")),
            }
        }
        70..85 => {
            let parts: Vec<Bytes> = (0..1 + rng.below(8))
                .map(|i| pattern(seed + i, rng.size(128 << 10)))
                .collect();
            let n: u64 = parts.iter().map(|p| 2 * p.len() as u64).sum();
            let req = Request::new(futures_util::stream::iter(parts.clone()));
            let s = match ch.streaming("/soak.S/Bidi", req).await {
                Ok(r) => r.into_inner(),
                Err(s) => return Outcome::Lost(format!("bidi: {s}")),
            };
            let got: Vec<Result<Bytes, Status>> = s.collect().await;
            let got: Result<Vec<Bytes>, Status> = got.into_iter().collect();
            match got {
                Ok(g) if g == parts => Outcome::Ok(n),
                Ok(g) => Outcome::Wrong(format!("bidi: {} of {} echoed", g.len(), parts.len())),
                Err(s) => Outcome::Lost(format!("bidi: {s}")),
            }
        }
        85..95 => {
            // A deadline either missed (sleep 50 ms, 5 ms allowed) or met.
            let missed = rng.below(2) == 0;
            let size = rng.size(64 << 10) as u64;
            let mut req = Request::new(words(if missed { 50 } else { 1 }, seed, size));
            req.set_timeout(Duration::from_millis(if missed { 5 } else { 2_000 }));
            match ch.unary("/soak.S/Slow", req).await {
                Err(s) if missed && s.code() == Code::DEADLINE_EXCEEDED => Outcome::Deadline,
                Ok(r) if !missed && r.get_ref() == &pattern(seed, size as usize) => {
                    Outcome::Ok(size)
                }
                Ok(_) if !missed => Outcome::Wrong("slow: body differs".into()),
                Ok(_) => Outcome::Wrong("slow: answered past its deadline".into()),
                Err(s) => Outcome::Lost(format!("slow: {s}")),
            }
        }
        _ => {
            // Cancelled midway: the call future is dropped after 2 ms.
            let req = Request::new(words(20, seed, 1024));
            let call = ch.unary("/soak.S/Slow", req);
            match tokio::time::timeout(Duration::from_millis(2), call).await {
                Err(_) => Outcome::Cancelled,
                // A worker not polled for the whole sleep (a loaded machine)
                // finds the answer there before its timer: not a cancel,
                // but the answer must be right.
                Ok(Ok(r)) if r.get_ref() == &pattern(seed, 1024) => Outcome::Ok(1024),
                Ok(Ok(_)) => Outcome::Wrong("slow: body differs".into()),
                Ok(Err(s)) => Outcome::Lost(format!("cancelled call: {s}")),
            }
        }
    }
}

async fn worker(url: Url, counts: Arc<Counts>, seed: u64, until: Instant) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let connect = |url: &Url| Channel::builder(url.clone()).connect_lazy();
    let mut ch = connect(&url);
    let mut since_connect = 0;
    while Instant::now() < until {
        if since_connect == 50 {
            ch = connect(&url);
            since_connect = 0;
            Counts::add(&counts.reconnects, 1);
        }
        since_connect += 1;
        let outcome = one_call(&ch, &mut rng).await;
        Counts::add(&counts.calls, 1);
        match outcome {
            Outcome::Ok(n) => {
                Counts::add(&counts.ok, 1);
                Counts::add(&counts.bytes, n);
            }
            Outcome::Deadline => Counts::add(&counts.deadline, 1),
            Outcome::Cancelled => Counts::add(&counts.cancelled, 1),
            Outcome::Lost(why) => {
                Counts::add(&counts.lost, 1);
                eprintln!("lost: {why}");
            }
            Outcome::Wrong(why) => {
                Counts::add(&counts.wrong, 1);
                eprintln!("wrong: {why}");
            }
        }
    }
}

/// This process's resident set, in bytes (Linux; 0 elsewhere).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn mb(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

#[tokio::main]
async fn main() {
    let opts = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let path = std::env::temp_dir().join(format!("zap-soak-{}.sock", std::process::id()));
    let url = if opts.unix {
        Url::parse(&format!("zap+unix://{}", path.display())).unwrap_or_else(|e| panic!("{e}"))
    } else {
        Url::parse("zap://127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"))
    };
    let listener = match Listener::bind(&url, None, Limits::default()).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("soak: bind {url}: {e}");
            std::process::exit(2);
        }
    };
    let url = listener.local_url();
    let server = Server::builder();
    let stats = server.stats();
    tokio::spawn(server.serve(listener, router()));

    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let until = start + Duration::from_secs(opts.secs);
    let workers: Vec<_> = (0..opts.workers)
        .map(|i| {
            let seed = opts.seed.wrapping_add(i as u64 * 7919);
            tokio::spawn(worker(url.clone(), counts.clone(), seed, until))
        })
        .collect();
    println!(
        "soak: {} workers on {url} for {} s (seed {})",
        opts.workers, opts.secs, opts.seed
    );
    let warm_at = Duration::from_secs((opts.secs / 5).max(30.min(opts.secs / 2)));
    let mut warm_rss = None;
    let mut last = (start, 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    while Instant::now() < until {
        tick.tick().await;
        let now = Instant::now();
        let calls = Counts::get(&counts.calls);
        let rate = (calls - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        last = (now, calls);
        let r = rss();
        if warm_rss.is_none() && now.duration_since(start) >= warm_at {
            warm_rss = Some(r);
        }
        println!(
            "{:>5.0} s  calls {calls:>9}  {rate:>7.0}/s  ok {}  deadline {}  cancelled {}  \
             reconnects {}  lost {}  wrong {}  rss {:.1} MB  peak queued {:.1} MB",
            now.duration_since(start).as_secs_f64(),
            Counts::get(&counts.ok),
            Counts::get(&counts.deadline),
            Counts::get(&counts.cancelled),
            Counts::get(&counts.reconnects),
            Counts::get(&counts.lost),
            Counts::get(&counts.wrong),
            mb(r),
            mb(stats.peak_queued_output() as u64),
        );
    }
    for w in workers {
        let _ = w.await;
    }
    let end_rss = rss();
    let warm = warm_rss.unwrap_or(end_rss);
    let (lost, wrong) = (Counts::get(&counts.lost), Counts::get(&counts.wrong));
    let grew = end_rss as f64 > warm as f64 * 1.2 + 16.0 * (1 << 20) as f64;
    println!(
        "soak: {} calls in {:.0} s ({} ok, {:.1} GB moved, {} deadline, {} cancelled, \
         {} reconnects), lost {lost}, wrong {wrong}; rss after warm-up {:.1} MB, at the end \
         {:.1} MB{}",
        Counts::get(&counts.calls),
        start.elapsed().as_secs_f64(),
        Counts::get(&counts.ok),
        Counts::get(&counts.bytes) as f64 / 1e9,
        Counts::get(&counts.deadline),
        Counts::get(&counts.cancelled),
        Counts::get(&counts.reconnects),
        mb(warm),
        mb(end_rss),
        if grew { " (grew)" } else { " (flat)" },
    );
    if lost > 0 || wrong > 0 || grew {
        std::process::exit(1);
    }
}
