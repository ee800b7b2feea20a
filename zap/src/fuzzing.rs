//! The entry door for fuzz targets: thin wrappers that run this crate's
//! internal frame parsers over raw bytes, for the libFuzzer targets in
//! `fuzz/libfuzzer/` (`docs/FUZZING.md`).
//!
//! **Not a public API.** Hidden from the documentation and outside semver:
//! anything here may change or go in any release. The wrappers add no
//! behaviour: each runs the parser the protocol code runs (the same
//! functions, the same checks, in the same order) on a byte slice instead
//! of a socket, and hands back what it produced in public types. Public
//! parts of the protocol ([`crate::proto::Connection`]) are fuzzed through
//! their own API, not through this module.
//!
//! The frame parser is shared by the byte-stream protocol core and the QUIC
//! runtime, and reaches the rest of the crate through the `quic` feature:
//! without it only the HTTP/2 start check is here.

#[cfg(feature = "quic")]
pub use with_frames::*;

/// How far `bytes` go as the start of an HTTP/2 client (PROTOCOL.md §12):
/// `Ok(n)`, complete in `n` bytes; `Err(Some(k))`, at least `k` more
/// needed; `Err(None)`, not an HTTP/2 client's start.
pub fn h2_start(bytes: &[u8]) -> Result<usize, Option<usize>> {
    use crate::proto::sniff::{H2Start, h2_start};
    match h2_start(bytes) {
        H2Start::Complete(n) => Ok(n),
        H2Start::Need(k) => Err(Some(k)),
        H2Start::Bad(_) => Err(None),
    }
}

#[cfg(feature = "quic")]
mod with_frames {
    use bytes::Bytes;

    use crate::metadata::Metadata;
    use crate::proto::{
        CloseHead, FRAME_HEADER_LEN, Frame, Framing, Header, Malformed, OpenHead, Settings,
    };

    /// Frame type numbers (PROTOCOL.md §4) used to build headers below.
    const SETTINGS: u8 = 0;
    const OPEN: u8 = 1;
    const HEADERS: u8 = 3;
    const CLOSE: u8 = 4;

    /// Which stream kind a frame was read from (PROTOCOL.md §3, §11).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Stream {
        /// A byte stream carrying a whole connection.
        Connection,
        /// A QUIC stream carrying one call.
        QuicCall,
        /// A QUIC unidirectional control stream.
        QuicControl,
    }

    impl Stream {
        fn framing(self) -> Framing {
            match self {
                Stream::Connection => Framing::Connection,
                Stream::QuicCall => Framing::QuicCall,
                Stream::QuicControl => Framing::QuicControl,
            }
        }
    }

    /// `Header::parse`: length, type, flags and stream of the first
    /// [`FRAME_HEADER_LEN`] bytes; `None` if fewer.
    pub fn frame_header(data: &[u8]) -> Option<(u32, u8, u8, u32)> {
        Header::parse(data).map(|h| (h.len, h.kind, h.flags, h.stream))
    }

    /// One frame at the front of `data`, read the way both readers do
    /// (`Connection::handle_input`, the QUIC `FrameReader`): the header,
    /// its length checked against `local.max_frame`, then `Frame::parse_in`
    /// on the payload. `Ok(None)`: the frame is not all there; `Ok(Some(n))`:
    /// a valid frame of `n` bytes, header included; `Err`: the protocol
    /// error the reader closes with.
    pub fn frame(
        stream: Stream,
        data: &[u8],
        local: &Settings,
    ) -> Result<Option<usize>, &'static str> {
        let Some(h) = Header::parse(data) else {
            return Ok(None);
        };
        if h.len > local.max_frame {
            return Err("frame exceeds MAX_FRAME");
        }
        let total = FRAME_HEADER_LEN + h.len as usize;
        let Some(whole) = data.get(..total) else {
            return Ok(None);
        };
        let payload = Bytes::copy_from_slice(&whole[FRAME_HEADER_LEN..]);
        Frame::parse_in(stream.framing(), h, payload, local)
            .map(|_| Some(total))
            .map_err(|Malformed(why)| why)
    }

    /// Parses `payload` as a frame of type `kind` with `flags` on stream
    /// `stream` (connection framing).
    fn parse(
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
        local: &Settings,
    ) -> Result<Frame, &'static str> {
        let h = Header {
            len: u32::try_from(payload.len()).map_err(|_| "payload over 4 GiB")?,
            kind,
            flags,
            stream,
        };
        Frame::parse(h, Bytes::copy_from_slice(payload), local).map_err(|Malformed(why)| why)
    }

    /// The pairs of a `SETTINGS` payload (PROTOCOL.md §4.1).
    pub fn settings(payload: &[u8]) -> Result<Vec<(u16, u32)>, &'static str> {
        match parse(SETTINGS, 0, 0, payload, &Settings::default())? {
            Frame::Settings(pairs) => Ok(pairs),
            _ => Err("not parsed as SETTINGS"),
        }
    }

    /// `Settings::apply`: what `base` becomes when the pairs arrive.
    pub fn apply_settings(base: &mut Settings, pairs: &[(u16, u32)]) {
        base.apply(pairs);
    }

    /// A metadata block (PROTOCOL.md §5.1, `u32` length then entries) that
    /// fills `block` exactly, accepted up to `max` bytes: the `HEADERS`
    /// payload.
    pub fn metadata(block: &[u8], max: u32) -> Result<Metadata, &'static str> {
        let local = Settings {
            max_metadata: max,
            ..Settings::default()
        };
        match parse(HEADERS, 0, 1, block, &local)? {
            Frame::Headers { metadata, .. } => Ok(metadata),
            _ => Err("not parsed as HEADERS"),
        }
    }

    /// What a `CLOSE` frame carries: status and trailers, response headers
    /// (flag `HEADERS`), final message (flag `MESSAGE`).
    pub type Close = (CloseHead, Option<Metadata>, Option<Bytes>);

    /// A `CLOSE` payload with `flags` (PROTOCOL.md §4.6); metadata blocks
    /// up to `max_metadata` bytes.
    pub fn close(payload: &[u8], flags: u8, max_metadata: u32) -> Result<Close, &'static str> {
        let local = Settings {
            max_metadata,
            ..Settings::default()
        };
        match parse(CLOSE, flags, 1, payload, &local)? {
            Frame::Close {
                head,
                headers,
                message,
                ..
            } => Ok((head, headers, message)),
            _ => Err("not parsed as CLOSE"),
        }
    }

    /// What an `OPEN` frame carries: method, timeout and metadata, the first
    /// message (flag `MESSAGE`), whether the call is half-closed (`END`).
    pub type Open = (OpenHead, Option<Bytes>, bool);

    /// An `OPEN` payload with `flags` (PROTOCOL.md §4.2); metadata blocks
    /// up to `max_metadata` bytes.
    pub fn open(payload: &[u8], flags: u8, max_metadata: u32) -> Result<Open, &'static str> {
        let local = Settings {
            max_metadata,
            ..Settings::default()
        };
        match parse(OPEN, flags, 1, payload, &local)? {
            Frame::Open {
                head, message, end, ..
            } => Ok((head, message, end)),
            _ => Err("not parsed as OPEN"),
        }
    }
}
