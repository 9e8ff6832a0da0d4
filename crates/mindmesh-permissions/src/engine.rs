//! The permission engine: an in-memory index of one tenant's principals, group graph,
//! accounts and document grants, answering Check, ListReadable and ExplainAccess in
//! microseconds (P02, P05).
//!
//! It is pure: built from a [`Snapshot`], changed by [`TenantIndex::set_acls`], with no
//! I/O, so that a property test can hold it against a plain reference evaluator.
//!
//! How a check is answered: account → its email's blind index → every user principal
//! with that index, in any integration (P05) → their groups, transitively (cycles are
//! cut, never looped) → the document's grants: to one of those principals or groups, to
//! the account's email domain, or to anyone.
//!
//! Native documents (written in Mindmesh) have their grants in the reserved
//! [`IntegrationId::NATIVE`] integration, whose user principals are the accounts
//! themselves, named by user id: every account starts its walk there too.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;

use mindmesh_kit::ids::{DocumentId, IntegrationId, UserId};

/// Index of a principal inside one [`TenantIndex`].
type Uid = u32;

/// User or group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrincipalKind {
    /// A person at the source.
    User,
    /// A group at the source.
    Group,
}

/// A principal as the source names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrincipalRef {
    /// The integration it comes from.
    pub integration: IntegrationId,
    /// User or group.
    pub kind: PrincipalKind,
    /// The source's id.
    pub external_id: String,
}

/// What a grant allows. Source roles such as commenter map to `Reader`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccessRole {
    /// May read.
    Reader,
    /// May read and change.
    Writer,
    /// Owns the document.
    Owner,
}

/// Who a grant is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grantee {
    /// A user of the document's integration, by external id.
    User(String),
    /// A group of the document's integration, by external id.
    Group(String),
    /// Everyone whose email is in this domain (lowercase).
    Domain(String),
    /// Everyone in the tenant.
    Anyone,
}

/// One grant on a document.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grant {
    /// Who.
    pub grantee: Grantee,
    /// What.
    pub role: AccessRole,
}

/// The whole grant set of one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentAcl {
    /// The document.
    pub document: DocumentId,
    /// The integration its grants come from.
    pub integration: IntegrationId,
    /// Every grant; empty means nobody may read it.
    pub grants: Vec<Grant>,
}

/// A principal and the blind index of its email, which links it to an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Which principal.
    pub principal: PrincipalRef,
    /// Blind index of the lowercased email; `None` when the source gave none.
    pub email_index: Option<String>,
}

/// A membership edge inside one integration.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Membership {
    /// The integration.
    pub integration: IntegrationId,
    /// External id of the group.
    pub group: String,
    /// External id of the member.
    pub member: String,
    /// Whether the member is a group.
    pub member_is_group: bool,
}

/// A Mindmesh account as the engine needs it: blind indexes only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The account.
    pub user: UserId,
    /// Blind index of the lowercased email.
    pub email_index: String,
    /// Blind index of the lowercased email domain.
    pub domain_index: String,
}

/// Everything the index is built from.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The revision this state is at.
    pub revision: u64,
    /// Accounts of the tenant.
    pub accounts: Vec<Account>,
    /// Principals of every integration.
    pub principals: Vec<Principal>,
    /// Memberships of every integration.
    pub memberships: Vec<Membership>,
    /// Grants of every document.
    pub acls: Vec<DocumentAcl>,
}

/// Why a user may read a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The grant that reaches the user.
    pub grant: Grant,
    /// The user principal the grant reaches (none for domain and anyone grants).
    pub principal: Option<PrincipalRef>,
    /// External ids of the groups from that principal up to the granted group.
    pub group_path: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Target {
    Principal(Uid),
    Domain(u32),
    Anyone,
}

/// One document's grants: compact targets for checks, full grants for explanations.
#[derive(Clone, Debug)]
struct DocEntry {
    integration: IntegrationId,
    /// Inline for up to five grants: one memory access fewer per check.
    targets: SmallVec<[Target; 5]>,
    grants: Box<[Grant]>,
}

/// What one account reaches: its user principals and all their groups (sorted), and
/// its email domain.
#[derive(Debug, Default)]
struct ReaderSet {
    principals: SmallVec<[Uid; 24]>,
    domain: Option<u32>,
}

