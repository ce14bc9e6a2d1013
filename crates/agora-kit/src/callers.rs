//! Which roles may call which gRPC method, as the contract declares it, and the server layer
//! that holds every call to it under mutual TLS.
//!
//! Each method's `(agora.api.v1.policy)` names its callers (`callers: ["order-service"]`); a
//! method the gateway routes and that names none is the gateway's alone. A caller is the
//! identity its client certificate names ([`crate::tls::Peer`]). Health checks and reflection
//! are open to any certificate of the deployment. A refused call gets `PERMISSION_DENIED`, and
//! the refusal is logged with the caller's identity and the method.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
    task::{Context, Poll},
};

use agora_proto::agora::api::v1::{Access, MethodPolicy};
use prost_reflect::DescriptorPool;

use crate::tls::Peer;

/// The role that serves the REST API and calls the public methods for its clients.
pub const GATEWAY: &str = "gateway";

/// Services every role of the deployment may call: health checks (the gateway's `/readyz`, the
/// balancer's probes) and reflection (grpcurl, debugging).
const OPEN_TO_EVERY_ROLE: &[&str] = &["/grpc.health.v1.Health/", "/grpc.reflection."];

/// The role that serves a gRPC service: `agora.NAME.v1.*` is served by `NAME-service`; any
/// other name is its own role.
pub fn role_of(grpc_service: &str) -> String {
    match grpc_service.split('.').collect::<Vec<_>>().as_slice() {
        ["agora", name, _version, _service] => format!("{name}-service"),
        _ => grpc_service.to_owned(),
    }
}

/// Who may call what.
#[derive(Debug, Clone, Default)]
pub struct Callers {
    /// Method path (`/agora.product.v1.ProductService/ReserveStock`) → the roles allowed.
    by_path: HashMap<String, Vec<String>>,
}

static AGORA: LazyLock<Arc<Callers>> = LazyLock::new(|| {
    Arc::new(Callers::from_descriptor_set(agora_proto::FILE_DESCRIPTOR_SET).expect("the compiled-in contract is valid"))
});

impl Callers {
    /// Agora's own contract.
    pub fn agora() -> Arc<Self> {
        AGORA.clone()
    }

    /// Reads every method's callers from an encoded descriptor set (one that keeps custom
    /// options). An internal method that names no caller is an error: nobody could call it.
    pub fn from_descriptor_set(bytes: &[u8]) -> Result<Self, String> {
        let pool = DescriptorPool::decode(bytes).map_err(|e| e.to_string())?;
        let policy = pool.get_extension_by_name("agora.api.v1.policy");
        let mut by_path = HashMap::new();
        for service in pool.services() {
            for method in service.methods() {
                let options = method.options();
                let Some(declared) = policy.as_ref().filter(|ext| options.has_extension(ext)) else {
                    if service.package_name().starts_with("agora.") {
                        return Err(format!(
                            "{} has no (agora.api.v1.policy); declare who may call it",
                            method.full_name()
                        ));
                    }
                    continue;
                };
                let declared: MethodPolicy = options
                    .get_extension(declared)
                    .as_message()
                    .ok_or("agora.api.v1.policy is not a message")?
                    .transcode_to()
                    .map_err(|e| format!("{}: unreadable agora.api.v1.policy: {e}", method.full_name()))?;
                let callers = match (declared.access(), declared.callers.is_empty()) {
                    (_, false) => declared.callers.clone(),
                    (Access::Internal, true) => {
                        return Err(format!(
                            "{} is internal but names no callers in (agora.api.v1.policy); nobody could call it",
                            method.full_name()
                        ));
                    }
                    (_, true) => vec![GATEWAY.to_owned()],
                };
                by_path.insert(format!("/{}/{}", service.full_name(), method.name()), callers);
            }
        }
        Ok(Self { by_path })
    }

    /// The roles that may call `path`, if it is a method of the contract.
    pub fn allowed(&self, path: &str) -> Option<&[String]> {
        self.by_path.get(path).map(Vec::as_slice)
    }

