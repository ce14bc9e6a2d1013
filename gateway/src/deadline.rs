//! Request deadlines: every request gets one, the proxy passes what is left of it to the
//! backend as `grpc-timeout`, and a request still running when it passes is answered 504.
//!
//! Bounding requests at the edge keeps a slow backend from holding connections forever.

use std::time::Duration;

use axum::{body::Body, response::IntoResponse};
use http::Request;
use tokio::time::Instant;
use tonic::Code;

use crate::error::ApiError;
use crate::stage::{Answer, Next, Stage};

/// When the current request must be answered by.
#[derive(Debug, Clone, Copy)]
pub struct CallDeadline(pub Instant);

/// The deadline stage: every request gets a [`CallDeadline`] `timeout` from now, and is
/// answered 504 if it is still running then.
#[derive(Debug, Clone)]
pub struct Deadline {
    timeout: Duration,
}

impl Deadline {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl Stage for Deadline {
    fn call(&self, mut request: Request<Body>, next: &mut impl Next) -> Answer {
        let timeout = self.timeout;
        let deadline = Instant::now() + timeout;
        request.extensions_mut().insert(CallDeadline(deadline));
        let response = next.call(request);
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
