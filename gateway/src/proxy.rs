//! The innermost service: reads the body, transcodes it, calls the backend and transcodes
//! the answer. It is the same code for every route; the binding says what differs.

use std::{convert::Infallible, task::Poll, time::Duration};

use agora_kit::identity::Caller;
use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use tonic::{Code, metadata::MetadataValue};
use tower::Service;

use crate::{
    api::BodyRule,
    client::{self, Backends},
    deadline::{CallDeadline, deadline_exceeded},
    error::ApiError,
    route::Matched,
    transcode,
};

/// Request headers passed on to the backend as metadata of the same name.
const FORWARDED_HEADERS: &[&str] = &["x-request-id", agora_kit::methods::IDEMPOTENCY_KEY];

#[derive(Debug, Clone)]
pub struct Proxy {
    backends: Backends,
    body_limit: usize,
}

impl Proxy {
    pub fn new(backends: Backends, body_limit: usize) -> Self {
        Self { backends, body_limit }
    }

    async fn handle(self, request: Request<Body>) -> Result<Response, ApiError> {
        let (parts, body) = request.into_parts();
        let matched = parts
            .extensions
            .get::<Matched>()
            .cloned()
            .ok_or_else(|| ApiError::new(Code::Internal, "the request reached the proxy unrouted"))?;
        let binding = &matched.binding;
        let body = self.read_body(&parts.headers, body, !matches!(binding.body, BodyRule::None)).await?;
        let message = transcode::request(binding, matched.captures, parts.uri.query(), &body)?;

        let mut call = tonic::Request::new(message);
        for name in FORWARDED_HEADERS {
            if let Some(value) = parts.headers.get(*name) {
                // HTTP allows bytes above 0x7F in a value, and so does gRPC metadata, but a
                // backend reading it as text would see no value at all (an idempotency key
                // silently dropped would make a retry a second order).
                let visible = value.as_bytes().iter().all(|b| *b == b' ' || b.is_ascii_graphic());
                let value = MetadataValue::try_from(value.as_bytes())
                    .ok()
                    .filter(|_| visible)
                    .ok_or_else(|| ApiError::bad_request(format!("header {name} must be visible ASCII")))?;
                call.metadata_mut().insert(*name, value);
            }
        }
        if let Some(caller) = parts.extensions.get::<Caller>() {
            caller.apply(call.metadata_mut());
        }
        // The trace goes on to the backend: the channel's client span (a child of this
        // request's span) sends its own `traceparent`.
        let deadline = parts.extensions.get::<CallDeadline>().map(|d| d.0);
        if let Some(deadline) = deadline {
            let left = client::remaining(deadline).ok_or_else(|| deadline_exceeded(Duration::ZERO))?;
            call.set_timeout(left);
        }

        // The deadline layer outside answers 504 when the deadline passes mid-call.
        let answer = self.backends.call(binding, call).await;
        let answer = answer.map_err(|status| {
            // The backend cancels a call whose grpc-timeout ran out; to the client that is
            // the deadline, not a cancellation it asked for.
            let expired = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            if status.code() == Code::Cancelled && expired {
                ApiError::new(Code::DeadlineExceeded, "the backend did not answer in time")
            } else {
                ApiError::from(status)
            }
        })?;
        let json = transcode::response(binding, answer.get_ref())?;
        let status = if binding.creates { StatusCode::CREATED } else { StatusCode::OK };
        Ok((status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json).into_response())
    }

    /// The request body, within the size limit and in JSON when the route takes one.
    async fn read_body(&self, headers: &HeaderMap, body: Body, takes_body: bool) -> Result<bytes::Bytes, ApiError> {
        let too_large = || {
            ApiError::new(Code::InvalidArgument, format!("the request body is larger than {} bytes", self.body_limit))
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        };
        let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|len| len > self.body_limit) {
            return Err(too_large());
        }
        let bytes = http_body_util::Limited::new(body, self.body_limit)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    too_large()
                } else {
                    ApiError::bad_request(format!("cannot read the request body: {e}"))
                }
            })?
            .to_bytes();
        if takes_body && !bytes.is_empty() {
            let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
            if let Some(content_type) = content_type.filter(|ct| !is_json(ct)) {
                return Err(ApiError::new(
                    Code::InvalidArgument,
                    format!("content type {content_type:?} is not supported; send the body as application/json"),
                )
                .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
            }
        }
        Ok(bytes)
    }
}

impl Service<Request<Body>> for Proxy {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let proxy = self.clone();
        Box::pin(async move { Ok(proxy.handle(request).await.unwrap_or_else(IntoResponse::into_response)) })
    }
}

/// `application/json`, with or without parameters, or a `+json` type.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
