//! Products and reservations. Every stock change is a conditional `UPDATE … WHERE stock >= n`
//! inside a transaction, so stock never goes negative, whatever runs concurrently.

use agora_kit::{
    db::{self, Db},
    money::Money,
    time::now_millis,
};
use sqlx::{AnyConnection, Row, any::AnyRow};

use crate::{
    Error,
    domain::{NewProduct, Product, ProductPatch, Reservation, ReservationRequest, ReservationState, ReservedLine},
};

agora_events::service_schema!();

const COLUMNS: &str = "id, name, description, price_currency, price_minor, stock, created_at, updated_at";

#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    #[tracing::instrument(name = "INSERT products", skip_all, fields(db.system = self.db.backend.system()))]
    pub async fn create(&self, new: NewProduct) -> Result<Product, Error> {
        let now = now_millis();
        let product = Product {
            id: agora_kit::id::new_id(),
            name: new.name,
            description: new.description,
            price: new.price,
            stock: new.stock,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO products ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )))
        .bind(&product.id)
        .bind(&product.name)
        .bind(&product.description)
        .bind(product.price.currency())
        .bind(product.price.minor())
        .bind(product.stock)
        .bind(product.created_at)
        .bind(product.updated_at)
        .execute(&self.db.pool)
        .await?;
        Ok(product)
    }

    #[tracing::instrument(name = "UPDATE products", skip_all, fields(db.system = self.db.backend.system()))]
    pub async fn update(&self, id: &str, patch: ProductPatch) -> Result<Product, Error> {
        let mut tx = self.db.pool.begin().await?;
        let mut product = fetch(&mut tx, id).await?.ok_or_else(|| Error::NotFound(id.to_owned()))?;
        if let Some(name) = patch.name {
            product.name = name;
        }
        if let Some(description) = patch.description {
            product.description = description;
        }
        if let Some(price) = patch.price {
            product.price = price;
        }
        if let Some(stock) = patch.stock {
            product.stock = stock;
        }
        product.updated_at = now_millis();
        sqlx::query(
            "UPDATE products SET name = $1, description = $2, price_currency = $3, price_minor = $4, stock = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(&product.name)
        .bind(&product.description)
        .bind(product.price.currency())
        .bind(product.price.minor())
        .bind(product.stock)
        .bind(product.updated_at)
        .bind(&product.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(product)
    }

    /// A catalog read: served by the standby when one is configured and fresh (see
    /// [`Db::reader`]), like [`Store::list`].
    #[tracing::instrument(name = "SELECT products", skip_all, fields(db.system = self.db.backend.system()))]
    pub async fn get(&self, id: &str) -> Result<Product, Error> {
        let mut conn = self.db.reader().acquire().await?;
        fetch(&mut conn, id).await?.ok_or_else(|| Error::NotFound(id.to_owned()))
    }

    /// Up to `limit` products after `after` (by id, which is creation order), plus whether
    /// more follow.
    #[tracing::instrument(name = "SELECT products", skip_all, fields(db.system = self.db.backend.system()))]
    pub async fn list(&self, after: Option<&str>, limit: i64) -> Result<(Vec<Product>, bool), Error> {
        let rows = match after {
            Some(after) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM products WHERE id > $1 ORDER BY id LIMIT $2"
                )))
                .bind(after)
                .bind(limit + 1)
                .fetch_all(self.db.reader())
                .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM products ORDER BY id LIMIT $1")))
                    .bind(limit + 1)
                    .fetch_all(self.db.reader())
                    .await?
            }
        };
        let mut products = rows.iter().map(product_from_row).collect::<Result<Vec<_>, _>>()?;
        let more = products.len() as i64 > limit;
        products.truncate(usize::try_from(limit).unwrap_or(0));
        Ok((products, more))
    }

    /// Reserves every line or none. A repeated call for the same order returns the existing
    /// reservation unchanged.
    #[tracing::instrument(name = "INSERT reservations", skip_all, fields(db.system = self.db.backend.system()))]
    pub async fn reserve(&self, request: &ReservationRequest) -> Result<Reservation, Error> {
        let mut tx = self.db.pool.begin().await?;
        if let Some(existing) = reservation(&mut tx, &request.order_id).await? {
            return match existing.state {
                ReservationState::Released => Err(Error::Released(request.order_id.clone())),
                _ => Ok(existing),
            };
        }
        let now = now_millis();
        // Stamped by the database's clock, which the expiry compares with.
        let stamp = self.db.backend.now_millis_sql();
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO reservations (order_id, state, created_at, updated_at) VALUES ($1, $2, {stamp}, {stamp})"
        )))
        .bind(&request.order_id)
        .bind(ReservationState::Reserved.as_str())
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            if db::is_unique_violation(&e) {
                // A concurrent call for the same order won the race; answer as it did.
                drop(tx);
                return self.existing(&request.order_id).await;
            }
            return Err(e.into());
        }
        let mut lines = Vec::with_capacity(request.lines.len());
        for (product_id, quantity) in &request.lines {
            let taken = sqlx::query(
                "UPDATE products SET stock = stock - $1, updated_at = $2 WHERE id = $3 AND stock >= $1 RETURNING price_currency, price_minor",
            )
            .bind(quantity.get())
            .bind(now)
            .bind(product_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = taken else {
                let product = fetch(&mut tx, product_id).await?.ok_or_else(|| Error::NotFound(product_id.clone()))?;
                return Err(Error::InsufficientStock {
                    product_id: product_id.clone(),
                    requested: quantity.get(),
                    available: product.stock,
                });
            };
            let unit_price = money(row.try_get("price_currency")?, row.try_get("price_minor")?)?;
            sqlx::query(
                "INSERT INTO reservation_items (order_id, product_id, quantity, unit_price_currency, unit_price_minor) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&request.order_id)
            .bind(product_id)
            .bind(quantity.get())
            .bind(unit_price.currency())
            .bind(unit_price.minor())
            .execute(&mut *tx)
            .await?;
            lines.push(ReservedLine { product_id: product_id.clone(), quantity: quantity.get(), unit_price });
        }
        tx.commit().await?;
        Ok(Reservation { order_id: request.order_id.clone(), state: ReservationState::Reserved, lines })
    }

    async fn existing(&self, order_id: &str) -> Result<Reservation, Error> {
        let mut conn = self.db.pool.acquire().await?;
        let existing =
            reservation(&mut conn, order_id).await?.ok_or_else(|| Error::NoReservation(order_id.to_owned()))?;
        match existing.state {
            ReservationState::Released => Err(Error::Released(order_id.to_owned())),
            _ => Ok(existing),
        }
    }

    #[tracing::instrument(name = "UPDATE reservations", skip_all, fields(db.system = self.db.backend.system()))]
    pub async fn commit(&self, order_id: &str) -> Result<Reservation, Error> {
        let mut tx = self.db.pool.begin().await?;
        let done = commit_in(&mut tx, order_id).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Releases up to `limit` reservations still open `ttl` after they were made (by the
    /// database's clock); returns their order ids.
    #[tracing::instrument(name = "UPDATE reservations", skip_all, fields(db.system = self.db.backend.system()))]
    pub async fn expire(&self, ttl: std::time::Duration, limit: i64) -> Result<Vec<String>, Error> {
        let now = self.db.backend.now_millis_sql();
        let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT order_id FROM reservations WHERE state = 'reserved' AND created_at < {now} - $1 \
             ORDER BY created_at LIMIT $2"
        )))
        .bind(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        let mut released = Vec::with_capacity(ids.len());
        for id in ids {
            let mut tx = self.db.pool.begin().await?;
            // Conditional on the state: an order event settling it meanwhile wins.
            let was_open = sqlx::query("SELECT 1 FROM reservations WHERE order_id = $1 AND state = 'reserved'")
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if was_open && release_in(&mut tx, &id).await.is_ok() {
                tx.commit().await?;
                released.push(id);
            }
        }
        Ok(released)
    }

    #[tracing::instrument(name = "UPDATE reservations", skip_all, fields(db.system = self.db.backend.system()))]
    pub async fn release(&self, order_id: &str) -> Result<Reservation, Error> {
        let mut tx = self.db.pool.begin().await?;
        let done = release_in(&mut tx, order_id).await?;
        tx.commit().await?;
        Ok(done)
    }
}

