//! The platform as it is deployed: every role a separate `agora` process, each service on its
//! own PostgreSQL database, events on Apache Kafka, driven through the gateway's REST API.
//!
//! Needs `make test`'s PostgreSQL and Kafka (skipped without them, except under `CI=true`).
//! Each stack uses its own databases and a topic prefix, so stacks share the servers safely;
//! the broker-outage test runs a private broker, because it stops it.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use agora_discovery::Consul;

use agora_events::{DomainEvent, EventBus, KafkaBus, KafkaOptions, testing::kafka_options_from, topics};
use agora_kit::{
    testing::{
        PrivateInstance, TestDatabase, consul_addr, eventually, free_port, jaeger, kafka_brokers, kafka_client_env,
    },
    trace_context::{BAGGAGE, TRACEPARENT, TraceParent},
};
use agora_proto::events::{EventEnvelope, OrderPaid, OrderPlaced, PaymentSucceeded};
use gateway::testing::{RestClient, usd};
use prost::Message;
use serde_json::{Value, json};

const SECRET: &str = "distributed-test-secret-distributed!";
const ADMIN_EMAIL: &str = "admin@agora.test";
const ADMIN_PASSWORD: &str = "admin-password";

/// The four services and the gateway, one process each (product-service possibly several).
struct Stack {
    rest: RestClient,
    /// Topic and group prefix of this stack on the shared broker.
    prefix: String,
    brokers: String,
    /// By name (`gateway`, `product-service-2`…).
    processes: Vec<(String, Child)>,
    logs: tempfile::TempDir,
    /// What another product-service instance is started with (but `--listen`).
    product_args: Vec<String>,
    /// Where every process exports its spans, if anywhere.
    otlp: Option<String>,
    /// Each service's `/metrics` address, by process name (with `Topology::metrics`).
    metrics: BTreeMap<String, String>,
    with_metrics: bool,
    /// `Topology::kafka_env`.
    kafka_env: Vec<(String, String)>,
}

/// How a stack's processes find each other.
#[derive(Debug, Clone)]
struct Topology {
    /// The Consul agent every process registers with and resolves through; fixed addresses
    /// without one.
    consul: Option<String>,
    product_replicas: usize,
    /// An OTLP endpoint (Jaeger's) for every process's spans.
    otlp: Option<String>,
    /// Every service serves `/metrics` on a port of its own.
    metrics: bool,
    /// The Kafka client settings (`AGORA_KAFKA_*`): the suite's broker's by default
    /// (SASL_SSL with a client certificate), none for a plaintext broker of the test's own.
    kafka_env: Vec<(String, String)>,
}

