//! The server: [`Router`] of handlers, [`Server`] accept loop and shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::watch;
use tower_service::Service;
use zap_transport::{Listener, PeerInfo};

use super::call::{Inbox, Method, Request, Response, Streaming};
use super::conn::{Answer, Driver, Inner, NewCall, Shared, Spawner, close_now};
use super::link::{Link, too_large_close};
use super::proto_config;
use crate::metadata::Metadata;
use crate::proto::{CloseHead, Connection, OpenHead, Reason, SendError};
use crate::status::{Code, Status};

/// What a shutting-down server's GOAWAY says (and the close that follows
/// once a connection's calls are done).
const SHUTTING_DOWN: &str = "server shutting down";

/// Errors a server's service may return, mapped to a status.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One call as the server's service sees it: method, metadata, deadline,
/// peer, and the means to read requests and send responses. This is the
/// request type of the server's `tower::Service`, so layers see every call.
pub struct ServerCall {
    link: Link,
    method: Method,
    metadata: Metadata,
    deadline: Option<Instant>,
}

impl ServerCall {
    /// The method called.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// When the client wants the call to end by.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Who is calling.
    pub fn peer(&self) -> &PeerInfo {
        self.link.peer()
    }

    /// The incoming messages, and the request parts.
    fn into_request(self) -> (Request<Streaming>, CallWriter) {
        let req = Request {
            metadata: self.metadata,
            message: Streaming::new(Inbox::new(self.link.clone(), false)),
            deadline: self.deadline,
            peer: Some(self.link.peer().clone()),
            method: Some(self.method),
        };
        (
            req,
            CallWriter {
                link: self.link,
                headers_sent: false,
            },
        )
    }

    /// Ends the call with `status` (used for errors before any response).
    pub async fn reject(self, status: Status) {
        let w = CallWriter {
            link: self.link,
            headers_sent: false,
        };
        w.close(&status, None, Metadata::new(), None).await;
    }
}

impl fmt::Debug for ServerCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCall")
            .field("id", &self.link.id())
            .field("method", &self.method)
            .field("metadata", &self.metadata)
            .finish()
    }
}

/// Sends the responses of one server call.
struct CallWriter {
    link: Link,
    headers_sent: bool,
}

impl CallWriter {
    fn send_headers(&mut self, headers: &Metadata) {
        if self.headers_sent {
            return;
        }
        self.headers_sent = true;
        self.link.send_headers(headers);
    }

    async fn send(&mut self, message: Bytes) -> Result<(), Status> {
        self.link.send(message, true).await
    }

    /// Ends the call: status, trailers, and optionally headers and the last
    /// message in the same frame. Waits for flow control if needed.
    async fn close(
        &self,
        status: &Status,
        headers: Option<&Metadata>,
        trailers: Metadata,
        message: Option<Bytes>,
    ) {
        let head = close_head_with(status, trailers);
        self.link.close(&head, headers, message).await;
    }
}

/// The `CLOSE` head for `status`, its metadata added to `trailers`.
fn close_head_with(status: &Status, trailers: Metadata) -> CloseHead {
    CloseHead {
        code: status.code(),
        message: Bytes::copy_from_slice(status.message().as_bytes()),
        details: status.details().clone(),
        trailers: merge(trailers, status.metadata()),
    }
}

fn merge(mut trailers: Metadata, extra: &Metadata) -> Metadata {
    for (k, v) in extra.entries() {
        trailers.push_checked(k.clone(), v.clone());
    }
    trailers
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler = Arc<dyn Fn(ServerCall) -> BoxFuture<Result<(), Infallible>> + Send + Sync>;
type UnaryFn =
    Arc<dyn Fn(Request<Bytes>) -> BoxFuture<Result<Response<Bytes>, Status>> + Send + Sync>;
type BoxStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// What a method path routes to.
#[derive(Clone)]
enum Route {
    /// Runs a call of any kind, given as a [`ServerCall`].
    Call(Handler),
    /// A unary method: `call` as above, and the user's function alone,
    /// which a connection serving the bare router runs on a request that
    /// came whole, without a `ServerCall` (see [`spawner`]).
    Unary { call: Handler, run: UnaryFn },
}

impl Route {
    fn call(&self) -> &Handler {
        match self {
            Route::Call(h) | Route::Unary { call: h, .. } => h,
        }
    }
}

/// Hashes method paths for the route table: FxHash's word-at-a-time
/// mixing. The table holds only the server's own paths, so a client's
/// chosen path cannot make it degrade (there is nothing to flood), and
/// SipHash's cost per call buys nothing here.
#[derive(Clone, Copy, Default)]
struct PathHasher(u64);

impl std::hash::Hasher for PathHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut h = self.0;
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
            h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in words.remainder() {
            h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Routes = HashMap<Bytes, Route, std::hash::BuildHasherDefault<PathHasher>>;

/// Routes calls by method path to handlers. A `tower::Service<ServerCall>`;
/// unknown methods get `UNIMPLEMENTED`.
#[derive(Clone, Default)]
pub struct Router {
    routes: Arc<Routes>,
    duplicates: Vec<String>,
    /// Methods with a protobuf form, for the gRPC fallback.
    #[cfg(feature = "grpc")]
    protobuf: super::grpc::Protobuf,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut paths: Vec<_> = self
            .routes
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        paths.sort();
        f.debug_struct("Router").field("routes", &paths).finish()
    }
}

/// A route was registered twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateRoute(pub Vec<String>);

impl fmt::Display for DuplicateRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "method paths registered twice: {}", self.0.join(", "))
    }
}

