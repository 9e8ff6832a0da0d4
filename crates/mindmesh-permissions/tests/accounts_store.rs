//! The accounts store, one suite against SQLite and against the real PostgreSQL, each
//! test in its own database(s), through the domain API (no gRPC).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use mindmesh_kit::both_backends;

use std::sync::Arc;

use mindmesh_kit::auth::{Caller, Role};
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::{KeyId, TenantId, UserId};
use mindmesh_permissions::Error;
use mindmesh_permissions::accounts::{Accounts, NewUser, UserPatch};
use mindmesh_permissions::policy::Policy;
use mindmesh_permissions::store::user;
use sea_orm::{ConnectionTrait, EntityTrait};
use support::Backend;

struct Harness {
    accounts: Accounts,
    ctx: ServiceContext,
    _env: support::Env,
}

async fn harness(backend: Backend) -> Harness {
    let env = support::env(backend).await;
    let ctx = env.ctx.clone();
    Harness {
        accounts: Accounts::new(ctx.clone(), Arc::new(Policy::new(ctx.clone()))),
        ctx,
        _env: env,
    }
}

fn operator() -> Caller {
    Caller {
        subject: "op".into(),
        tenant: None,
        roles: vec![Role::Operator],
    }
}

fn admin(tenant: TenantId) -> Caller {
    Caller {
        subject: "admin".into(),
        tenant: Some(tenant),
        roles: vec![Role::Admin],
    }
}

fn person(email: &str) -> NewUser {
    NewUser {
        first_name: "Grace".into(),
        last_name: "Hopper".into(),
        email: email.into(),
        picture_url: String::new(),
    }
}

async fn count(ctx: &ServiceContext, sql: &str) -> i64 {
    let row = ctx
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            ctx.db.get_database_backend(),
            sql,
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

async fn round_trip(backend: Backend) {
    let h = harness(backend).await;
    let tenant = h.accounts.create_tenant(&operator(), "Acme").await.unwrap();
    let caller = admin(tenant.id);
    let created = h
        .accounts
        .create_user(&caller, person("grace@navy.example"))
        .await
        .unwrap();
    assert_eq!(
        h.accounts.get_user(&caller, created.id).await.unwrap(),
        created
    );

    let patch = UserPatch {
        email: Some("GRACE@cobol.example".into()),
        ..UserPatch::default()
    };
    let updated = h
        .accounts
        .update_user(&caller, created.id, patch)
        .await
        .unwrap();
    assert_eq!(updated.email, "GRACE@cobol.example");
    assert_eq!(updated.created_at, created.created_at);
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(
        h.accounts.get_user(&caller, created.id).await.unwrap(),
        updated
    );
    // The old email is free again, the new one taken (case-insensitively).
    h.accounts
        .create_user(&caller, person("grace@navy.example"))
        .await
        .unwrap();
    let taken = h
        .accounts
        .create_user(&caller, person("grace@COBOL.example"))
        .await
        .unwrap_err();
    assert!(matches!(taken, Error::AlreadyExists(_)), "{taken:?}");

    // An empty patch changes nothing, and an invalid one stores nothing.
    assert_eq!(
        h.accounts
            .update_user(&caller, created.id, UserPatch::default())
            .await
            .unwrap(),
        updated
    );
    let bad = UserPatch {
        first_name: Some(String::new()),
        last_name: Some("Ok".into()),
        ..UserPatch::default()
    };
    assert!(matches!(
        h.accounts
            .update_user(&caller, created.id, bad)
            .await
            .unwrap_err(),
        Error::InvalidArgument {
            field: "first_name",
            ..
        }
    ));
    assert_eq!(
        h.accounts.get_user(&caller, created.id).await.unwrap(),
        updated
    );
}

async fn paging_is_stable_and_tenant_scoped(backend: Backend) {
    let h = harness(backend).await;
    let a = h.accounts.create_tenant(&operator(), "A").await.unwrap();
    let b = h.accounts.create_tenant(&operator(), "B").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            h.accounts
                .create_user(&admin(a.id), person(&format!("p{i}@a.example")))
                .await
                .unwrap()
                .id,
        );
        h.accounts
            .create_user(&admin(b.id), person(&format!("p{i}@b.example")))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = h.accounts.list_users(&admin(a.id), after, 3).await.unwrap();
        assert!(page.iter().all(|u| u.tenant == a.id));
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        seen.extend(page.iter().map(|u| u.id));
    }
    assert_eq!(seen, ids, "creation order, each once");
}

