//! The consumer of `agora.users.v1` (open wallets) and `agora.orders.v1` (charge placed
//! orders, refund cancelled ones). Each effect commits with the processed event id and the
//! events it enqueues (see [`agora_events::apply`]).

use agora_events::{DomainEvent, EventTx, Handler, HandlerError, decode};
use agora_kit::fault::Fault;
use agora_proto::events::{EventEnvelope, OrderCancelled, OrderPlaced, UserRegistered};
use async_trait::async_trait;

use crate::{Error, domain::OrderToCharge, store::Store};

/// Opens wallets, charges placed orders and refunds cancelled ones.
#[derive(Debug, Clone)]
pub struct Consumer {
    store: Store,
}

impl Consumer {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

/// A database error may pass (retried); any other will not (dead-lettered).
fn handler_error(e: Error) -> HandlerError {
    match e {
        Error::Fault(Fault::Database(e)) => e.into(),
        other => HandlerError::Permanent(other.to_string()),
    }
}

#[async_trait]
impl Handler for Consumer {
    fn handles(&self) -> &[&'static str] {
        // OrderPaid and future events are not ours.
        &[UserRegistered::TYPE, OrderPlaced::TYPE, OrderCancelled::TYPE]
    }

    async fn handle(&self, tx: &mut EventTx, envelope: &EventEnvelope) -> Result<(), HandlerError> {
        match envelope.event_type.as_str() {
            UserRegistered::TYPE => {
                let user = decode::<UserRegistered>(envelope)?;
                if self.store.open_wallet_in(tx, &user.user_id).await.map_err(handler_error)? {
                    tracing::info!(user_id = %user.user_id, "wallet opened");
                }
            }
            OrderPlaced::TYPE => {
                let order = OrderToCharge::try_from(&decode::<OrderPlaced>(envelope)?)?;
                let payment = self.store.charge_in(tx, &order).await.map_err(handler_error)?;
                tracing::info!(order_id = %payment.order_id, status = ?payment.status, amount = %payment.amount, "payment processed");
                if !payment.decline_reason.is_empty() {
                    // The saga's failure: the span that handled OrderPlaced says why.
                    let reason = format!("payment declined: {}", payment.decline_reason);
                    agora_kit::trace_context::fail(&tracing::Span::current(), &reason);
                }
            }
            _ => {
                let cancelled = decode::<OrderCancelled>(envelope)?;
                if let Some(payment) = self.store.refund_in(tx, &cancelled.order_id).await.map_err(handler_error)? {
                    tracing::info!(order_id = %payment.order_id, amount = %payment.amount, "payment refunded");
                }
            }
        }
        Ok(())
    }
}
