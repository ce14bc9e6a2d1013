//! The events order-service announces, built from its domain types (the store enqueues them
//! in the transaction of the change they announce).

use agora_events::EventTx;
use agora_proto::events::{OrderCancelled, OrderLine as PbLine, OrderPaid, OrderPlaced};

use crate::domain::Order;

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