    /// Whether `peer` may call `path`, and if not, why. Health checks and reflection are open
    /// to every identity of the deployment; any other method the contract does not name, to
    /// none.
    pub fn check(&self, path: &str, peer: Option<&Peer>) -> Result<(), String> {
        let Some(identity) = peer.and_then(|p| p.identity.as_ref()) else {
            return Err("the caller presented no certificate identity".into());
        };
        match self.allowed(path) {
            Some(roles) if roles.iter().any(|r| r == identity.name()) => Ok(()),
            Some(roles) => Err(format!("{identity} may not call {path}; its callers are {}", roles.join(", "))),
            None if OPEN_TO_EVERY_ROLE.iter().any(|prefix| path.starts_with(prefix)) => Ok(()),
            None => Err(format!("{path} is not a method of the contract")),
        }
    }
}

/// Holds every call to [`Callers`] (the server adds it under mutual TLS).
#[derive(Debug, Clone)]
pub struct AuthorizeLayer {
    callers: Arc<Callers>,
}

impl AuthorizeLayer {
    pub fn new(callers: Arc<Callers>) -> Self {
        Self { callers }
    }
}

impl<S> tower::Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize { inner, callers: self.callers.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    callers: Arc<Callers>,
}

impl<S, B> tower::Service<http::Request<B>> for Authorize<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<S::Future, std::future::Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let peer = request.extensions().get::<Peer>();
        match self.callers.check(request.uri().path(), peer) {
            Ok(()) => futures::future::Either::Left(self.inner.call(request)),
            Err(reason) => {
                tracing::warn!(
                    caller = peer.and_then(|p| p.identity.as_ref()).map(|i| i.to_string()).unwrap_or_default(),
                    peer = peer.map(|p| p.addr.to_string()).unwrap_or_default(),
                    method = request.uri().path(),
                    "call refused: {reason}"
                );
                futures::future::Either::Right(std::future::ready(Ok(
                    tonic::Status::permission_denied(reason).into_http()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::Identity;

    fn peer(name: &str) -> Peer {
        Peer { addr: "127.0.0.1:1".parse().unwrap(), identity: Some(Identity::new("agora.local", name)) }
    }

    #[test]
    fn each_agora_package_is_served_by_its_role() {
        assert_eq!(role_of("agora.product.v1.ProductService"), "product-service");
        assert_eq!(role_of("agora.user.v1.UserService"), "user-service");
        assert_eq!(role_of("grpc.health.v1.Health"), "grpc.health.v1.Health");
    }

    #[test]
    fn the_contract_names_who_calls_what() {
        let callers = Callers::agora();
        let reserve = "/agora.product.v1.ProductService/ReserveStock";
        assert_eq!(callers.allowed(reserve), Some(&["order-service".to_owned()][..]));
        assert!(callers.check(reserve, Some(&peer("order-service"))).is_ok());
        let refused = callers.check(reserve, Some(&peer("gateway"))).unwrap_err();
        assert!(refused.contains("spiffe://agora.local/gateway may not call"), "{refused}");
        // A public method is the gateway's; GetUser also order-service's.
        let list = "/agora.product.v1.ProductService/ListProducts";
        assert!(callers.check(list, Some(&peer("gateway"))).is_ok());
        assert!(callers.check(list, Some(&peer("payment-service"))).is_err());
        let get_user = "/agora.user.v1.UserService/GetUser";
        assert!(callers.check(get_user, Some(&peer("order-service"))).is_ok());
        assert!(callers.check(get_user, Some(&peer("gateway"))).is_ok());
        assert!(callers.check(get_user, Some(&peer("product-service"))).is_err());
        // Health is open to every identity, never to a caller without one.
        assert!(callers.check("/grpc.health.v1.Health/Check", Some(&peer("payment-service"))).is_ok());
        assert!(callers.check("/grpc.health.v1.Health/Check", None).is_err());
        // A method nobody declared is nobody's.
        let unknown = callers.check("/agora.product.v1.ProductService/DropCatalog", Some(&peer("gateway")));
        assert!(unknown.unwrap_err().contains("not a method of the contract"));
    }
}
