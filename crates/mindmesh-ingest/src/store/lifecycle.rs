//! An integration's end: its disconnect (begun, then finished with its cascade and
//! audit entry in one transaction), and a tenant's erasure.

use super::*;

impl Store {
    /// The first step of a disconnect: records its cascade id, which stops every sync of
    /// the integration at its next page (no lease is granted or renewed from here).
    /// Returns the integration as it was and the cascade id; a second call returns the
    /// same cascade.
    pub async fn begin_disconnect(
        &self,
        tenant: TenantId,
        id: IntegrationId,
    ) -> Result<(Integration, CascadeId)> {
        let current = self.get(tenant, id).await?;
        self.ctx
            .db
            .execute(
                &Query::update()
                    .table("integrations")
                    .value("cascade_id", CascadeId::new().to_string())
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .and_where(Expr::col("cascade_id").is_null())
                    .to_owned(),
            )
            .await?;
        let row = self
            .ctx
            .db
            .query_one(
                &Query::select()
                    .column("cascade_id")
                    .from("integrations")
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .to_owned(),
            )
            .await?
            .ok_or(Error::NotFound("integration"))?;
        let cascade: Option<String> = row.try_get("", "cascade_id")?;
        Ok((current, parse(&cascade.unwrap_or_default())?))
    }

    /// The last step of a disconnect: destroys the credentials' key, then, in one
    /// transaction, marks the integration disconnected, deletes its credentials, items
    /// and skip records, publishes `integration.disconnected` for the other services and
    /// attests ingest's own part of the cascade.
    pub async fn finish_disconnect(
        &self,
        tenant: TenantId,
        id: IntegrationId,
        cascade: CascadeId,
        audit: &AuditRecord,
    ) -> Result<()> {
        // Keys first (DESIGN.md §5): from here the sealed credentials open nowhere.
        let destroyed = self
            .ctx
            .keystore
            .shred(tenant, &KeyScope::Integration(id.to_string()))
            .await?;
        let txn = self.ctx.db.begin().await?;
        let mut update = disconnected(tenant, id);
        update.and_where(Expr::col("status").ne(Status::Disconnected.as_str()));
        let marked = txn.execute(&update).await?;
        if marked.rows_affected() == 0 {
            // Another call finished it meanwhile.
            return Ok(());
        }
        let counts =
            delete_rows(&txn, &INTEGRATION_TABLES, "integration_id", id.to_string()).await?;
        outbox::enqueue(
            &txn,
            &crate::events::integration_disconnected(self.ctx.service, tenant, id, cascade),
        )
        .await?;
        let rows = counts.values().sum();
        self.ctx
            .attest(&txn, Some(tenant), cascade, counts, &destroyed)
            .await?;
        self.ctx.audit.append(&txn, audit).await?;
        txn.commit().await?;
        self.ctx.settle_erasure(&ERASED_TABLES, rows).await?;
        self.ctx.relay.wake();
        Ok(())
    }

    /// Erases integration `id` of `tenant` again, as cascade `cascade` asked again by
    /// retention in the event `event_id` (a restored backup brought it back): its key
    /// destroyed first, then, with the inbox entry and ingest's attestation, it is marked
    /// disconnected and its credentials, items and skip records deleted — whatever the
    /// restore put back. Nothing there: attested with nothing deleted.
    pub async fn erase_again(
        &self,
        tenant: TenantId,
        id: IntegrationId,
        cascade: CascadeId,
        event_id: &str,
    ) -> Result<()> {
        let destroyed = self
            .ctx
            .keystore
            .shred(tenant, &KeyScope::Integration(id.to_string()))
            .await?;
        let txn = self.ctx.db.begin().await?;
        if !mindmesh_kit::inbox::claim(&txn, crate::events::CONSUMER, event_id).await? {
            return Ok(());
        }
        let mut update = disconnected(tenant, id);
        update.value("cascade_id", cascade.to_string());
        txn.execute(&update).await?;
        let counts =
            delete_rows(&txn, &INTEGRATION_TABLES, "integration_id", id.to_string()).await?;
        let rows = counts.values().sum();
        self.ctx
            .attest(&txn, Some(tenant), cascade, counts, &destroyed)
            .await?;
        txn.commit().await?;
        self.ctx.settle_erasure(&ERASED_TABLES, rows).await?;
        self.ctx.relay.wake();
        Ok(())
    }

    /// Marks every integration of `tenant` as being erased (no lease is granted from
    /// here) and returns their ids.
    pub async fn forbid_syncs(&self, tenant: TenantId) -> Result<Vec<IntegrationId>> {
        self.ctx
            .db
            .execute(
                &Query::update()
                    .table("integrations")
                    .value("cascade_id", CascadeId::new().to_string())
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .and_where(Expr::col("cascade_id").is_null())
                    .to_owned(),
            )
            .await?;
        self.ctx
            .db
            .query_all(
                &Query::select()
                    .column("id")
                    .from("integrations")
                    .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
                    .to_owned(),
            )
            .await?
            .iter()
            .map(|r| parse(&r.try_get::<String>("", "id")?))
            .collect()
    }

    /// Deletes everything of `tenant` in `txn`; returns how many rows of each table.
    pub async fn erase_tenant<C: ConnectionTrait>(
        txn: &C,
        tenant: TenantId,
    ) -> Result<HashMap<String, u64>> {
        delete_rows(txn, &ERASED_TABLES, "tenant_id", tenant.to_string()).await
    }
}

/// The update that marks integration `id` of `tenant` disconnected: no cursor, no sync
/// requested.
fn disconnected(tenant: TenantId, id: IntegrationId) -> sea_orm::sea_query::UpdateStatement {
    Query::update()
        .table("integrations")
        .value("status", Status::Disconnected.as_str())
        .value("cursor", Option::<String>::None)
        .value("cursor_ct", Option::<Vec<u8>>::None)
        .value("sync_requested", false)
        .and_where(Expr::col("id").eq(id.to_string()))
        .and_where(Expr::col("tenant_id").eq(tenant.to_string()))
        .to_owned()
}
