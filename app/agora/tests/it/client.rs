//! `agora client` against a running `agora`: each call prints the gateway's answer (or one
//! field of it), `order --wait` follows the saga to its end, and a refusal exits non-zero with
//! the gateway's own message.

use std::process::{Command, Output};

use crate::all::{Platform, start};

/// `agora client --gateway URL ARGS...`.
fn client(platform: &Platform, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["client", "--gateway", &platform.url])
        .args(args)
        .env_remove("AGORA_TOKEN")
        .env_remove("AGORA_CLIENT_PASSWORD")
        .output()
        .unwrap()
}

/// What a successful call printed (one line).
fn ok(platform: &Platform, args: &[&str]) -> String {
    let out = client(platform, args);
    assert!(out.status.success(), "agora client {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// What a refused call said on stderr.
fn refused(platform: &Platform, args: &[&str]) -> String {
    let out = client(platform, args);
    assert!(!out.status.success(), "agora client {args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
    assert!(out.stdout.is_empty(), "a refusal prints no answer");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn a_customer_signs_up_orders_and_follows_the_order_to_paid() {
    let data = tempfile::tempdir().unwrap();
    let platform = start(data.path());

    let catalog: serde_json::Value = serde_json::from_str(&ok(&platform, &["products"])).unwrap();
    let products = catalog["products"].as_array().unwrap();
    assert_eq!(products.len(), 5, "the demo catalog, every page: {catalog}");
    let mug = products.iter().find(|p| p["name"] == "Ceramic mug").unwrap()["id"].as_str().unwrap().to_owned();

    let sign_up =
        ["--get", "email", "sign-up", "--email", "Eve@Example.com", "--password", "a long password", "--name", "Eve"];
    let email = ok(&platform, &sign_up);
    assert_eq!(email, "eve@example.com");
    let sign_in = ["--get", "accessToken", "sign-in", "--email", "eve@example.com", "--password", "a long password"];
    let token = ok(&platform, &sign_in);
    assert_eq!(token.split('.').count(), 3, "a JWT, printed bare: {token}");

    // 2 mugs of 12.00 from the 100.00 a new wallet holds: paid.
    let item = format!("{mug}:2");
    let order = ["--token", &token, "order", &item, "--idempotency-key", "client-1", "--wait", "60"];
    let placed: serde_json::Value = serde_json::from_str(&ok(&platform, &order)).unwrap();
    assert_eq!(placed["status"], "ORDER_STATUS_PAID", "{placed}");
    assert_eq!(placed["total"]["amountMinor"], "2400");
    let id = placed["id"].as_str().unwrap();
    let again = ["--token", &token, "--get", "id", "order", &item, "--idempotency-key", "client-1"];
    assert_eq!(ok(&platform, &again), id, "the same key places the order once");
    assert_eq!(ok(&platform, &["--token", &token, "--get", "status", "get-order", id]), "ORDER_STATUS_PAID");

    // Refusals: the method, the path, the status and the gateway's message.
    let wrong = refused(&platform, &["sign-in", "--email", "eve@example.com", "--password", "not it"]);
    assert!(wrong.contains("POST /v1/auth/login answered 401 Unauthorized: invalid email or password"), "{wrong}");
    let anonymous = refused(&platform, &["create-product", "--name", "Kettle", "--price-minor", "3000"]);
    assert!(anonymous.contains("POST /v1/products answered 401 Unauthorized"), "{anonymous}");
    let not_admin =
        refused(&platform, &["--token", &token, "create-product", "--name", "Kettle", "--price-minor", "3000"]);
    assert!(not_admin.contains("answered 403 Forbidden"), "{not_admin}");
    let missing = refused(&platform, &["--token", &token, "get-order", "0190b2c4-0000-7000-8000-000000000000"]);
    assert!(missing.contains("answered 404 Not Found"), "{missing}");
    let malformed = refused(&platform, &["--token", &token, "order", &format!("{mug}:many")]);
    assert!(malformed.contains("the quantity after ':' must be a number"), "{malformed}");

    // The admin adds a product, which the catalog then lists.
    let (admin_email, admin_password) = (&platform.admin.0, &platform.admin.1);
    let admin_sign_in = ["--get", "accessToken", "sign-in", "--email", admin_email, "--password", admin_password];
    let admin = ok(&platform, &admin_sign_in);
    let create = ["--token", &admin, "--get", "name", "create-product", "--name", "Kettle", "--price-minor", "3000"];
    assert_eq!(ok(&platform, &create), "Kettle");
    assert_eq!(ok(&platform, &["--get", "products.5.name", "products"]), "Kettle");
}
