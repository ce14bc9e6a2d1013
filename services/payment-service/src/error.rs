//! payment-service's errors, each with the gRPC status code it answers with.

use agora_kit::fault::Fault;
use tonic::Code;

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

agora_kit::service_errors!(Error, database: "payment", codes: {
    Error::Invalid(_) | Error::CurrencyMismatch { .. } | Error::Overflow => Code::InvalidArgument,
    Error::NotYours => Code::PermissionDenied,
});
