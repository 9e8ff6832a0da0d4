//! `erasures`: the progress of each erasure this service runs (its destroyed key ids and
//! how many documents it deleted so far), so that an interrupted one resumes.

use mindmesh_kit::ids::{CascadeId, KeyId, TenantId};
use mindmesh_kit::{Error, Result};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};

/// Records the start of `cascade`'s erasure of `scope` (once).
pub async fn start<C: ConnectionTrait>(
    conn: &C,
    cascade: CascadeId,
    tenant: TenantId,
    scope: &str,
    destroyed: &[KeyId],
) -> Result<()> {
    let ids: Vec<String> = destroyed.iter().map(ToString::to_string).collect();
    conn.execute(
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
                scope.into(),
                ids.join(",").into(),
                0i64.into(),
            ])
            .on_conflict(OnConflict::column("cascade_id").do_nothing().to_owned())
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// `cascade`'s erasure so far: its destroyed key ids and documents deleted.
pub async fn progress<C: ConnectionTrait>(
    conn: &C,
    cascade: CascadeId,
) -> Result<Option<(Vec<KeyId>, u64)>> {
    let Some(row) = conn
        .query_one(
            &Query::select()
                .columns(["destroyed_key_ids", "deleted"])
                .from("erasures")
                .and_where(Expr::col("cascade_id").eq(cascade.to_string()))
                .to_owned(),
        )
        .await?
    else {
        return Ok(None);
    };
    let keys: String = row.try_get("", "destroyed_key_ids")?;
    let deleted: i64 = row.try_get("", "deleted")?;
    let keys = keys
        .split(',')
        .filter(|k| !k.is_empty())
        .map(|k| {
            k.parse()
                .map_err(|_| Error::Internal("malformed key id in erasure".into()))
        })
        .collect::<Result<_>>()?;
    Ok(Some((keys, u64::try_from(deleted).unwrap_or(0))))
}

/// Records that `cascade`'s erasure has deleted `deleted` documents.
pub async fn advance<C: ConnectionTrait>(conn: &C, cascade: CascadeId, deleted: u64) -> Result<()> {
    conn.execute(
        &Query::update()
            .table("erasures")
            .value("deleted", i64::try_from(deleted).unwrap_or(i64::MAX))
            .and_where(Expr::col("cascade_id").eq(cascade.to_string()))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Forgets `cascade`'s erasure.
pub async fn forget<C: ConnectionTrait>(conn: &C, cascade: CascadeId) -> Result<()> {
    conn.execute(
        &Query::delete()
            .from_table("erasures")
            .and_where(Expr::col("cascade_id").eq(cascade.to_string()))
            .to_owned(),
    )
    .await?;
    Ok(())
}
