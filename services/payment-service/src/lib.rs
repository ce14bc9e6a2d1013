//! payment-service: wallets and the payments taken from them.
//!
//! A wallet opens with a configured balance when `UserRegistered` arrives (or on first use,
//! whichever comes first; both paths insert-if-absent, so the opening balance is granted
//! once). `OrderPlaced` debits the wallet or declines, writing the payment and
//! `PaymentSucceeded`/`PaymentFailed` in one transaction. `OrderCancelled` refunds a payment
//! that had succeeded.
//!
//! # Layout
//! - [`domain`]: `Payment`, `PaymentStatus`, `Wallet`, `TopUp`.
//! - [`store`]: wallets, payments and the outbox.
//! - [`events`]: consumers of `agora.users.v1` and `agora.orders.v1`.
//! - [`grpc`]: the protobuf edge. [`error`]: [`Error`] → `tonic::Status`.

pub mod audit;
pub mod consumer;
pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod store;

use std::sync::Arc;

use agora_events::{Background, Host, topics};
use agora_kit::money::Money;
use agora_proto::payment::payment_service_server::PaymentServiceServer;
use serde::Deserialize;
use tonic::server::NamedService;

pub use error::Error;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `sqlite:PATH` or `postgres://…`; this service's own database.
    pub database_url: String,
    /// Wallet currency (ISO 4217).
    pub currency: String,
    /// What a new wallet holds, in minor units: a demo platform needs buyers with money.
    pub opening_balance_minor: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite:data/payment.db".to_owned(),
            currency: "USD".to_owned(),
            opening_balance_minor: 100_00,
        }
    }
}

pub const SERVICE_NAME: &str = <PaymentServiceServer<grpc::PaymentApi> as NamedService>::NAME;

/// Consumer group for user and order events.
pub const CONSUMER: &str = "payment-service";

pub async fn run(config: Config, host: Host) -> anyhow::Result<()> {
    let opening = Money::new(&config.currency, config.opening_balance_minor)
        .map_err(|e| anyhow::anyhow!("invalid opening balance in config: {e}"))?;
    let db = store::connect(&config.database_url).await?;
    let background = Background::new(CONSUMER, db, host);
    let store = store::Store::new(background.outbox(), opening);
    let consumer = Arc::new(consumer::Consumer::new(store.clone()));
    for topic in [topics::USERS, topics::ORDERS] {
        background.consume(topic, consumer.clone());
    }

    let routes = tonic::service::Routes::new(PaymentServiceServer::new(grpc::PaymentApi::new(store)));
    background.serve(routes, &[SERVICE_NAME]).await
}