impl ReaderSet {
    fn reaches(&self, target: Target) -> bool {
        match target {
            Target::Anyone => true,
            Target::Domain(d) => self.domain == Some(d),
            Target::Principal(uid) => self.principals.binary_search(&uid).is_ok(),
        }
    }
}

/// The principal an account is in the native integration.
pub fn native_principal(user: UserId) -> PrincipalRef {
    PrincipalRef {
        integration: IntegrationId::NATIVE,
        kind: PrincipalKind::User,
        external_id: user.to_string(),
    }
}

/// Turns a domain named in a grant into the blind index accounts carry.
pub type DomainHasher = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// The index of one tenant. Reads take `&self` and never lock; writes take `&mut self`.
pub struct TenantIndex {
    revision: u64,
    refs: Vec<PrincipalRef>,
    ids: FxHashMap<PrincipalRef, Uid>,
    /// Direct parents (groups) of each principal.
    parents: Vec<Vec<Uid>>,
    /// User principals by email blind index (P05: one person across integrations).
    by_email: FxHashMap<String, Vec<Uid>>,
    /// Each account's email blind index, domain, and its own principal in the native
    /// integration.
    accounts: FxHashMap<UserId, (String, Option<u32>, Uid)>,
    domains: FxHashMap<String, u32>,
    docs: FxHashMap<DocumentId, DocEntry>,
    /// Reverse index, ordered: which documents each target appears in.
    docs_by_target: FxHashMap<Target, BTreeSet<DocumentId>>,
    /// Every account's reader set, recomputed whenever the graph or accounts change.
    readers: FxHashMap<UserId, ReaderSet>,
    hash_domain: DomainHasher,
}

impl std::fmt::Debug for TenantIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantIndex")
            .field("revision", &self.revision)
            .field("principals", &self.refs.len())
            .field("accounts", &self.accounts.len())
            .field("documents", &self.docs.len())
            .finish()
    }
}

impl TenantIndex {
    /// Builds the index. `hash_domain` turns a domain named in a grant into the blind
    /// index accounts carry (the tenant's keyed HMAC in production).
    pub fn build(snapshot: Snapshot, hash_domain: DomainHasher) -> Self {
        let mut index = TenantIndex {
            revision: snapshot.revision,
            refs: Vec::new(),
            ids: FxHashMap::default(),
            parents: Vec::new(),
            by_email: FxHashMap::default(),
            accounts: FxHashMap::default(),
            domains: FxHashMap::default(),
            docs: FxHashMap::default(),
            docs_by_target: FxHashMap::default(),
            readers: FxHashMap::default(),
            hash_domain,
        };
        for p in snapshot.principals {
            index.add_principal(p);
        }
        for m in snapshot.memberships {
            index.add_membership(m);
        }
        for a in snapshot.accounts {
            index.add_account(a);
        }
        index.rebuild_readers();
        index.set_acls(snapshot.acls, snapshot.revision);
        index
    }

    /// The revision the index is at.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Number of documents with grants.
    pub fn document_count(&self) -> usize {
        self.docs.len()
    }

    fn intern(&mut self, r: &PrincipalRef) -> Uid {
        if let Some(uid) = self.ids.get(r) {
            return *uid;
        }
        let uid = Uid::try_from(self.refs.len()).unwrap_or(Uid::MAX);
        self.refs.push(r.clone());
        self.parents.push(Vec::new());
        self.ids.insert(r.clone(), uid);
        uid
    }

    fn intern_domain(&mut self, domain_index: &str) -> u32 {
        let next = u32::try_from(self.domains.len()).unwrap_or(u32::MAX);
        *self.domains.entry(domain_index.to_owned()).or_insert(next)
    }

    fn add_principal(&mut self, p: Principal) {
        let uid = self.intern(&p.principal);
        if let (PrincipalKind::User, Some(email)) = (p.principal.kind, p.email_index) {
            self.by_email.entry(email).or_default().push(uid);
        }
    }

    fn add_membership(&mut self, m: Membership) {
        let group = self.intern(&PrincipalRef {
            integration: m.integration,
            kind: PrincipalKind::Group,
            external_id: m.group,
        });
        let member = self.intern(&PrincipalRef {
            integration: m.integration,
            kind: if m.member_is_group {
                PrincipalKind::Group
            } else {
                PrincipalKind::User
            },
            external_id: m.member,
        });
        if !self.parents[member as usize].contains(&group) {
            self.parents[member as usize].push(group);
        }
    }

