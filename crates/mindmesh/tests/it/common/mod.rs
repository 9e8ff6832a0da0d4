//! What the binary crate's integration tests share: the server harness (shared with the
//! benchmarks, `tests/support/server.rs`), seeds, fakes of the source tools, and what the
//! server keeps at rest.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use mindmesh_kit::Service;
use mindmesh_kit::config::Mode;
use mindmesh_kit::ids::{IntegrationId, TenantId};
use mindmesh_kit::keyfiles::KeyMaterial;
use mindmesh_proto::mindmesh::storage::v1 as storage;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

#[path = "../../support/server.rs"]
mod server;
pub use server::{Backend, TestServer, authed};

impl TestServer {
    /// A connection to one service's database, as the server uses it.
    pub async fn service_db(&self, service: Service) -> DatabaseConnection {
        match self.backend {
            // SQLite allows one writer; a second connection only reads here.
            Backend::Embedded | Backend::Distributed => {
                mindmesh_kit::db::connect(&self.config.database_url(service), 2)
                    .await
                    .expect("service db")
            }
        }
    }
}

impl TestServer {
    /// A connected integration of `tenant` — an empty local folder, its first sync done
    /// — so that a test can write principals, grants and documents for it with a
    /// service token, as ingest does. Storage and permissions take imported data only
    /// for integrations ingest has announced.
    pub async fn integration(&self, tenant: TenantId, admin: &str) -> IntegrationId {
        let root = self
            .config
            .ingest
            .local_folder_root
            .clone()
            .expect("a local-folder root");
        let name = uuid::Uuid::new_v4().simple().to_string();
        std::fs::create_dir_all(root.join(tenant.to_string()).join(&name)).expect("folder");
        let mut client = ingest::client(self).await;
        let integration = ingest::connect(
            &mut client,
            admin,
            mindmesh_proto::mindmesh::ingest::v1::ConnectIntegrationRequest {
                kind: "local_folder".into(),
                display_name: "Test source".into(),
                settings: [("path".to_owned(), name)].into(),
                ..Default::default()
            },
        )
        .await;
        ingest::sync_ok(&mut client, admin, &integration.id, false).await;
        integration.id.parse().expect("integration id")
    }
}

/// Everything the server keeps at rest, as (where, bytes in lower case): in embedded mode every file
/// under the data directory (SQLite files, write-ahead logs, the event log, keys); in
/// distributed mode every row of every table of every service's database and keystore,
/// as PostgreSQL prints it (`bytea` as hex).
pub async fn at_rest(server: &TestServer) -> Vec<(String, Vec<u8>)> {
    use sea_orm::ConnectionTrait;
    let mut out = Vec::new();
    match server.backend {
        Backend::Embedded => {
            let mut dirs = vec![server.config.data_dir.clone()];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(&dir).expect("data dir") {
                    let path = entry.expect("entry").path();
                    if path.is_dir() {
                        dirs.push(path);
                    } else if let Ok(bytes) = std::fs::read(&path) {
                        out.push((path.display().to_string(), bytes.to_ascii_lowercase()));
                    }
                }
            }
        }
        Backend::Distributed => {
            for service in Service::ALL {
                let keystore = mindmesh_kit::db::connect(&server.config.keystore_url(service), 1)
                    .await
                    .expect("keystore");
                for (name, db) in [
                    (service.to_string(), server.service_db(service).await),
                    (format!("{service}_keys"), keystore),
                ] {
                    let tables = db
                        .query_all_raw(sea_orm::Statement::from_string(
                            sea_orm::DbBackend::Postgres,
                            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                        ))
                        .await
                        .expect("tables");
                    for t in tables {
                        let table: String = t.try_get("", "tablename").expect("name");
                        let rows = db
                            .query_all_raw(sea_orm::Statement::from_string(
                                sea_orm::DbBackend::Postgres,
                                format!("SELECT t::text AS row FROM \"{table}\" t"),
                            ))
                            .await
                            .expect("rows");
                        let mut text = String::new();
                        for row in rows {
                            text.push_str(&row.try_get::<String>("", "row").expect("row"));
                            text.push('\n');
                        }
                        out.push((
                            format!("{name}.{table}"),
                            text.to_ascii_lowercase().into_bytes(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// Where at rest `needle` is stored, in the clear (in any case) or hex-encoded (how
/// `bytea` prints).
pub fn where_stored(at_rest: &[(String, Vec<u8>)], needle: &str) -> Vec<String> {
    let plain = needle.to_ascii_lowercase();
    let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
    let (plain, hex) = (
        memchr::memmem::Finder::new(plain.as_bytes()),
        memchr::memmem::Finder::new(hex.as_bytes()),
    );
    at_rest
        .iter()
        .filter(|(_, bytes)| plain.find(bytes).is_some() || hex.find(bytes).is_some())
        .map(|(place, _)| place.clone())
        .collect()
}

/// Runs each named `async fn(Backend)` as two tests: `embedded::…` and `distributed::…`.
#[allow(unused_macros)]
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Embedded).await })*
        }
        mod distributed {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Distributed).await })*
        }
    };
}

