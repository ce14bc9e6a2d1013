//! The generated OpenAPI document passes a real validator (openapi-spec-validator, installed
//! by `scripts/python-tools.sh` into the project's cache).

use std::{path::Path, process::Command};

use gateway::api::Api;

use crate::library::library;

fn validate(document: &serde_json::Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/python-tools.sh");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(document).unwrap()).unwrap();
    let output = Command::new("bash").arg(&script).arg("validate").arg(&file).output().unwrap();
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_agora_document_is_valid_openapi_3_1() {
    let document = gateway::openapi::document(&Api::agora().unwrap());
    assert_eq!(document["openapi"], "3.1.0");
    validate(&document);
}

#[test]
fn the_test_api_document_with_every_rule_kind_is_valid_too() {
    validate(&gateway::openapi::document(&library()));
}

#[test]
fn the_validator_catches_a_broken_document() {
    // Proves the check above can fail: a dangling $ref must be refused.
    let mut document = gateway::openapi::document(&Api::agora().unwrap());
    document["components"]["schemas"].as_object_mut().unwrap().remove("agora.order.v1.Order");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/python-tools.sh");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.json");
    std::fs::write(&file, serde_json::to_vec(&document).unwrap()).unwrap();
    let output = Command::new("bash").arg(&script).arg("validate").arg(&file).output().unwrap();
    assert!(!output.status.success(), "a dangling $ref passed validation");
}
