//! The ZAP object codec: `zap_fuzz::exercise` (typed `view`, `decode`,
//! `Owned` of several message shapes, accessors, re-encoding, raw readers),
//! driven by libFuzzer instead of `zap-fuzz`'s own loop.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    zap_fuzz::exercise(data);
});
