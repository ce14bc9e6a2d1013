//! Test support: a fresh, empty database per test on both backends.
//!
//! PostgreSQL comes from `AGORA_TEST_POSTGRES_URL` (an admin connection URL that `make test`
//! exports after starting the server). Without it the PostgreSQL half of a test is skipped
//! with a message, except under `CI=true`, where a missing PostgreSQL fails the test.

use sqlx::{Connection, Executor, postgres::PgConnection};

#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub url: String,
}

impl TestDatabase {
    /// A private in-memory SQLite database (one pool connection keeps it alive).
    pub fn sqlite() -> Self {
        Self { url: "sqlite::memory:".to_owned() }
    }

    /// A new database on the test PostgreSQL server, or `None` when there is none (outside CI).
    pub async fn postgres() -> Option<Self> {
        let Ok(admin_url) = std::env::var("AGORA_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but AGORA_TEST_POSTGRES_URL is not set: run the suite with `make test`, \
                 which installs and starts PostgreSQL"
            );
            eprintln!("skipping the PostgreSQL half: AGORA_TEST_POSTGRES_URL is not set (use `make test`)");
            return None;
        };
        let name = format!("agora_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach test PostgreSQL at {admin_url}: {e}"));
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        conn.close().await.ok();
        Some(Self { url: with_database(&admin_url, &name) })
    }
}

/// `admin_url` with its database name replaced.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Runs an async test body once on SQLite and once on PostgreSQL:
/// `agora_kit::db_tests!(name, body)` where `body: async fn(TestDatabase)`.
#[macro_export]
macro_rules! db_tests {
    ($($name:ident => $body:path),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    $body($crate::testing::TestDatabase::sqlite()).await;
                }

                #[tokio::test]
                async fn postgres() {
                    if let Some(db) = $crate::testing::TestDatabase::postgres().await {
                        $body(db).await;
                    }
                }
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_swapped_in_urls() {
        assert_eq!(with_database("postgres://a@h:1/postgres", "t"), "postgres://a@h:1/t");
        assert_eq!(with_database("postgres://a@h:1/postgres?sslmode=disable", "t"), "postgres://a@h:1/t?sslmode=disable");
        assert_eq!(with_database("postgres://a@h:1", "t"), "postgres://a@h:1/t");
    }
}
