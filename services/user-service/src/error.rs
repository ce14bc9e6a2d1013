//! user-service's errors and their one mapping to gRPC status codes.

use agora_kit::fault::Fault;
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
    Fault(#[from] Fault),
}

agora_kit::service_faults!(Error);

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(e) => Status::invalid_argument(e.to_string()),
            Error::InvalidArgument(m) => Status::invalid_argument(m),
            Error::EmailTaken => Status::already_exists(err.to_string()),
            Error::BadCredentials => Status::unauthenticated(err.to_string()),
            Error::NotFound(_) => Status::not_found(err.to_string()),
            Error::PermissionDenied => Status::permission_denied(err.to_string()),
            Error::Fault(fault) => fault.into_status("user"),
        }
    }
}
