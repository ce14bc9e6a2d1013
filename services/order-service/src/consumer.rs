//! The `agora.payments.v1` consumer: a successful payment makes the order PAID, a declined
//! one CANCELLED, each in the transaction that claims the event (see [`agora_events::apply`]).

use agora_events::{DomainEvent, EventTx, Handler, HandlerError, decode};
use agora_kit::fault::Fault;
use agora_proto::events::{EventEnvelope, PaymentFailed, PaymentSucceeded};
use async_trait::async_trait;

use crate::{
    Error,
    store::{self, Settlement, Transition},
};

/// Settles orders from payment results.
#[derive(Debug, Clone, Copy, Default)]
pub struct Consumer;

#[async_trait]
impl Handler for Consumer {
    fn handles(&self) -> &[&'static str] {
        &[PaymentSucceeded::TYPE, PaymentFailed::TYPE]
    }

    async fn handle(&self, tx: &mut EventTx, envelope: &EventEnvelope) -> Result<(), HandlerError> {
        let transition = if envelope.event_type == PaymentSucceeded::TYPE {
            let paid = decode::<PaymentSucceeded>(envelope)?;
            store::settle_in(tx, &paid.order_id, Settlement::Paid { payment_id: &paid.payment_id }).await
        } else {
            let failed = decode::<PaymentFailed>(envelope)?;
            let reason = format!("payment declined: {}", failed.reason);
            store::settle_in(tx, &failed.order_id, Settlement::Cancelled { reason: &reason }).await
        };
        match transition.map_err(handler_error)? {
            Transition::Applied(order) => {
                tracing::info!(order_id = %order.id, event = %envelope.event_type, "order settled by payment");
            }
            // Cancelled first (customer or sweeper): payment-service refunds on the
            // OrderCancelled event it will see.
            Transition::Unchanged(order) => {
                tracing::info!(order_id = %order.id, status = ?order.status, "payment result for a settled order ignored");
            }
        }
        Ok(())
    }
}

/// A database error may pass (retried); any other will not (dead-lettered).
fn handler_error(e: Error) -> HandlerError {
    match e {
        Error::Fault(Fault::Database(e)) => e.into(),
        other => HandlerError::Permanent(other.to_string()),
    }
}
