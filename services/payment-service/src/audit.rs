//! Read-only questions over this service's tables, for `agora reconcile` (which checks them
//! against the other services' answers). The SQL about payments and wallets lives here, with
//! the schema.

use std::collections::HashMap;

use anyhow::Context as _;
use sqlx::{AnyPool, Row as _};

use crate::domain::PaymentStatus;

/// An order's payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    pub status: PaymentStatus,
    pub amount_minor: i64,
}

/// An order's debits and refunds in the wallet ledger.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ledger {
    pub debits: u32,
    pub refunds: u32,
    /// The sum of the entries: minus the total for a debit that stands, 0 once refunded.
    pub net_minor: i64,
}

/// A wallet whose balance is not the sum of its ledger entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletMismatch {
    pub user_id: String,
    pub balance_minor: i64,
    pub entries_minor: i64,
}

/// Every payment, by order id.
pub async fn payments(db: &AnyPool) -> anyhow::Result<HashMap<String, PaymentRecord>> {
    let rows = sqlx::query("SELECT order_id, status, amount_minor FROM payments").fetch_all(db).await?;
    rows.iter()
        .map(|row| {
            let (order, status): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let status =
                PaymentStatus::parse(&status).with_context(|| format!("payment of {order} has status {status:?}"))?;
            Ok((order, PaymentRecord { status, amount_minor: row.try_get(2)? }))
        })
        .collect()
}

/// The ledger of every order that has a debit or a refund, by order id.
pub async fn ledgers(db: &AnyPool) -> anyhow::Result<HashMap<String, Ledger>> {
    let rows = sqlx::query("SELECT order_id, kind, amount_minor FROM wallet_entries WHERE order_id IS NOT NULL")
        .fetch_all(db)
        .await?;
    let mut ledgers: HashMap<String, Ledger> = HashMap::new();
    for row in &rows {
        let ledger = ledgers.entry(row.try_get(0)?).or_default();
        match row.try_get::<String, _>(1)?.as_str() {
            "debit" => ledger.debits += 1,
            _ => ledger.refunds += 1,
        }
        ledger.net_minor += row.try_get::<i64, _>(2)?;
    }
    Ok(ledgers)
}

/// The wallets whose balance is not the sum of their entries (none, when the books hold).
pub async fn wallets_off_their_ledger(db: &AnyPool) -> anyhow::Result<Vec<WalletMismatch>> {
    let rows = sqlx::query(
        "SELECT w.user_id, w.balance_minor, CAST(COALESCE(SUM(e.amount_minor), 0) AS BIGINT) FROM wallets w \
         LEFT JOIN wallet_entries e ON e.user_id = w.user_id GROUP BY w.user_id, w.balance_minor \
         HAVING w.balance_minor <> COALESCE(SUM(e.amount_minor), 0)",
    )
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(WalletMismatch {
                user_id: row.try_get(0)?,
                balance_minor: row.try_get(1)?,
                entries_minor: row.try_get(2)?,
            })
        })
        .collect()
}
