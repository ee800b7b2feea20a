//! The connection state machine (docs/PROTOCOL.md §6–§9).
//!
//! Bytes and `now` in; bytes, events and the next timeout out. No sockets,
//! no clock, no tasks: the runtime (or a test) drives it.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use super::frame::{
    CloseHead, FRAME_HEADER_LEN, Frame, Header, Malformed, OpenHead, Out, PREFACE, Settings,
    close_len, metadata_len, open_len,
};
use crate::ids::IdMap;
use crate::metadata::Metadata;
use crate::status::Code;

/// Which end of the connection this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Opens calls.
    Client,
    /// Serves calls.
    Server,
}

/// Longest method path accepted for sending.
pub(crate) const MAX_METHOD: usize = 1024;

/// Flow-control cost of a message beyond its length, so that empty
/// messages are not free (PROTOCOL.md §7).
pub const MESSAGE_OVERHEAD: u32 = 32;

/// Smallest MAX_FRAME a peer may announce (PROTOCOL.md §4.1): every frame
/// this side must be able to send without a message (a CLOSE with a status,
/// a GOAWAY with its debug text) fits in it.
pub const MIN_MAX_FRAME: u32 = 16 << 10;

/// Why a connection ended: a GOAWAY code (PROTOCOL.md §4.9).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reason(pub u32);

impl Reason {
    /// Graceful close.
    pub const NO_ERROR: Reason = Reason(0);
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: Reason = Reason(1);
    /// An internal failure.
    pub const INTERNAL_ERROR: Reason = Reason(2);
    /// The peer sent beyond its flow-control window.
    pub const FLOW_CONTROL_ERROR: Reason = Reason(3);
    /// Preface and SETTINGS did not arrive in time.
    pub const HANDSHAKE_TIMEOUT: Reason = Reason(4);
    /// A frame longer than MAX_FRAME.
    pub const FRAME_TOO_LARGE: Reason = Reason(5);
    /// No calls and no traffic for the idle timeout.
    pub const IDLE_TIMEOUT: Reason = Reason(6);
    /// The peer generates excessive load (resets, pings, refusals).
    pub const ENHANCE_YOUR_CALM: Reason = Reason(7);
    /// A keepalive PING was not answered in time.
    pub const KEEPALIVE_TIMEOUT: Reason = Reason(8);

    fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "NO_ERROR",
            1 => "PROTOCOL_ERROR",
            2 => "INTERNAL_ERROR",
            3 => "FLOW_CONTROL_ERROR",
            4 => "HANDSHAKE_TIMEOUT",
            5 => "FRAME_TOO_LARGE",
            6 => "IDLE_TIMEOUT",
            7 => "ENHANCE_YOUR_CALM",
            8 => "KEEPALIVE_TIMEOUT",
            _ => return None,
        })
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Reason({})", self.0),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How and why a connection closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnError {
    /// The GOAWAY code.
    pub reason: Reason,
    /// What happened, for humans.
    pub message: String,
    /// Whether the peer closed it (else this side did).
    pub remote: bool,
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by = if self.remote { "peer" } else { "local" };
        write!(f, "connection closed by {by}: {}", self.reason)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConnError {}

/// Timeouts and abuse limits of a connection. Settings are what this side
/// accepts and announces to the peer.
#[derive(Clone, Debug)]
pub struct Config {
    /// Announced to the peer.
    pub settings: Settings,
    /// The preface and SETTINGS must arrive within this.
    pub handshake_timeout: Duration,
    /// Close after this long with no open call and no frame received.
    pub idle_timeout: Option<Duration>,
    /// Send a PING after this long without receiving a frame.
    pub keepalive_interval: Option<Duration>,
    /// Close if nothing arrives this long after a keepalive PING.
    pub keepalive_timeout: Duration,
    /// Most CANCEL frames plus refused OPENs accepted per second.
    pub max_resets_per_sec: u32,
    /// Most PINGs (not answers) accepted per second.
    pub max_pings_per_sec: u32,
    /// Bytes of output not yet written past which no call may queue another
    /// message (PROTOCOL.md §9). A local cap: the peer's windows do not
    /// raise it.
    pub max_queued_output: usize,
    /// Bytes of one call's output not yet written past which it may not
    /// queue another message.
    pub max_queued_output_per_call: usize,
    /// Bytes of memory the metadata of the open calls may take (as stored:
    /// see [`Metadata::memory_size`]); an OPEN (server) or HEADERS (client)
    /// that would pass it ends its call with `RESOURCE_EXHAUSTED`.
    pub max_metadata_memory: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            settings: Settings::default(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(300)),
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(20),
            max_resets_per_sec: 2048,
            max_pings_per_sec: 64,
            max_queued_output: 8 << 20,
            max_queued_output_per_call: 2 << 20,
            max_metadata_memory: 4 << 20,
        }
    }
}

/// Something the application must act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Server: a call opened (possibly with its first message, possibly
    /// already half-closed: a unary request is one frame).
    Open {
        /// Stream id.
        id: u32,
        /// Method, timeout, metadata.
        head: OpenHead,
        /// The first message, if the frame carried one.
        message: Option<Bytes>,
        /// Whether the client will send nothing more.
        end: bool,
    },
    /// A message on a call (server: from the client; client: from the server).
    Message {
        /// Stream id.
        id: u32,
        /// The message.
        message: Bytes,
        /// Server side: the client sends nothing more.
        end: bool,
    },
    /// Server: the client sends nothing more (no message with it).
    End {
        /// Stream id.
        id: u32,
    },
    /// Client: response headers.
    Headers {
        /// Stream id.
        id: u32,
        /// The headers.
        metadata: Metadata,
    },
    /// Client: the call ended, by the server's CLOSE or locally (deadline,
    /// connection loss, refusal). Terminal for the stream.
    Close {
        /// Stream id.
        id: u32,
        /// Status and trailers.
        head: CloseHead,
        /// Response headers carried by the CLOSE frame.
        headers: Option<Metadata>,
        /// The final message carried by the CLOSE frame.
        message: Option<Bytes>,
    },
    /// Server: the call is over from the client's side (CANCEL, deadline,
    /// connection loss): stop the handler. Terminal for the stream.
    Cancel {
        /// Stream id.
        id: u32,
        /// `CANCELLED` or `DEADLINE_EXCEEDED`.
        code: Code,
    },
    /// The send window of stream `id` reopened (`0`: the connection's).
    Writable {
        /// Stream id, or 0 for the connection.
        id: u32,
    },
    /// The peer will accept no new calls above `last_stream`.
    GoAway {
        /// Highest stream id the peer processed or will process.
        last_stream: u32,
        /// Why.
        reason: Reason,
        /// Debug text.
        debug: Bytes,
    },
    /// The connection is closed. The last event.
    Closed(ConnError),
}

