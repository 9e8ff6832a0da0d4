//! Breach notices (P15). An operator declares a breach — what happened, when it was
//! detected, the tenants and people it affects — and the notifier sends an
//! administrative notice (GDPR Art. 34) to every affected person and to each affected
//! tenant's administrative contacts, once each. The 72-hour deadline for informing the
//! supervisory authority (Art. 33(1)) is recorded with whether the declaration met it,
//! and [`Breaches::status`] reports it beside the notices' delivery.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mindmesh_kit::audit::{AuditLog, AuditRecord};
use mindmesh_kit::auth::Caller;
use mindmesh_kit::crypto::SecretKey;
use mindmesh_kit::ids::{TenantId, UserId};
use mindmesh_kit::{Error, Result};
use sea_orm::{DatabaseConnection, TransactionTrait};

use crate::notifier::{Notice, Notifier, Origin};
use crate::store::notifications::{self as store, BreachRow};

/// The authority must be told within 72 hours of detection (GDPR Art. 33(1)).
pub const AUTHORITY_DEADLINE: chrono::Duration = chrono::Duration::hours(72);
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 5000;
/// Most tenants one declaration names.
pub const MAX_TENANTS: usize = 1000;
/// Most people one declaration names.
pub const MAX_USERS: usize = 100_000;

/// The key breach descriptions are sealed with.
pub fn description_key(master: &SecretKey) -> Result<SecretKey> {
    master.derive("mindmesh/dsar/breach-descriptions/v1")
}

fn aad(id: &str, tenant: &str) -> Vec<u8> {
    format!("breach|{id}|{tenant}").into_bytes()
}

/// The description of `breach`, opened with `key`.
pub fn open_description(key: &SecretKey, breach: &BreachRow) -> Result<String> {
    let plain = key.open(&aad(&breach.id, &breach.tenant_id), &breach.description_ct)?;
    String::from_utf8(plain)
        .map_err(|_| Error::Internal("a breach description is not UTF-8".into()))
}

/// Whom a breach affects.
pub enum Affected {
    /// Every account of each tenant.
    Everyone(Vec<TenantId>),
    /// These accounts of one tenant.
    People(TenantId, Vec<UserId>),
}

/// Who may be told: the accounts of a tenant (asked of the permissions service).
#[async_trait::async_trait]
pub trait Accounts: Send + Sync + 'static {
    /// Every account of `tenant`.
    async fn user_ids(&self, tenant: TenantId) -> Result<Vec<UserId>>;
}

#[async_trait::async_trait]
impl Accounts for mindmesh_kit::tenants::AskPermissions {
    async fn user_ids(&self, tenant: TenantId) -> Result<Vec<UserId>> {
        mindmesh_kit::tenants::AskPermissions::user_ids(self, tenant).await
    }
}

/// A declaration's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    /// The breach's id.
    pub id: String,
    /// Notices queued.
    pub queued: u64,
    /// Detection + 72 hours.
    pub authority_deadline: DateTime<Utc>,
    /// Declared before that.
    pub within_deadline: bool,
    /// Named people with no account in the tenant (not notified).
    pub unknown: Vec<String>,
}

/// Where a breach stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The breach in this tenant.
    pub breach: BreachRow,
    /// Notices queued (or being retried), sent, given up.
    pub queued: u64,
    /// Sent.
    pub sent: u64,
    /// Given up.
    pub failed: u64,
}

/// Declares breaches and reports on them.
#[derive(Clone)]
pub struct Breaches {
    db: DatabaseConnection,
    audit: AuditLog,
    key: Arc<SecretKey>,
    notifier: Notifier,
    accounts: Arc<dyn Accounts>,
}

impl Breaches {
    /// Breaches in `db`, audited in `audit`, told by `notifier` to the `accounts`.
    pub fn new(
        db: DatabaseConnection,
        audit: AuditLog,
        master: &SecretKey,
        notifier: Notifier,
        accounts: Arc<dyn Accounts>,
    ) -> Result<Self> {
        Ok(Breaches {
            db,
            audit,
            key: Arc::new(description_key(master)?),
            notifier,
            accounts,
        })
    }

