//! One connection at run time: the protocol state machine behind a mutex,
//! per-call slots that route its events, and the driver task that moves
//! bytes between it and the transport.
//!
//! Locking: `Shared::inner` is a `std::sync::Mutex` held only for short,
//! non-blocking sections (never across an `.await`). Callers change the
//! state machine under the lock and wake the driver, which writes; on a
//! plain TCP or Unix socket (split into halves) a call alone on its
//! connection writes its frames itself, under the lock, when the driver is
//! idle with nothing queued (`Inner::flush`), which keeps every write in
//! the order the state machine produced it.
//!
//! The driver works in rounds: read outside the lock until the socket is
//! drained, then one lock for input, timers and output, then write outside
//! it. The read buffer is sized for the largest frames the connection
//! carries lately, so those arrive whole and are never gathered by copy.

use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::tcp;
#[cfg(unix)]
use tokio::net::unix;
use zap_transport::{ConnGuard, PeerInfo, Stream};

use crate::ids::IdMap;
use crate::metadata::Metadata;
use crate::proto::{CloseHead, ConnError, Connection, Event, OpenHead, Reason};
use crate::status::{Code, Status};

/// Output beyond what the output caps allow before reading pauses (see
/// `Io::read_pause`).
const PAUSE_MARGIN: usize = 1 << 20;
/// Cap on the peer-announced message size used for the pause.
const MAX_MESSAGE_OUT: usize = 16 << 20;
/// How long a closed connection may take to write its last bytes.
const CLOSE_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);
/// Read buffer growth step.
const READ_CHUNK: usize = 64 << 10;
/// Cap on the room a read makes for the frames it expects (see
/// `Io::frame_hint`).
const MAX_FRAME_HINT: usize = 4 << 20;
/// Polls that write at once after a yield that gained nothing.
const DEFER_BACKOFF: u32 = 16;
/// Output small enough for the driver to write under the connection lock.
const LOCKED_WRITE_MAX: usize = 16 << 10;
/// Chunks handed to one vectored write.
const MAX_IOVECS: usize = 64;

/// What a call's slot can hold, in arrival order.
#[derive(Debug)]
pub(crate) enum Item {
    Headers(Metadata),
    Message(Bytes),
    End,
    Close {
        head: CloseHead,
        headers: Option<Metadata>,
        message: Option<Bytes>,
    },
}

impl Item {
    /// The item with its message copied out of the read buffer. A message
    /// is a slice of the buffer it arrived in and keeps all of it alive:
    /// only the first item of a call stays zero-copy, so a reader that lets
    /// messages queue up pins at most one buffer per call, and the queue
    /// itself holds no more than the flow-control window allows.
    fn detached(self) -> Item {
        match self {
            Item::Message(m) => Item::Message(Bytes::copy_from_slice(&m)),
            Item::Close {
                head,
                headers,
                message,
            } => Item::Close {
                head,
                headers,
                message: message.map(|m| Bytes::copy_from_slice(&m)),
            },
            other => other,
        }
    }

    /// The length of the message this item carries (a `CLOSE` may carry
    /// one): its window credit is returned when the item is taken (§7).
    fn message_len(&self) -> Option<usize> {
        match self {
            Item::Message(m) => Some(m.len()),
            Item::Close {
                message: Some(m), ..
            } => Some(m.len()),
            _ => None,
        }
    }
}

/// Items in arrival order. The first waits inline and the end of the
/// incoming messages is a flag, so a unary call (one item, or a message and
/// its end) never allocates a queue.
#[derive(Debug, Default)]
pub(crate) struct Items {
    first: Option<Item>,
    rest: VecDeque<Item>,
    ended: bool,
}

impl Items {
    fn push(&mut self, item: Item) {
        match item {
            Item::End => self.ended = true,
            item if self.first.is_none() && self.rest.is_empty() => self.first = Some(item),
            item => self.rest.push_back(item.detached()),
        }
    }

    fn pop(&mut self) -> Option<Item> {
        if let Some(i) = self.first.take() {
            return Some(i);
        }
        if let Some(i) = self.rest.pop_front() {
            return Some(i);
        }
        std::mem::take(&mut self.ended).then_some(Item::End)
    }

    fn drain(self) -> impl Iterator<Item = Item> {
        self.first.into_iter().chain(self.rest)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub(crate) items: Items,
    recv_waker: Option<Waker>,
    send_waker: Option<Waker>,
    /// Server: the call was cancelled (by the client, its deadline, or the
    /// connection ending).
    pub(crate) cancelled: Option<Code>,
    /// The one waiter for cancellation (the call's runner, which registers
    /// again on every poll, so the latest poll's waker is the right one).
    cancel_waker: Option<Waker>,
}

impl Slot {
    /// The slot of a call whose reader waits with `waker`.
    pub(crate) fn waiting(waker: Waker) -> Slot {
        Slot {
            recv_waker: Some(waker),
            ..Slot::default()
        }
    }

