//! Request, response and message-stream types shared by client and server.

use std::fmt;
use std::future::poll_fn;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use zap_transport::PeerInfo;

use super::conn::Item;
use super::link::Link;
use crate::message::{Message, Owned};
use crate::metadata::Metadata;
use crate::payload::Payload;
use crate::status::{Code, Status};

/// A method path, `/package.Service/Method`. Built from a `&'static str`
/// without allocating.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Method(pub(crate) Bytes);

impl Method {
    /// The path.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl From<&'static str> for Method {
    fn from(s: &'static str) -> Self {
        Method(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for Method {
    fn from(s: String) -> Self {
        Method(Bytes::from(s))
    }
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request: metadata, a message (or a stream of them) and a deadline.
///
/// On the client, [`set_timeout`](Request::set_timeout) or
/// [`set_deadline`](Request::set_deadline) bound the call: the server gets
/// the time left, and both sides end the call with `DEADLINE_EXCEEDED` when
/// it runs out. On the server, [`deadline`](Request::deadline) and
/// [`remaining`](Request::remaining) tell the handler how long it has, to
/// pass on to the calls it makes ([`propagate_deadline`](Request::propagate_deadline)).
pub struct Request<T> {
    pub(crate) metadata: Metadata,
    pub(crate) message: T,
    pub(crate) deadline: Option<Instant>,
    pub(crate) peer: Option<Arc<PeerInfo>>,
    pub(crate) method: Option<Method>,
}

impl<T> Request<T> {
    /// A request with no metadata and no deadline.
    pub fn new(message: T) -> Self {
        Request {
            metadata: Metadata::new(),
            message,
            deadline: None,
            peer: None,
            method: None,
        }
    }

    /// The request metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The request metadata, to add entries.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// The message.
    pub fn get_ref(&self) -> &T {
        &self.message
    }

    /// The message, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.message
    }

    /// The message, by value.
    pub fn into_inner(self) -> T {
        self.message
    }

    /// Bounds the call to `timeout` from now.
    pub fn set_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.deadline = Instant::now().checked_add(timeout);
        self
    }

    /// Bounds the call to end by `deadline` (or not at all).
    pub fn set_deadline(&mut self, deadline: impl Into<Option<Instant>>) -> &mut Self {
        self.deadline = deadline.into();
        self
    }

    /// Client: takes the deadline of an incoming request (server side), so
    /// a call made while handling it ends no later than it.
    pub fn propagate_deadline<U>(&mut self, incoming: &Request<U>) -> &mut Self {
        self.deadline = match (self.deadline, incoming.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self
    }

    /// When the call must end, if it is bounded.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left until the deadline (zero once passed), if bounded.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Server: who is calling (address, TLS certificates).
    pub fn peer(&self) -> Option<&PeerInfo> {
        self.peer.as_deref()
    }

    /// Server: the method called.
    pub fn method(&self) -> Option<&Method> {
        self.method.as_ref()
    }

    /// The same request with another message.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Request<U> {
        Request {
            metadata: self.metadata,
            message: f(self.message),
            deadline: self.deadline,
            peer: self.peer,
            method: self.method,
        }
    }
}

impl Request<Bytes> {
    /// Validates the message as a ZAP message `M` (zero copy); a bad
    /// message is `INVALID_ARGUMENT`.
    pub fn decode<M: Message>(&self) -> Result<Owned<M>, Status> {
        Owned::decode(self.message.clone()).map_err(Status::from)
    }
}

impl<T: fmt::Debug> fmt::Debug for Request<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("metadata", &self.metadata)
            .field("message", &self.message)
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// A response: headers, a message (or a stream of them) and trailers.
pub struct Response<T> {
    pub(crate) headers: Metadata,
    pub(crate) message: T,
    pub(crate) trailers: Metadata,
}

impl<T> Response<T> {
    /// A response with empty headers and trailers.
    pub fn new(message: T) -> Self {
        Response {
            headers: Metadata::new(),
            message,
            trailers: Metadata::new(),
        }
    }

    /// Response headers (sent before the first message).
    pub fn headers(&self) -> &Metadata {
        &self.headers
    }

    /// Response headers, to add entries.
    pub fn headers_mut(&mut self) -> &mut Metadata {
        &mut self.headers
    }

    /// Trailers (sent with the status). For streaming responses the client
    /// reads them from [`Streaming::trailers`] once the stream ends.
    pub fn trailers(&self) -> &Metadata {
        &self.trailers
    }

    /// Trailers, to add entries.
    pub fn trailers_mut(&mut self) -> &mut Metadata {
        &mut self.trailers
    }

    /// The message.
    pub fn get_ref(&self) -> &T {
        &self.message
    }

    /// The message, by value.
    pub fn into_inner(self) -> T {
        self.message
    }

    /// Headers, message and trailers.
    pub fn into_parts(self) -> (Metadata, T, Metadata) {
        (self.headers, self.message, self.trailers)
    }
}

impl Response<Bytes> {
    /// Validates the message as a ZAP message `M` (zero copy).
    pub fn decode<M: Message>(&self) -> Result<Owned<M>, Status> {
        Owned::decode(self.message.clone())
            .map_err(|e| Status::internal(format!("bad response: {e}")))
    }
}

impl<T: fmt::Debug> fmt::Debug for Response<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("headers", &self.headers)
            .field("message", &self.message)
            .field("trailers", &self.trailers)
            .finish()
    }
}

