//! The database pool, chosen by URL: `sqlite:…` for the embedded default, `postgres:…` for
//! the distributed stack. Queries are written once in the SQL both backends accept (`$1`
//! placeholders, `ON CONFLICT`, `RETURNING`, integers and text only) and run through sqlx's
//! `Any` driver. Only the DDL differs, and it is written once too: in PostgreSQL's dialect,
//! from which SQLite's is derived (see [`Migrations`]).
//!
//! A PostgreSQL URL may name several servers, as libpq's do (`postgres://USER@H1:P1,H2:P2/DB?
//! target_session_attrs=read-write`): the pool then follows the one that accepts writes through
//! a failover (see [`servers`]). [`Db::with_reads`] adds a second pool, on a standby, for reads
//! that may trail the primary by a stated bound.

pub mod servers;

use std::{
    future::Future,
    str::FromStr,
    sync::{Arc, Once},
    time::Duration,
};

use sqlx::{
    AnyConnection, AnyPool, AssertSqlSafe, Connection as _, Executor, SqlSafeStr,
    any::{AnyConnectOptions, AnyPoolOptions},
    migrate::{MigrateError, Migration, MigrationSource, Migrator},
    pool::PoolConnectionMetadata,
};

/// Which engine a [`Db`] talks to; DDL and a few pragmas depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// OpenTelemetry's `db.system` value, which the store spans carry.
    pub fn system(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgresql",
        }
    }

    /// SQL for the database server's clock, in Unix milliseconds, the same value everywhere
    /// in one statement. Times that are compared with each other across instances (an
    /// order's age, a reservation's) are stamped and compared with this one clock, so
    /// instances whose clocks disagree cannot make them wrong.
    pub fn now_millis_sql(self) -> &'static str {
        match self {
            Self::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS BIGINT)",
            Self::Postgres => "CAST(EXTRACT(EPOCH FROM statement_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// The backend of a connection (for store functions that run inside a caller's
    /// transaction and have no [`Db`] at hand).
    pub fn of(conn: &sqlx::AnyConnection) -> Self {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") { Backend::Sqlite } else { Backend::Postgres }
    }

    pub fn from_url(url: &str) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            Err(DbError::UnsupportedUrl(redact(url)))
        }
    }
}

/// A service's migrations: one folder, embedded at compile time with `sqlx::migrate!`.
///
/// A service's DDL is written in PostgreSQL's dialect, and SQLite's is derived from it by two
/// rewrites ([`sqlite_dialect`]): an identity key becomes `INTEGER PRIMARY KEY AUTOINCREMENT`
/// and `BIGINT` becomes `INTEGER` (SQLite's 64-bit integer either way). The derived text is
/// byte for byte what the earlier per-backend folders held, so databases migrated before keep
/// their checksums.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    written: &'static Migrator,
    derive_sqlite: bool,
}

impl Migrations {
    /// Migrations in PostgreSQL's dialect; SQLite runs them through [`sqlite_dialect`].
    pub const fn postgres_dialect(written: &'static Migrator) -> Self {
        Self { written, derive_sqlite: true }
    }

    /// Migrations that run as written on either backend.
    pub const fn portable(written: &'static Migrator) -> Self {
        Self { written, derive_sqlite: false }
    }

    /// The migrations `backend` runs.
    pub async fn for_backend(&self, backend: Backend) -> Result<ForBackend, MigrateError> {
        if backend == Backend::Postgres || !self.derive_sqlite {
            return Ok(ForBackend::Written(self.written));
        }
        let derived = self
            .written
            .iter()
            .map(|m| {
                let sql = AssertSqlSafe(sqlite_dialect(m.sql.as_str())).into_sql_str();
                Migration::new(m.version, m.description.clone(), m.migration_type, sql, m.no_tx)
            })
            .collect();
        Ok(ForBackend::Derived(Migrator::new(Derived(derived)).await?))
    }
}

/// The migrations one backend runs: as written, or derived for it.
#[derive(Debug)]
pub enum ForBackend {
    Written(&'static Migrator),
    Derived(Migrator),
}

impl std::ops::Deref for ForBackend {
    type Target = Migrator;

