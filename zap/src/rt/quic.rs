//! ZAP-RPC over QUIC (`zap+quic://`, docs/PROTOCOL.md §11).
//!
//! QUIC multiplexes, orders each stream and flow-controls it, so there is no
//! driver task and no shared state machine here: every call is one
//! bidirectional QUIC stream carrying the §3 call frames with stream field
//! 0, and each half of a call reads or writes its stream directly.
//!
//! - A connection ([`QConn`]) starts by exchanging `SETTINGS` on one
//!   unidirectional control stream per side; the server later sends
//!   `GOAWAY` there.
//! - A call ([`QCall`]) reads its stream only as fast as its consumer takes
//!   messages (one read of quinn's chunks, at most four, beyond what it
//!   parsed), so a slow reader holds its sender back through QUIC stream
//!   credit. Received chunks are parsed in place and encoded frames are
//!   handed to quinn as they are: no copy either way for a frame that
//!   fits one chunk.
//! - Each side closes a connection idle (no open call) for `idle_timeout`,
//!   and the server closes one whose client cuts short more than §9's
//!   reset rate of call streams.
//! - Cancellation is `RESET_STREAM` + `STOP_SENDING` carrying the status
//!   code; the server notices it through `STOP_SENDING` even while its
//!   handler is not reading.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::{Notify, watch};
use tokio::time::Sleep;
use tower_service::Service;
use zap_transport::quic::{
    QuicConnection, QuicConnectionError, QuicConnector, QuicListener, ReadError, RecvStream,
    SendStream, StoppedError, VarInt, WriteError,
};
use zap_transport::{ConnGuard, Limits, PeerInfo, Url};

use super::client::time_left;
use super::conn::Item;
use super::link::{
    Link, call_ended, close_head_of, too_large_close, too_large_status, unfinished_status,
};
use super::proto_config;
use super::server::{BoxError, ConnSet, ServerCall, drain, serve_call};
use crate::metadata::Metadata;
use crate::proto::{
    CloseHead, FRAME_HEADER_LEN, Frame, Framing, Header, MAX_METHOD, MIN_MAX_FRAME, Malformed,
    OpenHead, Out, Reason, SendError, Settings, close_head, close_len, metadata_len, open_len,
};
use crate::status::{Code, Status};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn code_var(c: Code) -> VarInt {
    VarInt::from_u32(c.0)
}

/// The status code a stream reset carries (§11: the application error
/// code is the status code).
fn code_of(v: VarInt) -> Code {
    match u32::try_from(v.into_inner()) {
        Ok(c) if c <= 16 => Code(c),
        _ => Code::UNKNOWN,
    }
}

/// A QUIC connection carrying ZAP-RPC calls.
pub(crate) struct QConn {
    connection: QuicConnection,
    peer: Arc<PeerInfo>,
    /// What this side accepts (its SETTINGS).
    local: Settings,
    /// What the peer accepts (its SETTINGS).
    remote: Settings,
    /// How long a call stream may take to deliver its OPEN (server).
    open_timeout: Duration,
    /// Server: call streams the client may cut short per second (§9).
    max_resets_per_sec: u32,
    state: Mutex<QState>,
    /// Rung when the last open call ends.
    idle: Notify,
    /// This side's control stream: kept open for the connection's life
    /// (its end would be a protocol error), GOAWAY goes there.
    control: tokio::sync::Mutex<SendStream>,
    _guard: ConnGuard,
}

#[derive(Default)]
struct QState {
    /// Calls open on this connection.
    calls: u32,
    /// Client: the server sent GOAWAY. Server: GOAWAY was sent.
    goaway: bool,
    /// Client: no new calls; close once the open ones are done.
    retired: bool,
    /// The connection ended (seen by the control stream's reader).
    closed: bool,
    /// Since when no call has been open (`None` while one is).
    idle_since: Option<Instant>,
    /// Server: call streams the client cut short (reset or ended before
    /// their OPEN, or cancelled while their handler ran) since
    /// `rate_window` (§9's reset rate).
    resets: u32,
    rate_window: Option<Instant>,
}

impl QConn {
    fn new(
        connection: QuicConnection,
        peer: PeerInfo,
        guard: ConnGuard,
        local: Settings,
        remote: Settings,
        control: SendStream,
        limits: &Limits,
    ) -> Arc<QConn> {
        Arc::new(QConn {
            connection,
            peer: Arc::new(peer),
            local,
            remote,
            open_timeout: limits.handshake_timeout,
            max_resets_per_sec: proto_config(limits).max_resets_per_sec,
            state: Mutex::new(QState {
                idle_since: Some(Instant::now()),
                ..QState::default()
            }),
            idle: Notify::new(),
            control: tokio::sync::Mutex::new(control),
            _guard: guard,
        })
    }

    /// Client: whether new calls may start here.
    pub(crate) fn usable(&self) -> bool {
        let st = lock(&self.state);
        !st.goaway && !st.retired && !st.closed
    }

    /// Client: no new calls will be made; close once none is open.
    pub(crate) fn retire(&self) {
        let mut st = lock(&self.state);
        st.retired = true;
        if st.calls == 0 {
            self.connection.close(VarInt::from_u32(0), b"client done");
        }
    }

    /// Closes the connection with a §9 code.
    fn fail(&self, reason: Reason, why: &str) {
        self.connection
            .close(VarInt::from_u32(reason.0), why.as_bytes());
    }

    /// Closes the connection now (server shutdown past its drain deadline).
    pub(crate) fn close_now(&self, why: &str) {
        self.fail(Reason::NO_ERROR, why);
    }

