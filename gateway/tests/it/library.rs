//! Compiling test protos (with the repository's `proto/` on the import path) into an API.

use std::path::{Path, PathBuf};

use gateway::{api::Api, error::ApiError, route::Routes, transcode};

fn roots() -> [PathBuf; 2] {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    [manifest.join("testdata"), manifest.join("../proto")]
}

/// The encoded descriptor set of `file` under `dir` (plus the repository's protos).
pub fn compile(dir: &Path, file: &str) -> Result<Vec<u8>, String> {
    let [_, proto] = roots();
    let mut compiler = protox::Compiler::new([dir.to_path_buf(), proto]).map_err(|e| e.to_string())?;
    compiler.include_imports(true);
    compiler.open_file(file).map_err(|e| e.to_string())?;
    Ok(compiler.encode_file_descriptor_set())
}

/// `testdata/library.proto`, which uses every rule kind.
pub fn library() -> Api {
    let [testdata, _] = roots();
    Api::from_bytes(&compile(&testdata, "library.proto").unwrap()).unwrap()
}

/// Routes `method uri` and transcodes `body`: the method name and the request as JSON.
pub fn transcode(api: &Api, method: &str, uri: &str, body: &str) -> Result<(String, serde_json::Value), ApiError> {
    let uri: http::Uri = uri.parse().unwrap();
    let matched = Routes::new(api.bindings.clone()).find(&method.parse().unwrap(), uri.path())?;
    let message = transcode::request(&matched.binding, matched.captures, uri.query(), body.as_bytes())?;
    let json = serde_json::from_slice(&transcode::to_json(&message).unwrap()).unwrap();
    Ok((matched.binding.method.name().to_owned(), json))
}
