//! The find index: words of titles and contents, searchable without plaintext.
//!
//! Every distinct word (two or more letters or digits, lowercased) becomes a *term*: a
//! tenant-keyed HMAC of the word. Documents are indexed a write batch at a time: a
//! *block* holds, for each term that occurs in the batch, one row whose *postings* list
//! the documents with that word — document id, a per-write stamp and the modification
//! time — sealed with the data key of the documents' scope (their integration, or their
//! owner for native documents). So a batch of 200 documents costs one row per distinct
//! word in the batch rather than one per word per document, and erasing a scope deletes
//! its blocks wholesale, its postings unreadable from the moment its key is destroyed.
//!
//! A rewritten or deleted document leaves stale postings behind (its stamp no longer
//! matches, so a find never returns it); a block is rewritten without them once fewer
//! than half of its documents are current, and dropped when none is.
//!
//! What the index leaks, to someone holding the database but no keys: within one
//! tenant, how many blocks contain each term and so which terms occur together in a
//! batch; no word, nothing across tenants, and — postings being sealed — not which
//! documents contain a term.

use std::collections::HashMap;

use mindmesh_kit::crypto::{SecretKey, hex};
use mindmesh_kit::ids::{DocumentId, KeyId, TenantId};
use mindmesh_kit::keys::{KeyScope, Keystore, field_aad};
use mindmesh_kit::{Error, Result};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::documents::words;
use crate::store::index;

/// Bytes of one posting: document id, stamp, modification time in µs.
const POSTING: usize = 16 + 4 + 8;

/// One document's entry under a term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Posting {
    /// The document.
    pub document: DocumentId,
    /// The stamp of the write that indexed it; current while the document's row says so.
    pub stamp: u32,
    /// Its modification time then, in µs (for ranking by recency).
    pub modified_us: i64,
}

impl Posting {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.document.as_uuid().as_bytes());
        out.extend_from_slice(&self.stamp.to_le_bytes());
        out.extend_from_slice(&self.modified_us.to_le_bytes());
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<Posting>> {
        if !bytes.len().is_multiple_of(POSTING) {
            return Err(Error::Internal(
                "malformed postings in the find index".into(),
            ));
        }
        bytes
            .chunks_exact(POSTING)
            .map(|p| {
                let id = uuid::Uuid::from_slice(&p[..16])
                    .map_err(|_| Error::Internal("malformed posting id".into()))?;
                let mut stamp = [0u8; 4];
                stamp.copy_from_slice(&p[16..20]);
                let mut us = [0u8; 8];
                us.copy_from_slice(&p[20..28]);
                Ok(Posting {
                    document: DocumentId::from_uuid(id),
                    stamp: u32::from_le_bytes(stamp),
                    modified_us: i64::from_le_bytes(us),
                })
            })
            .collect()
    }
}

/// The term of `word` under a tenant's term key.
pub fn term(key: &SecretKey, word: &str) -> String {
    hex(&key.mac(word.as_bytes())[..16])
}

fn postings_aad(tenant: TenantId, block: &str, term: &str) -> Vec<u8> {
    field_aad(tenant, "term_blocks", term, block)
}

/// One document to index: its scope's key scope and label, its posting, its text.
pub struct IndexInput {
    /// Whose data key seals the block.
    pub scope: KeyScope,
    /// The scope as erasures name it (`integration:<id>`, `owner:<id>`).
    pub label: String,
    /// The document's posting.
    pub posting: Posting,
    /// Title and content, as text.
    pub text: String,
}

/// A block with its words hashed and postings sealed, ready to insert.
pub struct PreparedBlock {
    block: String,
    label: String,
    key_id: KeyId,
    documents: i64,
    rows: Vec<(String, Vec<u8>)>,
}

impl PreparedBlock {
    /// The block's id.
    pub fn id(&self) -> &str {
        &self.block
    }

    /// Inserts the block (inside the caller's transaction).
    pub async fn write<C: ConnectionTrait>(&self, conn: &C, tenant: TenantId) -> Result<()> {
        index::insert_block(
            conn,
            tenant,
            index::NewBlock {
                block: &self.block,
                label: &self.label,
                key_id: self.key_id.to_string(),
                documents: self.documents,
                rows: &self.rows,
            },
        )
        .await
    }
}