/// Why an operation on a stream could not be done now or at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The flow-control window is closed; wait for [`Event::Writable`].
    Blocked,
    /// The stream does not exist or is finished.
    NoStream,
    /// The message is larger than the peer accepts.
    TooLarge {
        /// The message size.
        size: usize,
        /// The peer's MAX_MESSAGE.
        max: u32,
    },
    /// The connection is closed or draining (no new calls).
    Closed,
    /// Stream ids are used up: open a new connection.
    Exhausted,
    /// The peer's MAX_CONCURRENT_STREAMS calls are open already.
    TooManyStreams {
        /// The peer's limit.
        max: u32,
    },
    /// The call's own input breaks a rule (method path, metadata size);
    /// only this call fails.
    Invalid(&'static str),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Blocked => f.write_str("flow-control window closed"),
            SendError::NoStream => f.write_str("no such stream"),
            SendError::TooLarge { size, max } => {
                write!(
                    f,
                    "message of {size} bytes exceeds the peer's limit of {max}"
                )
            }
            SendError::Closed => f.write_str("connection closed or going away"),
            SendError::Exhausted => f.write_str("stream ids exhausted"),
            SendError::TooManyStreams { max } => {
                write!(f, "the server allows {max} concurrent calls")
            }
            SendError::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for SendError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Server: waiting for the 8-byte preface.
    Preface,
    /// Waiting for the peer's SETTINGS.
    Settings,
    Open,
    Closed,
}

#[derive(Debug)]
struct Stream {
    send_window: i64,
    recv_window: i64,
    recv_unannounced: i64,
    /// This side sent END/CLOSE (or, for the server, it was refused).
    local_end: bool,
    /// The peer sent END (client side: never, CLOSE removes the stream).
    remote_end: bool,
    blocked: bool,
    deadline: Option<Instant>,
    /// Output offset (see `Connection::produced`) just past this call's
    /// last queued message: what of it is unwritten is at most
    /// `out_end - written`.
    out_end: u64,
    /// Memory held for this call's metadata (request metadata on the
    /// server, response headers on the client).
    md_cost: usize,
}

/// A ZAP-RPC connection endpoint.
#[derive(Debug)]
pub struct Connection {
    side: Side,
    cfg: Config,
    peer: Settings,
    peer_settings_seen: bool,
    phase: Phase,
    streams: IdMap<Stream>,
    /// Client: next id to open. Server: highest id opened by the peer.
    next_id: u32,
    last_id: u32,
    goaway_sent: Option<u32>,
    goaway_received: Option<u32>,
    conn_send: i64,
    conn_recv: i64,
    conn_recv_unannounced: i64,
    conn_blocked: bool,
    deadlines: BTreeSet<(Instant, u32)>,
    out: Out,
    events: VecDeque<Event>,
    handshake_deadline: Option<Instant>,
    /// The largest frame (header included) met in the input since
    /// `take_largest_frame`, complete or not.
    largest_frame: usize,
    last_recv: Instant,
    /// Last frame other than PING/PING ACK: the idle timer runs from here,
    /// so keepalive traffic does not keep an unused connection open.
    last_activity: Instant,
    idle_since: Option<Instant>,
    ping_sent: Option<Instant>,
    rate_window: Instant,
    resets: u32,
    pings: u32,
    /// Bytes handed to the transport by `poll_transmit`, ever.
    handed: u64,
    /// Bytes the transport reported written (`wrote`), ever.
    written: u64,
    /// A call waits for output to drain (`Writable` follows once it has).
    out_waiters: bool,
    /// Memory held for the open calls' metadata (sum of `md_cost`).
    md_held: usize,
    /// Frames shorter than this are copied out of the input buffer
    /// instead of sharing it (see `set_copy_below`).
    copy_below: usize,
}

fn charge(len: usize) -> i64 {
    len as i64 + MESSAGE_OVERHEAD as i64
}

impl Connection {
    /// A client connection: writes the preface and SETTINGS right away.
    pub fn client(cfg: Config, now: Instant) -> Self {
        let mut c = Self::new(Side::Client, cfg, now);
        c.out.preface();
        c.out.settings(&c.cfg.settings);
        c.phase = Phase::Settings;
        c
    }

    /// A server connection: waits for the preface, then writes SETTINGS
    /// (nothing is written to a peer that did not send the preface, §2).
    /// `now` is when the connection was accepted: the handshake timeout
    /// counts from it.
    pub fn server(cfg: Config, now: Instant) -> Self {
        Self::new(Side::Server, cfg, now)
    }

    fn new(side: Side, cfg: Config, now: Instant) -> Self {
        let peer = Settings::default();
        Connection {
            side,
            handshake_deadline: Some(now + cfg.handshake_timeout),
            conn_recv: cfg.settings.connection_window as i64,
            conn_send: peer.connection_window as i64,
            peer,
            cfg,
            peer_settings_seen: false,
            phase: Phase::Preface,
            streams: IdMap::default(),
            next_id: 1,
            last_id: 0,
            goaway_sent: None,
            goaway_received: None,
            conn_recv_unannounced: 0,
            conn_blocked: false,
            deadlines: BTreeSet::new(),
            out: Out::default(),
            events: VecDeque::new(),
            largest_frame: 0,
            last_recv: now,
            last_activity: now,
            idle_since: Some(now),
            ping_sent: None,
            rate_window: now,
            resets: 0,
            pings: 0,
            handed: 0,
            written: 0,
            out_waiters: false,
            md_held: 0,
            copy_below: 0,
        }
    }

