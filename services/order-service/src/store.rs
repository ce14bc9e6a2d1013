//! Orders, their items and the outbox. Every status change writes its event in the same
//! transaction, and every change is conditional on the current status, so concurrent
//! transitions (payment result, customer cancel, sweeper) cannot both win.

use std::collections::HashMap;

use agora_events::{EventTx, Outbox};
use agora_kit::{
    db::{self, Db},
    money::Money,
};
use sqlx::{AnyConnection, Row, any::AnyRow};

use crate::{
    Error,
    domain::{Order, OrderLine, OrderStatus},
    events,
};

agora_events::service_schema!();

const COLUMNS: &str =
    "id, user_id, status, total_currency, total_minor, cancel_reason, request_fingerprint, created_at, updated_at";

/// What happened when a transition was attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The order moved; its event is in the outbox.
    Applied(Order),
    /// The order was not pending any more; nothing changed.
    Unchanged(Order),
}

#[derive(Debug, Clone)]
pub struct Store {
    outbox: Outbox,
}

impl Store {
    pub fn new(outbox: Outbox) -> Self {
        Self { outbox }
    }

    pub fn db(&self) -> &Db {
        self.outbox.db()
    }

    /// Writes a new PENDING_PAYMENT order and its `OrderPlaced` event, stamped with the
    /// database's clock (which the sweeper compares with). When the id exists (a concurrent
    /// retry with the same idempotency key won), returns the stored order.
    #[tracing::instrument(name = "INSERT orders", skip_all, fields(db.system = self.db().backend.system()))]
    pub async fn insert(&self, order: &Order, key: Option<&str>, fingerprint: &str) -> Result<(Order, String), Error> {
        let mut tx = self.outbox.begin().await?;
        let now = self.db().backend.now_millis_sql();
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO orders ({COLUMNS}, idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7, {now}, {now}, $8) \
             RETURNING created_at"
        )))
        .bind(&order.id)
        .bind(&order.user_id)
        .bind(order.status.as_str())
        .bind(order.total.currency())
        .bind(order.total.minor())
        .bind(&order.cancel_reason)
        .bind(fingerprint)
        .bind(key)
        .fetch_one(&mut *tx)
        .await;
        let stamped: i64 = match inserted {
            Err(e) if db::is_unique_violation(&e) => {
                drop(tx);
                return self.get_with_fingerprint(&order.id).await?.ok_or_else(|| Error::NotFound(order.id.clone()));
            }
            other => other?.try_get("created_at")?,
        };
        let order = &Order { created_at: stamped, updated_at: stamped, ..order.clone() };
        for line in &order.lines {
            sqlx::query(
                "INSERT INTO order_items (order_id, product_id, quantity, unit_price_currency, unit_price_minor) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&order.id)
            .bind(&line.product_id)
            .bind(line.quantity)
            .bind(line.unit_price.currency())
            .bind(line.unit_price.minor())
            .execute(&mut *tx)
            .await?;
        }
        events::placed(&mut tx, order).await?;
        tx.commit().await?;
        Ok((order.clone(), fingerprint.to_owned()))
    }

    #[tracing::instrument(name = "SELECT orders", skip_all, fields(db.system = self.db().backend.system()))]
    pub async fn get(&self, id: &str) -> Result<Option<Order>, Error> {
        Ok(self.get_with_fingerprint(id).await?.map(|(order, _)| order))
    }

    /// The order and the fingerprint of the request that created it.
    #[tracing::instrument(name = "SELECT orders", skip_all, fields(db.system = self.db().backend.system()))]
    pub async fn get_with_fingerprint(&self, id: &str) -> Result<Option<(Order, String)>, Error> {
        let mut conn = self.db().pool.acquire().await?;
        fetch(&mut conn, id).await
    }

    /// The user's orders, newest first, before the cursor `before`: two queries, the page of
    /// orders and then the items of exactly those orders.
    #[tracing::instrument(name = "SELECT orders", skip_all, fields(db.system = self.db().backend.system()))]
    pub async fn list_for_user(
        &self,
        user_id: &str,
        before: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<Order>, bool), Error> {
        let mut conn = self.db().pool.acquire().await?;
        let rows = match before {
            Some(before) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM orders WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
                )))
                .bind(user_id)
                .bind(before)
                .bind(limit + 1)
                .fetch_all(&mut *conn)
                .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM orders WHERE user_id = $1 ORDER BY id DESC LIMIT $2"
                )))
                .bind(user_id)
                .bind(limit + 1)
                .fetch_all(&mut *conn)
                .await?
            }
        };
        let more = rows.len() as i64 > limit;
        let page = &rows[..rows.len().min(usize::try_from(limit).unwrap_or(0))];
        let ids = page.iter().map(|row| row.try_get::<String, _>("id")).collect::<Result<Vec<_>, _>>()?;
        let mut lines = lines_of(&mut conn, &ids).await?;
        let orders = page
            .iter()
            .zip(&ids)
            .map(|(row, id)| order_from_row(row, lines.remove(id).unwrap_or_default()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((orders, more))
    }

    /// PENDING_PAYMENT → CANCELLED with `reason`, plus `OrderCancelled`.
    #[tracing::instrument(name = "UPDATE orders", skip_all, fields(db.system = self.db().backend.system()))]
    pub async fn cancel(&self, id: &str, reason: &str) -> Result<Transition, Error> {
        let mut tx = self.outbox.begin().await?;
        let result = settle_in(&mut tx, id, Settlement::Cancelled { reason }).await?;
        tx.commit().await?;
        Ok(result)
    }

    /// Ids of orders still pending that were created more than `age_ms` ago, by the
    /// database's clock (which stamped them).
    #[tracing::instrument(name = "SELECT orders", skip_all, fields(db.system = self.db().backend.system()))]
    pub async fn overdue(&self, age_ms: i64, limit: i64) -> Result<Vec<String>, Error> {
        let now = self.db().backend.now_millis_sql();
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM orders WHERE status = 'PENDING_PAYMENT' AND created_at < {now} - $1 ORDER BY created_at LIMIT $2"
        )))
        .bind(age_ms)
        .bind(limit)
        .fetch_all(&self.db().pool)
        .await?)
    }
}

