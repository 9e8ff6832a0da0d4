//! The synthetic dataset of the permission benchmarks (issue: 10,000 users, 1,000
//! groups nested to depth 3 with each user in ~5, 100,000 documents with 1–5 grants:
//! ~50% group, ~35% user, ~10% domain, ~5% anyone). Deterministic: the same seed gives
//! the same data, so figures from different runs describe the same work.

use mindmesh_kit::ids::{DocumentId, IntegrationId, UserId};
use uuid::Uuid;

use crate::engine::{
    AccessRole, Account, DocumentAcl, Grant, Grantee, Membership, Principal, PrincipalKind,
    PrincipalRef, Snapshot,
};

/// Users (and user principals).
pub const USERS: usize = 10_000;
/// Top-level groups.
pub const TOP: usize = 100;
/// Groups one level down.
pub const MID: usize = 300;
/// Groups two levels down.
pub const LEAF: usize = 600;
/// All groups.
pub const GROUPS: usize = TOP + MID + LEAF;
/// Documents.
pub const DOCS: usize = 100_000;
/// Email domains of the users.
pub const DOMAINS: [&str; 2] = ["acme.example", "subsidiary.example"];

/// SplitMix64: a deterministic dataset without a dependency.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() as f64 / u64::MAX as f64) < p
    }
}

/// The generated data.
pub struct Dataset {
    pub integration: IntegrationId,
    pub users: Vec<UserId>,
    pub docs: Vec<DocumentId>,
    /// user → direct groups; group → parent group.
    pub user_groups: Vec<Vec<usize>>,
    pub group_parent: Vec<Option<usize>>,
    pub user_domain: Vec<usize>,
    pub acls: Vec<Vec<Grant>>,
    pub power_user: usize,
}

/// External id of group `g`.
pub fn group_name(g: usize) -> String {
    format!("g{g}")
}
/// External id of user `u`.
pub fn user_name(u: usize) -> String {
    format!("u{u}")
}

/// Generates the dataset.
pub fn dataset() -> Dataset {
    let mut rng = Rng(42);
    // Groups 0..TOP are roots; MID hang under a TOP; LEAF under a MID: depth 3.
    let group_parent: Vec<Option<usize>> = (0..GROUPS)
        .map(|g| match g {
            g if g < TOP => None,
            g if g < TOP + MID => Some(rng.below(TOP)),
            _ => Some(TOP + rng.below(MID)),
        })
        .collect();
    let mut user_groups: Vec<Vec<usize>> = (0..USERS)
        .map(|_| {
            let mut gs: Vec<usize> = (0..5).map(|_| TOP + rng.below(MID + LEAF)).collect();
            gs.sort_unstable();
            gs.dedup();
            gs
        })
        .collect();
    // One user who may read about 40% of the documents (for ListReadable).
    let power_user = 0;
    user_groups[power_user] = (0..GROUPS).filter(|_| rng.chance(0.12)).collect();
    let user_domain: Vec<usize> = (0..USERS).map(|u| u % DOMAINS.len()).collect();
    let acls = (0..DOCS)
        .map(|_| {
            let n = 1 + rng.below(5);
            (0..n)
                .map(|_| {
                    let r = rng.below(100);
                    let grantee = if r < 50 {
                        Grantee::Group(group_name(rng.below(GROUPS)))
                    } else if r < 85 {
                        Grantee::User(user_name(rng.below(USERS)))
                    } else if r < 95 {
                        Grantee::Domain(DOMAINS[rng.below(DOMAINS.len())].to_owned())
                    } else {
                        Grantee::Anyone
                    };
                    Grant {
                        grantee,
                        role: AccessRole::Reader,
                    }
                })
                .collect()
        })
        .collect();
    Dataset {
        integration: IntegrationId::from_uuid(Uuid::from_u128(1)),
        users: (0..USERS)
            .map(|i| UserId::from_uuid(Uuid::from_u128(0x1_0000_0000 + i as u128)))
            .collect(),
        docs: (0..DOCS)
            .map(|i| DocumentId::from_uuid(Uuid::from_u128(0x2_0000_0000 + i as u128)))
            .collect(),
        user_groups,
        group_parent,
        user_domain,
        acls,
        power_user,
    }
}

/// The dataset as an engine snapshot (accounts for every user, domains unhashed).
pub fn snapshot(d: &Dataset) -> Snapshot {
    let mut principals = Vec::new();
    for u in 0..USERS {
        principals.push(Principal {
            principal: PrincipalRef {
                integration: d.integration,
                kind: PrincipalKind::User,
                external_id: user_name(u),
            },
            email_index: Some(format!("e{u}")),
        });
    }
    for g in 0..GROUPS {
        principals.push(Principal {
            principal: PrincipalRef {
                integration: d.integration,
                kind: PrincipalKind::Group,
                external_id: group_name(g),
            },
            email_index: None,
        });
    }
    let mut memberships = Vec::new();
    for (u, gs) in d.user_groups.iter().enumerate() {
        for g in gs {
            memberships.push(Membership {
                integration: d.integration,
                group: group_name(*g),
                member: user_name(u),
                member_is_group: false,
            });
        }
    }
    for (g, parent) in d.group_parent.iter().enumerate() {
        if let Some(p) = parent {
            memberships.push(Membership {
                integration: d.integration,
                group: group_name(*p),
                member: group_name(g),
                member_is_group: true,
            });
        }
    }
    Snapshot {
        revision: 1,
        accounts: (0..USERS)
            .map(|u| Account {
                user: d.users[u],
                email_index: format!("e{u}"),
                domain_index: DOMAINS[d.user_domain[u]].to_owned(),
            })
            .collect(),
        principals,
        memberships,
        acls: d
            .acls
            .iter()
            .enumerate()
            .map(|(i, grants)| DocumentAcl {
                document: d.docs[i],
                integration: d.integration,
                grants: grants.clone(),
            })
            .collect(),
    }
}