impl std::error::Error for DuplicateRoute {}

impl Router {
    /// No routes.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(mut self, path: impl Into<Method>, route: Route) -> Self {
        let path = path.into();
        let routes = Arc::make_mut(&mut self.routes);
        if routes.insert(path.0.clone(), route).is_some() {
            self.duplicates.push(path.as_str().to_owned());
        }
        self
    }

    /// Whether `path` is routed.
    pub(crate) fn contains(&self, path: &[u8]) -> bool {
        self.routes.contains_key(path)
    }

    /// Checks that no path was registered twice.
    pub fn check(&self) -> Result<(), DuplicateRoute> {
        if self.duplicates.is_empty() {
            Ok(())
        } else {
            Err(DuplicateRoute(self.duplicates.clone()))
        }
    }

    /// Records the protobuf forms in `table`, for gRPC clients that send
    /// `application/grpc` (generated services do this in `add_service`).
    #[cfg(feature = "grpc")]
    #[must_use]
    pub fn with_protobuf(mut self, table: &super::grpc::Protobuf) -> Self {
        self.protobuf = self.protobuf.merge(table);
        self
    }

    /// The protobuf forms of this router's methods: what
    /// [`Server::grpc`] needs to answer standard gRPC clients.
    #[cfg(feature = "grpc")]
    pub fn protobuf(&self) -> super::grpc::Protobuf {
        self.protobuf.clone()
    }

    /// Adds every route of `other`.
    pub fn merge(mut self, other: Router) -> Self {
        #[cfg(feature = "grpc")]
        {
            self.protobuf = self.protobuf.merge(&other.protobuf);
        }
        self.duplicates.extend(other.duplicates.iter().cloned());
        for (k, v) in other.routes.iter() {
            let routes = Arc::make_mut(&mut self.routes);
            if routes.insert(k.clone(), v.clone()).is_some() {
                self.duplicates
                    .push(String::from_utf8_lossy(k).into_owned());
            }
        }
        self
    }

    /// Adds a route whose handler is `run(call)`.
    fn route<G, Fut>(self, path: impl Into<Method>, run: G) -> Self
    where
        G: Fn(ServerCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.add(path, Route::Call(handler(run)))
    }

    /// A unary method.
    pub fn unary<F, Fut>(self, path: impl Into<Method>, f: F) -> Self
    where
        F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Bytes>, Status>> + Send + 'static,
    {
        let f = Arc::new(f);
        let g = f.clone();
        let call = handler(move |call| {
            let f = f.clone();
            async move {
                if let Some((req, w)) = single(call).await {
                    respond_unary(w, f(req).await).await;
                }
            }
        });
        let run: UnaryFn = Arc::new(move |req| Box::pin(g(req)));
        self.add(path, Route::Unary { call, run })
    }

    /// A server-streaming method: one request, a stream of responses.
    pub fn server_streaming<F, Fut, S>(self, path: impl Into<Method>, f: F) -> Self
    where
        F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<S>, Status>> + Send + 'static,
        S: Stream<Item = Result<Bytes, Status>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.route(path, move |call| {
            let f = f.clone();
            async move {
                if let Some((req, w)) = single(call).await {
                    respond_stream(w, f(req).await).await;
                }
            }
        })
    }

    /// A client-streaming method: a stream of requests, one response.
    pub fn client_streaming<F, Fut>(self, path: impl Into<Method>, f: F) -> Self
    where
        F: Fn(Request<Streaming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Bytes>, Status>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.route(path, move |call| {
            let f = f.clone();
            async move {
                let (req, w) = call.into_request();
                respond_unary(w, f(req).await).await;
            }
        })
    }

    /// A bidirectional-streaming method.
    pub fn streaming<F, Fut, S>(self, path: impl Into<Method>, f: F) -> Self
    where
        F: Fn(Request<Streaming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<S>, Status>> + Send + 'static,
        S: Stream<Item = Result<Bytes, Status>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.route(path, move |call| {
            let f = f.clone();
            async move {
                let (req, w) = call.into_request();
                respond_stream(w, f(req).await).await;
            }
        })
    }
}

