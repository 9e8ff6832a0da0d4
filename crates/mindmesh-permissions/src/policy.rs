//! The policy decision point: hosts one [`TenantIndex`] per tenant, built from the
//! database on first use and kept current by every write, and answers checks from it.
//!
//! Revisions (the new-enemy problem): every write bumps its tenant's revision in its own
//! transaction and returns it. A read that asks for `at_least_revision` newer than the
//! index it has reloads the tenant from the database first, so once a revocation has
//! been acknowledged, no replica answers from a state before it. Writes in this process
//! update the index in place when it is exactly one revision behind, and otherwise drop
//! it to be reloaded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::{DocumentId, IntegrationId, KeyId, TenantId, UserId};
use mindmesh_kit::keys::{KeyScope, field_aad};
use sea_orm::{AccessMode, DatabaseTransaction, DbBackend, IsolationLevel, TransactionTrait};

use crate::blind::{BlindIndex, TenantBlindKeys};
use crate::engine::{
    DocumentAcl, Explanation, Grantee, Membership, Principal, PrincipalRef, Snapshot, TenantIndex,
};
use crate::error::{Error, Result};
use crate::store::grants::{self, GrantRow};
use crate::store::{graph, identities, legacy, principal_syncs, revision, scope, user};
use crate::sync;
use rustc_hash::{FxHashMap, FxHashSet};

/// Most users one `SyncPrincipals` may carry.
pub const MAX_SYNC_USERS: usize = 100_000;
/// Most groups one `SyncPrincipals` may carry.
pub const MAX_SYNC_GROUPS: usize = 50_000;
/// Most memberships one `SyncPrincipals` may carry.
pub const MAX_SYNC_MEMBERSHIPS: usize = 1_000_000;
/// Most documents one `SetDocumentAcls` may carry.
pub const MAX_ACLS_PER_CALL: usize = 1_000;
/// Most grants one document may have.
pub const MAX_GRANTS_PER_DOCUMENT: usize = 1_000;
/// Longest external id or domain, in bytes.
pub const MAX_EXTERNAL_ID: usize = 512;

/// A user of an integration, as a sync delivers it.
#[derive(Clone, Debug, Default)]
pub struct SyncedUser {
    /// The source's id.
    pub external_id: String,
    /// Email (may be empty).
    pub email: String,
    /// Display name.
    pub display_name: String,
}

/// A group of an integration, as a sync delivers it.
#[derive(Clone, Debug, Default)]
pub struct SyncedGroup {
    /// The source's id.
    pub external_id: String,
    /// Group email (may be empty).
    pub email: String,
    /// Name.
    pub name: String,
}

/// What deleting a scope removed, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Principals deleted.
    pub principals: u64,
    /// Membership edges deleted.
    pub memberships: u64,
    /// Grants deleted.
    pub grants: u64,
    /// Data keys destroyed.
    pub destroyed_keys: Vec<KeyId>,
}

struct Slot {
    /// Serializes this process's writes and loads of one tenant.
    writer: tokio::sync::Mutex<()>,
    index: RwLock<Option<TenantIndex>>,
    /// The index was built before the tenant had a key, so it cannot hash domain grants:
    /// writes drop it instead of patching it.
    keyless: AtomicBool,
}

impl Slot {
    /// Whether writes may patch the index in place.
    fn patchable(&self) -> bool {
        !self.keyless.load(Ordering::Acquire)
    }
}

/// The policy decision point.
pub struct Policy {
    ctx: ServiceContext,
    blind: BlindIndex,
    slots: Mutex<HashMap<TenantId, Arc<Slot>>>,
    /// The principal set of each integration as this replica last wrote or read it.
    synced: Mutex<HashMap<(TenantId, IntegrationId), Arc<sync::StoredSet>>>,
    /// Planner statistics of `grants`, refreshed as syncs fill it.
    grant_stats: mindmesh_kit::db::FreshStats,
}

impl Policy {
    /// A policy over the service's database and keystore.
    pub fn new(ctx: ServiceContext) -> Self {
        Policy {
            blind: BlindIndex::new(ctx.keystore.clone()),
            ctx,
            slots: Mutex::new(HashMap::new()),
            grant_stats: mindmesh_kit::db::FreshStats::new("grants", 10_000),
            synced: Mutex::new(HashMap::new()),
        }
    }

    /// The blind indexes of this service.
    pub fn blind(&self) -> &BlindIndex {
        &self.blind
    }

