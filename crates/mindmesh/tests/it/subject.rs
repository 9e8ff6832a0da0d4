//! `SubjectData` (P12) over real gRPC in both modes: permissions exports a person's
//! account, source identities and memberships decrypted, and rectification changes the
//! account; storage exports their native documents and restricts their processing; what
//! is not built answers UNIMPLEMENTED.

use crate::common::{Backend, TestServer, authed};
use mindmesh_kit::Service;
use mindmesh_kit::auth::Role;
use mindmesh_proto::mindmesh::permissions::v1 as pb;
use mindmesh_proto::mindmesh::storage::v1 as storage;
use mindmesh_proto::mindmesh::subject::v1 as subject;
use tokio_stream::StreamExt;
use tonic::Code;

async fn p12_permissions_exports_and_rectifies_a_person(backend: Backend) {
    let server = TestServer::start(backend).await;
    let channel = server.channel().await;
    let mut accounts = pb::account_service_client::AccountServiceClient::new(channel.clone());
    let (tenant, admin) = server.create_tenant("Acme").await;
    let ada = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let service = server.token("dsar", Some(tenant), &[Role::Service]);
    let drive = server.integration(tenant, &admin).await;
    pb::permissions_service_client::PermissionsServiceClient::new(channel.clone())
        .sync_principals(authed(
            pb::SyncPrincipalsRequest {
                integration_id: drive.to_string(),
                users: vec![
                    pb::PrincipalUser {
                        external_id: "d-ada".into(),
                        email: "ADA@acme.example".into(),
                        display_name: "Ada L.".into(),
                    },
                    pb::PrincipalUser {
                        external_id: "d-bob".into(),
                        email: "bob@acme.example".into(),
                        display_name: "Bob".into(),
                    },
                ],
                groups: vec![pb::PrincipalGroup {
                    external_id: "eng".into(),
                    email: String::new(),
                    name: "Engineering".into(),
                }],
                memberships: vec![
                    pb::Membership {
                        group_external_id: "eng".into(),
                        member_external_id: "d-ada".into(),
                        member_is_group: false,
                    },
                    pb::Membership {
                        group_external_id: "eng".into(),
                        member_external_id: "d-bob".into(),
                        member_is_group: false,
                    },
                ],
            },
            &service,
        ))
        .await
        .unwrap();

    let mut client = subject::subject_data_client::SubjectDataClient::new(channel.clone());
    let exporter = client.clone();
    let export = |token: String, service: Service, email: &str| {
        let mut client = exporter.clone();
        let request = subject::ExportRequest {
            service: service.to_proto() as i32,
            subject_email: email.into(),
            request_id: "req-1".into(),
        };
        async move {
            let mut stream = client.export(authed(request, &token)).await?.into_inner();
            let mut out = Vec::new();
            while let Some(record) = stream.next().await {
                out.push(record?);
            }
            Ok::<_, tonic::Status>(out)
        }
    };
    let records = export(service.clone(), Service::Permissions, "ada@acme.example")
        .await
        .unwrap();
    let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec!["account", "principal", "membership"],
        "{records:?}"
    );
    let account: serde_json::Value = serde_json::from_str(&records[0].json).unwrap();
    assert_eq!(account["first_name"], "Ada");
    assert_eq!(account["id"], ada.id.as_str());
    let principal: serde_json::Value = serde_json::from_str(&records[1].json).unwrap();
    assert_eq!(principal["name"], "Ada L.", "decrypted for the export");
    assert_eq!(principal["external_id"], "d-ada");
    assert!(
        records.iter().all(|r| !r.json.contains("Bob")),
        "nobody else's data"
    );
    assert!(
        export(service.clone(), Service::Permissions, "nobody@acme.example")
            .await
            .unwrap()
            .is_empty()
    );

    // Rectification changes the account, through the same validation as any update.
    let changed = client
        .rectify(authed(
            subject::RectifyRequest {
                service: Service::Permissions.to_proto() as i32,
                subject_email: "ada@acme.example".into(),
                request_id: "req-2".into(),
                last_name: Some("King".into()),
                ..Default::default()
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner()
        .records_changed;
    assert_eq!(changed, 1);
    let after = accounts
        .get_user(authed(
            pb::GetUserRequest {
                user_id: ada.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(after.last_name, "King");
    let bad = client
        .rectify(authed(
            subject::RectifyRequest {
                service: Service::Permissions.to_proto() as i32,
                subject_email: "ada@acme.example".into(),
                request_id: "req-3".into(),
                email: Some("not-an-email".into()),
                ..Default::default()
            },
            &service,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("email"));

    // Permissions sends nothing to processors: a restriction changes nothing there;
    // bad requests are refused.
    let restricted = client
        .restrict(authed(
            subject::RestrictRequest {
                service: Service::Permissions.to_proto() as i32,
                subject_email: "ada@acme.example".into(),
                request_id: "r".into(),
                restricted: true,
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(restricted.records_changed, 0);
    // Ingest's settings are the admin's to change: it does not rectify (yet).
    let status = client
        .rectify(authed(
            subject::RectifyRequest {
                service: Service::Ingest.to_proto() as i32,
                subject_email: "ada@acme.example".into(),
                request_id: "r".into(),
                last_name: Some("King".into()),
                ..Default::default()
            },
            &service,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    let invalid = client
        .export(authed(
            subject::ExportRequest {
                service: 0,
                subject_email: "ada@acme.example".into(),
                request_id: String::new(),
            },
            &service,
        ))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let member = server.token(&ada.id, Some(tenant), &[Role::Member]);
    assert_eq!(
        export(member, Service::Permissions, "ada@acme.example")
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    server.stop().await;
}

/// Storage's part: a person's native documents are exported decrypted; restricting
/// their processing hides them from everyone but the services, and lifting it brings
/// them back.
async fn p12_storage_exports_and_restricts_a_persons_documents(backend: Backend) {
    let server = TestServer::start(backend).await;
    let channel = server.channel().await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let mut ids = Vec::new();
    for email in ["ada@acme.example", "bob@acme.example"] {
        let user = server.create_user(&admin, "X", "Y", email).await;
        ids.push(user.id);
    }
    let ada = server.token(&ids[0], Some(tenant), &[Role::Member]);
    let bob = server.token(&ids[1], Some(tenant), &[Role::Member]);
    let service = server.token("dsar", Some(tenant), &[Role::Service]);
    let mut storage = storage::storage_service_client::StorageServiceClient::new(channel.clone());
    let mut created = Vec::new();
    for (token, title, content) in [
        (&ada, "Ada's diary", b"dear diary".to_vec()),
        (&ada, "Ada's photo", vec![0xff, 0xd8, 0xff]),
        (&bob, "Bob's notes", b"not Ada's".to_vec()),
    ] {
        created.push(
            storage
                .create_document(authed(
                    storage::CreateDocumentRequest {
                        title: title.into(),
                        mime_type: String::new(),
                        content,
                    },
                    token,
                ))
                .await
                .unwrap()
                .into_inner()
                .document
                .unwrap()
                .id,
        );
    }

    let mut client = subject::subject_data_client::SubjectDataClient::new(channel.clone());
    let mut stream = client
        .export(authed(
            subject::ExportRequest {
                service: Service::Storage.to_proto() as i32,
                subject_email: "ADA@acme.example".into(),
                request_id: "req-export".into(),
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut records = Vec::new();
    while let Some(record) = stream.next().await {
        records.push(record.unwrap());
    }
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(records.iter().all(|r| r.kind == "document"));
    let by_id = |id: &str| -> serde_json::Value {
        serde_json::from_str(&records.iter().find(|r| r.id == id).unwrap().json).unwrap()
    };
    assert_eq!(by_id(&created[0])["title"], "Ada's diary");
    assert_eq!(by_id(&created[0])["content"], "dear diary");
    assert_eq!(by_id(&created[1])["content_base64"], "/9j/");
    assert!(records.iter().all(|r| !r.json.contains("Bob")));

    // Restriction: Ada's documents are kept but served to no member, herself included.
    let restrict = |restricted: bool| {
        authed(
            subject::RestrictRequest {
                service: Service::Storage.to_proto() as i32,
                subject_email: "ada@acme.example".into(),
                request_id: "req-restrict".into(),
                restricted,
            },
            &service,
        )
    };
    let changed = client
        .restrict(restrict(true))
        .await
        .unwrap()
        .into_inner()
        .records_changed;
    assert_eq!(changed, 2);
    let get = |id: &str, token: &str| {
        authed(
            storage::GetDocumentRequest {
                document_id: id.into(),
                at_least_revision: 0,
            },
            token,
        )
    };
    let err = storage
        .get_document(get(&created[0], &ada))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        storage
            .get_document(get(&created[0], &service))
            .await
            .is_ok()
    );
    assert!(storage.get_document(get(&created[2], &bob)).await.is_ok());
    let listed = storage
        .list_documents(authed(storage::ListDocumentsRequest::default(), &ada))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.documents.is_empty());
    let found = storage
        .list_documents(authed(
            storage::ListDocumentsRequest {
                query: "diary".into(),
                ..Default::default()
            },
            &ada,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(found.documents.is_empty());
    // Lifted: back again; a repeat changes nothing.
    assert_eq!(
        client
            .restrict(restrict(false))
            .await
            .unwrap()
            .into_inner()
            .records_changed,
        2
    );
    assert_eq!(
        client
            .restrict(restrict(false))
            .await
            .unwrap()
            .into_inner()
            .records_changed,
        0
    );
    let doc = storage
        .get_document(get(&created[0], &ada))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(doc.content, b"dear diary");
    server.stop().await;
}

/// Retention's part: a person's last activity, and the cascades that erased their data
/// (found by the keyed hash of their email); nothing to rectify or restrict.
async fn p12_retention_exports_a_persons_activity_and_cascades(backend: Backend) {
    use mindmesh_proto::mindmesh::retention::v1 as retention;
    let server = TestServer::start(backend).await;
    let channel = server.channel().await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let ada = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let bob = server
        .create_user(&admin, "Bob", "Builder", "bob@acme.example")
        .await;
    let at = chrono::Utc::now() - chrono::Duration::days(3);
    retention::retention_service_client::RetentionServiceClient::new(channel.clone())
        .record_activity(authed(
            retention::RecordActivityRequest {
                user_id: ada.id.clone(),
                at: Some(prost_types::Timestamp {
                    seconds: at.timestamp(),
                    nanos: 0,
                }),
            },
            &admin,
        ))
        .await
        .unwrap();
    let cascade = crate::retention::delete_user(&server, &admin, bob.id.clone()).await;
    crate::retention::completed_with_proof(&server, &admin, &cascade).await;

    let service = server.token("dsar", Some(tenant), &[Role::Service]);
    let mut client = subject::subject_data_client::SubjectDataClient::new(channel);
    let export = |email: &str| {
        let mut client = client.clone();
        let request = subject::ExportRequest {
            service: Service::Retention.to_proto() as i32,
            subject_email: email.into(),
            request_id: "req-r".into(),
        };
        let token = service.clone();
        async move {
            let mut stream = client
                .export(authed(request, &token))
                .await
                .unwrap()
                .into_inner();
            let mut out = Vec::new();
            while let Some(record) = stream.next().await {
                out.push(record.unwrap());
            }
            out
        }
    };
    let ada_records = export("Ada@acme.example").await;
    let activity = ada_records
        .iter()
        .find(|r| r.kind == "account_activity")
        .expect("Ada's activity");
    let json: serde_json::Value = serde_json::from_str(&activity.json).unwrap();
    assert_eq!(json["user_id"], ada.id.as_str());
    assert!(ada_records.iter().all(|r| r.kind != "cascade"));
    // Bob's account is gone; what retention keeps of him is the cascade that erased it.
    let bob_records = export("bob@acme.example").await;
    assert_eq!(bob_records.len(), 1, "{bob_records:?}");
    assert_eq!(bob_records[0].kind, "cascade");
    let json: serde_json::Value = serde_json::from_str(&bob_records[0].json).unwrap();
    assert_eq!(json["cascade_id"], cascade.as_str());
    assert_eq!(json["state"], "complete");
    assert!(
        !bob_records[0].json.contains("bob@"),
        "no email in the ledger"
    );
    let changed = client
        .rectify(authed(
            subject::RectifyRequest {
                service: Service::Retention.to_proto() as i32,
                subject_email: "ada@acme.example".into(),
                request_id: "req-r2".into(),
                last_name: Some("King".into()),
                ..Default::default()
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.records_changed, 0);
    server.stop().await;
}

both_modes!(
    p12_retention_exports_a_persons_activity_and_cascades,
    p12_permissions_exports_and_rectifies_a_person,
    p12_storage_exports_and_restricts_a_persons_documents,
);
