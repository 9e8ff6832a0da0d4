//! Assembling and running the one gRPC server of a process: the API services of every
//! service it runs, plus health (per service), reflection, and graceful shutdown.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::error::{Error, Result};

/// Serves `routes` on `listener` until `shutdown` is cancelled; then stops accepting,
/// gives in-flight calls up to `grace` to finish, and returns.
///
/// `health_names` are reported SERVING on `grpc.health.v1.Health` (the overall status ""
/// too) and NOT_SERVING once shutdown begins.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    health_names: Vec<String>,
    shutdown: CancellationToken,
    grace: Duration,
    tls: Option<crate::tls::ServerTls>,
) -> Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in health_names.iter().chain(std::iter::once(&String::new())) {
        reporter
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mindmesh_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mindmesh_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;

    let signal = {
        let shutdown = shutdown.clone();
        let reporter = reporter.clone();
        let names = health_names.clone();
        async move {
            shutdown.cancelled().await;
            for name in names.iter().chain(std::iter::once(&String::new())) {
                reporter
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
        }
    };
    let router = tonic::transport::Server::builder()
        // Large syncs arrive in one message: do not make them crawl through 64 KiB windows.
        .initial_stream_window_size(Some(4 * 1024 * 1024))
        .initial_connection_window_size(Some(8 * 1024 * 1024))
        .layer(tower::util::MapResponseLayer::new(rewrite_caller_errors))
        .trace_fn(crate::telemetry::grpc_request_span)
        .add_routes(routes)
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha);
    let server: std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::result::Result<(), tonic::transport::Error>>
                + Send,
        >,
    > = match tls {
        Some(tls) => Box::pin(
            router.serve_with_incoming_shutdown(tls.incoming(listener, shutdown.clone()), signal),
        ),
        None => Box::pin(router.serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            signal,
        )),
    };
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result.map_err(|e| Error::Internal(format!("grpc server: {e}"))),
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "in-flight calls did not finish in time; stopping anyway");
            Ok(())
        }
    }
}

/// Two errors tonic raises for a caller's mistake carry the wrong code, and exactly
/// those are rewritten (their messages, naming the limit or field, stay): a message over
/// the size limit is OUT_OF_RANGE, but the API promises RESOURCE_EXHAUSTED (as gRPC's own
/// implementations answer); an undecodable request is INTERNAL, but INVALID_ARGUMENT.
pub(crate) fn rewrite_caller_errors<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let too_large = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                m.contains("message%20length%20too%20large")
                    || m.contains("message length too large")
            });
    if too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    // tonic answers a request it cannot decode (e.g. a string field that is not UTF-8)
    // with INTERNAL; it is the caller's mistake, so INVALID_ARGUMENT. The message names
    // the field.
    let undecodable = headers.get("grpc-status").is_some_and(|s| s == "13")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                m.contains(crate::grpc::DECODE_ERROR_ENCODED)
                    || m.contains(crate::grpc::DECODE_ERROR)
            });
    if undecodable {
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: &str, message: &str) -> http::Response<()> {
        http::Response::builder()
            .header("grpc-status", status)
            .header("grpc-message", message)
            .body(())
            .unwrap()
    }

    #[test]
    fn only_caller_errors_are_rewritten() {
        let r = rewrite_caller_errors(response(
            "11",
            "Error,%20decoded%20message%20length%20too%20large:%20found%205%20bytes",
        ));
        assert_eq!(r.headers()["grpc-status"], "8");
        let r = rewrite_caller_errors(response("11", "page out of range"));
        assert_eq!(r.headers()["grpc-status"], "11");
        let r = rewrite_caller_errors(response("3", "message length too large"));
        assert_eq!(r.headers()["grpc-status"], "3");
        let r = rewrite_caller_errors(response(
            "13",
            "failed%20to%20decode%20Protobuf%20message:%20CreateDocumentRequest.title:%20invalid%20string%20value",
        ));
        assert_eq!(r.headers()["grpc-status"], "3");
        let r = rewrite_caller_errors(response("13", "internal error"));
        assert_eq!(r.headers()["grpc-status"], "13");
    }
}
