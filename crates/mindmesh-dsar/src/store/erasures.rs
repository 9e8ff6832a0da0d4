//! `dsar_erasures`: the deletion cascade carrying each erasure request out, and its
//! receipt ([`crate::execution`]).

use chrono::{DateTime, Utc};
use mindmesh_kit::{Error, Result};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};

use super::migration::DsarErasures as X;

/// The cascade of an erasure request and its receipt, once issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErasureRow {
    /// The cascade's id.
    pub cascade_id: String,
    /// The encoded receipt.
    pub receipt: Option<Vec<u8>>,
}

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("dsar erasure row with an unreadable {what}"))
}

/// Records that request `id` is carried out by cascade `cascade` from `now`.
pub async fn start<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    cascade: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    conn.execute(
        &Query::insert()
            .into_table(X::Table)
            .columns([X::RequestId, X::CascadeId, X::Receipt, X::StartedAt])
            .values_panic([
                id.into(),
                cascade.into(),
                Option::<Vec<u8>>::None.into(),
                now.into(),
            ])
            .on_conflict(OnConflict::column(X::RequestId).do_nothing().to_owned())
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// The cascade of request `id`, if its erasure has started.
pub async fn get<C: ConnectionTrait>(conn: &C, id: &str) -> Result<Option<ErasureRow>> {
    let row = conn
        .query_one(
            &Query::select()
                .columns([X::CascadeId, X::Receipt])
                .from(X::Table)
                .and_where(Expr::col(X::RequestId).eq(id))
                .to_owned(),
        )
        .await?;
    row.map(|r| {
        Ok(ErasureRow {
            cascade_id: r
                .try_get("", "cascade_id")
                .map_err(|_| corrupt("cascade"))?,
            receipt: r.try_get("", "receipt").map_err(|_| corrupt("receipt"))?,
        })
    })
    .transpose()
}

/// Attaches the cascade's `receipt` to request `id`.
pub async fn put_receipt<C: ConnectionTrait>(conn: &C, id: &str, receipt: Vec<u8>) -> Result<()> {
    conn.execute(
        &Query::update()
            .table(X::Table)
            .value(X::Receipt, receipt)
            .and_where(Expr::col(X::RequestId).eq(id))
            .to_owned(),
    )
    .await?;
    Ok(())
}
