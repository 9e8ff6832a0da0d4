//! `make bench`: PermissionsService over gRPC on loopback (embedded mode), on the issue's
//! dataset, beside an empty unary RPC (`grpc.health.v1.Health/Check`) on the same server
//! — the transport's own ceiling — at 1 and 64 calls in flight; plus BatchCheck(1,000),
//! ListReadable, loading the dataset, and a nested group edge revoked until visible.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up should stop

mod support;

use std::sync::Arc;
use std::time::Instant;

use mindmesh_permissions::dataset::*;
use mindmesh_permissions::engine::{Grantee, Membership, TenantIndex};
use mindmesh_proto::mindmesh::permissions::v1 as pb;
use support::{BenchServer, authed, measure, measure_concurrent, row};

/// Accounts created for the checks (creating all 10,000 would only time CreateUser).
const ACCOUNTS: usize = 200;

fn email(u: usize, d: &Dataset) -> String {
    format!("{}@{}", user_name(u), DOMAINS[d.user_domain[u]])
}

fn grant_to_proto(g: &mindmesh_permissions::engine::Grant) -> pb::Grant {
    let (kind, grantee) = match &g.grantee {
        Grantee::User(u) => (pb::GranteeKind::User, u.clone()),
        Grantee::Group(gr) => (pb::GranteeKind::Group, gr.clone()),
        Grantee::Domain(dm) => (pb::GranteeKind::Domain, dm.clone()),
        Grantee::Anyone => (pb::GranteeKind::Anyone, String::new()),
    };
    pb::Grant {
        grantee_kind: kind as i32,
        grantee,
        role: pb::Role::Reader as i32,
    }
}