/// The route handler that runs `run(call)`.
fn handler<G, Fut>(run: G) -> Handler
where
    G: Fn(ServerCall) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |call: ServerCall| {
        let fut = run(call);
        Box::pin(async move {
            fut.await;
            Ok(())
        })
    })
}

/// Reads the one request message of a unary or server-streaming call; on
/// failure answers the call with the status and returns `None`.
///
/// The call futures of every unary handler hold this one, so the rare
/// path (a request that did not come whole in the OPEN) is boxed: the
/// common one stays small.
async fn single(call: ServerCall) -> Option<(Request<Bytes>, CallWriter)> {
    match arrived_single(call) {
        Ok(ready) => Some(ready),
        Err(call) => Box::pin(read_single(call)).await,
    }
}

/// The request of a call whose message and end came with its OPEN (the
/// usual unary request); the call back otherwise.
fn arrived_single(call: ServerCall) -> Result<(Request<Bytes>, CallWriter), ServerCall> {
    let Some(message) = call.link.take_single() else {
        return Err(call);
    };
    let ServerCall {
        link,
        method,
        metadata,
        deadline,
    } = call;
    let req = Request {
        metadata,
        message,
        deadline,
        peer: Some(link.peer().clone()),
        method: Some(method),
    };
    let w = CallWriter {
        link,
        headers_sent: false,
    };
    Ok((req, w))
}

/// Reads the one request message as it arrives.
async fn read_single(call: ServerCall) -> Option<(Request<Bytes>, CallWriter)> {
    let (mut req, w) = call.into_request();
    let read = async {
        let Some(message) = req.message.message().await? else {
            return Err(Status::internal("missing request message"));
        };
        if req.message.message().await?.is_some() {
            return Err(Status::internal("more than one request message"));
        }
        Ok(message)
    };
    match read.await {
        Ok(message) => Some((req.map(|_| message), w)),
        Err(s) => {
            w.close(&s, None, Metadata::new(), None).await;
            None
        }
    }
}

async fn respond_unary(w: CallWriter, r: Result<Response<Bytes>, Status>) {
    // One `CLOSE` either way, built before the one wait.
    let (head, headers, message) = unary_close(r);
    w.link.close(&head, headers.as_ref(), message).await;
}

/// The one `CLOSE` that answers a unary call: head, headers, message.
fn unary_close(r: Result<Response<Bytes>, Status>) -> (CloseHead, Option<Metadata>, Option<Bytes>) {
    match r {
        Ok(resp) => (
            CloseHead {
                code: Code::OK,
                message: Bytes::new(),
                details: Bytes::new(),
                trailers: resp.trailers,
            },
            Some(resp.headers),
            Some(resp.message),
        ),
        Err(s) => (close_head_with(&s, Metadata::new()), None, None),
    }
}

async fn respond_stream<S>(mut w: CallWriter, r: Result<Response<S>, Status>)
where
    S: Stream<Item = Result<Bytes, Status>> + Send + 'static,
{
    let resp = match r {
        Ok(r) => r,
        Err(s) => return w.close(&s, None, Metadata::new(), None).await,
    };
    let (headers, stream, trailers) = resp.into_parts();
    w.send_headers(&headers);
    let mut stream: BoxStream = Box::pin(stream);
    while let Some(item) = poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        match item {
            Ok(m) => match w.send(m).await {
                Ok(()) => {}
                // A message the client cannot take ends the call with the
                // status that says so.
                Err(s) if s.code() == Code::RESOURCE_EXHAUSTED => {
                    return w.close(&s, None, trailers, None).await;
                }
                Err(_) => return, // the call is gone (cancelled, connection lost)
            },
            Err(s) => return w.close(&s, None, trailers, None).await,
        }
    }
    w.close(&Status::new(Code::OK, ""), None, trailers, None)
        .await;
}

