//! The start of an HTTP/2 client (PROTOCOL.md §12), checked before a
//! server that also serves gRPC hands a connection to its HTTP/2 server:
//! pure, so it can be fuzzed and tested without sockets.

/// HTTP/2's client connection preface (RFC 9113 §3.4).
pub(crate) const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// HTTP/2 frame header length (RFC 9113 §4.1).
const H2_FRAME_HEADER: usize = 9;
/// Largest first SETTINGS payload accepted: the initial
/// SETTINGS_MAX_FRAME_SIZE, which binds the client's first frame.
const H2_MAX_FIRST_SETTINGS: usize = 16_384;

/// How far the bytes of an HTTP/2 client's start go.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum H2Start {
    /// Complete: the preface and a SETTINGS frame, `n` bytes in all.
    Complete(usize),
    /// So far so good; at least `n` more bytes are needed.
    Need(usize),
    /// Not an HTTP/2 client's start.
    Bad(&'static str),
}

/// Checks `buf` against HTTP/2's client start: the 24-byte preface, then a
/// SETTINGS frame (type 4, no ACK, stream 0, a payload of whole 6-byte
/// settings no longer than 16,384 bytes). Pure, so it can be fuzzed.
pub(crate) fn h2_start(buf: &[u8]) -> H2Start {
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] != H2_PREFACE[..n] {
        return H2Start::Bad("not the HTTP/2 client preface");
    }
    if buf.len() < H2_PREFACE.len() + H2_FRAME_HEADER {
        return H2Start::Need(H2_PREFACE.len() + H2_FRAME_HEADER - buf.len());
    }
    let h = &buf[H2_PREFACE.len()..H2_PREFACE.len() + H2_FRAME_HEADER];
    let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
    let (kind, flags) = (h[3], h[4]);
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7FFF_FFFF;
    if kind != 4 {
        return H2Start::Bad("the first HTTP/2 frame is not SETTINGS");
    }
    if flags & 1 != 0 || stream != 0 || len % 6 != 0 || len > H2_MAX_FIRST_SETTINGS {
        return H2Start::Bad("malformed first HTTP/2 SETTINGS");
    }
    let total = H2_PREFACE.len() + H2_FRAME_HEADER + len;
    match total.checked_sub(buf.len()) {
        Some(0) | None => H2Start::Complete(total),
        Some(more) => H2Start::Need(more),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(len: usize, flags: u8, stream: u32) -> Vec<u8> {
        let mut v = H2_PREFACE.to_vec();
        v.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, 4, flags]);
        v.extend_from_slice(&stream.to_be_bytes());
        v.resize(v.len() + len, 0);
        v
    }

    #[test]
    fn a_complete_start_is_preface_plus_settings() {
        let s = settings(12, 0, 0);
        assert_eq!(h2_start(&s), H2Start::Complete(24 + 9 + 12));
        // Bytes after it (the client's next frames) are left to hyper.
        let mut more = s.clone();
        more.extend_from_slice(b"next frames");
        assert_eq!(h2_start(&more), H2Start::Complete(24 + 9 + 12));
        // Empty SETTINGS is legal.
        assert_eq!(h2_start(&settings(0, 0, 0)), H2Start::Complete(33));
    }

    #[test]
    fn partial_starts_ask_for_the_rest() {
        let s = settings(12, 0, 0);
        assert_eq!(h2_start(b""), H2Start::Need(33));
        assert_eq!(h2_start(b"P"), H2Start::Need(32));
        assert_eq!(h2_start(&s[..24]), H2Start::Need(9));
        assert_eq!(h2_start(&s[..40]), H2Start::Need(5));
    }

    #[test]
    fn anything_else_is_refused() {
        assert!(matches!(h2_start(b"PRX"), H2Start::Bad(_)));
        assert!(matches!(h2_start(b"GET / HTTP/1.1\r\n"), H2Start::Bad(_)));
        assert!(matches!(h2_start(&settings(12, 1, 0)), H2Start::Bad(_)));
        assert!(matches!(h2_start(&settings(12, 0, 1)), H2Start::Bad(_)));
        assert!(matches!(h2_start(&settings(7, 0, 0)), H2Start::Bad(_)));
        // A huge announced length is refused before anything is read for it.
        let mut big = settings(0, 0, 0);
        big[24..27].copy_from_slice(&[0xFF, 0xFF, 0xFA]);
        assert!(matches!(h2_start(&big), H2Start::Bad(_)));
        // A HEADERS frame first.
        let mut headers = settings(0, 0, 0);
        headers[27] = 1;
        assert!(matches!(h2_start(&headers), H2Start::Bad(_)));
    }

    proptest::proptest! {
        /// Any bytes: no panic; a verdict that holds for every extension
        /// (Bad and Complete are final, Need never overshoots).
        #[test]
        fn verdicts_are_consistent(
            mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            valid_prefix in proptest::prelude::any::<bool>(),
            more in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            if valid_prefix {
                let mut v = settings(bytes.len() / 6 * 6 % 96, 0, 0);
                v.truncate(bytes.len().min(v.len()));
                bytes = v;
            }
            let mut longer = bytes.clone();
            longer.extend_from_slice(&more);
            match h2_start(&bytes) {
                H2Start::Bad(_) => proptest::prop_assert!(matches!(h2_start(&longer), H2Start::Bad(_))),
                H2Start::Complete(n) => {
                    proptest::prop_assert!(n <= bytes.len() && n >= 33);
                    proptest::prop_assert_eq!(h2_start(&longer), H2Start::Complete(n));
                    proptest::prop_assert!(matches!(h2_start(&bytes[..n - 1]), H2Start::Need(1)));
                }
                H2Start::Need(k) => {
                    proptest::prop_assert!(k > 0);
                    if more.len() < k {
                        proptest::prop_assert!(!matches!(h2_start(&longer), H2Start::Complete(_)));
                    }
                }
            }
        }
    }
}