impl Default for Topology {
    fn default() -> Self {
        Self { consul: None, product_replicas: 1, otlp: None, metrics: false, kafka_env: kafka_client_env() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, child) in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Stack {
    /// Starts every role against `brokers`; `None` when there is no test PostgreSQL (outside CI).
    async fn start(brokers: &str) -> Option<Self> {
        Self::start_with(brokers, Topology::default()).await
    }

    async fn start_with(brokers: &str, topology: Topology) -> Option<Self> {
        let logs = tempfile::tempdir().unwrap();
        let prefix = format!("it-{}.", uuid::Uuid::new_v4().simple());
        let port = |_| free_port();
        let [user, product, order, payment, gateway]: [u16; 5] = std::array::from_fn(port);
        let addr = |port: u16| format!("127.0.0.1:{port}");
        let mut stack = Stack {
            rest: RestClient::new(&format!("http://{}", addr(gateway)), ADMIN_EMAIL, ADMIN_PASSWORD),
            prefix,
            brokers: brokers.to_owned(),
            processes: Vec::new(),
            logs,
            product_args: Vec::new(),
            otlp: topology.otlp.clone(),
            metrics: BTreeMap::new(),
            with_metrics: topology.metrics,
            kafka_env: topology.kafka_env.clone(),
        };
        let discovery = match &topology.consul {
            Some(consul) => ["--discovery", "consul", "--consul-addr", consul, "--consul-check-interval-secs", "1"]
                .map(String::from)
                .to_vec(),
            None => Vec::new(),
        };
        let order_calls = match topology.consul {
            Some(_) => vec![],
            None => vec!["--user-addr".into(), addr(user), "--product-addr".into(), addr(product)],
        };
        let services = [
            ("user-service", user, vec![]),
            ("product-service", product, vec![]),
            ("order-service", order, order_calls),
            ("payment-service", payment, vec![]),
        ];
        for (role, port, extra) in services {
            let db = TestDatabase::postgres().await?;
            let mut args = vec!["--database-url".into(), db.url];
            args.extend(["--events", "kafka", "--kafka-brokers", brokers, "--kafka-prefix"].map(String::from));
            args.push(stack.prefix.clone());
            args.extend(discovery.iter().cloned());
            args.extend(extra);
            if role == "product-service" {
                // Replicas share the one database, as they would in production.
                stack.product_args = args.clone();
                for replica in 1..=topology.product_replicas {
                    let port = if replica == 1 { port } else { free_port() };
                    stack.spawn_product(&format!("product-service-{replica}"), port);
                }
                continue;
            }
            args.extend(["--listen".into(), addr(port)]);
            stack.spawn(role, role, &args);
        }
        let mut args = vec!["--listen".to_owned(), addr(gateway)];
        if topology.consul.is_some() {
            args.extend(discovery.iter().cloned());
            // The load tests send more than one client's fair share.
            args.extend(["--rate-limit-per-second", "0"].map(String::from));
        } else {
            let backends = [
                ("--user-addr", user),
                ("--product-addr", product),
                ("--order-addr", order),
                ("--payment-addr", payment),
            ];
            for (flag, port) in backends {
                args.extend([flag.to_owned(), addr(port)]);
            }
        }
        stack.spawn("gateway", "gateway", &args);
        stack.rest.patience_secs = 60;
        stack.rest.ready(60).await;
        Some(stack)
    }

    /// Another product-service instance, named `name`, on `port`.
    fn spawn_product(&mut self, name: &str, port: u16) {
        let mut args = self.product_args.clone();
        args.extend(["--listen".to_owned(), format!("127.0.0.1:{port}")]);
        self.spawn(name, "product-service", &args);
    }

    fn spawn(&mut self, name: &str, role: &str, args: &[String]) {
        let mut args = args.to_vec();
        if self.with_metrics && role != "gateway" {
            let metrics = format!("127.0.0.1:{}", free_port());
            args.extend(["--metrics-listen".to_owned(), metrics.clone()]);
            self.metrics.insert(name.to_owned(), metrics);
        }
        let log = std::fs::File::create(self.log_path(name)).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_agora"));
        if let Some(otlp) = &self.otlp {
            // Spans leave in small, quick batches, so the test need not wait long for them.
            command.env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp).env("OTEL_BSP_SCHEDULE_DELAY", "200");
            // The suite's collector takes OTLP over TLS.
            if let Ok(ca) = std::env::var("AGORA_TEST_OTLP_CA") {
                command.env("OTEL_EXPORTER_OTLP_CERTIFICATE", ca);
            }
        } else {
            command.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        }
        let child = command
            .arg(role)
            .args(&args)
            .envs(self.kafka_env.iter().map(|(name, value)| (name, value)))
            .env("AGORA_JWT_SECRET", SECRET)
            .env("AGORA_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("AGORA_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("AGORA_LOG_FORMAT", "json")
            // One debug line per gRPC call served: which instance handled what.
            .env("RUST_LOG", "info,rdkafka=warn,agora::grpc=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the agora binary starts");
        self.processes.push((name.to_owned(), child));
    }

    /// SIGKILL: the process dies mid-call, without deregistering or draining.
    fn kill(&mut self, name: &str) {
        let index = self.processes.iter().position(|(n, _)| n == name).unwrap_or_else(|| panic!("no process {name}"));
        let (_, mut child) = self.processes.remove(index);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// How many `method` calls the process `name` has served so far (its debug log).
    fn served(&self, name: &str, method: &str) -> usize {
        let log = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
        log.lines().filter(|line| line.contains("call served") && line.contains(method)).count()
    }

    fn log_path(&self, role: &str) -> PathBuf {
        self.logs.path().join(format!("{role}.log"))
    }

    /// SIGTERM to every process, gateway first; each must exit 0.
    fn stop(mut self) {
        for (role, child) in self.processes.iter_mut().rev() {
            assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "{role} exited with {status}; log:\n{}",
                tail(&self.logs.path().join(format!("{role}.log")))
            );
        }
        self.processes.clear();
    }

    /// Every event this stack published on `topic`, read from the broker by a new group.
    async fn events(&self, topic: &str, until: impl Fn(&[EventEnvelope]) -> bool) -> Vec<EventEnvelope> {
        let options =
            KafkaOptions { prefix: self.prefix.clone(), ..kafka_options_from(&self.brokers, &self.kafka_env) };
        let bus = KafkaBus::new(options).unwrap();
        let mut subscription =
            bus.subscribe(&format!("reader-{}", uuid::Uuid::new_v4().simple()), topic).await.unwrap();
        let mut seen = Vec::new();
        while !until(&seen) {
            let delivery = tokio::time::timeout(Duration::from_secs(30), subscription.next())
                .await
                .unwrap_or_else(|_| panic!("no more events on {topic} after {} read", seen.len()))
                .unwrap();
            let mut envelope = EventEnvelope::decode(delivery.payload.as_slice()).unwrap();
            // The transport header is the one checked: it is what tools reading the topic see.
            envelope.headers = delivery.headers.into_iter().collect();
            seen.push(envelope);
        }
        seen
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Places an order (201) under the client's trace `trace`, with the baggage `tenant=acme`.
async fn traced_order(rest: &RestClient, token: &str, key: &str, trace: TraceParent, items: Value) -> Value {
    let request = rest
        .request(http::Method::POST, "/v1/orders", Some(token))
        .header("idempotency-key", key)
        .header(TRACEPARENT, trace.to_string())
        .header(BAGGAGE, "tenant=acme")
        .json(&json!({ "items": items }));
    rest.send(request).await.expect(201)
}

/// The payments of `order_id`, as its customer sees them.
async fn payments(rest: &RestClient, token: &str, order_id: &str) -> Vec<Value> {
    let listed = rest.get(&format!("/v1/payments?order_id={order_id}"), Some(token)).await.expect(200);
    listed["payments"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn the_saga_runs_across_processes_on_postgres_and_kafka_and_keeps_one_trace() {
    let Some(brokers) = kafka_brokers() else { return };
    let Some(stack) = Stack::start(&brokers).await else { return };
    let rest = &stack.rest;
    let mug = rest.product("Ceramic mug", 12_00, 10).await;
    let grinder = rest.product("Burr grinder", 149_00, 3).await;
    let (_, token) = rest.signup("ada@example.com").await;

    // Paid, under a trace the client started.
    let trace = TraceParent::root();
    let placed = traced_order(rest, &token, "first", trace, json!([{"productId": mug, "quantity": 2}])).await;
    let paid_id = placed["id"].as_str().unwrap().to_owned();
    rest.settled(&token, &paid_id, "ORDER_STATUS_PAID").await;
    assert_eq!(rest.get("/v1/wallet", Some(&token)).await.expect(200)["balance"], usd(76_00));
    let paid = payments(rest, &token, &paid_id).await;
    assert_eq!(paid.len(), 1, "{paid:?}");
    assert_eq!(paid[0]["status"], "PAYMENT_STATUS_SUCCEEDED");
    assert_eq!(rest.stock(&mug).await, 8);

    // Declined: the order is cancelled and product-service gets the stock back by event.
    let dear = rest.order(&token, "second", json!([{"productId": grinder, "quantity": 1}])).await.expect(201);
    let dear_id = dear["id"].as_str().unwrap();
    let cancelled = rest.settled(&token, dear_id, "ORDER_STATUS_CANCELLED").await;
    assert_eq!(cancelled["cancelReason"], "payment declined: insufficient funds");
    rest.stock_becomes(&grinder, 3).await;
    let declined = payments(rest, &token, dear_id).await;
    assert_eq!((declined.len(), &declined[0]["status"]), (1, &json!("PAYMENT_STATUS_DECLINED")));

    // The paid order's events crossed Kafka in the client's trace: placed (order-service,
    // under the gateway's call), paid for (payment-service, under the OrderPlaced it
    // consumed) and marked paid (order-service, under the PaymentSucceeded it consumed).
    let is_paid_order = |e: &EventEnvelope| e.aggregate_id == paid_id;
    let orders = stack
        .events(topics::ORDERS, |seen| seen.iter().any(|e| is_paid_order(e) && e.event_type == OrderPaid::TYPE))
        .await;
    let payments_topic = stack.events(topics::PAYMENTS, |seen| seen.iter().any(is_paid_order)).await;
    let traced: BTreeMap<&str, _> = orders
        .iter()
        .chain(&payments_topic)
        .filter(|e| is_paid_order(e))
        .map(|e| (e.event_type.as_str(), &e.headers))
        .collect();
    for event_type in [OrderPlaced::TYPE, PaymentSucceeded::TYPE, OrderPaid::TYPE] {
        let headers = traced.get(event_type).unwrap_or_else(|| panic!("no {event_type} in {traced:?}"));
        assert_eq!(headers.get(BAGGAGE).map(String::as_str), Some("tenant=acme"), "{event_type} keeps the baggage");
        let header = headers.get(TRACEPARENT).map_or("", String::as_str);
        let context = TraceParent::parse(header).unwrap_or_else(|| panic!("{event_type} carries no traceparent"));
        assert_eq!(context.trace_id, trace.trace_id, "{event_type} is in the client's trace");
        assert_ne!(context.span_id, trace.span_id, "{event_type} comes from a later hop");
    }
    stack.stop();
}

#[tokio::test]
async fn orders_placed_while_the_broker_is_down_settle_once_it_is_back() {
    // This test's broker is its own, but it runs only where the suite has Kafka.
    let Some(_) = kafka_brokers() else { return };
    let broker = PrivateInstance::kafka("outage");
    let topology = Topology { kafka_env: Vec::new(), ..Topology::default() };
    let Some(stack) = Stack::start_with(&broker.addr(), topology).await else { return };
    let rest = &stack.rest;
    let mug = rest.product("Mug", 10_00, 1_000).await;
    let mut customers = Vec::new();
    for name in ["ada", "bob", "cy"] {
        customers.push(rest.signup(&format!("{name}@example.com")).await.1);
    }
    // Warm: topics exist and every consumer has joined its group.
    let first = rest.order(&customers[0], "warm", json!([{"productId": mug, "quantity": 1}])).await.expect(201);
    rest.settled(&customers[0], first["id"].as_str().unwrap(), "ORDER_STATUS_PAID").await;

    // ~10 s without a broker. Orders are still accepted: placing one touches only
    // order-service's database (the outbox) and product-service's reservation.
    broker.script("stop");
    let mut placed = vec![(0, first["id"].as_str().unwrap().to_owned())];
    for round in 0..10 {
        for (who, token) in customers.iter().enumerate() {
            // 1 to 4 mugs of 10.00: every customer's 100.00 runs out, so some are declined.
            let items = json!([{"productId": mug, "quantity": 1 + (round + who) % 4}]);
            let order = rest.order(token, &format!("r{round}"), items).await.expect(201);
            placed.push((who, order["id"].as_str().unwrap().to_owned()));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    broker.script("start");

    // Every accepted order settles, with exactly one payment that agrees with it.
    let mut spent: HashMap<usize, i64> = HashMap::new();
    let mut sold = 1;
    let (mut paid, mut declined) = (0, 0);
    for (who, id) in &placed {
        let token = &customers[*who];
        let order = eventually(120, &format!("order {id} to settle"), || async {
            let order = rest.get(&format!("/v1/orders/{id}"), Some(token)).await.expect(200);
            (order["status"] != "ORDER_STATUS_PENDING_PAYMENT").then_some(order)
        })
        .await;
        let recorded = payments(rest, token, id).await;
        assert_eq!(recorded.len(), 1, "order {id}: {recorded:?}");
        let total: i64 = order["total"]["amountMinor"].as_str().unwrap().parse().unwrap();
        match order["status"].as_str().unwrap() {
            "ORDER_STATUS_PAID" => {
                assert_eq!(recorded[0]["status"], "PAYMENT_STATUS_SUCCEEDED");
                *spent.entry(*who).or_default() += total;
                paid += 1;
                if id != &placed[0].1 {
                    sold += total / 10_00;
                }
            }
            "ORDER_STATUS_CANCELLED" => {
                assert_eq!(recorded[0]["status"], "PAYMENT_STATUS_DECLINED");
                assert_eq!(order["cancelReason"], "payment declined: insufficient funds");
                declined += 1;
            }
            other => panic!("order {id} ended {other}"),
        }
    }
    assert!(paid > 3 && declined > 0, "{paid} paid and {declined} declined: both outcomes were exercised");
    for (who, token) in customers.iter().enumerate() {
        let balance = 100_00 - spent.get(&who).copied().unwrap_or_default();
        assert_eq!(rest.get("/v1/wallet", Some(token)).await.expect(200)["balance"], usd(balance));
    }
    rest.stock_becomes(&mug, 1_000 - sold).await;
    stack.stop();
}

/// Every product name in the catalog, page by page.
async fn product_names(rest: &RestClient) -> Vec<String> {
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = rest.get(&format!("/v1/products?page_size=100&page_token={token}"), None).await.expect(200);
        let products = page["products"].as_array().cloned().unwrap_or_default();
        names.extend(products.iter().map(|p| p["name"].as_str().unwrap().to_owned()));
        token = page["nextPageToken"].as_str().unwrap_or_default().to_owned();
        if token.is_empty() {
            return names;
        }
    }
}

#[tokio::test]
async fn product_instances_share_the_load_and_a_killed_one_fails_no_get() {
    let Some(brokers) = kafka_brokers() else { return };
    let Some(_) = consul_addr() else { return };
    // Instances register under their role's name: a private agent keeps this stack's apart.
    let agent = PrivateInstance::consul("failover");
    let topology = Topology { consul: Some(agent.addr()), product_replicas: 2, ..Topology::default() };
    let Some(mut stack) = Stack::start_with(&brokers, topology).await else { return };
    let consul = Consul::new(&agent.addr(), None).unwrap();
    let passing = || async { consul.passing("product-service", 0, Duration::ZERO).await.unwrap().0 };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while passing().await.len() < 2 {
        if std::time::Instant::now() > deadline {
            let checks = consul.check_status("product-service").await.unwrap();
            let logs = ["product-service-1", "product-service-2"].map(|n| tail(&stack.log_path(n)));
            panic!("not two passing product-service instances after 30 s: {checks:?}\n{}", logs.join("\n---\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rest = stack.rest.clone();
    let admin = rest.admin().await;
    let mug = rest.product("Mug", 10_00, 5).await;

    // Steady load: three clients reading the product, one admin creating products.
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (rest, stop, path) = (rest.clone(), stop.clone(), format!("/v1/products/{mug}"));
        readers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let reply = rest.get(&path, None).await;
                if reply.status == 200 { ok += 1 } else { failed.push(format!("{}: {}", reply.status, reply.body)) }
            }
            (ok, failed)
        }));
    }
    let writer = tokio::spawn({
        let (rest, stop, admin) = (rest.clone(), stop.clone(), admin.clone());
        async move {
            let mut replies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let name = format!("load-{}", replies.len());
                let body = json!({"name": name, "description": "created under load", "price": usd(1_00), "stock": 1});
                let reply = rest.post("/v1/products", Some(&admin), body).await;
                replies.push((name, reply.status.as_u16(), reply.body));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            replies
        }
    });

    // Both instances serve reads.
    let before = eventually(10, "the two instances to share the load (over 10 reads each)", || async {
        let served =
            ["product-service-1", "product-service-2"].map(|name| stack.served(name, "ProductService/GetProduct"));
        served.iter().all(|n| *n > 10).then_some(served)
    })
    .await;
    eprintln!("GetProduct calls served before the kill: {before:?}");

    // One dies mid-load, the readers still reading; Consul marks it critical within a check
    // interval.
    stack.kill("product-service-1");
    eventually(30, "Consul to mark the killed instance critical", || async {
        (passing().await.len() == 1).then_some(())
    })
    .await;

    // A new instance gets calls within 5 s of passing.
    let port = free_port();
    stack.spawn_product("product-service-3", port);
    let id = format!("product-service-127.0.0.1-{port}");
    eventually(30, "the new instance to pass", || async { passing().await.iter().any(|i| i.id == id).then_some(()) })
        .await;
    let passed = std::time::Instant::now();
    eventually(5, "a call to reach the new instance", || async {
        (stack.served("product-service-3", "ProductService/GetProduct") > 0).then_some(())
    })
    .await;
    eprintln!("the new instance served its first call {} ms after passing", passed.elapsed().as_millis());
    eventually(10, "the new instance to take a share of the load (over 10 reads)", || async {
        (stack.served("product-service-3", "ProductService/GetProduct") > 10).then_some(())
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    let mut reads = 0;
    for reader in readers {
        let (ok, failed) = reader.await.unwrap();
        assert!(failed.is_empty(), "GETs failed: {failed:?}");
        reads += ok;
    }
    let writes = writer.await.unwrap();
    let failed: Vec<&(String, u16, Value)> = writes.iter().filter(|(_, status, _)| *status != 201).collect();
    // A create in flight on the killed instance fails, and says so; it is not sent again
    // (that could create the product twice), so no name appears twice.
    for (name, status, body) in &failed {
        assert_eq!(*status, 503, "{name}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {body}");
    }
    let names = product_names(&rest).await;
    let mut seen = std::collections::HashSet::new();
    let twice: Vec<&String> = names.iter().filter(|n| !seen.insert(n.as_str())).collect();
    assert!(twice.is_empty(), "created twice: {twice:?}");
    let created = writes.len() - failed.len();
    assert!(names.iter().filter(|n| n.starts_with("load-")).count() >= created);
    eprintln!("{reads} GETs, none failed; {} POSTs, {} failed with 503", writes.len(), failed.len());
    stack.stop();
}

/// One span of a trace as Jaeger's API v3 (OTLP JSON) returns it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    /// OTLP's span kind: 2 server, 3 client, 4 producer, 5 consumer.
    kind: i64,
    id: String,
    parent: String,
    links: Vec<String>,
    /// OTLP's status code: 0 unset, 1 ok, 2 error.
    status: i64,
    status_message: String,
    /// The string-valued attributes.
    attributes: BTreeMap<String, String>,
}

/// Every span of `trace_id` that Jaeger has, once it has a span of each (service, name) in
/// `expected` and the parent of every span but the root (spans reach Jaeger in batches,
/// process by process).
async fn trace_spans(jaeger: &str, trace_id: &str, expected: &[(&str, &str)]) -> Vec<Span> {
    let http = reqwest::Client::new();
    eventually(30, &format!("the spans {expected:?} of trace {trace_id} in Jaeger"), || async {
        let reply = http.get(format!("{jaeger}/api/v3/traces/{trace_id}")).send().await.ok()?;
        let body: Value = reply.json().await.ok()?;
        let mut spans = Vec::new();
        for resource in body["result"]["resourceSpans"].as_array()? {
            let service = resource["resource"]["attributes"]
                .as_array()?
                .iter()
                .find(|a| a["key"] == "service.name")?["value"]["stringValue"]
                .as_str()?
                .to_owned();
            for scope in resource["scopeSpans"].as_array()? {
                for span in scope["spans"].as_array()? {
                    spans.push(Span {
                        service: service.clone(),
                        name: span["name"].as_str()?.to_owned(),
                        kind: span["kind"].as_i64().unwrap_or(0),
                        id: span["spanId"].as_str()?.to_owned(),
                        parent: span["parentSpanId"].as_str().unwrap_or_default().to_owned(),
                        links: span["links"]
                            .as_array()
                            .map(|l| l.iter().filter_map(|l| l["spanId"].as_str().map(String::from)).collect())
                            .unwrap_or_default(),
                        status: span["status"]["code"].as_i64().unwrap_or(0),
                        status_message: span["status"]["message"].as_str().unwrap_or_default().to_owned(),
                        attributes: span["attributes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|a| {
                                Some((a["key"].as_str()?.to_owned(), a["value"]["stringValue"].as_str()?.to_owned()))
                            })
                            .collect(),
                    });
                }
            }
        }
        let expected_arrived =
            expected.iter().all(|(service, name)| spans.iter().any(|s| s.service == *service && s.name == *name));
        // A parent ends, and so is exported, after its children: until it arrives its children
        // dangle. Only the root may name a parent Jaeger lacks (the client's span).
        let dangling = spans.iter().filter(|s| !spans.iter().any(|p| p.id == s.parent)).count();
        (expected_arrived && dangling <= 1).then_some(spans)
    })
    .await
}

/// The one span of `service` named `name` of kind `kind` under `parent` (any parent if `None`).
#[track_caller]
fn span<'a>(spans: &'a [Span], service: &str, name: &str, kind: i64, parent: Option<&Span>) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| s.service == service && s.name == name && s.kind == kind)
        .filter(|s| parent.is_none_or(|p| s.parent == p.id))
        .collect();
    let tree: Vec<String> =
        spans.iter().map(|s| format!("{} {} {} {} <- {}", s.service, s.name, s.kind, s.id, s.parent)).collect();
    assert_eq!(found.len(), 1, "{service} {name} (kind {kind}) under {parent:?}; spans:\n{}", tree.join("\n"));
    found[0]
}

const SERVER: i64 = 2;
const CLIENT: i64 = 3;
const PRODUCER: i64 = 4;
const CONSUMER: i64 = 5;

#[tokio::test]
async fn one_order_is_one_trace_in_jaeger_across_every_service_and_the_kafka_hops() {
    let Some(brokers) = kafka_brokers() else { return };
    let Some((jaeger, otlp)) = jaeger() else { return };
    let topology = Topology { otlp: Some(otlp), ..Topology::default() };
    let Some(stack) = Stack::start_with(&brokers, topology).await else { return };
    let rest = &stack.rest;
    let mug = rest.product("Mug", 12_00, 10).await;
    let (_, token) = rest.signup("trace@example.com").await;

    // The client starts the trace, with baggage; everything the order causes belongs to it.
    let client = TraceParent::root();
    let order = traced_order(rest, &token, "traced", client, json!([{"productId": mug, "quantity": 1}])).await;
    rest.settled(&token, order["id"].as_str().unwrap(), "ORDER_STATUS_PAID").await;
    rest.stock_becomes(&mug, 9).await;

    let expected = [
        ("gateway", "POST /v1/orders"),
        ("user-service", "agora.user.v1.UserService/GetUser"),
        ("product-service", "agora.product.v1.ProductService/ReserveStock"),
        ("payment-service", "send agora.payments.v1"),
        ("order-service", "process agora.payments.v1"),
        ("product-service", "process agora.orders.v1"),
        ("product-service", "UPDATE reservations"),
    ];
    let spans = trace_spans(&jaeger, &client.trace_id_hex(), &expected).await;
    let http = span(&spans, "gateway", "POST /v1/orders", SERVER, None);
    assert_eq!(http.parent, format!("{:016x}", client.span_id), "the gateway continues the client's span");
    let call = span(&spans, "gateway", "agora.order.v1.OrderService/CreateOrder", CLIENT, Some(http));
    let create = span(&spans, "order-service", "agora.order.v1.OrderService/CreateOrder", SERVER, Some(call));
    let get_user = span(&spans, "order-service", "agora.user.v1.UserService/GetUser", CLIENT, Some(create));
    span(&spans, "user-service", "agora.user.v1.UserService/GetUser", SERVER, Some(get_user));
    let reserve = span(&spans, "order-service", "agora.product.v1.ProductService/ReserveStock", CLIENT, Some(create));
    span(&spans, "product-service", "agora.product.v1.ProductService/ReserveStock", SERVER, Some(reserve));
    // OrderPlaced: published under the request, consumed by payment- and product-service.
    let placed = span(&spans, "order-service", "send agora.orders.v1", PRODUCER, Some(create));
    let charge = span(&spans, "payment-service", "process agora.orders.v1", CONSUMER, Some(placed));
    assert_eq!(charge.links, std::slice::from_ref(&placed.id), "the consumer links to the publish");
    span(&spans, "product-service", "process agora.orders.v1", CONSUMER, Some(placed));
    // PaymentSucceeded, then OrderPaid, then product-service commits the reservation.
    let succeeded = span(&spans, "payment-service", "send agora.payments.v1", PRODUCER, Some(charge));
    let settle = span(&spans, "order-service", "process agora.payments.v1", CONSUMER, Some(succeeded));
    let paid = span(&spans, "order-service", "send agora.orders.v1", PRODUCER, Some(settle));
    span(&spans, "product-service", "process agora.orders.v1", CONSUMER, Some(paid));
    let failed: Vec<&Span> = spans.iter().filter(|s| s.status == 2).collect();
    assert!(failed.is_empty(), "a paid order has no failed span: {failed:?}");
    // Each service's database work is a client span under the hop that did it.
    let insert = span(&spans, "order-service", "INSERT orders", CLIENT, Some(create));
    assert_eq!(insert.attributes["db.system"], "postgresql");
    assert_eq!(insert.attributes["db.collection.name"], "orders");
    span(&spans, "payment-service", "UPDATE wallets", CLIENT, Some(charge));
    // The client's baggage reached every hop, across both Kafka hops.
    for hop in [http, create, charge, settle] {
        assert_eq!(hop.attributes.get("baggage.tenant").map(String::as_str), Some("acme"), "{hop:?}");
    }
    // A request the gateway refuses itself is still a span of the client's trace.
    let refused = TraceParent::root();
    let request = rest.request(http::Method::GET, "/v1/orders", None).header(TRACEPARENT, refused.to_string());
    rest.send(request).await.expect(401);
    let spans = trace_spans(&jaeger, &refused.trace_id_hex(), &[("gateway", "GET /v1/orders")]).await;
    let http = span(&spans, "gateway", "GET /v1/orders", SERVER, None);
    assert_eq!(http.parent, format!("{:016x}", refused.span_id));

    // Logs written inside a span carry its ids (lines reach the file at most 100 ms apart).
    let line = eventually(5, "order-service to log the order", || async {
        let placed_log = std::fs::read_to_string(stack.log_path("order-service")).unwrap_or_default();
        placed_log.lines().find(|l| l.contains("\"order placed\"")).map(str::to_owned)
    })
    .await;
    let logged: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(logged["span"]["trace_id"], client.trace_id_hex(), "{line}");
    assert_eq!(logged["span"]["span_id"], create.id, "{line}");

    // Declined: the payment span that declined says so.
    let dear = rest.product("Grinder", 500_00, 1).await;
    let declined = TraceParent::root();
    let order = traced_order(rest, &token, "declined", declined, json!([{"productId": dear, "quantity": 1}])).await;
    rest.settled(&token, order["id"].as_str().unwrap(), "ORDER_STATUS_CANCELLED").await;
    // The gateway's span too: each process exports in its own batches, and `agora trace`
    // below must find it.
    let expected = [
        ("gateway", "POST /v1/orders"),
        ("payment-service", "process agora.orders.v1"),
        ("order-service", "process agora.payments.v1"),
    ];
    let spans = trace_spans(&jaeger, &declined.trace_id_hex(), &expected).await;
    let create = span(&spans, "order-service", "agora.order.v1.OrderService/CreateOrder", SERVER, None);
    let placed = span(&spans, "order-service", "send agora.orders.v1", PRODUCER, Some(create));
    let charge = span(&spans, "payment-service", "process agora.orders.v1", CONSUMER, Some(placed));
    assert_eq!((charge.status, charge.status_message.as_str()), (2, "payment declined: insufficient funds"));
    let failed: Vec<&str> = spans.iter().filter(|s| s.status == 2).map(|s| s.name.as_str()).collect();
    assert_eq!(failed, ["process agora.orders.v1"], "only the declining span failed");

    // `agora trace` prints the same trace as a tree, the failure on the declining span.
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["trace", &declined.trace_id_hex(), "--jaeger", &jaeger])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.status.success(), "{text}{}", String::from_utf8_lossy(&printed.stderr));
    let line = |name: &str| text.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("no {name}:\n{text}"));
    // Columns: start (10), took (10), service (16), then the name indented by depth.
    let indent = |l: &str| l[40..].len() - l[40..].trim_start().len();
    assert!(line("POST /v1/orders (server)").contains("gateway"), "{text}");
    let declining = line("! payment declined: insufficient funds");
    assert!(declining.contains("payment-service") && declining.contains("process agora.orders.v1"), "{text}");
    assert!(indent(declining) > indent(line("send agora.orders.v1")), "the consumer sits under the publish:\n{text}");
    stack.stop();
}

