//! Wallets, payments and the outbox. Debits are conditional updates (`balance >= amount`),
//! and `payments.order_id` is unique, so no order is ever charged twice. Every change of a
//! balance also writes a `wallet_entries` row in the same transaction (the ledger a
//! reconciliation reads; at most one debit and one refund per order).

use agora_events::{EventTx, Outbox};
use agora_kit::{db::Db, id, money::Money, time::now_millis};
use sqlx::{AnyConnection, Row, any::AnyRow};

use crate::{
    Error,
    domain::{self, Charge, INSUFFICIENT_FUNDS, OrderToCharge, Payment, PaymentStatus, TopUp, Wallet},
    events,
};

agora_events::service_schema!();

const COLUMNS: &str = "id, order_id, user_id, currency, amount_minor, status, decline_reason, created_at";

#[derive(Debug, Clone)]
pub struct Store {
    outbox: Outbox,
    /// What a new wallet holds.
    opening: Money,
}

impl Store {
    pub fn new(outbox: Outbox, opening: Money) -> Self {
        Self { outbox, opening }
    }

    pub fn db(&self) -> &Db {
        self.outbox.db()
    }

    /// Where the consumers' transactions begin.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Opens the wallet with the opening balance unless it exists; true when it was opened.
    #[tracing::instrument(name = "INSERT wallets", skip_all, fields(db.system = self.db().backend.system()))]
    pub async fn open_wallet_in(&self, conn: &mut AnyConnection, user_id: &str) -> Result<bool, Error> {
        let now = now_millis();
        let opened = sqlx::query(
            "INSERT INTO wallets (user_id, currency, balance_minor, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(self.opening.currency())
        .bind(self.opening.minor())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        if opened.rows_affected() == 0 {
            return Ok(false);
        }
        record_in(conn, user_id, Entry::Opening, self.opening.minor(), None, now).await?;
        Ok(true)
    }

    #[tracing::instrument(name = "SELECT wallets", skip_all, fields(db.system = self.db().backend.system()))]
    pub async fn wallet(&self, user_id: &str) -> Result<Wallet, Error> {
        let mut tx = self.db().pool.begin().await?;
        self.open_wallet_in(&mut tx, user_id).await?;
        let wallet = wallet_in(&mut tx, user_id).await?;
        tx.commit().await?;
        Ok(wallet)
    }

    #[tracing::instrument(name = "UPDATE wallets", skip_all, fields(db.system = self.db().backend.system()))]
    pub async fn top_up(&self, user_id: &str, top_up: TopUp) -> Result<Wallet, Error> {
        let amount = top_up.amount();
        let mut tx = self.db().pool.begin().await?;
        self.open_wallet_in(&mut tx, user_id).await?;
        let wallet = wallet_in(&mut tx, user_id).await?;
        if wallet.balance.currency() != amount.currency() {
            return Err(Error::CurrencyMismatch {
                wallet: wallet.balance.currency().to_owned(),
                requested: amount.currency().to_owned(),
            });
        }
        let now = now_millis();
        let credited = sqlx::query("UPDATE wallets SET balance_minor = balance_minor + $1, updated_at = $2 WHERE user_id = $3 AND balance_minor <= $4")
            .bind(amount.minor())
            .bind(now)
            .bind(user_id)
            .bind(i64::MAX - amount.minor())
            .execute(&mut *tx)
            .await?;
        if credited.rows_affected() == 0 {
            return Err(Error::Overflow);
        }
        record_in(&mut tx, user_id, Entry::TopUp, amount.minor(), None, now).await?;
        let wallet = wallet_in(&mut tx, user_id).await?;
        tx.commit().await?;
        Ok(wallet)
    }

    /// Debits the order's total or declines it (as [`domain::charge`] decides), and enqueues
    /// the outcome. A second call for the same order returns the first payment and changes
    /// nothing.
    #[tracing::instrument(name = "UPDATE wallets", skip_all, fields(db.system = self.db().backend.system()))]
    pub async fn charge_in(&self, tx: &mut EventTx, order: &OrderToCharge) -> Result<Payment, Error> {
        if let Some(existing) = payment_for_order_in(tx, &order.order_id).await? {
            return Ok(existing);
        }
        let amount = order.total;
        self.open_wallet_in(tx, &order.user_id).await?;
        let wallet = wallet_in(tx, &order.user_id).await?;
        let now = now_millis();
        let decline_reason = match domain::charge(wallet.balance, amount) {
            Charge::Decline(reason) => Some(reason),
            Charge::Debit => {
                let debited = sqlx::query("UPDATE wallets SET balance_minor = balance_minor - $1, updated_at = $2 WHERE user_id = $3 AND balance_minor >= $1")
                    .bind(amount.minor())
                    .bind(now)
                    .bind(&order.user_id)
                    .execute(&mut **tx)
                    .await?;
                if debited.rows_affected() == 1 {
                    record_in(tx, &order.user_id, Entry::Debit, -amount.minor(), Some(&order.order_id), now).await?;
                }
                (debited.rows_affected() == 0).then(|| INSUFFICIENT_FUNDS.to_owned())
            }
        };
        let payment = Payment {
            id: id::new_id(),
            order_id: order.order_id.clone(),
            user_id: order.user_id.clone(),
            amount,
            status: if decline_reason.is_some() { PaymentStatus::Declined } else { PaymentStatus::Succeeded },
            decline_reason: decline_reason.unwrap_or_default(),
            created_at: now,
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO payments ({COLUMNS}, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)"
        )))
        .bind(&payment.id)
        .bind(&payment.order_id)
        .bind(&payment.user_id)
        .bind(payment.amount.currency())
        .bind(payment.amount.minor())
        .bind(payment.status.as_str())
        .bind(&payment.decline_reason)
        .bind(payment.created_at)
        .execute(&mut **tx)
        .await?;
        events::charged(tx, &payment).await?;
        Ok(payment)
    }

    /// Gives back a succeeded payment of a cancelled order; `None` when there was nothing to
    /// refund (declined, never charged, or refunded already).
    #[tracing::instrument(name = "UPDATE payments", skip_all, fields(db.system = self.db().backend.system()))]
    pub async fn refund_in(&self, conn: &mut AnyConnection, order_id: &str) -> Result<Option<Payment>, Error> {
        let now = now_millis();
        let refunded = sqlx::query(
            "UPDATE payments SET status = 'REFUNDED', updated_at = $1 WHERE order_id = $2 AND status = 'SUCCEEDED'",
        )
        .bind(now)
        .bind(order_id)
        .execute(&mut *conn)
        .await?;
        if refunded.rows_affected() == 0 {
            return Ok(None);
        }
        let payment =
            payment_for_order_in(conn, order_id).await?.ok_or_else(|| anyhow::anyhow!("refunded payment vanished"))?;
        sqlx::query("UPDATE wallets SET balance_minor = balance_minor + $1, updated_at = $2 WHERE user_id = $3")
            .bind(payment.amount.minor())
            .bind(now)
            .bind(&payment.user_id)
            .execute(&mut *conn)
            .await?;
        record_in(conn, &payment.user_id, Entry::Refund, payment.amount.minor(), Some(order_id), now).await?;
        Ok(Some(payment))
    }

    #[tracing::instrument(name = "SELECT payments", skip_all, fields(db.system = self.db().backend.system()))]
    pub async fn payment_for_order(&self, order_id: &str) -> Result<Option<Payment>, Error> {
        let mut conn = self.db().pool.acquire().await?;
        payment_for_order_in(&mut conn, order_id).await
    }

    /// The user's payments, newest first, before the cursor.
    #[tracing::instrument(name = "SELECT payments", skip_all, fields(db.system = self.db().backend.system()))]
    pub async fn list(&self, user_id: &str, before: Option<&str>, limit: i64) -> Result<(Vec<Payment>, bool), Error> {
        let rows = match before {
            Some(before) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM payments WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
                )))
                .bind(user_id)
                .bind(before)
                .bind(limit + 1)
                .fetch_all(&self.db().pool)
                .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM payments WHERE user_id = $1 ORDER BY id DESC LIMIT $2"
                )))
                .bind(user_id)
                .bind(limit + 1)
                .fetch_all(&self.db().pool)
                .await?
            }
        };
        let mut payments = rows.iter().map(payment_from_row).collect::<Result<Vec<_>, _>>()?;
        let more = payments.len() as i64 > limit;
        payments.truncate(usize::try_from(limit).unwrap_or(0));
        Ok((payments, more))
    }
}