    fn deref(&self) -> &Migrator {
        match self {
            Self::Written(migrator) => migrator,
            Self::Derived(migrator) => migrator,
        }
    }
}

/// SQLite's dialect of PostgreSQL DDL as Agora writes it (see [`Migrations`]).
pub fn sqlite_dialect(postgres: &str) -> String {
    postgres
        .replace("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "INTEGER PRIMARY KEY AUTOINCREMENT")
        .replace("BIGINT", "INTEGER")
}

/// Migrations made at run time, as a source for [`Migrator::new`].
#[derive(Debug)]
struct Derived(Vec<Migration>);

impl MigrationSource<'static> for Derived {
    fn resolve(
        self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>> + Send + 'static>>
    {
        Box::pin(async move { Ok(self.0) })
    }
}

/// The calling crate's `migrations/` folder, in PostgreSQL's dialect, as [`Migrations`] (every
/// service keeps its schema there; the crate needs `sqlx` as a dependency).
#[macro_export]
macro_rules! service_migrations {
    () => {{
        static MIGRATIONS: ::sqlx::migrate::Migrator = ::sqlx::migrate!();
        $crate::db::Migrations::postgres_dialect(&MIGRATIONS)
    }};
}

/// A pool plus the backend it talks to, and perhaps a second pool for reads off a standby.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// Follows the primary when the URL names several servers.
    follower: Option<Arc<servers::Follower>>,
    reads: Option<Reads>,
}

/// Reads that may be served by a standby (see [`Db::with_reads`]).
#[derive(Debug, Clone)]
struct Reads {
    pool: AnyPool,
    follower: Arc<servers::Follower>,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL {0:?}: use sqlite:PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("cannot create the directory for {path}: {source}")]
    Directory { path: String, source: std::io::Error },
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("migrations failed on {url}: {source}")]
    Migrate { url: String, source: sqlx::migrate::MigrateError },
    #[error("none of the database servers {servers} answers as {target:?} asks (target_session_attrs)")]
    NoServer { servers: String, target: servers::Target },
}

/// The `db.system` of a connection (for store functions that run inside a caller's
/// transaction and have no [`Db`] at hand).
pub fn system_of(conn: &sqlx::AnyConnection) -> &'static str {
    Backend::of(conn).system()
}

/// Marks the current span failed with a database error. `Fault`'s `From<sqlx::Error>` calls
/// it, so an error that leaves a store method fails that method's span.
///
/// Each store method is a span `#[tracing::instrument(name = "SELECT orders", skip_all,
/// fields(db.system = …))]`: its name is `OPERATION table` and it carries `db.system`. The
/// exporter completes it as OpenTelemetry's database conventions want it (a CLIENT span with
/// `db.operation.name` and `db.collection.name` from its name; see `telemetry`).
pub fn failed(error: &sqlx::Error) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    tracing::Span::current().set_status(opentelemetry::trace::Status::error(error.to_string()));
}

static DRIVERS: Once = Once::new();

/// How many times a pool of this process moved to another server (a failover). A call waiting
/// on the server a pool left (paused rather than dead, it holds its connections without
/// answering) will not get an answer in time; [`crate::patience`] runs such a call again when
/// the count changes.
static MOVES: std::sync::LazyLock<tokio::sync::watch::Sender<u64>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::Sender::new(0));

/// Changes each time a pool of this process moves to another server.
pub fn moves() -> tokio::sync::watch::Receiver<u64> {
    MOVES.subscribe()
}

pub(crate) fn note_move() {
    MOVES.send_modify(|n| *n += 1);
}

/// Connects to `url` and applies the backend's migrations.
///
/// SQLite files (and their directory) are created when missing. A SQLite pool holds a single
/// connection: SQLite serialises writers anyway, a single connection rules out the
/// `SQLITE_BUSY` upgrade deadlock between two writing transactions, and it keeps a
/// `sqlite::memory:` database alive for the pool's lifetime.
pub async fn connect(url: &str, migrations: Migrations) -> Result<Db, DbError> {
    DRIVERS.call_once(sqlx::any::install_default_drivers);
    let backend = Backend::from_url(url)?;
    let shown = redact(url);
    let url = match backend {
        Backend::Sqlite => sqlite_url(url)?,
        Backend::Postgres => url.to_owned(),
    };
    let (pool, follower) = match backend {
        Backend::Sqlite => {
            let options =
                AnyConnectOptions::from_str(&url).map_err(|source| DbError::Connect { url: shown.clone(), source })?;
            // A file the process opened itself cannot hang up: no ping before each use.
            let pool = AnyPoolOptions::new()
                .test_before_acquire(false)
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        // WAL is refused (harmlessly) by in-memory databases.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        Ok(())
                    })
                })
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(|source| DbError::Connect { url: shown.clone(), source })?;
            (pool, None)
        }
        Backend::Postgres => postgres_pool(&url, &shown, Duration::ZERO, None).await?,
    };
    let migrator =
        migrations.for_backend(backend).await.map_err(|source| DbError::Migrate { url: shown.clone(), source })?;
    match backend {
        Backend::Sqlite => migrator.run(&pool).await.map_err(|source| DbError::Migrate { url: shown, source })?,
        Backend::Postgres => migrate_alone(&pool, backend, &migrator, &shown).await?,
    }
    crate::metrics::metrics().track_pool(&database_name(&url), pool.clone());
    Ok(Db { pool, backend, follower, reads: None })
}

