//! What the storage service consumes — each a deletion cascade (DESIGN.md §5): destroy
//! the scope's keys (its documents are unreadable at once, in every copy), delete its
//! documents and terms in resumable batches, and attest with a signed
//! `deletion.completed` committed with the inbox entry.
//!
//! - `integration.connected`: the integration is known, and its documents taken;
//! - `integration.disconnected`: the integration's documents;
//! - `account.deletion_requested`: without a user, the whole tenant (every key, every
//!   document, every tombstone); with one, that person's native documents and key;
//! - `subject.erasure_requested`: the native documents of the account with that email
//!   (asked of the permissions service), if there is one;
//! - `legal_hold.placed` / `legal_hold.released`: mirrored (`mindmesh_kit::holds`); a
//!   cascade's part that a hold keeps erases nothing and is attested retained, and the
//!   purge of archived documents passes over what a hold keeps;
//! - `retention.policy_set`: the tenant's days before archived documents are purged.

use std::collections::HashMap;

use mindmesh_kit::bus::consume::EventHandler;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::holds::{self, HeldScope};
use mindmesh_kit::ids::{CascadeId, DocumentId, IntegrationId, TenantId};
use mindmesh_kit::integrations::Integrations;
use mindmesh_kit::processing;
use mindmesh_kit::tenants::Tenants;
use mindmesh_kit::{Error, Result, Service, events, inbox};
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use mindmesh_proto::mindmesh::events::v1::{DocumentArchived, DocumentRestored, Envelope};
use sea_orm::TransactionTrait;

use crate::access::Gate;
use crate::documents::{Documents, Erasure, ErasureScope};

/// The service's durable consumer name.
pub const CONSUMER: &str = "storage";

/// `document.archived` (when `archived`) or `document.restored`: a person archived or
/// restored `document` of `tenant` (imported through `integration`, if it was).
pub fn document_state_changed(
    tenant: TenantId,
    document: DocumentId,
    integration: Option<IntegrationId>,
    archived: bool,
) -> Envelope {
    let document_id = document.to_string();
    let integration_id = integration.map(|i| i.to_string()).unwrap_or_default();
    let payload = if archived {
        Payload::DocumentArchived(DocumentArchived {
            document_id,
            integration_id,
        })
    } else {
        Payload::DocumentRestored(DocumentRestored {
            document_id,
            integration_id,
        })
    };
    events::envelope(Service::Storage, Some(tenant), payload)
}

/// Applies lifecycle events to the document store.
pub struct StorageEvents {
    ctx: ServiceContext,
    documents: Documents,
    gate: Gate,
    tenants: Tenants,
}

impl StorageEvents {
    /// A handler over the service's context and documents, asking permissions through
    /// `gate` who an email belongs to, and recording erased `tenants`.
    pub fn new(ctx: ServiceContext, documents: Documents, gate: Gate, tenants: Tenants) -> Self {
        StorageEvents {
            ctx,
            documents,
            gate,
            tenants,
        }
    }