    fn wake_all(&mut self) {
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
        if let Some(w) = self.send_waker.take() {
            w.wake();
        }
        if let Some(w) = self.cancel_waker.take() {
            w.wake();
        }
    }
}

/// A call the server must start.
pub(crate) struct NewCall {
    pub(crate) id: u32,
    pub(crate) head: OpenHead,
    /// The request, when it came whole with the OPEN (one message and the
    /// end) to a method the server takes such requests for directly
    /// (`Spawner::takes_whole`). The call then has no slot yet: the
    /// starter answers it at once, or makes it one. Its window credit is
    /// still to be returned (`Connection::consumed`).
    pub(crate) request: Option<Bytes>,
}

pub(crate) struct Inner {
    pub(crate) conn: Connection,
    pub(crate) calls: IdMap<Slot>,
    driver: Option<Waker>,
    /// The driver is running and will look for output before it sleeps,
    /// so producers need not wake it (a self-wake would reschedule it
    /// through the run queue and rouse an idle worker).
    driver_active: bool,
    /// The socket's writing half when callers may write themselves (plain
    /// TCP and Unix sockets; see `flush`).
    direct: Option<Arc<WriterCell>>,
    /// The driver has nothing queued or unflushed, so a caller's write
    /// would not overtake it.
    out_idle: bool,
    /// What a caller's write left unwritten (a full socket): the driver
    /// writes it before anything else.
    spill: Vec<Bytes>,
    /// When the driver's timer fires (`None`: not armed). A caller that
    /// writes itself wakes the driver if the state machine now needs an
    /// earlier timer (a new call's deadline, the idle timer).
    timer_at: Option<Instant>,
    pub(crate) error: Option<ConnError>,
    /// Close the connection once no call is left (its client went away, or
    /// its server is shutting down), saying this.
    close_when_idle: Option<&'static str>,
    open_waiters: Vec<Waker>,
    pub(crate) new_calls: Vec<NewCall>,
    /// Server: the methods whose whole requests go to their starter
    /// directly (see `NewCall::request`).
    takes_whole: Option<TakesWhole>,
}

/// The state shared by a connection's driver and its calls.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    pub(crate) peer: Arc<PeerInfo>,
    /// A server's accounting, noted by the driver.
    stats: Option<super::ServerStats>,
}

impl Shared {
    /// A connection's state; a server's reports to its `stats`.
    pub(crate) fn new(
        conn: Connection,
        peer: PeerInfo,
        stats: Option<super::ServerStats>,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            inner: Mutex::new(Inner {
                conn,
                calls: IdMap::default(),
                driver: None,
                driver_active: false,
                direct: None,
                out_idle: true,
                spill: Vec::new(),
                timer_at: None,
                error: None,
                close_when_idle: None,
                open_waiters: Vec::new(),
                new_calls: Vec::new(),
                takes_whole: None,
            }),
            peer: Arc::new(peer),
            stats,
        })
    }

    /// Locks the state. A poisoned lock (a panic while holding it, which
    /// the code under it does not do) is taken over rather than propagated.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The reading side of a connection's socket. Plain sockets are split so
/// that the writing half can be shared with callers (`Inner::flush`); TLS
/// streams stay whole, with the driver.
enum Reader {
    Whole(Stream),
    Tcp(tcp::OwnedReadHalf),
    #[cfg(unix)]
    Unix(unix::OwnedReadHalf),
}

/// The writing half of a plain socket.
pub(crate) enum Writer {
    Tcp(tcp::OwnedWriteHalf),
    #[cfg(unix)]
    Unix(unix::OwnedWriteHalf),
}

/// A plain socket's writing half, shared by the driver and (under the
/// connection lock) callers. `None` once the driver is gone, which closes
/// the socket.
pub(crate) struct WriterCell(Mutex<Option<Writer>>);

impl WriterCell {
    fn lock(&self) -> MutexGuard<'_, Option<Writer>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `chunks` without waiting, removing what was written: `true`
    /// if that was all, and the bytes written. A full socket, or an error
    /// (which the driver's next write then meets), leaves the rest.
    fn write_now(&self, chunks: &mut Vec<Bytes>) -> (bool, usize) {
        let guard = self.lock();
        let Some(w) = guard.as_ref() else {
            return (false, 0);
        };
        let mut total = 0;
        let mut i = 0;
        while i < chunks.len() {
            let res = if i + 1 == chunks.len() {
                w.try_write(&chunks[i])
            } else {
                let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
                let n_iov = iovecs(&mut iov, chunks[i..].iter());
                w.try_write_vectored(&iov[..n_iov])
            };
            match res {
                Ok(n) if n > 0 => {
                    total += n;
                    i += written(chunks[i..].iter_mut(), n);
                }
                _ => break,
            }
        }
        drop(guard);
        chunks.drain(..i);
        (chunks.is_empty(), total)
    }
}

impl Writer {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Writer::Tcp(w) => w.try_write(buf),
            #[cfg(unix)]
            Writer::Unix(w) => w.try_write(buf),
        }
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        match self {
            Writer::Tcp(w) => w.try_write_vectored(bufs),
            #[cfg(unix)]
            Writer::Unix(w) => w.try_write_vectored(bufs),
        }
    }

    fn io(&mut self) -> Pin<&mut (dyn AsyncWrite + Send + Unpin)> {
        match self {
            Writer::Tcp(w) => Pin::new(w),
            #[cfg(unix)]
            Writer::Unix(w) => Pin::new(w),
        }
    }
}

/// Points `iov` at the first chunks (as many as fit); how many it took.
fn iovecs<'a>(
    iov: &mut [IoSlice<'a>; MAX_IOVECS],
    chunks: impl Iterator<Item = &'a Bytes>,
) -> usize {
    let mut n = 0;
    for (slot, chunk) in iov.iter_mut().zip(chunks) {
        *slot = IoSlice::new(chunk);
        n += 1;
    }
    n
}

