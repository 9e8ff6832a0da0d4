//! Backups (P10), embedded mode: `CreateBackup` seals a copy of every database apart
//! from the keystores; a restore after a disconnect and a user deletion brings back
//! nothing they erased (every database file and keystore scanned), every receipt still
//! verifies, and backups past their retention are deleted.

use mindmesh_kit::Service;
use mindmesh_kit::auth::Role;
use mindmesh_proto::mindmesh::permissions::v1 as perm;
use mindmesh_proto::mindmesh::retention::v1 as pb;
use tonic::Code;

use crate::common::ingest::{self, connect_folder, folder_server, sync_ok, write};
use crate::common::{self, Backend, TestServer, authed};
use crate::retention::{completed_with_proof, delete_user, receipt_verifies, retention};

/// What `sql` reads from `service`'s database, as strings.
async fn traces(server: &TestServer, service: Service, sql: &str) -> Vec<String> {
    use sea_orm::ConnectionTrait;
    let db = server.service_db(service).await;
    db.query_all_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        sql,
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<String>("", "v").unwrap())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p10_a_restore_brings_back_nothing_deleted_since_and_receipts_still_verify() {
    let (mut server, root) = folder_server(Backend::Embedded).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let dir = root.path().join(tenant.to_string()).join("acme");
    for i in 0..5 {
        write(&dir, &format!("doc-{i}.md"), &format!("document {i}"));
    }
    let mut client = ingest::client(&server).await;
    let integration = connect_folder(&mut client, &admin, "Acme", "acme")
        .await
        .unwrap();
    sync_ok(&mut client, &admin, &integration.id, false).await;
    let ada = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let operator = server.token("op", None, &[Role::Operator]);

    // What the integration and Ada left in the databases, as stored.
    let mut left = traces(
        &server,
        Service::Storage,
        "SELECT source_index AS v FROM documents WHERE integration_id <> ''",
    )
    .await;
    left.extend(
        traces(
            &server,
            Service::Ingest,
            "SELECT source_index AS v FROM items",
        )
        .await,
    );
    left.extend(
        traces(
            &server,
            Service::Permissions,
            &format!("SELECT email_index AS v FROM users WHERE id = '{}'", ada.id),
        )
        .await,
    );
    assert!(left.len() >= 11, "{left:?}");

    // A backup: sealed, the keystores apart from the data.
    let mut admin_client = retention(&server).await;
    let backup = admin_client
        .create_backup(authed(pb::CreateBackupRequest {}, &operator))
        .await
        .unwrap()
        .into_inner()
        .backup
        .unwrap();
    assert!(backup.size_bytes > 0);
    let data_dir = server.config.backup_dir().join(&backup.id);
    let keys_dir = server.config.keystore_backup_dir().join(&backup.id);
    let names = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert!(names(&data_dir).contains(&"storage.db.sealed".to_owned()));
    assert!(!names(&data_dir).iter().any(|n| n.contains("_keys")));
    assert!(names(&keys_dir).contains(&"storage_keys.db.sealed".to_owned()));
    for name in names(&data_dir) {
        let bytes = std::fs::read(data_dir.join(&name)).unwrap();
        assert!(
            !bytes.starts_with(b"SQLite format 3"),
            "{name} is not sealed"
        );
    }
    // Members and admins neither take nor list backups.
    let denied = admin_client
        .list_backups(authed(pb::ListBackupsRequest {}, &admin))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // After the backup: a disconnect and a user deletion, each with its receipt.
    let disconnect = ingest::disconnect(&mut client, &admin, &integration.id).await;
    let erasure = delete_user(&server, &admin, ada.id.clone()).await;
    let receipts = [
        completed_with_proof(&server, &admin, &disconnect).await,
        completed_with_proof(&server, &admin, &erasure).await,
    ];

    // RestoreBackup on a running server says how to restore.
    let running = admin_client
        .restore_backup(authed(
            pb::RestoreBackupRequest {
                backup_id: backup.id.clone(),
            },
            &operator,
        ))
        .await
        .unwrap_err();
    assert_eq!(running.code(), Code::FailedPrecondition);
    assert!(
        running.message().contains("mindmesh backup restore"),
        "{running:?}"
    );

    // Restored with the server stopped: both cascades are carried out again first.
    server.halt().await;
    let report = mindmesh::backup::restore_backup(server.config.clone(), &backup.id)
        .await
        .unwrap();
    assert_eq!(report.deletions_reapplied, 2, "{report:?}");
    assert!(
        report.files.contains(&"storage.db".to_owned()),
        "{report:?}"
    );
    assert!(!report.files.iter().any(|f| f.starts_with("retention")));
    server.resume().await;

    // Nothing they erased is anywhere: no database file, no keystore.
    let at_rest = common::at_rest(&server).await;
    for trace in &left {
        let found = common::where_stored(&at_rest, trace);
        assert!(found.is_empty(), "{trace} came back in {found:?}");
    }
    let gone = perm::account_service_client::AccountServiceClient::new(server.channel().await)
        .get_user(authed(perm::GetUserRequest { user_id: ada.id }, &admin))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let service = server.token("ingest", Some(tenant), &[Role::Service]);
    assert!(ingest::readable(&server, &service).await.is_empty());
    // The receipts issued after the backup still verify (the ledger never goes back).
    for (cascade, proof) in &receipts {
        receipt_verifies(&server, &operator, cascade, proof).await;
    }

    // Past the retention (7 days), an operator's sweep deletes the backup, files too.
    let mut client = retention(&server).await;
    let swept = client
        .run_sweep(authed(
            pb::RunSweepRequest {
                as_of: Some(prost_types::Timestamp {
                    seconds: (chrono::Utc::now() + chrono::Duration::days(8)).timestamp(),
                    nanos: 0,
                }),
            },
            &operator,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(swept.backups_deleted, 1);
    let listed = client
        .list_backups(authed(pb::ListBackupsRequest {}, &operator))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.backups.is_empty(), "{listed:?}");
    assert!(!data_dir.exists() && !keys_dir.exists());

    // P18: every step is in retention's audit log, and the chain verifies.
    let events = common::audit_events(&server, Service::Retention, &operator).await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for step in [
        "backup.create",
        "backup.restore",
        "cascade.replay",
        "backup.delete",
    ] {
        assert!(actions.contains(&step), "{step} not audited: {actions:?}");
    }
    let chain = common::audit_chain(&server, Service::Retention, &operator).await;
    assert!(chain.intact, "{chain:?}");
    server.stop().await;
}

/// A damaged backup, or one that does not exist, replaces nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p10_a_damaged_backup_is_refused_before_anything_is_replaced() {
    let mut server = TestServer::start(Backend::Embedded).await;
    let (_, admin) = server.create_tenant("Acme").await;
    let operator = server.token("op", None, &[Role::Operator]);
    let backup = retention(&server)
        .await
        .create_backup(authed(pb::CreateBackupRequest {}, &operator))
        .await
        .unwrap()
        .into_inner()
        .backup
        .unwrap();
    let sealed = server
        .config
        .keystore_backup_dir()
        .join(&backup.id)
        .join("storage_keys.db.sealed");
    let mut bytes = std::fs::read(&sealed).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&sealed, bytes).unwrap();
    server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    server.halt().await;
    let live = server.config.data_dir.join("permissions.db");
    let before = std::fs::read(&live).unwrap();
    let err = mindmesh::backup::restore_backup(server.config.clone(), &backup.id)
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("storage_keys.db does not match its manifest"),
        "{err:#}"
    );
    assert_eq!(std::fs::read(&live).unwrap(), before, "nothing replaced");
    let err =
        mindmesh::backup::restore_backup(server.config.clone(), &uuid::Uuid::now_v7().to_string())
            .await
            .unwrap_err();
    assert!(format!("{err:#}").contains("no manifest"), "{err:#}");
    let err = mindmesh::backup::restore_backup(server.config.clone(), "../etc")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("backup_id"), "{err:#}");
    server.resume().await;
    // Ada, created after the backup, is still there: nothing was restored.
    let listed = perm::account_service_client::AccountServiceClient::new(server.channel().await)
        .list_users(authed(perm::ListUsersRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.users.len(), 1);
    server.stop().await;
}

