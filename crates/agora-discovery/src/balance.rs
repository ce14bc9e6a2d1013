//! A gRPC channel over a changing set of instances: it picks one per call, retries what is
//! safe to retry, and stops choosing an instance that keeps failing until its health check
//! passes again.
//!
//! - **Membership** comes from outside as `tower::discover::Change`s (inserts and removes):
//!   a fixed list, or a Consul watch ([`crate::watch`]).
//! - **Choice**: power of two choices: two random eligible instances, the one with fewer
//!   calls outstanding wins. Cheap, and it steers away from a slow instance without global
//!   state.
//! - **Deadlines**: every call has one, the caller's `grpc-timeout` or [`Policy::timeout`];
//!   retries share it, so a retry never outlives what the caller waits for.
//! - **Retries**: a call that failed with UNAVAILABLE is sent again to another instance, at
//!   most [`Policy::max_retries`] times and only within a budget (at most 20% extra load over
//!   10 s, plus 10 retries a second), and only when sending it again is safe: the method is
//!   idempotent in the contract ([`crate::methods`]), or the request never left this process
//!   (the connection could not be made).
//! - **Ejection**: an instance that refuses connections or drops them is ejected at once; one
//!   that answers UNAVAILABLE [`Policy::eject_after`] times in a row is ejected too. An
//!   ejected instance gets no calls while others remain; a probe asks its
//!   `grpc.health.v1` every [`Policy::probe_interval`] and returns it to rotation on SERVING.

use std::{
    error::Error as StdError,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use agora_kit::trace_context::{self, Side};
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::{sync::Notify, time::Instant};
use tonic::{Status, body::Body, transport::Channel};
use tower::{
    Service,
    discover::Change,
    retry::budget::{Budget, TpsBudget},
};
use tracing::Instrument;

use crate::methods::Methods;

/// The knobs of a balanced channel; the defaults suit calls inside one data centre.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Deadline of a call whose caller set none.
    pub timeout: Duration,
    /// Extra attempts after the first, for calls that may be retried.
    pub max_retries: u32,
    /// Consecutive UNAVAILABLE answers that eject an instance.
    pub eject_after: u32,
    /// How often an ejected instance's health is asked.
    pub probe_interval: Duration,
    /// How long a call waits for the first instance to be known (right after start).
    pub wait_for_instances: Duration,
    /// TCP connect timeout per instance.
    pub connect_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_retries: 1,
            eject_after: 3,
            probe_interval: Duration::from_secs(1),
            wait_for_instances: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// A cheap-to-clone handle on a balanced channel to one service; usable wherever tonic
/// wants a channel (`ProductServiceClient::new(balanced)`).
#[derive(Clone)]
pub struct Balanced {
    inner: Arc<Inner>,
}

impl fmt::Debug for Balanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balanced").field("service", &self.inner.service).finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    /// The service's name, for messages.
    service: String,
    policy: Policy,
    methods: Arc<Methods>,
    budget: TpsBudget,
    instances: RwLock<Vec<Arc<Instance>>>,
    /// Signalled when the set of instances or their ejection changes.
    changed: Notify,
}

/// One instance's channel and what the balancer knows of it.
#[derive(Debug)]
struct Instance {
    id: String,
    address: String,
    channel: Channel,
    outstanding: AtomicUsize,
    /// UNAVAILABLE answers in a row.
    failures: AtomicU32,
    ejected: AtomicBool,
    removed: AtomicBool,
}

/// A snapshot of one instance, for `/readyz`-style reports and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceState {
    pub id: String,
    pub address: String,
    pub ejected: bool,
}

impl Balanced {
    /// A channel to `service` with no instances yet; feed it with [`Balanced::apply`].
    pub fn new(service: &str, policy: Policy) -> Self {
        Self::with_methods(service, policy, Methods::agora())
    }

    pub fn with_methods(service: &str, policy: Policy, methods: Arc<Methods>) -> Self {
        Self {
            inner: Arc::new(Inner {
                service: service.to_owned(),
                policy,
                methods,
                budget: TpsBudget::new(Duration::from_secs(10), 10, 0.2),
                instances: RwLock::new(Vec::new()),
                changed: Notify::new(),
            }),
        }
    }