    fn add_account(&mut self, a: Account) {
        let domain = self.intern_domain(&a.domain_index);
        let native = self.intern(&native_principal(a.user));
        self.accounts
            .insert(a.user, (a.email_index, Some(domain), native));
    }

    /// Recomputes every account's reader set: a breadth-first walk up the group graph
    /// from its user principals, where revisiting a principal ends the walk (cycles).
    fn rebuild_readers(&mut self) {
        let mut readers = FxHashMap::default();
        readers.reserve(self.accounts.len());
        let mut seen = FxHashSet::default();
        let mut queue = VecDeque::new();
        for (user, (email, domain, native)) in &self.accounts {
            seen.clear();
            queue.clear();
            queue.push_back(*native);
            queue.extend(self.by_email.get(email).into_iter().flatten().copied());
            while let Some(uid) = queue.pop_front() {
                if seen.insert(uid) {
                    queue.extend(self.parents[uid as usize].iter().copied());
                }
            }
            let mut principals: SmallVec<[Uid; 24]> = seen.iter().copied().collect();
            principals.sort_unstable();
            readers.insert(
                *user,
                ReaderSet {
                    principals,
                    domain: *domain,
                },
            );
        }
        self.readers = readers;
    }

    /// Replaces one integration's principals and memberships (a `SyncPrincipals`) and
    /// moves the index to `revision`. Grants are untouched: they name principals, whose
    /// interned ids stay stable.
    pub fn set_principals(
        &mut self,
        integration: IntegrationId,
        principals: Vec<Principal>,
        memberships: Vec<Membership>,
        revision: u64,
    ) {
        // Forget the integration's email links and group edges.
        for uids in self.by_email.values_mut() {
            uids.retain(|u| self.refs[*u as usize].integration != integration);
        }
        self.by_email.retain(|_, uids| !uids.is_empty());
        for (uid, parents) in self.parents.iter_mut().enumerate() {
            if self.refs[uid].integration == integration {
                parents.clear();
            }
        }
        for p in principals {
            debug_assert_eq!(p.principal.integration, integration);
            self.add_principal(p);
        }
        for m in memberships {
            self.add_membership(m);
        }
        self.rebuild_readers();
        self.revision = self.revision.max(revision);
    }

    /// Applies the difference between an integration's old and new principal sets (what
    /// [`TenantIndex::set_principals`] would reach by replacing the whole set) and moves
    /// the index to `revision`. `upserted` are new or changed principals, `removed` the
    /// (kind, external id) of those gone.
    pub fn apply_principal_changes(
        &mut self,
        integration: IntegrationId,
        upserted: Vec<Principal>,
        removed: Vec<(PrincipalKind, String)>,
        edges_added: Vec<Membership>,
        edges_removed: Vec<Membership>,
        revision: u64,
    ) {
        let lookup =
            |ids: &FxHashMap<PrincipalRef, Uid>, kind: PrincipalKind, external_id: &str| {
                ids.get(&PrincipalRef {
                    integration,
                    kind,
                    external_id: external_id.to_owned(),
                })
                .copied()
            };
        let removed_uids: Vec<Uid> = removed
            .iter()
            .filter_map(|(k, id)| lookup(&self.ids, *k, id))
            .collect();
        let changed_uids: Vec<Uid> = upserted
            .iter()
            .filter_map(|p| lookup(&self.ids, p.principal.kind, &p.principal.external_id))
            .collect();
        // Their email links are redone below (changed) or gone (removed).
        let unlinked: FxHashSet<Uid> = removed_uids
            .iter()
            .chain(changed_uids.iter())
            .copied()
            .collect();
        if !unlinked.is_empty() {
            for uids in self.by_email.values_mut() {
                uids.retain(|u| !unlinked.contains(u));
            }
            self.by_email.retain(|_, uids| !uids.is_empty());
        }
        // A removed principal keeps no group edges (a changed one keeps its own).
        for uid in removed_uids {
            self.parents[uid as usize].clear();
        }
        for p in upserted {
            self.add_principal(p);
        }
        for m in edges_removed {
            let group = self.ids.get(&PrincipalRef {
                integration: m.integration,
                kind: PrincipalKind::Group,
                external_id: m.group,
            });
            let member = self.ids.get(&PrincipalRef {
                integration: m.integration,
                kind: if m.member_is_group {
                    PrincipalKind::Group
                } else {
                    PrincipalKind::User
                },
                external_id: m.member,
            });
            if let (Some(group), Some(member)) = (group.copied(), member.copied()) {
                self.parents[member as usize].retain(|g| *g != group);
            }
        }
        for m in edges_added {
            self.add_membership(m);
        }
        self.rebuild_readers();
        self.revision = self.revision.max(revision);
    }

