//! The engine against a plain reference evaluator, on random graphs: nested groups,
//! cycles, users sharing an email across integrations, domain and anyone grants, and
//! random interleavings of ACL writes. Check, FilterReadable, ListReadable and
//! ExplainAccess must all agree with the reference after every write.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

use mindmesh_kit::ids::{DocumentId, IntegrationId, UserId};
use mindmesh_permissions::engine::{
    AccessRole, Account, DocumentAcl, Grant, Grantee, Membership, Principal, PrincipalKind,
    PrincipalRef, Snapshot, TenantIndex,
};
use proptest::prelude::*;
use uuid::Uuid;

const USERS: usize = 6;
const GROUPS: usize = 5;
const EMAILS: usize = 4;
const ACCOUNTS: usize = 4;
const DOCS: usize = 8;

fn integration(i: usize) -> IntegrationId {
    IntegrationId::from_uuid(Uuid::from_u128(0x1000 + i as u128))
}
/// Integrations 0 and 1, or (2) the native one, where accounts are the user principals.
fn acl_integration(i: usize) -> IntegrationId {
    if i == 2 {
        IntegrationId::NATIVE
    } else {
        integration(i)
    }
}
fn document(i: usize) -> DocumentId {
    DocumentId::from_uuid(Uuid::from_u128(0x2000 + i as u128))
}
fn account(i: usize) -> UserId {
    UserId::from_uuid(Uuid::from_u128(0x3000 + i as u128))
}
fn domain(i: usize) -> String {
    format!("d{i}.example")
}
/// The test's "blind index" of a domain: visible, but not the identity function.
fn hash_domain(d: &str) -> String {
    format!("h({d})")
}

#[derive(Clone, Debug)]
struct World {
    principals: Vec<Principal>,
    memberships: Vec<Membership>,
    accounts: Vec<Account>,
    acls: Vec<DocumentAcl>,
}

fn principal_strategy() -> impl Strategy<Value = Vec<Principal>> {
    // For each (integration, user): an optional email index.
    proptest::collection::vec(proptest::option::weighted(0.8, 0..EMAILS), 2 * USERS).prop_map(
        |emails| {
            let mut out = Vec::new();
            for (i, email) in emails.into_iter().enumerate() {
                out.push(Principal {
                    principal: PrincipalRef {
                        integration: integration(i / USERS),
                        kind: PrincipalKind::User,
                        external_id: format!("u{}", i % USERS),
                    },
                    email_index: email.map(|e| format!("e{e}")),
                });
            }
            for int in 0..2 {
                for g in 0..GROUPS {
                    out.push(Principal {
                        principal: PrincipalRef {
                            integration: integration(int),
                            kind: PrincipalKind::Group,
                            external_id: format!("g{g}"),
                        },
                        email_index: None,
                    });
                }
            }
            out
        },
    )
}

fn membership_strategy() -> impl Strategy<Value = Membership> {
    (0..2usize, 0..GROUPS, any::<bool>(), 0..USERS.max(GROUPS)).prop_map(
        |(int, group, member_is_group, member)| Membership {
            integration: integration(int),
            group: format!("g{group}"),
            member: if member_is_group {
                format!("g{}", member % GROUPS)
            } else {
                format!("u{}", member % USERS)
            },
            member_is_group,
        },
    )
}

fn grant_strategy() -> impl Strategy<Value = Grant> {
    let role = prop_oneof![
        Just(AccessRole::Reader),
        Just(AccessRole::Writer),
        Just(AccessRole::Owner)
    ];
    let grantee = prop_oneof![
        4 => (0..USERS).prop_map(|u| Grantee::User(format!("u{u}"))),
        4 => (0..GROUPS).prop_map(|g| Grantee::Group(format!("g{g}"))),
        1 => (0..2usize).prop_map(|d| Grantee::Domain(domain(d).to_uppercase())),
        1 => Just(Grantee::Anyone),
        // An account by user id: reaches only on native documents.
        2 => (0..ACCOUNTS).prop_map(|a| Grantee::User(account(a).to_string())),
    ];
    (grantee, role).prop_map(|(grantee, role)| Grant { grantee, role })
}

fn acl_strategy() -> impl Strategy<Value = DocumentAcl> {
    (
        0..DOCS,
        0..3usize,
        proptest::collection::vec(grant_strategy(), 0..4),
    )
        .prop_map(|(d, int, grants)| DocumentAcl {
            document: document(d),
            integration: acl_integration(int),
            grants,
        })
}

