//! What the gateway records of each request, whatever answered it (the proxy, or a layer
//! that refused it: 401, 404, 413, 429, 504…):
//! - an HTTP server span that continues the client's `traceparent` (or starts the trace) and
//!   carries its `baggage` on to every backend;
//! - the RED metrics per route (`agora_http_server_*`);
//! - one access log line after the response, inside the span, so it carries the trace id,
//!   with the request id the client also sees.
//!
//! The route template is known only once the route layer inside has matched; it leaves it in
//! a [`RouteSlot`] this layer put on the request.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
};

use agora_kit::{
    metrics::{RouteLabels, RouteStatusLabels, metrics},
    trace_context::{self, Incoming},
};
use axum::{body::Body, extract::ConnectInfo};
use http::Request;
use tokio::time::Instant;

use crate::stage::{Answer, Next, Stage};

/// The `http.route` label of requests no route matched (404, 405).
pub const UNMATCHED: &str = "unmatched";

/// Where the route layer writes the template of the matched route.
#[derive(Debug, Clone, Default)]
pub struct RouteSlot(Arc<OnceLock<String>>);

impl RouteSlot {
    pub fn set(&self, template: &str) {
        let _ = self.0.set(template.to_owned());
    }
}

/// Probes and scrapes: asked every few seconds, they would bury the traces and the route
/// metrics people look for, so they get neither (the access log still has them).
fn untraced(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Endpoints the gateway answers itself; their path is their route.
fn own_route(path: &str) -> Option<&'static str> {
    (path == "/openapi.json").then_some("/openapi.json")
}

/// The observation stage: a span, the route metrics and an access-log line per request.
#[derive(Debug, Clone, Default)]
pub struct Observe;

impl Stage for Observe {
    fn call(&self, mut request: Request<Body>, next: &mut impl Next) -> Answer {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if untraced(&path) {
            let response = next.call(request);
            return Box::pin(async move {
                let response = response.await?;
                access_log(&method, &path, response.status().as_u16(), started, client, request_id);
                Ok(response)
            });
        }

        let slot = RouteSlot::default();
        request.extensions_mut().insert(slot.clone());
        let span = tracing::info_span!(
            "http",
            otel.name = %method,
            otel.kind = "server",
            http.request.method = %method,
            http.route = tracing::field::Empty,
            url.path = %path,
            "http.request.header.x-request-id" = request_id.as_deref().unwrap_or_default(),
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let incoming = Incoming::from_http(request.headers());
        let response = next.call(request);
        let handled = async move {
            let response = response.await?;
            let status = response.status();
            let route = slot.0.get().map(String::as_str).or_else(|| own_route(&path));
            let span = tracing::Span::current();
            if let Some(route) = route {
                span.record("http.route", route);
                trace_context::rename(&span, format!("{method} {route}"));
            }
            span.record("http.response.status_code", status.as_u16());
            if status.is_server_error() {
                trace_context::fail(&span, status.canonical_reason().unwrap_or("server error"));
            }
            let route = route.unwrap_or(UNMATCHED).to_owned();
            let metrics = metrics();
            let labels = RouteLabels { method: method.to_string(), route };
            metrics.http_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
            let labels = RouteStatusLabels { method: labels.method, route: labels.route, status: status.as_u16() };
            metrics.http_requests.get_or_create(&labels).inc();
            access_log(&method, &path, status.as_u16(), started, client, request_id);
            Ok(response)
        };
        Box::pin(incoming.enter(span, handled))
    }
}

fn access_log(
    method: &http::Method,
    path: &str,
    status: u16,
    started: Instant,
    client: Option<String>,
    request_id: Option<String>,
) {
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let client = client.as_deref().unwrap_or("-");
    let request_id = request_id.as_deref().unwrap_or("-");
    if status >= 500 {
        tracing::warn!(target: agora_kit::telemetry::ACCESS_LOG, %method, %path, status, elapsed_ms, client, request_id, "request failed");
    } else {
        tracing::info!(target: agora_kit::telemetry::ACCESS_LOG, %method, %path, status, elapsed_ms, client, request_id, "request");
    }
}
