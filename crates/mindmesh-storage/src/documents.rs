//! Encrypted documents (P01) and their blind-index terms, archive and tombstones (P07).
//!
//! Title, content and source URL are sealed with AES-256-GCM under a data key of the
//! keystore — one per (tenant, integration) for imported documents, one per owner for
//! native ones — and bound to tenant, table, column and row, so a ciphertext copied to
//! another row fails to open. Destroying a scope's key makes its documents unreadable at
//! once, in the live database and in every copy of it.
//!
//! Find without plaintext: the words of title and content go into the find index
//! ([`crate::find`]): tenant-keyed HMACs of words, with sealed posting blocks.
//!
//! This module trusts its caller: permission checks happen in [`crate::api`], which
//! asks the permissions service before returning anything read here.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use mindmesh_kit::crypto::{MacKey, SecretKey};
use mindmesh_kit::ids::{CascadeId, DocumentId, IntegrationId, KeyId, TenantId, UserId};
use mindmesh_kit::keys::{KeyScope, Keystore, field_aad};
use mindmesh_kit::{Error, Result};

use crate::find;
use crate::store::documents as store;
use crate::store::{erasures, index, tombstones};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

/// Documents deleted per transaction when an integration is erased.
pub const ERASE_BATCH: u64 = 500;

/// The totals of a finished integration erasure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erasure {
    /// Documents deleted, over every run.
    pub deleted: u64,
    /// Data keys destroyed (recorded before destroying them).
    pub destroyed: Vec<KeyId>,
}

/// What an erasure covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErasureScope {
    /// Everything imported through one integration (a disconnect).
    Integration(IntegrationId),
    /// One person's native documents (their account deleted, or their erasure request).
    Owner(UserId),
    /// Everything of the tenant (the tenant deleted).
    Tenant,
}

impl ErasureScope {
    fn key_scope(&self) -> KeyScope {
        match self {
            ErasureScope::Integration(i) => KeyScope::Integration(i.to_string()),
            ErasureScope::Owner(u) => KeyScope::Person(u.to_string()),
            ErasureScope::Tenant => KeyScope::Index,
        }
    }
}

impl std::fmt::Display for ErasureScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErasureScope::Integration(i) => write!(f, "integration:{i}"),
            ErasureScope::Owner(u) => write!(f, "owner:{u}"),
            ErasureScope::Tenant => f.write_str("tenant"),
        }
    }
}

/// Most distinct terms indexed per document.
pub const MAX_TERMS: usize = 10_000;

/// Where a document comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Imported through an integration, with the source's id and version.
    Imported {
        /// The integration.
        integration: IntegrationId,
        /// The source's id.
        external_id: String,
        /// The source's version.
        source_version: String,
    },
    /// Written in Mindmesh by `owner`; `id` is chosen by the caller, so that its grants
    /// can be recorded before the document exists.
    Native {
        /// The document's id (new, or an existing native document to replace).
        id: DocumentId,
        /// The owning user.
        owner: UserId,
    },
}

/// A document to store.
#[derive(Clone, Debug)]
pub struct NewDocument {
    /// Where it comes from.
    pub origin: Origin,
    /// Title.
    pub title: String,
    /// Content.
    pub content: Vec<u8>,
    /// MIME type.
    pub mime_type: String,
    /// Link at the source (empty for native documents).
    pub source_url: String,
    /// Owner at the source (ignored for native documents: the owner is the user).
    pub source_owner: String,
    /// Last change at the source (or now).
    pub modified_at: DateTime<Utc>,
}

/// A stored document, decrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// Id.
    pub id: DocumentId,
    /// Tenant.
    pub tenant: TenantId,
    /// Integration, for imported documents.
    pub integration: Option<IntegrationId>,
    /// The source's id, for imported documents.
    pub external_id: String,
    /// The source's version.
    pub source_version: String,
    /// Title.
    pub title: String,
    /// Content.
    pub content: Vec<u8>,
    /// MIME type.
    pub mime_type: String,
    /// Link at the source.
    pub source_url: String,
    /// Owner.
    pub owner: String,
    /// Last change.
    pub modified_at: DateTime<Utc>,
    /// Content length in bytes.
    pub size_bytes: u64,
    /// Archived (restorable, not re-imported).
    pub archived: bool,
    /// Processing restricted at the owner's request: served to services only.
    pub restricted: bool,
}

