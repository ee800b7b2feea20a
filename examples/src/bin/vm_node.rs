//! A node driving a VM over `proto/vm.proto`.
//!
//! The VM ([`zap_examples::chain::ChainVm`], an in-memory chain) is served
//! on a task; the node is the client in `main`. It initializes the VM, puts
//! it in normal operation, then for each of `--blocks` blocks runs the
//! consensus round trip a real node makes: `BuildBlock` → `ParseBlock` (of
//! the built bytes) → `BlockVerify` → `SetPreference` → `BlockAccept`,
//! checking heights, parent links and ids (SHA-256 of the bytes) on its
//! side. Then it reads the chain back (`GetBlockIDAtHeight`, `GetBlock`,
//! `GetAncestors`, `BatchedParseBlock`), shows a block with a wrong parent
//! being refused, asks `Health` and `Version`, and shuts the VM down.
//! `WaitForEvent` runs throughout as a server stream of build requests.
//!
//! It prints blocks/s and the p50/p99 latency of each call, and exits with
//! an error if any check fails.
//!
//! ```text
//! cargo run --release -p zap-examples --bin vm_node -- --blocks 1000 --size 100000
//! ```
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use zap::{Code, Response, Router, Server, Status};
use zap_examples::chain::{self, ChainVm, HEADER_LEN, Header, Id, block_id, short_id};
use zap_examples::cli::{self, Args};
use zap_examples::stats::{Latencies, Micros};
use zap_examples::{Error, net, vm};

const USAGE: &str = "\
vm_node: a node driving the in-memory chain VM through vm.proto

Usage: vm_node [--url URL] [--blocks N] [--size BYTES]

  --url URL       where the VM listens: zap://HOST:PORT, zaps://HOST:PORT
                  (TLS with a throw-away certificate) or zap+unix:///PATH
                  [default: zap://127.0.0.1:0]
  --blocks N      blocks to build, verify and accept [default: 1000]
  --size BYTES    payload bytes per block [default: 100000]";

/// Fails the run with a message unless `cond` holds.
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!("check failed: {}", format_args!($($msg)+)).into());
        }
    };
}

#[tokio::main]
async fn main() -> ExitCode {
    cli::report(run().await)
}

