//! Shared driver of the `conn_server` and `conn_client` fuzz targets: one
//! [`Connection`] fed a peer's byte stream in chunks, with time steps and
//! application calls in between, all chosen by the input.
//!
//! Input layout:
//!
//! ```text
//! [cfg: u8] [script length L: u8] [script: L bytes] [peer stream: the rest]
//! ```
//!
//! - `cfg` bit 0: put a valid handshake in front of the peer stream (server:
//!   preface + SETTINGS; client: SETTINGS), so inputs get past it;
//!   bits 1–2: this side's configuration (defaults, small windows and
//!   limits, tight rate limits and timeouts, no timers); bit 3: consume
//!   every received message at once (returning flow-control credit);
//!   bit 4: the handshake's SETTINGS announce small windows and limits;
//!   bit 5: a slow transport, which reports bytes written only when the
//!   script says so (else everything is written at once); bits 6–7: frames
//!   shorter than 0, 64, 4096 or 1 MiB bytes are copied out of the input
//!   buffer (`set_copy_below`).
//! - The script is a list of `(op, arg)` byte pairs: feed the next chunk of
//!   the peer stream (1–256, 16–4096 or 256–65536 bytes, or all the rest),
//!   advance the clock (milliseconds, seconds, or to the next timer) and
//!   handle timeouts, or make an application call (open, send, finish,
//!   cancel, send headers, close, consumed, goaway, close the connection,
//!   end of file, bytes written) on a stream picked by `arg`. What the
//!   script leaves of the stream is fed at the end, then the timers run.
//!
//! Checks beyond "no panic": everything the connection writes is whole,
//! valid frames of its side within the limits the peer announced (parsed
//! as the peer parses them, with its settings), a server writes nothing
//! before the client's preface, nothing follows `Event::Closed`, and a
//! stream gets no event after its terminal one.

#![forbid(unsafe_code)]

use std::collections::{BTreeSet, VecDeque};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use zap::fuzzing::{self, Stream as Framing};
use zap::proto::{
    CloseHead, Config, Connection, Event, MIN_MAX_FRAME, OpenHead, PREFACE, Reason, Settings, Side,
    close_head,
};
use zap::{Code, Metadata};

/// Whether to print what happens (environment variable `ZAP_FUZZ_TRACE`
/// set), for reading what one input does: run the target binary on it.
fn tracing() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("ZAP_FUZZ_TRACE").is_some())
}

macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing() {
            eprintln!($($arg)*);
        }
    };
}

/// Zeros to slice messages from.
static ZEROS: [u8; 70_000] = [0; 70_000];

/// Message sizes a script can pick.
const SIZES: [usize; 8] = [0, 1, 31, 100, 1000, 4095, 4096, 70_000];

