//! Tenant isolation at the data layer, in both modes: two tenants import the same folder
//! layout — the same source file ids, the same people's emails, the same group names —
//! with different contents. No read, list, find, explanation, export, cascade or audit
//! entry of one reaches the other.

use std::collections::BTreeSet;
use std::path::Path;

use mindmesh_kit::Service;
use mindmesh_proto::mindmesh::dsar::v1 as dsar;
use mindmesh_proto::mindmesh::permissions::v1 as perm;
use mindmesh_proto::mindmesh::storage::v1 as storage;
use tonic::Code;

use crate::common::ingest::{self, folder_server, readable, sync_ok, write};
use crate::common::{Backend, TestServer, audit_events, authed};
use crate::dsar::{Dsar, completed, download, file_verified, unzip};

/// One tenant's copy of the shared layout, its contents marked with `marker`.
fn company(dir: &Path, marker: &str) {
    write(dir, "handbook/welcome.md", &format!("{marker} welcome"));
    write(dir, "handbook/oncall.md", &format!("{marker} rota"));
    write(dir, "notes.md", &format!("{marker} notes of alice"));
    write(
        dir,
        "mindmesh-acl.json",
        &serde_json::json!({
            "users": [
                {"id": "alice", "email": "alice@shared.example", "name": "Alice"},
                {"id": "bob", "email": "bob@shared.example", "name": "Bob"}
            ],
            "groups": [{"id": "eng", "name": "Engineering", "members": ["alice", "bob"]}],
            "grants": [
                {"path": "handbook/", "to": "group:eng", "role": "reader"},
                {"path": "notes.md", "to": "user:alice", "role": "owner"}
            ]
        })
        .to_string(),
    );
}

struct Side {
    tenant: mindmesh_kit::ids::TenantId,
    admin: String,
    alice_id: String,
    alice: String,
    bob: String,
    integration: String,
    docs: Vec<storage::DocumentMeta>,
}

async fn side(server: &TestServer, root: &Path, name: &str, marker: &str) -> Side {
    let (tenant, admin) = server.create_tenant(name).await;
    company(&root.join(tenant.to_string()).join("shared"), marker);
    let (alice_id, alice) = ingest::member(server, tenant, &admin, "alice@shared.example").await;
    let (_, bob) = ingest::member(server, tenant, &admin, "bob@shared.example").await;
    let mut client = ingest::client(server).await;
    let integration = ingest::connect_folder(&mut client, &admin, "Shared", "shared")
        .await
        .unwrap()
        .id;
    sync_ok(&mut client, &admin, &integration, false).await;
    let docs = readable(server, &alice).await;
    Side {
        tenant,
        admin,
        alice_id,
        alice,
        bob,
        integration,
        docs,
    }
}

async fn content(server: &TestServer, token: &str, id: &str) -> Result<String, Code> {
    storage::storage_service_client::StorageServiceClient::new(server.channel().await)
        .get_document(authed(
            storage::GetDocumentRequest {
                document_id: id.into(),
                at_least_revision: 0,
            },
            token,
        ))
        .await
        .map(|r| String::from_utf8(r.into_inner().content).unwrap())
        .map_err(|s| s.code())
}

