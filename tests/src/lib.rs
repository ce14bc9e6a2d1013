//! Agora's end-to-end suite: the platform's parts put together on real infrastructure
//! (`make test` starts it). It sits on top of every layer, so it may use any crate; the crates
//! below it test themselves alone.
//!
//! The suites are this package's `[[test]]` targets:
//! - `discovery`: balanced channels following product-service instances through a real
//!   Consul agent: registration, health, ejection, retries, an agent restart.
//! - `migrations`: no released migration changes, on either backend.
