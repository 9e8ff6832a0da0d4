//! What retention consumes. Each effect commits with the event id in the inbox, so a
//! redelivered event changes nothing.

use mindmesh_kit::bus::consume::EventHandler;
use mindmesh_kit::grpc::from_timestamp;
use mindmesh_kit::ids::{CascadeId, UserId};
use mindmesh_kit::tenants::Tenants;
use mindmesh_kit::{Error, Result, events, inbox};
use mindmesh_proto::mindmesh::events::v1::Envelope;
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use sea_orm::TransactionTrait;

use crate::activity::Activity;

/// The retention service's consumer name (its durable consumer on the bus).
pub const CONSUMER: &str = "retention";

/// Applies `account.activity` and `account.deletion_requested`.
pub struct RetentionEvents {
    activity: Activity,
    tenants: Tenants,
}

impl RetentionEvents {
    /// A handler writing to `activity`, recording erased `tenants`.
    pub fn new(activity: Activity, tenants: Tenants) -> Self {
        RetentionEvents { activity, tenants }
    }
}

fn user_id(value: &str) -> Result<UserId> {
    value
        .parse()
        .map_err(|_| Error::MalformedEvent("event user_id is not a UUID".into()))
}

#[async_trait::async_trait]
impl EventHandler for RetentionEvents {
    async fn handle(&self, envelope: &Envelope) -> Result<()> {
        let relevant = matches!(
            envelope.payload,
            Some(Payload::AccountActivity(_)) | Some(Payload::AccountDeletionRequested(_))
        );
        if !relevant {
            return Ok(());
        }
        let tenant = events::tenant(envelope)?
            .ok_or_else(|| Error::MalformedEvent("account event without tenant".into()))?;
        let txn = self.activity.db().begin().await?;
        if !inbox::claim(&txn, CONSUMER, &envelope.id).await? {
            return Ok(());
        }
        match &envelope.payload {
            Some(Payload::AccountActivity(a)) => {
                let at = match &envelope.occurred_at {
                    Some(t) => from_timestamp("occurred_at", t)?,
                    None => chrono::Utc::now(),
                };
                self.activity
                    .touch(&txn, tenant, user_id(&a.user_id)?, at)
                    .await?;
            }
            Some(Payload::AccountDeletionRequested(d)) => {
                let cascade = CascadeId::parse_event_field("cascade_id", &d.cascade_id)?;
                let user = if d.user_id.is_empty() {
                    // The whole tenant: no activity of it is recorded again.
                    self.tenants.mark_erased(&txn, tenant, cascade).await?;
                    None
                } else {
                    Some(user_id(&d.user_id)?)
                };
                let removed = self.activity.forget(&txn, tenant, user).await?;
                tracing::info!(tenant_id = %tenant, cascade_id = %d.cascade_id, removed, "account activity forgotten");
            }
            _ => {}
        }
        txn.commit().await?;
        Ok(())
    }
}
