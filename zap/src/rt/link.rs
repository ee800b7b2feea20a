//! One call's tie to its connection: what a call's halves (the client's
//! sender and response reader, the server's request reader and response
//! writer) do, whichever connection carries the call.
//!
//! - `Mux`: a call multiplexed with others on one byte stream (`zap://`,
//!   `zaps://`, `zap+unix://`): the protocol core behind the connection's
//!   lock, moved by its driver task.
//! - `Quic`: a call on its own QUIC stream (`zap+quic://`, PROTOCOL.md
//!   §11): each half reads or writes its stream directly.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use zap_transport::PeerInfo;

use super::conn::{Item, Shared};
use super::server::{BoxError, error_status};
use crate::metadata::Metadata;
use crate::proto::{CloseHead, SendError};
use crate::status::{Code, Status};

#[derive(Clone)]
pub(crate) enum Link {
    Mux {
        shared: Arc<Shared>,
        id: u32,
    },
    #[cfg(feature = "quic")]
    Quic(Arc<super::quic::QCall>),
    /// Server: a gRPC request on the fallback's HTTP/2 connection.
    #[cfg(feature = "grpc")]
    Grpc(Arc<super::grpc::GrpcCall>),
    /// Client: the response side of a call through a `GrpcChannel`.
    #[cfg(feature = "grpc")]
    GrpcClient(Arc<super::grpc::GrpcResponse>),
}

/// Who is at the other end of a gRPC client call: not tracked.
#[cfg(feature = "grpc")]
fn no_peer() -> &'static Arc<PeerInfo> {
    static PEER: std::sync::OnceLock<Arc<PeerInfo>> = std::sync::OnceLock::new();
    PEER.get_or_init(Arc::default)
}

impl Link {
    /// The call's number on its connection, for debug output.
    pub(crate) fn id(&self) -> u64 {
        match self {
            Link::Mux { id, .. } => u64::from(*id),
            #[cfg(feature = "quic")]
            Link::Quic(c) => c.index(),
            #[cfg(feature = "grpc")]
            Link::Grpc(c) => c.index(),
            #[cfg(feature = "grpc")]
            Link::GrpcClient(_) => 0,
        }
    }

    /// Who is at the other end.
    pub(crate) fn peer(&self) -> &Arc<PeerInfo> {
        match self {
            Link::Mux { shared, .. } => &shared.peer,
            #[cfg(feature = "quic")]
            Link::Quic(c) => c.peer(),
            #[cfg(feature = "grpc")]
            Link::Grpc(c) => c.peer(),
            #[cfg(feature = "grpc")]
            Link::GrpcClient(_) => no_peer(),
        }
    }

    /// The next item the peer sent; `None` once nothing more will come
    /// (see [`end_status`](Self::end_status) for why).
    pub(crate) fn poll_item(&self, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        match self {
            Link::Mux { shared, id } => shared.lock().poll_item(*id, cx),
            #[cfg(feature = "quic")]
            Link::Quic(c) => c.poll_item(cx),
            #[cfg(feature = "grpc")]
            Link::Grpc(c) => c.poll_item(cx),
            #[cfg(feature = "grpc")]
            Link::GrpcClient(c) => c.poll_item(cx),
        }
    }

    /// Why the items ended without a `CLOSE` (client) or an end (server).
    pub(crate) fn end_status(&self, client: bool) -> Status {
        match self {
            Link::Mux { shared, id } => {
                let inner = shared.lock();
                if client {
                    return inner.conn_status();
                }
                match inner.calls.get(id).and_then(|s| s.cancelled) {
                    Some(Code::DEADLINE_EXCEEDED) => Status::deadline_exceeded("deadline exceeded"),
                    Some(_) => Status::cancelled("call cancelled by the client"),
                    None if inner.error.is_some() => inner.conn_status(),
                    None => Status::cancelled("call cancelled"),
                }
            }
            #[cfg(feature = "quic")]
            Link::Quic(c) => c.end_status(),
            #[cfg(feature = "grpc")]
            Link::Grpc(c) => c.end_status(),
            #[cfg(feature = "grpc")]
            Link::GrpcClient(_) => Status::unavailable("gRPC response ended without a status"),
        }
    }

