//! The permissions service's errors and their gRPC codes.

use tonic::Status;

/// Result with the service's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the permissions service. Messages never contain personal data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field failed validation; the message names it.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The proto field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Absent, or not visible to the caller.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Unique constraint: the thing exists already.
    #[error("{0}")]
    AlreadyExists(&'static str),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// A size or count limit was exceeded; the message names it.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Shared infrastructure failed (database, bus, crypto, auth).
    #[error(transparent)]
    Kit(mindmesh_kit::Error),
}

/// The kit's errors, with a field the kit's checks refused kept as [`Error::Invalid`].
impl From<mindmesh_kit::Error> for Error {
    fn from(e: mindmesh_kit::Error) -> Self {
        match e {
            mindmesh_kit::Error::InvalidArgument { field, reason } => {
                Error::Invalid { field, reason }
            }
            other => Error::Kit(other),
        }
    }
}

impl Error {
    /// An [`Error::Invalid`] for `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        Error::Kit(e.into())
    }
}

/// For the kit's traits (event handlers, subject providers), which speak its error type.
impl From<Error> for mindmesh_kit::Error {
    fn from(err: Error) -> mindmesh_kit::Error {
        match err {
            Error::Kit(e) => e,
            Error::Invalid { field, reason } => {
                mindmesh_kit::Error::InvalidArgument { field, reason }
            }
            Error::NotFound(what) => mindmesh_kit::Error::NotFound(what),
            Error::AlreadyExists(what) => mindmesh_kit::Error::AlreadyExists(what.to_owned()),
            Error::PermissionDenied(why) => mindmesh_kit::Error::PermissionDenied(why),
            Error::ResourceExhausted(why) => mindmesh_kit::Error::ResourceExhausted(why),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        mindmesh_kit::Error::from(err).into()
    }
}
