//! Diff-based `SyncPrincipals`, on SQLite and PostgreSQL: after any sequence of syncs —
//! through one replica or two, with stale caches — the database holds exactly the last
//! set sent, and checks follow it.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

#[macro_use]
mod support;

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

    fn expected(
        &self,
    ) -> (
        FxHashMap<sync::PrincipalKey, [u8; 32]>,
        FxHashSet<sync::Edge>,
    ) {
        let principals = self
            .users
            .iter()
            .map(|(id, email, name)| {
                (
                    ("user", id.clone()),
                    sync::fingerprint("user", id, email, name),
                )
            })
            .chain(self.groups.iter().map(|g| {
                (
                    ("group", g.clone()),
                    sync::fingerprint("group", g, "", &format!("group {g}")),
                )
            }))
            .collect();
        (principals, self.edges.iter().cloned().collect())
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
    let (principals, edges) = set.expected();
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

both_backends!(
    syncs_write_exactly_the_last_set,
    checks_follow_the_synced_graph,
    domain_grants_work_after_a_keyless_first_read,
);
