//! product-service's errors and their one mapping to gRPC status codes.

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
    Identity(#[from] Status),
    #[error("database: {0}")]
    Database(sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A database error fails the span it happened in (the store method's `db` span).
impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        agora_kit::db::failed(&error);
        Self::Database(error)
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(e) => Status::invalid_argument(e.to_string()),
            Error::NotFound(_) | Error::NoReservation(_) => Status::not_found(err.to_string()),
            Error::InsufficientStock { .. } | Error::Released(_) | Error::Committed(_) => {
                Status::failed_precondition(err.to_string())
            }
            Error::PermissionDenied(_) => Status::permission_denied(err.to_string()),
            Error::Identity(status) => status,
            Error::Database(e) => {
                tracing::error!(error = %e, "database failure");
                Status::unavailable("the product database is unavailable; try again")
            }
            Error::Internal(e) => {
                tracing::error!(error = %e, "internal failure");
                Status::internal("internal error")
            }
        }
    }
}
