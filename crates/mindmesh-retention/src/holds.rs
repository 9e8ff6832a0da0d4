//! Legal holds: an admin or operator places a hold on a tenant, a user or an
//! integration, with a reason; while it stands, every service's part of a cascade over
//! what it keeps is retained (nothing is erased, the cascade is paused with the hold as
//! its ground), and storage purges none of the archived documents it keeps. Releasing
//! it asks every cascade it paused again, so they complete.
//!
//! The hold is recorded here (`hold_records`, the reason sealed: it may name people),
//! in force here at once, and announced with `legal_hold.placed` / `legal_hold.released`,
//! which the services that erase mirror into their own `legal_holds` table
//! ([`mindmesh_kit::holds`]) and confirm with `legal_hold.applied` (`hold_acks`).
//! `PlaceLegalHold` answers once every one has confirmed (or after [`IN_FORCE_WITHIN`]),
//! so that a deletion asked for after it returns meets the hold; the paused cascades are
//! asked again once every one has confirmed the release, so none meets it again.

use chrono::{DateTime, Utc};
use mindmesh_kit::audit::{AuditLog, AuditRecord};
use mindmesh_kit::auth::Caller;
use mindmesh_kit::crypto::SecretKey;
use mindmesh_kit::holds::{self, HeldScope, Hold};
use mindmesh_kit::ids::{HoldId, TenantId};
use mindmesh_kit::outbox::{self, OutboxRelay};
use mindmesh_kit::{Error, Result};
use sea_orm::{DatabaseConnection, TransactionTrait};

use crate::ledger::Ledger;
use crate::store::holds as store;

/// Longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// How long `PlaceLegalHold` waits for every service to confirm the hold.
pub const IN_FORCE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// A legal hold as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldRecord {
    /// The hold.
    pub id: HoldId,
    /// Its tenant.
    pub tenant: TenantId,
    /// What it keeps.
    pub scope: HeldScope,
    /// Who placed it (the token's subject).
    pub placed_by: String,
    /// When.
    pub placed_at: DateTime<Utc>,
    /// When it was released, if it was.
    pub released_at: Option<DateTime<Utc>>,
}

/// The legal holds over the retention database.
#[derive(Clone)]
pub struct LegalHolds {
    db: DatabaseConnection,
    ledger: Ledger,
    audit: AuditLog,
    relay: OutboxRelay,
    /// Seals each hold's reason.
    reason_key: SecretKey,
}

fn reason_aad(id: HoldId) -> Vec<u8> {
    format!("mindmesh/retention/hold_records/reason_ct/{id}").into_bytes()
}

impl LegalHolds {
    /// Holds in `db`, resuming the cascades of `ledger` on release, recording each step
    /// in `audit`, publishing through `relay`, sealing reasons with a key of `master`.
    pub fn new(
        db: DatabaseConnection,
        ledger: Ledger,
        audit: AuditLog,
        relay: OutboxRelay,
        master: &SecretKey,
    ) -> Result<Self> {
        Ok(LegalHolds {
            db,
            ledger,
            audit,
            relay,
            reason_key: master.derive("mindmesh/retention/hold-reason/v1")?,
        })
    }

    /// Places a hold on `scope` of `tenant` for `reason` (1–500 characters), as `caller`.
    pub async fn place(
        &self,
        caller: &Caller,
        tenant: TenantId,
        scope: HeldScope,
        reason: &str,
    ) -> Result<HoldId> {
        let reason = reason.trim();
        let chars = reason.chars().count();
        if chars == 0 || chars > MAX_REASON_CHARS {
            return Err(Error::invalid(
                "reason",
                format!("must be 1 to {MAX_REASON_CHARS} characters"),
            ));
        }
        if reason.chars().any(char::is_control) {
            return Err(Error::invalid(
                "reason",
                "must not contain control characters",
            ));
        }
        let record = HoldRecord {
            id: HoldId::new(),
            tenant,
            scope,
            placed_by: caller.subject.clone(),
            placed_at: mindmesh_kit::db::now(),
            released_at: None,
        };
        let sealed = self
            .reason_key
            .seal(&reason_aad(record.id), reason.as_bytes())?;
        let txn = self.db.begin().await?;
        store::insert(&txn, &record, sealed).await?;
        holds::place(
            &txn,
            &Hold {
                id: record.id,
                tenant,
                scope,
            },
        )
        .await?;
        outbox::enqueue(&txn, &holds::placed_event(tenant, record.id, &scope)).await?;
        self.audit
            .append(
                &txn,
                &AuditRecord::by(
                    caller,
                    "legal_hold.place",
                    Some(tenant),
                    record.id.to_string(),
                )
                .with_details(format!("{} {}", scope.kind(), scope.id(tenant))),
            )
            .await?;
        txn.commit().await?;
        self.relay.wake();
        tracing::info!(tenant_id = %tenant, hold_id = %record.id, scope = scope.kind(), "legal hold placed");
        Ok(record.id)
    }

