//! What the permissions service consumes, and the attestations it publishes.
//!
//! - `integration.connected`: the integration is known; its principals and grants are
//!   taken from here (see `mindmesh_kit::integrations`).
//! - `integration.disconnected`: destroy the integration's data key (its principals'
//!   sealed emails and names are unreadable from then on, in every copy), delete its
//!   principals, memberships and grants, and attest with a signed `deletion.completed`.
//! - `subject.erasure_requested`: delete the person's account (key shredded first), the
//!   principals with the subject's email and the memberships naming them; attest.
//! - `account.deletion_requested` published by another service: for a whole tenant
//!   (retention expiring an inactive one), the tenant's erasure as `DeleteTenant` does
//!   it; for one person (retention asking again after a restore brought the account
//!   back), the account's erasure as `DeleteUser` does it.
//!
//! - `legal_hold.placed` / `legal_hold.released`: mirrored (`mindmesh_kit::holds`);
//!   a part of a cascade that a hold keeps erases nothing and is attested retained.
//!
//! Each effect, its inbox entry and its outbox event commit in one transaction.

use std::collections::HashMap;
use std::sync::Arc;

use mindmesh_kit::bus::consume::EventHandler;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::holds::{self, HeldScope};
use mindmesh_kit::ids::{CascadeId, HoldId, IntegrationId, TenantId, UserId};
use mindmesh_kit::integrations::Integrations;
use mindmesh_kit::keys::KeyScope;
use mindmesh_kit::{Error, Result, Service, events, inbox};
use mindmesh_proto::mindmesh::events::v1::envelope::Payload;
use mindmesh_proto::mindmesh::events::v1::{AccountActivity, AccountDeletionRequested, Envelope};
use sea_orm::TransactionTrait;

use crate::accounts::Accounts;
use crate::policy::{Policy, Removed};

/// The service's durable consumer name.
pub const CONSUMER: &str = "permissions";

/// Applies lifecycle events to the permission store.
pub struct PermissionEvents {
    ctx: ServiceContext,
    policy: Arc<Policy>,
    accounts: Accounts,
}

impl PermissionEvents {
    /// A handler over the service's context, policy and accounts.
    pub fn new(ctx: ServiceContext, policy: Arc<Policy>, accounts: Accounts) -> Self {
        PermissionEvents {
            ctx,
            policy,
            accounts,
        }
    }

    /// Attests this service's part of `cascade` retained under `hold`, once per event.
    async fn retain(
        &self,
        envelope: &Envelope,
        tenant: TenantId,
        cascade: CascadeId,
        hold: HoldId,
    ) -> Result<()> {
        let txn = self.ctx.db.begin().await?;
        if inbox::claim(&txn, CONSUMER, &envelope.id).await? {
            self.ctx
                .attest_retained(&txn, tenant, cascade, hold)
                .await?;
        }
        txn.commit().await?;
        self.ctx.relay.wake();
        Ok(())
    }
}

/// `account.activity` of kind `created`: `user` was created in `tenant`.
pub fn account_created(from: Service, tenant: TenantId, user: UserId) -> Envelope {
    events::envelope(
        from,
        Some(tenant),
        Payload::AccountActivity(AccountActivity {
            user_id: user.to_string(),
            kind: "created".to_owned(),
        }),
    )
}

/// `account.deletion_requested`: the cascade `cascade` erasing the account `user` (with
/// its email, by which the other services find what they hold about the person), or
/// the whole `tenant` when `user` is `None`.
pub fn account_deletion_requested(
    ctx: &ServiceContext,
    tenant: TenantId,
    cascade: CascadeId,
    user: Option<(UserId, String)>,
) -> Result<Envelope> {
    let (user_id, sealed_email) = match user {
        Some((id, email)) => (id.to_string(), ctx.event_seal.seal_email(tenant, &email)?),
        None => (String::new(), Vec::new()),
    };
    Ok(events::envelope(
        ctx.service,
        Some(tenant),
        Payload::AccountDeletionRequested(AccountDeletionRequested {
            cascade_id: cascade.to_string(),
            user_id,
            sealed_email,
        }),
    ))
}

fn counts(removed: &Removed) -> HashMap<String, u64> {
    HashMap::from([
        ("principals".to_owned(), removed.principals),
        ("memberships".to_owned(), removed.memberships),
        ("grants".to_owned(), removed.grants),
    ])
}

/// The erased rows gone from the files too (see `mindmesh_kit::db::settle_erasure`).
async fn settle(ctx: &ServiceContext, removed: &Removed) -> Result<()> {
    ctx.settle_erasure(
        &["principals", "memberships", "grants"],
        removed.principals + removed.memberships + removed.grants,
    )
    .await
}

