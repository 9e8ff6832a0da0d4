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
//!
//! Here: the types and the keys. Then `write` (put, and compaction of the find index),
//! `read` (get, load, list, find), `lifecycle` (archive, restore, purge, delete, erase)
//! and `legacy` (sealing an older version's plaintext rows).

mod legacy;
mod lifecycle;
mod read;
mod write;

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

    /// The database (for handlers that wrap a deletion in their own transaction).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }
}
