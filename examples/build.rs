//! Generates the `vm` and `warp` packages from `../proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    zap_build::compile_protos(&["../proto/vm.proto", "../proto/warp.proto"], &["../proto"])?;
    Ok(())
}
