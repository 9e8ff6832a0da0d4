//! Regression tests for what probing Mindmesh from outside found (every RPC called with
//! many kinds of callers and inputs): each test reproduces one finding and holds it
//! fixed, in embedded mode (SQLite + embedded bus) and distributed mode (PostgreSQL +
//! NATS JetStream).

use crate::common;
use crate::common::ingest::{self, connect_folder, folder_server as server, sync_ok, write};
use crate::common::{Backend, TestServer, authed};
use mindmesh_kit::auth::{Claims, Role, now_secs};
use mindmesh_kit::ids::TenantId;
use mindmesh_proto::mindmesh::ingest::v1 as ingest_pb;
use mindmesh_proto::mindmesh::permissions::v1 as perm;
use mindmesh_proto::mindmesh::retention::v1 as retention;
use mindmesh_proto::mindmesh::storage::v1 as storage;
use storage::put_documents_request::Item;
use tonic::Code;

/// The folder `name` of `tenant` below `root`.
fn folder(root: &tempfile::TempDir, tenant: TenantId, name: &str) -> std::path::PathBuf {
    root.path().join(tenant.to_string()).join(name)
}

fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    needle: &str,
    what: &str,
) {
    let err = result.unwrap_err();
    assert_eq!(err.code(), code, "{what}: {err:?}");
    assert!(
        err.message().contains(needle),
        "{what}: {needle} not in {:?}",
        err.message()
    );
}

