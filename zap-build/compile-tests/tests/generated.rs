//! The generated code at work: round trips of every field kind, open enums,
//! schema evolution by field number, and a service with awkward names
//! called over a real socket.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use futures_util::StreamExt;
use zap::transport::{Limits, Listener, Url};
use zap::{BoxStream, Channel, Message, Request, Response, Router, Server, Status, Streaming};
use zap_build_tests::awkward;
use zap_build_tests::compat::{v1, v2};
use zap_build_tests::golden::{self, v1 as g};

#[test]
fn every_field_kind_round_trips() {
    let e = golden::everything();
    let bytes = e.to_bytes().unwrap();
    let back = g::Everything::decode(bytes.clone()).unwrap();
    assert_eq!(back, e);
    let view = g::Everything::view(&bytes).unwrap();
    assert_eq!(view.name(), "name");
    assert_eq!(view.inner().unwrap().id(), 7);
    assert_eq!(
        view.colors().iter().collect::<Vec<_>>(),
        [g::Color::RED, g::Color(99)]
    );
    // Defaults are what an empty message decodes to.
    let empty = g::Everything::default().to_bytes().unwrap();
    assert_eq!(
        g::Everything::decode(empty).unwrap(),
        g::Everything::default()
    );
}

#[test]
fn enums_are_open() {
    assert_eq!(g::Color::RED.as_str_name(), Some("COLOR_RED"));
    assert_eq!(
        g::Color::from_str_name("COLOR_GREEN"),
        Some(g::Color::GREEN)
    );
    assert_eq!(g::Color(42).as_str_name(), None);
    assert_eq!(format!("{:?}", g::Color(42)), "42");
    assert_eq!(format!("{:?}", g::Color::RED), "COLOR_RED");
    // Prefixes are stripped only when every value has one.
    assert_eq!(awkward::Clone::ZERO.0, 0);
    assert_eq!(awkward::Clone::SELF.as_str_name(), Some("CLONE_SELF"));
    assert_eq!(awkward::Clone::NONE.0, 2);
}

#[test]
fn adding_fields_with_new_numbers_is_compatible_both_ways() {
    let old = v1::Account {
        id: 42,
        name: "old".into(),
        balances: vec![1, 2],
    };
    // Old writer, new reader: the new fields read as their defaults.
    let read = v2::Account::decode(old.to_bytes().unwrap()).unwrap();
    assert_eq!(read.id, 42);
    assert_eq!(read.name, "old");
    assert_eq!(read.balances, [1, 2]);
    assert_eq!(read.key, Bytes::new());
    assert_eq!(read.score, 0);
    assert_eq!(read.active, None);
    assert!(read.referrer.is_none());

    // New writer, old reader: the fields it does not know are skipped.
    let new = v2::Account {
        key: Bytes::from_static(b"key"),
        id: 7,
        score: -5,
        name: "new".into(),
        balances: vec![9],
        active: Some(true),
        referrer: Some(Box::new(v2::Account {
            id: 1,
            ..Default::default()
        })),
    };
    let read = v1::Account::decode(new.to_bytes().unwrap()).unwrap();
    assert_eq!(
        read,
        v1::Account {
            id: 7,
            name: "new".into(),
            balances: vec![9],
        }
    );
    // And the new message round-trips itself, recursion included.
    assert_eq!(v2::Account::decode(new.to_bytes().unwrap()).unwrap(), new);
}

/// `service Result` with methods named `Drop`, `Clone`, `Type`, `New`,
/// `Channel`, `Into` and `From`.
struct Awkward;

impl awkward::Result for Awkward {
    async fn drop(
        &self,
        request: Request<awkward::Request>,
    ) -> Result<Response<awkward::Response>, Status> {
        Ok(Response::new(awkward::Response {
            response: request.into_inner().request,
        }))
    }

    async fn clone(
        &self,
        request: Request<awkward::Self_>,
    ) -> Result<Response<awkward::Self_>, Status> {
        Ok(Response::new(request.into_inner()))
    }