    fn slot(&self, tenant: TenantId) -> Arc<Slot> {
        let mut slots = match self.slots.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        slots
            .entry(tenant)
            .or_insert_with(|| {
                Arc::new(Slot {
                    writer: tokio::sync::Mutex::new(()),
                    index: RwLock::new(None),
                    keyless: AtomicBool::new(false),
                })
            })
            .clone()
    }

    /// Brings the tenant's accounts in the index up to `revision` after an account
    /// write committed it; drops the index instead when another write came in between.
    pub async fn accounts_changed(&self, tenant: TenantId, revision: u64) -> Result<()> {
        let slot = self.slot(tenant);
        let _writer = slot.writer.lock().await;
        let current = slot
            .index
            .read()
            .map_err(|_| poisoned())?
            .as_ref()
            .map(TenantIndex::revision);
        if current.map(|r| r + 1) != Some(revision) {
            *slot.index.write().map_err(|_| poisoned())? = None;
            return Ok(());
        }
        let accounts = user::accounts(&self.ctx.db, tenant).await?;
        let mut guard = slot.index.write().map_err(|_| poisoned())?;
        match guard.as_mut() {
            Some(index) if slot.patchable() && index.revision() + 1 == revision => {
                index.set_accounts(accounts, revision)
            }
            _ => *guard = None,
        }
        Ok(())
    }

    /// Loads the index of every tenant that has permission state.
    pub async fn warm_up(&self) -> Result<()> {
        for tenant in revision::tenants(&self.ctx.db).await? {
            self.read(tenant, 0, |_| ()).await?;
        }
        Ok(())
    }

    /// Drops the tenant's index; the next read reloads it.
    pub fn invalidate(&self, tenant: TenantId) {
        if let Ok(mut index) = self.slot(tenant).index.write() {
            *index = None;
        }
    }

    /// Runs `f` on an index of `tenant` at `at_least` or newer; returns its answer and
    /// the revision it was computed at.
    pub async fn read<R>(
        &self,
        tenant: TenantId,
        at_least: u64,
        f: impl Fn(&TenantIndex) -> R,
    ) -> Result<(R, u64)> {
        let slot = self.slot(tenant);
        if let Some(answer) = Self::try_read(&slot, at_least, &f)? {
            return Ok(answer);
        }
        let _writer = slot.writer.lock().await;
        if let Some(answer) = Self::try_read(&slot, at_least, &f)? {
            return Ok(answer);
        }
        let (index, keyless) = self.load(tenant).await?;
        slot.keyless.store(keyless, Ordering::Release);
        if index.revision() < at_least {
            return Err(Error::invalid(
                "at_least_revision",
                format!("is ahead of the newest state ({})", index.revision()),
            ));
        }
        let answer = (f(&index), index.revision());
        *slot.index.write().map_err(|_| poisoned())? = Some(index);
        Ok(answer)
    }

    fn try_read<R>(
        slot: &Slot,
        at_least: u64,
        f: &impl Fn(&TenantIndex) -> R,
    ) -> Result<Option<(R, u64)>> {
        let guard = slot.index.read().map_err(|_| poisoned())?;
        Ok(match guard.as_ref() {
            Some(index) if index.revision() >= at_least => Some((f(index), index.revision())),
            _ => None,
        })
    }

    /// Builds the tenant's index from one consistent read of the database.
    /// Builds the tenant's index from one consistent read; also says whether it was
    /// built without a tenant key.
    async fn load(&self, tenant: TenantId) -> Result<(TenantIndex, bool)> {
        let keys = self.blind.existing_keys(tenant).await?;
        let keyless = keys.is_none();
        let txn = self.snapshot_transaction().await?;
        let snapshot = load_snapshot(&txn, tenant).await?;
        txn.commit().await?;
        Ok((build(snapshot, keys), keyless))
    }

    async fn snapshot_transaction(&self) -> Result<DatabaseTransaction> {
        Ok(match self.ctx.db.get_database_backend() {
            // One snapshot for the revision and every table read after it.
            DbBackend::Postgres => {
                self.ctx
                    .db
                    .begin_with_config(
                        Some(IsolationLevel::RepeatableRead),
                        Some(AccessMode::ReadOnly),
                    )
                    .await?
            }
            _ => self.ctx.db.begin().await?,
        })
    }

