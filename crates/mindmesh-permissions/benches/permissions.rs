//! `make bench` (feature `bench-compare`): the permission engine on the issue's dataset
//! — 10,000 users, 1,000 groups nested to depth 3 (each user in ~5), 100,000 documents
//! with 1–5 grants (~50% group, ~35% user, ~10% domain, ~5% anyone) — beside
//! cedar-policy and casbin on the identical data, all three cross-checked for equal
//! answers on a sample. Every figure is printed beside its baseline from the same run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up should stop

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mindmesh_kit::ids::DocumentId;
use mindmesh_permissions::dataset::*;
use mindmesh_permissions::engine::{Grantee, Membership, TenantIndex};

fn resident_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<usize>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

struct Figures {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn time_each(n: usize, mut f: impl FnMut(usize)) -> Figures {
    for i in 0..n / 10 {
        f(i);
    }
    // Rate from a plain loop; latencies from a second pass timing each call.
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    let total = start.elapsed();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(n + i);
        samples.push(t.elapsed());
    }
    samples.sort();
    Figures {
        per_sec: n as f64 / total.as_secs_f64(),
        p50: samples[n / 2],
        p99: samples[n * 99 / 100],
    }
}

fn row(name: &str, f: &Figures, base: &Figures) {
    println!(
        "  {name:<44} {:>11.0}/s  p50 {:>9.2?}  p99 {:>9.2?}   {:>7.1}× baseline rate",
        f.per_sec,
        f.p50,
        f.p99,
        f.per_sec / base.per_sec
    );
}

// ---- cedar-policy -----------------------------------------------------------------------

mod cedar {
    use super::*;
    use cedar_policy::{
        Authorizer, Context, Decision, Entities, Entity, EntityUid, PolicySet, Request,
        RestrictedExpression,
    };

    pub struct Cedar {
        entities: Entities,
        policies: PolicySet,
        authorizer: Authorizer,
        action: EntityUid,
    }

    fn uid(kind: &str, id: &str) -> EntityUid {
        EntityUid::from_str(&format!("{kind}::\"{id}\"")).unwrap()
    }

    pub fn build(d: &Dataset) -> Cedar {
        let mut entities = Vec::new();
        for g in 0..GROUPS {
            let parents = d.group_parent[g]
                .map(|p| uid("Group", &group_name(p)))
                .into_iter()
                .collect();
            entities.push(Entity::new_no_attrs(uid("Group", &group_name(g)), parents));
        }
        for u in 0..USERS {
            let parents: HashSet<EntityUid> = d.user_groups[u]
                .iter()
                .map(|g| uid("Group", &group_name(*g)))
                .collect();
            let attrs = HashMap::from([(
                "domain".to_owned(),
                RestrictedExpression::new_string(DOMAINS[d.user_domain[u]].to_owned()),
            )]);
            entities.push(Entity::new(uid("User", &user_name(u)), attrs, parents).unwrap());
        }
        for (i, grants) in d.acls.iter().enumerate() {
            let mut readers = Vec::new();
            let mut domains = Vec::new();
            let mut anyone = false;
            for g in grants {
                match &g.grantee {
                    Grantee::User(u) => {
                        readers.push(RestrictedExpression::new_entity_uid(uid("User", u)))
                    }
                    Grantee::Group(gr) => {
                        readers.push(RestrictedExpression::new_entity_uid(uid("Group", gr)))
                    }
                    Grantee::Domain(dm) => {
                        domains.push(RestrictedExpression::new_string(dm.clone()))
                    }
                    Grantee::Anyone => anyone = true,
                }
            }
            let attrs = HashMap::from([
                ("readers".to_owned(), RestrictedExpression::new_set(readers)),
                ("domains".to_owned(), RestrictedExpression::new_set(domains)),
                ("anyone".to_owned(), RestrictedExpression::new_bool(anyone)),
            ]);
            entities.push(
                Entity::new(
                    uid("Document", &d.docs[i].to_string()),
                    attrs,
                    HashSet::new(),
                )
                .unwrap(),
            );
        }
        let policies = PolicySet::from_str(
            r#"permit(principal, action == Action::"read", resource)
               when { resource.anyone || resource.domains.contains(principal.domain) || principal in resource.readers };"#,
        )
        .unwrap();
        Cedar {
            entities: Entities::from_entities(entities, None).unwrap(),
            policies,
            authorizer: Authorizer::new(),
            action: uid("Action", "read"),
        }
    }

