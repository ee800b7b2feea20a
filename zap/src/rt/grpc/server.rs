//! Serving a router as gRPC: each HTTP/2 request becomes a [`ServerCall`]
//! whose link is a [`GrpcCall`], so the same `tower::Service<ServerCall>`
//! (a [`Router`](crate::Router) and its layers) answers both wires.
//!
//! tonic does the gRPC work (message framing, size limits, status and
//! metadata headers, trailers-only errors); hyper runs HTTP/2. What is ours:
//! the request head (path, metadata, `grpc-timeout`), the codec choice
//! (`application/grpc+zap` passes ZAP messages through; `application/grpc`
//! transcodes protobuf with the router's [`Protobuf`] table), deadlines
//! that end in `DEADLINE_EXCEEDED`, cancellation when the client resets the
//! stream, and trailers on successful responses.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, StatusCode};
use tokio::sync::oneshot;
use tower_service::Service;
use zap_transport::PeerInfo;

use super::{Protobuf, WireCodec, from_tonic, metadata_from_tonic, to_tonic, to_tonic_metadata};
use crate::metadata::Metadata;
use crate::proto::{CloseHead, OpenHead};
use crate::rt::call::status_of;
use crate::rt::conn::Item;
use crate::rt::link::{Link, close_head_of, unfinished_status};
use crate::rt::server::{BoxError, ServerCall, serve_call};
use crate::status::{Code, Status};

/// The content type of gRPC with ZAP messages.
pub(crate) const ZAP_CONTENT_TYPE: &str = "application/grpc+zap";

/// Response messages a handler may queue ahead of HTTP/2 flow control
/// (and no more than `Limits::max_queued_output_per_call` bytes of them).
const QUEUED: usize = 2;

/// Bytes of HTTP/2 send buffer per stream: what hyper buffers for a
/// stream beyond what our accounting sees (a message handed to HTTP/2 is
/// counted until the next one is asked for, which happens once the stream
/// has drained below this). Bounds a connection's unseen output to this
/// times its streams.
pub(crate) const H2_SEND_BUFFER: usize = 64 << 10;

/// What one HTTP/2 connection's calls hold against the local caps
/// (PROTOCOL.md §9, §12): response bytes queued ahead of HTTP/2, and the
/// open calls' metadata.
pub(crate) struct ConnBudget {
    out: AtomicUsize,
    metadata: AtomicUsize,
    max_out: usize,
    max_out_per_call: usize,
    max_metadata: usize,
    /// Calls waiting for the connection's output to drain.
    waiters: Mutex<Vec<Waker>>,
    stats: crate::rt::ServerStats,
}

impl ConnBudget {
    pub(crate) fn new(limits: &zap_transport::Limits, stats: crate::rt::ServerStats) -> Self {
        ConnBudget {
            out: AtomicUsize::new(0),
            metadata: AtomicUsize::new(0),
            max_out: limits.max_queued_output,
            max_out_per_call: limits.max_queued_output_per_call,
            max_metadata: limits.max_metadata_memory,
            waiters: Mutex::new(Vec::new()),
            stats,
        }
    }

    /// Whether the connection's queued output leaves room; if not, `w`
    /// is woken when some drains.
    fn out_room(&self, w: &Waker) -> bool {
        if self.out.load(Ordering::Acquire) < self.max_out {
            return true;
        }
        lock(&self.waiters).push(w.clone());
        // Registered before the second look: a release in between wakes it.
        self.out.load(Ordering::Acquire) < self.max_out
    }

    fn take_out(&self, n: usize) {
        let now = self.out.fetch_add(n, Ordering::AcqRel) + n;
        self.stats.note_output(now);
    }

    fn release_out(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.out.fetch_sub(n, Ordering::AcqRel);
        let waiters = std::mem::take(&mut *lock(&self.waiters));
        for w in waiters {
            w.wake();
        }
    }