/// Marks `n` written bytes off the front of `chunks`: how many chunks are
/// done (the next one is advanced past its written part).
fn written<'a>(chunks: impl Iterator<Item = &'a mut Bytes>, mut n: usize) -> usize {
    let mut done = 0;
    for chunk in chunks {
        if n == 0 {
            break;
        }
        if n >= chunk.len() {
            n -= chunk.len();
            done += 1;
        } else {
            chunk.advance(n);
            break;
        }
    }
    done
}

/// Splits a plain socket.
fn split(stream: Stream) -> (Reader, Option<Writer>) {
    match stream {
        Stream::Tcp(s) => {
            let (r, w) = s.into_split();
            (Reader::Tcp(r), Some(Writer::Tcp(w)))
        }
        #[cfg(unix)]
        Stream::Unix(s) => {
            let (r, w) = s.into_split();
            (Reader::Unix(r), Some(Writer::Unix(w)))
        }
        other => (Reader::Whole(other), None),
    }
}

impl Reader {
    fn io(&mut self) -> Pin<&mut (dyn AsyncRead + Send + Unpin)> {
        match self {
            Reader::Whole(s) => Pin::new(s),
            Reader::Tcp(r) => Pin::new(r),
            #[cfg(unix)]
            Reader::Unix(r) => Pin::new(r),
        }
    }
}

impl Inner {
    /// Gets pending output written if the driver is not running (a
    /// running driver looks for output before it sleeps). With no other
    /// call in flight and nothing queued in the driver, the caller writes
    /// it on plain sockets (`write_direct`); otherwise the driver is woken.
    pub(crate) fn flush(&mut self) {
        if self.conn.pending_output() == 0 || self.driver_active {
            return;
        }
        if self.out_idle && self.calls.len() <= 1 && self.write_direct() && !self.needs_timer() {
            return;
        }
        if let Some(w) = &self.driver {
            w.wake_by_ref();
        }
    }

    /// The state machine wants a timer earlier than the driver's (which
    /// only the driver can arm).
    fn needs_timer(&self) -> bool {
        self.conn
            .poll_timeout()
            .is_some_and(|t| self.timer_at.is_none_or(|armed| t < armed))
    }

    /// Writes the pending output from the caller's thread, under the lock
    /// (which keeps it in order with the driver's writes): the usual lone
    /// call then costs no task switch to the driver and back. `false` if
    /// the driver has to write it (no plain socket, or it is full).
    fn write_direct(&mut self) -> bool {
        let Some(cell) = &self.direct else {
            return false;
        };
        let mut chunks = std::mem::take(&mut self.spill);
        self.conn.poll_transmit(&mut chunks);
        // A full socket (or an error, which the driver then meets): the
        // rest goes first in the driver's next write.
        let (all, n) = cell.write_now(&mut chunks);
        self.spill = chunks;
        if self.conn.wrote(n) {
            // Calls that waited for output room (PROTOCOL.md §9) may go on.
            self.dispatch();
        }
        if !all {
            self.out_idle = false;
        }
        all
    }

    /// No new calls will be made on this connection (its client is done,
    /// or its server shuts down): announce it to the peer with `why` and
    /// close once the calls in flight are done. A server's GOAWAY also
    /// refuses the calls the client opens from now on (§10).
    pub(crate) fn retire(&mut self, why: &'static str) {
        if self.close_when_idle.is_some() || self.conn.is_closed() {
            return;
        }
        self.close_when_idle = Some(why);
        self.conn.goaway(why);
        self.wake_driver();
    }

    /// Wakes the driver unconditionally (state it must act on changed).
    pub(crate) fn wake_driver(&mut self) {
        if let Some(w) = &self.driver {
            w.wake_by_ref();
        }
    }

    /// Routes every pending protocol event to its call.
    pub(crate) fn dispatch(&mut self) {
        while let Some(ev) = self.conn.poll_event() {
            match ev {
                Event::Open {
                    id,
                    head,
                    message,
                    end,
                } => {
                    let whole = end
                        && message.is_some()
                        && self.takes_whole.as_mut().is_some_and(|f| f(&head.method));
                    let request = if whole {
                        message
                    } else {
                        let mut slot = Slot::default();
                        if let Some(m) = message {
                            slot.items.push(Item::Message(m));
                        }
                        if end {
                            slot.items.push(Item::End);
                        }
                        self.calls.insert(id, slot);
                        None
                    };
                    self.new_calls.push(NewCall { id, head, request });
                }
                Event::Message { id, message, end } => {
                    if let Some(s) = self.calls.get_mut(&id) {
                        s.items.push(Item::Message(message));
                        if end {
                            s.items.push(Item::End);
                        }
                        s.wake_all();
                    } else {
                        self.conn.consumed(id, message.len());
                    }
                }
                Event::End { id } => self.push(id, Item::End),
                Event::Headers { id, metadata } => self.push(id, Item::Headers(metadata)),
                Event::Close {
                    id,
                    head,
                    headers,
                    message,
                } => self.push(
                    id,
                    Item::Close {
                        head,
                        headers,
                        message,
                    },
                ),
                Event::Cancel { id, code } => {
                    if let Some(s) = self.calls.get_mut(&id) {
                        s.cancelled = Some(code);
                        s.wake_all();
                    }
                }
                Event::Writable { id: 0 } => {
                    for w in self.open_waiters.drain(..) {
                        w.wake();
                    }
                    for s in self.calls.values_mut() {
                        if let Some(w) = s.send_waker.take() {
                            w.wake();
                        }
                    }
                }
                Event::Writable { id } => {
                    if let Some(w) = self.calls.get_mut(&id).and_then(|s| s.send_waker.take()) {
                        w.wake();
                    }
                }
                Event::GoAway { .. } => {
                    // Calls waiting to open must learn they cannot.
                    for w in self.open_waiters.drain(..) {
                        w.wake();
                    }
                }
                Event::Closed(err) => {
                    self.error = Some(err);
                    for s in self.calls.values_mut() {
                        s.wake_all();
                    }
                    for w in self.open_waiters.drain(..) {
                        w.wake();
                    }
                }
            }
        }
    }