/// The value of the sample `series` (name and labels, exactly as exposed) in `text`; 0 when
/// absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(url: &str) -> String {
    let reply = reqwest::get(url).await.unwrap();
    assert_eq!(reply.status(), 200, "{url}");
    reply.text().await.unwrap()
}

#[tokio::test]
async fn every_role_exposes_metrics_that_move_with_traffic() {
    let Some(brokers) = kafka_brokers() else { return };
    let topology = Topology { metrics: true, ..Topology::default() };
    let Some(stack) = Stack::start_with(&brokers, topology).await else { return };
    let rest = &stack.rest;
    let mug = rest.product("Mug", 12_00, 10).await;
    let (_, token) = rest.signup("metrics@example.com").await;
    let urls: BTreeMap<String, String> = stack
        .metrics
        .iter()
        .map(|(role, addr)| (role.clone(), format!("http://{addr}/metrics")))
        .chain([("gateway".to_owned(), format!("{}/metrics", rest.url))])
        .collect();
    let mut before = BTreeMap::new();
    for (role, url) in &urls {
        before.insert(role.clone(), scrape(url).await);
    }

    let order = rest.order(&token, "metrics", json!([{"productId": mug, "quantity": 1}])).await.expect(201);
    rest.settled(&token, order["id"].as_str().unwrap(), "ORDER_STATUS_PAID").await;
    rest.stock_becomes(&mug, 9).await;

    let rpc = |side: &str, service: &str, method: &str| {
        format!(r#"agora_rpc_{side}_calls_total{{service="agora.{service}",method="{method}",code="OK"}}"#)
    };
    let lag =
        |topic: &str, group: &str| format!(r#"agora_consumer_lag_seconds_count{{topic="{topic}",group="{group}"}}"#);
    // Series that must grow with one order, per role.
    let moving = [
        ("gateway", r#"agora_http_server_requests_total{method="POST",route="/v1/orders",status="201"}"#.to_owned()),
        ("gateway", r#"agora_http_server_request_duration_seconds_count{method="POST",route="/v1/orders"}"#.to_owned()),
        ("gateway", rpc("client", "order.v1.OrderService", "CreateOrder")),
        ("order-service", rpc("server", "order.v1.OrderService", "CreateOrder")),
        ("order-service", rpc("client", "product.v1.ProductService", "ReserveStock")),
        ("order-service", lag("agora.payments.v1", "order-service")),
        ("user-service", rpc("server", "user.v1.UserService", "GetUser")),
        ("product-service-1", rpc("server", "product.v1.ProductService", "ReserveStock")),
        ("product-service-1", lag("agora.orders.v1", "product-service")),
        ("payment-service", lag("agora.orders.v1", "payment-service")),
    ];
    // Series that must be there, whatever their value.
    let present = [
        ("order-service", r#"agora_outbox_backlog{service="order-service"}"#),
        ("payment-service", r#"agora_outbox_backlog{service="payment-service"}"#),
        ("order-service", r#"agora_dlq_messages_total{topic="agora.payments.v1.dlq"}"#),
        ("payment-service", r#"agora_dlq_messages_total{topic="agora.orders.v1.dlq"}"#),
        ("order-service", "agora_db_pool_connections{database="),
        ("gateway", "agora_rpc_client_call_duration_seconds_bucket{"),
        (
            "payment-service",
            r#"agora_consumer_lag_messages{topic="agora.orders.v1",group="payment-service",partition="#,
        ),
        ("order-service", r#"agora_consumer_lag_messages{topic="agora.payments.v1",group="order-service",partition="#),
    ];
    // The relay and the consumers report on their next round.
    eventually(10, "every series to move", || async {
        let mut after = BTreeMap::new();
        for (role, url) in &urls {
            after.insert(role.clone(), scrape(url).await);
        }
        let stuck: Vec<&String> = moving
            .iter()
            .filter(|(role, series)| sample(&after[*role], series) <= sample(&before[*role], series))
            .map(|(_, series)| series)
            .collect();
        stuck.is_empty().then_some(after)
    })
    .await;
    // Kafka consumers report their lag in messages every 5 s.
    let after = eventually(15, &format!("every series of {present:?}"), || async {
        let mut after = BTreeMap::new();
        for (role, url) in &urls {
            after.insert(role.clone(), scrape(url).await);
        }
        let all = present.iter().all(|(role, series)| after[*role].lines().any(|l| l.starts_with(series)));
        all.then_some(after)
    })
    .await;
    let backlog = sample(&after["order-service"], r#"agora_outbox_backlog{service="order-service"}"#);
    assert_eq!(backlog, 0.0, "everything published");
    stack.stop();
}
