//! `staff_grants`: the consent records of staff access (P11), their reasons sealed.

use chrono::{DateTime, Utc};
use mindmesh_kit::ids::TenantId;
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use uuid::Uuid;

use crate::error::Result;
use crate::staff::StaffGrant;

/// A grant as stored, with its reason still sealed (`None` for a row an older version
/// wrote with its reason in the clear).
pub type Stored = (StaffGrant, Option<Vec<u8>>);

/// Records `grant` with its sealed reason.
pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    grant: &StaffGrant,
    reason_ct: Vec<u8>,
) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table("staff_grants")
            .columns([
                "id",
                "tenant_id",
                "role",
                "reason",
                "reason_ct",
                "granted_by",
                "granted_at",
                "expires_at",
                "revoked_at",
            ])
            .values_panic([
                grant.id.to_string().into(),
                grant.tenant.to_string().into(),
                grant.role.as_str().into(),
                "".into(),
                reason_ct.into(),
                grant.granted_by.clone().into(),
                grant.granted_at.into(),
                grant.expires_at.into(),
                grant.revoked_at.into(),
            ])
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Marks grant `id` of `tenant` revoked at `at`.
pub async fn revoke<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        &Query::update()
            .table("staff_grants")
            .value("revoked_at", at)
            .and_where(Expr::col("id").eq(id.to_string()))
            .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Every grant of `tenant`.
pub async fn all_of<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<Vec<Stored>> {
    let rows = conn
        .query_all(
            &select()
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .to_owned(),
        )
        .await?;
    rows.iter().map(row_to_grant).collect()
}

/// The grants of `tenant` that `user` gave.
pub async fn granted_by<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: &str,
) -> Result<Vec<Stored>> {
    let rows = conn
        .query_all(
            &select()
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .and_where(Expr::col("granted_by").eq(user))
                .to_owned(),
        )
        .await?;
    rows.iter().map(row_to_grant).collect()
}

/// Grant `id` of `tenant`, if there is one.
pub async fn find<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Stored>> {
    let row = conn
        .query_one(
            &select()
                .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                .and_where(Expr::col("id").eq(id.to_string()))
                .to_owned(),
        )
        .await?;
    row.as_ref().map(row_to_grant).transpose()
}

/// Up to `limit` grants of `tenant`, newest first, older than `before` when given.
pub async fn page<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Stored>> {
    let mut query = select();
    query
        .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
        .order_by("id", Order::Desc)
        .limit(limit);
    if let Some(before) = before {
        query.and_where(Expr::col("id").lt(before.to_string()));
    }
    let rows = conn.query_all(&query).await?;
    rows.iter().map(row_to_grant).collect()
}

fn select() -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .columns([
            "id",
            "tenant_id",
            "role",
            "reason",
            "reason_ct",
            "granted_by",
            "granted_at",
            "expires_at",
            "revoked_at",
        ])
        .from("staff_grants")
        .to_owned()
}

fn row_to_grant(row: &sea_orm::QueryResult) -> Result<Stored> {
    let bad = || mindmesh_kit::Error::Internal("malformed staff grant in store".into());
    let id: String = row.try_get("", "id")?;
    let tenant: String = row.try_get("", "tenant_id")?;
    let role: String = row.try_get("", "role")?;
    let grant = StaffGrant {
        id: id.parse().map_err(|_| bad())?,
        tenant: tenant.parse().map_err(|_| bad())?,
        role: role.parse().map_err(|_| bad())?,
        reason: row.try_get("", "reason")?,
        granted_by: row.try_get("", "granted_by")?,
        granted_at: row.try_get("", "granted_at")?,
        expires_at: row.try_get("", "expires_at")?,
        revoked_at: row.try_get("", "revoked_at")?,
    };
    Ok((grant, row.try_get("", "reason_ct")?))
}
