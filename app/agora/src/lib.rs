//! `agora`: every Agora component in one binary, like Loki's or Mimir's `-target`.
//!
//! `agora` (or `agora all`) runs the gateway and every service in one process on embedded
//! defaults; `agora <role>` runs one role. Every flag has an `AGORA_*` environment twin; see
//! `agora <role> --help`. The library half exists so tests can start the platform in-process.
//!
//! # Layout
//! - [`role`]: the roles' names; [`cli`]: the flags of each role and tool.
//! - [`roles`]: turning flags into a component's config and running it.
//! - [`platform`]: the platform in one process, one way (what `all` and the in-process tests
//!   start); [`all`]: the all-in-one process (product-service seeds its demo catalog).
//! - [`ops`]: the operator's tools, `agora trace`, `agora check` and `agora reconcile`
//!   (`agora loadgen` is the `agora-loadgen` crate beside this one).

pub mod all;
pub mod cli;
pub mod ops;
pub mod platform;
pub mod role;
pub mod roles;
