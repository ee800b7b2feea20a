//! An in-memory chain served as the `vm.VM` service of `proto/vm.proto`.
//!
//! A block's bytes are a 48-byte [`Header`] (parent id, height, timestamp,
//! little-endian) followed by the payload; its id is the SHA-256 of the
//! bytes. The VM keeps accepted blocks (with a height index) and processing
//! ones (built or parsed, then verified) in memory, and follows the node's
//! calls:
//!
//! - `Initialize` makes the genesis block (height 0) from `genesis_bytes`;
//!   `config_bytes` is the payload size of built blocks, a little-endian
//!   `u64` (see [`config_bytes`]).
//! - `BuildBlock` builds on the preferred block; `ParseBlock` recognises
//!   bytes; `BlockVerify` checks that the parent is verified or the last
//!   accepted block and that the height is the parent's plus one;
//!   `SetPreference` moves the tip; `BlockAccept` extends the accepted chain
//!   (and drops processing blocks it conflicts with); `BlockReject` drops a
//!   block and its descendants.
//! - Malformed or out-of-order requests fail with a status
//!   (`INVALID_ARGUMENT`, `FAILED_PRECONDITION`); lookups that find nothing
//!   answer in band where the message has an `err` field (`GetBlock`,
//!   `GetBlockIDAtHeight`: `Error::NOT_FOUND`) and with `NOT_FOUND`
//!   otherwise.
//! - `WaitForEvent` streams `BUILD_BLOCK` whenever the VM has something to
//!   build: after `SetState(NORMAL_OP)` and after each accepted block (its
//!   mempool is never empty). Events coalesce; the stream ends at `Shutdown`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use zap::{BoxStream, Request, Response, Status};

use crate::vm;

/// A block or chain id: 32 bytes.
pub type Id = [u8; 32];

/// Header length: parent id (32) ‖ height (`u64` LE) ‖ timestamp (`i64` LE).
pub const HEADER_LEN: usize = 32 + 8 + 8;

/// Payload size of built blocks when `config_bytes` is empty.
pub const DEFAULT_PAYLOAD: usize = 1024;

/// Largest payload the VM builds: a block travels whole in one message
/// (16 MiB at most), so stay well below.
pub const MAX_PAYLOAD: usize = 8 << 20;

/// Most bytes one `GetAncestors` answer carries, whatever the request asks.
pub const MAX_ANCESTORS_BYTES: usize = 8 << 20;

/// The fixed start of a block's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The parent block's id (zeros for genesis).
    pub parent_id: Id,
    /// Height: the parent's plus one, genesis 0.
    pub height: u64,
    /// Unix nanoseconds.
    pub timestamp: i64,
}

impl Header {
    /// The block bytes: this header, then `payload`.
    pub fn encode(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&self.parent_id);
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Splits block bytes into header and payload.
    pub fn decode(bytes: &[u8]) -> Result<(Header, &[u8]), String> {
        if bytes.len() < HEADER_LEN {
            return Err(format!(
                "block is {} bytes, shorter than its {HEADER_LEN}-byte header",
                bytes.len()
            ));
        }
        let mut parent_id = [0; 32];
        parent_id.copy_from_slice(&bytes[..32]);
        let header = Header {
            parent_id,
            height: u64::from_le_bytes(le8(&bytes[32..40])),
            timestamp: i64::from_le_bytes(le8(&bytes[40..48])),
        };
        Ok((header, &bytes[HEADER_LEN..]))
    }
}

/// Eight bytes as an array (`s` is 8 bytes long).
fn le8(s: &[u8]) -> [u8; 8] {
    let mut a = [0; 8];
    a.copy_from_slice(s);
    a
}

/// A block's id: the SHA-256 of its bytes.
pub fn block_id(bytes: &[u8]) -> Id {
    Sha256::digest(bytes).into()
}

/// `config_bytes` for `Initialize`: the payload size of built blocks.
pub fn config_bytes(payload_size: u64) -> Bytes {
    Bytes::copy_from_slice(&payload_size.to_le_bytes())
}