    /// The status of a call the connection's end cut short.
    fn conn_status(&self) -> Status {
        match self.connection.close_reason() {
            Some(e) => Status::unavailable(describe(&e)),
            None => Status::unavailable("connection closed"),
        }
    }

    /// Counts a call in, if the peer's `MAX_CONCURRENT_STREAMS` allows.
    /// `Err(true)`: the connection takes no new calls.
    fn take_slot(self: &Arc<Self>, limit: Option<u32>) -> Result<CallSlot, bool> {
        let mut st = lock(&self.state);
        if limit.is_some() && (st.goaway || st.retired || st.closed) {
            return Err(true);
        }
        if limit.is_some_and(|max| st.calls >= max) {
            return Err(false);
        }
        st.calls += 1;
        st.idle_since = None;
        Ok(CallSlot(self.clone()))
    }

    /// Server: no new calls from now on; the peer learns the last call
    /// stream that will be served.
    async fn goaway(&self, last: u64, why: &str) {
        lock(&self.state).goaway = true;
        let last = u32::try_from(last).unwrap_or(u32::MAX);
        let chunks = frames(|out| out.goaway(last, Reason::NO_ERROR.0, why.as_bytes()));
        let mut control = self.control.lock().await;
        for c in chunks {
            if control.write_chunk(c).await.is_err() {
                return;
            }
        }
    }

    /// Server: counts a call stream the client cut short; past §9's rate
    /// the connection closes with `ENHANCE_YOUR_CALM` (the QUIC form of
    /// h2's Rapid Reset guard: opening and resetting streams in a loop
    /// costs the client little and the server a task each).
    fn count_reset(&self) {
        let now = Instant::now();
        let mut st = lock(&self.state);
        match st.rate_window {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {}
            _ => {
                st.rate_window = Some(now);
                st.resets = 0;
            }
        }
        st.resets += 1;
        if st.resets > self.max_resets_per_sec {
            drop(st);
            self.fail(
                Reason::ENHANCE_YOUR_CALM,
                "too many call streams reset or cancelled per second",
            );
        }
    }

    fn open_calls(&self) -> u32 {
        lock(&self.state).calls
    }
}

/// The frames `encode` writes, as chunks to hand to a stream.
fn frames(encode: impl FnOnce(&mut Out)) -> Vec<Bytes> {
    let mut out = Out::exact();
    encode(&mut out);
    let mut chunks = Vec::new();
    out.drain_into(&mut chunks);
    chunks
}

/// One open call, counted in [`QState::calls`] until dropped.
struct CallSlot(Arc<QConn>);

impl Drop for CallSlot {
    fn drop(&mut self) {
        let mut st = lock(&self.0.state);
        st.calls -= 1;
        if st.calls == 0 {
            st.idle_since = Some(Instant::now());
            if st.retired {
                self.0.connection.close(VarInt::from_u32(0), b"client done");
            }
            self.0.idle.notify_waiters();
        }
    }
}

/// Says why a QUIC connection ended, in §9 terms where the peer gave one.
fn describe(e: &QuicConnectionError) -> String {
    match e {
        QuicConnectionError::ApplicationClosed(c) => {
            let code = u32::try_from(c.error_code.into_inner()).unwrap_or(u32::MAX);
            format!(
                "connection closed by the peer: {:?}: {}",
                Reason(code),
                String::from_utf8_lossy(&c.reason)
            )
        }
        QuicConnectionError::LocallyClosed => "connection closed".to_owned(),
        QuicConnectionError::TimedOut => "connection timed out (peer silent)".to_owned(),
        other => format!("connection lost: {other}"),
    }
}

/// Why a stream could not yield another frame.
enum Fail {
    /// The peer reset the stream with this code.
    Reset(VarInt),
    /// The connection ended.
    Lost(QuicConnectionError),
    /// The peer broke the protocol: the connection must close.
    Protocol(Reason, String),
}

/// Chunks one read takes from a QUIC stream.
const READ_CHUNKS: usize = 4;
/// How long a drained server connection waits for its client to close it
/// (PROTOCOL.md §11) before closing it itself.
const DRAINED_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Reads §3 frames from a QUIC stream, checking each length against
/// `MAX_FRAME` before keeping any of it.
///
/// It takes quinn's received chunks as they are: a frame inside one chunk
/// is a slice of it (no copy), and only a frame split across chunks is
/// gathered into a buffer, which grows with the bytes that arrive, never
/// with the length a header announces.
struct FrameReader {
    stream: RecvStream,
    /// Chunks read and not yet looked at: `chunks[next..filled]`.
    chunks: [Bytes; READ_CHUNKS],
    next: usize,
    filled: usize,
    /// What is left of the chunk being parsed.
    cur: Bytes,
    /// The start of a frame that continues in a later chunk.
    partial: BytesMut,
    fin: bool,
}

/// The length of the frame `h` starts, header included, once its payload
/// length is checked against this side's `MAX_FRAME`.
fn frame_total(h: &Header, local: &Settings) -> Result<usize, Fail> {
    if h.len > local.max_frame {
        return Err(Fail::Protocol(
            Reason::FRAME_TOO_LARGE,
            format!(
                "frame of {} bytes exceeds MAX_FRAME {}",
                h.len, local.max_frame
            ),
        ));
    }
    Ok(FRAME_HEADER_LEN + h.len as usize)
}

impl FrameReader {
    fn new(stream: RecvStream) -> Self {
        FrameReader {
            stream,
            chunks: Default::default(),
            next: 0,
            filled: 0,
            cur: Bytes::new(),
            partial: BytesMut::new(),
            fin: false,
        }
    }

