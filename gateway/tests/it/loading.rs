//! A bad annotation stops the gateway at start with a message that names the method.

use gateway::api::Api;

use crate::library::{compile, library};

fn load(service_body: &str) -> Result<Api, String> {
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "syntax = \"proto3\";\npackage test.bad.v1;\nimport \"agora/api/v1/options.proto\";\n\
         import \"google/api/annotations.proto\";\nmessage Req {{ string id = 1; Inner inner = 2; repeated string ids = 3; }}\n\
         message Inner {{ string x = 1; }}\nservice Bad {{ rpc Call(Req) returns (Req) {{ {service_body} }} }}\n"
    );
    std::fs::write(dir.path().join("bad.proto"), source).unwrap();
    Api::from_bytes(&compile(dir.path(), "bad.proto")?).map_err(|e| e.to_string())
}

const PUBLIC: &str = "option (agora.api.v1.policy) = {access: ACCESS_PUBLIC};";

#[test]
fn every_rule_of_the_test_api_becomes_a_binding() {
    // Eight methods, one with an additional binding.
    assert_eq!(library().bindings.len(), 9);
}

#[test]
fn a_method_without_annotations_has_no_route() {
    assert_eq!(load("").unwrap().bindings.len(), 0);
}

#[test]
fn bad_annotations_are_refused_naming_the_method() {
    let public = |rule: &str| format!("option (google.api.http) = {rule}; {PUBLIC}");
    for (body, expected) in [
        ("option (google.api.http) = {get: \"/v1/x/{id}\"};".to_owned(), "no (agora.api.v1.policy)"),
        (
            "option (google.api.http) = {get: \"/v1/x\"}; option (agora.api.v1.policy) = {access: ACCESS_INTERNAL};"
                .to_owned(),
            "internal",
        ),
        (public("{get: \"/v1/x/{nope}\"}"), "has no field \"nope\""),
        (public("{get: \"/v1/x/{inner}\"}"), "must be a scalar"),
        (public("{get: \"/v1/x/{ids}\"}"), "must be a scalar"),
        (public("{post: \"/v1/x\" body: \"missing\"}"), "body field \"missing\""),
        (public("{get: \"/v1/x\" response_body: \"missing\"}"), "response_body"),
        (public("{get: \"v1/x\"}"), "must start with '/'"),
    ] {
        let error = load(&body).unwrap_err();
        assert!(error.contains("test.bad.v1.Bad.Call"), "{error}");
        assert!(error.contains(expected), "{body}: {error}");
    }
}
