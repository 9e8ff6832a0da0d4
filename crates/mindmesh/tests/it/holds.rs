//! Legal holds end to end: a hold on an integration pauses its disconnect cascade in
//! every service that keeps its data (the cascade shows the hold, no receipt is issued,
//! nothing is erased), and its release resumes it to a receipt that counts the documents
//! kept meanwhile; a held person's account cannot be deleted until the release; bad
//! requests name the field.

use std::time::Duration;

use mindmesh_kit::Service;
use mindmesh_kit::auth::Role;
use mindmesh_proto::mindmesh::common::v1::CascadeState;
use mindmesh_proto::mindmesh::permissions::v1 as perm;
use mindmesh_proto::mindmesh::retention::v1 as pb;
use tonic::Code;

use crate::common::ingest::{self, connect_folder, folder_server, sync_ok, write};
use crate::common::{self, Backend, TestServer, authed};
use crate::retention::{completed_with_proof, delete_user, receipt_verifies, retention};

/// Places a hold as `token`; once it answers, the hold is in force everywhere.
async fn place(
    server: &TestServer,
    token: &str,
    scope_kind: &str,
    scope_id: &str,
) -> Result<String, tonic::Status> {
    let answer = retention(server)
        .await
        .place_legal_hold(authed(
            pb::PlaceLegalHoldRequest {
                scope_kind: scope_kind.into(),
                scope_id: scope_id.into(),
                reason: "Litigation hold, case 2026-CV-0142".into(),
                tenant_id: String::new(),
            },
            token,
        ))
        .await?
        .into_inner();
    assert!(answer.in_force, "{answer:?}");
    Ok(answer.hold_id)
}

