//! The `agora.orders.v1` consumer: a paid order commits its reservation, a cancelled one
//! releases it (the saga's compensation). The event id is recorded in the same transaction.

use agora_events::{DomainEvent, Handler, HandlerError, claim, decode};
use agora_proto::events::{EventEnvelope, OrderCancelled, OrderPaid};
use async_trait::async_trait;

use crate::{
    CONSUMER, Error,
    store::{self, Store},
};

#[derive(Debug, Clone)]
pub struct OrderEvents {
    store: Store,
}

impl OrderEvents {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Handler for OrderEvents {
    async fn handle(&self, envelope: &EventEnvelope) -> Result<(), HandlerError> {
        let (order_id, commit) = match envelope.event_type.as_str() {
            OrderPaid::TYPE => (decode::<OrderPaid>(envelope)?.order_id, true),
            OrderCancelled::TYPE => (decode::<OrderCancelled>(envelope)?.order_id, false),
            _ => return Ok(()), // OrderPlaced and future events are not ours
        };
        let mut tx = self.store.db().pool.begin().await?;
        if !claim(&mut tx, CONSUMER, &envelope.event_id).await? {
            return Ok(());
        }
        let result = if commit {
            store::commit_in(&mut tx, &order_id).await
        } else {
            store::release_in(&mut tx, &order_id).await
        };
        match result {
            Ok(reservation) => {
                tx.commit().await?;
                tracing::info!(%order_id, state = ?reservation.state, "reservation settled from order event");
                Ok(())
            }
            Err(Error::Database(e)) => Err(e.into()),
            // A saga conflict (say, paid after released) will not fix itself: dead-letter it
            // for an operator instead of retrying forever.
            Err(e) => Err(HandlerError::Permanent(format!("order {order_id}: {e}"))),
        }
    }
}
