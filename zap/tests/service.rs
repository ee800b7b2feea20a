//! `#[zap::service]` end to end over a real loopback socket: every call
//! kind through the generated server and client, typed messages (derived
//! structs and `Owned`), metadata, errors and registration rules.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use futures_util::StreamExt;
use zap::transport::{Limits, Listener, Url};
use zap::{
    BoxStream, Channel, Code, NamedService, Owned, Request, Response, Router, Server, Status,
    Streaming,
};

/// A number.
#[derive(zap::Message, Clone, Debug, PartialEq, Default)]
pub struct Num {
    /// The value.
    pub value: i64,
}

/// Some data.
#[derive(zap::Message, Clone, Debug, PartialEq, Default)]
pub struct Blob {
    /// An id.
    pub id: u64,
    /// Bytes.
    pub data: Bytes,
    /// Labels.
    pub tags: Vec<String>,
}

/// A calculator with one method of each kind.
#[zap::service(package = "test.calc")]
pub trait Calc {
    /// Doubles a number.
    async fn double(&self, request: Request<Num>) -> Result<Response<Num>, Status>;
    /// Counts from 1 to the request.
    async fn count(&self, request: Request<Num>) -> Result<Response<BoxStream<Num>>, Status>;
    /// Adds a stream of numbers.
    async fn sum(&self, request: Request<Streaming<Num>>) -> Result<Response<Num>, Status>;
    /// Echoes each number, negated.
    async fn negate(
        &self,
        request: Request<Streaming<Num>>,
    ) -> Result<Response<BoxStream<Num>>, Status>;
    /// Reads a blob in place (zero copy) and answers its size.
    #[zap(name = "BlobSize")]
    async fn blob_len(&self, request: Request<Owned<Blob>>) -> Result<Response<Num>, Status>;
    /// Fails with details.
    async fn fail(&self, request: Request<Num>) -> Result<Response<Num>, Status>;
}

struct Impl;

impl Calc for Impl {
    async fn double(&self, request: Request<Num>) -> Result<Response<Num>, Status> {
        let mut resp = Response::new(Num {
            value: request.get_ref().value * 2,
        });
        if let Some(v) = request.metadata().get("x-echo") {
            resp.headers_mut().insert("x-echo", v.to_owned()).unwrap();
        }
        Ok(resp)
    }

    async fn count(&self, request: Request<Num>) -> Result<Response<BoxStream<Num>>, Status> {
        let n = request.get_ref().value;
        if n < 0 {
            return Err(Status::invalid_argument("negative count"));
        }
        let s = futures_util::stream::iter((1..=n).map(|value| Ok(Num { value })));
        Ok(Response::new(Box::pin(s)))
    }

    async fn sum(&self, request: Request<Streaming<Num>>) -> Result<Response<Num>, Status> {
        let mut stream = request.into_inner();
        let mut value = 0;
        while let Some(n) = stream.message().await? {
            value += n.value;
        }
        Ok(Response::new(Num { value }))
    }

    async fn negate(
        &self,
        request: Request<Streaming<Num>>,
    ) -> Result<Response<BoxStream<Num>>, Status> {
        let s = request
            .into_inner()
            .map(|r| r.map(|n| Num { value: -n.value }));
        Ok(Response::new(Box::pin(s)))
    }

    async fn blob_len(&self, request: Request<Owned<Blob>>) -> Result<Response<Num>, Status> {
        let v = request.get_ref().view();
        let value = (v.data().len() + v.tags().len()) as i64;
        Ok(Response::new(Num { value }))
    }

    async fn fail(&self, _: Request<Num>) -> Result<Response<Num>, Status> {
        Err(Status::with_details(
            Code::FAILED_PRECONDITION,
            "not today",
            Bytes::from_static(b"why"),
        ))
    }
}

async fn serve(router: Router) -> Channel {
    let url = Url::parse("zap://127.0.0.1:0").unwrap();
    let l = Listener::bind(&url, None, Limits::default()).await.unwrap();
    let url = l.local_url();
    tokio::spawn(Server::builder().serve(l, router));
    Channel::builder(url).connect_lazy()
}

async fn client() -> CalcClient {
    let router = Router::new().add_service(CalcServer::new(Impl)).unwrap();
    CalcClient::new(serve(router).await)
}

