//! The storage service's part of the disconnect cascade, in both modes: on
//! `integration.disconnected` the integration's documents are unreadable at once (their
//! key destroyed) and then deleted, and storage attests with a signed `deletion.completed`;
//! the same for a deleted account, a subject's erasure request and a deleted tenant.

use std::time::Duration;

use crate::common::authed;
use crate::common::{Backend, TestServer};
use chrono::Utc;
use mindmesh_kit::Service;
use mindmesh_kit::auth::Role;
use mindmesh_kit::config::Mode;
use mindmesh_kit::ids::{IntegrationId, TenantId};
use mindmesh_kit::keyfiles::KeyMaterial;
use mindmesh_kit::keys::Keystore;
use mindmesh_proto::mindmesh::events::v1::{
    DeletionCompleted, IntegrationDisconnected, SubjectErasureRequested,
};
use mindmesh_proto::mindmesh::permissions::v1 as perm;
use mindmesh_proto::mindmesh::storage::v1 as pb;
use sea_orm::ConnectionTrait;

type Storage = pb::storage_service_client::StorageServiceClient<tonic::transport::Channel>;
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use mindmesh_storage::documents::{Documents, NewDocument, Origin, PutOutcome};

async fn p06_disconnect_erases_the_integrations_documents(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mode = if backend == Backend::Embedded {
        Mode::Embedded
    } else {
        Mode::Distributed
    };
    let keys = KeyMaterial::load(&server.config, mode).unwrap();
    let db = server.service_db(Service::Storage).await;
    let key_db = mindmesh_kit::db::connect(&server.config.keystore_url(Service::Storage), 2)
        .await
        .unwrap();
    let documents = Documents::new(db, Keystore::new(key_db, keys.master.clone()));
    let tenant = TenantId::new();
    let drive = IntegrationId::new();
    let github = IntegrationId::new();
    let mut ids = Vec::new();
    for (integration, n) in [(drive, 5), (github, 2)] {
        for i in 0..n {
            let outcome = documents
                .put(
                    tenant,
                    NewDocument {
                        origin: Origin::Imported {
                            integration,
                            external_id: format!("f{i}"),
                            source_version: "1".into(),
                        },
                        title: format!("doc {i}"),
                        content: b"words".to_vec(),
                        mime_type: "text/plain".into(),
                        source_url: String::new(),
                        source_owner: String::new(),
                        modified_at: Utc::now(),
                    },
                )
                .await
                .unwrap();
            let PutOutcome::Created(id) = outcome else {
                panic!("{outcome:?}")
            };
            ids.push((integration, id));
        }
    }

    let bus = server.bus().await;
    let mut observer = bus.subscribe("observer").await.unwrap();
    // Cascade ids are UUIDs (an event with another one is malformed).
    let cascade = mindmesh_kit::ids::CascadeId::new().to_string();
    let event = mindmesh_kit::events::envelope(
        Service::Ingest,
        Some(tenant),
        Payload::IntegrationDisconnected(IntegrationDisconnected {
            integration_id: drive.to_string(),
            cascade_id: cascade.clone(),
        }),
    );
    bus.publish(&mindmesh_kit::events::to_bus_message(&event).unwrap())
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let done = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no deletion.completed from storage"
        );
        let Some(d) = observer.next(Duration::from_millis(500)).await.unwrap() else {
            continue;
        };
        let envelope = mindmesh_kit::events::decode(&d.message).unwrap();
        d.ack().await.unwrap();
        if let Some(Payload::DeletionCompleted(done)) = envelope.payload
            && done.cascade_id == cascade
            && done.service == Service::Storage.to_proto() as i32
        {
            break done;
        }
    };
    assert_eq!(done.counts.get("documents"), Some(&5));
    assert_eq!(done.destroyed_key_ids.len(), 1);
    assert!(mindmesh_kit::events::verify_completion(
        &keys.signing.public_key(),
        &done
    ));
    for (integration, id) in ids {
        let found = documents.get(tenant, id).await;
        if integration == drive {
            assert!(
                matches!(found, Err(mindmesh_kit::Error::NotFound(_))),
                "{found:?}"
            );
        } else {
            assert!(found.is_ok(), "the other integration's documents stay");
        }
    }
    server.stop().await;
}