impl Service<ServerCall> for Router {
    type Response = ();
    type Error = Infallible;
    type Future = BoxFuture<Result<(), Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ServerCall) -> Self::Future {
        match self.routes.get(&call.method.0) {
            Some(r) => r.call()(call),
            None => Box::pin(async move {
                let m = call.method.as_str().to_owned();
                call.reject(Status::unimplemented(format!("unknown method {m}")))
                    .await;
                Ok(())
            }),
        }
    }
}

/// Maps a service error to the status sent to the client.
pub(crate) fn error_status(e: BoxError) -> Status {
    match e.downcast::<Status>() {
        Ok(s) => *s,
        Err(e) => {
            if e.is::<tower::timeout::error::Elapsed>() {
                Status::deadline_exceeded("server timeout elapsed")
            } else if e.is::<tower::load_shed::error::Overloaded>() {
                Status::resource_exhausted("server overloaded")
            } else {
                Status::unknown(e.to_string())
            }
        }
    }
}

/// Where a server accepts connections: a byte-stream [`Listener`]
/// (`zap://`, `zaps://`, `zap+unix://`) or, with the `quic` feature, a
/// [`QuicListener`](zap_transport::quic::QuicListener) (`zap+quic://`).
/// `Server::serve*` take either.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyListener {
    /// TCP, TLS or Unix sockets.
    Stream(Listener),
    /// QUIC.
    #[cfg(feature = "quic")]
    Quic(zap_transport::quic::QuicListener),
}

impl AnyListener {
    /// The address it listens on, as a URL clients can use.
    pub fn local_url(&self) -> zap_transport::Url {
        match self {
            AnyListener::Stream(l) => l.local_url(),
            #[cfg(feature = "quic")]
            AnyListener::Quic(l) => l.local_url(),
        }
    }
}

impl From<Listener> for AnyListener {
    fn from(l: Listener) -> Self {
        AnyListener::Stream(l)
    }
}

#[cfg(feature = "quic")]
impl From<zap_transport::quic::QuicListener> for AnyListener {
    fn from(l: zap_transport::quic::QuicListener) -> Self {
        AnyListener::Quic(l)
    }
}

/// Configures a server.
#[derive(Clone, Debug)]
pub struct Server {
    limits: zap_transport::Limits,
    drain_timeout: Duration,
    #[cfg(feature = "grpc")]
    grpc: Option<super::grpc::GrpcServing>,
    stats: super::ServerStats,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            limits: zap_transport::Limits::default(),
            drain_timeout: Duration::from_secs(30),
            #[cfg(feature = "grpc")]
            grpc: None,
            stats: super::ServerStats::default(),
        }
    }
}

/// The server could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// A method path was registered twice.
    DuplicateRoute(DuplicateRoute),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::DuplicateRoute(d) => d.fmt(f),
        }
    }
}

impl std::error::Error for ServeError {}

impl Server {
    /// A server with default limits and a 30 s drain timeout.
    pub fn builder() -> Self {
        Self::default()
    }

    /// Protocol limits: concurrent calls, frame size, timeouts, keepalive.
    /// (Transport limits are set on the [`Listener`].)
    #[must_use]
    pub fn limits(mut self, limits: zap_transport::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Also serves gRPC clients on the same listeners (feature `grpc`):
    /// plaintext connections are told apart by their first byte, TLS ones
    /// by ALPN (give the listener a
    /// [`ServerTls::with_h2`](zap_transport::ServerTls::with_h2) config).
    /// Methods in `protobuf` (usually [`Router::protobuf`]) answer
    /// `application/grpc`; every method answers `application/grpc+zap`.
    /// See [`grpc`](crate::grpc).
    #[cfg(feature = "grpc")]
    #[must_use]
    pub fn grpc(mut self, protobuf: super::grpc::Protobuf) -> Self {
        self.grpc = Some(super::grpc::GrpcServing {
            protobuf,
            stats: self.stats.clone(),
        });
        self
    }

    /// What the server holds for its peers, by its own accounting (see
    /// [`ServerStats`](super::ServerStats)). Take it before serving.
    pub fn stats(&self) -> super::ServerStats {
        self.stats.clone()
    }

    /// How long shutdown lets calls in flight finish before stopping them.
    #[must_use]
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.drain_timeout = d;
        self
    }

    /// Serves `router` on `listener` until the process ends.
    pub async fn serve(
        self,
        listener: impl Into<AnyListener>,
        router: Router,
    ) -> Result<(), ServeError> {
        router.check().map_err(ServeError::DuplicateRoute)?;
        self.serve_service(listener, router, std::future::pending())
            .await;
        Ok(())
    }