    /// Replaces an integration's principals and memberships (users removed at the source
    /// lose access at once). Writes only what changed since the set this replica knows,
    /// when the database confirms that set is still current (see [`crate::sync`]).
    /// Returns the new revision.
    pub async fn sync_principals(
        &self,
        tenant: TenantId,
        integration: IntegrationId,
        users: Vec<SyncedUser>,
        groups: Vec<SyncedGroup>,
        memberships: Vec<Membership>,
    ) -> Result<u64> {
        let started = std::time::Instant::now();
        validate_sync(&users, &groups, &memberships, integration)?;
        let keys = self.blind.keys(tenant).await?;
        let (_, data_key) = self
            .ctx
            .keystore
            .data_key(tenant, &KeyScope::Integration(integration.to_string()))
            .await?;

        // From here the source's ids are their pseudonyms (see `blind`): a source's id of
        // a person is often an email. Each id is sealed beside its principal.
        let pseudonyms: FxHashMap<&str, String> = users
            .iter()
            .map(|u| u.external_id.as_str())
            .chain(groups.iter().map(|g| g.external_id.as_str()))
            .map(|id| (id, keys.principal(integration, id)))
            .collect();
        let pseudonym = |id: &str| {
            pseudonyms
                .get(id)
                .cloned()
                .unwrap_or_else(|| keys.principal(integration, id))
        };

        // The desired state: (kind, pseudonym) → (email, name, fingerprint, source id),
        // and the edges.
        let mut desired: FxHashMap<sync::PrincipalKey, (String, String, [u8; 32], String)> =
            FxHashMap::default();
        for (kind, id, email, name) in users
            .iter()
            .map(|u| ("user", &u.external_id, u.email.trim(), &u.display_name))
            .chain(
                groups
                    .iter()
                    .map(|g| ("group", &g.external_id, g.email.trim(), &g.name)),
            )
        {
            let pid = pseudonym(id);
            let print = sync::fingerprint(kind, &pid, email, name);
            desired.insert(
                (kind, pid),
                (email.to_owned(), name.clone(), print, id.clone()),
            );
        }
        let edges: FxHashSet<sync::Edge> = memberships
            .iter()
            .map(|m| (pseudonym(&m.group), pseudonym(&m.member), m.member_is_group))
            .collect();

        let slot = self.slot(tenant);
        let _writer = slot.writer.lock().await;
        let generation = principal_syncs::generation(&self.ctx.db, tenant, integration).await?;
        let cached = self
            .synced_set(tenant, integration)
            .filter(|s| s.generation == generation);
        let stored = match cached {
            Some(stored) => stored,
            None => Arc::new(sync::load(&self.ctx.db, &data_key, tenant, integration).await?),
        };
        let removed: Vec<&sync::PrincipalKey> = stored
            .principals
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .collect();
        let changed: Vec<&sync::PrincipalKey> = desired
            .iter()
            .filter(|(k, (_, _, print, _))| stored.principals.get(*k) != Some(print))
            .map(|(k, _)| k)
            .collect();
        let edges_removed: Vec<&sync::Edge> = stored.memberships.difference(&edges).collect();
        let edges_added: Vec<&sync::Edge> = edges.difference(&stored.memberships).collect();
        let work = removed.len() + changed.len() + edges_removed.len() + edges_added.len();
        // Rewriting everything is cheaper than many single-row statements.
        let mut wholesale = work * 2 > desired.len() + edges.len();

        let seal = |kind: &str, id: &str, column: &str, value: &str| {
            data_key.seal(
                &principal_aad(tenant, integration, kind, id, column),
                value.as_bytes(),
            )
        };
        let principal_row = |key: &sync::PrincipalKey| -> Result<graph::PrincipalRow> {
            let (kind, id) = key;
            let (email, name, _, source_id) = &desired[key];
            Ok(graph::PrincipalRow {
                kind,
                external_id: id.clone(),
                email_index: (!email.is_empty()).then(|| keys.email(email)),
                email_ct: if email.is_empty() {
                    None
                } else {
                    Some(seal(kind, id, "email", email)?)
                },
                name_ct: seal(kind, id, "name", name)?,
                external_id_ct: seal(kind, id, "external_id", source_id)?,
            })
        };

        // What the index needs to follow the diff (computed now, while the sets are
        // borrowed; used after commit).
        let engine_principal = |(kind, id): &sync::PrincipalKey| {
            let (email, _, _, _) = &desired[&(*kind, id.clone())];
            Principal {
                principal: PrincipalRef {
                    integration,
                    kind: graph::kind_of(kind),
                    external_id: id.clone(),
                },
                email_index: (!email.is_empty()).then(|| keys.email(email)),
            }
        };
        let engine_edge = |(group, member, is_group): &sync::Edge| Membership {
            integration,
            group: group.clone(),
            member: member.clone(),
            member_is_group: *is_group,
        };
        let diff = (!wholesale).then(|| {
            (
                changed
                    .iter()
                    .map(|k| engine_principal(k))
                    .collect::<Vec<_>>(),
                removed
                    .iter()
                    .map(|(k, id)| (graph::kind_of(k), id.clone()))
                    .collect::<Vec<_>>(),
                edges_added
                    .iter()
                    .map(|e| engine_edge(e))
                    .collect::<Vec<_>>(),
                edges_removed
                    .iter()
                    .map(|e| engine_edge(e))
                    .collect::<Vec<_>>(),
            )
        });

        let next_generation = uuid::Uuid::now_v7().to_string();
        let txn = self.ctx.db.begin().await?;
        if !principal_syncs::advance(
            &txn,
            tenant,
            integration,
            generation.as_deref(),
            &next_generation,
        )
        .await?
        {
            // Another replica synced in between: our diff base is stale.
            wholesale = true;
            principal_syncs::force(&txn, tenant, integration, &next_generation).await?;
        }
        let (principal_rows, edge_rows): (Vec<&sync::PrincipalKey>, Vec<&sync::Edge>) = if wholesale
        {
            for table in ["principals", "memberships"] {
                scope::delete(&txn, table, scope::integration(tenant, integration)).await?;
            }
            (desired.keys().collect(), edges.iter().collect())
        } else {
            for (kind, id) in removed.iter().chain(changed.iter()) {
                graph::delete_principal(&txn, tenant, integration, kind, id).await?;
            }
            for edge in &edges_removed {
                graph::delete_membership(&txn, tenant, integration, edge).await?;
            }
            (changed, edges_added)
        };
        let principal_rows = principal_rows
            .into_iter()
            .map(principal_row)
            .collect::<Result<Vec<_>>>()?;
        graph::insert_principals(&txn, tenant, integration, principal_rows).await?;
        graph::insert_memberships(&txn, tenant, integration, edge_rows).await?;
        let revision = revision::bump(&txn, tenant).await?;
        txn.commit().await?;
        self.remember_synced(
            tenant,
            integration,
            sync::StoredSet {
                generation: Some(next_generation),
                principals: desired
                    .iter()
                    .map(|(k, (_, _, print, _))| (k.clone(), *print))
                    .collect(),
                memberships: edges,
            },
        );

        let mut guard = slot.index.write().map_err(|_| poisoned())?;
        match (guard.as_mut(), diff) {
            (Some(index), Some((upserted, gone, added, cut)))
                if !wholesale && slot.patchable() && index.revision() + 1 == revision =>
            {
                index.apply_principal_changes(integration, upserted, gone, added, cut, revision);
            }
            (Some(index), _) if slot.patchable() && index.revision() + 1 == revision => {
                let principals = desired.keys().map(engine_principal).collect();
                index.set_principals(integration, principals, memberships, revision);
            }
            // Another replica wrote in between: reload on the next read.
            _ => *guard = None,
        }
        drop(guard);
        tracing::info!(tenant_id = %tenant, integration_id = %integration, users = users.len(), groups = groups.len(), changed = work, wholesale, revision, elapsed_ms = started.elapsed().as_millis() as u64, "principals synced");
        Ok(revision)
    }

