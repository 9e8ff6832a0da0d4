//! What the dsar service consumes: the cascades it takes part in —
//! `account.deletion_requested` (a user or a whole tenant) and
//! `subject.erasure_requested`.
//!
//! - For a whole tenant: the tenant is recorded erased (no request is filed in it again)
//!   and every request of it is deleted.
//! - For one person: the requests about them are the record that their rights were
//!   honoured (GDPR Art. 5(2)); they are kept, their email sealed, and the part is
//!   attested with nothing deleted.
//!
//! The effect and the attestation commit with the inbox entry.

use std::collections::HashMap;

use mindmesh_kit::bus::consume::EventHandler;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::CascadeId;
use mindmesh_kit::tenants::Tenants;
use mindmesh_kit::{Error, Result, events, inbox};
use mindmesh_proto::mindmesh::events::v1::Envelope;
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use sea_orm::TransactionTrait;

/// The dsar service's consumer name (its durable consumer on the bus).
pub const CONSUMER: &str = "dsar";

/// Carries out and attests the dsar service's part of the cascades about people.
pub struct DsarEvents {
    ctx: ServiceContext,
    tenants: Tenants,
}

impl DsarEvents {
    /// A handler attesting with `ctx`'s key, recording erased `tenants`.
    pub fn new(ctx: ServiceContext, tenants: Tenants) -> Self {
        DsarEvents { ctx, tenants }
    }
}

#[async_trait::async_trait]
impl EventHandler for DsarEvents {
    async fn handle(&self, envelope: &Envelope) -> Result<()> {
        let (cascade, whole_tenant) = match &envelope.payload {
            Some(Payload::AccountDeletionRequested(d)) => (&d.cascade_id, d.user_id.is_empty()),
            Some(Payload::SubjectErasureRequested(e)) => (&e.cascade_id, false),
            _ => return Ok(()),
        };
        let cascade = CascadeId::parse_event_field("cascade_id", cascade)?;
        let tenant = events::tenant(envelope)?
            .ok_or_else(|| Error::MalformedEvent(format!("{} without tenant", envelope.r#type)))?;
        let txn = self.ctx.db.begin().await?;
        if !inbox::claim(&txn, CONSUMER, &envelope.id).await? {
            return Ok(());
        }
        let mut counts = HashMap::new();
        if whole_tenant {
            self.tenants.mark_erased(&txn, tenant, cascade).await?;
            let removed = crate::store::requests::delete_tenant(&txn, tenant).await?;
            counts.insert("requests".to_owned(), removed);
        }
        self.ctx
            .attest(&txn, Some(tenant), cascade, counts.clone(), &[])
            .await?;
        txn.commit().await?;
        if whole_tenant {
            self.ctx
                .settle_erasure(&["dsar_requests"], counts.values().sum())
                .await?;
        }
        self.ctx.relay.wake();
        Ok(())
    }
}