    /// Serves `router` until `shutdown` completes, then drains (see
    /// [`serve_service`](Self::serve_service)).
    pub async fn serve_with_shutdown<F>(
        self,
        listener: impl Into<AnyListener>,
        router: Router,
        shutdown: F,
    ) -> Result<(), ServeError>
    where
        F: Future<Output = ()>,
    {
        router.check().map_err(ServeError::DuplicateRoute)?;
        self.serve_service(listener, router, shutdown).await;
        Ok(())
    }

    /// Serves any `tower::Service<ServerCall>` (a [`Router`] wrapped in
    /// layers, typically) until `shutdown` completes. Then: stop accepting,
    /// send GOAWAY on every connection (new calls get `UNAVAILABLE`), let
    /// calls in flight finish for up to the drain timeout, stop the rest,
    /// and return.
    ///
    /// The accept loop never ends because one connection failed: accept
    /// errors are retried (after a short pause for resource exhaustion).
    ///
    /// Served bare (here or through [`serve`](Self::serve)), a [`Router`]
    /// runs its unary calls on a shorter path: no [`ServerCall`] is made
    /// for a request that arrived whole, which saves about half a
    /// microsecond per small call (`docs/ARCHITECTURE.md`, session 12).
    /// Layers see every call as a `ServerCall`, so a wrapped router takes
    /// the general path; handlers behave the same either way.
    pub async fn serve_service<S, F>(
        self,
        listener: impl Into<AnyListener>,
        service: S,
        shutdown: F,
    ) where
        S: Service<ServerCall, Response = ()> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        F: Future<Output = ()>,
    {
        let (stop_tx, stop_rx) = watch::channel(false);
        // One arm without the `quic` feature.
        #[allow(clippy::infallible_destructuring_match)]
        let listener = match listener.into() {
            AnyListener::Stream(l) => l,
            #[cfg(feature = "quic")]
            AnyListener::Quic(l) => {
                let (limits, drain) = (self.limits, self.drain_timeout);
                return super::quic::serve(l, service, limits, drain, shutdown).await;
            }
        };
        let conns: Arc<ConnSet<Arc<Shared>>> = Arc::new(ConnSet::default());
        // gRPC connections, each with the signal that closes it at the
        // drain deadline.
        #[cfg(feature = "grpc")]
        let h2_conns: Arc<ConnSet<Arc<tokio::sync::Notify>>> = Arc::new(ConnSet::default());
        let limits = self.limits.clone();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                incoming = listener.accept() => match incoming {
                    Ok(incoming) => {
                        // One clone of the service per connection; its
                        // driver clones it again per call, uncontended.
                        let service = service.clone();
                        let limits = limits.clone();
                        let conns = conns.clone();
                        let stop = stop_rx.clone();
                        let stats = self.stats.clone();
                        #[cfg(feature = "grpc")]
                        let (grpc, h2_conns) = (self.grpc.clone(), h2_conns.clone());
                        tokio::spawn(async move {
                            let mut stop_hs = stop.clone();
                            // A connection still in its handshake when the
                            // server stops is dropped, not started.
                            let conn = tokio::select! {
                                c = incoming.handshake() => c,
                                _ = stop_hs.wait_for(|s| *s) => return,
                            };
                            let Ok(conn) = conn else {
                                return;
                            };
                            // The handshake deadline counts from accept on
                            // every path (PROTOCOL.md §2, §12).
                            let accepted = conn.accepted_at().unwrap_or_else(Instant::now);
                            let (stream, peer, guard) = conn.into_parts();
                            #[cfg(feature = "grpc")]
                            let (stream, read_ahead) = match grpc {
                                None => (stream, None),
                                Some(grpc) => match super::sniff::sniff(stream, &peer, accepted + limits.handshake_timeout, &mut stop_hs).await {
                                    super::sniff::Sniffed::Zap(stream, first) => (stream, first),
                                    super::sniff::Sniffed::H2(io) => {
                                        let force = Arc::new(tokio::sync::Notify::new());
                                        let key = h2_conns.insert(force.clone());
                                        let mut stop = stop;
                                        super::grpc::serve_h2(
                                            io,
                                            service,
                                            &grpc,
                                            Arc::new(peer),
                                            &limits,
                                            async move {
                                                let _ = stop.wait_for(|s| *s).await;
                                            },
                                            force.notified(),
                                        )
                                        .await;
                                        drop(guard);
                                        h2_conns.remove(key);
                                        return;
                                    }
                                    super::sniff::Sniffed::Gone => return,
                                },
                            };
                            let proto = Connection::server(proto_config(&limits), accepted);
                            let shared = Shared::new(proto, peer, Some(stats));
                            let key = conns.insert(shared.clone());
                            // Shutdown retires the connections in `conns`
                            // after raising `stop`: one inserted since then
                            // sees the flag.
                            if *stop.borrow() {
                                shared.lock().retire(SHUTTING_DOWN);
                            }
                            #[allow(unused_mut)]
                            let mut driver = Driver::new(shared, stream, Some(spawner(service)), Some(guard));
                            #[cfg(feature = "grpc")]
                            if let Some(first) = read_ahead {
                                driver = driver.read_ahead(&[first]);
                            }
                            driver.await;
                            conns.remove(key);
                        });
                    }
                    Err(e) => {
                        // Per-connection accept failures must not end the
                        // server (RUSTSEC-2024-0376). Pause briefly when the
                        // process is out of descriptors.
                        if is_resource_error(&e) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                },
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        // GOAWAY on every connection; each closes once its calls are done.
        for shared in conns.all() {
            shared.lock().retire(SHUTTING_DOWN);
        }
        let zap = drain(&conns, self.drain_timeout, |shared| {
            close_now(shared, Reason::NO_ERROR, "server shut down");
        });
        #[cfg(feature = "grpc")]
        let zap = async {
            let h2 = drain(&h2_conns, self.drain_timeout, |force| force.notify_one());
            tokio::join!(zap, h2);
        };
        zap.await;
    }
}

/// Shutdown's last steps, once every connection was told to go away: wait
/// up to `timeout` for the connections to end by themselves, `close` the
/// rest, and give those a moment to write their last frames.
pub(crate) async fn drain<T: Clone>(conns: &ConnSet<T>, timeout: Duration, close: impl Fn(&T)) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !conns.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for c in conns.all() {
        close(&c);
    }
    let end = tokio::time::Instant::now() + Duration::from_secs(1);
    while !conns.is_empty() && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn is_resource_error(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE
}

/// The connections a server is serving, for shutdown.
pub(crate) struct ConnSet<T> {
    map: std::sync::Mutex<(u64, HashMap<u64, T>)>,
}

impl<T> Default for ConnSet<T> {
    fn default() -> Self {
        ConnSet {
            map: std::sync::Mutex::new((0, HashMap::new())),
        }
    }
}

impl<T: Clone> ConnSet<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<u64, T>)> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn insert(&self, s: T) -> u64 {
        let mut g = self.lock();
        g.0 += 1;
        let k = g.0;
        g.1.insert(k, s);
        k
    }
    pub(crate) fn remove(&self, k: u64) {
        self.lock().1.remove(&k);
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().1.is_empty()
    }
    pub(crate) fn all(&self) -> Vec<T> {
        self.lock().1.values().cloned().collect()
    }
}

