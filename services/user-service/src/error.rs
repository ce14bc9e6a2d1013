//! user-service's errors, each with the gRPC status code it answers with.

use agora_kit::fault::Fault;
use tonic::Code;

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

agora_kit::service_errors!(Error, database: "user", codes: {
    Error::Invalid(_) | Error::InvalidArgument(_) => Code::InvalidArgument,
    Error::EmailTaken => Code::AlreadyExists,
    Error::BadCredentials => Code::Unauthenticated,
    Error::NotFound(_) => Code::NotFound,
    Error::PermissionDenied => Code::PermissionDenied,
});
