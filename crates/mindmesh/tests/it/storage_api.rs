//! StorageService over real gRPC, in embedded mode (SQLite + embedded bus) and
//! distributed mode (PostgreSQL + NATS JetStream): every read goes through the real
//! permissions service (P02), staff see only what their consented role allows (P11),
//! archived items stay out of the next sync (P07), native documents, hostile input.

use std::collections::HashSet;

use crate::common::{Backend, TestServer, authed};
use mindmesh_kit::auth::Role;
use mindmesh_kit::grpc::timestamp;
use mindmesh_kit::ids::{IntegrationId, TenantId};
use mindmesh_proto::mindmesh::audit::v1 as audit;
use mindmesh_proto::mindmesh::common::v1::Service as PbService;
use mindmesh_proto::mindmesh::permissions::v1 as perm;
use mindmesh_proto::mindmesh::storage::v1 as pb;
use pb::put_documents_request::Item;
use pb::storage_service_client::StorageServiceClient;
use tonic::Code;
use tonic::transport::Channel;

type Storage = StorageServiceClient<Channel>;

/// A tenant with three people, one Drive integration, and four imported documents:
/// `budget` for Ada, `offsite` for the `eng` group (Bob), `handbook` for anyone,
/// `plans` for nobody.
struct Scene {
    tenant: TenantId,
    service: String,
    /// Ada, also an admin.
    ada_admin: String,
    ada: String,
    bob: String,
    eve: String,
    drive: IntegrationId,
    budget: String,
    offsite: String,
    handbook: String,
    plans: String,
}

fn header(
    drive: IntegrationId,
    id: &str,
    version: &str,
    title: &str,
    size: usize,
    minute: i64,
) -> Item {
    Item::Header(pb::DocumentHeader {
        integration_id: drive.to_string(),
        external_id: id.into(),
        source_version: version.into(),
        title: title.into(),
        mime_type: "text/plain".into(),
        source_url: format!("https://drive.example/{id}"),
        modified_at: Some(timestamp(
            chrono::DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap(),
        )),
        owner: "d-ada".into(),
        size_bytes: size as u64,
    })
}

/// Streams documents: (external id, version, title, content, minute of modification).
async fn put(
    storage: &mut Storage,
    token: &str,
    drive: IntegrationId,
    docs: &[(&str, &str, &str, &str, i64)],
) -> Result<Vec<pb::PutResult>, tonic::Status> {
    let mut items = Vec::new();
    for (id, version, title, content, minute) in docs {
        items.push(header(drive, id, version, title, content.len(), *minute));
        // Content in two chunks, to exercise reassembly.
        let (a, b) = content.as_bytes().split_at(content.len() / 2);
        for part in [a, b] {
            if !part.is_empty() {
                items.push(Item::Chunk(part.to_vec()));
            }
        }
    }
    raw_put(storage, token, items).await
}

async fn raw_put(
    storage: &mut Storage,
    token: &str,
    items: Vec<Item>,
) -> Result<Vec<pb::PutResult>, tonic::Status> {
    let stream = tokio_stream::iter(
        items
            .into_iter()
            .map(|item| pb::PutDocumentsRequest { item: Some(item) }),
    );
    Ok(storage
        .put_documents(authed(stream, token))
        .await?
        .into_inner()
        .results)
}

fn grant(kind: perm::GranteeKind, grantee: &str, role: perm::Role) -> perm::Grant {
    perm::Grant {
        grantee_kind: kind as i32,
        grantee: grantee.into(),
        role: role as i32,
    }
}

fn acl(doc: &str, drive: IntegrationId, grants: Vec<perm::Grant>) -> perm::DocumentAcl {
    perm::DocumentAcl {
        document_id: doc.into(),
        integration_id: drive.to_string(),
        grants,
    }
}

