//! The outbox relay: publishes unpublished outbox rows in insertion order and marks each one
//! only after the bus has accepted it.
//!
//! A crash between the publish and the mark republishes that one row on restart; consumers
//! deduplicate by event id, so the effect still happens once. Rows are published strictly in
//! order and the relay stops at the first failure, so one aggregate's events never overtake
//! each other.
//!
//! Several replicas of a service share one outbox, and one of them publishes it: the one
//! that holds the outbox's lease ([`agora_kit::db::Lease`]). The others wait, trying for the
//! lease every second, and the first to get it after the holder dies (or loses its database
//! connection) carries on where it stopped.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use agora_kit::{
    db::Db,
    trace_context::{self, TRACEPARENT, TraceParent},
};
use agora_proto::events::EventEnvelope;
use prost::Message;
use sqlx::Row;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{BusError, EventBus, Outbox, OutgoingMessage};

/// Rows fetched per round; large enough to drain a burst quickly, small enough that a
/// restart redoes little.
const BATCH: i64 = 100;
/// How long an idle relay waits before looking again when nobody pinged it.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Upper bound of the back-off while the bus is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a waiting replica tries for the lease, and the holder checks it still has it.
const LEASE_CHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Relay {
    db: Db,
    bus: Arc<dyn EventBus>,
    wake: Arc<Notify>,
    /// The owning service, as the backlog metric's label.
    service: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("outbox query failed: {0}")]
    Db(#[from] sqlx::Error),
}

/// The envelope's propagation headers (the W3C `traceparent`), repeated as transport headers
/// so that tools reading the topic see the trace without decoding the payload.
fn transport_headers(payload: &[u8]) -> BTreeMap<String, String> {
    EventEnvelope::decode(payload).map(|envelope| envelope.headers.into_iter().collect()).unwrap_or_default()
}

impl Relay {
    pub fn new(db: Db, bus: Arc<dyn EventBus>) -> Self {
        Self { db, bus, wake: Arc::new(Notify::new()), service: String::new() }
    }

    /// Names the service whose outbox this is (the `agora_outbox_backlog` label).
    pub fn named(mut self, service: &str) -> Self {
        self.service = service.to_owned();
        self
    }

    /// Rows not yet published, now.
    pub async fn backlog(&self) -> Result<i64, RelayError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&self.db.pool)
            .await?;
        Ok(count)
    }

    /// Where the service's transactions begin: their events are this relay's to publish, and
    /// committing one wakes it, so events go out at once instead of at the next poll.
    pub fn outbox(&self) -> Outbox {
        Outbox::new(self.db.clone(), self.wake.clone())
    }

    /// Publishes until `shutdown`, while this replica holds the outbox's lease; bus outages
    /// are retried with back-off, never fatal.
    pub async fn run(self, shutdown: CancellationToken) {
        let name = format!("agora.outbox.{}", self.service);
        let mut waited = false;
        loop {
            match self.db.try_lease(&name).await {
                Ok(Some(lease)) => {
                    if waited {
                        tracing::info!(outbox = %self.service, "took over publishing the outbox");
                    }
                    self.publish_holding(lease, &shutdown).await;
                    waited = false;
                }
                Ok(None) => {
                    if !waited {
                        tracing::info!(outbox = %self.service, "another replica publishes the outbox; standing by");
                    }
                    waited = true;
                }
                Err(e) => tracing::warn!(error = %e, "cannot try for the outbox's lease; will retry"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(LEASE_CHECK) => {}
            }
        }
    }

    /// Publishes until `shutdown` or until the lease is lost.
    async fn publish_holding(&self, mut lease: agora_kit::db::Lease, shutdown: &CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let backlog = agora_kit::metrics::metrics()
            .outbox_backlog
            .get_or_create(&agora_kit::metrics::OutboxLabels { service: self.service.clone() })
            .clone();
        let mut checked = tokio::time::Instant::now();
        loop {
            if checked.elapsed() >= LEASE_CHECK {
                if !lease.held().await {
                    tracing::warn!(outbox = %self.service, "lost the outbox's lease (its database session ended)");
                    return;
                }
                checked = tokio::time::Instant::now();
            }
            let published = self.publish_batch().await;
            // A round that found less than a batch published everything there was: the backlog
            // is empty without asking (asking cost a query per round, a round per commit).
            match published {
                Ok(n) if (n as i64) < BATCH => {
                    backlog.set(0);
                }
                _ => {
                    if let Ok(rows) = self.backlog().await {
                        backlog.set(rows);
                    }
                }
            }
            let pause = match published {
                Ok(n) if n as i64 == BATCH => Duration::ZERO,
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    IDLE_POLL
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "outbox relay failed; will retry");
                    let pause = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    pause
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Publishes up to one batch of unpublished rows; returns how many were published.
    pub async fn publish_batch(&self) -> Result<usize, RelayError> {
        let rows = sqlx::query(
            "SELECT id, topic, partition_key, payload FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&self.db.pool)
        .await?;
        let mut batch = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            let payload: Vec<u8> = row.try_get("payload")?;
            let topic: String = row.try_get("topic")?;
            let mut headers = transport_headers(&payload);
            // The publish is a producer span in the trace of the request that wrote the row;
            // the message carries that span's context, which its consumers continue.
            let span = tracing::info_span!(
                "publish",
                otel.name = %format!("send {topic}"),
                otel.kind = "producer",
                messaging.system = self.bus.system(),
                messaging.destination.name = %topic,
                messaging.operation.type = "send",
                messaging.operation.name = "send",
                otel.status_code = tracing::field::Empty,
                otel.status_description = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            );
            let parent = headers.get(TRACEPARENT).and_then(|v| TraceParent::parse(v));
            let context = trace_context::hop(&span, parent);
            headers.insert(TRACEPARENT.to_owned(), context.to_string());
            ids.push(row.try_get::<i64, _>("id")?);
            batch.push((OutgoingMessage { topic, key: row.try_get("partition_key")?, headers, payload }, span));
        }
        let spans: Vec<tracing::Span> = batch.iter().map(|(_, span)| span.clone()).collect();
        let results = self.bus.publish_all(batch).await;
        // The rows up to the first failure are published. A later row that went out anyway
        // goes again with its batch's retry: consumers drop the duplicate by its event id.
        let sent = results.iter().take_while(|r| r.is_ok()).count();
        let failure = results
            .into_iter()
            .zip(spans)
            .find_map(|(result, span)| result.err().inspect(|e| trace_context::fail(&span, &e.to_string())));
        self.mark_published(&ids[..sent]).await?;
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(sent),
        }
    }

    /// Marks the rows `ids` published, in one statement.
    async fn mark_published(&self, ids: &[i64]) -> Result<(), RelayError> {
        if ids.is_empty() {
            return Ok(());
        }
        let placeholders: Vec<String> = (2..ids.len() + 2).map(|n| format!("${n}")).collect();
        let sql = format!("UPDATE outbox SET published_at = $1 WHERE id IN ({})", placeholders.join(", "));
        // Only placeholders are formatted in; the ids are bound.
        let mut update = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(agora_kit::time::now_millis());
        for id in ids {
            update = update.bind(id);
        }
        update.execute(&self.db.pool).await?;
        Ok(())
    }
}