/// Finding 8: a peer's caller-facing error keeps its code and its field name — storage
/// passes on what permissions says of `at_least_revision`, and a sync's failure names
/// what permissions refused, or the limit it ran into, instead of "internal error".
async fn a_peers_refusal_keeps_its_code_and_field(backend: Backend) {
    let (server, root) = server(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let (_, ada) = ingest::member(&server, tenant, &admin, "ada@acme.example").await;
    let mut docs =
        storage::storage_service_client::StorageServiceClient::new(server.channel().await);
    let note = docs
        .create_document(authed(
            storage::CreateDocumentRequest {
                title: "Note".into(),
                mime_type: "text/plain".into(),
                content: b"hello".to_vec(),
            },
            &ada,
        ))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    let ahead = docs
        .get_document(authed(
            storage::GetDocumentRequest {
                document_id: note.id.clone(),
                at_least_revision: 1_000_000_000,
            },
            &ada,
        ))
        .await;
    assert_refused(
        ahead,
        Code::InvalidArgument,
        "at_least_revision",
        "GetDocument",
    );

    let mut client = ingest::client(&server).await;
    // A manifest permissions refuses: a user id longer than an external id may be.
    let bad = folder(&root, tenant, "bad");
    write(&bad, "a.md", "a");
    write(
        &bad,
        "mindmesh-acl.json",
        &serde_json::json!({"users": [{"id": "u".repeat(600), "email": "x@acme.example"}]})
            .to_string(),
    );
    let integration = connect_folder(&mut client, &admin, "Bad", "bad")
        .await
        .unwrap();
    let all = ingest::sync(&mut client, &admin, &integration.id, false).await;
    let last = all.last().unwrap();
    assert_eq!(last.phase, ingest_pb::SyncPhase::Failed as i32);
    for error in [
        last.error.clone(),
        ingest::integration(&mut client, &admin, &integration.id)
            .await
            .last_error,
    ] {
        assert!(error.contains("external_id"), "{error}");
        assert!(!error.contains("internal error"), "{error}");
    }

    // A manifest too large to hand over in one message: the limit is named.
    let huge = folder(&root, tenant, "huge");
    write(&huge, "a.md", "a");
    let users: Vec<serde_json::Value> = (0..150_000)
        .map(|i| serde_json::json!({"id": format!("user-{i}"), "email": format!("user-{i}@acme.example"), "name": format!("User number {i}")}))
        .collect();
    write(
        &huge,
        "mindmesh-acl.json",
        &serde_json::json!({ "users": users }).to_string(),
    );
    let integration = connect_folder(&mut client, &admin, "Huge", "huge")
        .await
        .unwrap();
    let all = ingest::sync(&mut client, &admin, &integration.id, false).await;
    let last = all.last().unwrap();
    assert_eq!(last.phase, ingest_pb::SyncPhase::Failed as i32);
    assert!(
        last.error.contains("limits.max_message_bytes") && last.error.contains("150000"),
        "{}",
        last.error
    );
    server.stop().await;
}

fn header(integration: &str, external_id: &str, title: &str, mime: &str, url: &str) -> Item {
    Item::Header(storage::DocumentHeader {
        integration_id: integration.into(),
        external_id: external_id.into(),
        source_version: "1".into(),
        title: title.into(),
        mime_type: mime.into(),
        source_url: url.into(),
        size_bytes: 1,
        ..Default::default()
    })
}

/// Finding 9: what would deceive a reader or reach where it must not — control,
/// bidirectional-override, zero-width and tag characters in names and titles, URLs with
/// credentials, line breaks, local hosts or scripts, ids in other spellings, times in
/// year 0, tokens dated ahead or living for a century — is refused, naming the field.
async fn deceptive_names_urls_ids_times_and_tokens_are_refused(backend: Backend) {
    let (server, root) = server(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let (ada_id, ada) = ingest::member(&server, tenant, &admin, "ada@acme.example").await;
    let channel = server.channel().await;
    let mut accounts = perm::account_service_client::AccountServiceClient::new(channel.clone());
    let operator = server.token("op", None, &[Role::Operator]);
    let deceptive = [
        "a\u{0}b",
        "a\nb",
        "a\u{1b}[31mb",
        "evil\u{202e}gpj.exe",
        "a\u{2066}b",
        "a\u{200b}b",
        "a\u{feff}b",
        "a\u{e0041}b",
    ];
    for name in deceptive {
        let tenant_name = accounts
            .create_tenant(authed(
                perm::CreateTenantRequest { name: name.into() },
                &operator,
            ))
            .await;
        assert_refused(tenant_name, Code::InvalidArgument, "name", name);
        let user = accounts
            .create_user(authed(
                perm::CreateUserRequest {
                    first_name: name.into(),
                    last_name: "X".into(),
                    email: "someone@acme.example".into(),
                    picture_url: String::new(),
                },
                &admin,
            ))
            .await;
        assert_refused(user, Code::InvalidArgument, "first_name", name);
    }
    // Joiners that scripts and emoji need are not deceptive.
    accounts
        .update_user(authed(
            perm::UpdateUserRequest {
                user_id: ada_id.clone(),
                last_name: Some("\u{645}\u{200c}\u{6cc} 👩\u{200d}💻".into()),
                ..Default::default()
            },
            &ada,
        ))
        .await
        .unwrap();
    for url in [
        "https://user:secret@cdn.example.com/a.png",
        "https://cdn.example.com/a\r\n.png",
        "https://cdn.example.com/a\t.png",
        "https://127.0.0.1/a.png",
        "https://[::1]/a.png",
        "https://169.254.169.254/latest/meta-data",
        "https://10.1.2.3/a.png",
        "https://192.168.0.1/a.png",
        "https://localhost/a.png",
        "https://intranet.localhost/a.png",
        "https://0.0.0.0/a.png",
    ] {
        let changed = accounts
            .update_user(authed(
                perm::UpdateUserRequest {
                    user_id: ada_id.clone(),
                    picture_url: Some(url.into()),
                    ..Default::default()
                },
                &ada,
            ))
            .await;
        assert_refused(changed, Code::InvalidArgument, "picture_url", url);
    }

    // Integration names.
    let mut client = ingest::client(&server).await;
    write(&folder(&root, tenant, "docs"), "a.md", "a");
    for name in deceptive {
        let connected = connect_folder(&mut client, &admin, name, "docs").await;
        assert_refused(connected, Code::InvalidArgument, "display_name", name);
    }

    // Native documents: titles and MIME types.
    let mut docs = storage::storage_service_client::StorageServiceClient::new(channel.clone());
    for title in deceptive {
        let created = docs
            .create_document(authed(
                storage::CreateDocumentRequest {
                    title: title.into(),
                    mime_type: "text/plain".into(),
                    content: b"x".to_vec(),
                },
                &ada,
            ))
            .await;
        assert_refused(created, Code::InvalidArgument, "title", title);
    }
    for mime in [
        "text/plain\n",
        "text plain",
        "<script>",
        "text/pl\u{0}ain",
        "text/",
    ] {
        let created = docs
            .create_document(authed(
                storage::CreateDocumentRequest {
                    title: "T".into(),
                    mime_type: mime.into(),
                    content: b"x".to_vec(),
                },
                &ada,
            ))
            .await;
        assert_refused(created, Code::InvalidArgument, "mime_type", mime);
    }

    // Imported documents: the same rules, and links only to the web.
    let integration = connect_folder(&mut client, &admin, "Docs", "docs")
        .await
        .unwrap();
    sync_ok(&mut client, &admin, &integration.id, false).await;
    let service = server.token("ingest", Some(tenant), &[Role::Service]);
    let put = |items: Vec<Item>| {
        let mut docs = docs.clone();
        let service = service.clone();
        async move {
            let stream = tokio_stream::iter(
                items
                    .into_iter()
                    .map(|item| storage::PutDocumentsRequest { item: Some(item) }),
            );
            docs.put_documents(authed(stream, &service)).await
        }
    };
    let chunk = || Item::Chunk(b"x".to_vec());
    for (title, mime, url, field) in [
        ("a\u{1b}b", "text/plain", "", "header.title"),
        ("a\u{202e}b", "text/plain", "", "header.title"),
        ("ok", "text/\nplain", "", "header.mime_type"),
        (
            "ok",
            "text/plain",
            "javascript:alert(1)",
            "header.source_url",
        ),
        ("ok", "text/plain", "data:text/html,hi", "header.source_url"),
        (
            "ok",
            "text/plain",
            "file:///etc/passwd",
            "header.source_url",
        ),
        (
            "ok",
            "text/plain",
            "https://a.example/\r\nx",
            "header.source_url",
        ),
        (
            "ok",
            "text/plain",
            "https://u:p@a.example/x",
            "header.source_url",
        ),
    ] {
        let result = put(vec![
            header(&integration.id, "x.md", title, mime, url),
            chunk(),
        ])
        .await;
        assert_refused(
            result,
            Code::InvalidArgument,
            field,
            &format!("{title:?} {mime:?} {url:?}"),
        );
    }
    put(vec![
        header(
            &integration.id,
            "ok.md",
            "Fine",
            "text/markdown; charset=utf-8",
            "https://drive.example/ok",
        ),
        chunk(),
    ])
    .await
    .unwrap();
    // A refusal in the middle of a stream keeps the batches written before it, and the
    // call returns once they are committed: the same documents again are unchanged.
    let batch = mindmesh_storage::api::PUT_BATCH_DOCUMENTS;
    let valid = |i: usize| {
        [
            header(&integration.id, &format!("b{i}.md"), "B", "text/plain", ""),
            chunk(),
        ]
    };
    let mut items: Vec<Item> = (0..batch).flat_map(valid).collect();
    items.extend([
        header(&integration.id, "bad.md", "a\u{1b}b", "text/plain", ""),
        chunk(),
    ]);
    assert_refused(
        put(items).await,
        Code::InvalidArgument,
        "header.title",
        "mid-stream",
    );
    let again = put((0..batch).flat_map(valid).collect()).await.unwrap();
    let outcomes: Vec<i32> = again
        .into_inner()
        .results
        .iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(outcomes.len(), batch);
    assert!(
        outcomes
            .iter()
            .all(|o| *o == storage::PutOutcome::Unchanged as i32),
        "the batch before the refusal was written: {outcomes:?}"
    );

    // Ids in another spelling than the hyphenated one.
    let uuid = uuid::Uuid::now_v7();
    for spelling in [
        format!("{{{uuid}}}"),
        uuid.simple().to_string(),
        uuid.urn().to_string(),
    ] {
        let got = docs
            .get_document(authed(
                storage::GetDocumentRequest {
                    document_id: spelling.clone(),
                    ..Default::default()
                },
                &ada,
            ))
            .await;
        assert_refused(got, Code::InvalidArgument, "document_id", &spelling);
    }

    // Activity in year 0.
    let mut retention_client =
        retention::retention_service_client::RetentionServiceClient::new(channel.clone());
    let year_zero = retention_client
        .record_activity(authed(
            retention::RecordActivityRequest {
                user_id: ada_id.clone(),
                at: Some(prost_types::Timestamp {
                    seconds: -62_167_219_200,
                    nanos: 0,
                }),
            },
            &ada,
        ))
        .await;
    assert_refused(year_zero, Code::InvalidArgument, "at", "year 0");

    // Tokens not valid yet, dated ahead, or living for a century.
    let now = now_secs();
    let claims = |iat: u64, exp: u64, nbf: Option<u64>| Claims {
        sub: ada_id.clone(),
        tenant: Some(tenant.to_string()),
        roles: vec!["member".into()],
        exp,
        iat,
        nbf,
        iss: "mindmesh".into(),
    };
    for (what, c) in [
        ("nbf ahead", claims(now, now + 600, Some(now + 300))),
        ("iat ahead", claims(now + 300, now + 900, None)),
        ("a century", claims(now, now + 100 * 365 * 86_400, None)),
    ] {
        let token = server.issuer().issue_claims(&c).unwrap();
        let read = accounts
            .get_user(authed(
                perm::GetUserRequest {
                    user_id: ada_id.clone(),
                },
                &token,
            ))
            .await;
        assert_eq!(read.unwrap_err().code(), Code::Unauthenticated, "{what}");
    }
    server.stop().await;
}

/// Finding 9: a sync's progress only moves forward — phases never step back, and within
/// a phase neither `done` nor `total` shrink — through a sync that deletes.
async fn sync_progress_only_moves_forward(backend: Backend) {
    let (server, root) = server(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let dir = folder(&root, tenant, "docs");
    for i in 0..1200 {
        write(&dir, &format!("f{i:04}.md"), "x");
    }
    let mut client = ingest::client(&server).await;
    let integration = connect_folder(&mut client, &admin, "Docs", "docs")
        .await
        .unwrap();
    sync_ok(&mut client, &admin, &integration.id, false).await;
    for i in 0..700 {
        std::fs::remove_file(dir.join(format!("f{i:04}.md"))).unwrap();
    }
    let all = ingest::sync(&mut client, &admin, &integration.id, true).await;
    let last = all.last().unwrap();
    assert_eq!(
        last.phase,
        ingest_pb::SyncPhase::Done as i32,
        "{}",
        last.error
    );
    assert_eq!(last.deleted, 700, "{last:?}");
    assert!(
        all.iter()
            .any(|p| p.phase == ingest_pb::SyncPhase::Deletions as i32),
        "the deletions are shown as such"
    );
    for pair in all.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(b.phase >= a.phase, "phase stepped back: {a:?} → {b:?}");
        if b.phase == a.phase {
            assert!(b.done >= a.done && b.total >= a.total, "{a:?} → {b:?}");
        }
        for (x, y) in [
            (a.created, b.created),
            (a.updated, b.updated),
            (a.deleted, b.deleted),
            (a.skipped, b.skipped),
        ] {
            assert!(y >= x, "a count shrank: {a:?} → {b:?}");
        }
    }
    server.stop().await;
}

/// Every tenant-scoped write a deleted tenant's admin (or service) could still send.
async fn tenant_writes(
    server: &TestServer,
    tenant: TenantId,
    admin: &str,
    integration: &str,
) -> Vec<(&'static str, Result<(), tonic::Status>)> {
    let channel = server.channel().await;
    let ada = server.token(
        &uuid::Uuid::now_v7().to_string(),
        Some(tenant),
        &[Role::Admin],
    );
    let service = server.token("ingest", Some(tenant), &[Role::Service]);
    let mut docs = storage::storage_service_client::StorageServiceClient::new(channel.clone());
    let mut accounts = perm::account_service_client::AccountServiceClient::new(channel.clone());
    let mut staff =
        perm::staff_access_service_client::StaffAccessServiceClient::new(channel.clone());
    let mut permissions =
        perm::permissions_service_client::PermissionsServiceClient::new(channel.clone());
    let mut retention_client =
        retention::retention_service_client::RetentionServiceClient::new(channel.clone());
    let mut client = ingest::client(server).await;
    let expires = prost_types::Timestamp {
        seconds: i64::try_from(now_secs()).unwrap() + 86_400,
        nanos: 0,
    };
    let put = tokio_stream::iter(vec![
        storage::PutDocumentsRequest {
            item: Some(header(integration, "late.md", "Late", "text/plain", "")),
        },
        storage::PutDocumentsRequest {
            item: Some(Item::Chunk(b"x".to_vec())),
        },
    ]);
    vec![
        (
            "CreateDocument",
            docs.create_document(authed(
                storage::CreateDocumentRequest {
                    title: "T".into(),
                    mime_type: "text/plain".into(),
                    content: b"x".to_vec(),
                },
                &ada,
            ))
            .await
            .map(drop),
        ),
        (
            "ConnectIntegration",
            connect_folder(&mut client, admin, "Docs", "docs")
                .await
                .map(drop),
        ),
        (
            "GrantStaffAccess",
            staff
                .grant_staff_access(authed(
                    perm::GrantStaffAccessRequest {
                        role: perm::StaffRole::Engineer as i32,
                        reason: "debugging".into(),
                        expires_at: Some(expires),
                    },
                    admin,
                ))
                .await
                .map(drop),
        ),
        (
            "CreateUser",
            accounts
                .create_user(authed(
                    perm::CreateUserRequest {
                        first_name: "A".into(),
                        last_name: "B".into(),
                        email: "a@b.example".into(),
                        picture_url: String::new(),
                    },
                    admin,
                ))
                .await
                .map(drop),
        ),
        (
            "RecordActivity",
            retention_client
                .record_activity(authed(
                    retention::RecordActivityRequest {
                        user_id: uuid::Uuid::now_v7().to_string(),
                        at: None,
                    },
                    admin,
                ))
                .await
                .map(drop),
        ),
        (
            "PutDocuments",
            docs.put_documents(authed(put, &service)).await.map(drop),
        ),
        (
            "SyncPrincipals",
            permissions
                .sync_principals(authed(
                    perm::SyncPrincipalsRequest {
                        integration_id: integration.into(),
                        ..Default::default()
                    },
                    &service,
                ))
                .await
                .map(drop),
        ),
        (
            "SetDocumentAcls",
            permissions
                .set_document_acls(authed(
                    perm::SetDocumentAclsRequest {
                        acls: vec![perm::DocumentAcl {
                            document_id: uuid::Uuid::now_v7().to_string(),
                            integration_id: integration.into(),
                            grants: vec![],
                        }],
                    },
                    &service,
                ))
                .await
                .map(drop),
        ),
    ]
}

/// Finding 4 (P08): a deleted tenant, or one that never existed, takes no write in any
/// service — neither from its admin nor from a sync that started before the deletion.
async fn a_deleted_or_unknown_tenant_takes_no_writes(backend: Backend) {
    let (server, root) = server(backend).await;
    let (tenant, admin) = server.create_tenant("Doomed").await;
    write(&folder(&root, tenant, "docs"), "a.md", "a");
    let mut client = ingest::client(&server).await;
    let integration = connect_folder(&mut client, &admin, "Docs", "docs")
        .await
        .unwrap();
    sync_ok(&mut client, &admin, &integration.id, false).await;
    let (_, ada) = ingest::member(&server, tenant, &admin, "ada@doomed.example").await;
    // Every service has met the tenant before it goes.
    storage::storage_service_client::StorageServiceClient::new(server.channel().await)
        .create_document(authed(
            storage::CreateDocumentRequest {
                title: "Before".into(),
                mime_type: "text/plain".into(),
                content: b"x".to_vec(),
            },
            &ada,
        ))
        .await
        .unwrap();
    let operator = server.token("op", None, &[Role::Operator]);
    perm::account_service_client::AccountServiceClient::new(server.channel().await)
        .delete_tenant(authed(
            perm::DeleteTenantRequest {
                tenant_id: tenant.to_string(),
            },
            &operator,
        ))
        .await
        .unwrap();
    let never = TenantId::new();
    let never_admin = server.token("admin-1", Some(never), &[Role::Admin]);
    for (who, tenant, admin) in [
        ("deleted", tenant, admin.as_str()),
        ("never created", never, never_admin.as_str()),
    ] {
        let refused_everywhere = common::eventually(std::time::Duration::from_secs(30), || async {
            tenant_writes(&server, tenant, admin, &integration.id)
                .await
                .into_iter()
                .all(|(_, r)| {
                    r.is_err_and(|s| {
                        matches!(
                            s.code(),
                            Code::NotFound | Code::FailedPrecondition | Code::PermissionDenied
                        )
                    })
                })
        })
        .await;
        let answers: Vec<(&str, Option<Code>)> =
            tenant_writes(&server, tenant, admin, &integration.id)
                .await
                .into_iter()
                .map(|(rpc, r)| (rpc, r.err().map(|s| s.code())))
                .collect();
        assert!(refused_everywhere, "{who} tenant: {answers:?}");
        for (rpc, code) in answers {
            assert!(
                matches!(code, Some(Code::NotFound | Code::FailedPrecondition)),
                "{who} tenant, {rpc}: {code:?}"
            );
        }
    }
    server.stop().await;
}

/// Finding 5 (P02): the data plane (`PutDocuments`, `SetDocumentAcls`, `SyncPrincipals`)
/// is ingest's alone — an admin may not rewrite what the source says — and only for an
/// integration that exists, is the caller's tenant's, and is connected.
async fn only_ingest_writes_the_source_truth_and_only_for_its_integrations(backend: Backend) {
    let (server, root) = server(backend).await;
    let (a, admin_a) = server.create_tenant("Acme").await;
    let (b, _) = server.create_tenant("Bravo").await;
    let dir = folder(&root, a, "docs");
    write(&dir, "private.md", "only carol");
    write(
        &dir,
        "mindmesh-acl.json",
        &serde_json::json!({
            "users": [{"id": "carol", "email": "carol@acme.example"}],
            "grants": [{"path": "private.md", "to": "user:carol", "role": "reader"}]
        })
        .to_string(),
    );
    let mut client = ingest::client(&server).await;
    let integration = connect_folder(&mut client, &admin_a, "Docs", "docs")
        .await
        .unwrap();
    sync_ok(&mut client, &admin_a, &integration.id, false).await;
    let service_a = server.token("ingest", Some(a), &[Role::Service]);
    let private = ingest::readable(&server, &service_a).await.pop().unwrap();
    let (_, bob) = ingest::member(&server, a, &admin_a, "bob@acme.example").await;
    let channel = server.channel().await;
    let mut permissions =
        perm::permissions_service_client::PermissionsServiceClient::new(channel.clone());
    let mut docs = storage::storage_service_client::StorageServiceClient::new(channel.clone());
    let anyone = |integration: &str| perm::SetDocumentAclsRequest {
        acls: vec![perm::DocumentAcl {
            document_id: private.id.clone(),
            integration_id: integration.into(),
            grants: vec![perm::Grant {
                grantee_kind: perm::GranteeKind::Anyone as i32,
                grantee: String::new(),
                role: perm::Role::Reader as i32,
            }],
        }],
    };
    let remap = |integration: &str| perm::SyncPrincipalsRequest {
        integration_id: integration.into(),
        users: vec![perm::PrincipalUser {
            external_id: "carol".into(),
            email: "bob@acme.example".into(),
            display_name: "Carol".into(),
        }],
        ..Default::default()
    };
    let inject = |integration: &str| {
        tokio_stream::iter(vec![
            storage::PutDocumentsRequest {
                item: Some(header(
                    integration,
                    "injected.md",
                    "Injected",
                    "text/plain",
                    "",
                )),
            },
            storage::PutDocumentsRequest {
                item: Some(Item::Chunk(b"x".to_vec())),
            },
        ])
    };
    // An admin (or a member) is not the source.
    for token in [&admin_a, &bob] {
        let status = permissions
            .set_document_acls(authed(anyone(&integration.id), token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        let status = permissions
            .sync_principals(authed(remap(&integration.id), token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        let status = docs
            .put_documents(authed(inject(&integration.id), token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    let get = docs
        .get_document(authed(
            storage::GetDocumentRequest {
                document_id: private.id.clone(),
                ..Default::default()
            },
            &bob,
        ))
        .await;
    assert_eq!(
        get.unwrap_err().code(),
        Code::NotFound,
        "nothing was rewritten"
    );

    // A service, for an integration that does not exist or is another tenant's.
    let service_b = server.token("ingest", Some(b), &[Role::Service]);
    let unknown = uuid::Uuid::now_v7().to_string();
    for (token, id, what) in [
        (&service_a, unknown.as_str(), "unknown"),
        (&service_b, integration.id.as_str(), "another tenant's"),
    ] {
        let results = [
            permissions
                .set_document_acls(authed(anyone(id), token))
                .await
                .map(drop),
            permissions
                .sync_principals(authed(remap(id), token))
                .await
                .map(drop),
            docs.put_documents(authed(inject(id), token))
                .await
                .map(drop),
        ];
        for result in results {
            let status = result.unwrap_err();
            assert!(
                matches!(status.code(), Code::NotFound | Code::Unavailable),
                "{what}: {status:?}"
            );
            assert!(
                status.message().contains("integration_id"),
                "{what}: {status:?}"
            );
        }
    }
    // Native documents keep their own sharing, through CreateDocument.
    storage::storage_service_client::StorageServiceClient::new(channel)
        .create_document(authed(
            storage::CreateDocumentRequest {
                title: "Mine".into(),
                mime_type: "text/plain".into(),
                content: b"x".to_vec(),
            },
            &bob,
        ))
        .await
        .unwrap();
    server.stop().await;
}

/// Finding 6 (P11): for local-folder and GitHub documents the source's id is a path,
/// which is the title; support (under consent) gets neither, analysts a pseudonym.
async fn p11_support_gets_no_source_path_and_analysts_a_pseudonym(backend: Backend) {
    let (server, root) = server(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let dir = folder(&root, tenant, "docs");
    write(&dir, "public/welcome.md", "hello");
    write(&dir, "carol-only.md", "for carol");
    let mut client = ingest::client(&server).await;
    let integration = connect_folder(&mut client, &admin, "Docs", "docs")
        .await
        .unwrap();
    sync_ok(&mut client, &admin, &integration.id, false).await;
    let (ada, _) = ingest::member(&server, tenant, &admin, "ada@acme.example").await;
    let ada_admin = server.token(&ada, Some(tenant), &[Role::Admin]);
    let mut staff =
        perm::staff_access_service_client::StaffAccessServiceClient::new(server.channel().await);
    for role in [perm::StaffRole::Support, perm::StaffRole::Analyst] {
        staff
            .grant_staff_access(authed(
                perm::GrantStaffAccessRequest {
                    role: role as i32,
                    reason: "ticket 4711".into(),
                    expires_at: Some(prost_types::Timestamp {
                        seconds: i64::try_from(now_secs()).unwrap() + 3600,
                        nanos: 0,
                    }),
                },
                &ada_admin,
            ))
            .await
            .unwrap();
    }
    let mut docs =
        storage::storage_service_client::StorageServiceClient::new(server.channel().await);
    let paths = ["public/welcome.md", "carol-only.md"];
    let service = server.token("ingest", Some(tenant), &[Role::Service]);
    let real_ids: Vec<String> = ingest::readable(&server, &service)
        .await
        .into_iter()
        .map(|d| d.id)
        .collect();
    let mut seen = Vec::new();
    for (who, roles) in [
        ("support", Role::StaffSupport),
        ("analyst", Role::StaffAnalyst),
    ] {
        let token = server.token(&format!("{who}-1"), Some(tenant), &[roles]);
        let listed = docs
            .list_documents(authed(storage::ListDocumentsRequest::default(), &token))
            .await
            .unwrap()
            .into_inner()
            .documents;
        assert_eq!(listed.len(), 2, "{who}");
        for id in &real_ids {
            let got = docs
                .get_document(authed(
                    storage::GetDocumentRequest {
                        document_id: id.clone(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
                .document
                .unwrap();
            assert!(
                got.title.is_empty() && !paths.iter().any(|p| got.external_id.contains(p)),
                "{who}: {got:?}"
            );
        }
        for meta in &listed {
            assert!(meta.title.is_empty(), "{who}: {meta:?}");
            for path in paths {
                assert!(
                    !meta.external_id.contains(path) && !format!("{meta:?}").contains(path),
                    "{who} sees the path {path}: {meta:?}"
                );
            }
            seen.push((who, meta.external_id.clone()));
        }
    }
    // Support gets no source id at all; analysts a stable pseudonym, one per document.
    let support: Vec<&String> = seen
        .iter()
        .filter(|(w, _)| *w == "support")
        .map(|(_, e)| e)
        .collect();
    assert!(support.iter().all(|e| e.is_empty()), "{support:?}");
    let analyst: std::collections::BTreeSet<&String> = seen
        .iter()
        .filter(|(w, _)| *w == "analyst")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(analyst.len(), 2, "{analyst:?}");
    assert!(analyst.iter().all(|e| !e.is_empty()));
    server.stop().await;
}

both_modes!(
    p11_support_gets_no_source_path_and_analysts_a_pseudonym,
    a_deleted_or_unknown_tenant_takes_no_writes,
    only_ingest_writes_the_source_truth_and_only_for_its_integrations,
    a_peers_refusal_keeps_its_code_and_field,
    deceptive_names_urls_ids_times_and_tokens_are_refused,
    sync_progress_only_moves_forward,
);
