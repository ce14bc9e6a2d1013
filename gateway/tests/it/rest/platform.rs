//! The in-process platform behind a real gateway, and a small REST client for it.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use agora_events::LocalBus;
use agora_kit::testing::{TestDatabase, eventually, loopback};
use http::{HeaderMap, Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "rest-test-secret-rest-test-secret!";
pub const ADMIN_EMAIL: &str = "admin@agora.test";
const ADMIN_PASSWORD: &str = "admin-password";
pub const PASSWORD: &str = "correct horse battery";

pub struct Options {
    /// Leave payment-service out, so orders stay PENDING_PAYMENT.
    pub payments: bool,
    pub gateway: gateway::Config,
}

impl Default for Options {
    fn default() -> Self {
        Self { payments: true, gateway: gateway::Config::default() }
    }
}

pub struct Platform {
    pub url: String,
    pub http: reqwest::Client,
    stop: CancellationToken,
    servers: Vec<JoinHandle<anyhow::Result<()>>>,
}

/// An answer: status, headers and the JSON body (`Null` when the body is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        self.body
    }

    /// Asserts an error status and the `google.rpc.Status` shape; returns the message.
    #[track_caller]
    pub fn error(self, status: u16, code: i64) -> String {
        let body = self.expect(status);
        assert_eq!(body["code"], code, "gRPC code in {body}");
        assert!(body["details"].is_array(), "details in {body}");
        body["message"].as_str().expect("a message").to_owned()
    }
}

pub async fn start() -> Platform {
    start_with(Options::default()).await
}

pub async fn start_with(options: Options) -> Platform {
    let db = TestDatabase::sqlite();
    let bus = Arc::new(LocalBus::in_memory().await.unwrap());
    let stop = CancellationToken::new();
    let mut servers = Vec::new();
    let mut backends = BTreeMap::new();

    let (listener, user_url) = loopback().await;
    let user_cfg = user_service::Config {
        database_url: db.url.clone(),
        jwt_secret: SecretString::from(SECRET),
        admin_email: Some(ADMIN_EMAIL.into()),
        admin_password: Some(SecretString::from(ADMIN_PASSWORD)),
        ..Default::default()
    };
    servers.push(tokio::spawn(user_service::run(user_cfg, bus.clone(), listener, stop.clone())));
    backends.insert(user_service::SERVICE_NAME.to_owned(), user_url.clone());

    let (listener, product_url) = loopback().await;
    let product_cfg = product_service::Config { database_url: db.another().await.url };
    servers.push(tokio::spawn(product_service::run(product_cfg, bus.clone(), listener, stop.clone())));
    backends.insert(product_service::SERVICE_NAME.to_owned(), product_url.clone());

    let (listener, order_url) = loopback().await;
    let order_cfg = order_service::Config {
        database_url: db.another().await.url,
        user_addr: user_url,
        product_addr: product_url,
        ..Default::default()
    };
    servers.push(tokio::spawn(order_service::run(order_cfg, bus.clone(), listener, stop.clone())));
    backends.insert(order_service::SERVICE_NAME.to_owned(), order_url);

    let (listener, payment_url) = loopback().await;
    if options.payments {
        let payment_cfg = payment_service::Config { database_url: db.another().await.url, ..Default::default() };
        servers.push(tokio::spawn(payment_service::run(payment_cfg, bus.clone(), listener, stop.clone())));
    } else {
        // Nothing listens there: payment routes answer 503.
        drop(listener);
    }
    backends.insert(payment_service::SERVICE_NAME.to_owned(), payment_url);

    let (listener, url) = loopback().await;
    let gateway_cfg = gateway::Config { backends, jwt_secret: SecretString::from(SECRET), ..options.gateway };
    servers.push(tokio::spawn(gateway::run(gateway_cfg, listener, stop.clone())));

    let platform = Platform { url, http: reqwest::Client::new(), stop, servers };
    eventually(10, "the gateway to be ready", || async {
        let ready = platform.http.get(format!("{}/readyz", platform.url)).send().await.ok()?;
        (ready.status() == StatusCode::OK || !options.payments).then_some(())
    })
    .await;
    platform
}

impl Platform {
    /// Stops everything and checks that each component shut down cleanly.
    pub async fn stop(self) {
        self.stop.cancel();
        for server in self.servers {
            server.await.unwrap().expect("graceful shutdown returns Ok");
        }
    }

    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.url));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("the gateway answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, headers, body }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(self.request(Method::GET, path, token)).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(self.request(Method::POST, path, token).json(&body)).await
    }

    /// Registers `email` and logs in; returns the user id and an access token.
    pub async fn signup(&self, email: &str) -> (String, String) {
        let user = self.post("/v1/users", None, json!({"email": email, "password": PASSWORD, "name": "Ada"})).await;
        let id = user.expect(201)["id"].as_str().unwrap().to_owned();
        (id, self.login(email, PASSWORD).await)
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let login = self.post("/v1/auth/login", None, json!({"email": email, "password": password})).await;
        login.expect(200)["accessToken"].as_str().unwrap().to_owned()
    }

    pub async fn admin(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Adds a product as the admin; returns its id.
    pub async fn product(&self, name: &str, cents: i64, stock: i64) -> String {
        let body = json!({"name": name, "description": "", "price": usd(cents), "stock": stock});
        let created = self.post("/v1/products", Some(&self.admin().await), body).await.expect(201);
        created["id"].as_str().unwrap().to_owned()
    }

    pub async fn stock(&self, product_id: &str) -> i64 {
        let product = self.get(&format!("/v1/products/{product_id}"), None).await.expect(200);
        product["stock"].as_str().unwrap().parse().unwrap()
    }

    /// Waits until the order reaches `status` and returns it.
    pub async fn settled(&self, token: &str, order_id: &str, status: &str) -> Value {
        eventually(10, &format!("order {order_id} to become {status}"), || async {
            let order = self.get(&format!("/v1/orders/{order_id}"), Some(token)).await.expect(200);
            (order["status"] == status).then_some(order)
        })
        .await
    }

    /// Waits until the product's stock is `expected` (released stock comes back by event).
    pub async fn stock_becomes(&self, product_id: &str, expected: i64) {
        eventually(10, &format!("stock of {product_id} to become {expected}"), || async {
            (self.stock(product_id).await == expected).then_some(())
        })
        .await;
    }

    pub async fn order(&self, token: &str, key: &str, items: Value) -> Reply {
        let request = self.request(Method::POST, "/v1/orders", Some(token)).header("idempotency-key", key);
        self.send(request.json(&json!({ "items": items }))).await
    }
}

pub fn usd(cents: i64) -> Value {
    json!({"currencyCode": "USD", "amountMinor": cents.to_string()})
}

/// A token for `user_id` that expired a minute ago, signed with the platform's secret.
pub fn expired_token(user_id: &str) -> String {
    let keys = agora_kit::auth::JwtKeys::new(&SecretString::from(SECRET), Duration::from_secs(60)).unwrap();
    let now = agora_kit::time::now_millis() / 1000;
    keys.sign(&agora_kit::auth::Claims {
        sub: user_id.to_owned(),
        role: "user".to_owned(),
        iss: "agora".to_owned(),
        iat: now - 120,
        exp: now - 60,
    })
}
