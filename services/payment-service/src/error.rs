//! payment-service's errors and their one mapping to gRPC status codes.

use tonic::Status;

use crate::domain::ParseError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] ParseError),
    #[error("you may only use your own wallet and payments")]
    NotYours,
    #[error("the wallet holds {wallet}, not {requested}")]
    CurrencyMismatch { wallet: String, requested: String },
    #[error("the wallet balance would overflow")]
    Overflow,
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
            Error::CurrencyMismatch { .. } | Error::Overflow => Status::invalid_argument(err.to_string()),
            Error::NotYours => Status::permission_denied(err.to_string()),
            Error::Identity(status) => status,
            Error::Database(e) => {
                tracing::error!(error = %e, "database failure");
                Status::unavailable("the payment database is unavailable; try again")
            }
            Error::Internal(e) => {
                tracing::error!(error = %e, "internal failure");
                Status::internal("internal error")
            }
        }
    }
}
