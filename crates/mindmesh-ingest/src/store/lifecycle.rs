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

/// What a data subject's erasure changes in ingest, found before its transaction (see
/// [`Store::forget_person`]).
#[derive(Default)]
pub struct Forgetting {
    /// (integration, its settings sealed without the person's email, why it fails now).
    settings: Vec<(IntegrationId, Vec<u8>, String, u64)>,
    /// (integration, outside person's index).
    outsiders: Vec<(IntegrationId, String)>,
}

impl Forgetting {
    /// Applies it in `txn`; returns the counts by kind.
    pub async fn apply<C: ConnectionTrait>(&self, txn: &C) -> Result<HashMap<String, u64>> {
        let (mut settings, mut outsiders) = (0u64, 0u64);
        for (id, sealed, error, held) in &self.settings {
            txn.execute(
                &Query::update()
                    .table("integrations")
                    .value("settings_ct", sealed.clone())
                    .value("status", Status::Failing.as_str())
                    .value("last_error", error.clone())
                    .and_where(Expr::col("id").eq(id.to_string()))
                    .to_owned(),
            )
            .await?;
            settings += held;
        }
        for (id, index) in &self.outsiders {
            outsiders += txn
                .execute(
                    &Query::delete()
                        .from_table("outside_users")
                        .and_where(Expr::col("integration_id").eq(id.to_string()))
                        .and_where(Expr::col("user_index").eq(index.clone()))
                        .to_owned(),
                )
                .await?
                .rows_affected();
        }
        Ok(HashMap::from([
            ("integration_settings".to_owned(), settings),
            ("outside_users".to_owned(), outsiders),
        ]))
    }
}

impl Store {
    /// What a data subject's erasure changes: every setting of `tenant`'s integrations
    /// whose value is `email` goes (the integration then fails its syncs, saying which
    /// setting to set again), and every outside person with that email whom grants
    /// named is forgotten. Read before the erasure's transaction, applied in it.
    pub async fn forget_person(&self, tenant: TenantId, email: &str) -> Result<Forgetting> {
        let wanted = email.trim().to_lowercase();
        let mut plan = Forgetting::default();
        let mut after = None;
        loop {
            let page = self.list(tenant, after, 500).await?;
            for integration in page.iter().filter(|i| i.status != Status::Disconnected) {
                let Ok(keys) = self.record_keys(tenant, integration.id).await else {
                    continue;
                };
                let held: Vec<String> = integration
                    .settings
                    .iter()
                    .filter(|(_, value)| value.trim().to_lowercase() == wanted)
                    .map(|(name, _)| name.clone())
                    .collect();
                if !held.is_empty() {
                    let mut kept = integration.settings.clone();
                    kept.retain(|name, _| !held.contains(name));
                    let sealed = keys.seal.seal(
                        &field(tenant, integration.id, "settings"),
                        settings_json(&kept)?.as_bytes(),
                    )?;
                    let error = format!(
                        "{} held the email of a person whose data was erased on request; set \
                         it again to sync",
                        held.join(", ")
                    );
                    plan.settings
                        .push((integration.id, sealed, error, held.len() as u64));
                }
                for outsider in self.outsiders(tenant, integration.id).await? {
                    if outsider.email.trim().to_lowercase() == wanted {
                        let index = keys
                            .index
                            .blind_index(&[b"outside user", outsider.external_id.as_bytes()]);
                        plan.outsiders.push((integration.id, index));
                    }
                }
            }
            if page.len() < 500 {
                break;
            }
            after = page.last().map(|i| (i.connected_at, i.id));
        }
        Ok(plan)
    }
}
