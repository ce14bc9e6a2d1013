//! The transactional outbox: a service's state change and the events announcing it commit in
//! one database transaction, [`EventTx`]. Its [`EventTx::enqueue`] writes an outbox row and its
//! [`EventTx::commit`] wakes the relay when it wrote one, so an event goes out at once instead
//! of at the relay's next poll, and no code path can commit events and forget the relay.

use std::{
    ops::{Deref, DerefMut},
    sync::Arc,
};

use agora_kit::db::Db;
use agora_proto::events::EventEnvelope;
use prost::Message;
use sqlx::{Any, AnyConnection, Transaction};
use tokio::sync::Notify;

use crate::{DomainEvent, event::envelope};

/// Where a service's transactions begin: its database and the relay that publishes what they
/// enqueue ([`crate::Relay::waker`]).
#[derive(Debug, Clone)]
pub struct Outbox {
    db: Db,
    relay: Arc<Notify>,
}

impl Outbox {
    pub fn new(db: Db, relay: Arc<Notify>) -> Self {
        Self { db, relay }
    }

    /// For a service that consumes events but publishes none: nothing listens to its wake-ups.
    pub fn without_relay(db: Db) -> Self {
        Self::new(db, Arc::new(Notify::new()))
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Begins a transaction whose events commit with it.
    pub async fn begin(&self) -> Result<EventTx, sqlx::Error> {
        Ok(EventTx { tx: self.db.pool.begin().await?, relay: self.relay.clone(), enqueued: false })
    }
}

/// A database transaction that can carry events. It dereferences to the connection, so
/// queries run on it as on any transaction (`.execute(&mut *tx)`); dropped without
/// [`EventTx::commit`], it rolls back, events included.
#[derive(Debug)]
pub struct EventTx {
    tx: Transaction<'static, Any>,
    relay: Arc<Notify>,
    enqueued: bool,
}

impl EventTx {
    /// Adds `payload` to the outbox in this transaction; returns the event id.
    pub async fn enqueue<E: DomainEvent>(&mut self, aggregate_id: &str, payload: &E) -> Result<String, sqlx::Error> {
        let env = envelope(aggregate_id, payload);
        insert(&mut self.tx, E::TOPIC, &env).await?;
        self.enqueued = true;
        Ok(env.event_id)
    }

    /// Commits; then, if an event was enqueued, wakes the relay.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        if self.enqueued {
            self.relay.notify_one();
        }
        Ok(())
    }
}

impl Deref for EventTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl DerefMut for EventTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

async fn insert(conn: &mut AnyConnection, topic: &str, env: &EventEnvelope) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO outbox (event_id, topic, partition_key, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&env.event_id)
        .bind(topic)
        .bind(&env.aggregate_id)
        .bind(env.encode_to_vec())
        .bind(agora_kit::time::now_millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// Rows not yet published (the relay's backlog), for metrics and tests.
pub async fn backlog(pool: &sqlx::AnyPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL").fetch_one(pool).await
}
