//! Writing documents: a put seals title, content and source URL, indexes the words, and
//! replaces the source's earlier version of the same document in one transaction.

use super::*;

impl Documents {
    /// Stores a document: a native one is created or replaced; an imported one is
    /// created, updated to a new source version, left unchanged, or skipped when
    /// archived.
    pub async fn put(&self, tenant: TenantId, doc: NewDocument) -> Result<PutOutcome> {
        let mut outcomes = self.put_batch(tenant, vec![doc]).await?;
        outcomes
            .pop()
            .ok_or_else(|| Error::Internal("a batch of one returned nothing".into()))
    }

    /// Stores documents as [`Documents::put`] does, in few round trips: one lookup of
    /// tombstones and stored versions for the whole batch, one transaction with
    /// multi-row inserts. Outcomes come in the order of `docs`; a source id listed twice
    /// is stored twice in order (the second sees the first).
    pub async fn put_batch(
        &self,
        tenant: TenantId,
        docs: Vec<NewDocument>,
    ) -> Result<Vec<PutOutcome>> {
        let mut outcomes = Vec::with_capacity(docs.len());
        let mut run: Vec<NewDocument> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for doc in docs {
            if !seen.insert(source_key(&doc.origin)) {
                outcomes.extend(self.put_unique(tenant, std::mem::take(&mut run)).await?);
                seen.clear();
                seen.insert(source_key(&doc.origin));
            }
            run.push(doc);
        }
        outcomes.extend(self.put_unique(tenant, run).await?);
        Ok(outcomes)
    }

    /// [`Documents::put_batch`] of documents with distinct sources.
    pub(super) async fn put_unique(
        &self,
        tenant: TenantId,
        docs: Vec<NewDocument>,
    ) -> Result<Vec<PutOutcome>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        // One look at the tenant's index key serves the source indexes and the terms.
        let index_key = self.keystore.index_key(tenant).await?;
        let source_keys = Self::source_key(&index_key)?;
        let (tombstoned, stored) = self.lookup(tenant, &source_keys, &docs).await?;
        let mut outcomes = Vec::with_capacity(docs.len());
        let mut writes: Vec<(DocumentId, NewDocument)> = Vec::new();
        for doc in docs {
            let key = source_key(&doc.origin);
            let outcome = match &doc.origin {
                Origin::Native { id, .. } => {
                    if stored.contains_key(&key) {
                        PutOutcome::Updated(*id)
                    } else {
                        PutOutcome::Created(*id)
                    }
                }
                Origin::Imported { source_version, .. } => {
                    if tombstoned.contains(&key) {
                        PutOutcome::SkippedArchived
                    } else {
                        match stored.get(&key) {
                            Some((id, version, _)) if version == source_version => {
                                PutOutcome::Unchanged(*id)
                            }
                            Some((id, _, _)) => PutOutcome::Updated(*id),
                            None => PutOutcome::Created(DocumentId::new()),
                        }
                    }
                }
            };
            if let PutOutcome::Created(id) | PutOutcome::Updated(id) = outcome {
                writes.push((id, doc));
            }
            outcomes.push(outcome);
        }
        if writes.is_empty() {
            return Ok(outcomes);
        }

