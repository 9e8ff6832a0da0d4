//! Regression tests for what probing Mindmesh from outside found (every RPC called with
//! many kinds of callers and inputs): each test reproduces one finding and holds it
//! fixed, in embedded mode (SQLite + embedded bus) and distributed mode (PostgreSQL +
//! NATS JetStream).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

#[macro_use]
mod common;

use std::path::Path;

use common::ingest::{self, sync_ok};
use common::{Backend, TestServer, authed};
use mindmesh_kit::auth::{Claims, Role, now_secs};
use mindmesh_kit::ids::TenantId;
use mindmesh_proto::mindmesh::ingest::v1 as ingest_pb;
use mindmesh_proto::mindmesh::permissions::v1 as perm;
use mindmesh_proto::mindmesh::retention::v1 as retention;
use mindmesh_proto::mindmesh::storage::v1 as storage;
use storage::put_documents_request::Item;
use tonic::Code;

/// A server whose local-folder root is a fresh directory; returns it and the root.
async fn server(backend: Backend) -> (TestServer, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_path_buf();
    let server = TestServer::start_with(backend, move |c| {
        c.ingest.local_folder_root = Some(r);
    })
    .await;
    (server, root)
}

fn write(dir: &Path, path: &str, content: &str) {
    let file = dir.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, content).unwrap();
}

/// The folder `name` of `tenant` below `root`.
fn folder(root: &tempfile::TempDir, tenant: TenantId, name: &str) -> std::path::PathBuf {
    root.path().join(tenant.to_string()).join(name)
}

async fn connect_folder(
    client: &mut ingest::Ingest,
    admin: &str,
    name: &str,
    path: &str,
) -> Result<ingest_pb::Integration, tonic::Status> {
    client
        .connect_integration(authed(
            ingest_pb::ConnectIntegrationRequest {
                kind: "local_folder".into(),
                display_name: name.into(),
                settings: [("path".to_owned(), path.to_owned())].into(),
                ..Default::default()
            },
            admin,
        ))
        .await
        .map(|r| r.into_inner().integration.unwrap())
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

both_modes!(
    a_peers_refusal_keeps_its_code_and_field,
    deceptive_names_urls_ids_times_and_tokens_are_refused,
    sync_progress_only_moves_forward,
);
