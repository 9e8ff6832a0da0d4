//! P11 over real gRPC in both modes: staff reach a tenant's data only under an active,
//! recorded consent from its admin; analysts see pseudonyms only; revocation and expiry
//! end access; grants, revocations and every staff access are in the audit log.

use std::time::Duration;

use crate::common::{Backend, TestServer, authed, eventually};
use mindmesh_kit::Service;
use mindmesh_kit::auth::Role;
use mindmesh_kit::grpc::timestamp;
use mindmesh_kit::ids::TenantId;
use mindmesh_proto::mindmesh::audit::v1 as audit;
use mindmesh_proto::mindmesh::permissions::v1 as pb;
use tonic::Code;

async fn tenant_with_user(server: &TestServer, name: &str) -> (TenantId, String, String) {
    let (tenant, admin) = server.create_tenant(name).await;
    let user = server
        .create_user(&admin, "Ada", "Lovelace", "ada@acme.example")
        .await;
    (tenant, admin, user.id)
}

fn grant_request(role: pb::StaffRole, reason: &str, in_secs: i64) -> pb::GrantStaffAccessRequest {
    pb::GrantStaffAccessRequest {
        role: role as i32,
        reason: reason.into(),
        expires_at: Some(timestamp(
            chrono::Utc::now() + chrono::Duration::milliseconds(in_secs * 1000),
        )),
    }
}

