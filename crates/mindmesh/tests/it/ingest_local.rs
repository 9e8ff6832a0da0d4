//! IngestService with the local-folder connector, in embedded mode (SQLite + embedded
//! bus) and distributed mode (PostgreSQL + NATS JetStream), end to end into the real
//! storage and permissions services: full and incremental syncs (P02), connector
//! listing (P03), disconnect (P06), archive (P07), hostile folders and requests.

use crate::common;
use std::path::Path;
use std::time::Duration;

use crate::common::ingest::{self, set, sync_ok, titles};
use crate::common::{Backend, TestServer, authed, eventually};
use mindmesh_kit::Service;
use mindmesh_kit::auth::Role;
use mindmesh_proto::mindmesh::ingest::v1 as pb;
use mindmesh_proto::mindmesh::permissions::v1 as perm;
use mindmesh_proto::mindmesh::storage::v1 as storage;
use sea_orm::ConnectionTrait;
use tonic::Code;

use crate::common::ingest::{folder_server as server, write};

fn manifest(dir: &Path, json: serde_json::Value) {
    write(dir, "mindmesh-acl.json", &json.to_string());
}

/// Alice is in `eng`; Bob is in `platform`, a group inside `eng`; Carol in nothing.
fn acme_manifest(dir: &Path, bob_in_platform: bool, alice_owns_notes: bool) {
    let mut grants = vec![
        serde_json::json!({"path": "handbook/", "to": "group:eng", "role": "reader"}),
        serde_json::json!({"path": "public.md", "to": "domain:acme.example", "role": "reader"}),
        serde_json::json!({"path": "lunch.txt", "to": "anyone", "role": "reader"}),
    ];
    if alice_owns_notes {
        grants.push(serde_json::json!({"path": "notes.md", "to": "user:alice", "role": "owner"}));
    }
    manifest(
        dir,
        serde_json::json!({
            "users": [
                {"id": "alice", "email": "alice@acme.example", "name": "Alice"},
                {"id": "bob", "email": "bob@acme.example", "name": "Bob"},
                {"id": "carol", "email": "carol@elsewhere.example", "name": "Carol"}
            ],
            "groups": [
                {"id": "eng", "name": "Engineering", "members": ["alice", "group:platform"]},
                {"id": "platform", "name": "Platform", "members": if bob_in_platform { vec!["bob"] } else { vec![] }}
            ],
            "grants": grants
        }),
    );
}

async fn connect_folder(
    ingest: &mut ingest::Ingest,
    admin: &str,
    path: &str,
) -> Result<pb::Integration, tonic::Status> {
    ingest::connect_folder(ingest, admin, "Shared folder", path).await
}

