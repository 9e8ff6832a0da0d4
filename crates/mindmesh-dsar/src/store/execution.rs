//! `dsar_request_parts` and `dsar_exports`: each service's part in carrying a request
//! out, and the sealed archives ([`crate::execution`]).

use chrono::{DateTime, Utc};
use mindmesh_kit::{Error, Result};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Order, Query};

use super::migration::{DsarExports as E, DsarRequestParts as P, DsarRequests as R};

/// One service's part, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartRow {
    /// The service's name.
    pub service: String,
    /// `pending`, `done` or `failed`.
    pub state: String,
    /// Its answer, sealed.
    pub result_ct: Option<Vec<u8>>,
    /// Why it failed.
    pub error: String,
    /// Tries so far.
    pub attempts: u32,
    /// When it is tried next.
    pub next_try_at: DateTime<Utc>,
}

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("dsar part row with an unreadable {what}"))
}

/// The ids of the requests in `status`, oldest first.
pub async fn with_status<C: ConnectionTrait>(conn: &C, status: &str) -> Result<Vec<String>> {
    let rows = conn
        .query_all(
            &Query::select()
                .column(R::Id)
                .from(R::Table)
                .and_where(Expr::col(R::Status).eq(status))
                .order_by(R::SubmittedAt, Order::Asc)
                .to_owned(),
        )
        .await?;
    rows.iter()
        .map(|r| r.try_get("", "id").map_err(|_| corrupt("request id")))
        .collect()
}

/// The parts of request `id`.
pub async fn parts<C: ConnectionTrait>(conn: &C, id: &str) -> Result<Vec<PartRow>> {
    let rows = conn
        .query_all(
            &Query::select()
                .columns([
                    P::Service,
                    P::State,
                    P::ResultCt,
                    P::Error,
                    P::Attempts,
                    P::NextTryAt,
                ])
                .from(P::Table)
                .and_where(Expr::col(P::RequestId).eq(id))
                .order_by(P::Service, Order::Asc)
                .to_owned(),
        )
        .await?;
    rows.iter()
        .map(|r| {
            let attempts: i32 = r.try_get("", "attempts").map_err(|_| corrupt("attempts"))?;
            Ok(PartRow {
                service: r.try_get("", "service").map_err(|_| corrupt("service"))?,
                state: r.try_get("", "state").map_err(|_| corrupt("state"))?,
                result_ct: r.try_get("", "result_ct").map_err(|_| corrupt("result"))?,
                error: r.try_get("", "error").map_err(|_| corrupt("error"))?,
                attempts: u32::try_from(attempts).map_err(|_| corrupt("attempts"))?,
                next_try_at: r
                    .try_get("", "next_try_at")
                    .map_err(|_| corrupt("next try"))?,
            })
        })
        .collect()
}

/// Writes part `p` of request `id` at `now`, replacing the one there.
pub async fn put_part<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    p: &PartRow,
    now: DateTime<Utc>,
) -> Result<()> {
    let attempts = i32::try_from(p.attempts).unwrap_or(i32::MAX);
    conn.execute(
        &Query::insert()
            .into_table(P::Table)
            .columns([
                P::RequestId,
                P::Service,
                P::State,
                P::ResultCt,
                P::Error,
                P::Attempts,
                P::NextTryAt,
                P::UpdatedAt,
            ])
            .values_panic([
                id.into(),
                p.service.clone().into(),
                p.state.clone().into(),
                p.result_ct.clone().into(),
                p.error.clone().into(),
                attempts.into(),
                p.next_try_at.into(),
                now.into(),
            ])
            .on_conflict(
                OnConflict::columns([P::RequestId, P::Service])
                    .update_columns([
                        P::State,
                        P::ResultCt,
                        P::Error,
                        P::Attempts,
                        P::NextTryAt,
                        P::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Forgets what the services answered for request `id` (its archive holds it now).
pub async fn clear_results<C: ConnectionTrait>(conn: &C, id: &str) -> Result<()> {
    conn.execute(
        &Query::update()
            .table(P::Table)
            .value(P::ResultCt, Option::<Vec<u8>>::None)
            .and_where(Expr::col(P::RequestId).eq(id))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Stores the sealed archive of request `id`.
pub async fn put_export<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    archive_ct: Vec<u8>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    let size = i64::try_from(archive_ct.len()).unwrap_or(i64::MAX);
    conn.execute(
        &Query::insert()
            .into_table(E::Table)
            .columns([
                E::RequestId,
                E::ArchiveCt,
                E::SizeBytes,
                E::CreatedAt,
                E::ExpiresAt,
            ])
            .values_panic([
                id.into(),
                archive_ct.into(),
                size.into(),
                created_at.into(),
                expires_at.into(),
            ])
            .on_conflict(OnConflict::column(E::RequestId).do_nothing().to_owned())
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// The sealed archive of request `id` and when it expires, if it is kept.
pub async fn export<C: ConnectionTrait>(
    conn: &C,
    id: &str,
) -> Result<Option<(Vec<u8>, DateTime<Utc>)>> {
    let row = conn
        .query_one(
            &Query::select()
                .columns([E::ArchiveCt, E::ExpiresAt])
                .from(E::Table)
                .and_where(Expr::col(E::RequestId).eq(id))
                .to_owned(),
        )
        .await?;
    row.map(|r| {
        Ok((
            r.try_get("", "archive_ct")
                .map_err(|_| corrupt("archive"))?,
            r.try_get("", "expires_at").map_err(|_| corrupt("expiry"))?,
        ))
    })
    .transpose()
}

/// Deletes the archives expired by `now`; returns how many.
pub async fn delete_expired_exports<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
) -> Result<u64> {
    Ok(conn
        .execute(
            &Query::delete()
                .from_table(E::Table)
                .and_where(Expr::col(E::ExpiresAt).lt(now))
                .to_owned(),
        )
        .await?
        .rows_affected())
}