/// Whether a read decrypts the content or only the metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// Metadata and content.
    WithContent,
    /// Metadata only; `content` stays empty.
    MetadataOnly,
}

/// Which documents a listing or a find covers.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only this integration's documents.
    pub integration: Option<IntegrationId>,
    /// Only documents modified at or after this time.
    pub modified_since: Option<DateTime<Utc>>,
    /// Archived documents too.
    pub include_archived: bool,
    /// Documents whose processing is restricted too (services only).
    pub include_restricted: bool,
}

/// A position in the newest-first listing: (modification time in µs, id).
pub type ListPosition = (i64, DocumentId);

/// The blind index of an imported document's source: its integration and the source's
/// id, under the tenant's source-index key. It finds a document (and its tombstone) by
/// its source without the source's id, a path or a title, being stored in the clear.
fn source_index(key: &MacKey, integration: &str, external_id: &str) -> String {
    key.blind_index(&[integration.as_bytes(), external_id.as_bytes()])
}

fn parse_id<T: std::str::FromStr>(value: &str, what: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| Error::Internal(format!("malformed {what} in store")))
}

/// What storing an imported document did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// Newly stored.
    Created(DocumentId),
    /// A new version replaced the old one.
    Updated(DocumentId),
    /// The same version was stored already.
    Unchanged(DocumentId),
    /// Archived in Mindmesh: not re-imported (P07).
    SkippedArchived,
}

/// Data keys opened during one call, so a page of documents unwraps each key once.
#[derive(Default)]
struct KeyCache(std::collections::HashMap<KeyId, SecretKey>);

impl KeyCache {
    async fn get(&mut self, keystore: &Keystore, tenant: TenantId, id: KeyId) -> Result<SecretKey> {
        if let Some(key) = self.0.get(&id) {
            return Ok(key.clone());
        }
        // A destroyed key means the document is gone for every reader.
        let key = keystore.key(tenant, id).await.map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound("document"),
            other => other,
        })?;
        self.0.insert(id, key.clone());
        Ok(key)
    }
}

/// Where a document comes from, as a key: what makes two puts the same document.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum SourceKey {
    Imported(IntegrationId, String),
    Native(DocumentId),
}

fn source_key(origin: &Origin) -> SourceKey {
    match origin {
        Origin::Imported {
            integration,
            external_id,
            ..
        } => SourceKey::Imported(*integration, external_id.clone()),
        Origin::Native { id, .. } => SourceKey::Native(*id),
    }
}

/// The documents of one storage service.
#[derive(Clone)]
pub struct Documents {
    db: DatabaseConnection,
    keystore: Keystore,
    find_index: bool,
}

/// Lowercased words of at least two characters, de-duplicated, at most [`MAX_TERMS`].
pub fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_lowercase)
        .take(MAX_TERMS * 4)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(MAX_TERMS)
        .collect()
}

impl Documents {
    /// Documents over `db`, sealed with keys from `keystore`.
    pub fn new(db: DatabaseConnection, keystore: Keystore) -> Self {
        Documents {
            db,
            keystore,
            find_index: true,
        }
    }

    /// The same store, writing no find index (the benchmark measures what the index
    /// costs this way; documents written so are not found by words).
    pub fn without_find_index(self) -> Self {
        Documents {
            find_index: false,
            ..self
        }
    }

    /// The tenant's key for search terms, derived from its index key.
    fn term_key(index_key: &SecretKey) -> Result<SecretKey> {
        index_key.derive("storage/search-terms")
    }

    /// The tenant's key for source indexes, derived from its index key.
    fn source_key(index_key: &SecretKey) -> Result<MacKey> {
        Ok(index_key.derive("storage/source-ids")?.mac_key())
    }