/// Marks a reservation committed; already committed is fine, released or unknown is not.
#[tracing::instrument(name = "UPDATE reservations", skip_all, fields(db.system = agora_kit::db::system_of(conn)))]
pub async fn commit_in(conn: &mut AnyConnection, order_id: &str) -> Result<Reservation, Error> {
    sqlx::query(
        "UPDATE reservations SET state = 'committed', updated_at = $1 WHERE order_id = $2 AND state = 'reserved'",
    )
    .bind(now_millis())
    .bind(order_id)
    .execute(&mut *conn)
    .await?;
    let current = reservation(conn, order_id).await?.ok_or_else(|| Error::NoReservation(order_id.to_owned()))?;
    match current.state {
        ReservationState::Released => Err(Error::Released(order_id.to_owned())),
        _ => Ok(current),
    }
}

/// Returns reserved stock. Releasing twice is fine; releasing an unknown order records a
/// tombstone so that a reservation arriving late for it is refused.
#[tracing::instrument(name = "UPDATE reservations", skip_all, fields(db.system = agora_kit::db::system_of(conn)))]
pub async fn release_in(conn: &mut AnyConnection, order_id: &str) -> Result<Reservation, Error> {
    let now = now_millis();
    let released = sqlx::query(
        "UPDATE reservations SET state = 'released', updated_at = $1 WHERE order_id = $2 AND state = 'reserved'",
    )
    .bind(now)
    .bind(order_id)
    .execute(&mut *conn)
    .await?;
    if released.rows_affected() == 1 {
        let current = reservation(conn, order_id).await?.ok_or_else(|| Error::NoReservation(order_id.to_owned()))?;
        for line in &current.lines {
            sqlx::query("UPDATE products SET stock = stock + $1, updated_at = $2 WHERE id = $3")
                .bind(line.quantity)
                .bind(now)
                .bind(&line.product_id)
                .execute(&mut *conn)
                .await?;
        }
        return Ok(current);
    }
    match reservation(conn, order_id).await? {
        Some(current) if current.state == ReservationState::Committed => Err(Error::Committed(order_id.to_owned())),
        Some(current) => Ok(current),
        None => {
            sqlx::query("INSERT INTO reservations (order_id, state, created_at, updated_at) VALUES ($1, 'released', $2, $2) ON CONFLICT DO NOTHING")
                .bind(order_id)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            Ok(Reservation { order_id: order_id.to_owned(), state: ReservationState::Released, lines: vec![] })
        }
    }
}

