//! The two tables every event-producing or event-consuming service keeps in its own
//! database: `outbox` (events waiting to be published) and `processed_events` (event ids a
//! consumer has applied). Created idempotently at start, next to the service's migrations.

use agora_kit::db::{self, Backend, Db, Migrations};
use sqlx::Executor;

/// Connects a service's database: its own migrations (`agora_kit::service_migrations!()`),
/// then the outbox and processed-event tables.
pub async fn connect(url: &str, migrations: Migrations) -> anyhow::Result<Db> {
    let db = db::connect(url, migrations).await?;
    ensure(&db).await?;
    Ok(db)
}

/// A service store's two schema functions, for the calling crate's `migrations/` folder (in
/// PostgreSQL's dialect; SQLite's is derived): `connect(url)`, which connects, migrates and
/// creates the outbox tables, and `migrations()`, the schema itself (for tests and checks).
#[macro_export]
macro_rules! service_schema {
    () => {
        /// Connects, migrates, and creates the outbox tables.
        pub async fn connect(url: &str) -> ::anyhow::Result<::agora_kit::db::Db> {
            ::agora_events::schema::connect(url, migrations()).await
        }

        /// This service's schema: `migrations/`, in PostgreSQL's dialect (SQLite's is derived).
        pub fn migrations() -> ::agora_kit::db::Migrations {
            ::agora_kit::service_migrations!()
        }
    };
}

const SQLITE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        partition_key TEXT NOT NULL,
        payload BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        published_at INTEGER
    )",
    "CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL",
    "CREATE TABLE IF NOT EXISTS processed_events (
        consumer TEXT NOT NULL,
        event_id TEXT NOT NULL,
        processed_at INTEGER NOT NULL,
        PRIMARY KEY (consumer, event_id)
    )",
];

const POSTGRES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS outbox (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        partition_key TEXT NOT NULL,
        payload BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        published_at BIGINT
    )",
    "CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL",
    "CREATE TABLE IF NOT EXISTS processed_events (
        consumer TEXT NOT NULL,
        event_id TEXT NOT NULL,
        processed_at BIGINT NOT NULL,
        PRIMARY KEY (consumer, event_id)
    )",
];

/// Creates the outbox and processed-event tables if they do not exist.
pub async fn ensure(db: &Db) -> Result<(), sqlx::Error> {
    let statements = match db.backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    // Replicas starting together on one database take turns (see `SchemaLock`).
    let lock = db.lock_schema().await?;
    for statement in statements {
        db.pool.execute(*statement).await?;
    }
    lock.release().await
}