    /// The next frame; `None` at the end of the stream.
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        framing: Framing,
        local: &Settings,
    ) -> Poll<Result<Option<Frame>, Fail>> {
        loop {
            match self.split_frame(local) {
                Err(fail) => return Poll::Ready(Err(fail)),
                Ok(Some((h, payload))) => {
                    return Poll::Ready(
                        Frame::parse_in(framing, h, payload, local)
                            .map(Some)
                            .map_err(|Malformed(why)| {
                                Fail::Protocol(Reason::PROTOCOL_ERROR, why.to_owned())
                            }),
                    );
                }
                Ok(None) => {}
            }
            if self.next < self.filled {
                self.cur = std::mem::take(&mut self.chunks[self.next]);
                self.next += 1;
                continue;
            }
            if self.fin {
                return Poll::Ready(if self.partial.is_empty() {
                    Ok(None)
                } else {
                    Err(Fail::Protocol(
                        Reason::PROTOCOL_ERROR,
                        "stream ended inside a frame".to_owned(),
                    ))
                });
            }
            if let Err(fail) = ready!(self.poll_read(cx)) {
                return Poll::Ready(Err(fail));
            }
        }
    }

    /// Splits the next whole frame (header, payload) off what was read,
    /// if it is all there.
    fn split_frame(&mut self, local: &Settings) -> Result<Option<(Header, Bytes)>, Fail> {
        if self.partial.is_empty()
            && let Some(h) = Header::parse(&self.cur)
        {
            let total = frame_total(&h, local)?;
            if self.cur.len() >= total {
                let mut payload = self.cur.split_to(total);
                payload.advance(FRAME_HEADER_LEN);
                return Ok(Some((h, payload)));
            }
        }
        // The frame goes on in a later chunk: gather it, its header first.
        while !self.cur.is_empty() {
            let want = match Header::parse(&self.partial) {
                Some(h) => frame_total(&h, local)?,
                None => FRAME_HEADER_LEN,
            };
            let n = (want - self.partial.len()).min(self.cur.len());
            self.partial.extend_from_slice(&self.cur[..n]);
            self.cur.advance(n);
            if let Some(h) = Header::parse(&self.partial)
                && self.partial.len() == frame_total(&h, local)?
            {
                let mut payload = self.partial.split().freeze();
                payload.advance(FRAME_HEADER_LEN);
                return Ok(Some((h, payload)));
            }
        }
        Ok(None)
    }

    /// Reads the next chunks (or the end) from the stream. One read takes
    /// the end along with the last data when both are there.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Fail>> {
        // `read_chunks` is cancel-safe: a future polled once and dropped
        // leaves the stream as it was, with this task's waker registered.
        let read = std::pin::pin!(self.stream.read_chunks(&mut self.chunks));
        match ready!(read.poll(cx)) {
            Ok(Some(n)) => {
                self.next = 0;
                self.filled = n;
            }
            Ok(None) => self.fin = true,
            Err(ReadError::Reset(code)) => return Poll::Ready(Err(Fail::Reset(code))),
            Err(ReadError::ConnectionLost(e)) => return Poll::Ready(Err(Fail::Lost(e))),
            Err(_) => {
                return Poll::Ready(Err(Fail::Protocol(
                    Reason::INTERNAL_ERROR,
                    "stream read failed".into(),
                )));
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes the end of the stream if it is already there, so dropping
    /// the reader does not ask the peer to stop sending. Data after the
    /// end of the call is kept for the next read, which reports it.
    fn poll_fin(&mut self, cx: &mut Context<'_>) {
        if self.fin || !self.cur.is_empty() || self.next < self.filled {
            return;
        }
        let _ = self.poll_read(cx);
    }
}

/// Encoded frames of a call waiting for its stream.
struct Sender {
    stream: SendStream,
    out: Out,
    /// Nothing more may be sent: finished, reset, or `CLOSE` sent.
    closed: bool,
}

impl Sender {
    fn new(stream: SendStream) -> Self {
        Sender {
            stream,
            out: Out::exact(),
            closed: false,
        }
    }

    /// Writes what `out` holds into the stream, handing quinn the encoded
    /// chunks themselves (no copy).
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        loop {
            let pending = self.out.pending();
            if pending.is_empty() {
                return Poll::Ready(Ok(()));
            }
            // Cancel-safe: a future polled once and dropped wrote nothing
            // or reports what it wrote.
            let written = {
                let write = std::pin::pin!(self.stream.write_chunks(pending));
                ready!(write.poll(cx))?
            };
            self.out.consumed(written.chunks, written.bytes);
        }
    }

    /// Flushes without waiting; the rest goes with the next write.
    fn try_flush(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        let _ = self.poll_flush(&mut cx);
    }

    fn reset(&mut self, code: Code) {
        self.closed = true;
        self.out.clear();
        let _ = self.stream.reset(code_var(code));
    }
}

/// The status for a write that failed.
fn write_status(q: &QConn, e: WriteError, server: bool) -> Status {
    match e {
        WriteError::ConnectionLost(_) => q.conn_status(),
        _ => call_ended(server),
    }
}

/// Items parsed ahead of their reader: a message and the end that came
/// with it, or the close that ends a call early.
#[derive(Default)]
struct Ahead {
    items: [Option<Item>; 2],
}

impl Ahead {
    fn push_back(&mut self, item: Item) {
        let [first, second] = &mut self.items;
        let slot = if first.is_none() { first } else { second };
        debug_assert!(slot.is_none(), "at most two items are parsed ahead");
        *slot = Some(item);
    }

    fn pop_front(&mut self) -> Option<Item> {
        let [first, second] = &mut self.items;
        let item = first.take();
        *first = second.take();
        item
    }

    fn is_empty(&self) -> bool {
        self.items[0].is_none()
    }

    fn clear(&mut self) {
        self.items = [None, None];
    }
}

