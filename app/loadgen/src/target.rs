//! Whom the generator talks to: the gateway over REST, as customers made up front, or
//! product-service directly over gRPC (for comparing the two).

use std::{
    fs::File,
    io::Write as _,
    sync::{Mutex, RwLock},
    time::{Duration, Instant},
};

use agora_kit::tls::{Connector, Credentials, TlsFiles};
use agora_proto::product::{GetProductRequest, ListProductsRequest, product_service_client::ProductServiceClient};
use anyhow::{Context as _, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{
    Args,
    history::{self, Call, History},
    mix::Op,
    retry::{self, Retries},
    stats::{Measure, Outcome, Recorder},
};

/// The stock of the generator's products: the most product-service accepts, so a run
/// never sells out.
const STOCK: i64 = 1_000_000_000;
/// Order ids kept for `read`.
const KEEP_ORDERS: usize = 10_000;

/// A placed order to follow until it settles.
#[derive(Debug)]
pub struct Placed {
    pub customer: usize,
    pub id: String,
}

#[derive(Debug)]
pub enum Target {
    Rest(Rest),
    Grpc(Grpc),
}

impl Target {
    /// The products a run uses, and the customers it needs; fails with what to do when the
    /// target is not there.
    pub async fn prepare(args: &Args) -> anyhow::Result<Self> {
        match &args.grpc {
            Some(addr) => Ok(Target::Grpc(Grpc::prepare(addr, args).await?)),
            None => Ok(Target::Rest(Rest::prepare(args).await?)),
        }
    }

    /// Sends one `op`; returns the order to follow when it placed one.
    pub async fn send(&self, op: Op, rng: &mut fastrand::Rng, measure: Measure<'_>) -> Option<Placed> {
        match self {
            Target::Rest(rest) => rest.send(op, rng, measure).await,
            Target::Grpc(grpc) => {
                grpc.send(op, rng, measure).await;
                None
            }
        }
    }

    /// Signs the customers in again, before their access tokens expire (REST only).
    pub async fn refresh_tokens(&self) {
        if let Target::Rest(rest) = self {
            rest.refresh_tokens().await;
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Target::Rest(rest) => {
                format!("{} (REST: {} products, {} customers)", rest.base, rest.products.len(), rest.customers.len())
            }
            Target::Grpc(grpc) => format!("{} (gRPC product-service: {} products)", grpc.addr, grpc.products.len()),
        }
    }
}

#[derive(Debug)]
struct Customer {
    email: String,
    password: String,
    token: RwLock<String>,
}

#[derive(Debug)]
pub struct Rest {
    http: reqwest::Client,
    base: String,
    products: Vec<String>,
    customers: Vec<Customer>,
    /// Recently placed orders, as (customer, id), for `read`.
    orders: Mutex<Vec<(usize, String)>>,
    /// Where accepted orders' ids are appended (`--accepted-orders`).
    accepted: Option<Mutex<File>>,
    /// Further tries of a request that got no definite answer (`--retries`), and their budget.
    retries: Retries,
    /// Where every operation is written (`--history`).
    history: Option<History>,
}

impl Rest {
    async fn prepare(args: &Args) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(args.timeout)
            .pool_max_idle_per_host(usize::MAX)
            .tcp_nodelay(true)
            .build()
            .context("cannot build the HTTP client")?;
        let base = args.gateway.trim_end_matches('/').to_owned();
        let accepted = match &args.accepted_orders {
            Some(path) => Some(Mutex::new(
                File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open {} for the accepted orders", path.display()))?,
            )),
            None => None,
        };
        let mut rest = Self {
            http,
            base,
            products: Vec::new(),
            customers: Vec::new(),
            orders: Mutex::default(),
            accepted,
            retries: Retries::new(args.retries, args.retry_budget),
            history: args.history.as_deref().map(History::create).transpose()?,
        };

        let (status, body, _) = rest.call(Method::GET, "/readyz", None, None).await.with_context(|| {
            format!("cannot reach the gateway at {}: is the platform running (make run / make up)?", rest.base)
        })?;
        if status != StatusCode::OK {
            bail!("the gateway at {} is not ready ({status}): {body}", rest.base);
        }

        rest.products = match &args.admin_password {
            Some(password) => rest.create_products(args, &args.admin_email, password).await?,
            None => rest.catalog().await?,
        };
        if rest.products.is_empty() {
            bail!(
                "the catalog has no product in stock to use: pass --admin-password (AGORA_ADMIN_PASSWORD) so the \
                 generator creates its own"
            );
        }
        if args.mix.ops().any(Op::needs_customer) {
            let run = uuid::Uuid::new_v4().simple().to_string();
            let signups = (0..args.users as usize)
                .map(|i| rest.sign_up(i, format!("loadgen-{}-{i}@example.com", &run[..12]), args.top_up_minor));
            rest.customers = futures::future::try_join_all(signups).await?;
        }
        Ok(rest)
    }

    /// Sends a request; returns the status, the JSON body (`Null` when not JSON) and how long
    /// the server asked the client to wait (`Retry-After`, in seconds).
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value, Option<Duration>), reqwest::Error> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let reply = request.send().await?;
        let status = reply.status();
        let retry_after = reply
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .map(Duration::from_secs);
        let bytes = reply.bytes().await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), retry_after))
    }

    /// A measured call: its outcome as the recorder counts it, the reply's JSON, and the
    /// answer's `Retry-After`.
    async fn attempt(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> ((Outcome, Value), Option<Duration>) {
        match self.call(method, path, token, body).await {
            Ok((status, reply, after)) => {
                ((Outcome::http(status, (!status.is_success()).then(|| message(&reply))), reply), after)
            }
            Err(e) => ((Outcome::failed(&e), Value::Null), None),
        }
    }

    /// `attempt`, and again while the answer is not definite and `--retries` and the budget
    /// allow (every request here is safe to send again). The operation is recorded once, with
    /// its last outcome and its whole time; each retry is counted apart.
    async fn operation(
        &self,
        route: &'static str,
        (method, path): (Method, &str),
        token: Option<&str>,
        body: Option<&Value>,
        rng: &mut fastrand::Rng,
        measure: Measure<'_>,
    ) -> (Outcome, Value) {
        self.retries.budget.deposit();
        let mut retried = 0;
        loop {
            let ((outcome, reply), asked) = self.attempt(method.clone(), path, token, body).await;
            let again = !outcome.ok && outcome.indefinite() && retried < self.retries.max;
            if !again || !self.retries.budget.withdraw() {
                if again {
                    measure.retry_refused();
                }
                measure.done(route, &outcome);
                return (outcome, reply);
            }
            measure.retried(&outcome);
            retried += 1;
            tokio::time::sleep(retry::backoff(retried, rng, asked)).await;
        }
    }

    /// A call of the set-up, which must succeed.
    async fn must(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let what = format!("{method} {path}");
        let (status, reply, _) = self.call(method, path, token, body).await.with_context(|| what.clone())?;
        if status == StatusCode::TOO_MANY_REQUESTS {
            bail!(
                "{what} answered {status}: {}. The gateway limits requests and sign-ins per client address; \
                 for a load test start it with AGORA_RATE_LIMIT_PER_SECOND=0 AGORA_SIGN_IN_LIMIT_PER_MINUTE=0, \
                 or sign up fewer --users",
                message(&reply)
            );
        }
        if !status.is_success() {
            bail!("{what} answered {status}: {}", message(&reply));
        }
        Ok(reply)
    }

    async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let reply = self
            .must(Method::POST, "/v1/auth/login", None, Some(&json!({"email": email, "password": password})))
            .await?;
        reply["accessToken"].as_str().map(str::to_owned).context("the login reply has no accessToken")
    }

    /// Products of the generator's own, priced 1.00–5.50 and stocked for any run.
    async fn create_products(&self, args: &Args, email: &str, password: &str) -> anyhow::Result<Vec<String>> {
        let token = self.login(email, password).await.context("cannot sign in as the admin account")?;
        let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let mut ids = Vec::new();
        for i in 0..args.products {
            let product = json!({
                "name": format!("loadgen {run} #{i}"),
                "description": "Made by agora loadgen.",
                "price": {"currencyCode": "USD", "amountMinor": (100 + 50 * i64::from(i % 10)).to_string()},
                "stock": STOCK.to_string(),
            });
            let invoked = Instant::now();
            let reply = self.must(Method::POST, "/v1/products", Some(&token), Some(&product)).await?;
            let id = reply["id"].as_str().context("a created product has an id")?.to_owned();
            self.record(invoked, None, "201", || Call::Product { product: id.clone(), stock: STOCK });
            ids.push(id);
        }
        Ok(ids)
    }

    /// The catalog's first page of products in stock (their stock as read goes to the
    /// history: the checker assumes the generator is the only one ordering them).
    async fn catalog(&self) -> anyhow::Result<Vec<String>> {
        let invoked = Instant::now();
        let reply = self.must(Method::GET, "/v1/products?page_size=100", None, None).await?;
        let products = reply["products"].as_array().cloned().unwrap_or_default();
        let mut ids = Vec::new();
        for product in &products {
            if let (Some(id), Some(stock @ 1..)) = (product["id"].as_str(), history::integer(&product["stock"])) {
                self.record(invoked, None, "200", || Call::Product { product: id.to_owned(), stock });
                ids.push(id.to_owned());
            }
        }
        Ok(ids)
    }

    async fn sign_up(&self, customer: usize, email: String, top_up_minor: i64) -> anyhow::Result<Customer> {
        let password = uuid::Uuid::new_v4().simple().to_string();
        let account = json!({"email": email, "password": password, "name": "Load Generator"});
        let invoked = Instant::now();
        let user = self.must(Method::POST, "/v1/users", None, Some(&account)).await?;
        let user = user["id"].as_str().unwrap_or_default().to_owned();
        self.record(invoked, Some(customer), "201", || Call::Customer { user });
        let token = self.login(&email, &password).await?;
        let top_up = json!({"amount": {"currencyCode": "USD", "amountMinor": top_up_minor.to_string()}});
        let invoked = Instant::now();
        let wallet = self.must(Method::POST, "/v1/wallet:topUp", Some(&token), Some(&top_up)).await?;
        let balance = history::minor(&wallet["balance"]).context("the top-up reply has no balance")?;
        self.record(invoked, Some(customer), "200", || Call::TopUp { amount: top_up_minor, balance });
        Ok(Customer { email, password, token: RwLock::new(token) })
    }

    /// Writes an operation to the history, when there is one (`call` is built only then).
    fn record(&self, invoked: Instant, customer: Option<usize>, status: &str, call: impl FnOnce() -> Call) {
        self.record_if(true, invoked, customer, status, call);
    }

    fn record_if(
        &self,
        wanted: bool,
        invoked: Instant,
        customer: Option<usize>,
        status: &str,
        call: impl FnOnce() -> Call,
    ) {
        if let (true, Some(history)) = (wanted, &self.history) {
            history.record(invoked, customer, status, call());
        }
    }

    /// Signs every customer in again.
    async fn refresh_tokens(&self) {
        for customer in &self.customers {
            match self.login(&customer.email, &customer.password).await {
                Ok(token) => *customer.token.write().expect("token lock") = token,
                Err(e) => eprintln!("agora loadgen: cannot renew {}'s token: {e:#}", customer.email),
            }
        }
    }

    fn token(&self, customer: usize) -> String {
        self.customers[customer].token.read().expect("token lock").clone()
    }

    async fn send(&self, op: Op, rng: &mut fastrand::Rng, measure: Measure<'_>) -> Option<Placed> {
        let mut customer = if self.customers.is_empty() { 0 } else { rng.usize(0..self.customers.len()) };
        // The order a `read` looks at, when one was placed already.
        let mut read = None;
        let (route, method, path, token, body) = match op {
            Op::Browse => ("GET /v1/products", Method::GET, "/v1/products?page_size=20".to_owned(), None, None),
            Op::Product => {
                let id = &self.products[rng.usize(0..self.products.len())];
                ("GET /v1/products/{id}", Method::GET, format!("/v1/products/{id}"), None, None)
            }
            Op::Order | Op::Cancel => {
                let first = rng.usize(0..self.products.len());
                let mut items = vec![json!({"productId": self.products[first], "quantity": rng.u32(1..=2)})];
                let second = rng.usize(0..self.products.len());
                if second != first && rng.bool() {
                    items.push(json!({"productId": self.products[second], "quantity": 1}));
                }
                let body = json!({"items": items, "idempotencyKey": uuid::Uuid::new_v4().to_string()});
                ("POST /v1/orders", Method::POST, "/v1/orders".to_owned(), Some(self.token(customer)), Some(body))
            }
            Op::Read => {
                let known = {
                    let orders = self.orders.lock().expect("orders lock");
                    (!orders.is_empty()).then(|| orders[rng.usize(0..orders.len())].clone())
                };
                match known {
                    Some((owner, id)) => {
                        customer = owner;
                        let path = format!("/v1/orders/{id}");
                        read = Some(id);
                        ("GET /v1/orders/{id}", Method::GET, path, Some(self.token(owner)), None)
                    }
                    None => (
                        "GET /v1/orders",
                        Method::GET,
                        "/v1/orders?page_size=10".to_owned(),
                        Some(self.token(customer)),
                        None,
                    ),
                }
            }
        };
        let invoked = Instant::now();
        let (outcome, reply) =
            self.operation(route, (method, &path), token.as_deref(), body.as_ref(), rng, measure).await;
        // The orders' operations; the catalog's reads are not part of the history.
        let ordering = matches!(op, Op::Order | Op::Cancel | Op::Read);
        self.record_if(ordering, invoked, Some(customer), &outcome.status, || match (op, body, read) {
            (Op::Order | Op::Cancel, Some(body), _) => Call::Order {
                key: body["idempotencyKey"].as_str().unwrap_or_default().to_owned(),
                items: body["items"].as_array().into_iter().flatten().filter_map(history::item).collect(),
                seen: history::seen(&reply),
            },
            (_, _, Some(order)) => Call::Read { order, seen: history::seen(&reply) },
            _ => Call::List {
                seen: reply["orders"].as_array().into_iter().flatten().filter_map(history::seen).collect(),
            },
        });
        if !matches!(op, Op::Order | Op::Cancel) || !outcome.ok {
            return None;
        }
        let id = reply["id"].as_str()?.to_owned();
        if let Some(file) = &self.accepted {
            let line = format!("{id}\n");
            if let Err(e) = file.lock().expect("accepted file lock").write_all(line.as_bytes()) {
                eprintln!("agora loadgen: cannot record accepted order {id}: {e}");
            }
        }
        {
            let mut orders = self.orders.lock().expect("orders lock");
            if orders.len() >= KEEP_ORDERS {
                let oldest = rng.usize(0..orders.len());
                orders.swap_remove(oldest);
            }
            orders.push((customer, id.clone()));
        }
        if op == Op::Cancel {
            let (path, token) = (format!("/v1/orders/{id}:cancel"), self.token(customer));
            let route = "POST /v1/orders/{id}:cancel";
            let body = json!({});
            let invoked = Instant::now();
            let (outcome, reply) = self
                .operation(
                    route,
                    (Method::POST, &path),
                    Some(&token),
                    Some(&body),
                    rng,
                    Measure { started: invoked, ..measure },
                )
                .await;
            let seen = history::seen(&reply);
            self.record(invoked, Some(customer), &outcome.status, || Call::Cancel { order: id.clone(), seen });
        }
        Some(Placed { customer, id })
    }

    /// Looks at `order` now and then every `interval` until it is PAID or CANCELLED, then
    /// records how long the saga took by the order's own timestamps.
    pub async fn follow(
        &self,
        order: Placed,
        interval: Duration,
        patience: Duration,
        counted: bool,
        recorder: &Recorder,
        stop: &CancellationToken,
    ) {
        let path = format!("/v1/orders/{}", order.id);
        let deadline = Instant::now() + patience;
        loop {
            let started = Instant::now();
            let token = self.token(order.customer);
            let ((outcome, reply), _) = self.attempt(Method::GET, &path, Some(&token), None).await;
            recorder.request("GET /v1/orders/{id} (settled?)", &outcome, started.elapsed(), counted);
            let seen = history::seen(&reply);
            self.record(started, Some(order.customer), &outcome.status, || Call::Read {
                order: order.id.clone(),
                seen,
            });
            let settled = match reply["status"].as_str() {
                Some("ORDER_STATUS_PAID") => Some("PAID"),
                Some("ORDER_STATUS_CANCELLED") => Some("CANCELLED"),
                _ => None,
            };
            if let Some(status) = settled {
                if let (true, Some((created, updated))) = (counted, saga_times(&reply)) {
                    recorder.settled(status, created, updated);
                }
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = stop.cancelled() => break,
            }
        }
        if counted {
            recorder.unsettled();
        }
    }

    /// Whether a history is being written.
    pub fn has_history(&self) -> bool {
        self.history.is_some()
    }

    /// Reads what every customer has (orders, payments, wallet) and the stock of the
    /// generator's products, again every second until two reads in a row agree and no order
    /// is pending (the saga's last events are applied), or until `patience` ran out; writes
    /// the last read to the history.
    pub async fn read_final_state(&self, patience: Duration, stop: &CancellationToken) {
        let deadline = Instant::now() + patience;
        let mut last: Option<Vec<(Instant, Option<usize>, Call)>> = None;
        loop {
            let read = self.final_state().await;
            let settled = read.as_ref().is_some_and(|now| {
                let pending = now.iter().any(|(_, _, call)| {
                    matches!(call, Call::Final { orders, .. } if orders.iter().any(|o| o.status == history::Status::PendingPayment))
                });
                let same = last.as_ref().is_some_and(|last| {
                    last.len() == now.len() && last.iter().zip(now).all(|(a, b)| (a.1, &a.2) == (b.1, &b.2))
                });
                !pending && same
            });
            if read.is_some() {
                last = read;
            }
            if settled || Instant::now() >= deadline || stop.is_cancelled() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = stop.cancelled() => {}
            }
        }
        match last {
            Some(state) => {
                for (invoked, customer, call) in state {
                    self.record(invoked, customer, "200", || call);
                }
            }
            None => eprintln!("agora loadgen: the final state could not be read; the history ends without it"),
        }
    }

    /// One read of the final state; `None` when any part of it got no 2xx.
    async fn final_state(&self) -> Option<Vec<(Instant, Option<usize>, Call)>> {
        let mut state = Vec::new();
        for customer in 0..self.customers.len() {
            let invoked = Instant::now();
            let token = self.token(customer);
            let orders = self.every_page("/v1/orders", "orders", &token).await?;
            let payments = self.every_page("/v1/payments", "payments", &token).await?;
            let (status, wallet, _) = self.call(Method::GET, "/v1/wallet", Some(&token), None).await.ok()?;
            let balance = history::minor(&wallet["balance"]).filter(|_| status.is_success())?;
            let orders = orders.iter().filter_map(history::seen).collect();
            let payments = payments.iter().filter_map(history::payment).collect();
            state.push((invoked, Some(customer), Call::Final { orders, payments, balance }));
        }
        for product in &self.products {
            let invoked = Instant::now();
            let (status, reply, _) =
                self.call(Method::GET, &format!("/v1/products/{product}"), None, None).await.ok()?;
            let stock = history::integer(&reply["stock"]).filter(|_| status.is_success())?;
            state.push((invoked, None, Call::FinalStock { product: product.clone(), stock }));
        }
        Some(state)
    }

    /// Every element of the list `field` at `path`, page after page.
    async fn every_page(&self, path: &str, field: &str, token: &str) -> Option<Vec<Value>> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let url = format!("{path}?page_size=100&page_token={page_token}");
            let (status, reply, _) = self.call(Method::GET, &url, Some(token), None).await.ok()?;
            if !status.is_success() {
                return None;
            }
            all.extend(reply[field].as_array().cloned().unwrap_or_default());
            match reply["nextPageToken"].as_str() {
                Some(next) if !next.is_empty() => page_token = next.to_owned(),
                _ => return Some(all),
            }
        }
    }
}

