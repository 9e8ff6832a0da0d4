//! `index_blocks` and `term_blocks`: the find index as stored — one block per write
//! batch and key scope (its scope, key and counts of documents), and one row of sealed
//! postings per term in it (see `crate::find`).
//!
//! Lock order: every writer that changes a block and its postings in one transaction
//! takes the block's `index_blocks` row first ([`lock_block`], [`release`],
//! [`drop_blocks`]), then its `term_blocks` rows, so two of them never deadlock.

use std::collections::HashMap;

use mindmesh_kit::Result;
use mindmesh_kit::ids::TenantId;
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, LockType, Query};

/// Rows per statement that lists block ids.
const IDS_CHUNK: usize = 500;

/// A block as written: its id, tenant, scope label, key and its terms' sealed postings.
pub struct NewBlock<'a> {
    /// The block's id.
    pub block: &'a str,
    /// The scope as erasures name it (`integration:<id>`, `owner:<id>`).
    pub label: &'a str,
    /// The data key that seals its postings.
    pub key_id: String,
    /// How many documents it indexes.
    pub documents: i64,
    /// (term, sealed postings) per term.
    pub rows: &'a [(String, Vec<u8>)],
}

/// Inserts `block` of `tenant` with its postings (inside the caller's transaction).
pub async fn insert_block<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    block: NewBlock<'_>,
) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table("index_blocks")
            .columns([
                "block_id",
                "tenant_id",
                "scope",
                "key_id",
                "documents",
                "live",
            ])
            .values_panic([
                block.block.into(),
                tenant.to_string().into(),
                block.label.into(),
                block.key_id.into(),
                block.documents.into(),
                block.documents.into(),
            ])
            .to_owned(),
    )
    .await?;
    // 3 values a row: 3,000 rows stay under both databases' bind limits.
    for chunk in block.rows.chunks(3_000) {
        let mut insert = Query::insert();
        insert
            .into_table("term_blocks")
            .columns(["term", "block_id", "postings"]);
        for (term, sealed) in chunk {
            insert.values_panic([
                term.clone().into(),
                block.block.into(),
                sealed.clone().into(),
            ]);
        }
        conn.execute(&insert).await?;
    }
    Ok(())
}

/// Counts `n` documents leaving `block`; returns its (documents, live) counts after, or
/// `None` when the block is gone.
pub async fn release<C: ConnectionTrait>(
    conn: &C,
    block: &str,
    n: i64,
) -> Result<Option<(i64, i64)>> {
    conn.execute(
        &Query::update()
            .table("index_blocks")
            .value("live", Expr::col("live").sub(n))
            .and_where(Expr::col("block_id").eq(block))
            .to_owned(),
    )
    .await?;
    let Some(row) = conn
        .query_one(
            &Query::select()
                .columns(["documents", "live"])
                .from("index_blocks")
                .and_where(Expr::col("block_id").eq(block))
                .to_owned(),
        )
        .await?
    else {
        return Ok(None);
    };
    Ok(Some((
        row.try_get("", "documents")?,
        row.try_get("", "live")?,
    )))
}

/// Deletes blocks and their postings, locking the blocks' rows first.
pub async fn drop_blocks<C: ConnectionTrait>(conn: &C, blocks: &[String]) -> Result<()> {
    for chunk in blocks.chunks(IDS_CHUNK) {
        conn.query_all(
            &Query::select()
                .column("block_id")
                .from("index_blocks")
                .and_where(Expr::col("block_id").is_in(chunk.iter().cloned()))
                .lock(LockType::Update)
                .to_owned(),
        )
        .await?;
        conn.execute(
            &Query::delete()
                .from_table("term_blocks")
                .and_where(Expr::col("block_id").is_in(chunk.iter().cloned()))
                .to_owned(),
        )
        .await?;
        conn.execute(
            &Query::delete()
                .from_table("index_blocks")
                .and_where(Expr::col("block_id").is_in(chunk.iter().cloned()))
                .to_owned(),
        )
        .await?;
    }
    Ok(())
}

/// Up to `limit` blocks of `tenant`'s `scope` (every scope when `None`).
pub async fn blocks_of<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    scope: Option<&str>,
    limit: u64,
) -> Result<Vec<String>> {
    let mut query = Query::select();
    query
        .column("block_id")
        .from("index_blocks")
        .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
        .limit(limit);
    if let Some(scope) = scope {
        query.and_where(Expr::col("scope").eq(scope));
    }
    conn.query_all(&query)
        .await?
        .iter()
        .map(|r| Ok(r.try_get::<String>("", "block_id")?))
        .collect()
}

