//! product-service's errors and their one mapping to gRPC status codes.

use agora_kit::fault::Fault;
use tonic::Status;

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

agora_kit::service_faults!(Error);

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(e) => Status::invalid_argument(e.to_string()),
            Error::NotFound(_) | Error::NoReservation(_) => Status::not_found(err.to_string()),
            Error::InsufficientStock { .. } | Error::Released(_) | Error::Committed(_) => {
                Status::failed_precondition(err.to_string())
            }
            Error::PermissionDenied(_) => Status::permission_denied(err.to_string()),
            Error::Fault(fault) => fault.into_status("product"),
        }
    }
}