/// The receiving side of a call.
struct Receiver {
    reader: FrameReader,
    queue: Ahead,
    /// Nothing more will be read.
    ended: bool,
    /// Why the items ended early, if they did.
    failure: Option<Status>,
    /// Client: the call's deadline.
    deadline: Option<Pin<Box<Sleep>>>,
    /// The reader waiting on the stream: quinn holds its waker for the
    /// stream's data, so a local failure (`QCall::fail`, from another
    /// task) wakes it from here.
    waiting: Option<Waker>,
}

type Stopped = Pin<Box<dyn Future<Output = Result<Option<VarInt>, StoppedError>> + Send + Sync>>;

/// Server: what ends a call from outside its handler.
struct Watch {
    /// The client's `STOP_SENDING` (or the connection's end), watched
    /// from the first time anyone asks: a handler that answers at once
    /// never pays for it.
    stopped: Option<Stopped>,
    /// The deadline the client gave.
    deadline: Option<Pin<Box<Sleep>>>,
    cancelled: Option<Code>,
    /// The deadline (not the client) cancelled the call.
    expired: bool,
}

/// One call on its QUIC stream.
pub(crate) struct QCall {
    conn: Arc<QConn>,
    index: u64,
    client: bool,
    recv: Mutex<Receiver>,
    send: Mutex<Sender>,
    watch: Option<Mutex<Watch>>,
    _slot: CallSlot,
}

impl QCall {
    pub(crate) fn index(&self) -> u64 {
        self.index
    }

    pub(crate) fn peer(&self) -> &Arc<PeerInfo> {
        &self.conn.peer
    }

    pub(crate) fn poll_item(&self, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let mut r = lock(&self.recv);
        if let Some(item) = r.queue.pop_front() {
            return Poll::Ready(Some(item));
        }
        if r.ended {
            return Poll::Ready(None);
        }
        if let Some(d) = r.deadline.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            r.ended = true;
            drop(r);
            self.cancel_stream(Code::DEADLINE_EXCEEDED);
            return Poll::Ready(Some(Item::Close {
                head: close_head(Code::DEADLINE_EXCEEDED, "deadline exceeded"),
                headers: None,
                message: None,
            }));
        }
        let local = &self.conn.local;
        let frame = match r.reader.poll_frame(cx, Framing::QuicCall, local) {
            Poll::Pending => {
                if !r.waiting.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    r.waiting = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            Poll::Ready(f) => f,
        };
        let item = match (frame, self.client) {
            (Ok(Some(Frame::Headers { metadata, .. })), true) => Item::Headers(metadata),
            (Ok(Some(Frame::Message { message, .. })), true) => Item::Message(message),
            (
                Ok(Some(Frame::Close {
                    head,
                    headers,
                    message,
                    ..
                })),
                true,
            ) => {
                r.ended = true;
                r.reader.poll_fin(cx);
                Item::Close {
                    head,
                    headers,
                    message,
                }
            }
            (Ok(Some(Frame::Message { message, end, .. })), false) => {
                if end {
                    r.ended = true;
                    r.queue.push_back(Item::End);
                    r.reader.poll_fin(cx);
                }
                Item::Message(message)
            }
            (Ok(Some(Frame::End { .. })) | Ok(None), false) => {
                r.ended = true;
                r.reader.poll_fin(cx);
                Item::End
            }
            (Ok(Some(_)), _) => {
                let why = if self.client {
                    "a server sent a frame other than HEADERS, MESSAGE or CLOSE on a call"
                } else {
                    "a client sent a frame other than MESSAGE or END after OPEN"
                };
                return self.fail_read(&mut r, Fail::Protocol(Reason::PROTOCOL_ERROR, why.into()));
            }
            (Ok(None), true) => {
                r.ended = true;
                r.failure = Some(Status::internal("server ended the call without a status"));
                return Poll::Ready(None);
            }
            (Err(fail), _) => return self.fail_read(&mut r, fail),
        };
        Poll::Ready(Some(item))
    }

    /// Ends the items with the status `fail` explains.
    fn fail_read(&self, r: &mut Receiver, fail: Fail) -> Poll<Option<Item>> {
        r.ended = true;
        r.failure = Some(match fail {
            Fail::Reset(code) if self.client => {
                Status::new(code_of(code), "call reset by the server")
            }
            Fail::Reset(code) => match code_of(code) {
                Code::DEADLINE_EXCEEDED => Status::deadline_exceeded("deadline exceeded"),
                _ => Status::cancelled("call cancelled by the client"),
            },
            Fail::Lost(e) => Status::unavailable(describe(&e)),
            Fail::Protocol(reason, why) => {
                self.conn.fail(reason, &why);
                self.conn.conn_status()
            }
        });
        Poll::Ready(None)
    }

    pub(crate) fn end_status(&self) -> Status {
        let r = lock(&self.recv);
        match &r.failure {
            Some(s) => s.clone(),
            None if self.client => self.conn.conn_status(),
            None => Status::cancelled("call cancelled"),
        }
    }

    /// Resets both directions with `code` (§11 cancellation).
    fn cancel_stream(&self, code: Code) {
        let _ = lock(&self.recv).reader.stream.stop(code_var(code));
        lock(&self.send).reset(code);
    }

    pub(crate) fn abandon(&self, code: Code) {
        {
            let mut r = lock(&self.recv);
            if r.ended && r.queue.is_empty() {
                return;
            }
            r.ended = true;
            r.queue.clear();
        }
        self.cancel_stream(code);
    }

