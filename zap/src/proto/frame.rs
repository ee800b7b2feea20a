//! Frames: layout, parsing and encoding (docs/PROTOCOL.md §3–§5).
//!
//! Parsing never allocates more than the frame it was given; messages are
//! `Bytes` slices of the frame. Encoding appends to an [`Out`] queue: small
//! pieces are copied into one buffer, large payloads are queued as their own
//! chunk (written with vectored I/O, never copied).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use crate::metadata::{Metadata, check_ascii_value, check_key, is_binary_key};
use crate::status::Code;

/// The client's first 8 bytes: "ZAP-RPC" and protocol version 1.
/// (PROTOCOL.md §2: differs from HTTP/2's `PRI *` and TLS's `16 03` in the
/// first byte, so one port can sniff.)
pub const PREFACE: [u8; 8] = *b"ZAP-RPC\x01";

/// Bytes before every payload: `u32 len`, `u8 type`, `u8 flags`, `u32 stream`.
pub const FRAME_HEADER_LEN: usize = 10;

/// Frame types (PROTOCOL.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Settings = 0,
    Open = 1,
    Message = 2,
    Headers = 3,
    Close = 4,
    Cancel = 5,
    Window = 6,
    Ping = 7,
    GoAway = 8,
    End = 9,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            0 => Kind::Settings,
            1 => Kind::Open,
            2 => Kind::Message,
            3 => Kind::Headers,
            4 => Kind::Close,
            5 => Kind::Cancel,
            6 => Kind::Window,
            7 => Kind::Ping,
            8 => Kind::GoAway,
            9 => Kind::End,
            _ => return None,
        })
    }
}

/// Frame flags (PROTOCOL.md §4).
pub(crate) mod flag {
    /// OPEN, MESSAGE: the sender sends nothing more on this stream.
    pub(crate) const END: u8 = 0x01;
    /// OPEN, CLOSE: the payload ends with a message.
    pub(crate) const MESSAGE: u8 = 0x02;
    /// CLOSE: response headers precede the trailers.
    pub(crate) const HEADERS: u8 = 0x04;
    /// PING: this is the answer.
    pub(crate) const ACK: u8 = 0x01;
}

/// SETTINGS identifiers (PROTOCOL.md §4.1).
pub(crate) mod setting {
    pub(crate) const MAX_FRAME: u16 = 1;
    pub(crate) const MAX_CONCURRENT_STREAMS: u16 = 2;
    pub(crate) const STREAM_WINDOW: u16 = 3;
    pub(crate) const CONNECTION_WINDOW: u16 = 4;
    pub(crate) const MAX_METADATA: u16 = 5;
    pub(crate) const MAX_MESSAGE: u16 = 6;
}

/// What one side announces about what it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Largest frame payload accepted.
    pub max_frame: u32,
    /// Most calls open at once (server); 0 = this side accepts no calls.
    pub max_concurrent_streams: u32,
    /// Initial per-stream receive window, in bytes.
    pub stream_window: u32,
    /// Initial connection receive window, in bytes.
    pub connection_window: u32,
    /// Largest encoded metadata block accepted.
    pub max_metadata: u32,
    /// Largest message accepted.
    pub max_message: u32,
}

impl Default for Settings {
    /// The values a side assumes before the peer's SETTINGS arrive.
    fn default() -> Self {
        Settings {
            max_message: 16 << 20,
            max_metadata: 16 << 10,
            max_frame: (16 << 20) + (64 << 10),
            max_concurrent_streams: 1024,
            stream_window: 1 << 20,
            connection_window: 16 << 20,
        }
    }
}

impl Settings {
    /// Takes the values of a `SETTINGS` frame; unknown ids are ignored
    /// (§4.1).
    pub(crate) fn apply(&mut self, pairs: &[(u16, u32)]) {
        for &(id, v) in pairs {
            match id {
                setting::MAX_FRAME => self.max_frame = v,
                setting::MAX_CONCURRENT_STREAMS => self.max_concurrent_streams = v,
                setting::STREAM_WINDOW => self.stream_window = v.min(i32::MAX as u32),
                setting::CONNECTION_WINDOW => self.connection_window = v.min(i32::MAX as u32),
                setting::MAX_METADATA => self.max_metadata = v,
                setting::MAX_MESSAGE => self.max_message = v,
                _ => {}
            }
        }
    }
}

