//! The gRPC parts zap-build generates (`Config::grpc(true)`): every field
//! kind of the golden fixture converted ZAP → prost → protobuf bytes →
//! prost → ZAP and compared, the prost side checked field by field, a
//! recursive message, and the generated service called over real gRPC
//! (protobuf on HTTP/2) through a server on a loopback socket.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use futures_util::StreamExt;
use zap::grpc::Convert;
use zap::transport::{Limits, Listener, Url};
use zap::{BoxStream, Request, Response, Router, Server, Status, Streaming};
use zap_build_tests::compat::v2;
use zap_build_tests::golden::{everything, v1 as g};

/// ZAP → prost → protobuf bytes → prost → ZAP.
fn through_protobuf<Z, P>(z: Z) -> (P, Z)
where
    Z: Convert<P>,
    P: zap::grpc::prost::Message + Default + Clone + Convert<Z>,
{
    let p: P = z.convert();
    let wire = p.encode_to_vec();
    let back = P::decode(wire.as_slice()).unwrap();
    (back.clone(), back.convert())
}

#[test]
fn every_field_kind_round_trips_through_protobuf() {
    let e = everything();
    let (p, back): (g::pb::Everything, g::Everything) = through_protobuf(e.clone());
    assert_eq!(back, e);
    // The prost twin holds the same values, in prost's representation.
    assert_eq!((p.f64, p.f32, p.i32, p.i64), (1.5, -2.5, -3, -4));
    assert_eq!(
        (p.u32, p.u64, p.s32, p.s64),
        (5, u64::MAX, i32::MIN, i64::MIN)
    );
    assert_eq!((p.fx32, p.fx64, p.sfx32, p.sfx64), (9, 10, -11, -12));
    assert!(p.flag);
    assert_eq!(p.name, "name");
    assert_eq!(&p.data[..], b"\x00\x01data");
    assert_eq!(p.color, g::pb::Color::Green as i32);
    let inner = p.inner.as_ref().unwrap();
    assert_eq!(
        (inner.id, inner.kind),
        (7, g::pb::everything::inner::Kind::B as i32)
    );
    assert_eq!(p.numbers, [1, 2, 3]);
    assert_eq!(p.names, ["a", "", "c"]);
    assert_eq!(p.blobs, [Bytes::from_static(b"x"), Bytes::new()]);
    assert_eq!(p.inners.len(), 3);
    // An enum value neither side knows survives both ways (open enums).
    assert_eq!(p.colors, [g::pb::Color::Red as i32, 99]);
    assert_eq!(
        (p.maybe, p.maybe_name.as_deref(), p.maybe_wide),
        (Some(0), None, Some(-1))
    );

    // Defaults stay defaults (and absent optionals absent).
    let (p, back): (g::pb::Everything, _) = through_protobuf(g::Everything::default());
    assert_eq!(back, g::Everything::default());
    assert_eq!(p, g::pb::Everything::default());
}

#[test]
fn a_recursive_message_round_trips_through_protobuf() {
    let a = v2::Account {
        key: Bytes::from_static(b"key"),
        id: 7,
        score: -5,
        name: "new".into(),
        balances: vec![9, 10],
        active: Some(false),
        referrer: Some(Box::new(v2::Account {
            id: 1,
            referrer: Some(Box::new(v2::Account {
                id: 2,
                ..Default::default()
            })),
            ..Default::default()
        })),
    };
    let (p, back): (v2::pb::Account, _) = through_protobuf(a.clone());
    assert_eq!(back, a);
    let chain = p.referrer.as_ref().unwrap();
    assert_eq!((chain.id, chain.referrer.as_ref().unwrap().id), (1, 2));
}

/// The generated `Demo` service, each call kind.
struct Demo;

impl g::Demo for Demo {
    async fn unary(
        &self,
        request: Request<g::Everything>,
    ) -> Result<Response<g::Everything>, Status> {
        Ok(Response::new(request.into_inner()))
    }

    async fn server_stream(
        &self,
        _request: Request<g::Empty>,
    ) -> Result<Response<BoxStream<g::everything::Inner>>, Status> {
        let items = (1..=3).map(|id| {
            Ok(g::everything::Inner {
                id,
                kind: g::everything::inner::Kind::B,
            })
        });
        Ok(Response::new(Box::pin(futures_util::stream::iter(items))))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<g::everything::Inner>>,
    ) -> Result<Response<g::Empty>, Status> {
        let mut ids = Vec::new();
        let mut s = request.into_inner();
        while let Some(m) = s.message().await? {
            ids.push(m.id);
        }
        if ids == [4, 5] {
            Ok(Response::new(g::Empty {}))
        } else {
            Err(Status::invalid_argument(format!("ids {ids:?}")))
        }
    }

    async fn bidi(
        &self,
        request: Request<Streaming<g::Empty>>,
    ) -> Result<Response<BoxStream<g::Empty>>, Status> {
        Ok(Response::new(Box::pin(request.into_inner())))
    }
}

#[tokio::test]
async fn the_generated_service_answers_protobuf_grpc() {
    let url = Url::parse("zap://127.0.0.1:0").unwrap();
    let l = Listener::bind(&url, None, Limits::default()).await.unwrap();
    let port = l.local_url().port().unwrap();
    let router = Router::new().add_service(g::DemoServer::new(Demo)).unwrap();
    assert!(router.protobuf().contains(g::demo_methods::UNARY));
    tokio::spawn(Server::builder().grpc(router.protobuf()).serve(l, router));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let c = g::DemoClient::grpc(channel);

    let e = everything();
    assert_eq!(c.unary(e.clone()).await.unwrap().into_inner(), e);
    let ids: Vec<u64> = c
        .server_stream(g::Empty {})
        .await
        .unwrap()
        .into_inner()
        .map(|m| m.unwrap().id)
        .collect()
        .await;
    assert_eq!(ids, [1, 2, 3]);
    let inners = [4, 5].map(|id| g::everything::Inner {
        id,
        ..Default::default()
    });
    c.client_stream(futures_util::stream::iter(inners))
        .await
        .unwrap();
    let n = c
        .bidi(futures_util::stream::iter([g::Empty {}, g::Empty {}]))
        .await
        .unwrap()
        .into_inner()
        .count()
        .await;
    assert_eq!(n, 2);
}
