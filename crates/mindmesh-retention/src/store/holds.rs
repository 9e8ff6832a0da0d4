//! `hold_records`: every legal hold placed, and its release ([`crate::holds`]).

use chrono::{DateTime, Utc};
use mindmesh_kit::Service;
use mindmesh_kit::holds::HeldScope;
use mindmesh_kit::ids::{HoldId, TenantId};
use mindmesh_kit::{Error, Result};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, LockType, OnConflict, Query};

use super::migration::{HoldAcks, HoldRecords};
use crate::holds::HoldRecord;

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("hold record with an unreadable {what}"))
}

/// Records a hold placed.
pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    r: &HoldRecord,
    reason_ct: Vec<u8>,
) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table(HoldRecords::Table)
            .columns([
                HoldRecords::Id,
                HoldRecords::TenantId,
                HoldRecords::ScopeKind,
                HoldRecords::ScopeId,
                HoldRecords::ReasonCt,
                HoldRecords::PlacedBy,
                HoldRecords::PlacedAt,
            ])
            .values_panic([
                r.id.to_string().into(),
                r.tenant.to_string().into(),
                r.scope.kind().into(),
                r.scope.id(r.tenant).into(),
                reason_ct.into(),
                r.placed_by.clone().into(),
                r.placed_at.into(),
            ])
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// The hold `id`, its row locked for the rest of the transaction (PostgreSQL).
pub async fn find_locked<C: ConnectionTrait>(conn: &C, id: HoldId) -> Result<Option<HoldRecord>> {
    let row = conn
        .query_one(
            &Query::select()
                .columns([
                    HoldRecords::TenantId,
                    HoldRecords::ScopeKind,
                    HoldRecords::ScopeId,
                    HoldRecords::PlacedBy,
                    HoldRecords::PlacedAt,
                    HoldRecords::ReleasedAt,
                ])
                .from(HoldRecords::Table)
                .and_where(Expr::col(HoldRecords::Id).eq(id.to_string()))
                .lock(LockType::Update)
                .to_owned(),
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let get =
        |column: &str| -> Result<String> { row.try_get("", column).map_err(|_| corrupt(column)) };
    let tenant: TenantId = get("tenant_id")?
        .parse()
        .map_err(|_| corrupt("tenant_id"))?;
    let scope = HeldScope::parse(tenant, &get("scope_kind")?, &get("scope_id")?)
        .ok_or_else(|| corrupt("scope"))?;
    Ok(Some(HoldRecord {
        id,
        tenant,
        scope,
        placed_by: get("placed_by")?,
        placed_at: row
            .try_get("", "placed_at")
            .map_err(|_| corrupt("placed_at"))?,
        released_at: row
            .try_get::<Option<DateTime<Utc>>>("", "released_at")
            .map_err(|_| corrupt("released_at"))?,
    }))
}

/// Records that hold `id` was released by `by` at `at`.
pub async fn set_released<C: ConnectionTrait>(
    conn: &C,
    id: HoldId,
    by: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        &Query::update()
            .table(HoldRecords::Table)
            .value(HoldRecords::ReleasedBy, by)
            .value(HoldRecords::ReleasedAt, at)
            .and_where(Expr::col(HoldRecords::Id).eq(id.to_string()))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Forgets every hold of `tenant` (it is erased), and what services confirmed of them:
/// returns the holds deleted.
pub async fn forget_tenant<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<u64> {
    conn.execute(
        &Query::delete()
            .from_table(HoldAcks::Table)
            .and_where(
                Expr::col(HoldAcks::HoldId).in_subquery(
                    Query::select()
                        .column(HoldRecords::Id)
                        .from(HoldRecords::Table)
                        .and_where(Expr::col(HoldRecords::TenantId).eq(tenant.to_string()))
                        .to_owned(),
                ),
            )
            .to_owned(),
    )
    .await?;
    Ok(conn
        .execute(
            &Query::delete()
                .from_table(HoldRecords::Table)
                .and_where(Expr::col(HoldRecords::TenantId).eq(tenant.to_string()))
                .to_owned(),
        )
        .await?
        .rows_affected())
}

/// Records that `service` applied the placing (or the release) of `hold` at `at`.
pub async fn ack<C: ConnectionTrait>(
    conn: &C,
    hold: HoldId,
    service: Service,
    released: bool,
    at: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table(HoldAcks::Table)
            .columns([
                HoldAcks::HoldId,
                HoldAcks::Service,
                HoldAcks::Released,
                HoldAcks::At,
            ])
            .values_panic([
                hold.to_string().into(),
                service.as_str().into(),
                released.into(),
                at.into(),
            ])
            .on_conflict(
                OnConflict::columns([HoldAcks::HoldId, HoldAcks::Service, HoldAcks::Released])
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// The services that have applied the placing (or the release) of `hold`.
pub async fn acked<C: ConnectionTrait>(
    conn: &C,
    hold: HoldId,
    released: bool,
) -> Result<Vec<Service>> {
    let rows = conn
        .query_all(
            &Query::select()
                .column(HoldAcks::Service)
                .from(HoldAcks::Table)
                .and_where(Expr::col(HoldAcks::HoldId).eq(hold.to_string()))
                .and_where(Expr::col(HoldAcks::Released).eq(released))
                .to_owned(),
        )
        .await?;
    rows.iter()
        .map(|r| {
            let name: String = r.try_get("", "service").map_err(|_| corrupt("service"))?;
            name.parse().map_err(|_| corrupt("service"))
        })
        .collect()
}
