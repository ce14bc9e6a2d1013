//! The cross-cutting layers: request ids, compression, CORS, rate limits, deadlines,
//! health and readiness, the OpenAPI route.

use std::{collections::BTreeMap, time::Duration};

use agora_kit::testing::loopback;
use http::{Method, StatusCode, header};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::platform::{Options, SECRET, start, start_with};

/// A gateway alone, every backend at `backend`.
async fn gateway_only(backend: &str, tune: impl FnOnce(&mut gateway::Config)) -> (String, CancellationToken) {
    let api = gateway::api::Api::agora().unwrap();
    let backends: BTreeMap<_, _> = api.bindings.iter().map(|b| (b.service().to_owned(), backend.to_owned())).collect();
    let mut config = gateway::Config { backends, jwt_secret: SecretString::from(SECRET), ..Default::default() };
    tune(&mut config);
    let (listener, url) = loopback().await;
    let stop = CancellationToken::new();
    tokio::spawn(gateway::run(config, listener, stop.clone()));
    (url, stop)
}

#[tokio::test]
async fn request_ids_are_echoed_or_made_up() {
    let p = start().await;
    let given = p.send(p.request(Method::GET, "/v1/products", None).header("x-request-id", "trace-me-42")).await;
    assert_eq!(given.headers["x-request-id"], "trace-me-42");
    let made = p.get("/v1/nowhere", None).await;
    let id = made.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    p.stop().await;
}

#[tokio::test]
async fn health_readiness_openapi_and_gzip() {
    let p = start().await;
    let health = p.http.get(format!("{}/healthz", p.url)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = p.get("/readyz", None).await.expect(200);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["backends"]["agora.order.v1.OrderService"], "SERVING");

    let document = p.get("/openapi.json", None).await.expect(200);
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/v1/orders/{id}:cancel"]["post"].is_object());

    // A large body is gzipped for a client that asks; a small one goes as it is.
    let zipped = p.send(p.request(Method::GET, "/openapi.json", None).header(header::ACCEPT_ENCODING, "gzip")).await;
    assert_eq!(zipped.headers[header::CONTENT_ENCODING], "gzip");
    let small = p.send(p.request(Method::GET, "/readyz", None).header(header::ACCEPT_ENCODING, "gzip")).await;
    assert!(small.body.to_string().len() < gateway::COMPRESS_ABOVE.into(), "{}", small.body);
    assert!(small.headers.get(header::CONTENT_ENCODING).is_none(), "{:?}", small.headers);
    p.stop().await;

    let down = start_with(Options { payments: false, ..Default::default() }).await;
    let not_ready = down.get("/readyz", None).await.expect(503);
    assert_eq!(not_ready["status"], "not ready");
    assert_ne!(not_ready["backends"]["agora.payment.v1.PaymentService"], "SERVING");
    assert_eq!(not_ready["backends"]["agora.user.v1.UserService"], "SERVING");
    down.stop().await;
}

#[tokio::test]
async fn sign_ins_have_a_limit_of_their_own_that_other_routes_do_not_share() {
    let (url, stop) = gateway_only("127.0.0.1:9", |c| {
        c.sign_in_limit_per_minute = 1.0;
        c.sign_in_limit_burst = 2;
    })
    .await;
    let http = reqwest::Client::new();
    let login =
        || http.post(format!("{url}/v1/auth/login")).json(&serde_json::json!({"email": "a@b.c", "password": "guess"}));
    // The backend is down: the first two get as far as trying it, the third is refused first.
    for _ in 0..2 {
        assert_ne!(login().send().await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let limited = login().send().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = limited.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().starts_with("too many sign-in attempts"), "{body}");
    let signup = http.post(format!("{url}/v1/users")).json(&serde_json::json!({"email": "a@b.c"}));
    assert_eq!(signup.send().await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS, "sign-ups share it");
    // Everything else is under the general limit only.
    for _ in 0..5 {
        assert_eq!(http.get(format!("{url}/healthz")).send().await.unwrap().status(), StatusCode::OK);
        let products = http.get(format!("{url}/v1/products")).send().await.unwrap().status();
        assert_ne!(products, StatusCode::TOO_MANY_REQUESTS);
    }
    stop.cancel();
}

#[tokio::test]
async fn clients_over_their_rate_are_told_when_to_come_back() {
    let (url, stop) = gateway_only("127.0.0.1:9", |c| {
        c.rate_limit_per_second = 0.2;
        c.rate_limit_burst = 2;
    })
    .await;
    let http = reqwest::Client::new();
    for _ in 0..2 {
        assert_eq!(http.get(format!("{url}/healthz")).send().await.unwrap().status(), StatusCode::OK);
    }
    let limited = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["code"], 8);
    stop.cancel();
}

#[tokio::test]
async fn a_backend_that_never_answers_is_a_504_at_the_deadline() {
    // Accepts connections and never speaks: the call can only end by the deadline.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let (url, stop) = gateway_only(&addr, |c| c.request_timeout_ms = 300).await;
    let started = std::time::Instant::now();
    let response = reqwest::get(format!("{url}/v1/products")).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(5), "answered at the deadline, not later");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], 4);
    stop.cancel();
}

#[tokio::test]
async fn cors_is_off_by_default_and_answers_preflights_when_configured() {
    let (url, stop) = gateway_only("127.0.0.1:9", |c| c.cors_origins = vec!["https://shop.example".into()]).await;
    let http = reqwest::Client::new();
    let preflight = http
        .request(Method::OPTIONS, format!("{url}/v1/orders"))
        .header(header::ORIGIN, "https://shop.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization,content-type,idempotency-key")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::OK);
    assert_eq!(preflight.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://shop.example");
    let foreign =
        http.get(format!("{url}/healthz")).header(header::ORIGIN, "https://evil.example").send().await.unwrap();
    assert!(foreign.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    stop.cancel();

    let (url, stop) = gateway_only("127.0.0.1:9", |_| {}).await;
    let plain = http.get(format!("{url}/healthz")).header(header::ORIGIN, "https://shop.example").send().await.unwrap();
    assert!(plain.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    stop.cancel();
}

/// The value of `series` (name and labels as exposed) in a Prometheus scrape; 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn requests_refused_by_a_layer_count_under_their_route_and_probes_do_not() {
    let p = start().await;
    let scrape = || async { p.http.get(format!("{}/metrics", p.url)).send().await.unwrap().text().await.unwrap() };
    let before = scrape().await;
    p.get("/v1/orders", None).await.expect(401);
    p.get("/v1/nowhere", None).await.expect(404);
    p.get("/healthz", None).await;
    let after = scrape().await;
    // Metrics are per process and tests run side by side: at least one more each.
    for series in [
        r#"agora_http_server_requests_total{method="GET",route="/v1/orders",status="401"}"#,
        r#"agora_http_server_requests_total{method="GET",route="unmatched",status="404"}"#,
    ] {
        assert!(sample(&after, series) >= sample(&before, series) + 1.0, "{series} did not move:\n{after}");
    }
    assert!(!after.contains(r#"route="/healthz""#), "probes are not request metrics");
    p.stop().await;
}
