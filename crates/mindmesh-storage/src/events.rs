//! What the storage service consumes: `integration.disconnected` — destroy the
//! integration's data key (its documents are unreadable at once, in every copy), delete
//! its documents and terms, and attest with a signed `deletion.completed`. The deletion,
//! the inbox entry and the attestation commit in one transaction.

use std::collections::HashMap;

use mindmesh_kit::bus::consume::EventHandler;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::IntegrationId;
use mindmesh_kit::{Error, Result, events, inbox};
use mindmesh_proto::mindmesh::events::v1::Envelope;
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use sea_orm::TransactionTrait;

use crate::documents::Documents;

/// The service's durable consumer name.
pub const CONSUMER: &str = "storage";

/// Applies lifecycle events to the document store.
pub struct StorageEvents {
    ctx: ServiceContext,
    documents: Documents,
}

impl StorageEvents {
    /// A handler over the service's context and documents.
    pub fn new(ctx: ServiceContext, documents: Documents) -> Self {
        StorageEvents { ctx, documents }
    }
}

#[async_trait::async_trait]
impl EventHandler for StorageEvents {
    async fn handle(&self, envelope: &Envelope) -> Result<()> {
        let Some(Payload::IntegrationDisconnected(d)) = &envelope.payload else {
            return Ok(());
        };
        let tenant = events::tenant(envelope)?
            .ok_or_else(|| Error::Bus("integration.disconnected without tenant".into()))?;
        let integration: IntegrationId = d
            .integration_id
            .parse()
            .map_err(|_| Error::Bus("integration_id is not a UUID".into()))?;
        if inbox::handled(self.documents.db(), CONSUMER, &envelope.id).await? {
            return Ok(());
        }
        // Key first, then batches; an interrupted erasure resumes on redelivery.
        let Some(erasure) = self
            .documents
            .erase_integration(tenant, integration, &d.cascade_id, None)
            .await?
        else {
            return Err(Error::Internal("erasure stopped before the end".into()));
        };
        let deleted = erasure.deleted;
        let txn = self.documents.db().begin().await?;
        if !inbox::claim(&txn, CONSUMER, &envelope.id).await? {
            return Ok(());
        }
        self.ctx
            .attest(
                &txn,
                Some(tenant),
                &d.cascade_id,
                HashMap::from([("documents".to_owned(), deleted)]),
                &erasure.destroyed,
            )
            .await?;
        Documents::forget_erasure(&txn, &d.cascade_id).await?;
        txn.commit().await?;
        self.ctx.relay.wake();
        tracing::info!(tenant_id = %tenant, integration_id = %integration, cascade_id = %d.cascade_id, deleted, "integration's documents erased");
        Ok(())
    }
}
