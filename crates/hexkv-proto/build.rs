//! Compiles `proto/hexkv/v1/kv.proto` with protox (pure Rust: no system `protoc` needed) and writes
//! the encoded descriptor set, which server reflection serves, next to the generated code.

use std::path::PathBuf;

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let file = root.join("hexkv/v1/kv.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let fds = protox::compile([&file], [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("hexkv_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .bytes(".hexkv.v1")
        .compile_fds(fds)?;
    Ok(())
}
