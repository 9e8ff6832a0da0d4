//! What the dsar service consumes: `notification.requested` (queued for the
//! [`crate::notifier`], once per event), and the cascades it takes part in —
//! `account.deletion_requested` (a user or a whole tenant) and
//! `subject.erasure_requested`.
//!
//! - For a whole tenant: the tenant is recorded erased (no request is filed in it again)
//!   and every request of it is deleted.
//! - For one person: the consents their account gave or withdrew are deleted; the
//!   requests about them are the record that their rights were honoured (GDPR Art.
//!   5(2)): they are kept, their email sealed.
//!
//! The effect and the attestation commit with the inbox entry. It also builds the events
//! dsar publishes: consents given or withdrawn, restrictions, erasures.

use std::collections::HashMap;

use mindmesh_kit::Service;
use mindmesh_kit::bus::consume::EventHandler;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::events::EventSeal;
use mindmesh_kit::ids::CascadeId;
use mindmesh_kit::ids::{TenantId, UserId};
use mindmesh_kit::tenants::Tenants;
use mindmesh_kit::{Error, Result, events, inbox};
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use mindmesh_proto::mindmesh::events::v1::{
    ConsentGiven, ConsentWithdrawn, Envelope, NotificationRequested, ProcessorSettingsSet,
    SubjectErasureRequested, SubjectRestricted, SubjectUnrestricted,
};
use sea_orm::TransactionTrait;

use crate::notifier::{Notice, Notifier, Origin};

/// `consent.given` (`granted`) or `consent.withdrawn`: `user` of `tenant` about `purpose`.
pub fn consent_changed(tenant: TenantId, user: UserId, purpose: &str, granted: bool) -> Envelope {
    let (user_id, purpose) = (user.to_string(), purpose.to_owned());
    let payload = if granted {
        Payload::ConsentGiven(ConsentGiven { user_id, purpose })
    } else {
        Payload::ConsentWithdrawn(ConsentWithdrawn { user_id, purpose })
    };
    mindmesh_kit::events::envelope(Service::Dsar, Some(tenant), payload)
}

/// `subject.restricted` (or, when `lift`, `subject.unrestricted`) for request
/// `request_id` about the person with `email` (and account `user`, if any) in `tenant`.
pub fn restriction_changed(
    seal: &EventSeal,
    tenant: TenantId,
    request_id: &str,
    email: &str,
    user: Option<UserId>,
    lift: bool,
) -> Result<Envelope> {
    let (request_id, sealed_email) = (request_id.to_owned(), seal.seal_email(tenant, email)?);
    let user_id = user.map(|u| u.to_string()).unwrap_or_default();
    let payload = if lift {
        Payload::SubjectUnrestricted(SubjectUnrestricted {
            request_id,
            sealed_email,
            user_id,
        })
    } else {
        Payload::SubjectRestricted(SubjectRestricted {
            request_id,
            sealed_email,
            user_id,
        })
    };
    Ok(mindmesh_kit::events::envelope(
        Service::Dsar,
        Some(tenant),
        payload,
    ))
}

/// `subject.erasure_requested`: cascade `cascade` erasing the person with `email` (and
/// account `user`, if any) in `tenant`, for request `request_id`.
pub fn erasure_requested(
    seal: &EventSeal,
    tenant: TenantId,
    cascade: CascadeId,
    request_id: &str,
    email: &str,
    user: Option<UserId>,
) -> Result<Envelope> {
    Ok(mindmesh_kit::events::envelope(
        Service::Dsar,
        Some(tenant),
        Payload::SubjectErasureRequested(SubjectErasureRequested {
            cascade_id: cascade.to_string(),
            request_id: request_id.to_owned(),
            sealed_email: seal.seal_email(tenant, email)?,
            user_id: user.map(|u| u.to_string()).unwrap_or_default(),
        }),
    ))
}

