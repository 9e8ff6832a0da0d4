//! End to end, across processes, in distributed mode: `mindmesh migrate`, then the
//! permissions and retention services as two separate `mindmesh serve --service …`
//! processes on the real PostgreSQL (a database per service) and the real NATS JetStream.
//! A user created through the permissions process reaches the retention process as an
//! event; both processes stop cleanly on SIGTERM. A storage process asks a separate
//! permissions process before every read, with its own short-lived service tokens. An
//! ingest process syncs a folder into separate storage and permissions processes, and
//! its disconnect erases it there.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use mindmesh_kit::auth::{Role, TokenIssuer};
use mindmesh_kit::crypto::{SecretKey, SigningKey};
use mindmesh_kit::ids::UserId;
use mindmesh_kit::testing::{TestNats, TestPostgres};
use mindmesh_proto::mindmesh::ingest::v1 as ingest_pb;
use mindmesh_proto::mindmesh::retention::v1 as retention;
use mindmesh_proto::mindmesh::storage::v1 as storage;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[path = "../crates/mindmesh/tests/support/server.rs"]
mod support;
use support::authed;

const BIN: &str = env!("CARGO_BIN_EXE_mindmesh");

/// A child process that is killed when dropped, so a failing test leaves no server behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // Already exited (the normal case): both calls fail harmlessly.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Environment that configures a distributed deployment of this test's own databases,
/// streams and keys.
struct Deployment {
    env: Vec<(String, String)>,
    issuer: TokenIssuer,
    /// The token signing key, for the services that call others (storage).
    jwt_file: std::path::PathBuf,
    pg: TestPostgres,
    _nats: TestNats,
    _dir: tempfile::TempDir,
}

