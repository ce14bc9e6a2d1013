//! The operator's tools: commands that look at a running platform from outside, through its
//! public interfaces (the gateway, Jaeger's query API) or, read-only, its databases.
//!
//! - [`trace`]: `agora trace`, a trace from Jaeger printed as a tree.
//! - [`certs`]: `agora certs`, a development CA and each role's certificate for mutual TLS.
//! - [`check`]: `agora check`, whether a deployed platform answers (what `helm test` runs).
//! - [`client`]: `agora client`, the REST API from the command line (sign up, sign in,
//!   products, orders followed until they settle).
//! - [`history`]: `agora check-history`, whether what a load run's clients were told adds up
//!   (the checker lives with `agora loadgen`, which writes the history).
//! - [`reconcile`]: `agora reconcile`, whether every order, payment, debit and unit of stock
//!   adds up, from the audit queries each service exports over its own tables.

pub mod certs;
pub mod check;
pub mod client;
pub mod history;
pub mod reconcile;
pub mod trace;
