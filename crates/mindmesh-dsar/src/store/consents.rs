//! `dsar_consents`: every consent given or withdrawn ([`crate::consents`]).

use chrono::{DateTime, Utc};
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::{Error, Result};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};

use super::migration::DsarConsents as K;

/// One consent given or withdrawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRow {
    /// Its id.
    pub id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Whose.
    pub user_id: String,
    /// For what.
    pub purpose: String,
    /// Given (true) or withdrawn.
    pub granted: bool,
    /// The data-subject request that withdrew it; empty otherwise.
    pub request_id: String,
    /// Who recorded it (the token's subject).
    pub recorded_by: String,
    /// When.
    pub recorded_at: DateTime<Utc>,
}

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("dsar consent row with an unreadable {what}"))
}

/// Appends `c`.
pub async fn insert<C: ConnectionTrait>(conn: &C, c: &ConsentRow) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table(K::Table)
            .columns([
                K::Id,
                K::TenantId,
                K::UserId,
                K::Purpose,
                K::Granted,
                K::RequestId,
                K::RecordedBy,
                K::RecordedAt,
            ])
            .values_panic([
                c.id.clone().into(),
                c.tenant_id.clone().into(),
                c.user_id.clone().into(),
                c.purpose.clone().into(),
                c.granted.into(),
                c.request_id.clone().into(),
                c.recorded_by.clone().into(),
                c.recorded_at.into(),
            ])
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Every consent record of `user` in `tenant`, oldest first.
pub async fn of_user<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: &str,
) -> Result<Vec<ConsentRow>> {
    let rows = conn
        .query_all(
            &Query::select()
                .columns([
                    K::Id,
                    K::TenantId,
                    K::UserId,
                    K::Purpose,
                    K::Granted,
                    K::RequestId,
                    K::RecordedBy,
                    K::RecordedAt,
                ])
                .from(K::Table)
                .and_where(Expr::col(K::TenantId).eq(tenant.to_string()))
                .and_where(Expr::col(K::UserId).eq(user))
                .order_by(K::RecordedAt, Order::Asc)
                .order_by(K::Id, Order::Asc)
                .to_owned(),
        )
        .await?;
    rows.iter()
        .map(|r| {
            let get = |c: &str| -> Result<String> { r.try_get("", c).map_err(|_| corrupt(c)) };
            Ok(ConsentRow {
                id: get("id")?,
                tenant_id: get("tenant_id")?,
                user_id: get("user_id")?,
                purpose: get("purpose")?,
                granted: r.try_get("", "granted").map_err(|_| corrupt("granted"))?,
                request_id: get("request_id")?,
                recorded_by: get("recorded_by")?,
                recorded_at: r
                    .try_get("", "recorded_at")
                    .map_err(|_| corrupt("recorded_at"))?,
            })
        })
        .collect()
}

/// Deletes every consent record of `user` in `tenant` (their account's erasure).
pub async fn delete_user<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: &str,
) -> Result<u64> {
    Ok(conn
        .execute(
            &Query::delete()
                .from_table(K::Table)
                .and_where(Expr::col(K::TenantId).eq(tenant.to_string()))
                .and_where(Expr::col(K::UserId).eq(user))
                .to_owned(),
        )
        .await?
        .rows_affected())
}

/// Deletes every consent record of `tenant`.
pub async fn delete_tenant<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<u64> {
    Ok(conn
        .execute(
            &Query::delete()
                .from_table(K::Table)
                .and_where(Expr::col(K::TenantId).eq(tenant.to_string()))
                .to_owned(),
        )
        .await?
        .rows_affected())
}