async fn concurrent_creates_with_one_email_yield_one_user(backend: Backend) {
    let h = harness(backend).await;
    let tenant = h.accounts.create_tenant(&operator(), "Acme").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let accounts = h.accounts.clone();
        let caller = admin(tenant.id);
        let email = if i % 2 == 0 {
            "race@example.com"
        } else {
            "RACE@example.com"
        };
        tasks.push(tokio::spawn(async move {
            accounts.create_user(&caller, person(email)).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::AlreadyExists(_)) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(count(&h.ctx, "SELECT COUNT(*) FROM users").await, 1);
    // Losers leave no personal data key behind (the tenant's index key is shared).
    let keys = h.ctx.keystore.db();
    let row = keys
        .query_one_raw(sea_orm::Statement::from_string(
            keys.get_database_backend(),
            "SELECT COUNT(*) FROM data_keys WHERE scope_kind = 'person'",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), 1);

    // Concurrent successful writes keep one unbroken audit chain.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let accounts = h.accounts.clone();
        let caller = admin(tenant.id);
        tasks.push(tokio::spawn(async move {
            accounts
                .create_user(&caller, person(&format!("p{i}@example.com")))
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let report = h.ctx.audit.verify().await.unwrap();
    assert_eq!(report.first_broken, None);
    assert_eq!(
        report.entries_checked,
        1 + 1 + 16,
        "tenant, the race's winner, 16 users"
    );
}

/// Deleting a user destroys their data key: a copy of their row taken before (a backup)
/// can no longer be opened.
async fn p08_deleted_user_is_crypto_shredded(backend: Backend) {
    let h = harness(backend).await;
    let tenant = h.accounts.create_tenant(&operator(), "Acme").await.unwrap();
    let caller = admin(tenant.id);
    let created = h
        .accounts
        .create_user(&caller, person("gone@example.com"))
        .await
        .unwrap();
    let backup = user::Entity::find_by_id(created.id.to_string())
        .one(&h.ctx.db)
        .await
        .unwrap()
        .unwrap();
    let key_id: KeyId = backup.key_id.parse().unwrap();
    assert!(h.ctx.keystore.key(tenant.id, key_id).await.is_ok());

    let cascade = h.accounts.delete_user(&caller, created.id).await.unwrap();
    assert!(matches!(
        h.accounts.get_user(&caller, created.id).await.unwrap_err(),
        Error::NotFound("user")
    ));
    assert!(
        matches!(
            h.ctx.keystore.key(tenant.id, key_id).await.unwrap_err(),
            mindmesh_kit::Error::NotFound(_)
        ),
        "the key is destroyed"
    );
    assert_eq!(count(&h.ctx, "SELECT COUNT(*) FROM users").await, 0);
    // The deletion event waits in the outbox, in the same transaction as the delete.
    // (No relay runs in this harness, so it stays there until flushed.)
    let queued = count(
        &h.ctx,
        "SELECT COUNT(*) FROM outbox WHERE subject = 'account.deletion_requested'",
    )
    .await;
    assert_eq!(queued, 1, "cascade {cascade} was not queued");
    // With it, this service's signed attestation of its part: the account and its key.
    let rows = h
        .ctx
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            h.ctx.db.get_database_backend(),
            "SELECT payload FROM outbox WHERE subject = 'deletion.completed'",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let payload: Vec<u8> = rows[0].try_get("", "payload").unwrap();
    let envelope = <mindmesh_proto::mindmesh::events::v1::Envelope as prost::Message>::decode(
        payload.as_slice(),
    )
    .unwrap();
    let Some(mindmesh_proto::mindmesh::events::v1::envelope::Payload::DeletionCompleted(done)) =
        envelope.payload
    else {
        panic!("not a deletion.completed");
    };
    assert_eq!(done.cascade_id, cascade.to_string());
    assert_eq!(done.counts.get("accounts"), Some(&1));
    assert_eq!(done.destroyed_key_ids, vec![key_id.to_string()]);
    assert!(mindmesh_kit::events::verify_completion(
        &h.ctx.keys.signing.public_key(),
        &done
    ));
    assert_eq!(
        h.ctx.relay.flush().await.unwrap(),
        3,
        "account.activity, account.deletion_requested, deletion.completed"
    );
    // Deleting again is NOT_FOUND, not a second cascade.
    assert!(matches!(
        h.accounts
            .delete_user(&caller, created.id)
            .await
            .unwrap_err(),
        Error::NotFound("user")
    ));
}

async fn users_of_unknown_tenants_are_refused_without_leftovers(backend: Backend) {
    let h = harness(backend).await;
    let ghost = TenantId::new();
    let err = h
        .accounts
        .create_user(&admin(ghost), person("x@example.com"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound("tenant")), "{err:?}");
    assert_eq!(count(&h.ctx, "SELECT COUNT(*) FROM users").await, 0);
    assert!(matches!(
        h.accounts
            .get_user(&admin(ghost), UserId::new())
            .await
            .unwrap_err(),
        Error::NotFound("user")
    ));
}

both_backends!(
    round_trip,
    paging_is_stable_and_tenant_scoped,
    concurrent_creates_with_one_email_yield_one_user,
    p08_deleted_user_is_crypto_shredded,
    users_of_unknown_tenants_are_refused_without_leftovers,
);
