//! The client: [`Channel`], one multiplexed connection shared by every call.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;
use zap_transport::{ClientTls, Connector, Limits, Url};

use super::call::{Inbox, Method, Request, Response, Streaming, status_of};
use super::conn::{Driver, Item, Shared, Slot};
use super::link::Link;
use super::proto_config;
use crate::metadata::Metadata;
use crate::proto::{Connection, OpenHead, SendError};
use crate::status::{Code, Status};

/// Configures and creates a [`Channel`].
#[derive(Clone, Debug)]
pub struct ChannelBuilder {
    url: Url,
    limits: Limits,
    tls: Option<ClientTls>,
    #[cfg(feature = "quic")]
    quic: Option<zap_transport::quic::QuicConnector>,
}

impl ChannelBuilder {
    /// Transport and protocol limits (timeouts, keepalive, max frame).
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// TLS roots and client identity, for `zaps://`.
    #[must_use]
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// `zap+quic://`: connect with this connector (its TLS, limits and UDP
    /// socket) instead of one made from [`tls`](Self::tls) and
    /// [`limits`](Self::limits). Channels given clones of one connector
    /// share its UDP socket.
    #[cfg(feature = "quic")]
    #[must_use]
    pub fn quic_connector(mut self, connector: zap_transport::quic::QuicConnector) -> Self {
        self.quic = Some(connector);
        self
    }

