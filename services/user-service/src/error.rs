//! user-service's errors and their one mapping to gRPC status codes.

use tonic::Status;

use crate::domain::ParseError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] ParseError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Deliberately the same for unknown email and wrong password.
    #[error("invalid email or password")]
    BadCredentials,
    #[error("user {0} not found")]
    NotFound(String),
    #[error("you may only read your own account")]
    PermissionDenied,
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
            Error::InvalidArgument(m) => Status::invalid_argument(m),
            Error::EmailTaken => Status::already_exists(err.to_string()),
            Error::BadCredentials => Status::unauthenticated(err.to_string()),
            Error::NotFound(_) => Status::not_found(err.to_string()),
            Error::PermissionDenied => Status::permission_denied(err.to_string()),
            Error::Identity(status) => status,
            Error::Database(e) => {
                tracing::error!(error = %e, "database failure");
                Status::unavailable("the user database is unavailable; try again")
            }
            Error::Internal(e) => {
                tracing::error!(error = %e, "internal failure");
                Status::internal("internal error")
            }
        }
    }
}
