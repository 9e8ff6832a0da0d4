//! `policies`, `inactivity_warnings` and `expiries`: each tenant's retention policy and
//! its inactivity countdown (P09, [`crate::policy`], [`crate::sweep`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mindmesh_kit::ids::{CascadeId, TenantId};
use mindmesh_kit::{Error, Result};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};

use super::migration::{Expiries, InactivityWarnings, Policies};
use crate::policy::Policy;

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("retention policy row with an unreadable {what}"))
}

/// The policy stored for `tenant`, if one was set.
pub async fn policy<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<Option<Policy>> {
    let row = conn
        .query_one(
            &Query::select()
                .columns([
                    Policies::InactivityDays,
                    Policies::WarningDays,
                    Policies::ArchivePurgeDays,
                ])
                .from(Policies::Table)
                .and_where(Expr::col(Policies::TenantId).eq(tenant.to_string()))
                .to_owned(),
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let days = |column: &str| -> Result<u32> {
        let value: i32 = row.try_get("", column).map_err(|_| corrupt(column))?;
        u32::try_from(value).map_err(|_| corrupt(column))
    };
    let warnings: String = row
        .try_get("", "warning_days")
        .map_err(|_| corrupt("warning_days"))?;
    Ok(Some(Policy {
        inactivity_days: days("inactivity_days")?,
        warning_days: serde_json::from_str(&warnings).map_err(|_| corrupt("warning_days"))?,
        archive_purge_days: days("archive_purge_days")?,
    }))
}

/// Stores `policy` as `tenant`'s.
pub async fn set_policy<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    policy: &Policy,
    at: DateTime<Utc>,
) -> Result<()> {
    let warnings =
        serde_json::to_string(&policy.warning_days).map_err(|e| Error::Internal(e.to_string()))?;
    let days = |d: u32| i32::try_from(d).unwrap_or(i32::MAX);
    conn.execute(
        &Query::insert()
            .into_table(Policies::Table)
            .columns([
                Policies::TenantId,
                Policies::InactivityDays,
                Policies::WarningDays,
                Policies::ArchivePurgeDays,
                Policies::UpdatedAt,
            ])
            .values_panic([
                tenant.to_string().into(),
                days(policy.inactivity_days).into(),
                warnings.into(),
                days(policy.archive_purge_days).into(),
                at.into(),
            ])
            .on_conflict(
                OnConflict::column(Policies::TenantId)
                    .update_columns([
                        Policies::InactivityDays,
                        Policies::WarningDays,
                        Policies::ArchivePurgeDays,
                        Policies::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// The warnings sent to `tenant` for the countdown from `countdown_from`: days before
/// expiry → when sent.
pub async fn warnings_sent<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    countdown_from: DateTime<Utc>,
) -> Result<BTreeMap<u32, DateTime<Utc>>> {
    let rows = conn
        .query_all(
            &Query::select()
                .columns([InactivityWarnings::DaysBefore, InactivityWarnings::SentAt])
                .from(InactivityWarnings::Table)
                .and_where(Expr::col(InactivityWarnings::TenantId).eq(tenant.to_string()))
                .and_where(Expr::col(InactivityWarnings::CountdownFrom).eq(countdown_from))
                .to_owned(),
        )
        .await?;
    rows.iter()
        .map(|row| {
            let days: i32 = row
                .try_get("", "days_before")
                .map_err(|_| corrupt("days_before"))?;
            let sent: DateTime<Utc> = row.try_get("", "sent_at").map_err(|_| corrupt("sent_at"))?;
            Ok((
                u32::try_from(days).map_err(|_| corrupt("days_before"))?,
                sent,
            ))
        })
        .collect()
}

/// Records the warning `days_before` expiry of `tenant`'s countdown from
/// `countdown_from`, sent at `at`; false when it was already recorded (by another
/// replica, say), so that only one sends it.
pub async fn record_warning<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    countdown_from: DateTime<Utc>,
    days_before: u32,
    at: DateTime<Utc>,
) -> Result<bool> {
    let result = conn
        .execute(
            &Query::insert()
                .into_table(InactivityWarnings::Table)
                .columns([
                    InactivityWarnings::TenantId,
                    InactivityWarnings::CountdownFrom,
                    InactivityWarnings::DaysBefore,
                    InactivityWarnings::SentAt,
                ])
                .values_panic([
                    tenant.to_string().into(),
                    countdown_from.into(),
                    i32::try_from(days_before).unwrap_or(i32::MAX).into(),
                    at.into(),
                ])
                .on_conflict(
                    OnConflict::columns([
                        InactivityWarnings::TenantId,
                        InactivityWarnings::CountdownFrom,
                        InactivityWarnings::DaysBefore,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .to_owned(),
        )
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Forgets `tenant`'s warnings of every countdown but the one from `countdown_from`
/// (activity came back); returns how many.
pub async fn forget_other_countdowns<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    countdown_from: DateTime<Utc>,
) -> Result<u64> {
    let result = conn
        .execute(
            &Query::delete()
                .from_table(InactivityWarnings::Table)
                .and_where(Expr::col(InactivityWarnings::TenantId).eq(tenant.to_string()))
                .and_where(Expr::col(InactivityWarnings::CountdownFrom).ne(countdown_from))
                .to_owned(),
        )
        .await?;
    Ok(result.rows_affected())
}

/// Whether `tenant` expired for inactivity already.
pub async fn expired<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<bool> {
    Ok(conn
        .query_one(
            &Query::select()
                .column(Expiries::TenantId)
                .from(Expiries::Table)
                .and_where(Expr::col(Expiries::TenantId).eq(tenant.to_string()))
                .to_owned(),
        )
        .await?
        .is_some())
}

/// Records that `tenant` expired at `at`, erased by `cascade`; false when it had expired
/// already (another replica's sweep got there first).
pub async fn record_expiry<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    cascade: CascadeId,
    at: DateTime<Utc>,
) -> Result<bool> {
    let result = conn
        .execute(
            &Query::insert()
                .into_table(Expiries::Table)
                .columns([Expiries::TenantId, Expiries::CascadeId, Expiries::ExpiredAt])
                .values_panic([
                    tenant.to_string().into(),
                    cascade.to_string().into(),
                    at.into(),
                ])
                .on_conflict(
                    OnConflict::column(Expiries::TenantId)
                        .do_nothing()
                        .to_owned(),
                )
                .to_owned(),
        )
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Deletes `tenant`'s policy and countdown (the tenant is erased); the expiry record
/// stays, naming only ids. Returns the rows deleted.
pub async fn forget_tenant<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<u64> {
    let policies = conn
        .execute(
            &Query::delete()
                .from_table(Policies::Table)
                .and_where(Expr::col(Policies::TenantId).eq(tenant.to_string()))
                .to_owned(),
        )
        .await?
        .rows_affected();
    let warnings = conn
        .execute(
            &Query::delete()
                .from_table(InactivityWarnings::Table)
                .and_where(Expr::col(InactivityWarnings::TenantId).eq(tenant.to_string()))
                .to_owned(),
        )
        .await?
        .rows_affected();
    Ok(policies + warnings)
}
