//! Calling gRPC servers: [`GrpcChannel`] carries the raw calls of the
//! generated clients over a tonic `Channel`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_core::Stream;
use http::header::{CONTENT_TYPE, HeaderValue};
use tokio::sync::oneshot;

use super::server::ZAP_CONTENT_TYPE;
use super::{Protobuf, Transcode, WireCodec, from_tonic, metadata_from_tonic, to_tonic_metadata};
use crate::rt::call::{Inbox, Request, Response, Streaming};
use crate::rt::client::{RequestStream, split_request};
use crate::rt::conn::Item;
use crate::rt::link::{Link, close_head_of};
use crate::rt::service::CallChannel;
use crate::status::{Code, Status};

/// A gRPC client connection for the generated `{Service}Client`s: the
/// same typed calls as over a ZAP [`Channel`](crate::Channel), carried by
/// a tonic `Channel` (HTTP/2) to any gRPC server.
///
/// - [`GrpcChannel::protobuf`]: standard gRPC (`application/grpc`), for
///   servers in any language. Messages are converted between ZAP and
///   protobuf with the table `zap-build` generates.
/// - [`GrpcChannel::zap`]: `application/grpc+zap`, ZAP messages as they
///   are, for a zap server's gRPC port (no conversion; works for
///   `#[zap::service]` services, which have no protobuf form).
///
/// A request deadline is sent as `grpc-timeout` and also enforced here.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct GrpcChannel {
    channel: tonic::transport::Channel,
    protobuf: Option<Protobuf>,
    max_message: usize,
}

impl GrpcChannel {
    /// Standard gRPC with protobuf messages, converted with `protobuf`.
    /// Methods not in the table fail with `UNIMPLEMENTED` before sending.
    pub fn protobuf(channel: tonic::transport::Channel, protobuf: Protobuf) -> Self {
        GrpcChannel {
            channel,
            protobuf: Some(protobuf),
            max_message: 16 << 20,
        }
    }

    /// gRPC with ZAP messages (`application/grpc+zap`).
    pub fn zap(channel: tonic::transport::Channel) -> Self {
        GrpcChannel {
            channel,
            protobuf: None,
            max_message: 16 << 20,
        }
    }

    /// The largest message sent or received (default 16 MiB).
    #[must_use]
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    fn transcode(&self, path: &str) -> Result<Option<Transcode>, Status> {
        match &self.protobuf {
            None => Ok(None),
            Some(p) => match p.get(path) {
                Some(m) => Ok(Some(m.client)),
                None => Err(Status::unimplemented(format!(
                    "{path} has no protobuf form in this channel's table"
                ))),
            },
        }
    }

    fn grpc(&self) -> tonic::client::Grpc<WireService> {
        let svc = WireService {
            inner: self.channel.clone(),
            zap: self.protobuf.is_none(),
        };
        tonic::client::Grpc::new(svc)
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message)
    }

    /// Runs one call: the request stream `messages` (errors in it cancel
    /// the call with that status), the response as a stream.
    async fn call(
        &self,
        path: &'static str,
        head: Request<()>,
        messages: RequestStream,
    ) -> Result<Response<Streaming<Bytes>>, Status> {
        let codec = WireCodec {
            transcode: self.transcode(path)?,
            client: true,
        };
        let mut grpc = self.grpc();
        let deadline = head.deadline();
        let (failed_tx, failed_rx) = oneshot::channel();
        let messages = Outgoing {
            inner: messages,
            failed: Some(failed_tx),
        };
        let mut req = tonic::Request::new(messages);
        // hyper resets an HTTP/2 stream whose response was dropped only
        // once its request body is done; tonic's cancellation handle ends
        // an open request stream with a reset (CANCEL) instead.
        let cancel = req.cancellation_handle();
        // Dropping this call before the response cancels it.
        let guard = CancelOnDrop(Some(cancel.clone()));
        *req.metadata_mut() = to_tonic_metadata(head.metadata());
        if let Some(d) = deadline {
            req.set_timeout(d.saturating_duration_since(Instant::now()));
        }
        let path = http::uri::PathAndQuery::from_static(path);
        let call = async {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(format!("gRPC connection failed: {e}")))?;
            grpc.streaming(req, path, codec).await.map_err(from_tonic)
        };
        let failed = async {
            match failed_rx.await {
                Ok(s) => s,
                Err(_) => std::future::pending().await,
            }
        };
        let started = async {
            tokio::select! {
                r = call => r,
                s = failed => Err(s),
            }
        };
        let resp = match deadline {
            None => started.await?,
            Some(d) => tokio::time::timeout_at(d.into(), started)
                .await
                .map_err(|_| deadline_exceeded())?
                .map_err(|s| past(deadline, s))?,
        };
        guard.disarm();
        let (headers, stream, _) = resp.into_parts();
        let headers = metadata_from_tonic(&headers)?;
        let link = Link::GrpcClient(Arc::new(GrpcResponse {
            state: Mutex::new(ResponseState {
                stream: Some(Box::pin(stream)),
                timer: deadline.map(|d| Box::pin(tokio::time::sleep_until(d.into()))),
            }),
            deadline,
            cancel,
        }));
        let mut resp = Response::new(Streaming::new(Inbox::new(link, true)));
        *resp.headers_mut() = headers;
        Ok(resp)
    }
}

impl CallChannel for GrpcChannel {
    async fn unary(
        &self,
        path: &'static str,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, Status> {
        let (head, message) = split_request(request);
        let one: RequestStream = Box::pin(Once(Some(Ok(message))));
        let resp = self.call(path, head, one).await?;
        single(resp).await
    }

