//! Diff-based `SyncPrincipals`, on SQLite and PostgreSQL: after any sequence of syncs —
//! through one replica or two, with stale caches — the database holds exactly the last
//! set sent, and checks follow it.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use mindmesh_kit::both_backends;

use rustc_hash::{FxHashMap, FxHashSet};

use mindmesh_kit::ids::{DocumentId, IntegrationId, TenantId, UserId};
use mindmesh_kit::keys::KeyScope;
use mindmesh_permissions::engine::{AccessRole, DocumentAcl, Grant, Grantee, Membership};
use mindmesh_permissions::policy::{Policy, SyncedGroup, SyncedUser};
use mindmesh_permissions::sync;

use support::{Backend, Env as Harness};

async fn harness(backend: Backend) -> Harness {
    support::env(backend).await
}

/// A principal set: users with (email, name), groups, edges.
#[derive(Clone)]
struct Set {
    users: Vec<(String, String, String)>,
    groups: Vec<String>,
    edges: Vec<(String, String, bool)>,
}

impl Set {
    fn initial() -> Self {
        Set {
            users: (0..60)
                .map(|i| {
                    (
                        format!("u{i}"),
                        format!("u{i}@acme.example"),
                        format!("User {i}"),
                    )
                })
                .collect(),
            groups: (0..6).map(|g| format!("g{g}")).collect(),
            edges: (0..60)
                .map(|i| (format!("g{}", i % 6), format!("u{i}"), false))
                .chain((0..5).map(|g| (format!("g{}", g + 1), format!("g{g}"), true)))
                .collect(),
        }
    }

    async fn send(&self, policy: &Policy, tenant: TenantId, integration: IntegrationId) -> u64 {
        policy
            .sync_principals(
                tenant,
                integration,
                self.users
                    .iter()
                    .map(|(id, email, name)| SyncedUser {
                        external_id: id.clone(),
                        email: email.clone(),
                        display_name: name.clone(),
                    })
                    .collect(),
                self.groups
                    .iter()
                    .map(|g| SyncedGroup {
                        external_id: g.clone(),
                        email: String::new(),
                        name: format!("group {g}"),
                    })
                    .collect(),
                self.edges
                    .iter()
                    .map(|(g, m, is_group)| Membership {
                        integration,
                        group: g.clone(),
                        member: m.clone(),
                        member_is_group: *is_group,
                    })
                    .collect(),
            )
            .await
            .unwrap()
    }

    /// What the database must hold for the set: every principal and edge under the
    /// pseudonym of its source id (`pseudonym`), fingerprinted as a sync writes it.
    fn expected(
        &self,
        pseudonym: impl Fn(&str) -> String,
    ) -> (
        FxHashMap<sync::PrincipalKey, [u8; 32]>,
        FxHashSet<sync::Edge>,
    ) {
        let principals = self
            .users
            .iter()
            .map(|(id, email, name)| {
                let pid = pseudonym(id);
                let print = sync::fingerprint("user", &pid, email, name);
                (("user", pid), print)
            })
            .chain(self.groups.iter().map(|g| {
                let pid = pseudonym(g);
                let print = sync::fingerprint("group", &pid, "", &format!("group {g}"));
                (("group", pid), print)
            }))
            .collect();
        let edges = self
            .edges
            .iter()
            .map(|(g, m, is_group)| (pseudonym(g), pseudonym(m), *is_group))
            .collect();
        (principals, edges)
    }
}

async fn assert_stored(h: &Harness, tenant: TenantId, integration: IntegrationId, set: &Set) {
    let (_, key) = h
        .ctx
        .keystore
        .data_key(tenant, &KeyScope::Integration(integration.to_string()))
        .await
        .unwrap();
    let stored = sync::load(&h.ctx.db, &key, tenant, integration)
        .await
        .unwrap();
    let keys = mindmesh_permissions::blind::BlindIndex::new(h.ctx.keystore.clone())
        .keys(tenant)
        .await
        .unwrap();
    let (principals, edges) = set.expected(|id| keys.principal(integration, id));
    assert_eq!(
        stored.principals, principals,
        "principal rows equal the last set sent"
    );
    assert_eq!(
        stored.memberships, edges,
        "membership rows equal the last set sent"
    );
}