/// Polls `check` until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A second server process-in-the-test on the same databases, bus and keys as a
/// distributed [`TestServer`]: another replica.
pub struct Replica {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts another replica of `services` against this server's state.
    pub async fn replica(&self, services: Vec<Service>) -> Replica {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.replica_on(listener, services).await
    }

    /// Starts another replica of `services` against this server's state, listening on
    /// `listener` (bound beforehand, so that the server's peer settings can name it).
    pub async fn replica_on(
        &self,
        listener: tokio::net::TcpListener,
        services: Vec<Service>,
    ) -> Replica {
        assert_eq!(
            self.backend,
            Backend::Distributed,
            "replicas share PostgreSQL and NATS"
        );
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(mindmesh::serve(
            self.config.clone(),
            services,
            listener,
            shutdown.clone(),
        ));
        let replica = Replica {
            addr,
            shutdown,
            handle: Some(handle),
        };
        let probe = TestServer::channel_to(addr).await;
        let mut health = tonic_health::pb::health_client::HealthClient::new(probe);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "replica did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        replica
    }

    async fn channel_to(addr: SocketAddr) -> Channel {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(c) = Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
            {
                return c;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "cannot connect to {addr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The public key the server signs attestations with.
    /// Seals the personal fields of events as this server's services do.
    pub fn event_seal(&self) -> mindmesh_kit::events::EventSeal {
        let mode = match self.backend {
            Backend::Embedded => Mode::Embedded,
            Backend::Distributed => Mode::Distributed,
        };
        mindmesh_kit::events::EventSeal::new(&KeyMaterial::load(&self.config, mode).unwrap())
            .unwrap()
    }

    pub fn signing_public_key(&self) -> [u8; 32] {
        let mode = match self.backend {
            Backend::Embedded => Mode::Embedded,
            Backend::Distributed => Mode::Distributed,
        };
        KeyMaterial::load(&self.config, mode)
            .unwrap()
            .signing
            .public_key()
    }
}

impl Replica {
    pub async fn channel(&self) -> Channel {
        TestServer::channel_to(self.addr).await
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("replica task").expect("replica result");
        }
    }
}

/// A mail file as a mail client shows it: its headers, and its body decoded from
/// quoted-printable when it says so (lettre picks it for long lines).
pub fn mail_text(raw: &str) -> String {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    if !head.contains("Content-Transfer-Encoding: quoted-printable") {
        return raw.to_owned();
    }
    let decoded = quoted_printable::decode(body, quoted_printable::ParseMode::Robust)
        .expect("a quoted-printable body");
    format!(
        "{head}\r\n\r\n{}",
        String::from_utf8(decoded).expect("UTF-8")
    )
}

/// A native document `title` with `content`, written by `token`'s user; its id.
pub async fn note(server: &TestServer, token: &str, title: &str, content: &str) -> String {
    let mut docs =
        storage::storage_service_client::StorageServiceClient::new(server.channel().await);
    docs.create_document(authed(
        storage::CreateDocumentRequest {
            title: title.into(),
            mime_type: "text/plain".into(),
            content: content.as_bytes().to_vec(),
        },
        token,
    ))
    .await
    .unwrap()
    .into_inner()
    .document
    .unwrap()
    .id
}

/// Whether `token` may read document `id` (its code when not).
pub async fn reads(server: &TestServer, token: &str, id: &str) -> Result<(), Code> {
    let mut docs =
        storage::storage_service_client::StorageServiceClient::new(server.channel().await);
    docs.get_document(authed(
        storage::GetDocumentRequest {
            document_id: id.into(),
            at_least_revision: 0,
        },
        token,
    ))
    .await
    .map(|_| ())
    .map_err(|s| s.code())
}

pub mod fake_github;
pub mod fake_google;
pub mod fake_http;
pub mod ingest;

/// The audit events of `service` (its first 1000), as `token` reads them.
pub async fn audit_events(
    server: &TestServer,
    service: Service,
    token: &str,
) -> Vec<mindmesh_proto::mindmesh::audit::v1::AuditEvent> {
    use mindmesh_proto::mindmesh::audit::v1 as audit;
    audit::audit_client::AuditClient::new(server.channel().await)
        .list_audit_events(authed(
            audit::ListAuditEventsRequest {
                service: service.to_proto() as i32,
                page_size: 1000,
                page_token: String::new(),
            },
            token,
        ))
        .await
        .expect("audit events")
        .into_inner()
        .events
}

/// `service`'s audit chain checked, as `token` asks.
pub async fn audit_chain(
    server: &TestServer,
    service: Service,
    token: &str,
) -> mindmesh_proto::mindmesh::audit::v1::VerifyAuditChainResponse {
    use mindmesh_proto::mindmesh::audit::v1 as audit;
    audit::audit_client::AuditClient::new(server.channel().await)
        .verify_audit_chain(authed(
            audit::VerifyAuditChainRequest {
                service: service.to_proto() as i32,
            },
            token,
        ))
        .await
        .expect("audit chain")
        .into_inner()
}