async fn tenants_with_colliding_ids_emails_and_group_names_never_cross(backend: Backend) {
    let (server, root) = folder_server(backend).await;
    let acme = side(&server, root.path(), "Acme", "zqacme").await;
    let twin = side(&server, root.path(), "Twin", "zqtwin").await;

    // The same source ids on both sides, different documents.
    let externals = |s: &Side| {
        s.docs
            .iter()
            .map(|d| d.external_id.clone())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(externals(&acme), externals(&twin));
    assert_eq!(acme.docs.len(), 3);
    let ids = |s: &Side| s.docs.iter().map(|d| d.id.clone()).collect::<BTreeSet<_>>();
    assert!(ids(&acme).is_disjoint(&ids(&twin)));

    // Reads: each Alice gets her own tenant's text; the other's ids are not found.
    for (me, other, marker) in [(&acme, &twin, "zqacme"), (&twin, &acme, "zqtwin")] {
        for doc in &me.docs {
            assert_eq!(doc.tenant_id, me.tenant.to_string());
            let text = content(&server, &me.alice, &doc.id).await.unwrap();
            assert!(text.starts_with(marker), "{text}");
        }
        // An admin's answer for the other's document is the answer for no document.
        let nothing = content(&server, &me.admin, &uuid::Uuid::now_v7().to_string()).await;
        assert!(nothing.is_err());
        for doc in &other.docs {
            assert_eq!(
                content(&server, &me.alice, &doc.id).await,
                Err(Code::NotFound)
            );
            assert_eq!(content(&server, &me.admin, &doc.id).await, nothing);
        }
    }

    // Find: a word both tenants' documents hold finds only one's own.
    let found = storage::storage_service_client::StorageServiceClient::new(server.channel().await)
        .list_documents(authed(
            storage::ListDocumentsRequest {
                query: "rota".into(),
                page_size: 50,
                ..Default::default()
            },
            &acme.bob,
        ))
        .await
        .unwrap()
        .into_inner()
        .documents;
    assert_eq!(found.len(), 1);
    assert!(ids(&acme).contains(&found[0].id));

    // Explanations: the other tenant's document is unknown, even to an admin.
    let explained =
        perm::permissions_service_client::PermissionsServiceClient::new(server.channel().await)
            .explain_access(authed(
                perm::ExplainAccessRequest {
                    document_id: twin.docs[0].id.clone(),
                    user_id: acme.alice_id.clone(),
                    ..Default::default()
                },
                &acme.admin,
            ))
            .await;
    match explained {
        Err(status) => assert!(
            matches!(status.code(), Code::NotFound | Code::InvalidArgument),
            "{status:?}"
        ),
        Ok(answer) => assert!(
            !answer.into_inner().allowed,
            "a foreign document explained as readable"
        ),
    }

    // Export: Acme's Alice's archive holds Acme's notes and nothing of Twin.
    let mut requests = Dsar::new(server.channel().await);
    let id = file_verified(
        &server,
        &mut requests,
        &acme.admin,
        dsar::SubmitRequestRequest {
            kind: dsar::RequestKind::Access as i32,
            subject_email: "alice@shared.example".into(),
            requester_email: "alice@shared.example".into(),
            ..Default::default()
        },
    )
    .await;
    completed(&mut requests, &acme.admin, &id).await;
    let archive = unzip(&download(&mut requests, &acme.admin, &id).await.unwrap());
    let everything: String = archive
        .values()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(
        !everything.contains("zqtwin"),
        "Twin's data in Acme's export"
    );
    assert!(!everything.contains(&twin.tenant.to_string()));

    // A cascade in one tenant leaves the other whole.
    let mut client = ingest::client(&server).await;
    ingest::disconnect(&mut client, &acme.admin, &acme.integration).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !readable(&server, &acme.alice).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Acme's documents stayed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let left = readable(&server, &twin.alice).await;
    assert_eq!(ids(&twin), left.iter().map(|d| d.id.clone()).collect());
    for doc in &left {
        assert!(
            content(&server, &twin.alice, &doc.id)
                .await
                .unwrap()
                .starts_with("zqtwin")
        );
    }

    // Audit: what each tenant's admin reads is its own tenant's, in every service.
    for service in Service::ALL {
        for (me, other) in [(&acme, &twin), (&twin, &acme)] {
            for event in audit_events(&server, service, &me.admin).await {
                assert_ne!(
                    event.tenant_id,
                    other.tenant.to_string(),
                    "{service}: {event:?}"
                );
            }
        }
    }
    server.stop().await;
}

both_modes!(tenants_with_colliding_ids_emails_and_group_names_never_cross);
