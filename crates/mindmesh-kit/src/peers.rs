//! How a service reaches the services it calls (STYLE.md rule 2: one client type for a
//! peer in this process and a remote one).
//!
//! A [`PeerChannel`] is what every gRPC client of a peer is built on. When the peer runs
//! in another process it is a tonic [`Channel`](tonic::transport::Channel) to the URL in
//! `peers.*_url`; when it runs in this process (and no URL is configured) it calls the
//! process's own gRPC routes directly — no socket, no HTTP/2 framing — through
//! [`InProcess`], which the binary fills in once every service has added its routes. The
//! call still goes through the peer's whole gRPC stack (its interceptor checks the service
//! token, its limits apply, its errors are rewritten as the server rewrites them), so a
//! peer behaves the same wherever it runs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::service::Routes;
use tower::ServiceExt as _;
use tower::util::BoxCloneSyncService;
use tracing::Instrument as _;

use crate::Service;
use crate::error::Result;

/// What a [`PeerChannel`] fails with: the transport to a remote peer broke (gRPC errors
/// travel in the response, and an in-process call never fails this way). A concrete type
/// rather than a boxed error, so that clients' futures stay `Send` in every context.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TransportError(#[from] tonic::transport::Error);

/// The channel a gRPC client of a peer service is built on, wherever the peer runs.
pub type PeerChannel =
    BoxCloneSyncService<http::Request<Body>, http::Response<Body>, TransportError>;

/// How long a call made while the process is still starting waits for the routes (as a
/// connection to a listener not yet serving would wait) before it answers UNAVAILABLE.
const STARTING_WAIT: Duration = Duration::from_secs(30);

/// The gRPC routes of the services this process runs, for the peers in it that call
/// them. Cloning shares them.
#[derive(Clone)]
pub struct InProcess {
    services: Arc<[Service]>,
    routes: Arc<watch::Sender<Option<Routes>>>,
    shutdown: CancellationToken,
}

impl Default for InProcess {
    /// No service in this process.
    fn default() -> Self {
        InProcess::new(&[], CancellationToken::new())
    }
}

impl InProcess {
    /// The services this process runs; their routes come with [`InProcess::install`].
    /// Once `shutdown` is cancelled they take no new calls, as the server takes none.
    pub fn new(services: &[Service], shutdown: CancellationToken) -> Self {
        InProcess {
            services: services.into(),
            routes: Arc::new(watch::Sender::new(None)),
            shutdown,
        }
    }

    /// True when `service` runs in this process.
    pub fn runs(&self, service: Service) -> bool {
        self.services.contains(&service)
    }

    /// Makes the process's routes callable in-process; the calls waiting for them go on.
    pub fn install(&self, routes: Routes) {
        self.routes.send_replace(Some(routes));
    }

    /// Waits until the process serves (every service of it has started and its routes
    /// are installed), or shuts down. Background work that calls peers — a sync resumed
    /// at start — waits for this rather than for the calls' starting wait. A context
    /// with no service in this process (a crate's tests) serves at once.
    pub async fn serving(&self) {
        if self.services.is_empty() {
            return;
        }
        let mut ready = self.routes.subscribe();
        tokio::select! {
            _ = ready.wait_for(Option::is_some) => {}
            () = self.shutdown.cancelled() => {}
        }
    }

    /// A channel to `service` in this process. A call made while the process is still
    /// starting waits for its routes (at most 30 s); once the process shuts
    /// down a call answers UNAVAILABLE (which callers retry), as a closed listener would.
    pub fn channel(&self, service: Service) -> PeerChannel {
        let routes = self.routes.clone();
        let shutdown = self.shutdown.clone();
        BoxCloneSyncService::new(tower::service_fn(move |request: http::Request<Body>| {
            let mut ready = routes.subscribe();
            let shutdown = shutdown.clone();
            async move {
                if shutdown.is_cancelled() {
                    return Ok(unavailable(service, "is shutting down"));
                }
                let routes = tokio::select! {
                    ready = tokio::time::timeout(STARTING_WAIT, ready.wait_for(Option::is_some)) => {
                        ready.ok().and_then(|r| r.ok()).and_then(|r| r.clone())
                    }
                    () = shutdown.cancelled() => return Ok(unavailable(service, "is shutting down")),
                };
                let Some(routes) = routes else {
                    return Ok(unavailable(service, "is not serving yet"));
                };
                let span = crate::telemetry::request_span(request.uri().path(), request.headers());
                let response = routes.oneshot(request).instrument(span).await;
                let response = match response {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<_, TransportError>(crate::server::rewrite_caller_errors(response))
            }
        }))
    }
}

fn unavailable(service: Service, state: &str) -> http::Response<Body> {
    tonic::Status::unavailable(format!("the {service} service in this process {state}")).into_http()
}

/// A lazily connected channel to the remote peer at `url` (configured as `setting`).
pub fn remote(
    setting: &str,
    url: Option<&str>,
    tls: Option<&tonic::transport::ClientTlsConfig>,
) -> Result<PeerChannel> {
    let channel = crate::grpc::peer_channel(setting, url, tls)?;
    Ok(BoxCloneSyncService::new(
        channel.map_err(TransportError::from),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    async fn check(channel: PeerChannel) -> std::result::Result<i32, tonic::Status> {
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status)
    }

    #[tokio::test]
    async fn an_in_process_peer_is_called_without_a_socket_once_its_routes_are_installed() {
        let shutdown = CancellationToken::new();
        let in_process = InProcess::new(&[Service::Permissions], shutdown.clone());
        assert!(in_process.runs(Service::Permissions));
        assert!(!in_process.runs(Service::Storage));
        let channel = in_process.channel(Service::Permissions);

        // A call made while the process starts waits for the routes.
        let early = tokio::spawn(check(channel.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !early.is_finished(),
            "answered before any route was installed"
        );
        let (_reporter, health) = tonic_health::server::health_reporter();
        let mut routes = tonic::service::RoutesBuilder::default();
        routes.add_service(health);
        in_process.install(routes.routes());
        assert_eq!(early.await.unwrap().unwrap(), ServingStatus::Serving as i32);
        assert_eq!(
            check(channel.clone()).await.unwrap(),
            ServingStatus::Serving as i32
        );

        shutdown.cancel();
        let late = check(channel).await.unwrap_err();
        assert_eq!(late.code(), tonic::Code::Unavailable);
        assert!(
            late.message()
                .contains("permissions service in this process is shutting down"),
            "{late:?}"
        );
    }

    #[tokio::test]
    async fn a_call_waiting_for_a_process_that_stops_instead_is_unavailable() {
        let shutdown = CancellationToken::new();
        let in_process = InProcess::new(&[Service::Storage], shutdown.clone());
        let waiting = tokio::spawn(check(in_process.channel(Service::Storage)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        shutdown.cancel();
        let status = waiting.await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn an_unknown_path_answers_unimplemented_in_process_as_over_a_socket() {
        let in_process = InProcess::new(&[Service::Storage], CancellationToken::new());
        in_process.install(tonic::service::RoutesBuilder::default().routes());
        let status = check(in_process.channel(Service::Storage))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    }

    #[test]
    fn a_remote_peer_without_a_url_names_its_setting() {
        let err = remote("peers.storage_url", None, None).err().unwrap();
        assert!(err.to_string().contains("peers.storage_url"), "{err}");
    }
}
