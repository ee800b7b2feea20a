//! Quickstart: a zap service in one file.
//!
//! Declares a `Greeter` service in Rust with `#[zap::service]` (no `.proto`
//! needed), with one method of each call kind, serves it on a loopback
//! socket, and calls each method through the generated client:
//!
//! - unary `SayHello`: one request, one response (and an error status);
//! - server streaming `Countdown`: one request, a stream of responses;
//! - client streaming `Upload`: a stream of requests, one response;
//! - bidirectional `Shout`: streams both ways at once.
//!
//! ```text
//! cargo run -p zap-examples --bin quickstart [-- --url zaps://127.0.0.1:0]
//! ```
#![forbid(unsafe_code)]

use bytes::Bytes;
use futures_util::StreamExt;
use std::process::ExitCode;
use zap::{BoxStream, Request, Response, Router, Server, Status, Streaming};

use zap_examples::cli::{self, Args};
use zap_examples::{Error, net};

const USAGE: &str = "\
quickstart: one call of each kind through a service declared with #[zap::service]

Usage: quickstart [--url URL]

  --url URL   where the server listens: zap://HOST:PORT, zaps://HOST:PORT
              (TLS with a throw-away certificate) or zap+unix:///PATH
              [default: zap://127.0.0.1:0, a free loopback port]";

/// Whom to greet.
#[derive(zap::Message, Clone, Debug, Default, PartialEq)]
pub struct HelloRequest {
    /// A name.
    pub name: String,
}

/// A greeting.
#[derive(zap::Message, Clone, Debug, Default, PartialEq)]
pub struct HelloReply {
    /// The greeting.
    pub message: String,
}

/// Where a countdown starts.
#[derive(zap::Message, Clone, Debug, Default, PartialEq)]
pub struct CountdownRequest {
    /// The first number.
    pub from: u64,
}

/// One step of a countdown.
#[derive(zap::Message, Clone, Debug, Default, PartialEq)]
pub struct Tick {
    /// The number.
    pub n: u64,
}

/// A piece of an upload.
#[derive(zap::Message, Clone, Debug, Default, PartialEq)]
pub struct Chunk {
    /// Labels of the chunk.
    pub tags: Vec<String>,
    /// The bytes.
    pub data: Bytes,
}

/// What an upload amounted to.
#[derive(zap::Message, Clone, Debug, Default, PartialEq)]
pub struct UploadSummary {
    /// Chunks received.
    pub chunks: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Every tag seen, in order.
    pub tags: Vec<String>,
}

/// A line of text.
#[derive(zap::Message, Clone, Debug, Default, PartialEq)]
pub struct Line {
    /// The text.
    pub text: String,
}

/// A friendly service with one method of each call kind.
#[zap::service(package = "quickstart")]
pub trait Greeter {
    /// Greets someone (unary).
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status>;
    /// Counts down to 1 (server streaming).
    async fn countdown(
        &self,
        request: Request<CountdownRequest>,
    ) -> Result<Response<BoxStream<Tick>>, Status>;
    /// Adds up uploaded chunks (client streaming).
    async fn upload(
        &self,
        request: Request<Streaming<Chunk>>,
    ) -> Result<Response<UploadSummary>, Status>;
    /// Answers each line in capitals as it arrives (bidirectional).
    async fn shout(
        &self,
        request: Request<Streaming<Line>>,
    ) -> Result<Response<BoxStream<Line>>, Status>;
}

/// The server side: implement the generated trait with `async fn`s.
struct Friendly;

impl Greeter for Friendly {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let name = &request.get_ref().name;
        if name.is_empty() {
            return Err(Status::invalid_argument("a name, please"));
        }
        Ok(Response::new(HelloReply {
            message: format!("Hello, {name}!"),
        }))
    }

    async fn countdown(
        &self,
        request: Request<CountdownRequest>,
    ) -> Result<Response<BoxStream<Tick>>, Status> {
        let from = request.get_ref().from;
        if from > 1000 {
            return Err(Status::invalid_argument("too far to count"));
        }
        let ticks = futures_util::stream::iter((1..=from).rev().map(|n| Ok(Tick { n })));
        Ok(Response::new(Box::pin(ticks)))
    }

    async fn upload(
        &self,
        request: Request<Streaming<Chunk>>,
    ) -> Result<Response<UploadSummary>, Status> {
        let mut chunks = request.into_inner();
        let mut summary = UploadSummary::default();
        while let Some(chunk) = chunks.message().await? {
            summary.chunks += 1;
            summary.bytes += chunk.data.len() as u64;
            summary.tags.extend(chunk.tags);
        }
        Ok(Response::new(summary))
    }

    async fn shout(
        &self,
        request: Request<Streaming<Line>>,
    ) -> Result<Response<BoxStream<Line>>, Status> {
        let answers = request.into_inner().map(|line| {
            line.map(|l| Line {
                text: format!("{}!", l.text.to_uppercase()),
            })
        });
        Ok(Response::new(Box::pin(answers)))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    cli::report(run().await)
}

async fn run() -> Result<(), Error> {
    let args = Args::from_env(USAGE, &[])?;

    // 1. Serve: bind a listener (port 0 = any free port), route the service,
    //    run the server on a task until told to stop.
    let (listener, client_tls) = net::bind(&args.url()?).await?;
    let url = listener.local_url();
    let router = Router::new().add_service(GreeterServer::new(Friendly))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::builder().serve_with_shutdown(listener, router, async {
            let _ = stopped.await;
        }),
    );
    println!("Greeter service listening on {url}\n");

    // 2. Call: a channel to the URL, wrapped in the generated client.
    let client = GreeterClient::new(net::channel(url, client_tls));

    println!("unary SayHello:");
    for name in ["Ada", "Grace"] {
        let reply = client
            .say_hello(HelloRequest { name: name.into() })
            .await?
            .into_inner();
        println!("  SayHello({name:?}) -> {:?}", reply.message);
    }
    match client.say_hello(HelloRequest::default()).await {
        Err(status) => println!(
            "  SayHello(\"\") -> error {}: {}",
            status.code(),
            status.message()
        ),
        Ok(reply) => return Err(format!("expected an error, got {:?}", reply.get_ref()).into()),
    }

    println!("\nserver streaming Countdown:");
    let mut ticks = client
        .countdown(CountdownRequest { from: 5 })
        .await?
        .into_inner();
    let mut seen = Vec::new();
    while let Some(tick) = ticks.message().await? {
        seen.push(tick.n.to_string());
    }
    println!("  Countdown(5) -> {} ... liftoff", seen.join(", "));

    println!("\nclient streaming Upload:");
    let chunks = futures_util::stream::iter((1..=4u8).map(|i| Chunk {
        tags: vec![format!("part-{i}")],
        data: Bytes::from(vec![i; 1024 * usize::from(i)]),
    }));
    let summary = client.upload(chunks).await?.into_inner();
    println!(
        "  sent 4 chunks -> server got {} chunks, {} bytes, tags {:?}",
        summary.chunks, summary.bytes, summary.tags
    );

    println!("\nbidirectional Shout:");
    let lines = futures_util::stream::iter(
        ["zap is", "zero copy", "and fast"].map(|t| Line { text: t.into() }),
    );
    let mut answers = client.shout(lines).await?.into_inner();
    while let Some(line) = answers.message().await? {
        println!("  <- {}", line.text);
    }

    // 3. Stop: the server drains the connections and returns.
    let _ = stop.send(());
    server.await??;
    println!("\nserver stopped; quickstart done");
    Ok(())
}
