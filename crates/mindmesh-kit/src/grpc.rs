//! Small helpers for the gRPC faces of the services: paging, timestamps, and wrapping a
//! generated server with the message limits and the auth interceptor.

use crate::error::{Error, Result};

/// Validates a `page_size`: 0 means `default`, above `max` is INVALID_ARGUMENT naming
/// the limit.
pub fn page_size(value: u32, default: u32, max: u32) -> Result<u64> {
    match value {
        0 => Ok(u64::from(default)),
        v if v > max => Err(Error::invalid(
            "page_size",
            format!("must be at most {max}"),
        )),
        v => Ok(u64::from(v)),
    }
}

/// A protobuf timestamp.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A protobuf timestamp as a UTC time; `field` names it in the error.
pub fn from_timestamp(
    field: &'static str,
    t: &prost_types::Timestamp,
) -> Result<chrono::DateTime<chrono::Utc>> {
    let nanos = u32::try_from(t.nanos).map_err(|_| Error::invalid(field, "has negative nanos"))?;
    chrono::DateTime::from_timestamp(t.seconds, nanos)
        .ok_or_else(|| Error::invalid(field, "is out of range"))
}

/// How tonic's message for an undecodable request starts (its status is INTERNAL).
pub const DECODE_ERROR: &str = "failed to decode Protobuf message";
/// [`DECODE_ERROR`] as it appears percent-encoded in the `grpc-message` header.
pub const DECODE_ERROR_ENCODED: &str = "failed%20to%20decode%20Protobuf%20message";

/// A status from reading a request stream: an undecodable message (a string that is
/// not UTF-8, a truncated field) is the caller's INVALID_ARGUMENT, not our INTERNAL.
pub fn inbound(status: tonic::Status) -> tonic::Status {
    if status.code() == tonic::Code::Internal && status.message().starts_with(DECODE_ERROR) {
        tonic::Status::invalid_argument(status.message().to_owned())
    } else {
        status
    }
}

/// A lazily connected channel to the peer service at `url`, which is configured under
/// `setting` (named in the error when it is missing or malformed).
pub fn peer_channel(
    setting: &str,
    url: Option<&str>,
    tls: Option<&tonic::transport::ClientTlsConfig>,
) -> Result<tonic::transport::Channel> {
    let url = url.ok_or_else(|| {
        Error::Config(format!(
            "{setting} is not set and this process does not run that service"
        ))
    })?;
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|_| Error::Config(format!("{setting} is not a valid URL")))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_adaptive_window(true);
    if url.starts_with("https://") {
        // Verified against tls.peer_ca_file, showing this process's certificate.
        let tls = tls.ok_or_else(|| {
            Error::Config(format!(
                "{setting} is https:// but tls.peer_ca_file is not set"
            ))
        })?;
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| Error::Config(format!("{setting}: {e}")))?;
    }
    Ok(endpoint.connect_lazy())
}

/// The error a failed call to the peer service `peer` becomes. Unreachable or
/// overloaded peers are UNAVAILABLE (retryable). What the caller can act on — a field
/// the peer refused, a limit, a state, something not found — keeps its code and the
/// peer's message, which names the field or the limit. A message too large for the
/// connection names `limits.max_message_bytes`. Anything else (the peer refusing this
/// service's own token, a bug) is this service's internal error: the peer's message is
/// kept for the log, never forwarded to the caller as ours.
pub fn peer_error(peer: &str, status: &tonic::Status) -> Error {
    use tonic::Code;
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted => {
            Error::Unavailable(format!("the {peer} service is unavailable"))
        }
        // tonic's own verdict on a message over the size limit, on either side.
        Code::OutOfRange if status.message().contains("message length too large") => {
            Error::ResourceExhausted(format!(
                "a message to or from the {peer} service is larger than limits.max_message_bytes"
            ))
        }
        code @ (Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::ResourceExhausted
        | Code::NotFound
        | Code::AlreadyExists) => Error::Refused {
            code,
            message: status.message().to_owned(),
        },
        code => {
            tracing::warn!(peer, ?code, message = status.message(), "peer call failed");
            Error::Internal(format!("the {peer} service answered {code:?}"))
        }
    }
}

/// Wraps a generated tonic server: sets the message size limits and puts the auth
/// interceptor in front of it.
///
/// ```ignore
/// routes.add_service(api_service!(AccountServiceServer::new(api), ctx));
/// ```
#[macro_export]
macro_rules! api_service {
    ($server:expr, $ctx:expr) => {
        tonic::service::interceptor::InterceptedService::new(
            $server
                .max_decoding_message_size($ctx.config.limits.max_message_bytes)
                .max_encoding_message_size($ctx.config.limits.max_message_bytes),
            $ctx.interceptor.clone(),
        )
    };
}

/// Marks a call to a method that authorizes itself (a capability in its request, such
/// as an unsubscribe link's token): [`crate::auth::AuthInterceptor`] lets it in without a
/// bearer token, and the handler must not look for a [`crate::auth::Caller`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelfAuthorized;

/// A gRPC service of which exactly the methods `paths` (full paths,
/// `/package.Service/Method`) are [`SelfAuthorized`]; wraps the intercepted service.
#[derive(Clone)]
pub struct PublicMethods<S> {
    inner: S,
    paths: &'static [&'static str],
}

impl<S> PublicMethods<S> {
    /// `inner`, with `paths` let in without a bearer token.
    pub fn new(inner: S, paths: &'static [&'static str]) -> Self {
        PublicMethods { inner, paths }
    }
}

impl<S, B> tower::Service<http::Request<B>> for PublicMethods<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // Set from the path alone, never from anything the client sends.
        request.extensions_mut().remove::<SelfAuthorized>();
        if self.paths.contains(&request.uri().path()) {
            request.extensions_mut().insert(SelfAuthorized);
        }
        self.inner.call(request)
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for PublicMethods<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_refusal_keeps_its_code_and_message() {
        use tonic::{Code, Status};
        let refused = peer_error(
            "permissions",
            &Status::invalid_argument("invalid at_least_revision: is ahead of the newest state"),
        );
        let status: Status = refused.into();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("at_least_revision"));
        for (code, expected) in [
            (Code::FailedPrecondition, Code::FailedPrecondition),
            (Code::ResourceExhausted, Code::ResourceExhausted),
            (Code::NotFound, Code::NotFound),
            (Code::Unavailable, Code::Unavailable),
            (Code::PermissionDenied, Code::Internal),
            (Code::Internal, Code::Internal),
        ] {
            let status: Status = peer_error("storage", &Status::new(code, "why")).into();
            assert_eq!(status.code(), expected, "{code:?}");
        }
        let too_large = peer_error(
            "permissions",
            &Status::out_of_range(
                "Error, encoded message length too large: found 9 bytes, the limit is: 4 bytes",
            ),
        );
        assert_eq!(too_large.code(), Code::ResourceExhausted);
        assert!(too_large.to_string().contains("limits.max_message_bytes"));
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0, 100, 1000).unwrap(), 100);
        assert_eq!(page_size(5, 100, 1000).unwrap(), 5);
        let err = page_size(1001, 100, 1000).unwrap_err();
        assert!(err.to_string().contains("page_size") && err.to_string().contains("1000"));
    }
}