/// Locks `block`'s row (inside the caller's transaction; SQLite has one writer anyway)
/// and returns its (tenant, key id) as stored, or `None` when it is gone.
pub async fn lock_block<C: ConnectionTrait>(
    conn: &C,
    block: &str,
) -> Result<Option<(String, String)>> {
    let Some(row) = conn
        .query_one(
            &Query::select()
                .columns(["tenant_id", "key_id"])
                .from("index_blocks")
                .and_where(Expr::col("block_id").eq(block))
                .lock(LockType::Update)
                .to_owned(),
        )
        .await?
    else {
        return Ok(None);
    };
    Ok(Some((
        row.try_get("", "tenant_id")?,
        row.try_get("", "key_id")?,
    )))
}

/// The documents whose current version `block` indexes: (id, stamp) as stored.
pub async fn current_documents<C: ConnectionTrait>(
    conn: &C,
    block: &str,
) -> Result<Vec<(String, i64)>> {
    conn.query_all(
        &Query::select()
            .columns(["id", "index_stamp"])
            .from("documents")
            .and_where(Expr::col("index_block").eq(block))
            .to_owned(),
    )
    .await?
    .iter()
    .map(|r| Ok((r.try_get("", "id")?, r.try_get("", "index_stamp")?)))
    .collect()
}

/// `block`'s (term, sealed postings) rows.
pub async fn postings_of<C: ConnectionTrait>(
    conn: &C,
    block: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    conn.query_all(
        &Query::select()
            .columns(["term", "postings"])
            .from("term_blocks")
            .and_where(Expr::col("block_id").eq(block))
            .to_owned(),
    )
    .await?
    .iter()
    .map(|r| Ok((r.try_get("", "term")?, r.try_get("", "postings")?)))
    .collect()
}

/// Replaces `term`'s postings in `block` by `sealed`, or deletes the row when `None`.
pub async fn rewrite_postings<C: ConnectionTrait>(
    conn: &C,
    block: &str,
    term: &str,
    sealed: Option<Vec<u8>>,
) -> Result<()> {
    let by_term = Expr::col("term")
        .eq(term)
        .and(Expr::col("block_id").eq(block));
    match sealed {
        None => {
            conn.execute(
                &Query::delete()
                    .from_table("term_blocks")
                    .and_where(by_term)
                    .to_owned(),
            )
            .await?
        }
        Some(sealed) => {
            conn.execute(
                &Query::update()
                    .table("term_blocks")
                    .value("postings", sealed)
                    .and_where(by_term)
                    .to_owned(),
            )
            .await?
        }
    };
    Ok(())
}

/// Sets `block`'s counts: it indexes `live` documents, all of them current.
pub async fn set_counts<C: ConnectionTrait>(conn: &C, block: &str, live: i64) -> Result<()> {
    conn.execute(
        &Query::update()
            .table("index_blocks")
            .value("documents", live)
            .value("live", live)
            .and_where(Expr::col("block_id").eq(block))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Every (term, block, sealed postings) row under one of `terms`, in any tenant (a term
/// is a tenant-keyed HMAC; [`block_keys`] keeps one tenant's blocks).
pub async fn postings_with_terms<C: ConnectionTrait>(
    conn: &C,
    terms: Vec<String>,
) -> Result<Vec<(String, String, Vec<u8>)>> {
    conn.query_all(
        &Query::select()
            .columns(["term", "block_id", "postings"])
            .from("term_blocks")
            .and_where(Expr::col("term").is_in(terms))
            .to_owned(),
    )
    .await?
    .iter()
    .map(|r| {
        Ok((
            r.try_get("", "term")?,
            r.try_get("", "block_id")?,
            r.try_get("", "postings")?,
        ))
    })
    .collect()
}

/// The key ids of those of `blocks` that are `tenant`'s, by block.
pub async fn block_keys<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    blocks: &[String],
) -> Result<HashMap<String, String>> {
    let mut keys = HashMap::new();
    for chunk in blocks.chunks(IDS_CHUNK) {
        for r in conn
            .query_all(
                &Query::select()
                    .columns(["block_id", "key_id"])
                    .from("index_blocks")
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("block_id").is_in(chunk.iter().cloned()))
                    .to_owned(),
            )
            .await?
        {
            keys.insert(r.try_get("", "block_id")?, r.try_get("", "key_id")?);
        }
    }
    Ok(keys)
}
