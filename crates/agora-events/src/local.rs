//! [`LocalBus`]: the in-process event bus of the embedded mode.
//!
//! Messages go to an append-only log in SQLite rather than a channel, so that a restart on
//! the same data directory loses nothing: published messages stay in the log and each group
//! resumes after the last message it acknowledged, as with Kafka. `sqlite::memory:` gives a
//! throw-away bus for tests. One consumer per group is assumed (no partition assignment).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use agora_kit::db::{self, Backend, Db, Migrations};
use async_trait::async_trait;
use sqlx::{Row, migrate::Migrator};
use tokio::sync::watch;

use crate::{BusError, Delivery, EventBus, OutgoingMessage, Subscription};

static MIGRATIONS: Migrator = sqlx::migrate!("migrations/local-bus");

/// How often a subscriber looks at the log when nothing woke it: a safety net for messages
/// appended by another process sharing the file.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct LocalBus {
    db: Db,
    /// Bumped on every publish so waiting subscribers re-read the log at once.
    published: Arc<watch::Sender<u64>>,
}

impl LocalBus {
    /// Opens (creating if needed) the log at a `sqlite:` URL.
    pub async fn open(url: &str) -> Result<Self, BusError> {
        if Backend::from_url(url).ok() != Some(Backend::Sqlite) {
            return Err(BusError::Unavailable(format!(
                "the in-process bus needs a sqlite: URL, got {}",
                db::redact(url)
            )));
        }
        let db = db::connect(url, Migrations::portable(&MIGRATIONS))
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        Ok(Self { db, published: Arc::new(watch::channel(0).0) })
    }

    /// A throw-away bus for tests and one-off runs.
    pub async fn in_memory() -> Result<Self, BusError> {
        Self::open("sqlite::memory:").await
    }

    /// Messages on `topic` that `group` has not acknowledged yet (its consumer lag).
    pub async fn lag(&self, group: &str, topic: &str) -> Result<i64, BusError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM bus_messages WHERE topic = $1 AND seq > COALESCE((SELECT acked_seq FROM bus_offsets WHERE group_name = $2 AND topic = $1), 0)",
        )
        .bind(topic)
        .bind(group)
        .fetch_one(&self.db.pool)
        .await?)
    }

    /// Every message ever published on `topic`, oldest first (for tests and debugging).
    pub async fn messages(&self, topic: &str) -> Result<Vec<OutgoingMessage>, BusError> {
        let rows = sqlx::query(
            "SELECT topic, partition_key, payload, headers FROM bus_messages WHERE topic = $1 ORDER BY seq",
        )
        .bind(topic)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OutgoingMessage {
                    topic: row.try_get("topic")?,
                    key: row.try_get("partition_key")?,
                    payload: row.try_get("payload")?,
                    headers: decode_headers(&row.try_get::<String, _>("headers")?),
                })
            })
            .collect()
    }
}

