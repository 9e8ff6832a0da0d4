//! The tenant's own records that describe it or the choices of its people — its name,
//! the reasons its admins gave for staff access — sealed under the tenant's records
//! key (P01), bound to tenant, table, column and row. Shredding the tenant's keys on
//! its deletion makes every copy unreadable.

use crate::error::{Error, Result};
use crate::store::legacy;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::keys::{KeyScope, field_aad};

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
    for place in legacy::CLEAR_FIELDS {
        let (table, column, _) = place;
        for field in legacy::clear_fields(&ctx.db, place).await? {
            let ct = seal(ctx, field.tenant, (table, column, &field.id), &field.plain).await?;
            legacy::store_sealed(&ctx.db, table, column, &field.id, ct).await?;
            sealed += 1;
        }
    }
    if sealed > 0 {
        mindmesh_kit::db::scrub(&ctx.db).await?;
    }
    Ok(sealed)
}
