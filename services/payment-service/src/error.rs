//! payment-service's errors and their one mapping to gRPC status codes.

use agora_kit::fault::Fault;
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
    Fault(#[from] Fault),
}

agora_kit::service_faults!(Error);

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(e) => Status::invalid_argument(e.to_string()),
            Error::CurrencyMismatch { .. } | Error::Overflow => Status::invalid_argument(err.to_string()),
            Error::NotYours => Status::permission_denied(err.to_string()),
            Error::Fault(fault) => fault.into_status("payment"),
        }
    }
}
