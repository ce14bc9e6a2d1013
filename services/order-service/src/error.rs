//! order-service's errors and their one mapping to gRPC status codes.

use agora_kit::fault::Fault;
use tonic::{Code, Status};

use crate::domain::ParseError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] ParseError),
    #[error("order {0} not found")]
    NotFound(String),
    #[error("order {0} belongs to another user")]
    NotYours(String),
    #[error("order {0} is already paid and can no longer be cancelled")]
    AlreadyPaid(String),
    #[error("idempotency key {0:?} was already used for a different order")]
    KeyReused(String),
    #[error("user {0} does not exist")]
    UnknownUser(String),
    #[error("order total: {0}")]
    Total(String),
    /// A dependency (user-service, product-service) answered with an error we pass on as is:
    /// its code (NotFound product, FailedPrecondition stock, Unavailable) is already precise.
    #[error("{}: {}", .service, .status.message())]
    Upstream { service: &'static str, status: Status },
    #[error(transparent)]
    Fault(#[from] Fault),
}

agora_kit::service_faults!(Error);

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(e) => Status::invalid_argument(e.to_string()),
            Error::Total(_) => Status::invalid_argument(err.to_string()),
            Error::NotFound(_) => Status::not_found(err.to_string()),
            Error::NotYours(_) => Status::permission_denied(err.to_string()),
            Error::AlreadyPaid(_) | Error::UnknownUser(_) => Status::failed_precondition(err.to_string()),
            Error::KeyReused(_) => Status::already_exists(err.to_string()),
            Error::Upstream { service, status } => match status.code() {
                Code::NotFound | Code::FailedPrecondition | Code::InvalidArgument => {
                    Status::new(status.code(), status.message().to_owned())
                }
                Code::DeadlineExceeded => Status::deadline_exceeded(format!("{service} did not answer in time")),
                code => {
                    tracing::warn!(%service, ?code, message = status.message(), "dependency failed");
                    Status::unavailable(format!("{service} is unavailable; try again"))
                }
            },
            Error::Fault(fault) => fault.into_status("order"),
        }
    }
}
