//! Hops as spans, bridged to OpenTelemetry: a hop's span continues the context it received
//! (as an exported span's remote parent, or with made-up ids when nothing is exported), and
//! the span conventions every hop shares (failure, links, renaming, baggage attributes).

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{Baggage, Incoming, TraceParent};

impl Baggage {
    /// Puts every member on `span` as a `baggage.KEY` attribute, so a trace shows what the
    /// request carried at each hop.
    pub fn tag(&self, span: &tracing::Span) {
        for key in self.keys() {
            if let Some(value) = self.get(key) {
                span.set_attribute(format!("baggage.{key}"), value);
            }
        }
    }
}

impl Incoming {
    /// Starts `span` as the hop that received this (see [`hop`]), tagged with the baggage, and
    /// returns the context it passes on.
    pub fn hop(&self, span: &tracing::Span) -> TraceParent {
        let context = hop(span, self.parent);
        if let Some(baggage) = &self.baggage {
            baggage.tag(span);
        }
        context
    }
}

/// Starts `span` as a hop after `parent` (the context the hop received; none starts a trace)
/// and returns the context the hop passes on. `span` must declare the empty fields `trace_id`
/// and `span_id`, which get the hop's ids, so every log line inside it carries them.
pub fn hop(span: &tracing::Span, parent: Option<TraceParent>) -> TraceParent {
    if let Some(parent) = parent {
        // Fails only when spans are not exported (no OpenTelemetry layer): nothing to parent.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(span_context(parent)));
    }
    let context = exported(span).unwrap_or_else(|| parent.map_or_else(TraceParent::root, |p| p.child()));
    span.record("trace_id", context.trace_id_hex());
    span.record("span_id", format!("{:016x}", context.span_id));
    context
}

/// Renames `span` once what it is has become known (the gateway's request span learns its
/// route from a layer inside). The exported span is renamed too: its name is fixed once it
/// started, so recording `otel.name` would not reach it.
pub fn rename(span: &tracing::Span, name: String) {
    span.context().span().update_name(name);
}

/// Links `span` to `context` (a consumer to the publish it handles). Call before [`hop`].
pub fn link(span: &tracing::Span, context: TraceParent) {
    span.add_link(span_context(context));
}

/// The OpenTelemetry form of `context`, as a remote parent or a span link.
pub fn span_context(context: TraceParent) -> SpanContext {
    let flags = if context.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
    SpanContext::new(
        TraceId::from_bytes(context.trace_id.to_be_bytes()),
        SpanId::from_bytes(context.span_id.to_be_bytes()),
        flags,
        true,
        TraceState::default(),
    )
}

/// The ids of `span` when it is an exported OpenTelemetry span.
fn exported(span: &tracing::Span) -> Option<TraceParent> {
    let cx = span.context();
    let own = cx.span().span_context().clone();
    own.is_valid().then(|| TraceParent {
        trace_id: u128::from_be_bytes(own.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(own.span_id().to_bytes()),
        sampled: own.is_sampled(),
    })
}

/// Marks `span` failed (OpenTelemetry status ERROR) with `message`.
pub fn fail(span: &tracing::Span, message: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", message);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn children_keep_the_trace_and_roots_start_new_ones() {
        let parent = TraceParent::parse(SAMPLE).unwrap();
        // Without exported spans a hop is a child with a made-up span id, or a new trace.
        let child = hop(&tracing::Span::none(), TraceParent::parse(SAMPLE));
        assert_eq!((child.trace_id, child.sampled), (parent.trace_id, true));
        assert_ne!(child.span_id, parent.span_id);
        let fresh = hop(&tracing::Span::none(), TraceParent::parse("garbage"));
        assert_ne!(fresh.trace_id, parent.trace_id);
        assert_ne!(TraceParent::root().trace_id, TraceParent::root().trace_id);
        assert_eq!(TraceParent::parse(&fresh.to_string()), Some(fresh));
    }
}
