//! Compile-error tests for `#[derive(zap::Message)]` and `#[zap::service]`: every error has a
//! span and all errors of one input are reported together.

// rustc's notes name the other `Payload` impls and similarly named traits
// (prost's `Message`) differently when the `grpc` feature is on; the
// expected output is the default build's, which the test command runs.
#[test]
#[cfg_attr(
    feature = "grpc",
    ignore = "the expected compiler output is the default build's"
)]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
