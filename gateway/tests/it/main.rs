//! The gateway's tests: routes and transcoding built from test descriptors, the OpenAPI
//! document and the JSON round-trip property (end-to-end REST runs in the top-level tests/rest).

mod library;
mod loading;
mod openapi;
mod roundtrip;
mod transcoder;
