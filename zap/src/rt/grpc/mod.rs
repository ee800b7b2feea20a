//! The gRPC fallback (feature `grpc`): the same services on real gRPC.
//!
//! # Serving
//!
//! [`Server::grpc`](crate::Server::grpc) makes a server accept gRPC
//! clients (grpc-go, grpcio, tonic, grpcurl) on the same listener as ZAP
//! clients. A plaintext connection is told apart by its first byte (ZAP's
//! preface starts with `0x5A`, HTTP/2's with `P`); under TLS the server
//! also offers ALPN `h2` and the negotiated protocol decides. Each HTTP/2
//! request becomes a [`ServerCall`](crate::ServerCall) for the same
//! service, so routes, layers, deadlines and cancellation behave as on
//! ZAP. tonic encodes the gRPC messages, statuses and trailers; hyper runs
//! HTTP/2.
//!
//! Two message encodings:
//!
//! - `application/grpc+zap`: the ZAP message bytes as they are, for every
//!   route (`#[zap::service]` services included). No conversion.
//! - `application/grpc` (protobuf): for methods in the [`Protobuf`] table.
//!   `zap-build` with its `grpc` feature generates prost types beside the
//!   ZAP ones, field-by-field conversions ([`Convert`]) and the table;
//!   `Router::add_service` collects it and [`Router::protobuf`]
//!   (crate::Router::protobuf) hands it to the server. The server decodes
//!   protobuf, converts to ZAP for the handler, and back for the response.
//!
//! # Calling
//!
//! [`GrpcChannel`] wraps a tonic `Channel` and implements
//! [`CallChannel`](crate::CallChannel), so the generated `{Service}Client`
//! calls a gRPC server with the same methods and types as a ZAP server.

mod client;
mod server;

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower_service::Service;
use zap_transport::PeerInfo;

pub use client::GrpcChannel;
pub(crate) use client::GrpcResponse;
pub(crate) use server::GrpcCall;

use crate::message::Text;
use crate::metadata::Metadata;
use crate::payload::Payload;
use crate::rt::server::{BoxError, ServerCall};
use crate::status::{Code, Status};

/// prost, for generated code.
pub use prost;
/// tonic, whose `Channel` a [`GrpcChannel`] wraps.
pub use tonic;

/// One direction of message conversion between the wire and the handler:
/// `decode` runs on each received message, `encode` on each sent one.
#[derive(Clone, Copy)]
pub(crate) struct Transcode {
    decode: fn(Bytes) -> Result<Bytes, Status>,
    encode: fn(Bytes) -> Result<Bytes, Status>,
}

/// The protobuf form of one method: its request type `A` (protobuf `PA`)
/// and response type `B` (protobuf `PB`).
#[derive(Clone, Copy)]
pub struct ProtoMethod {
    server: Transcode,
    client: Transcode,
}

impl ProtoMethod {
    /// The conversions of a method from `A` to `B` whose protobuf messages
    /// are `PA` and `PB`.
    pub fn new<A, PA, B, PB>() -> Self
    where
        A: Payload + Convert<PA>,
        PA: prost::Message + Default + Convert<A>,
        B: Payload + Convert<PB>,
        PB: prost::Message + Default + Convert<B>,
    {
        ProtoMethod {
            server: Transcode {
                decode: pb_to_zap::<A, PA>,
                encode: zap_to_pb::<B, PB>,
            },
            client: Transcode {
                decode: pb_to_zap::<B, PB>,
                encode: zap_to_pb::<A, PA>,
            },
        }
    }
}

impl std::fmt::Debug for ProtoMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProtoMethod")
    }
}

/// Protobuf messages received as `P` reach the handler as ZAP `Z`.
fn pb_to_zap<Z, P>(bytes: Bytes) -> Result<Bytes, Status>
where
    Z: Payload,
    P: prost::Message + Default + Convert<Z>,
{
    let p = P::decode(bytes)
        .map_err(|e| Status::invalid_argument(format!("bad protobuf message: {e}")))?;
    p.convert().into_payload()
}

/// ZAP `Z` from the handler goes out as protobuf `P`.
fn zap_to_pb<Z, P>(bytes: Bytes) -> Result<Bytes, Status>
where
    Z: Payload + Convert<P>,
    P: prost::Message,
{
    let z = Z::from_payload(bytes)?;
    Ok(Bytes::from(z.convert().encode_to_vec()))
}

/// Which methods have a protobuf form, by path: what a server needs to
/// answer `application/grpc` and a [`GrpcChannel`] to send it. Cheap to
/// clone.
#[derive(Clone, Debug, Default)]
pub struct Protobuf {
    methods: Arc<HashMap<String, ProtoMethod>>,
}

impl Protobuf {
    /// No methods.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the protobuf form of `path`.
    #[must_use]
    pub fn with(mut self, path: &str, method: ProtoMethod) -> Self {
        Arc::make_mut(&mut self.methods).insert(path.to_owned(), method);
        self
    }

