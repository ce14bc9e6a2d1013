//! The `users` table. Registration writes the account and its `UserRegistered` event in one
//! transaction.

use agora_events::Outbox;
use agora_kit::{
    db::{self, Db},
    identity::Role,
};
use sqlx::{Row, any::AnyRow};

use crate::{
    Error,
    domain::{NewUser, User},
    events,
};

agora_events::service_schema!();

#[derive(Debug, Clone)]
pub struct Store {
    outbox: Outbox,
}

const COLUMNS: &str = "id, email, name, role, created_at";

impl Store {
    pub fn new(outbox: Outbox) -> Self {
        Self { outbox }
    }

    pub fn db(&self) -> &Db {
        self.outbox.db()
    }

    /// Creates an account with `role` and enqueues `UserRegistered` in the same transaction.
    #[tracing::instrument(name = "INSERT users", skip_all, fields(db.system = self.db().backend.system()))]
    pub async fn create(&self, new: &NewUser, password_hash: &str, role: Role) -> Result<User, Error> {
        let user = User {
            id: agora_kit::id::new_id(),
            email: new.email.as_str().to_owned(),
            name: new.name.as_str().to_owned(),
            role,
            created_at: agora_kit::time::now_millis(),
        };
        let mut tx = self.outbox.begin().await?;
        match insert(&mut tx, &user, password_hash).await {
            Err(e) if db::is_unique_violation(&e) => return Err(Error::EmailTaken),
            other => other?,
        }
        events::registered(&mut tx, &user).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// The account and its password hash.
    #[tracing::instrument(name = "SELECT users", skip_all, fields(db.system = self.db().backend.system()))]
    pub async fn find_by_email(&self, email: &str) -> Result<Option<(User, String)>, Error> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS}, password_hash FROM users WHERE email = $1")))
                .bind(email)
                .fetch_optional(&self.db().pool)
                .await?;
        row.map(|r| Ok((user_from_row(&r)?, r.try_get("password_hash")?))).transpose()
    }

    #[tracing::instrument(name = "SELECT users", skip_all, fields(db.system = self.db().backend.system()))]
    pub async fn find_by_id(&self, id: &str) -> Result<Option<User>, Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM users WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.db().pool)
            .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }
}

async fn insert(conn: &mut sqlx::AnyConnection, user: &User, password_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO users (id, email, name, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.name)
        .bind(password_hash)
        .bind(user.role.as_str())
        .bind(user.created_at)
        .execute(conn)
        .await?;
    Ok(())
}

fn user_from_row(row: &AnyRow) -> Result<User, Error> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| anyhow::anyhow!("unknown role {role:?} in users table"))?,
        created_at: row.try_get("created_at")?,
    })
}