/// The messages of a call as they arrive: the server's responses on the
/// client, the client's requests on the server, each decoded as `T` (see
/// [`Payload`]; `Bytes` by default). Flow control follows the reader: the
/// sender waits while messages sit unread.
///
/// On the client, dropping it before the call ended cancels the call.
pub struct Streaming<T = Bytes> {
    pub(crate) inbox: Inbox,
    _type: PhantomData<fn() -> T>,
}

impl<T> Streaming<T> {
    pub(crate) fn new(inbox: Inbox) -> Self {
        Streaming {
            inbox,
            _type: PhantomData,
        }
    }

    /// The same stream, decoding messages as `U`.
    pub fn into_typed<U>(self) -> Streaming<U> {
        Streaming::new(self.inbox)
    }

    /// Client: trailers, once the stream ended successfully.
    pub fn trailers(&self) -> Option<&Metadata> {
        self.inbox.trailers.as_ref()
    }
}

impl<T: Payload> Streaming<T> {
    /// The next message; `Ok(None)` at the end of a successful stream, the
    /// call's status if it failed.
    pub async fn message(&mut self) -> Result<Option<T>, Status> {
        poll_fn(|cx| self.poll_message(cx)).await
    }

    /// Polls for the next message.
    pub fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<T>, Status>> {
        match self.inbox.poll_message(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(m))) => Poll::Ready(match T::from_payload(m) {
                Ok(v) => Ok(Some(v)),
                // The server sent it: the client has nothing to fix.
                Err(s) if self.inbox.client => Err(Status::internal(format!(
                    "bad response message: {}",
                    s.message()
                ))),
                Err(s) => Err(s),
            }),
            Poll::Ready(Ok(None)) => Poll::Ready(Ok(None)),
            Poll::Ready(Err(s)) => Poll::Ready(Err(s)),
        }
    }
}

impl Streaming<Bytes> {
    /// The next message, validated as a ZAP message `M` (zero copy).
    pub async fn next_as<M: Message + Send + 'static>(
        &mut self,
    ) -> Result<Option<Owned<M>>, Status> {
        match poll_fn(|cx| self.inbox.poll_message(cx)).await? {
            Some(b) => Owned::decode(b).map(Some).map_err(Status::from),
            None => Ok(None),
        }
    }
}

impl<T: Payload> futures_core::Stream for Streaming<T> {
    type Item = Result<T, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().poll_message(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(m))) => Poll::Ready(Some(Ok(m))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(s)) => Poll::Ready(Some(Err(s))),
        }
    }
}

impl<T> fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streaming")
            .field("id", &self.inbox.link.id())
            .field("done", &self.inbox.done)
            .finish()
    }
}

/// The receiving half of a call, untyped: what [`Streaming`] wraps.
pub(crate) struct Inbox {
    pub(crate) link: Link,
    pub(crate) client: bool,
    /// An item read ahead (client: the first message, while waiting for
    /// the headers).
    pub(crate) pending: Option<Item>,
    pub(crate) trailers: Option<Metadata>,
    pub(crate) done: bool,
}

impl Inbox {
    pub(crate) fn new(link: Link, client: bool) -> Self {
        Inbox {
            link,
            client,
            pending: None,
            trailers: None,
            done: false,
        }
    }

    /// Polls for the next message.
    pub(crate) fn poll_message(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, Status>> {
        loop {
            if self.done {
                return Poll::Ready(Ok(None));
            }
            let item = match self.pending.take() {
                Some(i) => i,
                None => match self.link.poll_item(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(i)) => i,
                    Poll::Ready(None) => {
                        self.done = true;
                        return Poll::Ready(Err(self.link.end_status(self.client)));
                    }
                },
            };
            return match item {
                Item::Message(m) => Poll::Ready(Ok(Some(m))),
                Item::End => {
                    self.done = true;
                    Poll::Ready(Ok(None))
                }
                // Headers after the first message are not expected; skip.
                Item::Headers(_) => continue,
                Item::Close {
                    head,
                    headers: _,
                    message,
                } => {
                    if let Some(m) = message {
                        // Deliver the last message now, the status next time.
                        self.pending = Some(Item::Close {
                            head,
                            headers: None,
                            message: None,
                        });
                        return Poll::Ready(Ok(Some(m)));
                    }
                    // Taking the CLOSE ended the call.
                    self.done = true;
                    if head.code == Code::OK {
                        self.trailers = Some(head.trailers);
                        Poll::Ready(Ok(None))
                    } else {
                        Poll::Ready(Err(status_of(head)))
                    }
                }
            };
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        if self.client {
            self.link.abandon();
        }
    }
}

/// The status a CLOSE head carries.
pub(crate) fn status_of(head: crate::proto::CloseHead) -> Status {
    let message = String::from_utf8_lossy(&head.message).into_owned();
    let mut s = Status::with_details(head.code, message, head.details);
    *s.metadata_mut() = head.trailers;
    s
}
