//! The one way a query of this store is scoped: to a tenant, or to one integration of a
//! tenant. Every table keeps `tenant_id` (and the integration's rows `integration_id`).

use mindmesh_kit::ids::{IntegrationId, TenantId};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Condition, Expr, ExprTrait, Query};

use crate::error::Result;

/// The rows of `tenant`.
pub fn tenant(tenant: TenantId) -> Condition {
    Condition::all().add(Expr::col("tenant_id").eq(tenant.to_string()))
}

/// The rows `integration` of `tenant` brought.
pub fn integration(tenant: TenantId, integration: IntegrationId) -> Condition {
    self::tenant(tenant).add(Expr::col("integration_id").eq(integration.to_string()))
}

/// Deletes the rows of `table` within `scope`; returns how many.
pub async fn delete<C: ConnectionTrait>(conn: &C, table: &str, scope: Condition) -> Result<u64> {
    Ok(conn
        .execute(
            &Query::delete()
                .from_table(table.to_owned())
                .cond_where(scope)
                .to_owned(),
        )
        .await?
        .rows_affected())
}
