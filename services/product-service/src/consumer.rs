//! The `agora.orders.v1` consumer: a paid order commits its reservation, a cancelled one
//! releases it (the saga's compensation). The consumer claims the event id in the same
//! transaction (see [`agora_events::apply`]).

use agora_events::{DomainEvent, EventTx, Handler, HandlerError, decode};
use agora_kit::fault::Fault;
use agora_proto::events::{EventEnvelope, OrderCancelled, OrderPaid};
use async_trait::async_trait;

use crate::{Error, store};

/// Settles reservations from order outcomes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Consumer;

#[async_trait]
impl Handler for Consumer {
    fn handles(&self) -> &[&'static str] {
        &[OrderPaid::TYPE, OrderCancelled::TYPE]
    }

    async fn handle(&self, tx: &mut EventTx, envelope: &EventEnvelope) -> Result<(), HandlerError> {
        let settled = if envelope.event_type == OrderPaid::TYPE {
            let order_id = decode::<OrderPaid>(envelope)?.order_id;
            (store::commit_in(tx, &order_id).await, order_id)
        } else {
            let order_id = decode::<OrderCancelled>(envelope)?.order_id;
            (store::release_in(tx, &order_id).await, order_id)
        };
        match settled {
            (Ok(reservation), order_id) => {
                tracing::info!(%order_id, state = ?reservation.state, "reservation settled from order event");
                Ok(())
            }
            (Err(Error::Fault(Fault::Database(e))), _) => Err(e.into()),
            // A saga conflict (say, paid after released) will not fix itself: dead-letter it
            // for an operator instead of retrying forever.
            (Err(e), order_id) => Err(HandlerError::Permanent(format!("order {order_id}: {e}"))),
        }
    }
}
