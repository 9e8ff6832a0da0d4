//! Reading documents: one, many, a page of a listing, and the candidates of a find;
//! each opened with its data key.

use super::*;

impl Documents {
    /// For a batch: which imported sources are tombstoned, and what is stored already
    /// (by source: id and source version).
    pub(super) async fn lookup(
        &self,
        tenant: TenantId,
        source_keys: &MacKey,
        docs: &[NewDocument],
    ) -> Result<(
        std::collections::HashSet<SourceKey>,
        std::collections::HashMap<SourceKey, (DocumentId, String, String)>,
    )> {
        let mut tombstoned = std::collections::HashSet::new();
        let mut stored = std::collections::HashMap::new();
        let native: Vec<String> = docs
            .iter()
            .filter_map(|d| match &d.origin {
                Origin::Native { id, .. } => Some(id.to_string()),
                Origin::Imported { .. } => None,
            })
            .collect();
        // Imported sources by their index: (integration, index) → the source's id.
        let mut by_index: std::collections::HashMap<(String, String), String> =
            std::collections::HashMap::new();
        for doc in docs {
            if let Origin::Imported {
                integration,
                external_id,
                ..
            } = &doc.origin
            {
                let integration = integration.to_string();
                let index = source_index(source_keys, &integration, external_id);
                by_index.insert((integration, index), external_id.clone());
            }
        }
        let external: Vec<String> = by_index.keys().map(|(_, index)| index.clone()).collect();
        for (id, block) in store::native_blocks(&self.db, tenant, &native).await? {
            let id: DocumentId = parse_id(&id, "document id")?;
            stored.insert(SourceKey::Native(id), (id, String::new(), block));
        }
        let mut integrations: Vec<String> = docs
            .iter()
            .filter_map(|d| match &d.origin {
                Origin::Imported { integration, .. } => Some(integration.to_string()),
                Origin::Native { .. } => None,
            })
            .collect();
        integrations.sort_unstable();
        integrations.dedup();
        for tombstones in [true, false] {
            for source in
                store::sources(&self.db, tenant, &integrations, &external, tombstones).await?
            {
                let Some(external_id) =
                    by_index.get(&(source.integration_id.clone(), source.source_index))
                else {
                    continue; // the same index in another integration of the batch
                };
                let key = SourceKey::Imported(
                    parse_id(&source.integration_id, "integration id")?,
                    external_id.clone(),
                );
                match source.document {
                    None => {
                        tombstoned.insert(key);
                    }
                    Some((id, version, block)) => {
                        stored.insert(key, (parse_id(&id, "document id")?, version, block));
                    }
                }
            }
        }
        Ok((tombstoned, stored))
    }

    /// A document of `tenant`, decrypted. Absent, or its key destroyed: NOT_FOUND.
    pub async fn get(&self, tenant: TenantId, id: DocumentId) -> Result<Document> {
        self.load(tenant, id, Read::WithContent).await
    }

    /// A document of `tenant`, with or without its content.
    pub async fn load(&self, tenant: TenantId, id: DocumentId, read: Read) -> Result<Document> {
        let row = store::load(&self.db, tenant, &id.to_string(), read == Read::WithContent)
            .await?
            .ok_or(Error::NotFound("document"))?;
        let mut keys = KeyCache::default();
        self.decode(tenant, row, &mut keys).await
    }