/// Builds what the drivers use to start each call. The call's first step
/// runs right away on the connection's task: a handler that answers
/// without waiting (the common unary case) costs no task and no hop
/// between tasks, and its response is written in the same turn of the
/// driver. A call that has to wait moves to its own task, so it delays
/// nobody; it is stopped when the call is cancelled.
///
/// When the service is a bare [`Router`] (no layers, so nothing needs to
/// see a [`ServerCall`]), a unary call whose request came whole with its
/// OPEN (the usual one) takes a shorter way: the driver hands the request
/// over without a slot, the user's function runs on it, and an answer it
/// gives at once is closed under the lock the driver takes next anyway.
/// Only a call that has to wait gets a slot and a task (`start_unary`).
fn spawner<S>(service: S) -> Spawner
where
    S: Service<ServerCall, Response = ()> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let router = (&service as &dyn std::any::Any)
        .downcast_ref::<Router>()
        .cloned();
    let mut unary = router.map(|r| UnaryRoutes::new(r.routes));
    let takes_whole: super::conn::TakesWhole = match unary.clone() {
        Some(mut routes) => Box::new(move |m: &[u8]| routes.get(m).is_some()),
        None => Box::new(|_: &[u8]| false),
    };
    // The home of the next call's future: a call that ends in its first
    // step leaves it for the next one, so only calls that wait cost an
    // allocation (their task).
    let mut spare = None;
    let start = move |shared: &Arc<Shared>,
                      nc: NewCall,
                      cx: &mut Context<'_>,
                      answers: &mut Vec<Answer>| {
        // A request comes whole only to the unary routes of `unary`
        // (`takes_whole` looks in the same table, which never changes).
        if let Some(request) = nc.request
            && let Some(run) = unary.as_mut().and_then(|r| r.get(&nc.head.method))
        {
            return start_unary(shared, nc.id, nc.head, request, run, cx, answers);
        }
        let mut home = spare.take().unwrap_or_else(|| Box::pin(None));
        let link = Link::Mux {
            shared: shared.clone(),
            id: nc.id,
        };
        let deadline = nc.head.timeout.and_then(|t| Instant::now().checked_add(t));
        let call = ServerCall {
            link: link.clone(),
            method: Method(nc.head.method),
            metadata: nc.head.metadata,
            deadline,
        };
        // Each call asks its own clone (a clone that is not ready keeps
        // its place in whatever queue it waits in), here if it is
        // ready at once, so the call's future holds only what the
        // service returned.
        let mut svc = service.clone();
        let started = match svc.poll_ready(cx) {
            Poll::Ready(Ok(())) => Started::Called(svc.call(call)),
            Poll::Ready(Err(e)) => Started::Failed(e.into()),
            Poll::Pending => Started::Waiting(svc, call),
        };
        home.set(Some(serve_started(started, link)));
        let pending = home
            .as_mut()
            .as_pin_mut()
            .is_some_and(|call| call.poll(cx).is_pending());
        if pending {
            // Wakers registered during this poll point at the driver; the
            // task's first poll registers its own.
            tokio::spawn(Homed(home));
        } else {
            home.set(None);
            spare = Some(home);
        }
    };
    Spawner {
        takes_whole,
        start: Box::new(start),
        finish: finish_answers,
    }
}

