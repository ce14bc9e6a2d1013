//! Compiles `proto/` with protox (a pure-Rust protobuf compiler, so no `protoc` is needed) and
//! generates prost messages plus tonic clients and servers.
//!
//! Two outputs come from one compilation: the decoded `FileDescriptorSet` drives code
//! generation, and the *encoded* set (which keeps custom options such as `google.api.http` and
//! `agora.api.v1.policy` as extension bytes) is written to `OUT_DIR` for reflection and for the
//! gateway. Decoding into `prost_types` would silently drop those options.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = proto_files(&proto_root.join("agora"))?;
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let mut compiler = protox::Compiler::new([&proto_root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(files.iter().map(|f| f.strip_prefix(&proto_root).unwrap()))?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("agora_descriptor.bin"), compiler.encode_file_descriptor_set())?;

    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

/// Every `.proto` under `dir`, sorted so that builds are reproducible.
fn proto_files(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            found.extend(proto_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "proto") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}