    impl Cedar {
        pub fn check(&self, user: usize, doc: &str) -> bool {
            let request = Request::new(
                uid("User", &user_name(user)),
                self.action.clone(),
                uid("Document", doc),
                Context::empty(),
                None,
            )
            .unwrap();
            self.authorizer
                .is_authorized(&request, &self.policies, &self.entities)
                .decision()
                == Decision::Allow
        }
    }
}

// ---- casbin -------------------------------------------------------------------------------

mod casbin_impl {
    use super::*;
    use casbin::prelude::*;

    /// The best encoding found: one policy row, and every grant as a role edge, so a
    /// check is a reachability query in casbin's role graph instead of a scan of 300k rows.
    pub async fn build(d: &Dataset) -> Enforcer {
        let model = DefaultModel::from_str(
            "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, act\n[role_definition]\ng = _, _\n\
             [policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = g(r.sub, r.obj) && r.act == p.act\n",
        )
        .await
        .unwrap();
        let mut e = Enforcer::new(model, MemoryAdapter::default())
            .await
            .unwrap();
        e.add_policy(vec!["any".into(), "read".into()])
            .await
            .unwrap();
        let mut edges: Vec<Vec<String>> = Vec::new();
        for (u, gs) in d.user_groups.iter().enumerate() {
            for g in gs {
                edges.push(vec![user_name(u), group_name(*g)]);
            }
            edges.push(vec![
                user_name(u),
                format!("domain:{}", DOMAINS[d.user_domain[u]]),
            ]);
            edges.push(vec![user_name(u), "anyone".into()]);
        }
        for (g, parent) in d.group_parent.iter().enumerate() {
            if let Some(p) = parent {
                edges.push(vec![group_name(g), group_name(*p)]);
            }
        }
        for (i, grants) in d.acls.iter().enumerate() {
            let doc = format!("doc:{}", d.docs[i]);
            for g in grants {
                let from = match &g.grantee {
                    Grantee::User(u) | Grantee::Group(u) => u.clone(),
                    Grantee::Domain(dm) => format!("domain:{dm}"),
                    Grantee::Anyone => "anyone".into(),
                };
                edges.push(vec![from, doc.clone()]);
            }
        }
        e.add_grouping_policies(edges).await.unwrap();
        e
    }

    pub fn check(e: &Enforcer, user: usize, doc: &DocumentId) -> bool {
        e.enforce((user_name(user), format!("doc:{doc}"), "read"))
            .unwrap()
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "permission engine benchmark: {USERS} users, {GROUPS} groups (depth 3), {DOCS} documents"
    );
    let d = dataset();
    let grants: usize = d.acls.iter().map(Vec::len).sum();
    println!(
        "  dataset: {grants} grants, {} memberships",
        d.user_groups.iter().map(Vec::len).sum::<usize>() + MID + LEAF
    );

    let before = resident_bytes();
    let start = Instant::now();
    let index = TenantIndex::build(snapshot(&d), Arc::new(|s: &str| s.to_owned()));
    let build_time = start.elapsed();
    let engine_bytes = resident_bytes().saturating_sub(before);
    let before = resident_bytes();
    let start = Instant::now();
    let cedar = cedar::build(&d);
    let cedar_build = start.elapsed();
    let cedar_bytes = resident_bytes().saturating_sub(before);
    let start = Instant::now();
    let casbin = runtime.block_on(casbin_impl::build(&d));
    let casbin_build = start.elapsed();

