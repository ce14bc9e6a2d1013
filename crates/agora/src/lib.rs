//! `agora`: every Agora component in one binary, like Loki's or Mimir's `-target`.
//!
//! `agora` (or `agora all`) runs the gateway and every service in one process on embedded
//! defaults; `agora <role>` runs one role. Every flag has an `AGORA_*` environment twin; see
//! `agora <role> --help`. The library half exists so tests can start the platform in-process.
//!
//! # Layout
//! - [`cli`]: the flags of each role.
//! - [`roles`]: turning flags into a component's config and running it.
//! - [`all`]: the all-in-one process; [`seed`]: its demo catalog.
//! - [`trace`]: `agora trace`, a trace from Jaeger printed as a tree; [`check`]: `agora check`,
//!   whether a deployed platform answers; [`reconcile`]: `agora reconcile`, whether every
//!   order, payment, debit and unit of stock adds up.

pub mod all;
pub mod check;
pub mod cli;
pub mod reconcile;
pub mod roles;
pub mod seed;
pub mod trace;