    /// Replaces the accounts (after account changes) and moves to `revision`.
    pub fn set_accounts(&mut self, accounts: Vec<Account>, revision: u64) {
        self.accounts.clear();
        for a in accounts {
            self.add_account(a);
        }
        self.rebuild_readers();
        self.revision = self.revision.max(revision);
    }

    fn remove_document(&mut self, document: &DocumentId) {
        if let Some(old) = self.docs.remove(document) {
            for target in old.targets.iter() {
                if let Some(set) = self.docs_by_target.get_mut(target) {
                    set.remove(document);
                }
            }
        }
    }

    /// Replaces the grants of each listed document and moves the index to `revision`.
    pub fn set_acls(&mut self, acls: Vec<DocumentAcl>, revision: u64) {
        for acl in acls {
            self.remove_document(&acl.document);
            let mut targets = SmallVec::with_capacity(acl.grants.len());
            for grant in &acl.grants {
                let target = match &grant.grantee {
                    Grantee::User(id) => Target::Principal(self.intern(&PrincipalRef {
                        integration: acl.integration,
                        kind: PrincipalKind::User,
                        external_id: id.clone(),
                    })),
                    Grantee::Group(id) => Target::Principal(self.intern(&PrincipalRef {
                        integration: acl.integration,
                        kind: PrincipalKind::Group,
                        external_id: id.clone(),
                    })),
                    Grantee::Domain(domain) => {
                        let hashed = (self.hash_domain)(&domain.to_lowercase());
                        Target::Domain(self.intern_domain(&hashed))
                    }
                    Grantee::Anyone => Target::Anyone,
                };
                self.docs_by_target
                    .entry(target)
                    .or_default()
                    .insert(acl.document);
                targets.push(target);
            }
            self.docs.insert(
                acl.document,
                DocEntry {
                    integration: acl.integration,
                    targets,
                    grants: acl.grants.into_boxed_slice(),
                },
            );
        }
        self.revision = self.revision.max(revision);
    }

