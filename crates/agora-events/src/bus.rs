//! The bus abstraction: the outbox relay publishes through it and consumers read from it.
//! [`crate::LocalBus`] implements it in-process; Kafka implements the same traits.

use std::collections::BTreeMap;

use async_trait::async_trait;

/// A message to publish. `key` decides the partition, so one aggregate's events stay in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub topic: String,
    pub key: String,
    /// An encoded `EventEnvelope`.
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

/// A message handed to a consumer; acknowledge it after its effect has committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    /// Position in the topic (or partition); what an acknowledgement commits.
    pub offset: i64,
    pub partition: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the event bus is unavailable: {0}")]
    Unavailable(String),
    #[error("the event bus rejected the message: {0}")]
    Rejected(String),
}

impl From<sqlx::Error> for BusError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unavailable(e.to_string())
    }
}

#[async_trait]
pub trait EventBus: Send + Sync + std::fmt::Debug {
    /// What carries the messages, as OpenTelemetry's `messaging.system` names it.
    fn system(&self) -> &'static str {
        "agora_local"
    }

    /// Returns once the bus has durably accepted the message.
    async fn publish(&self, message: &OutgoingMessage) -> Result<(), BusError>;

    /// Publishes `messages` in order, each one under its span; returns one result per
    /// message up to the first failure (the rest were not tried). A bus that keeps each
    /// key's order with several messages in flight sends them at once instead.
    async fn publish_all(&self, messages: Vec<(OutgoingMessage, tracing::Span)>) -> Vec<Result<(), BusError>> {
        let mut results = Vec::with_capacity(messages.len());
        for (message, span) in messages {
            let result = tracing::Instrument::instrument(self.publish(&message), span).await;
            let failed = result.is_err();
            results.push(result);
            if failed {
                break;
            }
        }
        results
    }

    /// Joins consumer group `group` on `topic`, resuming after its last acknowledged message.
    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>, BusError>;
}

#[async_trait]
pub trait Subscription: Send + std::fmt::Debug {
    /// Waits for the next message.
    async fn next(&mut self) -> Result<Delivery, BusError>;

    /// Waits for the next message, and returns with it up to `max - 1` more that have arrived
    /// already, in order: what came together is applied in one transaction (see
    /// [`crate::run_consumer`]). A bus that cannot tell what has arrived returns one.
    async fn next_batch(&mut self, _max: usize) -> Result<Vec<Delivery>, BusError> {
        Ok(vec![self.next().await?])
    }

    /// Commits the group's position past `delivery`. Unacknowledged messages are delivered
    /// again after a restart.
    async fn ack(&mut self, delivery: &Delivery) -> Result<(), BusError>;
}