async fn release(server: &TestServer, token: &str, hold: &str) {
    let answer = retention(server)
        .await
        .release_legal_hold(authed(
            pb::ReleaseLegalHoldRequest {
                hold_id: hold.into(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.released_everywhere);
}

async fn cascade(server: &TestServer, token: &str, id: &str) -> Option<pb::Cascade> {
    retention(server)
        .await
        .get_cascade(authed(
            pb::GetCascadeRequest {
                cascade_id: id.into(),
            },
            token,
        ))
        .await
        .ok()
        .and_then(|r| r.into_inner().cascade)
}

async fn p06_a_legal_hold_pauses_a_disconnect_until_it_is_released(backend: Backend) {
    let (server, root) = folder_server(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let dir = root.path().join(tenant.to_string()).join("acme");
    write(&dir, "a.txt", "alpha");
    write(&dir, "b.txt", "beta");
    let mut client = ingest::client(&server).await;
    let integration = connect_folder(&mut client, &admin, "Acme", "acme")
        .await
        .unwrap();
    sync_ok(&mut client, &admin, &integration.id, false).await;
    let hold = place(&server, &admin, "integration", &integration.id)
        .await
        .unwrap();
    let cascade_id = ingest::disconnect(&mut client, &admin, &integration.id).await;

    // Paused: permissions and storage keep their part under the hold; ingest (which
    // keeps only the credentials and sync state of a disconnected tool) is done.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let paused = loop {
        let seen = cascade(&server, &admin, &cascade_id).await;
        let retained = seen.as_ref().map_or(0, |c| {
            c.services
                .iter()
                .filter(|p| p.state == CascadeState::RetainedWithGround as i32)
                .count()
        });
        if retained == 2 {
            break seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cascade did not pause: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let paused = paused.unwrap();
    assert_eq!(paused.state, CascadeState::RetainedWithGround as i32);
    assert_eq!(paused.held_by, hold);
    assert!(paused.receipt.is_none());
    for part in &paused.services {
        let service = Service::from_proto(part.service).unwrap();
        if service == Service::Ingest {
            assert_eq!(part.state, CascadeState::Done as i32, "{part:?}");
        } else {
            assert_eq!(part.reason, format!("legal_hold:{hold}"), "{part:?}");
        }
    }

    // Released: asked again, every service erases, and the receipt counts the two
    // documents storage kept meanwhile.
    release(&server, &admin, &hold).await;
    let (done, proof) = completed_with_proof(&server, &admin, &cascade_id).await;
    receipt_verifies(&server, &admin, &done, &proof).await;
    assert!(done.held_by.is_empty());
    let storage = done
        .services
        .iter()
        .find(|p| p.service == Service::Storage.to_proto() as i32)
        .unwrap();
    assert_eq!(storage.counts.get("documents"), Some(&2), "{storage:?}");
    assert!(!storage.destroyed_key_ids.is_empty());
    // Releasing again changes nothing.
    release(&server, &admin, &hold).await;

    // P18: placing, releasing and resuming are in retention's audit chain, which
    // verifies; the reason is not in it.
    let operator = server.token("op", None, &[Role::Operator]);
    let events = common::audit_events(&server, Service::Retention, &operator).await;
    let on_hold: Vec<&str> = events
        .iter()
        .filter(|e| e.subject_id == hold)
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        on_hold,
        vec![
            "legal_hold.place",
            "legal_hold.release",
            "legal_hold.resume"
        ]
    );
    assert!(events.iter().all(|e| !e.details.contains("2026-CV-0142")));
    let chain = common::audit_chain(&server, Service::Retention, &operator).await;
    assert!(chain.intact, "{chain:?}");
    server.stop().await;
}

async fn p06_a_held_account_is_not_deleted_until_the_release(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let user = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    // An operator places it, naming the tenant.
    let operator = server.token("op", None, &[Role::Operator]);
    let hold = retention(&server)
        .await
        .place_legal_hold(authed(
            pb::PlaceLegalHoldRequest {
                scope_kind: "user".into(),
                scope_id: user.id.clone(),
                reason: "Employment dispute".into(),
                tenant_id: tenant.to_string(),
            },
            &operator,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(hold.in_force, "{hold:?}");
    let hold = hold.hold_id;
    let mut accounts =
        perm::account_service_client::AccountServiceClient::new(server.channel().await);
    let refused = accounts
        .delete_user(authed(
            perm::DeleteUserRequest {
                user_id: user.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains(&hold), "{refused:?}");
    // The tenant cannot go either while a part of it is held.
    let refused = accounts
        .delete_tenant(authed(
            perm::DeleteTenantRequest {
                tenant_id: tenant.to_string(),
            },
            &operator,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    // Still there.
    accounts
        .get_user(authed(
            perm::GetUserRequest {
                user_id: user.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap();
    release(&server, &operator, &hold).await;
    let cascade = delete_user(&server, &admin, user.id.clone()).await;
    completed_with_proof(&server, &admin, &cascade).await;
    server.stop().await;
}

async fn legal_hold_requests_are_checked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let other = uuid::Uuid::now_v7().to_string();
    for (kind, id, field) in [
        ("folder", other.as_str(), "scope_kind"),
        ("user", "not-a-uuid", "scope_id"),
        // A tenant hold names the caller's own tenant.
        ("tenant", other.as_str(), "scope_id"),
    ] {
        let err = place(&server, &admin, kind, id).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(field), "{err:?}");
    }
    let mut client = retention(&server).await;
    let too_long = client
        .place_legal_hold(authed(
            pb::PlaceLegalHoldRequest {
                scope_kind: "tenant".into(),
                scope_id: tenant.to_string(),
                reason: "x".repeat(501),
                tenant_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), Code::InvalidArgument);
    assert!(too_long.message().contains("reason"), "{too_long:?}");
    // Members neither place nor release holds; an admin holds only their own tenant.
    let member = server.token("m-1", Some(tenant), &[Role::Member]);
    let err = place(&server, &member, "tenant", &tenant.to_string())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = client
        .place_legal_hold(authed(
            pb::PlaceLegalHoldRequest {
                scope_kind: "tenant".into(),
                scope_id: other.clone(),
                reason: "Audit".into(),
                tenant_id: other.clone(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // Another tenant's hold is not found.
    let hold = place(&server, &admin, "tenant", &tenant.to_string())
        .await
        .unwrap();
    let (_, stranger) = server.create_tenant("Globex").await;
    let err = client
        .release_legal_hold(authed(
            pb::ReleaseLegalHoldRequest { hold_id: hold },
            &stranger,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = client
        .release_legal_hold(authed(
            pb::ReleaseLegalHoldRequest {
                hold_id: "nope".into(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("hold_id"), "{err:?}");
    server.stop().await;
}

both_modes!(
    p06_a_legal_hold_pauses_a_disconnect_until_it_is_released,
    p06_a_held_account_is_not_deleted_until_the_release,
    legal_hold_requests_are_checked,
);