fn sync_request(d: &Dataset, memberships: &[Membership]) -> pb::SyncPrincipalsRequest {
    pb::SyncPrincipalsRequest {
        integration_id: d.integration.to_string(),
        users: (0..USERS)
            .map(|u| pb::PrincipalUser {
                external_id: user_name(u),
                email: email(u, d),
                display_name: user_name(u),
            })
            .collect(),
        groups: (0..GROUPS)
            .map(|g| pb::PrincipalGroup {
                external_id: group_name(g),
                email: String::new(),
                name: group_name(g),
            })
            .collect(),
        memberships: memberships
            .iter()
            .map(|m| pb::Membership {
                group_external_id: m.group.clone(),
                member_external_id: m.member.clone(),
                member_is_group: m.member_is_group,
            })
            .collect(),
    }
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    println!(
        "PermissionsService over gRPC, embedded mode, {USERS} users, {GROUPS} groups, {DOCS} documents"
    );
    let mut d = dataset();
    let server = BenchServer::start(false).await;
    let channel = server.channel.clone();
    let mut permissions =
        pb::permissions_service_client::PermissionsServiceClient::new(channel.clone());
    let (tenant, admin) = server.tenant("Bench").await;
    let service = server.service_token(tenant);
    // The dataset's principals and grants come from one connected integration.
    d.integration = server.integration(tenant, &admin).await;
    let snapshot = snapshot(&d);

    // Accounts for the power user and a sample of others.
    let mut sample_users: Vec<usize> = vec![d.power_user];
    let mut rng = Rng(11);
    while sample_users.len() < ACCOUNTS {
        let u = rng.below(USERS);
        if !sample_users.contains(&u) {
            sample_users.push(u);
        }
    }
    let mut account_ids = Vec::new();
    for u in &sample_users {
        let user = server
            .user(&admin, "U", &user_name(*u), &email(*u, &d))
            .await;
        account_ids.push(user.id);
    }

    let start = Instant::now();
    permissions
        .sync_principals(authed(sync_request(&d, &snapshot.memberships), &service))
        .await
        .unwrap();
    let synced = start.elapsed();
    let start = Instant::now();
    let mut revision = 0;
    for chunk in snapshot.acls.chunks(1000) {
        let acls = chunk
            .iter()
            .map(|a| pb::DocumentAcl {
                document_id: a.document.to_string(),
                integration_id: a.integration.to_string(),
                grants: a.grants.iter().map(grant_to_proto).collect(),
            })
            .collect();
        revision = permissions
            .set_document_acls(authed(pb::SetDocumentAclsRequest { acls }, &service))
            .await
            .unwrap()
            .into_inner()
            .revision;
    }
    let loaded = start.elapsed();
    println!(
        "  load: SyncPrincipals of {USERS} users / {GROUPS} groups / {} memberships in {synced:.2?}; SetDocumentAcls of {DOCS} documents in 1,000s: {loaded:.2?} ({:.0} docs/s)",
        snapshot.memberships.len(),
        DOCS as f64 / loaded.as_secs_f64()
    );
    // The first read builds the tenant's index from the database.
    let start = Instant::now();
    permissions
        .check(authed(
            pb::CheckRequest {
                user_id: account_ids[0].clone(),
                document_id: d.docs[0].to_string(),
                at_least_revision: revision,
            },
            &service,
        ))
        .await
        .unwrap();
    println!(
        "  first check after load (index built from SQLite): {:.2?}",
        start.elapsed()
    );

    let pairs: Arc<Vec<(String, String)>> = Arc::new(
        (0..100_000)
            .map(|_| {
                (
                    account_ids[rng.below(ACCOUNTS)].clone(),
                    d.docs[rng.below(DOCS)].to_string(),
                )
            })
            .collect(),
    );
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let empty =
        |health: tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>| {
            move |_: usize| {
                let mut h = health.clone();
                async move {
                    h.check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .unwrap();
                }
            }
        };
    let check = |client: pb::permissions_service_client::PermissionsServiceClient<
        tonic::transport::Channel,
    >,
                 pairs: Arc<Vec<(String, String)>>,
                 token: String| {
        move |i: usize| {
            let mut c = client.clone();
            let (user, doc) = pairs[i % pairs.len()].clone();
            let request = authed(
                pb::CheckRequest {
                    user_id: user,
                    document_id: doc,
                    at_least_revision: 0,
                },
                &token,
            );
            async move {
                c.check(request).await.unwrap();
            }
        }
    };
    let n = 10_000;
    let empty_1 = measure(n, empty(health.clone())).await;
    let check_1 = measure(
        n,
        check(permissions.clone(), pairs.clone(), service.clone()),
    )
    .await;
    let empty_64 = measure_concurrent(64, 4 * n, empty(health.clone())).await;
    let check_64 = measure_concurrent(
        64,
        4 * n,
        check(permissions.clone(), pairs.clone(), service.clone()),
    )
    .await;
    println!("gRPC unary on loopback:");
    row("empty RPC, 1 in flight [baseline]", &empty_1, &empty_1);
    row("Check, 1 in flight", &check_1, &empty_1);
    row("empty RPC, 64 in flight [baseline]", &empty_64, &empty_64);
    row("Check, 64 in flight", &check_64, &empty_64);

    let batch_items: Vec<pb::CheckItem> = pairs
        .iter()
        .take(1000)
        .map(|(u, d)| pb::CheckItem {
            user_id: u.clone(),
            document_id: d.clone(),
        })
        .collect();
    let batch = measure(200, |_| {
        let mut c = permissions.clone();
        let request = authed(
            pb::BatchCheckRequest {
                items: batch_items.clone(),
                at_least_revision: 0,
            },
            &service,
        );
        async move {
            c.batch_check(request).await.unwrap();
        }
    })
    .await;
    println!(
        "  BatchCheck(1,000), 1 in flight: {:.0} calls/s = {:.0} checks/s, p50 {:.2?}, p99 {:.2?}",
        batch.per_sec,
        batch.per_sec * 1000.0,
        batch.p50,
        batch.p99
    );
    let page = measure(200, |_| {
        let mut c = permissions.clone();
        let request = authed(
            pb::ListReadableRequest {
                user_id: account_ids[0].clone(),
                page_size: 1000,
                page_token: String::new(),
                at_least_revision: 0,
            },
            &service,
        );
        async move {
            c.list_readable(request).await.unwrap();
        }
    })
    .await;
    println!(
        "  ListReadable, a page of 1,000 for a user reading ~47%: p50 {:.2?}, p99 {:.2?}",
        page.p50, page.p99
    );

    // Revoke a nested group edge and time until a check at the returned revision denies.
    let mut index = TenantIndex::build(snapshot.clone(), Arc::new(|s: &str| s.to_owned()));
    let sample_ids: Vec<_> = sample_users.iter().map(|u| d.users[*u]).collect();
    let mut victim = None;
    'search: for leaf in TOP + MID..GROUPS {
        let mid = d.group_parent[leaf].unwrap();
        let without: Vec<Membership> = snapshot
            .memberships
            .iter()
            .filter(|m| {
                !(m.member_is_group
                    && m.member == group_name(mid)
                    && m.group == group_name(d.group_parent[mid].unwrap()))
            })
            .cloned()
            .collect();
        let mut after = TenantIndex::build(snapshot.clone(), Arc::new(|s: &str| s.to_owned()));
        after.set_principals(
            d.integration,
            snapshot.principals.clone(),
            without.clone(),
            2,
        );
        for (k, user) in sample_ids.iter().enumerate() {
            for doc in d.docs.iter().take(20_000) {
                if index.check(*user, *doc) && !after.check(*user, *doc) {
                    victim = Some((k, *doc, without));
                    break 'search;
                }
            }
        }
    }
    let (k, doc, without) = victim.expect("a revocable pair");
    index.set_principals(
        d.integration,
        snapshot.principals.clone(),
        without.clone(),
        2,
    );
    let request = authed(sync_request(&d, &without), &service);
    let start = Instant::now();
    let revoked = permissions
        .sync_principals(request)
        .await
        .unwrap()
        .into_inner()
        .revision;
    let written = start.elapsed();
    let allowed = permissions
        .check(authed(
            pb::CheckRequest {
                user_id: account_ids[k].clone(),
                document_id: doc.to_string(),
                at_least_revision: revoked,
            },
            &service,
        ))
        .await
        .unwrap()
        .into_inner()
        .allowed;
    assert!(!allowed, "the revocation is visible");
    println!(
        "  revoke a nested group edge (SyncPrincipals of the whole set) until a check denies: {:.2?} (of which the write {written:.2?})",
        start.elapsed()
    );
    server.stop().await;
}
