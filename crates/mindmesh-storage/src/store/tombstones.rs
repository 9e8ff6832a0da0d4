//! `tombstones`: the imported sources a person archived, by the blind index of their
//! source, so that the next sync does not bring them back (P07).

use chrono::{DateTime, Utc};
use mindmesh_kit::Result;
use mindmesh_kit::ids::TenantId;
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};

/// Tombstones the source `source_index` of `integration` (once).
pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: &str,
    source_index: &str,
    archived_at: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
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
                source_index.into(),
                archived_at.into(),
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
    Ok(())
}

/// Lifts the tombstone of the source `source_index` of `integration`.
pub async fn delete<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: &str,
    source_index: &str,
) -> Result<()> {
    conn.execute(
        &Query::delete()
            .from_table("tombstones")
            .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
            .and_where(Expr::col("integration_id").eq(integration))
            .and_where(Expr::col("source_index").eq(source_index))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Deletes every tombstone of `tenant`.
pub async fn delete_tenant<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<()> {
    conn.execute(
        &Query::delete()
            .from_table("tombstones")
            .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Up to 500 tombstones an older version wrote with the source's id in the clear:
/// (tenant, integration, the id).
pub async fn legacy<C: ConnectionTrait>(conn: &C) -> Result<Vec<(String, String, String)>> {
    conn.query_all(
        &Query::select()
            .columns(["tenant_id", "integration_id", "source_index"])
            .from("tombstones")
            .and_where(Expr::col("legacy").eq(true))
            .limit(500)
            .to_owned(),
    )
    .await?
    .iter()
    .map(|row| {
        Ok((
            row.try_get("", "tenant_id")?,
            row.try_get("", "integration_id")?,
            row.try_get("", "source_index")?,
        ))
    })
    .collect()
}

/// Replaces a legacy tombstone's clear id `plain` by its blind index `index`.
pub async fn seal_legacy<C: ConnectionTrait>(
    conn: &C,
    (tenant, integration, plain): (String, String, String),
    index: String,
) -> Result<()> {
    conn.execute(
        &Query::update()
            .table("tombstones")
            .value("source_index", index)
            .value("legacy", false)
            .and_where(Expr::col("tenant_id").eq(tenant))
            .and_where(Expr::col("integration_id").eq(integration))
            .and_where(Expr::col("source_index").eq(plain))
            .to_owned(),
    )
    .await?;
    Ok(())
}
