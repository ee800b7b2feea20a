//! The codec workloads: the same `Block` encoded and decoded by ZAP and by
//! prost, with memcpy of the body as the floor. Each op does the same work
//! with the same allocation policy in every implementation:
//!
//! - `encode`: into a buffer reused across iterations (ZAP: a warm
//!   `Builder`; prost: a cleared `Vec`; memcpy: `copy_from_slice` of the
//!   body into an existing buffer).
//! - `decode`: owned decode from `Bytes`, neither side copying the body.
//!   ZAP: `zap::Owned<Block>` (validates everything, keeps the buffer,
//!   reads fields in place); prost: `Block::decode(Bytes)`, which slices
//!   its `bytes` fields (refcount, no copy). memcpy: copying the body out,
//!   the cost a copying decoder cannot go below.
//! - `decode_read_all`: `decode`, then read every field and the body's
//!   first and last byte (ZAP through `Owned::view`).
//!
//! [`Impl::ZapStruct`] is also reported (table only): ZAP's derived-struct
//! decode, `Block::decode(Bytes)`, which builds the Rust struct like prost.

use std::hint::black_box;

use bytes::Bytes;
use prost::Message as _;
use zap::wire::Builder;
use zap::{Message as _, Owned};

use crate::{Block, block, pb, pb_block};

/// Which implementation runs an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// This crate.
    Zap,
    /// prost 0.14 with `bytes::Bytes` fields.
    Prost,
    /// Copying the body, the floor.
    Memcpy,
    /// ZAP decoding into the derived struct (`Block::decode`); same as
    /// `Zap` for encode.
    ZapStruct,
}

impl Impl {
    /// Every implementation, in report order.
    pub const ALL: [Impl; 3] = [Impl::Zap, Impl::Prost, Impl::Memcpy];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Zap => "zap",
            Impl::Prost => "prost",
            Impl::Memcpy => "memcpy",
            Impl::ZapStruct => "zap_struct",
        }
    }
}

/// Which op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// Encode into a reused buffer.
    Encode,
    /// Owned decode from `Bytes`.
    Decode,
    /// Decode, then read every field.
    DecodeReadAll,
}

impl Case {
    /// Every case, in report order.
    pub const ALL: [Case; 3] = [Case::Encode, Case::Decode, Case::DecodeReadAll];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Case::Encode => "encode",
            Case::Decode => "decode",
            Case::DecodeReadAll => "decode_read_all",
        }
    }
}

/// Inputs and reused buffers for one body size.
#[derive(Debug)]
pub struct Fixture {
    block: Block,
    zap_bytes: Bytes,
    builder: Builder,
    pb: pb::Block,
    pb_bytes: Bytes,
    pb_buf: Vec<u8>,
    copy_buf: Vec<u8>,
}

impl Fixture {
    /// Inputs for a body of `size` bytes; the reused buffers start warm.
    pub fn new(size: usize) -> Self {
        let block = block(size);
        let pb = pb_block(&block);
        let mut builder = Builder::with_capacity(size + 256);
        let zap_bytes = Bytes::copy_from_slice(block.encode(&mut builder).expect("encode"));
        let pb_bytes = Bytes::from(pb.encode_to_vec());
        Fixture {
            pb_buf: Vec::with_capacity(pb_bytes.len()),
            copy_buf: vec![0; size],
            block,
            zap_bytes,
            builder,
            pb,
            pb_bytes,
        }
    }

    /// Runs one op; the result only feeds `black_box`.
    #[inline]
    pub fn run(&mut self, imp: Impl, case: Case) -> u64 {
        match (imp, case) {
            (Impl::Zap | Impl::ZapStruct, Case::Encode) => {
                let out = self.builder_encode();
                out as u64
            }
            (Impl::Prost, Case::Encode) => {
                self.pb_buf.clear();
                black_box(&self.pb)
                    .encode(&mut self.pb_buf)
                    .expect("vec grows");
                black_box(&self.pb_buf).len() as u64
            }
            (Impl::Memcpy, Case::Encode | Case::Decode) => {
                let body = black_box(&self.block.body);
                self.copy_buf[..body.len()].copy_from_slice(body);
                black_box(&self.copy_buf).len() as u64
            }
            (Impl::Zap, Case::Decode) => {
                let m = Owned::<Block>::decode(black_box(&self.zap_bytes).clone()).expect("valid");
                black_box(&m);
                m.as_bytes().len() as u64
            }
            (Impl::ZapStruct, Case::Decode) => {
                let b = Block::decode(black_box(&self.zap_bytes).clone()).expect("valid");
                black_box(b).height
            }
            (Impl::Prost, Case::Decode) => {
                let b = pb::Block::decode(black_box(&self.pb_bytes).clone()).expect("valid");
                black_box(b).height
            }
            (Impl::Zap, Case::DecodeReadAll) => {
                let m = Owned::<Block>::decode(black_box(&self.zap_bytes).clone()).expect("valid");
                let v = m.view();
                read_all(v.id(), v.parent_id(), v.height(), v.timestamp(), v.body())
            }
            (Impl::ZapStruct, Case::DecodeReadAll) => {
                let b = Block::decode(black_box(&self.zap_bytes).clone()).expect("valid");
                read_all(&b.id, &b.parent_id, b.height, b.timestamp, &b.body)
            }
            (Impl::Prost, Case::DecodeReadAll) => {
                let b = pb::Block::decode(black_box(&self.pb_bytes).clone()).expect("valid");
                read_all(&b.id, &b.parent_id, b.height, b.timestamp, &b.body)
            }
            (Impl::Memcpy, Case::DecodeReadAll) => {
                let body = black_box(&self.block.body);
                self.copy_buf[..body.len()].copy_from_slice(body);
                let c = black_box(&self.copy_buf);
                c[0] as u64 + c[c.len() - 1] as u64
            }
        }
    }

    #[inline]
    fn builder_encode(&mut self) -> usize {
        black_box(&self.block)
            .encode(&mut self.builder)
            .expect("fits")
            .len()
    }

    /// Encoded sizes (ZAP, prost), for the report.
    pub fn encoded_len(&self) -> (usize, usize) {
        (self.zap_bytes.len(), self.pb_bytes.len())
    }
}

#[inline(always)]
fn read_all(id: &[u8], parent: &[u8], height: u64, ts: i64, body: &[u8]) -> u64 {
    let id = black_box(id);
    let parent = black_box(parent);
    let body = black_box(body);
    id[0] as u64
        + id[id.len() - 1] as u64
        + parent[0] as u64
        + parent[parent.len() - 1] as u64
        + black_box(height)
        + black_box(ts) as u64
        + body.first().copied().unwrap_or(0) as u64
        + body.last().copied().unwrap_or(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_impl_reads_the_same_values() {
        let mut f = Fixture::new(1024);
        let zap = f.run(Impl::Zap, Case::DecodeReadAll);
        let prost = f.run(Impl::Prost, Case::DecodeReadAll);
        assert_eq!(zap, prost);
        assert_eq!(f.run(Impl::ZapStruct, Case::DecodeReadAll), prost);
        assert_eq!(
            f.run(Impl::ZapStruct, Case::Decode),
            f.run(Impl::Prost, Case::Decode)
        );
        let (zap_len, pb_len) = f.encoded_len();
        assert_eq!(f.run(Impl::Zap, Case::Encode), zap_len as u64);
        assert_eq!(f.run(Impl::Prost, Case::Encode), pb_len as u64);
    }
}
