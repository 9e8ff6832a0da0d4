//! `dsar_notifications` ([`crate::notifier`]) and `dsar_breaches` ([`crate::breach`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::{Error, Result};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Order, Query};
use sea_orm::{ConnectionTrait, QueryResult};

use super::migration::{DsarBreaches as B, DsarNotifications as N};

/// Waiting to be sent (or being sent, while its lease runs).
pub const QUEUED: &str = "queued";
/// Handed to the mailer.
pub const SENT: &str = "sent";
/// Not sent, by the recipient's choice (marketing mail they opted out of).
pub const SUPPRESSED: &str = "suppressed";
/// Given up: no recipient, or every try failed.
pub const FAILED: &str = "failed";

/// One mail to one person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRow {
    /// Its id (the mail's `Message-ID`).
    pub id: String,
    /// The event it came from.
    pub event_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The recipient's account; empty when there was none.
    pub user_id: String,
    /// What it says.
    pub template: String,
    /// Administrative mail, which no opt-out stops.
    pub administrative: bool,
    /// The template's parameters.
    pub params: BTreeMap<String, String>,
    /// The breach it tells of, if any.
    pub breach_id: Option<String>,
    /// [`QUEUED`], [`SENT`], [`SUPPRESSED`] or [`FAILED`].
    pub status: String,
    /// Tries so far.
    pub attempts: i32,
    /// When it is next tried.
    pub next_attempt_at: DateTime<Utc>,
    /// Why it is not sent (non-personal).
    pub reason: String,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
}

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("dsar notification row with an unreadable {what}"))
}

const COLUMNS: [N; 14] = [
    N::Id,
    N::EventId,
    N::TenantId,
    N::UserId,
    N::Template,
    N::Administrative,
    N::Params,
    N::BreachId,
    N::Status,
    N::Attempts,
    N::NextAttemptAt,
    N::Reason,
    N::CreatedAt,
    N::SentAt,
];

fn row(r: &QueryResult) -> Result<NotificationRow> {
    let get = |c: &str| -> Result<String> { r.try_get("", c).map_err(|_| corrupt(c)) };
    let params: String = get("params")?;
    Ok(NotificationRow {
        id: get("id")?,
        event_id: get("event_id")?,
        tenant_id: get("tenant_id")?,
        user_id: get("user_id")?,
        template: get("template")?,
        administrative: r
            .try_get("", "administrative")
            .map_err(|_| corrupt("administrative"))?,
        params: serde_json::from_str(&params).map_err(|_| corrupt("params"))?,
        breach_id: r
            .try_get("", "breach_id")
            .map_err(|_| corrupt("breach_id"))?,
        status: get("status")?,
        attempts: r.try_get("", "attempts").map_err(|_| corrupt("attempts"))?,
        next_attempt_at: r
            .try_get("", "next_attempt_at")
            .map_err(|_| corrupt("next_attempt_at"))?,
        reason: get("reason")?,
        created_at: r
            .try_get("", "created_at")
            .map_err(|_| corrupt("created_at"))?,
        sent_at: r.try_get("", "sent_at").map_err(|_| corrupt("sent_at"))?,
    })
}

fn select() -> sea_orm::sea_query::SelectStatement {
    Query::select().columns(COLUMNS).from(N::Table).to_owned()
}

/// Queues `n`, unless its (event, recipient) is queued already; true when queued now.
pub async fn queue<C: ConnectionTrait>(conn: &C, n: &NotificationRow) -> Result<bool> {
    let params =
        serde_json::to_string(&n.params).map_err(|e| Error::Internal(format!("params: {e}")))?;
    let done = conn
        .execute(
            &Query::insert()
                .into_table(N::Table)
                .columns(COLUMNS)
                .values_panic([
                    n.id.clone().into(),
                    n.event_id.clone().into(),
                    n.tenant_id.clone().into(),
                    n.user_id.clone().into(),
                    n.template.clone().into(),
                    n.administrative.into(),
                    params.into(),
                    n.breach_id.clone().into(),
                    n.status.clone().into(),
                    n.attempts.into(),
                    n.next_attempt_at.into(),
                    n.reason.clone().into(),
                    n.created_at.into(),
                    n.sent_at.into(),
                ])
                .on_conflict(
                    OnConflict::columns([N::EventId, N::UserId])
                        .do_nothing()
                        .to_owned(),
                )
                .to_owned(),
        )
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Up to `limit` queued notifications due at `now`, oldest first.
pub async fn due<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<NotificationRow>> {
    let rows = conn
        .query_all(
            &select()
                .and_where(Expr::col(N::Status).eq(QUEUED))
                .and_where(Expr::col(N::NextAttemptAt).lte(now))
                .order_by(N::CreatedAt, Order::Asc)
                .limit(limit)
                .to_owned(),
        )
        .await?;
    rows.iter().map(row).collect()
}

/// Takes `id` for a try until `until`, if it is still queued and due at `now` (no other
/// replica took it); true when taken.
pub async fn claim<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool> {
    let done = conn
        .execute(
            &Query::update()
                .table(N::Table)
                .value(N::NextAttemptAt, until)
                .value(N::Attempts, Expr::col(N::Attempts).add(1))
                .and_where(Expr::col(N::Id).eq(id))
                .and_where(Expr::col(N::Status).eq(QUEUED))
                .and_where(Expr::col(N::NextAttemptAt).lte(now))
                .to_owned(),
        )
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Records the end of `id`'s delivery: `status` ([`SENT`], [`SUPPRESSED`], [`FAILED`])
/// at `now`, with `reason`.
pub async fn settle<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    status: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut update = Query::update();
    update
        .table(N::Table)
        .value(N::Status, status)
        .value(N::Reason, reason)
        .and_where(Expr::col(N::Id).eq(id));
    if status == SENT {
        update.value(N::SentAt, now);
    }
    conn.execute(&update).await?;
    Ok(())
}

/// Puts `id` back in the queue, tried again at `at`, after a failure (`reason`).
pub async fn retry_at<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    at: DateTime<Utc>,
    reason: &str,
) -> Result<()> {
    conn.execute(
        &Query::update()
            .table(N::Table)
            .value(N::NextAttemptAt, at)
            .value(N::Reason, reason)
            .and_where(Expr::col(N::Id).eq(id))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// The notifications of breach `breach` in `tenant`.
pub async fn of_breach<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    breach: &str,
) -> Result<Vec<NotificationRow>> {
    of_tenant_where(conn, tenant, N::BreachId, breach).await
}

/// The notifications sent (or meant) for `user` of `tenant`.
pub async fn of_user<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: &str,
) -> Result<Vec<NotificationRow>> {
    of_tenant_where(conn, tenant, N::UserId, user).await
}

