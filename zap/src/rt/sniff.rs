//! Which protocol a new connection on a server that also serves gRPC
//! speaks (PROTOCOL.md §12), decided before any ZAP or HTTP/2 processing,
//! and the HTTP/2 client's first bytes checked within the handshake
//! deadline.
//!
//! The one-byte sniff hands a connection to HTTP/2 on a single `P`, and
//! hyper's server has no deadline for the client's preface: without the
//! check here a socket that sent one byte would hold its connection slot
//! until the idle timeout. So an HTTP/2 connection is handed over only once
//! its whole client preface and first SETTINGS frame have arrived, by the
//! same deadline (from accept) as a ZAP client's preface and SETTINGS.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use zap_transport::PeerInfo;

use super::grpc::Rewind;
use crate::proto::sniff::{H2_PREFACE, H2Start, h2_start};

/// Bytes read per step while the start is incomplete.
const READ_STEP: usize = 4096;

/// What a connection on a server that also serves gRPC speaks.
pub(crate) enum Sniffed {
    /// ZAP, with the first byte if it was read.
    Zap(zap_transport::Stream, Option<u8>),
    /// HTTP/2 (gRPC), its start checked, with what was read put back.
    H2(Rewind<zap_transport::Stream>),
    /// Closed, not a client of either protocol, silent past the deadline,
    /// or the server is stopping.
    Gone,
}

/// Tells ZAP from HTTP/2: by ALPN under TLS, else by the first byte (ZAP's
/// preface starts with `0x5A`, HTTP/2's with `P`). Everything read here is
/// due by `deadline` (the handshake deadline, from accept); a connection
/// that stays silent, or sends a bad HTTP/2 start, is closed without a
/// word, as a bad ZAP preface is (§2).
pub(crate) async fn sniff(
    mut stream: zap_transport::Stream,
    peer: &PeerInfo,
    deadline: Instant,
    stop: &mut watch::Receiver<bool>,
) -> Sniffed {
    let h2 = match &peer.alpn {
        Some(alpn) if alpn.as_slice() == zap_transport::ALPN_H2 => true,
        Some(_) => return Sniffed::Zap(stream, None),
        None => false,
    };
    let work = async {
        let mut buf = BytesMut::new();
        if !h2 {
            let mut first = [0u8; 1];
            match stream.read(&mut first).await {
                Ok(1) if first[0] == H2_PREFACE[0] => buf.extend_from_slice(&first),
                Ok(1) => return Some(Err(first[0])),
                _ => return None,
            }
        }
        loop {
            let need = match h2_start(&buf) {
                H2Start::Complete(_) => return Some(Ok(buf.freeze())),
                H2Start::Need(n) => n,
                H2Start::Bad(_) => return None,
            };
            // Read only what the start still lacks (and at most a step):
            // the frames after it are hyper's to read.
            buf.reserve(need.min(READ_STEP));
            let mut chunk = (&mut stream).take(need.min(READ_STEP) as u64);
            match chunk.read_buf(&mut buf).await {
                Ok(n) if n > 0 => {}
                _ => return None,
            }
        }
    };
    let timed = tokio::time::timeout_at(deadline.into(), work);
    let read: Option<Result<Bytes, u8>> = tokio::select! {
        r = timed => r.ok().flatten(),
        _ = stop.wait_for(|s| *s) => None,
    };
    match read {
        Some(Ok(start)) => Sniffed::H2(Rewind::new(start, stream)),
        Some(Err(first)) => Sniffed::Zap(stream, Some(first)),
        None => Sniffed::Gone,
    }
}
