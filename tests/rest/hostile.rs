//! Hostile input through the gateway: every request below is refused with a 4xx that says
//! why, or stored exactly as sent. None is a 5xx, and none changes anything else.

use http::{Method, StatusCode, header};
use serde_json::{Value, json};

use super::platform::{start, usd};

/// Strings that break naive SQL, paths, templates or terminals.
const NASTY: &[&str] = &[
    "'; DROP TABLE products; --",
    "\" OR 1=1 --",
    "../../../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%00\u{0}nul",
    "{{7*7}} ${jndi:ldap://127.0.0.1/a}",
    "\u{202e}gnp.exe \u{1b}[31mred",
    "𝕌𝕟𝕚𝕔𝕠𝕕𝕖 ✓ 日本語",
];

#[tokio::test]
async fn hostile_input_is_a_4xx_or_stored_as_sent_and_never_a_5xx() {
    let p = start().await;
    let admin = p.admin().await;
    let (_, ada) = p.signup("ada@example.com").await;
    let mug = p.product("Mug", 1_00, 5).await;
    let mut answers = Vec::new();
    let mut check = |what: String, status: StatusCode, body: &Value| {
        assert!(!status.is_server_error(), "{what}: {status} {body}");
        answers.push(status.as_u16());
    };

    // Nasty strings in every field of a product, and in path and query positions.
    for (i, nasty) in NASTY.iter().enumerate() {
        let product = json!({"name": format!("{nasty} #{i}"), "description": nasty, "price": usd(100), "stock": 1});
        let created = p.post("/v1/products", Some(&admin), product).await;
        check(format!("product named {nasty:?}"), created.status, &created.body);
        if created.status == StatusCode::CREATED {
            let id = created.body["id"].as_str().unwrap();
            let read = p.get(&format!("/v1/products/{id}"), None).await.expect(200);
            assert_eq!(read["description"], *nasty, "stored exactly as sent");
        }
        let encoded: String = form_urlencoded::byte_serialize(nasty.as_bytes()).collect();
        for path in [
            format!("/v1/products/{encoded}"),
            format!("/v1/orders/{encoded}"),
            format!("/v1/products?page_token={encoded}"),
            format!("/v1/payments?order_id={encoded}"),
        ] {
            let reply = p.get(&path, Some(&ada)).await;
            check(format!("GET {path}"), reply.status, &reply.body);
        }
        let account = json!({"email": nasty, "password": nasty, "name": nasty});
        let signup = p.post("/v1/users", None, account).await;
        check(format!("sign-up as {nasty:?}"), signup.status, &signup.body);
        let order = json!({"items": [{"productId": nasty, "quantity": 1}]});
        let placed = p.post("/v1/orders", Some(&ada), order).await;
        check(format!("order of {nasty:?}"), placed.status, &placed.body);
    }

    // Malformed bodies: too big, too deep, not UTF-8, not JSON, numbers out of range.
    let raw = |body: Vec<u8>| {
        p.request(Method::POST, "/v1/orders", Some(&ada)).header(header::CONTENT_TYPE, "application/json").body(body)
    };
    let too_big = format!("{{\"items\": [], \"idempotencyKey\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let deep = format!("{{\"items\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("2 MiB body", too_big.into_bytes(), 413),
        ("100,000 nested arrays", deep.into_bytes(), 400),
        ("invalid UTF-8", b"{\"items\": [{\"productId\": \"\xff\xfe\", \"quantity\": 1}]}".to_vec(), 400),
        ("not JSON", b"items=1".to_vec(), 400),
        ("truncated JSON", b"{\"items\": [".to_vec(), 400),
        (
            "quantity beyond int64",
            format!("{{\"items\": [{{\"productId\": \"{mug}\", \"quantity\": \"99999999999999999999999\"}}]}}")
                .into_bytes(),
            400,
        ),
        (
            "negative quantity",
            format!("{{\"items\": [{{\"productId\": \"{mug}\", \"quantity\": -1}}]}}").into_bytes(),
            400,
        ),
        (
            "fractional quantity",
            format!("{{\"items\": [{{\"productId\": \"{mug}\", \"quantity\": 1.5}}]}}").into_bytes(),
            400,
        ),
        ("unknown field", b"{\"items\": [], \"admin\": true}".to_vec(), 400),
    ];
    for (what, body, expected) in cases {
        let reply = p.send(raw(body)).await;
        check(what.to_owned(), reply.status, &reply.body);
        assert_eq!(reply.status.as_u16(), expected, "{what}: {}", reply.body);
        assert!(reply.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: a message, got {}", reply.body);
    }
    let huge_price = json!({"name": "Huge", "price": {"currencyCode": "USD", "amountMinor": "1e400"}, "stock": 1});
    let reply = p.post("/v1/products", Some(&admin), huge_price).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);

    // Path traversal outside the API finds nothing.
    for path in [
        "/../../etc/passwd",
        "/v1/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/v1/products/..%2f..%2fetc%2fpasswd",
    ] {
        let reply = p.get(path, None).await;
        check(format!("GET {path}"), reply.status, &reply.body);
        assert!(reply.status.is_client_error(), "{path}: {}", reply.status);
    }

    // Nothing above touched the mug or Ada's orders.
    assert_eq!(p.stock(&mug).await, 5);
    let orders = p.get("/v1/orders", Some(&ada)).await.expect(200);
    assert!(orders["orders"].as_array().is_none_or(Vec::is_empty), "{orders}");
    assert!(answers.len() > 60, "{} requests checked", answers.len());
    p.stop().await;
}
