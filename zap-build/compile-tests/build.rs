//! Generates code for the fixtures in `../tests/fixtures`; with the `grpc`
//! feature, the golden fixture and the evolving message (a recursive one)
//! also get their gRPC parts (prost twins, conversions, protobuf tables).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = "../tests/fixtures";
    zap_build::compile_protos(
        &[
            "../tests/fixtures/awkward.proto",
            "../tests/fixtures/awkward_other.proto",
            "../tests/fixtures/compat_v1.proto",
        ],
        &[dir],
    )?;
    #[cfg(feature = "grpc")]
    let config = {
        let mut c = zap_build::Config::new();
        c.grpc(true);
        c
    };
    #[cfg(not(feature = "grpc"))]
    let config = zap_build::Config::new();
    config.compile_protos(
        &[
            "../tests/fixtures/golden.proto",
            "../tests/fixtures/compat_v2.proto",
        ],
        &[dir],
    )?;
    Ok(())
}