/// Why a wallet's balance changed.
#[derive(Debug, Clone, Copy)]
enum Entry {
    Opening,
    TopUp,
    Debit,
    Refund,
}

impl Entry {
    fn as_str(self) -> &'static str {
        match self {
            Entry::Opening => "opening",
            Entry::TopUp => "top_up",
            Entry::Debit => "debit",
            Entry::Refund => "refund",
        }
    }
}

/// Writes one ledger entry (`amount_minor` signed) beside the balance change it explains.
async fn record_in(
    conn: &mut AnyConnection,
    user_id: &str,
    entry: Entry,
    amount_minor: i64,
    order_id: Option<&str>,
    now: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO wallet_entries (user_id, kind, amount_minor, order_id, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(user_id)
    .bind(entry.as_str())
    .bind(amount_minor)
    .bind(order_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

async fn wallet_in(conn: &mut AnyConnection, user_id: &str) -> Result<Wallet, Error> {
    let row = sqlx::query("SELECT currency, balance_minor FROM wallets WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(conn)
        .await?;
    Ok(Wallet { user_id: user_id.to_owned(), balance: money(row.try_get("currency")?, row.try_get("balance_minor")?)? })
}

async fn payment_for_order_in(conn: &mut AnyConnection, order_id: &str) -> Result<Option<Payment>, Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM payments WHERE order_id = $1")))
        .bind(order_id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(payment_from_row).transpose()
}

fn money(currency: String, minor: i64) -> Result<Money, Error> {
    Money::new(&currency, minor).map_err(|e| anyhow::anyhow!("stored amount is invalid: {e}").into())
}

fn payment_from_row(row: &AnyRow) -> Result<Payment, Error> {
    let status: String = row.try_get("status")?;
    Ok(Payment {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        user_id: row.try_get("user_id")?,
        amount: money(row.try_get("currency")?, row.try_get("amount_minor")?)?,
        status: PaymentStatus::parse(&status).ok_or_else(|| anyhow::anyhow!("unknown payment status {status:?}"))?,
        decline_reason: row.try_get("decline_reason")?,
        created_at: row.try_get("created_at")?,
    })
}
