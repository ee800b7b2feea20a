//! Warp message signing over `proto/warp.proto`, with ed25519.
//!
//! The signer ([`zap_examples::signer::Ed25519Signer`]) is served on a
//! task with a fresh key. The client fetches the public key, then signs
//! `--messages` warp messages twice: as one `BatchSign` call (with one
//! deliberately malformed item, which must come back with its error in
//! band while the others are signed) and as that many sequential `Sign`
//! calls. Every signature is verified on the client with the public key
//! (ed25519 is deterministic, so both runs must agree), and a tampered
//! message must fail verification. Prints signatures/s for both ways.
//!
//! ```text
//! cargo run --release -p zap-examples --bin warp_signer -- --messages 1000
//! ```
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use ed25519_dalek::VerifyingKey;
use zap::{Router, Server};
use zap_examples::cli::{self, Args};
use zap_examples::signer::{self, Ed25519Signer};
use zap_examples::stats::{Latencies, Micros};
use zap_examples::{Error, net, warp};

const USAGE: &str = "\
warp_signer: ed25519 warp signatures through warp.proto, batched and one by one

Usage: warp_signer [--url URL] [--messages N]

  --url URL       where the signer listens: zap://HOST:PORT, zaps://HOST:PORT
                  (TLS with a throw-away certificate) or zap+unix:///PATH
                  [default: zap://127.0.0.1:0]
  --messages N    messages to sign each way [default: 1000]";

/// The network the messages belong to.
const NETWORK_ID: u32 = 1;

#[tokio::main]
async fn main() -> ExitCode {
    cli::report(run().await)
}

async fn run() -> Result<(), Error> {
    let args = Args::from_env(USAGE, &["messages"])?;
    let count: usize = args.number("messages", 1000)?;

    let (listener, client_tls) = net::bind(&args.url()?).await?;
    let url = listener.local_url();
    let router = Router::new().add_service(warp::SignerServer::new(Ed25519Signer::generate()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::builder().serve_with_shutdown(listener, router, async {
            let _ = stopped.await;
        }),
    );
    println!("signer serving warp.Signer on {url}");

    let client = warp::SignerClient::new(net::channel(url, client_tls));
    // The client runs on a runtime worker thread, as in a real service:
    // code in `main` sits outside tokio's worker pool, and waking it for
    // each reply costs tens of µs per call.
    let result = tokio::spawn(async move { sign_all(&client, count).await }).await?;
    let _ = stop.send(());
    server.await??;
    result?;
    println!("all checks passed");
    Ok(())
}

/// Message `i`: from one of a few source chains, with a small payload.
fn message(i: usize) -> warp::SignRequest {
    let chain = [u8::try_from(i % 4).unwrap_or(0) + 1; 32];
    warp::SignRequest {
        network_id: NETWORK_ID,
        source_chain_id: Bytes::copy_from_slice(&chain),
        payload: Bytes::from(format!("warp message #{i}: transfer {} units", i * 7)),
    }
}

async fn sign_all(client: &warp::SignerClient, count: usize) -> Result<(), Error> {
    let key = client
        .get_public_key(warp::GetPublicKeyRequest {})
        .await?
        .into_inner();
    if !key.error.is_empty() {
        return Err(format!("GetPublicKey: {}", key.error).into());
    }
    let key_bytes: [u8; 32] = key
        .public_key
        .as_ref()
        .try_into()
        .map_err(|_| format!("public key is {} bytes", key.public_key.len()))?;
    let key = VerifyingKey::from_bytes(&key_bytes)?;
    let hex: String = key_bytes.iter().map(|b| format!("{b:02x}")).collect();
    println!("public key: {hex}");

    let messages: Vec<warp::SignRequest> = (0..count).map(message).collect();

    // One BatchSign call, with a malformed item in the middle.
    let bad_at = count / 2;
    let mut requests = messages.clone();
    requests.insert(
        bad_at,
        warp::SignRequest {
            network_id: NETWORK_ID,
            source_chain_id: Bytes::from_static(&[9; 31]),
            payload: Bytes::from_static(b"a source chain id one byte short"),
        },
    );
    let start = Instant::now();
    let batch = client
        .batch_sign(warp::BatchSignRequest { requests })
        .await?
        .into_inner()
        .responses;
    let batch_time = start.elapsed();
    if batch.len() != count + 1 {
        return Err(format!("BatchSign answered {} of {} items", batch.len(), count + 1).into());
    }
    let bad = &batch[bad_at];
    if bad.error.is_empty() || !bad.signature.is_empty() {
        return Err(format!("the malformed item was not refused: {bad:?}").into());
    }
    println!(
        "batch item {bad_at} (malformed) refused in band: {}",
        bad.error
    );
    let mut batch_sigs = Vec::with_capacity(count);
    for (i, resp) in batch.iter().enumerate().filter(|&(i, _)| i != bad_at) {
        let m = if i < bad_at { i } else { i - 1 };
        if !resp.error.is_empty() {
            return Err(format!("batch item {i}: {}", resp.error).into());
        }
        signer::verify(&key, &messages[m], &resp.signature)
            .map_err(|e| format!("batch item {i}: {e}"))?;
        batch_sigs.push(resp.signature.clone());
    }

    // The same messages, one Sign call each.
    let mut latencies = Latencies::with_capacity(count);
    let start = Instant::now();
    let mut seq_sigs = Vec::with_capacity(count);
    for m in &messages {
        let t = Instant::now();
        let resp = client.sign(m.clone()).await?.into_inner();
        latencies.record(t.elapsed());
        if !resp.error.is_empty() {
            return Err(format!("Sign: {}", resp.error).into());
        }
        seq_sigs.push(resp.signature);
    }
    let seq_time = start.elapsed();
    for (i, (m, sig)) in messages.iter().zip(&seq_sigs).enumerate() {
        signer::verify(&key, m, sig).map_err(|e| format!("Sign {i}: {e}"))?;
    }
    if seq_sigs != batch_sigs {
        return Err("Sign and BatchSign signatures differ (ed25519 is deterministic)".into());
    }
    println!(
        "verified {count} batch and {count} single signatures with the public key; both agree"
    );

    // A signature must not cover a changed message.
    if let (Some(m), Some(sig)) = (messages.first(), seq_sigs.first()) {
        let mut tampered = m.clone();
        tampered.payload = Bytes::from(format!("{}!", String::from_utf8_lossy(&m.payload)));
        match signer::verify(&key, &tampered, sig) {
            Err(e) => println!("tampered message: verification fails as it should ({e})"),
            Ok(()) => return Err("a tampered message verified".into()),
        }
    }

    let rate = |d: std::time::Duration| count as f64 / d.as_secs_f64();
    println!(
        "BatchSign: {count} signatures in 1 call: {:.2} ms, {:.0} signatures/s",
        batch_time.as_secs_f64() * 1e3,
        rate(batch_time)
    );
    println!(
        "Sign:      {count} signatures in {count} calls: {:.2} ms, {:.0} signatures/s (p50 {}, p99 {} per call)",
        seq_time.as_secs_f64() * 1e3,
        rate(seq_time),
        Micros(latencies.percentile(50.0)),
        Micros(latencies.percentile(99.0))
    );
    Ok(())
}
