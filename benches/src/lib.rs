//! Benchmarks of zap against its anchors, measured in one process:
//! prost (with `Bytes` fields) and memcpy for the codec; a raw tokio socket
//! echo, a minimal multiplexed client on it, and tonic for RPC.
//!
//! - `benches/codec.rs`, `benches/rpc.rs`: criterion benches
//!   (`cargo bench -p zap-benches`).
//! - `src/bin/compare.rs`: the `compare` report, ratios against the
//!   anchors in one run
//!   (`cargo run --release -p zap-benches --bin compare -- [codec] [rpc]`).
//!
//! The workloads live here ([`codec`], [`rpc`]) so both use the same
//! messages and code paths.

pub mod alloc;
pub mod codec;
pub mod rpc;

/// prost messages and the tonic `Echo` client and server, generated from
/// `proto/bench.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/zap.bench.rs"));
}

use bytes::Bytes;

/// The block of the VM⇄node API, as a ZAP message.
#[derive(zap::Message, Clone, Debug, PartialEq)]
pub struct Block {
    /// Block id (hash).
    pub id: [u8; 32],
    /// Parent block id.
    pub parent_id: [u8; 32],
    /// Height in the chain.
    pub height: u64,
    /// Unix time, nanoseconds.
    pub timestamp: i64,
    /// Opaque block body.
    pub body: Bytes,
}

/// Body sizes of the codec comparison.
pub const SIZES: [usize; 4] = [1024, 10 * 1024, 100 * 1024, 1024 * 1024];

/// A block with a `size`-byte body of non-constant bytes.
pub fn block(size: usize) -> Block {
    Block {
        id: [0xA5; 32],
        parent_id: [0x5A; 32],
        height: 1_234_567,
        timestamp: 1_700_000_000_123_456_789,
        body: (0..size)
            .map(|i| (i * 31 + 7) as u8)
            .collect::<Vec<u8>>()
            .into(),
    }
}

/// The same block as the prost message.
pub fn pb_block(b: &Block) -> pb::Block {
    pb::Block {
        id: Bytes::copy_from_slice(&b.id),
        parent_id: Bytes::copy_from_slice(&b.parent_id),
        height: b.height,
        timestamp: b.timestamp,
        body: b.body.clone(),
    }
}
