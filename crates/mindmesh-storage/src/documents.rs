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
use mindmesh_proto::mindmesh::events::v1::Envelope;

use crate::find;
use crate::store::index;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Order, Query};
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

impl Filter {
    fn apply(&self, statement: &mut sea_orm::sea_query::SelectStatement) {
        if let Some(integration) = self.integration {
            statement
                .and_where(Expr::col(("documents", "integration_id")).eq(integration.to_string()));
        }
        if let Some(since) = self.modified_since {
            statement
                .and_where(Expr::col(("documents", "modified_us")).gte(since.timestamp_micros()));
        }
        if !self.include_archived {
            statement.and_where(Expr::col(("documents", "state")).eq("active"));
        }
        if !self.include_restricted {
            statement.and_where(Expr::col(("documents", "restricted")).eq(false));
        }
    }
}

/// A position in the newest-first listing: (modification time in µs, id).
pub type ListPosition = (i64, DocumentId);

const META_COLUMNS: [&str; 16] = [
    "id",
    "integration_id",
    "source_index",
    "external_id_ct",
    "source_version",
    "key_id",
    "title_ct",
    "source_url_ct",
    "mime_type",
    "owner",
    "owner_ct",
    "modified_at",
    "size_bytes",
    "state",
    "tenant_id",
    "restricted",
];

/// The rows of `tenant`. Lookups by a list of ids constrain only the id in SQL, so that
/// every planner uses the primary key (with the tenant as well, SQLite without table
/// statistics prefers scanning the tenant's rows); the tenant is checked here.
fn of_tenant(
    rows: Vec<sea_orm::QueryResult>,
    tenant: TenantId,
) -> Result<Vec<sea_orm::QueryResult>> {
    let tenant = tenant.to_string();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if row.try_get::<String>("", "tenant_id")? == tenant {
            out.push(row);
        }
    }
    Ok(out)
}

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

