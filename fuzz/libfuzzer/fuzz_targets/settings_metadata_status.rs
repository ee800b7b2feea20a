//! The payload decoders of `zap::proto`'s frame parser (through
//! `zap::fuzzing`): SETTINGS pairs and how they apply (§4.1), a metadata
//! block (§5.1), and CLOSE (§4.6: status, details, headers, trailers, final
//! message) with the status the runtime makes of it. The first byte picks
//! the decoder, the flags and the MAX_METADATA limit; the rest is the
//! payload. Whatever decodes must encode back to the same bytes.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use zap::proto::Settings;
use zap::{Code, Status, fuzzing};
use zap_libfuzzer::{check_metadata, encode_metadata};

const MAX_METADATA: [u32; 4] = [0, 24, 16 << 10, u32::MAX];

fn settings(payload: &[u8]) {
    match fuzzing::settings(payload) {
        Ok(pairs) => {
            assert!(payload.len().is_multiple_of(6) && pairs.len() <= 64);
            assert_eq!(pairs.len() * 6, payload.len());
            for (&(id, v), raw) in pairs.iter().zip(payload.chunks(6)) {
                assert_eq!(id.to_le_bytes(), raw[..2]);
                assert_eq!(v.to_le_bytes(), raw[2..]);
            }
            let mut s = Settings::default();
            fuzzing::apply_settings(&mut s, &pairs);
            assert!(s.stream_window <= i32::MAX as u32);
            assert!(s.connection_window <= i32::MAX as u32);
            // The last value of each known id wins, unknown ids change nothing.
            let last = |want: u16| pairs.iter().rev().find(|p| p.0 == want).map(|p| p.1);
            let d = Settings::default();
            assert_eq!(s.max_frame, last(1).unwrap_or(d.max_frame));
            assert_eq!(
                s.max_concurrent_streams,
                last(2).unwrap_or(d.max_concurrent_streams)
            );
            assert_eq!(s.max_metadata, last(5).unwrap_or(d.max_metadata));
            assert_eq!(s.max_message, last(6).unwrap_or(d.max_message));
        }
        Err(_) => assert!(!payload.len().is_multiple_of(6) || payload.len() > 6 * 64),
    }
}

fn metadata(block: &[u8], max: u32) {
    if let Ok(md) = fuzzing::metadata(block, max) {
        assert!(block.len() - 4 <= max as usize);
        check_metadata(&md);
        let _ = format!("{md:?}");
        let mut again = Vec::with_capacity(block.len());
        encode_metadata(&md, &mut again);
        assert_eq!(again, block, "metadata does not encode back");
    }
}

fn close(payload: &[u8], flags: u8, max: u32) {
    let Ok((head, headers, message)) = fuzzing::close(payload, flags, max) else {
        return;
    };
    assert_eq!(headers.is_some(), flags & 4 != 0);
    assert_eq!(message.is_some(), flags & 2 != 0);
    let text = std::str::from_utf8(&head.message).expect("status message is UTF-8");
    check_metadata(&head.trailers);
    if let Some(h) = &headers {
        check_metadata(h);
    }
    let mut again = Vec::with_capacity(payload.len());
    again.extend_from_slice(&head.code.0.to_le_bytes());
    again.extend_from_slice(&(head.message.len() as u16).to_le_bytes());
    again.extend_from_slice(&head.message);
    again.extend_from_slice(&(head.details.len() as u32).to_le_bytes());
    again.extend_from_slice(&head.details);
    if let Some(h) = &headers {
        encode_metadata(h, &mut again);
    }
    encode_metadata(&head.trailers, &mut again);
    if let Some(m) = &message {
        again.extend_from_slice(m);
    }
    assert_eq!(again, payload, "CLOSE does not encode back");
    // The status a client makes of it.
    let mut status = Status::with_details(head.code, text, head.details.clone());
    *status.metadata_mut() = head.trailers;
    assert_eq!(status.code(), head.code);
    assert_eq!(status.message(), text);
    assert_eq!(status.details(), &head.details);
    let _ = (
        status.code().name(),
        format!("{status}"),
        format!("{status:?}"),
    );
    let _ = Code(head.code.0).name();
    let _: Option<Bytes> = message;
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, payload)) = data.split_first() else {
        return;
    };
    let max = MAX_METADATA[(sel >> 2 & 3) as usize];
    match sel & 3 {
        0 => settings(payload),
        1 => metadata(payload, max),
        // Flags: MESSAGE 0x02, HEADERS 0x04, and unknown ones.
        _ => close(payload, sel >> 4, max),
    }
});