async fn syncs_write_exactly_the_last_set(backend: Backend) {
    let h = harness(backend).await;
    let tenant = TenantId::new();
    let integration = IntegrationId::new();
    let a = Policy::new(h.ctx.clone());
    let b = Policy::new(h.ctx.clone());

    let mut set = Set::initial();
    set.send(&a, tenant, integration).await;
    assert_stored(&h, tenant, integration, &set).await;

    // Small changes through A: one edge gone, one rename, one email change, one user
    // removed, one added.
    set.edges
        .retain(|e| e != &("g3".to_owned(), "g2".to_owned(), true));
    set.users[5].2 = "Renamed Five".into();
    set.users[6].1 = "six@elsewhere.example".into();
    set.users.retain(|u| u.0 != "u7");
    set.edges.retain(|e| e.1 != "u7");
    set.users
        .push(("u99".into(), "u99@acme.example".into(), "New".into()));
    set.edges.push(("g0".into(), "u99".into(), false));
    set.send(&a, tenant, integration).await;
    assert_stored(&h, tenant, integration, &set).await;

    // B has never seen the set: it reads it, then writes its diff.
    set.edges.push(("g5".into(), "u1".into(), false));
    set.send(&b, tenant, integration).await;
    assert_stored(&h, tenant, integration, &set).await;

    // A's copy is now stale; the generation tells it, and it reads afresh.
    set.users[10].2 = "Ten again".into();
    set.edges
        .retain(|e| e != &("g1".to_owned(), "g0".to_owned(), true));
    set.send(&a, tenant, integration).await;
    assert_stored(&h, tenant, integration, &set).await;

    // A wholesale change (most rows differ) is as exact.
    let mut other = Set::initial();
    other.users.iter_mut().for_each(|u| u.2.push_str(" (v2)"));
    other.send(&b, tenant, integration).await;
    assert_stored(&h, tenant, integration, &other).await;
}

async fn checks_follow_the_synced_graph(backend: Backend) {
    let h = harness(backend).await;
    let tenant = TenantId::new();
    let integration = IntegrationId::new();
    let policy = Policy::new(h.ctx.clone());
    let mut set = Set::initial();
    set.send(&policy, tenant, integration).await;
    // An account for u0 (group g0, nested up to g5).
    let account = insert_account(&h, &policy, backend, tenant, "u0@acme.example").await;
    policy.invalidate(tenant);
    let doc = DocumentId::new();
    let revision = policy
        .set_document_acls(
            tenant,
            vec![DocumentAcl {
                document: doc,
                integration,
                grants: vec![Grant {
                    grantee: Grantee::Group("g5".into()),
                    role: AccessRole::Reader,
                }],
            }],
        )
        .await
        .unwrap();
    assert!(
        policy
            .check(tenant, account, doc, revision)
            .await
            .unwrap()
            .0,
        "u0 → g0 → … → g5"
    );
    // Cut the chain in the middle: access is gone at the returned revision.
    set.edges
        .retain(|e| e != &("g3".to_owned(), "g2".to_owned(), true));
    let revision = set.send(&policy, tenant, integration).await;
    assert!(
        !policy
            .check(tenant, account, doc, revision)
            .await
            .unwrap()
            .0
    );
    // A fresh replica agrees.
    let fresh = Policy::new(h.ctx.clone());
    assert!(!fresh.check(tenant, account, doc, revision).await.unwrap().0);
}

/// Writes an account row as the accounts code would (blind indexes only).
async fn insert_account(
    h: &Harness,
    policy: &Policy,
    backend: Backend,
    tenant: TenantId,
    email: &str,
) -> UserId {
    use sea_orm::ConnectionTrait;
    let keys = policy.blind().keys(tenant).await.unwrap();
    let account = UserId::new();
    let run = |sql: String| {
        let db = h.ctx.db.clone();
        async move {
            db.execute_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                sql,
            ))
            .await
            .unwrap()
        }
    };
    run(format!("INSERT INTO tenants (id, name, created_at) VALUES ('{tenant}', 'T', '2026-11-29T00:00:00Z') ON CONFLICT DO NOTHING")).await;
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    run(format!(
        "INSERT INTO users (id, tenant_id, key_id, email_index, email_domain_index, first_name_ct, last_name_ct, email_ct, picture_url_ct, created_at, updated_at) \
         VALUES ('{account}', '{tenant}', 'k', '{}', '{}', {b}, {b}, {b}, {b}, '2026-11-29T00:00:00Z', '2026-11-29T00:00:00Z')",
        keys.email(email),
        keys.domain(domain),
        b = match backend { Backend::Sqlite => "x''", Backend::Postgres => "'\\x'::bytea" },
    ))
    .await;
    account
}

