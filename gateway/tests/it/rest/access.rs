//! The auth matrix: who may call what, decided at the gateway from the proto's policy.

use http::{Method, header};
use serde_json::json;

use super::platform::{expired_token, start, usd};

#[tokio::test]
async fn tokens_roles_and_ownership() {
    let p = start().await;
    let (ada_id, ada) = p.signup("ada@example.com").await;
    let (_, bob) = p.signup("bob@example.com").await;
    let admin = p.admin().await;

    // Public routes need no token.
    p.get("/v1/products", None).await.expect(200);

    // No token, a malformed one, a forged one, an expired one: 401 with a challenge.
    let missing = p.get("/v1/users/me", None).await;
    assert!(missing.headers[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Bearer"));
    assert!(missing.error(401, 16).contains("Authorization: Bearer"));
    p.get("/v1/users/me", Some("not-a-token")).await.error(401, 16);
    let expired = p.get("/v1/users/me", Some(&expired_token(&ada_id))).await;
    assert!(expired.error(401, 16).contains("expired"));

    // A user is not an admin.
    let body = json!({"name": "Mug", "price": usd(100), "stock": 1});
    let create = p.request(Method::POST, "/v1/products", Some(&ada)).json(&body);
    p.send(create).await.error(403, 7);
    p.get(&format!("/v1/users/{ada_id}"), Some(&bob)).await.error(403, 7);
    let seen = p.get(&format!("/v1/users/{ada_id}"), Some(&admin)).await.expect(200);
    assert_eq!(seen["email"], "ada@example.com");

    // Identity headers from the client are ignored: only the token counts.
    let spoofed = p
        .request(Method::POST, "/v1/products", Some(&ada))
        .header("x-agora-user-role", "admin")
        .header("x-agora-user-id", "someone-else")
        .json(&body);
    p.send(spoofed).await.error(403, 7);
    let headers_only = p.request(Method::GET, "/v1/users/me", None).header("x-agora-user-id", &ada_id);
    p.send(headers_only.header("x-agora-user-role", "user")).await.error(401, 16);

    // Another user's order is not yours to read or cancel.
    let mug = p.product("Mug", 1_00, 5).await;
    let order = p.order(&ada, "mine", json!([{"productId": mug, "quantity": 1}])).await.expect(201);
    let id = order["id"].as_str().unwrap();
    p.get(&format!("/v1/orders/{id}"), Some(&bob)).await.error(403, 7);
    p.send(p.request(Method::POST, &format!("/v1/orders/{id}:cancel"), Some(&bob))).await.error(403, 7);
    p.get(&format!("/v1/orders/{id}"), Some(&ada)).await.expect(200);
    p.get(&format!("/v1/orders/{id}"), Some(&admin)).await.expect(200);
    p.stop().await;
}
