//! Generates code for the fixtures in `../tests/fixtures`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = "../tests/fixtures";
    zap_build::compile_protos(
        &[
            "../tests/fixtures/golden.proto",
            "../tests/fixtures/awkward.proto",
            "../tests/fixtures/awkward_other.proto",
            "../tests/fixtures/compat_v1.proto",
            "../tests/fixtures/compat_v2.proto",
        ],
        &[dir],
    )?;
    Ok(())
}