async fn fetch(conn: &mut AnyConnection, id: &str) -> Result<Option<Product>, Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM products WHERE id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(product_from_row).transpose()
}

async fn reservation(conn: &mut AnyConnection, order_id: &str) -> Result<Option<Reservation>, Error> {
    let Some(row) = sqlx::query("SELECT state FROM reservations WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let state: String = row.try_get("state")?;
    let state =
        ReservationState::parse(&state).ok_or_else(|| anyhow::anyhow!("unknown reservation state {state:?}"))?;
    let lines = sqlx::query(
        "SELECT product_id, quantity, unit_price_currency, unit_price_minor FROM reservation_items WHERE order_id = $1 ORDER BY product_id",
    )
    .bind(order_id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| {
        Ok(ReservedLine {
            product_id: r.try_get("product_id")?,
            quantity: r.try_get("quantity")?,
            unit_price: money(r.try_get("unit_price_currency")?, r.try_get("unit_price_minor")?)?,
        })
    })
    .collect::<Result<Vec<_>, Error>>()?;
    Ok(Some(Reservation { order_id: order_id.to_owned(), state, lines }))
}

fn money(currency: String, minor: i64) -> Result<Money, Error> {
    Money::new(&currency, minor).map_err(|e| anyhow::anyhow!("stored price is invalid: {e}").into())
}

fn product_from_row(row: &AnyRow) -> Result<Product, Error> {
    Ok(Product {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        price: money(row.try_get("price_currency")?, row.try_get("price_minor")?)?,
        stock: row.try_get("stock")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