async fn full_then_incremental_sync(backend: Backend) {
    let (server, root) = server(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let dir = root.path().join(tenant.to_string()).join("acme");
    write(&dir, "handbook/welcome.md", "welcome to engineering");
    write(&dir, "handbook/oncall.md", "the on-call rota");
    write(&dir, "public.md", "public to the domain");
    write(&dir, "lunch.txt", "pizza on fridays");
    write(&dir, "notes.md", "alice's notes");
    write(&dir, "secret.md", "granted to nobody");
    acme_manifest(&dir, true, true);

    let (_, alice) = ingest::member(&server, tenant, &admin, "alice@acme.example").await;
    let (_, bob) = ingest::member(&server, tenant, &admin, "bob@acme.example").await;
    let (_, carol) = ingest::member(&server, tenant, &admin, "carol@elsewhere.example").await;
    let mut client = ingest::client(&server).await;
    let integration = connect_folder(&mut client, &admin, "acme").await.unwrap();
    assert_eq!(integration.status, pb::IntegrationStatus::Active as i32);
    assert_eq!(
        integration.settings.get("path").map(String::as_str),
        Some("acme")
    );

    let done = sync_ok(&mut client, &admin, &integration.id, false).await;
    assert_eq!(done.created + done.updated + done.skipped, 6, "{done:?}");

    // P02: direct, nested group, domain and anyone grants, as the manifest says.
    assert_eq!(
        titles(&server, &alice).await,
        set(&[
            "welcome.md",
            "oncall.md",
            "public.md",
            "lunch.txt",
            "notes.md"
        ])
    );
    assert_eq!(
        titles(&server, &bob).await,
        set(&["welcome.md", "oncall.md", "public.md", "lunch.txt"])
    );
    assert_eq!(titles(&server, &carol).await, set(&["lunch.txt"]));

    // A second sync of an unchanged folder writes nothing.
    let again = sync_ok(&mut client, &admin, &integration.id, false).await;
    assert_eq!(
        (again.created, again.updated, again.deleted),
        (0, 0, 0),
        "{again:?}"
    );

    // At the source: an edit, a deletion, an addition, a revoked grant, Bob out of the
    // nested group.
    tokio::time::sleep(Duration::from_millis(20)).await;
    write(
        &dir,
        "handbook/welcome.md",
        "welcome to engineering, second edition",
    );
    std::fs::remove_file(dir.join("handbook/oncall.md")).unwrap();
    write(&dir, "handbook/deploys.md", "how we deploy");
    acme_manifest(&dir, false, false);
    let done = sync_ok(&mut client, &admin, &integration.id, false).await;
    assert_eq!(
        (done.created, done.updated, done.deleted),
        (1, 1, 1),
        "{done:?}"
    );

    assert_eq!(
        titles(&server, &alice).await,
        set(&["welcome.md", "deploys.md", "public.md", "lunch.txt"])
    );
    assert_eq!(
        titles(&server, &bob).await,
        set(&["public.md", "lunch.txt"])
    );
    // The edit is what storage serves now.
    let welcome = ingest::readable(&server, &alice)
        .await
        .into_iter()
        .find(|d| d.title == "welcome.md")
        .unwrap();
    let mut docs =
        storage::storage_service_client::StorageServiceClient::new(server.channel().await);
    let got = docs
        .get_document(authed(
            storage::GetDocumentRequest {
                document_id: welcome.id.clone(),
                ..Default::default()
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.content, b"welcome to engineering, second edition");

    let read = ingest::integration(&mut client, &admin, &integration.id).await;
    assert!(read.last_synced_at.is_some());
    assert_eq!(read.last_error, "");
    server.stop().await;
}

async fn p03_connectors_list_read_only_scopes_before_connecting(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (tenant, _) = server.create_tenant("Acme").await;
    // Any member may see what a connector would ask for.
    let member = server.token("someone", Some(tenant), &[Role::Member]);
    let mut client = ingest::client(&server).await;
    let connectors = client
        .list_connectors(authed(pb::ListConnectorsRequest {}, &member))
        .await
        .unwrap()
        .into_inner()
        .connectors;
    let kinds: Vec<&str> = connectors.iter().map(|c| c.kind.as_str()).collect();
    assert!(kinds.contains(&"local_folder"), "{kinds:?}");
    for c in &connectors {
        assert!(!c.collects.is_empty(), "{} lists what it collects", c.kind);
        assert!(!c.display_name.is_empty());
        for scope in &c.scopes {
            assert!(
                scope.ends_with(".readonly") || scope.ends_with(":read"),
                "{}: scope {scope} is not read-only",
                c.kind
            );
        }
    }
    // Without a token: refused.
    let err = client
        .list_connectors(pb::ListConnectorsRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    server.stop().await;
}

async fn p06_disconnect_erases_what_the_folder_brought(backend: Backend) {
    let (server, root) = server(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let dir = root.path().join(tenant.to_string()).join("acme");
    write(&dir, "handbook/welcome.md", "welcome");
    write(&dir, "lunch.txt", "pizza");
    acme_manifest(&dir, true, false);
    let (_, alice) = ingest::member(&server, tenant, &admin, "alice@acme.example").await;
    let mut client = ingest::client(&server).await;
    let integration = connect_folder(&mut client, &admin, "acme").await.unwrap();
    sync_ok(&mut client, &admin, &integration.id, false).await;
    assert_eq!(titles(&server, &alice).await.len(), 2);

    // Only an admin disconnects.
    let err = client
        .disconnect_integration(authed(
            pb::DisconnectIntegrationRequest {
                integration_id: integration.id.clone(),
            },
            &alice,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let cascade = client
        .disconnect_integration(authed(
            pb::DisconnectIntegrationRequest {
                integration_id: integration.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .cascade_id;
    assert!(uuid::Uuid::parse_str(&cascade).is_ok());
    // Asking again answers the same cascade.
    let again = client
        .disconnect_integration(authed(
            pb::DisconnectIntegrationRequest {
                integration_id: integration.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .cascade_id;
    assert_eq!(again, cascade);

    // Storage and permissions erase it (the event cascades over the bus).
    let service = server.token("ingest", Some(tenant), &[Role::Service]);
    assert!(
        eventually(Duration::from_secs(30), || async {
            ingest::readable(&server, &service).await.is_empty()
        })
        .await,
        "storage still holds the folder's documents"
    );
    assert!(titles(&server, &alice).await.is_empty());

    // A late write for the disconnected integration (a sync elsewhere that had not
    // stopped yet) is refused by storage and permissions alike: nothing outlives the
    // cascade.
    let mut docs =
        storage::storage_service_client::StorageServiceClient::new(server.channel().await);
    let late = vec![
        storage::PutDocumentsRequest {
            item: Some(storage::put_documents_request::Item::Header(
                storage::DocumentHeader {
                    integration_id: integration.id.clone(),
                    external_id: "late.txt".into(),
                    source_version: "1".into(),
                    title: "late".into(),
                    size_bytes: 4,
                    ..Default::default()
                },
            )),
        },
        storage::PutDocumentsRequest {
            item: Some(storage::put_documents_request::Item::Chunk(
                b"late".to_vec(),
            )),
        },
    ];
    let err = docs
        .put_documents(authed(tokio_stream::iter(late), &service))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("integration_id") && err.message().contains("disconnected"),
        "{}",
        err.message()
    );
    let mut permissions =
        perm::permissions_service_client::PermissionsServiceClient::new(server.channel().await);
    let err = permissions
        .sync_principals(authed(
            perm::SyncPrincipalsRequest {
                integration_id: integration.id.clone(),
                ..Default::default()
            },
            &service,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let err = permissions
        .set_document_acls(authed(
            perm::SetDocumentAclsRequest {
                acls: vec![perm::DocumentAcl {
                    document_id: uuid::Uuid::new_v4().to_string(),
                    integration_id: integration.id.clone(),
                    grants: Vec::new(),
                }],
            },
            &service,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("acls.integration_id"),
        "{}",
        err.message()
    );

    // Ingest itself: no credentials, no items; disconnected, and no sync any more.
    let db = server.service_db(Service::Ingest).await;
    for table in ["credentials", "items"] {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        let n: i64 = row.try_get("", "n").unwrap();
        assert_eq!(n, 0, "{table} still has rows");
    }
    let read = ingest::integration(&mut client, &admin, &integration.id).await;
    assert_eq!(read.status, pb::IntegrationStatus::Disconnected as i32);
    let err = client
        .sync_integration(authed(
            pb::SyncIntegrationRequest {
                integration_id: integration.id.clone(),
                full: false,
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    server.stop().await;
}

async fn p07_an_archived_file_stays_out_after_resync(backend: Backend) {
    let (server, root) = server(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let dir = root.path().join(tenant.to_string()).join("acme");
    write(&dir, "lunch.txt", "pizza on fridays");
    acme_manifest(&dir, true, false);
    let (_, alice) = ingest::member(&server, tenant, &admin, "alice@acme.example").await;
    let mut client = ingest::client(&server).await;
    let integration = connect_folder(&mut client, &admin, "acme").await.unwrap();
    sync_ok(&mut client, &admin, &integration.id, false).await;
    let lunch = ingest::readable(&server, &alice).await.pop().unwrap();

    let mut docs =
        storage::storage_service_client::StorageServiceClient::new(server.channel().await);
    // Archiving is done by a person: an admin account.
    let (ada, _) = ingest::member(&server, tenant, &admin, "ada@acme.example").await;
    let admin = server.token(&ada, Some(tenant), &[Role::Admin]);
    docs.archive_document(authed(
        storage::ArchiveDocumentRequest {
            document_id: lunch.id.clone(),
        },
        &admin,
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    write(&dir, "lunch.txt", "tacos on fridays");
    let done = sync_ok(&mut client, &admin, &integration.id, true).await;
    assert_eq!((done.created, done.updated), (0, 0), "{done:?}");
    assert_eq!(done.skipped, 1, "{done:?}");
    assert!(
        titles(&server, &alice).await.is_empty(),
        "archived stays out"
    );
    let archived = docs
        .get_document(authed(
            storage::GetDocumentRequest {
                document_id: lunch.id.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(archived.content, b"pizza on fridays", "not re-imported");
    server.stop().await;
}

async fn hostile_folders_and_requests_get_clear_errors(backend: Backend) {
    let (server, root) = server(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let dir = root.path().join(tenant.to_string()).join("acme");
    write(&dir, "lunch.txt", "pizza");
    acme_manifest(&dir, true, false);
    // A link out of the folder is never followed.
    let outside = root.path().join("outside.txt");
    std::fs::write(&outside, "not to be imported").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("link.txt")).unwrap();
    let (_, carol) = ingest::member(&server, tenant, &admin, "carol@elsewhere.example").await;
    let mut client = ingest::client(&server).await;

    for (path, field) in [
        ("../acme", "settings.path"),
        ("/etc", "settings.path"),
        ("", "settings.path"),
        ("missing", "settings.path"),
    ] {
        let err = connect_folder(&mut client, &admin, path).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{path}: {err:?}");
        assert!(err.message().contains(field), "{path}: {}", err.message());
    }
    let bad = |kind: &str, name: &str| pb::ConnectIntegrationRequest {
        kind: kind.into(),
        display_name: name.into(),
        settings: [("path".to_owned(), "acme".to_owned())].into(),
        ..Default::default()
    };
    for (request, field) in [
        (bad("dropbox", "x"), "kind"),
        (bad("local_folder", ""), "display_name"),
        (bad("local_folder", &"x".repeat(201)), "display_name"),
    ] {
        let err = client
            .connect_integration(authed(request, &admin))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(field), "{}", err.message());
    }
    let mut unknown_setting = bad("local_folder", "x");
    unknown_setting
        .settings
        .insert("colour".into(), "blue".into());
    let err = client
        .connect_integration(authed(unknown_setting, &admin))
        .await
        .unwrap_err();
    assert!(err.message().contains("colour"), "{}", err.message());
    // A member may not connect.
    let err = client
        .connect_integration(authed(bad("local_folder", "x"), &carol))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    for id in ["", "nope"] {
        let err = client
            .get_integration(authed(
                pb::GetIntegrationRequest {
                    integration_id: id.into(),
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("integration_id"));
    }
    let err = client
        .get_integration(authed(
            pb::GetIntegrationRequest {
                integration_id: uuid::Uuid::new_v4().to_string(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let integration = connect_folder(&mut client, &admin, "acme").await.unwrap();
    sync_ok(&mut client, &admin, &integration.id, false).await;
    assert_eq!(
        titles(&server, &carol).await,
        set(&["lunch.txt"]),
        "the link was not imported"
    );

    // A broken manifest fails the sync, says why, and loses nothing imported.
    write(&dir, "mindmesh-acl.json", "{\"users\": [");
    let all = ingest::sync(&mut client, &admin, &integration.id, false).await;
    let last = all.last().unwrap();
    assert_eq!(last.phase, pb::SyncPhase::Failed as i32);
    assert!(last.error.contains("mindmesh-acl.json"), "{}", last.error);
    let read = ingest::integration(&mut client, &admin, &integration.id).await;
    assert_eq!(read.status, pb::IntegrationStatus::Failing as i32);
    assert!(
        read.last_error.contains("mindmesh-acl.json"),
        "{}",
        read.last_error
    );
    assert_eq!(titles(&server, &carol).await, set(&["lunch.txt"]));

    // Mended, it syncs again.
    acme_manifest(&dir, true, false);
    sync_ok(&mut client, &admin, &integration.id, false).await;

    // NotifyChange schedules once; a second before the sync starts is not scheduled twice.
    let notify = |id: &str| pb::NotifyChangeRequest {
        integration_id: id.into(),
        resource_id: "lunch.txt".into(),
    };
    let service = server.token("webhooks", Some(tenant), &[Role::Service]);
    let first = client
        .notify_change(authed(notify(&integration.id), &service))
        .await
        .unwrap()
        .into_inner();
    let _ = first.scheduled; // the scheduler may already have taken it
    let err = client
        .notify_change(authed(notify(&uuid::Uuid::new_v4().to_string()), &service))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

/// A folder that is not there any more (an unmounted share) fails the sync; it does not
/// read as "every file deleted".
async fn a_vanished_folder_fails_instead_of_deleting(backend: Backend) {
    let (server, root) = server(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let dir = root.path().join(tenant.to_string()).join("acme");
    write(&dir, "lunch.txt", "pizza");
    acme_manifest(&dir, true, false);
    let (_, carol) = ingest::member(&server, tenant, &admin, "carol@elsewhere.example").await;
    let mut client = ingest::client(&server).await;
    let integration = connect_folder(&mut client, &admin, "acme").await.unwrap();
    sync_ok(&mut client, &admin, &integration.id, false).await;
    std::fs::rename(&dir, root.path().join(tenant.to_string()).join("moved")).unwrap();
    let all = ingest::sync(&mut client, &admin, &integration.id, false).await;
    assert_eq!(all.last().unwrap().phase, pb::SyncPhase::Failed as i32);
    assert_eq!(titles(&server, &carol).await, set(&["lunch.txt"]));
    server.stop().await;
}

/// P08 for ingest: deleting the tenant erases its integrations, credentials, items and
/// keys.
async fn p08_deleting_the_tenant_erases_its_integrations(backend: Backend) {
    let (server, root) = server(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let dir = root.path().join(tenant.to_string()).join("acme");
    write(&dir, "lunch.txt", "pizza");
    acme_manifest(&dir, true, false);
    let (other, other_admin) = server.create_tenant("Other").await;
    let other_dir = root.path().join(other.to_string()).join("acme");
    write(&other_dir, "lunch.txt", "pizza");
    acme_manifest(&other_dir, true, false);
    let mut client = ingest::client(&server).await;
    for admin in [&admin, &other_admin] {
        let integration = connect_folder(&mut client, admin, "acme").await.unwrap();
        sync_ok(&mut client, admin, &integration.id, false).await;
    }
    let operator = server.token("op", None, &[Role::Operator]);
    let mut accounts = mindmesh_proto::mindmesh::permissions::v1::account_service_client::AccountServiceClient::new(server.channel().await);
    accounts
        .delete_tenant(authed(
            mindmesh_proto::mindmesh::permissions::v1::DeleteTenantRequest {
                tenant_id: tenant.to_string(),
            },
            &operator,
        ))
        .await
        .unwrap();
    let db = server.service_db(Service::Ingest).await;
    let keys = mindmesh_kit::db::connect(&server.config.keystore_url(Service::Ingest), 2)
        .await
        .unwrap();
    let count =
        |conn: &sea_orm::DatabaseConnection, table: &str, tenant: mindmesh_kit::ids::TenantId| {
            let conn = conn.clone();
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = '{tenant}'");
            async move {
                let row = conn
                    .query_one_raw(sea_orm::Statement::from_string(
                        conn.get_database_backend(),
                        sql,
                    ))
                    .await
                    .unwrap()
                    .unwrap();
                row.try_get_by_index::<i64>(0).unwrap()
            }
        };
    assert!(
        eventually(Duration::from_secs(30), || async {
            count(&db, "integrations", tenant).await == 0
        })
        .await,
        "the tenant's integrations are erased"
    );
    for table in ["credentials", "items"] {
        assert_eq!(count(&db, table, tenant).await, 0, "{table}");
        assert!(
            count(&db, table, other).await > 0,
            "{table} of the other tenant kept"
        );
    }
    assert_eq!(count(&keys, "tenant_keys", tenant).await, 0);
    assert_eq!(count(&db, "integrations", other).await, 1);
    server.stop().await;
}

/// Tenant isolation and links: each tenant reads only below `<root>/<its id>/`, and no
/// link is followed — not one there at connect time, however the path spells it
/// (`link/`, `link/.`, `link/..`), nor one put there between connect and sync.
async fn a_hostile_folder_tree_never_reaches_outside_the_tenants_folder(backend: Backend) {
    let (server, root) = server(backend).await;
    let (a, admin_a) = server.create_tenant("Acme").await;
    let (b, admin_b) = server.create_tenant("Bravo").await;
    let a_dir = root.path().join(a.to_string()).join("acme");
    write(&a_dir, "acme-secret.md", "tenant a's file");
    write(
        &a_dir,
        "mindmesh-acl.json",
        &serde_json::json!({"grants": [{"path": "*", "to": "anyone", "role": "reader"}]})
            .to_string(),
    );
    // Outside every tenant's folder: a directory with a file, as /etc would be.
    let outside = root.path().join("outside");
    write(&outside, "gshadow", "root:*::");
    let b_dir = root.path().join(b.to_string());
    write(&b_dir, "own/readme.md", "bravo's own");
    write(
        &b_dir,
        "own/mindmesh-acl.json",
        &serde_json::json!({"grants": [{"path": "*", "to": "anyone", "role": "reader"}]})
            .to_string(),
    );
    // A manifest deeper down is not a document either.
    write(&b_dir, "own/sub/mindmesh-acl.json", "{}");
    std::os::unix::fs::symlink(&outside, b_dir.join("link")).unwrap();
    std::os::unix::fs::symlink(&a_dir, b_dir.join("sibling")).unwrap();
    std::os::unix::fs::symlink(&outside, b_dir.join("own/escape")).unwrap();
    let mut client = ingest::client(&server).await;

    // Another tenant's folder, the whole root, and every spelling of a link: refused.
    let a_path = format!("{a}/acme");
    for path in [
        "acme",
        a_path.as_str(),
        ".",
        "./",
        "link",
        "link/",
        "link/.",
        "link/..",
        "link/../own",
        "sibling",
        "sibling/",
        "own/escape",
        "own/escape/.",
        "own//sub",
        "../",
    ] {
        let err = connect_folder(&mut client, &admin_b, path)
            .await
            .map(|i| i.id)
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{path:?}: {err:?}");
        assert!(
            err.message().contains("settings.path"),
            "{path:?}: {}",
            err.message()
        );
    }

    // Its own folder works; the links inside it and every manifest stay out.
    let own = connect_folder(&mut client, &admin_b, "own/").await.unwrap();
    sync_ok(&mut client, &admin_b, &own.id, false).await;
    let service_b = server.token("ingest", Some(b), &[Role::Service]);
    let imported: std::collections::BTreeSet<String> = ingest::readable(&server, &service_b)
        .await
        .into_iter()
        .map(|d| d.title)
        .collect();
    assert_eq!(imported, set(&["readme.md"]));

    // A link put in place of a file or a folder between connect and sync is not followed.
    write(&b_dir, "own/docs/plan.md", "the plan");
    sync_ok(&mut client, &admin_b, &own.id, false).await;
    std::fs::rename(b_dir.join("own/docs"), b_dir.join("docs-moved")).unwrap();
    std::os::unix::fs::symlink(&outside, b_dir.join("own/docs")).unwrap();
    std::fs::remove_file(b_dir.join("own/readme.md")).unwrap();
    std::os::unix::fs::symlink(outside.join("gshadow"), b_dir.join("own/readme.md")).unwrap();
    sync_ok(&mut client, &admin_b, &own.id, false).await;
    for doc in ingest::readable(&server, &service_b).await {
        let got =
            storage::storage_service_client::StorageServiceClient::new(server.channel().await)
                .get_document(authed(
                    storage::GetDocumentRequest {
                        document_id: doc.id.clone(),
                        ..Default::default()
                    },
                    &service_b,
                ))
                .await
                .unwrap()
                .into_inner();
        assert!(
            !String::from_utf8_lossy(&got.content).contains("root:"),
            "{} holds a file from outside",
            doc.title
        );
    }
    // The folder itself replaced by a link: the sync fails, nothing is read through it.
    std::fs::rename(b_dir.join("own"), b_dir.join("own-moved")).unwrap();
    std::os::unix::fs::symlink(&outside, b_dir.join("own")).unwrap();
    let all = ingest::sync(&mut client, &admin_b, &own.id, false).await;
    assert_eq!(all.last().unwrap().phase, pb::SyncPhase::Failed as i32);
    assert!(
        ingest::readable(&server, &service_b)
            .await
            .iter()
            .all(|d| d.title != "gshadow"),
        "nothing from outside"
    );

    // Tenant a still reads its own folder.
    let own_a = connect_folder(&mut client, &admin_a, "acme").await.unwrap();
    sync_ok(&mut client, &admin_a, &own_a.id, false).await;
    let service_a = server.token("ingest", Some(a), &[Role::Service]);
    let titles_a: Vec<String> = ingest::readable(&server, &service_a)
        .await
        .into_iter()
        .map(|d| d.title)
        .collect();
    assert_eq!(titles_a, ["acme-secret.md"]);
    server.stop().await;
}

/// P01: what describes a folder's content — its path, its files' paths (which are their
/// titles), the integration's display name, a skipped item's id — is stored nowhere in
/// the clear, in ingest or in storage; GetIntegration still shows it.
async fn p01_paths_and_names_are_not_stored_in_the_clear(backend: Backend) {
    let (server, root) = server(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let dir = root.path().join(tenant.to_string()).join("zqxfolder");
    write(&dir, "zqxsecretdir/plan.md", "the plan");
    // A path longer than an id may be: skipped, with its (shortened) id recorded.
    let long = format!("zqxlongpath/{}/{}/x.md", "a".repeat(250), "b".repeat(250));
    write(&dir, &long, "long");
    let mut client = ingest::client(&server).await;
    let integration = client
        .connect_integration(authed(
            pb::ConnectIntegrationRequest {
                kind: "local_folder".into(),
                display_name: "Zqxname Handbook".into(),
                settings: [("path".to_owned(), "zqxfolder".to_owned())].into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .integration
        .unwrap();
    sync_ok(&mut client, &admin, &integration.id, false).await;
    let read = client
        .get_integration(authed(
            pb::GetIntegrationRequest {
                integration_id: integration.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let shown = read.integration.unwrap();
    assert_eq!(shown.display_name, "Zqxname Handbook");
    assert_eq!(
        shown.settings.get("path").map(String::as_str),
        Some("zqxfolder")
    );
    assert_eq!(read.skipped_items.len(), 1, "{:?}", read.skipped_items);
    assert!(
        read.skipped_items[0]
            .external_id
            .starts_with("zqxlongpath/")
    );
    assert!(read.skipped_items[0].reason.contains("512"));
    let service = server.token("ingest", Some(tenant), &[Role::Service]);
    let stored = ingest::readable(&server, &service).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].external_id, "zqxsecretdir/plan.md");

    let at_rest = common::at_rest(&server).await;
    assert!(
        !common::where_stored(&at_rest, &integration.id).is_empty(),
        "the scan sees what is stored in the clear (ids)"
    );
    for canary in ["zqxfolder", "zqxsecretdir", "Zqxname", "zqxlongpath"] {
        assert_eq!(
            common::where_stored(&at_rest, canary),
            Vec::<String>::new(),
            "{canary} stored in the clear"
        );
    }
    server.stop().await;
}

/// P01: what a version before sealed records kept in the clear — an integration's name
/// and settings, its items' source ids — is sealed when the service starts, and the
/// next sync still knows every item (nothing imported twice, nothing lost).
async fn p01_records_an_older_version_kept_in_the_clear_are_sealed_at_start(backend: Backend) {
    let (mut server, root) = server(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let dir = root.path().join(tenant.to_string()).join("zqxold");
    write(&dir, "zqxolddoc.md", "old");
    let mut client = ingest::client(&server).await;
    let integration = connect_folder(&mut client, &admin, "zqxold").await.unwrap();
    sync_ok(&mut client, &admin, &integration.id, false).await;
    // As the older version wrote them.
    let db = server.service_db(Service::Ingest).await;
    for sql in [
        format!(
            "UPDATE integrations SET display_name = 'Zqxoldname', \
             settings = '{{\"path\":\"zqxold\"}}', fields_key_id = NULL, \
             display_name_ct = NULL, settings_ct = NULL WHERE id = '{}'",
            integration.id
        ),
        format!(
            "UPDATE items SET source_index = 'zqxolddoc.md', legacy = TRUE \
             WHERE integration_id = '{}'",
            integration.id
        ),
    ] {
        db.execute_unprepared(&sql).await.unwrap();
    }
    drop(db);
    assert!(!common::where_stored(&common::at_rest(&server).await, "zqxold").is_empty());

    server.restart().await;
    let mut client = ingest::client(&server).await;
    let read = ingest::integration(&mut client, &admin, &integration.id).await;
    assert_eq!(read.display_name, "Zqxoldname");
    assert_eq!(
        read.settings.get("path").map(String::as_str),
        Some("zqxold")
    );
    let again = sync_ok(&mut client, &admin, &integration.id, false).await;
    assert_eq!(
        (again.created, again.updated, again.deleted),
        (0, 0, 0),
        "{again:?}"
    );
    assert_eq!(
        common::where_stored(&common::at_rest(&server).await, "zqxold"),
        Vec::<String>::new(),
        "nothing of it is left in the clear"
    );
    server.stop().await;
}

/// P06 on disk (embedded mode): once a disconnect's cascade is done, a copy of the data
/// directory holds nothing of what the integration brought — not its rows' keyed indexes
/// and pseudonyms in free pages, nor in a write-ahead log.
async fn p06_a_copy_of_the_data_directory_after_a_disconnect_holds_none_of_it() {
    let (server, root) = server(Backend::Embedded).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let dir = root.path().join(tenant.to_string()).join("acme");
    for i in 0..50 {
        write(&dir, &format!("doc-{i}.md"), &format!("document {i}"));
    }
    acme_manifest(&dir, true, true);
    let mut client = ingest::client(&server).await;
    let integration = connect_folder(&mut client, &admin, "acme").await.unwrap();
    sync_ok(&mut client, &admin, &integration.id, false).await;
    // What the integration left in each database, as the databases store it.
    let mut traces: Vec<String> = Vec::new();
    for (service, sql) in [
        (
            Service::Storage,
            "SELECT source_index AS v FROM documents WHERE integration_id <> ''",
        ),
        (Service::Ingest, "SELECT source_index AS v FROM items"),
        (
            Service::Permissions,
            "SELECT external_id AS v FROM principals",
        ),
    ] {
        let db = server.service_db(service).await;
        for row in db
            .query_all_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                sql,
            ))
            .await
            .unwrap()
        {
            traces.push(row.try_get::<String>("", "v").unwrap());
        }
    }
    assert!(traces.len() > 50, "{}", traces.len());
    let at_rest = common::at_rest(&server).await;
    assert!(!common::where_stored(&at_rest, &traces[0]).is_empty());

    client
        .disconnect_integration(authed(
            pb::DisconnectIntegrationRequest {
                integration_id: integration.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap();
    let service = server.token("ingest", Some(tenant), &[Role::Service]);
    assert!(
        eventually(Duration::from_secs(30), || async {
            ingest::readable(&server, &service).await.is_empty()
        })
        .await
    );
    // Permissions erases on the same event; wait for its rows to go too.
    let permissions = server.service_db(Service::Permissions).await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            permissions
                .query_one_raw(sea_orm::Statement::from_string(
                    permissions.get_database_backend(),
                    "SELECT COUNT(*) AS n FROM principals",
                ))
                .await
                .unwrap()
                .unwrap()
                .try_get::<i64>("", "n")
                .unwrap()
                == 0
        })
        .await
    );
    let at_rest = common::at_rest(&server).await;
    let left: Vec<(&String, Vec<String>)> = traces
        .iter()
        .map(|t| (t, common::where_stored(&at_rest, t)))
        .filter(|(_, places)| !places.is_empty())
        .collect();
    assert!(
        left.is_empty(),
        "{} of {} still on disk: {:?}",
        left.len(),
        traces.len(),
        &left[..left.len().min(3)]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p06_embedded_data_directory_holds_nothing_after_a_disconnect() {
    p06_a_copy_of_the_data_directory_after_a_disconnect_holds_none_of_it().await
}

/// P06 on disk (distributed mode): PostgreSQL keeps an erased row's dead version in its
/// table until the table is vacuumed. A cascade that erases more than
/// `database.vacuum_after_rows` rows vacuums the tables it erased from as soon as it
/// commits, in every service; a smaller one leaves them to autovacuum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p06_postgres_vacuums_the_tables_a_large_cascade_erased_from() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_path_buf();
    let server = TestServer::start_with(Backend::Distributed, move |c| {
        c.ingest.local_folder_root = Some(r);
        c.database.vacuum_after_rows = 30;
    })
    .await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let mut client = ingest::client(&server).await;
    let service = server.token("ingest", Some(tenant), &[Role::Service]);
    // Each document is granted to `eng`: the cascade erases rows in every service.
    let mut connected = Vec::new();
    for (folder, documents) in [("small", 3), ("large", 60)] {
        let dir = root.path().join(tenant.to_string()).join(folder);
        for i in 0..documents {
            write(
                &dir,
                &format!("handbook/doc-{i}.md"),
                &format!("document {i}"),
            );
        }
        acme_manifest(&dir, true, false);
        let integration = connect_folder(&mut client, &admin, folder).await.unwrap();
        sync_ok(&mut client, &admin, &integration.id, false).await;
        connected.push((integration.id, documents));
    }
    let erased = [
        (Service::Storage, "documents"),
        (Service::Ingest, "items"),
        (Service::Permissions, "grants"),
    ];
    let vacuums = |service: Service, table: &'static str| {
        let server = &server;
        async move {
            let db = server.service_db(service).await;
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    format!(
                        "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = '{table}'"
                    ),
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<i64>("", "vacuum_count").unwrap()
        }
    };
    let mut left = 63;
    for (integration, documents) in connected {
        client
            .disconnect_integration(authed(
                pb::DisconnectIntegrationRequest {
                    integration_id: integration,
                },
                &admin,
            ))
            .await
            .unwrap();
        left -= documents;
        assert!(
            eventually(Duration::from_secs(30), || async {
                ingest::readable(&server, &service).await.len() == left
            })
            .await
        );
    }
    // The large cascade vacuumed; the small one, erased first, did not (autovacuum's
    // runs are counted apart).
    for (service, table) in erased {
        assert!(
            eventually(Duration::from_secs(30), || async {
                vacuums(service, table).await > 0
            })
            .await,
            "{service:?} did not vacuum {table}"
        );
        // Once (the dead-tuple count is no witness: the deleting session may report
        // its deletions to the statistics after the vacuum ran).
        assert_eq!(vacuums(service, table).await, 1, "{service:?} {table}");
    }
    server.stop().await;
}

both_modes!(
    p01_records_an_older_version_kept_in_the_clear_are_sealed_at_start,
    p01_paths_and_names_are_not_stored_in_the_clear,
    a_hostile_folder_tree_never_reaches_outside_the_tenants_folder,
    p08_deleting_the_tenant_erases_its_integrations,
    full_then_incremental_sync,
    p03_connectors_list_read_only_scopes_before_connecting,
    p06_disconnect_erases_what_the_folder_brought,
    p07_an_archived_file_stays_out_after_resync,
    hostile_folders_and_requests_get_clear_errors,
    a_vanished_folder_fails_instead_of_deleting,
);