    pub(crate) fn fail(&self, status: &Status) {
        self.abandon(Code::CANCELLED);
        let mut r = lock(&self.recv);
        r.queue.clear();
        r.queue.push_back(Item::Close {
            head: close_head_of(status),
            headers: None,
            message: None,
        });
        // The response reader may be another task (a bidi call whose
        // request stream failed in its pump): it must see the end.
        if let Some(w) = r.waiting.take() {
            w.wake();
        }
    }

    pub(crate) fn finish(&self) -> Result<(), ()> {
        let mut s = lock(&self.send);
        if s.closed {
            return Err(());
        }
        s.closed = true;
        if s.out.len() > 0 {
            // A send was dropped halfway through a frame: the stream cannot
            // go on.
            s.reset(Code::CANCELLED);
            return Err(());
        }
        s.stream.finish().map_err(|_| ())
    }

    /// Checks a message against the peer's limits (MAX_MESSAGE, and
    /// MAX_FRAME for the MESSAGE frame that carries it).
    fn check_size(&self, len: usize) -> Result<(), Status> {
        let max = self.conn.remote.max_message.min(self.conn.remote.max_frame);
        if len > max as usize {
            return Err(too_large_status(len, max));
        }
        Ok(())
    }

    pub(crate) async fn send(&self, message: Bytes) -> Result<(), Status> {
        self.check_size(message.len())?;
        {
            let mut s = lock(&self.send);
            if s.closed {
                return Err(call_ended(!self.client));
            }
            s.out.message(0, message, false);
        }
        poll_fn(|cx| lock(&self.send).poll_flush(cx))
            .await
            .map_err(|e| write_status(&self.conn, e, !self.client))
    }

    pub(crate) fn send_headers(&self, headers: &Metadata) {
        let len = metadata_len(headers);
        if len > self.conn.remote.max_metadata as usize
            || 4 + len > self.conn.remote.max_frame as usize
        {
            return; // the CLOSE reports it (see `close`)
        }
        let mut s = lock(&self.send);
        if s.closed {
            return;
        }
        s.out.headers(0, headers);
        s.try_flush();
    }

    pub(crate) async fn close(
        &self,
        head: &CloseHead,
        headers: Option<&Metadata>,
        message: Option<Bytes>,
    ) {
        let max_md = self.conn.remote.max_metadata as usize;
        let max_frame = self.conn.remote.max_frame as usize;
        {
            let mut s = lock(&self.send);
            if s.closed {
                return;
            }
            s.closed = true;
            let len = message.as_ref().map(Bytes::len);
            // The frame without the message fits, with it not: the
            // message is too large (else the status or metadata is).
            let without = close_len(head, headers, None);
            let message_too_large = message
                .as_ref()
                .is_some_and(|m| self.check_size(m.len()).is_err())
                || (without <= max_frame && close_len(head, headers, len) > max_frame);
            if message_too_large {
                s.out.close(0, &too_large_close(), None, None);
            } else if metadata_len(&head.trailers) > max_md
                || headers.is_some_and(|h| metadata_len(h) > max_md)
                || close_len(head, headers, len) > max_frame
            {
                let head = close_head(
                    Code::INTERNAL,
                    "response status or metadata exceeds the client's MAX_METADATA or MAX_FRAME",
                );
                s.out.close(0, &head, None, None);
            } else {
                s.out.close(0, head, headers, message);
            }
        }
        if poll_fn(|cx| lock(&self.send).poll_flush(cx)).await.is_ok() {
            let _ = lock(&self.send).stream.finish();
        }
    }

    pub(crate) fn take_single(&self) -> Option<Bytes> {
        let mut r = lock(&self.recv);
        match &mut r.queue.items {
            [Some(Item::Message(m)), Some(Item::End)] => {
                let m = std::mem::take(m);
                r.queue.clear();
                Some(m)
            }
            _ => None,
        }
    }