    /// Client: cancels call `id` on the wire and ends it locally with
    /// `status`, which its response reader then reports.
    pub(crate) fn fail_call(&mut self, id: u32, status: &crate::status::Status) {
        if !self.calls.contains_key(&id) {
            return;
        }
        self.conn.cancel(id, Code::CANCELLED);
        self.flush();
        let head = crate::proto::CloseHead {
            code: status.code(),
            message: Bytes::copy_from_slice(status.message().as_bytes()),
            details: status.details().clone(),
            trailers: crate::metadata::Metadata::new(),
        };
        self.push(
            id,
            Item::Close {
                head,
                headers: None,
                message: None,
            },
        );
    }

    fn push(&mut self, id: u32, item: Item) {
        if let Some(s) = self.calls.get_mut(&id) {
            s.items.push(item);
            s.wake_all();
        }
    }

    /// The status for a call that cannot proceed because the connection is
    /// gone.
    pub(crate) fn conn_status(&self) -> Status {
        match &self.error {
            Some(e) => Status::unavailable(e.to_string()),
            None => Status::unavailable("connection closed"),
        }
    }

    /// Registers to be woken when the connection window reopens.
    pub(crate) fn wait_open(&mut self, w: &Waker) {
        if !self.open_waiters.iter().any(|o| o.will_wake(w)) {
            self.open_waiters.push(w.clone());
        }
    }