/// Distributed mode, after a PostgreSQL restore: `replay-deletions --since` asks every
/// cascade completed since again, and every participant carries it out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p10_replay_deletions_asks_every_participant_again() {
    let server = TestServer::start(Backend::Distributed).await;
    let (_, admin) = server.create_tenant("Acme").await;
    let before = chrono::Utc::now();
    let ada = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let cascade = delete_user(&server, &admin, ada.id).await;
    completed_with_proof(&server, &admin, &cascade).await;
    let replayed = mindmesh::backup::replay_deletions(server.config.clone(), before)
        .await
        .unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].cascade.to_string(), cascade);
    assert_eq!(replayed[0].participants, &Service::ALL);
    // Nothing completed after now: nothing to ask.
    assert!(
        mindmesh::backup::replay_deletions(server.config.clone(), chrono::Utc::now())
            .await
            .unwrap()
            .is_empty()
    );
    for service in Service::ALL {
        let db = server.service_db(service).await;
        let event = replayed[0].event_id.clone();
        assert!(
            common::eventually(std::time::Duration::from_secs(30), || {
                let db = db.clone();
                let event = event.clone();
                async move {
                    mindmesh_kit::inbox::handled(&db, service.as_str(), &event)
                        .await
                        .unwrap()
                }
            })
            .await,
            "{service} did not carry out the replayed cascade"
        );
    }
    server.stop().await;
}

/// Distributed mode takes no backups itself: CreateBackup says who does, and what to run
/// after a PostgreSQL restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p10_distributed_mode_leaves_backups_to_the_database_operator() {
    let server = TestServer::start(Backend::Distributed).await;
    let operator = server.token("op", None, &[Role::Operator]);
    let err = retention(&server)
        .await
        .create_backup(authed(pb::CreateBackupRequest {}, &operator))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("replay-deletions"), "{err:?}");
    server.stop().await;
}