/// Storage's `deletion.completed` for `cascade`, seen by `observer`.
async fn storage_completion(
    observer: &mut Box<dyn mindmesh_kit::bus::Subscription>,
    cascade: &str,
) -> DeletionCompleted {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no deletion.completed from storage for {cascade}"
        );
        let Some(d) = observer.next(Duration::from_millis(500)).await.unwrap() else {
            continue;
        };
        let envelope = mindmesh_kit::events::decode(&d.message).unwrap();
        d.ack().await.unwrap();
        if let Some(Payload::DeletionCompleted(done)) = envelope.payload
            && done.cascade_id == cascade
            && done.service == Service::Storage.to_proto() as i32
        {
            return done;
        }
    }
}

async fn native(storage: &mut Storage, token: &str, title: &str) -> String {
    storage
        .create_document(authed(
            pb::CreateDocumentRequest {
                title: title.into(),
                mime_type: String::new(),
                content: b"personal words".to_vec(),
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

async fn service_reads(storage: &mut Storage, service: &str, id: &str) -> bool {
    match storage
        .get_document(authed(
            pb::GetDocumentRequest {
                document_id: id.into(),
                at_least_revision: 0,
            },
            service,
        ))
        .await
    {
        Ok(_) => true,
        Err(s) if s.code() == tonic::Code::NotFound => false,
        Err(s) => panic!("{s:?}"),
    }
}

/// Deleting an account erases its native documents and key; a subject erasure does the
/// same for the account with that email; deleting the tenant erases everything — each
/// attested by storage with its counts.
async fn p06_account_subject_and_tenant_cascades_erase_documents(backend: Backend) {
    let server = TestServer::start(backend).await;
    let bus = server.bus().await;
    let mut observer = bus.subscribe("observer").await.unwrap();
    let channel = server.channel().await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let mut accounts = perm::account_service_client::AccountServiceClient::new(channel.clone());
    let mut members = Vec::new();
    for email in ["ada@acme.example", "bob@acme.example", "cy@acme.example"] {
        let user = server.create_user(&admin, "X", "Y", email).await;
        members.push((
            user.id.clone(),
            server.token(&user.id, Some(tenant), &[Role::Member]),
        ));
    }
    let service = server.token("ingest", Some(tenant), &[Role::Service]);
    let mut storage = Storage::new(channel.clone());
    let ada_docs = [
        native(&mut storage, &members[0].1, "Ada one").await,
        native(&mut storage, &members[0].1, "Ada two").await,
    ];
    let bob_doc = native(&mut storage, &members[1].1, "Bob's").await;
    let cy_doc = native(&mut storage, &members[2].1, "Cy's").await;
    let drive = server.integration(tenant, &admin).await;
    let mut imported = Vec::new();
    for i in 0..3 {
        let content = format!("imported {i}");
        let items = vec![
            pb::PutDocumentsRequest {
                item: Some(pb::put_documents_request::Item::Header(
                    pb::DocumentHeader {
                        integration_id: drive.to_string(),
                        external_id: format!("f{i}"),
                        source_version: "1".into(),
                        title: format!("Imported {i}"),
                        size_bytes: content.len() as u64,
                        ..Default::default()
                    },
                )),
            },
            pb::PutDocumentsRequest {
                item: Some(pb::put_documents_request::Item::Chunk(content.into_bytes())),
            },
        ];
        let results = storage
            .put_documents(authed(tokio_stream::iter(items), &service))
            .await
            .unwrap()
            .into_inner()
            .results;
        imported.push(results[0].document_id.clone());
    }
    // An archived one leaves a tombstone, which the tenant's deletion removes too.
    storage
        .archive_document(authed(
            pb::ArchiveDocumentRequest {
                document_id: imported[0].clone(),
            },
            &service,
        ))
        .await
        .unwrap();

    // Ada's account is deleted: her two documents and her key go.
    let cascade = accounts
        .delete_user(authed(
            perm::DeleteUserRequest {
                user_id: members[0].0.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .cascade_id;
    let done = storage_completion(&mut observer, &cascade).await;
    assert_eq!(done.counts.get("documents"), Some(&2));
    assert_eq!(done.destroyed_key_ids.len(), 1, "Ada's personal key");
    for id in &ada_docs {
        assert!(!service_reads(&mut storage, &service, id).await);
    }
    assert!(service_reads(&mut storage, &service, &bob_doc).await);

    // Bob asks for erasure (by email, any case; dsar names the account it found, which
    // permissions erases meanwhile): his native document goes.
    let (c_bob, c_nobody) = (
        mindmesh_kit::ids::CascadeId::new().to_string(),
        mindmesh_kit::ids::CascadeId::new().to_string(),
    );
    for (cascade, email, user_id) in [
        (c_bob.as_str(), "BOB@acme.example", members[1].0.clone()),
        (c_nobody.as_str(), "nobody@acme.example", String::new()),
    ] {
        let event = mindmesh_kit::events::envelope(
            Service::Dsar,
            Some(tenant),
            Payload::SubjectErasureRequested(SubjectErasureRequested {
                cascade_id: cascade.into(),
                request_id: format!("r-{cascade}"),
                sealed_email: server.event_seal().seal_email(tenant, email).unwrap(),
                user_id,
            }),
        );
        bus.publish(&mindmesh_kit::events::to_bus_message(&event).unwrap())
            .await
            .unwrap();
    }
    let done = storage_completion(&mut observer, &c_bob).await;
    assert_eq!(done.counts.get("documents"), Some(&1));
    assert!(!service_reads(&mut storage, &service, &bob_doc).await);
    assert!(service_reads(&mut storage, &service, &cy_doc).await);
    let done = storage_completion(&mut observer, &c_nobody).await;
    assert_eq!(
        done.counts.get("documents"),
        Some(&0),
        "no account, nothing held"
    );

    // The tenant is deleted: every document, term, tombstone and key of it goes.
    let operator = server.token("op", None, &[Role::Operator]);
    let cascade = accounts
        .delete_tenant(authed(
            perm::DeleteTenantRequest {
                tenant_id: tenant.to_string(),
            },
            &operator,
        ))
        .await
        .unwrap()
        .into_inner()
        .cascade_id;
    let done = storage_completion(&mut observer, &cascade).await;
    assert_eq!(
        done.counts.get("documents"),
        Some(&4),
        "Cy's and three imported"
    );
    assert!(
        done.destroyed_key_ids.len() >= 3,
        "{:?}",
        done.destroyed_key_ids
    );
    assert!(mindmesh_kit::events::verify_completion(
        &server.signing_public_key(),
        &done
    ));
    let db = server.service_db(Service::Storage).await;
    let keys = mindmesh_kit::db::connect(&server.config.keystore_url(Service::Storage), 2)
        .await
        .unwrap();
    for (conn, table) in [
        (&db, "documents"),
        (&db, "index_blocks"),
        (&db, "tombstones"),
        (&keys, "data_keys"),
        (&keys, "tenant_keys"),
    ] {
        let row = conn
            .query_one_raw(sea_orm::Statement::from_string(
                conn.get_database_backend(),
                format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = '{tenant}'"),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), 0, "{table}");
    }
    server.stop().await;
}

both_modes!(
    p06_disconnect_erases_the_integrations_documents,
    p06_account_subject_and_tenant_cascades_erase_documents,
);
