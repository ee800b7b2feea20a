//! Compile-error tests for `#[derive(zap::Message)]` and `#[zap::service]`: every error has a
//! span and all errors of one input are reported together.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