    /// A channel over a fixed list of `HOST:PORT` (or `http://…`) addresses.
    pub fn fixed(service: &str, addresses: &[&str], policy: Policy) -> anyhow::Result<Self> {
        if addresses.is_empty() {
            anyhow::bail!("{service}: no address given");
        }
        let balanced = Self::new(service, policy);
        for address in addresses {
            balanced.apply(Change::Insert((*address).to_owned(), (*address).to_owned()))?;
        }
        Ok(balanced)
    }

    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// Adds (id → address) or removes (id) an instance. Inserting a known id with a new
    /// address replaces it.
    pub fn apply(&self, change: Change<String, String>) -> anyhow::Result<()> {
        match change {
            Change::Insert(id, address) => {
                let channel = agora_kit::grpc::endpoint(&address)?
                    .connect_timeout(self.inner.policy.connect_timeout)
                    .tcp_nodelay(true)
                    .connect_lazy();
                let instance = Arc::new(Instance {
                    id: id.clone(),
                    address,
                    channel,
                    outstanding: AtomicUsize::new(0),
                    failures: AtomicU32::new(0),
                    ejected: AtomicBool::new(false),
                    removed: AtomicBool::new(false),
                });
                let mut instances = self.inner.instances.write().unwrap();
                if let Some(old) = instances.iter().position(|i| i.id == id) {
                    instances.remove(old).removed.store(true, Ordering::Relaxed);
                }
                instances.push(instance);
            }
            Change::Remove(id) => {
                let mut instances = self.inner.instances.write().unwrap();
                if let Some(old) = instances.iter().position(|i| i.id == id) {
                    instances.remove(old).removed.store(true, Ordering::Relaxed);
                }
            }
        }
        self.inner.changed.notify_waiters();
        Ok(())
    }

    /// The ids of the instances now known.
    pub fn ids(&self) -> Vec<String> {
        self.inner.instances.read().unwrap().iter().map(|i| i.id.clone()).collect()
    }

