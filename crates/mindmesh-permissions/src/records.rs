//! The tenant's own records that describe it or the choices of its people — its name,
//! the reasons its admins gave for staff access — sealed under the tenant's records
//! key (P01), bound to tenant, table, column and row. Shredding the tenant's keys on
//! its deletion makes every copy unreadable.

use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::keys::{KeyScope, field_aad};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, Query};

use crate::error::{Error, Result};

/// Seals `value` for (`table`, `column`, `row`) of `tenant`.
pub async fn seal(
    ctx: &ServiceContext,
    tenant: TenantId,
    place: (&str, &str, &str),
    value: &str,
) -> Result<Vec<u8>> {
    let (_, key) = ctx.keystore.data_key(tenant, &KeyScope::Records).await?;
    let (table, column, row) = place;
    key.seal(&field_aad(tenant, table, column, row), value.as_bytes())
}

/// Opens what [`seal`] sealed for the same place. A tenant whose keys are destroyed
/// (being deleted) reads as NOT_FOUND.
pub async fn open(
    ctx: &ServiceContext,
    tenant: TenantId,
    place: (&str, &str, &str),
    sealed: &[u8],
) -> Result<String> {
    let (_, key) = ctx
        .keystore
        .existing_data_key(tenant, &KeyScope::Records)
        .await?
        .ok_or(Error::NotFound("tenant"))?;
    let (table, column, row) = place;
    let plain = key.open(&field_aad(tenant, table, column, row), sealed)?;
    String::from_utf8(plain)
        .map_err(|_| mindmesh_kit::Error::Internal("sealed record is not UTF-8".into()))
}

/// Seals what a version before sealed records kept in the clear: tenants' names and
/// staff-access reasons. Runs at start, before the service serves, then scrubs the
/// database. Returns the rows it sealed.
pub async fn seal_legacy(ctx: &ServiceContext) -> Result<u64> {
    let mut sealed = 0u64;
    for (table, column) in [("tenants", "name"), ("staff_grants", "reason")] {
        let id_column = "id";
        let tenant_column = if table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        let rows = ctx
            .db
            .query_all(
                &Query::select()
                    .columns([id_column, tenant_column, column])
                    .from(table)
                    .and_where(Expr::col(format!("{column}_ct")).is_null())
                    .and_where(Expr::col(column).ne(""))
                    .to_owned(),
            )
            .await?;
        for row in rows {
            let id: String = row.try_get("", id_column)?;
            let tenant: String = row.try_get("", tenant_column)?;
            let tenant: TenantId = tenant.parse().map_err(|_| {
                mindmesh_kit::Error::Internal("malformed tenant id in store".into())
            })?;
            let plain: String = row.try_get("", column)?;
            let ct = seal(ctx, tenant, (table, column, &id), &plain).await?;
            ctx.db
                .execute(
                    &Query::update()
                        .table(table)
                        .value(column, "")
                        .value(format!("{column}_ct"), ct)
                        .and_where(Expr::col(id_column).eq(id))
                        .to_owned(),
                )
                .await?;
            sealed += 1;
        }
    }
    if sealed > 0 {
        mindmesh_kit::db::scrub(&ctx.db).await?;
    }
    Ok(sealed)
}