    pub(crate) fn poll_cancelled(&self, cx: &mut Context<'_>) -> Poll<Code> {
        let Some(watch) = &self.watch else {
            return Poll::Pending;
        };
        let mut w = lock(watch);
        if let Some(c) = w.cancelled {
            return Poll::Ready(c);
        }
        if let Some(d) = w.deadline.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            w.expired = true;
            w.cancelled = Some(Code::DEADLINE_EXCEEDED);
            return Poll::Ready(Code::DEADLINE_EXCEEDED);
        }
        let stopped = match &mut w.stopped {
            Some(stopped) => stopped,
            None => w
                .stopped
                .insert(Box::pin(lock(&self.send).stream.stopped())),
        };
        match stopped.as_mut().poll(cx) {
            Poll::Ready(Ok(Some(code))) => {
                let c = match code_of(code) {
                    Code::DEADLINE_EXCEEDED => Code::DEADLINE_EXCEEDED,
                    _ => Code::CANCELLED,
                };
                w.cancelled = Some(c);
                // A cancellation that stops work counts toward the reset
                // rate, as a CANCEL does on a byte stream.
                self.conn.count_reset();
                Poll::Ready(c)
            }
            // Finished and acknowledged: the response is out, nothing can
            // cancel the call any more.
            Poll::Ready(Ok(None)) => {
                w.stopped = Some(Box::pin(std::future::pending()));
                Poll::Pending
            }
            Poll::Ready(Err(_)) => {
                w.cancelled = Some(Code::CANCELLED);
                Poll::Ready(Code::CANCELLED)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    pub(crate) async fn end_server_call(&self, result: Result<Result<(), BoxError>, Code>) {
        match result {
            Ok(r) => {
                if !lock(&self.send).closed {
                    self.close(&close_head_of(&unfinished_status(r)), None, None)
                        .await;
                }
            }
            Err(code) => {
                let expired = self.watch.as_ref().is_some_and(|w| lock(w).expired);
                if expired {
                    // §8: the server ends the call itself when its deadline
                    // passes.
                    let head = close_head(Code::DEADLINE_EXCEEDED, "deadline exceeded");
                    self.close(&head, None, None).await;
                    let _ = lock(&self.recv).reader.stream.stop(code_var(code));
                } else {
                    self.cancel_stream(code);
                }
            }
        }
    }
}

/// Writes this side's SETTINGS on a new control stream and reads the
/// peer's: the first frame of its control stream.
async fn exchange_settings(
    connection: &QuicConnection,
    local: &Settings,
) -> Result<(SendStream, FrameReader, Settings), (Reason, String)> {
    let lost = |e: QuicConnectionError| (Reason::NO_ERROR, describe(&e));
    let mut control = connection.open_uni().await.map_err(lost)?;
    let mut chunks = frames(|out| out.settings(local));
    control
        .write_all_chunks(&mut chunks)
        .await
        .map_err(|e| (Reason::NO_ERROR, e.to_string()))?;
    let recv = connection.accept_uni().await.map_err(lost)?;
    let mut reader = FrameReader::new(recv);
    let first = poll_fn(|cx| reader.poll_frame(cx, Framing::QuicControl, local)).await;
    match first {
        Ok(Some(Frame::Settings(pairs))) => {
            let mut remote = Settings::default();
            remote.apply(&pairs);
            if remote.max_frame < MIN_MAX_FRAME {
                return Err((
                    Reason::PROTOCOL_ERROR,
                    "MAX_FRAME below the minimum of 16384".into(),
                ));
            }
            Ok((control, reader, remote))
        }
        Ok(Some(_)) => Err((
            Reason::PROTOCOL_ERROR,
            "the first frame on a control stream must be SETTINGS".into(),
        )),
        Ok(None) => Err((Reason::PROTOCOL_ERROR, "control stream ended".into())),
        Err(Fail::Protocol(reason, why)) => Err((reason, why)),
        Err(Fail::Reset(_)) => Err((Reason::PROTOCOL_ERROR, "control stream reset".into())),
        Err(Fail::Lost(e)) => Err(lost(e)),
    }
}

/// Exchanges SETTINGS by `deadline` (the handshake deadline), closing the
/// connection if that fails.
async fn start_connection(
    connection: &QuicConnection,
    limits: &Limits,
    deadline: Instant,
) -> Result<(SendStream, FrameReader, Settings, Settings), String> {
    let local = proto_config(limits).settings;
    match tokio::time::timeout_at(deadline.into(), exchange_settings(connection, &local)).await {
        Ok(Ok((control, reader, remote))) => Ok((control, reader, local, remote)),
        Ok(Err((reason, why))) => {
            if reason != Reason::NO_ERROR {
                connection.close(VarInt::from_u32(reason.0), why.as_bytes());
            }
            Err(why)
        }
        Err(_) => {
            let why = "peer sent no SETTINGS within the handshake timeout";
            connection.close(
                VarInt::from_u32(Reason::HANDSHAKE_TIMEOUT.0),
                why.as_bytes(),
            );
            Err(why.to_owned())
        }
    }
}

/// Watches a connection for its life: reads the peer's control stream
/// after its SETTINGS and closes the connection when it idles too long.
async fn watch_control(q: Arc<QConn>, reader: FrameReader, idle_timeout: Option<Duration>) {
    tokio::select! {
        _ = read_control(&q, reader) => {}
        _ = watch_idle(&q, idle_timeout) => {}
    }
    lock(&q.state).closed = true;
}

/// Closes the connection (§9 `IDLE_TIMEOUT`) once no call has been open
/// on it for `timeout`, as the byte-stream connections do.
async fn watch_idle(q: &QConn, timeout: Option<Duration>) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    loop {
        // Armed before the look: a call ending after it wakes it.
        let ended = q.idle.notified();
        let since = lock(&q.state).idle_since;
        let Some(since) = since else {
            ended.await;
            continue;
        };
        let Some(at) = since.checked_add(timeout) else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(at.into()).await;
        if lock(&q.state).idle_since == Some(since) {
            return q.fail(Reason::IDLE_TIMEOUT, "idle");
        }
    }
}

/// Reads the peer's control stream after its SETTINGS: only GOAWAY may
/// follow (a client learns it may start no more calls).
async fn read_control(q: &QConn, mut reader: FrameReader) {
    loop {
        let frame = poll_fn(|cx| reader.poll_frame(cx, Framing::QuicControl, &q.local)).await;
        match frame {
            // No new calls, and the connection closes with its last one:
            // the client closes, once it has every answer (a server that
            // closed first could cut off answers still unacknowledged).
            Ok(Some(Frame::GoAway { .. })) => {
                lock(&q.state).goaway = true;
                q.retire();
            }
            Ok(Some(_)) => return q.fail(Reason::PROTOCOL_ERROR, "SETTINGS sent twice"),
            Ok(None) | Err(Fail::Reset(_)) => {
                return q.fail(Reason::PROTOCOL_ERROR, "control stream ended");
            }
            Err(Fail::Protocol(reason, why)) => return q.fail(reason, &why),
            Err(Fail::Lost(_)) => return,
        }
    }
}

/// Client: connects and exchanges SETTINGS.
pub(crate) async fn connect(
    connector: &QuicConnector,
    url: &Url,
    limits: &Limits,
) -> Result<Arc<QConn>, String> {
    let conn = connector.connect(url).await.map_err(|e| e.to_string())?;
    establish(conn, limits).await
}

/// Exchanges SETTINGS on a new connection and starts watching the peer's
/// control stream.
async fn establish(
    conn: zap_transport::quic::QuicConn,
    limits: &Limits,
) -> Result<Arc<QConn>, String> {
    // A server's deadline counts from accept (§2), a client's from now.
    let deadline = conn.accepted_at().unwrap_or_else(Instant::now) + limits.handshake_timeout;
    let (connection, peer, guard) = conn.into_parts();
    let (control, reader, local, remote) = start_connection(&connection, limits, deadline).await?;
    let q = QConn::new(connection, peer, guard, local, remote, control, limits);
    tokio::spawn(watch_control(q.clone(), reader, limits.idle_timeout));
    Ok(q)
}

/// Client: opens a call on its own stream and sends its OPEN frame.
pub(crate) async fn open(
    q: &Arc<QConn>,
    head: &mut OpenHead,
    deadline: Option<Instant>,
    message: Option<Bytes>,
    end: bool,
) -> Result<Link, SendError> {
    // What the server would reject fails this call alone (§4.2, §5.1).
    if head.method.first() != Some(&b'/') || head.method.len() > MAX_METHOD {
        return Err(SendError::Invalid(
            "method must start with '/' and be at most 1024 bytes",
        ));
    }
    if metadata_len(&head.metadata) > q.remote.max_metadata as usize {
        return Err(SendError::Invalid(
            "request metadata exceeds the server's MAX_METADATA",
        ));
    }
    let frame = open_len(head, message.as_ref().map(Bytes::len));
    if let Some(m) = &message
        && (m.len() > q.remote.max_message as usize || frame > q.remote.max_frame as usize)
    {
        let room = (q.remote.max_frame as usize).saturating_sub(frame - m.len());
        return Err(SendError::TooLarge {
            size: m.len(),
            max: q.remote.max_message.min(room as u32),
        });
    }
    if frame > q.remote.max_frame as usize {
        return Err(SendError::Invalid(
            "request metadata exceeds the server's MAX_FRAME",
        ));
    }
    let max = q.remote.max_concurrent_streams;
    let slot = q.take_slot(Some(max)).map_err(|closed| {
        if closed {
            SendError::Closed
        } else {
            SendError::TooManyStreams { max }
        }
    })?;
    // Waits for QUIC stream credit: the server's limit allows this call,
    // so credit for it is at most a round trip away.
    let (send, recv) = q
        .connection
        .open_bi()
        .await
        .map_err(|_| SendError::Closed)?;
    head.timeout = time_left(deadline, Instant::now())?;
    let call = QCall::opened(slot, send, recv, deadline, head, message, end);
    match poll_fn(|cx| lock(&call.send).poll_flush(cx)).await {
        Ok(()) => {}
        Err(WriteError::ConnectionLost(_)) => return Err(SendError::Closed),
        // Stopped by the server: its CLOSE says why.
        Err(_) => {}
    }
    if end {
        let _ = call.finish();
    }
    Ok(Link::Quic(call))
}

impl QCall {
    /// Client: the call on a new stream, its OPEN encoded (not sent).
    /// Built outside `open` so that every call's future stays small.
    fn opened(
        slot: CallSlot,
        send: SendStream,
        recv: RecvStream,
        deadline: Option<Instant>,
        head: &OpenHead,
        message: Option<Bytes>,
        end: bool,
    ) -> Arc<QCall> {
        let mut sender = Sender::new(send);
        sender.out.open(0, head, message.as_ref(), end);
        Arc::new(QCall {
            conn: slot.0.clone(),
            index: sender.stream.id().index(),
            client: true,
            recv: Mutex::new(Receiver {
                waiting: None,
                reader: FrameReader::new(recv),
                queue: Ahead::default(),
                ended: false,
                failure: None,
                deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d.into()))),
            }),
            send: Mutex::new(sender),
            watch: None,
            _slot: slot,
        })
    }
}

