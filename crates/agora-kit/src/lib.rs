//! What every Agora binary shares: layered configuration, logs, the gRPC server bootstrap
//! (health, reflection, graceful shutdown), the database pool with migrations, JWTs, the
//! caller identity that the gateway forwards, and the value types several services parse.
//!
//! # Layout
//! - [`config`]: defaults < file < `AGORA_*` environment / flags.
//! - [`telemetry`]: `tracing` logs, pretty on a terminal and JSON otherwise.
//! - [`grpc`]: serve a service set with grpc.health.v1 and reflection until shutdown.
//! - [`shutdown`]: SIGTERM / Ctrl-C as a cancellation token.
//! - [`db`]: an `AnyPool` chosen by URL (`sqlite:` or `postgres:`), migrations per backend.
//! - [`auth`]: access tokens (HS256 JWT).
//! - [`defaults`]: where each role listens unless told otherwise.
//! - [`fault`]: the failures every service shares (identity, database, internal) and their
//!   statuses.
//! - [`identity`]: the verified caller, carried as gRPC metadata.
//! - [`trace_context`]: the W3C `traceparent` of the request or event being handled.
//! - [`rpc`]: what is recorded of every gRPC call at either end (span, status, metrics) and the
//!   trace context it carries; [`metrics`]: the process's Prometheus registry.
//! - [`net`]: binding sockets.
//! - [`money`], [`quantity`], [`id`], [`page`], [`time`]: parsed wire values.
//! - `testing` (feature): a fresh database per test on both backends.

pub mod auth;
pub mod callers;
pub mod config;
pub mod db;
pub mod defaults;
pub mod fault;
pub mod grpc;
pub mod id;
pub mod identity;
pub mod methods;
pub mod metrics;
pub mod money;
pub mod net;
pub mod page;
pub mod patience;
pub mod quantity;
pub mod rpc;
pub mod shutdown;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;
pub mod tls;
pub mod trace_context;