#[async_trait::async_trait]
impl EventHandler for PermissionEvents {
    async fn handle(&self, envelope: &Envelope) -> Result<()> {
        if holds::apply_event(&self.ctx, CONSUMER, envelope).await? {
            return Ok(());
        }
        let relevant = match &envelope.payload {
            Some(Payload::IntegrationConnected(_))
            | Some(Payload::IntegrationDisconnected(_))
            | Some(Payload::SubjectErasureRequested(_)) => true,
            // Our own deletion requests were carried out (and attested) by the RPC.
            Some(Payload::AccountDeletionRequested(_)) => {
                envelope.source != Service::Permissions.to_proto() as i32
            }
            _ => false,
        };
        if !relevant {
            return Ok(());
        }
        let tenant = events::tenant(envelope)?
            .ok_or_else(|| Error::MalformedEvent("lifecycle event without tenant".into()))?;
        match &envelope.payload {
            Some(Payload::IntegrationConnected(c)) => {
                let integration: IntegrationId = c
                    .integration_id
                    .parse()
                    .map_err(|_| Error::MalformedEvent("integration_id is not a UUID".into()))?;
                let txn = self.ctx.db.begin().await?;
                if inbox::claim(&txn, CONSUMER, &envelope.id).await? {
                    Integrations::connected(&txn, tenant, integration).await?;
                }
                txn.commit().await?;
            }
            Some(Payload::IntegrationDisconnected(d)) => {
                let integration: IntegrationId = d
                    .integration_id
                    .parse()
                    .map_err(|_| Error::MalformedEvent("integration_id is not a UUID".into()))?;
                let cascade = CascadeId::parse_event_field("cascade_id", &d.cascade_id)?;
                // No more writes for it, then crypto-shred: both idempotent, so a
                // redelivery finds nothing to do. Under a legal hold nothing is erased.
                Integrations::disconnected(&self.ctx.db, tenant, integration).await?;
                let scope = HeldScope::Integration(integration);
                if let Some(hold) = holds::keeping(&self.ctx.db, tenant, &scope).await? {
                    return self.retain(envelope, tenant, cascade, hold).await;
                }
                let destroyed = self
                    .ctx
                    .keystore
                    .shred(tenant, &KeyScope::Integration(integration.to_string()))
                    .await?;
                let txn = self.ctx.db.begin().await?;
                if !inbox::claim(&txn, CONSUMER, &envelope.id).await? {
                    return Ok(());
                }
                let (removed, revision) = self
                    .policy
                    .delete_integration(&txn, tenant, integration)
                    .await?;
                self.ctx
                    .attest(&txn, Some(tenant), cascade, counts(&removed), &destroyed)
                    .await?;
                txn.commit().await?;
                settle(&self.ctx, &removed).await?;
                self.policy.invalidate(tenant);
                self.ctx.relay.wake();
                tracing::info!(tenant_id = %tenant, integration_id = %integration, cascade_id = %d.cascade_id, principals = removed.principals, grants = removed.grants, revision, "integration's permission data deleted");
            }
            Some(Payload::SubjectErasureRequested(e)) => {
                let cascade = CascadeId::parse_event_field("cascade_id", &e.cascade_id)?;
                let email = self.ctx.event_seal.open_email(tenant, &e.sealed_email)?;
                let user = match e.user_id.as_str() {
                    "" => None,
                    id => Some(
                        id.parse::<UserId>()
                            .map_err(|_| Error::MalformedEvent("user_id is not a UUID".into()))?,
                    ),
                };
                // Kept by a hold on the tenant, or on the person's account.
                let account = match user {
                    Some(id) => Some(id),
                    None => self
                        .accounts
                        .find_by_email(tenant, &email)
                        .await?
                        .map(|u| u.id),
                };
                let hold = match account {
                    Some(id) => holds::keeping(&self.ctx.db, tenant, &HeldScope::User(id)).await?,
                    None => holds::tenant_hold(&self.ctx.db, tenant).await?,
                };
                if let Some(hold) = hold {
                    return self.retain(envelope, tenant, cascade, hold).await;
                }
                self.accounts
                    .erase_subject(tenant, account, &email, cascade, &envelope.id)
                    .await?;
            }
            Some(Payload::AccountDeletionRequested(d)) if d.user_id.is_empty() => {
                let cascade = CascadeId::parse_event_field("cascade_id", &d.cascade_id)?;
                self.accounts
                    .erase_requested_tenant(tenant, cascade, &envelope.id)
                    .await?;
            }
            Some(Payload::AccountDeletionRequested(d)) => {
                let cascade = CascadeId::parse_event_field("cascade_id", &d.cascade_id)?;
                let user: UserId = d
                    .user_id
                    .parse()
                    .map_err(|_| Error::MalformedEvent("user_id is not a UUID".into()))?;
                self.accounts
                    .erase_requested_user(tenant, user, cascade, &envelope.id)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }
}
