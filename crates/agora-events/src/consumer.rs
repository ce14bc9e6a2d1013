//! Running an event handler against a subscription: decode, apply with retries and
//! exponential back-off, dead-letter what keeps failing, and acknowledge only after the
//! effect has committed or the message was dead-lettered.
//!
//! The consumer owns the transaction: it begins it, claims the event id for its group, lets
//! the [`Handler`] apply the effect (and enqueue the events that follow from it) inside, and
//! commits. "Claimed in the same transaction as the effect" holds by construction, which is
//! what makes a redelivery change nothing.
//!
//! Events that arrived together (up to [`BATCH`]) share one transaction: each is claimed and
//! applied under its own span, and one commit makes all of them durable. If any of them fails,
//! the whole transaction rolls back and each is applied again alone, with its own retries and
//! dead-lettering, so one bad event never takes another's effect with it.
//!
//! A shared transaction locks the rows of several events in the order they came, which need
//! not be the order in which a request locks them (product-service reserves products in id
//! order): a lock cycle is possible. So on PostgreSQL a shared transaction waits at most
//! [`SHARED_LOCK_WAIT`] for a lock, then gives up and goes one event at a time: it, and never
//! the request, is what a cycle breaks, and long before PostgreSQL's deadlock check would.

use std::{sync::Arc, time::Duration};

use agora_kit::{
    db::Backend,
    metrics::{ConsumerLabels, TopicLabels, metrics},
    trace_context::{self, Baggage, Incoming, TraceParent},
};
use agora_proto::events::EventEnvelope;
use async_trait::async_trait;
use prost::Message;
use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    BusError, Delivery, EventBus, OutgoingMessage, Subscription,
    outbox::{EventTx, Outbox},
    topics,
};

/// Header on a dead-lettered message: the last error.
pub const ERROR_HEADER: &str = "agora-error";
/// Header on a dead-lettered message: how many attempts were made.
pub const ATTEMPTS_HEADER: &str = "agora-attempts";

/// Most events applied in one transaction. A consumer keeping up finds one or a few waiting;
/// one that fell behind catches up in fewer round trips and commits, while a batch stays short
/// enough that the rows it locks are not held for long.
pub const BATCH: usize = 32;

/// How long a shared transaction waits for a row lock before it is rolled back and its events
/// are applied one at a time (PostgreSQL's `lock_timeout`; see the module's text).
pub const SHARED_LOCK_WAIT: &str = "SET LOCAL lock_timeout = '200ms'";

#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// The service's database cannot be reached (a lost connection, a failover, a server
    /// that is not the primary yet): retried with back-off for as long as it takes, never
    /// dead-lettered. An outage says nothing about the event; dead-lettering it would drop
    /// its effect (a failover of a few seconds once lost a paid order's stock commit so).
    #[error("{0}")]
    Unavailable(String),
    /// Might succeed later (a conflict, a dependency's refusal): retried with back-off up
    /// to `max_attempts`, then dead-lettered.
    #[error("{0}")]
    Retryable(String),
    /// Will never succeed (malformed payload): dead-lettered at once.
    #[error("{0}")]
    Permanent(String),
}

impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        let reason = format!("database: {e}");
        if agora_kit::db::is_unavailable(&e) { Self::Unavailable(reason) } else { Self::Retryable(reason) }
    }
}