fn world_strategy() -> impl Strategy<Value = World> {
    (
        principal_strategy(),
        proptest::collection::vec(membership_strategy(), 0..20),
        proptest::collection::vec((0..EMAILS, 0..2usize), ACCOUNTS),
        proptest::collection::vec(acl_strategy(), 0..DOCS),
    )
        .prop_map(|(principals, memberships, accounts, acls)| World {
            principals,
            memberships,
            accounts: accounts
                .into_iter()
                .enumerate()
                .map(|(i, (e, d))| Account {
                    user: account(i),
                    email_index: format!("e{e}"),
                    domain_index: hash_domain(&domain(d)),
                })
                .collect(),
            acls,
        })
}

#[derive(Clone, Debug)]
enum Op {
    Acls(Vec<DocumentAcl>),
    Principals(usize, Vec<Principal>, Vec<Membership>, bool),
    Accounts(Vec<Account>),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        proptest::collection::vec(acl_strategy(), 1..4).prop_map(Op::Acls),
        (
            0..2usize,
            principal_strategy(),
            proptest::collection::vec(membership_strategy(), 0..12),
            any::<bool>()
        )
            .prop_map(|(int, p, m, as_diff)| Op::Principals(int, p, m, as_diff)),
        proptest::collection::vec((0..EMAILS, 0..2usize), 0..ACCOUNTS).prop_map(|accounts| {
            Op::Accounts(
                accounts
                    .into_iter()
                    .enumerate()
                    .map(|(i, (e, d))| Account {
                        user: account(i),
                        email_index: format!("e{e}"),
                        domain_index: hash_domain(&domain(d)),
                    })
                    .collect(),
            )
        }),
    ]
}

/// The reference: no index, no cache, a breadth-first walk per question.
struct Reference<'a> {
    world: &'a World,
}

impl Reference<'_> {
    fn acl(&self, doc: DocumentId) -> Option<&DocumentAcl> {
        self.world.acls.iter().rev().find(|a| a.document == doc)
    }

    /// Every principal (user and group) the account reaches.
    fn reach(&self, user: UserId) -> Option<(HashSet<PrincipalRef>, String)> {
        let account = self.world.accounts.iter().find(|a| a.user == user)?;
        let mut seen = HashSet::new();
        let mut queue: VecDeque<PrincipalRef> = self
            .world
            .principals
            .iter()
            .filter(|p| {
                p.principal.kind == PrincipalKind::User
                    && p.email_index.as_deref() == Some(account.email_index.as_str())
            })
            .map(|p| p.principal.clone())
            .collect();
        // In the native integration, the account is itself a user principal.
        queue.push_back(PrincipalRef {
            integration: IntegrationId::NATIVE,
            kind: PrincipalKind::User,
            external_id: user.to_string(),
        });
        while let Some(p) = queue.pop_front() {
            if !seen.insert(p.clone()) {
                continue;
            }
            for m in &self.world.memberships {
                let member_kind = if m.member_is_group {
                    PrincipalKind::Group
                } else {
                    PrincipalKind::User
                };
                if m.integration == p.integration
                    && member_kind == p.kind
                    && m.member == p.external_id
                {
                    queue.push_back(PrincipalRef {
                        integration: m.integration,
                        kind: PrincipalKind::Group,
                        external_id: m.group.clone(),
                    });
                }
            }
        }
        Some((seen, account.domain_index.clone()))
    }

    fn grant_reaches(
        acl: &DocumentAcl,
        grant: &Grant,
        reach: &HashSet<PrincipalRef>,
        domain_index: &str,
    ) -> bool {
        match &grant.grantee {
            Grantee::Anyone => true,
            Grantee::Domain(d) => hash_domain(&d.to_lowercase()) == domain_index,
            Grantee::User(id) => reach.contains(&PrincipalRef {
                integration: acl.integration,
                kind: PrincipalKind::User,
                external_id: id.clone(),
            }),
            Grantee::Group(id) => reach.contains(&PrincipalRef {
                integration: acl.integration,
                kind: PrincipalKind::Group,
                external_id: id.clone(),
            }),
        }
    }

    fn check(&self, user: UserId, doc: DocumentId) -> bool {
        let (Some((reach, domain)), Some(acl)) = (self.reach(user), self.acl(doc)) else {
            return false;
        };
        acl.grants
            .iter()
            .any(|g| Self::grant_reaches(acl, g, &reach, &domain))
    }
}

fn snapshot(world: &World) -> Snapshot {
    Snapshot {
        revision: 1,
        accounts: world.accounts.clone(),
        principals: world.principals.clone(),
        memberships: world.memberships.clone(),
        acls: world.acls.clone(),
    }
}

