//! A document's life after its import: archive and restore, purge of the archived,
//! deletion, restriction of an owner's documents, and erasure of a whole scope
//! (an integration, a tenant, an owner) in batches that resume after a crash.

use super::*;

impl Documents {
    /// Purges, as of `now`, the archived documents whose tenant's window has passed —
    /// its retention policy's `archive_purge_days` (`retention.policy_set`), else
    /// `default_keep` — in every tenant, except those a legal hold keeps (a hold on the
    /// tenant, the importing integration, or a native document's owner): their content
    /// and index entries go, their tombstones stay (so the next sync still skips them).
    /// Returns how many were purged.
    pub async fn purge_archived(
        &self,
        now: DateTime<Utc>,
        default_keep: chrono::Duration,
    ) -> Result<u64> {
        let windows = crate::store::policies::all(&self.db).await?;
        let holds = mindmesh_kit::holds::all(&self.db).await?;
        let mut due: Vec<(String, String)> = Vec::new();
        for row in store::archived(&self.db).await? {
            let keep = windows
                .get(&row.tenant_id)
                .map(|days| chrono::Duration::days(i64::from(*days)))
                .unwrap_or(default_keep);
            // Compared here, not in SQL: SQLite keeps times as text.
            if row.archived_at.is_none_or(|at| at + keep >= now) || held(&holds, &row) {
                continue;
            }
            due.push((row.id, row.index_block));
        }
        let mut purged = 0;
        for chunk in due.chunks(500) {
            let txn = self.db.begin().await?;
            purged +=
                store::delete_archived(&txn, chunk.iter().map(|(id, _)| id.clone()).collect())
                    .await?;
            let mut leaving: std::collections::HashMap<String, i64> =
                std::collections::HashMap::new();
            for (_, block) in chunk {
                *leaving.entry(block.clone()).or_default() += 1;
            }
            let compact = find::release(&txn, &leaving).await?;
            txn.commit().await?;
            self.compact(&compact).await;
        }
        Ok(purged)
    }

    /// The native documents `owner` wrote, newest first.
    pub async fn owned_by(&self, tenant: TenantId, owner: UserId) -> Result<Vec<DocumentId>> {
        store::owned_by(&self.db, tenant, owner)
            .await?
            .iter()
            .map(|id| parse_id(id, "document id"))
            .collect()
    }

    /// Restricts (or lifts the restriction of) processing of `owner`'s native documents;
    /// returns how many changed.
    pub async fn restrict_owner(
        &self,
        tenant: TenantId,
        owner: UserId,
        restricted: bool,
    ) -> Result<u64> {
        store::restrict_owner(&self.db, tenant, owner, restricted).await
    }

    /// Deletes a document and its terms (and its tombstone if it had one: deleting is
    /// not archiving). False when there was nothing to delete.
    pub async fn delete(&self, tenant: TenantId, id: DocumentId) -> Result<bool> {
        let txn = self.db.begin().await?;
        let block = store::block_of(&txn, tenant, &id.to_string()).await?;
        let deleted = store::delete(&txn, tenant, &id.to_string()).await?;
        let compact = match block {
            Some(block) if deleted > 0 => {
                find::release(&txn, &std::collections::HashMap::from([(block, 1)])).await?
            }
            _ => Vec::new(),
        };
        txn.commit().await?;
        self.compact(&compact).await;
        Ok(deleted > 0)
    }