    /// The metadata of those of `ids` that exist in `tenant` and can be opened, in the
    /// order of `ids`.
    pub async fn load_many(&self, tenant: TenantId, ids: &[DocumentId]) -> Result<Vec<Document>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids_text: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let rows = store::load_many(&self.db, tenant, &ids_text).await?;
        let mut keys = KeyCache::default();
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            match self.decode(tenant, row, &mut keys).await {
                Ok(doc) => {
                    found.insert(doc.id, doc);
                }
                // Shredded in the meantime: gone for every reader.
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    pub(super) async fn decode(
        &self,
        tenant: TenantId,
        row: store::StoredRow,
        keys: &mut KeyCache,
    ) -> Result<Document> {
        let id: DocumentId = parse_id(&row.id, "document id")?;
        let key_id: KeyId = parse_id(&row.key_id, "key id")?;
        let key = keys.get(&self.keystore, tenant, key_id).await?;
        let open = |column: &str, sealed: &[u8]| {
            key.open(&field_aad(tenant, "documents", column, &row.id), sealed)
        };
        Ok(Document {
            id,
            tenant,
            integration: if row.integration_id.is_empty() {
                None
            } else {
                Some(parse_id(&row.integration_id, "integration id")?)
            },
            external_id: match &row.external_id_ct {
                Some(sealed) => String::from_utf8_lossy(&open("external_id", sealed)?).into_owned(),
                // Native documents have none; a row of an older version keeps it in
                // the clear until `seal_legacy` runs.
                None => row.source_index.clone(),
            },
            source_version: row.source_version.clone(),
            title: String::from_utf8_lossy(&open("title", &row.title_ct)?).into_owned(),
            content: match &row.content_ct {
                Some(sealed) => open("content", sealed)?,
                None => Vec::new(),
            },
            mime_type: row.mime_type.clone(),
            source_url: String::from_utf8_lossy(&open("source_url", &row.source_url_ct)?)
                .into_owned(),
            owner: match &row.owner_ct {
                Some(sealed) => String::from_utf8_lossy(&open("owner", sealed)?).into_owned(),
                None => row.owner.clone(),
            },
            modified_at: row.modified_at,
            size_bytes: u64::try_from(row.size_bytes).unwrap_or(0),
            archived: row.state == "archived",
            restricted: row.restricted,
        })
    }

    /// Documents of `tenant` under `filter`, newest first, after `after`; at most `limit`.
    /// Returns each id with its position, for the next page's cursor.
    pub async fn list(
        &self,
        tenant: TenantId,
        filter: &Filter,
        after: Option<ListPosition>,
        limit: u64,
    ) -> Result<Vec<ListPosition>> {
        let after = after.map(|(us, id)| (us, id.to_string()));
        store::list(&self.db, tenant, filter, after, limit)
            .await?
            .into_iter()
            .map(|(us, id)| Ok((us, parse_id(&id, "document id")?)))
            .collect()
    }

    /// Documents of `tenant` under `filter` matching words of `query`, most matched words
    /// first, then newest; skips `offset` of them, returns at most `limit`.
    pub async fn find(
        &self,
        tenant: TenantId,
        query: &str,
        filter: &Filter,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<DocumentId>> {
        let ranked = self.rank(tenant, query).await?;
        let wanted = usize::try_from(offset.saturating_add(limit)).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        for chunk in ranked.chunks(500) {
            out.extend(self.current(tenant, chunk, filter).await?);
            if out.len() >= wanted {
                break;
            }
        }
        out.truncate(wanted);
        Ok(out
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .collect())
    }

    /// Every indexed write matching words of `query`, best first (see
    /// [`find::search`]); some may be stale — [`Documents::current`] keeps the rest.
    pub async fn rank(&self, tenant: TenantId, query: &str) -> Result<Vec<find::Candidate>> {
        let Some(index_key) = self.keystore.existing_index_key(tenant).await? else {
            return Ok(Vec::new());
        };
        let term_key = Self::term_key(&index_key)?;
        find::search(&self.db, &self.keystore, tenant, &term_key, query).await
    }

    /// The documents of `candidates` that are still as indexed and under `filter`, in
    /// their order.
    pub async fn current(
        &self,
        tenant: TenantId,
        candidates: &[find::Candidate],
        filter: &Filter,
    ) -> Result<Vec<DocumentId>> {
        let mut out = Vec::with_capacity(candidates.len());
        for chunk in candidates.chunks(500) {
            let ids = chunk
                .iter()
                .map(|c| c.posting.document.to_string())
                .collect();
            let current: std::collections::HashMap<DocumentId, i64> =
                store::stamps(&self.db, tenant, ids, filter)
                    .await?
                    .into_iter()
                    .map(|(id, stamp)| Ok((parse_id(&id, "document id")?, stamp)))
                    .collect::<Result<_>>()?;
            out.extend(
                chunk
                    .iter()
                    .filter(|c| {
                        current.get(&c.posting.document) == Some(&i64::from(c.posting.stamp))
                    })
                    .map(|c| c.posting.document),
            );
        }
        Ok(out)
    }
}