/// The head of an OPEN frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenHead {
    /// `/package.Service/Method`.
    pub method: Bytes,
    /// Time the caller allows, from when the server reads the frame.
    pub timeout: Option<Duration>,
    /// Request metadata.
    pub metadata: Metadata,
}

/// The head of a CLOSE frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseHead {
    /// Status code.
    pub code: Code,
    /// Status message (UTF-8).
    pub message: Bytes,
    /// Status details (opaque).
    pub details: Bytes,
    /// Trailers.
    pub trailers: Metadata,
}

/// A parsed frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Settings(Vec<(u16, u32)>),
    Open {
        stream: u32,
        end: bool,
        head: OpenHead,
        message: Option<Bytes>,
    },
    Message {
        stream: u32,
        end: bool,
        message: Bytes,
    },
    Headers {
        stream: u32,
        metadata: Metadata,
    },
    Close {
        stream: u32,
        head: CloseHead,
        headers: Option<Metadata>,
        message: Option<Bytes>,
    },
    Cancel {
        stream: u32,
        code: Code,
    },
    Window {
        stream: u32,
        increment: u32,
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: u32,
        debug: Bytes,
    },
    End {
        stream: u32,
    },
}

/// Why a frame could not be parsed: a protocol error that closes the
/// connection. The message goes into GOAWAY's debug data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

/// What carries the frames being parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// A byte stream carrying the whole connection (§3).
    Connection,
    /// A QUIC stream carrying one call (§11).
    #[cfg(feature = "quic")]
    QuicCall,
    /// A QUIC unidirectional control stream (§11).
    #[cfg(feature = "quic")]
    QuicControl,
}

/// The fixed frame header, parsed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub(crate) len: u32,
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    pub(crate) stream: u32,
}

impl Header {
    /// Parses the first [`FRAME_HEADER_LEN`] bytes; `None` if fewer.
    pub(crate) fn parse(b: &[u8]) -> Option<Header> {
        let h = b.first_chunk::<FRAME_HEADER_LEN>()?;
        Some(Header {
            len: u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
            kind: h[4],
            flags: h[5],
            stream: u32::from_le_bytes([h[6], h[7], h[8], h[9]]),
        })
    }
}

/// Reads from a frame payload, failing with a named error.
struct Reader {
    b: Bytes,
}

impl Reader {
    fn need(&self, n: usize, what: &'static str) -> Result<(), Malformed> {
        if self.b.remaining() < n {
            Err(Malformed(what))
        } else {
            Ok(())
        }
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, Malformed> {
        self.need(2, what)?;
        Ok(self.b.get_u16_le())
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, Malformed> {
        self.need(4, what)?;
        Ok(self.b.get_u32_le())
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, Malformed> {
        self.need(8, what)?;
        Ok(self.b.get_u64_le())
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, Malformed> {
        self.need(n, what)?;
        Ok(self.b.split_to(n))
    }
    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.b)
    }
    fn done(&self, what: &'static str) -> Result<(), Malformed> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(Malformed(what))
        }
    }
}

/// Parses a metadata block (PROTOCOL.md §5.1) of at most `max` bytes.
fn metadata(r: &mut Reader, max: u32) -> Result<Metadata, Malformed> {
    let len = r.u32("metadata length")?;
    if len > max {
        return Err(Malformed("metadata block larger than MAX_METADATA"));
    }
    let mut block = Reader {
        b: r.take(len as usize, "metadata block past the frame")?,
    };
    let mut md = Metadata::new();
    while !block.b.is_empty() {
        let klen = block.u16("metadata key length")? as usize;
        let key = block.take(klen, "metadata key past the block")?;
        let vlen = block.u32("metadata value length")? as usize;
        let value = block.take(vlen, "metadata value past the block")?;
        check_key(&key).map_err(|_| Malformed("invalid metadata key"))?;
        if !is_binary_key(&key) {
            check_ascii_value(&value).map_err(|_| Malformed("invalid ASCII metadata value"))?;
        }
        md.push_checked(key, value);
    }
    Ok(md)
}

impl Frame {
    /// Parses a frame whose header was already checked against the size
    /// limit. `local` are this side's settings (limits on what it accepts).
    pub(crate) fn parse(h: Header, payload: Bytes, local: &Settings) -> Result<Frame, Malformed> {
        Frame::parse_in(Framing::Connection, h, payload, local)
    }

