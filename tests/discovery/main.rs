//! Discovery against the real Consul agent that `make test` runs (`AGORA_TEST_CONSUL_ADDR`):
//! product-service instances in this process register themselves, and a balanced channel
//! follows them. Each instance has its own catalog holding one product named after the
//! instance, so every answer says which instance gave it.
//!
//! The agent-restart test runs a private agent, because it stops it.

mod keepalive;
mod quorum;
mod restart;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use agora_discovery::{Balanced, CheckTiming, Consul, ConsulError, Probe, Registration, Resolver};
use agora_events::{Host, LocalBus};
use agora_kit::{
    grpc::{Health, Listener},
    identity::Caller,
    testing::{Served, channel, consul_addr, consul_token, eventually, loopback},
};
use agora_proto::{
    Money,
    product::{CreateProductRequest, ListProductsRequest, product_service_client::ProductServiceClient},
};
use tonic_health::ServingStatus;

/// Short, so the tests see several checks; real deployments use 5 s.
const INTERVAL: Duration = Duration::from_secs(2);
/// What "within one check interval" allows for the agent's and this process's own work.
const SLACK: Duration = Duration::from_millis(750);

fn timing() -> CheckTiming {
    CheckTiming { interval: INTERVAL, deregister_after: Duration::from_secs(60) }
}