    /// A channel that connects on its first call.
    pub fn connect_lazy(self) -> Channel {
        #[cfg(feature = "quic")]
        let connector = match self.quic {
            Some(c) => Connectors::Quic(c),
            None => Connectors::new(&self.url, &self.limits, self.tls),
        };
        #[cfg(not(feature = "quic"))]
        let connector = Connectors::new(&self.url, &self.limits, self.tls);
        Channel {
            inner: Arc::new(ChannelInner {
                url: self.url,
                connector,
                limits: self.limits,
                state: Mutex::new(ConnState {
                    current: None,
                    retry_at: None,
                    backoff: MIN_BACKOFF,
                }),
                connecting: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// A channel connected now (the error says why it could not).
    pub async fn connect(self) -> Result<Channel, Status> {
        let ch = self.connect_lazy();
        ch.connection().await?;
        Ok(ch)
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A client for one server address: cheap to clone, every clone shares one
/// multiplexed connection. Connects lazily; after the connection fails,
/// reconnects on the next call, waiting an exponential backoff (100 ms up to
/// 10 s) between failed attempts; calls made while waiting fail fast with
/// `UNAVAILABLE`.
///
/// `Channel` is a `tower::Service<RawCall>` (unary calls on raw bytes), so
/// tower layers (timeouts, concurrency limits, retries) stack on it.
#[derive(Clone)]
pub struct Channel {
    inner: Arc<ChannelInner>,
}

struct ChannelInner {
    url: Url,
    connector: Connectors,
    limits: Limits,
    state: Mutex<ConnState>,
    connecting: tokio::sync::Mutex<()>,
}

impl Drop for ChannelInner {
    /// The last `Channel` clone is gone: its connection closes once the
    /// calls still in flight (streams held by the caller) are done.
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(conn) = st.current.take() {
            conn.retire();
        }
    }
}

/// How a channel connects: byte streams (`zap://`, `zaps://`,
/// `zap+unix://`) or QUIC (`zap+quic://`).
enum Connectors {
    Stream(Connector),
    #[cfg(feature = "quic")]
    Quic(zap_transport::quic::QuicConnector),
    /// The configuration cannot work (why), reported by every call.
    #[cfg(feature = "quic")]
    Invalid(String),
}

impl Connectors {
    fn new(url: &Url, limits: &Limits, tls: Option<ClientTls>) -> Connectors {
        #[cfg(feature = "quic")]
        if url.scheme() == zap_transport::Scheme::Quic {
            let Some(tls) = tls else {
                return Connectors::Invalid(
                    "zap+quic:// needs TLS: give the channel roots with ChannelBuilder::tls"
                        .to_owned(),
                );
            };
            return match zap_transport::quic::QuicConnector::new(limits.clone(), tls) {
                Ok(c) => Connectors::Quic(c),
                Err(e) => Connectors::Invalid(e.to_string()),
            };
        }
        let _ = url;
        let mut connector = Connector::new(limits.clone());
        if let Some(tls) = tls {
            connector = connector.with_tls(tls);
        }
        Connectors::Stream(connector)
    }
}

/// A channel's live connection.
#[derive(Clone)]
enum ClientConn {
    Mux(Arc<Shared>),
    #[cfg(feature = "quic")]
    Quic(Arc<super::quic::QConn>),
}

impl ClientConn {
    /// No new calls will be made on it: close once the calls in flight
    /// are done.
    fn retire(&self) {
        match self {
            ClientConn::Mux(shared) => shared.lock().retire("client done"),
            #[cfg(feature = "quic")]
            ClientConn::Quic(q) => q.retire(),
        }
    }

    fn same(&self, other: &ClientConn) -> bool {
        match (self, other) {
            (ClientConn::Mux(a), ClientConn::Mux(b)) => Arc::ptr_eq(a, b),
            #[cfg(feature = "quic")]
            (ClientConn::Quic(a), ClientConn::Quic(b)) => Arc::ptr_eq(a, b),
            #[cfg(feature = "quic")]
            _ => false,
        }
    }

    /// Whether new calls may go on it (a QUIC connection that got GOAWAY
    /// or closed is replaced; a byte-stream connection reports that when a
    /// call is opened).
    fn usable(&self) -> bool {
        match self {
            ClientConn::Mux(_) => true,
            #[cfg(feature = "quic")]
            ClientConn::Quic(q) => q.usable(),
        }
    }
}

struct ConnState {
    current: Option<ClientConn>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("url", &self.inner.url)
            .finish()
    }
}

impl Channel {
    /// A builder for `url` (`zap://`, `zaps://`, `zap+unix://`, and
    /// `zap+quic://` with the `quic` feature).
    pub fn builder(url: Url) -> ChannelBuilder {
        ChannelBuilder {
            url,
            limits: Limits::default(),
            tls: None,
            #[cfg(feature = "quic")]
            quic: None,
        }
    }

    /// The server address.
    pub fn url(&self) -> &Url {
        &self.inner.url
    }

    fn current(&self) -> Option<ClientConn> {
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        match &st.current {
            Some(c) if c.usable() => Some(c.clone()),
            Some(_) => {
                if let Some(stale) = st.current.take() {
                    stale.retire();
                }
                None
            }
            None => None,
        }
    }

    fn forget(&self, stale: &ClientConn) {
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.current.as_ref().is_some_and(|c| c.same(stale)) {
            st.current = None;
        }
        stale.retire();
    }

    /// The live connection, connecting if needed.
    async fn connection(&self) -> Result<ClientConn, Status> {
        match self.current() {
            Some(c) => Ok(c),
            // Boxed: every call's future would otherwise carry the room a
            // TLS or QUIC handshake needs.
            None => Box::pin(self.reconnect()).await,
        }
    }

    /// Connects (or waits for the call that is connecting).
    async fn reconnect(&self) -> Result<ClientConn, Status> {
        let _one = self.inner.connecting.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        {
            let st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = st.retry_at
                && Instant::now() < t
            {
                return Err(Status::unavailable(format!(
                    "connecting to {} failed recently; retrying after backoff",
                    self.inner.url
                )));
            }
        }
        match self.connect().await {
            Ok(conn) => {
                let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
                st.current = Some(conn.clone());
                st.retry_at = None;
                st.backoff = MIN_BACKOFF;
                Ok(conn)
            }
            Err(e) => {
                let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
                st.retry_at = Some(Instant::now() + st.backoff);
                st.backoff = (st.backoff * 2).min(MAX_BACKOFF);
                Err(Status::unavailable(format!(
                    "cannot connect to {}: {e}",
                    self.inner.url
                )))
            }
        }
    }

    /// Connects anew (the error says why not).
    async fn connect(&self) -> Result<ClientConn, String> {
        let limits = &self.inner.limits;
        match &self.inner.connector {
            Connectors::Stream(c) => {
                let conn = c
                    .connect(&self.inner.url)
                    .await
                    .map_err(|e| e.to_string())?;
                let (stream, peer, guard) = conn.into_parts();
                let proto = Connection::client(proto_config(limits), Instant::now());
                let shared = Shared::new(proto, peer, None);
                tokio::spawn(Driver::new(shared.clone(), stream, None, Some(guard)));
                Ok(ClientConn::Mux(shared))
            }
            #[cfg(feature = "quic")]
            Connectors::Quic(c) => super::quic::connect(c, &self.inner.url, limits)
                .await
                .map(ClientConn::Quic),
            #[cfg(feature = "quic")]
            Connectors::Invalid(why) => Err(why.clone()),
        }
    }

    /// Opens a call.
    async fn start(
        &self,
        method: Method,
        metadata: Metadata,
        deadline: Option<Instant>,
        message: Option<Bytes>,
        end: bool,
    ) -> Result<Link, Status> {
        let expired = || Status::deadline_exceeded("deadline passed before the call could start");
        let opening = self.open_call(method, metadata, deadline, message, end);
        match deadline {
            // Connecting and waiting for the window count against the
            // deadline too.
            Some(d) => tokio::time::timeout_at(d.into(), opening)
                .await
                .unwrap_or_else(|_| Err(expired())),
            None => opening.await,
        }
    }

    async fn open_call(
        &self,
        method: Method,
        metadata: Metadata,
        deadline: Option<Instant>,
        message: Option<Bytes>,
        end: bool,
    ) -> Result<Link, Status> {
        let mut head = OpenHead {
            method: method.0,
            timeout: None,
            metadata,
        };
        let mut retried = false;
        loop {
            // The call's link takes over the connection's reference.
            let (conn, err) = match self.connection().await? {
                ClientConn::Mux(shared) => {
                    match open_mux(&shared, &mut head, deadline, &message, end).await {
                        Ok(id) => return Ok(Link::Mux { shared, id }),
                        Err(e) => (ClientConn::Mux(shared), e),
                    }
                }
                #[cfg(feature = "quic")]
                ClientConn::Quic(q) => {
                    match super::quic::open(&q, &mut head, deadline, message.clone(), end).await {
                        Ok(link) => return Ok(link),
                        Err(e) => (ClientConn::Quic(q), e),
                    }
                }
            };
            match err {
                SendError::Closed | SendError::Exhausted if !retried => {
                    // The connection went away (or ran out of ids): once
                    // more on a fresh one.
                    self.forget(&conn);
                    retried = true;
                }
                SendError::TooLarge { size, max } => {
                    return Err(Status::resource_exhausted(format!(
                        "request of {size} bytes exceeds the server's limit of {max}"
                    )));
                }
                e @ SendError::TooManyStreams { .. } => {
                    return Err(Status::resource_exhausted(e.to_string()));
                }
                SendError::Invalid("deadline passed") => {
                    return Err(Status::deadline_exceeded(
                        "deadline passed before the call could start",
                    ));
                }
                SendError::Invalid(why) => return Err(Status::invalid_argument(why)),
                e => {
                    self.forget(&conn);
                    return Err(Status::unavailable(e.to_string()));
                }
            }
        }
    }

    /// Opens a call whose one request goes in the OPEN frame.
    async fn start_single(&self, method: Method, request: Request<Bytes>) -> Result<Link, Status> {
        let Request {
            metadata,
            message,
            deadline,
            ..
        } = request;
        self.start(method, metadata, deadline, Some(message), true)
            .await
    }

    /// A unary call: one message each way.
    pub async fn unary(
        &self,
        method: impl Into<Method>,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, Status> {
        let link = self.start_single(method.into(), request).await?;
        // A multiplexed call registered this task's waker when it opened,
        // in this poll: the reply cannot be there yet without a wake, so
        // the first look is skipped (it would take the lock for nothing).
        let mut fresh = matches!(link, Link::Mux { .. });
        let mut guard = CallGuard { link, done: false };
        let mut headers = None;
        loop {
            let next = poll_fn(|cx| {
                if std::mem::take(&mut fresh) {
                    return Poll::Pending;
                }
                guard.link.poll_item(cx)
            });
            match next.await {
                Some(Item::Headers(h)) => headers = Some(h),
                Some(Item::Message(m)) => {
                    // A message outside CLOSE: keep it, the status follows.
                    let close = loop {
                        match poll_fn(|cx| guard.link.poll_item(cx)).await {
                            Some(Item::Close { head, .. }) => break Some(head),
                            Some(_) => continue,
                            None => break None,
                        }
                    };
                    guard.done = true;
                    return match close {
                        Some(head) if head.code == Code::OK => Ok(Response {
                            headers: headers.unwrap_or_default(),
                            message: m,
                            trailers: head.trailers,
                        }),
                        Some(head) => Err(status_of(head)),
                        None => Err(guard.link.end_status(true)),
                    };
                }
                Some(Item::Close {
                    head,
                    headers: h,
                    message,
                }) => {
                    guard.done = true;
                    if head.code != Code::OK {
                        return Err(status_of(head));
                    }
                    let Some(message) = message else {
                        return Err(Status::internal("server sent no response message"));
                    };
                    return Ok(Response {
                        headers: h.or(headers).unwrap_or_default(),
                        message,
                        trailers: head.trailers,
                    });
                }
                Some(Item::End) => continue,
                None => {
                    guard.done = true;
                    return Err(guard.link.end_status(true));
                }
            }
        }
    }

    /// A server-streaming call: one request, a stream of responses.
    pub async fn server_streaming(
        &self,
        method: impl Into<Method>,
        request: Request<Bytes>,
    ) -> Result<Response<Streaming>, Status> {
        let link = self.start_single(method.into(), request).await?;
        response_stream(link).await
    }

    /// A client-streaming call: a stream of requests, one response.
    pub async fn client_streaming<S>(
        &self,
        method: impl Into<Method>,
        request: Request<S>,
    ) -> Result<Response<Bytes>, Status>
    where
        S: Stream<Item = Bytes> + Send + 'static,
    {
        let (head, messages) = split_request(request);
        let (sender, response) = self.open(method, head).await?;
        self.finish_client_streaming(sender, response, request_stream(messages))
            .await
    }

    /// Sends `messages` while waiting for the one response.
    pub(crate) async fn finish_client_streaming(
        &self,
        sender: CallSender,
        response: CallResponse,
        messages: RequestStream,
    ) -> Result<Response<Bytes>, Status> {
        let pump = pump(sender, messages);
        let mut pump = std::pin::pin!(pump);
        let mut response = std::pin::pin!(response.into_unary());
        let mut pumped: Option<Result<(), Status>> = None;
        // The response decides: when it is done the call is over, whether
        // or not the request stream was sent out (an early status wins).
        let resp = poll_fn(|cx| {
            if pumped.is_none()
                && let Poll::Ready(r) = pump.as_mut().poll(cx)
            {
                pumped = Some(r);
            }
            response.as_mut().poll(cx)
        })
        .await;
        match (resp, pumped) {
            (Ok(r), _) => Ok(r),
            // A connection failure seen first by the sender explains a
            // vaguer response error.
            (Err(s), Some(Err(p))) if s.code() == Code::UNAVAILABLE => Err(p),
            (Err(s), _) => Err(s),
        }
    }

    /// A bidirectional call: streams both ways. The request stream is sent
    /// by a task while the caller reads responses.
    pub async fn streaming<S>(
        &self,
        method: impl Into<Method>,
        request: Request<S>,
    ) -> Result<Response<Streaming>, Status>
    where
        S: Stream<Item = Bytes> + Send + 'static,
    {
        let (head, messages) = split_request(request);
        let (sender, response) = self.open(method, head).await?;
        tokio::spawn(pump(sender, request_stream(messages)));
        response.into_stream().await
    }

    /// A bidirectional call whose request stream is already in pump form.
    pub(crate) async fn streaming_raw(
        &self,
        method: Method,
        head: Request<()>,
        messages: RequestStream,
    ) -> Result<Response<Streaming>, Status> {
        let (sender, response) = self.open(method, head).await?;
        tokio::spawn(pump(sender, messages));
        response.into_stream().await
    }

    /// Opens a call to send messages by hand: the [`CallSender`] sends (and
    /// waits for flow control), the [`CallResponse`] receives.
    pub async fn open(
        &self,
        method: impl Into<Method>,
        request: Request<()>,
    ) -> Result<(CallSender, CallResponse), Status> {
        let link = self
            .start(
                method.into(),
                request.metadata,
                request.deadline,
                None,
                false,
            )
            .await?;
        Ok((
            CallSender {
                link: link.clone(),
                ended: false,
            },
            CallResponse { link: Some(link) },
        ))
    }
}

/// Opens a call on a multiplexed connection, waiting for a free stream:
/// its id.
async fn open_mux(
    shared: &Shared,
    head: &mut OpenHead,
    deadline: Option<Instant>,
    message: &Option<Bytes>,
    end: bool,
) -> Result<u32, SendError> {
    poll_fn(|cx| {
        let mut inner = shared.lock();
        if inner.error.is_some() {
            return Poll::Ready(Err(SendError::Closed));
        }
        // The clock is read only for calls with a deadline: the proto
        // core needs `now` only to arm one.
        let now = match deadline {
            Some(_) => Instant::now(),
            None => *epoch(),
        };
        head.timeout = time_left(deadline, now)?;
        match inner.conn.open(head, message.as_ref(), end, now) {
            Ok(id) => {
                // The caller waits for the reply next, in this same poll
                // (see `unary`): its waker is registered now.
                inner.calls.insert(id, Slot::waiting(cx.waker().clone()));
                inner.flush();
                Poll::Ready(Ok(id))
            }
            Err(SendError::Blocked) => {
                inner.wait_open(cx.waker());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    })
    .await
}

/// The time left until `deadline`, which the server gets: measured when
/// the call opens, not when it was made.
pub(crate) fn time_left(
    deadline: Option<Instant>,
    now: Instant,
) -> Result<Option<Duration>, SendError> {
    match deadline {
        None => Ok(None),
        Some(d) => {
            let left = d.saturating_duration_since(now);
            if left.is_zero() {
                return Err(SendError::Invalid("deadline passed"));
            }
            Ok(Some(left))
        }
    }
}

/// A fixed instant for calls without a deadline (the proto core uses `now`
/// only to arm deadlines).
fn epoch() -> &'static Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now)
}

/// A request's head (metadata, deadline) and its message stream.
pub(crate) fn split_request<S>(request: Request<S>) -> (Request<()>, S) {
    let Request {
        metadata,
        message,
        deadline,
        ..
    } = request;
    let mut head = Request::new(());
    head.metadata = metadata;
    head.deadline = deadline;
    (head, message)
}

/// A request stream as the pump takes it: an item that is an error (a
/// message that could not be encoded) cancels the call with that status.
/// The request messages of a raw streaming call ([`CallChannel`](crate::CallChannel)):
/// an error item cancels the call with that status.
pub type RequestStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

fn request_stream<S>(s: S) -> RequestStream
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    Box::pin(OkStream { inner: s })
}

pin_project_lite::pin_project! {
    /// Wraps each item in `Ok`.
    struct OkStream<S> {
        #[pin]
        inner: S,
    }
}

impl<S: Stream<Item = Bytes>> Stream for OkStream<S> {
    type Item = Result<Bytes, Status>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project().inner.poll_next(cx).map(|o| o.map(Ok))
    }
}

/// Sends every message of `messages`, then half-closes.
async fn pump(mut sender: CallSender, mut messages: RequestStream) -> Result<(), Status> {
    while let Some(m) = poll_fn(|cx| messages.as_mut().poll_next(cx)).await {
        match m {
            Ok(m) => sender.send(m).await?,
            Err(s) => {
                sender.cancel(&s);
                return Err(s);
            }
        }
    }
    sender.finish()
}

/// Waits for the response headers (or an early status) of a call.
async fn response_stream(link: Link) -> Result<Response<Streaming>, Status> {
    let mut stream = Inbox::new(link, true);
    let first = poll_fn(|cx| stream.link.poll_item(cx)).await;
    let headers = match first {
        Some(Item::Headers(h)) => h,
        Some(Item::Close {
            head,
            headers,
            message,
        }) => {
            if head.code != Code::OK {
                // Taking the CLOSE ended the call.
                stream.done = true;
                return Err(status_of(head));
            }
            let h = headers.clone().unwrap_or_default();
            stream.pending = Some(Item::Close {
                head,
                headers,
                message,
            });
            h
        }
        Some(other) => {
            stream.pending = Some(other);
            Metadata::new()
        }
        None => {
            stream.done = true;
            return Err(stream.link.end_status(true));
        }
    };
    Ok(Response {
        headers,
        message: Streaming::new(stream),
        trailers: Metadata::new(),
    })
}

/// Cancels its call if dropped before the call ended.
struct CallGuard {
    link: Link,
    done: bool,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if !self.done {
            self.link.abandon();
        }
    }
}

/// Sends the messages of a call opened with [`Channel::open`].
///
/// Dropping it half-closes the call if [`finish`](CallSender::finish) was
/// not called; dropped while its thread panics (the code producing the
/// messages failed midway), it cancels the call instead, so a cut-off
/// request stream never looks complete to the server.
pub struct CallSender {
    link: Link,
    ended: bool,
}

impl CallSender {
    /// Sends one message, waiting while the server's window is closed.
    pub async fn send(&mut self, message: Bytes) -> Result<(), Status> {
        self.link.send(message, false).await
    }

    /// Cancels the call: the server stops its handler, and the response
    /// side ends with `status` (whose code should not be `OK`).
    pub fn cancel(mut self, status: &Status) {
        self.ended = true;
        self.link.fail(status);
    }

    /// Half-closes: no more messages.
    pub fn finish(&mut self) -> Result<(), Status> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        self.link
            .finish()
            .map_err(|()| Status::cancelled("call already ended"))
    }
}

impl Drop for CallSender {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        if std::thread::panicking() {
            self.link
                .fail(&Status::cancelled("the request stream panicked"));
        } else {
            let _ = self.link.finish();
        }
    }
}

impl fmt::Debug for CallSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallSender")
            .field("id", &self.link.id())
            .finish()
    }
}

