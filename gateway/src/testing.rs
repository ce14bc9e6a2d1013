//! A small REST client for tests of a running gateway (feature `testing`): the calls a
//! customer and an admin make, and waits for the saga's asynchronous outcomes.

use std::time::Duration;

use agora_kit::testing::eventually;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

/// The password every test user signs up with.
pub const PASSWORD: &str = "correct horse battery";

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

/// A client of the gateway at `url`, knowing the admin's credentials.
#[derive(Debug, Clone)]
pub struct RestClient {
    pub url: String,
    pub http: reqwest::Client,
    pub admin_email: String,
    pub admin_password: String,
    /// How long the `*_becomes` / `settled` waits allow, in seconds.
    pub patience_secs: u64,
}

impl RestClient {
    pub fn new(url: &str, admin_email: &str, admin_password: &str) -> Self {
        Self {
            url: url.to_owned(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("a reqwest client"),
            admin_email: admin_email.to_owned(),
            admin_password: admin_password.to_owned(),
            patience_secs: 10,
        }
    }

    /// Waits until `/readyz` answers 200 (every backend SERVING).
    pub async fn ready(&self, secs: u64) {
        eventually(secs, "the gateway to be ready", || async {
            let ready = self.http.get(format!("{}/readyz", self.url)).send().await.ok()?;
            (ready.status() == StatusCode::OK).then_some(())
        })
        .await;
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
        let bytes = response.bytes().await.expect("a whole body");
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
        let id = user.expect(201)["id"].as_str().expect("a user id").to_owned();
        (id, self.login(email, PASSWORD).await)
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let login = self.post("/v1/auth/login", None, json!({"email": email, "password": password})).await;
        login.expect(200)["accessToken"].as_str().expect("an access token").to_owned()
    }

    pub async fn admin(&self) -> String {
        self.login(&self.admin_email, &self.admin_password).await
    }

    /// Adds a product as the admin; returns its id.
    pub async fn product(&self, name: &str, cents: i64, stock: i64) -> String {
        let body = json!({"name": name, "description": "", "price": usd(cents), "stock": stock});
        let created = self.post("/v1/products", Some(&self.admin().await), body).await.expect(201);
        created["id"].as_str().expect("a product id").to_owned()
    }

    pub async fn stock(&self, product_id: &str) -> i64 {
        let product = self.get(&format!("/v1/products/{product_id}"), None).await.expect(200);
        product["stock"].as_str().and_then(|s| s.parse().ok()).expect("stock as an int64 string")
    }

    /// Places an order for `items` with `key` as its Idempotency-Key.
    pub async fn order(&self, token: &str, key: &str, items: Value) -> Reply {
        let request = self.request(Method::POST, "/v1/orders", Some(token)).header("idempotency-key", key);
        self.send(request.json(&json!({ "items": items }))).await
    }

    /// Waits until the order reaches `status` and returns it.
    pub async fn settled(&self, token: &str, order_id: &str, status: &str) -> Value {
        eventually(self.patience_secs, &format!("order {order_id} to become {status}"), || async {
            let order = self.get(&format!("/v1/orders/{order_id}"), Some(token)).await.expect(200);
            (order["status"] == status).then_some(order)
        })
        .await
    }

    /// Waits until the product's stock is `expected` (released stock comes back by event).
    pub async fn stock_becomes(&self, product_id: &str, expected: i64) {
        eventually(self.patience_secs, &format!("stock of {product_id} to become {expected}"), || async {
            (self.stock(product_id).await == expected).then_some(())
        })
        .await;
    }
}

/// A USD amount in the JSON mapping of `agora.type.v1.Money`.
pub fn usd(cents: i64) -> Value {
    json!({"currencyCode": "USD", "amountMinor": cents.to_string()})
}
