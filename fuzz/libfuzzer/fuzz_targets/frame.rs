//! The ZAP-RPC frame decoder (`Header::parse`, `Frame::parse`, through
//! `zap::fuzzing`): the input after its first byte is a byte stream of
//! frames, parsed one after the other as a connection reads them, under
//! the limits the first byte picks. OPEN frames also go through the OPEN
//! parser, whose result must encode back to the same payload.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zap::fuzzing::{self, Stream};
use zap_libfuzzer::{encode_metadata, local_settings};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let local = local_settings(sel);
    while let Some((len, kind, flags, stream)) = fuzzing::frame_header(rest) {
        assert_eq!(len.to_le_bytes(), rest[0..4]);
        assert_eq!([kind, flags], rest[4..6]);
        assert_eq!(stream.to_le_bytes(), rest[6..10]);
        let n = match fuzzing::frame(Stream::Connection, rest, &local) {
            Ok(Some(n)) => n,
            Ok(None) => {
                assert!(len <= local.max_frame && rest.len() < 10 + len as usize);
                return;
            }
            Err(_) => return,
        };
        assert_eq!(n, 10 + len as usize);
        let payload = &rest[10..n];
        if kind == 1 {
            let (head, message, end) = fuzzing::open(payload, flags, local.max_metadata)
                .expect("an OPEN frame that parsed parses as OPEN");
            assert!(head.method.starts_with(b"/"));
            assert!(std::str::from_utf8(&head.method).is_ok());
            assert_eq!(end, flags & 1 != 0);
            assert_eq!(message.is_some(), flags & 2 != 0);
            let mut again = Vec::with_capacity(payload.len());
            again.extend_from_slice(&(head.method.len() as u16).to_le_bytes());
            again.extend_from_slice(&head.method);
            let micros = head.timeout.map_or(0, |t| t.as_micros() as u64);
            again.extend_from_slice(&micros.to_le_bytes());
            encode_metadata(&head.metadata, &mut again);
            if let Some(m) = &message {
                again.extend_from_slice(m);
            }
            assert_eq!(again, payload, "OPEN does not encode back");
        }
        rest = &rest[n..];
    }
});