/// The response side of a call opened with [`Channel::open`].
pub struct CallResponse {
    link: Option<Link>,
}

impl CallResponse {
    /// Waits for the response headers; the messages follow as a stream.
    pub async fn into_stream(mut self) -> Result<Response<Streaming>, Status> {
        match self.link.take() {
            Some(link) => response_stream(link).await,
            None => Err(Status::cancelled("call already ended")),
        }
    }

    /// Waits for exactly one response message and the status.
    pub async fn into_unary(self) -> Result<Response<Bytes>, Status> {
        let resp = self.into_stream().await?;
        let (headers, mut stream, _) = resp.into_parts();
        let Some(message) = stream.message().await? else {
            return Err(Status::internal("server sent no response message"));
        };
        match stream.message().await? {
            None => Ok(Response {
                headers,
                message,
                trailers: stream.inbox.trailers.take().unwrap_or_default(),
            }),
            Some(_) => Err(Status::internal(
                "server sent more than one response message",
            )),
        }
    }
}

impl Drop for CallResponse {
    fn drop(&mut self) {
        if let Some(link) = &self.link {
            link.abandon();
        }
    }
}

impl fmt::Debug for CallResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallResponse")
            .field("id", &self.link.as_ref().map(Link::id))
            .finish()
    }
}

/// A unary call on raw bytes, the request type of `Channel`'s
/// `tower::Service` implementation.
#[derive(Debug)]
pub struct RawCall {
    /// The method.
    pub method: Method,
    /// The request.
    pub request: Request<Bytes>,
}

impl tower_service::Service<RawCall> for Channel {
    type Response = Response<Bytes>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Bytes>, Status>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: RawCall) -> Self::Future {
        let ch = self.clone();
        Box::pin(async move { ch.unary(call.method, call.request).await })
    }
}