    /// Every method of `other` too.
    #[must_use]
    pub fn merge(mut self, other: &Protobuf) -> Self {
        let m = Arc::make_mut(&mut self.methods);
        for (k, v) in other.methods.iter() {
            m.insert(k.clone(), *v);
        }
        self
    }

    /// Whether `path` has a protobuf form.
    pub fn contains(&self, path: &str) -> bool {
        self.methods.contains_key(path)
    }

    /// How many methods have a protobuf form.
    pub fn len(&self) -> usize {
        self.methods.len()
    }

    /// Whether no method has one.
    pub fn is_empty(&self) -> bool {
        self.methods.is_empty()
    }

    fn get(&self, path: &str) -> Option<&ProtoMethod> {
        self.methods.get(path)
    }
}

/// A value-for-value conversion between a ZAP message type and its prost
/// twin (both ways), implemented by `zap-build` for every generated message
/// and enum, and here for the field types they share.
pub trait Convert<T> {
    /// The converted value.
    fn convert(self) -> T;
}

macro_rules! same {
    ($($t:ty),*) => {$(
        impl Convert<$t> for $t {
            #[inline]
            fn convert(self) -> $t {
                self
            }
        }
    )*};
}

same!(f32, f64, i32, i64, u32, u64, bool, Bytes);

impl Convert<String> for Text {
    fn convert(self) -> String {
        self.as_str().to_owned()
    }
}

impl Convert<Text> for String {
    fn convert(self) -> Text {
        Text::from(self)
    }
}

impl<A: Convert<B>, B> Convert<Vec<B>> for Vec<A> {
    fn convert(self) -> Vec<B> {
        self.into_iter().map(Convert::convert).collect()
    }
}

impl<A: Convert<B>, B> Convert<Option<B>> for Option<A> {
    fn convert(self) -> Option<B> {
        self.map(Convert::convert)
    }
}

impl<A: Convert<B>, B> Convert<Box<B>> for Box<A> {
    fn convert(self) -> Box<B> {
        Box::new((*self).convert())
    }
}

/// tonic's codec for both sides: ZAP bytes pass through, or are
/// transcoded to and from protobuf.
#[derive(Clone, Copy)]
pub(crate) struct WireCodec {
    pub(crate) transcode: Option<Transcode>,
    /// A client blames the server for a message it cannot convert
    /// (`INTERNAL`); a server blames the client (`INVALID_ARGUMENT`).
    pub(crate) client: bool,
}

impl tonic::codec::Codec for WireCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = WireCodec;
    type Decoder = WireCodec;

    fn encoder(&mut self) -> WireCodec {
        *self
    }

    fn decoder(&mut self) -> WireCodec {
        *self
    }
}

impl tonic::codec::Encoder for WireCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        let bytes = match self.transcode {
            None => item,
            Some(t) => (t.encode)(item).map_err(to_tonic)?,
        };
        dst.put(bytes);
        Ok(())
    }
}

impl tonic::codec::Decoder for WireCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        let Some(t) = self.transcode else {
            return Ok(Some(bytes));
        };
        match (t.decode)(bytes) {
            Ok(b) => Ok(Some(b)),
            Err(s) if self.client => Err(tonic::Status::internal(format!(
                "bad response message: {}",
                s.message()
            ))),
            Err(s) => Err(to_tonic(s)),
        }
    }
}

// ---------------------------------------------------------------------------
// Status and metadata between zap and tonic.

pub(crate) fn to_tonic(s: Status) -> tonic::Status {
    let code = i32::try_from(s.code().0).map_or(tonic::Code::Unknown, tonic::Code::from_i32);
    tonic::Status::with_details_and_metadata(
        code,
        s.message(),
        s.details().clone(),
        to_tonic_metadata(s.metadata()),
    )
}

pub(crate) fn from_tonic(s: tonic::Status) -> Status {
    let code = Code(s.code() as u32);
    let mut out = Status::with_details(code, s.message(), s.details().to_vec().into());
    // Custom trailers only: tonic leaves the status headers out.
    if let Ok(m) = metadata_from_tonic(s.metadata()) {
        *out.metadata_mut() = m;
    }
    out
}

/// zap metadata as tonic's (binary values are base64-encoded on the wire
/// by tonic). Entries HTTP/2 cannot carry are left out.
pub(crate) fn to_tonic_metadata(m: &Metadata) -> tonic::metadata::MetadataMap {
    use tonic::metadata::{
        AsciiMetadataValue, BinaryMetadataKey, BinaryMetadataValue, MetadataKey,
    };
    let mut out = tonic::metadata::MetadataMap::with_capacity(m.len());
    for (k, v) in m.iter() {
        if k.ends_with("-bin") {
            if let Ok(key) = BinaryMetadataKey::from_bytes(k.as_bytes()) {
                out.append_bin(key, BinaryMetadataValue::from_bytes(v));
            }
        } else if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(k.as_bytes()),
            AsciiMetadataValue::try_from(v.as_ref()),
        ) {
            out.append(key, value);
        }
    }
    out
}

