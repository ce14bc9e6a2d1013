//! W3C Trace Context: the `traceparent` that ties one client request to everything it causes,
//! across the gateway, the gRPC servers and the events on the bus.
//!
//! A request's context lives in a task-local while its handler runs: [`TraceContextLayer`]
//! puts it there on every gRPC server (a child of the caller's `traceparent`, or a new trace),
//! calls to other services carry it on ([`inject`], through `Caller::request`), the event
//! envelope copies [`current`] into its headers, and the event consumer runs each
//! handler under the context the message carried. So an order's `OrderPlaced`, the payment's
//! `PaymentSucceeded` and the final `OrderPaid` all carry the trace id of the REST call that
//! placed it.
//!
//! Each hop (a REST request, a gRPC call served or made, an event published or consumed) is
//! also a `tracing` span started with [`hop`]. When traces are exported
//! ([`crate::telemetry`]) that span is an OpenTelemetry span whose parent is the context the
//! hop received, and the context passed on names that span, so the exported spans form one
//! tree per trace. Without export the ids are made up here and the spans are log context only.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header (HTTP, gRPC metadata and Kafka) that carries the context.
pub const TRACEPARENT: &str = "traceparent";

/// One position in a trace: the trace, the span that is the parent of the next hop, and
/// whether the trace is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

impl TraceParent {
    /// The start of a new, sampled trace.
    pub fn root() -> Self {
        Self { trace_id: nonzero_u128(), span_id: nonzero_u64(), sampled: true }
    }

    /// The next hop of the same trace: same trace id, a new span id.
    pub fn child(&self) -> Self {
        Self { span_id: nonzero_u64(), ..*self }
    }

    /// Parses a `traceparent` value. Per the W3C spec, version `ff` and all-zero ids are
    /// invalid, and a later version is read by its first four fields.
    pub fn parse(value: &str) -> Option<Self> {
        let mut fields = value.trim().split('-');
        let (version, trace_id, span_id, flags) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex(version, 2) || version == "ff" || !hex(trace_id, 32) || !hex(span_id, 16) || !hex(flags, 2) {
            return None;
        }
        if version == "00" && fields.next().is_some() {
            return None;
        }
        let trace_id = u128::from_str_radix(trace_id, 16).ok()?;
        let span_id = u64::from_str_radix(span_id, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self { trace_id, span_id, sampled: flags & 1 == 1 })
    }

    /// The trace id as 32 lowercase hex digits (what trace UIs search by).
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, u8::from(self.sampled))
    }
}

fn nonzero_u128() -> u128 {
    // A v4 UUID is 122 random bits and never zero.
    uuid::Uuid::new_v4().as_u128()
}

fn nonzero_u64() -> u64 {
    let bits = uuid::Uuid::new_v4().as_u128();
    (bits as u64) | 1
}

tokio::task_local! {
    static CURRENT: TraceParent;
}

/// The context of the request or event being handled, if any.
pub fn current() -> Option<TraceParent> {
    CURRENT.try_with(|c| *c).ok()
}

/// Runs `future` with `context` as the current context.
pub async fn scope<F: Future>(context: TraceParent, future: F) -> F::Output {
    CURRENT.scope(context, future).await
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

/// Adds the current context, if any, to an outgoing call's metadata.
pub fn inject(metadata: &mut tonic::metadata::MetadataMap) {
    if let Some(context) = current() {
        metadata.insert(TRACEPARENT, context.to_string().parse().expect("a traceparent is ASCII"));
    }
}

/// A tower layer for gRPC servers: each call runs in a server span (`rpc.*` attributes) that
/// continues the caller's `traceparent`, or starts a trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextLayer;

impl<S> tower::Layer<S> for TraceContextLayer {
    type Service = TraceContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceContextService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct TraceContextService<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for TraceContextService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        if untraced(&method) {
            return Box::pin(self.inner.call(request));
        }
        let parent = request.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(TraceParent::parse);
        let span = rpc_span(&method, "server");
        let context = hop(&span, parent);
        let response = self.inner.call(request);
        let call = async move {
            let started = std::time::Instant::now();
            let response = response.await;
            let code = match &response {
                Ok(response) => record_grpc_status(&tracing::Span::current(), response.headers(), Side::Server),
                Err(_) => tonic::Code::Unknown as i32,
            };
            crate::metrics::metrics().rpc(false, &method, code, started.elapsed());
            // One line per call at debug level: which instance served what, and how fast.
            tracing::debug!(target: "agora::grpc", %method, elapsed_us = started.elapsed().as_micros() as u64, "call served");
            response
        };
        Box::pin(CURRENT.scope(context, call.instrument(span)))
    }
}

/// Health checks and reflection: asked every few seconds by probes, they would bury the
/// traces people look for, so they get no span.
pub fn untraced(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

/// A span for one gRPC call (`/pkg.Service/Method`), `kind` `server` or `client`, following
/// OpenTelemetry's RPC conventions.
pub fn rpc_span(path: &str, kind: &'static str) -> tracing::Span {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    tracing::info_span!(
        "rpc",
        otel.name = %format!("{service}/{method}"),
        otel.kind = kind,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        server.address = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    )
}

/// Which end of a call a span is; they count different codes as errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
}

/// Records the `grpc-status` of a trailers-only answer (how errors come; an answer without
/// one is OK) on `span`, and marks the span failed when the conventions say so: every
/// non-OK code for a client; for a server only the codes that mean the server failed.
pub fn record_grpc_status(span: &tracing::Span, headers: &http::HeaderMap, side: Side) -> i32 {
    let code = headers.get("grpc-status").and_then(|v| v.to_str().ok()?.parse::<i32>().ok()).unwrap_or(0);
    span.record("rpc.grpc.status_code", code);
    let server_fault = matches!(code, 2 | 4 | 12 | 13 | 14 | 15);
    if code != 0 && (side == Side::Client || server_fault) {
        let message = headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or_default();
        fail(span, &format!("{:?}: {message}", tonic::Code::from(code)));
    }
    code
}

#[cfg(test)]
mod tests {
    use tower::{Service, ServiceExt};

    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_w3c_format() {
        let parsed = TraceParent::parse(SAMPLE).unwrap();
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.span_id, 0x00f0_67aa_0ba9_02b7);
        assert!(parsed.sampled);
        assert_eq!(parsed.to_string(), SAMPLE);
        let unsampled = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.sampled);
        // A later version: its first four fields count, the rest is ignored.
        assert!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
    }

    #[test]
    fn rejects_what_the_spec_calls_invalid() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

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

    #[tokio::test]
    async fn outgoing_calls_carry_the_current_context() {
        let context = TraceParent::root();
        let request = scope(context, async { crate::identity::Caller::service().request(()) }).await;
        assert_eq!(request.metadata().get(TRACEPARENT).unwrap().to_str().unwrap(), context.to_string());
        let outside = crate::identity::Caller::service().request(());
        assert!(outside.metadata().get(TRACEPARENT).is_none());
    }

    #[tokio::test]
    async fn the_layer_runs_the_handler_under_the_callers_trace() {
        let handler = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(current()))
        });
        let mut service = tower::Layer::layer(&TraceContextLayer, handler);
        let request = http::Request::builder().header(TRACEPARENT, SAMPLE).body(()).unwrap();
        let seen = service.ready().await.unwrap().call(request).await.unwrap().into_body().unwrap();
        assert_eq!(seen.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let untraced = service.ready().await.unwrap().call(http::Request::new(())).await.unwrap().into_body();
        assert!(untraced.is_some(), "a request without a traceparent starts a trace");
        assert_eq!(current(), None, "nothing leaks outside the request");
    }
}
