//! `agora client`: the platform's REST API from the command line, for people and scripts.
//!
//! Each call prints the gateway's JSON answer on stdout (`--get` picks one field, a string
//! printed bare), and a refusal exits non-zero with the method, path, status and the
//! gateway's message, so a script stops where the platform said no. `order --wait` and
//! `get-order --wait` follow an order until the saga settles it.

use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::cli::{ClientArgs, ClientCall};

pub async fn run(args: ClientArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(args.timeout_secs)).build()?;
    let api = Api { http, base: args.gateway.trim_end_matches('/').to_owned(), token: args.token };
    let answer = match args.call {
        ClientCall::SignUp { email, password, name } => {
            let body = json!({"email": email, "password": password.expose_secret(), "name": name});
            api.call(Method::POST, "/v1/users", Some(body)).await?
        }
        ClientCall::SignIn { email, password } => {
            let body = json!({"email": email, "password": password.expose_secret()});
            api.call(Method::POST, "/v1/auth/login", Some(body)).await?
        }
        ClientCall::Products => api.products().await?,
        ClientCall::CreateProduct { name, description, price_minor, currency, stock } => {
            let price = json!({"currencyCode": currency, "amountMinor": price_minor.to_string()});
            let body = json!({"name": name, "description": description, "price": price, "stock": stock.to_string()});
            api.call(Method::POST, "/v1/products", Some(body)).await?
        }
        ClientCall::Order { items, idempotency_key, wait_secs } => {
            let items = items.iter().map(|item| parse_item(item)).collect::<anyhow::Result<Vec<_>>>()?;
            let mut request = api.request(Method::POST, "/v1/orders").json(&json!({"items": items}));
            if let Some(key) = idempotency_key {
                request = request.header("idempotency-key", key);
            }
            let order = api.send(Method::POST, "/v1/orders", request).await?;
            match wait_secs {
                Some(secs) => api.settled(id_of(&order)?, secs).await?,
                None => order,
            }
        }
        ClientCall::GetOrder { id, wait_secs } => match wait_secs {
            Some(secs) => api.settled(&id, secs).await?,
            None => api.call(Method::GET, &format!("/v1/orders/{id}"), None).await?,
        },
    };
    println!("{}", shown(&answer, args.get.as_deref())?);
    Ok(())
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<secrecy::SecretString>,
}

impl Api {
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token.expose_secret()),
            None => request,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = self.request(method.clone(), path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(method, path, request).await
    }

    /// The JSON of a 2xx answer; anything else is an error that says what the gateway said.
    async fn send(&self, method: Method, path: &str, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let reply = request.send().await.with_context(|| format!("{method} {path}: cannot reach {}", self.base))?;
        let status = reply.status();
        let retry_after = reply.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = reply.text().await.unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|error| error["message"].as_str().map(str::to_owned))
                .unwrap_or(body);
            match (status, retry_after) {
                (StatusCode::TOO_MANY_REQUESTS, Some(secs)) => {
                    bail!("{method} {path} answered {status}: {message} (retry in {secs} s)")
                }
                _ => bail!("{method} {path} answered {status}: {message}"),
            }
        }
        serde_json::from_str(&body).with_context(|| format!("{method} {path} answered {status} but not JSON: {body}"))
    }

    /// Every product, page by page, as one `{"products": [...]}`.
    async fn products(&self) -> anyhow::Result<Value> {
        let (mut products, mut token) = (Vec::new(), String::new());
        loop {
            let path = format!("/v1/products?page_size=100&page_token={token}");
            let page = self.call(Method::GET, &path, None).await?;
            products.extend(page["products"].as_array().cloned().unwrap_or_default());
            token = page["nextPageToken"].as_str().unwrap_or_default().to_owned();
            if token.is_empty() {
                return Ok(json!({"products": products}));
            }
        }
    }

    /// Order `id` once it is PAID or CANCELLED; an error if it is still pending after `secs`.
    async fn settled(&self, id: &str, secs: u64) -> anyhow::Result<Value> {
        let path = format!("/v1/orders/{id}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let order = self.call(Method::GET, &path, None).await?;
            if order["status"] != "ORDER_STATUS_PENDING_PAYMENT" {
                return Ok(order);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("order {id} is still pending payment after {secs} s");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// `PRODUCT_ID[:QUANTITY]` as an order item (quantity 1 when not given).
fn parse_item(item: &str) -> anyhow::Result<Value> {
    let (product, quantity) = match item.split_once(':') {
        Some((product, quantity)) => {
            let quantity: u32 =
                quantity.parse().with_context(|| format!("{item:?}: the quantity after ':' must be a number"))?;
            (product, quantity)
        }
        None => (item, 1),
    };
    Ok(json!({"productId": product, "quantity": quantity}))
}

fn id_of(order: &Value) -> anyhow::Result<&str> {
    order["id"].as_str().with_context(|| format!("the new order has no id: {order}"))
}

/// `answer`, or its field at the dot path `get` (`id`, `total.amountMinor`, `products.0.id`);
/// strings bare, anything else as JSON.
fn shown(answer: &Value, get: Option<&str>) -> anyhow::Result<String> {
    let mut value = answer;
    for key in get.into_iter().flat_map(|path| path.split('.')) {
        let next = match key.parse::<usize>() {
            Ok(index) if value.is_array() => value.get(index),
            _ => value.get(key),
        };
        value = next.with_context(|| format!("the answer has no {:?}: {answer}", get.unwrap_or_default()))?;
    }
    Ok(match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_take_an_optional_quantity() {
        assert_eq!(parse_item("p-1").unwrap(), json!({"productId": "p-1", "quantity": 1}));
        assert_eq!(parse_item("p-1:3").unwrap(), json!({"productId": "p-1", "quantity": 3}));
        assert!(parse_item("p-1:many").unwrap_err().to_string().contains("must be a number"));
    }

    #[test]
    fn get_follows_a_dot_path_and_prints_strings_bare() {
        let answer = json!({"id": "o-1", "total": {"amountMinor": "1250"}, "items": [{"quantity": 2}]});
        assert_eq!(shown(&answer, Some("id")).unwrap(), "o-1");
        assert_eq!(shown(&answer, Some("total.amountMinor")).unwrap(), "1250");
        assert_eq!(shown(&answer, Some("items.0.quantity")).unwrap(), "2");
        assert_eq!(shown(&answer, None).unwrap(), answer.to_string());
        assert!(shown(&answer, Some("status")).unwrap_err().to_string().contains("no \"status\""));
    }
}
