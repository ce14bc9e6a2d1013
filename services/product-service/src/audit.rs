//! Read-only questions over this service's tables, for `agora reconcile` (which checks them
//! against the other services' answers). The SQL about stock and reservations lives here,
//! with the schema.

use std::collections::HashMap;

use anyhow::Context as _;
use sqlx::{AnyPool, Row as _};

use crate::domain::ReservationState;

/// Every reservation's state, by order id.
pub async fn reservations(db: &AnyPool) -> anyhow::Result<HashMap<String, ReservationState>> {
    let rows = sqlx::query("SELECT order_id, state FROM reservations").fetch_all(db).await?;
    rows.iter()
        .map(|row| {
            let (order, state): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let state = ReservationState::parse(&state)
                .with_context(|| format!("reservation of {order} is in state {state:?}"))?;
            Ok((order, state))
        })
        .collect()
}

/// Reservations neither committed nor released.
pub async fn open_reservations(db: &AnyPool) -> anyhow::Result<u64> {
    let n: i64 =
        sqlx::query("SELECT COUNT(*) FROM reservations WHERE state = 'reserved'").fetch_one(db).await?.try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Units per product that committed reservations took.
pub async fn committed_units(db: &AnyPool) -> anyhow::Result<HashMap<String, i64>> {
    units(
        db,
        "SELECT i.product_id, CAST(SUM(i.quantity) AS BIGINT) FROM reservation_items i \
         JOIN reservations r ON r.order_id = i.order_id WHERE r.state = 'committed' GROUP BY i.product_id",
    )
    .await
}

/// Every product's stock (the units still for sale).
pub async fn stock(db: &AnyPool) -> anyhow::Result<HashMap<String, i64>> {
    units(db, "SELECT id, stock FROM products").await
}

async fn units(db: &AnyPool, sql: &'static str) -> anyhow::Result<HashMap<String, i64>> {
    let rows = sqlx::query(sql).fetch_all(db).await.with_context(|| sql)?;
    rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
}