    /// Parses a frame read from the given kind of stream (PROTOCOL.md §3,
    /// §11): on a QUIC call stream only call frames are allowed and their
    /// stream field is 0; on a QUIC control stream only `SETTINGS` and
    /// `GOAWAY`.
    pub(crate) fn parse_in(
        framing: Framing,
        h: Header,
        payload: Bytes,
        local: &Settings,
    ) -> Result<Frame, Malformed> {
        let kind = Kind::from_u8(h.kind).ok_or(Malformed("unknown frame type"))?;
        let quic_call = match framing {
            Framing::Connection => false,
            #[cfg(feature = "quic")]
            Framing::QuicCall | Framing::QuicControl => {
                let allowed = if framing == Framing::QuicCall {
                    matches!(
                        kind,
                        Kind::Open | Kind::Message | Kind::Headers | Kind::Close | Kind::End
                    )
                } else {
                    matches!(kind, Kind::Settings | Kind::GoAway)
                };
                if !allowed {
                    return Err(Malformed("frame type not allowed on this QUIC stream"));
                }
                if h.stream != 0 {
                    return Err(Malformed("stream field must be 0 over QUIC"));
                }
                // The stream is the call: its field is 0, checked above.
                framing == Framing::QuicCall
            }
        };
        let on_stream = |ok: bool| {
            if ok || quic_call {
                Ok(())
            } else {
                Err(Malformed("stream id not allowed for this frame type"))
            }
        };
        let mut r = Reader { b: payload };
        let frame = match kind {
            Kind::Settings => {
                on_stream(h.stream == 0)?;
                if !r.b.len().is_multiple_of(6) || r.b.len() > 6 * 64 {
                    return Err(Malformed("SETTINGS payload is not 0..=64 (u16, u32) pairs"));
                }
                let mut v = Vec::with_capacity(r.b.len() / 6);
                while !r.b.is_empty() {
                    v.push((r.u16("setting id")?, r.u32("setting value")?));
                }
                Frame::Settings(v)
            }
            Kind::Open => {
                on_stream(h.stream != 0)?;
                let mlen = r.u16("method length")? as usize;
                let method = r.take(mlen, "method past the frame")?;
                if method.first() != Some(&b'/') || std::str::from_utf8(&method).is_err() {
                    return Err(Malformed("method must be UTF-8 starting with '/'"));
                }
                let micros = r.u64("timeout")?;
                let timeout = (micros != 0).then(|| Duration::from_micros(micros));
                let metadata = metadata(&mut r, local.max_metadata)?;
                let message = if h.flags & flag::MESSAGE != 0 {
                    Some(r.rest())
                } else {
                    r.done("bytes after OPEN head without MESSAGE flag")?;
                    None
                };
                Frame::Open {
                    stream: h.stream,
                    end: h.flags & flag::END != 0,
                    head: OpenHead {
                        method,
                        timeout,
                        metadata,
                    },
                    message,
                }
            }
            Kind::Message => {
                on_stream(h.stream != 0)?;
                Frame::Message {
                    stream: h.stream,
                    end: h.flags & flag::END != 0,
                    message: r.rest(),
                }
            }
            Kind::Headers => {
                on_stream(h.stream != 0)?;
                let metadata = metadata(&mut r, local.max_metadata)?;
                r.done("bytes after HEADERS metadata")?;
                Frame::Headers {
                    stream: h.stream,
                    metadata,
                }
            }
            Kind::Close => {
                on_stream(h.stream != 0)?;
                let code = Code(r.u32("status code")?);
                let mlen = r.u16("status message length")? as usize;
                let message = r.take(mlen, "status message past the frame")?;
                if std::str::from_utf8(&message).is_err() {
                    return Err(Malformed("status message is not UTF-8"));
                }
                let dlen = r.u32("details length")? as usize;
                let details = r.take(dlen, "details past the frame")?;
                let headers = if h.flags & flag::HEADERS != 0 {
                    Some(metadata(&mut r, local.max_metadata)?)
                } else {
                    None
                };
                let trailers = metadata(&mut r, local.max_metadata)?;
                let msg = if h.flags & flag::MESSAGE != 0 {
                    Some(r.rest())
                } else {
                    r.done("bytes after CLOSE head without MESSAGE flag")?;
                    None
                };
                Frame::Close {
                    stream: h.stream,
                    head: CloseHead {
                        code,
                        message,
                        details,
                        trailers,
                    },
                    headers,
                    message: msg,
                }
            }
            Kind::Cancel => {
                on_stream(h.stream != 0)?;
                let code = Code(r.u32("cancel code")?);
                r.done("CANCEL payload is not 4 bytes")?;
                Frame::Cancel {
                    stream: h.stream,
                    code,
                }
            }
            Kind::Window => {
                let increment = r.u32("window increment")?;
                r.done("WINDOW payload is not 4 bytes")?;
                if increment == 0 {
                    return Err(Malformed("WINDOW increment of 0"));
                }
                Frame::Window {
                    stream: h.stream,
                    increment,
                }
            }
            Kind::Ping => {
                on_stream(h.stream == 0)?;
                let data = r.u64("ping data")?.to_le_bytes();
                r.done("PING payload is not 8 bytes")?;
                Frame::Ping {
                    ack: h.flags & flag::ACK != 0,
                    data,
                }
            }
            Kind::GoAway => {
                on_stream(h.stream == 0)?;
                let last_stream = r.u32("last stream id")?;
                let code = r.u32("goaway code")?;
                let dlen = r.u16("debug length")? as usize;
                let debug = r.take(dlen, "debug data past the frame")?;
                r.done("bytes after GOAWAY debug data")?;
                Frame::GoAway {
                    last_stream,
                    code,
                    debug,
                }
            }
            Kind::End => {
                on_stream(h.stream != 0)?;
                r.done("END has no payload")?;
                Frame::End { stream: h.stream }
            }
        };
        Ok(frame)
    }
}

/// Payloads at least this large are queued as their own chunk instead of
/// being copied next to their frame header.
const COPY_LIMIT: usize = 4096;

/// Status messages are cut to this many bytes (on a character boundary).
const MAX_STATUS_MESSAGE: usize = 4096;

/// The longest prefix of `s` (UTF-8) of at most `max` bytes.
fn truncate_utf8(s: &[u8], max: usize) -> &[u8] {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    // Back up to the start of a character (continuation bytes are 10xxxxxx).
    while end > 0 && s[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    &s[..end]
}

/// Growth step of the output buffer.
const OUT_CHUNK: usize = 8 << 10;

/// Encoded output waiting for the socket.
#[derive(Debug, Default)]
pub(crate) struct Out {
    buf: BytesMut,
    queue: VecDeque<Bytes>,
    len: usize,
    /// Growth step of `buf` (0: [`OUT_CHUNK`]).
    chunk: usize,
    /// Each frame gets a buffer of exactly its copied bytes (see
    /// [`Out::exact`]).
    exact: bool,
}

impl Out {
    /// An output buffer that gives each frame exactly the room its copied
    /// bytes take: for a call's own stream, where a frame's buffer goes to
    /// the transport as it is and lives until the peer acknowledges it.
    #[cfg(feature = "quic")]
    pub(crate) fn exact() -> Out {
        Out {
            chunk: 64,
            exact: true,
            ..Out::default()
        }
    }

    /// Exact mode: room for the next frame, `len` payload bytes of which
    /// `message` (if large enough to go as its own chunk) is not copied.
    fn expect(&mut self, len: usize, message: Option<&Bytes>) {
        if !self.exact {
            return;
        }
        // The frames before keep their buffer: growing it would copy them.
        self.seal();
        let own_chunk = message.map_or(0, |m| if m.len() < COPY_LIMIT { 0 } else { m.len() });
        self.buf.reserve(FRAME_HEADER_LEN + len - own_chunk);
    }

    /// Bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn put(&mut self, b: &[u8]) {
        if self.buf.capacity() - self.buf.len() < b.len() {
            // Grow in steps: once the chunks handed to the writer are
            // dropped, `BytesMut` reclaims this storage instead of
            // allocating again.
            let step = if self.chunk == 0 {
                OUT_CHUNK
            } else {
                self.chunk
            };
            self.buf.reserve(b.len().max(step));
        }
        self.buf.extend_from_slice(b);
        self.len += b.len();
    }

    fn payload(&mut self, b: Bytes) {
        if b.len() < COPY_LIMIT {
            self.put(&b);
        } else {
            self.seal();
            self.len += b.len();
            self.queue.push_back(b);
        }
    }

    /// [`Out::payload`] of a message the caller keeps: a small one is
    /// copied, a large one shared.
    fn payload_ref(&mut self, b: &Bytes) {
        if b.len() < COPY_LIMIT {
            self.put(b);
        } else {
            self.payload(b.clone());
        }
    }

    fn seal(&mut self) {
        if !self.buf.is_empty() {
            self.queue.push_back(self.buf.split().freeze());
        }
    }

    /// Everything waiting, as one slice of chunks (for a writer that takes
    /// chunks, like a QUIC stream); report what it took with
    /// [`Out::consumed`].
    #[cfg(feature = "quic")]
    pub(crate) fn pending(&mut self) -> &mut [Bytes] {
        self.seal();
        self.queue.make_contiguous()
    }

    /// Drops the first `chunks` chunks of [`Out::pending`], which a writer
    /// took along with `bytes` bytes in all (a chunk it took only part of
    /// it left holding the rest).
    #[cfg(feature = "quic")]
    pub(crate) fn consumed(&mut self, chunks: usize, bytes: usize) {
        self.queue.drain(..chunks);
        self.len -= bytes;
    }

    /// Drops everything waiting.
    #[cfg(feature = "quic")]
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.queue.clear();
        self.len = 0;
    }