    /// `retention.policy_set`: the tenant keeps archived documents `days` days.
    async fn set_policy(&self, envelope: &Envelope, days: u32) -> Result<()> {
        let tenant = events::tenant(envelope)?
            .ok_or_else(|| Error::MalformedEvent("retention.policy_set without tenant".into()))?;
        if days == 0 {
            return Err(Error::MalformedEvent(
                "retention.policy_set with archive_purge_days 0".into(),
            ));
        }
        let txn = self.documents.db().begin().await?;
        if inbox::claim(&txn, CONSUMER, &envelope.id).await? {
            crate::store::policies::set(&txn, tenant, days).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// `integration.connected`: from here documents of it are taken.
    async fn learn(&self, envelope: &Envelope, integration_id: &str) -> Result<()> {
        let tenant = events::tenant(envelope)?
            .ok_or_else(|| Error::MalformedEvent("integration.connected without tenant".into()))?;
        let integration = integration_id
            .parse()
            .map_err(|_| Error::MalformedEvent("integration_id is not a UUID".into()))?;
        let txn = self.documents.db().begin().await?;
        if inbox::claim(&txn, CONSUMER, &envelope.id).await? {
            Integrations::connected(&txn, tenant, integration).await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl EventHandler for StorageEvents {
    async fn handle(&self, envelope: &Envelope) -> Result<()> {
        if holds::apply_event(&self.ctx, CONSUMER, envelope).await?
            || processing::apply_event(&self.ctx, CONSUMER, envelope).await?
        {
            return Ok(());
        }
        let cascade = match &envelope.payload {
            Some(Payload::IntegrationConnected(c)) => {
                return self.learn(envelope, &c.integration_id).await;
            }
            Some(Payload::RetentionPolicySet(p)) => {
                return self.set_policy(envelope, p.archive_purge_days).await;
            }
            Some(Payload::IntegrationDisconnected(d)) => &d.cascade_id,
            Some(Payload::AccountDeletionRequested(d)) => &d.cascade_id,
            Some(Payload::SubjectErasureRequested(e)) => &e.cascade_id,
            _ => return Ok(()),
        };
        let cascade = CascadeId::parse_event_field("cascade_id", cascade)?;
        let tenant = events::tenant(envelope)?
            .ok_or_else(|| Error::MalformedEvent(format!("{} without tenant", envelope.r#type)))?;
        if inbox::handled(self.documents.db(), CONSUMER, &envelope.id).await? {
            return Ok(());
        }
        let scope = match &envelope.payload {
            Some(Payload::IntegrationDisconnected(d)) => Some(ErasureScope::Integration(
                d.integration_id
                    .parse()
                    .map_err(|_| Error::MalformedEvent("integration_id is not a UUID".into()))?,
            )),
            Some(Payload::AccountDeletionRequested(d)) if d.user_id.is_empty() => {
                Some(ErasureScope::Tenant)
            }
            Some(Payload::AccountDeletionRequested(d)) => {
                Some(ErasureScope::Owner(d.user_id.parse().map_err(|_| {
                    Error::MalformedEvent("user_id is not a UUID".into())
                })?))
            }
            // The person's native documents, if they have an account (the one the
            // request found: permissions may have erased it already); storage keeps
            // nothing else keyed to a person.
            Some(Payload::SubjectErasureRequested(e)) if !e.user_id.is_empty() => {
                Some(ErasureScope::Owner(e.user_id.parse().map_err(|_| {
                    Error::MalformedEvent("user_id is not a UUID".into())
                })?))
            }
            Some(Payload::SubjectErasureRequested(e)) => {
                let email = self.ctx.event_seal.open_email(tenant, &e.sealed_email)?;
                self.gate
                    .user_by_email(tenant, &email)
                    .await?
                    .map(ErasureScope::Owner)
            }
            _ => None,
        };
        // Before anything is erased: a late write of the scope is refused.
        if let Some(ErasureScope::Integration(integration)) = &scope {
            Integrations::disconnected(self.documents.db(), tenant, *integration).await?;
        }
        // Kept under a legal hold: nothing erased, the part retained until the release.
        let held = match &scope {
            Some(ErasureScope::Integration(i)) => Some(HeldScope::Integration(*i)),
            Some(ErasureScope::Tenant) => Some(HeldScope::Tenant),
            Some(ErasureScope::Owner(u)) => Some(HeldScope::User(*u)),
            None => None,
        };
        if let Some(held) = held
            && let Some(hold) = holds::keeping(self.documents.db(), tenant, &held).await?
        {
            let txn = self.documents.db().begin().await?;
            if inbox::claim(&txn, CONSUMER, &envelope.id).await? {
                self.ctx
                    .attest_retained(&txn, tenant, cascade, hold)
                    .await?;
            }
            txn.commit().await?;
            self.ctx.relay.wake();
            return Ok(());
        }
        if let Some(ErasureScope::Tenant) = &scope {
            self.tenants
                .mark_erased(self.documents.db(), tenant, cascade)
                .await?;
        }
        // Keys first, then batches; an interrupted erasure resumes on redelivery.
        let erasure = match &scope {
            Some(scope) => self
                .documents
                .erase(tenant, scope, cascade, None)
                .await?
                .ok_or_else(|| Error::Internal("erasure stopped before the end".into()))?,
            None => Erasure {
                deleted: 0,
                destroyed: Vec::new(),
            },
        };
        let txn = self.documents.db().begin().await?;
        if !inbox::claim(&txn, CONSUMER, &envelope.id).await? {
            return Ok(());
        }
        if matches!(scope, Some(ErasureScope::Tenant)) {
            crate::store::policies::forget(&txn, tenant).await?;
        }
        match &scope {
            Some(ErasureScope::Tenant) => {
                mindmesh_kit::activity::forget(&txn, tenant, None).await?;
                processing::forget(&txn, tenant, None).await?;
            }
            Some(ErasureScope::Owner(user)) => {
                mindmesh_kit::activity::forget(&txn, tenant, Some(*user)).await?;
                processing::forget(&txn, tenant, Some(*user)).await?;
            }
            _ => {}
        }
        self.ctx
            .attest(
                &txn,
                Some(tenant),
                cascade,
                HashMap::from([("documents".to_owned(), erasure.deleted)]),
                &erasure.destroyed,
            )
            .await?;
        Documents::forget_erasure(&txn, cascade).await?;
        txn.commit().await?;
        self.ctx
            .settle_erasure(
                &["documents", "index_blocks", "term_blocks", "tombstones"],
                erasure.deleted,
            )
            .await?;
        self.ctx.relay.wake();
        tracing::info!(
            tenant_id = %tenant,
            cascade_id = %cascade,
            scope = scope.as_ref().map(ToString::to_string).unwrap_or_default(),
            deleted = erasure.deleted,
            "documents erased"
        );
        Ok(())
    }
}
