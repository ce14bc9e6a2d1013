//! Waiting out a database that is away for a moment, on the server, instead of failing the call.
//!
//! A PostgreSQL failover takes a few seconds, during which every call that needs the database
//! fails with UNAVAILABLE. Each caller would retry, but a caller's retries are budgeted (as
//! they should be: retries that multiply load are how an outage spreads), so a failover that
//! outlasts the budget fails requests that a short wait would have served. The server knows
//! better than its callers why the call failed, so it waits:
//!
//! - [`PatienceLayer`]: a call whose method the contract marks safe to send twice
//!   ([`crate::methods`]) and that failed because the database could not be reached
//!   ([`Fault::into_status`](crate::fault::Fault::into_status) marks that status) runs again
//!   on this server after a back-off, within the call's deadline and at most [`PATIENCE`].
//! - [`patiently`]: the same for one step of a handler that is safe to repeat though its
//!   method is not (an insert keyed by an id the handler chose).
//!
//! Both also run a step again at once when a database pool of this process moves to another
//! server while it waits: a primary that was paused rather than killed holds its connections
//! without answering, and a call waiting on it would fail at its deadline although a new
//! primary answers now.
//!
//! The mark never leaves the server: the layer removes it from every answer.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http_body_util::BodyExt;
use tokio::time::Instant;
use tonic::{Status, body::Body};
use tower::{Service, ServiceExt};

use crate::methods::{MethodKind, Methods};

/// The longest a call waits for its database (a failover takes about 5 s).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The metadata key of the mark: set on a status, removed from every answer.
const MARK: &str = "agora-database-away";

/// Marks `status` as "the database could not be reached".
pub fn mark(status: &mut Status) {
    status.metadata_mut().insert(MARK, tonic::metadata::MetadataValue::from_static("1"));
}

/// Whether `status` carries the mark.
pub fn marked(status: &Status) -> bool {
    status.metadata().contains_key(MARK)
}

/// Waits between attempts: 50 ms, doubling, at most 1 s, until `until`.
#[derive(Debug)]
pub struct Backoff {
    until: Instant,
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);
    const MOST: Duration = Duration::from_secs(1);

    pub fn until(until: Instant) -> Self {
        Self { until, next: Self::FIRST }
    }

    /// Sleeps the next step and returns true, or returns false at once when the step would
    /// end past `until` (an attempt needs time too).
    pub async fn wait(&mut self) -> bool {
        let end = Instant::now() + self.next;
        if end + self.next >= self.until {
            return false;
        }
        tokio::time::sleep_until(end).await;
        self.next = (self.next * 2).min(Self::MOST);
        true
    }
}

/// Runs `step` again while it fails with an error `away` says is the database's absence, for
/// at most [`PATIENCE`]. `step` must be safe to repeat.
pub async fn patiently<T, E, F, Fut>(away: impl Fn(&E) -> bool, mut step: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::until(Instant::now() + PATIENCE);
    let mut moves = Moves::new();
    loop {
        let Some(done) = moves.unless_moved(step()).await else { continue };
        match done {
            Err(e) if away(&e) && backoff.wait().await => {}
            done => return done,
        }
    }
}

/// Watches the database pools' moves for one call (see the module's doc).
struct Moves {
    moves: tokio::sync::watch::Receiver<u64>,
    /// Attempts cut short so far: after a few, an attempt runs to its end whatever moves.
    cut: u32,
}

impl Moves {
    const MOST_CUT: u32 = 3;

    fn new() -> Self {
        Self { moves: crate::db::moves(), cut: 0 }
    }

    /// `attempt`'s outcome, or `None` if a pool moved first (the attempt is dropped, which
    /// closes the connection it held).
    async fn unless_moved<T>(&mut self, attempt: impl Future<Output = T>) -> Option<T> {
        self.moves.mark_unchanged();
        if self.cut >= Self::MOST_CUT {
            return Some(attempt.await);
        }
        tokio::select! {
            done = attempt => Some(done),
            Ok(()) = self.moves.changed() => {
                self.cut += 1;
                tracing::debug!("a database pool moved while the call waited; running it again");
                None
            }
        }
    }
}

/// Runs calls that failed because the database was away again (see the module's doc).
#[derive(Debug, Clone)]
pub struct PatienceLayer {
    methods: Arc<Methods>,
}

impl PatienceLayer {
    pub fn new(methods: Arc<Methods>) -> Self {
        Self { methods }
    }
}

impl Default for PatienceLayer {
    fn default() -> Self {
        Self::new(Methods::agora())
    }
}

