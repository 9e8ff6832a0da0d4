//! The one Mindmesh server harness of the binary crate's tests and benchmarks: a server
//! in this process, on port 0, in embedded mode (SQLite files in a temporary directory,
//! embedded bus) or distributed mode (a fresh PostgreSQL database per service, fresh NATS
//! streams) — everything removed when it is dropped. `tests/it/common` and
//! `benches/support` include this file and add what only they need.
//! `tests/e2e_distributed.rs` runs the binary in separate processes instead, and uses
//! only the seed helpers ([`seed_tenant`], [`seed_user`]) and [`authed`].

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use mindmesh_kit::Service;
use mindmesh_kit::auth::{Role, TokenIssuer};
use mindmesh_kit::config::{Config, Mode};
use mindmesh_kit::crypto::{SecretKey, SigningKey};
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::keyfiles::KeyMaterial;
use mindmesh_kit::testing::{TestNats, TestPostgres};
use mindmesh_proto::mindmesh::permissions::v1 as perm;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Which way to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite + embedded bus, all services in one process.
    Embedded,
    /// PostgreSQL + NATS JetStream, every service named explicitly.
    Distributed,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub config: Config,
    pub backend: Backend,
    issuer: TokenIssuer,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub dir: tempfile::TempDir,
    pub pg: Option<TestPostgres>,
    _nats: Option<TestNats>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts a server whose configuration `configure` adjusts first.
    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Self {
        Self::start_configured(backend, |config, _| configure(config)).await
    }

    /// Starts a server whose configuration `configure` adjusts first, knowing the
    /// address the server will listen on (to point its peers at it, say).
    pub async fn start_configured(
        backend: Backend,
        configure: impl FnOnce(&mut Config, SocketAddr),
    ) -> Self {
        let services = match backend {
            Backend::Embedded => Vec::new(),
            Backend::Distributed => Service::ALL.to_vec(),
        };
        Self::start_services(backend, services, configure).await
    }

    /// Starts a server of only `services` (distributed mode; empty: all five embedded),
    /// its configuration adjusted by `configure`: the others are down until a
    /// [`replica`](Self) of them starts on the same databases and bus.
    pub async fn start_services(
        backend: Backend,
        services: Vec<Service>,
        configure: impl FnOnce(&mut Config, SocketAddr),
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        config.bus.ack_wait_ms = 2000;
        config.bus.relay_interval_ms = 200;
        config.limits.shutdown_grace_secs = 5;
        // The unsubscribe page on a port of its own (tests run side by side).
        config.dsar.http_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        // Local folders for the integrations tests connect (see `integration`).
        config.ingest.local_folder_root = Some(dir.path().join("import"));
        let (pg, nats, mode) = match backend {
            Backend::Embedded => (None, None, Mode::Embedded),
            Backend::Distributed => {
                let pg = TestPostgres::new();
                let nats = TestNats::new(Duration::from_secs(2));
                config.database.url = Some(pg.template());
                // Ten pools per server, and tests run side by side on one PostgreSQL
                // (100 connections): a small pool each.
                config.database.max_connections = 4;
                config.bus = nats.config.clone();
                config.bus.relay_interval_ms = 200;
                let keys = dir.path().join("keys");
                std::fs::create_dir_all(&keys).unwrap();
                let master = SecretKey::generate().unwrap();
                std::fs::write(
                    keys.join("master.key"),
                    base64::engine::general_purpose::STANDARD.encode(master.expose()),
                )
                .unwrap();
                std::fs::write(
                    keys.join("jwt.pk8"),
                    SigningKey::generate().unwrap().pkcs8(),
                )
                .unwrap();
                std::fs::write(
                    keys.join("signing.pk8"),
                    SigningKey::generate().unwrap().pkcs8(),
                )
                .unwrap();
                config.keys.master_key_file = Some(keys.join("master.key"));
                config.keys.jwt_private_key_file = Some(keys.join("jwt.pk8"));
                config.keys.signing_key_file = Some(keys.join("signing.pk8"));
                (Some(pg), Some(nats), Mode::Distributed)
            }
        };
        configure(&mut config, addr);
        // Loading first generates the embedded keys, so the test signs with the server's key.
        let keys = KeyMaterial::load(&config, mode).expect("keys");
        let issuer = TokenIssuer::new(
            keys.jwt_private.as_ref().expect("jwt key"),
            config.auth.issuer.clone(),
        );
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(mindmesh::serve(
            config.clone(),
            services,
            listener,
            shutdown.clone(),
        ));
        let server = TestServer {
            addr,
            config,
            backend,
            issuer,
            shutdown,
            handle: Some(handle),
            dir,
            pg,
            _nats: nats,
        };
        server.wait_until_serving().await;
        server
    }

    /// Stops the server (gracefully, as on SIGTERM) and starts it again on the same
    /// databases, bus and keys, on a new port.
    pub async fn restart(&mut self) {
        self.halt().await;
        self.resume().await;
    }

    /// Stops the server (gracefully) and keeps its databases, bus and keys, for work
    /// done with it stopped (a restore); [`TestServer::resume`] starts it again.
    pub async fn halt(&mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task").expect("server result");
        }
    }

    /// Starts a halted server again on its databases, bus and keys, on a new port.
    pub async fn resume(&mut self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.addr = listener.local_addr().unwrap();
        self.shutdown = CancellationToken::new();
        let services = match self.backend {
            Backend::Embedded => Vec::new(),
            Backend::Distributed => Service::ALL.to_vec(),
        };
        self.handle = Some(tokio::spawn(mindmesh::serve(
            self.config.clone(),
            services,
            listener,
            self.shutdown.clone(),
        )));
        self.wait_until_serving().await;
    }

    async fn wait_until_serving(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(channel) = Channel::from_shared(format!("http://{}", self.addr))
                .unwrap()
                .tcp_nodelay(true)
                .connect()
                .await
            {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                let request = tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                };
                let serving =
                    tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
                if let Ok(r) = health.check(request).await
                    && r.into_inner().status == serving
                {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connect")
    }

    /// A token of `subject`, valid ten minutes.
    pub fn token(&self, subject: &str, tenant: Option<TenantId>, roles: &[Role]) -> String {
        self.token_for(subject, tenant, roles, Duration::from_secs(600))
    }

    /// A token of `subject`, valid `ttl`.
    pub fn token_for(
        &self,
        subject: &str,
        tenant: Option<TenantId>,
        roles: &[Role],
        ttl: Duration,
    ) -> String {
        self.issuer.issue(subject, tenant, roles, ttl).unwrap()
    }

    /// A service token of `tenant` (as ingest holds one), valid `ttl`.
    pub fn service_token(&self, tenant: TenantId, ttl: Duration) -> String {
        self.token_for("ingest", Some(tenant), &[Role::Service], ttl)
    }

    /// A second handle on the server's bus, to publish or observe events as a peer
    /// would: the embedded log is a file, which a second handle reads too.
    pub async fn bus(&self) -> std::sync::Arc<dyn mindmesh_kit::bus::EventBus> {
        match self.backend {
            Backend::Embedded => std::sync::Arc::new(
                mindmesh_kit::bus::embedded::EmbeddedBus::open(
                    &mindmesh_kit::db::sqlite_url(&self.config.data_dir.join("events.db")),
                    Duration::from_secs(30),
                )
                .await
                .unwrap(),
            ),
            Backend::Distributed => std::sync::Arc::new(
                mindmesh_kit::bus::nats::NatsBus::connect(&self.config.bus)
                    .await
                    .unwrap(),
            ),
        }
    }

    /// The server's master key (what keys derived from it sign, a test can forge).
    pub fn master_key(&self) -> SecretKey {
        let mode = match self.backend {
            Backend::Embedded => Mode::Embedded,
            Backend::Distributed => Mode::Distributed,
        };
        let keys = KeyMaterial::load(&self.config, mode).expect("keys");
        SecretKey::from_slice(keys.master.expose()).expect("a master key")
    }

    pub fn issuer(&self) -> &TokenIssuer {
        &self.issuer
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task").expect("server result");
        }
    }

    /// Creates a tenant as the operator; returns it and a token of its admin `admin-1`.
    pub async fn create_tenant(&self, name: &str) -> (TenantId, String) {
        seed_tenant(self.channel().await, &self.issuer, name).await
    }

    /// Creates the user `first_name last_name <email>` in the tenant of `admin` (a
    /// tenant admin's token), as an admin would.
    pub async fn create_user(
        &self,
        admin: &str,
        first_name: &str,
        last_name: &str,
        email: &str,
    ) -> perm::User {
        seed_user(self.channel().await, admin, first_name, last_name, email).await
    }
}