/// A pool on `url` without migrations, for tools that read a service's database (`agora
/// reconcile`); a PostgreSQL URL may name several servers, as for [`connect`].
pub async fn open(url: &str) -> Result<AnyPool, DbError> {
    DRIVERS.call_once(sqlx::any::install_default_drivers);
    let shown = redact(url);
    match Backend::from_url(url)? {
        Backend::Postgres => Ok(postgres_pool(url, &shown, Duration::ZERO, None).await?.0),
        Backend::Sqlite => AnyPoolOptions::new()
            .test_before_acquire(false)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(|source| DbError::Connect { url: shown, source }),
    }
}

/// How long a request waits for a connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection used this recently is handed out as it is; one idle for longer is pinged first
/// (see [`alive`]).
const TRUSTED_FOR: Duration = Duration::from_millis(500);
/// How long a process starting waits for the server its URL asks for (a cluster may be
/// electing a primary just then).
const LOCATE_PATIENCE: Duration = Duration::from_secs(30);

/// A PostgreSQL pool on `url`; on a URL of several servers, pointed at the one that fits and
/// kept there by a follower (`staleness` and `primary` for a follower of standbys).
async fn postgres_pool(
    url: &str,
    shown: &str,
    staleness: Duration,
    primary: Option<Arc<servers::Follower>>,
) -> Result<(AnyPool, Option<Arc<servers::Follower>>), DbError> {
    // sqlx's own check pings every connection before every use: a round trip that was about a
    // tenth of product-service's CPU per read (docs/benchmarks.md). [`alive`] pings only the
    // idle.
    let pool_options =
        AnyPoolOptions::new().max_connections(10).acquire_timeout(ACQUIRE_TIMEOUT).test_before_acquire(false);
    let connect_failed = |source| DbError::Connect { url: shown.to_owned(), source };
    let Some(servers) = servers::Servers::parse(url)? else {
        let options = AnyConnectOptions::from_str(url).map_err(connect_failed)?;
        let pool = pool_options.before_acquire(|conn, meta| Box::pin(alive(conn, meta))).connect_with(options);
        return Ok((pool.await.map_err(connect_failed)?, None));
    };
    let follower = servers::Follower::locate(servers, staleness, primary, LOCATE_PATIENCE).await?;
    let admit = follower.clone();
    let fresh = follower.clone();
    let pool = pool_options
        .after_connect(move |conn, _| {
            let admit = admit.clone();
            Box::pin(async move { admit.admit(conn).await })
        })
        .before_acquire(move |conn, meta| {
            let fresh = fresh.opened_since_move(meta.age);
            Box::pin(async move { Ok(fresh && alive(conn, meta).await?) })
        })
        .connect_with(follower.options())
        .await
        .map_err(connect_failed)?;
    tracing::info!(database = %database_name(url), server = %follower.current(), "database server found");
    tokio::spawn(follower.clone().follow(pool.clone(), database_name(url)));
    Ok((pool, Some(follower)))
}

/// Whether a pooled connection may be handed out: yes if it was used within [`TRUSTED_FOR`] (a
/// server that went away since fails the query, as UNAVAILABLE, which callers retry), else if
/// it answers a ping. A connection in steady use is not pinged at all, and one that sat idle
/// while its server restarted is replaced before anyone uses it.
async fn alive(conn: &mut AnyConnection, meta: PoolConnectionMetadata) -> Result<bool, sqlx::Error> {
    if meta.idle_for < TRUSTED_FOR {
        return Ok(true);
    }
    match conn.ping().await {
        Ok(()) => Ok(true),
        Err(error) => {
            tracing::info!(%error, "an idle database connection is gone; taking another");
            Ok(false)
        }
    }
}