    /// Client: the call is abandoned (its reader or guard dropped before
    /// the end): cancel it on the wire and forget it.
    pub(crate) fn abandon(&self) {
        match self {
            Link::Mux { shared, id } => {
                let mut inner = shared.lock();
                if inner.calls.contains_key(id) {
                    inner.conn.cancel(*id, Code::CANCELLED);
                    inner.flush();
                }
                inner.remove_call(*id);
            }
            #[cfg(feature = "quic")]
            Link::Quic(c) => c.abandon(Code::CANCELLED),
            #[cfg(feature = "grpc")]
            Link::Grpc(_) => {}
            #[cfg(feature = "grpc")]
            Link::GrpcClient(c) => c.abandon(),
        }
    }

    /// Client: cancels the call and ends its response side with `status`.
    pub(crate) fn fail(&self, status: &Status) {
        match self {
            Link::Mux { shared, id } => shared.lock().fail_call(*id, status),
            #[cfg(feature = "quic")]
            Link::Quic(c) => c.fail(status),
            #[cfg(feature = "grpc")]
            Link::Grpc(_) => {}
            #[cfg(feature = "grpc")]
            Link::GrpcClient(c) => c.abandon(),
        }
    }

    /// Client: no more request messages. `Err` if the call ended already.
    pub(crate) fn finish(&self) -> Result<(), ()> {
        match self {
            Link::Mux { shared, id } => {
                let mut inner = shared.lock();
                if !inner.calls.contains_key(id) {
                    return Err(());
                }
                inner.conn.finish(*id).map_err(|_| ())?;
                inner.flush();
                Ok(())
            }
            #[cfg(feature = "quic")]
            Link::Quic(c) => c.finish(),
            #[cfg(feature = "grpc")]
            Link::Grpc(_) | Link::GrpcClient(_) => Err(()),
        }
    }

    /// Sends one message, waiting for flow control.
    pub(crate) async fn send(&self, message: Bytes, server: bool) -> Result<(), Status> {
        match self {
            Link::Mux { shared, id } => send_message(shared, *id, message, server).await,
            #[cfg(feature = "quic")]
            Link::Quic(c) => c.send(message).await,
            #[cfg(feature = "grpc")]
            Link::Grpc(c) => c.send(message).await,
            #[cfg(feature = "grpc")]
            Link::GrpcClient(_) => Err(call_ended(server)),
        }
    }

    /// Server: sends the response headers (before any message).
    pub(crate) fn send_headers(&self, headers: &Metadata) {
        match self {
            Link::Mux { shared, id } => {
                let mut inner = shared.lock();
                if inner.conn.send_headers(*id, headers).is_ok() {
                    inner.flush();
                }
            }
            #[cfg(feature = "quic")]
            Link::Quic(c) => c.send_headers(headers),
            #[cfg(feature = "grpc")]
            Link::Grpc(c) => c.send_headers(headers),
            #[cfg(feature = "grpc")]
            Link::GrpcClient(_) => {}
        }
    }

    /// Server: ends the call with `head`, optionally with the headers and
    /// the last message in the same frame. A message the client does not
    /// accept turns into `RESOURCE_EXHAUSTED`.
    pub(crate) async fn close(
        &self,
        head: &CloseHead,
        headers: Option<&Metadata>,
        mut message: Option<Bytes>,
    ) {
        match self {
            Link::Mux { shared, id } => {
                let id = *id;
                poll_fn(|cx| {
                    let mut inner = shared.lock();
                    match inner.conn.close(id, head, headers, &mut message) {
                        Ok(()) => {
                            inner.flush();
                            Poll::Ready(())
                        }
                        Err(SendError::Blocked) => {
                            inner.wait_send(id, cx);
                            Poll::Pending
                        }
                        Err(SendError::TooLarge { .. }) => {
                            let head = too_large_close();
                            if inner.conn.close(id, &head, None, &mut None).is_ok() {
                                inner.flush();
                            }
                            Poll::Ready(())
                        }
                        Err(_) => Poll::Ready(()),
                    }
                })
                .await;
            }
            #[cfg(feature = "quic")]
            Link::Quic(c) => c.close(head, headers, message).await,
            #[cfg(feature = "grpc")]
            Link::Grpc(c) => c.close(head, headers, message),
            #[cfg(feature = "grpc")]
            Link::GrpcClient(_) => {}
        }
    }

