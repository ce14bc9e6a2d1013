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
//!   idempotent in the contract ([`crate::methods`]), the call carries an idempotency key
//!   (the server answers a repeat with the first call's result), or the request never left
//!   this process (the connection could not be made).
//! - **Ejection**: an instance that refuses connections or drops them is ejected at once; one
//!   that answers UNAVAILABLE [`Policy::eject_after`] times in a row is ejected too. An
//!   ejected instance gets no calls while others remain; a probe asks its
//!   `grpc.health.v1` every [`Policy::probe_interval`] and returns it to rotation on SERVING.
//!
//! # Layout
//! - this file: the handle, its instances and their membership, and the tower `Service` that
//!   tonic clients call (each call observed by `agora_kit::rpc`'s client end: span, metrics,
//!   trace context);
//! - `retry`: one call: attempts, what may be sent again, the retry budget;
//! - `choice`: which instance an attempt goes to;
//! - `eject`: taking a failing instance out of rotation and probing it back in;
//! - `deadline`: the `grpc-timeout` header, read and written.

mod choice;
mod deadline;
mod eject;
mod retry;

use std::{
    fmt,
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use agora_kit::{
    rpc::{self, Observed, Side},
    tls::{Connector, Credentials},
};
use tokio::sync::Notify;
use tonic::{body::Body, transport::Channel};
use tower::{Service, discover::Change, retry::budget::TpsBudget};

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
    /// How often an HTTP/2 PING asks each connection whether it still works, busy or idle,
    /// and how long its answer may take before the connection is dropped and made again. A
    /// connection that a partition or a blackhole left dead, or whose bytes were lost mid-frame,
    /// otherwise stays in use, failing every call on it, until TCP gives up minutes later.
    pub keepalive: Duration,
    pub keepalive_timeout: Duration,
    /// Mutual TLS: each instance must prove it is the channel's role, and is shown this
    /// process's certificate. `None`: plaintext.
    pub tls: Option<Arc<Credentials>>,
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
            keepalive: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(3),
            tls: None,
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
    /// The role the instances serve: named in messages, and the identity their certificates
    /// must show under mutual TLS.
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

    /// A channel to `service` over a fixed list of `HOST:PORT` (or `http://…`) addresses.
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
                let policy = &self.inner.policy;
                let endpoint = agora_kit::grpc::endpoint(&address)?
                    .connect_timeout(policy.connect_timeout)
                    .http2_keep_alive_interval(policy.keepalive)
                    .keep_alive_timeout(policy.keepalive_timeout)
                    .keep_alive_while_idle(true)
                    .tcp_nodelay(true);
                let channel = match &policy.tls {
                    None => endpoint.connect_lazy(),
                    Some(creds) => endpoint.connect_with_connector_lazy(Connector::new(
                        creds,
                        &self.inner.service,
                        policy.connect_timeout,
                    )?),
                };
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
    type Future = Observed<Body>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The instance is chosen per call, in `call`; each instance's channel buffers.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        // One client span for the call, all its attempts; the server continues from it.
        rpc::observe(Side::Client, request, move |request| async move { inner.call(request).await })
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner").field("service", &self.service).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use tonic::Status;

    use super::*;

    pub(super) fn with_instances(ids: &[&str]) -> Balanced {
        let balanced = Balanced::new("test", Policy::default());
        for id in ids {
            balanced.apply(Change::Insert((*id).to_owned(), format!("127.0.0.1:{}", 1 + ids.len()))).unwrap();
        }
        balanced
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

    /// An order service that answers every call UNAVAILABLE, counting them.
    #[derive(Clone, Default)]
    struct Refusing(Arc<AtomicUsize>);

    impl tonic::server::NamedService for Refusing {
        const NAME: &'static str = "agora.order.v1.OrderService";
    }

    impl Service<http::Request<Body>> for Refusing {
        type Response = http::Response<Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(Status::unavailable("refusing for the test").into_http()))
        }
    }

    #[tokio::test]
    async fn a_call_that_reached_a_server_is_sent_again_only_if_idempotent_or_keyed() {
        let (listener, url) = agora_kit::testing::loopback().await;
        let refusing = Refusing::default();
        let server = tonic::transport::Server::builder()
            .add_service(refusing.clone())
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
        let server = tokio::spawn(server);
        let address = url.trim_start_matches("http://");
        let mut balanced = Balanced::fixed("order-service", &[address], Policy::default()).unwrap();

        let mut attempts = |path: &str, key: Option<&str>| {
            let mut request = http::Request::builder().uri(format!("http://x/agora.order.v1.OrderService/{path}"));
            if let Some(key) = key {
                request = request.header(agora_kit::methods::IDEMPOTENCY_KEY, key);
            }
            // An empty message: the server never reads it.
            let request =
                request.body(Body::new(http_body_util::Full::new(bytes::Bytes::from_static(&[0; 5])))).unwrap();
            let before = refusing.0.load(Ordering::SeqCst);
            let call = balanced.call(request);
            let counter = refusing.0.clone();
            async move {
                let response = call.await.unwrap();
                assert_eq!(response.headers().get("grpc-status").unwrap(), "14");
                counter.load(Ordering::SeqCst) - before
            }
        };
        // CreateOrder has side effects: once it reached a server, its UNAVAILABLE is the answer...
        assert_eq!(attempts("CreateOrder", None).await, 1);
        // ...unless it carries an idempotency key, which makes a repeat harmless.
        assert_eq!(attempts("CreateOrder", Some("k-1")).await, 2);
        // GetOrder has none: sent again.
        assert_eq!(attempts("GetOrder", None).await, 2);
        server.abort();
    }
}
