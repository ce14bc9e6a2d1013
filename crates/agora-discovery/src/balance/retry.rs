//! One call through the balanced channel: attempts on chosen instances within the call's
//! deadline, sent again elsewhere when that is safe and the retry budget allows.

use std::{
    error::Error as StdError,
    fmt,
    sync::{Arc, atomic::Ordering},
};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::time::Instant;
use tonic::{Status, body::Body};
use tower::{Service, retry::budget::Budget};

use super::{
    Inner, Instance,
    deadline::{grpc_timeout, remaining, set_grpc_timeout},
};

/// How one attempt went.
enum Outcome {
    Answered(http::Response<Body>),
    /// The instance answered UNAVAILABLE.
    Unavailable(http::Response<Body>),
    /// No answer: the connection failed. `sent` is false when it was never made.
    Failed {
        status: Status,
        sent: bool,
    },
}

impl Inner {
    pub(super) async fn call(self: &Arc<Self>, request: http::Request<Body>) -> Result<http::Response<Body>, Status> {
        let kind = self.methods.kind(request.uri().path());
        // A call that carries an idempotency key (`CreateOrder` with the Idempotency-Key
        // header the gateway passes on) has the effect of one call however often it is sent.
        let keyed = request.headers().contains_key(agora_kit::methods::IDEMPOTENCY_KEY);
        let (mut parts, body) = request.into_parts();
        let deadline = Instant::now() + grpc_timeout(&parts.headers).unwrap_or(self.policy.timeout);
        self.budget.deposit();

        // A unary request is one small message: keep it to send again if needed.
        let mut body = if kind.unary_request {
            let bytes = body.collect().await.map_err(|e| Status::internal(format!("cannot read the request: {e}")))?;
            Payload::Kept(bytes.to_bytes())
        } else {
            Payload::Once(Some(body))
        };

        let mut avoid: Option<Arc<Instance>> = None;
        let mut attempt = 0;
        loop {
            let instance = self.pick(avoid.as_deref(), deadline).await?;
            let Some(left) = remaining(deadline) else {
                return Err(Status::deadline_exceeded(format!(
                    "{}: the deadline passed before an answer",
                    self.service
                )));
            };
            set_grpc_timeout(&mut parts.headers, left);
            let request = rebuild(&parts, body.take());
            let outcome = tokio::time::timeout(left, self.attempt(&instance, request)).await;
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(_) => {
                    return Err(Status::deadline_exceeded(format!(
                        "{}: no answer from {} within the deadline",
                        self.service, instance.address
                    )));
                }
            };
            let retryable = |sent: bool| {
                attempt < self.policy.max_retries
                    && body.replayable()
                    && (kind.idempotent || keyed || !sent)
                    && self.budget.withdraw()
            };
            match outcome {
                Outcome::Answered(response) => return Ok(response),
                Outcome::Unavailable(response) => {
                    if !retryable(true) {
                        return Ok(response);
                    }
                }
                Outcome::Failed { status, sent } => {
                    if !retryable(sent) {
                        return Err(status);
                    }
                }
            }
            tracing::debug!(service = %self.service, instance = %instance.id, attempt, "retrying on another instance");
            attempt += 1;
            avoid = Some(instance);
        }
    }

    async fn attempt(self: &Arc<Self>, instance: &Arc<Instance>, request: http::Request<Body>) -> Outcome {
        tracing::Span::current().record("server.address", instance.address.as_str());
        instance.outstanding.fetch_add(1, Ordering::Relaxed);
        let mut channel = instance.channel.clone();
        let result = match tower::ServiceExt::ready(&mut channel).await {
            Ok(ready) => ready.call(request).await,
            Err(e) => Err(e),
        };
        instance.outstanding.fetch_sub(1, Ordering::Relaxed);
        match result {
            Ok(response) if grpc_status(&response) == Some(tonic::Code::Unavailable) => {
                let failures = instance.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failures >= self.policy.eject_after {
                    self.eject(instance, &format!("{failures} UNAVAILABLE answers in a row"));
                }
                Outcome::Unavailable(response)
            }
            Ok(response) => {
                instance.failures.store(0, Ordering::Relaxed);
                Outcome::Answered(response)
            }
            Err(error) => {
                let sent = !never_sent(&error);
                let reason = if sent { "connection lost" } else { "cannot connect" };
                self.eject(instance, reason);
                let mut status = Status::unavailable(format!(
                    "{} instance {} at {}: {reason}: {}",
                    self.service,
                    instance.id,
                    instance.address,
                    chain(&error)
                ));
                status.set_source(Arc::new(Transport(chain(&error))));
                Outcome::Failed { status, sent }
            }
        }
    }
}

/// The request body: kept (unary, can be sent again) or a stream that can be sent once.
enum Payload {
    Kept(Bytes),
    Once(Option<Body>),
}

impl Payload {
    fn take(&mut self) -> Body {
        match self {
            Payload::Kept(bytes) => Body::new(http_body_util::Full::new(bytes.clone())),
            Payload::Once(body) => body.take().unwrap_or_else(Body::empty),
        }
    }

    fn replayable(&self) -> bool {
        matches!(self, Payload::Kept(_))
    }
}

fn rebuild(parts: &http::request::Parts, body: Body) -> http::Request<Body> {
    let mut request = http::Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    *request.extensions_mut() = parts.extensions.clone();
    request
}

/// The gRPC status of a trailers-only answer (how servers report errors before any message).
fn grpc_status(response: &http::Response<Body>) -> Option<tonic::Code> {
    let value = response.headers().get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(tonic::Code::from(value))
}

/// True when the error says the connection was never made, so the server saw nothing.
fn never_sent(error: &(dyn StdError + 'static)) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    false
}

fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// The transport failure behind an UNAVAILABLE status.
#[derive(Debug)]
struct Transport(String);

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Transport {}
