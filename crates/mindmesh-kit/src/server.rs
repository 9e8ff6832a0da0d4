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

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
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
    let server = tonic::transport::Server::builder()
        .trace_fn(crate::telemetry::grpc_request_span)
        .add_routes(routes)
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result.map_err(|e| Error::Internal(format!("grpc server: {e}"))),
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "in-flight calls did not finish in time; stopping anyway");
            Ok(())
        }
    }
}
