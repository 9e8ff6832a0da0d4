//! `backups`: the backup catalog ([`crate::backups`]), and the consistent copy of a
//! SQLite database a backup is made of.

use std::path::Path;

use chrono::{DateTime, Utc};
use mindmesh_kit::{Error, Result};
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::migration::Backups;
use crate::backups::BackupInfo;

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("backup catalog row with an unreadable {what}"))
}

/// Writes a consistent copy of the SQLite database of `conn` to `path` (`VACUUM INTO`:
/// one read transaction, so writers go on; the copy is compact and has no log).
pub async fn snapshot<C: ConnectionTrait>(conn: &C, path: &Path) -> Result<()> {
    let target = path
        .to_str()
        .ok_or_else(|| Error::Config(format!("backup path {} is not UTF-8", path.display())))?;
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        "VACUUM INTO ?",
        [target.into()],
    ))
    .await?;
    Ok(())
}

/// Records backup `b`.
pub async fn insert<C: ConnectionTrait>(conn: &C, b: &BackupInfo) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table(Backups::Table)
            .columns([
                Backups::Id,
                Backups::CreatedAt,
                Backups::ExpiresAt,
                Backups::SizeBytes,
            ])
            .values_panic([
                b.id.clone().into(),
                b.created_at.into(),
                b.expires_at.into(),
                i64::try_from(b.size_bytes).unwrap_or(i64::MAX).into(),
            ])
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Every backup in the catalog, newest first.
pub async fn list<C: ConnectionTrait>(conn: &C) -> Result<Vec<BackupInfo>> {
    let rows = conn
        .query_all(
            &Query::select()
                .columns([
                    Backups::Id,
                    Backups::CreatedAt,
                    Backups::ExpiresAt,
                    Backups::SizeBytes,
                ])
                .from(Backups::Table)
                .order_by(Backups::CreatedAt, Order::Desc)
                .to_owned(),
        )
        .await?;
    rows.iter()
        .map(|r| {
            let size: i64 = r.try_get("", "size_bytes").map_err(|_| corrupt("size"))?;
            Ok(BackupInfo {
                id: r.try_get("", "id").map_err(|_| corrupt("id"))?,
                created_at: r
                    .try_get::<DateTime<Utc>>("", "created_at")
                    .map_err(|_| corrupt("created_at"))?,
                expires_at: r
                    .try_get::<DateTime<Utc>>("", "expires_at")
                    .map_err(|_| corrupt("expires_at"))?,
                size_bytes: u64::try_from(size).map_err(|_| corrupt("size"))?,
            })
        })
        .collect()
}

/// Forgets backup `id`.
pub async fn delete<C: ConnectionTrait>(conn: &C, id: &str) -> Result<()> {
    conn.execute(
        &Query::delete()
            .from_table(Backups::Table)
            .and_where(Expr::col(Backups::Id).eq(id))
            .to_owned(),
    )
    .await?;
    Ok(())
}
