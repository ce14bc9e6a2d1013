//! The gateway's tests: routes and transcoding built from test descriptors, the OpenAPI
//! document, the JSON round-trip property, and end-to-end REST against the services.

mod library;
mod loading;
mod openapi;
mod rest;
mod roundtrip;
mod transcoder;