    /// Which side this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The peer's settings (defaults until its SETTINGS frame arrives).
    pub fn peer_settings(&self) -> &Settings {
        &self.peer
    }

    /// This side's configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// This side's settings.
    pub fn local_settings(&self) -> &Settings {
        &self.cfg.settings
    }

    /// Whether the connection is closed (after [`Event::Closed`]).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether stream `id` is open (not ended by this side or the peer).
    pub fn is_open(&self, id: u32) -> bool {
        self.streams.contains_key(&id)
    }

    /// Calls open now.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Whether new calls may be opened (client) or accepted (server).
    pub fn accepts_new_calls(&self) -> bool {
        self.phase != Phase::Closed && self.goaway_received.is_none() && self.goaway_sent.is_none()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Frames (header included) shorter than `len` are copied out of the
    /// input buffer from now on, instead of being slices of it. A received
    /// message keeps the buffer it is a slice of alive for as long as the
    /// application holds it; the caller sets this when its buffer is much
    /// larger than the frames it carries, so that a small message cannot
    /// pin a large buffer (PROTOCOL.md §9). 0: never copy.
    pub fn set_copy_below(&mut self, len: usize) {
        self.copy_below = len;
    }

    /// The largest frame (header included) met in the input since the last
    /// call: a size hint for the caller's read buffer, so that the next
    /// frames of that size arrive whole in it instead of being gathered.
    pub fn take_largest_frame(&mut self) -> usize {
        std::mem::take(&mut self.largest_frame)
    }

    /// Bytes waiting to be taken by [`poll_transmit`](Self::poll_transmit).
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// Bytes produced and not yet reported written (see
    /// [`wrote`](Self::wrote)): what this connection's output holds,
    /// here and in the transport's queue.
    pub fn unwritten(&self) -> usize {
        (self.produced() - self.written) as usize
    }

    /// Memory held for the open calls' metadata, as charged against
    /// [`Config::max_metadata_memory`].
    pub fn metadata_memory(&self) -> usize {
        self.md_held
    }

    /// Output offset: every byte ever produced.
    fn produced(&self) -> u64 {
        self.handed + self.out.len() as u64
    }

    /// Moves the bytes to write into `chunks`, in order. Report what the
    /// transport then writes with [`wrote`](Self::wrote): until then the
    /// bytes count against the output caps (§9).
    pub fn poll_transmit(&mut self, chunks: &mut Vec<Bytes>) {
        self.handed += self.out.len() as u64;
        self.out.drain_into(chunks);
    }

    /// The transport wrote `n` more bytes of what `poll_transmit` handed
    /// out. Calls that waited for output to drain get [`Event::Writable`];
    /// `true` if any may have.
    pub fn wrote(&mut self, n: usize) -> bool {
        self.written = (self.written + n as u64).min(self.handed);
        if self.out_waiters
            && self.phase != Phase::Closed
            && self.unwritten() < self.cfg.max_queued_output
        {
            self.out_waiters = false;
            self.wake_blocked();
            return true;
        }
        false
    }

    /// What the output caps allow now.
    fn out_cap_room(&self) -> OutRoom {
        OutRoom {
            conn: self.unwritten() < self.cfg.max_queued_output,
            written: self.written,
            per_call: self.cfg.max_queued_output_per_call as u64,
        }
    }

    // ------------------------------------------------------------------
    // Input

    /// Consumes every complete frame at the front of `buf`. Partial frames
    /// stay in `buf` (which may be given capacity for the rest: the length
    /// was checked against MAX_FRAME first, PROTOCOL.md §3).
    pub fn handle_input(&mut self, buf: &mut BytesMut, now: Instant) {
        while self.phase != Phase::Closed {
            if self.phase == Phase::Preface {
                if buf.len() < PREFACE.len() {
                    if !PREFACE.starts_with(buf) {
                        return self
                            .fail(Reason::PROTOCOL_ERROR, "bad preface: not a ZAP-RPC client");
                    }
                    return;
                }
                if buf[..PREFACE.len()] != PREFACE {
                    return self.fail(Reason::PROTOCOL_ERROR, "bad preface: not a ZAP-RPC client");
                }
                buf.advance(PREFACE.len());
                self.phase = Phase::Settings;
                self.out.settings(&self.cfg.settings);
                continue;
            }
            let Some(h) = Header::parse(buf) else {
                return;
            };
            // §3: the length is checked before anything is allocated for it.
            if h.len > self.cfg.settings.max_frame {
                return self.fail(
                    Reason::FRAME_TOO_LARGE,
                    &format!(
                        "frame of {} bytes exceeds MAX_FRAME {}",
                        h.len, self.cfg.settings.max_frame
                    ),
                );
            }
            let total = FRAME_HEADER_LEN + h.len as usize;
            self.largest_frame = self.largest_frame.max(total);
            if buf.len() < total {
                if !buf.try_reclaim(total - buf.len()) {
                    // A new buffer with the part that is here: `reserve`
                    // could copy everything the old one held before.
                    let mut whole = BytesMut::with_capacity(total);
                    whole.extend_from_slice(buf);
                    *buf = whole;
                }
                return;
            }
            let mut frame = if total < self.copy_below {
                let f = Bytes::copy_from_slice(&buf[..total]);
                buf.advance(total);
                f
            } else {
                buf.split_to(total).freeze()
            };
            frame.advance(FRAME_HEADER_LEN);
            self.last_recv = now;
            self.ping_sent = None;
            if h.kind != 7 {
                self.last_activity = now;
            }
            match Frame::parse(h, frame, &self.cfg.settings) {
                Ok(f) => self.handle_frame(f, now),
                Err(Malformed(why)) => return self.fail(Reason::PROTOCOL_ERROR, why),
            }
        }
    }

    fn handle_frame(&mut self, f: Frame, now: Instant) {
        if self.phase == Phase::Settings && !matches!(f, Frame::Settings(_)) {
            return self.fail(Reason::PROTOCOL_ERROR, "first frame must be SETTINGS");
        }
        match f {
            Frame::Settings(pairs) => self.on_settings(&pairs, now),
            Frame::Open {
                stream,
                end,
                head,
                message,
            } => self.on_open(stream, end, head, message, now),
            Frame::Message {
                stream,
                end,
                message,
            } => self.on_message(stream, end, message, now),
            Frame::End { stream } => self.on_end(stream),
            Frame::Headers { stream, metadata } => {
                if self.side != Side::Client {
                    return self.fail(Reason::PROTOCOL_ERROR, "HEADERS sent to a server");
                }
                if self.streams.contains_key(&stream) {
                    let cost = metadata.memory_size();
                    if self.md_held + cost > self.cfg.max_metadata_memory {
                        return self.abort_stream(
                            stream,
                            Code::RESOURCE_EXHAUSTED,
                            "response headers exceed the client's metadata memory limit",
                        );
                    }
                    self.charge_metadata(stream, cost);
                    self.events.push_back(Event::Headers {
                        id: stream,
                        metadata,
                    });
                }
            }
            Frame::Close {
                stream,
                head,
                headers,
                message,
            } => self.on_close(stream, head, headers, message),
            Frame::Cancel { stream, code } => self.on_cancel(stream, code, now),
            Frame::Window { stream, increment } => self.on_window(stream, increment),
            Frame::Ping { ack, data } => {
                if !ack {
                    self.pings += 1;
                    if self.over_rate(now) {
                        return;
                    }
                    self.out.ping(true, data);
                }
            }
            Frame::GoAway {
                last_stream,
                code,
                debug,
            } => self.on_goaway(last_stream, Reason(code), debug),
        }
    }

    fn on_settings(&mut self, pairs: &[(u16, u32)], _now: Instant) {
        if self.peer_settings_seen {
            return self.fail(Reason::PROTOCOL_ERROR, "SETTINGS sent twice");
        }
        self.peer_settings_seen = true;
        let old = self.peer;
        self.peer.apply(pairs);
        if self.peer.max_frame < MIN_MAX_FRAME {
            return self.fail(
                Reason::PROTOCOL_ERROR,
                "MAX_FRAME below the minimum of 16384",
            );
        }
        // Windows used before the SETTINGS arrived move by the difference.
        let ds = self.peer.stream_window as i64 - old.stream_window as i64;
        for s in self.streams.values_mut() {
            s.send_window += ds;
        }
        self.conn_send += self.peer.connection_window as i64 - old.connection_window as i64;
        self.phase = Phase::Open;
        self.handshake_deadline = None;
        self.wake_blocked();
    }

    fn on_open(
        &mut self,
        id: u32,
        end: bool,
        head: OpenHead,
        message: Option<Bytes>,
        now: Instant,
    ) {
        if self.side != Side::Server {
            return self.fail(Reason::PROTOCOL_ERROR, "OPEN sent to a client");
        }
        if id <= self.last_id {
            return self.fail(Reason::PROTOCOL_ERROR, "stream ids must increase");
        }
        self.last_id = id;
        let cost = message.as_ref().map_or(0, |m| charge(m.len()));
        if !self.take_conn_window(cost) {
            return;
        }
        let md_cost = head.metadata.memory_size();
        let refuse = if self.goaway_sent.is_some_and(|last| id > last) {
            Some((Code::UNAVAILABLE, "server is going away; retry elsewhere"))
        } else if self.streams.len() >= self.cfg.settings.max_concurrent_streams as usize {
            Some((Code::RESOURCE_EXHAUSTED, "too many concurrent calls"))
        } else if self.md_held + md_cost > self.cfg.max_metadata_memory {
            Some((
                Code::RESOURCE_EXHAUSTED,
                "metadata of the open calls exceeds the server's limit",
            ))
        } else if message
            .as_ref()
            .is_some_and(|m| m.len() > self.cfg.settings.max_message as usize)
        {
            Some((
                Code::RESOURCE_EXHAUSTED,
                "request message exceeds MAX_MESSAGE",
            ))
        } else {
            None
        };
        if let Some((code, msg)) = refuse {
            // Refusals are answered, but counted like resets (§9).
            self.resets += 1;
            self.conn_credit(cost);
            if self.over_rate(now) {
                return;
            }
            self.out.close(id, &close_head(code, msg), None, None);
            return;
        }
        let (send, recv) = (
            self.peer.stream_window as i64,
            self.cfg.settings.stream_window,
        );
        self.add_stream(id, head.timeout, now, send, recv as i64 - cost, false, end);
        self.charge_metadata(id, md_cost);
        self.events.push_back(Event::Open {
            id,
            head,
            message,
            end,
        });
    }

    /// Takes `cost` from the connection receive window; a peer that sends
    /// with the window already closed breaks flow control (§7).
    fn take_conn_window(&mut self, cost: i64) -> bool {
        if cost == 0 {
            return true;
        }
        if self.conn_recv <= 0 {
            self.fail(
                Reason::FLOW_CONTROL_ERROR,
                "message sent with the connection window closed",
            );
            return false;
        }
        self.conn_recv -= cost;
        true
    }

    fn on_message(&mut self, id: u32, end: bool, message: Bytes, now: Instant) {
        let cost = charge(message.len());
        if !self.take_conn_window(cost) {
            return;
        }
        if self.side == Side::Client && end {
            return self.fail(Reason::PROTOCOL_ERROR, "server ends calls with CLOSE");
        }
        let max_message = self.cfg.settings.max_message as usize;
        let Some(s) = self.streams.get_mut(&id) else {
            // A call that just ended: drop the message, return the window.
            self.conn_credit(cost);
            return;
        };
        if s.remote_end {
            return self.fail(Reason::PROTOCOL_ERROR, "MESSAGE after END");
        }
        if s.recv_window <= 0 {
            return self.fail(
                Reason::FLOW_CONTROL_ERROR,
                "message sent with the stream window closed",
            );
        }
        s.recv_window -= cost;
        s.remote_end = end;
        if message.len() > max_message {
            self.conn_credit(cost);
            self.abort_stream(id, Code::RESOURCE_EXHAUSTED, "message exceeds MAX_MESSAGE");
            // Ending a call for breaking a limit is a refusal (§9).
            if self.side == Side::Server {
                self.resets += 1;
                self.over_rate(now);
            }
            return;
        }
        self.events.push_back(Event::Message { id, message, end });
    }

    fn on_end(&mut self, id: u32) {
        if self.side != Side::Server {
            return self.fail(Reason::PROTOCOL_ERROR, "END sent to a client");
        }
        if let Some(s) = self.streams.get_mut(&id) {
            if s.remote_end {
                return self.fail(Reason::PROTOCOL_ERROR, "END twice");
            }
            s.remote_end = true;
            self.events.push_back(Event::End { id });
        }
    }

    fn on_close(
        &mut self,
        id: u32,
        head: CloseHead,
        headers: Option<Metadata>,
        message: Option<Bytes>,
    ) {
        if self.side != Side::Client {
            return self.fail(Reason::PROTOCOL_ERROR, "CLOSE sent to a server");
        }
        let cost = message.as_ref().map_or(0, |m| charge(m.len()));
        if !self.take_conn_window(cost) {
            return;
        }
        if self.remove_stream(id).is_none() {
            self.conn_credit(cost);
            return;
        }
        let too_big = message
            .as_ref()
            .is_some_and(|m| m.len() > self.cfg.settings.max_message as usize);
        if too_big {
            self.conn_credit(cost);
            self.events.push_back(Event::Close {
                id,
                head: close_head(
                    Code::RESOURCE_EXHAUSTED,
                    "response message exceeds MAX_MESSAGE",
                ),
                headers,
                message: None,
            });
            return;
        }
        self.events.push_back(Event::Close {
            id,
            head,
            headers,
            message,
        });
    }

    fn on_cancel(&mut self, id: u32, code: Code, now: Instant) {
        if self.side != Side::Server {
            return self.fail(Reason::PROTOCOL_ERROR, "CANCEL sent to a client");
        }
        // Only CANCELs that stop work count toward the reset rate: one
        // that crossed our CLOSE (or a refusal) is the normal end of a race.
        if !self.streams.contains_key(&id) {
            return;
        }
        self.resets += 1;
        if self.over_rate(now) {
            return;
        }
        if self.remove_stream(id).is_some() {
            let code = if code == Code::DEADLINE_EXCEEDED {
                code
            } else {
                Code::CANCELLED
            };
            self.events.push_back(Event::Cancel { id, code });
        }
    }

    fn on_window(&mut self, id: u32, inc: u32) {
        let inc = inc as i64;
        if id == 0 {
            self.conn_send += inc;
            if self.conn_send > i32::MAX as i64 {
                return self.fail(Reason::FLOW_CONTROL_ERROR, "connection window overflow");
            }
            if self.conn_send > 0 {
                self.wake_blocked();
            }
            return;
        }
        if let Some(s) = self.streams.get_mut(&id) {
            s.send_window += inc;
            if s.send_window > i32::MAX as i64 {
                return self.fail(Reason::FLOW_CONTROL_ERROR, "stream window overflow");
            }
            if s.blocked && s.send_window > 0 && self.conn_send > 0 {
                s.blocked = false;
                self.events.push_back(Event::Writable { id });
            }
        }
    }

    fn on_goaway(&mut self, last_stream: u32, reason: Reason, debug: Bytes) {
        self.goaway_received = Some(last_stream);
        if self.side == Side::Client {
            // Calls the server never processed fail now; the caller may retry.
            let unprocessed: Vec<u32> = self
                .streams
                .keys()
                .copied()
                .filter(|&id| id > last_stream)
                .collect();
            for id in unprocessed {
                self.remove_stream(id);
                self.events.push_back(Event::Close {
                    id,
                    head: close_head(Code::UNAVAILABLE, "not processed: the server is going away"),
                    headers: None,
                    message: None,
                });
            }
        }
        self.events.push_back(Event::GoAway {
            last_stream,
            reason,
            debug,
        });
        if reason != Reason::NO_ERROR {
            let msg = String::from_utf8_lossy(&self.goaway_debug_text(reason)).into_owned();
            self.close_streams(Code::UNAVAILABLE, &msg);
            self.phase = Phase::Closed;
            self.events.push_back(Event::Closed(ConnError {
                reason,
                message: msg,
                remote: true,
            }));
        }
    }

    fn goaway_debug_text(&self, reason: Reason) -> Vec<u8> {
        format!("peer closed the connection: {reason}").into_bytes()
    }

    // ------------------------------------------------------------------
    // Time

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            return None;
        }
        let mut t = self.handshake_deadline;
        let mut min = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        min(self.deadlines.first().map(|&(d, _)| d));
        if let Some(iv) = self.cfg.keepalive_interval {
            min(Some(match self.ping_sent {
                Some(sent) => sent + self.cfg.keepalive_timeout,
                None => self.last_recv + iv,
            }));
        }
        if let (Some(idle), Some(since)) = (self.cfg.idle_timeout, self.idle_since) {
            min(Some(since.max(self.last_activity) + idle));
        }
        t
    }

    /// Acts on every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        if self.handshake_deadline.is_some_and(|d| now >= d) {
            return self.fail(Reason::HANDSHAKE_TIMEOUT, "no preface and SETTINGS in time");
        }
        while let Some(&(d, id)) = self.deadlines.first() {
            if d > now {
                break;
            }
            self.deadlines.pop_first();
            self.deadline_passed(id, now);
            if self.phase == Phase::Closed {
                return;
            }
        }
        if let Some(iv) = self.cfg.keepalive_interval
            && self.phase != Phase::Preface
        {
            match self.ping_sent {
                Some(sent) if now >= sent + self.cfg.keepalive_timeout => {
                    return self.fail(Reason::KEEPALIVE_TIMEOUT, "keepalive PING not answered");
                }
                None if now >= self.last_recv + iv => {
                    self.ping_sent = Some(now);
                    self.out.ping(false, *b"keepaliv");
                }
                _ => {}
            }
        }
        if let (Some(idle), Some(since)) = (self.cfg.idle_timeout, self.idle_since)
            && now >= since.max(self.last_activity) + idle
        {
            self.fail(Reason::IDLE_TIMEOUT, "idle")
        }
    }

    fn deadline_passed(&mut self, id: u32, now: Instant) {
        if self.remove_stream(id).is_none() {
            return;
        }
        match self.side {
            // The client gives up and tells the server (§8).
            Side::Client => {
                self.out.cancel(id, Code::DEADLINE_EXCEEDED);
                self.events.push_back(Event::Close {
                    id,
                    head: close_head(Code::DEADLINE_EXCEEDED, "deadline exceeded"),
                    headers: None,
                    message: None,
                });
            }
            // The server ends the call and stops the handler.
            Side::Server => {
                self.out.close(
                    id,
                    &close_head(Code::DEADLINE_EXCEEDED, "deadline exceeded"),
                    None,
                    None,
                );
                self.events.push_back(Event::Cancel {
                    id,
                    code: Code::DEADLINE_EXCEEDED,
                });
                // Expiries count like resets (§9): each one started and
                // stopped a handler, which a client can ask for with a tiny
                // timeout as cheaply as with OPEN and CANCEL.
                self.resets += 1;
                self.over_rate(now);
            }
        }
    }

    /// Resets the per-second counters; `true` (and the connection closed)
    /// if the peer went over a limit.
    fn over_rate(&mut self, now: Instant) -> bool {
        if now.duration_since(self.rate_window) >= Duration::from_secs(1) {
            self.rate_window = now;
            self.resets = 0;
            self.pings = 0;
            return false;
        }
        if self.resets > self.cfg.max_resets_per_sec || self.pings > self.cfg.max_pings_per_sec {
            self.fail(
                Reason::ENHANCE_YOUR_CALM,
                "too many resets, refused calls or pings per second",
            );
            return true;
        }
        false
    }

    // ------------------------------------------------------------------
    // Application side

    /// Client: opens a call. With `message`, the first message goes in the
    /// same frame; with `end`, the call is half-closed in it too (a unary
    /// request is one frame). `timeout` in `head` also arms a local deadline.
    pub fn open(
        &mut self,
        head: &OpenHead,
        message: Option<&Bytes>,
        end: bool,
        now: Instant,
    ) -> Result<u32, SendError> {
        debug_assert_eq!(self.side, Side::Client);
        if !self.accepts_new_calls() {
            return Err(SendError::Closed);
        }
        // Input the peer would reject as a protocol error fails this call
        // alone (§4.2, §5.1).
        if head.method.first() != Some(&b'/') || head.method.len() > MAX_METHOD {
            return Err(SendError::Invalid(
                "method must start with '/' and be at most 1024 bytes",
            ));
        }
        if metadata_len(&head.metadata) > self.peer.max_metadata as usize {
            return Err(SendError::Invalid(
                "request metadata exceeds the server's MAX_METADATA",
            ));
        }
        // Beyond the server's limit it would refuse the call anyway, and
        // refusals count against the reset rate (§9): fail here instead.
        if self.streams.len() >= self.peer.max_concurrent_streams as usize {
            return Err(SendError::TooManyStreams {
                max: self.peer.max_concurrent_streams,
            });
        }
        let frame = open_len(head, message.map(|m| m.len()));
        if let Some(m) = &message {
            self.check_size(m.len())?;
            if frame > self.peer.max_frame as usize {
                return Err(SendError::TooLarge {
                    size: m.len(),
                    max: (self.peer.max_frame as usize).saturating_sub(frame - m.len()) as u32,
                });
            }
            if self.conn_send <= 0 || self.unwritten() >= self.cfg.max_queued_output {
                self.out_waiters |= self.conn_send > 0;
                self.conn_blocked = true;
                return Err(SendError::Blocked);
            }
        } else if frame > self.peer.max_frame as usize {
            return Err(SendError::Invalid(
                "request metadata exceeds the server's MAX_FRAME",
            ));
        }
        let id = self.next_id;
        if id == u32::MAX {
            return Err(SendError::Exhausted);
        }
        self.next_id += 1;
        let cost = message.as_ref().map_or(0, |m| charge(m.len()));
        self.conn_send -= cost;
        let (send, recv) = (
            self.peer.stream_window as i64,
            self.cfg.settings.stream_window,
        );
        self.add_stream(id, head.timeout, now, send - cost, recv as i64, end, false);
        self.out.open(id, head, message, end);
        if message.is_some() {
            let at = self.produced();
            if let Some(s) = self.streams.get_mut(&id) {
                s.out_end = at;
            }
        }
        Ok(id)
    }

    /// A message of `len` bytes is within the peer's MAX_MESSAGE, and a
    /// MESSAGE frame of it within its MAX_FRAME.
    fn check_size(&self, len: usize) -> Result<(), SendError> {
        let max = self.peer.max_message.min(self.peer.max_frame);
        if len > max as usize {
            Err(SendError::TooLarge { size: len, max })
        } else {
            Ok(())
        }
    }

    /// Whether a message may be sent on `id` now (flow control).
    pub fn can_send(&self, id: u32) -> bool {
        self.conn_send > 0 && self.streams.get(&id).is_some_and(|s| s.send_window > 0)
    }

    /// Whether a new call with a message may be opened now.
    pub fn can_open(&self) -> bool {
        self.accepts_new_calls() && self.conn_send > 0
    }

    /// Sends a message on a call. Client: `end` half-closes. Server: `end`
    /// must be false (calls end with [`close`](Self::close)).
    pub fn send(&mut self, id: u32, message: Bytes, end: bool) -> Result<(), SendError> {
        if self.phase == Phase::Closed {
            return Err(SendError::Closed);
        }
        self.check_size(message.len())?;
        let conn_open = self.conn_send > 0;
        let (at, room) = (self.produced(), self.out_cap_room());
        let s = self.streams.get_mut(&id).ok_or(SendError::NoStream)?;
        if s.local_end {
            return Err(SendError::NoStream);
        }
        if s.send_window <= 0 || !conn_open {
            s.blocked = true;
            self.conn_blocked |= !conn_open;
            return Err(SendError::Blocked);
        }
        if !room.admits(s) {
            s.blocked = true;
            self.out_waiters = true;
            return Err(SendError::Blocked);
        }
        let cost = charge(message.len());
        s.send_window -= cost;
        self.conn_send -= cost;
        let end = end && self.side == Side::Client;
        s.local_end = end;
        s.out_end = at + (FRAME_HEADER_LEN + message.len()) as u64;
        self.out.message(id, message, end);
        Ok(())
    }

    /// Client: half-closes a call without a message.
    pub fn finish(&mut self, id: u32) -> Result<(), SendError> {
        let s = self.streams.get_mut(&id).ok_or(SendError::NoStream)?;
        if s.local_end {
            return Err(SendError::NoStream);
        }
        s.local_end = true;
        self.out.end(id);
        Ok(())
    }

    /// Client: abandons a call (CANCEL with `code`). No event follows.
    pub fn cancel(&mut self, id: u32, code: Code) {
        if self.remove_stream(id).is_some() && self.phase != Phase::Closed {
            self.out.cancel(id, code);
        }
    }

    /// Server: sends response headers.
    pub fn send_headers(&mut self, id: u32, metadata: &Metadata) -> Result<(), SendError> {
        let len = metadata_len(metadata);
        if len > self.peer.max_metadata as usize || 4 + len > self.peer.max_frame as usize {
            return Err(SendError::Invalid(
                "response headers exceed the client's MAX_METADATA",
            ));
        }
        match self.streams.get(&id) {
            Some(s) if !s.local_end => {
                self.out.headers(id, metadata);
                Ok(())
            }
            _ => Err(SendError::NoStream),
        }
    }

    /// Server: ends a call with a status, optionally carrying headers and a
    /// final message (a unary response is one frame). The message is taken
    /// when the call closes; on an error it stays in `message` (to send
    /// once the window opens, after [`SendError::Blocked`]).
    pub fn close(
        &mut self,
        id: u32,
        head: &CloseHead,
        headers: Option<&Metadata>,
        message: &mut Option<Bytes>,
    ) -> Result<(), SendError> {
        if self.phase == Phase::Closed {
            return Err(SendError::Closed);
        }
        let max_frame = self.peer.max_frame as usize;
        let frame = close_len(head, headers, message.as_ref().map(Bytes::len));
        if let Some(m) = &*message {
            self.check_size(m.len())?;
            if frame > max_frame {
                return Err(SendError::TooLarge {
                    size: m.len(),
                    max: max_frame.saturating_sub(frame - m.len()) as u32,
                });
            }
            let conn_open = self.conn_send > 0;
            let room = self.out_cap_room();
            let s = self.streams.get_mut(&id).ok_or(SendError::NoStream)?;
            if s.send_window <= 0 || !conn_open {
                s.blocked = true;
                self.conn_blocked |= !conn_open;
                return Err(SendError::Blocked);
            }
            if !room.admits(s) {
                s.blocked = true;
                self.out_waiters = true;
                return Err(SendError::Blocked);
            }
            self.conn_send -= charge(m.len());
        }
        if self.remove_stream(id).is_none() {
            return Err(SendError::NoStream);
        }
        let max_md = self.peer.max_metadata as usize;
        if metadata_len(&head.trailers) > max_md
            || headers.is_some_and(|h| metadata_len(h) > max_md)
            || frame > max_frame
        {
            // Sending them would make the client close the connection;
            // end this call with an error instead.
            let head = close_head(
                Code::INTERNAL,
                "response status or metadata exceeds the client's MAX_METADATA or MAX_FRAME",
            );
            self.out.close(id, &head, None, None);
            message.take();
            return Ok(());
        }
        self.out.close(id, head, headers, message.take());
        Ok(())
    }

    /// The application took a message of `len` bytes from call `id` (or
    /// dropped it): returns its window credit to the peer (§7). Calls for
    /// streams that ended only return connection credit.
    pub fn consumed(&mut self, id: u32, len: usize) {
        let cost = charge(len);
        self.conn_credit(cost);
        let half = self.cfg.settings.stream_window as i64 / 2;
        if let Some(s) = self.streams.get_mut(&id) {
            if s.remote_end {
                return;
            }
            s.recv_unannounced += cost;
            if s.recv_unannounced >= half {
                let inc = s.recv_unannounced;
                s.recv_unannounced = 0;
                s.recv_window += inc;
                self.out.window(id, inc.min(u32::MAX as i64) as u32);
            }
        }
    }

    fn conn_credit(&mut self, cost: i64) {
        if cost == 0 || self.phase == Phase::Closed {
            return;
        }
        self.conn_recv_unannounced += cost;
        if self.conn_recv_unannounced >= self.cfg.settings.connection_window as i64 / 2 {
            let inc = self.conn_recv_unannounced;
            self.conn_recv_unannounced = 0;
            self.conn_recv += inc;
            self.out.window(0, inc.min(u32::MAX as i64) as u32);
        }
    }

    /// Server: stops accepting calls (GOAWAY with the last id seen); calls
    /// in flight continue. Client: announces it is leaving.
    pub fn goaway(&mut self, debug: &str) {
        if self.phase == Phase::Closed || self.goaway_sent.is_some() {
            return;
        }
        if self.side == Side::Server && self.phase == Phase::Preface {
            // Nothing is written before the preface (§2); a client that
            // sends it now is refused its calls all the same.
            self.goaway_sent = Some(0);
            return;
        }
        let last = match self.side {
            Side::Server => self.last_id,
            Side::Client => 0,
        };
        self.goaway_sent = Some(last);
        self.out.goaway(last, Reason::NO_ERROR.0, debug.as_bytes());
    }

    /// Closes the connection now: every open call ends (client: `Close`
    /// events with `UNAVAILABLE`; server: `Cancel` events), a GOAWAY with
    /// `reason` is written, and [`Event::Closed`] follows.
    pub fn close_connection(&mut self, reason: Reason, message: &str) {
        if self.phase == Phase::Closed {
            return;
        }
        // A server writes nothing to a peer that did not send the preface
        // (§2): it may not speak the protocol at all.
        if !(self.side == Side::Server && self.phase == Phase::Preface) {
            self.out.goaway(self.last_id, reason.0, message.as_bytes());
        }
        self.close_streams(Code::UNAVAILABLE, message);
        self.phase = Phase::Closed;
        self.events.push_back(Event::Closed(ConnError {
            reason,
            message: message.to_owned(),
            remote: false,
        }));
    }

    /// The transport ended (EOF or I/O error): every call ends.
    pub fn handle_eof(&mut self, message: &str) {
        if self.phase == Phase::Closed {
            return;
        }
        self.close_streams(Code::UNAVAILABLE, message);
        self.phase = Phase::Closed;
        self.events.push_back(Event::Closed(ConnError {
            reason: Reason::NO_ERROR,
            message: message.to_owned(),
            remote: true,
        }));
    }

    fn fail(&mut self, reason: Reason, message: &str) {
        self.close_connection(reason, message);
    }

    fn close_streams(&mut self, code: Code, message: &str) {
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            self.remove_stream(id);
            self.events.push_back(match self.side {
                Side::Client => Event::Close {
                    id,
                    head: close_head(code, message),
                    headers: None,
                    message: None,
                },
                Side::Server => Event::Cancel {
                    id,
                    code: Code::CANCELLED,
                },
            });
        }
    }

    /// Ends stream `id` from this side with a status (the peer broke a
    /// per-stream limit).
    fn abort_stream(&mut self, id: u32, code: Code, message: &str) {
        if self.remove_stream(id).is_none() {
            return;
        }
        match self.side {
            Side::Server => {
                self.out.close(id, &close_head(code, message), None, None);
                self.events.push_back(Event::Cancel { id, code });
            }
            Side::Client => {
                self.out.cancel(id, Code::CANCELLED);
                self.events.push_back(Event::Close {
                    id,
                    head: close_head(code, message),
                    headers: None,
                    message: None,
                });
            }
        }
    }

    /// Registers a new stream, arming its deadline if it has a timeout.
    #[allow(clippy::too_many_arguments)]
    fn add_stream(
        &mut self,
        id: u32,
        timeout: Option<Duration>,
        now: Instant,
        send_window: i64,
        recv_window: i64,
        local_end: bool,
        remote_end: bool,
    ) {
        let deadline = timeout.and_then(|t| now.checked_add(t));
        if let Some(d) = deadline {
            self.deadlines.insert((d, id));
        }
        self.streams.insert(
            id,
            Stream {
                send_window,
                recv_window,
                recv_unannounced: 0,
                local_end,
                remote_end,
                blocked: false,
                deadline,
                out_end: 0,
                md_cost: 0,
            },
        );
        self.idle_since = None;
    }

    fn remove_stream(&mut self, id: u32) -> Option<Stream> {
        let s = self.streams.remove(&id)?;
        self.md_held -= s.md_cost;
        if let Some(d) = s.deadline {
            self.deadlines.remove(&(d, id));
        }
        if self.streams.is_empty() {
            self.idle_since = Some(self.last_activity);
        }
        Some(s)
    }

    /// Charges `cost` bytes of metadata memory to open stream `id`.
    fn charge_metadata(&mut self, id: u32, cost: usize) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.md_cost += cost;
            self.md_held += cost;
        }
    }

    fn wake_blocked(&mut self) {
        if self.conn_send <= 0 {
            return;
        }
        if std::mem::take(&mut self.conn_blocked) {
            self.events.push_back(Event::Writable { id: 0 });
        }
        let room = self.out_cap_room();
        let mut waiting = false;
        for (&id, s) in self.streams.iter_mut() {
            if s.blocked && s.send_window > 0 {
                if !room.admits(s) {
                    waiting = true;
                    continue;
                }
                s.blocked = false;
                self.events.push_back(Event::Writable { id });
            }
        }
        self.out_waiters |= waiting;
    }
}

/// The output caps' verdict at one moment (§9): whether the connection's
/// unwritten output leaves room, and what a call's may be.
#[derive(Clone, Copy)]
struct OutRoom {
    conn: bool,
    written: u64,
    per_call: u64,
}

impl OutRoom {
    /// Whether `s` may queue another message.
    fn admits(&self, s: &Stream) -> bool {
        self.conn && s.out_end.saturating_sub(self.written) < self.per_call
    }
}

/// A CLOSE head with a status and no trailers.
pub fn close_head(code: Code, message: &str) -> CloseHead {
    CloseHead {
        code,
        message: Bytes::copy_from_slice(message.as_bytes()),
        details: Bytes::new(),
        trailers: Metadata::new(),
    }
}
