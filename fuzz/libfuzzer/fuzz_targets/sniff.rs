//! The HTTP/2 start check of a server that also serves gRPC
//! (`zap::proto::sniff::h2_start`, through `zap::fuzzing`): any bytes get
//! a verdict without a panic, and the verdict is consistent: a complete
//! start stays complete (with the same length) whatever follows it, and is
//! exactly one byte short of complete without its last byte; a refusal
//! stays a refusal; "need more" never asks for nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zap::fuzzing::h2_start;

/// HTTP/2's client preface, put in front of half the inputs so that the
/// SETTINGS checks are reached.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut input = Vec::with_capacity(rest.len() + PREFACE.len());
    if sel & 1 == 1 {
        input.extend_from_slice(PREFACE);
    }
    input.extend_from_slice(rest);
    // The verdict on every prefix, each consistent with the whole.
    let whole = h2_start(&input);
    let cut = usize::from(sel >> 1).min(input.len());
    let part = h2_start(&input[..cut]);
    match whole {
        Ok(n) => {
            assert!(n >= PREFACE.len() + 9 && n <= input.len());
            assert_eq!(h2_start(&input[..n]), Ok(n));
            assert_eq!(h2_start(&input[..n - 1]), Err(Some(1)));
        }
        Err(Some(k)) => assert!(k > 0),
        Err(None) => {}
    }
    match part {
        Ok(n) => assert_eq!(whole, Ok(n)),
        Err(None) => assert_eq!(whole, Err(None)),
        Err(Some(k)) => {
            assert!(k > 0);
            if input.len() < cut + k {
                assert!(whole.is_err());
            }
        }
    }
});
