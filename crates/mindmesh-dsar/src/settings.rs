//! A tenant's third-party processor switches (P14) and each person's communication
//! preferences (P13). Every change is audited; a change of the switches is published
//! (`processor.settings_set`) for every service's processor gate
//! (`mindmesh_kit::processing`).

use chrono::{DateTime, Utc};
use mindmesh_kit::Result;
use mindmesh_kit::audit::{AuditLog, AuditRecord};
use mindmesh_kit::auth::Caller;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::{TenantId, UserId};
use mindmesh_kit::outbox::{self, OutboxRelay};
use mindmesh_kit::processing::Switches;
use sea_orm::{DatabaseConnection, TransactionTrait};

use crate::store::settings as store;

/// Marketing mail is sent only to people who asked for it.
pub const MARKETING_BY_DEFAULT: bool = false;

/// The settings over the dsar database.
#[derive(Clone)]
pub struct Settings {
    db: DatabaseConnection,
    audit: AuditLog,
    relay: OutboxRelay,
}

impl Settings {
    /// Settings in `ctx`'s database, audited there, published by its relay.
    pub fn new(ctx: &ServiceContext) -> Self {
        Settings {
            db: ctx.db.clone(),
            audit: ctx.audit.clone(),
            relay: ctx.relay.clone(),
        }
    }

    /// The processor switches of `tenant`.
    pub async fn processors(&self, tenant: TenantId) -> Result<Switches> {
        Ok(match store::processors(&self.db, tenant).await? {
            Some((analytics, llm)) => Switches { analytics, llm },
            None => Switches::DEFAULT,
        })
    }

    /// Sets the processor switches of `tenant` as `caller` at `now`.
    pub async fn set_processors(
        &self,
        caller: &Caller,
        tenant: TenantId,
        switches: Switches,
        now: DateTime<Utc>,
    ) -> Result<Switches> {
        let txn = self.db.begin().await?;
        store::put_processors(&txn, tenant, switches.analytics, switches.llm, now).await?;
        outbox::enqueue(&txn, &crate::events::processors_set(tenant, switches)).await?;
        self.audit
            .append(
                &txn,
                &AuditRecord::by(caller, "processors.set", Some(tenant), tenant.to_string())
                    .with_details(format!(
                        "analytics {}, llm {}",
                        on_off(switches.analytics),
                        on_off(switches.llm)
                    )),
            )
            .await?;
        txn.commit().await?;
        self.relay.wake();
        Ok(switches)
    }

    /// Whether `user` of `tenant` takes marketing mail.
    pub async fn marketing(&self, tenant: TenantId, user: UserId) -> Result<bool> {
        Ok(store::marketing(&self.db, tenant, &user.to_string())
            .await?
            .unwrap_or(MARKETING_BY_DEFAULT))
    }

    /// Sets whether `user` of `tenant` takes marketing mail, as `caller` at `now`.
    pub async fn set_marketing(
        &self,
        caller: &Caller,
        tenant: TenantId,
        user: UserId,
        marketing: bool,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let txn = self.db.begin().await?;
        store::put_marketing(&txn, tenant, &user.to_string(), marketing, now).await?;
        self.audit
            .append(
                &txn,
                &AuditRecord::by(caller, "preferences.set", Some(tenant), user.to_string())
                    .with_details(format!("marketing mail {}", on_off(marketing))),
            )
            .await?;
        txn.commit().await?;
        Ok(marketing)
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}