/// Creates a tenant named `name` through `channel` (a server running the permissions
/// service) as an operator whose tokens `issuer` signs; returns the tenant and a token,
/// valid ten minutes, of its admin `admin-1`.
pub async fn seed_tenant(channel: Channel, issuer: &TokenIssuer, name: &str) -> (TenantId, String) {
    let ttl = Duration::from_secs(600);
    let operator = issuer.issue("op", None, &[Role::Operator], ttl).unwrap();
    let tenant: TenantId = perm::account_service_client::AccountServiceClient::new(channel)
        .create_tenant(authed(
            perm::CreateTenantRequest { name: name.into() },
            &operator,
        ))
        .await
        .expect("create tenant")
        .into_inner()
        .tenant
        .expect("tenant")
        .id
        .parse()
        .expect("tenant id");
    let admin = issuer
        .issue("admin-1", Some(tenant), &[Role::Admin], ttl)
        .unwrap();
    (tenant, admin)
}

/// Creates the user `first_name last_name <email>` through `channel` in the tenant of
/// `admin` (a tenant admin's token), as an admin would.
pub async fn seed_user(
    channel: Channel,
    admin: &str,
    first_name: &str,
    last_name: &str,
    email: &str,
) -> perm::User {
    perm::account_service_client::AccountServiceClient::new(channel)
        .create_user(authed(
            perm::CreateUserRequest {
                first_name: first_name.into(),
                last_name: last_name.into(),
                email: email.into(),
                picture_url: String::new(),
            },
            admin,
        ))
        .await
        .expect("create user")
        .into_inner()
        .user
        .expect("user")
}

/// `message` with `token` as its bearer token.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}