    fn synced_set(
        &self,
        tenant: TenantId,
        integration: IntegrationId,
    ) -> Option<Arc<sync::StoredSet>> {
        self.synced
            .lock()
            .ok()?
            .get(&(tenant, integration))
            .cloned()
    }

    fn remember_synced(&self, tenant: TenantId, integration: IntegrationId, set: sync::StoredSet) {
        if let Ok(mut synced) = self.synced.lock() {
            synced.insert((tenant, integration), Arc::new(set));
        }
    }

    fn forget_synced(&self, tenant: TenantId) {
        if let Ok(mut synced) = self.synced.lock() {
            synced.retain(|(t, _), _| *t != tenant);
        }
    }

    /// Replaces the grants of each listed document. Returns the new revision.
    pub async fn set_document_acls(&self, tenant: TenantId, acls: Vec<DocumentAcl>) -> Result<u64> {
        validate_acls(&acls)?;
        // Domain grants are matched by the tenant's blind index, and imported grants
        // name principals by their pseudonyms (see `blind`).
        let keys = self.blind.keys(tenant).await?;
        let acls: Vec<DocumentAcl> = acls
            .into_iter()
            .map(|mut acl| {
                if !acl.integration.is_native() {
                    for grant in &mut acl.grants {
                        if let Grantee::User(id) | Grantee::Group(id) = &mut grant.grantee {
                            *id = keys.principal(acl.integration, id);
                        }
                    }
                }
                acl
            })
            .collect();
        // A document listed twice: the last entry wins, as it would applied in order.
        let mut last: HashMap<DocumentId, usize> = HashMap::new();
        for (i, acl) in acls.iter().enumerate() {
            last.insert(acl.document, i);
        }
        let acls: Vec<DocumentAcl> = acls
            .into_iter()
            .enumerate()
            .filter(|(i, acl)| last.get(&acl.document) == Some(i))
            .map(|(_, acl)| acl)
            .collect();
        let slot = self.slot(tenant);
        let _writer = slot.writer.lock().await;
        let txn = self.ctx.db.begin().await?;
        let ids: Vec<String> = acls.iter().map(|a| a.document.to_string()).collect();
        grants::delete_of_documents(&txn, tenant, &ids).await?;
        let rows: Vec<GrantRow> = acls
            .iter()
            .flat_map(|acl| {
                acl.grants
                    .iter()
                    .map(|g| GrantRow::new(acl.document, acl.integration, g))
            })
            .collect();
        grants::insert(&txn, tenant, &rows).await?;
        let revision = revision::bump(&txn, tenant).await?;
        txn.commit().await?;
        self.grant_stats
            .wrote(&self.ctx.db, rows.len() as u64)
            .await?;
        let mut guard = slot.index.write().map_err(|_| poisoned())?;
        match guard.as_mut() {
            Some(index) if slot.patchable() && index.revision() + 1 == revision => {
                index.set_acls(acls, revision)
            }
            // Another replica wrote in between: reload on the next read.
            _ => *guard = None,
        }
        Ok(revision)
    }

