//! Typed services: what `#[zap::service]` and `zap-build` generate code
//! against. A service trait's methods take `Request<A>` and return
//! `Response<B>` for [`Payload`] types `A` and `B`; the helpers here turn
//! them into raw [`Router`] routes on the server and raw [`Channel`] calls on
//! the client.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;

use super::call::{Method, Request, Response, Streaming};
use super::client::{Channel, RequestStream, split_request};
use super::server::{DuplicateRoute, Router};
use crate::payload::Payload;
use crate::status::Status;

/// The response stream of a server-streaming or bidirectional method.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A message or a [`Request`] around it: typed client methods accept both.
pub trait IntoRequest<T>: sealed::Sealed<T> {
    /// Wraps a bare message in a request with no metadata and no deadline.
    fn into_request(self) -> Request<T>;
}

impl<T> IntoRequest<T> for T {
    fn into_request(self) -> Request<T> {
        Request::new(self)
    }
}

impl<T> IntoRequest<T> for Request<T> {
    fn into_request(self) -> Request<T> {
        self
    }
}

mod sealed {
    pub trait Sealed<T> {}
    impl<T> Sealed<T> for T {}
    impl<T> Sealed<T> for super::Request<T> {}
}

/// A service that adds its methods to a [`Router`]: the `{Name}Server`
/// types that `#[zap::service]` and `zap-build` generate.
pub trait NamedService {
    /// The full service name, `package.Service`.
    const NAME: &'static str;
    /// The method paths the service serves, `/package.Service/Method`.
    const METHODS: &'static [&'static str];
    /// Adds a route for every method.
    fn add_routes(self, router: Router) -> Router;
}

impl Router {
    /// Adds every method of a generated service. A method path that is
    /// already routed is an error, reported here rather than at serve time.
    pub fn add_service<S: NamedService>(self, service: S) -> Result<Self, DuplicateRoute> {
        let taken: Vec<String> = S::METHODS
            .iter()
            .filter(|m| self.contains(m.as_bytes()))
            .map(|m| (*m).to_owned())
            .collect();
        if !taken.is_empty() {
            return Err(DuplicateRoute(taken));
        }
        let router = service.add_routes(self);
        router.check()?;
        Ok(router)
    }
}

impl<T> Response<T> {
    /// Maps the message, keeping headers and trailers.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Response<U> {
        Response {
            headers: self.headers,
            message: f(self.message),
            trailers: self.trailers,
        }
    }

    fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Response<U>, E> {
        Ok(Response {
            headers: self.headers,
            message: f(self.message)?,
            trailers: self.trailers,
        })
    }
}

impl<T> Request<T> {
    fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Request<U>, E> {
        Ok(Request {
            metadata: self.metadata,
            message: f(self.message)?,
            deadline: self.deadline,
            peer: self.peer,
            method: self.method,
        })
    }
}

// ---------------------------------------------------------------------------
// Glue for generated code (reached through `zap::codegen`).

/// Decodes a request's message; a bad message is `INVALID_ARGUMENT`.
fn decode_request<A: Payload>(req: Request<Bytes>) -> Result<Request<A>, Status> {
    req.try_map(A::from_payload)
}

fn encode_response<B: Payload>(resp: Response<B>) -> Result<Response<Bytes>, Status> {
    resp.try_map(B::into_payload)
}

/// The client's view of a response message the server got wrong.
fn decode_response<B: Payload>(resp: Response<Bytes>) -> Result<Response<B>, Status> {
    resp.try_map(B::from_payload)
        .map_err(|s| Status::internal(format!("bad response message: {}", s.message())))
}

fn encode_request<A: Payload>(req: Request<A>) -> Result<Request<Bytes>, Status> {
    req.try_map(A::into_payload)
}

pin_project_lite::pin_project! {
    /// Encodes each item of a typed stream.
    struct Encode<S> {
        #[pin]
        inner: S,
    }
}