    async fn r#type(
        &self,
        request: Request<awkward::r#type>,
    ) -> Result<Response<awkward::r#type>, Status> {
        Ok(Response::new(request.into_inner()))
    }

    async fn new_(
        &self,
        request: Request<awkward::Msg>,
    ) -> Result<Response<awkward::other::Msg>, Status> {
        Ok(Response::new(
            request.into_inner().theirs.unwrap_or_default(),
        ))
    }

    async fn channel_(
        &self,
        request: Request<awkward::Vec>,
    ) -> Result<Response<BoxStream<awkward::Vec>>, Status> {
        let v = request.into_inner();
        Ok(Response::new(Box::pin(futures_util::stream::iter([
            Ok(v.clone()),
            Ok(v),
        ]))))
    }

    async fn into(
        &self,
        request: Request<Streaming<awkward::Option>>,
    ) -> Result<Response<awkward::Status>, Status> {
        let n = request.into_inner().count().await;
        Ok(Response::new(awkward::Status { code: n as i32 }))
    }

    async fn from(
        &self,
        request: Request<Streaming<awkward::Box>>,
    ) -> Result<Response<BoxStream<awkward::Box>>, Status> {
        Ok(Response::new(Box::pin(request.into_inner())))
    }
}

#[tokio::test]
async fn a_service_with_awkward_names_serves_and_calls() {
    let url = Url::parse("zap://127.0.0.1:0").unwrap();
    let l = Listener::bind(&url, None, Limits::default()).await.unwrap();
    let url = l.local_url();
    let router = Router::new()
        .add_service(awkward::ResultServer::new(Awkward))
        .unwrap();
    tokio::spawn(Server::builder().serve(l, router));
    let c = awkward::ResultClient::new(Channel::builder(url).connect_lazy());

    let r = c
        .drop(awkward::Request {
            request: Bytes::from_static(b"hi"),
        })
        .await
        .unwrap();
    assert_eq!(r.into_inner().response, "hi");
    let s = awkward::Self_ {
        r#type: 1,
        r#fn: "f".into(),
        self_: true,
        r#async: Bytes::from_static(b"a"),
        r#match: 5,
    };
    assert_eq!(c.clone(s.clone()).await.unwrap().into_inner(), s);
    let t = awkward::r#type { r#struct: 3 };
    assert_eq!(c.r#type(t.clone()).await.unwrap().into_inner(), t);
    let msg = awkward::Msg {
        theirs: Some(awkward::other::Msg {
            text: "theirs".into(),
            nested: Some(awkward::other::msg::Nested { values: vec![1] }),
        }),
        ours: 1,
    };
    assert_eq!(c.new_(msg).await.unwrap().into_inner().text, "theirs");
    let items = c
        .channel_(awkward::Vec::default())
        .await
        .unwrap()
        .into_inner()
        .count()
        .await;
    assert_eq!(items, 2);
    let opts = futures_util::stream::iter(vec![awkward::Option::default(); 4]);
    // `c.into(..)` would find `Into::into` first (by-value receivers are
    // tried before `&self`): a method named like a prelude trait method
    // is called with its path.
    let got = awkward::ResultClient::into(&c, opts).await.unwrap();
    assert_eq!(got.into_inner().code, 4);
    let boxes = futures_util::stream::iter(vec![awkward::Box::default(); 3]);
    let back: Vec<_> = c.from(boxes).await.unwrap().into_inner().collect().await;
    assert_eq!(back.len(), 3);
    assert_eq!(awkward::result_methods::DROP, "/awkward.Result/Drop");
}

/// The derive with `#[zap(number = N)]` and zap-build produce the same
/// representation: the same bytes, readable by each other.
#[test]
fn derive_and_zap_build_agree_on_the_bytes() {
    #[derive(zap::Message, Debug, PartialEq)]
    struct Account {
        #[zap(number = 2)]
        id: u64,
        #[zap(number = 4)]
        name: zap::Text,
        #[zap(number = 6)]
        balances: Vec<u64>,
    }
    let derived = Account {
        id: 3,
        name: "same".into(),
        balances: vec![4, 5],
    };
    let generated = v1::Account {
        id: 3,
        name: "same".into(),
        balances: vec![4, 5],
    };
    let bytes = derived.to_bytes().unwrap();
    assert_eq!(bytes, generated.to_bytes().unwrap());
    assert_eq!(v1::Account::decode(bytes.clone()).unwrap(), generated);
    assert_eq!(Account::decode(bytes).unwrap(), derived);
}