/// Applies one kind of event to a service's state.
#[async_trait]
pub trait Handler: Send + Sync {
    /// The event types ([`crate::DomainEvent::TYPE`]) this handler applies; the others on its
    /// topic are acknowledged untouched (and not claimed).
    fn handles(&self) -> &[&'static str];

    /// Applies `envelope` inside `tx`, which already holds the consumer's claim on the event
    /// id. On `Ok` the consumer commits the claim, the effect and whatever the handler
    /// enqueued, together; on `Err` all of it rolls back. `tx` may hold the effects of other
    /// events received with this one: they commit or roll back together.
    async fn handle(&self, tx: &mut EventTx, envelope: &EventEnvelope) -> Result<(), HandlerError>;
}

#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Consumer group (one per service and topic), e.g. `payment-service`.
    pub group: String,
    pub topic: String,
    /// Attempts before a retryable failure is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl ConsumerOptions {
    pub fn new(group: &str, topic: &str) -> Self {
        Self {
            group: group.to_owned(),
            topic: topic.to_owned(),
            max_attempts: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Applies `envelope` at most once for `consumer`: begins a transaction, claims the event id,
/// runs `handler` and commits. `Ok(false)` when nothing was applied: the event is not one the
/// handler applies, or `consumer` claimed it before (a redelivery).
pub async fn apply(
    outbox: &Outbox,
    consumer: &str,
    handler: &dyn Handler,
    envelope: &EventEnvelope,
) -> Result<bool, HandlerError> {
    if !handler.handles().contains(&envelope.event_type.as_str()) {
        return Ok(false);
    }
    let mut tx = outbox.begin().await?;
    if !claim(&mut tx, consumer, &envelope.event_id).await? {
        return Ok(false);
    }
    handler.handle(&mut tx, envelope).await?;
    tx.commit().await?;
    Ok(true)
}

/// Records that `consumer` applied `event_id`, inside the caller's transaction. Returns
/// `false` when it already had, in which case the effect must be skipped.
async fn claim(conn: &mut AnyConnection, consumer: &str, event_id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .bind(agora_kit::time::now_millis())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Consumes `options.topic` as `options.group` until `shutdown`, applying the events that
/// arrived together with `handler` in one transaction of `outbox` (see the module's text).
pub async fn run_consumer(
    bus: Arc<dyn EventBus>,
    options: ConsumerOptions,
    outbox: Outbox,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
) {
    // The DLQ series exists (at 0) from the start, so alerts can watch it.
    drop(metrics().dlq_messages.get_or_create(&TopicLabels { topic: topics::dlq(&options.topic) }));
    let mut reconnect = options.backoff;
    loop {
        let mut subscription = tokio::select! {
            () = shutdown.cancelled() => return,
            sub = bus.subscribe(&options.group, &options.topic) => match sub {
                Ok(sub) => sub,
                Err(e) => {
                    tracing::warn!(topic = %options.topic, error = %e, "cannot subscribe; retrying");
                    if sleep_or_stop(reconnect, &shutdown).await { return; }
                    reconnect = (reconnect * 2).min(options.max_backoff);
                    continue;
                }
            },
        };
        loop {
            let deliveries = tokio::select! {
                () = shutdown.cancelled() => return,
                next = subscription.next_batch(BATCH) => match next {
                    // The back-off starts again once a subscription delivers: one that fails
                    // as soon as it is made waits longer each time.
                    Ok(d) => {
                        reconnect = options.backoff;
                        d
                    }
                    Err(e) => {
                        tracing::warn!(topic = %options.topic, error = %e, "receive failed; resubscribing");
                        break;
                    }
                },
            };
            let done = process(&*bus, &options, &outbox, &*handler, &deliveries, &shutdown).await;
            if let Err(e) = ack_all(&mut *subscription, &deliveries[..done]).await {
                tracing::warn!(topic = %options.topic, error = %e, "ack failed; the messages will be redelivered");
                break;
            }
            if done < deliveries.len() {
                return; // stopped mid-retry: the rest stay unacknowledged for the next run
            }
        }
        if sleep_or_stop(reconnect, &shutdown).await {
            return;
        }
    }
}

/// Acknowledges the last of `deliveries` in each partition: an acknowledgement covers the
/// messages before it there.
async fn ack_all(subscription: &mut dyn Subscription, deliveries: &[Delivery]) -> Result<(), BusError> {
    for (i, delivery) in deliveries.iter().enumerate() {
        let later = &deliveries[i + 1..];
        if !later.iter().any(|d| d.partition == delivery.partition && d.topic == delivery.topic) {
            subscription.ack(delivery).await?;
        }
    }
    Ok(())
}

/// Applies `deliveries`, together when there are several (see the module's text). Returns how
/// many of them, from the first, were applied or dead-lettered: all, unless shutdown interrupted
/// the retries.
async fn process(
    bus: &dyn EventBus,
    options: &ConsumerOptions,
    outbox: &Outbox,
    handler: &dyn Handler,
    deliveries: &[Delivery],
    shutdown: &CancellationToken,
) -> usize {
    let received: Vec<_> = deliveries.iter().map(|delivery| receive(bus, options, delivery)).collect();
    // A message that holds no event goes alone too, so the dead-letter topic keeps the order.
    if received.len() > 1 && received.iter().all(Result::is_ok) {
        let events: Vec<&Received> = received.iter().filter_map(|event| event.as_ref().ok()).collect();
        match apply_together(outbox, &options.group, handler, &events).await {
            Ok(()) => return deliveries.len(),
            Err(error) => {
                tracing::info!(topic = %options.topic, events = events.len(), %error,
                    "events received together rolled back together; applying each alone");
                for event in &events {
                    event
                        .span
                        .in_scope(|| tracing::info!("rolled back with the events received with it; applying it alone"));
                }
            }
        }
    }
    for (done, (delivery, event)) in deliveries.iter().zip(&received).enumerate() {
        let finished = match event {
            Ok(event) => apply_alone(bus, options, outbox, handler, delivery, event, shutdown).await,
            Err(reason) => dead_letter(bus, options, delivery, reason, 1, shutdown).await,
        };
        if finished.is_none() {
            return done;
        }
    }
    deliveries.len()
}

/// An event received, and the consumer span it is applied under.
struct Received {
    envelope: EventEnvelope,
    span: tracing::Span,
    /// The span's trace context, current while the handler runs.
    context: TraceParent,
    baggage: Option<Baggage>,
}

/// Decodes `delivery` and opens its span; `Err` with the reason when it holds no envelope.
fn receive(bus: &dyn EventBus, options: &ConsumerOptions, delivery: &Delivery) -> Result<Received, String> {
    let envelope =
        EventEnvelope::decode(delivery.payload.as_slice()).map_err(|e| format!("not an EventEnvelope: {e}"))?;
    // The handler (and every event it emits) runs in a consumer span that is a child of the
    // publish (and links to it), so the trace goes on across the bus.
    // The transport headers first (the relay's publish span), the envelope's as a fallback.
    let incoming = Incoming::from_headers(|name| {
        delivery.headers.get(name).or_else(|| envelope.headers.get(name)).map(String::as_str)
    });
    let span = tracing::info_span!(
        "process",
        otel.name = %format!("process {}", delivery.topic),
        otel.kind = "consumer",
        messaging.system = bus.system(),
        messaging.destination.name = %delivery.topic,
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.consumer.group.name = %options.group,
        messaging.message.id = %envelope.event_id,
        event_type = %envelope.event_type,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    if let Some(parent) = incoming.parent {
        trace_context::link(&span, parent);
    }
    let context = incoming.hop(&span);
    if let Some(age) = envelope.occurred_at.as_ref().and_then(age) {
        let labels = ConsumerLabels { topic: delivery.topic.clone(), group: options.group.clone() };
        metrics().consumer_lag.get_or_create(&labels).observe(age.as_secs_f64());
    }
    Ok(Received { envelope, span, context, baggage: incoming.baggage })
}

/// Applies every event of `received` in one transaction, each under its own span, and commits
/// once. Any failure rolls all of them back.
async fn apply_together(
    outbox: &Outbox,
    consumer: &str,
    handler: &dyn Handler,
    received: &[&Received],
) -> Result<(), HandlerError> {
    let handled = |event: &&Received| handler.handles().contains(&event.envelope.event_type.as_str());
    if !received.iter().any(handled) {
        return Ok(()); // none of them is this handler's: nothing to claim
    }
    let mut tx = outbox.begin().await?;
    if outbox.db().backend == Backend::Postgres {
        sqlx::Executor::execute(&mut *tx, SHARED_LOCK_WAIT).await?;
    }
    for event in received {
        let envelope = &event.envelope;
        let one = async {
            if handler.handles().contains(&envelope.event_type.as_str())
                && claim(&mut tx, consumer, &envelope.event_id).await?
            {
                handler.handle(&mut tx, envelope).await?;
            }
            Ok::<_, HandlerError>(())
        };
        trace_context::scope_with(event.context, event.baggage.clone(), one).instrument(event.span.clone()).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Applies one event in a transaction of its own, retrying with back-off and dead-lettering
/// what keeps failing; `None` when shutdown interrupted the retries.
async fn apply_alone(
    bus: &dyn EventBus,
    options: &ConsumerOptions,
    outbox: &Outbox,
    handler: &dyn Handler,
    delivery: &Delivery,
    event: &Received,
    shutdown: &CancellationToken,
) -> Option<()> {
    let Received { envelope, span, context, baggage } = event;
    let mut delay = options.backoff;
    let mut attempt = 1;
    loop {
        let applied = apply(outbox, &options.group, handler, envelope);
        match trace_context::scope_with(*context, baggage.clone(), applied).instrument(span.clone()).await {
            Ok(_) => return Some(()),
            Err(HandlerError::Permanent(reason)) => {
                trace_context::fail(span, &reason);
                return dead_letter(bus, options, delivery, &reason, attempt, shutdown).await;
            }
            Err(HandlerError::Retryable(reason)) if attempt >= options.max_attempts => {
                trace_context::fail(span, &reason);
                return dead_letter(bus, options, delivery, &reason, attempt, shutdown).await;
            }
            // An unreachable database is waited out, however long; other failures count.
            Err(error @ (HandlerError::Retryable(_) | HandlerError::Unavailable(_))) => {
                let until_back = matches!(error, HandlerError::Unavailable(_));
                tracing::warn!(event_id = %envelope.event_id, event_type = %envelope.event_type,
                    attempt, until_back, %error, "event handler failed; retrying");
                if sleep_or_stop(delay, shutdown).await {
                    return None;
                }
                delay = (delay * 2).min(options.max_backoff);
                attempt += 1;
            }
        }
    }
}

/// Publishes the original message to the topic's `.dlq` with the error in a header. Keeps
/// trying while the bus refuses: acknowledging without it would lose the message.
async fn dead_letter(
    bus: &dyn EventBus,
    options: &ConsumerOptions,
    delivery: &Delivery,
    reason: &str,
    attempts: u32,
    shutdown: &CancellationToken,
) -> Option<()> {
    tracing::error!(topic = %delivery.topic, offset = delivery.offset, attempts, error = %reason,
        "event sent to the dead-letter topic");
    let mut headers = delivery.headers.clone();
    headers.insert(ERROR_HEADER.to_owned(), reason.to_owned());
    headers.insert(ATTEMPTS_HEADER.to_owned(), attempts.to_string());
    let message = OutgoingMessage {
        topic: topics::dlq(&delivery.topic),
        key: delivery.key.clone(),
        payload: delivery.payload.clone(),
        headers,
    };
    let mut delay = options.backoff;
    while let Err(e) = bus.publish(&message).await {
        tracing::warn!(error = %e, "cannot publish to the dead-letter topic; retrying");
        if sleep_or_stop(delay, shutdown).await {
            return None;
        }
        delay = (delay * 2).min(options.max_backoff);
    }
    metrics().dlq_messages.get_or_create(&TopicLabels { topic: message.topic.clone() }).inc();
    Some(())
}

/// How long ago `at` was (none for a time in the future).
fn age(at: &prost_types::Timestamp) -> Option<Duration> {
    let then = std::time::UNIX_EPOCH + Duration::new(u64::try_from(at.seconds).ok()?, u32::try_from(at.nanos).ok()?);
    std::time::SystemTime::now().duration_since(then).ok()
}

/// Sleeps; true when shutdown came first.
async fn sleep_or_stop(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_out_of_reach_is_retried_without_end_and_anything_else_is_counted() {
        let reset = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(matches!(HandlerError::from(reset), HandlerError::Unavailable(_)));
        assert!(matches!(HandlerError::from(sqlx::Error::PoolTimedOut), HandlerError::Unavailable(_)));
        assert!(matches!(HandlerError::from(sqlx::Error::RowNotFound), HandlerError::Retryable(_)));
    }
}