#[tokio::test]
async fn every_call_kind_through_generated_code() {
    every_call_kind(client().await).await;
}

/// Each call kind, metadata and both message forms, over `c`'s channel.
async fn every_call_kind<C: zap::CallChannel>(c: CalcClient<C>) {
    let mut req = Request::new(Num { value: 21 });
    req.metadata_mut().insert("x-echo", "hi").unwrap();
    let resp = c.double(req).await.unwrap();
    assert_eq!(resp.get_ref().value, 42);
    assert_eq!(resp.headers().get("x-echo"), Some("hi"));
    // A bare message is a request too.
    assert_eq!(
        c.double(Num { value: 2 }).await.unwrap().into_inner().value,
        4
    );

    let got: Vec<i64> = c
        .count(Num { value: 5 })
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap().value)
        .collect()
        .await;
    assert_eq!(got, [1, 2, 3, 4, 5]);

    let nums = futures_util::stream::iter((1..=100).map(|value| Num { value }));
    assert_eq!(c.sum(nums).await.unwrap().into_inner().value, 5050);

    let nums = futures_util::stream::iter((1..=3).map(|value| Num { value }));
    let mut out = c.negate(nums).await.unwrap().into_inner();
    let mut got = Vec::new();
    while let Some(n) = out.message().await.unwrap() {
        got.push(n.value);
    }
    assert_eq!(got, [-1, -2, -3]);

    let blob = Blob {
        id: 1,
        data: Bytes::from(vec![7; 1000]),
        tags: vec!["a".into(), "b".into()],
    };
    let blob = Owned::<Blob>::decode(zap::Message::to_bytes(&blob).unwrap()).unwrap();
    assert_eq!(c.blob_len(blob).await.unwrap().into_inner().value, 1002);
}

/// A gRPC channel (HTTP/2, ZAP messages) to the server on `port`.
#[cfg(feature = "grpc")]
async fn grpc_zap_channel(port: u16) -> zap::grpc::GrpcChannel {
    let tonic =
        zap::grpc::tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
    zap::grpc::GrpcChannel::zap(tonic)
}

/// A `#[zap::service]` (no `.proto`, so no protobuf form) served over
/// HTTP/2 gRPC with ZAP messages (`application/grpc+zap`) on the same
/// port as ZAP, called by the same generated client over a `GrpcChannel`.
#[cfg(feature = "grpc")]
#[tokio::test]
async fn a_macro_service_is_served_over_grpc_with_zap_messages() {
    let url = Url::parse("zap://127.0.0.1:0").unwrap();
    let l = Listener::bind(&url, None, Limits::default()).await.unwrap();
    let port = l.local_url().port().unwrap();
    let router = Router::new().add_service(CalcServer::new(Impl)).unwrap();
    assert!(router.protobuf().is_empty());
    tokio::spawn(Server::builder().grpc(router.protobuf()).serve(l, router));
    let c = CalcClient::new(grpc_zap_channel(port).await);
    every_call_kind(c.clone()).await;
    let e = c.fail(Num::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION);
    assert_eq!(e.message(), "not today");
    assert_eq!(&e.details()[..], b"why");
}

