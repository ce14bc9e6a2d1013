//! product-service's errors, each with the gRPC status code it answers with.

use agora_kit::fault::Fault;
use tonic::Code;

use crate::domain::ParseError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] ParseError),
    #[error("product {0} not found")]
    NotFound(String),
    #[error("not enough stock for product {product_id}: {requested} requested, {available} available")]
    InsufficientStock { product_id: String, requested: i64, available: i64 },
    #[error("the reservation for order {0} was already released")]
    Released(String),
    #[error("the reservation for order {0} was already committed")]
    Committed(String),
    #[error("no reservation for order {0}")]
    NoReservation(String),
    #[error("{0}")]
    PermissionDenied(&'static str),
    #[error(transparent)]
    Fault(#[from] Fault),
}

agora_kit::service_errors!(Error, database: "product", codes: {
    Error::Invalid(_) => Code::InvalidArgument,
    Error::NotFound(_) | Error::NoReservation(_) => Code::NotFound,
    Error::InsufficientStock { .. } | Error::Released(_) | Error::Committed(_) => Code::FailedPrecondition,
    Error::PermissionDenied(_) => Code::PermissionDenied,
});
