//! The events of the ingest service: those it publishes ([`integration_connected`],
//! [`integration_disconnected`]) and those it consumes, the deletion cascades it takes
//! part in:
//!
//! - `account.deletion_requested` for a whole tenant: every integration of the tenant
//!   stops syncing, its keys are destroyed (the sealed credentials open nowhere), and
//!   its integrations, credentials, items and skip records are deleted;
//! - for one person: ingest keeps nothing keyed to an account (credentials belong to the
//!   tenant's integrations), so it only attests;
//! - `subject.erasure_requested`: the connector settings holding the person's email
//!   (e.g. a Drive `admin_email`) are removed, and the outside people with that email
//!   whom grants named are forgotten;
//! - `integration.disconnected` from another service (retention asking again after a
//!   restore): the integration is erased again, as its disconnect did.
//!
//! Each effect commits with the inbox entry and a signed `deletion.completed`.

use std::collections::HashMap;
use std::sync::Arc;

use mindmesh_kit::bus::consume::EventHandler;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::{CascadeId, IntegrationId, TenantId};
use mindmesh_kit::tenants::Tenants;
use mindmesh_kit::{Error, Result, Service, events, inbox};
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use mindmesh_proto::mindmesh::events::v1::{
    Envelope, IntegrationConnected, IntegrationDisconnected,
};
use sea_orm::TransactionTrait;

use crate::store::Store;
use crate::sync::Engine;

/// `integration.connected`: from here the other services take writes for `integration`.
pub fn integration_connected(
    from: Service,
    tenant: TenantId,
    integration: IntegrationId,
    kind: &str,
) -> Envelope {
    events::envelope(
        from,
        Some(tenant),
        Payload::IntegrationConnected(IntegrationConnected {
            integration_id: integration.to_string(),
            kind: kind.to_owned(),
        }),
    )
}

/// `integration.disconnected`: every service erases what `integration` brought, as
/// its part of `cascade`.
pub fn integration_disconnected(
    from: Service,
    tenant: TenantId,
    integration: IntegrationId,
    cascade: CascadeId,
) -> Envelope {
    events::envelope(
        from,
        Some(tenant),
        Payload::IntegrationDisconnected(IntegrationDisconnected {
            integration_id: integration.to_string(),
            cascade_id: cascade.to_string(),
        }),
    )
}

/// The service's durable consumer name.
pub const CONSUMER: &str = "ingest";

/// Applies the deletion cascades to ingest's own data.
pub struct IngestEvents {
    ctx: ServiceContext,
    store: Store,
    engine: Arc<Engine>,
    tenants: Tenants,
}

impl IngestEvents {
    /// A handler over the service's store, stopping syncs through `engine` and
    /// recording erased `tenants`.
    pub fn new(ctx: ServiceContext, store: Store, engine: Arc<Engine>, tenants: Tenants) -> Self {
        IngestEvents {
            ctx,
            store,
            engine,
            tenants,
        }
    }
}

#[async_trait::async_trait]
impl EventHandler for IngestEvents {
    async fn handle(&self, envelope: &Envelope) -> Result<()> {
        // Processor switches, restrictions and consents: the gate of its usage analytics.
        if mindmesh_kit::processing::apply_event(&self.ctx, CONSUMER, envelope).await? {
            return Ok(());
        }
        // A disconnect ingest did not publish itself: retention asking again after a
        // restore brought the integration back.
        if let Some(Payload::IntegrationDisconnected(d)) = &envelope.payload
            && envelope.source != Service::Ingest.to_proto() as i32
        {
            let tenant = events::tenant(envelope)?.ok_or_else(|| {
                Error::MalformedEvent("integration.disconnected without tenant".into())
            })?;
            let cascade = CascadeId::parse_event_field("cascade_id", &d.cascade_id)?;
            let id: IntegrationId = d
                .integration_id
                .parse()
                .map_err(|_| Error::MalformedEvent("integration_id is not a UUID".into()))?;
            self.engine.stop(id).await;
            return self
                .store
                .erase_again(tenant, id, cascade, &envelope.id)
                .await;
        }
        let (cascade, whole_tenant, user) = match &envelope.payload {
            Some(Payload::AccountDeletionRequested(d)) => {
                (&d.cascade_id, d.user_id.is_empty(), d.user_id.as_str())
            }
            Some(Payload::SubjectErasureRequested(e)) => (&e.cascade_id, false, e.user_id.as_str()),
            _ => return Ok(()),
        };
        let user: Option<mindmesh_kit::ids::UserId> = match user {
            "" => None,
            id => Some(
                id.parse()
                    .map_err(|_| Error::MalformedEvent("user_id is not a UUID".into()))?,
            ),
        };
        let cascade = CascadeId::parse_event_field("cascade_id", cascade)?;
        let tenant = events::tenant(envelope)?
            .ok_or_else(|| Error::MalformedEvent(format!("{} without tenant", envelope.r#type)))?;
        if inbox::handled(self.store.db(), CONSUMER, &envelope.id).await? {
            return Ok(());
        }
        let mut counts = HashMap::new();
        let mut destroyed = Vec::new();
        let forgetting = match &envelope.payload {
            Some(Payload::SubjectErasureRequested(e)) => {
                let email = self.ctx.event_seal.open_email(tenant, &e.sealed_email)?;
                Some(self.store.forget_person(tenant, &email).await?)
            }
            _ => None,
        };
        if whole_tenant {
            // Nothing is connected for the tenant again, and no sync of it may write
            // again: leases refused, running ones stopped.
            self.tenants
                .mark_erased(self.store.db(), tenant, cascade)
                .await?;
            for id in self.store.forbid_syncs(tenant).await? {
                self.engine.stop(id).await;
            }
            destroyed = self.ctx.keystore.shred_tenant(tenant).await?;
        }
        let txn = self.store.db().begin().await?;
        if !inbox::claim(&txn, CONSUMER, &envelope.id).await? {
            return Ok(());
        }
        if whole_tenant {
            counts = Store::erase_tenant(&txn, tenant).await?;
        }
        if let Some(forgetting) = &forgetting {
            counts = forgetting.apply(&txn).await?;
        }
        // Who was active when goes with the person, or the tenant.
        if whole_tenant || user.is_some() {
            mindmesh_kit::activity::forget(&txn, tenant, user).await?;
            mindmesh_kit::processing::forget(&txn, tenant, user).await?;
        }
        self.ctx
            .attest(&txn, Some(tenant), cascade, counts.clone(), &destroyed)
            .await?;
        txn.commit().await?;
        self.ctx
            .settle_erasure(&crate::store::ERASED_TABLES, counts.values().sum())
            .await?;
        self.ctx.relay.wake();
        if whole_tenant {
            tracing::info!(tenant_id = %tenant, cascade_id = %cascade, integrations = counts.get("integrations").copied().unwrap_or(0), "tenant's integrations erased");
        }
        Ok(())
    }
}
