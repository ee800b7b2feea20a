//! A tour of the ZAP codec: derive a message, encode it into a reused
//! builder, read it in place, decode it without copying, evolve the schema,
//! and reject damaged bytes with an error that says where.
//!
//! `cargo run --release -p zap --example codec_demo`

use bytes::Bytes;
use zap::wire::Builder;
use zap::{Message, Owned};

/// A block as the VM⇄node API carries it.
#[derive(zap::Message, Debug, Clone, PartialEq)]
struct Block {
    id: [u8; 32],
    parent_id: [u8; 32],
    height: u64,
    timestamp: i64,
    body: Bytes,
}

/// The same block, one release later: a field added at the end.
#[derive(zap::Message, Debug, Clone, PartialEq)]
struct BlockV2 {
    id: [u8; 32],
    parent_id: [u8; 32],
    height: u64,
    timestamp: i64,
    body: Bytes,
    proposer: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let block = Block {
        id: [0xAB; 32],
        parent_id: [0xCD; 32],
        height: 42,
        timestamp: 1_700_000_000_000_000_000,
        body: Bytes::from_static(b"two transfers and a vote"),
    };

    // Encode into a builder that is reused for every message.
    let mut builder = Builder::new();
    let wire = Bytes::copy_from_slice(block.encode(&mut builder)?);
    println!("encoded Block: {} bytes", wire.len());
    println!("  header: {}", hex(&wire[..16]));
    println!(
        "  root  : size word {}",
        u32::from_le_bytes(wire[16..20].try_into()?)
    );

    // Read in place: validated once, then accessors cannot fail.
    let view = Block::view(&wire)?;
    println!(
        "view    : height {} timestamp {} body {:?}",
        view.height(),
        view.timestamp(),
        std::str::from_utf8(view.body())?
    );

    // Owned zero-copy message: keeps the buffer, 'static + Send.
    let owned = Owned::<Block>::decode(wire.clone())?;
    let body = owned.slice(owned.view().body());
    println!(
        "owned   : body shares the frame: {}",
        wire.as_ptr_range().contains(&body.as_ptr())
    );

    // The derived struct; `body` is a slice of `wire`, not a copy.
    let decoded = Block::decode(wire.clone())?;
    assert_eq!(decoded, block);
    println!("decoded : {} == original", decoded.height);

    // Schema evolution, both ways.
    let newer = BlockV2::decode(wire.clone())?;
    println!(
        "v1 -> v2: proposer = {:?} (absent: default)",
        newer.proposer
    );
    let v2 = BlockV2 {
        proposer: Some("node-7".into()),
        ..newer
    };
    let older = Block::decode(v2.to_bytes()?)?;
    println!("v2 -> v1: height {} (new field skipped)", older.height);

    // Damaged input: a clear error, never a panic or a zero value.
    let mut bad = wire.to_vec();
    let body_slot = 16 + 88; // the body's {rel, len} slot in this layout
    bad[body_slot + 4..body_slot + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    match Block::decode(Bytes::from(bad)) {
        Ok(_) => println!("damaged : accepted?!"),
        Err(e) => println!("damaged : {e}"),
    }
    Ok(())
}
