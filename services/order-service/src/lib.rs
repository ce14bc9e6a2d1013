//! order-service: places orders and follows them to PAID or CANCELLED.
//!
//! Placing an order checks the buyer with user-service and reserves (and prices) stock with
//! product-service over gRPC, then writes the order and its `OrderPlaced` event in one
//! transaction. Payment results arrive as events; a sweeper cancels orders whose payment
//! never came.
//!
//! # Layout
//! - [`domain`]: `OrderRequest`, `Order`, `OrderStatus`, `IdempotencyKey`.
//! - [`placing`]: the `CreateOrder` steps across services.
//! - [`store`]: orders, items and the outbox.
//! - [`events`]: the `agora.payments.v1` consumer.
//! - [`sweeper`]: cancels orders pending past the payment deadline.
//! - [`grpc`]: the protobuf edge. [`error`]: [`Error`] → `tonic::Status`.

pub mod audit;
pub mod consumer;
pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod placing;
pub mod store;
pub mod sweeper;

use std::{sync::Arc, time::Duration};

use agora_events::{Background, Host, topics};
use agora_proto::order::order_service_server::OrderServiceServer;
use serde::Deserialize;
use tonic::server::NamedService;

pub use error::Error;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `sqlite:PATH` or `postgres://…`; this service's own database.
    pub database_url: String,
    /// user-service, to check that the buyer exists: `HOST:PORT[,HOST:PORT…]` or
    /// `consul://NAME` (see [`agora_discovery::Resolver`]).
    pub user_addr: String,
    /// product-service, to reserve and price stock; same forms as `user_addr`.
    pub product_addr: String,
    /// An order still waiting for payment after this long is cancelled.
    pub payment_timeout_secs: u64,
    /// How often the sweeper looks for such orders.
    pub sweep_interval_secs: u64,
    /// Turns the two addresses into balanced channels (and watches Consul for them).
    #[serde(skip)]
    pub resolver: agora_discovery::Resolver,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite:data/order.db".to_owned(),
            user_addr: agora_kit::defaults::USER_ADDR.to_owned(),
            product_addr: agora_kit::defaults::PRODUCT_ADDR.to_owned(),
            payment_timeout_secs: 900,
            sweep_interval_secs: 30,
            resolver: agora_discovery::Resolver::fixed(),
        }
    }
}

pub const SERVICE_NAME: &str = <OrderServiceServer<grpc::OrderApi> as NamedService>::NAME;

/// Consumer group for payment events.
pub const CONSUMER: &str = "order-service";

pub async fn run(config: Config, host: Host) -> anyhow::Result<()> {
    let db = store::connect(&config.database_url).await?;
    let background = Background::new(CONSUMER, db, host);
    let store = store::Store::new(background.outbox());
    let placer = placing::Placer::new(
        store.clone(),
        config.resolver.channel("user-service", &config.user_addr)?,
        config.resolver.channel("product-service", &config.product_addr)?,
    );
    background.consume(topics::PAYMENTS, Arc::new(consumer::Consumer));
    let sweeper = sweeper::Sweeper {
        store: store.clone(),
        timeout: Duration::from_secs(config.payment_timeout_secs),
        interval: Duration::from_secs(config.sweep_interval_secs.max(1)),
    };
    background.spawn(|shutdown| sweeper.run(shutdown));

    let routes = tonic::service::Routes::new(OrderServiceServer::new(grpc::OrderApi::new(store, placer)));
    background.serve(routes, &[SERVICE_NAME]).await
}