    /// Deletes everything `integration` brought: its principals, memberships and grants,
    /// and destroys its data key. Runs in `txn` (the caller commits), bumping the revision.
    pub async fn delete_integration(
        &self,
        txn: &DatabaseTransaction,
        tenant: TenantId,
        integration: IntegrationId,
    ) -> Result<(Removed, u64)> {
        let of_integration = || scope::integration(tenant, integration);
        let removed = Removed {
            principals: scope::delete(txn, "principals", of_integration()).await?,
            memberships: scope::delete(txn, "memberships", of_integration()).await?,
            grants: scope::delete(txn, "grants", of_integration()).await?,
            destroyed_keys: Vec::new(),
        };
        for table in ["principal_syncs", "legacy_principal_ids"] {
            scope::delete(txn, table, of_integration()).await?;
        }
        self.forget_synced(tenant);
        let revision = revision::bump(txn, tenant).await?;
        Ok((removed, revision))
    }

    /// Deletes everything of `tenant` this policy holds (principals, memberships, grants,
    /// revision). Runs in `txn`.
    pub async fn delete_tenant(
        &self,
        txn: &DatabaseTransaction,
        tenant: TenantId,
    ) -> Result<Removed> {
        let removed = Removed {
            principals: scope::delete(txn, "principals", scope::tenant(tenant)).await?,
            memberships: scope::delete(txn, "memberships", scope::tenant(tenant)).await?,
            grants: scope::delete(txn, "grants", scope::tenant(tenant)).await?,
            destroyed_keys: Vec::new(),
        };
        for table in [
            "tenant_revisions",
            "principal_syncs",
            "legacy_principal_ids",
        ] {
            scope::delete(txn, table, scope::tenant(tenant)).await?;
        }
        mindmesh_kit::integrations::Integrations::forget_tenant(txn, tenant).await?;
        self.forget_synced(tenant);
        Ok(removed)
    }

    /// Deletes the principals whose email is `email` (a data subject's erasure), and the
    /// memberships naming them. Runs in `txn`, bumping the revision.
    pub async fn delete_subject(
        &self,
        txn: &DatabaseTransaction,
        tenant: TenantId,
        email: &str,
    ) -> Result<Removed> {
        let index = self.blind.keys(tenant).await?.email(email);
        let mut removed = Removed::default();
        for identity in identities::with_email(txn, tenant, index.clone()).await? {
            removed.memberships += graph::delete_memberships_of_member(
                txn,
                tenant,
                &identity.integration_id,
                &identity.external_id,
                identity.kind == "group",
            )
            .await?;
        }
        removed.principals = graph::delete_principals_with_email(txn, tenant, &index).await?;
        // Every replica's copy of these principal sets is now stale.
        principal_syncs::invalidate_tenant(txn, tenant).await?;
        self.forget_synced(tenant);
        revision::bump(txn, tenant).await?;
        Ok(removed)
    }

