//! One log line per request, after the response: who asked what, the outcome and how long
//! it took, with the request id that the client also sees.

use std::{convert::Infallible, net::SocketAddr, task::Poll};

use axum::{body::Body, extract::ConnectInfo, response::Response};
use futures::future::BoxFuture;
use http::Request;
use tokio::time::Instant;
use tower::{Layer, Service};

#[derive(Debug, Clone, Default)]
pub struct AccessLogLayer;

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog { inner }
    }
}

#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for AccessLog<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let status = response.status().as_u16();
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            let client = client.as_deref().unwrap_or("-");
            let request_id = request_id.as_deref().unwrap_or("-");
            if status >= 500 {
                tracing::warn!(target: "agora::access", %method, %path, status, elapsed_ms, client, request_id, "request failed");
            } else {
                tracing::info!(target: "agora::access", %method, %path, status, elapsed_ms, client, request_id, "request");
            }
            Ok(response)
        })
    }
}