    /// Every known instance and whether it is ejected.
    pub fn states(&self) -> Vec<InstanceState> {
        self.inner
            .instances
            .read()
            .unwrap()
            .iter()
            .map(|i| InstanceState {
                id: i.id.clone(),
                address: i.address.clone(),
                ejected: i.ejected.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// A handle that does not keep the channel alive (for the task that feeds it).
    pub(crate) fn downgrade(&self) -> WeakInner {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn upgrade(weak: &WeakInner) -> Option<Self> {
        weak.upgrade().map(|inner| Self { inner })
    }
}

pub(crate) type WeakInner = Weak<Inner>;

impl Service<http::Request<Body>> for Balanced {
    type Response = http::Response<Body>;
    type Error = tower::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The instance is chosen per call, in `call`; each instance's channel buffers.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let path = request.uri().path().to_owned();
        if trace_context::untraced(&path) {
            return Box::pin(
                async move { inner.call(request).await.map_err(|status| Box::new(status) as tower::BoxError) },
            );
        }
        // A client span for the call (all its attempts); the server continues from it.
        let span = trace_context::rpc_span(&path, "client");
        let context = trace_context::hop(&span, trace_context::current());
        let value = http::HeaderValue::from_str(&context.to_string()).expect("a traceparent is ASCII");
        request.headers_mut().insert(trace_context::TRACEPARENT, value);
        if let Some(baggage) = trace_context::baggage().and_then(|b| http::HeaderValue::from_str(&b.to_string()).ok()) {
            request.headers_mut().entry(trace_context::BAGGAGE).or_insert(baggage);
        }
        let call = async move {
            let started = std::time::Instant::now();
            let answer = inner.call(request).await;
            let span = tracing::Span::current();
            let code = match &answer {
                Ok(response) => trace_context::record_grpc_status(&span, response.headers(), Side::Client),
                Err(status) => {
                    span.record("rpc.grpc.status_code", status.code() as i32);
                    trace_context::fail(&span, &format!("{:?}: {}", status.code(), status.message()));
                    status.code() as i32
                }
            };
            agora_kit::metrics::metrics().rpc(true, &path, code, started.elapsed());
            answer.map_err(|status| Box::new(status) as tower::BoxError)
        };
        Box::pin(call.instrument(span))
    }
}

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
    async fn call(self: &Arc<Self>, request: http::Request<Body>) -> Result<http::Response<Body>, Status> {
        let kind = self.methods.kind(request.uri().path());
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
                    && (kind.idempotent || !sent)
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

    /// An eligible instance other than `avoid` (when there is a choice); waits for the first
    /// instances to be known, up to the deadline.
    async fn pick(self: &Arc<Self>, avoid: Option<&Instance>, deadline: Instant) -> Result<Arc<Instance>, Status> {
        let give_up = deadline.min(Instant::now() + self.policy.wait_for_instances);
        loop {
            let changed = self.changed.notified();
            if let Some(instance) = self.choose(avoid) {
                return Ok(instance);
            }
            if tokio::time::timeout_at(give_up, changed).await.is_err() {
                return Err(Status::unavailable(format!("no instance of {} is known", self.service)));
            }
        }
    }

    fn choose(&self, avoid: Option<&Instance>) -> Option<Arc<Instance>> {
        let instances = self.instances.read().unwrap();
        let avoided = |i: &Instance| avoid.is_some_and(|a| std::ptr::eq(a, i));
        let healthy: Vec<&Arc<Instance>> =
            instances.iter().filter(|i| !i.ejected.load(Ordering::Relaxed) && !avoided(i)).collect();
        // With every other instance ejected, calls still go somewhere rather than nowhere:
        // the ejection may be stale, and failing fast helps nobody.
        let candidates = if !healthy.is_empty() {
            healthy
        } else {
            let rest: Vec<&Arc<Instance>> = instances.iter().filter(|i| !avoided(i)).collect();
            if rest.is_empty() { instances.iter().collect() } else { rest }
        };
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0].clone()),
            n => {
                let a = fastrand::usize(..n);
                let b = (a + 1 + fastrand::usize(..n - 1)) % n;
                let (a, b) = (candidates[a], candidates[b]);
                let winner =
                    if b.outstanding.load(Ordering::Relaxed) < a.outstanding.load(Ordering::Relaxed) { b } else { a };
                Some(winner.clone())
            }
        }
    }

    /// Takes `instance` out of rotation until its health check answers SERVING.
    fn eject(self: &Arc<Self>, instance: &Arc<Instance>, reason: &str) {
        if instance.ejected.swap(true, Ordering::Relaxed) || instance.removed.load(Ordering::Relaxed) {
            return;
        }
        tracing::warn!(service = %self.service, instance = %instance.id, address = %instance.address, %reason, "instance ejected");
        self.changed.notify_waiters();
        let weak = Arc::downgrade(self);
        let instance = instance.clone();
        tokio::spawn(async move {
            let interval = match weak.upgrade() {
                Some(inner) => inner.policy.probe_interval,
                None => return,
            };
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                if instance.removed.load(Ordering::Relaxed) {
                    return;
                }
                if serving(&instance.channel, interval).await {
                    instance.failures.store(0, Ordering::Relaxed);
                    instance.ejected.store(false, Ordering::Relaxed);
                    inner.changed.notify_waiters();
                    tracing::info!(service = %inner.service, instance = %instance.id, "instance back in rotation: health check passes");
                    return;
                }
            }
        });
    }
}

/// Whether `channel`'s server reports SERVING within `timeout`.
async fn serving(channel: &Channel, timeout: Duration) -> bool {
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = client.check(tonic_health::pb::HealthCheckRequest { service: String::new() });
    matches!(
        tokio::time::timeout(timeout, check).await,
        Ok(Ok(response)) if response.get_ref().status() == tonic_health::pb::health_check_response::ServingStatus::Serving
    )
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

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline.checked_duration_since(Instant::now()).filter(|d| *d >= Duration::from_millis(1))
}

