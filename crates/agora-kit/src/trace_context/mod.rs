//! W3C Trace Context: the `traceparent` that ties one client request to everything it causes,
//! across the gateway, the gRPC servers and the events on the bus, and the W3C `baggage`
//! (key=value pairs a client attaches, such as a tenant or an experiment) that travels with it.
//!
//! A request's context lives in a task-local while its handler runs: the server end of
//! [`crate::rpc`] puts it there on every gRPC server (a child of the caller's `traceparent`, or
//! a new trace) and the gateway on every REST request ([`Incoming::enter`]); the client end of
//! [`crate::rpc`] carries it on to the services called, the event envelope copies [`current`]
//! into its headers, and the event consumer runs each handler under the context the message
//! carried. So an order's `OrderPlaced`, the payment's `PaymentSucceeded` and the final
//! `OrderPaid` all carry the trace id of the REST call that placed it.
//!
//! Each hop (a REST request, a gRPC call served or made, an event published or consumed) is
//! also a `tracing` span started with [`hop`]. When traces are exported
//! ([`crate::telemetry`]) that span is an OpenTelemetry span whose parent is the context the
//! hop received, and the context passed on names that span, so the exported spans form one
//! tree per trace. Without export the ids are made up here and the spans are log context only.

//!
//! # Layout
//! - `w3c`: the formats, parsed and printed ([`TraceParent`], [`Baggage`], [`Incoming`]).
//! - `current`: the task-local ([`current`], [`scope`], [`outgoing`], [`Incoming::enter`]).
//! - `span`: hops as spans and the OpenTelemetry bridge ([`hop`], [`fail`], [`link`]).
//!
//! Why not OpenTelemetry's propagators: they move an `opentelemetry::Context` in and out of
//! headers, but the context must exist whether or not spans are exported (log lines and event
//! headers carry it either way), so the task-local and the made-up ids would stay ours; and the
//! baggage must pass through unchanged, as received. What is left for a propagator to do is the
//! parsing, which is a few dozen lines here with the spec's cases as tests.

mod current;
mod span;
mod w3c;

pub use current::{baggage, current, outgoing, scope, scope_with};
pub use span::{fail, hop, link, rename, span_context};
pub use w3c::{BAGGAGE, Baggage, Incoming, TRACEPARENT, TraceParent};