/// An error reply's message (the gateway answers `google.rpc.Status` JSON).
fn message(reply: &Value) -> String {
    reply["message"].as_str().map_or_else(|| reply.to_string(), str::to_owned)
}

/// An order's `createdAt` and `updatedAt`, in epoch milliseconds.
fn saga_times(order: &Value) -> Option<(i64, i64)> {
    Some((rfc3339_millis(order["createdAt"].as_str()?)?, rfc3339_millis(order["updatedAt"].as_str()?)?))
}

/// Milliseconds since the epoch of a UTC RFC 3339 time as the proto3 JSON mapping writes it
/// (`2026-11-21T10:04:05.123Z`).
fn rfc3339_millis(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut parts = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (parts.next()??, parts.next()??, parts.next()??);
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + millis)
}

#[derive(Debug)]
pub struct Grpc {
    addr: String,
    client: ProductServiceClient<tonic::transport::Channel>,
    products: Vec<String>,
}

impl Grpc {
    async fn prepare(addr: &str, args: &Args) -> anyhow::Result<Self> {
        if let Some(op) = args.mix.ops().find(|op| !matches!(op, Op::Browse | Op::Product)) {
            bail!("--grpc calls product-service only: the mix may hold browse and product, not {}", op.name());
        }
        let endpoint = agora_kit::grpc::endpoint(addr)?.timeout(args.timeout);
        let channel = match (&args.grpc_tls_cert, &args.grpc_tls_key, &args.grpc_tls_ca) {
            (Some(cert), Some(key), Some(ca)) => {
                let files = TlsFiles { cert: cert.clone(), key: key.clone(), ca: ca.clone() };
                let creds = Credentials::load(files, agora_kit::tls::DEFAULT_TRUST_DOMAIN)?;
                endpoint.connect_with_connector(Connector::new(&creds, "product-service", args.timeout)?).await
            }
            _ => endpoint.connect().await,
        }
        .with_context(|| format!("cannot reach product-service at {addr}"))?;
        let mut client = ProductServiceClient::new(channel);
        let page = client
            .list_products(ListProductsRequest { page_size: 100, page_token: String::new() })
            .await
            .with_context(|| format!("ListProducts at {addr}"))?
            .into_inner();
        let products: Vec<String> = page.products.into_iter().filter(|p| p.stock > 0).map(|p| p.id).collect();
        if products.is_empty() {
            bail!("product-service at {addr} has no product in stock to ask for");
        }
        Ok(Self { addr: addr.to_owned(), client, products })
    }

