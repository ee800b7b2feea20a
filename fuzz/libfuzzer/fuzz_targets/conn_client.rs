//! A client `Connection` fed a server's byte stream in chunks, with time
//! steps and application calls (open, send, finish, cancel, consumed...)
//! chosen by the input; half the inputs start with a valid SETTINGS.
//! Input layout: `zap_libfuzzer` (src/lib.rs).

#![no_main]

use libfuzzer_sys::fuzz_target;
use zap::proto::Side;

fuzz_target!(|data: &[u8]| zap_libfuzzer::run(Side::Client, data));