/// A service name of this test's own, so tests sharing the agent do not see each other.
fn unique_service() -> String {
    format!("it-product-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// One in-process product-service instance, registered in Consul.
struct ProductInstance {
    label: String,
    id: String,
    health: Health,
    served: Served,
}

impl ProductInstance {
    async fn start(consul: &Consul, service: &str, label: &str) -> Self {
        let (tcp, url) = loopback().await;
        let addr: SocketAddr = tcp.local_addr().unwrap();
        let registration = Registration::new(
            consul.clone(),
            service,
            addr,
            Probe::Grpc(product_service::SERVICE_NAME.to_owned()),
            timing(),
            "test",
        );
        let id = registration.id().to_owned();
        let health = Health::new();
        let listener = Listener::from(tcp).announced(Arc::new(registration)).with_health(health.clone());
        let bus = Arc::new(LocalBus::in_memory().await.unwrap());
        let config = product_service::Config { database_url: "sqlite::memory:".to_owned(), ..Default::default() };
        let served = Served::spawn(|stop| product_service::run(config, Host::new(bus, listener, stop)));
        let mut direct = ProductServiceClient::new(channel(&url).await);
        let request = CreateProductRequest {
            name: label.to_owned(),
            description: "names the instance that answers".to_owned(),
            price: Some(Money { currency_code: "USD".into(), amount_minor: 100 }),
            stock: 1,
        };
        direct.create_product(Caller::admin("0190b2c4-0000-7000-8000-00000000ad01").request(request)).await.unwrap();
        Self { label: label.to_owned(), id, health, served }
    }

    async fn set_health(&self, status: ServingStatus) {
        self.health.set(&[product_service::SERVICE_NAME], status).await;
    }
}

/// The status of `id`'s check, polled every 50 ms until it is `want`; returns how long that took.
async fn until_status(consul: &Consul, service: &str, id: &str, want: Option<&str>) -> Duration {
    let started = Instant::now();
    eventually(30, &format!("{id} to be {want:?} in Consul"), || async {
        let checks = consul.check_status(service).await.unwrap();
        (checks.get(id).map(String::as_str) == want).then_some(())
    })
    .await;
    started.elapsed()
}

/// Which instance answered a ListProducts through `balanced`.
async fn who_answers(balanced: &Balanced) -> Result<String, tonic::Status> {
    let mut client = ProductServiceClient::new(balanced.clone());
    let page = client.list_products(ListProductsRequest::default()).await?.into_inner();
    Ok(page.products.into_iter().next().map(|p| p.name).unwrap_or_default())
}

/// Answers per instance over `calls` sequential calls.
async fn spread(balanced: &Balanced, calls: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..calls {
        *counts.entry(who_answers(balanced).await.unwrap()).or_default() += 1;
    }
    counts
}

/// Two instances, A and B, of a service of the test's own, and a balanced channel that has
/// found both: the start of the tests that take Consul away under load.
async fn two_instances(consul: &Consul) -> (String, ProductInstance, ProductInstance, Balanced) {
    let service = unique_service();
    let a = ProductInstance::start(consul, &service, "A").await;
    let b = ProductInstance::start(consul, &service, "B").await;
    let balanced = Resolver::with_consul(consul.clone()).channel(&service, &format!("consul://{service}")).unwrap();
    until_instances(&balanced, &[&a.id, &b.id]).await;
    (service, a, b, balanced)
}

/// Calls through `balanced` every 10 ms until stopped, counting answers and failures.
struct SteadyCalls {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SteadyCalls {
    fn start(balanced: &Balanced) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let task = tokio::spawn({
            let (balanced, stop, ok, failed) = (balanced.clone(), stop.clone(), ok.clone(), failed.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    match who_answers(&balanced).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(status) => {
                            eprintln!("failed call: {status:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        Self { stop, ok, failed, task }
    }

    /// Calls answered so far.
    fn answered(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the calls: (answered, failed).
    async fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

async fn until_instances(balanced: &Balanced, ids: &[&str]) {
    let mut want: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    eventually(30, &format!("the channel to hold {want:?}"), || async {
        let mut now = balanced.ids();
        now.sort();
        (now == want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_started_instance_passes_at_once_goes_critical_when_not_serving_and_is_gone_once_stopped() {
    let (Some(addr), Some(token)) = (consul_addr(), consul_token()) else { return };
    let consul = Consul::new(&addr, Some(token.into())).unwrap();
    let service = unique_service();
    let instance = ProductInstance::start(&consul, &service, "only").await;

    // An instance registers once it serves, so it is passing at once, without waiting up to
    // an interval for the agent's first check (a restarted process takes calls right away).
    let to_pass = until_status(&consul, &service, &instance.id, Some("passing")).await;
    eprintln!("passing {} ms after registration (interval {} ms)", to_pass.as_millis(), INTERVAL.as_millis());
    assert!(to_pass < INTERVAL, "passing only after {to_pass:?}");

    let registered = consul.registered(&instance.id, None, Duration::ZERO).await.unwrap();
    assert!(registered.is_some());

    instance.set_health(ServingStatus::NotServing).await;
    let to_critical = until_status(&consul, &service, &instance.id, Some("critical")).await;
    eprintln!("critical {} ms after NOT_SERVING", to_critical.as_millis());
    assert!(to_critical <= INTERVAL + SLACK, "critical only after {to_critical:?}");

    instance.set_health(ServingStatus::Serving).await;
    until_status(&consul, &service, &instance.id, Some("passing")).await;

    // A graceful stop deregisters before it returns: nothing is left behind.
    instance.served.stop().await;
    assert_eq!(consul.check_status(&service).await.unwrap().get(&instance.id), None);
    assert_eq!(consul.registered(&instance.id, None, Duration::ZERO).await.unwrap(), None);
}

#[tokio::test]
async fn the_agent_enforces_its_acls_a_client_without_the_token_can_neither_remove_nor_see_an_instance() {
    let (Some(addr), Some(token)) = (consul_addr(), consul_token()) else { return };
    let consul = Consul::new(&addr, Some(token.into())).unwrap();
    let anonymous = Consul::new(&addr, None).unwrap();
    let service = unique_service();
    let instance = ProductInstance::start(&consul, &service, "guarded").await;
    until_status(&consul, &service, &instance.id, Some("passing")).await;

    match anonymous.deregister(&instance.id).await {
        Err(ConsulError::Refused { status, .. }) => assert_eq!(status, reqwest::StatusCode::FORBIDDEN),
        other => panic!("a deregistration without the token was not refused: {other:?}"),
    }
    let seen = anonymous.check_status(&service).await.map(|checks| checks.contains_key(&instance.id));
    assert!(!matches!(seen, Ok(true)), "an anonymous client saw the instance: {seen:?}");
    // Still there, for the one that holds the token.
    assert_eq!(consul.check_status(&service).await.unwrap().get(&instance.id).map(String::as_str), Some("passing"));
    instance.served.stop().await;
}

#[tokio::test]
async fn calls_spread_over_the_passing_instances_and_follow_their_health() {
    let (Some(addr), Some(token)) = (consul_addr(), consul_token()) else { return };
    let consul = Consul::new(&addr, Some(token.into())).unwrap();
    let service = unique_service();
    let a = ProductInstance::start(&consul, &service, "A").await;
    let b = ProductInstance::start(&consul, &service, "B").await;
    let balanced = Resolver::with_consul(consul.clone()).channel(&service, &format!("consul://{service}")).unwrap();
    until_instances(&balanced, &[&a.id, &b.id]).await;

    // Both share the load (power of two choices over idle instances is a coin toss).
    let counts = spread(&balanced, 60).await;
    eprintln!("60 calls over two instances: {counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 60);
    assert!(counts.get(&a.label).copied().unwrap_or(0) >= 10, "{counts:?}");
    assert!(counts.get(&b.label).copied().unwrap_or(0) >= 10, "{counts:?}");

    // A turns NOT_SERVING: critical in Consul, out of the channel, no new calls.
    a.set_health(ServingStatus::NotServing).await;
    until_status(&consul, &service, &a.id, Some("critical")).await;
    until_instances(&balanced, &[&b.id]).await;
    let counts = spread(&balanced, 30).await;
    assert_eq!(counts, BTreeMap::from([(b.label.clone(), 30)]), "calls still reached the NOT_SERVING instance");

    // Back to SERVING: it gets calls again within 5 s of passing.
    a.set_health(ServingStatus::Serving).await;
    until_status(&consul, &service, &a.id, Some("passing")).await;
    let passing = Instant::now();
    loop {
        if who_answers(&balanced).await.unwrap() == a.label {
            break;
        }
        assert!(passing.elapsed() < Duration::from_secs(5), "no call reached the instance 5 s after it passed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("first call to the returning instance {} ms after it passed", passing.elapsed().as_millis());

    a.served.stop().await;
    b.served.stop().await;
}

#[tokio::test]
async fn an_instance_that_refuses_connections_is_ejected_until_its_health_check_passes() {
    // No Consul needed: a fixed list, where one address has nothing behind it (yet).
    let (live_tcp, live_url) = loopback().await;
    let dead = {
        let (tcp, _) = loopback().await;
        tcp.local_addr().unwrap()
    };
    let bus = Arc::new(LocalBus::in_memory().await.unwrap());
    let config = product_service::Config { database_url: "sqlite::memory:".to_owned(), ..Default::default() };
    let live = Served::spawn(|stop| product_service::run(config, Host::new(bus, live_tcp, stop)));
    channel(&live_url).await;
    let live_addr = live_url.trim_start_matches("http://").to_owned();
    let dead_addr = dead.to_string();
    let balanced = Balanced::fixed("product-service", &[&live_addr, &dead_addr], Default::default()).unwrap();

    // Every call succeeds: one that picks the dead address cannot connect, which ejects it,
    // and the call goes again to the live one (the request never left, so even a
    // non-idempotent call could).
    for _ in 0..20 {
        who_answers(&balanced).await.expect("the call is retried on the live instance");
    }
    let ejected = |addr: &str| balanced.states().iter().find(|s| s.address == addr).map(|s| s.ejected);
    assert_eq!(ejected(&dead_addr), Some(true));
    assert_eq!(ejected(&live_addr), Some(false));

    // Something serving appears at the dead address: the probe returns it to rotation.
    let tcp = tokio::net::TcpListener::bind(dead).await.unwrap();
    let bus = Arc::new(LocalBus::in_memory().await.unwrap());
    let config = product_service::Config { database_url: "sqlite::memory:".to_owned(), ..Default::default() };
    let revived = Served::spawn(|stop| product_service::run(config, Host::new(bus, tcp, stop)));
    eventually(10, "the revived instance to return to rotation", || async {
        (ejected(&dead_addr) == Some(false)).then_some(())
    })
    .await;
    revived.stop().await;
    live.stop().await;
}