fn assert_agrees(index: &TenantIndex, world: &World) {
    let reference = Reference { world };
    let all_docs: Vec<DocumentId> = (0..DOCS).map(document).collect();
    for a in 0..ACCOUNTS + 1 {
        // Account ACCOUNTS does not exist: it may read nothing.
        let user = account(a);
        let expected: Vec<DocumentId> = all_docs
            .iter()
            .copied()
            .filter(|d| reference.check(user, *d))
            .collect();
        for d in &all_docs {
            assert_eq!(
                index.check(user, *d),
                reference.check(user, *d),
                "check({a}, {d})"
            );
        }
        assert_eq!(
            index.filter_readable(user, &all_docs),
            expected,
            "filter_readable({a})"
        );
        let sorted: Vec<DocumentId> = expected
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(
            index.list_readable(user, None, usize::MAX),
            sorted,
            "list_readable({a})"
        );
        // Paging in twos returns the same list.
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = index.list_readable(user, after, 2);
            let Some(last) = page.last() else { break };
            after = Some(*last);
            paged.extend(page);
        }
        assert_eq!(paged, sorted, "paged list_readable({a})");
        for d in &all_docs {
            let explanation = index.explain(user, *d);
            assert_eq!(
                explanation.is_some(),
                reference.check(user, *d),
                "explain({a}, {d})"
            );
            if let Some(e) = explanation {
                check_explanation(world, &reference, user, *d, &e);
            }
        }
    }
}

