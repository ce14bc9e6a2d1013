//! Which gRPC methods may be sent twice. The contract says it: `option idempotency_level` on
//! each method in `proto/` (`NO_SIDE_EFFECTS` for reads, `IDEMPOTENT` for calls keyed so that
//! a repeat changes nothing). The balanced channel (`agora-discovery`) sends only those again
//! to another instance, and a server runs only those again while its database is away
//! ([`crate::patience`]).

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
};

use prost::Message;
use prost_types::{FileDescriptorSet, method_options::IdempotencyLevel};

/// The metadata key of an idempotency key (the gateway passes the `Idempotency-Key` header on
/// as it): a call that carries one has the effect of one call however often it is sent, so the
/// balanced channel may send it again whatever its method.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// What the channel needs to know about a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MethodKind {
    /// Sending it twice has the effect of sending it once.
    pub idempotent: bool,
    /// Requests are one message, so the channel can keep a copy to send again. Unknown
    /// methods count as streaming: their bodies pass through untouched.
    pub unary_request: bool,
}

/// Every known method by its gRPC path (`/agora.product.v1.ProductService/GetProduct`).
#[derive(Debug, Clone, Default)]
pub struct Methods {
    by_path: HashMap<String, MethodKind>,
}

static AGORA: LazyLock<Arc<Methods>> = LazyLock::new(|| {
    Arc::new(
        Methods::from_descriptor_sets(&[agora_proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET])
            .expect("the compiled-in descriptor sets decode"),
    )
});

impl Methods {
    /// Agora's own services, plus `grpc.health.v1`.
    pub fn agora() -> Arc<Self> {
        AGORA.clone()
    }

    pub fn from_descriptor_sets(sets: &[&[u8]]) -> Result<Self, prost::DecodeError> {
        let mut by_path = HashMap::new();
        for bytes in sets {
            let set = FileDescriptorSet::decode(*bytes)?;
            for file in &set.file {
                let package = file.package();
                for service in &file.service {
                    let qualified = if package.is_empty() {
                        service.name().to_owned()
                    } else {
                        format!("{package}.{}", service.name())
                    };
                    for method in &service.method {
                        let level = method
                            .options
                            .as_ref()
                            .map_or(IdempotencyLevel::IdempotencyUnknown, |o| o.idempotency_level());
                        let kind = MethodKind {
                            idempotent: matches!(level, IdempotencyLevel::NoSideEffects | IdempotencyLevel::Idempotent),
                            unary_request: !method.client_streaming(),
                        };
                        by_path.insert(format!("/{qualified}/{}", method.name()), kind);
                    }
                }
            }
        }
        // The health check has no side effects, whatever its file says.
        by_path.insert("/grpc.health.v1.Health/Check".to_owned(), MethodKind { idempotent: true, unary_request: true });
        Ok(Self { by_path })
    }

    pub fn kind(&self, path: &str) -> MethodKind {
        self.by_path.get(path).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_keyed_writes_are_idempotent_and_the_rest_is_not() {
        let methods = Methods::agora();
        for path in [
            "/agora.product.v1.ProductService/GetProduct",
            "/agora.product.v1.ProductService/ListProducts",
            "/agora.product.v1.ProductService/ReserveStock",
            "/agora.product.v1.ProductService/ReleaseReservation",
            "/agora.user.v1.UserService/GetUser",
            "/agora.order.v1.OrderService/GetOrder",
            "/grpc.health.v1.Health/Check",
        ] {
            assert!(methods.kind(path).idempotent, "{path} should be idempotent");
            assert!(methods.kind(path).unary_request, "{path}");
        }
        for path in [
            "/agora.product.v1.ProductService/CreateProduct",
            "/agora.user.v1.UserService/Register",
            "/agora.payment.v1.PaymentService/TopUpWallet",
            "/agora.unknown.v1.Nothing/Call",
        ] {
            assert!(!methods.kind(path).idempotent, "{path} must not be retried");
        }
        assert!(!methods.kind("/agora.unknown.v1.Nothing/Call").unary_request);
    }
}
