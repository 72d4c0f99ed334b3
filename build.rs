//! Compiles the `.proto` files of `proto/causalkv/v1/` (listed below) with the pure-Rust `protox`
//! compiler and generates tonic code,
//! so no system `protoc` is needed anywhere (laptop, Docker, CI).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = [
        "proto/causalkv/v1/types.proto",
        "proto/causalkv/v1/replication.proto",
        "proto/causalkv/v1/membership.proto",
        "proto/causalkv/v1/transfer.proto",
        "proto/causalkv/v1/admin.proto",
    ];
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // The descriptor set feeds gRPC server reflection, so `grpcurl list` works without .proto files.
    std::fs::write(
        out.join("causalkv_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