    /// Charges `n` bytes of metadata memory, unless that passes the cap.
    fn take_metadata(&self, n: usize) -> bool {
        let mut cur = self.metadata.load(Ordering::Acquire);
        loop {
            if cur + n > self.max_metadata {
                return false;
            }
            match self.metadata.compare_exchange_weak(
                cur,
                cur + n,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.stats.note_metadata(cur + n);
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }
}

/// What a queued response message costs: its bytes plus a fixed part, so
/// that empty messages are not free (as in flow control, PROTOCOL.md §7).
fn cost(m: &Bytes) -> usize {
    m.len() + crate::proto::MESSAGE_OVERHEAD as usize
}

/// One gRPC request as a call: the request messages come from tonic's
/// decoder, the responses go to the stream tonic encodes.
pub(crate) struct GrpcCall {
    index: u64,
    peer: Arc<PeerInfo>,
    requests: Mutex<Requests>,
    out: Mutex<Out>,
    cancel: Mutex<Cancel>,
    /// Trailers of a successful response, for the body's trailers frame.
    ok_trailers: Mutex<Option<HeaderMap>>,
    /// The request body was broken off by the transport (the client reset
    /// the stream, the connection died): see [`RequestBody`].
    broken: AtomicBool,
    /// Counts the call open on its connection while any part of it lives
    /// (handler, request or response body).
    _open: OpenCall,
    /// The connection's caps, charged with this call's queued output and
    /// metadata until it ends.
    budget: Arc<ConnBudget>,
    /// Metadata memory charged to `budget`.
    md_cost: AtomicUsize,
}

impl Drop for GrpcCall {
    fn drop(&mut self) {
        let out = self.out.get_mut().unwrap_or_else(|e| e.into_inner());
        self.budget.release_out(std::mem::take(&mut out.bytes));
        let md = self.md_cost.load(Ordering::Acquire);
        self.budget.metadata.fetch_sub(md, Ordering::AcqRel);
    }
}

/// The calls open on one HTTP/2 connection, for its idle timeout.
#[derive(Default)]
pub(crate) struct Activity {
    open: AtomicUsize,
    changed: tokio::sync::Notify,
}

impl Activity {
    /// A request arrived: it counts as open until the guard is dropped.
    fn begin(self: &Arc<Self>) -> OpenCall {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        OpenCall(self.clone())
    }

    /// Resolves once no call has been open for `timeout`.
    pub(crate) async fn idle_for(&self, timeout: Duration) {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Registered before the count is read, so no change is missed.
            changed.as_mut().enable();
            if self.open.load(Ordering::Acquire) > 0 {
                changed.await;
                continue;
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(timeout) => return,
            }
        }
    }
}

/// One open call of an [`Activity`].
struct OpenCall(Arc<Activity>);

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

struct Requests {
    stream: Option<Pin<Box<tonic::codec::Streaming<Bytes>>>>,
    error: Option<Status>,
}

enum Start {
    /// Response headers: the response has a body.
    Headers(Metadata),
    /// An error before any response: a trailers-only response.
    Reject(Status),
}

enum Event {
    Message(Bytes),
    End(Status),
}

struct Out {
    start: Option<oneshot::Sender<Start>>,
    queue: VecDeque<Event>,
    /// The call's status was given (queued or sent as trailers-only).
    ended: bool,
    /// tonic dropped the response stream: the client is gone.
    reader_gone: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// Cost of the queued messages and of the one last handed to tonic
    /// (counted until the next is asked for: see `H2_SEND_BUFFER`).
    bytes: usize,
    /// Cost of the message last handed to tonic.
    inflight: usize,
}

impl Out {
    /// Drops the charge of the message last handed to tonic.
    fn release_inflight(&mut self, budget: &ConnBudget) {
        let n = std::mem::take(&mut self.inflight);
        self.bytes -= n;
        budget.release_out(n);
    }
}

struct Cancel {
    code: Option<Code>,
    waker: Option<Waker>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GrpcCall {
    pub(crate) fn index(&self) -> u64 {
        self.index
    }

    pub(crate) fn peer(&self) -> &Arc<PeerInfo> {
        &self.peer
    }

    fn cancel(&self, code: Code) {
        let mut c = lock(&self.cancel);
        if c.code.is_none() {
            c.code = Some(code);
            if let Some(w) = c.waker.take() {
                w.wake();
            }
        }
    }

    pub(crate) fn poll_item(&self, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let mut r = lock(&self.requests);
        let Some(stream) = r.stream.as_mut() else {
            return Poll::Ready(None);
        };
        match stream.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(m))) => Poll::Ready(Some(Item::Message(m))),
            Poll::Ready(None) => {
                r.stream = None;
                Poll::Ready(Some(Item::End))
            }
            Poll::Ready(Some(Err(s))) => {
                r.stream = None;
                // A body the transport broke off is the client's
                // cancellation (already signalled by the body); any other
                // error is tonic's decoding (too large, bad message).
                r.error = Some(if self.broken.load(Ordering::Acquire) {
                    Status::cancelled(format!("call cancelled by the client: {}", s.message()))
                } else {
                    from_tonic(s)
                });
                Poll::Ready(None)
            }
        }
    }

    /// Why the requests ended early: a decoding error (too large, bad
    /// protobuf, a reset stream) or cancellation.
    pub(crate) fn end_status(&self) -> Status {
        if let Some(s) = lock(&self.requests).error.take() {
            return s;
        }
        match lock(&self.cancel).code {
            Some(Code::DEADLINE_EXCEEDED) => Status::deadline_exceeded("deadline exceeded"),
            _ => Status::cancelled("call cancelled by the client"),
        }
    }

    pub(crate) fn poll_cancelled(&self, cx: &mut Context<'_>) -> Poll<Code> {
        let mut c = lock(&self.cancel);
        if let Some(code) = c.code {
            return Poll::Ready(code);
        }
        if let Some(d) = c.deadline.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            c.code = Some(Code::DEADLINE_EXCEEDED);
            return Poll::Ready(Code::DEADLINE_EXCEEDED);
        }
        c.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn start(out: &mut Out, start: Start) {
        if let Some(tx) = out.start.take() {
            let _ = tx.send(start);
        }
    }

    pub(crate) fn send_headers(&self, headers: &Metadata) {
        let mut out = lock(&self.out);
        Self::start(&mut out, Start::Headers(headers.clone()));
    }

    pub(crate) async fn send(&self, message: Bytes) -> Result<(), Status> {
        let mut message = Some(message);
        poll_fn(|cx| {
            let mut out = lock(&self.out);
            if out.reader_gone || out.ended {
                return Poll::Ready(Err(Status::cancelled("call ended")));
            }
            if out.queue.len() >= QUEUED || out.bytes >= self.budget.max_out_per_call {
                out.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if !self.budget.out_room(cx.waker()) {
                return Poll::Pending;
            }
            Self::start(&mut out, Start::Headers(Metadata::new()));
            if let Some(m) = message.take() {
                out.bytes += cost(&m);
                self.budget.take_out(cost(&m));
                out.queue.push_back(Event::Message(m));
            }
            if let Some(w) = out.reader.take() {
                w.wake();
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Ends the call. The status never waits for flow control (a handler
    /// that ends is not held by a slow reader), so at most one message
    /// beyond the queue bound is buffered here.
    pub(crate) fn close(
        &self,
        head: &CloseHead,
        headers: Option<&Metadata>,
        message: Option<Bytes>,
    ) {
        let mut out = lock(&self.out);
        if out.ended {
            return;
        }
        out.ended = true;
        let status = status_of(head.clone());
        if out.start.is_some() && message.is_none() && status.code() != Code::OK {
            Self::start(&mut out, Start::Reject(status));
            return;
        }
        let headers = headers.cloned().unwrap_or_default();
        Self::start(&mut out, Start::Headers(headers));
        if let Some(m) = message {
            out.bytes += cost(&m);
            self.budget.take_out(cost(&m));
            out.queue.push_back(Event::Message(m));
        }
        out.queue.push_back(Event::End(status));
        if let Some(w) = out.reader.take() {
            w.wake();
        }
    }

    pub(crate) fn take_single(&self) -> Option<Bytes> {
        None
    }

    pub(crate) fn end_server_call(&self, result: Result<Result<(), BoxError>, Code>) {
        let status = match result {
            Ok(r) => unfinished_status(r),
            Err(Code::DEADLINE_EXCEEDED) => Status::deadline_exceeded("deadline exceeded"),
            // The client is gone.
            Err(_) => return,
        };
        self.close(&close_head_of(&status), None, None);
    }
}

/// The response messages as tonic encodes them; dropped by tonic when the
/// client goes away, which cancels the call.
struct Responses {
    call: Arc<GrpcCall>,
    done: bool,
}

impl Stream for Responses {
    type Item = Result<Bytes, tonic::Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let mut out = lock(&self.call.out);
        let event = out.queue.pop_front();
        if let Some(w) = out.writer.take() {
            w.wake();
        }
        // Asked for the next: the last one went to HTTP/2, whose own
        // buffer holds at most H2_SEND_BUFFER of it now.
        out.release_inflight(&self.call.budget);
        match event {
            Some(Event::Message(m)) => {
                out.inflight = cost(&m);
                Poll::Ready(Some(Ok(m)))
            }
            Some(Event::End(s)) => {
                drop(out);
                self.done = true;
                if s.code() == Code::OK {
                    let trailers = to_tonic_metadata(s.metadata()).into_headers();
                    *lock(&self.call.ok_trailers) = Some(trailers);
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(to_tonic(s))))
                }
            }
            None => {
                out.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for Responses {
    fn drop(&mut self) {
        let mut out = lock(&self.call.out);
        out.reader_gone = true;
        if let Some(w) = out.writer.take() {
            w.wake();
        }
        // Nothing queued will be read: free it now.
        out.queue.clear();
        self.call.budget.release_out(std::mem::take(&mut out.bytes));
        out.inflight = 0;
        drop(out);
        if !self.done {
            self.call.cancel(Code::CANCELLED);
        }
    }
}

/// Cancels the call if tonic drops the request before the response
/// started (the client reset the stream).
struct StartGuard(Option<Arc<GrpcCall>>);

impl StartGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.cancel(Code::CANCELLED);
        }
    }
}

/// The tonic service for one request: starts the call on the router and
/// answers with its headers and response stream.
struct Bridge<S> {
    svc: Option<S>,
    call: Arc<GrpcCall>,
    head: Option<OpenHead>,
    deadline: Option<Instant>,
    start: Option<oneshot::Receiver<Start>>,
}

impl<S> Service<tonic::Request<tonic::codec::Streaming<Bytes>>> for Bridge<S>
where
    S: Service<ServerCall, Response = ()> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = tonic::Response<Responses>;
    type Error = tonic::Status;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, tonic::Status>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), tonic::Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::Request<tonic::codec::Streaming<Bytes>>) -> Self::Future {
        let call = self.call.clone();
        let (svc, mut head, start) = match (self.svc.take(), self.head.take(), self.start.take()) {
            (Some(s), Some(h), Some(r)) => (s, h, r),
            _ => return Box::pin(async { Err(tonic::Status::internal("call started twice")) }),
        };
        // The request metadata as tonic parsed it from the headers.
        head.metadata = match metadata_from_tonic(req.metadata()) {
            Ok(m) => m,
            Err(s) => return Box::pin(async move { Err(to_tonic(s)) }),
        };
        // Held until the call ends, against the connection's cap (§9).
        let md = head.metadata.memory_size();
        if !call.budget.take_metadata(md) {
            let s =
                Status::resource_exhausted("metadata of the open calls exceeds the server's limit");
            return Box::pin(async move { Err(to_tonic(s)) });
        }
        call.md_cost.store(md, Ordering::Release);
        let deadline = self.deadline;
        lock(&call.requests).stream = Some(Box::pin(req.into_inner()));
        let link = Link::Grpc(call.clone());
        tokio::spawn(serve_call(svc, link, head, deadline));
        let guard = StartGuard(Some(call.clone()));
        Box::pin(async move {
            let start = start.await;
            guard.disarm();
            match start {
                Ok(Start::Headers(h)) => {
                    let responses = Responses { call, done: false };
                    Ok(tonic::Response::from_parts(
                        to_tonic_metadata(&h),
                        responses,
                        tonic::Extensions::new(),
                    ))
                }
                Ok(Start::Reject(s)) => Err(to_tonic(s)),
                Err(_) => Err(tonic::Status::internal("call ended without a response")),
            }
        })
    }
}