async fn scene(server: &TestServer) -> Scene {
    let channel = server.channel().await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let mut ids = Vec::new();
    for (first, email) in [
        ("Ada", "ada@acme.example"),
        ("Bob", "bob@acme.example"),
        ("Eve", "eve@other.example"),
    ] {
        let user = server.create_user(&admin, first, "X", email).await;
        ids.push(user.id);
    }
    let service = server.token("ingest", Some(tenant), &[Role::Service]);
    let drive = server.integration(tenant, &admin).await;
    let mut permissions =
        perm::permissions_service_client::PermissionsServiceClient::new(channel.clone());
    permissions
        .sync_principals(authed(
            perm::SyncPrincipalsRequest {
                integration_id: drive.to_string(),
                users: ["ada", "bob", "eve"]
                    .iter()
                    .map(|n| perm::PrincipalUser {
                        external_id: format!("d-{n}"),
                        email: format!(
                            "{n}@{}",
                            if *n == "eve" {
                                "other.example"
                            } else {
                                "acme.example"
                            }
                        ),
                        display_name: (*n).into(),
                    })
                    .collect(),
                groups: vec![perm::PrincipalGroup {
                    external_id: "eng".into(),
                    email: String::new(),
                    name: "Engineering".into(),
                }],
                memberships: vec![perm::Membership {
                    group_external_id: "eng".into(),
                    member_external_id: "d-bob".into(),
                    member_is_group: false,
                }],
            },
            &service,
        ))
        .await
        .unwrap();
    let mut storage = StorageServiceClient::new(channel);
    let results = put(
        &mut storage,
        &service,
        drive,
        &[
            (
                "f-budget",
                "1",
                "Quarterly budget",
                "zqxcanary budget numbers for the quarter",
                1,
            ),
            (
                "f-offsite",
                "1",
                "Team offsite",
                "the offsite budget is pending",
                2,
            ),
            ("f-handbook", "1", "Handbook", "how we work", 3),
            ("f-plans", "1", "Plans", "secret budget plans", 4),
        ],
    )
    .await
    .unwrap();
    assert_eq!(results.len(), 4);
    assert!(
        results
            .iter()
            .all(|r| r.outcome == pb::PutOutcome::Created as i32)
    );
    let id = |i: usize| results[i].document_id.clone();
    permissions
        .set_document_acls(authed(
            perm::SetDocumentAclsRequest {
                acls: vec![
                    acl(
                        &id(0),
                        drive,
                        vec![grant(perm::GranteeKind::User, "d-ada", perm::Role::Reader)],
                    ),
                    acl(
                        &id(1),
                        drive,
                        vec![grant(perm::GranteeKind::Group, "eng", perm::Role::Writer)],
                    ),
                    acl(
                        &id(2),
                        drive,
                        vec![grant(perm::GranteeKind::Anyone, "", perm::Role::Reader)],
                    ),
                    acl(&id(3), drive, vec![]),
                ],
            },
            &service,
        ))
        .await
        .unwrap();
    let member = |user: &str| server.token(user, Some(tenant), &[Role::Member]);
    Scene {
        tenant,
        service,
        ada_admin: server.token(&ids[0], Some(tenant), &[Role::Admin, Role::Member]),
        ada: member(&ids[0]),
        bob: member(&ids[1]),
        eve: member(&ids[2]),
        drive,
        budget: id(0),
        offsite: id(1),
        handbook: id(2),
        plans: id(3),
    }
}

async fn get(
    storage: &mut Storage,
    token: &str,
    id: &str,
) -> Result<pb::GetDocumentResponse, Code> {
    get_at(storage, token, id, 0).await
}