/// An explanation must be true: its grant is on the document and its path is made of
/// real membership edges from a principal of the account to the granted group.
fn check_explanation(
    world: &World,
    reference: &Reference<'_>,
    user: UserId,
    doc: DocumentId,
    e: &mindmesh_permissions::engine::Explanation,
) {
    let acl = reference.acl(doc).unwrap();
    assert!(
        acl.grants.contains(&e.grant),
        "explained grant is on the document"
    );
    let (reach, domain) = reference.reach(user).unwrap();
    assert!(
        Reference::grant_reaches(acl, &e.grant, &reach, &domain),
        "explained grant reaches the user"
    );
    match &e.grant.grantee {
        Grantee::User(id) => {
            let p = e.principal.as_ref().unwrap();
            assert_eq!(&p.external_id, id);
            assert!(e.group_path.is_empty());
        }
        Grantee::Group(id) => {
            let p = e.principal.as_ref().unwrap();
            assert_eq!(p.kind, PrincipalKind::User);
            assert_eq!(e.group_path.last(), Some(id));
            let mut member = (p.external_id.clone(), false);
            for group in &e.group_path {
                assert!(
                    world
                        .memberships
                        .iter()
                        .any(|m| m.integration == p.integration
                            && m.group == *group
                            && m.member == member.0
                            && m.member_is_group == member.1),
                    "path edge {member:?} → {group} exists"
                );
                member = (group.clone(), true);
            }
        }
        Grantee::Domain(_) | Grantee::Anyone => assert!(e.principal.is_none()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn p02_engine_agrees_with_reference(world in world_strategy()) {
        let index = TenantIndex::build(snapshot(&world), Arc::new(hash_domain));
        assert_agrees(&index, &world);
    }

    #[test]
    fn p02_engine_agrees_after_random_acl_writes(
        world in world_strategy(),
        writes in proptest::collection::vec(proptest::collection::vec(acl_strategy(), 1..4), 1..6),
    ) {
        let mut world = world;
        let mut index = TenantIndex::build(snapshot(&world), Arc::new(hash_domain));
        for (i, batch) in writes.into_iter().enumerate() {
            // Within a batch, a later ACL of the same document wins, as in the store.
            world.acls.extend(batch.iter().cloned());
            index.set_acls(batch, 2 + i as u64);
            assert_eq!(index.revision(), 2 + i as u64);
            assert_agrees(&index, &world);
        }
    }

    #[test]
    fn p02_engine_agrees_after_random_interleaved_writes(
        world in world_strategy(),
        ops in proptest::collection::vec(op_strategy(), 1..8),
    ) {
        let mut world = world;
        let mut index = TenantIndex::build(snapshot(&world), Arc::new(hash_domain));
        for (i, op) in ops.into_iter().enumerate() {
            let revision = 2 + i as u64;
            match op {
                Op::Acls(batch) => {
                    world.acls.extend(batch.iter().cloned());
                    index.set_acls(batch, revision);
                }
                Op::Principals(int, principals, memberships, as_diff) => {
                    let integration = integration(int);
                    let principals: Vec<Principal> = principals.into_iter().filter(|p| p.principal.integration == integration).collect();
                    let mut memberships: Vec<Membership> = memberships.into_iter().map(|m| Membership { integration, ..m }).collect();
                    memberships.sort();
                    memberships.dedup();
                    let old_principals: Vec<Principal> = world.principals.iter().filter(|p| p.principal.integration == integration).cloned().collect();
                    let old_edges: Vec<Membership> = world.memberships.iter().filter(|m| m.integration == integration).cloned().collect();
                    world.principals.retain(|p| p.principal.integration != integration);
                    world.principals.extend(principals.iter().cloned());
                    world.memberships.retain(|m| m.integration != integration);
                    world.memberships.extend(memberships.iter().cloned());
                    if as_diff {
                        // What the store's diff hands over: new or changed principals,
                        // removed ones, and the edge differences.
                        let upserted: Vec<Principal> = principals.iter().filter(|p| !old_principals.contains(p)).cloned().collect();
                        let removed: Vec<(PrincipalKind, String)> = old_principals
                            .iter()
                            .filter(|o| !principals.iter().any(|p| p.principal == o.principal))
                            .map(|o| (o.principal.kind, o.principal.external_id.clone()))
                            .collect();
                        let added: Vec<Membership> = memberships.iter().filter(|m| !old_edges.contains(m)).cloned().collect();
                        let gone: Vec<Membership> = old_edges.iter().filter(|m| !memberships.contains(m)).cloned().collect();
                        index.apply_principal_changes(integration, upserted, removed, added, gone, revision);
                    } else {
                        index.set_principals(integration, principals, memberships, revision);
                    }
                }
                Op::Accounts(accounts) => {
                    world.accounts = accounts.clone();
                    index.set_accounts(accounts, revision);
                }
            }
            prop_assert_eq!(index.revision(), revision);
            assert_agrees(&index, &world);
        }
    }

    #[test]
    fn p05_one_email_is_one_reader_across_integrations(group in 0..GROUPS, user_a in 0..USERS, user_b in 0..USERS) {
        // The same person appears as user_a in integration 0 and user_b in integration 1.
        let world = World {
            principals: vec![
                Principal { principal: PrincipalRef { integration: integration(0), kind: PrincipalKind::User, external_id: format!("u{user_a}") }, email_index: Some("e0".into()) },
                Principal { principal: PrincipalRef { integration: integration(1), kind: PrincipalKind::User, external_id: format!("u{user_b}") }, email_index: Some("e0".into()) },
            ],
            memberships: vec![Membership { integration: integration(1), group: format!("g{group}"), member: format!("u{user_b}"), member_is_group: false }],
            accounts: vec![Account { user: account(0), email_index: "e0".into(), domain_index: hash_domain("elsewhere.example") }],
            acls: vec![
                DocumentAcl { document: document(0), integration: integration(0), grants: vec![Grant { grantee: Grantee::User(format!("u{user_a}")), role: AccessRole::Reader }] },
                DocumentAcl { document: document(1), integration: integration(1), grants: vec![Grant { grantee: Grantee::Group(format!("g{group}")), role: AccessRole::Reader }] },
            ],
        };
        let index = TenantIndex::build(snapshot(&world), Arc::new(hash_domain));
        prop_assert!(index.check(account(0), document(0)), "readable through the first integration");
        prop_assert!(index.check(account(0), document(1)), "readable through the second integration's group");
        prop_assert_eq!(index.list_readable(account(0), None, 10).len(), 2);
        assert_agrees(&index, &world);
    }
}

#[test]
fn p02_membership_cycles_terminate() {
    let cycle: Vec<Membership> = (0..GROUPS)
        .map(|g| Membership {
            integration: integration(0),
            group: format!("g{}", (g + 1) % GROUPS),
            member: format!("g{g}"),
            member_is_group: true,
        })
        .chain(std::iter::once(Membership {
            integration: integration(0),
            group: "g0".into(),
            member: "u0".into(),
            member_is_group: false,
        }))
        .collect();
    let world = World {
        principals: vec![Principal {
            principal: PrincipalRef {
                integration: integration(0),
                kind: PrincipalKind::User,
                external_id: "u0".into(),
            },
            email_index: Some("e0".into()),
        }],
        memberships: cycle,
        accounts: vec![Account {
            user: account(0),
            email_index: "e0".into(),
            domain_index: hash_domain("x.example"),
        }],
        acls: vec![DocumentAcl {
            document: document(0),
            integration: integration(0),
            grants: vec![Grant {
                grantee: Grantee::Group("g4".into()),
                role: AccessRole::Reader,
            }],
        }],
    };
    let index = TenantIndex::build(snapshot(&world), Arc::new(hash_domain));
    assert!(index.check(account(0), document(0)));
    let e = index.explain(account(0), document(0)).unwrap();
    assert_eq!(e.group_path, vec!["g0", "g1", "g2", "g3", "g4"]);
    assert_agrees(&index, &world);
}
