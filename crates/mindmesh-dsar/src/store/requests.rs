//! `dsar_requests`: the data-subject requests ([`crate::requests`]). Rows move as they
//! are stored — sealed fields stay sealed here; the domain module opens them.

use chrono::{DateTime, Utc};
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::{Error, Result};
use sea_orm::sea_query::{Expr, ExprTrait, LockType, OnConflict, Query, SelectStatement};
use sea_orm::{ConnectionTrait, QueryResult};

use super::migration::DsarRequests as R;

/// One request as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRow {
    /// Request id.
    pub id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Its kind's name.
    pub kind: String,
    /// Its status's name.
    pub status: String,
    /// The subject's email, sealed.
    pub subject_email_ct: Vec<u8>,
    /// Keyed hash of the subject's email.
    pub subject_hash: String,
    /// The rectification asked for, sealed JSON.
    pub payload_ct: Option<Vec<u8>>,
    /// Who filed it.
    pub submitted_by: String,
    /// In which role (`member`, `admin`, `operator`).
    pub submitted_role: String,
    /// When.
    pub submitted_at: DateTime<Utc>,
    /// One calendar month after.
    pub first_due_at: DateTime<Utc>,
    /// When it is due now.
    pub due_at: DateTime<Utc>,
    /// Why it was extended.
    pub extension_reason: String,
    /// Why it was rejected.
    pub rejection_reason: String,
    /// Keyed hash of the mailed code; empty once used.
    pub code_hash: String,
    /// When the code expires.
    pub code_expires_at: Option<DateTime<Utc>>,
    /// Wrong codes tried.
    pub code_attempts: u32,
    /// When the subject confirmed it.
    pub verified_at: Option<DateTime<Utc>>,
    /// When it was carried out.
    pub completed_at: Option<DateTime<Utc>>,
}

const COLUMNS: [R; 19] = [
    R::Id,
    R::TenantId,
    R::Kind,
    R::Status,
    R::SubjectEmailCt,
    R::SubjectHash,
    R::PayloadCt,
    R::SubmittedBy,
    R::SubmittedRole,
    R::SubmittedAt,
    R::FirstDueAt,
    R::DueAt,
    R::ExtensionReason,
    R::RejectionReason,
    R::CodeHash,
    R::CodeExpiresAt,
    R::CodeAttempts,
    R::VerifiedAt,
    R::CompletedAt,
];

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("dsar request row with an unreadable {what}"))
}

fn row_of(r: &QueryResult) -> Result<RequestRow> {
    let attempts: i32 = r
        .try_get("", "code_attempts")
        .map_err(|_| corrupt("attempts"))?;
    let get = |c: &str| -> Result<String> { r.try_get("", c).map_err(|_| corrupt(c)) };
    let time = |c: &str| -> Result<DateTime<Utc>> { r.try_get("", c).map_err(|_| corrupt(c)) };
    let maybe =
        |c: &str| -> Result<Option<DateTime<Utc>>> { r.try_get("", c).map_err(|_| corrupt(c)) };
    Ok(RequestRow {
        id: get("id")?,
        tenant_id: get("tenant_id")?,
        kind: get("kind")?,
        status: get("status")?,
        subject_email_ct: r
            .try_get("", "subject_email_ct")
            .map_err(|_| corrupt("subject"))?,
        subject_hash: get("subject_hash")?,
        payload_ct: r
            .try_get("", "payload_ct")
            .map_err(|_| corrupt("payload"))?,
        submitted_by: get("submitted_by")?,
        submitted_role: get("submitted_role")?,
        submitted_at: time("submitted_at")?,
        first_due_at: time("first_due_at")?,
        due_at: time("due_at")?,
        extension_reason: get("extension_reason")?,
        rejection_reason: get("rejection_reason")?,
        code_hash: get("code_hash")?,
        code_expires_at: maybe("code_expires_at")?,
        code_attempts: u32::try_from(attempts).map_err(|_| corrupt("attempts"))?,
        verified_at: maybe("verified_at")?,
        completed_at: maybe("completed_at")?,
    })
}

fn select() -> SelectStatement {
    Query::select().columns(COLUMNS).from(R::Table).to_owned()
}