    // Equal answers on a sample, with a fair share of allowed pairs.
    let mut rng = Rng(7);
    let mut allowed = 0;
    let sample = 2_000;
    for _ in 0..sample {
        let (u, doc) = (rng.below(USERS), rng.below(DOCS));
        let ours = index.check(d.users[u], d.docs[doc]);
        assert_eq!(
            ours,
            cedar.check(u, &d.docs[doc].to_string()),
            "cedar disagrees on u{u} doc{doc}"
        );
        assert_eq!(
            ours,
            casbin_impl::check(&casbin, u, &d.docs[doc]),
            "casbin disagrees on u{u} doc{doc}"
        );
        allowed += usize::from(ours);
    }
    println!("  cross-check: {sample} random pairs, all three agree ({allowed} allowed)");

    let pairs: Vec<(usize, usize)> = {
        let mut rng = Rng(9);
        (0..200_000)
            .map(|_| (rng.below(USERS), rng.below(DOCS)))
            .collect()
    };
    let doc_strings: Vec<String> = d.docs.iter().map(ToString::to_string).collect();
    println!("\nin-process Check (1 thread):");
    let cedar_fig = time_each(20_000, |i| {
        let (u, doc) = pairs[i % pairs.len()];
        std::hint::black_box(cedar.check(u, &doc_strings[doc]));
    });
    let casbin_fig = time_each(2_000, |i| {
        let (u, doc) = pairs[i % pairs.len()];
        std::hint::black_box(casbin_impl::check(&casbin, u, &d.docs[doc]));
    });
    let ours = time_each(200_000, |i| {
        let (u, doc) = pairs[i % pairs.len()];
        std::hint::black_box(index.check(d.users[u], d.docs[doc]));
    });
    row("cedar-policy 4.14 [baseline]", &cedar_fig, &cedar_fig);
    row(
        "casbin 2.20 (grants as role edges)",
        &casbin_fig,
        &cedar_fig,
    );
    row("mindmesh engine", &ours, &cedar_fig);

    println!("\nListReadable and writes (in process):");
    let readable = index
        .list_readable(d.users[d.power_user], None, usize::MAX)
        .len();
    let list = time_each(50, |_| {
        std::hint::black_box(index.list_readable(d.users[d.power_user], None, usize::MAX));
    });
    println!(
        "  ListReadable, user reading {readable} of {DOCS} ({:.0}%): p50 {:.2?}, p99 {:.2?}",
        100.0 * readable as f64 / DOCS as f64,
        list.p50,
        list.p99
    );
    let page = time_each(2_000, |_| {
        std::hint::black_box(index.list_readable(d.users[d.power_user], None, 1_000));
    });
    println!(
        "  ListReadable, first page of 1,000 for that user: p50 {:.2?}, p99 {:.2?}",
        page.p50, page.p99
    );

    // Revocation of a nested group edge: SyncPrincipals replaces the integration's graph.
    let mut index = index;
    let snap = snapshot(&d);
    let leaf = TOP + MID; // a leaf group and its mid parent
    let mid = d.group_parent[leaf].unwrap();
    let memberships: Vec<Membership> = snap
        .memberships
        .iter()
        .filter(|m| {
            !(m.member_is_group && m.member == group_name(leaf) && m.group == group_name(mid))
        })
        .cloned()
        .collect();
    let start = Instant::now();
    index.set_principals(d.integration, snap.principals.clone(), memberships, 2);
    let revoke = start.elapsed();
    println!(
        "  revoke a nested group edge (full principal set re-applied) until visible: {revoke:.2?}"
    );

    println!("\nmemory and build:");
    println!(
        "  mindmesh index: {:.1} MiB resident ({:.1} MiB estimated), built in {build_time:.2?}",
        engine_bytes as f64 / 1048576.0,
        index.approximate_bytes() as f64 / 1048576.0
    );
    println!(
        "  cedar-policy entity store: {:.1} MiB resident, built in {cedar_build:.2?}",
        cedar_bytes as f64 / 1048576.0
    );
    println!("  casbin enforcer built in {casbin_build:.2?}");
}
