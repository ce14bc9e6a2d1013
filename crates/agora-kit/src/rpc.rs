//! What is recorded of every gRPC call, at either end, in one place: a span following
//! OpenTelemetry's RPC conventions, the call's `grpc-status` on it, the `agora_rpc_*` metrics,
//! and the trace context crossing the wire.
//!
//! - The **server** end ([`ServerLayer`], on every server [`crate::grpc::serve`] runs) continues
//!   the caller's `traceparent` (or starts a trace) and runs the handler under it.
//! - The **client** end (what `agora_discovery::Balanced` runs each call through) starts a
//!   client span after the current context and writes that span's `traceparent`, and the
//!   current baggage, on the request: the one place an outgoing call gets its trace context.
//!
//! Health checks and reflection get neither span nor metrics ([`untraced`]).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tower::BoxError;
use tracing::Instrument;

use crate::trace_context::{self, Incoming};

/// Which end of a call is observed; they count different codes as errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
}

impl Side {
    fn kind(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Client => "client",
        }
    }
}

/// The observed call's answer.
pub type Observed<R> = Pin<Box<dyn Future<Output = Result<http::Response<R>, BoxError>> + Send>>;

/// Runs `call` on `request` as one observed call at `side`'s end (see the module docs).
pub fn observe<B, R, E, F>(
    side: Side,
    mut request: http::Request<B>,
    call: impl FnOnce(http::Request<B>) -> F,
) -> Observed<R>
where
    F: Future<Output = Result<http::Response<R>, E>> + Send + 'static,
    E: Into<BoxError>,
    R: Send + 'static,
{
    let path = request.uri().path().to_owned();
    if untraced(&path) {
        let answer = call(request);
        return Box::pin(async move { answer.await.map_err(Into::into) });
    }
    let span = span(&path, side);
    let incoming = match side {
        Side::Server => Some(Incoming::from_http(request.headers())),
        Side::Client => {
            // The server continues from this call's span, so the header names it.
            let context = trace_context::hop(&span, trace_context::current());
            let headers = request.headers_mut();
            headers.insert(trace_context::TRACEPARENT, header_value(&context.to_string()));
            if let Some(baggage) = trace_context::baggage() {
                headers.insert(trace_context::BAGGAGE, header_value(&baggage.to_string()));
            }
            None
        }
    };
    let started = Instant::now();
    let answer = call(request);
    let recorded = async move {
        let answer = answer.await.map_err(Into::into);
        let span = tracing::Span::current();
        let code = match &answer {
            Ok(response) => record_status(&span, response.headers(), side),
            Err(error) => record_error(&span, error.as_ref(), side),
        };
        crate::metrics::metrics().rpc(side == Side::Client, &path, code, started.elapsed());
        if side == Side::Server {
            // One line per call at debug level: which instance served what, and how fast.
            tracing::debug!(target: "agora::grpc", method = %path, elapsed_us = started.elapsed().as_micros() as u64, "call served");
        }
        answer
    };
    match incoming {
        Some(incoming) => Box::pin(incoming.enter(span, recorded)),
        None => Box::pin(recorded.instrument(span)),
    }
}

/// Both headers hold visible ASCII by construction.
fn header_value(value: &str) -> http::HeaderValue {
    http::HeaderValue::from_str(value).expect("trace context headers are visible ASCII")
}

