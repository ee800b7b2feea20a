//! Compiles `proto/bench.proto` for the prost anchor, without protoc:
//! protox parses the `.proto` files, prost-build generates the code, with
//! every `bytes` field as `bytes::Bytes` (zero-copy decode, as ZAP's).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "../proto";
    println!("cargo:rerun-if-changed={proto_dir}/bench.proto");
    let fds = protox::compile(["bench.proto"], [proto_dir])?;
    prost_build::Config::new().bytes(["."]).compile_fds(fds)?;
    Ok(())
}