/// A SETTINGS frame with the given pairs.
fn settings_frame(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut f = Vec::with_capacity(10 + 6 * pairs.len());
    f.extend_from_slice(&((pairs.len() * 6) as u32).to_le_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    for (id, v) in pairs {
        f.extend_from_slice(&id.to_le_bytes());
        f.extend_from_slice(&v.to_le_bytes());
    }
    f
}

/// What the handshake prefix announces: small windows and limits, so this
/// side runs into flow control and size limits soon.
const SMALL_PEER: [(u16, u32); 6] = [
    (1, MIN_MAX_FRAME),
    (2, 3),
    (3, 300),
    (4, 1000),
    (5, 64),
    (6, 1500),
];

fn config(profile: u8) -> Config {
    let mut c = Config::default();
    match profile & 3 {
        0 => {}
        1 => {
            c.settings = Settings {
                max_frame: MIN_MAX_FRAME,
                max_concurrent_streams: 4,
                stream_window: 256,
                connection_window: 1024,
                max_metadata: 128,
                max_message: 512,
            };
            c.max_queued_output = 3000;
            c.max_queued_output_per_call = 1200;
            c.max_metadata_memory = 400;
        }
        2 => {
            c.settings.max_concurrent_streams = 2;
            c.handshake_timeout = Duration::from_millis(50);
            c.idle_timeout = Some(Duration::from_millis(500));
            c.keepalive_interval = Some(Duration::from_millis(100));
            c.keepalive_timeout = Duration::from_millis(100);
            c.max_resets_per_sec = 3;
            c.max_pings_per_sec = 2;
        }
        _ => {
            c.idle_timeout = None;
            c.keepalive_interval = None;
        }
    }
    c
}

/// Valid method paths (UTF-8, starting with '/'), and one over the
/// 1024-byte limit.
fn method(arg: u8) -> Bytes {
    match arg % 4 {
        0 => Bytes::from_static(b"/echo.Echo/Say"),
        1 => Bytes::from_static(b"/"),
        2 => Bytes::from_static("/p.S/\u{e9}t\u{e9}".as_bytes()),
        _ => Bytes::from(format!("/{}", "m".repeat(1024))),
    }
}

fn metadata(arg: u8) -> Metadata {
    let mut md = Metadata::new();
    if arg & 1 != 0 {
        let _ = md.insert("x-user", "alice");
    }
    if arg & 2 != 0 {
        let _ = md.insert_bin("trace-bin", vec![0u8, 255, 7]);
    }
    if arg & 4 != 0 {
        // Larger than the small MAX_METADATA some configurations announce.
        let _ = md.insert("big", "v".repeat(200));
    }
    md
}

fn message(arg: u8) -> Bytes {
    Bytes::from_static(&ZEROS[..SIZES[(arg & 7) as usize]])
}

struct Driver {
    conn: Connection,
    side: Side,
    base: Instant,
    now: Duration,
    input: BytesMut,
    /// Stream ids this side knows (opened here, or OPEN events).
    ids: Vec<u32>,
    /// Streams that had their terminal event (or were cancelled locally).
    ended: BTreeSet<u32>,
    /// Messages received and not yet consumed: (stream, length).
    unconsumed: VecDeque<(u32, usize)>,
    auto_consume: bool,
    closed: bool,
    /// Output not yet checked (the client's starts with the preface).
    out: Vec<u8>,
    out_started: bool,
    /// The transport reports writes only when the script says so.
    slow_writer: bool,
    /// The first bytes of the peer stream (a server may write only after
    /// they are the preface).
    head: Vec<u8>,
}

impl Driver {
    fn now(&self) -> Instant {
        self.base + self.now
    }

    fn pick(&self, arg: u8, raw: bool) -> u32 {
        if raw || self.ids.is_empty() {
            u32::from(arg)
        } else {
            self.ids[arg as usize % self.ids.len()]
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        trace!("feed {} bytes", chunk.len());
        let want = PREFACE.len().saturating_sub(self.head.len());
        self.head.extend_from_slice(&chunk[..want.min(chunk.len())]);
        self.input.extend_from_slice(chunk);
        let now = self.now();
        self.conn.handle_input(&mut self.input, now);
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        trace!("time {:?}", self.now);
        let now = self.now();
        self.conn.handle_timeout(now);
    }

    fn skip_to_timer(&mut self) {
        if let Some(t) = self.conn.poll_timeout() {
            let now = self.now();
            if t > now {
                self.now += t - now;
            }
            trace!("time {:?} (next timer)", self.now);
            let now = self.now();
            self.conn.handle_timeout(now);
        }
    }

    fn terminal(&mut self, id: u32) {
        assert!(
            self.ended.insert(id),
            "second terminal event for stream {id}"
        );
    }

    fn live(&self, id: u32, what: &str) {
        assert!(
            !self.ended.contains(&id),
            "{what} on stream {id} after its terminal event"
        );
    }

    /// Takes every event and checks the order rules.
    fn events(&mut self) {
        while let Some(ev) = self.conn.poll_event() {
            trace!("  event {ev:?}");
            assert!(!self.closed, "event after Closed: {ev:?}");
            match ev {
                Event::Open { id, message, .. } => {
                    assert_eq!(self.side, Side::Server);
                    assert!(!self.ids.contains(&id), "OPEN event twice for {id}");
                    self.live(id, "OPEN");
                    self.ids.push(id);
                    if let Some(m) = message {
                        self.unconsumed.push_back((id, m.len()));
                    }
                }
                Event::Message { id, message, .. } => {
                    self.live(id, "MESSAGE");
                    self.unconsumed.push_back((id, message.len()));
                }
                Event::End { id } => {
                    assert_eq!(self.side, Side::Server);
                    self.live(id, "END");
                }
                Event::Headers { id, .. } => {
                    assert_eq!(self.side, Side::Client);
                    self.live(id, "HEADERS");
                }
                Event::Close { id, message, .. } => {
                    assert_eq!(self.side, Side::Client);
                    self.terminal(id);
                    if let Some(m) = message {
                        self.unconsumed.push_back((id, m.len()));
                    }
                }
                Event::Cancel { id, .. } => {
                    assert_eq!(self.side, Side::Server);
                    self.terminal(id);
                }
                Event::Writable { id } => {
                    if id != 0 {
                        self.live(id, "Writable");
                    }
                }
                Event::GoAway { .. } => {}
                Event::Closed(_) => {
                    assert!(self.conn.is_closed(), "Closed event, connection open");
                    assert!(self.conn.poll_timeout().is_none());
                    self.closed = true;
                }
            }
        }
        if self.auto_consume {
            while let Some((id, len)) = self.unconsumed.pop_front() {
                self.conn.consumed(id, len);
            }
        }
    }

    /// Takes the output and checks that it is whole, valid frames of this
    /// side that the peer accepts under the settings it announced.
    fn transmit(&mut self) {
        let mut chunks = Vec::new();
        self.conn.poll_transmit(&mut chunks);
        for c in &chunks {
            self.out.extend_from_slice(c);
        }
        if !self.slow_writer {
            let woke = self.conn.wrote(self.out.len());
            trace!("  wrote {} -> {woke}", self.out.len());
        }
        let mut at = 0;
        if !self.out_started && !self.out.is_empty() {
            self.out_started = true;
            match self.side {
                Side::Client => {
                    assert!(
                        self.out.starts_with(&PREFACE),
                        "client output without preface"
                    );
                    at = PREFACE.len();
                }
                Side::Server => assert_eq!(self.head, PREFACE, "server wrote before the preface"),
            }
        }
        // The peer parses what this side writes under its own settings
        // (a MAX_FRAME below the minimum closes the connection: its GOAWAY
        // need not fit).
        let mut peer = *self.conn.peer_settings();
        peer.max_frame = peer.max_frame.max(MIN_MAX_FRAME);
        while at < self.out.len() {
            let rest = &self.out[at..];
            match fuzzing::frame(Framing::Connection, rest, &peer) {
                Ok(Some(n)) => {
                    let (_, kind, flags, _) =
                        fuzzing::frame_header(rest).expect("a parsed frame has a header");
                    let ok = match self.side {
                        // SETTINGS, OPEN, MESSAGE, CANCEL, WINDOW, PING,
                        // GOAWAY, END.
                        Side::Client => matches!(kind, 0 | 1 | 2 | 5 | 6 | 7 | 8 | 9),
                        // SETTINGS, MESSAGE (no END), HEADERS, CLOSE, WINDOW,
                        // PING, GOAWAY.
                        Side::Server => {
                            matches!(kind, 0 | 3 | 4 | 6 | 7 | 8) || (kind == 2 && flags & 1 == 0)
                        }
                    };
                    assert!(
                        ok,
                        "{:?} wrote frame type {kind} flags {flags:#x}",
                        self.side
                    );
                    if kind == 2 {
                        assert!(
                            n - 10 <= peer.max_message as usize,
                            "MESSAGE over MAX_MESSAGE"
                        );
                    }
                    at += n;
                }
                Ok(None) => panic!("output ends inside a frame"),
                Err(why) => panic!("{:?} wrote an invalid frame: {why}", self.side),
            }
        }
        self.out.clear();
    }

    fn step(&mut self) {
        self.events();
        self.transmit();
    }

    /// One application call.
    fn app(&mut self, op: u8, arg: u8) {
        let now = self.now();
        let raw = op & 0x20 != 0;
        match (op & 0x0F, self.side) {
            (7, Side::Client) => {
                let timeout = match arg >> 6 {
                    0 => None,
                    1 => Some(Duration::from_millis(1)),
                    2 => Some(Duration::from_secs(1)),
                    _ => Some(Duration::from_secs(u64::MAX / 2)),
                };
                let head = OpenHead {
                    method: method(arg),
                    timeout,
                    metadata: metadata(arg >> 2),
                };
                let msg = (op & 0x40 != 0).then(|| message(arg >> 3));
                let r = self.conn.open(&head, msg.as_ref(), op & 0x10 != 0, now);
                trace!("  open -> {r:?}");
                if let Ok(id) = r {
                    self.ids.push(id);
                }
            }
            (7, Side::Server) => {
                let id = self.pick(arg, raw);
                let r = self.conn.send_headers(id, &metadata(arg >> 4));
                trace!("  send_headers({id}) -> {r:?}");
            }
            (8, _) => {
                let id = self.pick(arg, raw);
                let end = self.side == Side::Client && op & 0x10 != 0;
                let m = message(op >> 6 | arg >> 5);
                let len = m.len();
                let r = self.conn.send(id, m, end);
                trace!("  send({id}, {len} bytes, end {end}) -> {r:?}");
            }
            (9, Side::Client) => {
                let id = self.pick(arg, raw);
                let r = self.conn.finish(id);
                trace!("  finish({id}) -> {r:?}");
            }
            (9 | 10, Side::Server) => {
                let id = self.pick(arg, raw);
                let mut head = if op & 0x0F == 9 {
                    close_head(Code::OK, "")
                } else {
                    close_head(Code(u32::from(arg) % 20), "failed: \u{2639}")
                };
                if op & 0x40 != 0 {
                    head = CloseHead {
                        message: Bytes::from("\u{e9}".repeat(2100)),
                        details: Bytes::from_static(b"details"),
                        trailers: metadata(arg >> 4),
                        ..head
                    };
                }
                let headers = (op & 0x10 != 0).then(|| metadata(arg >> 2));
                let mut msg = (op & 0x80 != 0).then(|| message(arg >> 3));
                let r = self.conn.close(id, &head, headers.as_ref(), &mut msg);
                trace!("  close({id}, {:?}) -> {r:?}", head.code);
                if r.is_ok() {
                    self.ended.insert(id);
                }
            }
            (10, Side::Client) => {
                let id = self.pick(arg, raw);
                let was_open = self.conn.is_open(id);
                self.conn.cancel(id, Code(u32::from(arg) % 20));
                if was_open {
                    // "No event follows."
                    self.ended.insert(id);
                }
            }
            (11, _) => {
                if !self.unconsumed.is_empty() {
                    let i = arg as usize % self.unconsumed.len();
                    if let Some((id, len)) = self.unconsumed.remove(i) {
                        self.conn.consumed(id, len);
                    }
                }
            }
            (12, _) => self.conn.goaway("going away"),
            (13, _) => self
                .conn
                .close_connection(Reason(u32::from(arg) % 10), "bye"),
            (14, _) => self.conn.handle_eof("eof"),
            _ => {
                if self.slow_writer {
                    let woke = self.conn.wrote(usize::from(arg) * 97);
                    trace!("  wrote {} -> {woke}", usize::from(arg) * 97);
                }
                let id = self.pick(arg, raw);
                let _ = (
                    self.conn.take_largest_frame(),
                    self.conn.pending_output(),
                    self.conn.unwritten(),
                    self.conn.metadata_memory(),
                    self.conn.config().max_queued_output,
                    self.conn.can_send(id),
                    self.conn.can_open(),
                    self.conn.is_open(id),
                    self.conn.open_streams(),
                    self.conn.accepts_new_calls(),
                    self.conn.peer_settings().max_message,
                    self.conn.local_settings().max_frame,
                );
            }
        }
    }
}

/// Runs one input against a connection of `side`.
pub fn run(side: Side, data: &[u8]) {
    let [cfg, len, rest @ ..] = data else {
        return;
    };
    let (script, stream) = rest.split_at((*len as usize).min(rest.len()));
    let base = Instant::now();
    let config = config(cfg >> 1);
    let mut conn = match side {
        Side::Client => Connection::client(config, base),
        Side::Server => Connection::server(config, base),
    };
    conn.set_copy_below([0, 64, 4096, 1 << 20][usize::from(cfg >> 6)]);
    let mut d = Driver {
        conn,
        side,
        base,
        now: Duration::ZERO,
        input: BytesMut::new(),
        ids: Vec::new(),
        ended: BTreeSet::new(),
        unconsumed: VecDeque::new(),
        auto_consume: cfg & 8 != 0,
        closed: false,
        out: Vec::new(),
        out_started: false,
        slow_writer: cfg & 0x20 != 0,
        head: Vec::new(),
    };
    d.step();
    if cfg & 1 != 0 {
        let mut hello = Vec::new();
        if side == Side::Server {
            hello.extend_from_slice(&PREFACE);
        }
        let pairs: &[(u16, u32)] = if cfg & 0x10 != 0 { &SMALL_PEER } else { &[] };
        hello.extend_from_slice(&settings_frame(pairs));
        d.feed(&hello);
        d.step();
    }
    let mut stream = stream;
    for pair in script.chunks(2) {
        let op = pair[0];
        let arg = pair.get(1).copied().unwrap_or(0);
        match op & 0x0F {
            0..=3 => {
                let n = match op & 0x0F {
                    0 => arg as usize + 1,
                    1 => (arg as usize + 1) * 16,
                    2 => (arg as usize + 1) * 256,
                    _ => stream.len(),
                };
                let (chunk, rest) = stream.split_at(n.min(stream.len()));
                stream = rest;
                d.feed(chunk);
            }
            4 => d.tick(Duration::from_millis(u64::from(arg))),
            5 => d.tick(Duration::from_secs(u64::from(arg))),
            6 => d.skip_to_timer(),
            _ => d.app(op, arg),
        }
        d.step();
    }
    d.feed(stream);
    d.step();
    for _ in 0..3 {
        d.skip_to_timer();
        d.step();
    }
}

/// This side's limits for the frame parsers, picked by `sel & 3`: the
/// defaults, small ones, none accepted (0), or none at all.
pub fn local_settings(sel: u8) -> Settings {
    match sel & 3 {
        0 => Settings::default(),
        1 => Settings {
            max_frame: 300,
            max_metadata: 40,
            ..Settings::default()
        },
        2 => Settings {
            max_frame: 0,
            max_metadata: 0,
            ..Settings::default()
        },
        _ => Settings {
            max_frame: u32::MAX,
            max_metadata: u32::MAX,
            ..Settings::default()
        },
    }
}

/// A metadata block as PROTOCOL.md §5.1 encodes it: `u32` length, then
/// `[u16 key length][key][u32 value length][value]` per entry.
pub fn encode_metadata(md: &Metadata, out: &mut Vec<u8>) {
    let len: usize = md.iter().map(|(k, v)| 6 + k.len() + v.len()).sum();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    for (k, v) in md.iter() {
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
}

/// Checks what a metadata parser accepted: keys of 1–256 bytes of
/// `a-z 0-9 - _ .`, printable ASCII values unless the key ends in `-bin`.
pub fn check_metadata(md: &Metadata) {
    for (k, v) in md.iter() {
        assert!((1..=256).contains(&k.len()), "key length {}", k.len());
        assert!(
            k.bytes()
                .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.')),
            "bad key {k:?}"
        );
        if !k.ends_with("-bin") {
            assert!(v.iter().all(|c| (0x20..=0x7E).contains(c)), "bad value");
            assert!(md.get(k).is_some());
        } else {
            assert!(md.get_bin(k).is_some());
        }
        assert!(md.get_all(k).count() >= 1);
    }
}
