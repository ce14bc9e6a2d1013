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

    // Another user's order is not yours to read or cancel, and the answer is exactly an unknown
    // id's: it does not tell that the order exists (OWASP API1).
    let mug = p.product("Mug", 1_00, 5).await;
    let order = p.order(&ada, "mine", json!([{"productId": mug, "quantity": 1}])).await.expect(201);
    let id = order["id"].as_str().unwrap();
    let nobody = agora_kit::id::new_id();
    for (theirs, unknown) in [
        (
            p.get(&format!("/v1/orders/{id}"), Some(&bob)).await,
            p.get(&format!("/v1/orders/{nobody}"), Some(&bob)).await,
        ),
        (
            p.send(p.request(Method::POST, &format!("/v1/orders/{id}:cancel"), Some(&bob))).await,
            p.send(p.request(Method::POST, &format!("/v1/orders/{nobody}:cancel"), Some(&bob))).await,
        ),
    ] {
        assert_eq!(
            (theirs.status, theirs.body.to_string().replace(id, "ID")),
            (unknown.status, unknown.body.to_string().replace(&nobody, "ID"))
        );
        theirs.error(404, 5);
    }
    p.get(&format!("/v1/orders/{id}"), Some(&ada)).await.expect(200);
    p.get(&format!("/v1/orders/{id}"), Some(&admin)).await.expect(200);
    p.stop().await;
}

/// A token in the form `header.payload.signature`, each part base64url without padding.
fn token(header: &serde_json::Value, claims: &serde_json::Value, signature: &str) -> String {
    use base64::Engine as _;
    let encode = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{signature}", encode(header), encode(claims))
}

#[tokio::test]
async fn forged_tokens_and_other_peoples_payments_get_nothing() {
    let p = start().await;
    let (ada_id, ada) = p.signup("ada@example.com").await;
    let (_, bob) = p.signup("bob@example.com").await;
    let now = agora_kit::time::now_millis() / 1000;
    let admin_claims = json!({"sub": ada_id, "role": "admin", "iss": "agora", "iat": now, "exp": now + 600});

    // alg "none", a key the platform does not hold, and Ada's real token with its claims
    // rewritten to admin: each is a 401, and none creates a product.
    let none = token(&json!({"alg": "none", "typ": "JWT"}), &admin_claims, "");
    let wrong_key = agora_kit::auth::JwtKeys::new(
        &secrecy::SecretString::from("not-the-platform-secret-not-the-platform-secret"),
        std::time::Duration::from_secs(600),
    )
    .unwrap()
    .sign(&serde_json::from_value(admin_claims.clone()).unwrap());
    let signature = ada.rsplit('.').next().unwrap();
    let tampered = token(&json!({"alg": "HS256", "typ": "JWT"}), &admin_claims, signature);
    let body = json!({"name": "Forged", "price": usd(100), "stock": 1});
    for (what, forged) in [("alg none", none), ("wrong key", wrong_key), ("tampered claims", tampered)] {
        let reply = p.send(p.request(Method::POST, "/v1/products", Some(&forged)).json(&body)).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        p.get("/v1/users/me", Some(&forged)).await.error(401, 16);
    }
    assert!(p.get("/v1/products", None).await.expect(200).to_string().find("Forged").is_none());

    // Ada's order is paid; Bob asking for its payments learns nothing about them.
    let mug = p.product("Mug", 1_00, 5).await;
    let order = p.order(&ada, "ada-1", json!([{"productId": mug, "quantity": 1}])).await.expect(201);
    let id = order["id"].as_str().unwrap();
    p.settled(&ada, id, "ORDER_STATUS_PAID").await;
    let own = p.get(&format!("/v1/payments?order_id={id}"), Some(&ada)).await.expect(200);
    assert_eq!(own["payments"].as_array().map(Vec::len), Some(1), "{own}");
    let theirs = p.get(&format!("/v1/payments?order_id={id}"), Some(&bob)).await.expect(200);
    let nobody = agora_kit::id::new_id();
    let unknown = p.get(&format!("/v1/payments?order_id={nobody}"), Some(&bob)).await.expect(200);
    assert_eq!(theirs, unknown, "another user's order's payments answer as an unknown order's");
    // And another user's wallet as an unknown user's: not found, in the same words.
    let theirs = p.get(&format!("/v1/wallet?user_id={ada_id}"), Some(&bob)).await;
    let unknown = p.get(&format!("/v1/wallet?user_id={nobody}"), Some(&bob)).await;
    assert_eq!(
        (theirs.status, theirs.body.to_string().replace(&ada_id, "ID")),
        (unknown.status, unknown.body.to_string().replace(&nobody, "ID"))
    );
    theirs.error(404, 5);
    // Each wallet is its owner's: Bob's shows Bob's opening balance, whatever Ada spent.
    let bobs = p.get("/v1/wallet", Some(&bob)).await.expect(200);
    let adas = p.get("/v1/wallet", Some(&ada)).await.expect(200);
    assert_ne!(bobs["balance"], adas["balance"], "ada paid 1.00, bob did not: {bobs} {adas}");
    p.stop().await;
}