    /// Moves everything waiting into `chunks` (in order).
    pub(crate) fn drain_into(&mut self, chunks: &mut Vec<Bytes>) {
        self.seal();
        chunks.extend(self.queue.drain(..));
        self.len = 0;
    }

    fn header(&mut self, len: usize, kind: Kind, flags: u8, stream: u32) {
        let mut h = [0u8; FRAME_HEADER_LEN];
        h[0..4].copy_from_slice(&(len as u32).to_le_bytes());
        h[4] = kind as u8;
        h[5] = flags;
        h[6..10].copy_from_slice(&stream.to_le_bytes());
        self.put(&h);
    }

    pub(crate) fn preface(&mut self) {
        self.put(&PREFACE);
    }

    pub(crate) fn settings(&mut self, s: &Settings) {
        let pairs = [
            (setting::MAX_FRAME, s.max_frame),
            (setting::MAX_CONCURRENT_STREAMS, s.max_concurrent_streams),
            (setting::STREAM_WINDOW, s.stream_window),
            (setting::CONNECTION_WINDOW, s.connection_window),
            (setting::MAX_METADATA, s.max_metadata),
            (setting::MAX_MESSAGE, s.max_message),
        ];
        self.header(pairs.len() * 6, Kind::Settings, 0, 0);
        for (id, v) in pairs {
            self.put(&id.to_le_bytes());
            self.put(&v.to_le_bytes());
        }
    }