/// `grpc-timeout`: an integer of at most 8 digits and a unit (H, M, S, m, u, n).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

fn set_grpc_timeout(headers: &mut http::HeaderMap, left: Duration) {
    // Milliseconds fit the 8-digit limit up to ~27 hours; beyond that, seconds.
    let millis = left.as_millis();
    let value =
        if millis < 100_000_000 { format!("{millis}m") } else { format!("{}S", left.as_secs().min(99_999_999)) };
    headers.insert("grpc-timeout", http::HeaderValue::from_str(&value).expect("digits and a unit"));
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner").field("service", &self.service).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_and_print() {
        let mut headers = http::HeaderMap::new();
        for (text, duration) in [
            ("15S", Duration::from_secs(15)),
            ("250m", Duration::from_millis(250)),
            ("2M", Duration::from_secs(120)),
            ("100u", Duration::from_micros(100)),
        ] {
            headers.insert("grpc-timeout", text.parse().unwrap());
            assert_eq!(grpc_timeout(&headers), Some(duration), "{text}");
        }
        for bad in ["", "S", "12x", "-1S"] {
            headers.insert("grpc-timeout", http::HeaderValue::from_str(bad).unwrap());
            assert_eq!(grpc_timeout(&headers), None, "{bad:?}");
        }
        set_grpc_timeout(&mut headers, Duration::from_millis(1234));
        assert_eq!(headers["grpc-timeout"], "1234m");
        set_grpc_timeout(&mut headers, Duration::from_secs(200_000));
        assert_eq!(headers["grpc-timeout"], "200000S");
    }

    fn with_instances(ids: &[&str]) -> Balanced {
        let balanced = Balanced::new("test", Policy::default());
        for id in ids {
            balanced.apply(Change::Insert((*id).to_owned(), format!("127.0.0.1:{}", 1 + ids.len()))).unwrap();
        }
        balanced
    }

    #[tokio::test]
    async fn the_less_loaded_of_two_wins_and_ejected_instances_sit_out() {
        let balanced = with_instances(&["a", "b"]);
        let instances = balanced.inner.instances.read().unwrap().clone();
        instances[0].outstanding.store(5, Ordering::Relaxed);
        for _ in 0..20 {
            assert_eq!(balanced.inner.choose(None).unwrap().id, "b", "with two candidates, the idle one wins");
        }
        instances[1].ejected.store(true, Ordering::Relaxed);
        for _ in 0..20 {
            assert_eq!(balanced.inner.choose(None).unwrap().id, "a", "an ejected instance sits out");
        }
        // A retry avoids the instance that failed, even if that leaves only an ejected one.
        assert_eq!(balanced.inner.choose(Some(&instances[0])).unwrap().id, "b");
        // With nothing else left, the avoided instance is still better than nothing.
        let single = with_instances(&["only"]);
        let only = single.inner.instances.read().unwrap()[0].clone();
        assert_eq!(single.inner.choose(Some(&only)).unwrap().id, "only");
    }

    #[tokio::test]
    async fn removing_and_replacing_instances() {
        let balanced = with_instances(&["a", "b", "c"]);
        balanced.apply(Change::Remove("b".into())).unwrap();
        balanced.apply(Change::Insert("c".into(), "127.0.0.1:9".into())).unwrap();
        let states = balanced.states();
        assert_eq!(states.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(states[1].address, "127.0.0.1:9");
        assert!(Balanced::fixed("test", &[], Policy::default()).is_err());
        assert!(balanced.apply(Change::Insert("d".into(), "not a uri at all".into())).is_err());
    }

    #[tokio::test]
    async fn a_call_with_no_instance_fails_as_unavailable_after_the_wait() {
        let policy = Policy { wait_for_instances: Duration::from_millis(50), ..Policy::default() };
        let mut balanced = Balanced::new("nothing", policy);
        let request = http::Request::builder().uri("http://x/grpc.health.v1.Health/Check").body(Body::empty()).unwrap();
        let error = balanced.call(request).await.unwrap_err();
        let status = error.downcast::<Status>().unwrap();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("no instance of nothing"), "{}", status.message());
    }
}
