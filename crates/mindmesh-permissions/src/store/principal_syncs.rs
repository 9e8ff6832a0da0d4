//! `principal_syncs`: each integration's generation, the tag of the principal set a
//! replica remembers (see `crate::sync`).

use mindmesh_kit::ids::{IntegrationId, TenantId};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};

use crate::error::Result;

/// The integration's current generation (`None` before its first sync).
pub async fn generation<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: IntegrationId,
) -> Result<Option<String>> {
    let row = conn
        .query_one(
            &Query::select()
                .column("generation")
                .from("principal_syncs")
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .and_where(Expr::col("integration_id").eq(integration.to_string()))
                .to_owned(),
        )
        .await?;
    Ok(match row {
        Some(row) => Some(row.try_get("", "generation")?),
        None => None,
    })
}

/// Moves the generation from `expected` to `next` if nobody changed it meanwhile;
/// returns false (and changes nothing) when somebody did.
pub async fn advance<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: IntegrationId,
    expected: Option<&str>,
    next: &str,
) -> Result<bool> {
    let affected = match expected {
        Some(expected) => conn
            .execute(
                &Query::update()
                    .table("principal_syncs")
                    .value("generation", next)
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("integration_id").eq(integration.to_string()))
                    .and_where(Expr::col("generation").eq(expected))
                    .to_owned(),
            )
            .await?
            .rows_affected(),
        None => conn
            .execute(
                &Query::insert()
                    .into_table("principal_syncs")
                    .columns(["tenant_id", "integration_id", "generation"])
                    .values_panic([
                        tenant.to_string().into(),
                        integration.to_string().into(),
                        next.into(),
                    ])
                    .on_conflict(
                        OnConflict::columns(["tenant_id", "integration_id"])
                            .do_nothing()
                            .to_owned(),
                    )
                    .to_owned(),
            )
            .await?
            .rows_affected(),
    };
    Ok(affected == 1)
}

/// Sets the generation to `next` whatever it was.
pub async fn force<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    integration: IntegrationId,
    next: &str,
) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table("principal_syncs")
            .columns(["tenant_id", "integration_id", "generation"])
            .values_panic([
                tenant.to_string().into(),
                integration.to_string().into(),
                next.into(),
            ])
            .on_conflict(
                OnConflict::columns(["tenant_id", "integration_id"])
                    .update_column("generation")
                    .to_owned(),
            )
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Gives every principal set of `tenant` a new generation, so that no replica diffs
/// against the copy it remembers (after rows were deleted outside a sync).
pub async fn invalidate_tenant<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<()> {
    conn.execute(
        &Query::update()
            .table("principal_syncs")
            .value("generation", uuid::Uuid::now_v7().to_string())
            .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
            .to_owned(),
    )
    .await?;
    Ok(())
}
