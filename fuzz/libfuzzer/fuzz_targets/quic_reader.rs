//! What the QUIC call reader parses (docs/PROTOCOL.md §11): frames read
//! from a call stream or a control stream (`Frame::parse_in` with the QUIC
//! framings, after the header's length check against MAX_FRAME), one after
//! the other until the end of the input, which is the end of the stream.
//! The first byte picks the stream kind and the limits.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zap::fuzzing::{self, Stream};
use zap_libfuzzer::local_settings;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let stream = if sel & 0x80 == 0 {
        Stream::QuicCall
    } else {
        Stream::QuicControl
    };
    let local = local_settings(sel);
    loop {
        match fuzzing::frame(stream, rest, &local) {
            Ok(Some(n)) => {
                let (len, kind, _, id) = fuzzing::frame_header(rest).expect("a frame has a header");
                assert_eq!(n, 10 + len as usize);
                // Over QUIC the stream field is 0 and only some types go.
                assert_eq!(id, 0);
                match stream {
                    // OPEN, MESSAGE, HEADERS, CLOSE, END.
                    Stream::QuicCall => assert!(matches!(kind, 1 | 2 | 3 | 4 | 9)),
                    // SETTINGS, GOAWAY.
                    _ => assert!(matches!(kind, 0 | 8)),
                }
                rest = &rest[n..];
            }
            // The end of the stream, possibly inside a frame.
            Ok(None) => return,
            Err(_) => return,
        }
    }
});
