//! Compiles proto/tidemark.proto with prost; protox parses it in Rust, so no protoc binary
//! is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/tidemark.proto");
    let files = protox::compile(["proto/tidemark.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(files)?;
    Ok(())
}
