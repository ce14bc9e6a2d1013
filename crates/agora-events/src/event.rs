//! Event payload types, their topics, and the envelope around them.

use agora_proto::events::{
    EventEnvelope, OrderCancelled, OrderPaid, OrderPlaced, PaymentFailed, PaymentSucceeded, UserRegistered,
};
use prost::Message;

use crate::HandlerError;

/// Topic names; each has a `.dlq` twin for messages that keep failing.
pub mod topics {
    pub const USERS: &str = "agora.users.v1";
    pub const ORDERS: &str = "agora.orders.v1";
    pub const PAYMENTS: &str = "agora.payments.v1";

    pub fn dlq(topic: &str) -> String {
        format!("{topic}.dlq")
    }
}

/// A payload that can travel on the bus: its type name and the topic it goes to.
pub trait DomainEvent: Message + Default + Sized {
    /// The full protobuf name, stored in `EventEnvelope.event_type`.
    const TYPE: &'static str;
    const TOPIC: &'static str;
}

macro_rules! domain_events {
    ($($ty:ident => $topic:expr),+ $(,)?) => {
        $(impl DomainEvent for $ty {
            const TYPE: &'static str = concat!("agora.events.v1.", stringify!($ty));
            const TOPIC: &'static str = $topic;
        })+
    };
}

domain_events! {
    UserRegistered => topics::USERS,
    OrderPlaced => topics::ORDERS,
    OrderPaid => topics::ORDERS,
    OrderCancelled => topics::ORDERS,
    PaymentSucceeded => topics::PAYMENTS,
    PaymentFailed => topics::PAYMENTS,
}

/// Wraps `payload` in a new envelope with a fresh event id.
pub fn envelope<E: DomainEvent>(aggregate_id: &str, payload: &E) -> EventEnvelope {
    EventEnvelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        event_type: E::TYPE.to_owned(),
        occurred_at: Some(agora_kit::time::to_timestamp(agora_kit::time::now_millis())),
        aggregate_id: aggregate_id.to_owned(),
        payload: payload.encode_to_vec(),
        headers: trace_headers(),
    }
}

/// The propagation headers of the request or event being handled: its `traceparent`, so the
/// event's consumers continue the same trace, and its `baggage`.
fn trace_headers() -> std::collections::HashMap<String, String> {
    agora_kit::trace_context::outgoing().into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
}

/// Decodes the payload of an envelope known to carry `E`; a corrupt payload is permanent
/// (retrying cannot fix it), so it goes to the dead-letter topic.
pub fn decode<E: DomainEvent>(envelope: &EventEnvelope) -> Result<E, HandlerError> {
    E::decode(envelope.payload.as_slice())
        .map_err(|e| HandlerError::Permanent(format!("cannot decode {} {}: {e}", E::TYPE, envelope.event_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_carry_type_and_payload() {
        let placed = OrderPlaced { order_id: "o1".into(), ..Default::default() };
        let env = envelope("o1", &placed);
        assert_eq!(env.event_type, "agora.events.v1.OrderPlaced");
        assert_eq!(env.aggregate_id, "o1");
        assert_eq!(decode::<OrderPlaced>(&env).unwrap(), placed);
        assert_ne!(envelope("o1", &placed).event_id, env.event_id);
        assert!(env.headers.is_empty(), "no trace outside a request");
    }

    #[tokio::test]
    async fn envelopes_carry_the_current_trace() {
        let context = agora_kit::trace_context::TraceParent::root();
        let env = agora_kit::trace_context::scope(context, async { envelope("o1", &OrderPlaced::default()) }).await;
        assert_eq!(env.headers["traceparent"], context.to_string());
    }

    #[test]
    fn corrupt_payloads_are_permanent_failures() {
        let mut env = envelope("o1", &OrderPlaced::default());
        env.payload = vec![0xff, 0xff, 0xff];
        assert!(matches!(decode::<OrderPlaced>(&env), Err(HandlerError::Permanent(_))));
    }
}