/// Builds the blocks of a write batch — one per key scope — on every core: splitting
/// and hashing words and sealing postings is most of what indexing costs.
pub async fn prepare_blocks(
    tenant: TenantId,
    term_key: SecretKey,
    inputs: Vec<IndexInput>,
    keys: HashMap<KeyScope, (KeyId, SecretKey)>,
) -> Result<Vec<(KeyScope, PreparedBlock)>> {
    tokio::task::spawn_blocking(move || prepare_blocking(tenant, &term_key, inputs, &keys))
        .await
        .map_err(|e| Error::Internal(format!("index preparation stopped: {e}")))?
}

type WordMap = HashMap<String, Vec<u8>>;
/// A term and its sealed postings.
type TermRow = (String, Vec<u8>);

/// `work` applied to shares of `items`, one share per core (up to 4), in order.
fn on_every_core<T: Sync, R: Send>(items: &[T], work: impl Fn(&[T]) -> R + Sync) -> Result<Vec<R>> {
    let threads = std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
        .clamp(1, 4);
    let per = items.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|share| {
                let work = &work;
                s.spawn(move || work(share))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join())
            .collect::<std::result::Result<_, _>>()
    })
    .map_err(|_| Error::Internal("an indexing thread panicked".into()))
}

fn prepare_blocking(
    tenant: TenantId,
    term_key: &SecretKey,
    inputs: Vec<IndexInput>,
    keys: &HashMap<KeyScope, (KeyId, SecretKey)>,
) -> Result<Vec<(KeyScope, PreparedBlock)>> {
    // Words of each document, a share of the documents per core.
    let partials = on_every_core(&inputs, |share| {
        let mut out: HashMap<KeyScope, (String, WordMap, i64)> = HashMap::new();
        for input in share {
            let (_, words_of, documents) = out
                .entry(input.scope.clone())
                .or_insert_with(|| (input.label.clone(), HashMap::new(), 0));
            for word in words(&input.text) {
                input.posting.encode(words_of.entry(word).or_default());
            }
            *documents += 1;
        }
        out
    })?;
    let mut merged: HashMap<KeyScope, (String, WordMap, i64)> = HashMap::new();
    for partial in partials {
        for (scope, (label, words_of, documents)) in partial {
            let entry = merged
                .entry(scope)
                .or_insert_with(|| (label, HashMap::new(), 0));
            for (word, postings) in words_of {
                entry
                    .1
                    .entry(word)
                    .or_default()
                    .extend_from_slice(&postings);
            }
            entry.2 += documents;
        }
    }
    // Then each distinct word hashed and its postings sealed, a share per core.
    let mut out = Vec::with_capacity(merged.len());
    for (scope, (label, words_of, documents)) in merged {
        let (key_id, key) = keys
            .get(&scope)
            .cloned()
            .ok_or_else(|| Error::Internal("no key for an index block".into()))?;
        let block = uuid::Uuid::now_v7().to_string();
        let entries: Vec<(String, Vec<u8>)> = words_of.into_iter().collect();
        let shares = on_every_core(&entries, |share| {
            let mac = term_key.mac_key();
            share
                .iter()
                .map(|(word, postings)| {
                    let term = hex(&mac.sign(word.as_bytes())[..16]);
                    let sealed = key.seal(&postings_aad(tenant, &block, &term), postings)?;
                    Ok((term, sealed))
                })
                .collect::<Result<Vec<TermRow>>>()
        })?;
        let mut rows = Vec::with_capacity(entries.len());
        for share in shares {
            rows.extend(share?);
        }
        out.push((
            scope,
            PreparedBlock {
                block,
                label,
                key_id,
                documents,
                rows,
            },
        ));
    }
    Ok(out)
}

/// Counts documents leaving their blocks (rewritten or deleted), inside the caller's
/// transaction; drops blocks with no current document left. Returns the blocks now
/// less than half current, to be compacted after the commit.
pub async fn release<C: ConnectionTrait>(
    conn: &C,
    leaving: &HashMap<String, i64>,
) -> Result<Vec<String>> {
    let mut compact = Vec::new();
    for (block, n) in leaving {
        if block.is_empty() {
            continue;
        }
        let Some((documents, live)) = index::release(conn, block, *n).await? else {
            continue;
        };
        if live <= 0 {
            index::drop_blocks(conn, std::slice::from_ref(block)).await?;
        } else if live * 2 < documents {
            compact.push(block.clone());
        }
    }
    Ok(compact)
}