async fn get_at(
    storage: &mut Storage,
    token: &str,
    id: &str,
    at_least_revision: u64,
) -> Result<pb::GetDocumentResponse, Code> {
    storage
        .get_document(authed(
            pb::GetDocumentRequest {
                document_id: id.into(),
                at_least_revision,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
        .map_err(|s| s.code())
}

async fn list(
    storage: &mut Storage,
    token: &str,
    request: pb::ListDocumentsRequest,
) -> Result<pb::ListDocumentsResponse, tonic::Status> {
    storage
        .list_documents(authed(request, token))
        .await
        .map(|r| r.into_inner())
}

fn ids(response: &pb::ListDocumentsResponse) -> Vec<String> {
    response.documents.iter().map(|d| d.id.clone()).collect()
}

async fn p02_every_read_goes_through_permissions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let s = scene(&server).await;
    let mut storage = StorageServiceClient::new(server.channel().await);

    // Ada reads her document, content reassembled from the chunks.
    let doc = get(&mut storage, &s.ada, &s.budget).await.unwrap();
    assert_eq!(doc.content, b"zqxcanary budget numbers for the quarter");
    let meta = doc.document.unwrap();
    assert_eq!(meta.title, "Quarterly budget");
    assert_eq!(meta.size_bytes, 40);
    assert_eq!(meta.integration_id, s.drive.to_string());
    // Whoever may not read a document gets NOT_FOUND, as for one that does not exist.
    assert_eq!(
        get(&mut storage, &s.bob, &s.budget).await.unwrap_err(),
        Code::NotFound
    );
    assert_eq!(
        get(&mut storage, &s.eve, &s.offsite).await.unwrap_err(),
        Code::NotFound
    );
    assert!(
        get(&mut storage, &s.bob, &s.offsite).await.is_ok(),
        "through the eng group"
    );
    assert!(
        get(&mut storage, &s.eve, &s.handbook).await.is_ok(),
        "anyone"
    );
    for reader in [&s.ada, &s.bob, &s.eve] {
        assert_eq!(
            get(&mut storage, reader, &s.plans).await.unwrap_err(),
            Code::NotFound
        );
    }
    // Services act for the whole tenant.
    assert!(get(&mut storage, &s.service, &s.plans).await.is_ok());

    // Listing: only readable documents, newest first, paged.
    let all = list(&mut storage, &s.ada, pb::ListDocumentsRequest::default())
        .await
        .unwrap();
    assert_eq!(ids(&all), vec![s.handbook.clone(), s.budget.clone()]);
    assert!(all.next_page_token.is_empty());
    let first = list(
        &mut storage,
        &s.ada,
        pb::ListDocumentsRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(ids(&first), vec![s.handbook.clone()]);
    assert!(!first.next_page_token.is_empty());
    let second = list(
        &mut storage,
        &s.ada,
        pb::ListDocumentsRequest {
            page_size: 1,
            page_token: first.next_page_token,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(ids(&second), vec![s.budget.clone()]);
    assert!(
        second.next_page_token.is_empty(),
        "nothing readable after the last page"
    );
    let eve = list(&mut storage, &s.eve, pb::ListDocumentsRequest::default())
        .await
        .unwrap();
    assert_eq!(ids(&eve), vec![s.handbook.clone()]);
    // Filters: modified since minute 3 (handbook, plans) — of which Ada reads the handbook.
    let since = list(
        &mut storage,
        &s.ada,
        pb::ListDocumentsRequest {
            modified_since: Some(timestamp(
                chrono::DateTime::from_timestamp(1_800_000_000 + 180, 0).unwrap(),
            )),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(ids(&since), vec![s.handbook.clone()]);
    let other = list(
        &mut storage,
        &s.ada,
        pb::ListDocumentsRequest {
            integration_id: IntegrationId::new().to_string(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(other.documents.is_empty());

    // Find: "budget" is in budget, offsite and plans; each sees only theirs.
    let query = |q: &str| pb::ListDocumentsRequest {
        query: q.into(),
        ..Default::default()
    };
    let ada = list(&mut storage, &s.ada, query("BUDGET")).await.unwrap();
    assert_eq!(ids(&ada), vec![s.budget.clone()]);
    let bob = list(&mut storage, &s.bob, query("budget pending"))
        .await
        .unwrap();
    assert_eq!(ids(&bob), vec![s.offsite.clone()]);
    let service = list(&mut storage, &s.service, query("budget pending"))
        .await
        .unwrap();
    assert_eq!(ids(&service)[0], s.offsite, "two matched words rank first");
    assert_eq!(service.documents.len(), 3);
    let paged = list(
        &mut storage,
        &s.service,
        pb::ListDocumentsRequest {
            page_size: 2,
            ..query("budget")
        },
    )
    .await
    .unwrap();
    assert_eq!(paged.documents.len(), 2);
    let rest = list(
        &mut storage,
        &s.service,
        pb::ListDocumentsRequest {
            page_size: 2,
            page_token: paged.next_page_token.clone(),
            ..query("budget")
        },
    )
    .await
    .unwrap();
    let mut seen: HashSet<String> = ids(&paged).into_iter().collect();
    seen.extend(ids(&rest));
    assert_eq!(seen.len(), 3, "pages of a find neither repeat nor skip");

    // A revocation is never served stale: reading at the returned revision sees it.
    let mut permissions =
        perm::permissions_service_client::PermissionsServiceClient::new(server.channel().await);
    let revision = permissions
        .set_document_acls(authed(
            perm::SetDocumentAclsRequest {
                acls: vec![acl(&s.budget, s.drive, vec![])],
            },
            &s.service,
        ))
        .await
        .unwrap()
        .into_inner()
        .revision;
    assert_eq!(
        get_at(&mut storage, &s.ada, &s.budget, revision)
            .await
            .unwrap_err(),
        Code::NotFound
    );
    let after = list(&mut storage, &s.ada, pb::ListDocumentsRequest::default())
        .await
        .unwrap();
    assert_eq!(ids(&after), vec![s.handbook.clone()]);

    // Another tenant's token finds nothing of this tenant.
    let stranger = server.token(
        &uuid::Uuid::now_v7().to_string(),
        Some(TenantId::new()),
        &[Role::Member],
    );
    assert_eq!(
        get(&mut storage, &stranger, &s.handbook).await.unwrap_err(),
        Code::NotFound
    );
    server.stop().await;
}

async fn grant_staff(server: &TestServer, s: &Scene, role: perm::StaffRole) -> String {
    let mut staff =
        perm::staff_access_service_client::StaffAccessServiceClient::new(server.channel().await);
    staff
        .grant_staff_access(authed(
            perm::GrantStaffAccessRequest {
                role: role as i32,
                reason: "ticket 4711".into(),
                expires_at: Some(timestamp(chrono::Utc::now() + chrono::Duration::hours(1))),
            },
            &s.ada_admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .grant
        .unwrap()
        .id
}

async fn p11_staff_see_only_what_their_consented_role_allows(backend: Backend) {
    let server = TestServer::start(backend).await;
    let s = scene(&server).await;
    let mut storage = StorageServiceClient::new(server.channel().await);
    let support = server.token("sup-1", Some(s.tenant), &[Role::StaffSupport]);
    let analyst = server.token("ana-1", Some(s.tenant), &[Role::StaffAnalyst]);
    let engineer = server.token("eng-1", Some(s.tenant), &[Role::StaffEngineer]);

    // Without consent, no staff role reads anything.
    for token in [&support, &analyst, &engineer] {
        assert_eq!(
            get(&mut storage, token, &s.budget).await.unwrap_err(),
            Code::PermissionDenied
        );
        let err = list(&mut storage, token, pb::ListDocumentsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert!(err.message().contains("consent"), "{}", err.message());
    }

    // Support: metadata, never title, link or content.
    grant_staff(&server, &s, perm::StaffRole::Support).await;
    let doc = get(&mut storage, &support, &s.budget).await.unwrap();
    assert!(doc.content.is_empty());
    let meta = doc.document.unwrap();
    assert_eq!(meta.id, s.budget);
    assert!(meta.title.is_empty() && meta.source_url.is_empty() && meta.external_id.is_empty());
    assert_eq!(meta.size_bytes, 40);
    let listed = list(&mut storage, &support, pb::ListDocumentsRequest::default())
        .await
        .unwrap();
    assert_eq!(
        listed.documents.len(),
        4,
        "support sees every document's metadata"
    );
    assert!(
        listed
            .documents
            .iter()
            .all(|d| d.title.is_empty() && d.source_url.is_empty())
    );
    // Find over content is content: support's query finds, but returns no text either.
    let found = list(
        &mut storage,
        &support,
        pb::ListDocumentsRequest {
            query: "budget".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(found.documents.iter().all(|d| d.title.is_empty()));

    // Analyst: pseudonyms only — stable, but not the real ids.
    grant_staff(&server, &s, perm::StaffRole::Analyst).await;
    let a = list(&mut storage, &analyst, pb::ListDocumentsRequest::default())
        .await
        .unwrap();
    let b = list(&mut storage, &analyst, pb::ListDocumentsRequest::default())
        .await
        .unwrap();
    assert_eq!(ids(&a), ids(&b), "pseudonyms are stable");
    let real: HashSet<&String> = [&s.budget, &s.offsite, &s.handbook, &s.plans]
        .into_iter()
        .collect();
    for d in &a.documents {
        assert!(!real.contains(&d.id), "an analyst never sees a real id");
        assert!(d.title.is_empty() && d.source_url.is_empty());
        assert!(
            !d.external_id.is_empty() && !d.external_id.starts_with("f-"),
            "the source id is pseudonymized: {}",
            d.external_id
        );
        assert_ne!(d.owner, "d-ada");
        assert_ne!(d.integration_id, s.drive.to_string());
        assert_eq!(d.mime_type, "text/plain");
    }
    let doc = get(&mut storage, &analyst, &s.budget).await.unwrap();
    assert!(doc.content.is_empty());
    assert_ne!(doc.document.unwrap().id, s.budget);

    // Engineer: everything, under consent.
    grant_staff(&server, &s, perm::StaffRole::Engineer).await;
    let doc = get(&mut storage, &engineer, &s.plans).await.unwrap();
    assert_eq!(doc.content, b"secret budget plans");

    // Every staff access is in storage's audit log.
    let mut audit = audit::audit_client::AuditClient::new(server.channel().await);
    let events = audit
        .list_audit_events(authed(
            audit::ListAuditEventsRequest {
                service: PbService::Storage as i32,
                page_size: 1000,
                page_token: String::new(),
            },
            &s.ada_admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let staff_reads: Vec<_> = events
        .iter()
        .filter(|e| e.action.starts_with("staff.document."))
        .collect();
    assert!(staff_reads.iter().any(|e| e.actor == "sup-1"
        && e.action == "staff.document.get"
        && e.subject_id == s.budget));
    assert!(
        staff_reads
            .iter()
            .any(|e| e.actor == "ana-1" && e.action == "staff.document.list")
    );
    assert!(
        staff_reads
            .iter()
            .any(|e| e.actor == "eng-1" && e.details.contains("Full"))
    );
    server.stop().await;
}

async fn p07_archived_documents_stay_out_of_the_next_sync(backend: Backend) {
    let server = TestServer::start(backend).await;
    let s = scene(&server).await;
    let mut storage = StorageServiceClient::new(server.channel().await);
    let archive = |token: &str, id: &str| {
        authed(
            pb::ArchiveDocumentRequest {
                document_id: id.into(),
            },
            token,
        )
    };
    // A reader may not archive; someone who cannot read gets NOT_FOUND.
    let err = storage
        .archive_document(archive(&s.ada, &s.budget))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = storage
        .archive_document(archive(&s.eve, &s.budget))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // A writer (Bob, through eng) may; so may an admin.
    let meta = storage
        .archive_document(archive(&s.bob, &s.offsite))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert_eq!(meta.state, pb::DocumentState::Archived as i32);
    storage
        .archive_document(archive(&s.ada_admin, &s.budget))
        .await
        .unwrap();

    // The next sync brings a new version: skipped, and the stored one is untouched.
    let results = put(
        &mut storage,
        &s.service,
        s.drive,
        &[
            ("f-budget", "2", "Quarterly budget v2", "new numbers", 5),
            ("f-handbook", "1", "Handbook", "how we work", 3),
            ("f-new", "1", "New", "fresh", 6),
        ],
    )
    .await
    .unwrap();
    let outcomes: Vec<i32> = results.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            pb::PutOutcome::SkippedArchived as i32,
            pb::PutOutcome::Unchanged as i32,
            pb::PutOutcome::Created as i32
        ]
    );
    assert_eq!(results[1].document_id, s.handbook);
    // Archived documents are out of listings unless asked for.
    let listed = list(
        &mut storage,
        &s.service,
        pb::ListDocumentsRequest::default(),
    )
    .await
    .unwrap();
    assert!(!ids(&listed).contains(&s.budget) && !ids(&listed).contains(&s.offsite));
    let with = list(
        &mut storage,
        &s.service,
        pb::ListDocumentsRequest {
            include_archived: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(ids(&with).contains(&s.budget));
    // Still readable by who may read it, marked archived, at its old version.
    let doc = get(&mut storage, &s.ada, &s.budget).await.unwrap();
    assert_eq!(doc.content, b"zqxcanary budget numbers for the quarter");
    assert_eq!(
        doc.document.unwrap().state,
        pb::DocumentState::Archived as i32
    );

    // Restore: back in listings, and the next sync updates it again.
    let restored = storage
        .restore_document(authed(
            pb::RestoreDocumentRequest {
                document_id: s.budget.clone(),
            },
            &s.ada_admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert_eq!(restored.state, pb::DocumentState::Active as i32);
    let results = put(
        &mut storage,
        &s.service,
        s.drive,
        &[("f-budget", "2", "Quarterly budget v2", "new numbers", 5)],
    )
    .await
    .unwrap();
    assert_eq!(results[0].outcome, pb::PutOutcome::Updated as i32);
    assert_eq!(results[0].document_id, s.budget);
    assert_eq!(
        get(&mut storage, &s.ada, &s.budget).await.unwrap().content,
        b"new numbers"
    );
    server.stop().await;
}

async fn native_documents_belong_to_their_author(backend: Backend) {
    let server = TestServer::start(backend).await;
    let s = scene(&server).await;
    let mut storage = StorageServiceClient::new(server.channel().await);
    let created = storage
        .create_document(authed(
            pb::CreateDocumentRequest {
                title: "Ada's notes".into(),
                mime_type: "text/markdown".into(),
                content: b"lighthouse ideas".to_vec(),
            },
            &s.ada,
        ))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert!(created.integration_id.is_empty() && created.external_id.is_empty());
    let ada_id = created.id.clone();
    assert_eq!(
        get(&mut storage, &s.ada, &ada_id).await.unwrap().content,
        b"lighthouse ideas"
    );
    assert_eq!(
        get(&mut storage, &s.bob, &ada_id).await.unwrap_err(),
        Code::NotFound
    );
    let found = list(
        &mut storage,
        &s.ada,
        pb::ListDocumentsRequest {
            query: "lighthouse".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(ids(&found), vec![ada_id.clone()]);
    let found = list(
        &mut storage,
        &s.bob,
        pb::ListDocumentsRequest {
            query: "lighthouse".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(found.documents.is_empty());

    // Only the owner (or a writer) changes it; others do not even learn it exists.
    let update = |token: &str, title: &str| {
        authed(
            pb::UpdateDocumentRequest {
                document_id: ada_id.clone(),
                title: Some(title.into()),
                content: None,
            },
            token,
        )
    };
    assert_eq!(
        storage
            .update_document(update(&s.bob, "mine"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let updated = storage
        .update_document(update(&s.ada, "Harbour notes"))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert_eq!(updated.title, "Harbour notes");
    let doc = get(&mut storage, &s.ada, &ada_id).await.unwrap();
    assert_eq!(
        doc.content, b"lighthouse ideas",
        "content unchanged when not sent"
    );
    let found = list(
        &mut storage,
        &s.ada,
        pb::ListDocumentsRequest {
            query: "harbour".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        ids(&found),
        vec![ada_id.clone()],
        "the find index follows the new title"
    );
    // Imported documents change at their source.
    let err = storage
        .update_document(authed(
            pb::UpdateDocumentRequest {
                document_id: s.offsite.clone(),
                title: Some("x".into()),
                content: None,
            },
            &s.bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Delete: not by others, not an imported one by a member; by the owner, yes.
    let delete = |token: &str, id: &str| {
        authed(
            pb::DeleteDocumentRequest {
                document_id: id.into(),
            },
            token,
        )
    };
    assert_eq!(
        storage
            .delete_document(delete(&s.bob, &ada_id))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        storage
            .delete_document(delete(&s.bob, &s.offsite))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    storage
        .delete_document(delete(&s.ada, &ada_id))
        .await
        .unwrap();
    assert_eq!(
        get(&mut storage, &s.ada, &ada_id).await.unwrap_err(),
        Code::NotFound
    );
    assert_eq!(
        get(&mut storage, &s.service, &ada_id).await.unwrap_err(),
        Code::NotFound
    );
    // An admin deletes an imported document.
    storage
        .delete_document(delete(&s.ada_admin, &s.handbook))
        .await
        .unwrap();
    assert_eq!(
        get(&mut storage, &s.eve, &s.handbook).await.unwrap_err(),
        Code::NotFound
    );
    server.stop().await;
}

/// A request with a `bytes` field where `CreateDocumentRequest` has its `string` title,
/// to send a title that is not UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct RawCreateDocument {
    #[prost(bytes = "vec", tag = "1")]
    title: Vec<u8>,
}

async fn hostile_input_gets_clear_errors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let s = scene(&server).await;
    let mut storage = StorageServiceClient::new(server.channel().await);
    let expect = |r: Result<Vec<pb::PutResult>, tonic::Status>, code: Code, needle: &str| {
        let err = r.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(
            err.message().contains(needle),
            "{needle}: {}",
            err.message()
        );
    };
    // Over the content limit: refused from the header, before any content is sent.
    let huge = header(s.drive, "big", "1", "Big", 26 * 1024 * 1024, 1);
    expect(
        raw_put(&mut storage, &s.service, vec![huge]).await,
        Code::ResourceExhausted,
        "storage.max_content_bytes",
    );
    // More content than declared, less than declared, content before a header.
    let lying = vec![
        header(s.drive, "x", "1", "X", 3, 1),
        Item::Chunk(b"four".to_vec()),
    ];
    expect(
        raw_put(&mut storage, &s.service, lying).await,
        Code::InvalidArgument,
        "size_bytes",
    );
    let short = vec![
        header(s.drive, "x", "1", "X", 10, 1),
        Item::Chunk(b"four".to_vec()),
    ];
    expect(
        raw_put(&mut storage, &s.service, short).await,
        Code::InvalidArgument,
        "size_bytes",
    );
    expect(
        raw_put(&mut storage, &s.service, vec![Item::Chunk(b"x".to_vec())]).await,
        Code::InvalidArgument,
        "header",
    );
    let oversized_chunk = vec![
        header(s.drive, "x", "1", "X", 2 * 1024 * 1024, 1),
        Item::Chunk(vec![b'a'; 1024 * 1024 + 1]),
    ];
    expect(
        raw_put(&mut storage, &s.service, oversized_chunk).await,
        Code::InvalidArgument,
        "chunk",
    );
    // Empty ids, a reserved integration, a title too long.
    expect(
        raw_put(
            &mut storage,
            &s.service,
            vec![header(s.drive, "", "1", "X", 0, 1)],
        )
        .await,
        Code::InvalidArgument,
        "header.external_id",
    );
    expect(
        raw_put(
            &mut storage,
            &s.service,
            vec![header(s.drive, "x", "", "X", 0, 1)],
        )
        .await,
        Code::InvalidArgument,
        "header.source_version",
    );
    expect(
        raw_put(
            &mut storage,
            &s.service,
            vec![header(IntegrationId::NATIVE, "x", "1", "X", 0, 1)],
        )
        .await,
        Code::InvalidArgument,
        "header.integration_id",
    );
    let long = "t".repeat(1001);
    expect(
        raw_put(
            &mut storage,
            &s.service,
            vec![header(s.drive, "x", "1", &long, 0, 1)],
        )
        .await,
        Code::InvalidArgument,
        "header.title",
    );
    // Members do not import.
    expect(
        raw_put(
            &mut storage,
            &s.ada,
            vec![header(s.drive, "x", "1", "X", 0, 1)],
        )
        .await,
        Code::PermissionDenied,
        "service",
    );

    // A title that is not UTF-8: INVALID_ARGUMENT naming the field, not INTERNAL.
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    let err = grpc
        .unary::<_, RawCreateDocument, _>(
            authed(
                RawCreateDocument {
                    title: vec![0x66, 0xff, 0xfe],
                },
                &s.ada,
            ),
            http::uri::PathAndQuery::from_static(
                "/mindmesh.storage.v1.StorageService/CreateDocument",
            ),
            tonic_prost::ProstCodec::<RawCreateDocument, RawCreateDocument>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("title"), "{}", err.message());

    // Native documents: a title is required; content over the limit is refused.
    let err = storage
        .create_document(authed(
            pb::CreateDocumentRequest {
                title: " ".into(),
                ..Default::default()
            },
            &s.ada,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("title"));
    let err = storage
        .create_document(authed(
            pb::CreateDocumentRequest {
                title: "big".into(),
                content: vec![0; 5 * 1024 * 1024],
                ..Default::default()
            },
            &s.ada,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // Listing: page sizes, tokens, queries without words, malformed ids.
    let err = list(
        &mut storage,
        &s.ada,
        pb::ListDocumentsRequest {
            page_size: 5000,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("page_size") && err.message().contains("1000"));
    let err = list(
        &mut storage,
        &s.ada,
        pb::ListDocumentsRequest {
            page_token: "t12.nope".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.code() == Code::InvalidArgument && err.message().contains("page_token"));
    let err = list(
        &mut storage,
        &s.ada,
        pb::ListDocumentsRequest {
            page_token: "o5".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        err.code() == Code::InvalidArgument && err.message().contains("page_token"),
        "a find token on a listing"
    );
    let err = list(
        &mut storage,
        &s.ada,
        pb::ListDocumentsRequest {
            query: "! ?".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.code() == Code::InvalidArgument && err.message().contains("query"));
    let err = list(
        &mut storage,
        &s.ada,
        pb::ListDocumentsRequest {
            integration_id: "drive".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.code() == Code::InvalidArgument && err.message().contains("integration_id"));
    assert_eq!(
        get(&mut storage, &s.ada, "not-a-uuid").await.unwrap_err(),
        Code::InvalidArgument
    );
    assert_eq!(
        get(&mut storage, &s.ada, "").await.unwrap_err(),
        Code::InvalidArgument
    );

    // Nothing stored before was lost.
    assert_eq!(
        get(&mut storage, &s.ada, &s.budget).await.unwrap().content,
        b"zqxcanary budget numbers for the quarter"
    );
    let all = list(
        &mut storage,
        &s.service,
        pb::ListDocumentsRequest::default(),
    )
    .await
    .unwrap();
    assert_eq!(all.documents.len(), 4);
    server.stop().await;
}

/// `mindmesh keys rotate` (the library call behind it) while clients read and write:
/// nothing fails, nothing is re-encrypted, and a second pass finds nothing old left.
async fn keys_rotate_while_serving(backend: Backend) {
    let server = TestServer::start(backend).await;
    let s = scene(&server).await;
    let channel = server.channel().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, ada, service, budget, drive) = (
            stop.clone(),
            s.ada.clone(),
            s.service.clone(),
            s.budget.clone(),
            s.drive,
        );
        let mut storage = StorageServiceClient::new(channel);
        tokio::spawn(async move {
            let mut ops = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || ops == 0 {
                let doc = get(&mut storage, &ada, &budget).await.unwrap();
                assert_eq!(doc.content, b"zqxcanary budget numbers for the quarter");
                let id = format!("load-{ops}");
                let put = put(
                    &mut storage,
                    &service,
                    drive,
                    &[(&id, "1", "Load", "load words", 9)],
                )
                .await
                .unwrap();
                assert_eq!(put[0].outcome, pb::PutOutcome::Created as i32);
                let found = list(
                    &mut storage,
                    &service,
                    pb::ListDocumentsRequest {
                        query: "quarter".into(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
                assert_eq!(ids(&found), vec![budget.clone()]);
                ops += 1;
            }
            ops
        })
    };
    for _ in 0..2 {
        let reports = mindmesh::rotate_keys(&server.config, &[], None)
            .await
            .unwrap();
        let storage = reports
            .iter()
            .find(|(svc, _)| *svc == mindmesh_kit::Service::Storage)
            .unwrap();
        assert_eq!(storage.1.tenants, 1, "{reports:?}");
        assert!(storage.1.data_keys_rewrapped >= 2, "{reports:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(load.await.unwrap() > 0);
    let reports = mindmesh::rotate_keys(&server.config, &[], None)
        .await
        .unwrap();
    for (service, report) in &reports {
        assert_eq!(report.versions_in_use, 0, "{service}: {report:?}");
    }
    // Permissions' blind indexes survived its own rotation: Bob still reads through eng.
    let mut storage = StorageServiceClient::new(server.channel().await);
    assert!(get(&mut storage, &s.bob, &s.offsite).await.is_ok());
    assert_eq!(
        get(&mut storage, &s.bob, &s.budget).await.unwrap_err(),
        Code::NotFound
    );
    server.stop().await;
}

both_modes!(
    keys_rotate_while_serving,
    p02_every_read_goes_through_permissions,
    p11_staff_see_only_what_their_consented_role_allows,
    p07_archived_documents_stay_out_of_the_next_sync,
    native_documents_belong_to_their_author,
    hostile_input_gets_clear_errors,
);
