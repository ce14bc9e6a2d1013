//! The context of the request or event being handled: a task-local, set for the duration of
//! a handler, read by whatever it calls or publishes.

use std::future::Future;

use tracing::Instrument;

use super::{BAGGAGE, Baggage, Incoming, TRACEPARENT, TraceParent};

#[derive(Debug, Clone)]
struct Current {
    trace: TraceParent,
    baggage: Option<Baggage>,
}

tokio::task_local! {
    static CURRENT: Current;
}

/// The context of the request or event being handled, if any.
pub fn current() -> Option<TraceParent> {
    CURRENT.try_with(|c| c.trace).ok()
}

/// The baggage of the request or event being handled, if any.
pub fn baggage() -> Option<Baggage> {
    CURRENT.try_with(|c| c.baggage.clone()).ok().flatten()
}

/// Runs `future` with `context` as the current context; the baggage stays as it is.
pub async fn scope<F: Future>(context: TraceParent, future: F) -> F::Output {
    scope_with(context, baggage(), future).await
}

/// Runs `future` with `context` and `baggage` as the current ones.
pub async fn scope_with<F: Future>(context: TraceParent, baggage: Option<Baggage>, future: F) -> F::Output {
    CURRENT.scope(Current { trace: context, baggage }, future).await
}

/// The headers that carry the current context and baggage on to the next hop.
pub fn outgoing() -> Vec<(&'static str, String)> {
    let Ok(current) = CURRENT.try_with(Current::clone) else { return Vec::new() };
    let mut headers = vec![(TRACEPARENT, current.trace.to_string())];
    headers.extend(current.baggage.map(|b| (BAGGAGE, b.to_string())));
    headers
}

impl Incoming {
    /// Runs `future` as the hop that received this, the server end of a call: inside `span`
    /// (started as the hop, see [`super::hop`]), with the context the hop passes on and the
    /// baggage it received as the current ones.
    pub async fn enter<F: Future>(self, span: tracing::Span, future: F) -> F::Output {
        let context = self.hop(&span);
        scope_with(context, self.baggage, future.instrument(span)).await
    }
}
