//! ZAP-RPC in one process: a server with unary and streaming methods on
//! loopback TCP (or the URL given), a client calling each kind, metadata,
//! a deadline and an error status.
//!
//! `cargo run --release -p zap --example rpc_demo [-- zap+unix:///tmp/demo.sock]`

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use zap::transport::{Limits, Listener, Url};
use zap::{Channel, Code, Message, Request, Response, Router, Server, Status, Streaming};

/// A message of the demo service.
#[derive(zap::Message, Debug)]
struct Order {
    id: u64,
    symbol: String,
    quantity: u32,
}

fn router() -> Router {
    Router::new()
        .unary("/demo.Exchange/Place", |req: Request<Bytes>| async move {
            let order = req.decode::<Order>()?;
            let v = order.view();
            if v.quantity() == 0 {
                return Err(Status::invalid_argument("quantity must be positive"));
            }
            let user = req
                .metadata()
                .get("x-user")
                .unwrap_or("anonymous")
                .to_owned();
            let mut resp = Response::new(Bytes::from(format!(
                "order {} for {} {} accepted for {user}",
                v.id(),
                v.quantity(),
                v.symbol()
            )));
            resp.trailers_mut()
                .insert("x-fee", "0.01")
                .map_err(|e| Status::internal(e.to_string()))?;
            Ok(resp)
        })
        .server_streaming("/demo.Exchange/Ticks", |req: Request<Bytes>| async move {
            let n = req.get_ref().first().copied().unwrap_or(3);
            let ticks = (0..n).map(|i| Ok(Bytes::from(format!("tick {i}"))));
            Ok(Response::new(futures_util::stream::iter(ticks)))
        })
        .client_streaming(
            "/demo.Exchange/Batch",
            |req: Request<Streaming>| async move {
                let mut orders = req.into_inner();
                let mut count = 0u32;
                while let Some(o) = orders.next_as::<Order>().await? {
                    count += o.view().quantity();
                }
                Ok(Response::new(Bytes::from(format!(
                    "{count} units in batch"
                ))))
            },
        )
        .unary("/demo.Exchange/Slow", |_req: Request<Bytes>| async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(Response::new(Bytes::new()))
        })
}

fn order(id: u64, symbol: &str, quantity: u32) -> Bytes {
    Order {
        id,
        symbol: symbol.into(),
        quantity,
    }
    .to_bytes()
    .expect("small message")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "zap://127.0.0.1:0".into());
    let listener = Listener::bind(&Url::parse(&url)?, None, Limits::default()).await?;
    let url = listener.local_url();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::builder().serve_with_shutdown(listener, router(), async {
            let _ = stopped.await;
        }),
    );
    println!("server listening on {url}");

    let ch = Channel::builder(url).connect().await?;

    let mut req = Request::new(order(1, "LUX", 10));
    req.metadata_mut().insert("x-user", "alice")?;
    let resp = ch.unary("/demo.Exchange/Place", req).await?;
    println!(
        "unary           : {} (trailer x-fee = {:?})",
        String::from_utf8_lossy(resp.get_ref()),
        resp.trailers().get("x-fee")
    );

    let err = ch
        .unary("/demo.Exchange/Place", Request::new(order(2, "LUX", 0)))
        .await
        .expect_err("quantity 0 is rejected");
    println!("error status    : {} — {}", err.code(), err.message());

    let ticks = ch
        .server_streaming(
            "/demo.Exchange/Ticks",
            Request::new(Bytes::from_static(&[4])),
        )
        .await?;
    let ticks: Vec<String> = ticks
        .into_inner()
        .map(|t| t.map(|b| String::from_utf8_lossy(&b).into_owned()))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    println!("server streaming: {ticks:?}");

    let batch = futures_util::stream::iter((0..5).map(|i| order(10 + i, "ETH", 2)));
    let resp = ch
        .client_streaming("/demo.Exchange/Batch", Request::new(batch))
        .await?;
    println!(
        "client streaming: {}",
        String::from_utf8_lossy(resp.get_ref())
    );

    let mut slow = Request::new(Bytes::new());
    slow.set_timeout(Duration::from_millis(50));
    let started = Instant::now();
    let err = ch
        .unary("/demo.Exchange/Slow", slow)
        .await
        .expect_err("the deadline ends the call");
    assert_eq!(err.code(), Code::DEADLINE_EXCEEDED);
    println!(
        "deadline        : {} after {:?} (handler stopped)",
        err.code(),
        started.elapsed()
    );

    let err = ch
        .unary("/demo.Exchange/Cancel", Request::new(Bytes::new()))
        .await
        .expect_err("no such method");
    println!("unknown method  : {}", err.code());

    let _ = stop.send(());
    server.await??;
    println!("server drained and stopped");
    Ok(())
}