    /// May `user` read `document`?
    pub async fn check(
        &self,
        tenant: TenantId,
        user: UserId,
        document: DocumentId,
        at_least: u64,
    ) -> Result<(bool, u64)> {
        self.read(tenant, at_least, |i| i.check(user, document))
            .await
    }

    /// One answer per (user, document) pair.
    pub async fn batch_check(
        &self,
        tenant: TenantId,
        items: &[(UserId, DocumentId)],
        at_least: u64,
    ) -> Result<(Vec<bool>, u64)> {
        self.read(tenant, at_least, |i| {
            items.iter().map(|(u, d)| i.check(*u, *d)).collect()
        })
        .await
    }

    /// The readable subset of `documents`.
    pub async fn filter_readable(
        &self,
        tenant: TenantId,
        user: UserId,
        documents: &[DocumentId],
        at_least: u64,
    ) -> Result<(Vec<DocumentId>, u64)> {
        self.read(tenant, at_least, |i| i.filter_readable(user, documents))
            .await
    }

    /// A page of readable documents after `after`.
    pub async fn list_readable(
        &self,
        tenant: TenantId,
        user: UserId,
        after: Option<DocumentId>,
        limit: usize,
        at_least: u64,
    ) -> Result<(Vec<DocumentId>, u64)> {
        self.read(tenant, at_least, |i| i.list_readable(user, after, limit))
            .await
    }

    /// Why `user` may read `document`, if they may.
    pub async fn explain(
        &self,
        tenant: TenantId,
        user: UserId,
        document: DocumentId,
        at_least: u64,
    ) -> Result<(Option<Explanation>, u64)> {
        let (found, revision) = self
            .read(tenant, at_least, |i| i.explain(user, document))
            .await?;
        let Some(mut explanation) = found else {
            return Ok((None, revision));
        };
        // The index knows principals by pseudonym; the caller is shown the source's ids.
        if let Some(principal) = &explanation.principal
            && !principal.integration.is_native()
        {
            let integration = principal.integration;
            let mut wanted = vec![principal.external_id.clone()];
            wanted.extend(explanation.group_path.iter().cloned());
            if let Grantee::User(id) | Grantee::Group(id) = &explanation.grant.grantee {
                wanted.push(id.clone());
            }
            let ids = self.source_ids(tenant, integration, &wanted).await?;
            let reveal = |pseudonym: &mut String| {
                if let Some(id) = ids.get(pseudonym.as_str()) {
                    pseudonym.clone_from(id);
                }
            };
            if let Some(principal) = &mut explanation.principal {
                reveal(&mut principal.external_id);
            }
            explanation.group_path.iter_mut().for_each(reveal);
            if let Grantee::User(id) | Grantee::Group(id) = &mut explanation.grant.grantee {
                reveal(id);
            }
        }
        Ok((Some(explanation), revision))
    }

