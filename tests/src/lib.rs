//! Agora's end-to-end suite: the platform's parts put together on real infrastructure
//! (`make test` starts it). It sits on top of every layer, so it may use any crate; the crates
//! below it test themselves alone.
//!
//! The suites are this package's `[[test]]` targets:
//! - `discovery`: balanced channels following product-service instances through a real
//!   Consul agent: registration, health, ejection, retries, an agent restart.
//! - `migrations`: no released migration changes, on either backend.
//! - `saga`: order-service with the other services in-process over gRPC, every RPC and the
//!   saga, on SQLite and PostgreSQL.
//! - `rest`: real HTTP through the gateway to the services in-process.
//!
//! The in-process suites start the platform with `agora::platform` on [`databases`].

use agora_kit::testing::TestDatabase;

/// A fresh database per service, beside `db` (the user service's), as `agora::platform`'s
/// `database(service)` wants them.
pub async fn databases(db: &TestDatabase) -> impl Fn(&str) -> String + use<> {
    let (user, product, order, payment) =
        (db.url.clone(), db.another().await.url, db.another().await.url, db.another().await.url);
    move |service| match service {
        "user" => user.clone(),
        "product" => product.clone(),
        "order" => order.clone(),
        _ => payment.clone(),
    }
}