    pub(crate) fn open(
        &mut self,
        stream: u32,
        head: &OpenHead,
        message: Option<&Bytes>,
        end: bool,
    ) {
        let md = metadata_len(&head.metadata);
        let len = open_len(head, message.map(Bytes::len));
        let mut flags = if end { flag::END } else { 0 };
        if message.is_some() {
            flags |= flag::MESSAGE;
        }
        self.expect(len, message);
        self.header(len, Kind::Open, flags, stream);
        self.put(&(head.method.len() as u16).to_le_bytes());
        self.put(&head.method);
        let micros = head
            .timeout
            .map_or(0, |t| (t.as_micros().min(u64::MAX as u128) as u64).max(1));
        self.put(&micros.to_le_bytes());
        self.metadata(&head.metadata, md);
        if let Some(m) = message {
            self.payload_ref(m);
        }
    }

    pub(crate) fn message(&mut self, stream: u32, message: Bytes, end: bool) {
        self.expect(message.len(), Some(&message));
        self.header(
            message.len(),
            Kind::Message,
            if end { flag::END } else { 0 },
            stream,
        );
        self.payload(message);
    }

    pub(crate) fn headers(&mut self, stream: u32, md: &Metadata) {
        let len = metadata_len(md);
        self.expect(4 + len, None);
        self.header(4 + len, Kind::Headers, 0, stream);
        self.metadata(md, len);
    }