/// The notifications of `tenant` whose `column` is `value`, oldest first.
async fn of_tenant_where<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    column: N,
    value: &str,
) -> Result<Vec<NotificationRow>> {
    let rows = conn
        .query_all(
            &select()
                .and_where(Expr::col(N::TenantId).eq(tenant.to_string()))
                .and_where(Expr::col(column).eq(value))
                .order_by(N::CreatedAt, Order::Asc)
                .to_owned(),
        )
        .await?;
    rows.iter().map(row).collect()
}

/// Deletes the notifications of `user` in `tenant` (every one of the tenant's, and its
/// breaches, when `None`); returns how many rows went.
pub async fn delete<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: Option<&str>,
) -> Result<u64> {
    let mut query = Query::delete();
    query
        .from_table(N::Table)
        .and_where(Expr::col(N::TenantId).eq(tenant.to_string()));
    if let Some(user) = user {
        query.and_where(Expr::col(N::UserId).eq(user));
    }
    let mut removed = conn.execute(&query).await?.rows_affected();
    if user.is_none() {
        removed += conn
            .execute(
                &Query::delete()
                    .from_table(B::Table)
                    .and_where(Expr::col(B::TenantId).eq(tenant.to_string()))
                    .to_owned(),
            )
            .await?
            .rows_affected();
    }
    Ok(removed)
}

/// A breach declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreachRow {
    /// Its id.
    pub id: String,
    /// The tenant it affects.
    pub tenant_id: String,
    /// What happened, sealed.
    pub description_ct: Vec<u8>,
    /// When it was detected.
    pub detected_at: DateTime<Utc>,
    /// When it was declared here.
    pub declared_at: DateTime<Utc>,
    /// When the supervisory authority must have been told (detection + 72 h).
    pub authority_due_at: DateTime<Utc>,
    /// Who declared it.
    pub declared_by: String,
}

/// Records `b`.
pub async fn insert_breach<C: ConnectionTrait>(conn: &C, b: &BreachRow) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table(B::Table)
            .columns([
                B::Id,
                B::TenantId,
                B::DescriptionCt,
                B::DetectedAt,
                B::DeclaredAt,
                B::AuthorityDueAt,
                B::DeclaredBy,
            ])
            .values_panic([
                b.id.clone().into(),
                b.tenant_id.clone().into(),
                b.description_ct.clone().into(),
                b.detected_at.into(),
                b.declared_at.into(),
                b.authority_due_at.into(),
                b.declared_by.clone().into(),
            ])
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Breach `id` of `tenant`, if any.
pub async fn breach<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    id: &str,
) -> Result<Option<BreachRow>> {
    let found = conn
        .query_one(
            &Query::select()
                .columns([
                    B::Id,
                    B::TenantId,
                    B::DescriptionCt,
                    B::DetectedAt,
                    B::DeclaredAt,
                    B::AuthorityDueAt,
                    B::DeclaredBy,
                ])
                .from(B::Table)
                .and_where(Expr::col(B::TenantId).eq(tenant.to_string()))
                .and_where(Expr::col(B::Id).eq(id))
                .to_owned(),
        )
        .await?;
    let bad = |c: &str| Error::Internal(format!("dsar breach row with an unreadable {c}"));
    found
        .map(|r| {
            Ok(BreachRow {
                id: r.try_get("", "id").map_err(|_| bad("id"))?,
                tenant_id: r.try_get("", "tenant_id").map_err(|_| bad("tenant_id"))?,
                description_ct: r
                    .try_get("", "description_ct")
                    .map_err(|_| bad("description"))?,
                detected_at: r
                    .try_get("", "detected_at")
                    .map_err(|_| bad("detected_at"))?,
                declared_at: r
                    .try_get("", "declared_at")
                    .map_err(|_| bad("declared_at"))?,
                authority_due_at: r
                    .try_get("", "authority_due_at")
                    .map_err(|_| bad("authority_due_at"))?,
                declared_by: r
                    .try_get("", "declared_by")
                    .map_err(|_| bad("declared_by"))?,
            })
        })
        .transpose()
}
