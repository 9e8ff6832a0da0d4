//! The kit's error type and the one mapping from errors to gRPC status codes.

use tonic::{Code, Status};

/// Result with the kit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in shared code. Messages never contain secrets or content.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is malformed; `field` names it.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The offending field, as named in the proto.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Absent, or not visible to the caller.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The thing to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// No token, or a bad one.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid caller who may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The system is not in a state that allows this.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A size or count limit was exceeded; the message names the limit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A dependency is down; safe to retry.
    #[error("{0}")]
    Unavailable(String),
    /// Not built yet: the honest answer instead of a fake success.
    #[error("{0} is not implemented yet")]
    Unimplemented(&'static str),
    /// A peer service refused the request for a reason the caller can act on (a field,
    /// a limit, a state): its code and its message, which names the field or limit, are
    /// passed on as they are. Peers follow the same rule: no secrets, no content.
    #[error("{message}")]
    Refused {
        /// The peer's status code.
        code: Code,
        /// The peer's message.
        message: String,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// The event bus failed.
    #[error("event bus error: {0}")]
    Bus(String),
    /// An event that decodes but cannot be applied as it is (a field that is not a
    /// UUID, a missing tenant): delivering it again cannot help, so a consumer moves it
    /// to the dead letters at once.
    #[error("malformed event: {0}")]
    MalformedEvent(String),
    /// Sealing, opening, signing or verifying failed.
    #[error("crypto error: {0}")]
    Crypto(&'static str),
    /// Configuration is missing or wrong.
    #[error("configuration error: {0}")]
    Config(String),
    /// A bug or an unexpected state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::InvalidArgument`] for `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Unavailable(_) | Error::Bus(_) => Code::Unavailable,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::Refused { code, .. } => *code,
            Error::Db(e) if is_connection_error(e) => Code::Unavailable,
            Error::Db(_)
            | Error::MalformedEvent(_)
            | Error::Crypto(_)
            | Error::Config(_)
            | Error::Internal(_) => Code::Internal,
        }
    }
}

fn is_connection_error(e: &sea_orm::DbErr) -> bool {
    matches!(
        e,
        sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_)
    )
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        // A refusal says what to do about it, whatever its code.
        if let Error::Refused { code, message } = err {
            return Status::new(code, message);
        }
        let code = err.code();
        match code {
            // Internal details (SQL, key ids) stay in the log; the caller gets a plain message.
            Code::Internal => {
                tracing::error!(error = %err, "internal error");
                Status::internal("internal error")
            }
            Code::Unavailable => {
                tracing::warn!(error = %err, "dependency unavailable");
                Status::unavailable("a dependency is unavailable, retry later")
            }
            _ => Status::new(code, err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_do_not_reach_the_caller() {
        let status: Status = Error::Internal("key 1234 failed to unwrap".into()).into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("1234"));
    }

    #[test]
    fn invalid_argument_names_the_field() {
        let status: Status = Error::invalid("email", "is not a valid address").into();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "invalid email: is not a valid address");
    }
}
