//! Read-only questions over this service's tables, for `agora reconcile` (which checks them
//! against the other services' answers). The SQL about orders lives here, with the schema.

use std::collections::HashMap;

use anyhow::Context as _;
use sqlx::{AnyPool, Row as _};

use crate::domain::OrderStatus;

/// An order as the books see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub status: OrderStatus,
    pub total_minor: i64,
}

/// Every order, by id.
pub async fn orders(db: &AnyPool) -> anyhow::Result<HashMap<String, OrderRecord>> {
    let rows = sqlx::query("SELECT id, status, total_minor FROM orders").fetch_all(db).await?;
    rows.iter()
        .map(|row| {
            let (id, status): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let status = OrderStatus::parse(&status).with_context(|| format!("order {id} has status {status:?}"))?;
            Ok((id, OrderRecord { status, total_minor: row.try_get(2)? }))
        })
        .collect()
}

/// Orders still waiting for their payment.
pub async fn pending(db: &AnyPool) -> anyhow::Result<u64> {
    let n: i64 =
        sqlx::query("SELECT COUNT(*) FROM orders WHERE status = 'PENDING_PAYMENT'").fetch_one(db).await?.try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Units per product that PAID orders took.
pub async fn paid_units(db: &AnyPool) -> anyhow::Result<HashMap<String, i64>> {
    let rows = sqlx::query(
        "SELECT i.product_id, CAST(SUM(i.quantity) AS BIGINT) FROM order_items i \
         JOIN orders o ON o.id = i.order_id WHERE o.status = 'PAID' GROUP BY i.product_id",
    )
    .fetch_all(db)
    .await?;
    rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
}
