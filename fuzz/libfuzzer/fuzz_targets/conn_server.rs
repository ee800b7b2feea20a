//! A server `Connection` fed a client's byte stream in chunks, with time
//! steps and application calls (send headers, send, close, consumed,
//! goaway...) chosen by the input; half the inputs start with a valid
//! preface and SETTINGS. Input layout: `zap_libfuzzer` (src/lib.rs).

#![no_main]

use libfuzzer_sys::fuzz_target;
use zap::proto::Side;

fuzz_target!(|data: &[u8]| zap_libfuzzer::run(Side::Server, data));
