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
//! - [`events`]: the `agora.orders.v1` consumer.
//! - [`grpc`]: the protobuf edge.
//! - [`error`]: [`Error`] → `tonic::Status`.

pub mod audit;
pub mod consumer;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod store;

use std::sync::Arc;

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
}

impl Default for Config {
    fn default() -> Self {
        Self { database_url: "sqlite:data/product.db".to_owned() }
    }
}

pub const SERVICE_NAME: &str = <ProductServiceServer<grpc::ProductApi> as NamedService>::NAME;

/// Consumer group for the order events.
pub const CONSUMER: &str = "product-service";

pub async fn run(config: Config, host: Host) -> anyhow::Result<()> {
    let db = store::connect(&config.database_url).await?;
    let store = store::Store::new(db.clone());
    // Reservations settle from events; product-service announces none.
    let background = Background::without_publishing(CONSUMER, db, host);
    background.consume(topics::ORDERS, Arc::new(consumer::Consumer));

    let routes = tonic::service::Routes::new(ProductServiceServer::new(grpc::ProductApi::new(store)));
    background.serve(routes, &[SERVICE_NAME]).await
}