    /// Polls the next item of call `id`, returning its window credit.
    pub(crate) fn poll_item(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let Some(slot) = self.calls.get_mut(&id) else {
            return Poll::Ready(None);
        };
        match slot.items.pop() {
            Some(item) => {
                let last = matches!(item, Item::Close { .. });
                if let Some(len) = item.message_len() {
                    self.conn.consumed(id, len);
                    self.flush();
                }
                if last {
                    // CLOSE ends a client call: nothing follows it.
                    self.calls.remove(&id);
                    self.check_idle();
                }
                Poll::Ready(Some(item))
            }
            None if slot.cancelled.is_some() || self.error.is_some() => Poll::Ready(None),
            None => {
                slot.recv_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Server: takes the request of a unary call if it is all there (one
    /// message, then the end), under this one lock. `None` leaves the slot
    /// untouched for the general path.
    pub(crate) fn take_single(&mut self, id: u32) -> Option<Bytes> {
        let slot = self.calls.get_mut(&id)?;
        let items = &mut slot.items;
        if !items.ended || !items.rest.is_empty() || slot.cancelled.is_some() {
            return None;
        }
        let Some(Item::Message(_)) = &items.first else {
            return None;
        };
        let Some(Item::Message(m)) = items.first.take() else {
            return None;
        };
        items.ended = false;
        let len = m.len();
        self.conn.consumed(id, len);
        self.flush();
        Some(m)
    }

    /// Server: gives call `id`, started from a whole request
    /// (`NewCall::request`), the slot it needs to wait in (for its handler,
    /// or for the window to send its answer). `false` if the call is over
    /// already (cancelled, or its connection closed).
    pub(crate) fn adopt(&mut self, id: u32) -> bool {
        if self.error.is_some() || !self.conn.is_open(id) {
            return false;
        }
        self.calls.insert(id, Slot::default());
        true
    }

    /// Registers the sender of call `id` to be woken when it may send.
    pub(crate) fn wait_send(&mut self, id: u32, cx: &mut Context<'_>) {
        if let Some(s) = self.calls.get_mut(&id) {
            s.send_waker = Some(cx.waker().clone());
        }
    }

    /// Polls for the cancellation of server call `id`.
    pub(crate) fn poll_cancelled(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<Code> {
        match self.calls.get_mut(&id) {
            None => Poll::Ready(Code::CANCELLED),
            Some(s) => match s.cancelled {
                Some(c) => Poll::Ready(c),
                None => {
                    if !s
                        .cancel_waker
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        s.cancel_waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
            },
        }
    }

    /// Forgets call `id`, returning the window credit of what it left
    /// unread.
    pub(crate) fn remove_call(&mut self, id: u32) {
        if let Some(s) = self.calls.remove(&id) {
            for item in s.items.drain() {
                if let Some(len) = item.message_len() {
                    self.conn.consumed(id, len);
                }
            }
            self.flush();
            self.check_idle();
        }
    }

    /// A retired connection whose last call just ended must close: the
    /// driver decides that, so it is woken.
    fn check_idle(&mut self) {
        if self.close_when_idle.is_some() && self.calls.is_empty() {
            self.wake_driver();
        }
    }
}

/// Which methods take a request that came whole with its OPEN directly.
pub(crate) type TakesWhole = Box<dyn FnMut(&[u8]) -> bool + Send>;

/// Starts one call; runs on the driver, outside the lock. A call answered
/// at once may leave its answer in the `Vec` instead of closing it itself.
pub(crate) type StartCall =
    Box<dyn FnMut(&Arc<Shared>, NewCall, &mut Context<'_>, &mut Vec<Answer>) + Send>;

/// Sends the answers the last calls started left (under the driver's lock,
/// which it takes anyway for their output), and empties the `Vec`.
pub(crate) type FinishCalls = fn(&Arc<Shared>, &mut Inner, &mut Vec<Answer>);

/// A server call answered in its first step: the `CLOSE` the driver sends
/// for it under its next lock (`Spawner::finish`), which saves the call a
/// lock of its own.
pub(crate) struct Answer {
    pub(crate) id: u32,
    /// The length of the request, whose window credit goes back with it.
    pub(crate) request_len: usize,
    pub(crate) head: CloseHead,
    pub(crate) headers: Option<Metadata>,
    pub(crate) message: Option<Bytes>,
}

/// How a server connection starts its calls: one per connection, given by
/// the server.
pub(crate) struct Spawner {
    /// The methods whose whole requests skip the slot (`NewCall::request`).
    pub(crate) takes_whole: TakesWhole,
    pub(crate) start: StartCall,
    pub(crate) finish: FinishCalls,
}

/// Drives one connection: reads, dispatches, writes, runs timers. Ends
/// when the connection is closed and its last bytes are written.
pub(crate) struct Driver {
    shared: Arc<Shared>,
    io: Io,
}

/// What one read gave.
enum Input {
    Nothing,
    Bytes,
    Eof(String),
}

/// What a round's reads gave.
#[derive(Default)]
struct Read {
    /// New bytes in the buffer.
    bytes: bool,
    /// The socket may hold more (so another round must read it).
    more: bool,
    /// The stream ended, after `bytes`.
    eof: Option<String>,
}

/// The driver's own state (apart from `shared`, so both can be borrowed at
/// once).
struct Io {
    reader: Reader,
    /// The writing half of a split socket (else `reader` is the whole
    /// stream and writes go there).
    writer: Option<Arc<WriterCell>>,
    rbuf: BytesMut,
    /// About the largest frame seen lately (decaying): each read makes
    /// room for one, so frames of that size arrive whole in one buffer
    /// instead of being gathered by copying the part read first.
    frame_hint: usize,
    /// Size of the read buffer's allocation.
    rbuf_alloc: usize,
    wqueue: VecDeque<Bytes>,
    wbytes: usize,
    /// Bytes written since the state machine was last told (`wrote`).
    written: usize,
    chunks: Vec<Bytes>,
    timer: Pin<Box<tokio::time::Sleep>>,
    timer_at: Option<Instant>,
    /// The timer was polled since it was last reset: it holds our waker
    /// and needs no poll until it has elapsed.
    timer_polled: bool,
    read_done: bool,
    needs_flush: bool,
    spawner: Option<(StartCall, FinishCalls)>,
    spawn: Vec<NewCall>,
    answers: Vec<Answer>,
    /// Reading pauses while this much output waits for the socket. Message
    /// output is bounded by the output cap plus one message (PROTOCOL.md
    /// §9), so only output a peer can force without flow control (PING
    /// answers, refusals) can reach this: a peer that does not read gets no
    /// more of our attention. Set above the message bound, it never stops
    /// legitimate traffic (pausing at a fixed 8 MiB deadlocked two peers
    /// sending each other large messages).
    read_pause: usize,
    /// Bounds the final flush of a closed connection.
    close_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The last poll yielded to let callers add output to this much
    /// (see `poll`).
    deferred: Option<usize>,
    /// Polls with output left before yielding is tried again.
    defer_skip: u32,
    /// Yield to batch output (single-worker runtimes).
    batch: bool,
    _guard: Option<ConnGuard>,
}

impl Driver {
    pub(crate) fn new(
        shared: Arc<Shared>,
        stream: Stream,
        spawner: Option<Spawner>,
        guard: Option<ConnGuard>,
    ) -> Driver {
        let (reader, writer) = split(stream);
        let writer = writer.map(|w| Arc::new(WriterCell(Mutex::new(Some(w)))));
        let (takes_whole, spawner) = match spawner {
            Some(s) => (Some(s.takes_whole), Some((s.start, s.finish))),
            None => (None, None),
        };
        {
            let mut inner = shared.lock();
            inner.direct = writer.clone();
            inner.takes_whole = takes_whole;
        }
        Driver {
            shared,
            io: Io {
                reader,
                writer,
                rbuf: BytesMut::with_capacity(READ_CHUNK),
                frame_hint: 0,
                rbuf_alloc: READ_CHUNK,
                wqueue: VecDeque::new(),
                wbytes: 0,
                written: 0,
                chunks: Vec::new(),
                timer: Box::pin(tokio::time::sleep(std::time::Duration::from_secs(3600))),
                timer_at: None,
                timer_polled: false,
                read_done: false,
                needs_flush: false,
                spawner,
                spawn: Vec::new(),
                answers: Vec::new(),
                read_pause: usize::MAX,
                close_timer: None,
                deferred: None,
                defer_skip: 0,
                batch: tokio::runtime::Handle::try_current()
                    .is_ok_and(|h| h.metrics().num_workers() == 1),
                _guard: guard,
            },
        }
    }

    /// Starts with `bytes` already read from the stream (the byte a server
    /// sniffed to tell ZAP from HTTP/2).
    #[cfg(feature = "grpc")]
    pub(crate) fn read_ahead(mut self, bytes: &[u8]) -> Self {
        self.io.rbuf.extend_from_slice(bytes);
        self
    }
}

impl Io {
    /// Reads what is available, outside the lock. A read that got bytes
    /// is followed by one more, which usually finds the socket drained
    /// (without a system call: tokio knows a short read drained it) and
    /// leaves our waker with it, so the round needs no second pass.
    fn read(&mut self, cx: &mut Context<'_>) -> Read {
        let mut read = Read::default();
        match self.read_once(cx, true) {
            Input::Nothing => {}
            Input::Eof(why) => read.eof = Some(why),
            // What was read is not parsed yet: the second read only fills
            // the room left (making room could copy it), and a full buffer
            // waits for the next round.
            Input::Bytes if self.rbuf.capacity() == self.rbuf.len() => {
                read.bytes = true;
                read.more = true;
            }
            Input::Bytes => {
                read.bytes = true;
                match self.read_once(cx, false) {
                    Input::Nothing => {}
                    Input::Eof(why) => read.eof = Some(why),
                    Input::Bytes => read.more = true,
                }
            }
        }
        read
    }

    /// Room for the next read: a full chunk, or a whole frame of the size
    /// this connection carries (`frame_hint`), so that such a frame
    /// arrives in one buffer. The old buffer is reused when every frame
    /// taken from it is gone; else a new one takes only the partial frame
    /// along (growing the old one would copy all it ever held: `bytes`
    /// reallocates the consumed part too). A large frame already arriving
    /// into the room the proto core made for it is left alone.
    fn make_room(&mut self) {
        let len = self.rbuf.len();
        let room = self.rbuf.capacity() - len;
        let want = READ_CHUNK.max(self.frame_hint);
        let short = room < 4096 || (len == 0 && room < self.frame_hint);
        if !short || (len >= READ_CHUNK / 2 && room > 0) {
            return;
        }
        if self.rbuf.try_reclaim(want) {
            // The whole allocation, from its start.
            self.rbuf_alloc = self.rbuf.capacity();
            return;
        }
        let mut fresh = BytesMut::with_capacity(want.max(len + 4096));
        fresh.extend_from_slice(&self.rbuf);
        self.rbuf_alloc = fresh.capacity();
        self.rbuf = fresh;
    }

    /// Below what size a frame is copied out of the read buffer rather
    /// than kept as a slice of it: a buffer grown for large frames is not
    /// pinned by a small message (each pinned buffer is at most four times
    /// the frame holding it, or one ordinary read chunk).
    fn copy_below(&self) -> usize {
        if self.rbuf_alloc > READ_CHUNK {
            self.rbuf_alloc / 4
        } else {
            0
        }
    }

    /// One read; `grow`: make room first (else read into what is left).
    fn read_once(&mut self, cx: &mut Context<'_>, grow: bool) -> Input {
        if self.read_done || self.wbytes >= self.read_pause {
            return Input::Nothing;
        }
        if grow {
            self.make_room();
        }
        match tokio_util::io::poll_read_buf(self.reader.io(), cx, &mut self.rbuf) {
            Poll::Pending => Input::Nothing,
            Poll::Ready(Ok(n)) if n > 0 => Input::Bytes,
            Poll::Ready(res) => {
                self.read_done = true;
                Input::Eof(match res {
                    Ok(_) => "connection closed by the peer".to_owned(),
                    Err(e) => format!("read failed: {e}"),
                })
            }
        }
    }

    /// Hands what was read to the state machine (under the lock).
    fn process(&mut self, inner: &mut Inner, read: Read, spawn: &mut Vec<NewCall>) {
        if read.bytes {
            inner.conn.set_copy_below(self.copy_below());
            inner.conn.handle_input(&mut self.rbuf, Instant::now());
            // The state machine gives a large frame a buffer of its own.
            self.rbuf_alloc = self.rbuf_alloc.max(self.rbuf.capacity());
            let seen = inner.conn.take_largest_frame().min(MAX_FRAME_HINT);
            self.frame_hint = seen.max(self.frame_hint - self.frame_hint / 8);
        }
        if let Some(why) = read.eof {
            inner.conn.handle_eof(&why);
        }
        if read.bytes || inner.conn.is_closed() {
            inner.dispatch();
            spawn.append(&mut inner.new_calls);
        }
    }

    /// Runs due timers (under the lock); `true` if one fired.
    fn poll_timer(
        &mut self,
        inner: &mut Inner,
        cx: &mut Context<'_>,
        spawn: &mut Vec<NewCall>,
    ) -> bool {
        // Re-arm only to fire earlier: deadlines that move later (keepalive
        // after every frame) let the timer fire early and re-arm then, which
        // keeps timer-wheel updates off the per-frame path.
        if let Some(t) = inner.conn.poll_timeout()
            && self.timer_at.is_none_or(|cur| t < cur)
        {
            self.timer_at = Some(t);
            inner.timer_at = Some(t);
            self.timer.as_mut().reset(tokio::time::Instant::from_std(t));
            self.timer_polled = false;
        }
        // A timer that holds our waker is polled only once it has elapsed
        // (the driver's waker does not change: it is the task's).
        if self.timer_at.is_none() || (self.timer_polled && !self.timer.is_elapsed()) {
            return false;
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            inner.conn.handle_timeout(Instant::now());
            inner.dispatch();
            spawn.append(&mut inner.new_calls);
            self.timer_at = None;
            inner.timer_at = None;
            self.timer_polled = false;
            return true;
        }
        self.timer_polled = true;
        false
    }

    /// Writes what is queued: `Ok(false)` if the socket is full (and has
    /// our waker), `Err` if the transport failed.
    fn write(&mut self, cx: &mut Context<'_>) -> Result<bool, std::io::Error> {
        for c in self.chunks.drain(..) {
            self.wbytes += c.len();
            self.wqueue.push_back(c);
        }
        let mut split = self.writer.as_ref().map(|w| w.lock());
        let mut sink = match split.as_mut() {
            None => match &mut self.reader {
                Reader::Whole(s) => Pin::new(s as &mut (dyn AsyncWrite + Send + Unpin)),
                _ => return Err(std::io::ErrorKind::BrokenPipe.into()),
            },
            Some(w) => match w.as_mut() {
                Some(w) => w.io(),
                None => return Err(std::io::ErrorKind::BrokenPipe.into()),
            },
        };
        while !self.wqueue.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
            let n_iov = iovecs(&mut iov, self.wqueue.iter());
            // One chunk (a small call's frames): `send`, not `writev`,
            // whose path through the VFS costs more per call.
            let res = if n_iov == 1 {
                sink.as_mut().poll_write(cx, &iov[0])
            } else {
                sink.as_mut().poll_write_vectored(cx, &iov[..n_iov])
            };
            match res {
                Poll::Ready(Ok(0)) => {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                Poll::Ready(Ok(n)) => {
                    self.needs_flush = true;
                    self.wbytes -= n;
                    self.written += n;
                    let done = written(self.wqueue.iter_mut(), n);
                    self.wqueue.drain(..done);
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(false),
            }
        }
        if self.needs_flush {
            match sink.as_mut().poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Writes `chunks` now, if they are small and the socket is a split
    /// plain one that takes them all: `true` if nothing is left. Called
    /// under the connection lock (see `Driver::poll`); what is not written
    /// stays in `chunks` for `write`.
    fn write_locked(&mut self, inner: &mut Inner) -> bool {
        match &self.writer {
            Some(cell) if self.chunks.iter().map(Bytes::len).sum::<usize>() <= LOCKED_WRITE_MAX => {
                let (all, n) = cell.write_now(&mut self.chunks);
                if inner.conn.wrote(n) {
                    inner.dispatch();
                }
                all
            }
            _ => false,
        }
    }

    /// Ends the stream: TLS `close_notify` or a FIN.
    fn shutdown(&mut self, cx: &mut Context<'_>) {
        let _ = match (&mut self.reader, &self.writer) {
            (Reader::Whole(s), _) => Pin::new(s).poll_shutdown(cx),
            (_, Some(w)) => match w.lock().as_mut() {
                Some(w) => w.io().poll_shutdown(cx),
                None => Poll::Ready(Ok(())),
            },
            (_, None) => Poll::Ready(Ok(())),
        };
    }

    /// Starts the server calls in `spawn` (their first step runs now,
    /// outside the lock: handlers take it themselves).
    fn start_calls(
        &mut self,
        shared: &Arc<Shared>,
        spawn: &mut Vec<NewCall>,
        cx: &mut Context<'_>,
    ) {
        match &mut self.spawner {
            Some((start, _)) => {
                for call in spawn.drain(..) {
                    start(shared, call, cx, &mut self.answers);
                }
            }
            None => spawn.clear(),
        }
    }

    /// Batching on a single-worker runtime: with several calls in flight,
    /// output produced by callers this driver just woke is followed by
    /// more from the others, which run on this thread before a yielded
    /// driver does. `true`: yield once so one write carries all of it (64
    /// B echo, 64 in flight: 2.4x the calls/s). With more workers the
    /// callers are stolen by other threads and the yield only delays
    /// (measured 8% fewer calls/s), so it is off. A yield that gained
    /// nothing turns yielding off for a while.
    fn defer(&mut self, inner: &Inner) -> bool {
        let pending = inner.conn.pending_output();
        if let Some(before) = self.deferred.take() {
            if pending <= before {
                self.defer_skip = DEFER_BACKOFF;
            }
        } else if self.batch && pending > 0 && inner.calls.len() > 1 {
            if self.defer_skip == 0 {
                self.deferred = Some(pending);
                return true;
            }
            self.defer_skip -= 1;
        }
        false
    }
}

impl Future for Driver {
    type Output = ();

    /// Each round: read (no lock), then under one lock hand the input to
    /// the state machine, run timers and take its output; then write (no
    /// lock). New server calls start between two locks, so what they
    /// answer at once goes out in the same write. The driver goes idle
    /// only from under the lock, after a round that found nothing to do,
    /// because producers skip the wake while it is active.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Driver { shared, io } = &mut *self;
        let mut spawn = std::mem::take(&mut io.spawn);
        let mut first = true;
        // The last write this poll stopped at a full socket (which then
        // holds our waker).
        let mut blocked = false;
        loop {
            let read = io.read(cx);
            let mut progress = read.more;
            let mut inner = shared.lock();
            if io.written > 0 {
                // What the last write took frees output room (§9).
                if inner.conn.wrote(std::mem::take(&mut io.written)) {
                    inner.dispatch();
                }
            }
            io.process(&mut inner, read, &mut spawn);
            if first {
                first = false;
                if !inner
                    .driver
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    inner.driver = Some(cx.waker().clone());
                }
                inner.driver_active = true;
                if io.defer(&inner) {
                    drop(inner);
                    io.spawn = spawn;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            progress |= io.poll_timer(&mut inner, cx, &mut spawn);
            if !spawn.is_empty() {
                drop(inner);
                io.start_calls(shared, &mut spawn, cx);
                inner = shared.lock();
                if let Some((_, finish)) = &io.spawner
                    && !io.answers.is_empty()
                {
                    finish(shared, &mut inner, &mut io.answers);
                }
            }
            if let Some(why) = inner.close_when_idle
                && inner.calls.is_empty()
                && !inner.conn.is_closed()
            {
                inner.conn.close_connection(Reason::NO_ERROR, why);
                inner.dispatch();
            }
            // A caller's unwritten rest goes first.
            io.chunks.append(&mut inner.spill);
            inner.conn.poll_transmit(&mut io.chunks);
            if let Some(stats) = &shared.stats {
                stats.note_output(inner.conn.unwritten());
                stats.note_metadata(inner.conn.metadata_memory());
            }
            // Local caps: the peer's announcement sets the bound, but not
            // beyond what this side is willing to buffer.
            io.read_pause = inner
                .conn
                .config()
                .max_queued_output
                .saturating_add(
                    (inner.conn.peer_settings().max_message as usize).min(MAX_MESSAGE_OUT),
                )
                .saturating_add(PAUSE_MARGIN);
            if inner.conn.is_closed() {
                // Nothing read from now on matters: stop reading, so a peer
                // that keeps sending cannot grow the buffer.
                io.read_done = true;
                io.rbuf = BytesMut::new();
                if io.wqueue.is_empty() && io.chunks.is_empty() {
                    drop(inner);
                    io.shutdown(cx);
                    return Poll::Ready(());
                }
                // A peer that does not read our last bytes (GOAWAY) gets
                // its socket dropped after CLOSE_FLUSH.
                let timer = io
                    .close_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(CLOSE_FLUSH)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            // Nothing more to read, no timer fired, no new output and
            // nothing left to write but what waits for the socket: every
            // source has our waker.
            let unwritten = !io.wqueue.is_empty() || io.needs_flush;
            // The round's last output, when small and for at most one call
            // (so no caller waits for the lock meanwhile), is written here,
            // under the lock as a lone caller's own write is, and the
            // driver goes idle in the same lock instead of taking it again
            // after the write.
            let done = io.chunks.is_empty()
                || (!progress
                    && !unwritten
                    && inner.calls.len() <= 1
                    && !inner.conn.is_closed()
                    && io.write_locked(&mut inner));
            if !progress && done && (!unwritten || blocked) {
                inner.driver_active = false;
                inner.out_idle = !unwritten;
                drop(inner);
                io.spawn = spawn;
                return Poll::Pending;
            }
            drop(inner);
            let wrote = io.write(cx);
            blocked = matches!(wrote, Ok(false));
            if let Err(e) = wrote {
                let mut inner = shared.lock();
                inner.conn.handle_eof(&format!("write failed: {e}"));
                inner.dispatch();
                io.wqueue.clear();
                io.wbytes = 0;
                io.read_done = true;
            }
        }
    }
}

impl Drop for Driver {
    /// Callers hold the shared state (and so the writing half) after the
    /// driver is gone: the half is dropped with the driver, so the socket
    /// closes now.
    fn drop(&mut self) {
        if let Some(w) = &self.io.writer {
            w.lock().take();
        }
        self.shared.lock().direct = None;
    }
}

/// Closes the connection now with `reason` (server shutdown past its drain
/// deadline, or a local decision).
pub(crate) fn close_now(shared: &Shared, reason: Reason, message: &str) {
    let mut inner = shared.lock();
    inner.conn.close_connection(reason, message);
    inner.dispatch();
    inner.wake_driver();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_queued_message_shares_the_read_buffer() {
        let buf = Bytes::from(vec![7u8; 64 << 10]);
        let inside = |b: &Bytes| buf.as_ptr_range().contains(&b.as_ptr());
        let mut items = Items::default();
        for i in 0..3 {
            items.push(Item::Message(buf.slice(i * 10..i * 10 + 10)));
        }
        items.push(Item::End);
        let mut shared = Vec::new();
        while let Some(item) = items.pop() {
            if let Item::Message(m) = item {
                assert_eq!(m.len(), 10);
                shared.push(inside(&m));
            }
        }
        assert_eq!(shared, [true, false, false]);
    }
}
