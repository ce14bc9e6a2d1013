//! payment-service's errors, each with the gRPC status code it answers with.

use agora_kit::fault::Fault;
use tonic::Code;

use crate::domain::ParseError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] ParseError),
    #[error("wallet of user {0} not found")]
    NoWallet(String),
    #[error("the wallet holds {wallet}, not {requested}")]
    CurrencyMismatch { wallet: String, requested: String },
    #[error("the wallet balance would overflow")]
    Overflow,
    #[error(transparent)]
    Fault(#[from] Fault),
}

agora_kit::service_errors!(Error, database: "payment", codes: {
    Error::Invalid(_) | Error::CurrencyMismatch { .. } | Error::Overflow => Code::InvalidArgument,
    Error::NoWallet(_) => Code::NotFound,
});