/// Server: serves calls on QUIC connections from `listener` until
/// `shutdown`, then drains like the byte-stream server (see
/// `Server::serve_service`).
pub(crate) async fn serve<S, F>(
    listener: QuicListener,
    service: S,
    limits: Limits,
    drain_timeout: Duration,
    shutdown: F,
) where
    S: Service<ServerCall, Response = ()> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    F: Future<Output = ()>,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let conns: Arc<ConnSet<Arc<QConn>>> = Arc::new(ConnSet::default());
    let listener = Arc::new(listener);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            incoming = listener.accept() => {
                let Some(incoming) = incoming else { break };
                let service = service.clone();
                let limits = limits.clone();
                let conns = conns.clone();
                let mut stop = stop_rx.clone();
                tokio::spawn(async move {
                    let conn = tokio::select! {
                        c = incoming.handshake() => c,
                        _ = stop.wait_for(|s| *s) => return,
                    };
                    let Ok(conn) = conn else { return };
                    serve_connection(conn, service, limits, conns, stop).await;
                });
            }
        }
    }
    let _ = stop_tx.send(true);
    // While draining, connection attempts are refused at once instead of
    // waiting for a handshake that will never be served.
    let refuse = {
        let listener = listener.clone();
        tokio::spawn(async move {
            while let Some(incoming) = listener.accept().await {
                drop(incoming);
            }
        })
    };
    drain(&conns, drain_timeout, |q| q.close_now("server shut down")).await;
    refuse.abort();
    // Let the CONNECTION_CLOSE frames go out before the endpoint goes.
    listener.close(0, b"server shut down");
}

