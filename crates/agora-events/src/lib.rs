//! Agora's asynchronous backbone: the event envelope, the transactional outbox and its relay,
//! the [`EventBus`] trait with its in-process and Kafka implementations, and idempotent
//! consumers.
//!
//! The guarantee the saga relies on: a state change and the event announcing it commit in
//! one database transaction (the outbox); the relay publishes each row at least once and marks
//! it only after the bus accepted it; a consumer records the event id in the same transaction
//! as its effect, so redelivery changes nothing. At-least-once delivery, exactly-once effect.
//!
//! # Layout
//! - [`event`]: [`DomainEvent`] (payload type → topic), envelopes, topics.
//! - [`schema`]: the outbox and processed-event tables, per backend.
//! - [`outbox`]: [`Outbox`] and [`EventTx`], a transaction that carries events and wakes the
//!   relay when it commits them.
//! - [`relay`]: publish unpublished outbox rows in order.
//! - [`bus`]: the [`EventBus`] / [`Subscription`] traits.
//! - [`local`]: [`LocalBus`], the in-process bus over a SQLite log.
//! - [`kafka`]: [`KafkaBus`], Apache Kafka through rdkafka.
//! - [`consumer`]: run a [`Handler`] in a transaction that holds the event's claim, with
//!   retries, backoff and a dead-letter topic.
//! - [`background`]: [`Host`], what a service runs on (bus, listener, shutdown), and
//!   [`Background`], its relay, consumers and periodic tasks beside its gRPC server.
//! - `testing` (feature): one service served for a test on a loopback port and an in-memory bus.

pub mod background;
pub mod bus;
pub mod consumer;
pub mod event;
pub mod kafka;
pub mod local;
pub mod outbox;
pub mod relay;
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;

pub use background::{Background, Host};
pub use bus::{BusError, Delivery, EventBus, OutgoingMessage, Subscription};
pub use consumer::{ConsumerOptions, Handler, HandlerError, apply, run_consumer};
pub use event::{DomainEvent, decode, topics};
pub use kafka::{KafkaBus, KafkaOptions, KafkaProtocol, KafkaSasl, KafkaSecurity, SaslMechanism};
pub use local::LocalBus;
pub use outbox::{EventTx, Outbox};
pub use relay::Relay;