    pub(crate) fn close(
        &mut self,
        stream: u32,
        head: &CloseHead,
        headers: Option<&Metadata>,
        message: Option<Bytes>,
    ) {
        let hlen = headers.map(metadata_len);
        let tlen = metadata_len(&head.trailers);
        let status_msg = truncate_utf8(&head.message, MAX_STATUS_MESSAGE);
        let len = close_len(head, headers, message.as_ref().map(Bytes::len));
        let mut flags = 0;
        if headers.is_some() {
            flags |= flag::HEADERS;
        }
        if message.is_some() {
            flags |= flag::MESSAGE;
        }
        self.expect(len, message.as_ref());
        self.header(len, Kind::Close, flags, stream);
        self.put(&head.code.0.to_le_bytes());
        self.put(&(status_msg.len() as u16).to_le_bytes());
        self.put(status_msg);
        self.put(&(head.details.len() as u32).to_le_bytes());
        self.put(&head.details);
        if let (Some(h), Some(l)) = (headers, hlen) {
            self.metadata(h, l);
        }
        self.metadata(&head.trailers, tlen);
        if let Some(m) = message {
            self.payload(m);
        }
    }

    pub(crate) fn cancel(&mut self, stream: u32, code: Code) {
        self.header(4, Kind::Cancel, 0, stream);
        self.put(&code.0.to_le_bytes());
    }

    pub(crate) fn window(&mut self, stream: u32, increment: u32) {
        self.header(4, Kind::Window, 0, stream);
        self.put(&increment.to_le_bytes());
    }

    pub(crate) fn ping(&mut self, ack: bool, data: [u8; 8]) {
        self.header(8, Kind::Ping, if ack { flag::ACK } else { 0 }, 0);
        self.put(&data);
    }

    pub(crate) fn goaway(&mut self, last_stream: u32, code: u32, debug: &[u8]) {
        let debug = &debug[..debug.len().min(1024)];
        self.header(4 + 4 + 2 + debug.len(), Kind::GoAway, 0, 0);
        self.put(&last_stream.to_le_bytes());
        self.put(&code.to_le_bytes());
        self.put(&(debug.len() as u16).to_le_bytes());
        self.put(debug);
    }

    pub(crate) fn end(&mut self, stream: u32) {
        self.header(0, Kind::End, 0, stream);
    }

    fn metadata(&mut self, md: &Metadata, len: usize) {
        self.put(&(len as u32).to_le_bytes());
        for (k, v) in md.entries() {
            self.put(&(k.len() as u16).to_le_bytes());
            self.put(k);
            self.put(&(v.len() as u32).to_le_bytes());
            self.put(v);
        }
    }
}

/// Payload length of an OPEN frame with `head` and a message of `message`
/// bytes.
pub(crate) fn open_len(head: &OpenHead, message: Option<usize>) -> usize {
    2 + head.method.len() + 8 + 4 + metadata_len(&head.metadata) + message.unwrap_or(0)
}

/// Payload length of a CLOSE frame (the status message as truncated when
/// written).
pub(crate) fn close_len(
    head: &CloseHead,
    headers: Option<&Metadata>,
    message: Option<usize>,
) -> usize {
    4 + 2
        + truncate_utf8(&head.message, MAX_STATUS_MESSAGE).len()
        + 4
        + head.details.len()
        + headers.map_or(0, |h| 4 + metadata_len(h))
        + 4
        + metadata_len(&head.trailers)
        + message.unwrap_or(0)
}

/// Encoded size of a metadata block's entries (without its length word).
pub(crate) fn metadata_len(md: &Metadata) -> usize {
    md.entries()
        .iter()
        .map(|(k, v)| 2 + k.len() + 4 + v.len())
        .sum()
}