    /// Whether every service that erases has confirmed hold `id`, waiting up to
    /// `within` for it.
    pub async fn in_force_within(&self, id: HoldId, within: std::time::Duration) -> Result<bool> {
        self.confirmed_within(id, false, within).await
    }

    /// Whether every service that erases has let hold `id` go, waiting up to `within`.
    pub async fn released_within(&self, id: HoldId, within: std::time::Duration) -> Result<bool> {
        self.confirmed_within(id, true, within).await
    }

    async fn confirmed_within(
        &self,
        id: HoldId,
        released: bool,
        within: std::time::Duration,
    ) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let acked = store::acked(&self.db, id, released).await?;
            if holds::KEEPERS.iter().all(|s| acked.contains(s)) {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Releases hold `id` of `tenant` (any tenant's for `None`) as `caller`; the cascades
    /// it paused are asked again once every service has applied the release
    /// ([`LegalHolds::applied`]). Releasing a released hold changes nothing; a hold not
    /// in `tenant` is NOT_FOUND.
    pub async fn release(
        &self,
        caller: &Caller,
        tenant: Option<TenantId>,
        id: HoldId,
    ) -> Result<()> {
        let now = mindmesh_kit::db::now();
        let txn = self.db.begin().await?;
        let record = store::find_locked(&txn, id)
            .await?
            .filter(|r| tenant.is_none_or(|t| r.tenant == t))
            .ok_or(Error::NotFound("legal hold"))?;
        if record.released_at.is_some() {
            return Ok(());
        }
        store::set_released(&txn, id, &caller.subject, now).await?;
        holds::release(&txn, id).await?;
        outbox::enqueue(&txn, &holds::released_event(record.tenant, id)).await?;
        self.audit
            .append(
                &txn,
                &AuditRecord::by(
                    caller,
                    "legal_hold.release",
                    Some(record.tenant),
                    id.to_string(),
                ),
            )
            .await?;
        txn.commit().await?;
        self.relay.wake();
        tracing::info!(tenant_id = %record.tenant, hold_id = %id, "legal hold released");
        Ok(())
    }

    /// `service` applied the placing (or the release) of hold `id`. Once every service
    /// that erases has applied the release, every cascade the hold paused is asked again
    /// (once: the hold's record is locked while the confirmations are counted). Returns
    /// how many were asked.
    pub async fn applied(
        &self,
        id: HoldId,
        service: mindmesh_kit::Service,
        released: bool,
    ) -> Result<usize> {
        let now = mindmesh_kit::db::now();
        let txn = self.db.begin().await?;
        let Some(record) = store::find_locked(&txn, id).await? else {
            // A hold of an erased tenant, or not one of ours: nothing to count.
            return Ok(0);
        };
        let before = store::acked(&txn, id, released).await?;
        store::ack(&txn, id, service, released, now).await?;
        let all =
            |acked: &[mindmesh_kit::Service]| holds::KEEPERS.iter().all(|s| acked.contains(s));
        let mut after = before.clone();
        after.push(service);
        let mut resumed = 0;
        if released && record.released_at.is_some() && !all(&before) && all(&after) {
            let paused = self.ledger.held_by(&txn, id).await?;
            for cascade in &paused {
                crate::events::ask_again(&txn, &self.ledger, cascade, now).await?;
            }
            resumed = paused.len();
            self.audit
                .append(
                    &txn,
                    &AuditRecord::by_service(
                        mindmesh_kit::Service::Retention,
                        "legal_hold.resume",
                        Some(record.tenant),
                        id.to_string(),
                    )
                    .with_details(format!(
                        "released everywhere; {resumed} cascades asked again"
                    )),
                )
                .await?;
        }
        txn.commit().await?;
        if resumed > 0 {
            self.relay.wake();
            tracing::info!(tenant_id = %record.tenant, hold_id = %id, resumed, "cascades paused by a released hold asked again");
        }
        Ok(resumed)
    }
}

/// Forgets every hold record of `tenant` in `conn`'s transaction (the tenant is erased;
/// no hold of it is in force, or the erasure would have been retained); returns the rows.
pub async fn forget<C: sea_orm::ConnectionTrait>(conn: &C, tenant: TenantId) -> Result<u64> {
    store::forget_tenant(conn, tenant).await
}