/// Rewrites `block` without the postings of documents no longer current in it.
///
/// In one transaction that first locks the block's row — the order every writer takes
/// (a batch releasing documents updates `index_blocks`, then may drop `term_blocks`) —
/// so a compaction and a batch dropping the same block never deadlock, and the count of
/// current documents it writes is read under that lock, not before a batch changed it.
pub async fn compact(db: &DatabaseConnection, keystore: &Keystore, block: &str) -> Result<()> {
    let txn = sea_orm::TransactionTrait::begin(db).await?;
    let Some((tenant, key_id)) = index::lock_block(&txn, block).await? else {
        return Ok(());
    };
    let tenant: TenantId = parse(&tenant)?;
    let key_id: KeyId = parse(&key_id)?;
    let key = match keystore.key(tenant, key_id).await {
        Ok(key) => key,
        // Its scope was erased: the erasure drops the block.
        Err(Error::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let current: HashMap<DocumentId, u32> = index::current_documents(&txn, block)
        .await?
        .into_iter()
        .map(|(id, stamp)| Ok((parse(&id)?, u32::try_from(stamp).unwrap_or(0))))
        .collect::<Result<_>>()?;
    for (term, sealed) in index::postings_of(&txn, block).await? {
        let aad = postings_aad(tenant, block, &term);
        let postings = Posting::decode_all(&key.open(&aad, &sealed)?)?;
        let kept: Vec<&Posting> = postings
            .iter()
            .filter(|p| current.get(&p.document) == Some(&p.stamp))
            .collect();
        if kept.len() == postings.len() {
            continue;
        }
        let rewritten = if kept.is_empty() {
            None
        } else {
            let mut bytes = Vec::with_capacity(kept.len() * POSTING);
            for p in kept {
                p.encode(&mut bytes);
            }
            Some(key.seal(&aad, &bytes)?)
        };
        index::rewrite_postings(&txn, block, &term, rewritten).await?;
    }
    let live = i64::try_from(current.len()).unwrap_or(i64::MAX);
    index::set_counts(&txn, block, live).await?;
    if live == 0 {
        index::drop_blocks(&txn, &[block.to_owned()]).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// A document matching a query, before it is checked to be current.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    /// The posting found.
    pub posting: Posting,
    /// How many of the query's words it has.
    pub matched: u32,
}

/// Every posting of `tenant` under the terms of `query`, one candidate per document
/// write, best first: most matched words, then newest, then by id.
pub async fn search(
    db: &DatabaseConnection,
    keystore: &Keystore,
    tenant: TenantId,
    term_key: &SecretKey,
    query: &str,
) -> Result<Vec<Candidate>> {
    let terms: Vec<String> = words(query).iter().map(|w| term(term_key, w)).collect();
    if terms.is_empty() {
        return Ok(Vec::new());
    }
    // Two plain lookups rather than a join, so every database drives from the term
    // (a planner starting from the tenant's blocks would scan every posting).
    let rows = index::postings_with_terms(db, terms).await?;
    let mut blocks: Vec<String> = rows.iter().map(|(_, block, _)| block.clone()).collect();
    blocks.sort_unstable();
    blocks.dedup();
    // Only this tenant's blocks count (a term is a tenant-keyed HMAC, so another
    // tenant's equal term is all but impossible, and excluded here regardless).
    let block_keys = index::block_keys(db, tenant, &blocks).await?;
    let mut keys: HashMap<String, Option<SecretKey>> = HashMap::new();
    let mut found: HashMap<(DocumentId, u32), Candidate> = HashMap::new();
    for (term, block, sealed) in rows {
        let Some(key_id) = block_keys.get(&block).cloned() else {
            continue;
        };
        if !keys.contains_key(&key_id) {
            let key = match keystore.key(tenant, parse(&key_id)?).await {
                Ok(key) => Some(key),
                // Shredded: that scope's documents are gone for every reader.
                Err(Error::NotFound(_)) => None,
                Err(e) => return Err(e),
            };
            keys.insert(key_id.clone(), key);
        }
        let Some(Some(key)) = keys.get(&key_id) else {
            continue;
        };
        for posting in
            Posting::decode_all(&key.open(&postings_aad(tenant, &block, &term), &sealed)?)?
        {
            found
                .entry((posting.document, posting.stamp))
                .or_insert(Candidate {
                    posting,
                    matched: 0,
                })
                .matched += 1;
        }
    }
    let mut candidates: Vec<Candidate> = found.into_values().collect();
    candidates.sort_unstable_by(|a, b| {
        b.matched
            .cmp(&a.matched)
            .then(b.posting.modified_us.cmp(&a.posting.modified_us))
            .then(b.posting.document.cmp(&a.posting.document))
    });
    Ok(candidates)
}

fn parse<T: std::str::FromStr>(value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| Error::Internal("malformed id in the find index".into()))
}
