//! W3C Trace Context: the `traceparent` that ties one client request to everything it causes,
//! across the gateway, the gRPC servers and the events on the bus, and the W3C `baggage`
//! (key=value pairs a client attaches, such as a tenant or an experiment) that travels with it.
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

/// The header that carries the [`Baggage`].
pub const BAGGAGE: &str = "baggage";

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

/// W3C Baggage: the list members a request carries, kept as received (values stay
/// percent-encoded) so they are passed on unchanged.
///
/// Per the spec's limits, at most [`Baggage::MAX_MEMBERS`] members and
/// [`Baggage::MAX_BYTES`] bytes are kept; members that do not parse are dropped one by one
/// rather than failing the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baggage {
    /// (key, value with its properties), in the order received.
    members: Vec<(String, String)>,
}

impl Baggage {
    pub const MAX_MEMBERS: usize = 64;
    pub const MAX_BYTES: usize = 8192;

    /// Parses a `baggage` header; `None` when no member is valid.
    pub fn parse(header: &str) -> Option<Self> {
        let mut members: Vec<(String, String)> = Vec::new();
        let mut bytes = 0;
        for member in header.split(',') {
            let Some((key, rest)) = member.split_once('=') else { continue };
            let key = key.trim();
            let rest = rest.trim();
            let value = rest.split(';').next().unwrap_or_default().trim_end();
            if !is_token(key) || !value.bytes().all(is_baggage_octet) || percent_decode(value).is_none() {
                continue;
            }
            let size = key.len() + 1 + rest.len() + usize::from(!members.is_empty());
            if members.len() == Self::MAX_MEMBERS || bytes + size > Self::MAX_BYTES {
                break;
            }
            bytes += size;
            members.retain(|(k, _)| k != key);
            members.push((key.to_owned(), rest.to_owned()));
        }
        (!members.is_empty()).then_some(Self { members })
    }

    /// The decoded value of `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        let (_, rest) = self.members.iter().find(|(k, _)| k == key)?;
        percent_decode(rest.split(';').next().unwrap_or_default().trim_end())
    }

    /// Puts every member on `span` as a `baggage.KEY` attribute, so a trace shows what the
    /// request carried at each hop.
    pub fn tag(&self, span: &tracing::Span) {
        for (key, _) in &self.members {
            if let Some(value) = self.get(key) {
                span.set_attribute(format!("baggage.{key}"), value);
            }
        }
    }
}

impl fmt::Display for Baggage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, rest)) in self.members.iter().enumerate() {
            write!(f, "{}{key}={rest}", if i == 0 { "" } else { "," })?;
        }
        Ok(())
    }
}

/// An RFC 7230 token, what a baggage key must be.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A byte a baggage value may hold unencoded.
fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a hop received from its caller: the parent context and the baggage, read from the
/// request's (or message's) headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incoming {
    pub parent: Option<TraceParent>,
    pub baggage: Option<Baggage>,
}

impl Incoming {
    /// Reads `traceparent` and `baggage` through `header` (a lookup by lowercase name).
    pub fn from_headers<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Self {
        Self {
            parent: header(TRACEPARENT).and_then(TraceParent::parse),
            baggage: header(BAGGAGE).and_then(Baggage::parse),
        }
    }

    /// Reads an HTTP request's (or gRPC call's) headers.
    pub fn from_http(headers: &http::HeaderMap) -> Self {
        Self::from_headers(|name| headers.get(name).and_then(|v| v.to_str().ok()))
    }

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

/// Adds the current context and baggage, if any, to an outgoing call's metadata.
pub fn inject(metadata: &mut tonic::metadata::MetadataMap) {
    for (name, value) in outgoing() {
        // Both are visible ASCII by construction.
        if let Ok(value) = value.parse() {
            metadata.insert(name, value);
        }
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
        let incoming = Incoming::from_http(request.headers());
        let span = rpc_span(&method, "server");
        let context = incoming.hop(&span);
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
        Box::pin(scope_with(context, incoming.baggage, call.instrument(span)))
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
    async fn outgoing_calls_carry_the_current_context_and_baggage() {
        let context = TraceParent::root();
        let request = scope(context, async { crate::identity::Caller::service().request(()) }).await;
        assert_eq!(request.metadata().get(TRACEPARENT).unwrap().to_str().unwrap(), context.to_string());
        assert!(request.metadata().get(BAGGAGE).is_none(), "no baggage was given");
        let outside = crate::identity::Caller::service().request(());
        assert!(outside.metadata().get(TRACEPARENT).is_none());

        // Baggage set at the edge survives a nested hop that only changes the context.
        let baggage = Baggage::parse("tenant=acme").unwrap();
        let request = scope_with(context, Some(baggage), async {
            scope(context.child(), async { crate::identity::Caller::service().request(()) }).await
        })
        .await;
        assert_eq!(request.metadata().get(BAGGAGE).unwrap().to_str().unwrap(), "tenant=acme");
    }

    #[test]
    fn baggage_keeps_valid_members_as_received_and_decodes_values() {
        let baggage = Baggage::parse(" tenant = acme , bad key=x,k2=a b,dup=1,dup=2").unwrap();
        assert_eq!(baggage.to_string(), "tenant=acme,dup=2");
        assert_eq!(baggage.get("tenant").as_deref(), Some("acme"));
        assert_eq!(baggage.get("dup").as_deref(), Some("2"), "a repeated key keeps its last value");
        let encoded = Baggage::parse("who=Ada%20Lovelace;prop").unwrap();
        assert_eq!(encoded.get("who").as_deref(), Some("Ada Lovelace"));
        assert_eq!(encoded.to_string(), "who=Ada%20Lovelace;prop", "passed on unchanged");
        for nothing in ["", ",,", "novalue", "k=%zz", "k=%ff", "=v"] {
            assert_eq!(Baggage::parse(nothing), None, "{nothing:?}");
        }
    }

    #[test]
    fn baggage_stops_at_the_spec_limits() {
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        let kept = Baggage::parse(&many.join(",")).unwrap();
        assert_eq!(kept.members.len(), Baggage::MAX_MEMBERS);
        let big = format!("a={},b=1", "x".repeat(Baggage::MAX_BYTES));
        assert_eq!(Baggage::parse(&big), None, "a member over the byte limit ends the list");
        let fits = format!("a={},b=1", "x".repeat(100));
        assert_eq!(Baggage::parse(&fits).unwrap().members.len(), 2);
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