    /// Converts what an older version wrote with the source's ids in the clear (the
    /// pairs listed in `legacy_principal_ids`): principals get their pseudonyms (their
    /// sealed fields re-bound to them, the id sealed beside), memberships and grants
    /// refer to the pseudonyms. One transaction per integration; runs at start, before
    /// the service serves (every replica must run this version: an older one would go
    /// on writing ids in the clear). Returns the rows it converted.
    pub async fn pseudonymize_legacy(&self) -> Result<u64> {
        let mut converted = 0u64;
        for (tenant, integration) in legacy::pending_integrations(&self.ctx.db).await? {
            // A tenant without keys has nothing left to convert (it was deleted).
            let Some(keys) = self.blind.existing_keys(tenant).await? else {
                scope::delete(&self.ctx.db, "legacy_principal_ids", scope::tenant(tenant)).await?;
                continue;
            };
            let data_key = self
                .ctx
                .keystore
                .existing_data_key(tenant, &KeyScope::Integration(integration.to_string()))
                .await?
                .map(|(_, k)| k);
            let principals = graph::legacy_principals(&self.ctx.db, tenant, integration).await?;
            let memberships = graph::memberships(&self.ctx.db, tenant, integration).await?;
            let named = grants::naming_principals(&self.ctx.db, tenant, integration).await?;

            let txn = self.ctx.db.begin().await?;
            for table in ["principals", "memberships"] {
                scope::delete(&txn, table, scope::integration(tenant, integration)).await?;
            }
            scope::delete(
                &txn,
                "grants",
                grants::naming_principals_of(tenant, integration),
            )
            .await?;
            // Without its key the integration is being erased: its principals go.
            if let Some(key) = &data_key {
                let mut rows = Vec::with_capacity(principals.len());
                for row in principals {
                    let kind = sync::kind_name(&row.kind);
                    let pseudonym = keys.principal(integration, &row.source_id);
                    let reseal = |column: &str, sealed: Vec<u8>| -> Result<Vec<u8>> {
                        let plain = key.open(
                            &principal_aad(tenant, integration, kind, &row.source_id, column),
                            &sealed,
                        )?;
                        key.seal(
                            &principal_aad(tenant, integration, kind, &pseudonym, column),
                            &plain,
                        )
                    };
                    let email_ct = row
                        .email_ct
                        .clone()
                        .map(|ct| reseal("email", ct))
                        .transpose()?;
                    let name_ct = reseal("name", row.name_ct.clone())?;
                    let external_id_ct = key.seal(
                        &principal_aad(tenant, integration, kind, &pseudonym, "external_id"),
                        row.source_id.as_bytes(),
                    )?;
                    rows.push(graph::PrincipalRow {
                        kind,
                        external_id: pseudonym,
                        email_index: row.email_index,
                        email_ct,
                        name_ct,
                        external_id_ct,
                    });
                }
                converted += rows.len() as u64;
                graph::insert_principals(&txn, tenant, integration, rows).await?;
            }
            let edges: Vec<graph::Edge> = memberships
                .into_iter()
                .map(|(group, member, is_group)| {
                    (
                        keys.principal(integration, &group),
                        keys.principal(integration, &member),
                        is_group,
                    )
                })
                .collect();
            converted += graph::insert_memberships(&txn, tenant, integration, &edges).await?;
            let named: Vec<GrantRow> = named
                .into_iter()
                .map(|row| GrantRow {
                    grantee: keys.principal(integration, &row.grantee),
                    ..row
                })
                .collect();
            grants::insert(&txn, tenant, &named).await?;
            converted += named.len() as u64;
            // The stored sets a sync diffs against are of the old ids: forget them, and
            // the pair is converted.
            for table in ["principal_syncs", "legacy_principal_ids"] {
                scope::delete(&txn, table, scope::integration(tenant, integration)).await?;
            }
            revision::bump(&txn, tenant).await?;
            txn.commit().await?;
            self.forget_synced(tenant);
        }
        if converted > 0 {
            mindmesh_kit::db::scrub(&self.ctx.db).await?;
        }
        Ok(converted)
    }

    /// The source's ids of principals of `integration`, by their pseudonyms, opened from
    /// where each is sealed beside its principal. Pseudonyms not found are left out.
    pub async fn source_ids(
        &self,
        tenant: TenantId,
        integration: IntegrationId,
        pseudonyms: &[String],
    ) -> Result<FxHashMap<String, String>> {
        let mut out = FxHashMap::default();
        let Some((_, key)) = self
            .ctx
            .keystore
            .existing_data_key(tenant, &KeyScope::Integration(integration.to_string()))
            .await?
        else {
            return Ok(out);
        };
        for (kind, pseudonym, sealed) in
            graph::sealed_source_ids(&self.ctx.db, tenant, integration, pseudonyms).await?
        {
            let Some(sealed) = sealed else {
                continue;
            };
            let plain = key.open(
                &principal_aad(
                    tenant,
                    integration,
                    sync::kind_name(&kind),
                    &pseudonym,
                    "external_id",
                ),
                &sealed,
            )?;
            out.insert(pseudonym, String::from_utf8_lossy(&plain).into_owned());
        }
        Ok(out)
    }
}

/// The associated data binding a sealed principal field to its tenant, row and column.
pub fn principal_aad(
    tenant: TenantId,
    integration: IntegrationId,
    kind: &str,
    external_id: &str,
    column: &str,
) -> Vec<u8> {
    field_aad(
        tenant,
        "principals",
        column,
        &format!("{integration}/{kind}/{external_id}"),
    )
}

fn poisoned() -> Error {
    mindmesh_kit::Error::Internal("permission index lock poisoned".into())
}

fn build(snapshot: Snapshot, keys: Option<TenantBlindKeys>) -> TenantIndex {
    match keys {
        Some(keys) => {
            TenantIndex::build(snapshot, Arc::new(move |domain: &str| keys.domain(domain)))
        }
        // No tenant key, so no account carries a domain index a grant could match.
        None => TenantIndex::build(snapshot, Arc::new(|_: &str| String::new())),
    }
}

