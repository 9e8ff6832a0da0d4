//! Fields a version before sealed records kept in the clear (tenants' names,
//! staff-access reasons), found and replaced by their sealed form at start; and the
//! integrations whose principals an older version stored under the source's ids.

use mindmesh_kit::ids::{IntegrationId, TenantId};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, Query};

use crate::error::Result;

/// One field still in the clear.
pub struct ClearField {
    /// The row's id.
    pub id: String,
    /// Its tenant.
    pub tenant: TenantId,
    /// The value in the clear.
    pub plain: String,
}

/// The tables and columns an older version kept in the clear, with the column naming
/// each row's tenant.
pub const CLEAR_FIELDS: [(&str, &str, &str); 2] = [
    ("tenants", "name", "id"),
    ("staff_grants", "reason", "tenant_id"),
];

/// The rows of `table` whose `column` is in the clear and not sealed yet.
pub async fn clear_fields<C: ConnectionTrait>(
    conn: &C,
    (table, column, tenant_column): (&'static str, &'static str, &'static str),
) -> Result<Vec<ClearField>> {
    let rows = conn
        .query_all(
            &Query::select()
                .columns(["id", tenant_column, column])
                .from(table)
                .and_where(Expr::col(format!("{column}_ct")).is_null())
                .and_where(Expr::col(column).ne(""))
                .to_owned(),
        )
        .await?;
    rows.into_iter()
        .map(|row| {
            let tenant: String = row.try_get("", tenant_column)?;
            Ok(ClearField {
                id: row.try_get("", "id")?,
                tenant: tenant.parse().map_err(|_| {
                    mindmesh_kit::Error::Internal("malformed tenant id in store".into())
                })?,
                plain: row.try_get("", column)?,
            })
        })
        .collect()
}

/// Replaces row `id`'s clear `column` of `table` by its sealed form.
pub async fn store_sealed<C: ConnectionTrait>(
    conn: &C,
    table: &'static str,
    column: &'static str,
    id: &str,
    sealed: Vec<u8>,
) -> Result<()> {
    conn.execute(
        &Query::update()
            .table(table)
            .value(column, "")
            .value(format!("{column}_ct"), sealed)
            .and_where(Expr::col("id").eq(id))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// The (tenant, integration) pairs whose principals, memberships and grants an older
/// version wrote with the source's ids in the clear (`legacy_principal_ids`).
pub async fn pending_integrations<C: ConnectionTrait>(
    conn: &C,
) -> Result<Vec<(TenantId, IntegrationId)>> {
    let bad = || mindmesh_kit::Error::Internal("malformed id in legacy_principal_ids".into());
    conn.query_all(
        &Query::select()
            .columns(["tenant_id", "integration_id"])
            .from("legacy_principal_ids")
            .to_owned(),
    )
    .await?
    .iter()
    .map(|row| {
        let tenant: String = row.try_get("", "tenant_id")?;
        let integration: String = row.try_get("", "integration_id")?;
        Ok((
            tenant.parse().map_err(|_| bad())?,
            integration.parse().map_err(|_| bad())?,
        ))
    })
    .collect()
}