/// `processor.settings_set`: `tenant`'s processor switches are now `switches`.
pub fn processors_set(tenant: TenantId, switches: mindmesh_kit::processing::Switches) -> Envelope {
    mindmesh_kit::events::envelope(
        Service::Dsar,
        Some(tenant),
        Payload::ProcessorSettingsSet(ProcessorSettingsSet {
            analytics_enabled: switches.analytics,
            llm_enabled: switches.llm,
        }),
    )
}

/// The dsar service's consumer name (its durable consumer on the bus).
pub const CONSUMER: &str = "dsar";

/// Carries out and attests the dsar service's part of the cascades about people.
pub struct DsarEvents {
    ctx: ServiceContext,
    tenants: Tenants,
    notifier: Notifier,
}

impl DsarEvents {
    /// A handler attesting with `ctx`'s key, recording erased `tenants`, queueing
    /// notifications for `notifier`.
    pub fn new(ctx: ServiceContext, tenants: Tenants, notifier: Notifier) -> Self {
        DsarEvents {
            ctx,
            tenants,
            notifier,
        }
    }

    /// Queues the mails of a `notification.requested`, once per event.
    async fn notify(&self, envelope: &Envelope, request: &NotificationRequested) -> Result<()> {
        let tenant = events::tenant(envelope)?
            .ok_or_else(|| Error::MalformedEvent("notification.requested without tenant".into()))?;
        let txn = self.ctx.db.begin().await?;
        if !inbox::claim(&txn, CONSUMER, &envelope.id).await? {
            return Ok(());
        }
        let origin = Origin {
            event_id: &envelope.id,
            tenant,
            breach_id: None,
        };
        let notice = Notice {
            user_id: request.user_id.clone(),
            template: request.template.clone(),
            administrative: request.administrative,
            params: request
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        self.notifier
            .queue(&txn, &origin, &notice, chrono::Utc::now())
            .await?;
        txn.commit().await?;
        self.notifier.wake();
        Ok(())
    }
}

#[async_trait::async_trait]
impl EventHandler for DsarEvents {
    async fn handle(&self, envelope: &Envelope) -> Result<()> {
        if let Some(Payload::NotificationRequested(request)) = &envelope.payload {
            return self.notify(envelope, request).await;
        }
        let (cascade, whole_tenant, user) = match &envelope.payload {
            Some(Payload::AccountDeletionRequested(d)) => {
                (&d.cascade_id, d.user_id.is_empty(), &d.user_id)
            }
            Some(Payload::SubjectErasureRequested(e)) => (&e.cascade_id, false, &e.user_id),
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
            let removed = crate::store::settings::delete(&txn, tenant, None).await?;
            counts.insert("settings".to_owned(), removed);
            let removed = crate::store::notifications::delete(&txn, tenant, None).await?;
            counts.insert("notifications".to_owned(), removed);
        } else if !user.is_empty() {
            let user: mindmesh_kit::ids::UserId = user
                .parse()
                .map_err(|_| Error::MalformedEvent("user_id is not a UUID".into()))?;
            let removed =
                crate::store::consents::delete_user(&txn, tenant, &user.to_string()).await?;
            counts.insert("consents".to_owned(), removed);
            let removed =
                crate::store::settings::delete(&txn, tenant, Some(&user.to_string())).await?;
            counts.insert("preferences".to_owned(), removed);
            let removed =
                crate::store::notifications::delete(&txn, tenant, Some(&user.to_string())).await?;
            counts.insert("notifications".to_owned(), removed);
        }
        self.ctx
            .attest(&txn, Some(tenant), cascade, counts.clone(), &[])
            .await?;
        txn.commit().await?;
        self.ctx
            .settle_erasure(
                &[
                    "dsar_requests",
                    "dsar_consents",
                    "dsar_preferences",
                    "dsar_notifications",
                    "dsar_breaches",
                ],
                counts.values().sum(),
            )
            .await?;
        self.ctx.relay.wake();
        Ok(())
    }
}