impl Db {
    /// Adds a pool for reads on `url` (PostgreSQL; typically its servers with
    /// `target_session_attrs=prefer-standby`), used while its server's replay trails by at most
    /// `staleness` (see [`servers::Follower::fresh`]); [`Db::reader`] falls back to the primary
    /// otherwise. A URL of one server is read from as it is, with no bound checked.
    pub async fn with_reads(mut self, url: &str, staleness: Duration) -> Result<Self, DbError> {
        if Backend::from_url(url)? != Backend::Postgres || self.backend != Backend::Postgres {
            return Err(DbError::UnsupportedUrl(format!(
                "{}: reads off a standby need PostgreSQL for both URLs",
                redact(url)
            )));
        }
        let shown = redact(url);
        let (pool, follower) = postgres_pool(url, &shown, staleness, self.follower.clone()).await?;
        self.reads = follower.map(|follower| Reads { pool, follower });
        Ok(self)
    }

    /// The pool for reads that may trail the primary by the stated bound: the standby's while
    /// it is fresh enough, else the primary's. Writes, and reads that decide a write, use
    /// [`Db::pool`].
    pub fn reader(&self) -> &AnyPool {
        match &self.reads {
            Some(reads) if reads.follower.fresh() || !self.primary_found() => &reads.pool,
            _ => &self.pool,
        }
    }

    /// False while the follower of a URL of several servers finds none that accepts writes
    /// (a failover); then a standby's reads are the newest there are.
    fn primary_found(&self) -> bool {
        self.follower.as_ref().is_none_or(|f| f.found())
    }

    /// Where reads go now, for logs and tests: `primary` or the standby's address.
    pub fn reads_from(&self) -> String {
        match &self.reads {
            Some(reads) if std::ptr::eq(self.reader(), &reads.pool) => reads.follower.current().to_owned(),
            _ => "primary".to_owned(),
        }
    }
}

/// What the pool metrics call a database: its name on a server, its file for SQLite.
fn database_name(url: &str) -> String {
    let path = url.split('?').next().unwrap_or_default();
    match path.strip_prefix("sqlite:") {
        Some(file) => file.trim_start_matches("//").to_owned(),
        None => path.rsplit('/').next().unwrap_or_default().to_owned(),
    }
}

/// The key of the advisory lock that serialises Agora's schema changes ("agora" in ASCII).
const SCHEMA_LOCK: i64 = 0x0061_676f_7261;

/// Held while a process changes the schema, so that replicas starting together on one
/// PostgreSQL database take turns: two concurrent `CREATE TABLE IF NOT EXISTS` of one table
/// can collide there (sqlx's own migration lock comes after it creates its bookkeeping table).
/// SQLite has a single writer already, so there it holds nothing.
#[derive(Debug)]
pub struct SchemaLock {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
}

impl Db {
    /// Waits for the schema lock.
    pub async fn lock_schema(&self) -> Result<SchemaLock, sqlx::Error> {
        lock_schema(&self.pool, self.backend).await
    }
}

async fn lock_schema(pool: &AnyPool, backend: Backend) -> Result<SchemaLock, sqlx::Error> {
    if !matches!(backend, Backend::Postgres) {
        return Ok(SchemaLock { conn: None });
    }
    // A session lock on a connection of its own; the schema changes use others.
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)").bind(SCHEMA_LOCK).execute(&mut *conn).await?;
    Ok(SchemaLock { conn: Some(conn) })
}

impl SchemaLock {
    pub async fn release(mut self) -> Result<(), sqlx::Error> {
        if let Some(mut conn) = self.conn.take() {
            sqlx::query("SELECT pg_advisory_unlock($1)").bind(SCHEMA_LOCK).execute(&mut *conn).await?;
        }
        Ok(())
    }
}