        // Seal and index outside the transaction.
        let term_key = if self.find_index {
            Some(Self::term_key(&index_key)?)
        } else {
            None
        };
        let mut keys: std::collections::HashMap<KeyScope, (KeyId, SecretKey)> =
            std::collections::HashMap::new();
        let now = mindmesh_kit::db::now();
        let mut rows: Vec<store::NewRow> = Vec::with_capacity(writes.len());
        // One block of postings per key scope in this batch.
        let mut index_inputs: Vec<find::IndexInput> = Vec::new();
        let mut stamps = Vec::with_capacity(writes.len());
        let mut replaced = Vec::new();
        let mut leaving: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        for (id, doc) in &writes {
            // A native document's owner is an account id (its erasure finds it by it); an
            // imported one's is the source's (for Drive an email address): sealed.
            let (integration, external_id, source_version, scope, owner) = match &doc.origin {
                Origin::Imported {
                    integration,
                    external_id,
                    source_version,
                } => (
                    integration.to_string(),
                    Some(external_id.as_str()),
                    source_version.clone(),
                    KeyScope::Integration(integration.to_string()),
                    String::new(),
                ),
                Origin::Native { owner, .. } => (
                    String::new(),
                    None,
                    String::new(),
                    KeyScope::Person(owner.to_string()),
                    owner.to_string(),
                ),
            };
            if let Some((_, _, block)) = stored.get(&source_key(&doc.origin)) {
                replaced.push(id.to_string());
                *leaving.entry(block.clone()).or_default() += 1;
            }
            let erasure_scope = match &doc.origin {
                Origin::Imported { integration, .. } => ErasureScope::Integration(*integration),
                Origin::Native { owner, .. } => ErasureScope::Owner(*owner),
            };
            let (key_id, key) = match keys.get(&scope) {
                Some(found) => found.clone(),
                None => {
                    let found = self.keystore.data_key(tenant, &scope).await?;
                    keys.insert(scope.clone(), found.clone());
                    found
                }
            };
            let row = id.to_string();
            let seal = |column: &str, value: &[u8]| {
                key.seal(&field_aad(tenant, "documents", column, &row), value)
            };
            let stamp = u32::from_le_bytes(mindmesh_kit::crypto::random_bytes::<4>()?);
            if term_key.is_some() {
                let mut text = doc.title.clone();
                text.push(' ');
                text.push_str(&String::from_utf8_lossy(&doc.content));
                index_inputs.push(find::IndexInput {
                    scope: scope.clone(),
                    label: erasure_scope.to_string(),
                    posting: find::Posting {
                        document: *id,
                        stamp,
                        modified_us: doc.modified_at.timestamp_micros(),
                    },
                    text,
                });
            }
            stamps.push((scope, stamp));
            let (source_index, external_id_ct, owner_ct) = match external_id {
                Some(external_id) => (
                    source_index(&source_keys, &integration, external_id),
                    Some(seal("external_id", external_id.as_bytes())?),
                    Some(seal("owner", doc.source_owner.as_bytes())?),
                ),
                None => (String::new(), None, None),
            };
            rows.push(store::NewRow {
                id: row.clone(),
                tenant_id: tenant.to_string(),
                integration_id: integration,
                source_index,
                external_id_ct,
                source_version,
                key_id: key_id.to_string(),
                title_ct: seal("title", doc.title.as_bytes())?,
                content_ct: seal("content", &doc.content)?,
                source_url_ct: seal("source_url", doc.source_url.as_bytes())?,
                mime_type: doc.mime_type.clone(),
                owner,
                owner_ct,
                size_bytes: i64::try_from(doc.content.len()).unwrap_or(i64::MAX),
                modified_at: mindmesh_kit::db::micros(doc.modified_at),
                modified_us: doc.modified_at.timestamp_micros(),
                index_block: String::new(),
                index_stamp: 0,
                now,
            });
        }

        let blocks = match term_key {
            Some(term_key) if !index_inputs.is_empty() => {
                find::prepare_blocks(tenant, term_key, index_inputs, keys.clone()).await?
            }
            _ => Vec::new(),
        };
        let txn = self.db.begin().await?;
        let mut block_ids: std::collections::HashMap<KeyScope, String> =
            std::collections::HashMap::new();
        for (scope, block) in blocks {
            block.write(&txn, tenant).await?;
            block_ids.insert(scope, block.id().to_owned());
        }
        for (row, (scope, stamp)) in rows.iter_mut().zip(stamps) {
            row.index_block = block_ids.get(&scope).cloned().unwrap_or_default();
            row.index_stamp = i64::from(stamp);
        }
        // By id alone (the lookup found them in this tenant).
        store::delete_ids(&txn, &replaced).await?;
        store::insert(&txn, rows).await?;
        let compact = find::release(&txn, &leaving).await?;
        txn.commit().await?;
        self.compact(&compact).await;
        Ok(outcomes)
    }

    /// Rewrites index blocks that are mostly stale. Best effort: a failure leaves stale
    /// postings, which a find never returns, for the next compaction.
    pub(super) async fn compact(&self, blocks: &[String]) {
        for block in blocks {
            if let Err(e) = find::compact(&self.db, &self.keystore, block).await {
                tracing::warn!(error = %e, "index block compaction failed; will retry later");
            }
        }
    }
}
