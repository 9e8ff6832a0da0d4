//! AccountService over real gRPC on port 0, in embedded mode (SQLite + embedded bus) and
//! distributed mode (PostgreSQL + NATS JetStream): the same tests for both.

use crate::common;
use std::time::Duration;

use crate::common::{Backend, TestServer, authed, eventually};
use mindmesh_kit::Service;
use mindmesh_kit::auth::{Claims, Role};
use mindmesh_kit::ids::UserId;
use mindmesh_proto::mindmesh::audit::v1 as audit;
use mindmesh_proto::mindmesh::permissions::v1 as pb;
use mindmesh_proto::mindmesh::permissions::v1::account_service_client::AccountServiceClient;
use sea_orm::ConnectionTrait;
use tonic::Code;
use tonic::transport::Channel;

type Client = AccountServiceClient<Channel>;

async fn client(server: &TestServer) -> Client {
    AccountServiceClient::new(server.channel().await)
}

fn new_user(first: &str, last: &str, email: &str) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        first_name: first.into(),
        last_name: last.into(),
        email: email.into(),
        picture_url: "https://cdn.example.com/p/1.png".into(),
    }
}

async fn happy_path(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = client(&server).await;
    let (tenant, admin) = server.create_tenant("Acme").await;

    let got = c
        .get_tenant(authed(pb::GetTenantRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.tenant.unwrap().name, "Acme");

    let created = c
        .create_user(authed(
            new_user("Ada", "Lovelace", "Ada@Example.com"),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(created.first_name, "Ada");
    assert_eq!(created.tenant_id, tenant.to_string());
    let id = created.id.clone();

    let fetched = c
        .get_user(authed(
            pb::GetUserRequest {
                user_id: id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(fetched, created, "what is read is what was written");

    let updated = c
        .update_user(authed(
            pb::UpdateUserRequest {
                user_id: id.clone(),
                last_name: Some("King".into()),
                picture_url: Some(String::new()),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        (
            updated.first_name.as_str(),
            updated.last_name.as_str(),
            updated.picture_url.as_str()
        ),
        ("Ada", "King", "")
    );
    assert_eq!(updated.email, "Ada@Example.com");

    // A user may change their own record; members may read.
    let self_token = server.token(&id, Some(tenant), &[Role::Member]);
    let renamed = c
        .update_user(authed(
            pb::UpdateUserRequest {
                user_id: id.clone(),
                first_name: Some("Augusta".into()),
                ..Default::default()
            },
            &self_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(renamed.first_name, "Augusta");

    // Email uniqueness is case-insensitive.
    let dup = c
        .create_user(authed(
            new_user("Other", "Person", "ada@EXAMPLE.com"),
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);

    // Paging: 5 users, pages of 2, creation order, no duplicates.
    for i in 0..4 {
        c.create_user(authed(
            new_user("User", &format!("N{i}"), &format!("u{i}@example.com")),
            &admin,
        ))
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_users(authed(
                pb::ListUsersRequest {
                    page_size: 2,
                    page_token: token.clone(),
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.users.len() <= 2);
        seen.extend(page.users.into_iter().map(|u| u.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0], id);
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 5);

    let deleted = c
        .delete_user(authed(
            pb::DeleteUserRequest {
                user_id: id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.cascade_id.parse::<uuid::Uuid>().is_ok());
    let gone = c
        .get_user(authed(
            pb::GetUserRequest {
                user_id: id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    // The audit log recorded each step, and its chain verifies.
    let mut audit = audit::audit_client::AuditClient::new(server.channel().await);
    let events = audit
        .list_audit_events(authed(
            audit::ListAuditEventsRequest {
                service: Service::Permissions.to_proto() as i32,
                page_size: 100,
                page_token: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains(&"user.create")
            && actions.contains(&"user.update")
            && actions.contains(&"user.delete"),
        "{actions:?}"
    );
    assert!(
        events.iter().all(|e| e.tenant_id == tenant.to_string()),
        "an admin sees only their tenant's entries"
    );
    for e in &events {
        assert!(
            !e.details.contains("Ada") && !e.details.to_lowercase().contains("example.com"),
            "no personal data in the audit log: {}",
            e.details
        );
    }
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
    assert!(verified.entries_checked >= 8);

    server.stop().await;
}

async fn every_validation_error_names_its_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = client(&server).await;
    let (_, admin) = server.create_tenant("Acme").await;
    let long = "x".repeat(101);
    let cases: Vec<(pb::CreateUserRequest, &str)> = vec![
        (new_user("", "L", "a@example.com"), "first_name"),
        (new_user(&long, "L", "a@example.com"), "first_name"),
        (new_user("F", "  ", "a@example.com"), "last_name"),
        (new_user("F", &long, "a@example.com"), "last_name"),
        (new_user("F", "L", ""), "email"),
        (new_user("F", "L", "not-an-email"), "email"),
        (new_user("F", "L", "a@b"), "email"),
        (
            new_user("F", "L", &format!("{}@example.com", "a".repeat(250))),
            "email",
        ),
        (
            pb::CreateUserRequest {
                picture_url: "http://insecure.example.com/p.png".into(),
                ..new_user("F", "L", "a@example.com")
            },
            "picture_url",
        ),
        (
            pb::CreateUserRequest {
                picture_url: "javascript:alert(1)".into(),
                ..new_user("F", "L", "a@example.com")
            },
            "picture_url",
        ),
    ];
    for (request, field) in cases {
        let status = c.create_user(authed(request, &admin)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().contains(field),
            "{field}: {}",
            status.message()
        );
    }
    for (request, field) in [
        (
            pb::GetUserRequest {
                user_id: String::new(),
            },
            "user_id",
        ),
        (
            pb::GetUserRequest {
                user_id: "123".into(),
            },
            "user_id",
        ),
    ] {
        let status = c.get_user(authed(request, &admin)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(field), "{}", status.message());
    }
    let status = c
        .list_users(authed(
            pb::ListUsersRequest {
                page_size: 5000,
                page_token: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("page_size") && status.message().contains("1000"),
        "{}",
        status.message()
    );
    let status = c
        .list_users(authed(
            pb::ListUsersRequest {
                page_size: 5,
                page_token: "garbage".into(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert!(
        status.message().contains("page_token"),
        "{}",
        status.message()
    );
    let operator = server.token("op", None, &[Role::Operator]);
    let status = c
        .create_tenant(authed(
            pb::CreateTenantRequest { name: " ".into() },
            &operator,
        ))
        .await
        .unwrap_err();
    assert!(
        status.code() == Code::InvalidArgument && status.message().contains("name"),
        "{status:?}"
    );
    let status = c
        .create_tenant(authed(
            pb::CreateTenantRequest {
                name: "x".repeat(201),
            },
            &operator,
        ))
        .await
        .unwrap_err();
    assert!(
        status.code() == Code::InvalidArgument && status.message().contains("200"),
        "{status:?}"
    );
    // Beyond the message size limit: RESOURCE_EXHAUSTED, naming the limit.
    let huge = new_user(&"x".repeat(5 * 1024 * 1024), "L", "huge@example.com");
    let status = c.create_user(authed(huge, &admin)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("limit"), "{}", status.message());
    // Nothing invalid was stored.
    let listed = c
        .list_users(authed(pb::ListUsersRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.users.is_empty());
    server.stop().await;
}

async fn tenant_isolation_and_roles(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = client(&server).await;
    let (tenant_a, admin_a) = server.create_tenant("A").await;
    let (tenant_b, admin_b) = server.create_tenant("B").await;
    let user_b = c
        .create_user(authed(new_user("Bo", "B", "bo@b.example"), &admin_b))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();

    // A's admin cannot see, change or delete B's user, and learns nothing of its existence.
    let status = c
        .get_user(authed(
            pb::GetUserRequest {
                user_id: user_b.id.clone(),
            },
            &admin_a,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let unknown = c
        .get_user(authed(
            pb::GetUserRequest {
                user_id: UserId::new().to_string(),
            },
            &admin_a,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        unknown.message(),
        status.message(),
        "same answer as for a user that does not exist"
    );
    let status = c
        .update_user(authed(
            pb::UpdateUserRequest {
                user_id: user_b.id.clone(),
                first_name: Some("X".into()),
                ..Default::default()
            },
            &admin_a,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = c
        .delete_user(authed(
            pb::DeleteUserRequest {
                user_id: user_b.id.clone(),
            },
            &admin_a,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = c
        .get_tenant(authed(
            pb::GetTenantRequest {
                tenant_id: tenant_b.to_string(),
            },
            &admin_a,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        c.list_users(authed(pb::ListUsersRequest::default(), &admin_a))
            .await
            .unwrap()
            .into_inner()
            .users
            .is_empty()
    );
    // B's user is intact.
    let still = c
        .get_user(authed(
            pb::GetUserRequest {
                user_id: user_b.id.clone(),
            },
            &admin_b,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(still.first_name, "Bo");

    // Roles: members do not administer; admins do not create tenants; staff need consent.
    let member = server.token("m", Some(tenant_a), &[Role::Member]);
    assert_eq!(
        c.create_user(authed(new_user("M", "M", "m@a.example"), &member))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        c.create_tenant(authed(
            pb::CreateTenantRequest { name: "C".into() },
            &admin_a
        ))
        .await
        .unwrap_err()
        .code(),
        Code::PermissionDenied
    );
    let staff = server.token("s", Some(tenant_b), &[Role::StaffEngineer]);
    assert_eq!(
        c.get_user(authed(
            pb::GetUserRequest {
                user_id: user_b.id.clone()
            },
            &staff
        ))
        .await
        .unwrap_err()
        .code(),
        Code::PermissionDenied
    );
    let other_member = server.token(&UserId::new().to_string(), Some(tenant_b), &[Role::Member]);
    assert_eq!(
        c.update_user(authed(
            pb::UpdateUserRequest {
                user_id: user_b.id.clone(),
                first_name: Some("X".into()),
                ..Default::default()
            },
            &other_member
        ))
        .await
        .unwrap_err()
        .code(),
        Code::PermissionDenied
    );
    server.stop().await;
}

async fn tokens_are_required_and_checked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = client(&server).await;
    let (tenant, _) = server.create_tenant("Acme").await;

    let status = c
        .list_users(tonic::Request::new(pb::ListUsersRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let now = mindmesh_kit::auth::now_secs();
    let expired = server
        .issuer()
        .issue_claims(&Claims {
            sub: "admin".into(),
            tenant: Some(tenant.to_string()),
            roles: vec!["admin".into()],
            exp: now - 600,
            iat: now - 1200,
            nbf: None,
            iss: "mindmesh".into(),
        })
        .unwrap();
    let status = c
        .list_users(authed(pb::ListUsersRequest::default(), &expired))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"));

    for garbage in ["", "abc", "a.b.c"] {
        let status = c
            .list_users(authed(pb::ListUsersRequest::default(), garbage))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{garbage:?}");
    }
    let mut request = tonic::Request::new(pb::ListUsersRequest::default());
    request
        .metadata_mut()
        .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    assert_eq!(
        c.list_users(request).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // A token signed by someone else's key is rejected.
    let foreign = mindmesh_kit::auth::TokenIssuer::new(
        &mindmesh_kit::crypto::SigningKey::generate().unwrap(),
        "mindmesh",
    )
    .issue(
        "admin",
        Some(tenant),
        &[Role::Admin],
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(
        c.list_users(authed(pb::ListUsersRequest::default(), &foreign))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    server.stop().await;
}

/// CreateUser's event travels through the outbox and the bus to retention, which starts
/// the account's inactivity clock; DeleteUser's event makes retention forget it.
async fn create_user_event_reaches_retention(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = client(&server).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let user = c
        .create_user(authed(new_user("Ada", "L", "ada@example.com"), &admin))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let user_id: UserId = user.id.parse().unwrap();

    let retention =
        mindmesh_retention::activity::Activity::new(server.service_db(Service::Retention).await);
    let seen = eventually(Duration::from_secs(20), || async {
        retention
            .last_active(tenant, user_id)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    assert!(seen, "retention recorded the new account's activity");

    c.delete_user(authed(
        pb::DeleteUserRequest {
            user_id: user.id.clone(),
        },
        &admin,
    ))
    .await
    .unwrap();
    let forgotten = eventually(Duration::from_secs(20), || async {
        retention
            .last_active(tenant, user_id)
            .await
            .unwrap()
            .is_none()
    })
    .await;
    assert!(forgotten, "retention forgot the deleted account");
    server.stop().await;
}

/// Grants `role` staff access to `admin`'s tenant for an hour, with `reason`.
async fn grant_staff(server: &TestServer, admin: &str, role: pb::StaffRole, reason: &str) {
    pb::staff_access_service_client::StaffAccessServiceClient::new(server.channel().await)
        .grant_staff_access(authed(
            pb::GrantStaffAccessRequest {
                role: role as i32,
                reason: reason.into(),
                expires_at: Some(prost_types::Timestamp {
                    seconds: i64::try_from(mindmesh_kit::auth::now_secs()).unwrap() + 3600,
                    nanos: 0,
                }),
            },
            admin,
        ))
        .await
        .unwrap();
}

/// P01: a user's email and names, the tenant's name and the reasons given for staff
/// access never reach the database in plaintext.
async fn p01_personal_fields_are_not_stored_in_plaintext(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = client(&server).await;
    let (tenant, admin) = server.create_tenant("AcmeCanaryTenant").await;
    let canary_first = "Zqxfirstcanary";
    let canary_last = "Zqxlastcanary";
    let canary_email = "zqx.canary.person@canary-domain.example";
    let user = c
        .create_user(authed(
            new_user(canary_first, canary_last, canary_email),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    c.update_user(authed(
        pb::UpdateUserRequest {
            user_id: user.id.clone(),
            last_name: Some(format!("{canary_last}2")),
            ..Default::default()
        },
        &admin,
    ))
    .await
    .unwrap();
    // The round trip works, so the data is there, sealed.
    let read = c
        .get_user(authed(pb::GetUserRequest { user_id: user.id }, &admin))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(read.email, canary_email);

    // The tenant's name and an admin's reason for staff access describe the customer.
    grant_staff(
        &server,
        &admin,
        pb::StaffRole::Support,
        "Zqxreasoncanary ticket",
    )
    .await;
    let mut staff =
        pb::staff_access_service_client::StaffAccessServiceClient::new(server.channel().await);
    let listed = staff
        .list_staff_access(authed(pb::ListStaffAccessRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner()
        .grants;
    assert_eq!(
        listed[0].reason, "Zqxreasoncanary ticket",
        "opened for the proof"
    );
    let got = c
        .get_tenant(authed(pb::GetTenantRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(got.name, "AcmeCanaryTenant");

    let at_rest = common::at_rest(&server).await;
    let scanned: usize = at_rest.iter().map(|(_, b)| b.len()).sum();
    assert!(scanned > 1_000, "the scan read the databases");
    assert!(
        !common::where_stored(&at_rest, &tenant.to_string()).is_empty(),
        "the scanner finds what is stored in the clear (ids)"
    );
    for canary in [
        canary_first,
        canary_last,
        canary_email,
        "canary-domain",
        "Zqxfirst",
        "AcmeCanaryTenant",
        "Zqxreasoncanary",
    ] {
        assert_eq!(
            common::where_stored(&at_rest, canary),
            Vec::<String>::new(),
            "{canary} in plaintext"
        );
    }
    server.stop().await;
}

/// P01: what a version before sealed records kept in the clear — a tenant's name, a
/// staff-access reason — is sealed when the service starts, and still reads the same.
async fn p01_tenant_records_an_older_version_kept_in_the_clear_are_sealed(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let (tenant, admin) = server.create_tenant("Zqxoldtenant").await;
    grant_staff(&server, &admin, pb::StaffRole::Engineer, "Zqxoldreason").await;
    let db = server.service_db(Service::Permissions).await;
    for sql in [
        format!("UPDATE tenants SET name = 'Zqxoldtenant', name_ct = NULL WHERE id = '{tenant}'"),
        format!(
            "UPDATE staff_grants SET reason = 'Zqxoldreason', reason_ct = NULL \
             WHERE tenant_id = '{tenant}'"
        ),
    ] {
        db.execute_unprepared(&sql).await.unwrap();
    }
    drop(db);
    let before = common::at_rest(&server).await;
    assert!(!common::where_stored(&before, "Zqxoldtenant").is_empty());

    server.restart().await;
    let mut c = client(&server).await;
    let got = c
        .get_tenant(authed(pb::GetTenantRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(got.name, "Zqxoldtenant");
    let mut staff =
        pb::staff_access_service_client::StaffAccessServiceClient::new(server.channel().await);
    let grants = staff
        .list_staff_access(authed(pb::ListStaffAccessRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner()
        .grants;
    assert_eq!(grants[0].reason, "Zqxoldreason");
    let after = common::at_rest(&server).await;
    for canary in ["Zqxoldtenant", "Zqxoldreason"] {
        assert_eq!(
            common::where_stored(&after, canary),
            Vec::<String>::new(),
            "{canary} is left in the clear"
        );
    }
    server.stop().await;
}

/// P04: an account is first name, last name, email and picture — nothing more is asked,
/// returned or stored about the person.
async fn p04_an_account_holds_four_personal_fields(backend: Backend) {
    use prost::Message;
    let server = TestServer::start(backend).await;
    let mut c = client(&server).await;
    let (_, admin) = server.create_tenant("Acme").await;
    let user = c
        .create_user(authed(
            new_user("Ada", "Lovelace", "ada@example.com"),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    // The wire form: exactly the four personal fields plus ids and times.
    let mut fields: Vec<u32> = Vec::new();
    let bytes = user.encode_to_vec();
    let mut buf = bytes.as_slice();
    while !buf.is_empty() {
        let (tag, wire_type) = prost::encoding::decode_key(&mut buf).unwrap();
        fields.push(tag);
        prost::encoding::skip_field(
            wire_type,
            tag,
            &mut buf,
            prost::encoding::DecodeContext::default(),
        )
        .unwrap();
    }
    assert_eq!(
        fields,
        vec![1, 2, 3, 4, 5, 6, 7, 8],
        "id, tenant_id, first_name, last_name, email, picture_url, created_at, updated_at"
    );
    // The stored form: the same four, sealed, and nothing else personal.
    let db = server.service_db(Service::Permissions).await;
    let columns: Vec<String> = match backend {
        Backend::Embedded => db
            .query_all_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Sqlite, "SELECT name FROM pragma_table_info('users')"))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<String>("", "name").unwrap())
            .collect(),
        Backend::Distributed => db
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT column_name AS name FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position",
            ))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<String>("", "name").unwrap())
            .collect(),
    };
    let personal: Vec<&str> = columns
        .iter()
        .map(String::as_str)
        .filter(|c| c.ends_with("_ct"))
        .collect();
    assert_eq!(
        personal,
        vec![
            "first_name_ct",
            "last_name_ct",
            "email_ct",
            "picture_url_ct"
        ],
        "{columns:?}"
    );
    server.stop().await;
}

/// P18: tampering with a stored audit entry breaks the chain at that entry.
async fn p18_audit_chain_detects_tampering(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = client(&server).await;
    let (_, admin) = server.create_tenant("Acme").await;
    for i in 0..3 {
        c.create_user(authed(
            new_user("U", "V", &format!("u{i}@example.com")),
            &admin,
        ))
        .await
        .unwrap();
    }
    let operator = server.token("op", None, &[Role::Operator]);
    let mut audit = audit::audit_client::AuditClient::new(server.channel().await);
    let verify = |token: String| {
        let mut audit = audit.clone();
        async move {
            audit
                .verify_audit_chain(authed(
                    audit::VerifyAuditChainRequest {
                        service: Service::Permissions.to_proto() as i32,
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let before = verify(operator.clone()).await;
    assert!(before.intact && before.entries_checked == 4, "{before:?}");

    let db = server.service_db(Service::Permissions).await;
    db.execute_unprepared("UPDATE audit_log SET action = 'user.read' WHERE seq = 3")
        .await
        .unwrap();
    let after = verify(operator.clone()).await;
    assert!(!after.intact);
    assert_eq!(after.first_broken_sequence, 3);

    // Asking for a service that does not run here is an error, not an empty answer.
    let status = audit
        .verify_audit_chain(authed(
            audit::VerifyAuditChainRequest { service: 0 },
            &operator,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    server.stop().await;
}

/// P02/P05: the email links an account to source identities, so it is a credential. A
/// member who sets their own email to that of a source principal without an account
/// (Carol, sole reader of a file) gains nothing: self-service email changes are refused
/// on every path that can set one (update, create, rectification), other roles whose
/// token happens to carry the user's id may not change the user at all, and only the
/// tenant's admin sets an email.
async fn p05_no_account_gains_a_source_identity_by_an_unproven_email(backend: Backend) {
    use mindmesh_proto::mindmesh::ingest::v1 as ingest;
    use mindmesh_proto::mindmesh::storage::v1 as storage;
    use mindmesh_proto::mindmesh::subject::v1 as subject;

    let root = tempfile::tempdir().unwrap();
    let folders = root.path().to_path_buf();
    let server =
        TestServer::start_with(backend, move |c| c.ingest.local_folder_root = Some(folders)).await;
    let mut c = client(&server).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let dir = root.path().join(tenant.to_string()).join("team");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("carol-only.md"), "for carol's eyes").unwrap();
    std::fs::write(dir.join("shared.md"), "for alice").unwrap();
    std::fs::write(
        dir.join("mindmesh-acl.json"),
        serde_json::json!({
            "users": [
                {"id": "alice", "email": "alice@acme.example"},
                {"id": "carol", "email": "carol@acme.example"}
            ],
            "grants": [
                {"path": "carol-only.md", "to": "user:carol", "role": "reader"},
                {"path": "shared.md", "to": "user:alice", "role": "reader"}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let alice = c
        .create_user(authed(new_user("Alice", "A", "alice@acme.example"), &admin))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let alice_token = server.token(&alice.id, Some(tenant), &[Role::Member]);
    let mut ingest_client =
        ingest::ingest_service_client::IngestServiceClient::new(server.channel().await);
    let integration = common::ingest::connect_folder(&mut ingest_client, &admin, "Team", "team")
        .await
        .unwrap();
    common::ingest::sync_ok(&mut ingest_client, &admin, &integration.id, false).await;
    let service = server.token("ingest", Some(tenant), &[Role::Service]);
    let carol_only = common::ingest::readable(&server, &service)
        .await
        .into_iter()
        .find(|d| d.title == "carol-only.md")
        .unwrap()
        .id;
    let docs = storage::storage_service_client::StorageServiceClient::new(server.channel().await);
    let get = |token: String| {
        let mut docs = docs.clone();
        let id = carol_only.clone();
        async move {
            docs.get_document(authed(
                storage::GetDocumentRequest {
                    document_id: id,
                    ..Default::default()
                },
                &token,
            ))
            .await
        }
    };
    assert_eq!(
        get(alice_token.clone()).await.unwrap_err().code(),
        Code::NotFound
    );

    // Update: a member may rename themself, not re-point their email.
    let status = c
        .update_user(authed(
            pb::UpdateUserRequest {
                user_id: alice.id.clone(),
                email: Some("carol@acme.example".into()),
                ..Default::default()
            },
            &alice_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("email"), "{}", status.message());
    let renamed = c
        .update_user(authed(
            pb::UpdateUserRequest {
                user_id: alice.id.clone(),
                first_name: Some("Alicia".into()),
                ..Default::default()
            },
            &alice_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        (renamed.first_name.as_str(), renamed.email.as_str()),
        ("Alicia", "alice@acme.example")
    );
    assert_eq!(
        get(alice_token.clone()).await.unwrap_err().code(),
        Code::NotFound
    );

    // Tokens whose `sub` is Alice's id but that are not Alice as a member, nor an admin.
    for roles in [
        &[Role::Operator][..],
        &[Role::StaffAnalyst],
        &[Role::StaffEngineer],
        &[Role::Service],
    ] {
        let token = server.token(&alice.id, Some(tenant), roles);
        let status = c
            .update_user(authed(
                pb::UpdateUserRequest {
                    user_id: alice.id.clone(),
                    last_name: Some("Changed".into()),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{roles:?}: {status:?}"
        );
    }

    // Create: members create no accounts, with Carol's email or any other.
    let status = c
        .create_user(authed(
            new_user("Carol", "C", "carol@acme.example"),
            &alice_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Rectification: a member may not ask it directly, and a data-subject request
    // carried out by dsar cannot re-point an email that nobody proved.
    let mut subjects = subject::subject_data_client::SubjectDataClient::new(server.channel().await);
    let rectify = |token: &str| {
        authed(
            subject::RectifyRequest {
                service: Service::Permissions.to_proto() as i32,
                subject_email: "alice@acme.example".into(),
                request_id: "req-1".into(),
                email: Some("carol@acme.example".into()),
                ..Default::default()
            },
            token,
        )
    };
    let status = subjects.rectify(rectify(&alice_token)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let dsar = server.token("dsar", Some(tenant), &[Role::Service]);
    let status = subjects.rectify(rectify(&dsar)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("email"), "{}", status.message());
    assert_eq!(
        get(alice_token.clone()).await.unwrap_err().code(),
        Code::NotFound
    );
    let read = c
        .get_user(authed(
            pb::GetUserRequest {
                user_id: alice.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        read.email, "alice@acme.example",
        "no path changed the email"
    );

    // The tenant's admin is the authority on who an account is: an email set by them
    // links (here Alice is, in truth, the person the source calls Carol).
    c.update_user(authed(
        pb::UpdateUserRequest {
            user_id: alice.id.clone(),
            email: Some("carol@acme.example".into()),
            ..Default::default()
        },
        &admin,
    ))
    .await
    .unwrap();
    assert_eq!(
        get(alice_token.clone()).await.unwrap().into_inner().content,
        b"for carol's eyes"
    );
    server.stop().await;
}

both_modes!(
    p05_no_account_gains_a_source_identity_by_an_unproven_email,
    happy_path,
    every_validation_error_names_its_field,
    tenant_isolation_and_roles,
    tokens_are_required_and_checked,
    create_user_event_reaches_retention,
    p01_personal_fields_are_not_stored_in_plaintext,
    p01_tenant_records_an_older_version_kept_in_the_clear_are_sealed,
    p18_audit_chain_detects_tampering,
    p04_an_account_holds_four_personal_fields,
);
