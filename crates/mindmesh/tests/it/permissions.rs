//! PermissionsService over real gRPC, in embedded mode (SQLite + embedded bus) and
//! distributed mode (PostgreSQL + NATS JetStream): source ACLs preserved exactly (P02),
//! one reader across integrations by email (P05), revocations never served stale, and
//! the disconnect cascade handler.

use crate::common;
use std::time::Duration;

use crate::common::{Backend, TestServer, authed};
use mindmesh_kit::Service;
use mindmesh_kit::auth::Role;
use mindmesh_kit::ids::{DocumentId, IntegrationId, TenantId};
use mindmesh_proto::mindmesh::permissions::v1 as pb;
use pb::permissions_service_client::PermissionsServiceClient;
use tonic::Code;
use tonic::transport::Channel;

type Client = PermissionsServiceClient<Channel>;

/// A tenant with three accounts, one integration synced, and five documents.
struct Scene {
    tenant: TenantId,
    admin: String,
    service: String,
    ada: String,
    bob: String,
    eve: String,
    drive: IntegrationId,
    docs: Vec<DocumentId>,
}

fn user(id: &str, email: &str) -> pb::PrincipalUser {
    pb::PrincipalUser {
        external_id: id.into(),
        email: email.into(),
        display_name: format!("{id} name"),
    }
}
fn group(id: &str) -> pb::PrincipalGroup {
    pb::PrincipalGroup {
        external_id: id.into(),
        email: String::new(),
        name: format!("{id} group"),
    }
}
fn member(group: &str, member: &str, is_group: bool) -> pb::Membership {
    pb::Membership {
        group_external_id: group.into(),
        member_external_id: member.into(),
        member_is_group: is_group,
    }
}
fn grant(kind: pb::GranteeKind, grantee: &str) -> pb::Grant {
    pb::Grant {
        grantee_kind: kind as i32,
        grantee: grantee.into(),
        role: pb::Role::Reader as i32,
    }
}
fn acl(doc: DocumentId, integration: IntegrationId, grants: Vec<pb::Grant>) -> pb::DocumentAcl {
    pb::DocumentAcl {
        document_id: doc.to_string(),
        integration_id: integration.to_string(),
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
        let u = server.create_user(&admin, first, "X", email).await;
        ids.push(u.id);
    }
    let service = server.token("ingest", Some(tenant), &[Role::Service]);
    let drive = server.integration(tenant, &admin).await;
    let mut c = PermissionsServiceClient::new(channel);
    c.sync_principals(authed(
        pb::SyncPrincipalsRequest {
            integration_id: drive.to_string(),
            users: vec![
                user("d-ada", "Ada@Acme.example"),
                user("d-bob", "bob@acme.example"),
                user("d-eve", "eve@other.example"),
            ],
            groups: vec![group("eng"), group("backend")],
            memberships: vec![
                member("backend", "d-bob", false),
                member("eng", "backend", true),
            ],
        },
        &service,
    ))
    .await
    .unwrap();
    let docs: Vec<DocumentId> = (0..5).map(|_| DocumentId::new()).collect();
    c.set_document_acls(authed(
        pb::SetDocumentAclsRequest {
            acls: vec![
                acl(docs[0], drive, vec![grant(pb::GranteeKind::User, "d-ada")]),
                acl(docs[1], drive, vec![grant(pb::GranteeKind::Group, "eng")]),
                acl(
                    docs[2],
                    drive,
                    vec![grant(pb::GranteeKind::Domain, "ACME.example")],
                ),
                acl(docs[3], drive, vec![grant(pb::GranteeKind::Anyone, "")]),
                acl(docs[4], drive, vec![]),
            ],
        },
        &service,
    ))
    .await
    .unwrap();
    Scene {
        tenant,
        admin,
        service,
        ada: ids[0].clone(),
        bob: ids[1].clone(),
        eve: ids[2].clone(),
        drive,
        docs,
    }
}

async fn check(c: &mut Client, token: &str, user: &str, doc: DocumentId, at_least: u64) -> bool {
    c.check(authed(
        pb::CheckRequest {
            user_id: user.into(),
            document_id: doc.to_string(),
            at_least_revision: at_least,
        },
        token,
    ))
    .await
    .unwrap()
    .into_inner()
    .allowed
}