/// Request or response metadata from tonic's, without the headers gRPC
/// reserves for itself.
pub(crate) fn metadata_from_tonic(m: &tonic::metadata::MetadataMap) -> Result<Metadata, Status> {
    use tonic::metadata::KeyAndValueRef;
    let mut out = Metadata::new();
    let bad = |e: crate::metadata::InvalidMetadata| Status::invalid_argument(e.to_string());
    for kv in m.iter() {
        match kv {
            KeyAndValueRef::Ascii(k, v) => {
                if reserved(k.as_str()) {
                    continue;
                }
                let v = v
                    .to_str()
                    .map_err(|_| Status::invalid_argument("metadata value is not ASCII"))?;
                out.insert(
                    Bytes::copy_from_slice(k.as_str().as_bytes()),
                    Bytes::copy_from_slice(v.as_bytes()),
                )
                .map_err(bad)?;
            }
            KeyAndValueRef::Binary(k, v) => {
                let v = v
                    .to_bytes()
                    .map_err(|_| Status::invalid_argument("binary metadata is not base64"))?;
                out.insert_bin(Bytes::copy_from_slice(k.as_str().as_bytes()), v)
                    .map_err(bad)?;
            }
        }
    }
    Ok(out)
}

/// Headers that are HTTP/2 or gRPC protocol, not call metadata.
fn reserved(key: &str) -> bool {
    key.starts_with("grpc-")
        || matches!(
            key,
            "content-type" | "te" | "user-agent" | "content-length" | "connection" | "host"
        )
}

// ---------------------------------------------------------------------------
// Serving HTTP/2 connections.

/// What a server needs to answer gRPC: the protobuf table.
#[derive(Clone, Debug, Default)]
pub(crate) struct GrpcServing {
    pub(crate) protobuf: Protobuf,
    /// The server's accounting, which the HTTP/2 connections report to.
    pub(crate) stats: crate::rt::ServerStats,
}

/// A byte stream with bytes read ahead (the sniffed preface) put back.
pub(crate) struct Rewind<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    pub(crate) fn new(prefix: Bytes, inner: T) -> Self {
        Rewind { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves one HTTP/2 connection until it ends; on `stop`, sends GOAWAY
/// and lets the requests in flight finish until `force` fires.
pub(crate) async fn serve_h2<S, I>(
    io: I,
    svc: S,
    serving: &GrpcServing,
    peer: Arc<PeerInfo>,
    limits: &zap_transport::Limits,
    stop: impl std::future::Future<Output = ()>,
    force: impl std::future::Future<Output = ()>,
) where
    S: Service<ServerCall, Response = ()> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The same message limit as the router's ZAP connections.
    let max_message = crate::rt::proto_config(limits).settings.max_message as usize;
    let activity = Arc::new(server::Activity::default());
    let http = server::GrpcHttp {
        svc,
        protobuf: serving.protobuf.clone(),
        peer,
        max_message,
        calls: Arc::new(AtomicU64::new(0)),
        activity: activity.clone(),
        budget: Arc::new(server::ConnBudget::new(limits, serving.stats.clone())),
    };
    let mut builder =
        hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        // Metadata is bounded as on ZAP: 64 KiB of header list.
        .max_header_list_size(64 << 10)
        .max_pending_accept_reset_streams(20)
        // What HTTP/2 buffers per stream beyond our accounting (§9).
        .max_send_buf_size(server::H2_SEND_BUFFER)
        .max_local_error_reset_streams(1024);
    if let Some(interval) = limits.keepalive_interval {
        builder
            .keep_alive_interval(interval)
            .keep_alive_timeout(limits.keepalive_timeout);
    }
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), http);
    let mut conn = std::pin::pin!(conn);
    // As on ZAP: a connection with no call open for `idle_timeout` is
    // closed (GOAWAY; clients reconnect when they call again).
    let idle = async {
        match limits.idle_timeout {
            Some(timeout) => activity.idle_for(timeout).await,
            None => std::future::pending().await,
        }
    };
    let stopping = tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop => true,
        _ = idle => false,
    };
    conn.as_mut().graceful_shutdown();
    if stopping {
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = force => {}
        }
        return;
    }
    // Idle: hyper's graceful GOAWAY waits for the client to answer a PING,
    // which a client that went quiet may never do. A call that slipped in
    // meanwhile is served; with none open for IDLE_CLOSE_GRACE, the
    // connection is dropped.
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = force => {}
        _ = activity.idle_for(IDLE_CLOSE_GRACE) => {}
    }
}

/// How long an idle HTTP/2 connection told to go away (GOAWAY) may take
/// to close by itself while no call is open.
const IDLE_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
