//! The deletion ledger end to end: a disconnect, a user deletion and a tenant deletion
//! each gather every participating service's signed attestation, `GetCascade` follows
//! them to complete, and the receipt verifies with `VerifyReceipt` and offline (P06,
//! P08); a changed byte fails both. Who may read the ledger.

use std::time::Duration;

use mindmesh_kit::Service;
use mindmesh_kit::auth::Role;
use mindmesh_proto::mindmesh::common::v1::CascadeState;
use mindmesh_proto::mindmesh::permissions::v1 as perm;
use mindmesh_proto::mindmesh::retention::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::ingest::{self, connect_folder, folder_server, sync_ok, write};
use crate::common::{self, Backend, TestServer, authed, eventually};

type Retention = pb::retention_service_client::RetentionServiceClient<Channel>;

pub(crate) async fn retention(server: &TestServer) -> Retention {
    Retention::new(server.channel().await)
}

/// The cascade `id` once complete (within 60 s), as `token` reads it.
async fn completed(server: &TestServer, token: &str, id: &str) -> pb::Cascade {
    completed_with_proof(server, token, id).await.0
}

/// The cascade `id` once complete, with its receipt's inclusion proof.
pub(crate) async fn completed_with_proof(
    server: &TestServer,
    token: &str,
    id: &str,
) -> (pb::Cascade, pb::InclusionProof) {
    let mut client = retention(server).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answer = client
            .get_cascade(authed(
                pb::GetCascadeRequest {
                    cascade_id: id.to_owned(),
                },
                token,
            ))
            .await;
        if let Ok(r) = &answer
            && let Some(c) = &r.get_ref().cascade
            && c.state == CascadeState::Done as i32
        {
            let proof = r
                .get_ref()
                .inclusion
                .clone()
                .expect("a complete cascade's proof");
            return (c.clone(), proof);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cascade {id} did not complete: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes the user `id` as `admin`; returns the cascade.
pub(crate) async fn delete_user(server: &TestServer, admin: &str, id: String) -> String {
    perm::account_service_client::AccountServiceClient::new(server.channel().await)
        .delete_user(authed(perm::DeleteUserRequest { user_id: id }, admin))
        .await
        .unwrap()
        .into_inner()
        .cascade_id
}

fn services(cascade: &pb::Cascade) -> Vec<Service> {
    cascade
        .services
        .iter()
        .map(|s| Service::from_proto(s.service).expect("a service"))
        .collect()
}

/// Checks the receipt of the complete `cascade` with the server and offline, and that a
/// changed byte fails both.
pub(crate) async fn receipt_verifies(
    server: &TestServer,
    token: &str,
    cascade: &pb::Cascade,
    proof: &pb::InclusionProof,
) {
    let receipt = cascade
        .receipt
        .clone()
        .expect("a complete cascade's receipt");
    assert_eq!(receipt.cascade_id, cascade.id);
    assert_eq!(receipt.attestations.len(), cascade.services.len());
    let mut client = retention(server).await;
    let verify = |r: pb::Receipt| {
        let mut client = client.clone();
        let token = token.to_owned();
        async move {
            client
                .verify_receipt(authed(
                    pb::VerifyReceiptRequest { receipt: Some(r) },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let answer = verify(receipt.clone()).await;
    assert!(
        answer.signature_valid && answer.attestations_valid && answer.included,
        "{answer:?}"
    );
    assert_eq!(answer.root_hash.len(), 64);

    // Offline, with only retention's public key.
    let key = server.signing_public_key();
    let file = mindmesh_retention::api::receipt_file(&receipt, proof).unwrap();
    let checked = mindmesh_retention::receipts::verify(&file, &key);
    assert!(checked.ok(), "{checked:?}");

    // One changed byte: a count.
    let mut changed = receipt.clone();
    *changed.attestations[0]
        .counts
        .entry("rows".into())
        .or_default() += 1;
    let answer = verify(changed.clone()).await;
    assert!(
        !answer.signature_valid && !answer.attestations_valid && !answer.included,
        "{answer:?}"
    );
    let file = mindmesh_retention::api::receipt_file(&changed, proof).unwrap();
    assert!(!mindmesh_retention::receipts::verify(&file, &key).ok());
    // Bad input names the field.
    let err = client
        .verify_receipt(authed(pb::VerifyReceiptRequest { receipt: None }, token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("receipt"), "{err:?}");
}

fn all_done(cascade: &pb::Cascade) {
    assert!(cascade.waiting_for.is_empty(), "{cascade:?}");
    for part in &cascade.services {
        assert_eq!(part.state, CascadeState::Done as i32, "{part:?}");
        assert!(!part.signature.is_empty(), "{part:?}");
        assert!(part.completed_at.is_some(), "{part:?}");
    }
}

async fn p06_a_disconnect_cascade_completes_with_every_attestation(backend: Backend) {
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
    let cascade = ingest::disconnect(&mut client, &admin, &integration.id).await;

    let (done, proof) = completed_with_proof(&server, &admin, &cascade).await;
    receipt_verifies(&server, &admin, &done, &proof).await;
    assert_eq!(done.scope_kind, "integration");
    assert_eq!(done.scope_id, integration.id);
    assert_eq!(
        services(&done),
        vec![Service::Ingest, Service::Permissions, Service::Storage]
    );
    all_done(&done);
    let storage = &done.services[2];
    assert_eq!(storage.counts.get("documents"), Some(&2), "{storage:?}");
    assert!(!storage.destroyed_key_ids.is_empty(), "{storage:?}");

    // The ledger lists it; an operator reads any tenant's.
    let operator = server.token("op", None, &[Role::Operator]);
    let listed = retention(&server)
        .await
        .list_cascades(authed(pb::ListCascadesRequest::default(), &operator))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.cascades.iter().any(|c| c.id == cascade));
    server.stop().await;
}

async fn p06_a_user_deletion_is_attested_by_all_five_services(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, admin) = server.create_tenant("Acme").await;
    let user = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let cascade = delete_user(&server, &admin, user.id.clone()).await;
    let (done, proof) = completed_with_proof(&server, &admin, &cascade).await;
    receipt_verifies(&server, &admin, &done, &proof).await;
    assert_eq!(done.scope_kind, "user");
    assert_eq!(done.scope_id, user.id);
    assert_eq!(services(&done), Service::ALL.to_vec());
    all_done(&done);
    server.stop().await;
}

async fn p08_a_tenant_deletion_is_attested_by_all_five_services(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let operator = server.token("op", None, &[Role::Operator]);
    let cascade = perm::account_service_client::AccountServiceClient::new(server.channel().await)
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
    // The tenant's own tokens are worth nothing once it is gone: the operator follows it.
    let (done, proof) = completed_with_proof(&server, &operator, &cascade).await;
    receipt_verifies(&server, &operator, &done, &proof).await;
    assert_eq!(done.scope_kind, "tenant");
    assert_eq!(done.scope_id, tenant.to_string());
    assert_eq!(services(&done), Service::ALL.to_vec());
    all_done(&done);
    server.stop().await;
}

async fn the_ledger_is_read_by_admins_of_its_tenant_and_operators(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let user = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let cascade = delete_user(&server, &admin, user.id).await;
    completed(&server, &admin, &cascade).await;
    let mut client = retention(&server).await;
    let get = |token: String, id: String| {
        let mut client = client.clone();
        async move {
            client
                .get_cascade(authed(pb::GetCascadeRequest { cascade_id: id }, &token))
                .await
                .map(|_| ())
                .unwrap_err()
        }
    };
    // A member may not read the ledger.
    let member = server.token("someone", Some(tenant), &[Role::Member]);
    assert_eq!(
        get(member, cascade.clone()).await.code(),
        Code::PermissionDenied
    );
    // Another tenant's admin does not learn it exists.
    let (_, other) = server.create_tenant("Other").await;
    assert_eq!(
        get(other.clone(), cascade.clone()).await.code(),
        Code::NotFound
    );
    // Bad input names the field.
    let err = get(admin.clone(), "not-a-uuid".into()).await;
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("cascade_id"), "{err:?}");
    let err = client
        .list_cascades(authed(
            pb::ListCascadesRequest {
                page_size: 5000,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("page_size"), "{err:?}");
    let err = client
        .list_cascades(authed(
            pb::ListCascadesRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert!(err.message().contains("page_token"), "{err:?}");
    // The other tenant's listing is empty.
    let listed = client
        .list_cascades(authed(pb::ListCascadesRequest::default(), &other))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.cascades.is_empty());
    server.stop().await;
}

/// P18: every step of a cascade is in retention's hash-chained audit log — opened, each
/// part, complete with its receipt — and a changed entry breaks the chain.
async fn p18_retention_audits_every_cascade_step_and_detects_tampering(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let server = TestServer::start(backend).await;
    let (_, admin) = server.create_tenant("Acme").await;
    let user = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let cascade = delete_user(&server, &admin, user.id).await;
    completed(&server, &admin, &cascade).await;
    let operator = server.token("op", None, &[Role::Operator]);
    let events = common::audit_events(&server, Service::Retention, &operator).await;
    let steps: Vec<&str> = events
        .iter()
        .filter(|e| e.subject_id == cascade)
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(steps.first(), Some(&"cascade.open"), "{steps:?}");
    assert_eq!(steps.last(), Some(&"cascade.complete"), "{steps:?}");
    assert_eq!(
        steps.iter().filter(|s| **s == "cascade.part").count(),
        5,
        "{steps:?}"
    );
    // No personal data in the log.
    assert!(
        events
            .iter()
            .all(|e| !e.details.contains("acme.example") && !e.details.contains("Lovelace")),
        "{events:?}"
    );

    let before = common::audit_chain(&server, Service::Retention, &operator).await;
    assert!(before.intact, "{before:?}");
    assert!(before.entries_checked >= 7, "{before:?}");
    let second = events[1].sequence;
    server
        .service_db(Service::Retention)
        .await
        .execute_unprepared(&format!(
            "UPDATE audit_log SET details = 'nothing happened' WHERE seq = {second}"
        ))
        .await
        .unwrap();
    let after = common::audit_chain(&server, Service::Retention, &operator).await;
    assert!(!after.intact);
    assert_eq!(after.first_broken_sequence, second);
    server.stop().await;
}

/// P09 over gRPC: a tenant nobody uses is warned 60, 30, 7 and 1 days before its year is
/// up, each once, then erased in every service by a cascade of kind `inactivity` with a
/// verifying receipt; only an operator runs the clock forward.
async fn p09_an_inactive_tenant_is_warned_then_erased_everywhere(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let user = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let mut client = retention(&server).await;
    let now = chrono::Utc::now();
    client
        .record_activity(authed(
            pb::RecordActivityRequest {
                user_id: user.id.clone(),
                at: Some(prost_types::Timestamp {
                    seconds: now.timestamp(),
                    nanos: 0,
                }),
            },
            &admin,
        ))
        .await
        .unwrap();
    let policy = client
        .get_policy(authed(pb::GetPolicyRequest {}, &admin))
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    assert_eq!(
        (policy.inactivity_days, policy.warning_days.clone()),
        (365, vec![60, 30, 7, 1])
    );
    let err = client
        .set_policy(authed(
            pb::SetPolicyRequest {
                policy: Some(pb::Policy {
                    inactivity_days: 5,
                    ..policy.clone()
                }),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("policy.inactivity_days"), "{err:?}");

    let at = |days: f64| {
        let t = now + chrono::Duration::seconds((days * 86_400.0) as i64);
        Some(prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        })
    };
    // A tenant admin may not run the clock forward.
    let err = client
        .run_sweep(authed(pb::RunSweepRequest { as_of: at(400.0) }, &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("as_of"), "{err:?}");

    let operator = server.token("op", None, &[Role::Operator]);
    let mut cascade = None;
    for (days, warnings, expired) in [
        (300.0, 0, 0),
        (305.5, 1, 0),
        (306.0, 0, 0),
        (335.5, 1, 0),
        (358.5, 1, 0),
        (364.5, 1, 0),
        (364.9, 0, 0),
        (365.5, 0, 1),
        (366.0, 0, 0),
    ] {
        let report = client
            .run_sweep(authed(pb::RunSweepRequest { as_of: at(days) }, &operator))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (report.warnings_sent, report.cascade_ids.len()),
            (warnings, expired),
            "day {days}"
        );
        if expired == 1 {
            cascade = report.cascade_ids.first().cloned();
        }
    }
    let cascade = cascade.expect("an expiry");
    let (done, proof) = completed_with_proof(&server, &operator, &cascade).await;
    assert_eq!(done.scope_kind, "inactivity");
    assert_eq!(done.scope_id, tenant.to_string());
    assert_eq!(services(&done), Service::ALL.to_vec());
    all_done(&done);
    let permissions = done
        .services
        .iter()
        .find(|s| s.service == Service::Permissions.to_proto() as i32)
        .unwrap();
    assert_eq!(
        permissions.counts.get("accounts"),
        Some(&1),
        "{permissions:?}"
    );
    receipt_verifies(&server, &operator, &done, &proof).await;
    // Gone everywhere: the account is not found, and no more is swept.
    let err = perm::account_service_client::AccountServiceClient::new(server.channel().await)
        .get_user(authed(perm::GetUserRequest { user_id: user.id }, &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let report = client
        .run_sweep(authed(pb::RunSweepRequest { as_of: at(800.0) }, &operator))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((report.warnings_sent, report.cascade_ids.len()), (0, 0));
    server.stop().await;
}

/// When retention last saw `user` act, if it has.
async fn last_active(server: &TestServer, user: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use sea_orm::{ConnectionTrait, Statement};
    let db = server.service_db(Service::Retention).await;
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            match db.get_database_backend() {
                sea_orm::DbBackend::Postgres => {
                    "SELECT last_active_at FROM account_activity WHERE user_id = $1"
                }
                _ => "SELECT last_active_at FROM account_activity WHERE user_id = ?",
            },
            [user.into()],
        ))
        .await
        .unwrap()?;
    row.try_get("", "last_active_at").ok()
}

/// Whether retention sees `user` active after `after` (or at all, for `None`) within
/// 30 seconds.
async fn seen_active_after(
    server: &TestServer,
    user: &str,
    after: Option<chrono::DateTime<chrono::Utc>>,
) -> bool {
    eventually(Duration::from_secs(30), || async {
        last_active(server, user)
            .await
            .is_some_and(|at| after.is_none_or(|after| at > after))
    })
    .await
}

/// P09: people using the product keep their tenant alive — a member's read reaches
/// retention's inactivity clock (storage reports it, once a day), and so does an
/// admin's work on accounts (permissions reports it).
async fn p09_a_members_reads_move_the_inactivity_clock(backend: Backend) {
    use mindmesh_proto::mindmesh::storage::v1 as storage;
    let server = TestServer::start(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let user = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    assert!(
        seen_active_after(&server, &user.id, None).await,
        "the account's creation never reached retention"
    );
    let created = last_active(&server, &user.id).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let member = server.token(&user.id, Some(tenant), &[Role::Member]);
    storage::storage_service_client::StorageServiceClient::new(server.channel().await)
        .list_documents(authed(storage::ListDocumentsRequest::default(), &member))
        .await
        .unwrap();
    assert!(
        seen_active_after(&server, &user.id, created).await,
        "the read never reached retention"
    );
    // An admin managing accounts is activity too (permissions reports it).
    let read = last_active(&server, &user.id).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let as_admin = server.token(&user.id, Some(tenant), &[Role::Admin]);
    perm::account_service_client::AccountServiceClient::new(server.channel().await)
        .list_users(authed(perm::ListUsersRequest::default(), &as_admin))
        .await
        .unwrap();
    assert!(
        seen_active_after(&server, &user.id, read).await,
        "the admin's work never reached retention"
    );
    server.stop().await;
}

both_modes!(
    p09_a_members_reads_move_the_inactivity_clock,
    p09_an_inactive_tenant_is_warned_then_erased_everywhere,
    p18_retention_audits_every_cascade_step_and_detects_tampering,
    p06_a_disconnect_cascade_completes_with_every_attestation,
    p06_a_user_deletion_is_attested_by_all_five_services,
    p08_a_tenant_deletion_is_attested_by_all_five_services,
    the_ledger_is_read_by_admins_of_its_tenant_and_operators,
);

/// A participant that is down (distributed mode: storage not running): the cascade stays
/// open and names it, is listed as stalled and asked again; once storage runs, it takes
/// the request (and the repeats, as the same cascade) and the cascade completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p06_a_cascade_waits_for_a_participant_that_is_down_and_completes_when_it_is_back() {
    let without_storage = vec![
        Service::Ingest,
        Service::Permissions,
        Service::Retention,
        Service::Dsar,
    ];
    // Where storage will listen once it is back: ingest's peer setting names it.
    let storage_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let storage_url = format!("http://{}", storage_listener.local_addr().unwrap());
    let server = TestServer::start_services(Backend::Distributed, without_storage, |c, addr| {
        c.retention.cascade_stall_after_secs = 1;
        c.peers.storage_url = Some(storage_url);
        // Storage, when back, asks this server's permissions service.
        c.peers.permissions_url = Some(format!("http://{addr}"));
    })
    .await;
    let (_, admin) = server.create_tenant("Acme").await;
    let user = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    let cascade = delete_user(&server, &admin, user.id).await;
    let mut client = retention(&server).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let stalled = loop {
        let answer = client
            .get_cascade(authed(
                pb::GetCascadeRequest {
                    cascade_id: cascade.clone(),
                },
                &admin,
            ))
            .await;
        if let Ok(r) = &answer
            && let Some(c) = &r.get_ref().cascade
            && c.stalled
        {
            break c.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not stalled: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        stalled.waiting_for,
        vec![Service::Storage.to_proto() as i32]
    );
    assert!(stalled.waiting_since.is_some());
    assert_ne!(stalled.state, CascadeState::Done as i32);
    assert!(stalled.receipt.is_none());
    let listed = client
        .list_cascades(authed(
            pb::ListCascadesRequest {
                stalled_only: true,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .cascades
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        vec![cascade.as_str()]
    );
    // Let it be asked again at least once while storage is down.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let storage = server
        .replica_on(storage_listener, vec![Service::Storage])
        .await;
    let (done, proof) = completed_with_proof(&server, &admin, &cascade).await;
    all_done(&done);
    assert_eq!(services(&done), Service::ALL.to_vec());
    receipt_verifies(&server, &admin, &done, &proof).await;
    let listed = client
        .list_cascades(authed(
            pb::ListCascadesRequest {
                stalled_only: true,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.cascades.is_empty());
    storage.stop().await;
    server.stop().await;
}