/// The first 6 bytes of `id` in hex, for printing.
pub fn short_id(id: &[u8]) -> String {
    id.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// An id from a message's `bytes` field, which must be 32 bytes.
fn id_field(field: &str, bytes: &[u8]) -> Result<Id, Status> {
    bytes.try_into().map_err(|_| {
        Status::invalid_argument(format!("{field} must be 32 bytes, got {}", bytes.len()))
    })
}

#[derive(Clone, Debug)]
struct Block {
    id: Id,
    header: Header,
    bytes: Bytes,
    /// Processing blocks only: verified yet?
    verified: bool,
}

impl Block {
    /// A block from bytes the VM keeps. Bytes that arrived in a request
    /// are a slice of the connection's read buffer (zero copy): keeping
    /// them would pin that whole buffer, so they are copied once here.
    fn parse(bytes: &Bytes) -> Result<Block, Status> {
        let (header, _) = Header::decode(bytes).map_err(Status::invalid_argument)?;
        Ok(Block {
            id: block_id(bytes),
            header,
            bytes: Bytes::copy_from_slice(bytes),
            verified: false,
        })
    }

    fn response(&self) -> vm::BlockResponse {
        vm::BlockResponse {
            id: Bytes::copy_from_slice(&self.id),
            parent_id: Bytes::copy_from_slice(&self.header.parent_id),
            bytes: self.bytes.clone(),
            height: self.header.height,
            timestamp: self.header.timestamp,
            verify_with_context: false,
            err: vm::Error::UNSPECIFIED,
        }
    }
}

#[derive(Debug, Default)]
struct Chain {
    initialized: bool,
    closed: bool,
    state: vm::State,
    network_id: u32,
    payload_size: usize,
    /// Accepted blocks, and their ids by height.
    accepted: HashMap<Id, Block>,
    heights: Vec<Id>,
    /// Built or parsed blocks not yet accepted or rejected.
    processing: HashMap<Id, Block>,
    preferred: Id,
    last_accepted: Id,
}

impl Chain {
    fn get(&self, id: &Id) -> Option<&Block> {
        self.accepted.get(id).or_else(|| self.processing.get(id))
    }

    fn last_accepted(&self) -> Result<&Block, Status> {
        self.accepted
            .get(&self.last_accepted)
            .ok_or_else(|| Status::internal("last accepted block missing"))
    }

    /// Drops processing blocks whose parent is gone, until none is left.
    fn drop_orphans(&mut self) {
        loop {
            let orphans: Vec<Id> = self
                .processing
                .values()
                .filter(|b| self.get(&b.header.parent_id).is_none())
                .map(|b| b.id)
                .collect();
            if orphans.is_empty() {
                return;
            }
            for id in orphans {
                self.processing.remove(&id);
            }
        }
    }
}

/// What `WaitForEvent` streams watch.
#[derive(Clone, Copy, Debug, Default)]
struct Events {
    /// Bumped each time the VM wants to build.
    generation: u64,
    closed: bool,
}

/// The VM: an in-memory chain behind `vm::VM`. Serve it with
/// `vm::VMServer::new(ChainVm::new())`.
#[derive(Debug)]
pub struct ChainVm {
    chain: Mutex<Chain>,
    events: watch::Sender<Events>,
}

impl Default for ChainVm {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVm {
    /// A VM waiting for `Initialize`.
    pub fn new() -> Self {
        ChainVm {
            chain: Mutex::new(Chain::default()),
            events: watch::Sender::new(Events::default()),
        }
    }

    /// The chain, once initialized and until shut down.
    fn running(&self) -> Result<MutexGuard<'_, Chain>, Status> {
        let chain = self.lock()?;
        if chain.closed {
            return Err(Status::failed_precondition("the VM is shut down"));
        }
        if !chain.initialized {
            return Err(Status::failed_precondition("the VM is not initialized"));
        }
        Ok(chain)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Chain>, Status> {
        self.chain
            .lock()
            .map_err(|_| Status::internal("VM state poisoned by a panic"))
    }

    fn want_to_build(&self) {
        self.events.send_modify(|e| e.generation += 1);
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A payload of `len` bytes that differs per height (xorshift64).
fn payload(height: u64, len: usize) -> Vec<u8> {
    let mut x = height.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = vec![0; len];
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = chunk.len();
        chunk.copy_from_slice(&x.to_le_bytes()[..n]);
    }
    out
}

impl vm::VM for ChainVm {
    async fn initialize(
        &self,
        request: Request<vm::InitializeRequest>,
    ) -> Result<Response<vm::InitializeResponse>, Status> {
        let req = request.into_inner();
        let payload_size = match req.config_bytes.len() {
            0 => DEFAULT_PAYLOAD,
            8 => usize::try_from(u64::from_le_bytes(le8(&req.config_bytes))).unwrap_or(usize::MAX),
            n => {
                return Err(Status::invalid_argument(format!(
                    "config_bytes must be empty or a little-endian u64 payload size, got {n} bytes"
                )));
            }
        };
        if payload_size > MAX_PAYLOAD {
            return Err(Status::invalid_argument(format!(
                "payload size {payload_size} is over the {MAX_PAYLOAD}-byte limit"
            )));
        }
        let genesis = Block::parse(&Bytes::from(
            Header {
                parent_id: [0; 32],
                height: 0,
                timestamp: 0,
            }
            .encode(&req.genesis_bytes),
        ))?;

        let mut chain = self.lock()?;
        if chain.initialized {
            return Err(Status::failed_precondition("the VM is already initialized"));
        }
        chain.initialized = true;
        chain.network_id = req.network_id;
        chain.payload_size = payload_size;
        chain.preferred = genesis.id;
        chain.last_accepted = genesis.id;
        chain.heights.push(genesis.id);
        let resp = vm::InitializeResponse {
            last_accepted_id: Bytes::copy_from_slice(&genesis.id),
            last_accepted_parent_id: Bytes::copy_from_slice(&genesis.header.parent_id),
            height: 0,
            bytes: genesis.bytes.clone(),
            timestamp: genesis.header.timestamp,
        };
        chain.accepted.insert(genesis.id, genesis);
        Ok(Response::new(resp))
    }

    async fn set_state(
        &self,
        request: Request<vm::SetStateRequest>,
    ) -> Result<Response<vm::SetStateResponse>, Status> {
        let state = request.into_inner().state;
        if !matches!(
            state,
            vm::State::STATE_SYNCING | vm::State::BOOTSTRAPPING | vm::State::NORMAL_OP
        ) {
            return Err(Status::invalid_argument(format!("unknown state {state:?}")));
        }
        let mut chain = self.running()?;
        chain.state = state;
        let last = chain.last_accepted()?;
        let resp = vm::SetStateResponse {
            last_accepted_id: Bytes::copy_from_slice(&last.id),
            last_accepted_parent_id: Bytes::copy_from_slice(&last.header.parent_id),
            height: last.header.height,
            bytes: last.bytes.clone(),
            timestamp: last.header.timestamp,
        };
        drop(chain);
        if state == vm::State::NORMAL_OP {
            self.want_to_build();
        }
        Ok(Response::new(resp))
    }

    async fn shutdown(&self, _: Request<vm::Empty>) -> Result<Response<vm::Empty>, Status> {
        self.lock()?.closed = true;
        self.events.send_modify(|e| e.closed = true);
        Ok(Response::new(vm::Empty {}))
    }

    async fn build_block(
        &self,
        _: Request<vm::BuildBlockRequest>,
    ) -> Result<Response<vm::BlockResponse>, Status> {
        let (parent_id, parent, payload_size) = {
            let chain = self.running()?;
            if chain.state != vm::State::NORMAL_OP {
                return Err(Status::failed_precondition(format!(
                    "cannot build in state {:?}",
                    chain.state
                )));
            }
            let parent = chain
                .get(&chain.preferred)
                .ok_or_else(|| Status::internal("preferred block missing"))?;
            (parent.id, parent.header, chain.payload_size)
        };
        // Build and hash without holding the lock.
        let height = parent.height + 1;
        let header = Header {
            parent_id,
            height,
            timestamp: now_nanos().max(parent.timestamp),
        };
        let bytes = Bytes::from(header.encode(&payload(height, payload_size)));
        let block = Block {
            id: block_id(&bytes),
            header,
            bytes,
            verified: false,
        };
        let resp = block.response();
        let mut chain = self.running()?;
        if chain.get(&parent_id).is_none() {
            return Err(Status::failed_precondition(
                "the parent was rejected meanwhile",
            ));
        }
        chain.processing.insert(block.id, block);
        Ok(Response::new(resp))
    }

    async fn parse_block(
        &self,
        request: Request<vm::ParseBlockRequest>,
    ) -> Result<Response<vm::BlockResponse>, Status> {
        let bytes = request.into_inner().bytes;
        let id = block_id(&bytes);
        let mut chain = self.running()?;
        if let Some(known) = chain.get(&id) {
            return Ok(Response::new(known.response()));
        }
        let block = Block::parse(&bytes)?;
        let resp = block.response();
        chain.processing.insert(block.id, block);
        Ok(Response::new(resp))
    }

    async fn get_block(
        &self,
        request: Request<vm::GetBlockRequest>,
    ) -> Result<Response<vm::BlockResponse>, Status> {
        let id = id_field("id", &request.get_ref().id)?;
        let chain = self.running()?;
        Ok(Response::new(match chain.get(&id) {
            Some(b) => b.response(),
            None => vm::BlockResponse {
                err: vm::Error::NOT_FOUND,
                ..Default::default()
            },
        }))
    }

    async fn block_verify(
        &self,
        request: Request<vm::BlockVerifyRequest>,
    ) -> Result<Response<vm::BlockVerifyResponse>, Status> {
        let bytes = request.into_inner().bytes;
        let (header, _) = Header::decode(&bytes).map_err(Status::invalid_argument)?;
        let id = block_id(&bytes);
        let mut chain = self.running()?;
        if chain.accepted.contains_key(&id) {
            return Ok(Response::new(vm::BlockVerifyResponse {
                timestamp: header.timestamp,
            }));
        }
        let last_accepted = chain.last_accepted;
        let parent = if let Some(p) = chain.processing.get(&header.parent_id) {
            if !p.verified {
                return Err(Status::failed_precondition(format!(
                    "parent {} is not verified",
                    short_id(&p.id)
                )));
            }
            p.header
        } else if let Some(p) = chain.accepted.get(&header.parent_id) {
            if p.id != last_accepted {
                return Err(Status::failed_precondition(format!(
                    "parent {} at height {} is below the last accepted block: \
                     the block conflicts with the accepted chain",
                    short_id(&p.id),
                    p.header.height
                )));
            }
            p.header
        } else {
            return Err(Status::failed_precondition(format!(
                "unknown parent {}",
                short_id(&header.parent_id)
            )));
        };
        if header.height != parent.height + 1 {
            return Err(Status::invalid_argument(format!(
                "height {} does not follow the parent's {}",
                header.height, parent.height
            )));
        }
        if header.timestamp < parent.timestamp {
            return Err(Status::invalid_argument(
                "timestamp is before the parent's".to_owned(),
            ));
        }
        match chain.processing.get_mut(&id) {
            Some(b) => b.verified = true,
            None => {
                let mut block = Block::parse(&bytes)?;
                block.verified = true;
                chain.processing.insert(id, block);
            }
        }
        Ok(Response::new(vm::BlockVerifyResponse {
            timestamp: header.timestamp,
        }))
    }

    async fn block_accept(
        &self,
        request: Request<vm::BlockAcceptRequest>,
    ) -> Result<Response<vm::Empty>, Status> {
        let id = id_field("id", &request.get_ref().id)?;
        let mut chain = self.running()?;
        if chain.accepted.contains_key(&id) {
            return Ok(Response::new(vm::Empty {}));
        }
        let Some(block) = chain.processing.get(&id) else {
            return Err(Status::not_found(format!(
                "unknown block {}",
                short_id(&id)
            )));
        };
        if !block.verified {
            return Err(Status::failed_precondition(format!(
                "block {} is not verified",
                short_id(&id)
            )));
        }
        if block.header.parent_id != chain.last_accepted {
            return Err(Status::failed_precondition(format!(
                "block {} does not extend the last accepted block",
                short_id(&id)
            )));
        }
        let Some(block) = chain.processing.remove(&id) else {
            return Err(Status::internal("block vanished"));
        };
        let height = block.header.height;
        chain.last_accepted = id;
        chain.heights.push(id);
        chain.accepted.insert(id, block);
        // Blocks at or below the new height that are not it conflict.
        chain.processing.retain(|_, b| b.header.height > height);
        chain.drop_orphans();
        if chain.get(&chain.preferred).is_none() {
            chain.preferred = id;
        }
        drop(chain);
        self.want_to_build();
        Ok(Response::new(vm::Empty {}))
    }

    async fn block_reject(
        &self,
        request: Request<vm::BlockRejectRequest>,
    ) -> Result<Response<vm::Empty>, Status> {
        let id = id_field("id", &request.get_ref().id)?;
        let mut chain = self.running()?;
        if chain.accepted.contains_key(&id) {
            return Err(Status::failed_precondition(format!(
                "block {} is accepted",
                short_id(&id)
            )));
        }
        if chain.processing.remove(&id).is_none() {
            return Err(Status::not_found(format!(
                "unknown block {}",
                short_id(&id)
            )));
        }
        chain.drop_orphans();
        if chain.get(&chain.preferred).is_none() {
            chain.preferred = chain.last_accepted;
        }
        Ok(Response::new(vm::Empty {}))
    }

    async fn set_preference(
        &self,
        request: Request<vm::SetPreferenceRequest>,
    ) -> Result<Response<vm::Empty>, Status> {
        let id = id_field("id", &request.get_ref().id)?;
        let mut chain = self.running()?;
        let ok = id == chain.last_accepted || chain.processing.get(&id).is_some_and(|b| b.verified);
        if !ok {
            return Err(Status::failed_precondition(format!(
                "cannot prefer {}: neither verified nor the last accepted block",
                short_id(&id)
            )));
        }
        chain.preferred = id;
        Ok(Response::new(vm::Empty {}))
    }

    async fn health(&self, _: Request<vm::Empty>) -> Result<Response<vm::HealthResponse>, Status> {
        let chain = self.running()?;
        let details = format!(
            r#"{{"healthy":true,"network_id":{},"state":"{:?}","height":{},"processing":{}}}"#,
            chain.network_id,
            chain.state,
            chain.heights.len().saturating_sub(1),
            chain.processing.len()
        );
        Ok(Response::new(vm::HealthResponse {
            details: Bytes::from(details),
        }))
    }

    async fn version(
        &self,
        _: Request<vm::Empty>,
    ) -> Result<Response<vm::VersionResponse>, Status> {
        Ok(Response::new(vm::VersionResponse {
            version: concat!("zap-examples chain VM v", env!("CARGO_PKG_VERSION")).into(),
        }))
    }

    async fn get_ancestors(
        &self,
        request: Request<vm::GetAncestorsRequest>,
    ) -> Result<Response<vm::GetAncestorsResponse>, Status> {
        let started = Instant::now();
        let req = request.into_inner();
        let id = id_field("blk_id", &req.blk_id)?;
        let max_num = usize::try_from(req.max_blocks_num)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| Status::invalid_argument("max_blocks_num must be positive"))?;
        let max_size = usize::try_from(req.max_blocks_size)
            .ok()
            .filter(|&n| n > 0)
            .map_or(MAX_ANCESTORS_BYTES, |n| n.min(MAX_ANCESTORS_BYTES));
        let max_time = u64::try_from(req.max_blocks_retrival_time)
            .ok()
            .filter(|&n| n > 0)
            .map(std::time::Duration::from_nanos);

        let chain = self.running()?;
        let mut block = chain
            .get(&id)
            .ok_or_else(|| Status::not_found(format!("unknown block {}", short_id(&id))))?;
        let mut out = vec![block.bytes.clone()];
        let mut size = block.bytes.len();
        while out.len() < max_num && max_time.is_none_or(|t| started.elapsed() < t) {
            let Some(parent) = chain.get(&block.header.parent_id) else {
                break;
            };
            if size + parent.bytes.len() > max_size {
                break;
            }
            size += parent.bytes.len();
            out.push(parent.bytes.clone());
            block = parent;
        }
        Ok(Response::new(vm::GetAncestorsResponse { blks_bytes: out }))
    }

    async fn batched_parse_block(
        &self,
        request: Request<vm::BatchedParseBlockRequest>,
    ) -> Result<Response<vm::BatchedParseBlockResponse>, Status> {
        let req = request.into_inner();
        let mut chain = self.running()?;
        let mut response = Vec::with_capacity(req.request.len());
        for (i, bytes) in req.request.iter().enumerate() {
            let id = block_id(bytes);
            if let Some(known) = chain.get(&id) {
                response.push(known.response());
                continue;
            }
            let block = Block::parse(bytes)
                .map_err(|s| Status::invalid_argument(format!("request[{i}]: {}", s.message())))?;
            response.push(block.response());
            chain.processing.insert(id, block);
        }
        Ok(Response::new(vm::BatchedParseBlockResponse { response }))
    }

    async fn get_block_id_at_height(
        &self,
        request: Request<vm::GetBlockIDAtHeightRequest>,
    ) -> Result<Response<vm::GetBlockIDAtHeightResponse>, Status> {
        let height = request.get_ref().height;
        let chain = self.running()?;
        let found = usize::try_from(height)
            .ok()
            .and_then(|h| chain.heights.get(h));
        Ok(Response::new(match found {
            Some(id) => vm::GetBlockIDAtHeightResponse {
                blk_id: Bytes::copy_from_slice(id),
                err: vm::Error::UNSPECIFIED,
            },
            None => vm::GetBlockIDAtHeightResponse {
                blk_id: Bytes::new(),
                err: vm::Error::NOT_FOUND,
            },
        }))
    }

    async fn wait_for_event(
        &self,
        _: Request<vm::Empty>,
    ) -> Result<Response<BoxStream<vm::Event>>, Status> {
        let wants_now = {
            let chain = self.running()?;
            chain.state == vm::State::NORMAL_OP
        };
        let mut rx = self.events.subscribe();
        if wants_now {
            rx.mark_changed();
        }
        let events = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            if rx.borrow_and_update().closed {
                return None;
            }
            let event = vm::Event {
                message: vm::Message::BUILD_BLOCK,
            };
            Some((Ok(event), rx))
        });
        Ok(Response::new(Box::pin(events)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            parent_id: [7; 32],
            height: 42,
            timestamp: -3,
        };
        let bytes = h.encode(b"payload");
        assert_eq!(bytes.len(), HEADER_LEN + 7);
        let (back, payload) = Header::decode(&bytes).unwrap();
        assert_eq!(back, h);
        assert_eq!(payload, b"payload");
        assert!(Header::decode(&bytes[..HEADER_LEN - 1]).is_err());
    }

    #[test]
    fn payloads_differ_by_height() {
        assert_eq!(payload(1, 13).len(), 13);
        assert_ne!(payload(1, 64), payload(2, 64));
    }
}
