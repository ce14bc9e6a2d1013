//! The gateway's tests that need no backend: routes and transcoding built from test
//! descriptors, the OpenAPI document, and the JSON round-trip property.

mod library;
mod loading;
mod openapi;
mod roundtrip;
mod transcoder;