    /// The documents whose grants came from `integration`.
    pub fn documents_of(&self, integration: IntegrationId) -> Vec<DocumentId> {
        self.docs
            .iter()
            .filter(|(_, d)| d.integration == integration)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Forgets documents entirely (deleted documents, disconnected integrations).
    pub fn remove_documents(&mut self, documents: &[DocumentId], revision: u64) {
        for doc in documents {
            self.remove_document(doc);
        }
        self.revision = self.revision.max(revision);
    }

    /// May `user` read `document`? Unknown users and documents: no.
    pub fn check(&self, user: UserId, document: DocumentId) -> bool {
        let (Some(reader), Some(doc)) = (self.readers.get(&user), self.docs.get(&document)) else {
            return false;
        };
        doc.targets.iter().any(|t| reader.reaches(*t))
    }

    /// The readable subset of `documents`, in their order.
    pub fn filter_readable(&self, user: UserId, documents: &[DocumentId]) -> Vec<DocumentId> {
        let Some(reader) = self.readers.get(&user) else {
            return Vec::new();
        };
        documents
            .iter()
            .filter(|d| {
                self.docs
                    .get(d)
                    .is_some_and(|doc| doc.targets.iter().any(|t| reader.reaches(*t)))
            })
            .copied()
            .collect()
    }

    /// Documents `user` may read after `after` (exclusive), in id order, at most `limit`.
    /// A k-way merge over the ordered document sets of the targets the user reaches, so
    /// a page costs in proportion to its size, not to everything readable.
    pub fn list_readable(
        &self,
        user: UserId,
        after: Option<DocumentId>,
        limit: usize,
    ) -> Vec<DocumentId> {
        let Some(reader) = self.readers.get(&user) else {
            return Vec::new();
        };
        let targets = reader
            .principals
            .iter()
            .map(|u| Target::Principal(*u))
            .chain(std::iter::once(Target::Anyone))
            .chain(reader.domain.map(Target::Domain));
        let mut cursors: Vec<std::collections::btree_set::Range<'_, DocumentId>> = targets
            .filter_map(|t| self.docs_by_target.get(&t))
            .map(|set| match after {
                Some(a) => set.range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
                None => set.range(..),
            })
            .collect();
        let mut heap: BinaryHeap<Reverse<(DocumentId, usize)>> =
            BinaryHeap::with_capacity(cursors.len());
        for (i, cursor) in cursors.iter_mut().enumerate() {
            if let Some(doc) = cursor.next() {
                heap.push(Reverse((*doc, i)));
            }
        }
        let mut out = Vec::with_capacity(limit.min(4096));
        while let Some(Reverse((doc, i))) = heap.pop() {
            if out.last() != Some(&doc) {
                if out.len() == limit {
                    break;
                }
                out.push(doc);
            }
            if let Some(next) = cursors[i].next() {
                heap.push(Reverse((*next, i)));
            }
        }
        out
    }

    /// The grant and group path that let `user` read `document`, or `None`.
    /// Prefers the most direct reason: a user grant, then the shortest group path, then
    /// the domain, then anyone.
    pub fn explain(&self, user: UserId, document: DocumentId) -> Option<Explanation> {
        let reader = self.readers.get(&user)?;
        let doc = self.docs.get(&document)?;
        let (email, _, native) = self.accounts.get(&user)?;
        let starts: Vec<Uid> = std::iter::once(*native)
            .chain(self.by_email.get(email).into_iter().flatten().copied())
            .collect();
        let mut best: Option<(usize, Explanation)> = None;
        for (target, grant) in doc.targets.iter().zip(doc.grants.iter()) {
            if !reader.reaches(*target) {
                continue;
            }
            let candidate = match *target {
                Target::Principal(target) => {
                    let Some((start, path)) = self.shortest_path(&starts, target) else {
                        continue;
                    };
                    let group_path: Vec<String> = path
                        .iter()
                        .skip(1)
                        .map(|u| self.refs[*u as usize].external_id.clone())
                        .collect();
                    (
                        group_path.len(),
                        Explanation {
                            grant: grant.clone(),
                            principal: Some(self.refs[start as usize].clone()),
                            group_path,
                        },
                    )
                }
                Target::Domain(_) => (
                    usize::MAX - 1,
                    Explanation {
                        grant: grant.clone(),
                        principal: None,
                        group_path: Vec::new(),
                    },
                ),
                Target::Anyone => (
                    usize::MAX,
                    Explanation {
                        grant: grant.clone(),
                        principal: None,
                        group_path: Vec::new(),
                    },
                ),
            };
            if best.as_ref().is_none_or(|(rank, _)| candidate.0 < *rank) {
                best = Some(candidate);
            }
        }
        best.map(|(_, e)| e)
    }

    /// Breadth-first from the user principals up the group graph to `target`; returns the
    /// start and the path (start first, target last).
    fn shortest_path(&self, starts: &[Uid], target: Uid) -> Option<(Uid, Vec<Uid>)> {
        let mut previous: HashMap<Uid, Option<Uid>> = HashMap::new();
        let mut queue = VecDeque::new();
        for s in starts {
            previous.entry(*s).or_insert(None);
            queue.push_back(*s);
        }
        while let Some(uid) = queue.pop_front() {
            if uid == target {
                let mut path = vec![uid];
                let mut at = uid;
                while let Some(Some(prev)) = previous.get(&at) {
                    path.push(*prev);
                    at = *prev;
                }
                path.reverse();
                return Some((path[0], path));
            }
            for parent in &self.parents[uid as usize] {
                if !previous.contains_key(parent) {
                    previous.insert(*parent, Some(uid));
                    queue.push_back(*parent);
                }
            }
        }
        None
    }

    /// Rough resident size of the index in bytes (for the benchmark's memory figure).
    pub fn approximate_bytes(&self) -> usize {
        let refs: usize = self.refs.iter().map(|r| 64 + r.external_id.len()).sum();
        let parents: usize = self.parents.iter().map(|p| 24 + 4 * p.capacity()).sum();
        let docs: usize = self
            .docs
            .values()
            .map(|d| 48 + d.targets.len() * 8 + d.grants.len() * 56)
            .sum();
        let reverse: usize = self
            .docs_by_target
            .values()
            .map(|s| 48 + s.len() * 24)
            .sum();
        let readers: usize = self
            .readers
            .values()
            .map(|r| 48 + r.principals.len() * 4)
            .sum();
        refs * 2 + parents + docs + reverse + readers
    }
}
