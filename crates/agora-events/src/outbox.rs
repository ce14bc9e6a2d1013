//! Writing events into the outbox, inside the caller's transaction, so that the state change
//! and its announcement commit or roll back together.

use agora_proto::events::EventEnvelope;
use prost::Message;
use sqlx::AnyConnection;

use crate::{DomainEvent, event::envelope};

/// Adds `payload` to the outbox of the transaction behind `conn`; returns the event id.
pub async fn enqueue<E: DomainEvent>(
    conn: &mut AnyConnection,
    aggregate_id: &str,
    payload: &E,
) -> Result<String, sqlx::Error> {
    let env = envelope(aggregate_id, payload);
    insert(conn, E::TOPIC, &env).await?;
    Ok(env.event_id)
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
