//! Routing: the request's method and path pick a binding, or the answer is 404 or 405.
//!
//! The matched binding and its path captures travel on as a request extension, so the
//! layers inside (auth) and the proxy need no routing knowledge of their own.

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderValue, Request, StatusCode, header};
use tonic::Code;

use crate::stage::{Answer, Next, Stage, answer};
use crate::{api::Binding, error::ApiError, observe::RouteSlot, template::Captures};

/// The binding a request was routed to.
#[derive(Debug, Clone)]
pub struct Matched {
    pub binding: Arc<Binding>,
    pub captures: Captures,
}

#[derive(Debug, Clone)]
pub struct Routes {
    bindings: Arc<[Arc<Binding>]>,
}

impl Routes {
    pub fn new(bindings: Vec<Arc<Binding>>) -> Self {
        Self { bindings: bindings.into() }
    }

    /// The most specific binding for `method` and `path`. A path that only other methods
    /// serve is 405 with `Allow`; a path nobody serves is 404.
    pub fn find(&self, method: &http::Method, path: &str) -> Result<Matched, ApiError> {
        // HEAD is GET without the body (the server drops it), wherever GET is served.
        let wanted = if method == http::Method::HEAD { &http::Method::GET } else { method };
        let mut best: Option<Matched> = None;
        let mut allowed: Vec<&str> = Vec::new();
        for binding in self.bindings.iter() {
            let Some(captures) = binding.template.matches(path) else { continue };
            if binding.verb == http::Method::GET && !allowed.contains(&"HEAD") {
                allowed.push("HEAD");
            }
            if binding.verb != *wanted {
                if !allowed.contains(&binding.verb.as_str()) {
                    allowed.push(binding.verb.as_str());
                }
                continue;
            }
            if best.as_ref().is_none_or(|b| binding.template.specificity() > b.binding.template.specificity()) {
                best = Some(Matched { binding: binding.clone(), captures });
            }
        }
        if let Some(matched) = best {
            return Ok(matched);
        }
        if allowed.is_empty() {
            return Err(ApiError::new(Code::NotFound, format!("no route for {method} {path}")));
        }
        allowed.sort_unstable();
        let allow = allowed.join(", ");
        Err(ApiError::new(Code::Unimplemented, format!("{method} is not allowed on {path}; use {allow}"))
            .with_status(StatusCode::METHOD_NOT_ALLOWED)
            .with_header(header::ALLOW, HeaderValue::from_str(&allow).expect("method names are header-safe")))
    }
}

/// Routing: the matched binding becomes the request's [`Matched`] extension (and names the
/// request's span); a request no binding serves is answered 404 or 405 here.
impl Stage for Routes {
    fn call(&self, mut request: Request<Body>, next: &mut impl Next) -> Answer {
        match self.find(request.method(), request.uri().path()) {
            Ok(matched) => {
                if let Some(slot) = request.extensions().get::<RouteSlot>() {
                    slot.set(&matched.binding.template.to_string());
                }
                request.extensions_mut().insert(matched);
                Box::pin(next.call(request))
            }
            Err(error) => answer(error),
        }
    }
}
