//! The failures every service shares beside its own domain errors: a caller without a valid
//! identity, the database, and the unexpected. A service's error enum holds one variant
//! `Fault(Fault)`, and [`service_errors!`](crate::service_errors) writes its conversions (so `?`
//! works on `sqlx`, `tonic::Status` and `anyhow` results) and its one mapping to a status code.

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
    /// The database could not be reached or could not take the write just now (see
    /// [`crate::db::is_unavailable`]): the same call may succeed in a moment.
    pub fn database_unavailable(&self) -> bool {
        matches!(self, Self::Database(e) if crate::db::is_unavailable(e))
    }

    /// What the caller is told: the identity's own status; UNAVAILABLE for the database
    /// (`database` names it: "the order database is unavailable"), which a retry may get past;
    /// INTERNAL, without details, for the rest. The last two are logged here. A database that
    /// could not be reached marks the status for [`crate::patience`], which may run the call
    /// again on this server and removes the mark before anything leaves it.
    pub fn into_status(self, database: &str) -> Status {
        let unavailable = self.database_unavailable();
        match self {
            Self::Identity(status) => status,
            Self::Database(e) => {
                tracing::error!(error = %e, "database failure");
                let mut status = Status::unavailable(format!("the {database} database is unavailable; try again"));
                if unavailable {
                    crate::patience::mark(&mut status);
                }
                status
            }
            Self::Internal(e) => {
                tracing::error!(error = %e, "internal failure");
                Status::internal("internal error")
            }
        }
    }
}

/// A service error enum's conversions, written once for the four services.
///
/// `$error` has a variant `Fault(agora_kit::fault::Fault)`; the macro writes `From` a database
/// error, a `tonic::Status` (the caller's identity) and an `anyhow::Error` into it, so `?` works
/// on those results, and its one mapping to a gRPC status: a fault through
/// [`Fault::into_status`] (naming `$database`), every domain error with the code listed for its
/// variant and its own message. The list must name every domain variant: the match is checked
/// for exhaustiveness like any other.
///
/// ```ignore
/// agora_kit::service_errors!(Error, database: "order", codes: {
///     Error::NotFound(_) => Code::NotFound,
///     Error::Refused(status) => status.code(),
/// });
/// ```
#[macro_export]
macro_rules! service_errors {
    ($error:ident, database: $database:literal, codes: { $($variant:pat => $code:expr),+ $(,)? }) => {
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

        impl $error {
            /// The database could not be reached just now; the same call may succeed in a
            /// moment ([`agora_kit::patience::patiently`]).
            pub fn database_unavailable(&self) -> bool {
                matches!(self, $error::Fault(fault) if fault.database_unavailable())
            }
        }

        impl From<$error> for ::tonic::Status {
            fn from(err: $error) -> Self {
                match err {
                    $error::Fault(fault) => fault.into_status($database),
                    err => {
                        let code = match &err {
                            // Answered above; listed so that the match stays exhaustive.
                            $error::Fault(_) => ::tonic::Code::Internal,
                            $($variant => $code,)+
                        };
                        ::tonic::Status::new(code, err.to_string())
                    }
                }
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
        assert!(crate::patience::marked(&database), "a database out of reach may be waited for");
        let refused = Fault::from(sqlx::Error::RowNotFound).into_status("order");
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert!(!crate::patience::marked(&refused), "an error about the statement is not");
        let internal = Fault::from(anyhow::anyhow!("secret detail")).into_status("order");
        assert_eq!((internal.code(), internal.message()), (tonic::Code::Internal, "internal error"));
    }
}
