//! The gateway's own steps of the REST pipeline (routing, authentication, rate limits,
//! deadlines, observation) as one kind of tower layer.
//!
//! A [`Stage`] says only what its step does with a request: answer it at once, or hand it,
//! perhaps changed, to the rest of the pipeline and perhaps look at the response on the way
//! out. [`StageLayer`] and [`Staged`] are the tower plumbing, written once for all of them.

use std::{convert::Infallible, task::Poll};

use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use http::Request;
use tower::{Layer, Service};

/// What a stage's answer is: a response, some time later.
pub type Answer = BoxFuture<'static, Result<Response, Infallible>>;

/// The rest of the pipeline, as a stage sees it.
pub trait Next:
    Service<Request<Body>, Response = Response, Error = Infallible, Future: Send + 'static> + Send + 'static
{
}

impl<S> Next for S where
    S: Service<Request<Body>, Response = Response, Error = Infallible, Future: Send + 'static> + Send + 'static
{
}

/// One step of the pipeline.
pub trait Stage: Clone + Send + 'static {
    /// Answers `request` itself or through `next`.
    fn call(&self, request: Request<Body>, next: &mut impl Next) -> Answer;

    /// This stage as a layer for `ServiceBuilder` or `Router::layer`.
    fn into_layer(self) -> StageLayer<Self> {
        StageLayer(self)
    }
}

/// An answer the stage gives itself (a refusal), without calling the rest of the pipeline.
pub fn answer(response: impl IntoResponse) -> Answer {
    Box::pin(std::future::ready(Ok(response.into_response())))
}

/// A [`Stage`] as a tower layer.
#[derive(Debug, Clone)]
pub struct StageLayer<T>(T);

impl<T: Stage, S> Layer<S> for StageLayer<T> {
    type Service = Staged<T, S>;

    fn layer(&self, inner: S) -> Staged<T, S> {
        Staged { stage: self.0.clone(), inner }
    }
}

/// A [`Stage`] in front of the rest of the pipeline.
#[derive(Debug, Clone)]
pub struct Staged<T, S> {
    stage: T,
    inner: S,
}

impl<T: Stage, S: Next> Service<Request<Body>> for Staged<T, S> {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Answer {
        self.stage.call(request, &mut self.inner)
    }
}
