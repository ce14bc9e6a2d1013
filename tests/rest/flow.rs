//! The REST flow of DESIGN.md, as a client sees it.

use http::Method;
use serde_json::json;

use super::platform::{Options, start, start_with, usd};

#[tokio::test]
async fn register_login_browse_order_pay_and_fail_to_pay() {
    let p = start().await;
    let mug = p.product("Ceramic mug", 12_00, 10).await;
    let grinder = p.product("Burr grinder", 149_00, 3).await;

    let listed = p.get("/v1/products?page_size=1", None).await.expect(200);
    assert_eq!(listed["products"].as_array().unwrap().len(), 1);
    let next = listed["nextPageToken"].as_str().unwrap();
    let second = p.get(&format!("/v1/products?pageSize=1&page_token={next}"), None).await.expect(200);
    assert_ne!(second["products"][0]["id"], listed["products"][0]["id"], "the page token moves on");

    let (user_id, token) = p.signup("ada@example.com").await;
    let me = p.get("/v1/users/me", Some(&token)).await.expect(200);
    assert_eq!((me["id"].as_str(), me["email"].as_str()), (Some(user_id.as_str()), Some("ada@example.com")));
    assert!(me.get("passwordHash").is_none() && me.get("password").is_none());

    // Paid: 2 × 12.00 out of the opening 100.00.
    let placed = p.order(&token, "first", json!([{"productId": mug, "quantity": 2}])).await.expect(201);
    assert_eq!(placed["status"], "ORDER_STATUS_PENDING_PAYMENT");
    assert_eq!(placed["total"], usd(24_00));
    let order_id = placed["id"].as_str().unwrap();
    let paid = p.settled(&token, order_id, "ORDER_STATUS_PAID").await;
    assert_eq!(paid["cancelReason"], "");
    let wallet = p.get("/v1/wallet", Some(&token)).await.expect(200);
    assert_eq!(wallet["balance"], usd(76_00));
    let payments = p.get(&format!("/v1/payments?order_id={order_id}"), Some(&token)).await.expect(200);
    assert_eq!(payments["payments"][0]["status"], "PAYMENT_STATUS_SUCCEEDED");
    assert_eq!(p.stock(&mug).await, 8);

    // The same Idempotency-Key is the same order, not a second one.
    let retried = p.order(&token, "first", json!([{"productId": mug, "quantity": 2}])).await.expect(201);
    assert_eq!(retried["id"], placed["id"]);
    assert_eq!(p.stock(&mug).await, 8);
    let listed = p.get("/v1/orders", Some(&token)).await.expect(200);
    assert_eq!(listed["orders"].as_array().unwrap().len(), 1);
    // The same key with another basket is a conflict.
    let reused = p.order(&token, "first", json!([{"productId": mug, "quantity": 3}])).await;
    let message = reused.error(409, 6);
    assert!(message.contains("key"), "{message}");
    // A key that is not visible ASCII, or an empty one, is refused, never ignored (ignored,
    // a retry would place a second order).
    for key in [http::HeaderValue::from_bytes("café".as_bytes()).unwrap(), http::HeaderValue::from_static("")] {
        let request = p.request(http::Method::POST, "/v1/orders", Some(&token)).header("idempotency-key", key);
        let refused = p.send(request.json(&json!({"items": [{"productId": mug, "quantity": 1}]}))).await;
        assert!(refused.error(400, 3).contains("dempotency"));
    }
    assert_eq!(p.stock(&mug).await, 8);

    // Declined: 149.00 is more than the 76.00 left; the order is cancelled, the stock restored.
    let dear = p.order(&token, "second", json!([{"product_id": grinder, "quantity": "1"}])).await.expect(201);
    let cancelled = p.settled(&token, dear["id"].as_str().unwrap(), "ORDER_STATUS_CANCELLED").await;
    assert_eq!(cancelled["cancelReason"], "payment declined: insufficient funds");
    p.stock_becomes(&grinder, 3).await;

    // After a top-up the same basket goes through.
    let topped = p.post("/v1/wallet:topUp", Some(&token), json!({"amount": usd(100_00)})).await.expect(200);
    assert_eq!(topped["balance"], usd(176_00));
    let again = p.order(&token, "third", json!([{"productId": grinder, "quantity": 1}])).await.expect(201);
    p.settled(&token, again["id"].as_str().unwrap(), "ORDER_STATUS_PAID").await;
    p.stop().await;
}

#[tokio::test]
async fn a_pending_order_can_be_cancelled_and_its_stock_comes_back() {
    // Without payment-service the order stays pending until the customer cancels it.
    let p = start_with(Options { payments: false, ..Default::default() }).await;
    let kettle = p.product("Kettle", 39_00, 4).await;
    let (_, token) = p.signup("grace@example.com").await;
    let placed = p.order(&token, "k1", json!([{"productId": kettle, "quantity": 3}])).await.expect(201);
    assert_eq!(p.stock(&kettle).await, 1);

    let id = placed["id"].as_str().unwrap();
    let cancel = p.request(Method::POST, &format!("/v1/orders/{id}:cancel"), Some(&token));
    let cancelled = p.send(cancel).await.expect(200);
    assert_eq!(cancelled["status"], "ORDER_STATUS_CANCELLED");
    assert_eq!(cancelled["cancelReason"], "cancelled by customer");
    // product-service releases the reservation when OrderCancelled reaches it.
    p.stock_becomes(&kettle, 4).await;

    // With payment-service down, wallet routes say so rather than hang.
    p.get("/v1/wallet", Some(&token)).await.error(503, 14);
    p.stop().await;
}
