//! The events payment-service announces (a charge's outcome), built from its domain types, and
//! the order it charges, read from `OrderPlaced`.

use agora_events::{EventTx, HandlerError};
use agora_kit::money::Money;
use agora_proto::events::{OrderPlaced, PaymentFailed, PaymentSucceeded};

use crate::domain::{OrderToCharge, Payment, PaymentStatus};

/// Enqueues the outcome of a charge: `PaymentSucceeded`, or `PaymentFailed` with the reason.
pub(crate) async fn charged(tx: &mut EventTx, payment: &Payment) -> Result<(), sqlx::Error> {
    let (payment_id, order_id, user_id) = (payment.id.clone(), payment.order_id.clone(), payment.user_id.clone());
    let amount = Some(payment.amount.to_proto());
    if payment.status == PaymentStatus::Succeeded {
        tx.enqueue(&payment.order_id, &PaymentSucceeded { payment_id, order_id, user_id, amount }).await?;
    } else {
        let reason = payment.decline_reason.clone();
        tx.enqueue(&payment.order_id, &PaymentFailed { payment_id, order_id, user_id, amount, reason }).await?;
    }
    Ok(())
}

impl TryFrom<&OrderPlaced> for OrderToCharge {
    type Error = HandlerError;

    /// A total that is no amount can never be charged: a permanent failure.
    fn try_from(placed: &OrderPlaced) -> Result<Self, HandlerError> {
        let total = Money::from_proto(placed.total.clone())
            .map_err(|e| HandlerError::Permanent(format!("OrderPlaced {} has a bad total: {e}", placed.order_id)))?;
        Ok(Self { order_id: placed.order_id.clone(), user_id: placed.user_id.clone(), total })
    }
}