impl Deployment {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pg = TestPostgres::new();
        let nats = TestNats::new(Duration::from_secs(2));
        let master = SecretKey::generate().unwrap();
        let jwt = SigningKey::generate().unwrap();
        let signing = SigningKey::generate().unwrap();
        let master_file = dir.path().join("master.key");
        let signing_file = dir.path().join("signing.pk8");
        std::fs::write(
            &master_file,
            base64::engine::general_purpose::STANDARD.encode(master.expose()),
        )
        .unwrap();
        std::fs::write(&signing_file, signing.pkcs8()).unwrap();
        let jwt_file = dir.path().join("jwt.pk8");
        std::fs::write(&jwt_file, jwt.pkcs8()).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let env = vec![
            ("MINDMESH__DATABASE__URL", pg.template()),
            ("MINDMESH__BUS__KIND", "nats".to_owned()),
            ("MINDMESH__BUS__NATS_URL", nats.config.nats_url.clone()),
            ("MINDMESH__BUS__STREAM", nats.config.stream.clone()),
            (
                "MINDMESH__BUS__SUBJECT_ROOT",
                nats.config.subject_root.clone(),
            ),
            ("MINDMESH__BUS__RELAY_INTERVAL_MS", "200".to_owned()),
            (
                "MINDMESH__KEYS__MASTER_KEY_FILE",
                master_file.display().to_string(),
            ),
            (
                "MINDMESH__KEYS__SIGNING_KEY_FILE",
                signing_file.display().to_string(),
            ),
            // Services only verify tokens: they get the public key, not the private one.
            (
                "MINDMESH__KEYS__JWT_PUBLIC_KEY",
                b64.encode(jwt.public_key()),
            ),
            ("MINDMESH__TELEMETRY__LOG_FILTER", "warn".to_owned()),
            (
                "MINDMESH__DATA_DIR",
                dir.path().join("unused").display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Deployment {
            env,
            issuer: TokenIssuer::new(&jwt, "mindmesh"),
            jwt_file,
            pg,
            _nats: nats,
            _dir: dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    /// Starts `mindmesh serve --service <service> [extra…]` on port 0; returns it and its
    /// address.
    fn serve(&self, service: &str, extra: &[&str]) -> (Reaped, String) {
        let mut args = vec!["serve", "--service", service, "--set", "listen=127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = self
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("mindmesh listening on ") {
                    let _ = tx.send(
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
                // Otherwise keep draining so the server never blocks on a full pipe.
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the service printed its address");
        (Reaped(child), addr)
    }
}

async fn connect(addr: &str) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            let mut health = HealthClient::new(channel.clone());
            let serving = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if serving.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32) {
                return channel;
            }
        }
        assert!(Instant::now() < deadline, "{addr} did not start serving");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stop(mut child: Reaped) {
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "exit status {status:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn migrate(deployment: &Deployment) {
    let out = deployment.command(&["migrate"]).output().unwrap();
    assert!(
        out.status.success(),
        "migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_created_in_one_process_reaches_retention_in_another() {
    let deployment = Deployment::new();
    migrate(&deployment);
    migrate(&deployment); // idempotent

    let (permissions_process, permissions_addr) = deployment.serve("permissions", &[]);
    // Retention asks permissions which tenants exist, with tokens of its own.
    let to_permissions = format!("peers.permissions_url=http://{permissions_addr}");
    let jwt = format!(
        "keys.jwt_private_key_file={}",
        deployment.jwt_file.display()
    );
    let (retention_process, retention_addr) =
        deployment.serve("retention", &["--set", &to_permissions, "--set", &jwt]);
    let permissions = connect(&permissions_addr).await;
    let retention_channel = connect(&retention_addr).await;

    // Each process serves its own service and says so; the other is not there.
    let mut health = HealthClient::new(permissions.clone());
    let own = health
        .check(HealthCheckRequest {
            service: "permissions".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.status, ServingStatus::Serving as i32);
    assert_eq!(
        health
            .check(HealthCheckRequest {
                service: "retention".into()
            })
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );

    let (tenant, admin) =
        support::seed_tenant(permissions.clone(), &deployment.issuer, "Acme").await;
    let user = support::seed_user(permissions, &admin, "Ada", "L", "ada@example.com").await;
    let user_id: UserId = user.id.parse().unwrap();

    // The event crossed from the permissions process to the retention process.
    let retention_db = mindmesh_kit::db::connect(&deployment.pg.url("retention"), 2)
        .await
        .unwrap();
    let activity = mindmesh_retention::activity::Activity::new(retention_db);
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        if let Some(at) = activity.last_active(tenant, user_id).await.unwrap() {
            break at;
        }
        assert!(
            Instant::now() < deadline,
            "retention never saw the new account"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // And retention's own API, in its own process, moves the clock.
    let later = chrono::Utc::now() + chrono::Duration::seconds(30);
    let mut retention_api =
        retention::retention_service_client::RetentionServiceClient::new(retention_channel);
    retention_api
        .record_activity(authed(
            retention::RecordActivityRequest {
                user_id: user.id.clone(),
                at: Some(mindmesh_kit::grpc::timestamp(later)),
            },
            &admin,
        ))
        .await
        .unwrap();
    let now = activity
        .last_active(tenant, user_id)
        .await
        .unwrap()
        .unwrap();
    assert!(now > first);

    stop(permissions_process).await;
    stop(retention_process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_asks_a_separate_permissions_process_before_every_read() {
    let deployment = Deployment::new();
    migrate(&deployment);

    // Without the permissions service's address, storage refuses to start and says why.
    let out = deployment
        .command(&[
            "serve",
            "--service",
            "storage",
            "--set",
            "listen=127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("peers.permissions_url"), "{stderr}");

    let (permissions_process, permissions_addr) = deployment.serve("permissions", &[]);
    let peer = format!("peers.permissions_url=http://{permissions_addr}");
    // Without the token signing key it cannot call permissions either: it says so.
    let out = deployment
        .command(&[
            "serve",
            "--service",
            "storage",
            "--set",
            "listen=127.0.0.1:0",
            "--set",
            &peer,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("keys.jwt_private_key_file"), "{stderr}");

    let jwt = format!(
        "keys.jwt_private_key_file={}",
        deployment.jwt_file.display()
    );
    let (storage_process, storage_addr) =
        deployment.serve("storage", &["--set", &peer, "--set", &jwt]);
    let permissions = connect(&permissions_addr).await;
    let storage_channel = connect(&storage_addr).await;

    let (tenant, admin) =
        support::seed_tenant(permissions.clone(), &deployment.issuer, "Acme").await;
    let mut members = Vec::new();
    for email in ["ada@example.com", "bob@example.com"] {
        let user = support::seed_user(permissions.clone(), &admin, "A", "B", email).await;
        members.push(
            deployment
                .issuer
                .issue(
                    &user.id,
                    Some(tenant),
                    &[Role::Member],
                    Duration::from_secs(600),
                )
                .unwrap(),
        );
    }

    // Ada writes a native document: storage records her grant in the permissions process.
    let mut storage = storage::storage_service_client::StorageServiceClient::new(storage_channel);
    let doc = storage
        .create_document(authed(
            storage::CreateDocumentRequest {
                title: "Ada's notes".into(),
                mime_type: String::new(),
                content: b"across processes".to_vec(),
            },
            &members[0],
        ))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    let get = |token: &str| {
        authed(
            storage::GetDocumentRequest {
                document_id: doc.id.clone(),
                at_least_revision: 0,
            },
            token,
        )
    };
    let read = storage
        .get_document(get(&members[0]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.content, b"across processes");
    let err = storage.get_document(get(&members[1])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // With permissions gone, storage answers UNAVAILABLE rather than guess.
    stop(permissions_process).await;
    let err = storage.get_document(get(&members[0])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    stop(storage_process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_syncs_into_separate_storage_and_permissions_processes() {
    let deployment = Deployment::new();
    migrate(&deployment);
    let folders = tempfile::tempdir().unwrap();
    let dir = folders.path().join("acme");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("handbook.md"), "how we work").unwrap();
    std::fs::write(dir.join("salaries.md"), "nobody's business").unwrap();
    std::fs::write(
        dir.join("mindmesh-acl.json"),
        r#"{"users": [{"id": "ada", "email": "ada@example.com"}],
            "grants": [{"path": "handbook.md", "to": "user:ada", "role": "reader"}]}"#,
    )
    .unwrap();

    let (permissions_process, permissions_addr) = deployment.serve("permissions", &[]);
    let jwt = format!(
        "keys.jwt_private_key_file={}",
        deployment.jwt_file.display()
    );
    let to_permissions = format!("peers.permissions_url=http://{permissions_addr}");
    let (storage_process, storage_addr) =
        deployment.serve("storage", &["--set", &to_permissions, "--set", &jwt]);
    let root = format!("ingest.local_folder_root={}", folders.path().display());
    // Without storage's address, ingest refuses to start and says why.
    let out = deployment
        .command(&[
            "serve",
            "--service",
            "ingest",
            "--set",
            "listen=127.0.0.1:0",
            "--set",
            &to_permissions,
            "--set",
            &jwt,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("peers.storage_url"), "{stderr}");
    let to_storage = format!("peers.storage_url=http://{storage_addr}");
    let (ingest_process, ingest_addr) = deployment.serve(
        "ingest",
        &[
            "--set",
            &to_permissions,
            "--set",
            &to_storage,
            "--set",
            &jwt,
            "--set",
            &root,
        ],
    );

    let permissions = connect(&permissions_addr).await;
    let (tenant, admin) =
        support::seed_tenant(permissions.clone(), &deployment.issuer, "Acme").await;
    // Each tenant's folders live below `<root>/<tenant id>/`.
    std::fs::create_dir(folders.path().join(tenant.to_string())).unwrap();
    std::fs::rename(&dir, folders.path().join(tenant.to_string()).join("acme")).unwrap();
    let ada = support::seed_user(permissions, &admin, "Ada", "L", "ada@example.com").await;
    let ada = deployment
        .issuer
        .issue(
            &ada.id,
            Some(tenant),
            &[Role::Member],
            Duration::from_secs(600),
        )
        .unwrap();

    let mut ingest =
        ingest_pb::ingest_service_client::IngestServiceClient::new(connect(&ingest_addr).await);
    let integration = ingest
        .connect_integration(authed(
            ingest_pb::ConnectIntegrationRequest {
                kind: "local_folder".into(),
                display_name: "Shared".into(),
                settings: [("path".to_owned(), "acme".to_owned())].into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .integration
        .unwrap();
    let mut progress = ingest
        .sync_integration(authed(
            ingest_pb::SyncIntegrationRequest {
                integration_id: integration.id.clone(),
                full: false,
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(p) = progress.message().await.unwrap() {
        last = Some(p);
    }
    assert_eq!(last.unwrap().phase, ingest_pb::SyncPhase::Done as i32);

    let storage =
        storage::storage_service_client::StorageServiceClient::new(connect(&storage_addr).await);
    let titles = |token: String| {
        let mut storage = storage.clone();
        async move {
            storage
                .list_documents(authed(storage::ListDocumentsRequest::default(), &token))
                .await
                .unwrap()
                .into_inner()
                .documents
                .into_iter()
                .map(|d| d.title)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(titles(ada.clone()).await, vec!["handbook.md".to_owned()]);

    // Disconnecting erases it in the storage process too, over NATS.
    ingest
        .disconnect_integration(authed(
            ingest_pb::DisconnectIntegrationRequest {
                integration_id: integration.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap();
    let service = deployment
        .issuer
        .issue(
            "ingest",
            Some(tenant),
            &[Role::Service],
            Duration::from_secs(600),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !titles(service.clone()).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "storage kept the disconnected folder's documents"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(ingest_process).await;
    stop(storage_process).await;
    stop(permissions_process).await;
}
