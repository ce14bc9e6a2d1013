//! product-service: the catalog and its stock.
//!
//! Stock is taken per order in three idempotent steps: `ReserveStock` (called by
//! order-service while placing an order), then `CommitReservation` when the order is paid or
//! `ReleaseReservation` when it is cancelled. The last two also run from the order events
//! (`OrderPaid`, `OrderCancelled`), which is how the saga's compensation reaches this service.
//!
//! # Layout
//! - [`domain`]: `NewProduct`, `ProductPatch`, `Product`, `ReservationRequest`.
//! - [`store`]: products, reservations and their items.
//! - [`consumer`]: the `agora.orders.v1` consumer.
//! - [`expiry`]: releases reservations no order will ever settle.
//! - [`demo`]: the demo catalog an empty catalog may start with.
//! - [`grpc`]: the protobuf edge.
//! - [`error`]: [`Error`] → `tonic::Status`.

pub mod audit;
pub mod consumer;
pub mod demo;
pub mod domain;
pub mod error;
pub mod expiry;
pub mod grpc;
pub mod store;

use std::{sync::Arc, time::Duration};

use agora_events::{Background, Host, topics};
use agora_proto::product::product_service_server::ProductServiceServer;
use serde::Deserialize;
use tonic::server::NamedService;

pub use error::Error;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `sqlite:PATH` or `postgres://…`; this service's own database.
    pub database_url: String,
    /// Where catalog reads may go instead (PostgreSQL: the standbys, e.g.
    /// `postgres://…@H1:P1,H2:P2/product?target_session_attrs=prefer-standby`); writes and
    /// reservations always use `database_url`.
    pub database_read_url: Option<String>,
    /// How far, in milliseconds, the read database's replay may trail what it received before
    /// catalog reads go back to the primary.
    pub read_staleness_ms: u64,
    /// A reservation still open this long after it was made is released: its order was never
    /// written (order-service failed between reserving and writing it, and the client never
    /// retried), so no event will ever settle it. Must stay well above order-service's payment
    /// timeout (900 s), after which every written order is settled one way or the other.
    pub reservation_ttl_secs: u64,
    /// Add the demo catalog ([`demo`]) when the catalog is empty, before serving.
    pub seed_demo: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite:data/product.db".to_owned(),
            database_read_url: None,
            read_staleness_ms: 1000,
            reservation_ttl_secs: 3600,
            seed_demo: false,
        }
    }
}

pub const SERVICE_NAME: &str = <ProductServiceServer<grpc::ProductApi> as NamedService>::NAME;

/// Consumer group for the order events.
pub const CONSUMER: &str = "product-service";

pub async fn run(config: Config, host: Host) -> anyhow::Result<()> {
    let mut db = store::connect(&config.database_url).await?;
    if let Some(reads) = &config.database_read_url {
        db = db.with_reads(reads, std::time::Duration::from_millis(config.read_staleness_ms)).await?;
        tracing::info!(reads_from = %db.reads_from(), "catalog reads may go to a standby");
    }
    let store = store::Store::new(db.clone());
    if config.seed_demo {
        match demo::seed(&store).await {
            Ok(0) => {}
            Ok(added) => tracing::info!(products = added, "demo catalog added"),
            // The platform works without demo data.
            Err(e) => tracing::warn!(error = %e, "could not add the demo catalog"),
        }
    }
    // Reservations settle from events; product-service announces none.
    let background = Background::without_publishing(CONSUMER, db, host);
    background.consume(topics::ORDERS, Arc::new(consumer::Consumer));
    let expiry = expiry::Expiry {
        store: store.clone(),
        ttl: Duration::from_secs(config.reservation_ttl_secs),
        interval: expiry::INTERVAL,
    };
    background.spawn(|shutdown| expiry.run(shutdown));

    let routes = tonic::service::Routes::new(ProductServiceServer::new(grpc::ProductApi::new(store)));
    background.serve(routes, &[SERVICE_NAME]).await
}