/// An index loaded before the tenant had a key cannot hash domain grants; the next
/// write must drop it rather than patch it, or domain grants would never match.
async fn domain_grants_work_after_a_keyless_first_read(backend: Backend) {
    let h = harness(backend).await;
    let tenant = TenantId::new();
    let policy = Policy::new(h.ctx.clone());
    let doc = DocumentId::new();
    assert!(
        !policy.check(tenant, UserId::new(), doc, 0).await.unwrap().0,
        "loads a keyless index"
    );
    let account = insert_account(&h, &policy, backend, tenant, "ada@acme.example").await;
    let revision = policy
        .set_document_acls(
            tenant,
            vec![DocumentAcl {
                document: doc,
                integration: IntegrationId::new(),
                grants: vec![Grant {
                    grantee: Grantee::Domain("acme.example".into()),
                    role: AccessRole::Reader,
                }],
            }],
        )
        .await
        .unwrap();
    assert!(
        policy
            .check(tenant, account, doc, revision)
            .await
            .unwrap()
            .0
    );
}

/// P01: what an older version wrote with the source's ids in the clear (principals,
/// memberships, grants) is converted at start to pseudonyms: the same person reads the
/// same documents, explanations name the source's ids, no id is left in the clear, and
/// the next sync of the same set finds nothing to change.
async fn source_ids_an_older_version_kept_in_the_clear_become_pseudonyms(backend: Backend) {
    use mindmesh_kit::auth::{Caller, Role};
    use mindmesh_permissions::accounts::{Accounts, NewUser};
    use mindmesh_permissions::policy::principal_aad;
    use sea_orm::ConnectionTrait;

    let h = harness(backend).await;
    let ctx = &h.ctx;
    let policy = std::sync::Arc::new(Policy::new(ctx.clone()));
    let accounts = Accounts::new(ctx.clone(), policy.clone());
    let operator = Caller {
        subject: "op".into(),
        tenant: None,
        roles: vec![Role::Operator],
    };
    let tenant = accounts.create_tenant(&operator, "Acme").await.unwrap().id;
    let admin = Caller {
        subject: "admin".into(),
        tenant: Some(tenant),
        roles: vec![Role::Admin],
    };
    let ada = accounts
        .create_user(
            &admin,
            NewUser {
                first_name: "Ada".into(),
                last_name: "L".into(),
                email: "zqxada@acme.example".into(),
                picture_url: String::new(),
            },
        )
        .await
        .unwrap()
        .id;
    // As the older version wrote them: the source's ids (emails) in the clear.
    let integration = IntegrationId::new();
    let (_, key) = ctx
        .keystore
        .data_key(tenant, &KeyScope::Integration(integration.to_string()))
        .await
        .unwrap();
    let blind = policy.blind().keys(tenant).await.unwrap();
    let seal = |kind: &str, id: &str, column: &str, value: &str| {
        key.seal(
            &principal_aad(tenant, integration, kind, id, column),
            value.as_bytes(),
        )
        .unwrap()
    };
    let doc = DocumentId::new();
    let (t, i) = (tenant.to_string(), integration.to_string());
    let statements: Vec<sea_orm::Statement> = vec![
        sea_orm::Statement::from_sql_and_values(
            ctx.db.get_database_backend(),
            match backend {
                Backend::Sqlite => {
                    "INSERT INTO principals (tenant_id, integration_id, kind, external_id, email_index, email_ct, name_ct) VALUES (?, ?, 'user', 'zqxada@acme.example', ?, ?, ?)"
                }
                Backend::Postgres => {
                    "INSERT INTO principals (tenant_id, integration_id, kind, external_id, email_index, email_ct, name_ct) VALUES ($1, $2, 'user', 'zqxada@acme.example', $3, $4, $5)"
                }
            },
            [
                t.clone().into(),
                i.clone().into(),
                blind.email("zqxada@acme.example").into(),
                seal(
                    "user",
                    "zqxada@acme.example",
                    "email",
                    "zqxada@acme.example",
                )
                .into(),
                seal("user", "zqxada@acme.example", "name", "Ada").into(),
            ],
        ),
        sea_orm::Statement::from_sql_and_values(
            ctx.db.get_database_backend(),
            match backend {
                Backend::Sqlite => {
                    "INSERT INTO principals (tenant_id, integration_id, kind, external_id, name_ct) VALUES (?, ?, 'group', 'zqxteam@acme.example', ?)"
                }
                Backend::Postgres => {
                    "INSERT INTO principals (tenant_id, integration_id, kind, external_id, name_ct) VALUES ($1, $2, 'group', 'zqxteam@acme.example', $3)"
                }
            },
            [
                t.clone().into(),
                i.clone().into(),
                seal("group", "zqxteam@acme.example", "name", "Team").into(),
            ],
        ),
    ];
    for statement in statements {
        ctx.db.execute_raw(statement).await.unwrap();
    }
    for sql in [
        format!(
            "INSERT INTO memberships (tenant_id, integration_id, group_id, member_id, member_is_group) VALUES ('{t}', '{i}', 'zqxteam@acme.example', 'zqxada@acme.example', FALSE)"
        ),
        format!(
            "INSERT INTO grants (tenant_id, document_id, integration_id, grantee_kind, grantee, role) VALUES ('{t}', '{doc}', '{i}', 'group', 'zqxteam@acme.example', 'reader')"
        ),
        format!(
            "INSERT INTO legacy_principal_ids (tenant_id, integration_id) VALUES ('{t}', '{i}')"
        ),
    ] {
        ctx.db.execute_unprepared(&sql).await.unwrap();
    }

    assert!(policy.pseudonymize_legacy().await.unwrap() >= 4);
    assert_eq!(
        policy.pseudonymize_legacy().await.unwrap(),
        0,
        "once is enough"
    );
    let fresh = Policy::new(ctx.clone());
    assert!(fresh.check(tenant, ada, doc, 0).await.unwrap().0);
    let (explained, _) = fresh.explain(tenant, ada, doc, 0).await.unwrap();
    let explained = explained.unwrap();
    assert_eq!(
        explained.group_path,
        vec!["zqxteam@acme.example".to_owned()]
    );
    assert_eq!(
        explained.principal.unwrap().external_id,
        "zqxada@acme.example"
    );
    for table in ["principals", "memberships", "grants"] {
        for row in ctx
            .db
            .query_all_raw(sea_orm::Statement::from_string(
                ctx.db.get_database_backend(),
                format!("SELECT * FROM {table}"),
            ))
            .await
            .unwrap()
        {
            let text = format!("{row:?}");
            assert!(
                !text.contains("zqx"),
                "{table} keeps a source id in the clear: {text}"
            );
        }
    }
    // The next sync of the same set: nothing to change, the person still reads.
    fresh
        .sync_principals(
            tenant,
            integration,
            vec![SyncedUser {
                external_id: "zqxada@acme.example".into(),
                email: "zqxada@acme.example".into(),
                display_name: "Ada".into(),
            }],
            vec![SyncedGroup {
                external_id: "zqxteam@acme.example".into(),
                email: String::new(),
                name: "Team".into(),
            }],
            vec![Membership {
                integration,
                group: "zqxteam@acme.example".into(),
                member: "zqxada@acme.example".into(),
                member_is_group: false,
            }],
        )
        .await
        .unwrap();
    assert!(fresh.check(tenant, ada, doc, 0).await.unwrap().0);
}

both_backends!(
    source_ids_an_older_version_kept_in_the_clear_become_pseudonyms,
    syncs_write_exactly_the_last_set,
    checks_follow_the_synced_graph,
    domain_grants_work_after_a_keyless_first_read,
);
