//! Generates the `vm` and `warp` packages from `../proto`; with the `grpc`
//! feature also the interop test service, the gRPC fallback's parts of all
//! three (prost twins, conversions, protobuf tables), and tonic's own
//! client of them (tonic-prost-build) for the compatibility tests.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(not(feature = "grpc"))]
    zap_build::compile_protos(&["../proto/vm.proto", "../proto/warp.proto"], &["../proto"])?;
    #[cfg(feature = "grpc")]
    {
        let protos = [
            "../proto/vm.proto",
            "../proto/warp.proto",
            "../proto/interop.proto",
        ];
        zap_build::Config::new()
            .grpc(true)
            .compile_protos(&protos, &["../proto"])?;
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("tonic");
        std::fs::create_dir_all(&out)?;
        let fds = protox::compile(["vm.proto", "interop.proto"], ["../proto"])?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(false)
            .build_transport(true)
            .out_dir(out)
            .compile_fds(fds)?;
    }
    Ok(())
}
