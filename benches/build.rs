//! Compiles `proto/bench.proto` for the prost and tonic anchors, without
//! protoc: protox parses the `.proto` files, tonic-prost-build generates the
//! messages (prost, every `bytes` field as `bytes::Bytes`: zero-copy decode,
//! as ZAP's) and the `Echo` service's tonic client and server, in one file.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "../proto";
    println!("cargo:rerun-if-changed={proto_dir}/bench.proto");
    let fds = protox::compile(["bench.proto"], [proto_dir])?;
    tonic_prost_build::configure()
        .bytes(".")
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .compile_fds(fds)?;
    Ok(())
}
