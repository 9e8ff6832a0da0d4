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

    /// The communication preferences of `user` of `tenant`.
    pub async fn preferences(&self, tenant: TenantId, user: UserId) -> Result<Preferences> {
        preferences_in(&self.db, tenant, user).await
    }

    /// Sets the communication preferences of `user` of `tenant`, as `caller` (`None`:
    /// the person themselves, through the link of a mail) at `now`.
    pub async fn set_preferences(
        &self,
        caller: Option<&Caller>,
        tenant: TenantId,
        user: UserId,
        preferences: Preferences,
        now: DateTime<Utc>,
    ) -> Result<Preferences> {
        let txn = self.db.begin().await?;
        store::put_preferences(
            &txn,
            tenant,
            &user.to_string(),
            preferences.marketing,
            preferences.admin_contact,
            now,
        )
        .await?;
        let (record, how) = match caller {
            Some(caller) => (
                AuditRecord::by(caller, "preferences.set", Some(tenant), user.to_string()),
                "",
            ),
            None => (
                AuditRecord::by_service(
                    mindmesh_kit::Service::Dsar,
                    "preferences.unsubscribed",
                    Some(tenant),
                    user.to_string(),
                ),
                ", by the unsubscribe link of a mail",
            ),
        };
        self.audit
            .append(
                &txn,
                &record.with_details(format!(
                    "marketing mail {}, administrative contact {}{how}",
                    on_off(preferences.marketing),
                    on_off(preferences.admin_contact)
                )),
            )
            .await?;
        txn.commit().await?;
        Ok(preferences)
    }
}

/// The communication preferences of `user` of `tenant` as `conn` reads them (the
/// defaults for a person who never said).
pub async fn preferences_in<C: sea_orm::ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    user: UserId,
) -> Result<Preferences> {
    Ok(
        match store::preferences(conn, tenant, &user.to_string()).await? {
            Some((marketing, admin_contact)) => Preferences {
                marketing,
                admin_contact,
            },
            None => Preferences::DEFAULT,
        },
    )
}

/// A person's communication preferences (P13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preferences {
    /// Whether they take marketing mail.
    pub marketing: bool,
    /// An admin who receives the tenant's administrative notices.
    pub admin_contact: bool,
}

impl Preferences {
    /// A person who never said: no marketing mail, not a contact.
    pub const DEFAULT: Preferences = Preferences {
        marketing: MARKETING_BY_DEFAULT,
        admin_contact: false,
    };
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}