/// Server: one connection, from its SETTINGS to its end.
async fn serve_connection<S>(
    conn: zap_transport::quic::QuicConn,
    service: S,
    limits: Limits,
    conns: Arc<ConnSet<Arc<QConn>>>,
    mut stop: watch::Receiver<bool>,
) where
    S: Service<ServerCall, Response = ()> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let Ok(q) = establish(conn, &limits).await else {
        return;
    };
    let key = conns.insert(q.clone());
    let mut last = 0u64;
    let mut draining = false;
    // Watched across iterations: the loop runs once per call.
    let mut stopping = std::pin::pin!(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    // Draining with no call left: the client closes once it has read the
    // last answers; past this grace the server closes (CONNECTION_CLOSE
    // drops stream data not yet acknowledged, so it does not go first).
    let mut grace = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
    let mut waiting_close = false;
    loop {
        // Created before the check: it sees every `notify_waiters` after.
        let idle = q.idle.notified();
        if draining && !waiting_close && q.open_calls() == 0 {
            waiting_close = true;
            grace
                .as_mut()
                .reset(tokio::time::Instant::now() + DRAINED_CLOSE_GRACE);
        }
        tokio::select! {
            biased;
            _ = &mut stopping, if !draining => {
                draining = true;
                q.goaway(last, "server shutting down").await;
            }
            _ = &mut grace, if waiting_close => {
                q.fail(Reason::NO_ERROR, "drained");
                break;
            }
            _ = idle, if draining && !waiting_close => {}
            stream = q.connection.accept_bi() => {
                let Ok((send, recv)) = stream else { break };
                if draining {
                    tokio::spawn(refuse_call(send));
                } else {
                    last = last.max(send.id().index());
                    tokio::spawn(run_stream(q.clone(), service.clone(), send, recv));
                }
            }
        }
    }
    conns.remove(key);
}

/// Answers a call that arrived after GOAWAY.
async fn refuse_call(mut send: SendStream) {
    let head = close_head(Code::UNAVAILABLE, "server shutting down");
    let mut chunks = frames(|out| out.close(0, &head, None, None));
    if send.write_all_chunks(&mut chunks).await.is_ok() {
        let _ = send.finish();
    }
}

/// Server: reads a call's OPEN and runs it.
///
/// This future is the task of every call: what only the start of a call
/// needs stays out of it (in [`accept_call`] and [`QCall::accepted`]), so
/// the task stays small.
async fn run_stream<S>(q: Arc<QConn>, service: S, send: SendStream, recv: RecvStream)
where
    S: Service<ServerCall, Response = ()> + Send,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    let Some((call, head, deadline)) = accept_call(&q, send, recv).await else {
        return;
    };
    serve_call(service, Link::Quic(call), head, deadline).await;
}

/// Server: the call a new stream opens, once its OPEN is there.
async fn accept_call(
    q: &Arc<QConn>,
    send: SendStream,
    recv: RecvStream,
) -> Option<(Arc<QCall>, OpenHead, Option<Instant>)> {
    let slot = q.take_slot(None).ok()?;
    let mut reader = FrameReader::new(recv);
    // The OPEN usually came with the stream: a timer only if it did not.
    let polled = reader.poll_frame(
        &mut Context::from_waker(Waker::noop()),
        Framing::QuicCall,
        &q.local,
    );
    let first = match polled {
        Poll::Ready(first) => first,
        Poll::Pending => match wait_open(q, &mut reader).await {
            Some(first) => first,
            None => {
                let mut send = send;
                let _ = send.reset(code_var(Code::CANCELLED));
                return None;
            }
        },
    };
    QCall::accepted(q, slot, first, reader, send)
}

/// Server: waits for the OPEN of a call whose stream came without it;
/// `None` when the handshake timeout passed first.
async fn wait_open(q: &QConn, reader: &mut FrameReader) -> Option<Result<Option<Frame>, Fail>> {
    let open = poll_fn(|cx| reader.poll_frame(cx, Framing::QuicCall, &q.local));
    tokio::time::timeout(q.open_timeout, open).await.ok()
}

impl QCall {
    /// Server: the call a stream's first frame opens, with its head and
    /// deadline; `None` (the connection closed if the peer broke the
    /// protocol) when there is nothing to serve.
    fn accepted(
        q: &Arc<QConn>,
        slot: CallSlot,
        first: Result<Option<Frame>, Fail>,
        mut reader: FrameReader,
        send: SendStream,
    ) -> Option<(Arc<QCall>, OpenHead, Option<Instant>)> {
        let (head, message, end) = match first {
            Ok(Some(Frame::Open {
                head, message, end, ..
            })) => (head, message, end),
            Ok(Some(_)) => {
                q.fail(Reason::PROTOCOL_ERROR, "a call stream must start with OPEN");
                return None;
            }
            Err(Fail::Protocol(reason, why)) => {
                q.fail(reason, &why);
                return None;
            }
            // Lost with the connection: nothing to answer.
            Err(Fail::Lost(_)) => return None,
            // Ended or reset before its OPEN: nothing to answer, but it
            // counts toward the reset rate.
            Ok(None) | Err(Fail::Reset(_)) => {
                q.count_reset();
                return None;
            }
        };
        if end {
            // The request is all there; take its FIN too if it came along.
            reader.poll_fin(&mut Context::from_waker(Waker::noop()));
        }
        let mut queue = Ahead::default();
        if let Some(m) = message {
            queue.push_back(Item::Message(m));
        }
        if end {
            queue.push_back(Item::End);
        }
        let deadline = head.timeout.and_then(|t| Instant::now().checked_add(t));
        let call = QCall {
            conn: q.clone(),
            index: send.id().index(),
            client: false,
            watch: Some(Mutex::new(Watch {
                stopped: None,
                deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d.into()))),
                cancelled: None,
                expired: false,
            })),
            recv: Mutex::new(Receiver {
                waiting: None,
                reader,
                queue,
                ended: end,
                failure: None,
                deadline: None,
            }),
            send: Mutex::new(Sender::new(send)),
            _slot: slot,
        };
        Some((Arc::new(call), head, deadline))
    }
}
