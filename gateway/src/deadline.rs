//! Request deadlines: every request gets one, the proxy passes what is left of it to the
//! backend as `grpc-timeout`, and a request still running when it passes is answered 504.
//!
//! Bounding requests at the edge keeps a slow backend from holding connections forever.

use std::{convert::Infallible, task::Poll, time::Duration};

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use http::Request;
use tokio::time::Instant;
use tonic::Code;
use tower::{Layer, Service};

use crate::error::ApiError;

/// When the current request must be answered by.
#[derive(Debug, Clone, Copy)]
pub struct CallDeadline(pub Instant);

#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    timeout: Duration,
}

impl DeadlineLayer {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { timeout: self.timeout, inner }
    }
}

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    timeout: Duration,
    inner: S,
}

impl<S> Service<Request<Body>> for Deadline<S>
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

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let timeout = self.timeout;
        let deadline = Instant::now() + timeout;
        request.extensions_mut().insert(CallDeadline(deadline));
        let response = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, response).await {
                Ok(response) => response,
                Err(_) => Ok(deadline_exceeded(timeout).into_response()),
            }
        })
    }
}

pub fn deadline_exceeded(timeout: Duration) -> ApiError {
    ApiError::new(
        Code::DeadlineExceeded,
        format!("the request did not complete within its {} ms deadline", timeout.as_millis()),
    )
}