async fn load_snapshot(txn: &DatabaseTransaction, tenant: TenantId) -> Result<Snapshot> {
    let revision = revision::current(txn, tenant).await?;
    let bad = |what: &str| mindmesh_kit::Error::Internal(format!("malformed {what} in store"));
    let mut by_doc: HashMap<DocumentId, DocumentAcl> = HashMap::new();
    for row in grants::of_tenant(txn, tenant).await? {
        let document: DocumentId = row.document.parse().map_err(|_| bad("document id"))?;
        let integration: IntegrationId =
            row.integration.parse().map_err(|_| bad("integration id"))?;
        by_doc
            .entry(document)
            .or_insert_with(|| DocumentAcl {
                document,
                integration,
                grants: Vec::new(),
            })
            .grants
            .push(row.grant());
    }
    Ok(Snapshot {
        revision,
        accounts: user::accounts(txn, tenant).await?,
        principals: graph::principals_of_tenant(txn, tenant).await?,
        memberships: graph::memberships_of_tenant(txn, tenant).await?,
        acls: by_doc.into_values().collect(),
    })
}

fn check_external_id(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_EXTERNAL_ID {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_EXTERNAL_ID} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

fn too_many(field: &'static str, limit: usize) -> Error {
    Error::ResourceExhausted(format!("{field}: at most {limit} per call"))
}

fn validate_sync(
    users: &[SyncedUser],
    groups: &[SyncedGroup],
    memberships: &[Membership],
    integration: IntegrationId,
) -> Result<()> {
    if users.len() > MAX_SYNC_USERS {
        return Err(too_many("users", MAX_SYNC_USERS));
    }
    if groups.len() > MAX_SYNC_GROUPS {
        return Err(too_many("groups", MAX_SYNC_GROUPS));
    }
    if memberships.len() > MAX_SYNC_MEMBERSHIPS {
        return Err(too_many("memberships", MAX_SYNC_MEMBERSHIPS));
    }
    let mut user_ids = FxHashSet::default();
    for u in users {
        check_external_id("users.external_id", &u.external_id)?;
        if !user_ids.insert(u.external_id.as_str()) {
            return Err(Error::invalid("users.external_id", "appears twice"));
        }
        if !u.email.trim().is_empty() && !u.email.contains('@') {
            return Err(Error::invalid("users.email", "is not an email address"));
        }
        if u.display_name.chars().count() > 500 {
            return Err(Error::invalid(
                "users.display_name",
                "must be at most 500 characters",
            ));
        }
    }
    let mut group_ids = FxHashSet::default();
    for g in groups {
        check_external_id("groups.external_id", &g.external_id)?;
        if !group_ids.insert(g.external_id.as_str()) {
            return Err(Error::invalid("groups.external_id", "appears twice"));
        }
        if g.name.chars().count() > 500 {
            return Err(Error::invalid(
                "groups.name",
                "must be at most 500 characters",
            ));
        }
    }
    for m in memberships {
        debug_assert_eq!(m.integration, integration);
        if !group_ids.contains(m.group.as_str()) {
            return Err(Error::invalid(
                "memberships.group_external_id",
                "names a group not in this sync",
            ));
        }
        let known = if m.member_is_group {
            group_ids.contains(m.member.as_str())
        } else {
            user_ids.contains(m.member.as_str())
        };
        if !known {
            return Err(Error::invalid(
                "memberships.member_external_id",
                "names a member not in this sync",
            ));
        }
    }
    Ok(())
}

fn validate_acls(acls: &[DocumentAcl]) -> Result<()> {
    if acls.len() > MAX_ACLS_PER_CALL {
        return Err(too_many("acls", MAX_ACLS_PER_CALL));
    }
    for acl in acls {
        if acl.grants.len() > MAX_GRANTS_PER_DOCUMENT {
            return Err(Error::ResourceExhausted(format!(
                "acls.grants: at most {MAX_GRANTS_PER_DOCUMENT} per document"
            )));
        }
        for g in &acl.grants {
            match &g.grantee {
                Grantee::User(id) | Grantee::Group(id) => {
                    check_external_id("acls.grants.grantee", id)?
                }
                Grantee::Domain(d) => {
                    let ok = d.len() <= 253
                        && d.contains('.')
                        && d.split('.').all(|l| {
                            !l.is_empty()
                                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        });
                    if !ok {
                        return Err(Error::invalid(
                            "acls.grants.grantee",
                            "is not a domain name",
                        ));
                    }
                }
                Grantee::Anyone => {}
            }
        }
    }
    Ok(())
}