impl<S, T> Stream for Encode<S>
where
    S: Stream<Item = Result<T, Status>>,
    T: Payload,
{
    type Item = Result<Bytes, Status>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project()
            .inner
            .poll_next(cx)
            .map(|o| o.map(|r| r.and_then(T::into_payload)))
    }
}

pin_project_lite::pin_project! {
    /// Encodes each request message of a client stream.
    struct EncodeEach<S> {
        #[pin]
        inner: S,
    }
}

impl<S> Stream for EncodeEach<S>
where
    S: Stream,
    S::Item: Payload,
{
    type Item = Result<Bytes, Status>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project()
            .inner
            .poll_next(cx)
            .map(|o| o.map(Payload::into_payload))
    }
}

/// Routes a unary method.
pub fn route_unary<A, B, F, Fut>(router: Router, path: &'static str, f: F) -> Router
where
    A: Payload,
    B: Payload,
    F: Fn(Request<A>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Status>> + Send + 'static,
{
    router.unary(path, move |req| {
        let fut = decode_request(req).map(&f);
        async move { encode_response(fut?.await?) }
    })
}

/// Routes a server-streaming method.
pub fn route_server_streaming<A, B, F, Fut>(router: Router, path: &'static str, f: F) -> Router
where
    A: Payload,
    B: Payload,
    F: Fn(Request<A>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<BoxStream<B>>, Status>> + Send + 'static,
{
    router.server_streaming(path, move |req| {
        let fut = decode_request(req).map(&f);
        async move { Ok(fut?.await?.map(|inner| Encode { inner })) }
    })
}

/// Routes a client-streaming method.
pub fn route_client_streaming<A, B, F, Fut>(router: Router, path: &'static str, f: F) -> Router
where
    A: Payload,
    B: Payload,
    F: Fn(Request<Streaming<A>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Status>> + Send + 'static,
{
    router.client_streaming(path, move |req| {
        let fut = f(req.map(Streaming::into_typed));
        async move { encode_response(fut.await?) }
    })
}

/// Routes a bidirectional-streaming method.
pub fn route_streaming<A, B, F, Fut>(router: Router, path: &'static str, f: F) -> Router
where
    A: Payload,
    B: Payload,
    F: Fn(Request<Streaming<A>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<BoxStream<B>>, Status>> + Send + 'static,
{
    router.streaming(path, move |req| {
        let fut = f(req.map(Streaming::into_typed));
        async move { Ok(fut.await?.map(|inner| Encode { inner })) }
    })
}

/// What the generated `{Service}Client`s call through: a ZAP [`Channel`],
/// or (feature `grpc`) a `GrpcChannel` to a gRPC server. Raw calls with
/// message bytes; the typed clients encode and decode around them.
pub trait CallChannel: Clone + Send + Sync + 'static {
    /// A unary call.
    fn unary(
        &self,
        path: &'static str,
        request: Request<Bytes>,
    ) -> impl Future<Output = Result<Response<Bytes>, Status>> + Send;

    /// A server-streaming call.
    fn server_streaming(
        &self,
        path: &'static str,
        request: Request<Bytes>,
    ) -> impl Future<Output = Result<Response<Streaming<Bytes>>, Status>> + Send;

    /// A client-streaming call. An error in the request stream cancels
    /// the call and is its result.
    fn client_streaming(
        &self,
        path: &'static str,
        request: Request<RequestStream>,
    ) -> impl Future<Output = Result<Response<Bytes>, Status>> + Send;

    /// A bidirectional call; errors in the request stream as above.
    fn streaming(
        &self,
        path: &'static str,
        request: Request<RequestStream>,
    ) -> impl Future<Output = Result<Response<Streaming<Bytes>>, Status>> + Send;
}

impl CallChannel for Channel {
    async fn unary(
        &self,
        path: &'static str,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, Status> {
        Channel::unary(self, path, request).await
    }

    async fn server_streaming(
        &self,
        path: &'static str,
        request: Request<Bytes>,
    ) -> Result<Response<Streaming<Bytes>>, Status> {
        Channel::server_streaming(self, path, request).await
    }

    async fn client_streaming(
        &self,
        path: &'static str,
        request: Request<RequestStream>,
    ) -> Result<Response<Bytes>, Status> {
        let (head, messages) = split_request(request);
        let (sender, response) = self.open(path, head).await?;
        self.finish_client_streaming(sender, response, messages)
            .await
    }

    async fn streaming(
        &self,
        path: &'static str,
        request: Request<RequestStream>,
    ) -> Result<Response<Streaming<Bytes>>, Status> {
        let (head, messages) = split_request(request);
        self.streaming_raw(Method::from(path), head, messages).await
    }
}

/// Calls a unary method.
pub async fn call_unary<C: CallChannel, A: Payload, B: Payload>(
    channel: &C,
    path: &'static str,
    request: Request<A>,
) -> Result<Response<B>, Status> {
    let resp = channel.unary(path, encode_request(request)?).await?;
    decode_response(resp)
}

/// Calls a server-streaming method.
pub async fn call_server_streaming<C: CallChannel, A: Payload, B: Payload>(
    channel: &C,
    path: &'static str,
    request: Request<A>,
) -> Result<Response<Streaming<B>>, Status> {
    let resp = channel
        .server_streaming(path, encode_request(request)?)
        .await?;
    Ok(resp.map(Streaming::into_typed))
}

/// Calls a client-streaming method.
pub async fn call_client_streaming<C, S, B>(
    channel: &C,
    path: &'static str,
    request: Request<S>,
) -> Result<Response<B>, Status>
where
    C: CallChannel,
    S: Stream + Send + 'static,
    S::Item: Payload,
    B: Payload,
{
    let request = request.map(|inner| Box::pin(EncodeEach { inner }) as RequestStream);
    let resp = channel.client_streaming(path, request).await?;
    decode_response(resp)
}

/// Calls a bidirectional-streaming method.
pub async fn call_streaming<C, S, B>(
    channel: &C,
    path: &'static str,
    request: Request<S>,
) -> Result<Response<Streaming<B>>, Status>
where
    C: CallChannel,
    S: Stream + Send + 'static,
    S::Item: Payload,
    B: Payload,
{
    let request = request.map(|inner| Box::pin(EncodeEach { inner }) as RequestStream);
    let resp = channel.streaming(path, request).await?;
    Ok(resp.map(Streaming::into_typed))
}

/// A service's request stream as a client call's: what the generated
/// clients' service-trait impls forward (a proxy passes the bytes on).
fn forward_requests<A>(request: Request<Streaming<A>>) -> Request<RequestStream> {
    request.map(|s| Box::pin(s.into_typed::<Bytes>()) as RequestStream)
}

/// Forwards a client-streaming call as it is: a proxy's service method.
pub async fn forward_client_streaming<C: CallChannel, A, B: Payload>(
    channel: &C,
    path: &'static str,
    request: Request<Streaming<A>>,
) -> Result<Response<B>, Status> {
    let resp = channel
        .client_streaming(path, forward_requests(request))
        .await?;
    decode_response(resp)
}

/// Forwards a bidirectional call; the responses as the service's stream.
pub async fn forward_streaming<C: CallChannel, A, B: Payload>(
    channel: &C,
    path: &'static str,
    request: Request<Streaming<A>>,
) -> Result<Response<BoxStream<B>>, Status> {
    let resp = channel.streaming(path, forward_requests(request)).await?;
    Ok(resp.map(|s| Box::pin(s.into_typed::<B>()) as BoxStream<B>))
}

/// A server-streaming response as the service's stream.
pub fn box_responses<B: Payload>(response: Response<Streaming<B>>) -> Response<BoxStream<B>> {
    response.map(|s| Box::pin(s) as BoxStream<B>)
}
