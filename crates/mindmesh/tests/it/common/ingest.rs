//! Helpers of the ingest tests: connect, sync to the end, and ask storage what a person
//! can read.

use std::collections::BTreeSet;

use mindmesh_kit::ids::TenantId;
use mindmesh_proto::mindmesh::ingest::v1 as pb;
use mindmesh_proto::mindmesh::storage::v1 as storage;
use pb::ingest_service_client::IngestServiceClient;
use tonic::transport::Channel;

use super::{TestServer, authed};
use mindmesh_kit::auth::Role;

pub type Ingest = IngestServiceClient<Channel>;

/// An ingest client of `server`.
pub async fn client(server: &TestServer) -> Ingest {
    IngestServiceClient::new(server.channel().await)
}

/// Connects an integration; panics with the status when refused.
pub async fn connect(
    ingest: &mut Ingest,
    admin: &str,
    request: pb::ConnectIntegrationRequest,
) -> pb::Integration {
    ingest
        .connect_integration(authed(request, admin))
        .await
        .expect("connect")
        .into_inner()
        .integration
        .expect("integration")
}

/// The integration `id` as `GetIntegration` answers it.
pub async fn integration(ingest: &mut Ingest, admin: &str, id: &str) -> pb::Integration {
    ingest
        .get_integration(authed(
            pb::GetIntegrationRequest {
                integration_id: id.into(),
            },
            admin,
        ))
        .await
        .expect("get integration")
        .into_inner()
        .integration
        .expect("integration")
}

/// Runs a sync to its end; returns every progress message, the last one final.
pub async fn sync(ingest: &mut Ingest, admin: &str, id: &str, full: bool) -> Vec<pb::SyncProgress> {
    let mut stream = ingest
        .sync_integration(authed(
            pb::SyncIntegrationRequest {
                integration_id: id.into(),
                full,
            },
            admin,
        ))
        .await
        .expect("sync")
        .into_inner();
    let mut all = Vec::new();
    while let Some(p) = stream.message().await.expect("progress") {
        all.push(p);
    }
    all
}

/// Runs a sync and asserts it finished successfully; returns its final progress.
pub async fn sync_ok(ingest: &mut Ingest, admin: &str, id: &str, full: bool) -> pb::SyncProgress {
    // A sync requested at connect time may be running: wait for it, then run ours.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let all = sync(ingest, admin, id, full).await;
        let last = all.last().cloned().expect("a progress message");
        if last.phase == pb::SyncPhase::Failed as i32 && last.error.contains("already running") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "another sync of {id} still running after 120 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(
            last.phase,
            pb::SyncPhase::Done as i32,
            "sync failed: {}",
            last.error
        );
        return last;
    }
}

/// A server whose local-folder root is a fresh directory; returns it and the root.
pub async fn folder_server(backend: super::Backend) -> (TestServer, tempfile::TempDir) {
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path().to_path_buf();
    let server = TestServer::start_with(backend, move |c| {
        c.ingest.local_folder_root = Some(r);
    })
    .await;
    (server, root)
}

/// Writes `content` to `path` below `dir`, making the folders on the way.
pub fn write(dir: &std::path::Path, path: &str, content: &str) {
    let file = dir.join(path);
    std::fs::create_dir_all(file.parent().expect("a parent")).expect("folders");
    std::fs::write(file, content).expect("file");
}

/// Connects the local folder `path` (of the admin's tenant) as `display_name`.
pub async fn connect_folder(
    ingest: &mut Ingest,
    admin: &str,
    display_name: &str,
    path: &str,
) -> Result<pb::Integration, tonic::Status> {
    ingest
        .connect_integration(authed(
            pb::ConnectIntegrationRequest {
                kind: "local_folder".into(),
                display_name: display_name.into(),
                settings: [("path".to_owned(), path.to_owned())].into(),
                ..Default::default()
            },
            admin,
        ))
        .await
        .map(|r| r.into_inner().integration.expect("integration"))
}

/// Disconnects integration `id` as `admin`; returns the cascade id.
pub async fn disconnect(ingest: &mut Ingest, admin: &str, id: &str) -> String {
    ingest
        .disconnect_integration(authed(
            pb::DisconnectIntegrationRequest {
                integration_id: id.to_owned(),
            },
            admin,
        ))
        .await
        .expect("disconnected")
        .into_inner()
        .cascade_id
}

/// A member account with `email`; returns its id and a member token.
pub async fn member(
    server: &TestServer,
    tenant: TenantId,
    admin: &str,
    email: &str,
) -> (String, String) {
    let first = email.split('@').next().unwrap_or("x");
    let user = server.create_user(admin, first, "Test", email).await;
    let token = server.token(&user.id, Some(tenant), &[Role::Member]);
    (user.id, token)
}

/// Every document `token` may read: title → document.
pub async fn readable(server: &TestServer, token: &str) -> Vec<storage::DocumentMeta> {
    let mut client =
        storage::storage_service_client::StorageServiceClient::new(server.channel().await);
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_documents(authed(
                storage::ListDocumentsRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .expect("list documents")
            .into_inner();
        out.extend(page.documents);
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
}

/// The titles `token` may read.
pub async fn titles(server: &TestServer, token: &str) -> BTreeSet<String> {
    readable(server, token)
        .await
        .into_iter()
        .map(|d| d.title)
        .collect()
}

/// A set of titles, for comparisons.
pub fn set(titles: &[&str]) -> BTreeSet<String> {
    titles.iter().map(|t| (*t).to_owned()).collect()
}
