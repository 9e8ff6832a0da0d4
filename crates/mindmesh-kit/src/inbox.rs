//! Inbox: the ids of events a consumer has applied, recorded in the transaction that
//! applies the effect, so a redelivered event changes nothing (exactly-once effect).

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{OnConflict, Query};

use crate::error::Result;

/// Records that `consumer` handles `event_id`, in the caller's transaction. Returns
/// false when it was handled before: the caller then skips the effect and just acks.
pub async fn claim<C: ConnectionTrait>(conn: &C, consumer: &str, event_id: &str) -> Result<bool> {
    let result = conn
        .execute(
            &Query::insert()
                .into_table("inbox")
                .columns(["consumer", "event_id", "handled_at"])
                .values_panic([consumer.into(), event_id.into(), chrono::Utc::now().into()])
                .on_conflict(
                    OnConflict::columns(["consumer", "event_id"])
                        .do_nothing()
                        .to_owned(),
                )
                .to_owned(),
        )
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Whether `consumer` has already handled `event_id` (a cheap check before long work;
/// [`claim`] in the effect's transaction stays the guarantee).
pub async fn handled<C: ConnectionTrait>(conn: &C, consumer: &str, event_id: &str) -> Result<bool> {
    use sea_orm::sea_query::{Expr, ExprTrait};
    Ok(conn
        .query_one(
            &Query::select()
                .column("event_id")
                .from("inbox")
                .and_where(Expr::col("consumer").eq(consumer))
                .and_where(Expr::col("event_id").eq(event_id))
                .to_owned(),
        )
        .await?
        .is_some())
}