impl Drop for SchemaLock {
    fn drop(&mut self) {
        // Not released (an error on the way): close the connection, which ends its session and
        // so its lock, rather than return a locked connection to the pool.
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

/// Work that at most one of several replicas does at a time (publishing one outbox, in
/// order): a PostgreSQL session lock, held as long as its connection lives. A process that
/// dies, or loses its connection, loses the lease, and another replica's next `try_lease`
/// takes it. SQLite databases belong to one process, so there the lease is always granted.
#[derive(Debug)]
pub struct Lease {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
}

impl Db {
    /// Takes the lease `name` unless another session holds it (then `None`).
    pub async fn try_lease(&self, name: &str) -> Result<Option<Lease>, sqlx::Error> {
        if !matches!(self.backend, Backend::Postgres) {
            return Ok(Some(Lease { conn: None }));
        }
        let mut conn = self.pool.acquire().await?;
        let taken: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(lease_key(name)).fetch_one(&mut *conn).await?;
        // Not taken: the connection goes back to the pool holding nothing.
        Ok(taken.then_some(Lease { conn: Some(conn) }))
    }
}

impl Lease {
    /// True while the session that holds the lease answers.
    pub async fn held(&mut self) -> bool {
        match &mut self.conn {
            Some(conn) => sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok(),
            None => true,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Closing the session releases the lock; a locked connection never goes back to the pool.
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

/// A lease's advisory-lock key: FNV-1a of its name, the same in every process.
fn lease_key(name: &str) -> i64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Runs `migrator` under the schema lock.
async fn migrate_alone(pool: &AnyPool, backend: Backend, migrator: &Migrator, shown: &str) -> Result<(), DbError> {
    let failed = |source: sqlx::Error| DbError::Migrate { url: shown.to_owned(), source: source.into() };
    let lock = lock_schema(pool, backend).await.map_err(failed)?;
    migrator.run(pool).await.map_err(|source| DbError::Migrate { url: shown.to_owned(), source })?;
    lock.release().await.map_err(failed)
}

/// Adds `mode=rwc` (create if missing) and creates the parent directory of a file URL.
fn sqlite_url(url: &str) -> Result<String, DbError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || rest.contains("mode=memory") {
        return Ok(url.to_owned());
    }
    if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| DbError::Directory { path: path.to_owned(), source })?;
    }
    if rest.contains("mode=") {
        Ok(url.to_owned())
    } else if rest.contains('?') {
        Ok(format!("{url}&mode=rwc"))
    } else {
        Ok(format!("{url}?mode=rwc"))
    }
}

/// The URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Whether `e` says the database could not be reached or could not take the write now (a
/// lost connection, a failover, a server that is not the primary yet), rather than anything
/// about the statement: trying again later may succeed.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception), 57P01-57P03 (the server shutting down or
        // not accepting connections yet), 25006 (a write reached a standby: a failover is
        // under way).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "25006")),
        _ => false,
    }
}

/// True when `err` is a unique-constraint violation (a duplicate insert).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_backend() {
        assert_eq!(Backend::from_url("sqlite:data/x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::from_url("postgres://a@b/c").unwrap(), Backend::Postgres);
        assert!(Backend::from_url("mysql://a@b/c").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://agora:s3cret@db:5432/x"), "postgres://agora:***@db:5432/x");
        assert_eq!(redact("postgres://agora@db/x"), "postgres://agora@db/x");
        assert_eq!(redact("sqlite:data/x.db"), "sqlite:data/x.db");
    }

    #[test]
    fn sqlite_files_are_created_with_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/user.db");
        let url = sqlite_url(&format!("sqlite:{}", path.display())).unwrap();
        assert!(url.ends_with("?mode=rwc"));
        assert!(path.parent().unwrap().is_dir());
        assert_eq!(sqlite_url("sqlite::memory:").unwrap(), "sqlite::memory:");
    }

    #[tokio::test]
    async fn an_idle_connection_whose_session_ended_is_replaced_before_anyone_uses_it() {
        let Some(database) = crate::testing::TestDatabase::postgres().await else { return };
        let pool = open(&database.url).await.unwrap();
        let session = "SELECT pg_backend_pid()";
        let first: i32 = sqlx::query_scalar(session).fetch_one(&pool).await.unwrap();
        // Ended from another connection, as a restarting server ends it.
        let admin = open(&database.url).await.unwrap();
        let ended: bool =
            sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(first).fetch_one(&admin).await.unwrap();
        assert!(ended, "the first session was ended");
        tokio::time::sleep(TRUSTED_FOR + Duration::from_millis(100)).await;
        let second: i32 =
            sqlx::query_scalar(session).fetch_one(&pool).await.expect("the pool hands out a live connection");
        assert_ne!(first, second, "on a new session");
    }
}