    /// Server: the request of a unary call if all of it is there already
    /// (one message, then the end).
    pub(crate) fn take_single(&self) -> Option<Bytes> {
        match self {
            Link::Mux { shared, id } => shared.lock().take_single(*id),
            #[cfg(feature = "quic")]
            Link::Quic(c) => c.take_single(),
            #[cfg(feature = "grpc")]
            Link::Grpc(c) => c.take_single(),
            #[cfg(feature = "grpc")]
            Link::GrpcClient(_) => None,
        }
    }

    /// Server: ready with the code once the call is cancelled (by the
    /// client, its deadline, or the connection ending).
    pub(crate) fn poll_cancelled(&self, cx: &mut Context<'_>) -> Poll<Code> {
        match self {
            Link::Mux { shared, id } => shared.lock().poll_cancelled(*id, cx),
            #[cfg(feature = "quic")]
            Link::Quic(c) => c.poll_cancelled(cx),
            #[cfg(feature = "grpc")]
            Link::Grpc(c) => c.poll_cancelled(cx),
            #[cfg(feature = "grpc")]
            Link::GrpcClient(_) => Poll::Pending,
        }
    }

    /// Server: the call's runner is done. `result` is the service's
    /// outcome, `None` if the call was cancelled (code given) first. A
    /// call the service left open is closed with the status its outcome
    /// maps to.
    pub(crate) async fn end_server_call(&self, result: Result<Result<(), BoxError>, Code>) {
        match self {
            Link::Mux { shared, id } => {
                let mut inner = shared.lock();
                if let Ok(r) = result
                    && inner.conn.is_open(*id)
                {
                    let head = close_head_of(&unfinished_status(r));
                    if inner.conn.close(*id, &head, None, &mut None).is_ok() {
                        inner.flush();
                    }
                }
                inner.remove_call(*id);
            }
            #[cfg(feature = "quic")]
            Link::Quic(c) => c.end_server_call(result).await,
            #[cfg(feature = "grpc")]
            Link::Grpc(c) => c.end_server_call(result),
            #[cfg(feature = "grpc")]
            Link::GrpcClient(_) => {}
        }
    }
}

/// The status for a call its service returned from without ending it.
pub(crate) fn unfinished_status(r: Result<(), BoxError>) -> Status {
    match r {
        Err(e) => error_status(e),
        Ok(()) => Status::internal("handler ended without a status"),
    }
}

/// The CLOSE head carrying `s`.
pub(crate) fn close_head_of(s: &Status) -> CloseHead {
    CloseHead {
        code: s.code(),
        message: Bytes::copy_from_slice(s.message().as_bytes()),
        details: s.details().clone(),
        trailers: s.metadata().clone(),
    }
}

/// The CLOSE sent instead of a response the client would not accept.
pub(crate) fn too_large_close() -> CloseHead {
    crate::proto::close_head(
        Code::RESOURCE_EXHAUSTED,
        "response exceeds the client's MAX_MESSAGE",
    )
}

/// The status for a message the peer would not accept.
pub(crate) fn too_large_status(size: usize, max: u32) -> Status {
    Status::resource_exhausted(format!(
        "message of {size} bytes exceeds the peer's limit of {max}"
    ))
}

/// Sends `message` on multiplexed call `id`, waiting for flow control.
async fn send_message(
    shared: &Shared,
    id: u32,
    message: Bytes,
    server: bool,
) -> Result<(), Status> {
    poll_fn(|cx| {
        let mut inner = shared.lock();
        match inner.conn.send(id, message.clone(), false) {
            Ok(()) => {
                inner.flush();
                Poll::Ready(Ok(()))
            }
            Err(SendError::Blocked) => {
                inner.wait_send(id, cx);
                Poll::Pending
            }
            Err(SendError::TooLarge { size, max }) => Poll::Ready(Err(too_large_status(size, max))),
            Err(SendError::Closed) => Poll::Ready(Err(inner.conn_status())),
            Err(_) => Poll::Ready(Err(call_ended(server))),
        }
    })
    .await
}

/// The status for sending on a call that ended.
pub(crate) fn call_ended(server: bool) -> Status {
    if server {
        Status::cancelled("call ended")
    } else {
        Status::cancelled("call ended before the message was sent")
    }
}
