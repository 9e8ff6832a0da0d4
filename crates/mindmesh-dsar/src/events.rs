//! What the dsar service consumes: the cascades it takes part in —
//! `account.deletion_requested` (a user or a whole tenant) and
//! `subject.erasure_requested`. It holds no data about anyone yet (requests, exports and
//! preferences are not built), so it attests each with nothing deleted; the
//! attestation commits with the inbox entry.

use std::collections::HashMap;

use mindmesh_kit::bus::consume::EventHandler;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::CascadeId;
use mindmesh_kit::{Error, Result, events, inbox};
use mindmesh_proto::mindmesh::events::v1::Envelope;
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use sea_orm::TransactionTrait;

/// The dsar service's consumer name (its durable consumer on the bus).
pub const CONSUMER: &str = "dsar";

/// Attests the dsar service's part of the cascades about people.
pub struct DsarEvents {
    ctx: ServiceContext,
}

impl DsarEvents {
    /// A handler attesting with `ctx`'s key.
    pub fn new(ctx: ServiceContext) -> Self {
        DsarEvents { ctx }
    }
}

#[async_trait::async_trait]
impl EventHandler for DsarEvents {
    async fn handle(&self, envelope: &Envelope) -> Result<()> {
        let cascade = match &envelope.payload {
            Some(Payload::AccountDeletionRequested(d)) => &d.cascade_id,
            Some(Payload::SubjectErasureRequested(e)) => &e.cascade_id,
            _ => return Ok(()),
        };
        let cascade = CascadeId::parse_event_field("cascade_id", cascade)?;
        let tenant = events::tenant(envelope)?
            .ok_or_else(|| Error::MalformedEvent(format!("{} without tenant", envelope.r#type)))?;
        let txn = self.ctx.db.begin().await?;
        if !inbox::claim(&txn, CONSUMER, &envelope.id).await? {
            return Ok(());
        }
        self.ctx
            .attest(&txn, Some(tenant), cascade, HashMap::new(), &[])
            .await?;
        txn.commit().await?;
        self.ctx.relay.wake();
        Ok(())
    }
}