/// P02: each person reads exactly what the source grants them — directly, through a
/// nested group, through their domain, or because it is granted to anyone.
async fn p02_source_acls_are_preserved(backend: Backend) {
    let server = TestServer::start(backend).await;
    let s = scene(&server).await;
    let mut c = PermissionsServiceClient::new(server.channel().await);
    let expected = [
        (&s.ada, [true, false, true, true, false]),
        (&s.bob, [false, true, true, true, false]),
        (&s.eve, [false, false, false, true, false]),
    ];
    for (user, row) in &expected {
        for (doc, allowed) in s.docs.iter().zip(row) {
            assert_eq!(
                check(&mut c, &s.service, user, *doc, 0).await,
                *allowed,
                "user {user} doc {doc}"
            );
        }
        let filtered = c
            .filter_readable(authed(
                pb::FilterReadableRequest {
                    user_id: (*user).clone(),
                    document_ids: s.docs.iter().map(|d| d.to_string()).collect(),
                    at_least_revision: 0,
                },
                &s.service,
            ))
            .await
            .unwrap()
            .into_inner()
            .document_ids;
        let want: Vec<String> = s
            .docs
            .iter()
            .zip(row)
            .filter(|(_, a)| **a)
            .map(|(d, _)| d.to_string())
            .collect();
        assert_eq!(filtered, want);
        let mut listed = Vec::new();
        let mut token = String::new();
        loop {
            let page = c
                .list_readable(authed(
                    pb::ListReadableRequest {
                        user_id: (*user).clone(),
                        page_size: 1,
                        page_token: token.clone(),
                        at_least_revision: 0,
                    },
                    &s.service,
                ))
                .await
                .unwrap()
                .into_inner();
            listed.extend(page.document_ids);
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let mut sorted = want.clone();
        sorted.sort();
        assert_eq!(listed, sorted, "list_readable pages in a stable order");
    }
    let batch = c
        .batch_check(authed(
            pb::BatchCheckRequest {
                items: s
                    .docs
                    .iter()
                    .map(|d| pb::CheckItem {
                        user_id: s.bob.clone(),
                        document_id: d.to_string(),
                    })
                    .collect(),
                at_least_revision: 0,
            },
            &s.service,
        ))
        .await
        .unwrap()
        .into_inner()
        .allowed;
    assert_eq!(batch, vec![false, true, true, true, false]);

    // The explanation names the grant and the group path.
    let why = c
        .explain_access(authed(
            pb::ExplainAccessRequest {
                user_id: s.bob.clone(),
                document_id: s.docs[1].to_string(),
                at_least_revision: 0,
            },
            &s.service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(why.allowed);
    assert_eq!(why.principal_external_id, "d-bob");
    assert_eq!(why.group_path, vec!["backend", "eng"]);
    assert_eq!(why.grant.unwrap().grantee, "eng");
    let why_not = c
        .explain_access(authed(
            pb::ExplainAccessRequest {
                user_id: s.eve.clone(),
                document_id: s.docs[0].to_string(),
                at_least_revision: 0,
            },
            &s.service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!why_not.allowed);
    assert_eq!(why_not.explanation, "no grant reaches this user");

    // Unknown documents are simply not readable; they reveal nothing.
    assert!(!check(&mut c, &s.service, &s.ada, DocumentId::new(), 0).await);
    server.stop().await;
}

/// P05: the same person in two tools is one reader, linked by email (case-insensitively).
async fn p05_one_person_across_integrations(backend: Backend) {
    let server = TestServer::start(backend).await;
    let s = scene(&server).await;
    let mut c = PermissionsServiceClient::new(server.channel().await);
    let github = server.integration(s.tenant, &s.admin).await;
    c.sync_principals(authed(
        pb::SyncPrincipalsRequest {
            integration_id: github.to_string(),
            users: vec![
                user("octo-ada", "ADA@acme.EXAMPLE"),
                user("octo-eve", "eve@other.example"),
            ],
            groups: vec![group("team-core")],
            memberships: vec![member("team-core", "octo-ada", false)],
        },
        &s.service,
    ))
    .await
    .unwrap();
    let repo = DocumentId::new();
    let revision = c
        .set_document_acls(authed(
            pb::SetDocumentAclsRequest {
                acls: vec![acl(
                    repo,
                    github,
                    vec![grant(pb::GranteeKind::Group, "team-core")],
                )],
            },
            &s.service,
        ))
        .await
        .unwrap()
        .into_inner()
        .revision;
    assert!(
        check(&mut c, &s.service, &s.ada, repo, revision).await,
        "Ada reads through her GitHub identity"
    );
    assert!(
        check(&mut c, &s.service, &s.ada, s.docs[0], revision).await,
        "and still through her Drive identity"
    );
    assert!(!check(&mut c, &s.service, &s.eve, repo, revision).await);
    server.stop().await;
}

/// Revocations: once a write that removes access has returned its revision, a check at
/// that revision is denied — group edges, grants, and accounts alike.
async fn revocations_are_never_served_stale(backend: Backend) {
    let server = TestServer::start(backend).await;
    let s = scene(&server).await;
    let mut c = PermissionsServiceClient::new(server.channel().await);
    assert!(check(&mut c, &s.service, &s.bob, s.docs[1], 0).await);
    let revision = c
        .sync_principals(authed(
            pb::SyncPrincipalsRequest {
                integration_id: s.drive.to_string(),
                users: vec![
                    user("d-ada", "ada@acme.example"),
                    user("d-bob", "bob@acme.example"),
                ],
                groups: vec![group("eng"), group("backend")],
                // backend is no longer inside eng.
                memberships: vec![member("backend", "d-bob", false)],
            },
            &s.service,
        ))
        .await
        .unwrap()
        .into_inner()
        .revision;
    assert!(
        !check(&mut c, &s.service, &s.bob, s.docs[1], revision).await,
        "nested group edge removed"
    );
    let revision = c
        .set_document_acls(authed(
            pb::SetDocumentAclsRequest {
                acls: vec![acl(s.docs[0], s.drive, vec![])],
            },
            &s.service,
        ))
        .await
        .unwrap()
        .into_inner()
        .revision;
    assert!(
        !check(&mut c, &s.service, &s.ada, s.docs[0], revision).await,
        "grant removed"
    );
    // A revision nobody has reached yet is refused, naming the field.
    let status = c
        .check(authed(
            pb::CheckRequest {
                user_id: s.ada.clone(),
                document_id: s.docs[0].to_string(),
                at_least_revision: revision + 1000,
            },
            &s.service,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("at_least_revision"));
    server.stop().await;
}

async fn bad_input_and_roles(backend: Backend) {
    let server = TestServer::start(backend).await;
    let s = scene(&server).await;
    let mut c = PermissionsServiceClient::new(server.channel().await);
    let bad_sync = c
        .sync_principals(authed(
            pb::SyncPrincipalsRequest {
                integration_id: s.drive.to_string(),
                users: vec![],
                groups: vec![group("eng")],
                memberships: vec![member("ghost", "eng", true)],
            },
            &s.service,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_sync.code(), Code::InvalidArgument);
    assert!(
        bad_sync.message().contains("memberships.group_external_id"),
        "{}",
        bad_sync.message()
    );
    let bad_kind = c
        .set_document_acls(authed(
            pb::SetDocumentAclsRequest {
                acls: vec![acl(
                    DocumentId::new(),
                    s.drive,
                    vec![pb::Grant {
                        grantee_kind: 0,
                        grantee: "x".into(),
                        role: 1,
                    }],
                )],
            },
            &s.service,
        ))
        .await
        .unwrap_err();
    assert!(
        bad_kind.message().contains("grantee_kind"),
        "{}",
        bad_kind.message()
    );
    let bad_anyone = c
        .set_document_acls(authed(
            pb::SetDocumentAclsRequest {
                acls: vec![acl(
                    DocumentId::new(),
                    s.drive,
                    vec![grant(pb::GranteeKind::Anyone, "someone")],
                )],
            },
            &s.service,
        ))
        .await
        .unwrap_err();
    assert!(
        bad_anyone.message().contains("grantee"),
        "{}",
        bad_anyone.message()
    );
    let bad_doc = c
        .set_document_acls(authed(
            pb::SetDocumentAclsRequest {
                acls: vec![pb::DocumentAcl {
                    document_id: "nope".into(),
                    integration_id: s.drive.to_string(),
                    grants: vec![],
                }],
            },
            &s.service,
        ))
        .await
        .unwrap_err();
    assert!(
        bad_doc.message().contains("acls.document_id"),
        "{}",
        bad_doc.message()
    );
    let too_many = c
        .batch_check(authed(
            pb::BatchCheckRequest {
                items: (0..1001)
                    .map(|_| pb::CheckItem {
                        user_id: s.ada.clone(),
                        document_id: s.docs[0].to_string(),
                    })
                    .collect(),
                at_least_revision: 0,
            },
            &s.service,
        ))
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::ResourceExhausted);
    assert!(
        too_many.message().contains("1000"),
        "{}",
        too_many.message()
    );
    let too_big = c
        .list_readable(authed(
            pb::ListReadableRequest {
                user_id: s.ada.clone(),
                page_size: 20_000,
                page_token: String::new(),
                at_least_revision: 0,
            },
            &s.service,
        ))
        .await
        .unwrap_err();
    assert!(
        too_big.message().contains("page_size"),
        "{}",
        too_big.message()
    );
    // Nothing of the failed writes was stored: Bob still reads through eng.
    assert!(check(&mut c, &s.service, &s.bob, s.docs[1], 0).await);

    // Members ask only about themselves, and cannot write ACLs.
    let ada = server.token(&s.ada, Some(s.tenant), &[Role::Member]);
    assert!(check(&mut c, &ada, &s.ada, s.docs[0], 0).await);
    let status = c
        .check(authed(
            pb::CheckRequest {
                user_id: s.bob.clone(),
                document_id: s.docs[1].to_string(),
                at_least_revision: 0,
            },
            &ada,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = c
        .set_document_acls(authed(pb::SetDocumentAclsRequest { acls: vec![] }, &ada))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // Another tenant's service sees nothing of this tenant.
    let other_tenant = TenantId::new();
    let stranger = server.token("ingest", Some(other_tenant), &[Role::Service]);
    assert!(
        !check(&mut c, &stranger, &s.ada, s.docs[3], 0).await,
        "anyone means anyone in the tenant"
    );
    let _ = &s.admin;
    server.stop().await;
}

/// P01: a source's ids of people and groups are often their emails (Google Drive's
/// are). Principals, memberships and grants refer to keyed pseudonyms of them, so no
/// such id is stored in the clear; checks work as before and ExplainAccess still names
/// the source's ids.
async fn p01_source_ids_of_people_are_not_stored_in_the_clear(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (tenant, admin) = server.create_tenant("Acme").await;
    let ada = server
        .create_user(&admin, "Ada", "L", "zqxada@acme.example")
        .await
        .id;
    let drive = server.integration(tenant, &admin).await;
    let service = server.token("ingest", Some(tenant), &[Role::Service]);
    let mut c = PermissionsServiceClient::new(server.channel().await);
    c.sync_principals(authed(
        pb::SyncPrincipalsRequest {
            integration_id: drive.to_string(),
            users: vec![user("zqxada@acme.example", "zqxada@acme.example")],
            groups: vec![group("zqxteam@acme.example")],
            memberships: vec![member("zqxteam@acme.example", "zqxada@acme.example", false)],
        },
        &service,
    ))
    .await
    .unwrap();
    let (direct, through_group) = (DocumentId::new(), DocumentId::new());
    c.set_document_acls(authed(
        pb::SetDocumentAclsRequest {
            acls: vec![
                acl(
                    direct,
                    drive,
                    vec![grant(pb::GranteeKind::User, "zqxada@acme.example")],
                ),
                acl(
                    through_group,
                    drive,
                    vec![grant(pb::GranteeKind::Group, "zqxteam@acme.example")],
                ),
            ],
        },
        &service,
    ))
    .await
    .unwrap();
    assert!(check(&mut c, &service, &ada, direct, 0).await);
    assert!(check(&mut c, &service, &ada, through_group, 0).await);
    let explained = c
        .explain_access(authed(
            pb::ExplainAccessRequest {
                user_id: ada.clone(),
                document_id: through_group.to_string(),
                at_least_revision: 0,
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(explained.principal_external_id, "zqxada@acme.example");
    assert_eq!(
        explained.group_path,
        vec!["zqxteam@acme.example".to_owned()]
    );
    assert_eq!(explained.grant.unwrap().grantee, "zqxteam@acme.example");

    let at_rest = common::at_rest(&server).await;
    assert!(!common::where_stored(&at_rest, &drive.to_string()).is_empty());
    for canary in ["zqxada", "zqxteam"] {
        assert_eq!(
            common::where_stored(&at_rest, canary),
            Vec::<String>::new(),
            "{canary} stored in the clear"
        );
    }
    server.stop().await;
}

both_modes!(
    p01_source_ids_of_people_are_not_stored_in_the_clear,
    p02_source_acls_are_preserved,
    p05_one_person_across_integrations,
    revocations_are_never_served_stale,
    bad_input_and_roles,
);

/// Two replicas of the permissions service on one PostgreSQL: a revocation written
/// through one is never allowed by the other when asked at the returned revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_races_between_two_replicas() {
    let server = TestServer::start(Backend::Distributed).await;
    let s = scene(&server).await;
    let replica = server.replica(vec![Service::Permissions]).await;
    let mut a = PermissionsServiceClient::new(server.channel().await);
    let mut b = PermissionsServiceClient::new(replica.channel().await);
    // Warm both indexes so that staleness, not a cold start, is what is tested.
    assert!(check(&mut a, &s.service, &s.ada, s.docs[0], 0).await);
    assert!(check(&mut b, &s.service, &s.ada, s.docs[0], 0).await);
    for round in 0..40 {
        let (writer, reader) = if round % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let granted = writer
            .set_document_acls(authed(
                pb::SetDocumentAclsRequest {
                    acls: vec![acl(
                        s.docs[4],
                        s.drive,
                        vec![grant(pb::GranteeKind::User, "d-eve")],
                    )],
                },
                &s.service,
            ))
            .await
            .unwrap()
            .into_inner()
            .revision;
        assert!(
            check(reader, &s.service, &s.eve, s.docs[4], granted).await,
            "round {round}: grant visible"
        );
        let revoked = writer
            .set_document_acls(authed(
                pb::SetDocumentAclsRequest {
                    acls: vec![acl(s.docs[4], s.drive, vec![])],
                },
                &s.service,
            ))
            .await
            .unwrap()
            .into_inner()
            .revision;
        assert!(revoked > granted);
        assert!(
            !check(reader, &s.service, &s.eve, s.docs[4], revoked).await,
            "round {round}: revocation served stale"
        );
        // Group edges too: Bob leaves and rejoins eng through the other replica.
        let memberships = if round % 4 < 2 {
            vec![member("backend", "d-bob", false)]
        } else {
            vec![
                member("backend", "d-bob", false),
                member("eng", "backend", true),
            ]
        };
        let expect = round % 4 >= 2;
        let revision = writer
            .sync_principals(authed(
                pb::SyncPrincipalsRequest {
                    integration_id: s.drive.to_string(),
                    users: vec![
                        user("d-ada", "ada@acme.example"),
                        user("d-bob", "bob@acme.example"),
                        user("d-eve", "eve@other.example"),
                    ],
                    groups: vec![group("eng"), group("backend")],
                    memberships,
                },
                &s.service,
            ))
            .await
            .unwrap()
            .into_inner()
            .revision;
        assert_eq!(
            check(reader, &s.service, &s.bob, s.docs[1], revision).await,
            expect,
            "round {round}: group edge"
        );
    }
    replica.stop().await;
    server.stop().await;
}

/// The disconnect cascade: `integration.disconnected` on the real bus removes the
/// integration's principals, memberships and grants, destroys its key, and answers with
/// a signed `deletion.completed` carrying the counts; a repeat changes nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p06_disconnect_cascade_over_nats_and_postgres() {
    use mindmesh_kit::bus::EventBus;
    use mindmesh_kit::bus::nats::NatsBus;
    use mindmesh_proto::mindmesh::events::v1::IntegrationDisconnected;
    use mindmesh_proto::mindmesh::events::v1::envelope::Payload;

    let server = TestServer::start(Backend::Distributed).await;
    let s = scene(&server).await;
    let mut c = PermissionsServiceClient::new(server.channel().await);
    let bus = NatsBus::connect(&server.config.bus).await.unwrap();
    let mut observer = bus.subscribe("observer").await.unwrap();
    let db = server.service_db(Service::Permissions).await;
    let count = |table: &'static str| {
        let db = db.clone();
        let tenant = s.tenant;
        async move {
            use sea_orm::ConnectionTrait;
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = '{tenant}'"),
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index::<i64>(0).unwrap()
        }
    };
    assert_eq!(count("principals").await, 5);
    assert_eq!(count("grants").await, 4);

    let disconnect = |cascade: &str| {
        mindmesh_kit::events::envelope(
            Service::Ingest,
            Some(s.tenant),
            Payload::IntegrationDisconnected(IntegrationDisconnected {
                integration_id: s.drive.to_string(),
                cascade_id: cascade.into(),
            }),
        )
    };
    // Cascade ids are UUIDs (an event with another one is malformed).
    let (cascade_1, cascade_2) = (
        mindmesh_kit::ids::CascadeId::new().to_string(),
        mindmesh_kit::ids::CascadeId::new().to_string(),
    );
    let first = disconnect(&cascade_1);
    bus.publish(&mindmesh_kit::events::to_bus_message(&first).unwrap())
        .await
        .unwrap();
    // The same event again (a redelivery) is de-duplicated.
    bus.publish(&mindmesh_kit::events::to_bus_message(&first).unwrap())
        .await
        .unwrap();

    let key = server.signing_public_key();
    let done = completion(&mut *observer, &cascade_1)
        .await
        .expect("deletion.completed for the cascade");
    assert_eq!(done.service, Service::Permissions.to_proto() as i32);
    assert_eq!(done.counts.get("principals"), Some(&5));
    assert_eq!(done.counts.get("memberships"), Some(&2));
    assert_eq!(done.counts.get("grants"), Some(&4));
    assert_eq!(
        done.destroyed_key_ids.len(),
        1,
        "the integration's data key"
    );
    assert!(
        mindmesh_kit::events::verify_completion(&key, &done),
        "signed by the service"
    );
    assert_eq!(count("principals").await, 0);
    assert_eq!(count("memberships").await, 0);
    assert_eq!(count("grants").await, 0);
    // Access is gone everywhere, and the accounts stay.
    for doc in &s.docs {
        assert!(!check(&mut c, &s.service, &s.ada, *doc, 0).await);
    }

    // A second cascade for the same integration finds nothing left and says so.
    let second = disconnect(&cascade_2);
    bus.publish(&mindmesh_kit::events::to_bus_message(&second).unwrap())
        .await
        .unwrap();
    let zero = completion(&mut *observer, &cascade_2)
        .await
        .expect("deletion.completed for the second cascade");
    assert!(zero.counts.values().all(|n| *n == 0), "{:?}", zero.counts);
    assert!(zero.destroyed_key_ids.is_empty());
    server.stop().await;
}

/// A data subject's erasure: the principals that carry their email, in every
/// integration, are deleted with the memberships naming them; the person loses access
/// granted through them, and the service attests with a signed `deletion.completed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_erasure_removes_the_persons_source_identities() {
    use mindmesh_kit::bus::EventBus;
    use mindmesh_kit::bus::nats::NatsBus;
    use mindmesh_proto::mindmesh::events::v1::SubjectErasureRequested;
    use mindmesh_proto::mindmesh::events::v1::envelope::Payload;

    let server = TestServer::start(Backend::Distributed).await;
    let s = scene(&server).await;
    let mut c = PermissionsServiceClient::new(server.channel().await);
    assert!(check(&mut c, &s.service, &s.bob, s.docs[1], 0).await);
    let bus = NatsBus::connect(&server.config.bus).await.unwrap();
    let mut observer = bus.subscribe("observer").await.unwrap();
    let cascade = mindmesh_kit::ids::CascadeId::new().to_string();
    let erasure = mindmesh_kit::events::envelope(
        Service::Dsar,
        Some(s.tenant),
        Payload::SubjectErasureRequested(SubjectErasureRequested {
            cascade_id: cascade.clone(),
            request_id: "dsr-1".into(),
            sealed_email: server
                .event_seal()
                .seal_email(s.tenant, "BOB@acme.example")
                .unwrap(),
            user_id: String::new(),
        }),
    );
    bus.publish(&mindmesh_kit::events::to_bus_message(&erasure).unwrap())
        .await
        .unwrap();
    let done = completion(&mut *observer, &cascade)
        .await
        .expect("deletion.completed for the erasure");
    assert_eq!(done.counts.get("principals"), Some(&1));
    assert_eq!(
        done.counts.get("memberships"),
        Some(&1),
        "bob's membership of backend"
    );
    assert!(mindmesh_kit::events::verify_completion(
        &server.signing_public_key(),
        &done
    ));
    // Bob's source identity is gone: the group grant no longer reaches him; Ada keeps hers.
    assert!(!check(&mut c, &s.service, &s.bob, s.docs[1], 0).await);
    assert!(check(&mut c, &s.service, &s.ada, s.docs[0], 0).await);
    server.stop().await;
}

/// Waits for the permissions service's `deletion.completed` of `cascade` on the bus.
async fn completion(
    observer: &mut dyn mindmesh_kit::bus::Subscription,
    cascade: &str,
) -> Option<mindmesh_proto::mindmesh::events::v1::DeletionCompleted> {
    // Other services attest the same cascade; these tests are about permissions.
    use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if let Some(d) = observer.next(Duration::from_millis(500)).await.unwrap() {
            let envelope = mindmesh_kit::events::decode(&d.message).unwrap();
            d.ack().await.unwrap();
            if let Some(Payload::DeletionCompleted(done)) = envelope.payload
                && done.cascade_id == cascade
                && done.service == Service::Permissions.to_proto() as i32
            {
                return Some(done);
            }
        }
    }
    None
}