/// A router's unary methods, looked up with the last one remembered: a
/// connection's calls mostly go to one method, and comparing its path
/// costs less than hashing it.
#[derive(Clone)]
struct UnaryRoutes {
    routes: Arc<Routes>,
    /// The path last looked up (the table's own key, never a slice of a
    /// read buffer) and its unary function, if it has one.
    last: Option<(Bytes, Option<UnaryFn>)>,
}

impl UnaryRoutes {
    fn new(routes: Arc<Routes>) -> Self {
        UnaryRoutes { routes, last: None }
    }

    /// The unary function of `path`, if it is a unary method.
    fn get(&mut self, path: &[u8]) -> Option<&UnaryFn> {
        if self.last.as_ref().is_none_or(|(k, _)| k.as_ref() != path) {
            self.last = self.routes.get_key_value(path).map(|(k, r)| {
                let run = match r {
                    Route::Unary { run, .. } => Some(run.clone()),
                    Route::Call(_) => None,
                };
                (k.clone(), run)
            });
        }
        self.last.as_ref().and_then(|(_, run)| run.as_ref())
    }
}

/// Runs unary call `id` of a bare router on its whole `request`: the
/// user's function, polled once here. An answer given at once goes to
/// `answers`, for the driver to close under the lock it takes next anyway
/// ([`finish_answers`]). A call that waits gets its slot and goes on in a
/// task of its own, as any call does.
fn start_unary(
    shared: &Arc<Shared>,
    id: u32,
    head: OpenHead,
    request: Bytes,
    run: &UnaryFn,
    cx: &mut Context<'_>,
    answers: &mut Vec<Answer>,
) {
    let request_len = request.len();
    let req = Request {
        metadata: head.metadata,
        message: request,
        deadline: head.timeout.and_then(|t| Instant::now().checked_add(t)),
        peer: Some(shared.peer.clone()),
        method: Some(Method(head.method)),
    };
    let mut answer = run(req);
    let first = std::panic::catch_unwind(AssertUnwindSafe(|| answer.as_mut().poll(cx)));
    match first.unwrap_or_else(|_| Poll::Ready(Err(panicked()))) {
        Poll::Ready(r) => {
            let (head, headers, message) = unary_close(r);
            answers.push(Answer {
                id,
                request_len,
                head,
                headers,
                message,
            });
        }
        Poll::Pending => {
            let mut inner = shared.lock();
            inner.conn.consumed(id, request_len);
            if inner.adopt(id) {
                drop(inner);
                let link = Link::Mux {
                    shared: shared.clone(),
                    id,
                };
                let w = CallWriter {
                    link: link.clone(),
                    headers_sent: false,
                };
                tokio::spawn(serve_alone(link, async move {
                    respond_unary(w, answer.await).await;
                }));
            }
        }
    }
}

