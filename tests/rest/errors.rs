//! Each error status a client can meet, with the `google.rpc.Status` body.

use http::{Method, header};
use serde_json::json;

use super::platform::{PASSWORD, start};

#[tokio::test]
async fn the_gateway_refuses_bad_requests_clearly() {
    let p = start().await;

    let missing = p.get("/v1/nowhere", None).await;
    assert!(missing.error(404, 5).contains("/v1/nowhere"));

    let wrong_method = p.send(p.request(Method::DELETE, "/v1/products", None)).await;
    assert_eq!(wrong_method.headers[header::ALLOW], "GET, HEAD, POST");
    wrong_method.error(405, 12);

    // HEAD is GET without the body.
    let head = p.send(p.request(Method::HEAD, "/v1/products", None)).await;
    assert_eq!((head.status.as_u16(), head.headers[header::CONTENT_TYPE].to_str().unwrap()), (200, "application/json"));

    // An encoding the gateway cannot undo: 415 with the same JSON body as other refusals.
    let brotli = p.request(Method::GET, "/v1/products", None).header(header::CONTENT_ENCODING, "br");
    assert!(p.send(brotli).await.error(415, 3).contains("Content-Encoding"));

    let text = p.request(Method::POST, "/v1/users", None).header(header::CONTENT_TYPE, "text/plain").body("hi");
    assert!(p.send(text).await.error(415, 3).contains("application/json"));

    let malformed = p
        .request(Method::POST, "/v1/users", None)
        .header(header::CONTENT_TYPE, "application/json")
        .body("{\"email\": \"a@b.c\", \"password\": }");
    assert!(p.send(malformed).await.error(400, 3).contains("column"));

    let unknown = json!({"email": "a@b.c", "password": PASSWORD, "name": "A", "isAdmin": true});
    assert!(p.post("/v1/users", None, unknown).await.error(400, 3).contains("isAdmin"));

    let huge = json!({"email": "a@b.c", "password": PASSWORD, "name": "x".repeat(2 * 1024 * 1024)});
    assert!(p.post("/v1/users", None, huge).await.error(413, 3).contains("larger than"));

    let bad_query = p.get("/v1/products?page_size=many", None).await;
    assert!(bad_query.error(400, 3).contains("page_size"));
    p.stop().await;
}

#[tokio::test]
async fn backend_errors_keep_their_meaning() {
    let p = start().await;
    let (_, token) = p.signup("ada@example.com").await;

    // InvalidArgument from user-service.
    let bad_email = json!({"email": "not-an-email", "password": PASSWORD, "name": "A"});
    p.post("/v1/users", None, bad_email).await.error(400, 3);
    // AlreadyExists.
    let again = json!({"email": "ada@example.com", "password": PASSWORD, "name": "Ada"});
    p.post("/v1/users", None, again).await.error(409, 6);
    // Unauthenticated from the service: a wrong password.
    p.post("/v1/auth/login", None, json!({"email": "ada@example.com", "password": "wrong-password"}))
        .await
        .error(401, 16);
    // NotFound.
    let unknown = agora_kit::id::new_id();
    p.get(&format!("/v1/products/{unknown}"), None).await.error(404, 5);
    p.get(&format!("/v1/orders/{unknown}"), Some(&token)).await.error(404, 5);
    // FailedPrecondition: more than the stock.
    let mug = p.product("Mug", 1_00, 2).await;
    p.order(&token, "big", json!([{"productId": mug, "quantity": 3}])).await.error(400, 9);
    // FailedPrecondition: a paid order can no longer be cancelled.
    let placed = p.order(&token, "small", json!([{"productId": mug, "quantity": 1}])).await.expect(201);
    let id = placed["id"].as_str().unwrap();
    p.settled(&token, id, "ORDER_STATUS_PAID").await;
    p.send(p.request(Method::POST, &format!("/v1/orders/{id}:cancel"), Some(&token))).await.error(400, 9);
    p.stop().await;
}
