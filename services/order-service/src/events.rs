//! The `agora.payments.v1` consumer: a successful payment makes the order PAID, a declined
//! one CANCELLED. Each effect and the processed event id commit together.

use agora_events::{DomainEvent, Handler, HandlerError, claim, decode};
use agora_proto::events::{EventEnvelope, PaymentFailed, PaymentSucceeded};
use async_trait::async_trait;

use crate::{
    CONSUMER, Error,
    store::{self, Store, Transition},
};

#[derive(Debug, Clone)]
pub struct PaymentEvents {
    store: Store,
}

impl PaymentEvents {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Handler for PaymentEvents {
    async fn handle(&self, envelope: &EventEnvelope) -> Result<(), HandlerError> {
        let mut tx = self.store.db().pool.begin().await?;
        if !claim(&mut tx, CONSUMER, &envelope.event_id).await? {
            return Ok(());
        }
        let result = match envelope.event_type.as_str() {
            PaymentSucceeded::TYPE => {
                let paid = decode::<PaymentSucceeded>(envelope)?;
                store::mark_paid_in(&mut tx, &paid.order_id, &paid.payment_id).await
            }
            PaymentFailed::TYPE => {
                let failed = decode::<PaymentFailed>(envelope)?;
                store::cancel_in(&mut tx, &failed.order_id, &format!("payment declined: {}", failed.reason)).await
            }
            _ => return Ok(()),
        };
        match result {
            Ok(transition) => {
                tx.commit().await?;
                match transition {
                    Transition::Applied(order) => {
                        self.store.notify_relay();
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
            Err(Error::Database(e)) => Err(e.into()),
            Err(e) => Err(HandlerError::Permanent(e.to_string())),
        }
    }
}
