//! The policy decision point: hosts one [`TenantIndex`] per tenant, built from the
//! database on first use and kept current by every write, and answers checks from it.
//!
//! Revisions (the new-enemy problem): every write bumps its tenant's revision in its own
//! transaction and returns it. A read that asks for `at_least_revision` newer than the
//! index it has reloads the tenant from the database first, so once a revocation has
//! been acknowledged, no replica answers from a state before it. Writes in this process
//! update the index in place when it is exactly one revision behind, and otherwise drop
//! it to be reloaded.
//!
//! Here: the per-tenant slots, reads at a revision, and loading a tenant. Then
//! `principals` (SyncPrincipals), `acls` (SetDocumentAcls), `checks` (check, filter,
//! list, explain), `deletion` (integration, tenant, subject) and `pseudonymize` (an
//! older version's plaintext rows).

mod acls;
mod checks;
mod deletion;
mod principals;
mod pseudonymize;

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
