//! `dsar_processor_settings` and `dsar_preferences` ([`crate::settings`]).

use chrono::{DateTime, Utc};
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::{Error, Result};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};

use super::migration::{DsarPreferences as M, DsarProcessorSettings as P};

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("dsar settings row with an unreadable {what}"))
}

/// The processor switches of `tenant` (analytics, LLM), if they were ever set.
pub async fn processors<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
) -> Result<Option<(bool, bool)>> {
    let row = conn
        .query_one(
            &Query::select()
                .columns([P::AnalyticsEnabled, P::LlmEnabled])
                .from(P::Table)
                .and_where(Expr::col(P::TenantId).eq(tenant.to_string()))
                .to_owned(),
        )
        .await?;
    row.map(|r| {
        Ok((
            r.try_get("", "analytics_enabled")
                .map_err(|_| corrupt("analytics switch"))?,
            r.try_get("", "llm_enabled")
                .map_err(|_| corrupt("LLM switch"))?,
        ))
    })
    .transpose()
}

/// Sets the processor switches of `tenant`.
pub async fn put_processors<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    analytics: bool,
    llm: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table(P::Table)
            .columns([
                P::TenantId,
                P::AnalyticsEnabled,
                P::LlmEnabled,
                P::UpdatedAt,
            ])
            .values_panic([
                tenant.to_string().into(),
                analytics.into(),
                llm.into(),
                now.into(),
            ])
            .on_conflict(
                OnConflict::column(P::TenantId)
                    .update_columns([P::AnalyticsEnabled, P::LlmEnabled, P::UpdatedAt])
                    .to_owned(),
            )
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// The preferences of `user` of `tenant` — (marketing mail, administrative contact) —
/// if they were ever set.
pub async fn preferences<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: &str,
) -> Result<Option<(bool, bool)>> {
    let row = conn
        .query_one(
            &Query::select()
                .columns([M::MarketingMail, M::AdminContact])
                .from(M::Table)
                .and_where(Expr::col(M::TenantId).eq(tenant.to_string()))
                .and_where(Expr::col(M::UserId).eq(user))
                .to_owned(),
        )
        .await?;
    row.map(|r| {
        Ok((
            r.try_get("", "marketing_mail")
                .map_err(|_| corrupt("marketing preference"))?,
            r.try_get("", "admin_contact")
                .map_err(|_| corrupt("administrative contact"))?,
        ))
    })
    .transpose()
}

/// Sets the preferences of `user` of `tenant`.
pub async fn put_preferences<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: &str,
    marketing: bool,
    admin_contact: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table(M::Table)
            .columns([
                M::TenantId,
                M::UserId,
                M::MarketingMail,
                M::AdminContact,
                M::UpdatedAt,
            ])
            .values_panic([
                tenant.to_string().into(),
                user.into(),
                marketing.into(),
                admin_contact.into(),
                now.into(),
            ])
            .on_conflict(
                OnConflict::columns([M::TenantId, M::UserId])
                    .update_columns([M::MarketingMail, M::AdminContact, M::UpdatedAt])
                    .to_owned(),
            )
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// The accounts of `tenant` that receive its administrative notices.
pub async fn admin_contacts<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<Vec<String>> {
    let rows = conn
        .query_all(
            &Query::select()
                .column(M::UserId)
                .from(M::Table)
                .and_where(Expr::col(M::TenantId).eq(tenant.to_string()))
                .and_where(Expr::col(M::AdminContact).eq(true))
                .order_by(M::UserId, sea_orm::sea_query::Order::Asc)
                .to_owned(),
        )
        .await?;
    rows.iter()
        .map(|r| r.try_get("", "user_id").map_err(|_| corrupt("user id")))
        .collect()
}

/// Deletes the preferences of `user` in `tenant` (every user's when `None`), and the
/// tenant's processor switches with a whole tenant.
pub async fn delete<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: Option<&str>,
) -> Result<u64> {
    let mut delete = Query::delete();
    delete
        .from_table(M::Table)
        .and_where(Expr::col(M::TenantId).eq(tenant.to_string()));
    if let Some(user) = user {
        delete.and_where(Expr::col(M::UserId).eq(user));
    }
    let mut removed = conn.execute(&delete).await?.rows_affected();
    if user.is_none() {
        removed += conn
            .execute(
                &Query::delete()
                    .from_table(P::Table)
                    .and_where(Expr::col(P::TenantId).eq(tenant.to_string()))
                    .to_owned(),
            )
            .await?
            .rows_affected();
    }
    Ok(removed)
}
