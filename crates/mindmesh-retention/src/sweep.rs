//! The inactivity sweep (P09): a tenant nobody of which has been active for its policy's
//! `inactivity_days` expires, and is erased everywhere by a tenant-deletion cascade of
//! kind `inactivity` — but only once it has been sent every warning its policy names,
//! each in time: a warning `d` days before expiry promises `d` days, so a late one
//! pushes the expiry back. Warnings go out as `notification.requested` in the
//! administrative category (a marketing opt-out never suppresses them), each exactly
//! once per countdown; activity coming back starts a new countdown and forgets the old
//! one.
//!
//! Safe on two replicas at once: a warning or an expiry is recorded under a unique key
//! in the transaction that publishes it, and only the replica whose insert took sends it.

use chrono::{DateTime, Duration, Utc};
use mindmesh_kit::audit::AuditRecord;
use mindmesh_kit::context::ServiceContext;
use mindmesh_kit::ids::{CascadeId, TenantId};
use mindmesh_kit::tenants::Tenants;
use mindmesh_kit::{Result, Service, outbox};
use sea_orm::TransactionTrait;

use crate::ledger::{CascadeKind, Ledger, Opening};
use crate::policy::Policies;
use crate::store::{activity, inactivity as store};

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Warnings sent.
    pub warnings_sent: u64,
    /// The tenant-deletion cascades started, one per expired tenant.
    pub cascades: Vec<CascadeId>,
}

/// When a tenant whose countdown runs from `last` expires under `inactivity_days`,
/// given the warnings sent (days before → when): the policy's day, or later where a
/// warning went out late (it promised its days).
fn expiry(
    last: DateTime<Utc>,
    inactivity_days: u32,
    sent: &[(u32, DateTime<Utc>)],
) -> DateTime<Utc> {
    let due = last + Duration::days(i64::from(inactivity_days));
    sent.iter()
        .map(|(days, at)| *at + Duration::days(i64::from(*days)))
        .fold(due, DateTime::max)
}

/// Runs sweeps over the retention database.
#[derive(Clone)]
pub struct Sweeper {
    ctx: ServiceContext,
    ledger: Ledger,
    policies: Policies,
    tenants: Tenants,
}

impl Sweeper {
    /// A sweeper publishing through `ctx`'s outbox, opening cascades in `ledger`, with
    /// each tenant's policy from `policies`, skipping erased `tenants`.
    pub fn new(ctx: ServiceContext, ledger: Ledger, policies: Policies, tenants: Tenants) -> Self {
        Sweeper {
            ctx,
            ledger,
            policies,
            tenants,
        }
    }

    /// Sweeps every tenant (or only `only`) as of `as_of`.
    pub async fn sweep(&self, as_of: DateTime<Utc>, only: Option<TenantId>) -> Result<SweepReport> {
        let as_of = mindmesh_kit::db::micros(as_of);
        let mut report = SweepReport::default();
        for (tenant, last) in activity::tenants_last_active(&self.ctx.db).await? {
            if only.is_some_and(|t| t != tenant) {
                continue;
            }
            if self.tenants.is_erased(tenant).await? || store::expired(&self.ctx.db, tenant).await?
            {
                continue;
            }
            self.sweep_tenant(tenant, last, as_of, &mut report).await?;
        }
        if report.warnings_sent > 0 || !report.cascades.is_empty() {
            self.ctx.relay.wake();
        }
        Ok(report)
    }

    async fn sweep_tenant(
        &self,
        tenant: TenantId,
        last: DateTime<Utc>,
        as_of: DateTime<Utc>,
        report: &mut SweepReport,
    ) -> Result<()> {
        let policy = self.policies.get(tenant).await?;
        let txn = self.ctx.db.begin().await?;
        // Activity came back: the old countdown is forgotten.
        store::forget_other_countdowns(&txn, tenant, last).await?;
        let mut sent: Vec<(u32, DateTime<Utc>)> = store::warnings_sent(&txn, tenant, last)
            .await?
            .into_iter()
            .collect();
        // Largest first: the 60-day warning before the 30-day one.
        for days in &policy.warning_days {
            if sent.iter().any(|(d, _)| d == days) {
                continue;
            }
            let due =
                expiry(last, policy.inactivity_days, &sent) - Duration::days(i64::from(*days));
            if as_of < due {
                break;
            }
            if !store::record_warning(&txn, tenant, last, *days, as_of).await? {
                continue; // another replica sent it
            }
            sent.push((*days, as_of));
            let expires_at = expiry(last, policy.inactivity_days, &sent);
            outbox::enqueue(
                &txn,
                &crate::events::inactivity_warning(tenant, *days, expires_at),
            )
            .await?;
            self.audit(
                &txn,
                tenant,
                "inactivity.warning",
                format!("{days} days before expiry at {expires_at}"),
            )
            .await?;
            report.warnings_sent += 1;
        }
        let warned = policy
            .warning_days
            .iter()
            .all(|d| sent.iter().any(|(s, _)| s == d));
        if warned && as_of >= expiry(last, policy.inactivity_days, &sent) {
            let cascade = CascadeId::new();
            if store::record_expiry(&txn, tenant, cascade, as_of).await? {
                let request = crate::events::tenant_expired(tenant, cascade);
                outbox::enqueue(&txn, &request).await?;
                let opening = Opening {
                    cascade,
                    tenant,
                    kind: CascadeKind::Inactivity,
                    scope_id: tenant.to_string(),
                    subject: None,
                    requested_at: as_of,
                };
                self.ledger
                    .open_in(&txn, &opening, &crate::events::encode(&request))
                    .await?;
                self.audit(
                    &txn,
                    tenant,
                    "inactivity.expire",
                    format!("cascade {cascade}; last activity {last}"),
                )
                .await?;
                report.cascades.push(cascade);
                tracing::info!(tenant_id = %tenant, cascade_id = %cascade, "tenant expired for inactivity: erasing it");
            }
        }
        txn.commit().await?;
        Ok(())
    }

    async fn audit<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        tenant: TenantId,
        action: &str,
        details: String,
    ) -> Result<()> {
        self.ctx
            .audit
            .append(
                conn,
                &AuditRecord::by_service(
                    Service::Retention,
                    action,
                    Some(tenant),
                    tenant.to_string(),
                )
                .with_details(details),
            )
            .await?;
        Ok(())
    }

    /// Sweeps as of now every `every` until `shutdown`.
    pub async fn run(
        self,
        every: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match self.sweep(Utc::now(), None).await {
                Ok(r) if r.warnings_sent > 0 || !r.cascades.is_empty() => {
                    tracing::info!(
                        warnings = r.warnings_sent,
                        expired = r.cascades.len(),
                        "inactivity sweep"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "inactivity sweep failed; retrying later"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_warning_pushes_the_expiry_back() {
        let last = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let due = last + Duration::days(365);
        assert_eq!(expiry(last, 365, &[]), due);
        // Warned in time: the policy's day.
        assert_eq!(expiry(last, 365, &[(1, due - Duration::days(1))]), due);
        // The 7-day warning went out two days late: seven days from then.
        let late = due - Duration::days(5);
        assert_eq!(expiry(last, 365, &[(7, late)]), late + Duration::days(7));
    }
}