/// The HTTP/2 service of one gRPC connection.
pub(crate) struct GrpcHttp<S> {
    pub(crate) svc: S,
    pub(crate) protobuf: Protobuf,
    pub(crate) peer: Arc<PeerInfo>,
    pub(crate) max_message: usize,
    pub(crate) calls: Arc<AtomicU64>,
    pub(crate) activity: Arc<Activity>,
    pub(crate) budget: Arc<ConnBudget>,
}

type HttpResponse = http::Response<tonic::body::Body>;

impl<S> hyper::service::Service<http::Request<hyper::body::Incoming>> for GrpcHttp<S>
where
    S: Service<ServerCall, Response = ()> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        // Every request is activity; one refused at once closes again here.
        let open = self.activity.begin();
        let zap_wire = match req.headers().get(CONTENT_TYPE).map(HeaderValue::as_bytes) {
            Some(b"application/grpc+zap") => true,
            Some(ct) if is_protobuf(ct) => false,
            _ => return Box::pin(async { Ok(unsupported_media_type()) }),
        };
        let path = req.uri().path();
        let transcode = if zap_wire {
            None
        } else {
            match self.protobuf.get(path) {
                Some(m) => Some(m.server),
                None => {
                    let s = Status::unimplemented(format!(
                        "{path} is not served as protobuf gRPC (call it with \
                         content-type {ZAP_CONTENT_TYPE}, or generate it with zap-build)"
                    ));
                    return Box::pin(async move { Ok(to_tonic(s).into_http()) });
                }
            }
        };
        let now = Instant::now();
        let timeout = match req.headers().get("grpc-timeout").map(parse_timeout) {
            None => None,
            Some(Some(t)) => Some(t),
            Some(None) => {
                let s = Status::invalid_argument("malformed grpc-timeout header");
                return Box::pin(async move { Ok(to_tonic(s).into_http()) });
            }
        };
        let deadline = timeout.and_then(|t| now.checked_add(t));
        // Metadata is filled in by the bridge, from tonic's request.
        let head = OpenHead {
            method: Bytes::copy_from_slice(path.as_bytes()),
            timeout,
            metadata: Metadata::new(),
        };
        let (start_tx, start_rx) = oneshot::channel();
        let call = Arc::new(GrpcCall {
            index: self.calls.fetch_add(1, Ordering::Relaxed),
            peer: self.peer.clone(),
            requests: Mutex::new(Requests {
                stream: None,
                error: None,
            }),
            out: Mutex::new(Out {
                start: Some(start_tx),
                queue: VecDeque::new(),
                ended: false,
                reader_gone: false,
                reader: None,
                writer: None,
                bytes: 0,
                inflight: 0,
            }),
            cancel: Mutex::new(Cancel {
                code: None,
                waker: None,
                deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d.into()))),
            }),
            ok_trailers: Mutex::new(None),
            broken: AtomicBool::new(false),
            _open: open,
            budget: self.budget.clone(),
            md_cost: AtomicUsize::new(0),
        });
        let req = req.map(|body| RequestBody {
            inner: body,
            call: Arc::downgrade(&call),
        });
        let bridge = Bridge {
            svc: Some(self.svc.clone()),
            call: call.clone(),
            head: Some(head),
            deadline,
            start: Some(start_rx),
        };
        let max = self.max_message;
        Box::pin(async move {
            let codec = WireCodec {
                transcode,
                client: false,
            };
            let mut grpc = tonic::server::Grpc::new(codec)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max);
            let resp = grpc.streaming(bridge, req).await;
            let (mut parts, body) = resp.into_parts();
            if zap_wire {
                parts
                    .headers
                    .insert(CONTENT_TYPE, HeaderValue::from_static(ZAP_CONTENT_TYPE));
            }
            let body = tonic::body::Body::new(WithTrailers { inner: body, call });
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

/// `application/grpc`, `application/grpc+proto` (and parameters after `;`).
fn is_protobuf(ct: &[u8]) -> bool {
    let base = ct.split(|&b| b == b';').next().unwrap_or(ct);
    base == b"application/grpc" || base == b"application/grpc+proto"
}

fn unsupported_media_type() -> HttpResponse {
    let mut r = http::Response::new(tonic::body::Body::empty());
    *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    r
}

/// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n).
pub(crate) fn parse_timeout(v: &HeaderValue) -> Option<Duration> {
    let b = v.as_bytes();
    let (digits, unit) = b.split_at(b.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}

pin_project_lite::pin_project! {
    /// tonic's response body, with the handler's trailers added to the
    /// trailers frame of a successful response.
    struct WithTrailers {
        #[pin]
        inner: tonic::body::Body,
        call: Arc<GrpcCall>,
    }
}

pin_project_lite::pin_project! {
    /// The request body as tonic reads it. A transport error (a reset
    /// stream, a dead connection) cancels the call here and reaches tonic
    /// as `UNKNOWN`: tonic's decoder would take an error it maps to
    /// `CANCELLED` (it does when its `server` feature is on anywhere in the
    /// build) for a clean end of the request stream, and a handler would
    /// process a cut-off client stream as complete.
    struct RequestBody {
        #[pin]
        inner: hyper::body::Incoming,
        // Weak: the call owns tonic's stream, which owns this body.
        call: Weak<GrpcCall>,
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                if let Some(call) = this.call.upgrade() {
                    call.broken.store(true, Ordering::Release);
                    call.cancel(Code::CANCELLED);
                }
                Poll::Ready(Some(Err(tonic::Status::unknown(format!(
                    "request body broken off: {e}"
                )))))
            }
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl http_body::Body for WithTrailers {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_trailers() {
                    Ok(mut trailers) => {
                        if let Some(extra) = lock(&this.call.ok_trailers).take() {
                            for (k, v) in extra.iter() {
                                trailers.append(k.clone(), v.clone());
                            }
                        }
                        http_body::Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_header() {
        let t = |s: &'static str| parse_timeout(&HeaderValue::from_static(s));
        assert_eq!(t("1m"), Some(Duration::from_millis(1)));
        assert_eq!(t("99999999S"), Some(Duration::from_secs(99_999_999)));
        assert_eq!(t("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(t("5n"), Some(Duration::from_nanos(5)));
        assert_eq!(t("123456789S"), None, "more than 8 digits");
        assert_eq!(t("S"), None);
        assert_eq!(t(""), None);
        assert_eq!(t("10s"), None, "unit is case-sensitive");
        assert_eq!(t("-1S"), None);
    }

    #[test]
    fn protobuf_content_types() {
        assert!(is_protobuf(b"application/grpc"));
        assert!(is_protobuf(b"application/grpc+proto"));
        assert!(is_protobuf(b"application/grpc;charset=utf-8"));
        assert!(!is_protobuf(b"application/grpc+json"));
        assert!(!is_protobuf(b"application/json"));
    }
}
