//! `archive_policies`: each tenant's days before archived documents are purged.

use std::collections::HashMap;

use mindmesh_kit::ids::TenantId;
use mindmesh_kit::{Error, Result};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};

/// Records that `tenant` keeps archived documents `days` days.
pub async fn set<C: ConnectionTrait>(conn: &C, tenant: TenantId, days: u32) -> Result<()> {
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    conn.execute(
        &Query::insert()
            .into_table("archive_policies")
            .columns(["tenant_id", "purge_after_days", "updated_at"])
            .values_panic([
                tenant.to_string().into(),
                days.into(),
                mindmesh_kit::db::now().into(),
            ])
            .on_conflict(
                OnConflict::column("tenant_id")
                    .update_columns(["purge_after_days", "updated_at"])
                    .to_owned(),
            )
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Every tenant's days, by tenant id (tenants without a row keep the default).
pub async fn all<C: ConnectionTrait>(conn: &C) -> Result<HashMap<String, u32>> {
    let rows = conn
        .query_all(
            &Query::select()
                .columns(["tenant_id", "purge_after_days"])
                .from("archive_policies")
                .to_owned(),
        )
        .await?;
    rows.iter()
        .map(|r| {
            let days: i32 = r.try_get("", "purge_after_days")?;
            let days = u32::try_from(days)
                .map_err(|_| Error::Internal("negative days in archive_policies".into()))?;
            Ok((r.try_get("", "tenant_id")?, days))
        })
        .collect()
}

/// Forgets `tenant`'s days (the tenant is erased).
pub async fn forget<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<()> {
    conn.execute(
        &Query::delete()
            .from_table("archive_policies")
            .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
            .to_owned(),
    )
    .await?;
    Ok(())
}
