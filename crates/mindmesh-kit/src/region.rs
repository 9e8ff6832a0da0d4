//! Data stays in its region (P17). Each service's database is stamped with the
//! deployment's `region` when it is first migrated; a service started against a database
//! stamped with another region refuses to start, naming both — so a misconfigured
//! deployment, or a backup restored across regions, cannot serve (or copy) data there.

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};

use crate::service::Service;
use crate::{Error, Result};

fn table() -> Alias {
    Alias::new("deployment_region")
}

/// The region `db` is stamped with, if any.
pub async fn stamped<C: ConnectionTrait>(db: &C) -> Result<Option<String>> {
    let row = db
        .query_one(
            &Query::select()
                .column(Alias::new("region"))
                .from(table())
                .and_where(Expr::col(Alias::new("id")).eq(1))
                .to_owned(),
        )
        .await?;
    row.map(|r| {
        r.try_get("", "region")
            .map_err(|_| Error::Internal("deployment_region holds an unreadable region".into()))
    })
    .transpose()
}

/// Stamps `service`'s database `db` with `region` if it has no stamp yet (replicas
/// starting at once agree: the first stamp stays), then checks that it is `region`'s.
pub async fn stamp_or_check<C: ConnectionTrait>(
    db: &C,
    service: Service,
    region: &str,
) -> Result<()> {
    db.execute(
        &Query::insert()
            .into_table(table())
            .columns([
                Alias::new("id"),
                Alias::new("region"),
                Alias::new("stamped_at"),
            ])
            .values_panic([1.into(), region.into(), chrono::Utc::now().into()])
            .on_conflict(OnConflict::column(Alias::new("id")).do_nothing().to_owned())
            .to_owned(),
    )
    .await?;
    match stamped(db).await? {
        Some(stamp) if stamp == region => Ok(()),
        Some(stamp) => Err(Error::Config(format!(
            "the {service} database belongs to region {stamp:?}, but this deployment is \
             region {region:?} (setting `region`): data stays in its region (P17)"
        ))),
        None => Err(Error::Internal(format!(
            "the {service} database could not be stamped with its region"
        ))),
    }
}