    /// Declares a breach detected at `detected` as `caller` (an operator) at `now`.
    pub async fn declare(
        &self,
        caller: &Caller,
        description: &str,
        detected: DateTime<Utc>,
        affected: Affected,
        now: DateTime<Utc>,
    ) -> Result<Declared> {
        let description = description.trim();
        if description.is_empty() {
            return Err(Error::invalid("description", "is required"));
        }
        if description.chars().count() > MAX_DESCRIPTION {
            return Err(Error::invalid(
                "description",
                format!("is longer than {MAX_DESCRIPTION} characters"),
            ));
        }
        if detected > now + chrono::Duration::minutes(5) {
            return Err(Error::invalid("detected_at", "is in the future"));
        }
        // Who is told, per tenant, read before anything is written.
        let mut plan: Vec<(TenantId, Vec<UserId>)> = Vec::new();
        let mut unknown = Vec::new();
        match affected {
            Affected::Everyone(tenants) => {
                for tenant in tenants {
                    plan.push((tenant, self.accounts.user_ids(tenant).await?));
                }
            }
            Affected::People(tenant, named) => {
                let accounts: BTreeSet<UserId> =
                    self.accounts.user_ids(tenant).await?.into_iter().collect();
                let (known, missing): (Vec<UserId>, Vec<UserId>) =
                    named.into_iter().partition(|u| accounts.contains(u));
                unknown = missing.iter().map(ToString::to_string).collect();
                plan.push((tenant, known));
            }
        }
        let id = uuid::Uuid::now_v7().to_string();
        let authority_deadline = detected + AUTHORITY_DEADLINE;
        let within_deadline = now <= authority_deadline;
        let event_id = format!("breach:{id}");
        let txn = self.db.begin().await?;
        let mut queued = 0;
        for (tenant, people) in &plan {
            let row = BreachRow {
                id: id.clone(),
                tenant_id: tenant.to_string(),
                description_ct: self
                    .key
                    .seal(&aad(&id, &tenant.to_string()), description.as_bytes())?,
                detected_at: detected,
                declared_at: now,
                authority_due_at: authority_deadline,
                declared_by: caller.subject.clone(),
            };
            store::insert_breach(&txn, &row).await?;
            let origin = Origin {
                event_id: &event_id,
                tenant: *tenant,
                breach_id: Some(&id),
            };
            for user in people {
                let notice = Notice {
                    user_id: user.to_string(),
                    template: "breach_notice".to_owned(),
                    administrative: true,
                    params: Default::default(),
                };
                queued += self.notifier.queue(&txn, &origin, &notice, now).await?;
            }
            // The tenant's administrative contacts (an affected admin is told once).
            let notice = Notice {
                user_id: String::new(),
                template: "breach_notice".to_owned(),
                administrative: true,
                params: [
                    ("audience".to_owned(), "admin".to_owned()),
                    ("affected".to_owned(), people.len().to_string()),
                ]
                .into(),
            };
            queued += self.notifier.queue(&txn, &origin, &notice, now).await?;
            self.audit
                .append(
                    &txn,
                    &AuditRecord::by(caller, "breach.declared", Some(*tenant), id.clone())
                        .with_details(format!(
                            "{} people affected; authority deadline {} ({})",
                            people.len(),
                            authority_deadline.to_rfc3339(),
                            if within_deadline {
                                "declared within it"
                            } else {
                                "declared after it"
                            }
                        )),
                )
                .await?;
        }
        txn.commit().await?;
        self.notifier.wake();
        Ok(Declared {
            id,
            queued,
            authority_deadline,
            within_deadline,
            unknown,
        })
    }

    /// Breach `id` in `tenant`, with its notices' delivery, as `caller` (audited).
    pub async fn status(&self, caller: &Caller, tenant: TenantId, id: &str) -> Result<Status> {
        let breach = store::breach(&self.db, tenant, id)
            .await?
            .ok_or(Error::NotFound("breach"))?;
        let notices = store::of_breach(&self.db, tenant, id).await?;
        let count = |status: &str| notices.iter().filter(|n| n.status == status).count() as u64;
        let status = Status {
            queued: count(store::QUEUED),
            sent: count(store::SENT),
            failed: count(store::FAILED),
            breach,
        };
        let txn = self.db.begin().await?;
        self.audit
            .append(
                &txn,
                &AuditRecord::by(caller, "breach.read", Some(tenant), id.to_owned()),
            )
            .await?;
        txn.commit().await?;
        Ok(status)
    }
}