/// Writes `r`, replacing the row of its id.
pub async fn put<C: ConnectionTrait>(conn: &C, r: &RequestRow) -> Result<()> {
    let attempts = i32::try_from(r.code_attempts).unwrap_or(i32::MAX);
    conn.execute(
        &Query::insert()
            .into_table(R::Table)
            .columns(COLUMNS)
            .values_panic([
                r.id.clone().into(),
                r.tenant_id.clone().into(),
                r.kind.clone().into(),
                r.status.clone().into(),
                r.subject_email_ct.clone().into(),
                r.subject_hash.clone().into(),
                r.payload_ct.clone().into(),
                r.submitted_by.clone().into(),
                r.submitted_role.clone().into(),
                r.submitted_at.into(),
                r.first_due_at.into(),
                r.due_at.into(),
                r.extension_reason.clone().into(),
                r.rejection_reason.clone().into(),
                r.code_hash.clone().into(),
                r.code_expires_at.into(),
                attempts.into(),
                r.verified_at.into(),
                r.completed_at.into(),
            ])
            .on_conflict(
                OnConflict::column(R::Id)
                    .update_columns(COLUMNS.into_iter().skip(1))
                    .to_owned(),
            )
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// The request `id`, its row locked for the rest of the transaction when `lock`.
pub async fn find<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    lock: bool,
) -> Result<Option<RequestRow>> {
    let mut query = select();
    query.and_where(Expr::col(R::Id).eq(id));
    if lock {
        query.lock(LockType::Update);
    }
    conn.query_one(&query)
        .await?
        .as_ref()
        .map(row_of)
        .transpose()
}

/// The requests of `tenant` about the subject with keyed hash `subject_hash`.
pub async fn about_subject<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    subject_hash: &str,
) -> Result<Vec<RequestRow>> {
    let mut query = select();
    query
        .and_where(Expr::col(R::TenantId).eq(tenant.to_string()))
        .and_where(Expr::col(R::SubjectHash).eq(subject_hash));
    conn.query_all(&query).await?.iter().map(row_of).collect()
}

/// The requests of `tenant` (every tenant's for `None`), only those filed by
/// `submitted_by` when given.
pub async fn all<C: ConnectionTrait>(
    conn: &C,
    tenant: Option<TenantId>,
    submitted_by: Option<&str>,
) -> Result<Vec<RequestRow>> {
    let mut query = select();
    if let Some(tenant) = tenant {
        query.and_where(Expr::col(R::TenantId).eq(tenant.to_string()));
    }
    if let Some(by) = submitted_by {
        query.and_where(Expr::col(R::SubmittedBy).eq(by));
    }
    conn.query_all(&query).await?.iter().map(row_of).collect()
}

/// Deletes every request of `tenant` (it is erased), with their parts and archives;
/// returns how many requests.
pub async fn delete_tenant<C: ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<u64> {
    use super::migration::{DsarExports, DsarRequestParts};
    let of_tenant = Query::select()
        .column(R::Id)
        .from(R::Table)
        .and_where(Expr::col(R::TenantId).eq(tenant.to_string()))
        .to_owned();
    let of_tenant_again = of_tenant.clone();
    conn.execute(
        &Query::delete()
            .from_table(DsarRequestParts::Table)
            .and_where(Expr::col(DsarRequestParts::RequestId).in_subquery(of_tenant.clone()))
            .to_owned(),
    )
    .await?;
    conn.execute(
        &Query::delete()
            .from_table(DsarExports::Table)
            .and_where(Expr::col(DsarExports::RequestId).in_subquery(of_tenant.clone()))
            .to_owned(),
    )
    .await?;
    conn.execute(
        &Query::delete()
            .from_table(super::migration::DsarErasures::Table)
            .and_where(
                Expr::col(super::migration::DsarErasures::RequestId).in_subquery(of_tenant_again),
            )
            .to_owned(),
    )
    .await?;
    super::consents::delete_tenant(conn, tenant).await?;
    Ok(conn
        .execute(
            &Query::delete()
                .from_table(R::Table)
                .and_where(Expr::col(R::TenantId).eq(tenant.to_string()))
                .to_owned(),
        )
        .await?
        .rows_affected())
}