impl<S> tower::Layer<S> for PatienceLayer {
    type Service = Patient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Patient { inner, methods: self.methods.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Patient<S> {
    inner: S,
    methods: Arc<Methods>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, R> Service<http::Request<Body>> for Patient<S>
where
    S: Service<http::Request<Body>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this call; the new one waits for the next.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let kind: MethodKind = self.methods.kind(request.uri().path());
        Box::pin(async move {
            if !(kind.idempotent && kind.unary_request) {
                let mut response = inner.call(request).await.map_err(Into::into)?;
                response.headers_mut().remove(MARK);
                return Ok(response);
            }
            let left = crate::rpc::grpc_timeout(request.headers()).unwrap_or(PATIENCE).min(PATIENCE);
            let mut backoff = Backoff::until(Instant::now() + left);
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await?.to_bytes();
            let mut moves = Moves::new();
            loop {
                let again =
                    http::Request::from_parts(parts.clone(), Body::new(http_body_util::Full::new(bytes.clone())));
                let attempt = inner.ready().await.map_err(Into::into)?.call(again);
                let Some(response) = moves.unless_moved(attempt).await else { continue };
                let mut response = response.map_err(Into::into)?;
                if response.headers_mut().remove(MARK).is_some() && backoff.wait().await {
                    tracing::debug!(method = %parts.uri.path(), "the database is away; running the call again");
                    continue;
                }
                return Ok(response);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tower::Layer as _;

    use super::*;

    /// A handler whose database is away for its first `away` calls.
    fn handler(
        away: usize,
        calls: Arc<AtomicUsize>,
    ) -> impl Service<http::Request<Body>, Response = http::Response<Body>, Error = BoxError, Future = impl Send>
    + Clone
    + Send
    + 'static {
        tower::service_fn(move |request: http::Request<Body>| {
            let calls = calls.clone();
            async move {
                let body = request.into_body().collect().await?.to_bytes();
                assert_eq!(&body[..], b"request", "every attempt gets the whole request");
                if calls.fetch_add(1, Ordering::SeqCst) < away {
                    let mut status = Status::unavailable("the order database is unavailable; try again");
                    mark(&mut status);
                    return Ok::<_, BoxError>(status.into_http());
                }
                Ok(http::Response::new(Body::empty()))
            }
        })
    }

    fn call(path: &str) -> http::Request<Body> {
        http::Request::builder()
            .uri(path)
            .body(Body::new(http_body_util::Full::new(bytes::Bytes::from_static(b"request"))))
            .unwrap()
    }

    fn status_of<B>(response: &http::Response<B>) -> Option<&str> {
        response.headers().get("grpc-status").map(|v| v.to_str().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn an_idempotent_call_waits_out_the_database_and_nothing_marked_leaves() {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut service = PatienceLayer::default().layer(handler(3, calls.clone()));
        let response =
            service.ready().await.unwrap().call(call("/agora.order.v1.OrderService/GetOrder")).await.unwrap();
        assert_eq!(status_of(&response), None, "answered once the database was back");
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        let calls = Arc::new(AtomicUsize::new(0));
        let mut service = PatienceLayer::default().layer(handler(usize::MAX, calls.clone()));
        let started = Instant::now();
        let response =
            service.ready().await.unwrap().call(call("/agora.order.v1.OrderService/GetOrder")).await.unwrap();
        assert_eq!(status_of(&response), Some("14"), "still away after the patience: UNAVAILABLE");
        assert!(response.headers().get(MARK).is_none(), "the mark stays on the server");
        assert!(started.elapsed() <= PATIENCE, "{:?}", started.elapsed());
        assert!(calls.load(Ordering::SeqCst) > 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_is_not_safe_twice_runs_once_and_a_deadline_bounds_the_wait() {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut service = PatienceLayer::default().layer(handler(1, calls.clone()));
        let response =
            service.ready().await.unwrap().call(call("/agora.payment.v1.PaymentService/TopUpWallet")).await.unwrap();
        assert_eq!(status_of(&response), Some("14"));
        assert!(response.headers().get(MARK).is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a top-up is not sent twice");

        let calls = Arc::new(AtomicUsize::new(0));
        let mut service = PatienceLayer::default().layer(handler(usize::MAX, calls.clone()));
        let mut request = call("/agora.order.v1.OrderService/GetOrder");
        request.headers_mut().insert("grpc-timeout", http::HeaderValue::from_static("300m"));
        let started = Instant::now();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(status_of(&response), Some("14"));
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "within the caller's deadline: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_waiting_when_a_pool_moves_runs_again_at_once() {
        let tries = Arc::new(AtomicUsize::new(0));
        let counted = tries.clone();
        let step = patiently(
            |_: &()| false,
            move || {
                let attempt = counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    if attempt == 0 {
                        // Waits on a server that will never answer.
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, ()>(attempt)
                }
            },
        );
        let mover = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            crate::db::note_move();
            std::future::pending::<()>().await
        };
        let done = tokio::select! { done = step => done, () = mover => unreachable!() };
        assert_eq!(done, Ok(1), "the second attempt, after the move, answered");
        assert_eq!(tries.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_runs_again_only_while_the_database_is_away() {
        let mut tries = 0;
        let done: Result<u32, &str> = patiently(
            |e: &&str| *e == "away",
            || {
                tries += 1;
                let answer = if tries < 3 { Err("away") } else { Ok(7) };
                async move { answer }
            },
        )
        .await;
        assert_eq!((done, tries), (Ok(7), 3));
        let mut tries = 0;
        let done: Result<u32, &str> = patiently(
            |e: &&str| *e == "away",
            || {
                tries += 1;
                async { Err("bad request") }
            },
        )
        .await;
        assert_eq!((done, tries), (Err("bad request"), 1));
    }
}