/// Closes the calls [`start_unary`] answered, under the driver's lock. An
/// answer that must wait for the window gets its slot and a task that
/// sends it once it may.
fn finish_answers(shared: &Arc<Shared>, inner: &mut Inner, answers: &mut Vec<Answer>) {
    for a in answers.drain(..) {
        let Answer {
            id,
            request_len,
            head,
            headers,
            mut message,
        } = a;
        inner.conn.consumed(id, request_len);
        match inner.conn.close(id, &head, headers.as_ref(), &mut message) {
            Ok(()) => {}
            Err(SendError::Blocked) => {
                if inner.adopt(id) {
                    let link = Link::Mux {
                        shared: shared.clone(),
                        id,
                    };
                    let l = link.clone();
                    tokio::spawn(serve_alone(link, async move {
                        l.close(&head, headers.as_ref(), message).await;
                    }));
                }
            }
            Err(SendError::TooLarge { .. }) => {
                let _ = inner.conn.close(id, &too_large_close(), None, &mut None);
            }
            Err(_) => {} // cancelled already, or the connection closed
        }
    }
}

/// The rest of a call started by [`start_unary`], in its own task: `work`
/// until it ends or the call is cancelled, then the call's end.
async fn serve_alone(link: Link, work: impl Future<Output = ()>) {
    let cancelled = poll_fn(|cx| link.poll_cancelled(cx));
    let result = tokio::select! {
        biased;
        r = CatchPanic::new(work) => Ok(r.map_err(BoxError::from)),
        code = cancelled => Err(code),
    };
    link.end_server_call(result).await;
}

/// The status of a call whose handler (or a layer in front of it)
/// panicked.
fn panicked() -> Status {
    Status::internal("handler panicked")
}

pin_project_lite::pin_project! {
    /// A call's work with a panic in it turned into the call's failure
    /// ([`panicked`]): the call ends with `INTERNAL`, and the connection,
    /// its other calls and the server go on. Uncaught, a panic in a call's
    /// first step would end the connection's driver (where that step runs),
    /// and one in a call's own task would leave the call open, its stream
    /// counted against the connection's limit, until the client gave up.
    struct CatchPanic<F> {
        #[pin]
        inner: F,
    }
}

impl<F> CatchPanic<F> {
    fn new(inner: F) -> Self {
        CatchPanic { inner }
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Status>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(p) => p.map(Ok),
            Err(_) => Poll::Ready(Err(panicked())),
        }
    }
}

/// A call's future in its [`spawner`] home, as a task.
struct Homed<F>(Pin<Box<Option<F>>>);

impl<F: Future<Output = ()>> Future for Homed<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.0.as_mut().as_pin_mut() {
            Some(call) => call.poll(cx),
            None => Poll::Ready(()),
        }
    }
}

/// A call's service: called already, failed, or to be called once ready.
enum Started<S: Service<ServerCall>> {
    Called(S::Future),
    Failed(BoxError),
    Waiting(S, ServerCall),
}

/// Runs the service for one call until it ends or is cancelled, then ends
/// the call if the service left it open. `deadline` is the one the client
/// gave (`head.timeout` from when the call arrived).
#[cfg(any(feature = "quic", feature = "grpc"))]
pub(crate) async fn serve_call<S>(svc: S, link: Link, head: OpenHead, deadline: Option<Instant>)
where
    S: Service<ServerCall, Response = ()> + Send,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    let call = ServerCall {
        link: link.clone(),
        method: Method(head.method),
        metadata: head.metadata,
        deadline,
    };
    serve_started(Started::Waiting(svc, call), link).await;
}

/// [`serve_call`] for a service that may have been called already.
async fn serve_started<S>(started: Started<S>, link: Link)
where
    S: Service<ServerCall, Response = ()> + Send,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    let work = async {
        match started {
            Started::Called(f) => f.await.map_err(Into::into),
            Started::Failed(e) => Err(e),
            Started::Waiting(mut svc, call) => {
                if let Err(e) = poll_fn(|cx| svc.poll_ready(cx)).await {
                    return Err(e.into());
                }
                svc.call(call).await.map_err(Into::into)
            }
        }
    };
    let cancelled = poll_fn(|cx| link.poll_cancelled(cx));
    // The work first: a handler that answers at once (the usual unary
    // call) never looks at cancellation.
    let result = tokio::select! {
        biased;
        r = CatchPanic::new(work) => Ok(r.unwrap_or_else(|s| Err(BoxError::from(s)))),
        code = cancelled => Err(code),
    };
    link.end_server_call(result).await;
}