#[async_trait]
impl EventBus for LocalBus {
    async fn publish(&self, message: &OutgoingMessage) -> Result<(), BusError> {
        sqlx::query(
            "INSERT INTO bus_messages (topic, partition_key, payload, headers, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&message.topic)
        .bind(&message.key)
        .bind(&message.payload)
        .bind(encode_headers(&message.headers))
        .bind(agora_kit::time::now_millis())
        .execute(&self.db.pool)
        .await?;
        self.published.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>, BusError> {
        let acked: Option<i64> =
            sqlx::query_scalar("SELECT acked_seq FROM bus_offsets WHERE group_name = $1 AND topic = $2")
                .bind(group)
                .bind(topic)
                .fetch_optional(&self.db.pool)
                .await?;
        Ok(Box::new(LocalSubscription {
            db: self.db.clone(),
            group: group.to_owned(),
            topic: topic.to_owned(),
            position: acked.unwrap_or(0),
            wake: self.published.subscribe(),
        }))
    }
}

#[derive(Debug)]
struct LocalSubscription {
    db: Db,
    group: String,
    topic: String,
    /// The seq of the last message handed out.
    position: i64,
    wake: watch::Receiver<u64>,
}

#[async_trait]
impl Subscription for LocalSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        let mut one = self.next_batch(1).await?;
        Ok(one.remove(0))
    }

    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        loop {
            // Mark the current publish count as seen *before* reading, so a publish that lands
            // after the read still wakes us.
            self.wake.borrow_and_update();
            let rows = sqlx::query(
                "SELECT seq, partition_key, payload, headers FROM bus_messages WHERE topic = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(&self.topic)
            .bind(self.position)
            .bind(i64::try_from(max.max(1)).unwrap_or(i64::MAX))
            .fetch_all(&self.db.pool)
            .await?;
            if !rows.is_empty() {
                let mut batch = Vec::with_capacity(rows.len());
                for row in rows {
                    let seq: i64 = row.try_get("seq")?;
                    batch.push(Delivery {
                        topic: self.topic.clone(),
                        key: row.try_get("partition_key")?,
                        payload: row.try_get("payload")?,
                        headers: decode_headers(&row.try_get::<String, _>("headers")?),
                        offset: seq,
                        partition: 0,
                    });
                }
                self.position = batch.last().map_or(self.position, |last| last.offset);
                return Ok(batch);
            }
            tokio::select! {
                _ = self.wake.changed() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        sqlx::query(
            "INSERT INTO bus_offsets (group_name, topic, acked_seq) VALUES ($1, $2, $3)
             ON CONFLICT (group_name, topic) DO UPDATE SET acked_seq = excluded.acked_seq
             WHERE excluded.acked_seq > bus_offsets.acked_seq",
        )
        .bind(&self.group)
        .bind(&self.topic)
        .bind(delivery.offset)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }
}

/// Headers as `key=value` lines; keys and values are trace-context tokens and error texts,
/// with newlines replaced so the format stays unambiguous.
fn encode_headers(headers: &BTreeMap<String, String>) -> String {
    headers
        .iter()
        .map(|(k, v)| format!("{}={}", k.replace(['\n', '='], " "), v.replace('\n', " ")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn decode_headers(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|line| line.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, key: &str, body: &[u8]) -> OutgoingMessage {
        let mut headers = BTreeMap::new();
        headers.insert("traceparent".to_owned(), "00-abc-def-01".to_owned());
        OutgoingMessage { topic: topic.into(), key: key.into(), payload: body.to_vec(), headers }
    }

    #[tokio::test]
    async fn groups_resume_after_their_last_ack() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("bus.db").display());
        let bus = LocalBus::open(&url).await.unwrap();
        for body in [b"1", b"2", b"3"] {
            bus.publish(&message("t", "k", body)).await.unwrap();
        }
        bus.publish(&message("other", "k", b"x")).await.unwrap();

        let mut sub = bus.subscribe("g", "t").await.unwrap();
        let first = sub.next().await.unwrap();
        assert_eq!(first.payload, b"1");
        assert_eq!(first.headers["traceparent"], "00-abc-def-01");
        sub.ack(&first).await.unwrap();
        let second = sub.next().await.unwrap();
        assert_eq!(second.payload, b"2");
        drop(sub); // "crash" before acknowledging the second message

        // Reopen the same file, as after a restart: the unacknowledged message comes back.
        drop(bus);
        let bus = LocalBus::open(&url).await.unwrap();
        let mut sub = bus.subscribe("g", "t").await.unwrap();
        assert_eq!(sub.next().await.unwrap().payload, b"2");
        assert_eq!(sub.next().await.unwrap().payload, b"3");

        // Another group starts from the beginning.
        let mut other = bus.subscribe("h", "t").await.unwrap();
        assert_eq!(other.next().await.unwrap().payload, b"1");
    }

    #[tokio::test]
    async fn a_waiting_subscriber_wakes_on_publish() {
        let bus = LocalBus::in_memory().await.unwrap();
        let mut sub = bus.subscribe("g", "t").await.unwrap();
        let waiter = tokio::spawn(async move { sub.next().await.unwrap().payload });
        tokio::time::sleep(Duration::from_millis(50)).await;
        bus.publish(&message("t", "k", b"late")).await.unwrap();
        let got = tokio::time::timeout(Duration::from_millis(400), waiter).await.unwrap().unwrap();
        assert_eq!(got, b"late");
    }

    #[tokio::test]
    async fn non_sqlite_urls_are_refused() {
        let err = LocalBus::open("postgres://a@b/c").await.unwrap_err();
        assert!(err.to_string().contains("sqlite:"), "{err}");
    }
}
