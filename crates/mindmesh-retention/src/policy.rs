//! Each tenant's retention policy: how long without activity before the tenant expires
//! (P09), when it is warned before, and how long archived documents are kept.

use mindmesh_kit::audit::{AuditLog, AuditRecord};
use mindmesh_kit::auth::Caller;
use mindmesh_kit::ids::TenantId;
use mindmesh_kit::outbox::{self, OutboxRelay};
use mindmesh_kit::{Error, Result};
use sea_orm::{DatabaseConnection, TransactionTrait};

use crate::store::inactivity as store;

/// Fewest days without activity a policy may set before expiry.
pub const MIN_INACTIVITY_DAYS: u32 = 30;
/// Most days a policy may set (ten years).
pub const MAX_DAYS: u32 = 3650;
/// Most warnings before expiry.
pub const MAX_WARNINGS: usize = 10;

/// A tenant's retention policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Days without activity by anyone of the tenant before it expires.
    pub inactivity_days: u32,
    /// Days before expiry at which the tenant is warned, largest first.
    pub warning_days: Vec<u32>,
    /// Days an archived document is kept before its content is purged.
    pub archive_purge_days: u32,
}

impl Default for Policy {
    /// Twelve months, warned 60, 30, 7 and 1 days before; archives kept 30 days.
    fn default() -> Self {
        Policy {
            inactivity_days: 365,
            warning_days: vec![60, 30, 7, 1],
            archive_purge_days: 30,
        }
    }
}

impl Policy {
    /// The policy checked, its warnings sorted largest first; errors name the field.
    pub fn validated(mut self) -> Result<Self> {
        if !(MIN_INACTIVITY_DAYS..=MAX_DAYS).contains(&self.inactivity_days) {
            return Err(Error::invalid(
                "policy.inactivity_days",
                format!("must be between {MIN_INACTIVITY_DAYS} and {MAX_DAYS}"),
            ));
        }
        if self.warning_days.is_empty() || self.warning_days.len() > MAX_WARNINGS {
            return Err(Error::invalid(
                "policy.warning_days",
                format!("must name 1 to {MAX_WARNINGS} days (a tenant is never expired unwarned)"),
            ));
        }
        self.warning_days.sort_unstable_by(|a, b| b.cmp(a));
        self.warning_days.dedup();
        if self
            .warning_days
            .iter()
            .any(|d| *d == 0 || *d >= self.inactivity_days)
        {
            return Err(Error::invalid(
                "policy.warning_days",
                "each must be at least 1 and fewer than inactivity_days",
            ));
        }
        if !(1..=MAX_DAYS).contains(&self.archive_purge_days) {
            return Err(Error::invalid(
                "policy.archive_purge_days",
                format!("must be between 1 and {MAX_DAYS}"),
            ));
        }
        Ok(self)
    }
}

/// The policies over the retention database.
#[derive(Clone)]
pub struct Policies {
    db: DatabaseConnection,
    audit: AuditLog,
    relay: OutboxRelay,
}

impl Policies {
    /// Policies in `db`, each change recorded in `audit` and announced (the archive
    /// window, which storage applies) through `relay`.
    pub fn new(db: DatabaseConnection, audit: AuditLog, relay: OutboxRelay) -> Self {
        Policies { db, audit, relay }
    }

    /// `tenant`'s policy: the one set, else the default.
    pub async fn get(&self, tenant: TenantId) -> Result<Policy> {
        Ok(store::policy(&self.db, tenant).await?.unwrap_or_default())
    }

    /// Sets `tenant`'s policy (validated) as `caller`; returns it as stored.
    pub async fn set(&self, caller: &Caller, tenant: TenantId, policy: Policy) -> Result<Policy> {
        let policy = policy.validated()?;
        let txn = self.db.begin().await?;
        store::set_policy(&txn, tenant, &policy, mindmesh_kit::db::now()).await?;
        let days: Vec<String> = policy
            .warning_days
            .iter()
            .map(ToString::to_string)
            .collect();
        self.audit
            .append(
                &txn,
                &AuditRecord::by(caller, "policy.set", Some(tenant), tenant.to_string())
                    .with_details(format!(
                        "inactivity {} days, warnings {}, archive purge {} days",
                        policy.inactivity_days,
                        days.join(","),
                        policy.archive_purge_days
                    )),
            )
            .await?;
        outbox::enqueue(
            &txn,
            &crate::events::policy_set(tenant, policy.archive_purge_days),
        )
        .await?;
        txn.commit().await?;
        self.relay.wake();
        Ok(policy)
    }
}

/// Forgets `tenant`'s policy and inactivity countdown in `conn`'s transaction (the
/// tenant is erased); returns the rows deleted.
pub async fn forget<C: sea_orm::ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<u64> {
    store::forget_tenant(conn, tenant).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_policies_name_the_field() {
        assert!(Policy::default().validated().is_ok());
        for (bad, field) in [
            (
                Policy {
                    inactivity_days: 5,
                    ..Policy::default()
                },
                "policy.inactivity_days",
            ),
            (
                Policy {
                    warning_days: vec![],
                    ..Policy::default()
                },
                "policy.warning_days",
            ),
            (
                Policy {
                    warning_days: vec![400],
                    ..Policy::default()
                },
                "policy.warning_days",
            ),
            (
                Policy {
                    warning_days: vec![0],
                    ..Policy::default()
                },
                "policy.warning_days",
            ),
            (
                Policy {
                    archive_purge_days: 0,
                    ..Policy::default()
                },
                "policy.archive_purge_days",
            ),
        ] {
            let err = bad.validated().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
        let sorted = Policy {
            warning_days: vec![1, 30, 7, 30],
            ..Policy::default()
        }
        .validated()
        .unwrap();
        assert_eq!(sorted.warning_days, vec![30, 7, 1]);
    }
}
