//! Routing: the request's method and path pick a binding, or the answer is 404 or 405.
//!
//! The matched binding and its path captures travel on as a request extension, so the
//! layers inside (auth) and the proxy need no routing knowledge of their own.

use std::{convert::Infallible, sync::Arc, task::Poll};

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use http::{HeaderValue, Request, StatusCode, header};
use tonic::Code;
use tower::{Layer, Service};

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

#[derive(Debug, Clone)]
pub struct RouteLayer {
    routes: Routes,
}

impl RouteLayer {
    pub fn new(routes: Routes) -> Self {
        Self { routes }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Route<S>;

    fn layer(&self, inner: S) -> Route<S> {
        Route { routes: self.routes.clone(), inner }
    }
}

#[derive(Debug, Clone)]
pub struct Route<S> {
    routes: Routes,
    inner: S,
}

impl<S> Service<Request<Body>> for Route<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        match self.routes.find(request.method(), request.uri().path()) {
            Ok(matched) => {
                if let Some(slot) = request.extensions().get::<RouteSlot>() {
                    slot.set(&matched.binding.template.to_string());
                }
                request.extensions_mut().insert(matched);
                Box::pin(self.inner.call(request))
            }
            Err(error) => Box::pin(std::future::ready(Ok(error.into_response()))),
        }
    }
}
