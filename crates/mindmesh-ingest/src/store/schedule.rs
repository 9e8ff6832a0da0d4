//! Syncs of an integration over time: leases (one sync at a time, across replicas),
//! sync requests, the end of a sync, and what is due.

use super::*;

impl Store {
    /// Takes the sync lease of an integration for `owner` until `until`, if nobody else
    /// holds it and the integration is still connected. True when taken (or renewed).
    pub async fn claim(
        &self,
        id: IntegrationId,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let now = now();
        let result = self
            .ctx
            .db
            .execute(
                &Query::update()
                    .table("integrations")
                    .value("lease_owner", owner)
                    .value("lease_until", until)
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .and_where(Expr::col("status").ne(Status::Disconnected.as_str()))
                    .and_where(Expr::col("cascade_id").is_null())
                    .and_where(
                        Expr::col("lease_until")
                            .is_null()
                            .or(Expr::col("lease_until").lt(now))
                            .or(Expr::col("lease_owner").eq(owner)),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Gives the lease back.
    pub async fn release(&self, id: IntegrationId, owner: &str) -> Result<()> {
        self.ctx
            .db
            .execute(
                &Query::update()
                    .table("integrations")
                    .value("lease_owner", Option::<String>::None)
                    .value("lease_until", Option::<DateTime<Utc>>::None)
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .and_where(Expr::col("lease_owner").eq(owner))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    /// Records how a sync ended: `error` empty for a success.
    pub async fn finish(&self, id: IntegrationId, error: &str) -> Result<()> {
        let mut update = Query::update();
        update
            .table("integrations")
            .value("last_error", error)
            .value("last_attempt_at", now())
            .and_where(Expr::col("id").eq(id.to_string()))
            .and_where(Expr::col("status").ne(Status::Disconnected.as_str()));
        if error.is_empty() {
            update
                .value("status", Status::Active.as_str())
                .value("last_synced_at", now());
        } else {
            update.value("status", Status::Failing.as_str());
        }
        self.ctx.db.execute(&update).await?;
        Ok(())
    }

    /// Asks for a sync of `id` soon; false when one was already asked for.
    pub async fn request_sync(&self, tenant: TenantId, id: IntegrationId) -> Result<bool> {
        let result = self
            .ctx
            .db
            .execute(
                &Query::update()
                    .table("integrations")
                    .value("sync_requested", true)
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("status").ne(Status::Disconnected.as_str()))
                    .and_where(Expr::col("sync_requested").eq(false))
                    .to_owned(),
            )
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Clears the request of a sync that is starting.
    pub async fn clear_request(&self, id: IntegrationId) -> Result<()> {
        self.ctx
            .db
            .execute(
                &Query::update()
                    .table("integrations")
                    .value("sync_requested", false)
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    /// Connected integrations whose sync is due: asked for, never tried, or last tried
    /// before `attempted_before`.
    pub async fn due(
        &self,
        attempted_before: DateTime<Utc>,
    ) -> Result<Vec<(TenantId, IntegrationId)>> {
        self.ctx
            .db
            .query_all(
                &Query::select()
                    .columns(["tenant_id", "id"])
                    .from("integrations")
                    .and_where(Expr::col("status").ne(Status::Disconnected.as_str()))
                    .and_where(
                        Expr::col("sync_requested")
                            .eq(true)
                            .or(Expr::col("last_attempt_at").is_null())
                            .or(Expr::col("last_attempt_at").lt(attempted_before)),
                    )
                    .order_by("connected_at", Order::Asc)
                    .to_owned(),
            )
            .await?
            .iter()
            .map(|r| {
                let tenant: String = r.try_get("", "tenant_id")?;
                let id: String = r.try_get("", "id")?;
                Ok((parse(&tenant)?, parse(&id)?))
            })
            .collect()
    }

    /// True while a sync holds the integration's lease.
    pub async fn leased(&self, id: IntegrationId) -> Result<bool> {
        let row = self
            .ctx
            .db
            .query_one(
                &Query::select()
                    .column("id")
                    .from("integrations")
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .and_where(Expr::col("lease_until").gt(now()))
                    .to_owned(),
            )
            .await?;
        Ok(row.is_some())
    }
}