const DOCUMENT_COLUMNS: [&str; 22] = [
    "id",
    "tenant_id",
    "integration_id",
    "source_index",
    "external_id_ct",
    "source_version",
    "key_id",
    "title_ct",
    "content_ct",
    "source_url_ct",
    "mime_type",
    "owner",
    "owner_ct",
    "size_bytes",
    "modified_at",
    "modified_us",
    "state",
    "archived_at",
    "created_at",
    "updated_at",
    "index_block",
    "index_stamp",
];

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
        let mut rows: Vec<Vec<sea_orm::sea_query::SimpleExpr>> = Vec::with_capacity(writes.len());
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
            let values: Vec<sea_orm::sea_query::SimpleExpr> = vec![
                row.clone().into(),
                tenant.to_string().into(),
                integration.into(),
                source_index.into(),
                external_id_ct.into(),
                source_version.into(),
                key_id.to_string().into(),
                seal("title", doc.title.as_bytes())?.into(),
                seal("content", &doc.content)?.into(),
                seal("source_url", doc.source_url.as_bytes())?.into(),
                doc.mime_type.clone().into(),
                owner.into(),
                owner_ct.into(),
                i64::try_from(doc.content.len()).unwrap_or(i64::MAX).into(),
                mindmesh_kit::db::micros(doc.modified_at).into(),
                doc.modified_at.timestamp_micros().into(),
                "active".into(),
                Option::<DateTime<Utc>>::None.into(),
                now.into(),
                now.into(),
            ];
            rows.push(values);
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
        for (values, (scope, stamp)) in rows.iter_mut().zip(stamps) {
            values.push(block_ids.get(&scope).cloned().unwrap_or_default().into());
            values.push(i64::from(stamp).into());
        }
        for chunk in replaced.chunks(500) {
            // By id alone (the lookup found them in this tenant): every planner then uses
            // the primary key.
            txn.execute(
                &Query::delete()
                    .from_table("documents")
                    .and_where(Expr::col("id").is_in(chunk.iter().cloned()))
                    .to_owned(),
            )
            .await?;
        }
        // 22 values a row: 400 rows stay under both databases' bind limits.
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let mut insert = Query::insert();
            insert.into_table("documents").columns(DOCUMENT_COLUMNS);
            for values in rows.by_ref().take(400) {
                insert.values_panic(values);
            }
            txn.execute(&insert).await.map_err(|e| match e.sql_err() {
                // Another write of the same new source committed first: retryable, and
                // the retry finds it stored.
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::Unavailable(
                    "a concurrent write stored the same document first; retry".into(),
                ),
                _ => Error::Db(e),
            })?;
        }
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
        for chunk in native.chunks(500) {
            let rows = self
                .db
                .query_all(
                    &Query::select()
                        .columns(["id", "tenant_id", "index_block"])
                        .from("documents")
                        .and_where(Expr::col("id").is_in(chunk.iter().cloned()))
                        .to_owned(),
                )
                .await?;
            for row in of_tenant(rows, tenant)? {
                let id: String = row.try_get("", "id")?;
                let id: DocumentId = parse_id(&id, "document id")?;
                stored.insert(
                    SourceKey::Native(id),
                    (id, String::new(), row.try_get("", "index_block")?),
                );
            }
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
        for chunk in external.chunks(500) {
            for (table, is_tombstone) in [("tombstones", true), ("documents", false)] {
                // The whole source key, so the (tenant, integration, external id) index
                // is used rather than a scan of the tenant's rows.
                let mut query = Query::select();
                query
                    .columns(["integration_id", "source_index"])
                    .from(table)
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("integration_id").is_in(integrations.iter().cloned()))
                    .and_where(Expr::col("source_index").is_in(chunk.iter().cloned()));
                if !is_tombstone {
                    query.columns(["id", "source_version", "index_block"]);
                    query.and_where(Expr::col("integration_id").ne(""));
                }
                for row in self.db.query_all(&query).await? {
                    let integration: String = row.try_get("", "integration_id")?;
                    let index: String = row.try_get("", "source_index")?;
                    let Some(external_id) = by_index.get(&(integration.clone(), index)) else {
                        continue; // the same index in another integration of the batch
                    };
                    let key = SourceKey::Imported(
                        parse_id(&integration, "integration id")?,
                        external_id.clone(),
                    );
                    if is_tombstone {
                        tombstoned.insert(key);
                    } else {
                        let id: String = row.try_get("", "id")?;
                        stored.insert(
                            key,
                            (
                                parse_id(&id, "document id")?,
                                row.try_get("", "source_version")?,
                                row.try_get("", "index_block")?,
                            ),
                        );
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
        let mut statement = Query::select();
        statement
            .columns(META_COLUMNS)
            .from("documents")
            .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
            .and_where(Expr::col("id").eq(id.to_string()));
        if read == Read::WithContent {
            statement.column("content_ct");
        }
        let row = self
            .db
            .query_one(&statement)
            .await?
            .ok_or(Error::NotFound("document"))?;
        let mut keys = KeyCache::default();
        self.decode(tenant, &row, read, &mut keys).await
    }

    /// The metadata of those of `ids` that exist in `tenant` and can be opened, in the
    /// order of `ids`.
    pub async fn load_many(&self, tenant: TenantId, ids: &[DocumentId]) -> Result<Vec<Document>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .db
            .query_all(
                &Query::select()
                    .columns(META_COLUMNS)
                    .from("documents")
                    .and_where(Expr::col("id").is_in(ids.iter().map(ToString::to_string)))
                    .to_owned(),
            )
            .await?;
        let rows = of_tenant(rows, tenant)?;
        let mut keys = KeyCache::default();
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            match self
                .decode(tenant, row, Read::MetadataOnly, &mut keys)
                .await
            {
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
        row: &sea_orm::QueryResult,
        read: Read,
        keys: &mut KeyCache,
    ) -> Result<Document> {
        let id: DocumentId = parse_id(&row.try_get::<String>("", "id")?, "document id")?;
        let key_id: KeyId = parse_id(&row.try_get::<String>("", "key_id")?, "key id")?;
        let key = keys.get(&self.keystore, tenant, key_id).await?;
        let rowid = id.to_string();
        let open = |column: &str, sealed: Vec<u8>| {
            key.open(&field_aad(tenant, "documents", column, &rowid), &sealed)
        };
        let integration: String = row.try_get("", "integration_id")?;
        let state: String = row.try_get("", "state")?;
        let size: i64 = row.try_get("", "size_bytes")?;
        Ok(Document {
            id,
            tenant,
            integration: if integration.is_empty() {
                None
            } else {
                Some(parse_id(&integration, "integration id")?)
            },
            external_id: match row.try_get::<Option<Vec<u8>>>("", "external_id_ct")? {
                Some(sealed) => String::from_utf8_lossy(&open("external_id", sealed)?).into_owned(),
                // Native documents have none; a row of an older version keeps it in
                // the clear until `seal_legacy` runs.
                None => row.try_get("", "source_index")?,
            },
            source_version: row.try_get("", "source_version")?,
            title: String::from_utf8_lossy(&open("title", row.try_get("", "title_ct")?)?)
                .into_owned(),
            content: match read {
                Read::WithContent => open("content", row.try_get("", "content_ct")?)?,
                Read::MetadataOnly => Vec::new(),
            },
            mime_type: row.try_get("", "mime_type")?,
            source_url: String::from_utf8_lossy(&open(
                "source_url",
                row.try_get("", "source_url_ct")?,
            )?)
            .into_owned(),
            owner: match row.try_get::<Option<Vec<u8>>>("", "owner_ct")? {
                Some(sealed) => String::from_utf8_lossy(&open("owner", sealed)?).into_owned(),
                None => row.try_get("", "owner")?,
            },
            modified_at: row.try_get("", "modified_at")?,
            size_bytes: u64::try_from(size).unwrap_or(0),
            archived: state == "archived",
            restricted: row.try_get("", "restricted")?,
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
        let mut statement = Query::select();
        statement
            .columns([("documents", "id"), ("documents", "modified_us")])
            .from("documents")
            .and_where(Expr::col(("documents", "tenant_id")).eq(tenant.to_string()))
            .order_by(("documents", "modified_us"), Order::Desc)
            .order_by(("documents", "id"), Order::Desc)
            .limit(limit);
        filter.apply(&mut statement);
        if let Some((us, id)) = after {
            statement.and_where(
                Expr::col(("documents", "modified_us"))
                    .lt(us)
                    .or(Expr::col(("documents", "modified_us"))
                        .eq(us)
                        .and(Expr::col(("documents", "id")).lt(id.to_string()))),
            );
        }
        let rows = self.db.query_all(&statement).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64>("", "modified_us")?,
                    parse_id(&r.try_get::<String>("", "id")?, "document id")?,
                ))
            })
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
            let mut statement = Query::select();
            statement
                .columns([
                    ("documents", "id"),
                    ("documents", "tenant_id"),
                    ("documents", "index_stamp"),
                ])
                .from("documents")
                .and_where(
                    Expr::col(("documents", "id"))
                        .is_in(chunk.iter().map(|c| c.posting.document.to_string())),
                );
            filter.apply(&mut statement);
            let current: std::collections::HashMap<DocumentId, i64> =
                of_tenant(self.db.query_all(&statement).await?, tenant)?
                    .iter()
                    .map(|r| {
                        Ok((
                            parse_id(&r.try_get::<String>("", "id")?, "document id")?,
                            r.try_get::<i64>("", "index_stamp")?,
                        ))
                    })
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
        let rows = self
            .db
            .query_all(
                &Query::select()
                    .columns(["id", "archived_at", "index_block"])
                    .from("documents")
                    .and_where(Expr::col("state").eq("archived"))
                    .to_owned(),
            )
            .await?;
        let mut due: Vec<(String, String)> = Vec::new();
        for row in rows {
            // Compared here, not in SQL: SQLite keeps times as text.
            let archived_at: Option<DateTime<Utc>> = row.try_get("", "archived_at")?;
            if archived_at.is_some_and(|at| at < before) {
                due.push((row.try_get("", "id")?, row.try_get("", "index_block")?));
            }
        }
        let mut purged = 0;
        for chunk in due.chunks(500) {
            let txn = self.db.begin().await?;
            purged += txn
                .execute(
                    &Query::delete()
                        .from_table("documents")
                        .and_where(Expr::col("id").is_in(chunk.iter().map(|(id, _)| id.clone())))
                        .and_where(Expr::col("state").eq("archived"))
                        .to_owned(),
                )
                .await?
                .rows_affected();
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
        let rows = self
            .db
            .query_all(
                &Query::select()
                    .column("id")
                    .from("documents")
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("integration_id").eq(""))
                    .and_where(Expr::col("owner").eq(owner.to_string()))
                    .order_by("modified_us", Order::Desc)
                    .to_owned(),
            )
            .await?;
        rows.iter()
            .map(|r| parse_id(&r.try_get::<String>("", "id")?, "document id"))
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
        Ok(self
            .db
            .execute(
                &Query::update()
                    .table("documents")
                    .value("restricted", restricted)
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("integration_id").eq(""))
                    .and_where(Expr::col("owner").eq(owner.to_string()))
                    .and_where(Expr::col("restricted").ne(restricted))
                    .to_owned(),
            )
            .await?
            .rows_affected())
    }

    /// Deletes a document and its terms (and its tombstone if it had one: deleting is
    /// not archiving). False when there was nothing to delete.
    pub async fn delete(&self, tenant: TenantId, id: DocumentId) -> Result<bool> {
        let txn = self.db.begin().await?;
        let block: Option<String> = txn
            .query_one(
                &Query::select()
                    .column("index_block")
                    .from("documents")
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .to_owned(),
            )
            .await?
            .map(|r| r.try_get("", "index_block"))
            .transpose()?;
        let deleted = txn
            .execute(
                &Query::delete()
                    .from_table("documents")
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .to_owned(),
            )
            .await?
            .rows_affected();
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
    /// sync does not bring it back (P07). `event` is published with the change (outbox).
    pub async fn archive(
        &self,
        tenant: TenantId,
        id: DocumentId,
        event: Option<&Envelope>,
    ) -> Result<()> {
        let doc = self.load(tenant, id, Read::MetadataOnly).await?;
        let now = mindmesh_kit::db::now();
        let txn = self.db.begin().await?;
        txn.execute(
            &Query::update()
                .table("documents")
                .value("state", "archived")
                .value("archived_at", now)
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .and_where(Expr::col("id").eq(id.to_string()))
                .to_owned(),
        )
        .await?;
        if let Some(integration) = doc.integration {
            let integration = integration.to_string();
            let index = source_index(
                &self.source_index_key(tenant).await?,
                &integration,
                &doc.external_id,
            );
            txn.execute(
                &Query::insert()
                    .into_table("tombstones")
                    .columns([
                        "tenant_id",
                        "integration_id",
                        "source_index",
                        "archived_at",
                        "legacy",
                    ])
                    .values_panic([
                        tenant.to_string().into(),
                        integration.into(),
                        index.into(),
                        now.into(),
                        false.into(),
                    ])
                    .on_conflict(
                        OnConflict::columns(["tenant_id", "integration_id", "source_index"])
                            .do_nothing()
                            .to_owned(),
                    )
                    .to_owned(),
            )
            .await?;
        }
        if let Some(event) = event {
            mindmesh_kit::outbox::enqueue(&txn, event).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Restores an archived document and lifts its tombstone. `event` is published with
    /// the change (outbox).
    pub async fn restore(
        &self,
        tenant: TenantId,
        id: DocumentId,
        event: Option<&Envelope>,
    ) -> Result<()> {
        let doc = self.load(tenant, id, Read::MetadataOnly).await?;
        let txn = self.db.begin().await?;
        txn.execute(
            &Query::update()
                .table("documents")
                .value("state", "active")
                .value("archived_at", Option::<DateTime<Utc>>::None)
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .and_where(Expr::col("id").eq(id.to_string()))
                .to_owned(),
        )
        .await?;
        if let Some(integration) = doc.integration {
            let integration = integration.to_string();
            let index = source_index(
                &self.source_index_key(tenant).await?,
                &integration,
                &doc.external_id,
            );
            txn.execute(
                &Query::delete()
                    .from_table("tombstones")
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("integration_id").eq(integration))
                    .and_where(Expr::col("source_index").eq(index))
                    .to_owned(),
            )
            .await?;
        }
        if let Some(event) = event {
            mindmesh_kit::outbox::enqueue(&txn, event).await?;
        }
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
                let ids: Vec<String> = keys.iter().map(ToString::to_string).collect();
                self.db
                    .execute(
                        &Query::insert()
                            .into_table("erasures")
                            .columns([
                                "cascade_id",
                                "tenant_id",
                                "integration_id",
                                "destroyed_key_ids",
                                "deleted",
                            ])
                            .values_panic([
                                cascade.to_string().into(),
                                tenant.to_string().into(),
                                scope.to_string().into(),
                                ids.join(",").into(),
                                0i64.into(),
                            ])
                            .on_conflict(OnConflict::column("cascade_id").do_nothing().to_owned())
                            .to_owned(),
                    )
                    .await?;
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
            let mut select = Query::select();
            select
                .column("id")
                .from("documents")
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .limit(ERASE_BATCH);
            match scope {
                ErasureScope::Integration(integration) => {
                    select.and_where(Expr::col("integration_id").eq(integration.to_string()));
                }
                ErasureScope::Owner(user) => {
                    select
                        .and_where(Expr::col("integration_id").eq(""))
                        .and_where(Expr::col("owner").eq(user.to_string()));
                }
                ErasureScope::Tenant => {}
            }
            let ids: Vec<String> = txn
                .query_all(&select)
                .await?
                .iter()
                .map(|r| r.try_get::<String>("", "id"))
                .collect::<std::result::Result<_, _>>()?;
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
                    txn.execute(
                        &Query::delete()
                            .from_table("tombstones")
                            .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                            .to_owned(),
                    )
                    .await?;
                    mindmesh_kit::integrations::Integrations::forget_tenant(&txn, tenant).await?;
                }
                txn.commit().await?;
                return Ok(Some(erasure));
            }
            let n = txn
                .execute(
                    &Query::delete()
                        .from_table("documents")
                        .and_where(Expr::col("id").is_in(ids))
                        .to_owned(),
                )
                .await?
                .rows_affected();
            erasure.deleted += n;
            txn.execute(
                &Query::update()
                    .table("erasures")
                    .value(
                        "deleted",
                        i64::try_from(erasure.deleted).unwrap_or(i64::MAX),
                    )
                    .and_where(Expr::col("cascade_id").eq(cascade.to_string()))
                    .to_owned(),
            )
            .await?;
            txn.commit().await?;
            batches += 1;
        }
    }

    async fn erasure(&self, cascade: CascadeId) -> Result<Option<Erasure>> {
        let row = self
            .db
            .query_one(
                &Query::select()
                    .columns(["destroyed_key_ids", "deleted"])
                    .from("erasures")
                    .and_where(Expr::col("cascade_id").eq(cascade.to_string()))
                    .to_owned(),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let keys: String = row.try_get("", "destroyed_key_ids")?;
        let deleted: i64 = row.try_get("", "deleted")?;
        Ok(Some(Erasure {
            deleted: u64::try_from(deleted).unwrap_or(0),
            destroyed: keys
                .split(',')
                .filter(|k| !k.is_empty())
                .map(|k| {
                    k.parse()
                        .map_err(|_| Error::Internal("malformed key id in erasure".into()))
                })
                .collect::<Result<_>>()?,
        }))
    }

    /// Seals what a version before sealed source ids kept in the clear: imported
    /// documents' source ids (hashed into `source_index`, sealed into `external_id_ct`)
    /// and tombstones (hashed). Runs at start, before the service serves; a document whose
    /// key is gone is left for its erasure. Returns how many rows it sealed.
    pub async fn seal_legacy(&self) -> Result<u64> {
        let mut sealed = 0u64;
        let mut unopenable: BTreeSet<String> = BTreeSet::new();
        loop {
            let rows = self
                .db
                .query_all(
                    &Query::select()
                        .columns([
                            "id",
                            "tenant_id",
                            "integration_id",
                            "source_index",
                            "key_id",
                            "owner",
                        ])
                        .from("documents")
                        .and_where(Expr::col("external_id_ct").is_null())
                        .and_where(Expr::col("integration_id").ne(""))
                        .and_where(Expr::col("id").is_not_in(unopenable.iter().cloned()))
                        .limit(500)
                        .to_owned(),
                )
                .await?;
            if rows.is_empty() {
                break;
            }
            let txn = self.db.begin().await?;
            for row in rows {
                let id: String = row.try_get("", "id")?;
                let tenant: TenantId =
                    parse_id(&row.try_get::<String>("", "tenant_id")?, "tenant id")?;
                let integration: String = row.try_get("", "integration_id")?;
                let plain: String = row.try_get("", "source_index")?;
                let key_id: KeyId = parse_id(&row.try_get::<String>("", "key_id")?, "key id")?;
                let key = match self.keystore.key(tenant, key_id).await {
                    Ok(key) => key,
                    Err(Error::NotFound(_)) => {
                        unopenable.insert(id);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let index =
                    source_index(&self.source_index_key(tenant).await?, &integration, &plain);
                let ct = key.seal(
                    &field_aad(tenant, "documents", "external_id", &id),
                    plain.as_bytes(),
                )?;
                let owner: String = row.try_get("", "owner")?;
                let owner_ct = key.seal(
                    &field_aad(tenant, "documents", "owner", &id),
                    owner.as_bytes(),
                )?;
                txn.execute(
                    &Query::update()
                        .table("documents")
                        .value("source_index", index)
                        .value("external_id_ct", ct)
                        .value("owner", "")
                        .value("owner_ct", owner_ct)
                        .and_where(Expr::col("id").eq(id))
                        .to_owned(),
                )
                .await?;
                sealed += 1;
            }
            txn.commit().await?;
        }
        loop {
            let rows = self
                .db
                .query_all(
                    &Query::select()
                        .columns(["tenant_id", "integration_id", "source_index"])
                        .from("tombstones")
                        .and_where(Expr::col("legacy").eq(true))
                        .limit(500)
                        .to_owned(),
                )
                .await?;
            if rows.is_empty() {
                break;
            }
            let txn = self.db.begin().await?;
            for row in rows {
                let tenant: String = row.try_get("", "tenant_id")?;
                let integration: String = row.try_get("", "integration_id")?;
                let plain: String = row.try_get("", "source_index")?;
                let keys = self
                    .source_index_key(parse_id(&tenant, "tenant id")?)
                    .await?;
                txn.execute(
                    &Query::update()
                        .table("tombstones")
                        .value("source_index", source_index(&keys, &integration, &plain))
                        .value("legacy", false)
                        .and_where(Expr::col("tenant_id").eq(tenant))
                        .and_where(Expr::col("integration_id").eq(integration))
                        .and_where(Expr::col("source_index").eq(plain))
                        .to_owned(),
                )
                .await?;
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
        txn.execute(
            &Query::delete()
                .from_table("erasures")
                .and_where(Expr::col("cascade_id").eq(cascade.to_string()))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    /// The database (for handlers that wrap a deletion in their own transaction).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }
}