async fn run() -> Result<(), Error> {
    let args = Args::from_env(USAGE, &["blocks", "size"])?;
    let blocks: u64 = args.number("blocks", 1000)?;
    let size: u64 = args.number("size", 100_000)?;

    let (listener, client_tls) = net::bind(&args.url()?).await?;
    let url = listener.local_url();
    let router = Router::new().add_service(vm::VMServer::new(ChainVm::new()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::builder().serve_with_shutdown(listener, router, async {
            let _ = stopped.await;
        }),
    );
    println!("VM serving vm.VM on {url}");

    let client = vm::VMClient::new(net::channel(url, client_tls));
    // The node runs on a runtime worker thread like any real client task:
    // code in `main` itself sits outside tokio's worker pool, so each reply
    // would have to wake it across threads (tens of µs per call here).
    let result = tokio::spawn(async move { drive(&client, blocks, size).await }).await?;
    let _ = stop.send(());
    server.await??;
    result?;
    println!("all checks passed");
    Ok(())
}

/// Latency samples of each call the node makes per block.
struct CallStats {
    build: Latencies,
    parse: Latencies,
    verify: Latencies,
    prefer: Latencies,
    accept: Latencies,
}

/// Times one call into `lat`, naming the call in its error.
async fn timed<T>(
    lat: &mut Latencies,
    what: &str,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<T, Error> {
    let start = Instant::now();
    let result = call.await;
    lat.record(start.elapsed());
    result
        .map(Response::into_inner)
        .map_err(|s| format!("{what}: {s}").into())
}

fn id_of(bytes: &Bytes, what: &str) -> Result<Id, Error> {
    Id::try_from(bytes.as_ref())
        .map_err(|_| format!("{what} is {} bytes, not 32", bytes.len()).into())
}

async fn drive(client: &vm::VMClient, blocks: u64, size: u64) -> Result<(), Error> {
    // Initialize: the VM answers its last accepted block, genesis.
    let init = client
        .initialize(vm::InitializeRequest {
            network_id: 1,
            chain_id: Bytes::from_static(&[1; 32]),
            node_id: Bytes::from_static(&[2; 20]),
            genesis_bytes: Bytes::from_static(b"zap examples genesis"),
            config_bytes: chain::config_bytes(size),
            chain_data_dir: "/tmp/zap-examples-chain".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let genesis = id_of(&init.last_accepted_id, "genesis id")?;
    check!(init.height == 0, "genesis height is {}", init.height);
    check!(
        block_id(&init.bytes) == genesis,
        "genesis id is not the hash of its bytes"
    );
    println!("initialized: genesis {} at height 0", short_id(&genesis));

    // Events: a server stream, open for the whole run.
    let mut events = client.wait_for_event(vm::Empty {}).await?.into_inner();

    let state = client
        .set_state(vm::SetStateRequest {
            state: vm::State::NORMAL_OP,
        })
        .await?
        .into_inner();
    check!(
        state.last_accepted_id == init.last_accepted_id,
        "SetState reports another last accepted block"
    );
    let first = tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .map_err(|_| "no WaitForEvent event within 5 s of SetState(NORMAL_OP)")??;
    let first = first.ok_or("WaitForEvent ended early")?;
    check!(
        first.message == vm::Message::BUILD_BLOCK,
        "first event is {:?}",
        first.message
    );
    println!("state NORMAL_OP; WaitForEvent says {:?}", first.message);
    // Count the rest until the stream ends at Shutdown (events coalesce).
    let event_count = tokio::spawn(async move {
        let mut n = 1u64;
        while let Ok(Some(_)) = events.message().await {
            n += 1;
        }
        n
    });

    // The consensus loop.
    let n = usize::try_from(blocks)?;
    let mut stats = CallStats {
        build: Latencies::with_capacity(n),
        parse: Latencies::with_capacity(n),
        verify: Latencies::with_capacity(n),
        prefer: Latencies::with_capacity(n),
        accept: Latencies::with_capacity(n),
    };
    let mut ids: Vec<Id> = Vec::with_capacity(n + 1);
    ids.push(genesis);
    let expected_len = HEADER_LEN + usize::try_from(size)?;
    let started = Instant::now();
    for height in 1..=blocks {
        let parent = ids[ids.len() - 1];
        let built = timed(
            &mut stats.build,
            "BuildBlock",
            client.build_block(vm::BuildBlockRequest::default()),
        )
        .await?;
        let id = id_of(&built.id, "built block id")?;
        check!(
            built.err == vm::Error::UNSPECIFIED,
            "BuildBlock err {:?}",
            built.err
        );
        check!(
            built.height == height,
            "built height {} after {}",
            built.height,
            height - 1
        );
        check!(
            built.parent_id.as_ref() == parent,
            "block {height} does not link to its parent"
        );
        check!(
            built.bytes.len() == expected_len,
            "block {height} is {} bytes, not {expected_len}",
            built.bytes.len()
        );
        check!(
            block_id(&built.bytes) == id,
            "block {height}: id is not the hash of the bytes"
        );
        let (header, _) = Header::decode(&built.bytes)?;
        check!(
            header.parent_id == parent && header.height == height,
            "block {height}: header disagrees with the response"
        );

        let parsed = timed(
            &mut stats.parse,
            "ParseBlock",
            client.parse_block(vm::ParseBlockRequest {
                bytes: built.bytes.clone(),
            }),
        )
        .await?;
        check!(
            parsed.id == built.id && parsed.height == height && parsed.parent_id == built.parent_id,
            "block {height}: ParseBlock disagrees with BuildBlock"
        );

        let verified = timed(
            &mut stats.verify,
            "BlockVerify",
            client.block_verify(vm::BlockVerifyRequest {
                bytes: built.bytes,
                p_chain_height: None,
            }),
        )
        .await?;
        check!(
            verified.timestamp == built.timestamp,
            "block {height}: verified timestamp differs"
        );

        timed(
            &mut stats.prefer,
            "SetPreference",
            client.set_preference(vm::SetPreferenceRequest {
                id: built.id.clone(),
            }),
        )
        .await?;
        timed(
            &mut stats.accept,
            "BlockAccept",
            client.block_accept(vm::BlockAcceptRequest { id: built.id }),
        )
        .await?;
        ids.push(id);
    }
    let elapsed = started.elapsed();
    let rate = blocks as f64 / elapsed.as_secs_f64();
    println!(
        "accepted {blocks} blocks of {size} B payload in {:.3} s: {rate:.1} blocks/s ({:.1} MB/s of payload)",
        elapsed.as_secs_f64(),
        rate * size as f64 / 1e6
    );
    println!("  {:<14} {:>12} {:>12}", "call", "p50", "p99");
    for (name, lat) in [
        ("BuildBlock", &stats.build),
        ("ParseBlock", &stats.parse),
        ("BlockVerify", &stats.verify),
        ("SetPreference", &stats.prefer),
        ("BlockAccept", &stats.accept),
    ] {
        println!(
            "  {name:<14} {:>12} {:>12}",
            Micros(lat.percentile(50.0)),
            Micros(lat.percentile(99.0))
        );
    }

    read_back(client, &ids, size).await?;

    let health = client.health(vm::Empty {}).await?.into_inner();
    println!("Health: {}", String::from_utf8_lossy(&health.details));
    let version = client.version(vm::Empty {}).await?.into_inner();
    println!("Version: {}", version.version);

    client.shutdown(vm::Empty {}).await?;
    let events = tokio::time::timeout(Duration::from_secs(5), event_count)
        .await
        .map_err(|_| "WaitForEvent did not end at Shutdown")??;
    println!(
        "Shutdown: the VM stopped; WaitForEvent delivered {events} BUILD_BLOCK events, then ended"
    );
    match client.build_block(vm::BuildBlockRequest::default()).await {
        Err(s) if s.code() == Code::FAILED_PRECONDITION => {}
        other => return Err(format!("BuildBlock after Shutdown: {other:?}").into()),
    }
    Ok(())
}

/// Reads the accepted chain back and checks it against `ids`
/// (`ids[h]` is the block at height `h`).
async fn read_back(client: &vm::VMClient, ids: &[Id], size: u64) -> Result<(), Error> {
    let tip = ids.len() - 1;
    let mut heights = vec![0, 1, tip / 2, tip];
    heights.dedup();
    for h in heights {
        let h = h.min(tip);
        let resp = client
            .get_block_id_at_height(vm::GetBlockIDAtHeightRequest { height: h as u64 })
            .await?
            .into_inner();
        check!(
            resp.err == vm::Error::UNSPECIFIED && resp.blk_id.as_ref() == ids[h],
            "GetBlockIDAtHeight({h}) -> {resp:?}"
        );
    }
    let past = client
        .get_block_id_at_height(vm::GetBlockIDAtHeightRequest {
            height: tip as u64 + 1,
        })
        .await?
        .into_inner();
    check!(
        past.err == vm::Error::NOT_FOUND,
        "GetBlockIDAtHeight past the tip -> {:?}",
        past.err
    );
    let block = client
        .get_block(vm::GetBlockRequest {
            id: Bytes::copy_from_slice(&ids[tip]),
        })
        .await?
        .into_inner();
    check!(
        block.height == tip as u64,
        "GetBlock(tip) -> height {}",
        block.height
    );
    println!(
        "GetBlockIDAtHeight: heights 0, 1, {}, {tip} match; {} is {:?}",
        tip / 2,
        tip + 1,
        past.err
    );

    // Ancestors come newest first: the tip, its parent, ...
    // (The VM caps an answer at MAX_ANCESTORS_BYTES, at least one block.)
    let block_len = HEADER_LEN + usize::try_from(size)?;
    let want = 10
        .min(ids.len())
        .min((chain::MAX_ANCESTORS_BYTES / block_len).max(1));
    let ancestors = client
        .get_ancestors(vm::GetAncestorsRequest {
            blk_id: Bytes::copy_from_slice(&ids[tip]),
            max_blocks_num: 10,
            ..Default::default()
        })
        .await?
        .into_inner()
        .blks_bytes;
    check!(
        ancestors.len() == want,
        "GetAncestors gave {} blocks, not {want}",
        ancestors.len()
    );
    for (k, bytes) in ancestors.iter().enumerate() {
        check!(
            block_id(bytes) == ids[tip - k],
            "ancestor {k} is not the block at height {}",
            tip - k
        );
    }
    println!(
        "GetAncestors: {} blocks back from the tip, linked",
        ancestors.len()
    );

    let batch: Vec<Bytes> = ancestors.into_iter().take(5).collect();
    let parsed = client
        .batched_parse_block(vm::BatchedParseBlockRequest {
            request: batch.clone(),
        })
        .await?
        .into_inner()
        .response;
    check!(parsed.len() == batch.len(), "BatchedParseBlock count");
    for (k, b) in parsed.iter().enumerate() {
        check!(
            b.id.as_ref() == ids[tip - k] && b.height == (tip - k) as u64,
            "BatchedParseBlock item {k}"
        );
    }
    println!(
        "BatchedParseBlock: {} blocks parsed, ids and heights match",
        parsed.len()
    );

    // A block whose parent the VM never saw must not verify.
    let bogus = Header {
        parent_id: [0xab; 32],
        height: tip as u64 + 1,
        timestamp: 0,
    }
    .encode(b"orphan");
    match client
        .block_verify(vm::BlockVerifyRequest {
            bytes: Bytes::from(bogus),
            p_chain_height: None,
        })
        .await
    {
        Err(s) if s.code() == Code::FAILED_PRECONDITION => {
            println!("BlockVerify of a block with an unknown parent: refused ({s})");
        }
        other => return Err(format!("a block with a wrong parent verified: {other:?}").into()),
    }
    Ok(())
}
