//! order-service's errors, each with the gRPC status code it answers with.

use agora_kit::fault::Fault;
use tonic::{Code, Status};

use crate::domain::ParseError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] ParseError),
    #[error("order {0} not found")]
    NotFound(String),
    #[error("order {0} is already paid and can no longer be cancelled")]
    AlreadyPaid(String),
    #[error("idempotency key {0:?} was already used for a different order")]
    KeyReused(String),
    #[error("user {0} does not exist")]
    UnknownUser(String),
    #[error("order total: {0}")]
    Total(String),
    /// A dependency turned the request down for a reason the caller can act on (no such
    /// product, not enough stock, an invalid item): its code and message are passed on as is.
    #[error("{}", .0.message())]
    Refused(Status),
    #[error("{0} did not answer in time")]
    DependencyTimeout(&'static str),
    #[error("{0} is unavailable; try again")]
    DependencyUnavailable(&'static str),
    #[error(transparent)]
    Fault(#[from] Fault),
}

impl Error {
    /// What a dependency's (user-service's, product-service's) error means to our caller; a
    /// failure that is not the caller's is logged here with the dependency's own words.
    pub fn upstream(service: &'static str, status: Status) -> Self {
        match status.code() {
            Code::NotFound | Code::FailedPrecondition | Code::InvalidArgument => Self::Refused(status),
            Code::DeadlineExceeded => Self::DependencyTimeout(service),
            code => {
                tracing::warn!(%service, ?code, message = status.message(), "dependency failed");
                Self::DependencyUnavailable(service)
            }
        }
    }
}

agora_kit::service_errors!(Error, database: "order", codes: {
    Error::Invalid(_) | Error::Total(_) => Code::InvalidArgument,
    Error::NotFound(_) => Code::NotFound,
    Error::AlreadyPaid(_) | Error::UnknownUser(_) => Code::FailedPrecondition,
    Error::KeyReused(_) => Code::AlreadyExists,
    Error::Refused(status) => status.code(),
    Error::DependencyTimeout(_) => Code::DeadlineExceeded,
    Error::DependencyUnavailable(_) => Code::Unavailable,
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependency_error_is_passed_on_only_when_it_is_the_callers() {
        let answer = |code| Status::from(Error::upstream("product-service", Status::new(code, "its words")));
        for code in [Code::NotFound, Code::FailedPrecondition, Code::InvalidArgument] {
            assert_eq!((answer(code).code(), answer(code).message().to_owned()), (code, "its words".to_owned()));
        }
        let late = answer(Code::DeadlineExceeded);
        assert_eq!((late.code(), late.message()), (Code::DeadlineExceeded, "product-service did not answer in time"));
        for code in [Code::Internal, Code::Unavailable, Code::PermissionDenied] {
            let down = answer(code);
            assert_eq!((down.code(), down.message()), (Code::Unavailable, "product-service is unavailable; try again"));
        }
    }
}