/// The idle timeout holds on HTTP/2 connections too: one with no call
/// open is told to go away (GOAWAY) and closed, even if its client never
/// answers; one with a call open stays as long as the call.
#[cfg(feature = "grpc")]
#[tokio::test]
async fn idle_http2_connections_are_closed_but_not_under_a_call() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let idle = Duration::from_millis(300);
    let url = Url::parse("zap://127.0.0.1:0").unwrap();
    let limits = Limits::default().with_idle_timeout(idle);
    let l = Listener::bind(&url, None, limits.clone()).await.unwrap();
    let port = l.local_url().port().unwrap();
    let router = Router::new().add_service(CalcServer::new(Impl)).unwrap();
    let server = Server::builder().limits(limits).grpc(router.protobuf());
    tokio::spawn(server.serve(l, router));

    // A client that speaks HTTP/2 (preface, empty SETTINGS) and then
    // nothing: not even the answer to the server's PING.
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    raw.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut got))
        .await
        .expect("an idle HTTP/2 connection is closed")
        .unwrap();
    assert!(start.elapsed() >= idle, "closed before the idle timeout");
    // The frames the server sent: 3-byte length, type, flags, stream id.
    let mut kinds = Vec::new();
    let mut rest = &got[..];
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        kinds.push(rest[3]);
        rest = &rest[(9 + len).min(rest.len())..];
    }
    assert!(kinds.contains(&7), "no GOAWAY among frames {kinds:?}");

    // A bidi call open across several idle timeouts keeps its connection.
    let c = CalcClient::new(grpc_zap_channel(port).await);
    let (tx, rx) = tokio::sync::mpsc::channel::<Num>(4);
    let nums =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|n| (n, rx)) });
    tx.send(Num { value: 1 }).await.unwrap();
    let mut out = c.negate(nums).await.unwrap().into_inner();
    assert_eq!(out.message().await.unwrap().unwrap().value, -1);
    // Longer than the idle timeout and the grace after GOAWAY together.
    tokio::time::sleep(idle * 6).await;
    tx.send(Num { value: 2 }).await.unwrap();
    assert_eq!(out.message().await.unwrap().unwrap().value, -2);
    drop(tx);
    assert!(out.message().await.unwrap().is_none());
}

#[tokio::test]
async fn errors_reach_the_typed_client() {
    let c = client().await;
    let e = c.fail(Num::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION);
    assert_eq!(e.message(), "not today");
    assert_eq!(e.details().as_ref(), b"why");

    let e = c.count(Num { value: -1 }).await.unwrap_err();
    assert_eq!(e.code(), Code::INVALID_ARGUMENT);
}

#[tokio::test]
async fn paths_constants_and_names() {
    assert_eq!(calc_methods::DOUBLE, "/test.calc.Calc/Double");
    assert_eq!(calc_methods::BLOB_LEN, "/test.calc.Calc/BlobSize");
    assert_eq!(<CalcServer<Impl> as NamedService>::NAME, "test.calc.Calc");
    assert_eq!(CalcClient::SERVICE_NAME, "test.calc.Calc");
    assert_eq!(<CalcServer<Impl> as NamedService>::METHODS.len(), 6);
}

#[tokio::test]
async fn a_bad_request_message_is_invalid_argument() {
    let ch = client().await.channel().clone();
    // Not a ZAP message at all.
    let e = ch
        .unary(
            calc_methods::DOUBLE,
            Request::new(Bytes::from_static(b"junk")),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::INVALID_ARGUMENT);
}

/// A second service next to the first.
#[zap::service(package = "test.other")]
pub trait Echo {
    async fn echo(&self, request: Request<Bytes>) -> Result<Response<Bytes>, Status>;
}

struct EchoImpl;

impl Echo for EchoImpl {
    async fn echo(&self, request: Request<Bytes>) -> Result<Response<Bytes>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

/// The same paths as `Calc` under a different trait.
#[zap::service(package = "test.calc", name = "Calc")]
pub trait CalcAgain {
    async fn double(&self, request: Request<Num>) -> Result<Response<Num>, Status>;
}

impl CalcAgain for EchoImpl {
    async fn double(&self, request: Request<Num>) -> Result<Response<Num>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

#[tokio::test]
async fn services_share_a_router_and_duplicates_are_refused() {
    let router = Router::new()
        .add_service(CalcServer::new(Impl))
        .unwrap()
        .add_service(EchoServer::new(EchoImpl))
        .unwrap();
    let ch = serve(router.clone()).await;
    let echo = EchoClient::new(ch.clone());
    let calc = CalcClient::new(ch);
    assert_eq!(
        echo.echo(Bytes::from_static(b"x"))
            .await
            .unwrap()
            .into_inner(),
        "x"
    );
    assert_eq!(
        calc.double(Num { value: 1 })
            .await
            .unwrap()
            .into_inner()
            .value,
        2
    );

    let dup = router
        .add_service(CalcAgainServer::new(EchoImpl))
        .unwrap_err();
    assert_eq!(dup.0, ["/test.calc.Calc/Double"]);
    let dup = Router::new()
        .add_service(EchoServer::new(EchoImpl))
        .unwrap()
        .add_service(EchoServer::new(EchoImpl))
        .unwrap_err();
    assert_eq!(dup.0, ["/test.other.Echo/Echo"]);
}