async fn p11_staff_need_recorded_consent(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (tenant, admin, user_id) = tenant_with_user(&server, "Acme").await;
    let channel = server.channel().await;
    let accounts = pb::account_service_client::AccountServiceClient::new(channel.clone());
    let mut staff = pb::staff_access_service_client::StaffAccessServiceClient::new(channel.clone());
    let engineer = server.token("eng-7", Some(tenant), &[Role::StaffEngineer]);
    let analyst = server.token("ana-3", Some(tenant), &[Role::StaffAnalyst]);
    let get = |token: String| {
        let mut accounts = accounts.clone();
        let user_id = user_id.clone();
        async move {
            accounts
                .get_user(authed(pb::GetUserRequest { user_id }, &token))
                .await
        }
    };

    // No consent: nothing.
    assert_eq!(
        get(engineer.clone()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        get(analyst.clone()).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // Consent for engineers: engineers see the record, analysts still nothing.
    let grant = staff
        .grant_staff_access(authed(
            grant_request(pb::StaffRole::Engineer, "TICKET-1042: login loop", 3600),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .grant
        .unwrap();
    assert_eq!(grant.granted_by, "admin-1");
    let seen = get(engineer.clone())
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(seen.first_name, "Ada");
    assert_eq!(
        get(analyst.clone()).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // Analysts, once admitted, get a stable pseudonym and nothing personal.
    staff
        .grant_staff_access(authed(
            grant_request(pb::StaffRole::Analyst, "quarterly usage study", 3600),
            &admin,
        ))
        .await
        .unwrap();
    let first = get(analyst.clone())
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let again = get(analyst.clone())
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_ne!(first.id, user_id);
    assert_eq!(first.id, again.id, "pseudonyms are stable");
    assert!(first.first_name.is_empty() && first.last_name.is_empty() && first.email.is_empty());
    let listed = accounts
        .clone()
        .list_users(authed(pb::ListUsersRequest::default(), &analyst))
        .await
        .unwrap()
        .into_inner()
        .users;
    assert!(listed.iter().all(|u| u.email.is_empty() && u.id != user_id));

    // Revocation ends access at once.
    let revoked = staff
        .revoke_staff_access(authed(
            pb::RevokeStaffAccessRequest {
                grant_id: grant.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .grant
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(
        get(engineer.clone()).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // Expiry ends access too.
    let support = server.token("sup-1", Some(tenant), &[Role::StaffSupport]);
    staff
        .grant_staff_access(authed(
            grant_request(pb::StaffRole::Support, "short look", 2),
            &admin,
        ))
        .await
        .unwrap();
    assert!(get(support.clone()).await.is_ok());
    let expired = eventually(Duration::from_secs(10), || {
        let support = support.clone();
        let get = &get;
        async move {
            get(support)
                .await
                .is_err_and(|s| s.code() == Code::PermissionDenied)
        }
    })
    .await;
    assert!(expired, "an expired grant still admitted support");

    // The proof of consent: active grants, or all of them.
    let active = staff
        .list_staff_access(authed(
            pb::ListStaffAccessRequest {
                include_inactive: false,
                page_size: 0,
                page_token: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .grants;
    assert_eq!(active.len(), 1, "only the analyst grant is active");
    let all = staff
        .list_staff_access(authed(
            pb::ListStaffAccessRequest {
                include_inactive: true,
                page_size: 2,
                page_token: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.grants.len(), 2);
    assert!(!all.next_page_token.is_empty());
    let rest = staff
        .list_staff_access(authed(
            pb::ListStaffAccessRequest {
                include_inactive: true,
                page_size: 2,
                page_token: all.next_page_token,
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .grants;
    assert_eq!(rest.len(), 1);
    assert_eq!(
        rest[0].id, grant.id,
        "newest first: the first grant comes last"
    );

    // Every grant, revocation and staff access is audited, and the chain holds.
    let mut audit = audit::audit_client::AuditClient::new(channel);
    let events = audit
        .list_audit_events(authed(
            audit::ListAuditEventsRequest {
                service: Service::Permissions.to_proto() as i32,
                page_size: 1000,
                page_token: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let count = |action: &str| events.iter().filter(|e| e.action == action).count();
    assert_eq!(count("staff_access.grant"), 3);
    assert_eq!(count("staff_access.revoke"), 1);
    assert!(
        count("staff.get_user") >= 4,
        "each admitted staff read is recorded"
    );
    assert!(
        events
            .iter()
            .any(|e| e.actor == "ana-3" && e.actor_roles == vec!["staff:analyst".to_owned()])
    );
    // Staff cannot read the audit log themselves, even with consent: the admin shows it.
    let engineer_reads = audit
        .list_audit_events(authed(
            audit::ListAuditEventsRequest {
                service: Service::Permissions.to_proto() as i32,
                page_size: 10,
                page_token: String::new(),
            },
            &server.token("eng-7", Some(tenant), &[Role::StaffEngineer]),
        ))
        .await
        .unwrap_err();
    assert_eq!(engineer_reads.code(), Code::PermissionDenied);
    let verified = audit
        .verify_audit_chain(authed(
            audit::VerifyAuditChainRequest {
                service: Service::Permissions.to_proto() as i32,
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(verified.intact);
    server.stop().await;
}

async fn consent_is_per_tenant_and_validated(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (tenant_a, admin_a, user_a) = tenant_with_user(&server, "A").await;
    let (_tenant_b, admin_b, _) = tenant_with_user(&server, "B").await;
    let channel = server.channel().await;
    let mut staff = pb::staff_access_service_client::StaffAccessServiceClient::new(channel.clone());
    let mut accounts = pb::account_service_client::AccountServiceClient::new(channel);
    // B consents; that admits nobody to A.
    staff
        .grant_staff_access(authed(
            grant_request(pb::StaffRole::Engineer, "B's ticket", 3600),
            &admin_b,
        ))
        .await
        .unwrap();
    let engineer_in_a = server.token("eng-7", Some(tenant_a), &[Role::StaffEngineer]);
    let status = accounts
        .get_user(authed(
            pb::GetUserRequest { user_id: user_a },
            &engineer_in_a,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    for (request, field) in [
        (
            grant_request(pb::StaffRole::Engineer, "   ", 3600),
            "reason",
        ),
        (
            grant_request(pb::StaffRole::Engineer, &"x".repeat(501), 3600),
            "reason",
        ),
        (
            grant_request(pb::StaffRole::Engineer, "why", -10),
            "expires_at",
        ),
        (
            grant_request(pb::StaffRole::Engineer, "why", 91 * 86_400),
            "expires_at",
        ),
        (
            grant_request(pb::StaffRole::Unspecified, "why", 3600),
            "role",
        ),
        (
            pb::GrantStaffAccessRequest {
                role: 1,
                reason: "why".into(),
                expires_at: None,
            },
            "expires_at",
        ),
    ] {
        let status = staff
            .grant_staff_access(authed(request, &admin_a))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert!(
            status.message().contains(field),
            "{field}: {}",
            status.message()
        );
    }
    let member = server.token("m", Some(tenant_a), &[Role::Member]);
    let status = staff
        .grant_staff_access(authed(
            grant_request(pb::StaffRole::Engineer, "why", 3600),
            &member,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = staff
        .revoke_staff_access(authed(
            pb::RevokeStaffAccessRequest {
                grant_id: uuid::Uuid::now_v7().to_string(),
            },
            &admin_a,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    server.stop().await;
}

both_modes!(
    p11_staff_need_recorded_consent,
    consent_is_per_tenant_and_validated
);