    /// Archives a document: kept for reversal, and — if imported — tombstoned so the next
    /// sync does not bring it back (P07). `document.archived` is published with the change
    /// (outbox).
    pub async fn archive(&self, tenant: TenantId, id: DocumentId) -> Result<()> {
        let doc = self.load(tenant, id, Read::MetadataOnly).await?;
        let now = mindmesh_kit::db::now();
        let txn = self.db.begin().await?;
        store::set_archived(&txn, tenant, &id.to_string(), Some(now)).await?;
        if let Some(integration) = doc.integration {
            let integration = integration.to_string();
            let index = source_index(
                &self.source_index_key(tenant).await?,
                &integration,
                &doc.external_id,
            );
            tombstones::insert(&txn, tenant, &integration, &index, now).await?;
        }
        let event = crate::events::document_state_changed(tenant, id, doc.integration, true);
        mindmesh_kit::outbox::enqueue(&txn, &event).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Restores an archived document and lifts its tombstone. `document.restored` is
    /// published with the change (outbox).
    pub async fn restore(&self, tenant: TenantId, id: DocumentId) -> Result<()> {
        let doc = self.load(tenant, id, Read::MetadataOnly).await?;
        let txn = self.db.begin().await?;
        store::set_archived(&txn, tenant, &id.to_string(), None).await?;
        if let Some(integration) = doc.integration {
            let integration = integration.to_string();
            let index = source_index(
                &self.source_index_key(tenant).await?,
                &integration,
                &doc.external_id,
            );
            tombstones::delete(&txn, tenant, &integration, &index).await?;
        }
        let event = crate::events::document_state_changed(tenant, id, doc.integration, false);
        mindmesh_kit::outbox::enqueue(&txn, &event).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Erases an integration's documents for `cascade` (see [`Documents::erase`]).
    pub async fn erase_integration(
        &self,
        tenant: TenantId,
        integration: IntegrationId,
        cascade: CascadeId,
        max_batches: Option<usize>,
    ) -> Result<Option<Erasure>> {
        self.erase(
            tenant,
            &ErasureScope::Integration(integration),
            cascade,
            max_batches,
        )
        .await
    }

    /// Erases what `scope` covers for `cascade`, resumably: the key ids are recorded,
    /// the keys destroyed (everything they sealed is unreadable from that moment, in
    /// every copy), then documents go in batches of [`ERASE_BATCH`], each batch
    /// committing with the running count. Run again after an interruption, it carries
    /// on. Stops after `max_batches` when given (tests interrupt it that way). Returns
    /// the erasure's totals once nothing is left.
    pub async fn erase(
        &self,
        tenant: TenantId,
        scope: &ErasureScope,
        cascade: CascadeId,
        max_batches: Option<usize>,
    ) -> Result<Option<Erasure>> {
        let mut erasure = match self.erasure(cascade).await? {
            Some(erasure) => erasure,
            None => {
                let keys = match scope {
                    ErasureScope::Tenant => self.keystore.tenant_data_key_ids(tenant).await?,
                    other => {
                        self.keystore
                            .scope_key_ids(tenant, &other.key_scope())
                            .await?
                    }
                };
                erasures::start(&self.db, cascade, tenant, &scope.to_string(), &keys).await?;
                Erasure {
                    deleted: 0,
                    destroyed: keys,
                }
            }
        };
        // Destroying keys is idempotent: on a resumed run there is nothing left.
        match scope {
            ErasureScope::Tenant => {
                self.keystore.shred_tenant(tenant).await?;
            }
            other => {
                self.keystore.shred(tenant, &other.key_scope()).await?;
            }
        }
        let mut batches = 0;
        loop {
            if max_batches.is_some_and(|max| batches >= max) {
                return Ok(None);
            }
            let txn = self.db.begin().await?;
            let ids = store::ids_in_scope(&txn, tenant, scope, ERASE_BATCH).await?;
            if ids.is_empty() {
                txn.commit().await?;
                // Then the scope's index blocks, a batch of blocks per transaction.
                let label = scope.to_string();
                let only = (*scope != ErasureScope::Tenant).then_some(label.as_str());
                loop {
                    let blocks = index::blocks_of(&self.db, tenant, only, 200).await?;
                    if blocks.is_empty() {
                        break;
                    }
                    let txn = self.db.begin().await?;
                    index::drop_blocks(&txn, &blocks).await?;
                    txn.commit().await?;
                }
                let txn = self.db.begin().await?;
                if *scope == ErasureScope::Tenant {
                    tombstones::delete_tenant(&txn, tenant).await?;
                    mindmesh_kit::integrations::Integrations::forget_tenant(&txn, tenant).await?;
                }
                txn.commit().await?;
                return Ok(Some(erasure));
            }
            erasure.deleted += store::delete_ids(&txn, &ids).await?;
            erasures::advance(&txn, cascade, erasure.deleted).await?;
            txn.commit().await?;
            batches += 1;
        }
    }

    pub(super) async fn erasure(&self, cascade: CascadeId) -> Result<Option<Erasure>> {
        Ok(erasures::progress(&self.db, cascade)
            .await?
            .map(|(destroyed, deleted)| Erasure { deleted, destroyed }))
    }

    /// Forgets a finished erasure's progress, inside the transaction that attests it.
    pub async fn forget_erasure<C: ConnectionTrait>(txn: &C, cascade: CascadeId) -> Result<()> {
        erasures::forget(txn, cascade).await
    }
}

/// Whether one of `holds` keeps the archived document `row`.
fn held(holds: &[mindmesh_kit::holds::Hold], row: &store::ArchivedRow) -> bool {
    use mindmesh_kit::holds::HeldScope;
    let Ok(tenant) = row.tenant_id.parse::<TenantId>() else {
        // Unreadable: kept rather than purged.
        return true;
    };
    let scope = if row.integration_id.is_empty() {
        row.owner.parse().ok().map(HeldScope::User)
    } else {
        row.integration_id.parse().ok().map(HeldScope::Integration)
    };
    holds.iter().any(|h| {
        h.tenant == tenant && (h.scope == HeldScope::Tenant || scope.is_some_and(|s| h.scope == s))
    })
}
