//! order-service's events, the one place (with grpc.rs) that sees their generated types: the
//! events it announces, built from its domain types, and the `agora.payments.v1` consumer (a
//! successful payment makes the order PAID, a declined one CANCELLED).

use agora_events::{DomainEvent, EventTx, Handler, HandlerError, decode};
use agora_proto::events::{
    EventEnvelope, OrderCancelled, OrderLine as PbLine, OrderPaid, OrderPlaced, PaymentFailed, PaymentSucceeded,
};
use async_trait::async_trait;

use crate::{
    Error,
    domain::Order,
    store::{self, Transition},
};

// --- Announced ----------------------------------------------------------------

impl From<&Order> for OrderPlaced {
    fn from(order: &Order) -> Self {
        Self {
            order_id: order.id.clone(),
            user_id: order.user_id.clone(),
            total: Some(order.total.to_proto()),
            lines: order
                .lines
                .iter()
                .map(|l| PbLine {
                    product_id: l.product_id.clone(),
                    quantity: l.quantity,
                    unit_price: Some(l.unit_price.to_proto()),
                })
                .collect(),
        }
    }
}

/// Enqueues `OrderPlaced` for a new order.
pub(crate) async fn placed(tx: &mut EventTx, order: &Order) -> Result<(), sqlx::Error> {
    tx.enqueue(&order.id, &OrderPlaced::from(order)).await.map(drop)
}

/// Enqueues `OrderPaid` for an order `payment_id` paid.
pub(crate) async fn paid(tx: &mut EventTx, order: &Order, payment_id: &str) -> Result<(), sqlx::Error> {
    let event =
        OrderPaid { order_id: order.id.clone(), user_id: order.user_id.clone(), payment_id: payment_id.to_owned() };
    tx.enqueue(&order.id, &event).await.map(drop)
}

/// Enqueues `OrderCancelled` for a cancelled order, with its reason.
pub(crate) async fn cancelled(tx: &mut EventTx, order: &Order) -> Result<(), sqlx::Error> {
    let event = OrderCancelled {
        order_id: order.id.clone(),
        user_id: order.user_id.clone(),
        reason: order.cancel_reason.clone(),
    };
    tx.enqueue(&order.id, &event).await.map(drop)
}

// --- Consumed -----------------------------------------------------------------

/// Settles orders from payment results.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaymentEvents;

#[async_trait]
impl Handler for PaymentEvents {
    fn handles(&self) -> &[&'static str] {
        &[PaymentSucceeded::TYPE, PaymentFailed::TYPE]
    }

    async fn handle(&self, tx: &mut EventTx, envelope: &EventEnvelope) -> Result<(), HandlerError> {
        let transition = if envelope.event_type == PaymentSucceeded::TYPE {
            let paid = decode::<PaymentSucceeded>(envelope)?;
            store::mark_paid_in(tx, &paid.order_id, &paid.payment_id).await
        } else {
            let failed = decode::<PaymentFailed>(envelope)?;
            store::cancel_in(tx, &failed.order_id, &format!("payment declined: {}", failed.reason)).await
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
        Error::Database(e) => e.into(),
        other => HandlerError::Permanent(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use agora_kit::money::Money;

    use super::*;
    use crate::domain::{OrderLine, OrderStatus};

    #[test]
    fn order_placed_carries_the_order_its_lines_and_total() {
        let usd = |minor| Money::new("USD", minor).unwrap();
        let order = Order {
            id: "o1".into(),
            user_id: "u1".into(),
            lines: vec![
                OrderLine { product_id: "p1".into(), quantity: 2, unit_price: usd(150) },
                OrderLine { product_id: "p2".into(), quantity: 1, unit_price: usd(99) },
            ],
            total: usd(399),
            status: OrderStatus::PendingPayment,
            cancel_reason: String::new(),
            created_at: 1,
            updated_at: 1,
        };
        let event = OrderPlaced::from(&order);
        assert_eq!((event.order_id.as_str(), event.user_id.as_str()), ("o1", "u1"));
        assert_eq!(Money::from_proto(event.total).unwrap(), usd(399));
        let lines: Vec<_> = event
            .lines
            .into_iter()
            .map(|l| (l.product_id, l.quantity, Money::from_proto(l.unit_price).unwrap()))
            .collect();
        assert_eq!(lines, [("p1".to_owned(), 2, usd(150)), ("p2".to_owned(), 1, usd(99))]);
    }
}
