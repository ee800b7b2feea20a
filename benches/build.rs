//! Compiles `proto/bench.proto` twice, without protoc:
//!
//! - for the prost and tonic anchors: protox parses the `.proto` files,
//!   tonic-prost-build generates the messages (prost, every `bytes` field as
//!   `bytes::Bytes`: zero-copy decode, as ZAP's) and the `Echo` service's
//!   tonic client and server, into `$OUT_DIR/tonic/`;
//! - for the `zap-grpc` rows: zap-build generates the ZAP `Echo` service
//!   with its gRPC parts (prost twins, conversions, protobuf table), as a
//!   team migrating from gRPC would.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "../proto";
    println!("cargo:rerun-if-changed={proto_dir}/bench.proto");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("tonic");
    std::fs::create_dir_all(&out)?;
    let fds = protox::compile(["bench.proto"], [proto_dir])?;
    tonic_prost_build::configure()
        .bytes(".")
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .out_dir(out)
        .compile_fds(fds)?;
    zap_build::Config::new()
        .grpc(true)
        .compile_protos(&["../proto/bench.proto"], &[proto_dir])?;
    Ok(())
}