/// `grpc-timeout`: an integer of at most 8 digits and a unit (H, M, S, m, u, n).
pub fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Health checks and reflection: asked every few seconds by probes, they would bury the
/// traces people look for, so they get no span.
pub fn untraced(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

/// A span for one gRPC call (`/pkg.Service/Method`) at `side`'s end, following
/// OpenTelemetry's RPC conventions.
pub fn span(path: &str, side: Side) -> tracing::Span {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    tracing::info_span!(
        "rpc",
        otel.name = %format!("{service}/{method}"),
        otel.kind = side.kind(),
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

/// Records the `grpc-status` of a trailers-only answer (how errors come; an answer without
/// one is OK) on `span`, and marks the span failed when the conventions say so.
pub fn record_status(span: &tracing::Span, headers: &http::HeaderMap, side: Side) -> i32 {
    let code = headers.get("grpc-status").and_then(|v| v.to_str().ok()?.parse::<i32>().ok()).unwrap_or(0);
    let message = headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or_default();
    record(span, code, message, side)
}

/// Records a call that got no answer: its status when the error is one, else UNKNOWN.
fn record_error(span: &tracing::Span, error: &(dyn std::error::Error + Send + Sync + 'static), side: Side) -> i32 {
    match error.downcast_ref::<tonic::Status>() {
        Some(status) => record(span, status.code() as i32, status.message(), side),
        None => record(span, tonic::Code::Unknown as i32, &error.to_string(), side),
    }
}

/// Every non-OK code fails a client span; a server span only for the codes that mean the
/// server failed.
fn record(span: &tracing::Span, code: i32, message: &str, side: Side) -> i32 {
    span.record("rpc.grpc.status_code", code);
    let server_fault = matches!(code, 2 | 4 | 12 | 13 | 14 | 15);
    if code != 0 && (side == Side::Client || server_fault) {
        trace_context::fail(span, &format!("{:?}: {message}", tonic::Code::from(code)));
    }
    code
}

/// The server end as a tower layer: each call observed, its handler under the caller's trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerLayer;

impl<S> tower::Layer<S> for ServerLayer {
    type Service = Server<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Server { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Server<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for Server<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Observed<R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        observe(Side::Server, request, |request| self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use tower::{Service, ServiceExt};

    use super::*;
    use crate::trace_context::{BAGGAGE, Baggage, TRACEPARENT, TraceParent, current, scope, scope_with};

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// What a client call sent: its request headers, as the server would see them.
    async fn sent() -> http::HeaderMap {
        let echo = |request: http::Request<()>| async move {
            Ok::<_, tonic::Status>(http::Response::new(request.headers().clone()))
        };
        let request = http::Request::builder().uri("/agora.user.v1.UserService/GetUser").body(()).unwrap();
        observe(Side::Client, request, echo).await.unwrap().into_body()
    }

    #[tokio::test]
    async fn a_client_call_carries_its_span_under_the_current_trace_and_the_baggage() {
        let context = TraceParent::root();
        let headers = scope(context, sent()).await;
        let carried = TraceParent::parse(headers[TRACEPARENT].to_str().unwrap()).unwrap();
        assert_eq!(carried.trace_id, context.trace_id, "the call joins the current trace");
        assert_ne!(carried.span_id, context.span_id, "as a hop of its own");
        assert!(headers.get(BAGGAGE).is_none(), "no baggage was given");
        let outside = sent().await;
        assert!(
            TraceParent::parse(outside[TRACEPARENT].to_str().unwrap()).is_some(),
            "a call outside any trace starts one"
        );

        // Baggage set at the edge survives a nested hop that only changes the context.
        let baggage = Baggage::parse("tenant=acme").unwrap();
        let headers = scope_with(context, Some(baggage), async { scope(context.child(), sent()).await }).await;
        assert_eq!(headers[BAGGAGE].to_str().unwrap(), "tenant=acme");
        assert_eq!(headers.get_all(TRACEPARENT).iter().count(), 1, "the context is written once");
    }

    #[tokio::test]
    async fn the_server_end_runs_the_handler_under_the_callers_trace() {
        let handler = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(current()))
        });
        let mut service = tower::Layer::layer(&ServerLayer, handler);
        let request = http::Request::builder()
            .uri("/agora.user.v1.UserService/GetUser")
            .header(TRACEPARENT, SAMPLE)
            .body(())
            .unwrap();
        let seen = service.ready().await.unwrap().call(request).await.unwrap().into_body().unwrap();
        assert_eq!(seen.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let request = http::Request::builder().uri("/agora.user.v1.UserService/GetUser").body(()).unwrap();
        let untraced = service.ready().await.unwrap().call(request).await.unwrap().into_body();
        assert!(untraced.is_some(), "a request without a traceparent starts a trace");
        assert_eq!(current(), None, "nothing leaks outside the request");
    }

    #[tokio::test]
    async fn calls_are_counted_by_code_at_each_end() {
        let path = "/agora.rpc_test.v1.Test/Fail";
        let failing = |_: http::Request<()>| async { Err::<http::Response<()>, _>(tonic::Status::unavailable("down")) };
        let request = http::Request::builder().uri(path).body(()).unwrap();
        let error = observe(Side::Client, request, failing).await.unwrap_err();
        assert_eq!(
            error.downcast::<tonic::Status>().unwrap().code(),
            tonic::Code::Unavailable,
            "the error passes through"
        );
        let text = crate::metrics::metrics().render();
        assert!(
            text.contains(
                r#"agora_rpc_client_calls_total{service="agora.rpc_test.v1.Test",method="Fail",code="UNAVAILABLE"} 1"#
            ),
            "{text}"
        );
        let health = http::Request::builder().uri("/grpc.health.v1.Health/Check").body(()).unwrap();
        observe(Side::Client, health, |_| async { Ok::<_, tonic::Status>(http::Response::new(())) }).await.unwrap();
        assert!(!crate::metrics::metrics().render().contains("grpc.health.v1"), "health checks are not counted");
    }
}