    /// [`Documents::source_key`] of `tenant`.
    async fn source_index_key(&self, tenant: TenantId) -> Result<MacKey> {
        Self::source_key(&self.keystore.index_key(tenant).await?)
    }

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
    async fn put_unique(
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
    async fn compact(&self, blocks: &[String]) {
        for block in blocks {
            if let Err(e) = find::compact(&self.db, &self.keystore, block).await {
                tracing::warn!(error = %e, "index block compaction failed; will retry later");
            }
        }
    }

    /// For a batch: which imported sources are tombstoned, and what is stored already
    /// (by source: id and source version).
    async fn lookup(
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

    async fn decode(
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

    /// Purges archived documents archived before `before`, in every tenant: their
    /// content and index entries go, their tombstones stay (so the next sync still skips
    /// them). Returns how many were purged.
    pub async fn purge_archived(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut due: Vec<(String, String)> = Vec::new();
        for (id, archived_at, block) in store::archived(&self.db).await? {
            // Compared here, not in SQL: SQLite keeps times as text.
            if archived_at.is_some_and(|at| at < before) {
                due.push((id, block));
            }
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

    async fn erasure(&self, cascade: CascadeId) -> Result<Option<Erasure>> {
        Ok(erasures::progress(&self.db, cascade)
            .await?
            .map(|(destroyed, deleted)| Erasure { deleted, destroyed }))
    }

    /// Seals what a version before sealed source ids kept in the clear: imported
    /// documents' source ids (hashed into `source_index`, sealed into `external_id_ct`)
    /// and tombstones (hashed). Runs at start, before the service serves; a document whose
    /// key is gone is left for its erasure. Returns how many rows it sealed.
    pub async fn seal_legacy(&self) -> Result<u64> {
        let mut sealed = 0u64;
        let mut unopenable: BTreeSet<String> = BTreeSet::new();
        loop {
            let rows = store::legacy(&self.db, unopenable.iter().cloned()).await?;
            if rows.is_empty() {
                break;
            }
            let txn = self.db.begin().await?;
            for row in rows {
                let tenant: TenantId = parse_id(&row.tenant_id, "tenant id")?;
                let key_id: KeyId = parse_id(&row.key_id, "key id")?;
                let key = match self.keystore.key(tenant, key_id).await {
                    Ok(key) => key,
                    Err(Error::NotFound(_)) => {
                        unopenable.insert(row.id);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let index = source_index(
                    &self.source_index_key(tenant).await?,
                    &row.integration_id,
                    &row.external_id,
                );
                let ct = key.seal(
                    &field_aad(tenant, "documents", "external_id", &row.id),
                    row.external_id.as_bytes(),
                )?;
                let owner_ct = key.seal(
                    &field_aad(tenant, "documents", "owner", &row.id),
                    row.owner.as_bytes(),
                )?;
                store::seal_legacy(&txn, &row.id, index, ct, owner_ct).await?;
                sealed += 1;
            }
            txn.commit().await?;
        }
        loop {
            let rows = tombstones::legacy(&self.db).await?;
            if rows.is_empty() {
                break;
            }
            let txn = self.db.begin().await?;
            for (tenant, integration, plain) in rows {
                let keys = self
                    .source_index_key(parse_id(&tenant, "tenant id")?)
                    .await?;
                let index = source_index(&keys, &integration, &plain);
                tombstones::seal_legacy(&txn, (tenant, integration, plain), index).await?;
                sealed += 1;
            }
            txn.commit().await?;
        }
        if sealed > 0 {
            mindmesh_kit::db::scrub(&self.db).await?;
        }
        Ok(sealed)
    }

    /// Forgets a finished erasure's progress, inside the transaction that attests it.
    pub async fn forget_erasure<C: ConnectionTrait>(txn: &C, cascade: CascadeId) -> Result<()> {
        erasures::forget(txn, cascade).await
    }

    /// The database (for handlers that wrap a deletion in their own transaction).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }
}