    async fn send(&self, op: Op, rng: &mut fastrand::Rng, measure: Measure<'_>) {
        let mut client = self.client.clone();
        let (route, result) = match op {
            Op::Browse => {
                let request = ListProductsRequest { page_size: 20, page_token: String::new() };
                ("ListProducts", client.list_products(request).await.map(drop))
            }
            _ => {
                let id = self.products[rng.usize(0..self.products.len())].clone();
                ("GetProduct", client.get_product(GetProductRequest { id }).await.map(drop))
            }
        };
        measure.done(route, &Outcome::grpc(result));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_become_epoch_milliseconds() {
        assert_eq!(rfc3339_millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_millis("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(rfc3339_millis("2000-03-01T00:00:00Z"), Some(951_868_800_000));
        assert_eq!(rfc3339_millis("2026-11-21T10:04:05.123456Z"), Some(1_795_255_445_123));
        assert_eq!(rfc3339_millis("2026-11-21T10:04:05+01:00"), None);
    }

    #[test]
    fn the_saga_time_is_the_orders_own() {
        let order = json!({"createdAt": "2026-11-21T10:04:05.100Z", "updatedAt": "2026-11-21T10:04:05.350Z"});
        assert_eq!(saga_times(&order), Some((1_795_255_445_100, 1_795_255_445_350)));
    }
}
