//! A bidirectional stream with backpressure: orders in, fills out.
//!
//! The `Exchange.Trade` call is one bidirectional stream. The client streams
//! `--orders` orders (id, side, price, quantity); the server matches each
//! against a price-time-priority book and streams the fills back while the
//! orders are still arriving.
//!
//! Backpressure: the client reads the first few fills slowly (it sleeps
//! after each). Nothing grows without bound meanwhile: zap's per-call flow
//! control window stops the server from sending fills the client has not
//! read, so the stream's sender stops pulling from the matching engine, the
//! engine's bounded channel fills and its `send().await` waits, the engine
//! stops reading orders, and the client's outgoing order stream is in turn
//! held back. The example prints how far each stage got while the client
//! slept, then the totals once it reads at full speed.
//!
//! (Server and client share one process here, so the server's counters are
//! read directly to show what it did.)
//!
//! ```text
//! cargo run --release -p zap-examples --bin streaming -- --orders 200000
//! ```
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, VecDeque};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use zap::{BoxStream, Request, Response, Router, Server, Status, Streaming};
use zap_examples::cli::{self, Args};
use zap_examples::{Error, net};

const USAGE: &str = "\
streaming: orders in, fills out, on one bidirectional stream with backpressure

Usage: streaming [--url URL] [--orders N] [--slow N]

  --url URL     where the exchange listens: zap://HOST:PORT, zaps://HOST:PORT
                (TLS with a throw-away certificate) or zap+unix:///PATH
                [default: zap://127.0.0.1:0]
  --orders N    orders to send [default: 200000]
  --slow N      fills the client reads slowly (100 ms each) first [default: 5]";

/// Fills the engine may queue for the stream before its send waits.
const FILL_QUEUE: usize = 64;

/// How long the slow consumer sleeps per fill.
const SLOW_DELAY: Duration = Duration::from_millis(100);

/// An order.
#[derive(zap::Message, Clone, Debug, Default, PartialEq)]
pub struct Order {
    /// Client-chosen id.
    pub id: u64,
    /// Buy (true) or sell (false).
    pub buy: bool,
    /// Limit price, in ticks.
    pub price: u64,
    /// Quantity.
    pub qty: u64,
}

/// A trade between an incoming order and a resting one.
#[derive(zap::Message, Clone, Debug, Default, PartialEq)]
pub struct Fill {
    /// The incoming order.
    pub taker: u64,
    /// The resting order.
    pub maker: u64,
    /// Trade price (the resting order's).
    pub price: u64,
    /// Quantity traded.
    pub qty: u64,
}

/// An exchange: match orders, stream fills.
#[zap::service(package = "exchange")]
pub trait Exchange {
    /// Matches a stream of orders; streams the fills back as they happen.
    async fn trade(
        &self,
        request: Request<Streaming<Order>>,
    ) -> Result<Response<BoxStream<Fill>>, Status>;
}

/// What the matching engine did, for the example to print.
#[derive(Debug, Default)]
struct EngineStats {
    orders: AtomicU64,
    fills: AtomicU64,
    /// Times the engine found the fill queue full and had to wait.
    waits: AtomicU64,
}

/// A price-time-priority book: resting orders by price, oldest first.
#[derive(Debug, Default)]
struct Book {
    bids: BTreeMap<u64, VecDeque<(u64, u64)>>,
    asks: BTreeMap<u64, VecDeque<(u64, u64)>>,
}

impl Book {
    /// Matches `order`, rests what is left, and returns the fills.
    fn submit(&mut self, order: &Order, fills: &mut Vec<Fill>) {
        let mut left = order.qty;
        while left > 0 {
            // The best opposite level, if it crosses.
            let level = if order.buy {
                self.asks.first_entry().filter(|e| *e.key() <= order.price)
            } else {
                self.bids.last_entry().filter(|e| *e.key() >= order.price)
            };
            let Some(mut level) = level else { break };
            let price = *level.key();
            let queue = level.get_mut();
            while left > 0
                && let Some((maker, qty)) = queue.front_mut()
            {
                let traded = left.min(*qty);
                fills.push(Fill {
                    taker: order.id,
                    maker: *maker,
                    price,
                    qty: traded,
                });
                left -= traded;
                *qty -= traded;
                if *qty == 0 {
                    queue.pop_front();
                }
            }
            if queue.is_empty() {
                level.remove();
            }
        }
        if left > 0 {
            let side = if order.buy {
                &mut self.bids
            } else {
                &mut self.asks
            };
            side.entry(order.price)
                .or_default()
                .push_back((order.id, left));
        }
    }
}

struct Matcher {
    stats: Arc<EngineStats>,
}

impl Exchange for Matcher {
    async fn trade(
        &self,
        request: Request<Streaming<Order>>,
    ) -> Result<Response<BoxStream<Fill>>, Status> {
        let mut orders = request.into_inner();
        let (tx, rx) = mpsc::channel(FILL_QUEUE);
        let stats = Arc::clone(&self.stats);
        // The engine: reads orders only as fast as its fills are taken.
        tokio::spawn(async move {
            let mut book = Book::default();
            let mut fills = Vec::new();
            loop {
                let order = match orders.message().await {
                    Ok(Some(order)) => order,
                    Ok(None) => return,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                stats.orders.fetch_add(1, Ordering::Relaxed);
                book.submit(&order, &mut fills);
                for fill in fills.drain(..) {
                    let fill = match tx.try_send(Ok(fill)) {
                        Ok(()) => None,
                        Err(TrySendError::Full(fill)) => Some(fill),
                        Err(TrySendError::Closed(_)) => return,
                    };
                    if let Some(fill) = fill {
                        // Backpressure: wait until the stream takes one.
                        stats.waits.fetch_add(1, Ordering::Relaxed);
                        if tx.send(fill).await.is_err() {
                            return;
                        }
                    }
                    stats.fills.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let fills = futures_util::stream::unfold(rx, |mut rx| async move {
            let fill = rx.recv().await?;
            Some((fill, rx))
        });
        Ok(Response::new(Box::pin(fills)))
    }
}

/// Order `i` of a deterministic random walk around a price of 1000.
fn order(i: u64) -> Order {
    let mut x = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    Order {
        id: i,
        buy: x & 1 == 1,
        price: 995 + (x >> 8) % 11,
        qty: 1 + (x >> 16) % 10,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    cli::report(run().await)
}

async fn run() -> Result<(), Error> {
    let args = Args::from_env(USAGE, &["orders", "slow"])?;
    let count: u64 = args.number("orders", 200_000)?;
    let slow: u64 = args.number("slow", 5)?;

    let (listener, client_tls) = net::bind(&args.url()?).await?;
    let url = listener.local_url();
    let stats = Arc::new(EngineStats::default());
    let matcher = Matcher {
        stats: Arc::clone(&stats),
    };
    let router = Router::new().add_service(ExchangeServer::new(matcher))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::builder().serve_with_shutdown(listener, router, async {
            let _ = stopped.await;
        }),
    );
    println!("exchange serving on {url}");

    let client = ExchangeClient::new(net::channel(url, client_tls));
    // The client runs on a runtime worker thread, as in a real service
    // (code in `main` sits outside tokio's worker pool).
    let result = tokio::spawn(trade(client, count, slow, stats)).await?;
    let _ = stop.send(());
    server.await??;
    result
}

/// Streams `count` orders and reads the fills, the first `slow` slowly.
async fn trade(
    client: ExchangeClient,
    count: u64,
    slow: u64,
    stats: Arc<EngineStats>,
) -> Result<(), Error> {
    // Count the orders as the call takes them from the stream to send.
    let sent = Arc::new(AtomicU64::new(0));
    let orders = {
        let sent = Arc::clone(&sent);
        futures_util::stream::iter(0..count).map(move |i| {
            sent.fetch_add(1, Ordering::Relaxed);
            order(i)
        })
    };

    let start = Instant::now();
    let mut fills = client.trade(orders).await?.into_inner();
    let (mut read, mut volume, mut notional) = (0u64, 0u64, 0u128);
    let mut slow_done = slow == 0;
    while let Some(fill) = fills.message().await? {
        read += 1;
        volume += fill.qty;
        notional += u128::from(fill.price) * u128::from(fill.qty);
        if read <= slow {
            tokio::time::sleep(SLOW_DELAY).await;
        }
        if read == slow {
            slow_done = true;
            let produced = stats.fills.load(Ordering::Relaxed);
            let waits = stats.waits.load(Ordering::Relaxed);
            let orders_in = stats.orders.load(Ordering::Relaxed);
            let orders_out = sent.load(Ordering::Relaxed);
            println!(
                "slow consumer: read {read} fills in {:.0} ms; meanwhile",
                start.elapsed().as_secs_f64() * 1e3
            );
            println!(
                "  server: matched {orders_in} of {count} orders, made {produced} fills, \
                 found its {FILL_QUEUE}-fill queue full {waits} times"
            );
            println!("  client: the call took {orders_out} of {count} orders to send");
            if waits > 0 && orders_out < count {
                println!(
                    "  bounded: {} fills in flight (flow-control window + queue), the engine \
                     waiting to send, and the order stream held back",
                    produced - read
                );
            } else {
                println!(
                    "  not held back: everything fit in the flow-control windows \
                     (send more orders, e.g. --orders 200000, to see backpressure)"
                );
            }
        }
    }
    let elapsed = start.elapsed();
    if !slow_done {
        println!("(the stream ended before {slow} fills)");
    }
    let matched = stats.orders.load(Ordering::Relaxed);
    let made = stats.fills.load(Ordering::Relaxed);
    if matched != count || made != read {
        return Err(format!(
            "lost messages: {matched} of {count} orders matched, {read} of {made} fills read"
        )
        .into());
    }
    println!(
        "done in {:.3} s: {count} orders -> {read} fills, {volume} units traded at an average price of {:.2}",
        elapsed.as_secs_f64(),
        if volume == 0 {
            0.0
        } else {
            notional as f64 / volume as f64
        }
    );
    println!(
        "  {:.0} orders/s in, {:.0} fills/s out; the engine waited {} times in total",
        count as f64 / elapsed.as_secs_f64(),
        read as f64 / elapsed.as_secs_f64(),
        stats.waits.load(Ordering::Relaxed)
    );

    Ok(())
}
