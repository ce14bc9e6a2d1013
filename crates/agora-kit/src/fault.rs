//! The failures every service shares beside its own domain errors: a caller without a valid
//! identity, the database, and the unexpected. A service's error enum holds one variant
//! `Fault(Fault)`, [`service_faults!`](crate::service_faults) writes its conversions (so `?`
//! works on `sqlx`, `tonic::Status` and `anyhow` results), and its status mapping hands the
//! fault to [`Fault::into_status`].

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Fault {
    /// The caller's identity is missing or malformed (`Caller::from_metadata`).
    #[error(transparent)]
    Identity(Status),
    #[error("database: {0}")]
    Database(sqlx::Error),
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// A database error fails the span it happened in (the store method's `db` span).
impl From<sqlx::Error> for Fault {
    fn from(error: sqlx::Error) -> Self {
        crate::db::failed(&error);
        Self::Database(error)
    }
}

impl From<Status> for Fault {
    fn from(status: Status) -> Self {
        Self::Identity(status)
    }
}

impl From<anyhow::Error> for Fault {
    fn from(error: anyhow::Error) -> Self {
        Self::Internal(error)
    }
}

impl Fault {
    /// What the caller is told: the identity's own status; UNAVAILABLE for the database
    /// (`database` names it: "the order database is unavailable"), which a retry may get past;
    /// INTERNAL, without details, for the rest. The last two are logged here.
    pub fn into_status(self, database: &str) -> Status {
        match self {
            Self::Identity(status) => status,
            Self::Database(e) => {
                tracing::error!(error = %e, "database failure");
                Status::unavailable(format!("the {database} database is unavailable; try again"))
            }
            Self::Internal(e) => {
                tracing::error!(error = %e, "internal failure");
                Status::internal("internal error")
            }
        }
    }
}

/// `From` a database error, a `tonic::Status` (the caller's identity) and an `anyhow::Error`
/// for a service error enum `$error` with a variant `Fault(agora_kit::fault::Fault)`.
#[macro_export]
macro_rules! service_faults {
    ($error:ty) => {
        impl From<::sqlx::Error> for $error {
            fn from(error: ::sqlx::Error) -> Self {
                Self::Fault(error.into())
            }
        }

        impl From<::tonic::Status> for $error {
            fn from(status: ::tonic::Status) -> Self {
                Self::Fault(status.into())
            }
        }

        impl From<::anyhow::Error> for $error {
            fn from(error: ::anyhow::Error) -> Self {
                Self::Fault(error.into())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fault_has_its_status() {
        let identity = Fault::from(Status::unauthenticated("who?")).into_status("order");
        assert_eq!((identity.code(), identity.message()), (tonic::Code::Unauthenticated, "who?"));
        let database = Fault::from(sqlx::Error::PoolTimedOut).into_status("order");
        assert_eq!(database.code(), tonic::Code::Unavailable);
        assert_eq!(database.message(), "the order database is unavailable; try again");
        let internal = Fault::from(anyhow::anyhow!("secret detail")).into_status("order");
        assert_eq!((internal.code(), internal.message()), (tonic::Code::Internal, "internal error"));
    }
}
