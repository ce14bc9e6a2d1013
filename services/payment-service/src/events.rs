//! Consumers of `agora.users.v1` (open wallets) and `agora.orders.v1` (charge placed orders,
//! refund cancelled ones). Each effect commits together with the processed event id.

use agora_events::{DomainEvent, Handler, HandlerError, claim, decode};
use agora_proto::events::{EventEnvelope, OrderCancelled, OrderPlaced, UserRegistered};
use async_trait::async_trait;

use crate::{CONSUMER, Error, store::Store};

#[derive(Debug, Clone)]
pub struct PaymentHandler {
    store: Store,
}

impl PaymentHandler {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn retryable_or_permanent(e: Error) -> HandlerError {
    match e {
        Error::Database(e) => e.into(),
        other => HandlerError::Permanent(other.to_string()),
    }
}

#[async_trait]
impl Handler for PaymentHandler {
    async fn handle(&self, envelope: &EventEnvelope) -> Result<(), HandlerError> {
        if ![UserRegistered::TYPE, OrderPlaced::TYPE, OrderCancelled::TYPE].contains(&envelope.event_type.as_str()) {
            return Ok(()); // OrderPaid and future events are not ours
        }
        let mut tx = self.store.db().pool.begin().await?;
        if !claim(&mut tx, CONSUMER, &envelope.event_id).await? {
            return Ok(());
        }
        let mut wrote_outbox = false;
        match envelope.event_type.as_str() {
            UserRegistered::TYPE => {
                let user = decode::<UserRegistered>(envelope)?;
                if self.store.open_wallet_in(&mut tx, &user.user_id).await.map_err(retryable_or_permanent)? {
                    tracing::info!(user_id = %user.user_id, "wallet opened");
                }
            }
            OrderPlaced::TYPE => {
                let placed = decode::<OrderPlaced>(envelope)?;
                let payment = self.store.charge_in(&mut tx, &placed).await.map_err(retryable_or_permanent)?;
                tracing::info!(order_id = %payment.order_id, status = ?payment.status, amount = %payment.amount, "payment processed");
                if !payment.decline_reason.is_empty() {
                    // The saga's failure: the span that handled OrderPlaced says why.
                    let reason = format!("payment declined: {}", payment.decline_reason);
                    agora_kit::trace_context::fail(&tracing::Span::current(), &reason);
                }
                wrote_outbox = true;
            }
            _ => {
                let cancelled = decode::<OrderCancelled>(envelope)?;
                if let Some(payment) =
                    self.store.refund_in(&mut tx, &cancelled.order_id).await.map_err(retryable_or_permanent)?
                {
                    tracing::info!(order_id = %payment.order_id, amount = %payment.amount, "payment refunded");
                }
            }
        }
        tx.commit().await?;
        if wrote_outbox {
            self.store.notify_relay();
        }
        Ok(())
    }
}
