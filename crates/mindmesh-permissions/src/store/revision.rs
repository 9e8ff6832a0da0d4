//! `tenant_revisions`: every permission-relevant write moves its tenant's revision forward
//! in the write's own transaction, so a revision, once returned, names a committed state.

use mindmesh_kit::ids::TenantId;
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};

use crate::error::Result;

/// Moves `tenant`'s revision forward by one inside `conn`'s transaction; returns the new
/// revision. The row lock it takes serializes writers of one tenant across replicas.
pub async fn bump<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<u64> {
    let row = conn
        .query_one(
            &Query::insert()
                .into_table("tenant_revisions")
                .columns(["tenant_id", "revision"])
                .values_panic([tenant.to_string().into(), 1i64.into()])
                .on_conflict(
                    OnConflict::column("tenant_id")
                        .value(
                            "revision",
                            Expr::col(("tenant_revisions", "revision")).add(1),
                        )
                        .to_owned(),
                )
                .returning_col("revision")
                .to_owned(),
        )
        .await?
        .ok_or_else(|| mindmesh_kit::Error::Internal("revision upsert returned nothing".into()))?;
    let revision: i64 = row.try_get("", "revision")?;
    Ok(u64::try_from(revision).unwrap_or(0))
}

/// `tenant`'s current revision (0 before its first write).
pub async fn current<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<u64> {
    let row = conn
        .query_one(
            &Query::select()
                .column("revision")
                .from("tenant_revisions")
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .to_owned(),
        )
        .await?;
    Ok(match row {
        Some(row) => u64::try_from(row.try_get::<i64>("", "revision")?).unwrap_or(0),
        None => 0,
    })
}

/// Every tenant with a revision, i.e. with permission state.
pub async fn tenants<C: ConnectionTrait>(conn: &C) -> Result<Vec<TenantId>> {
    let rows = conn
        .query_all(
            &Query::select()
                .column("tenant_id")
                .from("tenant_revisions")
                .to_owned(),
        )
        .await?;
    // A row that does not name a tenant is skipped, not fatal: warming up is an
    // optimisation.
    Ok(rows
        .iter()
        .filter_map(|row| row.try_get::<String>("", "tenant_id").ok())
        .filter_map(|t| t.parse().ok())
        .collect())
}