    async fn server_streaming(
        &self,
        path: &'static str,
        request: Request<Bytes>,
    ) -> Result<Response<Streaming<Bytes>>, Status> {
        let (head, message) = split_request(request);
        let one: RequestStream = Box::pin(Once(Some(Ok(message))));
        self.call(path, head, one).await
    }

    async fn client_streaming(
        &self,
        path: &'static str,
        request: Request<RequestStream>,
    ) -> Result<Response<Bytes>, Status> {
        let (head, messages) = split_request(request);
        let resp = self.call(path, head, messages).await?;
        single(resp).await
    }

    async fn streaming(
        &self,
        path: &'static str,
        request: Request<RequestStream>,
    ) -> Result<Response<Streaming<Bytes>>, Status> {
        let (head, messages) = split_request(request);
        self.call(path, head, messages).await
    }
}

/// The one message of a unary response, then its trailers.
async fn single(resp: Response<Streaming<Bytes>>) -> Result<Response<Bytes>, Status> {
    let (headers, mut stream, _) = resp.into_parts();
    let Some(message) = stream.message().await? else {
        return Err(Status::internal("missing response message"));
    };
    if stream.message().await?.is_some() {
        return Err(Status::internal("more than one response message"));
    }
    let mut resp = Response::new(message);
    *resp.headers_mut() = headers;
    if let Some(t) = stream.trailers() {
        *resp.trailers_mut() = t.clone();
    }
    Ok(resp)
}

struct Once(Option<Result<Bytes, Status>>);

impl Stream for Once {
    type Item = Result<Bytes, Status>;
    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.take())
    }
}

/// Cancels the call if the call future is dropped before its response.
struct CancelOnDrop(Option<tonic::CancellationHandle>);

impl CancelOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.cancel();
        }
    }
}

/// The request messages for tonic; an error item stops the stream and
/// reports the status, which ends the call.
struct Outgoing {
    inner: RequestStream,
    failed: Option<oneshot::Sender<Status>>,
}

impl Stream for Outgoing {
    type Item = Bytes;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.failed.is_none() {
            return Poll::Pending;
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(m))) => Poll::Ready(Some(m)),
            Poll::Ready(Some(Err(s))) => {
                if let Some(tx) = self.failed.take() {
                    let _ = tx.send(s);
                }
                // Never end: an end would look like a complete request.
                Poll::Pending
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn deadline_exceeded() -> Status {
    Status::deadline_exceeded("deadline exceeded")
}

/// A call that failed once its deadline had passed failed for that reason,
/// whatever the transport says (a server may reset the stream with CANCEL
/// when its copy of the deadline fires first).
fn past(deadline: Option<Instant>, status: Status) -> Status {
    match deadline {
        Some(d) if Instant::now() >= d => deadline_exceeded(),
        _ => status,
    }
}

/// The response side of a gRPC client call, read through a `Link` so that
/// it is a [`Streaming`] like a ZAP response. The deadline bounds the
/// whole call, not only its start: when it fires, the stream is reset and
/// the call ends with `DEADLINE_EXCEEDED`.
pub(crate) struct GrpcResponse {
    state: Mutex<ResponseState>,
    deadline: Option<Instant>,
    cancel: tonic::CancellationHandle,
}

struct ResponseState {
    stream: Option<Pin<Box<tonic::codec::Streaming<Bytes>>>>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl GrpcResponse {
    pub(crate) fn poll_item(&self, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let g = &mut *g;
        let Some(stream) = g.stream.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(t) = g.timer.as_mut()
            && t.as_mut().poll(cx).is_ready()
        {
            g.stream = None;
            self.cancel.clone().cancel();
            return Poll::Ready(Some(close(deadline_exceeded())));
        }
        let item = match stream.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(m))) => return Poll::Ready(Some(Item::Message(m))),
            Poll::Ready(Some(Err(s))) => close(past(self.deadline, from_tonic(s))),
            Poll::Ready(None) => {
                // The stream ended with an OK status; its trailers are in.
                let trailers = {
                    let fut = stream.trailers();
                    let mut fut = std::pin::pin!(fut);
                    match fut.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(r) => r,
                    }
                };
                match trailers {
                    Ok(t) => {
                        let mut ok = Status::new(Code::OK, "");
                        if let Some(t) = t {
                            match metadata_from_tonic(&t) {
                                Ok(m) => *ok.metadata_mut() = m,
                                Err(s) => ok = s,
                            }
                        }
                        close(ok)
                    }
                    Err(s) => close(past(self.deadline, from_tonic(s))),
                }
            }
        };
        g.stream = None;
        Poll::Ready(Some(item))
    }

    /// The response stream was dropped before its end: drop tonic's,
    /// which resets the HTTP/2 stream (CANCEL).
    pub(crate) fn abandon(&self) {
        if self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stream
            .take()
            .is_some()
        {
            self.cancel.clone().cancel();
        }
    }
}

fn close(status: Status) -> Item {
    Item::Close {
        head: close_head_of(&status),
        headers: None,
        message: None,
    }
}

/// The tonic `Channel`, setting the content type of ZAP-message calls.
#[derive(Clone)]
struct WireService {
    inner: tonic::transport::Channel,
    zap: bool,
}

impl tower_service::Service<http::Request<tonic::body::Body>> for WireService {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = <tonic::transport::Channel as tower_service::Service<
        http::Request<tonic::body::Body>,
    >>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        if self.zap {
            req.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(ZAP_CONTENT_TYPE));
        }
        self.inner.call(req)
    }
}
