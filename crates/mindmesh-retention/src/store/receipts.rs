//! `receipts`, `log_hashes` and `log_head`: the signed receipts and their Merkle log
//! ([`crate::receipts`], [`crate::receipt_log`]).

use std::collections::HashMap;

use mindmesh_kit::ids::{CascadeId, TenantId};
use mindmesh_kit::{Error, Result};
use sea_orm::sea_query::{Expr, ExprTrait, LockType, Query};
use sea_orm::{ConnectionTrait, TryGetable};

use super::migration::{LogHashes, LogHead, Receipts};

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("receipt log row with an unreadable {what}"))
}

fn get<T: TryGetable>(row: &sea_orm::QueryResult, column: &str) -> Result<T> {
    row.try_get("", column).map_err(|_| corrupt(column))
}

/// The log's size, its row locked for the rest of the transaction (appends are one at a
/// time; SQLite has one writer anyway).
pub async fn lock_size<C: ConnectionTrait>(conn: &C) -> Result<u64> {
    read_size(conn, true).await
}

/// The log's size.
pub async fn size<C: ConnectionTrait>(conn: &C) -> Result<u64> {
    read_size(conn, false).await
}

async fn read_size<C: ConnectionTrait>(conn: &C, lock: bool) -> Result<u64> {
    let mut query = Query::select()
        .column(LogHead::Size)
        .from(LogHead::Table)
        .and_where(Expr::col(LogHead::Id).eq(1))
        .to_owned();
    if lock {
        query.lock(LockType::Update);
    }
    let row = conn
        .query_one(&query)
        .await?
        .ok_or_else(|| corrupt("head (missing)"))?;
    let size: i64 = get(&row, "size")?;
    u64::try_from(size).map_err(|_| corrupt("size"))
}

/// Records the log's size.
pub async fn set_size<C: ConnectionTrait>(conn: &C, size: u64) -> Result<()> {
    let size = i64::try_from(size).map_err(|_| Error::Internal("receipt log full".into()))?;
    conn.execute(
        &Query::update()
            .table(LogHead::Table)
            .value(LogHead::Size, size)
            .and_where(Expr::col(LogHead::Id).eq(1))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// The stored hashes at `indexes` (those the log has).
pub async fn hashes<C: ConnectionTrait>(
    conn: &C,
    indexes: &[u64],
) -> Result<HashMap<u64, [u8; 32]>> {
    let mut out = HashMap::new();
    for chunk in indexes.chunks(500) {
        let wanted: Vec<i64> = chunk
            .iter()
            .filter_map(|i| i64::try_from(*i).ok())
            .collect();
        let rows = conn
            .query_all(
                &Query::select()
                    .columns([LogHashes::Idx, LogHashes::Hash])
                    .from(LogHashes::Table)
                    .and_where(Expr::col(LogHashes::Idx).is_in(wanted))
                    .to_owned(),
            )
            .await?;
        for row in rows {
            let idx: i64 = get(&row, "idx")?;
            let hash: Vec<u8> = get(&row, "hash")?;
            let hash: [u8; 32] = hash.try_into().map_err(|_| corrupt("hash"))?;
            out.insert(u64::try_from(idx).map_err(|_| corrupt("idx"))?, hash);
        }
    }
    Ok(out)
}

/// Stores `hashes` at the stored-hash indexes from `first` on.
pub async fn put_hashes<C: ConnectionTrait>(
    conn: &C,
    first: u64,
    hashes: &[[u8; 32]],
) -> Result<()> {
    if hashes.is_empty() {
        return Ok(());
    }
    let mut insert = Query::insert()
        .into_table(LogHashes::Table)
        .columns([LogHashes::Idx, LogHashes::Hash])
        .to_owned();
    for (i, hash) in (first..).zip(hashes) {
        let idx = i64::try_from(i).map_err(|_| Error::Internal("receipt log full".into()))?;
        insert.values_panic([idx.into(), hash.to_vec().into()]);
    }
    conn.execute(&insert).await?;
    Ok(())
}

/// Stores the receipt `body` (JSON) of `cascade`, leaf `log_index` of the log.
pub async fn put_receipt<C: ConnectionTrait>(
    conn: &C,
    cascade: CascadeId,
    tenant: TenantId,
    log_index: u64,
    body: &str,
) -> Result<()> {
    let index = i64::try_from(log_index).map_err(|_| Error::Internal("receipt log full".into()))?;
    conn.execute(
        &Query::insert()
            .into_table(Receipts::Table)
            .columns([
                Receipts::CascadeId,
                Receipts::TenantId,
                Receipts::LogIndex,
                Receipts::Body,
            ])
            .values_panic([
                cascade.to_string().into(),
                tenant.to_string().into(),
                index.into(),
                body.into(),
            ])
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// The receipt (JSON) of `cascade`, if it has one.
pub async fn receipt<C: ConnectionTrait>(conn: &C, cascade: CascadeId) -> Result<Option<String>> {
    let row = conn
        .query_one(
            &Query::select()
                .column(Receipts::Body)
                .from(Receipts::Table)
                .and_where(Expr::col(Receipts::CascadeId).eq(cascade.to_string()))
                .to_owned(),
        )
        .await?;
    row.map(|r| get(&r, "body")).transpose()
}

/// The receipt (JSON) at `log_index`, if the log has one there.
pub async fn receipt_at<C: ConnectionTrait>(conn: &C, log_index: u64) -> Result<Option<String>> {
    let Ok(index) = i64::try_from(log_index) else {
        return Ok(None);
    };
    let row = conn
        .query_one(
            &Query::select()
                .column(Receipts::Body)
                .from(Receipts::Table)
                .and_where(Expr::col(Receipts::LogIndex).eq(index))
                .to_owned(),
        )
        .await?;
    row.map(|r| get(&r, "body")).transpose()
}