/// How a pending order is settled: paid by a payment, or cancelled for a reason.
#[derive(Debug, Clone, Copy)]
pub enum Settlement<'a> {
    Paid { payment_id: &'a str },
    Cancelled { reason: &'a str },
}

/// PENDING_PAYMENT → PAID or CANCELLED inside `tx`, plus its event (`OrderPaid`,
/// `OrderCancelled`); `Unchanged` when the order had already left PENDING_PAYMENT.
#[tracing::instrument(name = "UPDATE orders", skip_all, fields(db.system = agora_kit::db::system_of(tx)))]
pub async fn settle_in(tx: &mut EventTx, id: &str, settlement: Settlement<'_>) -> Result<Transition, Error> {
    let (status, reason) = match settlement {
        Settlement::Paid { .. } => (OrderStatus::Paid, ""),
        Settlement::Cancelled { reason } => (OrderStatus::Cancelled, reason),
    };
    let now = db::Backend::of(tx).now_millis_sql();
    let changed = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE orders SET status = $1, cancel_reason = $2, updated_at = {now} WHERE id = $3 AND status = 'PENDING_PAYMENT'"
    )))
    .bind(status.as_str())
    .bind(reason)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    let (order, _) = fetch(tx, id).await?.ok_or_else(|| Error::NotFound(id.to_owned()))?;
    if changed.rows_affected() == 0 {
        return Ok(Transition::Unchanged(order));
    }
    match settlement {
        Settlement::Paid { payment_id } => events::paid(tx, &order, payment_id).await?,
        Settlement::Cancelled { .. } => events::cancelled(tx, &order).await?,
    }
    Ok(Transition::Applied(order))
}

async fn fetch(conn: &mut AnyConnection, id: &str) -> Result<Option<(Order, String)>, Error> {
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM orders WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let lines = lines_of(conn, &[id.to_owned()]).await?.remove(id).unwrap_or_default();
    let fingerprint = row.try_get("request_fingerprint")?;
    Ok(Some((order_from_row(&row, lines)?, fingerprint)))
}

/// The items of the orders `ids`, by order id, each order's sorted by product id (one query).
async fn lines_of(conn: &mut AnyConnection, ids: &[String]) -> Result<HashMap<String, Vec<OrderLine>>, Error> {
    let mut lines: HashMap<String, Vec<OrderLine>> = HashMap::new();
    if ids.is_empty() {
        return Ok(lines);
    }
    let placeholders = (1..=ids.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT order_id, product_id, quantity, unit_price_currency, unit_price_minor FROM order_items WHERE order_id IN ({placeholders}) ORDER BY order_id, product_id"
    )));
    for id in ids {
        query = query.bind(id);
    }
    for row in query.fetch_all(conn).await? {
        lines.entry(row.try_get("order_id")?).or_default().push(OrderLine {
            product_id: row.try_get("product_id")?,
            quantity: row.try_get("quantity")?,
            unit_price: money(row.try_get("unit_price_currency")?, row.try_get("unit_price_minor")?)?,
        });
    }
    Ok(lines)
}

fn money(currency: String, minor: i64) -> Result<Money, Error> {
    Money::new(&currency, minor).map_err(|e| anyhow::anyhow!("stored amount is invalid: {e}").into())
}

fn order_from_row(row: &AnyRow, lines: Vec<OrderLine>) -> Result<Order, Error> {
    let status: String = row.try_get("status")?;
    Ok(Order {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        lines,
        total: money(row.try_get("total_currency")?, row.try_get("total_minor")?)?,
        status: OrderStatus::parse(&status).ok_or_else(|| anyhow::anyhow!("unknown order status {status:?}"))?,
        cancel_reason: row.try_get("cancel_reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
