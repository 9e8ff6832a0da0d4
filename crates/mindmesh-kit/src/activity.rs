//! Reporting that people act, for the inactivity clock (P09): a service that sees a user
//! read or write publishes `account.activity` for them at most once per user per UTC day
//! — remembered in the process for the fast path, and claimed by a row of
//! `activity_reports` (see [`crate::migrations::activity_reports`]) in the transaction
//! that writes the event, so that replicas never report a day twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use mindmesh_proto::mindmesh::events::v1::AccountActivity;
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

use crate::auth::{Caller, Role};
use crate::error::Result;
use crate::ids::{TenantId, UserId};
use crate::outbox::{self, OutboxRelay};
use crate::service::Service;

/// Users remembered per process before the memory is cleared (the table still holds).
const REMEMBERED: usize = 100_000;

/// Reports people's activity for one service.
#[derive(Clone)]
pub struct ActivityReporter {
    service: Service,
    db: DatabaseConnection,
    relay: OutboxRelay,
    /// The day each user was last reported, in this process.
    reported: Arc<Mutex<HashMap<(TenantId, UserId), NaiveDate>>>,
    /// The day rows of earlier days were last cleared.
    cleared: Arc<Mutex<Option<NaiveDate>>>,
}

impl ActivityReporter {
    /// A reporter for `service`, writing to `db`'s outbox, published by `relay`.
    pub fn new(service: Service, db: DatabaseConnection, relay: OutboxRelay) -> Self {
        ActivityReporter {
            service,
            db,
            relay,
            reported: Arc::new(Mutex::new(HashMap::new())),
            cleared: Arc::new(Mutex::new(None)),
        }
    }

    /// `caller` did something of `kind` (`read`, `write`) now, if they are a person of a
    /// tenant: a member or admin whose token names their user id. A failure to report is
    /// logged, never the caller's problem.
    pub async fn saw(&self, caller: &Caller, kind: &str) {
        if !caller.has_any(&[Role::Member, Role::Admin]) {
            return;
        }
        let (Some(tenant), Ok(user)) = (caller.tenant, caller.subject.parse::<UserId>()) else {
            return;
        };
        if let Err(e) = self.acted(tenant, user, kind).await {
            tracing::warn!(tenant_id = %tenant, error = %e, "could not report a person's activity");
        }
    }

    /// `user` of `tenant` did something of `kind` (`read`, `write`) now.
    pub async fn acted(&self, tenant: TenantId, user: UserId, kind: &str) -> Result<bool> {
        self.acted_at(tenant, user, kind, Utc::now()).await
    }

    /// [`ActivityReporter::acted`] at `at`; returns whether this reported it (the first
    /// time that day).
    pub async fn acted_at(
        &self,
        tenant: TenantId,
        user: UserId,
        kind: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let day = at.date_naive();
        let known = self
            .reported
            .lock()
            .ok()
            .and_then(|r| r.get(&(tenant, user)).copied());
        if known == Some(day) {
            return Ok(false);
        }
        self.clear_before(day).await?;
        let txn = self.db.begin().await?;
        let claimed = txn
            .execute(
                &Query::insert()
                    .into_table("activity_reports")
                    .columns(["tenant_id", "user_id", "day"])
                    .values_panic([
                        tenant.to_string().into(),
                        user.to_string().into(),
                        day.to_string().into(),
                    ])
                    .on_conflict(
                        OnConflict::columns(["tenant_id", "user_id", "day"])
                            .do_nothing()
                            .to_owned(),
                    )
                    .to_owned(),
            )
            .await?
            .rows_affected()
            == 1;
        if claimed {
            let event = crate::events::envelope(
                self.service,
                Some(tenant),
                Payload::AccountActivity(AccountActivity {
                    user_id: user.to_string(),
                    kind: kind.to_owned(),
                }),
            );
            outbox::enqueue(&txn, &event).await?;
        }
        txn.commit().await?;
        if claimed {
            self.relay.wake();
        }
        if let Ok(mut reported) = self.reported.lock() {
            if reported.len() >= REMEMBERED {
                reported.clear();
            }
            reported.insert((tenant, user), day);
        }
        Ok(claimed)
    }

    /// Deletes the claims of days before `day`, once a day: they claim nothing more, and
    /// they say who was active when.
    async fn clear_before(&self, day: NaiveDate) -> Result<()> {
        let due = self.cleared.lock().map(|c| *c != Some(day)).unwrap_or(true);
        if !due {
            return Ok(());
        }
        self.db
            .execute(
                &Query::delete()
                    .from_table("activity_reports")
                    .and_where(Expr::col("day").lt(day.to_string()))
                    .to_owned(),
            )
            .await?;
        if let Ok(mut cleared) = self.cleared.lock() {
            *cleared = Some(day);
        }
        Ok(())
    }
}

/// Deletes the activity claims of `user` in `tenant` (of every user of it when `None`),
/// in `conn`'s transaction: who was active on which day goes with an erased person or
/// tenant.
pub async fn forget<C: sea_orm::ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: Option<UserId>,
) -> Result<u64> {
    let mut delete = Query::delete();
    delete
        .from_table("activity_reports")
        .and_where(Expr::col("tenant_id").eq(tenant.to_string()));
    if let Some(user) = user {
        delete.and_where(Expr::col("user_id").eq(user.to_string()));
    }
    Ok(conn.execute(&delete).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Backend, service_context};

    async fn reports_once_a_day(backend: Backend) {
        let (ctx, _guard) = service_context::<crate::migrations::tests::WithActivityReports>(
            Service::Storage,
            backend,
        )
        .await
        .unwrap();
        let reporter = ActivityReporter::new(Service::Storage, ctx.db.clone(), ctx.relay.clone());
        let (tenant, ada, bob) = (TenantId::new(), UserId::new(), UserId::new());
        let morning = DateTime::parse_from_rfc3339("2026-03-01T08:00:00Z")
            .unwrap()
            .to_utc();
        assert!(
            reporter
                .acted_at(tenant, ada, "read", morning)
                .await
                .unwrap()
        );
        let evening = morning + chrono::Duration::hours(12);
        assert!(
            !reporter
                .acted_at(tenant, ada, "write", evening)
                .await
                .unwrap()
        );
        assert!(
            reporter
                .acted_at(tenant, bob, "read", evening)
                .await
                .unwrap()
        );
        // Another replica (nothing in its memory) does not report the day again.
        let other = ActivityReporter::new(Service::Storage, ctx.db.clone(), ctx.relay.clone());
        assert!(!other.acted_at(tenant, ada, "read", evening).await.unwrap());
        // The next day is reported again, and yesterday's claims are cleared.
        let tomorrow = morning + chrono::Duration::days(1);
        assert!(
            reporter
                .acted_at(tenant, ada, "read", tomorrow)
                .await
                .unwrap()
        );
        let rows = ctx
            .db
            .query_all(
                &Query::select()
                    .column("day")
                    .from("activity_reports")
                    .to_owned(),
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        let events = ctx
            .db
            .query_all(
                &Query::select()
                    .column("event_id")
                    .from("outbox")
                    .and_where(Expr::col("subject").eq("account.activity"))
                    .to_owned(),
            )
            .await
            .unwrap();
        assert_eq!(events.len(), 3, "ada, bob, ada the next day");
    }

    crate::both_backends!(reports_once_a_day);
}
